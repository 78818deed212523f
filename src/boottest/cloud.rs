//! Booting a cloud template the way a platform starts it: a NoCloud seed on a second drive
//! (made in [`super::seed`]), a throwaway ed25519 key whose public half the seed installs, and,
//! once the guest is ready, a login with the OpenSSH client through a port QEMU forwards from
//! 127.0.0.1 to the guest's port 22. The login runs `cloud-init status --wait` and `hostname`:
//! cloud-init must be done and the name the seed's (when that can be told); the host key the
//! guest presents must be one its console printed.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// The account the boot test adds through the seed and logs in as.
pub const USER: &str = "ingot-test";

/// How to log in to a guest after its ready line, and the seed (if any) that made that
/// possible.
#[derive(Debug, Clone)]
pub struct Seed {
    /// The NoCloud seed's FAT volume; `None` when the key is already in the image (`--ssh-key`).
    pub image: Option<PathBuf>,
    /// The private key to log in with (the seed's throwaway one, or the user's).
    pub key: PathBuf,
    /// The account to log in as.
    pub user: String,
    /// Wait for `cloud-init status --wait` to say `done`, and then require the host key the
    /// guest presents to be one cloud-init printed on the console.
    pub cloud_init: bool,
    /// The short hostname the seed gives the machine, when it can be told for certain
    /// ([`super::seed::expected_hostname`]); the login fails when the guest calls itself
    /// otherwise.
    pub hostname: Option<String>,
    /// Commands to run over SSH after the login (`--check`); each must exit 0.
    pub checks: Vec<String>,
}

/// What a cloud-init image needs at boot, read from the packages its manifest lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// cloud-init: boot it with a NoCloud seed, as a platform would.
    pub seed: bool,
    /// cloud-init and OpenSSH: log in over SSH with the seed's key.
    pub login: bool,
    /// qemu-guest-agent: give it its channel and ask it who it is.
    pub agent: bool,
}

impl Needs {
    /// For an image's manifest.
    pub fn of(m: &crate::image_dir::Manifest) -> Needs {
        let seed = m.contents.contains_key("cloud-init");
        Needs {
            seed,
            login: seed && m.contents.contains_key("openssh-server"),
            agent: m.contents.contains_key("qemu-guest-agent"),
        }
    }
}

/// What a login found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Login {
    /// Seconds from QEMU's start to the first successful login.
    pub seconds: f64,
    /// `hostname` in the guest.
    pub hostname: String,
    /// `cloud-init status` in the guest (`done`).
    pub cloud_init: String,
    /// The SHA-256 fingerprint of the host key the guest presented.
    pub host_key: String,
    /// Each `--check` command and what it printed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<(String, String)>,
    /// Where a systemd guest's boot went: `systemd-analyze time`, `critical-chain` and the top
    /// of `blame`, read after the checks (empty when the guest has no systemd-analyze).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub analyze: String,
}

/// What the login runs after the checks to say where the boot's time went: systemd's own
/// account, once the boot has finished (bounded; nothing when the guest has no systemd).
const ANALYZE: &str = "command -v systemd-analyze >/dev/null || exit 0;      timeout 60 systemctl is-system-running --wait >/dev/null 2>&1;      systemd-analyze time --no-pager; echo;      systemd-analyze critical-chain --no-pager; echo;      systemd-analyze blame --no-pager | head -n 30";

/// A user name as useradd takes it, which also keeps it out of ssh's option parsing.
pub fn valid_user(u: &str) -> bool {
    !u.is_empty()
        && u.len() <= 32
        && !u.starts_with('-')
        && u.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// A free TCP port on 127.0.0.1 for QEMU to forward to the guest's SSH port.
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// One run of the OpenSSH client, killed after `limit` or once `stop` is set: (exit code,
/// stdout, stderr).
fn ssh(
    seed: &Seed,
    port: u16,
    known_hosts: &Path,
    command: &str,
    limit: Duration,
    stop: &AtomicBool,
) -> Result<(Option<i32>, String, String)> {
    let mut child = Command::new("ssh")
        .args(["-i"])
        .arg(&seed.key)
        .args([
            "-p",
            &port.to_string(),
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-o",
        ])
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args([
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "LogLevel=ERROR",
            &format!("{}@127.0.0.1", seed.user),
            command,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running ssh (install the Debian package openssh-client)")?;
    let guard = crate::interrupt::ChildGuard::new(child.id());
    let start = Instant::now();
    let code = loop {
        if let Some(st) = child.try_wait()? {
            break st.code();
        }
        if start.elapsed() > limit || crate::interrupt::requested() || stop.load(Ordering::SeqCst) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(guard);
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    Ok((code, out, err))
}

/// [`ssh`] once more, within `limit`, when the connection itself failed (exit 255 without an
/// authentication refusal): after the first login the guest's sshd can still reload (for
/// example once its RSA host key is made) and refuse a connection for a moment.
fn ssh_again(
    seed: &Seed,
    port: u16,
    known_hosts: &Path,
    command: &str,
    limit: Duration,
    stop: &AtomicBool,
) -> Result<(Option<i32>, String, String)> {
    let until = Instant::now() + limit;
    let mut tries = 0;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let r = ssh(seed, port, known_hosts, command, left, stop)?;
        tries += 1;
        let refused = r.0 == Some(255) && !r.2.contains("Permission denied");
        if !refused || tries >= 3 || left < Duration::from_secs(5) || stop.load(Ordering::SeqCst) {
            return Ok(r);
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Log in until it works, `deadline` or `stop` (the console saw the boot fail): the step that
/// failed last and its words on failure.
pub fn login(
    seed: &Seed,
    port: u16,
    work: &Path,
    started: Instant,
    deadline: Instant,
    stop: &AtomicBool,
) -> std::result::Result<Login, (String, String)> {
    let known_hosts = work.join(format!("known_hosts-{port}"));
    let _ = std::fs::remove_file(&known_hosts);
    let mut last = ("ssh connection".to_string(), "never tried".to_string());
    while Instant::now() < deadline
        && !crate::interrupt::requested()
        && !stop.load(Ordering::SeqCst)
    {
        let left = deadline.saturating_duration_since(Instant::now());
        // The name once cloud-init is done: its last stage runs the user's commands.
        let command = if seed.cloud_init {
            "cloud-init status --wait; hostname"
        } else {
            "hostname"
        };
        let r = ssh(seed, port, &known_hosts, command, left, stop);
        let (code, out, err) = match r {
            Ok(x) => x,
            Err(e) => return Err(("ssh client".into(), format!("{e:#}"))),
        };
        let err = err.trim().to_string();
        match code {
            Some(255) | None => {
                let step = if err.contains("Permission denied") {
                    "ssh authentication (the seed's key was refused)"
                } else {
                    "ssh connection"
                };
                last = (
                    step.to_string(),
                    if err.is_empty() {
                        "no answer".into()
                    } else {
                        err
                    },
                );
                std::thread::sleep(Duration::from_secs(2));
                continue;
            }
            _ => {}
        }
        let hostname = out
            .lines()
            .rfind(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_string();
        let status = out
            .lines()
            .find_map(|l| l.trim().strip_prefix("status:"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        if seed.cloud_init && status != "done" {
            return Err((
                "cloud-init status".into(),
                format!(
                    "`cloud-init status --wait` said `{}` (exit {:?}){}",
                    if status.is_empty() {
                        out.trim()
                    } else {
                        &status
                    },
                    code,
                    if err.is_empty() {
                        String::new()
                    } else {
                        format!(": {err}")
                    }
                ),
            ));
        }
        if let Some(want) = seed.hostname.as_deref() {
            if !hostname.eq_ignore_ascii_case(want) {
                return Err((
                    "hostname".into(),
                    format!(
                        "the guest calls itself `{hostname}`; the seed names it `{want}` (its meta-data's local-hostname, or the user-data's hostname or fqdn)"
                    ),
                ));
            }
        }
        let host_key = match host_key(&known_hosts) {
            Ok(k) => k,
            Err(e) => return Err(("host key".into(), format!("{e:#}"))),
        };
        let seconds = started.elapsed().as_secs_f64();
        let mut checks = Vec::new();
        for c in &seed.checks {
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_secs(30));
            let (code, out, err) = ssh_again(seed, port, &known_hosts, c, left, stop)
                .map_err(|e| ("ssh client".to_string(), format!("{e:#}")))?;
            if code != Some(0) {
                return Err((
                    format!("check `{c}`"),
                    format!(
                        "exit {}: {}",
                        code.map_or("(killed at the deadline)".into(), |c| c.to_string()),
                        format!("{}{}", out.trim(), err.trim()).trim()
                    ),
                ));
            }
            checks.push((c.clone(), out.trim().to_string()));
        }
        // Diagnostics only: a guest that cannot say does not fail the boot. On a loaded host
        // an emulated guest took over two minutes for `critical-chain` and `blame` once its
        // start-up had ended, so they get up to five.
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(30))
            .min(Duration::from_secs(300));
        let analyze = match ssh_again(seed, port, &known_hosts, ANALYZE, left, stop) {
            Ok((Some(0), out, _)) => out.trim_end().to_string(),
            // Said in the report, so a missing analysis explains itself.
            Ok((code, out, err)) => format!(
                "(systemd-analyze over SSH: exit {}: {})",
                code.map_or("none, killed at the deadline".into(), |c| c.to_string()),
                format!("{}{}", out.trim(), err.trim()).trim()
            ),
            Err(e) => format!("(systemd-analyze over SSH: {e:#})"),
        };
        return Ok(Login {
            seconds,
            hostname,
            cloud_init: status,
            host_key,
            checks,
            analyze,
        });
    }
    Err(last)
}

/// The SHA-256 fingerprint of the (one) key in a known_hosts file, by `ssh-keygen -l`.
fn host_key(known_hosts: &Path) -> Result<String> {
    let o = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(known_hosts)
        .output()
        .context("running ssh-keygen -l")?;
    let text = String::from_utf8_lossy(&o.stdout);
    text.split_whitespace()
        .find(|w| w.starts_with("SHA256:"))
        .map(str::to_string)
        .with_context(|| format!("no fingerprint in {}: {text}", known_hosts.display()))
}

/// The host key fingerprints a console printed between cloud-init's
/// `-----BEGIN SSH HOST KEY FINGERPRINTS-----` and `-----END …-----` lines.
pub fn console_host_keys<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut inside = false;
    let mut keys = Vec::new();
    for l in lines {
        if l.contains("-----BEGIN SSH HOST KEY FINGERPRINTS-----") {
            inside = true;
        } else if l.contains("-----END SSH HOST KEY FINGERPRINTS-----") {
            inside = false;
        } else if inside {
            keys.extend(
                l.split_whitespace()
                    .filter(|w| w.starts_with("SHA256:"))
                    .map(str::to_string),
            );
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_names_are_plain_user_names() {
        for good in ["debian", "ops_1", "a-b"] {
            assert!(valid_user(good), "{good}");
        }
        for bad in [
            "",
            "-oProxyCommand=x",
            "Root",
            "a b",
            "a@b",
            &"a".repeat(33),
        ] {
            assert!(!valid_user(bad), "{bad}");
        }
    }

    #[test]
    fn fingerprints_are_read_as_the_guest_wrote_them() {
        let console = "[  90.1] <14>Dec  2 15:46:39 cloud-init: -----BEGIN SSH HOST KEY FINGERPRINTS-----\n[  90.2] <14>Dec  2 15:46:40 cloud-init: 256 SHA256:BaLW1 root@h (ECDSA)\n[  90.3] <14>Dec  2 15:46:40 cloud-init: 256 SHA256:wsH/3 root@h (ED25519)\n[  90.4] <14>Dec  2 15:46:40 cloud-init: -----END SSH HOST KEY FINGERPRINTS-----\n[  91.0] SHA256:notakey outside\n";
        assert_eq!(
            console_host_keys(console.lines()),
            ["SHA256:BaLW1", "SHA256:wsH/3"]
        );
    }
}
