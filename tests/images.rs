//! End-to-end tests: real images built from the Debian mirror (the host's apt sources or
//! INGOT_MIRROR), checked with independent tools (sgdisk, fsck.vfat, e2fsck, qemu-img, minisign,
//! pyspdxtools, the CycloneDX schema) and booted in QEMU with UEFI firmware. They run when
//! INGOT_E2E=1 is set; the edge-minimal matrix lives in edge_minimal.rs.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::*;

#[test]
#[cfg_attr(not(ingot_e2e), ignore = "end-to-end lane: set INGOT_E2E=1")]
fn vm_base_boots_on_both_arches() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let dirs = build(
        "profiles/vm-base.toml",
        &["hardware/qemu-x86_64.toml", "hardware/qemu-aarch64.toml"],
        &out,
        &[],
    );
    for d in &dirs {
        check_disk(d, t.path());
        let (good, o) = tool(
            "qemu-img",
            &["check", d.join("disk.qcow2").to_str().unwrap()],
        );
        assert!(good, "qemu-img check: {o}");
    }
    let logs = t.path().join("logs");
    let args = vec![
        "boot-test",
        dirs[0].to_str().unwrap(),
        dirs[1].to_str().unwrap(),
        "--boots",
        "2",
        "--retries",
        "1",
        "--timeout",
        "300",
        "--jobs",
        "2",
        "--logs",
        logs.to_str().unwrap(),
    ];
    let run = {
        let _places = guests(2);
        ingot(&args)
    };
    ok(&run, "boot-test vm-base");
    // No identity baked in, read back independently: machine-id empty (no unit of vm-base
    // waits for a first boot, so no `uninitialized`), no SSH host keys, no random seed.
    for d in &dirs {
        let id = debugfs_root(d, t.path(), "cat /etc/machine-id");
        let id: Vec<&str> = id.lines().filter(|l| !l.starts_with("debugfs ")).collect();
        assert!(
            id.iter().all(|l| l.trim().is_empty()),
            "/etc/machine-id: {id:?}"
        );
        let ssh = debugfs_root(d, t.path(), "ls /etc/ssh");
        assert!(
            ssh.contains("sshd_config") && !ssh.contains("ssh_host_"),
            "{ssh}"
        );
        let seed = debugfs_root(d, t.path(), "stat /var/lib/systemd/random-seed");
        assert!(seed.contains("not found"), "{seed}");
        trust_store_matches_openssl(d, t.path());
    }
    // Reproducible: a second build elsewhere with other --jobs gives the same bytes.
    let again = build(
        "profiles/vm-base.toml",
        &["hardware/qemu-x86_64.toml", "hardware/qemu-aarch64.toml"],
        &t.path().join("out2"),
        &["--jobs", "1"],
    );
    same_bytes(&dirs, &again);
    // (After the reproducibility check: signing changes the provenance and manifest.)
    // Signing after the build signs the provenance too, so verify accepts it and the DSSE
    // signature checks out independently.
    let keyp = t.path().join("late");
    ok(
        &ingot(&["keygen", "--out", keyp.to_str().unwrap()]),
        "keygen",
    );
    let pubk = format!("{}.pub", keyp.display());
    for d in &dirs {
        let o = ingot(&["verify", d.to_str().unwrap(), "--key", &pubk]);
        assert_eq!(o.status.code(), Some(1), "an unsigned image verified");
        ok(
            &ingot(&[
                "sign",
                d.to_str().unwrap(),
                "--key",
                &format!("{}.key", keyp.display()),
            ]),
            "sign",
        );
        ok(
            &ingot(&["verify", d.to_str().unwrap(), "--key", &pubk]),
            "verify after sign",
        );
        dsse_independent(&d.join("provenance.intoto.jsonl"), &pubk);
    }
}

/// vm-base on Debian 13 (trixie), the current stable release: its kernel compresses every
/// module (xz), its systemd makes service accounts with sysusers.d's `u!`, and its security
/// suite lives in the security archive, which the host's apt sources may list only for
/// bookworm. Built from the same mirror, booted under UEFI until every agent of vm-base is
/// ready (sshd, the node exporter and a DHCP lease through systemd-networkd).
#[test]
#[cfg_attr(not(ingot_e2e), ignore = "end-to-end lane: set INGOT_E2E=1")]
fn vm_base_on_debian_13_boots() {
    let t = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(root().join("profiles/vm-base.toml")).unwrap();
    let sshd = "[[users]]\nname = \"sshd\"\nuid = 101\nshell = \"/usr/sbin/nologin\"\n\n";
    let bookworm =
        "suite = \"bookworm\"\nextra_suites = [\"bookworm-updates\", \"bookworm-security\"]";
    assert!(base.contains(sshd) && base.contains(bookworm));
    // Debian 13's openssh-server makes its `sshd` account itself (sysusers.d); the profile's
    // entry stays and pins its uid, as on Debian 12. e2fsprogs is no longer of priority
    // required: named, the image has e2fsck and resize2fs as a Debian 12 one does.
    let profile = base
        .replace(
            bookworm,
            "suite = \"trixie\"\nextra_suites = [\"trixie-updates\", \"trixie-security\"]",
        )
        .replace(
            "include = [\"systemd\",",
            "include = [\"e2fsprogs\", \"systemd\",",
        )
        .replace("name = \"vm-base\"", "name = \"vm-trixie\"");
    let p = t.path().join("vm-trixie.toml");
    std::fs::write(&p, profile).unwrap();
    // UEFI only: one boot (the SeaBIOS path is the same on either release).
    let hw = std::fs::read_to_string(root().join("hardware/qemu-x86_64.toml")).unwrap();
    assert!(hw.contains("bios = true\n"));
    // (Beside the repository's firmware directory, which hardware files name relatively.)
    std::fs::create_dir(t.path().join("hardware")).unwrap();
    std::os::unix::fs::symlink(root().join("firmware"), t.path().join("firmware")).unwrap();
    let h = t.path().join("hardware/qemu-x86_64.toml");
    std::fs::write(&h, hw.replace("bios = true\n", "bios = false\n")).unwrap();
    let out = t.path().join("out");
    let d = build(p.to_str().unwrap(), &[h.to_str().unwrap()], &out, &[])
        .pop()
        .unwrap();
    check_disk(&d, t.path());
    // The root file system, read with debugfs.
    let img = t.path().join("root.img");
    extract_partition(&d, "root", &img);
    let root_fs = |request: &str| {
        let (good, o) = tool("debugfs", &["-R", request, img.to_str().unwrap()]);
        assert!(good, "debugfs {request}: {o}");
        o
    };
    // Debian 13's kernel; its module index lists the compressed modules with their
    // dependencies, as depmod does.
    let release = root_fs("ls -p /usr/lib/modules");
    let release = release
        .lines()
        .filter_map(|l| l.split('/').nth(5))
        .find(|n| n.contains("deb13"))
        .unwrap_or_else(|| panic!("{release}"))
        .to_string();
    let dep = root_fs(&format!("cat /usr/lib/modules/{release}/modules.dep"));
    let net = dep
        .lines()
        .find(|l| l.starts_with("kernel/drivers/net/virtio_net.ko.xz:"))
        .unwrap_or_else(|| panic!("virtio_net missing from modules.dep:\n{dep}"));
    assert!(net.contains("net_failover.ko.xz"), "{net}");
    // Every module the pruned tree keeps has what it depends on, by kmod's own modinfo:
    // wireguard its arch/x86 curve25519 code, isofs and udf cdrom, hv_sock hv_vmbus.
    let mods = t.path().join("mods");
    std::fs::create_dir(&mods).unwrap();
    root_fs(&format!(
        "rdump /usr/lib/modules/{release} {}",
        mods.display()
    ));
    let files: Vec<PathBuf> = walk(&mods.join(&release))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".ko"))
        .collect();
    let name = |p: &Path| {
        let f = p.file_name().unwrap().to_string_lossy().into_owned();
        f.split(".ko").next().unwrap().replace('-', "_")
    };
    let present: std::collections::BTreeSet<String> = files.iter().map(|p| name(p)).collect();
    assert!(present.contains("wireguard") && present.contains("isofs"));
    let mut args = vec!["-F".to_string(), "depends".to_string()];
    let mut missing = Vec::new();
    for f in &files {
        args.truncate(2);
        args.push(f.to_string_lossy().into_owned());
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let (good, deps) = tool("modinfo", &a);
        assert!(good, "modinfo {}: {deps}", f.display());
        for dep in deps.trim().split(',').filter(|d| !d.is_empty()) {
            if !present.contains(&dep.replace('-', "_")) {
                missing.push(format!("{} needs {dep}", name(f)));
            }
        }
    }
    assert!(missing.is_empty(), "pruned dependencies: {missing:?}");
    let sbin = root_fs("ls /usr/sbin");
    assert!(
        sbin.contains("e2fsck") && sbin.contains("resize2fs"),
        "{sbin}"
    );
    // systemd's locked service accounts exist, and are locked (expired) as sysusers makes them.
    let passwd = root_fs("cat /etc/passwd");
    let shadow = root_fs("cat /etc/shadow");
    for u in ["systemd-network", "systemd-resolve"] {
        assert!(passwd.contains(&format!("\n{u}:x:")), "{u}: {passwd}");
        let line = shadow
            .lines()
            .find(|l| l.starts_with(&format!("{u}:")))
            .unwrap_or_else(|| panic!("{u}: {shadow}"));
        assert_eq!(line.split(':').nth(7), Some("1"), "{line}");
    }
    // What Debian 13's maintainer scripts make with `${DPKG_ROOT:-}` paths, as dpkg's run
    // makes it: libwtmpdb0's link of the login database into /var/log, base-files' new
    // /usr/local/libexec.
    let wtmp = root_fs("stat /var/lib/wtmpdb/wtmp.db");
    assert!(
        wtmp.contains("Type: symlink") && wtmp.contains("../../log/wtmp.db"),
        "{wtmp}"
    );
    let local = root_fs("ls -p /usr/local");
    assert!(local.contains("/libexec/"), "{local}");
    // sshd is openssh-server's account (its home, locked) with the profile's uid.
    let sshd = passwd
        .lines()
        .find(|l| l.starts_with("sshd:"))
        .unwrap_or_else(|| panic!("no sshd: {passwd}"));
    assert_eq!(sshd.split(':').nth(2), Some("101"), "{sshd}");
    assert_eq!(sshd.split(':').nth(5), Some("/run/sshd"), "{sshd}");
    // openssh-server's own first-boot `ssh-keygen -A` is masked: Ingot's units make the
    // host keys, the RSA one after the ready line.
    let keygen = root_fs("stat /etc/systemd/system/sshd-keygen.service");
    assert!(
        keygen.contains("Type: symlink") && keygen.contains("\"/dev/null\""),
        "{keygen}"
    );
    let logs = t.path().join("logs");
    let run = {
        let _places = guests(1);
        ingot(&[
            "boot-test",
            d.to_str().unwrap(),
            "--boots",
            "1",
            "--retries",
            "1",
            "--timeout",
            "300",
            "--logs",
            logs.to_str().unwrap(),
        ])
    };
    ok(&run, "boot-test vm-base on trixie");
    let console: String = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    let ready = console
        .lines()
        .find(|l| l.contains("INGOT-READY"))
        .unwrap_or_else(|| panic!("no ready line:\n{console}"));
    assert!(
        ready.contains("agents=network:ok,node-exporter:ok,sshd:ok"),
        "{ready}"
    );
    assert!(!ready.contains("degraded="), "{ready}");
}

/// /etc/ssl/certs as update-ca-certificates and `openssl rehash` would make it, read back with
/// debugfs and checked with the openssl command: every certificate has its NAME.pem link and a
/// HASH.N link whose HASH is `openssl x509 -subject_hash` of it, and every HASH.N link leads
/// to a certificate with that hash.
fn trust_store_matches_openssl(dir: &Path, tmp: &Path) {
    let root = tmp.join("root-for-certs.img");
    extract_partition(dir, "root", &root);
    let dump = tmp.join("certs-dump");
    let _ = std::fs::remove_dir_all(&dump);
    std::fs::create_dir_all(&dump).unwrap();
    for req in ["rdump /etc/ssl/certs", "rdump /usr/share/ca-certificates"] {
        let req = format!("{req} {}", dump.display());
        let (good, o) = tool("debugfs", &["-R", &req, root.to_str().unwrap()]);
        assert!(good, "debugfs {req}: {o}");
    }
    std::fs::remove_file(&root).unwrap();
    let certs = dump.join("certs");
    let (mut hashed, mut pems) = (0, 0);
    for e in std::fs::read_dir(&certs).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue; // the bundle
        };
        let target = target.to_string_lossy().into_owned();
        let crt = if let Some(rel) = target.strip_prefix("/usr/share/") {
            pems += 1;
            assert!(name.ends_with(".pem"), "{name} -> {target}");
            dump.join(rel)
        } else {
            // HASH.N -> NAME.pem, relative as openssl rehash makes it.
            hashed += 1;
            let pem = std::fs::read_link(certs.join(&target)).unwrap();
            dump.join(pem.to_string_lossy().strip_prefix("/usr/share/").unwrap())
        };
        let (good, h) = tool(
            "openssl",
            &[
                "x509",
                "-noout",
                "-subject_hash",
                "-in",
                crt.to_str().unwrap(),
            ],
        );
        assert!(good, "openssl x509 {}: {h}", crt.display());
        if !name.ends_with(".pem") {
            assert_eq!(name.split('.').next(), Some(h.trim()), "{name} -> {target}");
        } else {
            let linked = std::fs::read_dir(&certs).unwrap().any(|l| {
                let l = l.unwrap();
                l.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{}.", h.trim()))
                    && std::fs::read_link(l.path()).is_ok_and(|t| t.to_string_lossy() == name)
            });
            assert!(
                linked,
                "{name} (subject hash {}) has no hash link",
                h.trim()
            );
        }
    }
    let crts = walk_count(&dump.join("ca-certificates"), "crt");
    assert!(
        crts > 100 && pems == crts && hashed == crts,
        "{crts} certificates, {pems} NAME.pem and {hashed} HASH.N links"
    );
    std::fs::remove_dir_all(&dump).unwrap();
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn walk_count(dir: &Path, ext: &str) -> usize {
    walk(dir)
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .count()
}

#[test]
#[cfg_attr(not(ingot_e2e), ignore = "end-to-end lane: set INGOT_E2E=1")]
fn broken_root_and_wiped_esp_fail_fast_with_console_tail_and_no_stray_qemu() {
    let t = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let hwdir = t.path().join("hardware");
    std::fs::create_dir_all(&hwdir).unwrap();
    std::fs::create_dir_all(t.path().join("firmware")).unwrap();
    std::fs::copy(
        root.join("firmware/ovmf.toml"),
        t.path().join("firmware/ovmf.toml"),
    )
    .unwrap();
    let hw = std::fs::read_to_string(root.join("hardware/qemu-x86_64.toml")).unwrap().replace(
        "cmdline = \"quiet panic=-1\"",
        "cmdline = \"quiet panic=-1 root=PARTUUID=deadbeef-0000-4000-8000-000000000000 rootwait=5\"",
    );
    let hwp = hwdir.join("qemu-x86_64.toml");
    std::fs::write(&hwp, hw).unwrap();
    let out = t.path().join("out");
    let dirs = build(
        "profiles/edge-minimal.toml",
        &[hwp.to_str().unwrap()],
        &out,
        &[],
    );
    // One guest at a time here, for both boots below.
    let _place = guests(1);
    // With one retry: both attempts fail, each within the timeout, and the report keeps both.
    let junit = t.path().join("broken.xml");
    let start = std::time::Instant::now();
    let o = ingot(&[
        "boot-test",
        dirs[0].to_str().unwrap(),
        "--boots",
        "1",
        "--retries",
        "1",
        "--timeout",
        "90",
        "--junit",
        junit.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a broken image must fail the boot test"
    );
    assert!(start.elapsed().as_secs() < 90, "did not fail fast");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("<failure") && xml.contains("not found"),
        "{xml}"
    );
    let (good, out) = tool("python3", &["-c", &format!("import xml.etree.ElementTree as E\ns=E.parse('{}').getroot().find('testsuite')\nassert s.get('tests')=='1' and s.get('failures')=='1', s.attrib\nc=s.find('testcase')\nassert 'not found' in c.find('failure').text\nr=c.find('rerunFailure')\nassert 'not found' in r.find('stackTrace').text, r.attrib\nassert r.find('system-out').text.endswith('.boot-1.console.log')\nassert c.find('system-out').text.endswith('.boot-1.retry-1.console.log')\n", junit.display())]);
    assert!(good, "JUnit report of the retried boot: {out}\n{xml}");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("every attempt failed") && stderr.contains("attempt 1 of 2; booting again"),
        "{stderr}"
    );
    for log in ["boot-1.console.log", "boot-1.retry-1.console.log"] {
        let name = format!("{}.{log}", dirs[0].file_name().unwrap().to_string_lossy());
        let text = std::fs::read_to_string(t.path().join(&name)).unwrap();
        assert!(text.contains("not found"), "{name}: {text}");
    }
    no_qemu_left(&dirs[0].join("disk.raw"));

    // An image whose ESP was wiped: UEFI finds no boot loader and drops to its shell; the boot
    // test says so at once instead of waiting for the timeout.
    let good = build(
        "profiles/edge-minimal.toml",
        &[],
        &t.path().join("good"),
        &[],
    );
    let wiped = t.path().join("wiped");
    std::fs::create_dir_all(&wiped).unwrap();
    for f in ["disk.raw", "manifest.json"] {
        std::fs::copy(good[0].join(f), wiped.join(f)).unwrap();
    }
    let esp = manifest(&wiped)["disk"]["partitions"][0]["offset"]
        .as_u64()
        .unwrap();
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(wiped.join("disk.raw"))
            .unwrap();
        f.write_all_at(&vec![0u8; 1 << 20], esp).unwrap();
    }
    let report = t.path().join("wiped.json");
    let start = std::time::Instant::now();
    let o = ingot(&[
        "boot-test",
        wiped.to_str().unwrap(),
        "--boots",
        "1",
        "--timeout",
        "120",
        "--json",
        report.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(start.elapsed().as_secs() < 60, "did not fail fast");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let failure = r["images"][0]["boots"][0]["failure"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        failure.contains("fell back to its shell")
            && failure.contains("failed to load")
            && failure.contains("BOOTX64.EFI"),
        "{failure}"
    );
    no_qemu_left(&wiped.join("disk.raw"));
}

#[test]
#[cfg_attr(not(ingot_e2e), ignore = "end-to-end lane: set INGOT_E2E=1")]
fn check_reproducible_names_the_file_that_differs() {
    // A file whose content keeps changing while the build runs (a thread rewrites it every
    // 20 ms): the two builds must differ, and the report must say where. (This used to read
    // /proc/sys/kernel/random/uuid, which profiles may no longer copy from.)
    let t = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let p = t.path().join("nonce.toml");
    std::fs::write(
        &p,
        format!(
            "extends = \"{}\"\n[[files]]\npath = \"/etc/nonce\"\nsource = \"nonce\"\n",
            root.join("profiles/edge-minimal.toml").display()
        ),
    )
    .unwrap();
    let nonce = t.path().join("nonce");
    std::fs::write(&nonce, format!("{:020}", 0)).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, nonce) = (stop.clone(), nonce.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let tmp = nonce.with_extension("tmp");
                // Fixed width: only the bytes differ, not the size (and so the inode).
                std::fs::write(&tmp, format!("{n:020}")).unwrap();
                std::fs::rename(&tmp, &nonce).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        })
    };
    let out = t.path().join("out");
    let err = ingot_fails(
        &[
            "build",
            "-q",
            p.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--check-reproducible",
        ],
        None,
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    assert!(
        err.contains("not reproducible: disk.raw differs")
            && err.contains("partition `root` (ext4), the contents of /etc/nonce"),
        "{err}"
    );
}

#[test]
#[cfg_attr(not(ingot_e2e), ignore = "end-to-end lane: set INGOT_E2E=1")]
fn lockfile_round_trip() {
    let t = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let prof = t.path().join("edge.toml");
    std::fs::copy(root.join("profiles/edge-minimal.toml"), &prof).unwrap();
    let hw = root.join("hardware/qemu-x86_64.toml");
    ok(
        &ingot(&[
            "lock",
            prof.to_str().unwrap(),
            "--hardware",
            hw.to_str().unwrap(),
        ]),
        "lock",
    );
    let lock = std::fs::read_to_string(t.path().join("edge.lock")).unwrap();
    assert!(lock.contains("sha256 = ") && lock.contains("busybox-static"));
    let mut sets = Vec::new();
    let mut dirs = Vec::new();
    for n in 0..2 {
        let out = t.path().join(format!("o{n}"));
        let d = build(
            prof.to_str().unwrap(),
            &[hw.to_str().unwrap()],
            &out,
            &["--locked"],
        );
        sets.push(std::fs::read_to_string(d[0].join("packages.lock")).unwrap());
        dirs.push(d[0].clone());
    }
    assert_eq!(sets[0], sets[1]);
    // Same profile, hardware and lockfile, another output directory: the same bytes.
    same_bytes(&dirs[..1], &dirs[1..]);
    // --json: one document on stdout naming the image directory and its artifacts' digests.
    let out = t.path().join("o-json");
    let o = ingot(&[
        "build",
        "-q",
        "--json",
        prof.to_str().unwrap(),
        "--hardware",
        hw.to_str().unwrap(),
        "--locked",
        "--out",
        out.to_str().unwrap(),
    ]);
    let text = ok(&o, "build --json");
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{text}"));
    let img = &doc["images"][0];
    let dir = PathBuf::from(img["dir"].as_str().unwrap());
    assert_eq!(dir, out.join("edge-minimal-1.0.0-x86_64"));
    assert_eq!(
        (img["image"].as_str(), img["arch"].as_str()),
        (Some("edge-minimal"), Some("x86_64"))
    );
    let raw = std::fs::read(dir.join("disk.raw")).unwrap();
    assert_eq!(
        img["artifacts"]["disk.raw"]["sha256"].as_str().unwrap(),
        hex_sha256(&raw)
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("packages.lock")).unwrap(),
        sets[0]
    );
    // An edited lockfile is bad input (exit 2) before anything is fetched or written, for
    // what the .deb cannot vouch for (suite, file name, size; a format version), and a
    // genuine cached .deb is kept when the lock lies about its size.
    let lock_path = t.path().join("edge.lock");
    let first_of = |key: &str| {
        lock.lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap()
            .to_string()
    };
    for (from, to, needle) in [
        (
            "version = 1".to_string(),
            "version = 7",
            "lockfile version 7",
        ),
        (
            first_of("suite"),
            "suite = \"trixie\"",
            "the lock says suite `trixie`",
        ),
        (
            first_of("filename"),
            "filename = \"pool/main/../../../etc/passwd.deb\"",
            "is not a .deb path under pool/",
        ),
        (
            first_of("size"),
            "size = 99999999999",
            "not the 99999999999 recorded",
        ),
        (first_of("role"), "role = \"wizard\"", "edge.lock:"),
    ] {
        std::fs::write(&lock_path, lock.replacen(&from, to, 1)).unwrap();
        let out = t.path().join("o-edited");
        let o = ingot(&[
            "build",
            "-q",
            prof.to_str().unwrap(),
            "--hardware",
            hw.to_str().unwrap(),
            "--locked",
            "--out",
            out.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{to}: {err}");
        assert!(err.contains(needle), "{to}: {err}");
        assert!(!err.contains("corrupt"), "{to}: {err}");
        assert!(!out.join("edge-minimal-1.0.0-x86_64").exists(), "{to}");
    }
    std::fs::write(&lock_path, &lock).unwrap();
    // A changed profile no longer matches its lockfile.
    let text = std::fs::read_to_string(&prof).unwrap().replace(
        "include = [\"busybox-static\"]",
        "include = [\"busybox-static\", \"zlib1g\"]",
    );
    std::fs::write(&prof, text).unwrap();
    let o = ingot(&[
        "build",
        prof.to_str().unwrap(),
        "--hardware",
        hw.to_str().unwrap(),
        "--locked",
        "--out",
        t.path().join("o3").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("changed since the lockfile"), "{err}");
}

/// A profile on top of edge-minimal, written into `dir`.
fn edge_variant(dir: &Path, name: &str, extra: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(
        &p,
        format!(
            "extends = \"{}\"\n{extra}",
            root.join("profiles/edge-minimal.toml").display()
        ),
    )
    .unwrap();
    p
}

#[test]
#[cfg_attr(not(ingot_e2e), ignore = "end-to-end lane: set INGOT_E2E=1")]
fn profile_mistakes_fail_the_build_and_failed_probes_reach_the_ready_line() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");

    // A private key dropped into an overlay: the build fails naming the path, and writes nothing.
    let overlay = t.path().join("overlay/etc/app");
    std::fs::create_dir_all(&overlay).unwrap();
    std::fs::write(
        overlay.join("deploy_key"),
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----\n",
    )
    .unwrap();
    let leaky = edge_variant(t.path(), "leaky", "overlays = [\"overlay\"]\n");
    let err = build_fails(&leaky, &out, None);
    assert!(
        err.contains("/etc/app/deploy_key") && err.contains("private key"),
        "{err}"
    );
    assert!(
        !out.exists() || std::fs::read_dir(&out).unwrap().next().is_none(),
        "a failed build left output behind"
    );

    // The same profile with the path allow-listed builds.
    let allowed = edge_variant(
        t.path(),
        "allowed",
        "overlays = [\"overlay\"]\n[sysprep]\nallow_secrets = [\"/etc/app/deploy_key\"]\n",
    );
    build(
        allowed.to_str().unwrap(),
        &[],
        &t.path().join("allowed-out"),
        &[],
    );

    // A kernel module the kernel does not have: bad input, at the item of [kernel] modules
    // that names it.
    let typo = edge_variant(t.path(), "typo", "").with_file_name("typo.toml");
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/edge-minimal.toml"),
    )
    .unwrap()
    .replace("modules = [\"virtio_net\"]", "modules = [\"virtio_nett\"]");
    std::fs::write(&typo, &text).unwrap();
    let line = 1 + text
        .lines()
        .position(|l| l.contains("\"virtio_nett\""))
        .unwrap();
    let o = ingot(&[
        "build",
        "-q",
        typo.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("typo.toml:{line}:12: kernel.modules: "))
            && err.contains("no module or alias `virtio_nett`")
            && err.contains("did you mean `virtio_net`"),
        "{err}"
    );

    // A disk size the image does not fit: bad input, at the hardware profile's `size` line,
    // and nothing written.
    std::fs::create_dir(t.path().join("hardware")).unwrap();
    std::os::unix::fs::symlink(root().join("firmware"), t.path().join("firmware")).unwrap();
    let shipped = std::fs::read_to_string(root().join("hardware/qemu-x86_64.toml")).unwrap();
    let small = shipped.replace("size = \"auto\"", "size = \"80MiB\"");
    let line = 1 + small.lines().position(|l| l == "size = \"80MiB\"").unwrap();
    let hw = t.path().join("hardware/small.toml");
    std::fs::write(&hw, &small).unwrap();
    let o = ingot(&[
        "build",
        "-q",
        "profiles/edge-minimal.toml",
        "--hardware",
        hw.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "small.toml:{line}:1: disk.size 80 MiB is too small: "
        )),
        "{err}"
    );
    assert!(
        !out.exists() || std::fs::read_dir(&out).unwrap().next().is_none(),
        "a refused build left output behind"
    );

    // Memory the host cannot give: the boot fails at once with QEMU's own reason, and so does
    // the firmware's one start without a disk that the variable store is primed with.
    let huge = shipped.replace("memory = 1024", "memory = 99999999");
    let hw = t.path().join("hardware/huge.toml");
    std::fs::write(&hw, &huge).unwrap();
    let dirs = build(
        "profiles/edge-minimal.toml",
        &[hw.to_str().unwrap()],
        &t.path().join("huge-out"),
        &[],
    );
    let o = ingot(&["boot-test", dirs[0].to_str().unwrap(), "--boots", "1"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("QEMU exited before the firmware reached its shell: ")
            && err.contains("QEMU exited before the INGOT-READY line")
            && err.contains("cannot set up guest memory"),
        "{err}"
    );

    // An agent whose probe never passes: the image boots, the ready line says `fail` for that
    // agent (and `ok` for the others), and boot-test fails naming it.
    let flaky = edge_variant(
        t.path(),
        "flaky",
        "[[agent]]\nname = \"broken\"\nprobe = \"test -e /run/never-there\"\nprobe_timeout = 2\n\n[[agent]]\nname = \"dns\"\nprobe = \"grep -q '^nameserver ' /etc/resolv.conf\"\nprobe_timeout = 30\n",
    );
    let dirs = build(flaky.to_str().unwrap(), &[], &out, &[]);
    let report = t.path().join("flaky.json");
    let junit = t.path().join("flaky.xml");
    let _place = guests(1);
    let o = ingot(&[
        "boot-test",
        dirs[0].to_str().unwrap(),
        "--boots",
        "1",
        "--json",
        report.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let boot = &r["images"][0]["boots"][0];
    assert_eq!(
        boot["ready"]["agents"],
        serde_json::json!([
            ["broken", "fail"],
            ["dns", "ok"],
            ["heartbeat", "ok"],
            ["network", "ok"]
        ]),
        "{boot}"
    );
    let log = std::fs::read_to_string(boot["console_log"].as_str().unwrap()).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("INGOT-READY image=edge-minimal")
                && l.contains("agents=broken:fail,dns:ok,heartbeat:ok,network:ok")),
        "{log}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("agent broken failed its readiness probe"),
        "{xml}"
    );
    no_qemu_left(&dirs[0].join("disk.raw"));
}

/// A unit the profile's `services` start that fails makes the boot test fail, naming it, even
/// when every agent is ready; another failed unit is reported beside it, not judged.
#[test]
#[cfg_attr(not(ingot_e2e), ignore = "end-to-end lane: set INGOT_E2E=1")]
fn a_failed_service_of_the_profile_fails_the_boot_test() {
    let t = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = |what: &str, wants: &str| {
        format!(
            "[[files]]\npath = \"/etc/systemd/system/{what}.service\"\ncontent = \"\"\"[Unit]\nDescription=fails on purpose\n{wants}[Service]\nType=oneshot\nExecStart=/bin/false\n[Install]\nWantedBy=multi-user.target\n\"\"\"\n"
        )
    };
    let p = t.path().join("vm-failing.toml");
    std::fs::write(
        &p,
        format!(
            "extends = \"{}\"\nservices = [\"ssh.service\", \"asked-fails.service\"]\n[image]\nname = \"vm-failing\"\nversion = \"1.0.0\"\n{}{}",
            root.join("profiles/vm-base.toml").display(),
            unit(
                "asked-fails",
                "Wants=pulled-fails.service\nAfter=pulled-fails.service\n"
            ),
            unit("pulled-fails", "")
        ),
    )
    .unwrap();
    let dir = build_x86_64(p.to_str().unwrap(), &t.path().join("out"));
    let report = t.path().join("r.json");
    let _place = guests(1);
    let o = ingot(&[
        "boot-test",
        dir.to_str().unwrap(),
        "--boots",
        "1",
        "--json",
        report.to_str().unwrap(),
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains("service asked-fails.service failed")
            && text.contains("other failed units: pulled-fails.service"),
        "{text}"
    );
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let ready = &r["images"][0]["boots"][0]["ready"];
    assert_eq!(
        ready["failed"],
        serde_json::json!(["asked-fails.service"]),
        "{ready}"
    );
    assert_eq!(
        ready["degraded"],
        serde_json::json!(["pulled-fails.service"]),
        "{ready}"
    );
    assert!(
        ready["agents"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a[1] == "ok"),
        "{ready}"
    );
    no_qemu_left(&dir.join("disk.raw"));
}

#[test]
#[cfg_attr(not(ingot_e2e), ignore = "end-to-end lane: set INGOT_E2E=1")]
fn converted_formats_pass_qemu_img_check_match_the_raw_disk_and_reproduce() {
    let t = tempfile::tempdir().unwrap();
    let p = edge_variant(
        t.path(),
        "formats",
        "[output]\nformats = [\"qcow2\", \"vmdk\", \"vhdx\"]\nzstd = false\n",
    );
    let a = build(p.to_str().unwrap(), &[], &t.path().join("a"), &[]);
    let b = build(
        p.to_str().unwrap(),
        &[],
        &t.path().join("b"),
        &["--jobs", "1"],
    );
    let raw = a[0].join("disk.raw");
    for fmt in ["qcow2", "vmdk", "vhdx"] {
        let img = a[0].join(format!("disk.{fmt}"));
        let (good, out) = tool("qemu-img", &["check", "-f", fmt, img.to_str().unwrap()]);
        assert!(
            good && out.contains("No errors"),
            "qemu-img check {fmt}: {out}"
        );
        let (good, out) = tool(
            "qemu-img",
            &[
                "compare",
                "-f",
                "raw",
                "-F",
                fmt,
                raw.to_str().unwrap(),
                img.to_str().unwrap(),
            ],
        );
        assert!(good && out.contains("Images are identical"), "{fmt}: {out}");
        assert!(
            manifest(&a[0])["artifacts"][format!("disk.{fmt}")]["sha256"].is_string(),
            "disk.{fmt} is not in the manifest"
        );
    }
    // qemu-img stamps random ids into VMDK and VHDX; Ingot pins them, so both builds agree.
    same_bytes(&a, &b);

    // inspect: sizes are what each package left in the root filesystem, one row per package.
    let o = ingot(&["inspect", "--json", a[0].to_str().unwrap()]);
    ok(&o, "inspect --json");
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = doc["largest_packages"].as_array().unwrap();
    let busybox: Vec<_> = rows.iter().filter(|r| r[1] == "busybox-static").collect();
    assert_eq!(busybox.len(), 1, "{rows:?}");
    let bytes = busybox[0][0].as_u64().unwrap();
    assert!(
        (1 << 20..8 << 20).contains(&bytes),
        "busybox-static: {bytes} bytes"
    );
    let text = ok(&ingot(&["inspect", a[0].to_str().unwrap()]), "inspect");
    assert!(
        text.contains("esp") && text.contains("root") && text.contains("/etc/machine-id"),
        "{text}"
    );
}

#[test]
#[cfg_attr(not(ingot_e2e), ignore = "end-to-end lane: set INGOT_E2E=1")]
fn hardware_profiles_add_partitions_and_qemu_img_is_required_for_conversions() {
    // An A/B layout from the hardware profile alone: a second root slot and a data partition.
    let t = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(t.path().join("hardware")).unwrap();
    std::fs::create_dir_all(t.path().join("firmware")).unwrap();
    std::fs::copy(
        root.join("firmware/ovmf.toml"),
        t.path().join("firmware/ovmf.toml"),
    )
    .unwrap();
    let hw = t.path().join("hardware/ab.toml");
    let text = std::fs::read_to_string(root.join("hardware/qemu-x86_64.toml"))
        .unwrap()
        .replace("name = \"qemu-x86_64\"", "name = \"qemu-x86_64-ab\"")
        + "\n[[disk.partitions]]\nname = \"root-b\"\ntype = \"root\"\nsize = \"128MiB\"\n\n[[disk.partitions]]\nname = \"data\"\ntype = \"linux\"\nsize = \"32MiB\"\n";
    std::fs::write(&hw, text).unwrap();
    let dirs = build(
        "profiles/edge-minimal.toml",
        &[hw.to_str().unwrap()],
        &t.path().join("out"),
        &[],
    );
    check_disk(&dirs[0], t.path());
    let m = manifest(&dirs[0]);
    let parts: Vec<(String, String, u64)> = m["disk"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["type"].as_str().unwrap().to_string(),
                p["size"].as_u64().unwrap(),
            )
        })
        .collect();
    let names: Vec<&str> = parts.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(
        names,
        ["esp", "root", "root-b", "data", "bios-boot"],
        "{parts:?}"
    );
    let x86_root = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";
    assert_eq!(parts[1].1, x86_root);
    assert_eq!((parts[2].1.as_str(), parts[2].2), (x86_root, 128 << 20));
    assert_eq!(
        (parts[3].1.as_str(), parts[3].2),
        ("0FC63DAF-8483-4772-8E79-3D69D8477DE4", 32 << 20)
    );
    // sgdisk, reading the GPT itself, sees the same names.
    let (good, out) = tool(
        "sgdisk",
        &["-p", dirs[0].join("disk.raw").to_str().unwrap()],
    );
    assert!(
        good && out.contains("root-b") && out.contains("data"),
        "{out}"
    );
    // The extra partitions do not confuse the initramfs: it still boots root by PARTUUID.
    let place = guests(1);
    ok(
        &ingot(&[
            "boot-test",
            dirs[0].to_str().unwrap(),
            "--boots",
            "1",
            "--logs",
            t.path().join("logs").to_str().unwrap(),
        ]),
        "boot-test of the A/B layout",
    );
    drop(place);

    // Without QEMU on PATH, boot-test names the Debian package to install.
    let empty_path = t.path().join("empty-path");
    let err = ingot_fails(
        &["boot-test", dirs[0].to_str().unwrap(), "--boots", "1"],
        Some(&empty_path),
    );
    assert!(
        err.contains("qemu-system-x86_64 not found") && err.contains("qemu-system-x86"),
        "{err}"
    );

    // A size budget smaller than the image: a clear error naming the budget, no image left.
    let tight = edge_variant(t.path(), "tight", "[output]\nsize_budget = \"4MiB\"\n");
    let out = t.path().join("tight-out");
    let err = build_fails(&tight, &out, None);
    assert!(
        err.contains("size budget exceeded")
            && err.contains("4.0 MiB")
            && err.contains("size_budget"),
        "{err}"
    );
    assert!(std::fs::read_dir(&out).map_or(true, |mut d| d.next().is_none()));

    // Asking for disk.qcow2 without qemu-img on PATH: a clear error, and no image left.
    let p = edge_variant(t.path(), "qcow", "[output]\nformats = [\"qcow2\"]\n");
    let out = t.path().join("noqemu");
    let err = build_fails(&p, &out, Some(&empty_path));
    assert!(
        err.contains("qemu-img") && err.contains("qemu-utils"),
        "{err}"
    );
    assert!(
        std::fs::read_dir(&out).map_or(true, |mut d| d.next().is_none()),
        "a failed build left output in {}",
        out.display()
    );
}

#[test]
#[cfg_attr(not(ingot_e2e), ignore = "end-to-end lane: set INGOT_E2E=1")]
fn profile_links_land_in_the_root_filesystem_and_resolve_at_boot() {
    // `[[files]]` with `link`: a relative link (stored in the inode) and one too long for that
    // (stored in a block), read back with debugfs; the booted guest follows the first.
    let t = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let long = format!("/usr/lib/heartbeat/{}", "l".repeat(80));
    let p = t.path().join("links.toml");
    std::fs::write(
        &p,
        format!(
            "extends = \"{}\"\n[[files]]\npath = \"/usr/bin/heartbeat\"\nlink = \"../lib/heartbeat/heartbeat\"\n[[files]]\npath = \"/etc/long-link\"\nlink = \"{long}\"\nuid = 5\n[[agent]]\nname = \"link\"\nprobe = \"test -x /usr/bin/heartbeat && test \\\"$(readlink -f /usr/bin/heartbeat)\\\" = /usr/lib/heartbeat/heartbeat\"\nprobe_timeout = 30\n",
            root.join("profiles/edge-minimal.toml").display()
        ),
    )
    .unwrap();
    let d = build_x86_64(p.to_str().unwrap(), &t.path().join("out"));
    check_disk(&d, t.path());
    let short = debugfs_root(&d, t.path(), "stat /usr/bin/heartbeat");
    assert!(
        short.contains("Type: symlink")
            && short.contains("Fast link dest: \"../lib/heartbeat/heartbeat\""),
        "{short}"
    );
    let stat = debugfs_root(&d, t.path(), "stat /etc/long-link");
    assert!(
        stat.contains("Type: symlink")
            && stat.contains("User:     5")
            && !stat.contains("Fast link"),
        "{stat}"
    );
    let dumped = t.path().join("long-link");
    debugfs_root(
        &d,
        t.path(),
        &format!("dump /etc/long-link {}", dumped.display()),
    );
    assert_eq!(std::fs::read_to_string(&dumped).unwrap(), long);
    let _place = guests(1);
    let o = ingot(&["boot-test", d.to_str().unwrap(), "--timeout", "120"]);
    // The `link` agent's probe fails (and with it the boot test) unless the link resolves.
    let text = ok(&o, "boot-test of the image with links");
    assert!(text.contains("boot test passed"), "{text}");
}
