//! Booting a cloud template the way a platform starts it: a NoCloud seed (a FAT volume
//! labelled `cidata` holding `user-data`, `meta-data` and optional `network-config`) on a
//! second drive, a throwaway ed25519 key whose public half the seed installs, and, once the
//! guest is ready, a login with the OpenSSH client through a port QEMU forwards from
//! 127.0.0.1 to the guest's port 22. The login runs `hostname` and `cloud-init status --wait`;
//! the host key the guest presents must be one its console printed.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The account the boot test adds through the seed and logs in as.
pub const USER: &str = "ingot-test";

/// What the user gave for the seed (`--user-data`, `--meta-data`, `--network-config`).
#[derive(Debug, Clone, Default)]
pub struct SeedInput {
    /// `#cloud-config` (or any user-data cloud-init reads).
    pub user_data: Option<PathBuf>,
    /// NoCloud meta-data (`instance-id`, `local-hostname`).
    pub meta_data: Option<PathBuf>,
    /// Network configuration (version 1 or 2).
    pub network_config: Option<PathBuf>,
}

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
    /// The hostname the meta-data asks for.
    pub hostname: String,
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
}

impl Needs {
    /// For an image's manifest.
    pub fn of(m: &crate::image_dir::Manifest) -> Needs {
        let seed = m.contents.contains_key("cloud-init");
        Needs {
            seed,
            login: seed && m.contents.contains_key("openssh-server"),
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

fn read_input(p: &Option<PathBuf>, what: &str) -> Result<Option<String>> {
    p.as_ref()
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("{what} {}", p.display())))
        .transpose()
}

/// `local-hostname:` of a NoCloud meta-data text (YAML; the simple `key: value` form).
pub fn meta_hostname(meta: &str) -> Option<String> {
    meta.lines().find_map(|l| {
        let v = l.trim().strip_prefix("local-hostname:")?;
        let v = v.trim().trim_matches(['"', '\'']);
        (!v.is_empty()).then(|| v.to_string())
    })
}

/// The boot test's own cloud-config: the login account with the throwaway key, allowed sudo
/// without a password so `--check` commands can look anywhere (the boot's disk is a
/// throwaway overlay).
fn own_part(public_key: &str, user: &str) -> String {
    format!(
        "#cloud-config\n# Added by ingot boot-test: the account its SSH login uses.\nmerge_how:\n  - name: list\n    settings: [append]\n  - name: dict\n    settings: [no_replace, recurse_list]\nusers:\n  - default\n  - name: {user}\n    shell: /bin/sh\n    lock_passwd: true\n    sudo: \"ALL=(ALL) NOPASSWD:ALL\"\n    ssh_authorized_keys:\n      - {}\n",
        public_key.trim()
    )
}

/// The seed's user-data: the boot test's own cloud-config alone, or the user's first and ours
/// after it in a MIME multipart, merged by appending (so the user's `users` stay).
pub fn user_data(user: Option<&str>, public_key: &str, account: &str) -> String {
    let ours = own_part(public_key, account);
    let Some(theirs) = user else {
        return ours;
    };
    let boundary = "==INGOT-BOOT-TEST-SEED==";
    let kind = |text: &str| {
        if text.starts_with("#cloud-config") {
            "text/cloud-config"
        } else if text.starts_with("#!") {
            "text/x-shellscript"
        } else if text.starts_with("#cloud-boothook") {
            "text/cloud-boothook"
        } else {
            "text/plain"
        }
    };
    format!(
        "Content-Type: multipart/mixed; boundary=\"{boundary}\"\nMIME-Version: 1.0\n\n--{boundary}\nContent-Type: {}; charset=\"utf-8\"\nMIME-Version: 1.0\n\n{theirs}\n--{boundary}\nContent-Type: text/cloud-config; charset=\"utf-8\"\nMIME-Version: 1.0\n\n{ours}\n--{boundary}--\n",
        kind(theirs)
    )
}

/// Make the run's seed in `work`: a throwaway key (ssh-keygen), the user-data and meta-data
/// (the user's, with the account `user` and the key added), on a FAT volume labelled `cidata`.
/// `user` is one [`valid_user`] accepts (the caller checks it once, before any boot).
pub fn make_seed(work: &Path, input: &SeedInput, image_name: &str, user: &str) -> Result<Seed> {
    let key = work.join("ssh-key");
    let _ = std::fs::remove_file(&key);
    let _ = std::fs::remove_file(key.with_extension("pub"));
    let out = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "ingot-boot-test",
            "-f",
        ])
        .arg(&key)
        .stdin(Stdio::null())
        .output()
        .context("running ssh-keygen (install the Debian package openssh-client)")?;
    if !out.status.success() {
        bail!(
            "ssh-keygen failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let public = std::fs::read_to_string(key.with_extension("pub"))
        .with_context(|| format!("reading {}.pub", key.display()))?;
    let user_text = read_input(&input.user_data, "--user-data")?;
    let meta = read_input(&input.meta_data, "--meta-data")?;
    let network = read_input(&input.network_config, "--network-config")?;
    let default_host = format!("ingot-{}", image_name.replace(['_', '.'], "-"));
    let meta = meta.unwrap_or_else(|| {
        format!(
            "instance-id: ingot-boot-test-{}\nlocal-hostname: {default_host}\n",
            std::process::id()
        )
    });
    let hostname = meta_hostname(&meta).unwrap_or(default_host);
    let mut tree = crate::tree::Tree::new();
    let mut add = |name: &str, text: &str| {
        tree.insert(
            name,
            crate::tree::Entry::file(text.as_bytes().to_vec(), 0o644),
        )
        .with_context(|| format!("seed file {name}"))
    };
    add("user-data", &user_data(user_text.as_deref(), &public, user))?;
    add("meta-data", &meta)?;
    if let Some(n) = &network {
        add("network-config", n)?;
    }
    let image = work.join("seed-cidata.img");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&image)
        .with_context(|| format!("creating {}", image.display()))?;
    f.set_len(8 << 20)?;
    crate::fs::fat::write(&f, &tree, 0x1c1d_a7a0, "cidata", 0)
        .with_context(|| format!("writing the seed {}", image.display()))?;
    Ok(Seed {
        image: Some(image),
        key,
        user: user.to_string(),
        cloud_init: true,
        hostname,
        checks: Vec::new(),
    })
}

/// A login with a key the image already trusts (`--ssh-key`): no seed. The caller has checked
/// the user name ([`valid_user`]) and that the key file exists.
pub fn with_key(key: &Path, user: &str, cloud_init: bool) -> Seed {
    Seed {
        image: None,
        key: key.to_path_buf(),
        user: user.to_string(),
        cloud_init,
        hostname: String::new(),
        checks: Vec::new(),
    }
}

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
        let command = if seed.cloud_init {
            "hostname; cloud-init status --wait"
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
        let mut lines = out.lines();
        let hostname = lines.next().unwrap_or("").trim().to_string();
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
        // Diagnostics only: a guest that cannot say does not fail the boot.
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(30))
            .min(Duration::from_secs(120));
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
    fn the_users_data_comes_first_and_ours_appends() {
        assert!(user_data(None, "ssh-ed25519 AAAA k\n", USER).starts_with("#cloud-config\n"));
        assert!(user_data(None, "k", "debian").contains("  - name: debian\n"));
        let u = user_data(
            Some("#cloud-config\nusers:\n  - name: alice\n"),
            "ssh-ed25519 AAAA k",
            USER,
        );
        let alice = u.find("name: alice").unwrap();
        let ours = u.find(&format!("name: {USER}")).unwrap();
        assert!(alice < ours, "{u}");
        assert!(u.contains("Content-Type: text/cloud-config"));
        assert!(u.contains("settings: [append]"));
        let s = user_data(Some("#!/bin/sh\necho hi\n"), "k", USER);
        assert!(s.contains("Content-Type: text/x-shellscript"));
    }

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
    fn hostnames_and_fingerprints_are_read_as_the_guest_wrote_them() {
        assert_eq!(
            meta_hostname("instance-id: a\nlocal-hostname: 'web-1'\n").as_deref(),
            Some("web-1")
        );
        assert_eq!(meta_hostname("instance-id: a\n"), None);
        let console = "[  90.1] <14>Dec  2 15:46:39 cloud-init: -----BEGIN SSH HOST KEY FINGERPRINTS-----\n[  90.2] <14>Dec  2 15:46:40 cloud-init: 256 SHA256:BaLW1 root@h (ECDSA)\n[  90.3] <14>Dec  2 15:46:40 cloud-init: 256 SHA256:wsH/3 root@h (ED25519)\n[  90.4] <14>Dec  2 15:46:40 cloud-init: -----END SSH HOST KEY FINGERPRINTS-----\n[  91.0] SHA256:notakey outside\n";
        assert_eq!(
            console_host_keys(console.lines()),
            ["SHA256:BaLW1", "SHA256:wsH/3"]
        );
    }
}
