//! Sysprep: strip per-machine identity and state (after virt-sysprep's default operations) and
//! scan the final tree for secrets.

use anyhow::Result;
use serde::Serialize;

use crate::config::{InitSystem, Profile};
use crate::tree::{Entry, Kind, Tree};

/// The virt-sysprep operations Ingot performs, and how.
pub const OPERATIONS: &[(&str, &str)] = &[
    ("machine-id", "/etc/machine-id emptied (busybox) or `uninitialized` (systemd first boot); /var/lib/dbus/machine-id removed"),
    ("ssh-hostkeys", "/etc/ssh/ssh_host_* removed; created at first boot"),
    ("ssh-userdir", "root's ~/.ssh removed (profile users' authorized_keys are intended and kept)"),
    ("logfiles", "/var/log contents removed"),
    ("tmp-files", "/tmp and /var/tmp emptied"),
    ("bash-history", "*/.bash_history removed"),
    ("zsh-history", "*/.zsh_history removed"),
    ("backup-files", "*~ and *.bak under /etc removed"),
    ("passwd-backups", "/etc/passwd-, group-, shadow-, gshadow- removed"),
    ("package-manager-cache", "/var/cache/apt, /var/lib/apt/lists emptied"),
    ("dhcp-client-state", "/var/lib/dhcp emptied"),
    ("utmp", "/var/run/utmp, /var/log/wtmp, btmp, lastlog removed"),
    ("udev-persistent-net", "/etc/udev/rules.d/70-persistent-net.rules removed"),
    ("net-hostname", "/etc/hostname empty"),
    ("crash-data", "/var/crash emptied"),
    ("mail-spool", "/var/spool/mail, /var/mail emptied"),
    ("cron-spool", "/var/spool/cron emptied"),
    ("random-seed", "/var/lib/systemd/random-seed, credential.secret removed"),
    ("machine-info", "/etc/machine-info removed"),
];

const REMOVE_FILES: &[&str] = &[
    "var/lib/dbus/machine-id",
    "var/lib/systemd/random-seed",
    "var/lib/systemd/credential.secret",
    "etc/machine-info",
    "etc/passwd-",
    "etc/group-",
    "etc/shadow-",
    "etc/gshadow-",
    "var/run/utmp",
    "var/log/wtmp",
    "var/log/btmp",
    "var/log/lastlog",
    "etc/udev/rules.d/70-persistent-net.rules",
    "root/.ssh",
];
const EMPTY_DIRS: &[&str] = &[
    "var/log",
    "tmp",
    "var/tmp",
    "var/cache/apt",
    "var/lib/apt/lists",
    "var/lib/dhcp",
    "var/crash",
    "var/spool/mail",
    "var/mail",
    "var/spool/cron",
];

/// Strip identity and state. Returns the paths removed.
pub fn strip(tree: &mut Tree, profile: &Profile) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for p in REMOVE_FILES {
        if tree.remove(p) > 0 {
            removed.push(format!("/{p}"));
        }
    }
    for d in EMPTY_DIRS {
        if tree.get(d).is_some() && tree.clear_dir(d) > 0 {
            removed.push(format!("/{d}/*"));
        }
    }
    let doomed: Vec<String> = tree
        .iter()
        .filter(|(p, _)| {
            let name = p.rsplit('/').next().unwrap_or(p);
            (p.starts_with("etc/ssh/ssh_host_") && p.contains("_key"))
                || name == ".bash_history"
                || name == ".zsh_history"
                || (p.starts_with("etc/") && (name.ends_with('~') || name.ends_with(".bak")))
        })
        .map(|(p, _)| p.clone())
        .collect();
    for p in doomed {
        tree.remove(&p);
        removed.push(format!("/{p}"));
    }
    let mid = match profile.init {
        InitSystem::Systemd => "uninitialized\n",
        InitSystem::Busybox => "",
    };
    tree.insert("etc/machine-id", Entry::file(mid, 0o444))?;
    tree.insert("etc/hostname", Entry::file("", 0o644))?;
    Ok(removed)
}

/// A secret found in the tree.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Finding {
    /// Path in the image.
    pub path: String,
    /// What it looks like.
    pub kind: String,
}

const PATTERNS: &[(&[u8], &str)] = &[
    (b"-----BEGIN RSA PRIVATE KEY-----", "PEM RSA private key"),
    (b"-----BEGIN EC PRIVATE KEY-----", "PEM EC private key"),
    (b"-----BEGIN DSA PRIVATE KEY-----", "PEM DSA private key"),
    (b"-----BEGIN PRIVATE KEY-----", "PEM PKCS#8 private key"),
    (
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----",
        "PEM encrypted private key",
    ),
    (
        b"-----BEGIN OPENSSH PRIVATE KEY-----",
        "OpenSSH private key",
    ),
    (
        b"-----BEGIN PGP PRIVATE KEY BLOCK-----",
        "OpenPGP private key",
    ),
    (b"aws_secret_access_key", "AWS credentials"),
    (
        b"\"type\": \"service_account\"",
        "cloud service-account key",
    ),
    (
        b"untrusted comment: minisign encrypted secret key",
        "minisign secret key",
    ),
];

fn aws_key_id(data: &[u8]) -> bool {
    data.windows(20).any(|w| {
        w.starts_with(b"AKIA")
            && w[4..]
                .iter()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    })
}

/// Scan every regular file under 16 MiB (package files too) for secrets. Allow-listed paths
/// from the profile are skipped.
pub fn scan(tree: &Tree, allow: &[String]) -> Result<Vec<Finding>> {
    let mut out = Vec::new();
    for (p, e) in tree.iter() {
        let Kind::File(c) = &e.kind else { continue };
        let abs = format!("/{p}");
        if c.len() > 16 << 20 || allow.contains(&abs) {
            continue;
        }
        // Debian ships test keys in documentation and Python test suites; only files Ingot or the
        // profile placed, and anything under /etc, /root, /home, /var, /srv, /opt are scanned in full.
        let from_package = !e.origin.is_empty() && !e.origin.starts_with("ingot:");
        let sensitive = ["etc/", "root/", "home/", "var/", "srv/", "opt/"]
            .iter()
            .any(|d| p.starts_with(d));
        if from_package && !sensitive {
            continue;
        }
        let data = c.read_all()?;
        for (pat, kind) in PATTERNS {
            if data.windows(pat.len()).any(|w| w == *pat) {
                out.push(Finding {
                    path: abs.clone(),
                    kind: (*kind).into(),
                });
            }
        }
        if aws_key_id(&data) {
            out.push(Finding {
                path: abs.clone(),
                kind: "AWS access key id".into(),
            });
        }
    }
    Ok(out)
}

/// Identity-bearing files and their state, for `ingot inspect`.
pub fn identity_report(tree: &Tree) -> Vec<(String, String)> {
    let mut v = Vec::new();
    let state = |p: &str| -> String {
        match tree.get(p) {
            None => "absent".into(),
            Some(Entry {
                kind: Kind::File(c),
                ..
            }) => {
                let d = c.read_all().unwrap_or_default();
                let t = String::from_utf8_lossy(&d).trim().to_string();
                if t.is_empty() {
                    "empty".into()
                } else if t == "uninitialized" {
                    "uninitialized (first boot)".into()
                } else {
                    format!("PRESENT ({} bytes)", d.len())
                }
            }
            Some(_) => "present (not a file)".into(),
        }
    };
    for p in [
        "etc/machine-id",
        "var/lib/dbus/machine-id",
        "etc/hostname",
        "var/lib/systemd/random-seed",
        "var/lib/systemd/credential.secret",
        "etc/machine-info",
    ] {
        v.push((format!("/{p}"), state(p)));
    }
    let keys = tree
        .iter()
        .filter(|(p, _)| p.starts_with("etc/ssh/ssh_host_"))
        .count();
    v.push((
        "/etc/ssh/ssh_host_*".into(),
        if keys == 0 {
            "absent".into()
        } else {
            format!("PRESENT ({keys} files)")
        },
    ));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_outside_allow_list() {
        let mut t = Tree::new();
        let mut e = Entry::file("x\n-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n", 0o600);
        e.origin = std::sync::Arc::from("ingot:overlay");
        t.insert("etc/app/id_ed25519", e.clone()).unwrap();
        t.insert("etc/app/allowed", e).unwrap();
        t.insert("etc/aws", Entry::file("key=AKIAABCDEFGHIJKLMNOP", 0o600))
            .unwrap();
        let f = scan(&t, &["/etc/app/allowed".into()]).unwrap();
        let paths: Vec<_> = f.iter().map(|x| x.path.as_str()).collect();
        assert_eq!(paths, vec!["/etc/app/id_ed25519", "/etc/aws"]);
    }
}
