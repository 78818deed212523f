//! `vm-cloud`: a template that takes its identity at first boot from cloud-init. The boot test
//! attaches a NoCloud seed, waits for INGOT-READY, then logs in with the OpenSSH client through
//! a forwarded 127.0.0.1 port and a throwaway key the seed installed; the login must see the
//! seed's hostname and `cloud-init status` `done`, and the host key the guest presents must be
//! one its console printed and differ between boots. The image itself holds no cloud-init
//! instance state and no SSH host key (read with debugfs, not from the manifest).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::*;

fn boots(report: &Path) -> Vec<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    v["images"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["boots"].as_array().unwrap().clone())
        .collect()
}

#[test]
#[cfg_attr(not(ingot_e2e), ignore = "end-to-end lane: set INGOT_E2E=1")]
fn vm_cloud_takes_its_identity_from_the_seed_and_a_user_logs_in_over_ssh() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let dirs = build(
        "profiles/vm-cloud.toml",
        &["hardware/qemu-x86_64.toml", "hardware/qemu-aarch64.toml"],
        &out,
        &[],
    );
    assert_eq!(dirs.len(), 2);

    // What the image holds, read from its root filesystem.
    for d in &dirs {
        let ls = debugfs_root(d, t.path(), "ls -l /var/lib/cloud");
        assert!(
            ls.contains("File not found") || !ls.contains("instance"),
            "cloud-init instance state in the image: {ls}"
        );
        let ssh = debugfs_root(d, t.path(), "ls /etc/ssh");
        assert!(ssh.contains("sshd_config"), "{ssh}");
        assert!(!ssh.contains("ssh_host_"), "host keys baked in: {ssh}");
        let pam = debugfs_root(d, t.path(), "cat /etc/pam.d/common-auth");
        assert!(pam.contains("pam_unix.so"), "no PAM stack: {pam}");
        let cfg = debugfs_root(d, t.path(), "cat /etc/cloud/cloud.cfg.d/90_dpkg.cfg");
        assert!(
            cfg.contains("NoCloud") && cfg.contains("ConfigDrive"),
            "{cfg}"
        );
    }

    // x86_64 with the user's own seed: their hostname, their user, ours merged in.
    let meta = t.path().join("meta-data");
    std::fs::write(
        &meta,
        "instance-id: iid-cloud-test-1\nlocal-hostname: web-7\n",
    )
    .unwrap();
    let user = t.path().join("user-data");
    std::fs::write(
        &user,
        "#cloud-config\nusers:\n  - name: alice\n    shell: /bin/sh\n    lock_passwd: true\n",
    )
    .unwrap();
    let x86 = dirs
        .iter()
        .find(|d| d.ends_with("vm-cloud-1.0.0-x86_64"))
        .unwrap();
    let arm = dirs
        .iter()
        .find(|d| d.ends_with("vm-cloud-1.0.0-aarch64"))
        .unwrap();
    let rx = t.path().join("x86.json");
    let rarm = t.path().join("arm.json");
    // apt keeps managing the image: its dpkg database has every dependency met (the kernel's
    // included), and apt installs a package made on the spot that needs the kernel's helpers.
    let probe = "set -e; d=$(mktemp -d); mkdir \"$d/DEBIAN\"; printf 'Package: ingot-probe\\nVersion: 1\\nArchitecture: all\\nMaintainer: Ingot tests <tests@invalid>\\nDepends: kmod, linux-base\\nDescription: probe\\n probe\\n' > \"$d/DEBIAN/control\"; dpkg-deb -b \"$d\" /tmp/ingot-probe.deb >/dev/null; sudo apt-get install -y /tmp/ingot-probe.deb >/dev/null; dpkg-query -W -f='${Status}' ingot-probe";
    std::thread::scope(|s| {
        let a = s.spawn(|| {
            ingot(&[
                "boot-test",
                x86.to_str().unwrap(),
                "--boots",
                "2",
                "--timeout",
                "400",
                "--user-data",
                user.to_str().unwrap(),
                "--meta-data",
                meta.to_str().unwrap(),
                "--check",
                "id -u alice",
                "--check",
                "sudo -n true && test -s /etc/machine-id",
                "--check",
                "sudo apt-get check",
                "--check",
                probe,
                "--json",
                rx.to_str().unwrap(),
            ])
        });
        // aarch64 with the boot test's default seed (hostname ingot-vm-cloud).
        let b = s.spawn(|| {
            ingot(&[
                "boot-test",
                arm.to_str().unwrap(),
                "--boots",
                "1",
                "--timeout",
                "600",
                "--json",
                rarm.to_str().unwrap(),
            ])
        });
        ok(&a.join().unwrap(), "boot-test vm-cloud x86_64");
        ok(&b.join().unwrap(), "boot-test vm-cloud aarch64");
    });
    let xb = boots(&rx);
    assert_eq!(xb.len(), 2);
    for b in &xb {
        assert_eq!(b["ok"], true, "{b}");
        assert_eq!(b["login"]["hostname"], "web-7", "{b}");
        assert_eq!(b["login"]["cloud_init"], "done", "{b}");
        // The user's account exists beside the test's own (their users were kept), and the
        // test's account may use sudo without a password.
        let checks = b["login"]["checks"].as_array().unwrap();
        assert_eq!(checks.len(), 4, "{b}");
        assert_eq!(checks[3][1], "install ok installed", "{b}");
        assert!(
            checks[0][1].as_str().unwrap().parse::<u32>().unwrap() >= 1000,
            "{b}"
        );
    }
    assert_ne!(
        xb[0]["login"]["host_key"], xb[1]["login"]["host_key"],
        "two boots presented the same host key"
    );
    let ab = boots(&rarm);
    assert_eq!(ab[0]["ok"], true, "{}", ab[0]);
    assert_eq!(ab[0]["login"]["hostname"], "ingot-vm-cloud");
    assert_eq!(ab[0]["login"]["cloud_init"], "done");
    for b in xb.iter().chain(&ab) {
        eprintln!(
            "ready {:.1} s, logged in {:.1} s, host key {}",
            b["seconds"].as_f64().unwrap(),
            b["login"]["seconds"].as_f64().unwrap(),
            b["login"]["host_key"]
        );
    }
}

#[test]
fn seed_files_that_do_not_exist_stop_the_test_before_any_boot() {
    let o = ingot(&[
        "boot-test",
        "--disk",
        "/etc/hostname",
        "--arch",
        "x86_64",
        "--ready",
        "x",
        "--check",
        "true",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("--check"), "{err}");
    let o = ingot(&[
        "boot-test",
        "/nonexistent-image",
        "--user-data",
        "/nonexistent/user-data",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("--user-data /nonexistent/user-data"), "{err}");
}

/// `boot-test --disk --ssh`: the same login for disks Ingot did not build. vm-cloud's disk,
/// converted to qcow2 and given as a bare file (no manifest: the boot test knows nothing of
/// it), is logged in to as `debian` through a seed with a throwaway key once cloud-init is
/// done, with no console pattern at all (the login is the readiness); a vm-base variant that
/// already trusts a key for `deploy` is a matrix cell, logged in to with that key and no seed
/// after its login prompt. Checks run over both logins, each its own JUnit testcase, and
/// neither file changes.
#[test]
#[cfg_attr(not(ingot_e2e), ignore = "end-to-end lane: set INGOT_E2E=1")]
fn foreign_disks_log_in_over_ssh_through_a_seed_or_with_a_key_they_trust() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let key = t.path().join("ops-key");
    let (good, o) = tool(
        "ssh-keygen",
        &["-q", "-t", "ed25519", "-N", "", "-f", key.to_str().unwrap()],
    );
    assert!(good, "{o}");
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let trusting = t.path().join("vm-trusting.toml");
    std::fs::write(
        &trusting,
        format!(
            "extends = \"{}\"\n[image]\nname = \"vm-trusting\"\nversion = \"1.0.0\"\n[[users]]\nname = \"deploy\"\nshell = \"/bin/sh\"\nssh_authorized_keys = [\"{}\"]\n",
            root().join("profiles/vm-base.toml").display(),
            public.trim()
        ),
    )
    .unwrap();
    let cloud = build_x86_64("profiles/vm-cloud.toml", &out);
    let trust = build_x86_64(trusting.to_str().unwrap(), &out);
    let vendor = t.path().join("vendor.qcow2");
    let (good, o) = tool(
        "qemu-img",
        &[
            "convert",
            "-O",
            "qcow2",
            cloud.join("disk.raw").to_str().unwrap(),
            vendor.to_str().unwrap(),
        ],
    );
    assert!(good, "{o}");
    let plain = t.path().join("plain.raw");
    std::fs::copy(trust.join("disk.raw"), &plain).unwrap();
    let before = [
        hex_sha256(&std::fs::read(&vendor).unwrap()),
        hex_sha256(&std::fs::read(&plain).unwrap()),
    ];
    let (rs, rk) = (t.path().join("seeded.json"), t.path().join("keyed.json"));
    let matrix = t.path().join("matrix.toml");
    std::fs::write(
        &matrix,
        "[[cell]]\nname = \"keyed\"\ndisk = \"plain.raw\"\narch = \"x86_64\"\nready = \"login:\"\nssh = \"deploy\"\nssh_key = \"ops-key\"\nchecks = [\"id -un\", \"test ! -e /etc/cloud\"]\n",
    )
    .unwrap();
    std::thread::scope(|s| {
        let a = s.spawn(|| {
            ingot(&[
                "boot-test",
                "--disk",
                vendor.to_str().unwrap(),
                "--arch",
                "x86_64",
                "--ssh",
                "debian",
                "--cloud-init",
                "--check",
                "id -un",
                "--check",
                "sudo -n true",
                "--boots",
                "1",
                "--timeout",
                "400",
                "--json",
                rs.to_str().unwrap(),
                "--junit",
                rs.with_extension("xml").to_str().unwrap(),
            ])
        });
        let b = s.spawn(|| {
            ingot(&[
                "boot-test",
                "--matrix",
                matrix.to_str().unwrap(),
                "--boots",
                "1",
                "--timeout",
                "400",
                "--json",
                rk.to_str().unwrap(),
                "--junit",
                rk.with_extension("xml").to_str().unwrap(),
            ])
        });
        ok(&a.join().unwrap(), "boot-test --disk --ssh with a seed");
        ok(
            &b.join().unwrap(),
            "boot-test --matrix with an ssh_key cell",
        );
    });
    let seeded = &boots(&rs)[0];
    assert_eq!(seeded["ok"], true, "{seeded}");
    assert_eq!(seeded["login"]["cloud_init"], "done", "{seeded}");
    assert_eq!(seeded["login"]["checks"][0][1], "debian", "{seeded}");
    // One JUnit testcase for the boot and one for each check.
    let junit = std::fs::read_to_string(rs.with_extension("xml")).unwrap();
    assert!(junit.contains("tests=\"3\" failures=\"0\""), "{junit}");
    assert!(
        junit.contains("vendor.qcow2 boot 1 check id -un"),
        "{junit}"
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&rk).unwrap()).unwrap();
    assert_eq!(v["cells"][0]["name"], "keyed", "{v}");
    assert_eq!(v["cells"][0]["passed"], true, "{v}");
    let keyed = &v["report"]["images"][0]["boots"][0];
    assert_eq!(keyed["ok"], true, "{keyed}");
    assert_eq!(keyed["login"]["checks"][0][1], "deploy", "{keyed}");
    assert!(keyed["ready"]["matched"]
        .as_str()
        .unwrap()
        .contains("login:"));
    let junit = std::fs::read_to_string(rk.with_extension("xml")).unwrap();
    assert!(junit.contains("tests=\"3\" failures=\"0\""), "{junit}");
    assert!(
        junit.contains("keyed boot 1 check test ! -e /etc/cloud"),
        "{junit}"
    );
    // Ready by login alone: the readiness is the login, and it came after cloud-init.
    assert_eq!(
        seeded["ready"]["matched"], "ssh login as debian",
        "{seeded}"
    );
    for b in [seeded, keyed] {
        eprintln!(
            "foreign: ready {:.1} s, logged in {:.1} s",
            b["seconds"].as_f64().unwrap(),
            b["login"]["seconds"].as_f64().unwrap()
        );
    }
    let after = [
        hex_sha256(&std::fs::read(&vendor).unwrap()),
        hex_sha256(&std::fs::read(&plain).unwrap()),
    ];
    assert_eq!(before, after, "a disk file changed");
    no_qemu_left(&vendor);
    no_qemu_left(&plain);
}
