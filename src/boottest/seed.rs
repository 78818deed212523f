//! The NoCloud seed a cloud-init image boots with, as a platform would give it: a FAT volume
//! labelled `cidata` holding `user-data` (the user's, with the boot test's own account and
//! throwaway key merged in after it), `meta-data` and optional `network-config`; and the
//! hostname that seed gives the machine, for the login to check.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use super::cloud::Seed;

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

fn read_input(p: &Option<PathBuf>, what: &str) -> Result<Option<String>> {
    p.as_ref()
        .map(|p| {
            crate::base::fsx::read_to_string(p).with_context(|| format!("{what} {}", p.display()))
        })
        .transpose()
}

/// The most user-data a seed carries (its FAT volume is 8 MiB); clouds take far less.
const USER_DATA_MAX: usize = 4 << 20;

/// The user's user-data as cloud-init reads it: gzip'd data unpacked (cloud-init unpacks it
/// too, and the seed then says what kind of data it is), at most 4 MiB.
pub fn read_user_data(p: &Path) -> Result<Vec<u8>> {
    let what = || format!("--user-data {}", p.display());
    let raw = crate::base::fsx::read(p).with_context(what)?;
    let data = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(raw.as_slice())
            .take(USER_DATA_MAX as u64 + 1)
            .read_to_end(&mut out)
            .with_context(|| format!("{}: gzip data that does not unpack", what()))?;
        out
    } else {
        raw
    };
    if data.len() > USER_DATA_MAX {
        bail!(
            "{}: more than {} MiB of user-data",
            what(),
            USER_DATA_MAX >> 20
        );
    }
    Ok(data)
}

/// Check the seed's files before any boot: each readable, the user-data unpacks, the
/// meta-data and network configuration are text.
pub fn check_inputs(input: &SeedInput) -> Result<()> {
    if let Some(p) = &input.user_data {
        read_user_data(p)?;
    }
    read_input(&input.meta_data, "--meta-data")?;
    read_input(&input.network_config, "--network-config")?;
    Ok(())
}

/// A top-level key's value in a YAML document of the simple block form cloud-init's examples
/// use.
#[derive(Debug, PartialEq)]
enum Scalar {
    Absent,
    Plain(String),
    /// There, or perhaps there, in a form this reader does not follow (a flow mapping, a
    /// block or quoted-escape value, an anchor, a key given twice).
    Unsure,
}

fn top_level(doc: &str, key: &str) -> Scalar {
    let mut found = Scalar::Absent;
    for line in doc.lines() {
        let t = line.trim_end();
        if t.is_empty() || t.starts_with('#') || t.starts_with("---") || t.starts_with("...") {
            continue;
        }
        if t.starts_with(['{', '[', '?', '%', '"', '\'']) {
            // A flow mapping, a complex or quoted key: not followed here.
            if t.contains(key) {
                return Scalar::Unsure;
            }
            continue;
        }
        if line.starts_with([' ', '\t', '-']) {
            continue;
        }
        let Some(v) = t.strip_prefix(key).and_then(|r| r.strip_prefix(':')) else {
            continue;
        };
        if !matches!(found, Scalar::Absent) {
            return Scalar::Unsure;
        }
        let v = match v.find(" #") {
            Some(i) => &v[..i],
            None => v,
        }
        .trim();
        let quoted = |q: char| v.len() >= 2 && v.starts_with(q) && v.ends_with(q);
        found = if quoted('\'') || quoted('"') {
            let inner = &v[1..v.len() - 1];
            if inner.contains(['\\', '\'', '"']) {
                Scalar::Unsure
            } else {
                Scalar::Plain(inner.to_string())
            }
        } else if v.is_empty() || v.starts_with(['|', '>', '&', '*', '!', '{', '[', '"', '\'']) {
            Scalar::Unsure
        } else {
            Scalar::Plain(v.to_string())
        };
    }
    found
}

/// `local-hostname:` of a NoCloud meta-data text (YAML; the simple `key: value` form).
pub fn meta_hostname(meta: &str) -> Option<String> {
    match top_level(meta, "local-hostname") {
        Scalar::Plain(h) if !h.is_empty() => Some(h),
        _ => None,
    }
}

/// The short hostname cloud-init gives a machine booted with this seed, as its
/// `set_hostname` module works it out: the user's cloud-config `fqdn` (with its `hostname`,
/// else its first label), else its `hostname` (up to a dot), else the meta-data's
/// `local-hostname` (up to a dot). `None` when that cannot be told for certain: user-data
/// that is not one plain `#cloud-config` document (a script, a MIME multipart or a template
/// may set the name its own way), a key in a form this reader does not follow, a
/// configuration that keeps the image's name or prefers the FQDN, or no name at all.
pub fn expected_hostname(user: Option<&[u8]>, meta: &str) -> Option<String> {
    let short = |h: &str| h.split('.').next().unwrap_or(h).to_string();
    let ip = |h: &str| h.parse::<std::net::IpAddr>().is_ok();
    let (fqdn, host) = match user {
        None => (Scalar::Absent, Scalar::Absent),
        Some(u) => {
            let text = std::str::from_utf8(u).ok()?;
            if text.lines().next().map(str::trim_end) != Some("#cloud-config") {
                return None;
            }
            // A command or file that may set the name (`runcmd`, `write_files` to
            // /etc/hostname, ...): what the guest ends up called is the user's business.
            let keys = [
                "hostname",
                "fqdn",
                "preserve_hostname",
                "prefer_fqdn_over_hostname",
            ];
            let elsewhere = text.lines().any(|l| {
                let lower = l.to_ascii_lowercase();
                (lower.contains("hostname") || lower.contains("fqdn"))
                    && !keys
                        .iter()
                        .any(|k| l.strip_prefix(k).is_some_and(|r| r.starts_with(':')))
            });
            if elsewhere {
                return None;
            }
            for key in ["preserve_hostname", "prefer_fqdn_over_hostname"] {
                match top_level(text, key) {
                    Scalar::Absent => {}
                    Scalar::Plain(v) if ["false", "False", "no", "off"].contains(&v.as_str()) => {}
                    _ => return None,
                }
            }
            (top_level(text, "fqdn"), top_level(text, "hostname"))
        }
    };
    let name = match (fqdn, host) {
        (Scalar::Unsure, _) | (_, Scalar::Unsure) => return None,
        (Scalar::Plain(_), Scalar::Plain(h)) => h,
        (Scalar::Plain(f), Scalar::Absent) => short(&f),
        (Scalar::Absent, Scalar::Plain(h)) => short(&h),
        (Scalar::Absent, Scalar::Absent) => {
            if meta.trim_start().starts_with('{') {
                return None;
            }
            let h = meta_hostname(meta)?;
            if ip(&h) {
                return None;
            }
            short(&h)
        }
    };
    // Only a name systemd takes as a hostname: letters, digits and inner hyphens, at most 63.
    // cloud-init writes another (say `web_7`) to /etc/hostname, but the running name stays
    // what it was (seen in a vm-cloud boot: `localhost`).
    let plain = (1..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    plain.then_some(name)
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
/// after it in a MIME multipart, merged by appending (so the user's `users` stay). User-data
/// that is itself a MIME message (cloud-init's test: `MIME-Version:` in its first 4 KiB) goes
/// in as a part with its own headers, so cloud-init walks into its parts; any other is a part
/// typed by its first line (cloud-init looks again at a `text/plain` one: templates,
/// `#include`, archives).
pub fn user_data(user: Option<&[u8]>, public_key: &str, account: &str) -> Vec<u8> {
    let ours = own_part(public_key, account);
    let Some(theirs) = user else {
        return ours.into_bytes();
    };
    let boundary = "==INGOT-BOOT-TEST-SEED==";
    let head = &theirs[..theirs.len().min(4096)];
    let mime = head
        .windows(13)
        .any(|w| w.eq_ignore_ascii_case(b"mime-version:"));
    let mut out = format!(
        "Content-Type: multipart/mixed; boundary=\"{boundary}\"\nMIME-Version: 1.0\n\n--{boundary}\n"
    )
    .into_bytes();
    if !mime {
        let kind = if theirs.starts_with(b"#cloud-config\n") || theirs == b"#cloud-config" {
            "text/cloud-config"
        } else if theirs.starts_with(b"#!") {
            "text/x-shellscript"
        } else if theirs.starts_with(b"#cloud-boothook") {
            "text/cloud-boothook"
        } else {
            "text/plain"
        };
        out.extend_from_slice(
            format!("Content-Type: {kind}; charset=\"utf-8\"\nMIME-Version: 1.0\n\n").as_bytes(),
        );
    }
    out.extend_from_slice(theirs);
    out.extend_from_slice(
        format!("\n--{boundary}\nContent-Type: text/cloud-config; charset=\"utf-8\"\nMIME-Version: 1.0\n\n{ours}\n--{boundary}--\n").as_bytes(),
    );
    out
}

/// Make the run's seed in `work`: a throwaway key (ssh-keygen), the user-data and meta-data
/// (the user's, with the account `user` and the key added), on a FAT volume labelled `cidata`.
/// `user` is one [`super::cloud::valid_user`] accepts (the caller checks it once, before any boot).
pub fn make_seed(work: &Path, input: &SeedInput, image_name: &str, user: &str) -> Result<Seed> {
    let key = work.join("ssh-key");
    let _ = std::fs::remove_file(&key);
    let _ = std::fs::remove_file(key.with_extension("pub"));
    crate::base::tool::run(
        Command::new("ssh-keygen")
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
            .stdin(Stdio::null()),
        "openssh-client",
        "ssh-keygen failed",
    )?;
    let public = std::fs::read_to_string(key.with_extension("pub"))
        .with_context(|| format!("reading {}.pub", key.display()))?;
    let user_text = input.user_data.as_deref().map(read_user_data).transpose()?;
    let meta = read_input(&input.meta_data, "--meta-data")?;
    let network = read_input(&input.network_config, "--network-config")?;
    let default_host = format!("ingot-{}", image_name.replace(['_', '.'], "-"));
    let meta = meta.unwrap_or_else(|| {
        format!(
            "instance-id: ingot-boot-test-{}\nlocal-hostname: {default_host}\n",
            std::process::id()
        )
    });
    let hostname = expected_hostname(user_text.as_deref(), &meta);
    let mut tree = crate::tree::Tree::new();
    let mut add = |name: &str, bytes: Vec<u8>| {
        tree.insert(name, crate::tree::Entry::file(bytes, 0o644))
            .with_context(|| format!("seed file {name}"))
    };
    add("user-data", user_data(user_text.as_deref(), &public, user))?;
    add("meta-data", meta.into_bytes())?;
    if let Some(n) = network {
        add("network-config", n.into_bytes())?;
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
/// the user name ([`super::cloud::valid_user`]) and that the key file exists.
pub fn with_key(key: &Path, user: &str, cloud_init: bool) -> Seed {
    Seed {
        image: None,
        key: key.to_path_buf(),
        user: user.to_string(),
        cloud_init,
        hostname: None,
        checks: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boottest::cloud::USER;

    fn text(b: Vec<u8>) -> String {
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn the_users_data_comes_first_and_ours_appends() {
        assert!(text(user_data(None, "ssh-ed25519 AAAA k\n", USER)).starts_with("#cloud-config\n"));
        assert!(text(user_data(None, "k", "debian")).contains("  - name: debian\n"));
        let u = text(user_data(
            Some(b"#cloud-config\nusers:\n  - name: alice\n"),
            "ssh-ed25519 AAAA k",
            USER,
        ));
        let alice = u.find("name: alice").unwrap();
        let ours = u.find(&format!("name: {USER}")).unwrap();
        assert!(alice < ours, "{u}");
        assert!(u.contains("Content-Type: text/cloud-config"));
        assert!(u.contains("settings: [append]"));
        let s = text(user_data(Some(b"#!/bin/sh\necho hi\n"), "k", USER));
        assert!(s.contains("Content-Type: text/x-shellscript"));
        // A template is left for cloud-init to recognise by its first line.
        let j = text(user_data(
            Some(b"## template: jinja\n#cloud-config\n"),
            "k",
            USER,
        ));
        assert!(j.contains("Content-Type: text/plain"), "{j}");
    }

    #[test]
    fn a_users_mime_message_is_a_part_with_its_own_headers() {
        let theirs = "Content-Type: multipart/mixed; boundary=\"XYZ\"\nMIME-Version: 1.0\n\n--XYZ\nContent-Type: text/cloud-config\n\n#cloud-config\nhostname: a\n--XYZ--\n";
        let u = text(user_data(Some(theirs.as_bytes()), "k", USER));
        assert!(
            u.starts_with(&format!(
                "Content-Type: multipart/mixed; boundary=\"==INGOT-BOOT-TEST-SEED==\"\nMIME-Version: 1.0\n\n--==INGOT-BOOT-TEST-SEED==\n{theirs}\n--==INGOT-BOOT-TEST-SEED==\nContent-Type: text/cloud-config"
            )),
            "{u}"
        );
        assert!(u.ends_with("--==INGOT-BOOT-TEST-SEED==--\n"), "{u}");
        // Bytes that are not UTF-8 go through untouched.
        let b = user_data(Some(&[b'#', b'!', 0xff, b'\n']), "k", USER);
        assert!(b.windows(4).any(|w| w == [b'#', b'!', 0xff, b'\n']));
    }

    #[test]
    fn gzipped_user_data_is_unpacked_and_bounded() {
        use std::io::Write;
        let t = tempfile::tempdir().unwrap();
        let gz = |data: &[u8]| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        };
        let p = t.path().join("user-data.gz");
        std::fs::write(&p, gz(b"#cloud-config\nhostname: gz\n")).unwrap();
        assert_eq!(
            read_user_data(&p).unwrap(),
            b"#cloud-config\nhostname: gz\n"
        );
        let mut broken = gz(b"#cloud-config\n");
        broken.truncate(broken.len() / 2);
        std::fs::write(&p, broken).unwrap();
        let e = format!("{:#}", read_user_data(&p).unwrap_err());
        assert!(
            e.contains("user-data.gz") && e.contains("does not unpack"),
            "{e}"
        );
        // A small file that unpacks to more than a seed holds.
        std::fs::write(&p, gz(&vec![b'#'; USER_DATA_MAX + 1])).unwrap();
        let e = format!("{:#}", read_user_data(&p).unwrap_err());
        assert!(e.contains("more than 4 MiB"), "{e}");
        let input = SeedInput {
            user_data: Some(p),
            ..Default::default()
        };
        assert!(check_inputs(&input).is_err());
    }

    #[test]
    fn the_expected_hostname_is_cloud_inits_choice_or_nothing() {
        let meta = "instance-id: i-1\nlocal-hostname: web-7.example.org\n";
        let e = |u: Option<&str>, m: &str| expected_hostname(u.map(str::as_bytes), m);
        assert_eq!(e(None, meta).as_deref(), Some("web-7"));
        assert_eq!(
            e(None, "instance-id: i\nlocal-hostname: \"db\"  # comment\n").as_deref(),
            Some("db")
        );
        assert_eq!(
            e(Some("#cloud-config\nusers: []\n"), meta).as_deref(),
            Some("web-7")
        );
        assert_eq!(
            e(Some("#cloud-config\nhostname: app.x.y\n"), meta).as_deref(),
            Some("app")
        );
        assert_eq!(
            e(Some("#cloud-config\nfqdn: f.x.y\n"), meta).as_deref(),
            Some("f")
        );
        assert_eq!(
            e(Some("#cloud-config\nfqdn: f.x.y\nhostname: h\n"), meta).as_deref(),
            Some("h")
        );
        assert_eq!(
            e(Some("#cloud-config\npreserve_hostname: false\n"), meta).as_deref(),
            Some("web-7")
        );
        // Nothing certain: the check is left out.
        for (u, m) in [
            (Some("#cloud-config\npreserve_hostname: true\n"), meta),
            (
                Some("#cloud-config\nprefer_fqdn_over_hostname: true\n"),
                meta,
            ),
            (Some("#cloud-config\nhostname: a\nhostname: b\n"), meta),
            (Some("#cloud-config\nhostname: *anchor\n"), meta),
            (Some("#cloud-config\n{hostname: a}\n"), meta),
            (Some("#!/bin/sh\nhostnamectl set-hostname x\n"), meta),
            (
                Some("#cloud-config\nruncmd:\n  - hostnamectl set-hostname x\n"),
                meta,
            ),
            (
                Some("#cloud-config\nwrite_files:\n  - path: /etc/hostname\n"),
                meta,
            ),
            (
                Some("#cloud-config\nphone_home:\n  post: [hostname]\n"),
                meta,
            ),
            (
                Some("## template: jinja\n#cloud-config\nhostname: {{ v1.x }}\n"),
                meta,
            ),
            (
                None,
                "{\"instance-id\": \"i\", \"local-hostname\": \"j\"}\n",
            ),
            (None, "instance-id: i\nlocal-hostname: 10.0.0.5\n"),
            (None, "instance-id: i\n"),
            (None, "instance-id: i\nlocal-hostname: web_7\n"),
            (Some("#cloud-config\nhostname: -x\n"), meta),
        ] {
            assert_eq!(e(u, m), None, "{u:?} {m:?}");
        }
    }

    #[test]
    fn the_meta_datas_hostname_is_read_as_written() {
        assert_eq!(
            meta_hostname("instance-id: a\nlocal-hostname: 'web-1'\n").as_deref(),
            Some("web-1")
        );
        assert_eq!(meta_hostname("instance-id: a\n"), None);
    }
}
