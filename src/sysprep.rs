//! Sysprep: strip per-machine identity and state (after virt-sysprep's default operations) and
//! scan the final tree for secrets.

use anyhow::Result;
use serde::Serialize;

use crate::config::{InitSystem, Profile};
use crate::tree::{Entry, Kind, Tree};

/// The virt-sysprep operations Ingot performs, and how.
pub const OPERATIONS: &[(&str, &str)] = &[
    ("machine-id", "/etc/machine-id emptied (`uninitialized` when a systemd unit of the image runs only on a first boot); /var/lib/dbus/machine-id removed"),
    ("ssh-hostkeys", "/etc/ssh/ssh_host_* removed; created at first boot"),
    ("ssh-userdir", "root's ~/.ssh removed (profile users' authorized_keys are intended and kept)"),
    ("logfiles", "files under /var/log removed (the directories packages ship stay)"),
    ("tmp-files", "/tmp and /var/tmp emptied"),
    ("bash-history", "*/.bash_history removed"),
    ("zsh-history", "*/.zsh_history removed"),
    ("backup-files", "*~ and *.bak under /etc removed"),
    ("passwd-backups", "/etc/passwd-, group-, shadow-, gshadow- removed"),
    ("package-manager-cache", "files under /var/cache/apt and /var/lib/apt/lists removed"),
    ("dhcp-client-state", "files under /var/lib/dhcp removed"),
    ("utmp", "/var/run/utmp, /var/log/wtmp, btmp, lastlog removed"),
    ("udev-persistent-net", "/etc/udev/rules.d/70-persistent-net.rules removed"),
    ("net-hostname", "/etc/hostname empty"),
    ("crash-data", "files under /var/crash removed"),
    ("mail-spool", "files under /var/spool/mail and /var/mail removed"),
    ("cron-spool", "files under /var/spool/cron removed (crontabs/ stays)"),
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
/// Emptied whole.
const EMPTY_DIRS: &[&str] = &["tmp", "var/tmp"];
/// State and logs: their files are removed, their directories kept. Packages ship directories
/// here that their programs expect and do not create (`/var/log/nginx`, cron's
/// `/var/spool/cron/crontabs`); their maintainer scripts, which Ingot does not run, never
/// remove them either.
const EMPTY_OF_FILES: &[&str] = &[
    "var/log",
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
    for d in EMPTY_OF_FILES {
        if tree.get(d).is_some_and(|e| e.kind == Kind::Dir) && tree.remove_files_below(d) > 0 {
            removed.push(format!("/{d}/**"));
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
    // Empty: every machine started from the image makes its own id at its first start (busybox
    // rcS, or systemd before any unit). For systemd, `uninitialized` would also make that start
    // a "first boot", and on a first boot systemd 252 applies the preset policy to every unit
    // file before loading any unit: with Ingot's `disable *` preset that enables nothing, yet
    // it held up vm-base's TCG boot by 1.0-1.4 s (GeneratorsFinish to UnitsLoadStart) and made
    // the unit load itself 0.5 s longer. Kept only when a unit of the image waits for a first
    // boot (`ConditionFirstBoot=`), which then still fires.
    let mid = match profile.init {
        InitSystem::Systemd if first_boot_unit(tree).is_some() => "uninitialized\n",
        InitSystem::Systemd | InitSystem::Busybox => "",
    };
    tree.insert("etc/machine-id", Entry::file(mid, 0o444))?;
    tree.insert("etc/hostname", Entry::file("", 0o644))?;
    Ok(removed)
}

/// systemd's own units whose first-boot condition changes nothing in an Ingot image: a point
/// other units order against, and the interactive first-boot prompt (masked).
const INERT_FIRST_BOOT_UNITS: &[&str] =
    &["first-boot-complete.target", "systemd-firstboot.service"];

/// The first unit file or drop-in of the tree that runs (or asserts) only on a first boot.
fn first_boot_unit(tree: &Tree) -> Option<String> {
    const UNIT_DIRS: &[&str] = &[
        "etc/systemd/system/",
        "usr/local/lib/systemd/system/",
        "usr/lib/systemd/system/",
        "lib/systemd/system/",
    ];
    tree.iter().find_map(|(p, e)| {
        if !UNIT_DIRS.iter().any(|d| p.starts_with(d)) {
            return None;
        }
        if INERT_FIRST_BOOT_UNITS.contains(&p.rsplit('/').next()?) {
            return None;
        }
        let Kind::File(c) = &e.kind else {
            return None;
        };
        let text = c.read_all().ok()?;
        String::from_utf8_lossy(&text)
            .lines()
            .map(str::trim_start)
            .any(|l| l.starts_with("ConditionFirstBoot=") || l.starts_with("AssertFirstBoot="))
            .then(|| format!("/{p}"))
    })
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

/// Longest pattern (and AWS key id) minus one: the bytes kept between chunks, so a secret that
/// straddles two chunks is still seen.
const OVERLAP: usize = 64;
/// Bytes read at a time: files of any size are scanned in bounded memory.
const CHUNK: usize = 4 << 20;

/// The kinds of secret found in a stream, each once, in pattern order.
pub fn scan_stream(mut r: impl std::io::Read) -> std::io::Result<Vec<&'static str>> {
    let mut found: Vec<&'static str> = Vec::new();
    let mut buf = vec![0u8; CHUNK + OVERLAP];
    let mut kept = 0usize;
    loop {
        let n = r.read(&mut buf[kept..])?;
        if n == 0 {
            break;
        }
        let window = &buf[..kept + n];
        for (pat, kind) in PATTERNS {
            if !found.contains(kind) && window.windows(pat.len()).any(|w| w == *pat) {
                found.push(kind);
            }
        }
        if !found.contains(&"AWS access key id") && aws_key_id(window) {
            found.push("AWS access key id");
        }
        let keep = window.len().min(OVERLAP);
        let from = window.len() - keep;
        buf.copy_within(from..from + keep, 0);
        kept = keep;
    }
    // Report in a stable order: patterns first, then the key id.
    found.sort_by_key(|k| {
        PATTERNS
            .iter()
            .position(|(_, n)| n == k)
            .unwrap_or(PATTERNS.len())
    });
    Ok(found)
}

/// Scan every regular file, whatever its size (streamed), for secrets: everything Ingot or the
/// profile placed, and package files under /etc, /root, /home, /var, /srv and /opt.
/// Allow-listed paths from the profile are skipped.
pub fn scan(tree: &Tree, allow: &[String]) -> Result<Vec<Finding>> {
    let mut out = Vec::new();
    for (p, e) in tree.iter() {
        let Kind::File(c) = &e.kind else { continue };
        let abs = format!("/{p}");
        if allow.contains(&abs) {
            continue;
        }
        // Debian ships test keys in documentation and Python test suites; only files Ingot or the
        // profile placed, and anything under /etc, /root, /home, /var, /srv, /opt are scanned.
        let from_package = !e.origin.is_empty() && !e.origin.starts_with("ingot:");
        let sensitive = ["etc/", "root/", "home/", "var/", "srv/", "opt/"]
            .iter()
            .any(|d| p.starts_with(d));
        if from_package && !sensitive {
            continue;
        }
        for kind in scan_stream(c.reader()?)? {
            out.push(Finding {
                path: abs.clone(),
                kind: kind.into(),
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
        // ssl-cert's key, made at first boot (`assemble::postinst::SNAKEOIL`).
        "etc/ssl/private/ssl-cert-snakeoil.key",
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
    fn machine_id_is_uninitialized_only_when_a_unit_waits_for_a_first_boot() {
        let profile = |init: &str| {
            crate::config::profile_from_str(
                std::path::Path::new("p.toml"),
                &format!("init = \"{init}\"\n[image]\nname = \"p\"\nversion = \"1.0.0\"\n[distribution]\nsuite = \"bookworm\"\n"),
            )
            .unwrap()
        };
        let mid = |t: &Tree| t.read("etc/machine-id").unwrap();
        let mut t = Tree::new();
        // systemd's own first-boot units change nothing: the id file is empty.
        for (p, c) in [
            (
                "usr/lib/systemd/system/first-boot-complete.target",
                "[Unit]\nConditionFirstBoot=yes\n",
            ),
            (
                "usr/lib/systemd/system/systemd-firstboot.service",
                "[Unit]\nConditionFirstBoot=yes\n",
            ),
            (
                "usr/lib/systemd/system/ssh.service",
                "[Unit]\nDescription=ssh\n",
            ),
            ("etc/machine-id", "4f0c3a0d9d6e4c0f8a1b2c3d4e5f6a7b\n"),
        ] {
            t.insert(p, Entry::file(c, 0o644)).unwrap();
        }
        strip(&mut t, &profile("systemd")).unwrap();
        assert_eq!(mid(&t), b"");
        // A profile's unit (or drop-in) that runs once per machine keeps first-boot semantics.
        for p in [
            "etc/systemd/system/enroll.service",
            "usr/lib/systemd/system/ssh.service.d/once.conf",
        ] {
            let mut u = t.clone();
            u.insert(p, Entry::file("[Unit]\n  ConditionFirstBoot=yes\n", 0o644))
                .unwrap();
            assert_eq!(
                first_boot_unit(&u).as_deref(),
                Some(format!("/{p}").as_str())
            );
            strip(&mut u, &profile("systemd")).unwrap();
            assert_eq!(mid(&u), b"uninitialized\n", "{p}");
            // busybox init has no such notion: always empty.
            strip(&mut u, &profile("busybox")).unwrap();
            assert_eq!(mid(&u), b"");
        }
    }

    #[test]
    fn logs_and_spools_lose_their_files_but_keep_the_directories_packages_ship() {
        let mut t = Tree::new();
        for (p, mode) in [
            ("var/log/nginx", 0o755),
            ("var/spool/cron/crontabs", 0o1730),
            ("tmp/build", 0o755),
        ] {
            t.insert(p, Entry::dir(mode)).unwrap();
        }
        for p in [
            "var/log/nginx/error.log",
            "var/log/dpkg.log",
            "var/spool/cron/crontabs/root",
            "tmp/build/x",
        ] {
            t.insert(p, Entry::file("x", 0o644)).unwrap();
        }
        let p = crate::config::profile_from_str(
            std::path::Path::new("p.toml"),
            "[image]\nname = \"p\"\nversion = \"1.0.0\"\n[distribution]\nsuite = \"bookworm\"\n",
        )
        .unwrap();
        let removed = strip(&mut t, &p).unwrap();
        for gone in [
            "var/log/nginx/error.log",
            "var/log/dpkg.log",
            "var/spool/cron/crontabs/root",
            "tmp/build",
        ] {
            assert!(t.get(gone).is_none(), "{gone} survived");
        }
        assert!(t.get("var/log/nginx").is_some_and(|e| e.kind == Kind::Dir));
        let crontabs = t.get("var/spool/cron/crontabs").unwrap();
        assert!(crontabs.kind == Kind::Dir && crontabs.mode == 0o1730);
        assert!(removed.contains(&"/var/log/**".to_string()), "{removed:?}");
    }

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

    #[test]
    fn a_key_padded_past_any_size_or_split_across_chunks_is_found() {
        // A private key after 20 MiB of padding (the old scan skipped files over 16 MiB).
        let mut padded = vec![b' '; 20 << 20];
        padded.extend_from_slice(b"-----BEGIN OPENSSH PRIVATE KEY-----\n");
        let mut t = Tree::new();
        t.insert("etc/padded", Entry::file(padded, 0o600)).unwrap();
        let f = scan(&t, &[]).unwrap();
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].kind, "OpenSSH private key");
        // A pattern straddling the chunk boundary.
        for at in [CHUNK - 10, CHUNK - 1, CHUNK + OVERLAP - 5] {
            let mut d = vec![b'.'; at];
            d.extend_from_slice(b"-----BEGIN PRIVATE KEY-----");
            d.extend_from_slice(&[b'.'; 100]);
            assert_eq!(
                scan_stream(&d[..]).unwrap(),
                vec!["PEM PKCS#8 private key"],
                "at {at}"
            );
        }
        assert!(scan_stream(&b"nothing here"[..]).unwrap().is_empty());
    }
}
