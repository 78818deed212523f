//! OTA updates end to end on both arches: edge-minimal built for the A/B hardware as 1.0.0,
//! 2.0.0 and a broken 3.0.0 (an agent that never becomes ready), plus a 2.0.0 signed with
//! another key; its update bundles checked with independent tools; then `ingot ota-test` drives
//! one device through refusals, an update, a rollback and a downgrade, and, in separate runs, a
//! power cut at each point of an install. After each run the device's disk is checked with
//! sgdisk, fsck.vfat and e2fsck. Runs when INGOT_E2E=1 is set.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::*;

const ARCHES: [&str; 2] = ["x86_64", "aarch64"];

struct Fixture {
    dir: tempfile::TempDir,
    pubk: String,
}

impl Fixture {
    /// An image directory: `out` is `out`, `out2` (a second build) or `other` (other key).
    fn image(&self, out: &str, version: &str, arch: &str) -> PathBuf {
        self.dir
            .path()
            .join(out)
            .join(format!("edge-minimal-{version}-{arch}"))
    }
    fn bundle(&self, out: &str, version: &str, arch: &str) -> PathBuf {
        self.image(out, version, arch).join("update.bundle")
    }
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = shared_tempdir();
        let mut keys = Vec::new();
        for k in ["release", "other"] {
            let p = dir.path().join(k);
            ok(&ingot(&["keygen", "--out", p.to_str().unwrap()]), "keygen");
            keys.push(format!("{}.key", p.display()));
        }
        let hw = [
            "hardware/qemu-x86_64-ab.toml",
            "hardware/qemu-aarch64-ab.toml",
        ];
        for (profile, out, key) in [
            ("profiles/edge-minimal.toml", "out", &keys[0]),
            ("tests/profiles/edge-v2.toml", "out", &keys[0]),
            ("tests/profiles/edge-broken-probe.toml", "out", &keys[0]),
            ("profiles/edge-minimal.toml", "out2", &keys[0]),
            ("tests/profiles/edge-v2.toml", "other", &keys[1]),
        ] {
            let o = dir.path().join(out);
            assert_eq!(build(profile, &hw, &o, &["--key", key]).len(), 2);
        }
        Fixture {
            pubk: format!("{}.pub", dir.path().join("release").display()),
            dir,
        }
    })
}

/// A copy of `bundle` with one byte flipped in the middle of its compressed root image.
fn flipped(bundle: &Path, into: &Path) -> PathBuf {
    let mut ar = tar::Archive::new(std::fs::File::open(bundle).unwrap());
    let (pos, size) = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.path().unwrap().to_str() == Some("rootfs.img.gz"))
        .map(|e| (e.raw_file_position(), e.header().size().unwrap()))
        .unwrap();
    let mut bytes = std::fs::read(bundle).unwrap();
    bytes[(pos + size / 2) as usize] ^= 0x01;
    let out = into.join("flipped.bundle");
    std::fs::write(&out, bytes).unwrap();
    out
}

/// The root image digest and size a bundle's manifest records.
fn bundle_rootfs(bundle: &Path) -> (String, u64) {
    let b = ingot::bundle::Bundle::read(bundle).unwrap();
    b.manifest.rootfs
}

/// Convert the device's kept disk to raw and check it with the independent tools: the GPT,
/// the ESP, both slots and the data partition; `slots` names bundles whose root image a slot
/// must still hold byte for byte (a slot that ran is never written).
fn check_device_disk(kept: &Path, base: &Path, tmp: &Path, slots: &[(&str, PathBuf)]) {
    // A power cut is QEMU killed mid-write, which can leave a qcow2 cluster allocated but
    // unreferenced: qemu-img check then exits 3 ("leaked clusters", waste, no harm to data).
    // Any corruption (exit 2) or other failure fails the test.
    let o = std::process::Command::new("qemu-img")
        .args(["check", kept.to_str().unwrap()])
        .output()
        .expect("qemu-img");
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    let leaks_only = o.status.code() == Some(3)
        && out.contains("leaked clusters")
        && !out.to_lowercase().contains("corrupt");
    assert!(o.status.success() || leaks_only, "qemu-img check: {out}");
    let dev = tmp.join("device");
    std::fs::create_dir_all(&dev).unwrap();
    let raw = dev.join("disk.raw");
    let (good, out) = tool(
        "qemu-img",
        &[
            "convert",
            "-O",
            "raw",
            kept.to_str().unwrap(),
            raw.to_str().unwrap(),
        ],
    );
    assert!(good, "qemu-img convert: {out}");
    std::fs::copy(base.join("manifest.json"), dev.join("manifest.json")).unwrap();
    let (good, out) = tool("sgdisk", &["-v", raw.to_str().unwrap()]);
    assert!(
        good && out.contains("No problems found"),
        "sgdisk -v: {out}"
    );
    for (part, checker, args) in [
        ("esp", "fsck.vfat", "-n"),
        ("root-a", "e2fsck", "-fn"),
        ("root-b", "e2fsck", "-fn"),
        ("data", "e2fsck", "-fn"),
    ] {
        let img = dev.join(format!("{part}.img"));
        extract_partition(&dev, part, &img);
        if part == "root-b" && std::fs::read(&img).unwrap().iter().all(|b| *b == 0) {
            // A device that only refused bundles never wrote its second slot: still all zero.
            assert!(
                slots.iter().all(|(p, _)| *p != part),
                "root-b was never written"
            );
            let _ = std::fs::remove_file(img);
            continue;
        }
        let (good, out) = tool(checker, &[args, img.to_str().unwrap()]);
        assert!(good, "{checker} {args} on {part}: {out}");
        if let Some((_, b)) = slots.iter().find(|(p, _)| *p == part) {
            let (sha, size) = bundle_rootfs(b);
            let bytes = std::fs::read(&img).unwrap();
            assert_eq!(
                hex_sha256(&bytes[..size as usize]),
                sha,
                "{part} no longer holds {}",
                b.display()
            );
        }
        let _ = std::fs::remove_file(img);
    }
    let _ = std::fs::remove_file(raw);
}

/// Run ota-test; its JSON report.
fn ota_test(
    base: &Path,
    steps: &[String],
    tmp: &Path,
    extra: &[&str],
    slots: &[(&str, PathBuf)],
) -> serde_json::Value {
    let json = tmp.join("ota.json");
    let junit = tmp.join("ota.xml");
    let html = tmp.join("ota.html");
    let kept = tmp.join("device.qcow2");
    let mut args = vec![
        "ota-test".to_string(),
        base.display().to_string(),
        "--json".into(),
        json.display().to_string(),
        "--html".into(),
        html.display().to_string(),
        "--junit".into(),
        junit.display().to_string(),
        "--keep-disk".into(),
        kept.display().to_string(),
    ];
    args.extend(steps.iter().cloned());
    args.extend(extra.iter().map(|s| s.to_string()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = ingot(&argv);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).unwrap_or_default()).unwrap_or_default();
    assert!(o.status.success(), "ota-test failed:\n{text}\n{report:#}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains(&format!("tests=\"{}\" failures=\"0\"", steps.len() + 1)),
        "{xml}"
    );
    no_qemu_left(&kept);
    // The HTML page has one row per step, each with its outcome.
    let page = std::fs::read_to_string(&html).unwrap();
    let table = &page[page.find("<table class=\"ota-steps\">").unwrap()..];
    let table = &table[..table.find("</table>").unwrap()];
    assert_eq!(table.matches("<tr>").count(), steps.len() + 1, "{table}");
    assert_eq!(
        table.matches(">passed</span>").count(),
        steps.len(),
        "{table}"
    );
    check_device_disk(&kept, base, tmp, slots);
    // The machine id the device made at its first boot lives on the data partition: every
    // later ready line reports it.
    let mid = report["machine_id"].as_str().unwrap().to_string();
    for s in report["steps"].as_array().unwrap() {
        for b in s["boots"].as_array().unwrap() {
            if let Some(m) = b["ready"]["machine_id"].as_str() {
                assert_eq!(m, mid, "machine id changed in {b:#}");
            }
        }
    }
    report
}

fn step(report: &serde_json::Value, n: usize) -> &serde_json::Value {
    &report["steps"][n]
}

#[test]
#[cfg_attr(not(ingot_e2e), ignore = "end-to-end lane: set INGOT_E2E=1")]
fn keep_disk_never_replaces_a_file_it_did_not_keep() {
    // The device's disk is renamed to --keep-disk after the test: onto a device or pipe
    // (`/dev/null`, as root), a user's file, or the base's own disk.raw (the overlay's backing
    // file) before. Each is refused before anything boots.
    let f = fixture();
    let t = tempfile::tempdir().unwrap();
    let base = f.image("out", "1.0.0", "x86_64");
    let bundle = f.bundle("out", "1.0.0", "x86_64");
    let notes = t.path().join("notes.txt");
    std::fs::write(&notes, "mine\n").unwrap();
    let fifo = t.path().join("fifo");
    assert!(tool("mkfifo", &[fifo.to_str().unwrap()]).0);
    // A user's own qcow2 VM disk (no backing file) is not a kept disk either.
    let vm = t.path().join("vm.qcow2");
    assert!(
        tool(
            "qemu-img",
            &["create", "-q", "-f", "qcow2", vm.to_str().unwrap(), "1M"]
        )
        .0
    );
    let vm_bytes = std::fs::read(&vm).unwrap();
    let before = tree_digests(&base);
    for (keep, why) in [
        (fifo.clone(), "is not a regular file"),
        (t.path().to_path_buf(), "is not a regular file"),
        (notes.clone(), "is not a disk an earlier run kept"),
        (vm.clone(), "is not a disk an earlier run kept"),
        (base.join("disk.raw"), "inside the base image directory"),
        (
            t.path().join("no-dir/kept.qcow2"),
            "its directory does not exist",
        ),
    ] {
        let step = format!("{}:updated", bundle.display());
        let o = ingot(&[
            "ota-test",
            base.to_str().unwrap(),
            &step,
            "--keep-disk",
            keep.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{}: {err}", keep.display());
        assert!(err.contains(why), "{}: {err}", keep.display());
    }
    // A step whose bundle is not there is bad input too (it was exit 1).
    let missing = format!("{}:updated", t.path().join("missing.bundle").display());
    let o = ingot(&["ota-test", base.to_str().unwrap(), &missing]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("missing.bundle is not a file"), "{err}");
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "mine\n");
    assert_eq!(std::fs::read(&vm).unwrap(), vm_bytes);
    assert_eq!(tree_digests(&base), before);
}

#[test]
#[cfg_attr(not(ingot_e2e), ignore = "end-to-end lane: set INGOT_E2E=1")]
fn bundles_reproduce_verify_with_minisign_and_carry_what_the_manifest_says() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    for arch in ARCHES {
        let (a, b) = (
            f.bundle("out", "1.0.0", arch),
            f.bundle("out2", "1.0.0", arch),
        );
        let (da, db) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        assert_eq!(
            hex_sha256(&da),
            hex_sha256(&db),
            "{arch}: update.bundle differs between two builds"
        );
        // GNU tar, not Ingot, takes the bundle apart; minisign checks the manifest.
        let x = tmp.path().join(arch);
        std::fs::create_dir_all(&x).unwrap();
        let (good, out) = tool(
            "tar",
            &["-xf", a.to_str().unwrap(), "-C", x.to_str().unwrap()],
        );
        assert!(good, "tar: {out}");
        let (good, out) = tool(
            "minisign",
            &[
                "-V",
                "-p",
                &f.pubk,
                "-m",
                x.join("manifest").to_str().unwrap(),
                "-x",
                x.join("manifest.minisig").to_str().unwrap(),
            ],
        );
        assert!(good, "minisign -V: {out}");
        assert!(
            out.contains(&format!(
                "bundle image=edge-minimal version=1.0.0 arch={arch}"
            )),
            "{out}"
        );
        let bm = std::fs::read_to_string(x.join("manifest")).unwrap();
        let mut payload = 0;
        for line in bm.lines().filter(|l| l.starts_with("member ")) {
            let w: Vec<&str> = line.split(' ').collect();
            let data = std::fs::read(x.join(w[1])).unwrap();
            assert_eq!(
                (hex_sha256(&data), data.len().to_string()),
                (w[2].to_string(), w[3].to_string()),
                "{line}"
            );
            payload += data.len();
        }
        assert!(
            bm.contains(&format!("\narch {arch}\nhardware qemu-{arch}-ab\n")),
            "{bm}"
        );
        assert!(
            da.len() as f64 <= payload as f64 * 1.05,
            "bundle {} bytes, members {payload}",
            da.len()
        );
        // The uncompressed root image is exactly slot A of the disk.
        let (good, root) = tool(
            "sh",
            &[
                "-c",
                &format!(
                    "gunzip -c {} | sha256sum",
                    x.join("rootfs.img.gz").display()
                ),
            ],
        );
        assert!(good);
        let rootfs = bm.lines().find(|l| l.starts_with("rootfs ")).unwrap();
        assert!(
            rootfs.contains(root.split(' ').next().unwrap()),
            "{rootfs} vs {root}"
        );
        let img = f.image("out", "1.0.0", arch);
        // The provenance names the bundle as a subject and dates each Release it came from.
        let prov = std::fs::read_to_string(img.join("provenance.intoto.jsonl")).unwrap();
        let env: serde_json::Value = serde_json::from_str(prov.lines().next().unwrap()).unwrap();
        use base64::Engine;
        let stmt: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(env["payload"].as_str().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert!(
            stmt["subject"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["name"] == "update.bundle" && s["digest"]["sha256"] == hex_sha256(&da)),
            "{stmt:#}"
        );
        let deps = stmt["predicate"]["buildDefinition"]["resolvedDependencies"]
            .as_array()
            .unwrap();
        assert!(
            deps.iter()
                .filter(|d| d["uri"].as_str().is_some_and(|u| u.ends_with("/InRelease")))
                .all(|d| d["annotations"]["date"]
                    .as_str()
                    .is_some_and(|x| x.ends_with("UTC"))),
            "{deps:#?}"
        );
        let m = manifest(&img);
        assert!(m["artifacts"]["update.bundle"]["sha256"] == hex_sha256(&da));
        ok(
            &ingot(&[
                "verify",
                img.to_str().unwrap(),
                "--key",
                &f.pubk,
                "--strict",
            ]),
            "verify",
        );
        let text = ok(&ingot(&["inspect", img.to_str().unwrap()]), "inspect");
        assert!(
            text.contains("update bundle  edge-minimal 1.0.0 for qemu-")
                && text.contains("rootfs.img.gz"),
            "{text}"
        );
        // The disk: GPT, ESP, slot A, data (slot B is empty until the first update).
        let (good, out) = tool("sgdisk", &["-v", img.join("disk.raw").to_str().unwrap()]);
        assert!(good && out.contains("No problems found"), "{out}");
        for (part, checker, arg) in [
            ("esp", "fsck.vfat", "-n"),
            ("root-a", "e2fsck", "-fn"),
            ("data", "e2fsck", "-fn"),
        ] {
            let p = tmp.path().join(format!("{arch}-{part}.img"));
            extract_partition(&img, part, &p);
            let (good, out) = tool(checker, &[arg, p.to_str().unwrap()]);
            assert!(good, "{checker} on {part}: {out}");
        }
        // Slot PARTUUIDs do not depend on the version.
        let parts = |v: &str| {
            manifest(&f.image("out", v, arch))["disk"]["partitions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p["name"].as_str().unwrap().to_string(),
                        p["guid"].as_str().unwrap().to_string(),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(parts("1.0.0"), parts("2.0.0"));
        // A changed byte in the bundle fails verify.
        let copy = copy_image(&img, &tmp.path().join(format!("{arch}-copy")));
        let fl = flipped(&a, tmp.path());
        std::fs::rename(fl, copy.join("update.bundle")).unwrap();
        let o = ingot(&["verify", copy.to_str().unwrap(), "--key", &f.pubk]);
        assert!(
            !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("update.bundle")
        );
    }
}

fn update_rollback_and_refusals(arch: &str, via: &str) {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let other_arch = if arch == "x86_64" {
        "aarch64"
    } else {
        "x86_64"
    };
    // Over a disk, first a file that is no bundle at all (the image's manifest.json): the
    // device passes the disk over and says so. The harness used to wait out the install
    // timeout for a verdict that never came.
    let garbage = f.image("out", "1.0.0", arch).join("manifest.json");
    let first = usize::from(via == "disk");
    let mut steps = Vec::new();
    if first == 1 {
        steps.push(format!("{}:rejected", garbage.display()));
    }
    steps.extend([
        format!(
            "{}:rejected",
            flipped(&f.bundle("out", "2.0.0", arch), tmp.path()).display()
        ),
        format!("{}:rejected", f.bundle("other", "2.0.0", arch).display()),
        format!(
            "{}:rejected",
            f.bundle("out", "2.0.0", other_arch).display()
        ),
        format!("{}:updated", f.bundle("out", "2.0.0", arch).display()),
        format!("{}:rolled-back", f.bundle("out", "3.0.0", arch).display()),
        format!("{}:rejected", f.bundle("out", "1.0.0", arch).display()),
    ]);
    // Slot b ran 2.0.0 through several boots and the rollback: still its bytes exactly.
    let slots = [
        ("root-b", f.bundle("out", "2.0.0", arch)),
        ("root-a", f.bundle("out", "3.0.0", arch)),
    ];
    let r = ota_test(
        &f.image("out", "1.0.0", arch),
        &steps,
        tmp.path(),
        &["--via", via],
        &slots,
    );
    let at = |n: usize| step(&r, n + first);
    let msg = |n: usize| at(n)["message"].as_str().unwrap().to_string();
    if first == 1 {
        let m = step(&r, 0)["message"].as_str().unwrap();
        assert!(m.contains("no update source"), "{m}");
        assert_eq!(step(&r, 0)["to_version"], "1.0.0");
    }
    assert!(msg(0).contains("member rootfs.img.gz"), "{}", msg(0));
    assert!(msg(1).contains("signed by another key"), "{}", msg(1));
    assert!(msg(2).contains("wrong arch"), "{}", msg(2));
    assert_eq!(at(3)["to_version"], "2.0.0");
    assert!(at(3)["install_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(at(4)["to_version"], "2.0.0");
    assert_eq!(
        at(4)["failed_attempts"],
        3,
        "three tries, then the fallback"
    );
    let last = at(4)["boots"].as_array().unwrap().last().unwrap();
    assert_eq!(last["ready"]["rollback"], true);
    assert!(msg(5).contains("downgrade"), "{}", msg(5));
}

#[test]
#[cfg_attr(not(ingot_e2e), ignore = "end-to-end lane: set INGOT_E2E=1")]
fn x86_64_updates_rolls_back_and_refuses_bad_bundles() {
    update_rollback_and_refusals("x86_64", "disk");
}

#[test]
#[cfg_attr(not(ingot_e2e), ignore = "end-to-end lane: set INGOT_E2E=1")]
fn aarch64_updates_over_http_rolls_back_and_refuses_bad_bundles() {
    update_rollback_and_refusals("aarch64", "http");
}

/// The two ways a release can fail before any agent runs: an init the root does not have (the
/// kernel panics and reboots) and an init that hangs (only the watchdog the initramfs armed
/// resets it). Each must run down its tries and fall back to 2.0.0 with the rollback flag.
#[test]
#[cfg_attr(not(ingot_e2e), ignore = "end-to-end lane: set INGOT_E2E=1")]
fn x86_64_falls_back_from_a_missing_init_and_from_a_hang() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let key = format!("{}.key", f.dir.path().join("release").display());
    let out = tmp.path().join("broken");
    let mut bundles = Vec::new();
    for profile in [
        "tests/profiles/edge-broken-init.toml",
        "tests/profiles/edge-hang.toml",
    ] {
        let dirs = build(
            profile,
            &["hardware/qemu-x86_64-ab.toml"],
            &out,
            &["--key", &key],
        );
        bundles.push(dirs[0].join("update.bundle"));
    }
    let options = ingot::bundle::Bundle::read(&bundles[1])
        .unwrap()
        .manifest
        .options;
    assert!(
        options.contains("ingot.watchdog=15") && options.ends_with("init=/usr/lib/ingot-test/hang"),
        "{options}"
    );
    let steps = [
        format!("{}:rolled-back", bundles[0].display()),
        format!("{}:rolled-back", bundles[1].display()),
    ];
    let slots = [
        ("root-a", f.bundle("out", "2.0.0", "x86_64")),
        ("root-b", bundles[1].clone()),
    ];
    let r = ota_test(
        &f.image("out", "2.0.0", "x86_64"),
        &steps,
        tmp.path(),
        &[],
        &slots,
    );
    for (n, cause) in [
        (0, "Attempted to kill init"),
        (1, "the watchdog reset the machine"),
    ] {
        let s = step(&r, n);
        assert_eq!(s["to_version"], "2.0.0", "{s:#}");
        assert_eq!(s["failed_attempts"], 3, "{s:#}");
        let boots = s["boots"].as_array().unwrap();
        let failed: Vec<_> = boots
            .iter()
            .filter(|b| b["end"] == "exited" && b["install_seconds"].is_null())
            .collect();
        assert_eq!(failed.len(), 3, "{s:#}");
        for b in failed {
            assert!(
                b["cause"].as_str().unwrap_or("").contains(cause),
                "step {n}: a failed boot's cause is not `{cause}`: {b:#}"
            );
        }
        assert_eq!(boots.last().unwrap()["ready"]["rollback"], true, "{s:#}");
        assert!(s["message"].as_str().unwrap().contains(cause), "{s:#}");
        eprintln!("step {n}: {}", s["message"].as_str().unwrap());
    }
}

fn power_cuts(arch: &str) {
    let f = fixture();
    for point in ["power-cut", "power-cut@kernel", "power-cut@entry"] {
        let tmp = tempfile::tempdir().unwrap();
        let steps = [format!(
            "{}:{point}",
            f.bundle("out", "2.0.0", arch).display()
        )];
        let slots = [
            ("root-a", f.bundle("out", "1.0.0", arch)),
            ("root-b", f.bundle("out", "2.0.0", arch)),
        ];
        let r = ota_test(
            &f.image("out", "1.0.0", arch),
            &steps,
            tmp.path(),
            &[],
            &slots,
        );
        let s = step(&r, 0);
        let boots = s["boots"].as_array().unwrap();
        assert_eq!(boots[0]["end"], "cut", "{point}: {s:#}");
        // Unless the cut landed after the entry was complete (the report says so), the next
        // boot is the old version, and the install then succeeds.
        if !s["message"]
            .as_str()
            .unwrap()
            .contains("the cut came after")
        {
            assert_eq!(boots[1]["ready"]["version"], "1.0.0", "{point}: {s:#}");
            assert_eq!(
                boots.last().unwrap()["ready"]["version"],
                "2.0.0",
                "{point}: {s:#}"
            );
        }
        assert_eq!(s["to_version"], "2.0.0", "{point}: {s:#}");
    }
}

#[test]
#[cfg_attr(not(ingot_e2e), ignore = "end-to-end lane: set INGOT_E2E=1")]
fn x86_64_survives_a_power_cut_at_each_point_of_an_install() {
    power_cuts("x86_64");
}

#[test]
#[cfg_attr(not(ingot_e2e), ignore = "end-to-end lane: set INGOT_E2E=1")]
fn aarch64_survives_a_power_cut_at_each_point_of_an_install() {
    power_cuts("aarch64");
}

/// vm-base (systemd) on the x86_64 A/B machine: 1.0.0, 2.0.0 and a broken 3.0.0.
fn vm_fixture() -> &'static (tempfile::TempDir, PathBuf) {
    static F: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    F.get_or_init(|| {
        let dir = shared_tempdir();
        let key = dir.path().join("release");
        ok(
            &ingot(&["keygen", "--out", key.to_str().unwrap()]),
            "keygen",
        );
        let key = format!("{}.key", key.display());
        let out = dir.path().join("out");
        for profile in [
            "profiles/vm-base.toml",
            "tests/profiles/vm-v2.toml",
            "tests/profiles/vm-broken-probe.toml",
        ] {
            let b = build(
                profile,
                &["hardware/qemu-x86_64-ab.toml"],
                &out,
                &["--key", &key],
            );
            assert_eq!(b.len(), 1);
        }
        (dir, out)
    })
}

#[test]
#[cfg_attr(not(ingot_e2e), ignore = "end-to-end lane: set INGOT_E2E=1")]
fn vm_base_with_systemd_updates_and_rolls_back_on_x86_64() {
    let (_, out) = vm_fixture();
    let tmp = tempfile::tempdir().unwrap();
    let img = |v: &str| out.join(format!("vm-base-{v}-x86_64"));
    let steps = [
        format!("{}:updated", img("2.0.0").join("update.bundle").display()),
        format!(
            "{}:rolled-back",
            img("3.0.0").join("update.bundle").display()
        ),
    ];
    let slots = [
        ("root-b", img("2.0.0").join("update.bundle")),
        ("root-a", img("3.0.0").join("update.bundle")),
    ];
    let r = ota_test(
        &img("1.0.0"),
        &steps,
        tmp.path(),
        &["--timeout", "240"],
        &slots,
    );
    assert_eq!(step(&r, 0)["to_version"], "2.0.0");
    assert_eq!(step(&r, 1)["to_version"], "2.0.0");
    assert_eq!(step(&r, 1)["failed_attempts"], 3);
    // On the read-only slot every unit still starts: systemd's sandboxing needs a writable
    // /tmp (systemd-resolved failed with 226/NAMESPACE before the initramfs mounted a tmpfs).
    // The broken release's own ready unit may fail: that is the point of it.
    for s in r["steps"].as_array().unwrap() {
        for b in s["boots"].as_array().unwrap() {
            let log = std::fs::read_to_string(b["log"].as_str().unwrap()).unwrap();
            let failed: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("Failed to start") && !l.contains("ingot"))
                .collect();
            assert!(failed.is_empty(), "{}: {failed:#?}", b["log"]);
        }
    }
}

/// Delta bundles on both arches: 1.0.0 → 1.0.1 where logsave's version and one agent file
/// changed. The delta is a small fraction of the full bundle, reproducible, installs `updated`
/// on a device running 1.0.0; with a flipped byte, or on a device whose 1.0.0 was built
/// differently (another root image digest), it is `rejected` before anything is written.
#[test]
#[cfg_attr(not(ingot_e2e), ignore = "end-to-end lane: set INGOT_E2E=1")]
fn delta_bundles_install_from_the_running_slot_and_refuse_another_base() {
    let f = fixture();
    let key = format!("{}.key", f.dir.path().join("release").display());
    let d = tempfile::tempdir().unwrap();
    let hw = [
        "hardware/qemu-x86_64-ab.toml",
        "hardware/qemu-aarch64-ab.toml",
    ];
    let base_out = d.path().join("base");
    let bases = build(
        "tests/profiles/edge-delta-1.0.0.toml",
        &hw,
        &base_out,
        &["--key", &key],
    );
    let mut delta_args = vec!["--key".to_string(), key.clone()];
    for b in &bases {
        delta_args.extend(["--delta-from".to_string(), b.display().to_string()]);
    }
    let delta_args: Vec<&str> = delta_args.iter().map(String::as_str).collect();
    let new = build(
        "tests/profiles/edge-delta-1.0.1.toml",
        &hw,
        &d.path().join("new"),
        &delta_args,
    );
    let again = build(
        "tests/profiles/edge-delta-1.0.1.toml",
        &hw,
        &d.path().join("again"),
        &delta_args,
    );
    // The same 1.0.0 built at another time: another root image digest.
    let other_out = d.path().join("other");
    let mut args = vec![
        "build",
        "-q",
        "tests/profiles/edge-delta-1.0.0.toml",
        "--out",
        other_out.to_str().unwrap(),
        "--key",
        &key,
    ];
    for h in hw {
        args.extend(["--hardware", h]);
    }
    ok(
        &ingot_env(&args, &[("SOURCE_DATE_EPOCH", "1767225600")]),
        "build at another epoch",
    );
    for (i, arch) in ARCHES.iter().enumerate() {
        let (base, dir) = (&bases[i], &new[i]);
        assert!(
            dir.ends_with(format!("edge-minimal-1.0.1-{arch}")),
            "{dir:?}"
        );
        let delta = dir.join("update-from-1.0.0.bundle");
        let full = std::fs::metadata(dir.join("update.bundle")).unwrap().len();
        let small = std::fs::metadata(&delta).unwrap().len();
        eprintln!(
            "{arch}: delta bundle {small} bytes, full bundle {full} bytes ({:.2}%)",
            small as f64 * 100.0 / full as f64
        );
        assert!(
            small * 10 <= full,
            "{arch}: delta {small} bytes is over 10% of {full}"
        );
        assert_eq!(
            std::fs::read(&delta).unwrap(),
            std::fs::read(again[i].join("update-from-1.0.0.bundle")).unwrap(),
            "{arch}: two builds made different delta bundles"
        );
        // The lockfiles show the package version that changed.
        let lock = |p: &Path| std::fs::read_to_string(p.join("packages.lock")).unwrap();
        let logsave = |t: &str| {
            let at = t.find("name = \"logsave\"").unwrap();
            t[at..].lines().nth(1).unwrap().to_string()
        };
        assert_ne!(
            logsave(&lock(base)),
            logsave(&lock(dir)),
            "logsave did not change"
        );
        // The image directory lists and verifies it; inspect names base and savings.
        ok(
            &ingot(&[
                "verify",
                dir.to_str().unwrap(),
                "--key",
                &f.pubk,
                "--strict",
            ]),
            "verify",
        );
        let insp: serde_json::Value = serde_json::from_str(&ok(
            &ingot(&["inspect", dir.to_str().unwrap(), "--json"]),
            "inspect",
        ))
        .unwrap();
        let db = &insp["delta_bundles"][0];
        assert_eq!(db["base_version"], "1.0.0", "{db}");
        assert_eq!(db["size"], small, "{db}");
        // Unchanged kernel and initramfs are left out.
        let members: Vec<&str> = db["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap())
            .collect();
        assert!(
            !members.contains(&"linux.gz") && !members.contains(&"initrd"),
            "{members:?}"
        );

        let tmp = tempfile::tempdir().unwrap();
        let flipped = flipped_member(&delta, "rootfs.img.zst-patch.1", tmp.path());
        let report = ota_test(
            base,
            &[
                format!("{}:rejected", flipped.display()),
                format!("{}:updated", delta.display()),
            ],
            tmp.path(),
            &[],
            &[
                ("root-a", base.join("update.bundle")),
                ("root-b", dir.join("update.bundle")),
            ],
        );
        assert!(
            step(&report, 0)["message"]
                .as_str()
                .unwrap()
                .contains("rootfs.img.zst-patch"),
            "{report:#}"
        );
        assert_eq!(step(&report, 1)["to_version"], "1.0.1", "{report:#}");
        // The updater measured the rebuild on the device: zstd's peak resident memory plus the
        // base copy stays within what the bundle states (and checked before it started).
        let applied = &step(&report, 1)["delta"];
        let peak = applied["peak_bytes"]
            .as_u64()
            .expect("peak memory measured");
        let stated = applied["stated_bytes"].as_u64().unwrap();
        assert_eq!(stated, db["memory"].as_u64().unwrap(), "{applied}");
        assert!(
            peak <= stated,
            "{arch}: peak {peak} over the stated {stated}"
        );
        eprintln!(
            "{arch}: delta install {}s (rebuild {}s, peak memory {peak} of {stated} stated), reboot to ready {}s",
            step(&report, 1)["install_seconds"],
            applied["seconds"],
            step(&report, 1)["reboot_to_ready_seconds"]
        );
        let tmp = tempfile::tempdir().unwrap();
        let other = other_out.join(format!("edge-minimal-1.0.0-{arch}"));
        let report = ota_test(
            &other,
            &[format!("{}:rejected", delta.display())],
            tmp.path(),
            &[],
            &[],
        );
        let msg = step(&report, 0)["message"].as_str().unwrap().to_string();
        assert!(
            msg.contains("this delta updates 1.0.0's root image") && msg.contains("running 1.0.0"),
            "{msg}"
        );
    }
}

/// A copy of `bundle` with one byte flipped in the middle of member `name`.
fn flipped_member(bundle: &Path, name: &str, into: &Path) -> PathBuf {
    let mut ar = tar::Archive::new(std::fs::File::open(bundle).unwrap());
    let (pos, size) = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.path().unwrap().to_str() == Some(name))
        .map(|e| (e.raw_file_position(), e.header().size().unwrap()))
        .unwrap();
    let mut bytes = std::fs::read(bundle).unwrap();
    bytes[(pos + size / 2) as usize] ^= 0x01;
    let out = into.join(format!("flipped-{name}.bundle"));
    std::fs::write(&out, bytes).unwrap();
    out
}
