//! `boot-test --disk`: disks Ingot did not build, made here by tests/foreign/make-disk.sh with
//! Debian's tools (sgdisk, mkfs.vfat, mtools, cpio) from Debian's kernel, busybox and
//! systemd-boot packages, and Debian's syslinux for a disk that also boots under a BIOS. Ready
//! means a console line matching `--ready`; the broken disks (a kernel that panics, an ESP with
//! nothing to boot, a blank disk under a BIOS, a disk whose kernel is gone, under systemd-boot
//! and under SYSLINUX) fail fast with the cause named; and no disk file changes by a byte.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// The cache `ingot` uses (INGOT_CACHE, else XDG).
fn cache() -> PathBuf {
    ingot::packages::cache::Cache::open(None)
        .unwrap()
        .root()
        .to_path_buf()
}

/// Kernel, busybox and systemd-boot .debs for `hw`, pinned by `ingot lock` and fetched into
/// the verified cache by `ingot fetch` (Ingot only downloads them here).
fn debs(tmp: &Path, hw: &str) -> (PathBuf, PathBuf, PathBuf) {
    let p = tmp.join(format!("{hw}.toml"));
    std::fs::write(
        &p,
        format!(
            "extends = \"{}\"\n",
            root().join("profiles/edge-minimal.toml").display()
        ),
    )
    .unwrap();
    let hwf = format!("hardware/{hw}.toml");
    ok(
        &ingot(&["lock", p.to_str().unwrap(), "--hardware", &hwf]),
        "lock",
    );
    ok(
        &ingot(&["fetch", p.to_str().unwrap(), "--hardware", &hwf, "--locked"]),
        "fetch",
    );
    let lock: toml::Value =
        toml::from_str(&std::fs::read_to_string(p.with_extension("lock")).unwrap()).unwrap();
    let pkgs = lock["target"][0]["package"].as_array().unwrap();
    let find = |pred: &dyn Fn(&str) -> bool| -> PathBuf {
        let p = pkgs
            .iter()
            .find(|p| pred(p["name"].as_str().unwrap()))
            .unwrap();
        cache().join("sha256").join(p["sha256"].as_str().unwrap())
    };
    (
        // The versioned kernel package (the unversioned one is a metapackage).
        find(&|n| n.starts_with("linux-image-") && n.chars().any(|c| c.is_ascii_digit())),
        find(&|n| n == "busybox-static"),
        find(&|n| n == "systemd-boot-efi"),
    )
}

/// The first boot of `disk` in a boot-test JSON report.
fn first_boot(v: &serde_json::Value, disk: &Path) -> serde_json::Value {
    v["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["image"] == disk.to_str().unwrap())
        .unwrap()["boots"][0]
        .clone()
}

fn make(out: &Path, arch: &str, d: &(PathBuf, PathBuf, PathBuf), mode: &str) {
    let script = root().join("tests/foreign/make-disk.sh");
    let (good, o) = tool(
        "sh",
        &[
            script.to_str().unwrap(),
            out.to_str().unwrap(),
            arch,
            d.0.to_str().unwrap(),
            d.1.to_str().unwrap(),
            d.2.to_str().unwrap(),
            mode,
        ],
    );
    assert!(good, "make-disk.sh {mode}: {o}");
    let (good, o) = tool("sgdisk", &["-v", out.to_str().unwrap()]);
    assert!(good && o.contains("No problems found"), "sgdisk -v: {o}");
}

#[test]
#[cfg_attr(not(ingot_e2e), ignore = "end-to-end lane: set INGOT_E2E=1")]
fn foreign_disks_boot_to_a_console_pattern_and_broken_ones_fail_fast_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let x86 = debs(t, "qemu-x86_64");
    let arm = debs(t, "qemu-aarch64");
    let ok_raw = t.join("ok.raw");
    make(&ok_raw, "x86_64", &x86, "ok");
    // Shipped as qcow2, as a CI pipeline would get it from Packer.
    let ok_qcow2 = t.join("ok.qcow2");
    let (good, o) = tool(
        "qemu-img",
        &[
            "convert",
            "-O",
            "qcow2",
            ok_raw.to_str().unwrap(),
            ok_qcow2.to_str().unwrap(),
        ],
    );
    assert!(good, "{o}");
    let (panic, empty, arm_ok) = (t.join("panic.raw"), t.join("empty.raw"), t.join("arm.raw"));
    make(&panic, "x86_64", &x86, "panic");
    make(&empty, "x86_64", &x86, "empty");
    make(&arm_ok, "aarch64", &arm, "ok");
    // The same system that also boots under a BIOS: SYSLINUX in the GPT MBR and on the ESP.
    let bios = t.join("hybrid.raw");
    make(&bios, "x86_64", &x86, "hybrid");
    // The same disk with its kernel gone from the ESP: systemd-boot has no entry it can
    // start, and SYSLINUX stops at its prompt.
    let nokernel = t.join("nokernel.raw");
    copy_without_esp_file(&bios, &nokernel, "::/vmlinuz");
    let arm_nokernel = t.join("arm-nokernel.raw");
    copy_without_esp_file(&arm_ok, &arm_nokernel, "::/vmlinuz");
    let files = [
        &ok_qcow2,
        &panic,
        &empty,
        &arm_ok,
        &bios,
        &nokernel,
        &arm_nokernel,
    ];
    let before: Vec<String> = files
        .iter()
        .map(|f| hex_sha256(&std::fs::read(f).unwrap()))
        .collect();

    let run = |disks: &[&PathBuf], arch: &str, json: &Path, boots: &str, firmware: &str| {
        let mut a: Vec<String> = vec!["boot-test".into()];
        for d in disks {
            a.extend(["--disk".into(), d.display().to_string()]);
        }
        a.extend(
            [
                "--arch",
                arch,
                "--firmware",
                firmware,
                "--ready",
                r"FOREIGN-BOOT-OK kernel=\S+",
                "--boots",
                boots,
                "--timeout",
                "120",
                "--json",
                json.to_str().unwrap(),
                "--junit",
                json.with_extension("xml").to_str().unwrap(),
            ]
            .map(String::from),
        );
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let o = ingot(&a);
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
        (o, v)
    };
    let (o, v) = run(
        &[&ok_qcow2, &panic, &empty, &nokernel],
        "x86_64",
        &t.join("x86.json"),
        "2",
        "uefi",
    );
    assert_eq!(o.status.code(), Some(1), "the broken disks fail the run");
    let by: std::collections::BTreeMap<String, &serde_json::Value> = v["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["image"].as_str().unwrap().to_string(), i))
        .collect();
    let okr = by[ok_qcow2.to_str().unwrap()];
    assert_eq!(okr["boots"].as_array().unwrap().len(), 2);
    for b in okr["boots"].as_array().unwrap() {
        assert_eq!(b["ok"], true, "{b}");
        let m = b["ready"]["matched"].as_str().unwrap();
        assert!(m.contains("FOREIGN-BOOT-OK kernel=6."), "{m}");
    }
    for (disk, kind, words) in [
        (&panic, "kernel-panic", "Kernel panic"),
        (&empty, "nothing-bootable", "UEFI found nothing bootable"),
        (
            &nokernel,
            "no-boot-entry",
            "systemd-boot found no boot entry",
        ),
    ] {
        let b = &by[disk.to_str().unwrap()]["boots"][0];
        assert_eq!(b["cause"]["kind"], kind, "{b}");
        assert!(b["failure"].as_str().unwrap().contains(words));
        // Fail-fast: named from the console long before the 120 s timeout.
        assert!(b["seconds"].as_f64().unwrap() < 60.0, "{b}");
        assert!(!b["tail"].as_array().unwrap().is_empty());
    }
    let junit = std::fs::read_to_string(t.join("x86.xml")).unwrap();
    assert_eq!(junit.matches("<testcase").count(), 5, "{junit}");
    assert_eq!(junit.matches("<failure").count(), 3, "{junit}");

    // Ready by SSH login alone still watches the console: the panicking disk fails fast,
    // named, long before the login would time out.
    let key = t.join("key");
    let (good, o) = tool(
        "ssh-keygen",
        &["-q", "-t", "ed25519", "-N", "", "-f", key.to_str().unwrap()],
    );
    assert!(good, "{o}");
    let sj = t.join("ssh.json");
    let o = ingot(&[
        "boot-test",
        "--disk",
        panic.to_str().unwrap(),
        "--arch",
        "x86_64",
        "--ssh",
        "root",
        "--ssh-key",
        key.to_str().unwrap(),
        "--timeout",
        "300",
        "--json",
        sj.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&sj).unwrap()).unwrap();
    let b = &v["images"][0]["boots"][0];
    assert_eq!(b["cause"]["kind"], "kernel-panic", "{b}");
    assert!(b["seconds"].as_f64().unwrap() < 60.0, "{b}");

    let (o, v) = run(
        &[&arm_ok, &arm_nokernel],
        "aarch64",
        &t.join("arm.json"),
        "1",
        "uefi",
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "the kernel-less disk fails the run"
    );
    assert_eq!(first_boot(&v, &arm_ok)["ok"], true, "{v}");
    let b = &first_boot(&v, &arm_nokernel);
    assert_eq!(b["cause"]["kind"], "no-boot-entry", "{b}");
    assert!(b["seconds"].as_f64().unwrap() < 60.0, "{b}");

    // Under SeaBIOS: the SYSLINUX disk boots to the pattern; a blank disk (no boot sector)
    // fails fast, the BIOS's own words named.
    let blank = t.join("blank.raw");
    std::fs::write(&blank, vec![0u8; 1 << 20]).unwrap();
    // A GPT disk whose protective MBR has no boot code (the UEFI-only qcow2) is named before
    // any boot: SeaBIOS would start it and hang.
    let (o, v) = run(
        &[&bios, &blank, &ok_qcow2, &nokernel],
        "x86_64",
        &t.join("bios.json"),
        "1",
        "bios",
    );
    assert_eq!(o.status.code(), Some(1), "the blank disk fails the run");
    let of = |disk: &Path| first_boot(&v, disk);
    let b = &of(&bios);
    assert_eq!(b["ok"], true, "{b}");
    assert!(b["ready"]["matched"]
        .as_str()
        .unwrap()
        .contains("FOREIGN-BOOT-OK kernel=6."));
    let log = std::fs::read_to_string(b["console_log"].as_str().unwrap()).unwrap();
    assert!(
        log.contains("SYSLINUX 6."),
        "not booted by SYSLINUX:\n{log}"
    );
    let b = &of(&ok_qcow2);
    assert_eq!(b["cause"]["kind"], "bios-nothing-bootable", "{b}");
    assert!(
        b["failure"].as_str().unwrap().contains("no boot code"),
        "{b}"
    );
    let b = &of(&blank);
    assert_eq!(b["cause"]["kind"], "bios-nothing-bootable", "{b}");
    assert!(b["seconds"].as_f64().unwrap() < 60.0, "{b}");
    let b = &of(&nokernel);
    assert_eq!(b["cause"]["kind"], "rescue-shell", "{b}");
    assert!(
        b["failure"]
            .as_str()
            .unwrap()
            .contains("SYSLINUX: cannot load /vmlinuz: No such file or directory"),
        "{b}"
    );
    assert!(b["seconds"].as_f64().unwrap() < 60.0, "{b}");

    // The same disks as a matrix: one JUnit file, one testcase per cell, a time-to-ready per
    // cell in the JSON summary; the hybrid disk in two cells, under UEFI and under a BIOS.
    let m = t.join("matrix.toml");
    std::fs::write(
        &m,
        "ready = 'FOREIGN-BOOT-OK kernel=\\S+'\n[[cell]]\nname = \"x86-qcow2\"\ndisk = \"ok.qcow2\"\narch = \"x86_64\"\n[[cell]]\nname = \"hybrid-uefi\"\ndisk = \"hybrid.raw\"\narch = \"x86_64\"\nformat = \"raw\"\nfirmware = \"uefi\"\n[[cell]]\nname = \"arm\"\ndisk = \"arm.raw\"\narch = \"aarch64\"\n[[cell]]\nname = \"hybrid-bios\"\ndisk = \"hybrid.raw\"\narch = \"x86_64\"\nfirmware = \"bios\"\n",
    )
    .unwrap();
    let (mj, mx) = (t.join("m.json"), t.join("m.xml"));
    let o = ingot(&[
        "boot-test",
        "--matrix",
        m.to_str().unwrap(),
        "--boots",
        "1",
        "--json",
        mj.to_str().unwrap(),
        "--junit",
        mx.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&mj).unwrap()).unwrap();
    let cells: Vec<(&str, bool, f64)> = v["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap(),
                c["passed"].as_bool().unwrap(),
                c["time_to_ready"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        cells.iter().map(|c| c.0).collect::<Vec<_>>(),
        ["x86-qcow2", "hybrid-uefi", "arm", "hybrid-bios"]
    );
    assert!(cells.iter().all(|c| c.1 && c.2 > 0.0), "{cells:?}");
    // Each cell's console log is named after it; the hybrid disk's two cells booted through
    // different loaders.
    let log_of = |cell: &str| {
        let r = v["report"]["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["image"] == cell)
            .unwrap();
        let p = r["boots"][0]["console_log"].as_str().unwrap();
        assert!(p.ends_with(&format!("{cell}.boot-1.console.log")), "{p}");
        std::fs::read_to_string(p).unwrap()
    };
    assert!(log_of("hybrid-bios").contains("SYSLINUX 6."));
    assert!(!log_of("hybrid-uefi").contains("SYSLINUX"));
    // Python's XML parser (not Ingot) reads the JUnit file.
    let py = format!(
        "import xml.etree.ElementTree as E\nr=E.parse('{}').getroot()\nprint(sorted(c.get('name') for c in r.iter('testcase')), len(list(r.iter('failure'))))",
        mx.display()
    );
    let (good, out) = tool("python3", &["-c", &py]);
    assert!(good, "{out}");
    assert_eq!(
        out.trim(),
        "['arm boot 1', 'hybrid-bios boot 1', 'hybrid-uefi boot 1', 'x86-qcow2 boot 1'] 0"
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("hybrid-bios") && stdout.contains("to ready (median)"),
        "{stdout}"
    );
    let after: Vec<String> = files
        .iter()
        .map(|f| hex_sha256(&std::fs::read(f).unwrap()))
        .collect();
    assert_eq!(before, after, "a disk file changed");
    no_qemu_left(&ok_qcow2);
}

/// A foreign disk that makes QEMU open another file (a qcow2's backing file, a VMDK
/// descriptor's extent) would hand the guest that host file; it is refused before any boot,
/// and the same data in one self-contained file is not.
#[test]
#[cfg_attr(not(ingot_e2e), ignore = "end-to-end lane: set INGOT_E2E=1")]
fn a_foreign_disk_that_reaches_other_files_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("host-secret");
    std::fs::write(&secret, vec![b's'; 1 << 20]).unwrap();
    let backed = tmp.path().join("backed.qcow2");
    let (good, out) = tool(
        "qemu-img",
        &[
            "create",
            "-f",
            "qcow2",
            "-F",
            "raw",
            "-b",
            secret.to_str().unwrap(),
            backed.to_str().unwrap(),
            "1M",
        ],
    );
    assert!(good, "{out}");
    let flat = tmp.path().join("flat.vmdk");
    std::fs::write(
        &flat,
        format!(
            "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\nRW 2048 FLAT \"{}\" 0\n",
            secret.display()
        ),
    )
    .unwrap();
    for (disk, words) in [(&backed, "has a backing file"), (&flat, "is another file")] {
        let o = ingot(&[
            "boot-test",
            "--disk",
            disk.to_str().unwrap(),
            "--arch",
            "x86_64",
            "--ready",
            "login:",
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{}: {err}", disk.display());
        assert!(
            err.contains(words) && err.contains(secret.to_str().unwrap()),
            "{}: {err}",
            disk.display()
        );
    }
}

#[test]
fn foreign_disk_flags_are_checked_before_any_boot() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("x.raw");
    std::fs::write(&f, vec![0u8; 4096]).unwrap();
    let f = f.to_str().unwrap();
    // --disk needs --arch, and --ready or --ssh (or both).
    let o = ingot(&["boot-test", "--disk", f]);
    assert_eq!(o.status.code(), Some(2));
    let o = ingot(&["boot-test", "--disk", f, "--arch", "x86_64"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--ready REGEX") && err.contains("--ssh USER"),
        "{err}"
    );
    let o = ingot(&["boot-test", "--disk", f, "--arch", "x86_64", "--ready", "("]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("--ready ("));
    let o = ingot(&[
        "boot-test",
        "--disk",
        "/nonexistent.raw",
        "--arch",
        "x86_64",
        "--ready",
        "x",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent.raw"));
    // A FIFO or a device is named as what it is (it was called "no such file").
    let fifo = tmp.path().join("disk.fifo");
    assert!(tool("mkfifo", &[fifo.to_str().unwrap()]).0);
    let o = ingot(&[
        "boot-test",
        "--disk",
        fifo.to_str().unwrap(),
        "--arch",
        "x86_64",
        "--ready",
        "x",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("disk.fifo: not a regular file (a FIFO)"),
        "{err}"
    );
    let o = ingot(&["boot-test", "--disk", f, "--arch", "sparc", "--ready", "x"]);
    assert_eq!(o.status.code(), Some(2));
    // A BIOS is for x86_64 disks only, said before anything is fetched or booted.
    let o = ingot(&[
        "boot-test",
        "--disk",
        f,
        "--arch",
        "aarch64",
        "--firmware",
        "bios",
        "--ready",
        "x",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("BIOS boots are for x86_64 disks"), "{err}");
    // --check runs over an SSH login, which a foreign disk only gets with --ssh; a key that
    // is not there is named.
    let base = ["boot-test", "--disk", f, "--arch", "x86_64", "--ready", "x"];
    for (extra, words) in [
        (&["--check", "true"][..], "give --ssh USER"),
        (
            &["--ssh", "debian", "--ssh-key", "/nonexistent/key"][..],
            "/nonexistent/key",
        ),
        (&["--ssh-key", "/nonexistent/key"][..], "--ssh"),
        (&["--cloud-init"][..], "--ssh"),
        (&["--ssh=-oProxyCommand=x"][..], "not a user name"),
        (&["--ssh", "Root"][..], "not a user name"),
    ] {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let o = ingot(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(words), "{extra:?}: {err}");
    }
}
