//! One boot: start QEMU on a private copy of the UEFI variables, read the serial console through
//! the classifier until the ready line, a fatal line (then three seconds more for context), QEMU's
//! exit, Ctrl-C or the timeout; write the timed console log; always kill the VM.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::console::{Console, Failure, Ready, Seen};
use crate::qemu::{self, VmSpec};

/// How long the console is still read after a fatal line, for the report's tail.
const AFTER_FATAL: Duration = Duration::from_secs(3);
/// How long the console must stay quiet before a matching unfinished line counts as the
/// foreign disk's ready pattern (a prompt waits; a line split in transit goes on at once).
const PARTIAL_QUIET: Duration = Duration::from_millis(300);

/// Result of one boot.
#[derive(Debug, Clone)]
pub struct BootOutcome {
    /// The ready line, when seen.
    pub ready: Option<Ready>,
    /// Seconds from QEMU start to the ready line (or to the failure).
    pub seconds: f64,
    /// Why the boot failed, if it did.
    pub failure: Option<Failure>,
    /// Last console lines.
    pub tail: Vec<String>,
    /// Console log file.
    pub log: PathBuf,
    /// The SSH login after the ready line, when one was asked for and worked.
    pub login: Option<super::cloud::Login>,
    /// The guest agent's answer, when the VM has its channel and it answered.
    pub agent: Option<super::agent::Agent>,
}

/// How long a login may still take after the ready line, whatever is left of the timeout:
/// cloud-init's last stage often finishes after the guest's own check-in.
const MIN_LOGIN: Duration = Duration::from_secs(120);
/// How long the guest agent may still take to answer after the ready line (and login).
const MIN_AGENT: Duration = Duration::from_secs(60);

/// What the console reader hands on.
#[derive(Debug, Clone, PartialEq)]
pub enum ConsoleEvent {
    /// A whole line (without its newline and carriage returns).
    Line(String),
    /// The line so far, when the console paused in the middle of it: a prompt such as
    /// `login: ` waits for input and never ends its line. The same text comes again as part
    /// of a [`ConsoleEvent::Line`] if the line is ever finished.
    Partial(String),
    /// The console closed (QEMU exited).
    Closed,
}

/// The longest unfinished line kept back; beyond it the text so far is a line of its own.
const MAX_PENDING: usize = 64 << 10;

/// A started VM's serial console (its stdout) and QEMU's own stderr (prefixed `[qemu]`) as
/// events on one channel.
pub fn console_lines(child: &mut qemu::KillOnDrop) -> Result<mpsc::Receiver<ConsoleEvent>> {
    let stdout = child.0.stdout.take().context("QEMU has no stdout")?;
    let stderr = child.0.stderr.take().context("QEMU has no stderr")?;
    let (tx, rx) = mpsc::channel::<ConsoleEvent>();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        let text = |b: &[u8]| String::from_utf8_lossy(b).replace('\r', "");
        let mut out = stdout;
        let mut buf = vec![0u8; 8192];
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let n = match out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            pending.extend_from_slice(&buf[..n]);
            while let Some(i) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=i).collect();
                if tx.send(ConsoleEvent::Line(text(&line[..i]))).is_err() {
                    return;
                }
            }
            if pending.len() > MAX_PENDING {
                let line = std::mem::take(&mut pending);
                if tx.send(ConsoleEvent::Line(text(&line))).is_err() {
                    return;
                }
            } else if !pending.is_empty() && tx.send(ConsoleEvent::Partial(text(&pending))).is_err()
            {
                return;
            }
        }
        if !pending.is_empty() {
            let _ = tx.send(ConsoleEvent::Line(text(&pending)));
        }
        let _ = tx.send(ConsoleEvent::Closed);
    });
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx2.send(ConsoleEvent::Line(format!("[qemu] {line}")));
        }
    });
    Ok(rx)
}

/// What makes a boot ready.
#[derive(Debug, Clone, Copy)]
pub enum Wait<'a> {
    /// Ingot's `INGOT-READY` line.
    IngotReady,
    /// A console line this pattern matches (a foreign disk's readiness).
    Pattern(&'a regex::Regex),
    /// The SSH login itself (a foreign disk with `--ssh` and no pattern); the console is still
    /// read for fatal lines.
    Login,
}

/// Boot once and wait until `wait` says ready. `work` holds this boot's variable store. With
/// `login` (a seed and the forwarded port in `spec`), log in over SSH after the ready line
/// (or, for [`Wait::Login`], as the readiness).
pub fn boot_once(
    spec: &VmSpec,
    timeout: Duration,
    log: &Path,
    work: &Path,
    wait: Wait<'_>,
    login: Option<&super::cloud::Seed>,
) -> Result<BootOutcome> {
    let pattern = match wait {
        Wait::Pattern(p) => Some(p),
        _ => None,
    };
    let by_login = matches!(wait, Wait::Login);
    if by_login && (login.is_none() || spec.ssh_port.is_none()) {
        anyhow::bail!("a boot whose readiness is the SSH login needs a login and a forwarded port");
    }
    let vars = work.join(format!(
        "vars-{}-{:?}.fd",
        std::process::id(),
        std::thread::current().id()
    ));
    qemu::copy_vars(spec, &vars)?;
    let start = Instant::now();
    let (mut child, _registered) =
        qemu::start_vm(spec, &qemu::args(spec, &vars, false), Stdio::piped())?;
    let rx = console_lines(&mut child)?;
    let mut console = Console::new(spec.arch);
    let mut all: Vec<String> = Vec::new();
    let mut ready = None;
    let mut failure: Option<Failure> = None;
    let mut seconds = 0.0;
    let mut fatal_at: Option<Instant> = None;
    let mut partial_match: Option<(String, f64, Instant)> = None;
    // Ready by login: the console is read (for fatal lines) while the login is tried.
    loop {
        if by_login {
            break;
        }
        if crate::interrupt::requested() {
            failure = Some(Failure::Interrupted);
            break;
        }
        // A partial line that matched is taken once the console is quiet for a moment: the
        // rest of a line that was only split in transit comes with it.
        if let Some((part, at, when)) = &partial_match {
            if when.elapsed() >= PARTIAL_QUIET {
                all.push(format!("[{at:8.3}] {part}"));
                ready = Some(crate::boottest::console::Ready::matched(part));
                seconds = *at;
                break;
            }
        }
        let wait = match (timeout.checked_sub(start.elapsed()), fatal_at) {
            (None, _) => {
                failure.get_or_insert_with(|| console.timeout(timeout.as_secs()));
                break;
            }
            (Some(_), Some(t)) if t.elapsed() > AFTER_FATAL => break,
            (Some(l), _) => l.min(Duration::from_millis(if partial_match.is_some() {
                50
            } else {
                500
            })),
        };
        match rx.recv_timeout(wait) {
            // A foreign disk's prompt (`login: `) is ready before its line ends, if ever.
            Ok(ConsoleEvent::Partial(part)) => {
                let matched = pattern.is_some_and(|p| p.is_match(&part));
                // A prompt nobody will answer (a boot loader's) need not wait for a line end
                // to fail.
                if failure.is_none() && !matched && console.waits_at_loader_prompt(&part) {
                    let at = start.elapsed().as_secs_f64();
                    if let Seen::Fatal(f) = console.feed(&part, at) {
                        failure = Some(f);
                        seconds = at;
                        fatal_at = Some(Instant::now());
                    }
                }
                partial_match = if matched {
                    let at =
                        partial_match.map_or_else(|| start.elapsed().as_secs_f64(), |(_, a, _)| a);
                    Some((part, at, Instant::now()))
                } else {
                    None
                };
            }
            Ok(ConsoleEvent::Line(line)) => {
                let at = start.elapsed().as_secs_f64();
                // Host seconds since QEMU started: shows where a slow boot spends its time.
                all.push(format!("[{at:8.3}] {line}"));
                if pattern.is_some_and(|p| p.is_match(&line)) {
                    ready = Some(crate::boottest::console::Ready::matched(&line));
                    // Ready when its first part was seen.
                    seconds = partial_match.take().map_or(at, |(_, a, _)| a);
                    break;
                }
                partial_match = None;
                match console.feed(&line, at) {
                    // Only Ingot's own images are ready at INGOT-READY: a foreign disk (which
                    // may well be an Ingot image) is ready at its pattern.
                    Seen::Ready(r) if pattern.is_none() => {
                        ready = Some(*r);
                        seconds = at;
                        break;
                    }
                    Seen::Ready(_) => {}
                    Seen::Fatal(f) => {
                        failure = Some(f);
                        seconds = at;
                        fatal_at = Some(Instant::now());
                    }
                    Seen::Line => {}
                }
            }
            Ok(ConsoleEvent::Closed) => {
                failure.get_or_insert_with(|| console.exited());
                break;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let mut logged_in = None;
    let go = by_login || (ready.is_some() && failure.is_none());
    let mut watch = Watch {
        rx: &rx,
        console: &mut console,
        all: &mut all,
        start,
        fatal: None,
    };
    if let (Some(seed), Some(port), true) = (login, spec.ssh_port, go) {
        let ph = Phase {
            seed,
            port,
            work,
            start,
            timeout,
        };
        match ph.run(&mut watch, by_login) {
            Ok(l) => {
                if by_login {
                    ready = Some(crate::boottest::console::Ready::matched(&format!(
                        "ssh login as {}",
                        seed.user
                    )));
                    seconds = l.seconds;
                }
                logged_in = Some(l);
            }
            Err((f, at)) => {
                failure = Some(f);
                if by_login {
                    seconds = at;
                }
            }
        }
    }
    let mut agent = None;
    if let (Some(sock), true) = (&spec.agent, ready.is_some() && failure.is_none()) {
        match agent_phase(sock, &mut watch, timeout) {
            Ok(a) if a.machine != spec.arch.name() => {
                failure = Some(Failure::Agent {
                    detail: format!(
                        "it reports the machine `{}` in a {} VM",
                        a.machine,
                        spec.arch.name()
                    ),
                });
            }
            Ok(a) => agent = Some(a),
            Err(f) => failure = Some(f),
        }
    }
    drop(child);
    if let Some(sock) = &spec.agent {
        let _ = std::fs::remove_file(sock);
    }
    let _ = std::fs::remove_file(&vars);
    if seconds == 0.0 {
        seconds = start.elapsed().as_secs_f64();
    }
    std::fs::write(log, all.join("\n") + "\n")
        .with_context(|| format!("writing {}", log.display()))?;
    Ok(BootOutcome {
        ready,
        seconds,
        failure,
        tail: all.iter().rev().take(40).rev().cloned().collect(),
        log: log.to_path_buf(),
        login: logged_in,
        agent,
    })
}

/// Ask the guest agent while the console is still read: a fatal line or QEMU's exit ends the
/// wait, and the console log misses nothing of this part of the boot.
fn agent_phase(
    sock: &Path,
    watch: &mut Watch<'_>,
    timeout: Duration,
) -> std::result::Result<super::agent::Agent, Failure> {
    let start = watch.start;
    let deadline = Instant::now() + timeout.saturating_sub(start.elapsed()).max(MIN_AGENT);
    let stop = AtomicBool::new(false);
    let answer = watch.beside(&stop, || super::agent::query(sock, start, deadline, &stop));
    match (answer, watch.fatal.take()) {
        (Some(Ok(a)), _) => Ok(a),
        (_, Some((f, _, _))) => Err(f),
        (Some(Err(detail)), None) => Err(Failure::Agent { detail }),
        (None, None) => Err(Failure::Agent {
            detail: "the agent thread panicked".into(),
        }),
    }
}

/// The console after the ready line, read while something else goes on (the login, the guest
/// agent): each line goes to the log and the classifier, and the first fatal line (or QEMU's
/// exit) is kept with when it came.
struct Watch<'a> {
    rx: &'a mpsc::Receiver<ConsoleEvent>,
    console: &'a mut Console,
    all: &'a mut Vec<String>,
    start: Instant,
    /// The failure, its second since QEMU started, and when it was seen.
    fatal: Option<(Failure, f64, Instant)>,
}

impl Watch<'_> {
    /// One console line (or none within `wait`); false once the console has closed.
    fn read(&mut self, wait: Duration) -> bool {
        match self.rx.recv_timeout(wait) {
            Ok(ConsoleEvent::Line(line)) => {
                let at = self.start.elapsed().as_secs_f64();
                self.all.push(format!("[{at:8.3}] {line}"));
                if let (Seen::Fatal(f), None) = (self.console.feed(&line, at), &self.fatal) {
                    self.fatal = Some((f, at, Instant::now()));
                }
                true
            }
            Ok(ConsoleEvent::Closed) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                if self.fatal.is_none() {
                    let at = self.start.elapsed().as_secs_f64();
                    self.fatal = Some((self.console.exited(), at, Instant::now()));
                }
                std::thread::sleep(wait);
                false
            }
            Ok(ConsoleEvent::Partial(_)) | Err(mpsc::RecvTimeoutError::Timeout) => true,
        }
    }

    /// Run `job` on a thread of its own while the console is read; `stop` (which the job
    /// watches) is set a few seconds after a fatal line, for the report's tail, or at once
    /// when QEMU has exited. `None` when the job panicked.
    fn beside<T: Send>(&mut self, stop: &AtomicBool, job: impl FnOnce() -> T + Send) -> Option<T> {
        std::thread::scope(|s| {
            let h = s.spawn(job);
            while !h.is_finished() {
                let open = self.read(Duration::from_millis(200));
                if self
                    .fatal
                    .as_ref()
                    .is_some_and(|f| !open || f.2.elapsed() > AFTER_FATAL)
                {
                    stop.store(true, Ordering::SeqCst);
                }
            }
            h.join().ok()
        })
    }
}

/// The login after the ready line (or as the readiness).
struct Phase<'a> {
    seed: &'a super::cloud::Seed,
    port: u16,
    work: &'a Path,
    start: Instant,
    timeout: Duration,
}

impl Phase<'_> {
    /// Log in while the console is still read: the guest prints its host keys meanwhile, and
    /// a fatal line or QEMU's exit ends the login at once. Then the key the guest presented
    /// must be one its console printed. On failure, also the seconds at which it was seen.
    fn run(
        &self,
        watch: &mut Watch<'_>,
        by_login: bool,
    ) -> std::result::Result<super::cloud::Login, (Failure, f64)> {
        let start = self.start;
        let left = self
            .timeout
            .saturating_sub(start.elapsed())
            .max(if by_login { Duration::ZERO } else { MIN_LOGIN });
        let deadline = Instant::now() + left;
        let stop = AtomicBool::new(false);
        let outcome = watch.beside(&stop, || {
            super::cloud::login(self.seed, self.port, self.work, start, deadline, &stop)
        });
        // Whatever the console still has to say about the keys.
        let settle = Instant::now() + Duration::from_secs(2);
        while Instant::now() < settle {
            if !watch.read(Duration::from_millis(200)) {
                break;
            }
        }
        let fatal = watch.fatal.take().map(|(f, at, _)| (f, at));
        let fail = |step: &str, detail: String| {
            (
                Failure::Login {
                    step: step.to_string(),
                    detail,
                },
                start.elapsed().as_secs_f64(),
            )
        };
        let l = match outcome {
            Some(Ok(l)) => l,
            Some(Err((step, detail))) => {
                if let Some(f) = fatal {
                    return Err(f);
                }
                let connected =
                    !step.starts_with("ssh connection") && !step.starts_with("ssh authentication");
                if by_login && !connected {
                    return Err((
                        Failure::NoLogin {
                            seconds: self.timeout.as_secs(),
                            step,
                            detail,
                        },
                        start.elapsed().as_secs_f64(),
                    ));
                }
                return Err(fail(&step, detail));
            }
            None => return Err(fail("ssh client", "the login thread panicked".into())),
        };
        let printed = super::cloud::console_host_keys(watch.all.iter().map(String::as_str));
        if self.seed.cloud_init && !printed.contains(&l.host_key) {
            return Err(fail(
                "host key",
                format!(
                    "the guest presented {} but its console printed {}",
                    l.host_key,
                    if printed.is_empty() {
                        "no host key fingerprints".to_string()
                    } else {
                        printed.join(", ")
                    }
                ),
            ));
        }
        Ok(l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prompt_that_never_ends_its_line_still_reaches_the_reader() {
        // A getty prompt: a line, then `login: ` with no newline, then silence.
        let child = std::process::Command::new("sh")
            .args([
                "-c",
                "printf 'Debian 12 host ttyS0\\r\\n\\nhost login: '; exec sleep 30",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut child = qemu::KillOnDrop(child);
        let rx = console_lines(&mut child).unwrap();
        let mut seen = Vec::new();
        while let Ok(e) = rx.recv_timeout(Duration::from_secs(3)) {
            let partial = matches!(e, ConsoleEvent::Partial(_));
            seen.push(e);
            if partial {
                break;
            }
        }
        assert_eq!(
            seen,
            [
                ConsoleEvent::Line("Debian 12 host ttyS0".into()),
                ConsoleEvent::Line(String::new()),
                ConsoleEvent::Partial("host login: ".into()),
            ]
        );
        // Killed: the unfinished line is kept as the last line, then the console closes.
        drop(child);
        let rest: Vec<ConsoleEvent> = rx.iter().collect();
        assert_eq!(
            rest,
            [
                ConsoleEvent::Line("host login: ".into()),
                ConsoleEvent::Closed
            ]
        );
    }
}
