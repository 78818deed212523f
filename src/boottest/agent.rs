//! The QEMU guest agent of an image that ships one, asked over its virtio-serial channel
//! (`org.qemu.guest_agent.0`, a Unix socket on the host): platforms such as Proxmox VE and
//! OpenStack read a VM's addresses and shut it down through it, so a template that carries the
//! agent must answer. The boot test syncs with it (`guest-sync-delimited`), then asks
//! `guest-info` and `guest-get-osinfo`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The channel name the agent opens in the guest.
pub const CHANNEL: &str = "org.qemu.guest_agent.0";

/// What the agent said about itself and the guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    /// Seconds from QEMU's start to the agent's first answer.
    pub seconds: f64,
    /// The agent's version (`guest-info`).
    pub version: String,
    /// The guest's operating system, `pretty-name` of `guest-get-osinfo`.
    pub os: String,
    /// Its `id` (`debian`).
    pub os_id: String,
    /// The kernel release the guest runs.
    pub kernel: String,
    /// The machine (`x86_64`, `aarch64`).
    pub machine: String,
}

/// The longest path a Unix socket may have (`sun_path` holds 108 bytes with the final NUL).
const SOCKET_PATH_MAX: usize = 107;

/// The path of a guest-agent socket named `name` in `dir`, or an error saying why QEMU could
/// not listen there: a Unix socket's path is at most 107 bytes, and the directory comes from
/// the temporary directory (`TMPDIR`), which CI runners often put deep in a workspace.
pub fn socket_path(dir: &Path, name: &str) -> anyhow::Result<std::path::PathBuf> {
    let path = dir.join(name);
    let len = path.as_os_str().len();
    anyhow::ensure!(
        len <= SOCKET_PATH_MAX,
        "the guest agent's socket {} would be {len} bytes long, and a Unix socket's path holds at most {SOCKET_PATH_MAX}: set TMPDIR to a shorter directory (for example /tmp)",
        path.display()
    );
    Ok(path)
}

/// The name of boot `k`'s agent socket in a boot test's scratch directory (one per boot of
/// every target of the run, short for the limit above).
pub fn boot_socket_name(k: u32) -> String {
    format!("qga-{k}.sock")
}

/// The most a single answer may hold.
const MAX_ANSWER: usize = 1 << 20;
/// How long one attempt waits for an answer.
const PER_ATTEMPT: Duration = Duration::from_secs(5);

/// Ask the agent behind `socket` until it answers, `deadline`, or `stop`; the last problem
/// on failure.
pub fn query(
    socket: &Path,
    started: Instant,
    deadline: Instant,
    stop: &AtomicBool,
) -> Result<Agent, String> {
    let mut id = u64::from(std::process::id()) << 20;
    let mut last = "never tried".to_string();
    while Instant::now() < deadline
        && !stop.load(Ordering::SeqCst)
        && !crate::interrupt::requested()
    {
        id += 1;
        match attempt(socket, id, deadline) {
            Ok(mut a) => {
                a.seconds = started.elapsed().as_secs_f64();
                return Ok(a);
            }
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    Err(last)
}

/// The answers read off the channel.
struct Channel {
    s: UnixStream,
    buf: Vec<u8>,
}

impl Channel {
    fn fill(&mut self) -> Result<(), String> {
        let mut chunk = [0u8; 4096];
        let n = match self.s.read(&mut chunk) {
            Ok(0) => return Err("the channel closed".into()),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err("no answer (is qemu-guest-agent running in the guest?)".into())
            }
            Err(e) => return Err(format!("reading: {e}")),
        };
        self.buf.extend_from_slice(&chunk[..n]);
        if self.buf.len() > MAX_ANSWER {
            return Err(format!("an answer longer than {MAX_ANSWER} bytes"));
        }
        Ok(())
    }

    /// Drop everything up to and including the next 0xFF byte (the agent's sentinel).
    fn after_sentinel(&mut self) -> Result<(), String> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == 0xff) {
                self.buf.drain(..=i);
                return Ok(());
            }
            self.buf.clear();
            self.fill()?;
        }
    }

    /// The next non-empty line, as JSON.
    fn answer(&mut self) -> Result<Value, String> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_matches(|c: char| c.is_whitespace() || c == '\u{fffd}');
                if text.is_empty() {
                    continue;
                }
                return serde_json::from_str(text)
                    .map_err(|e| format!("an answer that is not JSON ({e}): {text}"));
            }
            self.fill()?;
        }
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.s
            .write_all(bytes)
            .map_err(|e| format!("writing to the channel: {e}"))
    }

    /// Run one command and return its `return` value.
    fn call(&mut self, command: &str) -> Result<Value, String> {
        self.send(format!("{{\"execute\":\"{command}\"}}\n").as_bytes())?;
        let v = self.answer()?;
        match (v.get("return"), v.get("error")) {
            (Some(r), _) => Ok(r.clone()),
            (None, Some(e)) => Err(format!("{command}: {e}")),
            _ => Err(format!("{command}: an answer without `return`: {v}")),
        }
    }
}

fn attempt(socket: &Path, id: u64, deadline: Instant) -> Result<Agent, String> {
    let s = UnixStream::connect(socket)
        .map_err(|e| format!("connecting to {}: {e}", socket.display()))?;
    let wait = PER_ATTEMPT
        .min(deadline.saturating_duration_since(Instant::now()))
        .max(Duration::from_millis(100));
    s.set_read_timeout(Some(wait))
        .and_then(|()| s.set_write_timeout(Some(wait)))
        .map_err(|e| format!("socket timeouts: {e}"))?;
    let mut ch = Channel { s, buf: Vec::new() };
    // A 0xFF byte resets the agent's JSON parser (a half command an earlier client left); its
    // answer to guest-sync-delimited comes after a 0xFF of its own, so whatever an earlier
    // client left unread is skipped, up to the answer that carries this attempt's id.
    ch.send(&[0xff])?;
    ch.send(
        format!("{{\"execute\":\"guest-sync-delimited\",\"arguments\":{{\"id\":{id}}}}}\n")
            .as_bytes(),
    )?;
    loop {
        ch.after_sentinel()?;
        let v = ch.answer()?;
        if v.get("return").and_then(Value::as_u64) == Some(id) {
            break;
        }
    }
    let info = ch.call("guest-info")?;
    let os = ch.call("guest-get-osinfo")?;
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let a = Agent {
        seconds: 0.0,
        version: text(&info, "version"),
        os: text(&os, "pretty-name"),
        os_id: text(&os, "id"),
        kernel: text(&os, "kernel-release"),
        machine: text(&os, "machine"),
    };
    if a.version.is_empty() {
        return Err(format!("guest-info without a version: {info}"));
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::os::unix::net::UnixListener;

    /// A stand-in for the agent that speaks its framing: a stale answer first, then the
    /// sentinel and the answers.
    fn fake_agent(listener: UnixListener, os: &'static str) {
        let (mut s, _) = listener.accept().unwrap();
        let mut r = std::io::BufReader::new(s.try_clone().unwrap());
        let mut line = Vec::new();
        // The reset byte comes first, then the sync command on the same line.
        r.read_until(b'\n', &mut line).unwrap();
        assert_eq!(line[0], 0xff);
        let cmd: Value = serde_json::from_slice(&line[1..]).unwrap();
        assert_eq!(cmd["execute"], "guest-sync-delimited");
        let id = cmd["arguments"]["id"].as_u64().unwrap();
        s.write_all(b"{\"return\": 7}\n\xff{\"return\": 8}\n")
            .unwrap();
        let mut sync = vec![0xff];
        sync.extend_from_slice(format!("{{\"return\": {id}}}\n").as_bytes());
        s.write_all(&sync).unwrap();
        for want in ["guest-info", "guest-get-osinfo"] {
            line.clear();
            r.read_until(b'\n', &mut line).unwrap();
            let cmd: Value = serde_json::from_slice(&line).unwrap();
            assert_eq!(cmd["execute"], want);
            let answer = if want == "guest-info" {
                "{\"return\": {\"version\": \"7.2.15\", \"supported_commands\": []}}\n".to_string()
            } else {
                format!("{{\"return\": {os}}}\n")
            };
            s.write_all(answer.as_bytes()).unwrap();
        }
    }

    #[test]
    fn a_socket_path_too_long_for_unix_sockets_is_refused_naming_tmpdir() {
        let short = Path::new("/tmp/ingot-boot-test-abc123");
        assert_eq!(
            socket_path(short, "qga-0.sock").unwrap(),
            short.join("qga-0.sock")
        );
        // 107 bytes exactly is the longest that fits.
        let dir = format!("/{}", "d".repeat(107 - "/x.sock".len() - 1));
        let fits = socket_path(Path::new(&dir), "x.sock").unwrap();
        assert_eq!(fits.as_os_str().len(), 107);
        let deep = format!("/{}", "d".repeat(120));
        let e = socket_path(Path::new(&deep), "qga-0.sock")
            .unwrap_err()
            .to_string();
        assert!(e.contains("132 bytes") && e.contains("TMPDIR"), "{e}");
    }

    #[test]
    fn the_agent_is_synced_past_stale_answers_and_asked_who_it_is() {
        let t = tempfile::tempdir().unwrap();
        let sock = t.path().join("qga.sock");
        let l = UnixListener::bind(&sock).unwrap();
        let h = std::thread::spawn(move || {
            fake_agent(
                l,
                "{\"id\": \"debian\", \"pretty-name\": \"Debian GNU/Linux 12 (bookworm)\", \"kernel-release\": \"6.1.0-28-amd64\", \"machine\": \"x86_64\"}",
            )
        });
        let start = Instant::now();
        let a = query(
            &sock,
            start,
            start + Duration::from_secs(20),
            &AtomicBool::new(false),
        )
        .unwrap();
        h.join().unwrap();
        assert_eq!(a.version, "7.2.15");
        assert_eq!(a.os_id, "debian");
        assert_eq!(a.machine, "x86_64");
        assert_eq!(a.kernel, "6.1.0-28-amd64");
    }

    #[test]
    fn a_silent_channel_is_a_bounded_failure_that_says_so() {
        let t = tempfile::tempdir().unwrap();
        let sock = t.path().join("qga.sock");
        let l = UnixListener::bind(&sock).unwrap();
        // Accepts and never answers, like QEMU's end when no agent runs in the guest.
        let _h = std::thread::spawn(move || {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept() {
                held.push(s);
            }
        });
        let start = Instant::now();
        let e = query(
            &sock,
            start,
            start + Duration::from_secs(2),
            &AtomicBool::new(false),
        )
        .unwrap_err();
        assert!(e.contains("no answer"), "{e}");
        assert!(start.elapsed() < Duration::from_secs(10));
        let gone = t.path().join("none.sock");
        let e = query(
            &gone,
            start,
            Instant::now() + Duration::from_millis(500),
            &AtomicBool::new(false),
        )
        .unwrap_err();
        assert!(e.contains("connecting to"), "{e}");
    }
}
