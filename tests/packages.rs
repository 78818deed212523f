//! The package source against the real Debian mirror (the host's apt sources or INGOT_MIRROR):
//! resolve, fetch and unpack the shipped profiles' package sets for amd64 and arm64, and check
//! that files known to be in them are there with the owners and modes the packages declare.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use ingot::config::{load_hardware, load_profile};
use ingot::packages::{self, Role, Source};
use ingot::tree::{Kind, Tree};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn unpacked(profile: &str, hw: &str) -> (Tree, Vec<String>) {
    let profile = load_profile(&root().join(profile)).unwrap();
    let hw = load_hardware(&root().join(hw)).unwrap();
    let src = Source::new(None, &profile.distribution.suite, None, None, 4, false).unwrap();
    let set = packages::resolve_target(&src, &profile, &hw).unwrap();
    for l in &set.package {
        assert!(l.info.arch == hw.arch.debian() || l.info.arch == "all");
        if l.role == Role::Generated {
            // Ingot's own dpkg entry: no .deb, so no digest.
            assert!(packages::generated::is_generated(&l.info), "{l:?}");
            continue;
        }
        assert_eq!(l.info.sha256.len(), 64, "{} has no SHA-256", l.info.name);
    }
    assert!(
        set.package
            .iter()
            .any(|l| l.role == Role::Generated && l.info.provides == "linux-initramfs-tool"),
        "no generated linux-initramfs-tool provider"
    );
    let ready = packages::fetch_all(&src, &set.package).unwrap();
    let names = set
        .package
        .iter()
        .filter(|l| l.role == Role::Image)
        .map(|l| l.info.name.clone())
        .collect();
    // Suites the profile names all take part (vm-base takes security updates from the
    // security archive, which has its own base URL).
    for suite in &profile.distribution.extra_suites {
        assert!(
            set.releases.iter().any(|(s, _)| s == suite),
            "{suite} was not read"
        );
        if suite.ends_with("-security") {
            assert!(
                set.package.iter().any(|l| &l.info.suite == suite),
                "no package came from {suite}"
            );
        }
    }
    (packages::unpack_image(&ready, hw.arch).unwrap(), names)
}

/// (path, kind, mode, uid, gid) as the packages ship them.
fn expect(t: &Tree, path: &str, dir: bool, mode: u32, uid: u32, gid: u32) {
    let e = t
        .get(path)
        .unwrap_or_else(|| panic!("{path} missing from the tree"));
    assert_eq!(matches!(e.kind, Kind::Dir), dir, "{path} kind");
    assert_eq!(
        (e.mode & 0o7777, e.uid, e.gid),
        (mode, uid, gid),
        "{path}: mode/uid/gid"
    );
}

fn merged_usr(t: &Tree) {
    for d in ["bin", "sbin", "lib"] {
        assert!(
            matches!(t.get(d).map(|e| &e.kind), Some(Kind::Symlink(s)) if s == &format!("usr/{d}")),
            "/{d} is not a symlink into /usr"
        );
    }
}

fn dpkg_knows(t: &Tree, names: &[String]) {
    let status = String::from_utf8(t.read("/var/lib/dpkg/status").unwrap()).unwrap();
    for n in names {
        assert!(
            status.contains(&format!("Package: {n}\nStatus: install ok installed\n")),
            "{n} not in /var/lib/dpkg/status"
        );
    }
}

#[test]
#[cfg_attr(not(ingot_e2e), ignore = "end-to-end lane: set INGOT_E2E=1")]
fn edge_minimal_package_sets_both_arches() {
    for hw in ["hardware/qemu-x86_64.toml", "hardware/qemu-aarch64.toml"] {
        let (t, names) = unpacked("profiles/edge-minimal.toml", hw);
        assert!(names.contains(&"busybox-static".to_string()), "{names:?}");
        // A minimal image does not drag in the essential set.
        assert!(!names.contains(&"coreutils".to_string()), "{names:?}");
        merged_usr(&t);
        expect(&t, "usr/bin/busybox", false, 0o755, 0, 0);
        let elf = t.read("/usr/bin/busybox").unwrap();
        let machine = u16::from_le_bytes([elf[18], elf[19]]);
        let want = if hw.contains("aarch64") { 183 } else { 62 };
        assert_eq!(machine, want, "busybox is built for the wrong machine");
        assert!(t
            .iter()
            .any(|(p, _)| p.starts_with("usr/lib/modules/") && p.ends_with("virtio_blk.ko")));
        dpkg_knows(&t, &names);
    }
}

#[test]
#[cfg_attr(not(ingot_e2e), ignore = "end-to-end lane: set INGOT_E2E=1")]
fn vm_base_package_sets_both_arches() {
    for hw in ["hardware/qemu-x86_64.toml", "hardware/qemu-aarch64.toml"] {
        let (t, names) = unpacked("profiles/vm-base.toml", hw);
        for n in [
            "systemd",
            "openssh-server",
            "coreutils",
            "base-passwd",
            "libc6",
        ] {
            assert!(names.contains(&n.to_string()), "{n} not resolved");
        }
        merged_usr(&t);
        expect(&t, "usr/lib/systemd/systemd", false, 0o755, 0, 0);
        expect(&t, "usr/sbin/sshd", false, 0o755, 0, 0);
        // setuid root, setgid shadow (gid 42), and a group-owned directory: the owners come
        // from the tar headers, not from the host.
        expect(&t, "usr/bin/passwd", false, 0o4755, 0, 0);
        expect(&t, "usr/bin/chage", false, 0o2755, 0, 42);
        expect(&t, "usr/lib/openssh/ssh-keysign", false, 0o4755, 0, 0);
        expect(&t, "var/log", true, 0o755, 0, 0);
        expect(&t, "tmp", true, 0o1777, 0, 0);
        assert!(t.read("/usr/share/base-passwd/passwd.master").is_some());
        dpkg_knows(&t, &names);
        let list =
            String::from_utf8(t.read("/var/lib/dpkg/info/openssh-server.list").unwrap()).unwrap();
        assert!(list.lines().any(|l| l == "/usr/sbin/sshd"), "{list}");
    }
}
