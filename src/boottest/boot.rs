//! One boot: start QEMU on a private copy of the UEFI variables, read the serial console through
//! the classifier until the ready line, a fatal line (then three seconds more for context), QEMU's
//! exit, Ctrl-C or the timeout; write the timed console log; always kill the VM.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::console::{Console, Failure, Ready, Seen};
use crate::qemu::{self, VmSpec};

/// How long the console is still read after a fatal line, for the report's tail.
const AFTER_FATAL: Duration = Duration::from_secs(3);

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
}

/// How long a login may still take after the ready line, whatever is left of the timeout:
/// cloud-init's last stage often finishes after the guest's own check-in.
const MIN_LOGIN: Duration = Duration::from_secs(120);

/// A started VM's serial console (its stdout) and QEMU's own stderr (prefixed `[qemu]`) as
/// lines on one channel; `None` arrives when the console closes (QEMU exited).
pub fn console_lines(child: &mut qemu::KillOnDrop) -> Result<mpsc::Receiver<Option<String>>> {
    let stdout = child.0.stdout.take().context("QEMU has no stdout")?;
    let stderr = child.0.stderr.take().context("QEMU has no stderr")?;
    let (tx, rx) = mpsc::channel::<Option<String>>();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n') {
            let Ok(l) = line else { break };
            let s = String::from_utf8_lossy(&l).replace('\r', "");
            if tx.send(Some(s)).is_err() {
                return;
            }
        }
        let _ = tx.send(None);
    });
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx2.send(Some(format!("[qemu] {line}")));
        }
    });
    Ok(rx)
}

/// Boot once and wait for the ready line (or, with `pattern`, a console line it matches: a
/// foreign image's readiness). `work` holds this boot's variable store. With `login` (a seed
/// and the forwarded port in `spec`), log in over SSH after the ready line.
pub fn boot_once(
    spec: &VmSpec,
    timeout: Duration,
    log: &Path,
    work: &Path,
    pattern: Option<&regex::Regex>,
    login: Option<&super::cloud::Seed>,
) -> Result<BootOutcome> {
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
    loop {
        if crate::interrupt::requested() {
            failure = Some(Failure::Interrupted);
            break;
        }
        let wait = match (timeout.checked_sub(start.elapsed()), fatal_at) {
            (None, _) => {
                failure.get_or_insert_with(|| console.timeout(timeout.as_secs()));
                break;
            }
            (Some(_), Some(t)) if t.elapsed() > AFTER_FATAL => break,
            (Some(l), _) => l.min(Duration::from_millis(500)),
        };
        match rx.recv_timeout(wait) {
            Ok(Some(line)) => {
                let at = start.elapsed().as_secs_f64();
                // Host seconds since QEMU started: shows where a slow boot spends its time.
                all.push(format!("[{at:8.3}] {line}"));
                if pattern.is_some_and(|p| p.is_match(&line)) {
                    ready = Some(crate::boottest::console::Ready::matched(&line));
                    seconds = at;
                    break;
                }
                match console.feed(&line, at) {
                    Seen::Ready(r) => {
                        ready = Some(r);
                        seconds = at;
                        break;
                    }
                    Seen::Fatal(f) => {
                        failure = Some(f);
                        seconds = at;
                        fatal_at = Some(Instant::now());
                    }
                    Seen::Line => {}
                }
            }
            Ok(None) => {
                failure.get_or_insert(Failure::QemuExited);
                break;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let mut logged_in = None;
    if let (Some(seed), Some(port), Some(_), None) = (login, spec.ssh_port, &ready, &failure) {
        match login_phase(seed, port, work, start, timeout, &rx, &mut all) {
            Ok(l) => logged_in = Some(l),
            Err(f) => failure = Some(f),
        }
    }
    drop(child);
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
    })
}

/// Log in while the console is still read (the guest prints its host keys meanwhile); then
/// the key the guest presented must be one its console printed.
fn login_phase(
    seed: &super::cloud::Seed,
    port: u16,
    work: &Path,
    start: Instant,
    timeout: Duration,
    rx: &mpsc::Receiver<Option<String>>,
    all: &mut Vec<String>,
) -> std::result::Result<super::cloud::Login, Failure> {
    let left = timeout.saturating_sub(start.elapsed()).max(MIN_LOGIN);
    let deadline = Instant::now() + left;
    let read = |all: &mut Vec<String>, wait: Duration| match rx.recv_timeout(wait) {
        Ok(Some(line)) => all.push(format!("[{:8.3}] {line}", start.elapsed().as_secs_f64())),
        Ok(None) | Err(mpsc::RecvTimeoutError::Timeout) => {}
        // The console closed (QEMU exited): nothing more will come; do not spin.
        Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(wait),
    };
    let outcome = std::thread::scope(|s| {
        let h = s.spawn(|| super::cloud::login(seed, port, work, start, deadline));
        while !h.is_finished() {
            read(all, Duration::from_millis(200));
        }
        h.join()
    });
    // Whatever the console still has to say about the keys.
    let settle = Instant::now() + Duration::from_secs(2);
    while Instant::now() < settle {
        read(all, Duration::from_millis(200));
    }
    let fail = |step: &str, detail: String| Failure::Login {
        step: step.to_string(),
        detail,
    };
    let l = match outcome {
        Ok(Ok(l)) => l,
        Ok(Err((step, detail))) => return Err(fail(&step, detail)),
        Err(_) => return Err(fail("ssh client", "the login thread panicked".into())),
    };
    let printed = super::cloud::console_host_keys(all.iter().map(String::as_str));
    if seed.cloud_init && !printed.contains(&l.host_key) {
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
