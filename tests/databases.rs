//! Servers as Debian's packages set them up: PostgreSQL's main cluster, MariaDB's system
//! tables and BIND's rndc key are made by each machine at its first boot with the servers' own
//! tools (the image holds none of them), serve on that boot, and are kept, not made again, on
//! the next boot of the same disk. Two machines from one image have clusters and keys of their
//! own.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use ingot::boottest::boot::{boot_once, Wait};

/// The word after `KEY ` on the console (a probe's line may follow the login prompt).
fn console_value(log: &Path, key: &str) -> String {
    let text = std::fs::read_to_string(log).unwrap();
    text.lines()
        .find_map(|l| {
            let (_, v) = l.split_once(&format!("{key} "))?;
            v.split_whitespace().next().map(str::to_string)
        })
        .unwrap_or_else(|| panic!("no {key} line in {}:\n{text}", log.display()))
}

#[test]
#[cfg_attr(not(ingot_e2e), ignore = "end-to-end lane: set INGOT_E2E=1")]
fn database_servers_are_set_up_at_each_machines_first_boot_and_kept() {
    let t = tempfile::tempdir().unwrap();
    let profile = root().join("tests/profiles/vm-db.toml");
    let d = build_x86_64(profile.to_str().unwrap(), &t.path().join("out"));
    check_disk(&d, t.path());
    for p in [
        "/etc/postgresql/15",
        "/var/lib/postgresql/15",
        "/var/lib/mysql/mysql",
        "/etc/bind/rndc.key",
    ] {
        let s = debugfs_root(&d, t.path(), &format!("stat {p}"));
        assert!(s.contains("File not found"), "the image holds {p}: {s}");
    }
    // mariadb-server's postinst writes debian.cnf with its section headers.
    let cnf = debugfs_root(&d, t.path(), "cat /etc/mysql/debian.cnf");
    assert!(
        cnf.contains("[client]\nhost     = localhost\nuser     = root\n[mysql_upgrade]\n"),
        "{cnf}"
    );
    // postgresql-common's postinst puts postgres in ssl-cert (so that its clusters use the
    // machine's snakeoil pair) and makes its home its own.
    let group = debugfs_root(&d, t.path(), "cat /etc/group");
    let passwd = debugfs_root(&d, t.path(), "cat /etc/passwd");
    let ssl_cert = group.lines().find(|l| l.starts_with("ssl-cert:"));
    assert!(
        ssl_cert.is_some_and(|l| l
            .rsplit(':')
            .next()
            .unwrap()
            .split(',')
            .any(|m| m == "postgres")),
        "{group}"
    );
    let uid = passwd
        .lines()
        .find_map(|l| l.strip_prefix("postgres:x:"))
        .and_then(|l| l.split(':').next())
        .unwrap_or_else(|| panic!("no postgres in {passwd}"));
    let home = debugfs_root(&d, t.path(), "stat /var/lib/postgresql");
    assert!(home.contains(&format!("User: {uid:>5}")), "{home}");
    // bind9's postinst gives its directories to the group bind (named writes its cache).
    let bind_gid = group
        .lines()
        .find_map(|l| l.strip_prefix("bind:x:"))
        .and_then(|l| l.split(':').next())
        .unwrap_or_else(|| panic!("no bind in {group}"));
    for (p, mode) in [("/etc/bind", "02755"), ("/var/cache/bind", "0775")] {
        let s = debugfs_root(&d, t.path(), &format!("stat {p}"));
        assert!(s.contains(&format!("Mode:  {mode}")), "{p}: {s}");
        assert!(s.contains(&format!("Group: {bind_gid:>5}")), "{p}: {s}");
    }
    // Its createcluster.conf, which it hands to ucf from a temporary copy.
    let cc = debugfs_root(
        &d,
        t.path(),
        "cat /etc/postgresql-common/createcluster.conf",
    );
    assert!(cc.lines().any(|l| l == "ssl = on"), "{cc}");

    let _place = guests(1);
    let image = ingot::image_dir::ImageDir::open(&d).unwrap();
    // The manifest records each probe's timeout (240 s here), and a boot without a timeout
    // of its own is given a minute more than the longest.
    assert_eq!(image.manifest.longest_probe(), Some(240));
    let timeout = ingot::boottest::boot_timeout(None, Some(&image.manifest));
    assert_eq!(timeout, Duration::from_secs(300));
    let src = ingot::packages::Source::new(None, "bookworm", None, None, 2, false).unwrap();
    let mut spec = ingot::boottest::vm_spec(&image, None, &src).unwrap();
    // Each boot writes to its machine's own disk (below), as a real machine does.
    spec.persistent = true;
    let boot = |spec: &ingot::qemu::VmSpec, name: &str| {
        let log = t.path().join(format!("{name}.console.log"));
        let out = boot_once(spec, timeout, &log, t.path(), Wait::IngotReady, None).unwrap();
        let ready = out
            .ready
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: {:?}\n{}", out.failure, out.tail.join("\n")));
        if let Some(why) = ingot::boottest::judge_ready(ready, &image.manifest) {
            panic!("{name}: {why}\n{}", out.tail.join("\n"));
        }
        (
            (console_value(&log, "PGID"), console_value(&log, "RNDC")),
            console_value(&log, "FIRSTBOOT"),
        )
    };
    // Machine a, twice on its own disk; machine b, once on another copy of the image.
    let mut ids = Vec::new();
    for (m, boots) in [("a", 2), ("b", 1)] {
        // The machine's disk: a qcow2 file over the image's disk.raw, which stays as built.
        let disk = t.path().join(format!("{m}.qcow2"));
        let (made, text) = tool(
            "qemu-img",
            &[
                "create",
                "-q",
                "-f",
                "qcow2",
                "-F",
                "raw",
                "-b",
                image.disk().to_str().unwrap(),
                disk.to_str().unwrap(),
            ],
        );
        assert!(made, "{text}");
        spec.disk = disk;
        let first = boot(&spec, &format!("{m}-1"));
        assert_eq!(
            first.1, "yes,yes,yes",
            "machine {m}: the first boot's units"
        );
        if boots == 2 {
            let second = boot(&spec, &format!("{m}-2"));
            assert_eq!(
                second.1, "no,no,no",
                "machine {m}: the second boot made them again"
            );
            assert_eq!(second.0, first.0, "machine {m}: the cluster or key changed");
        }
        ids.push(first.0);
    }
    assert_ne!(
        ids[0].0, ids[1].0,
        "two machines share a cluster identifier"
    );
    assert_ne!(ids[0].1, ids[1].1, "two machines share an rndc key");
}
