//! The on-device updater (`device/ingot-update`) run on the build host with `sh`, against a
//! directory standing in for the ESP, regular files standing in for the slots, and bundles
//! written by Ingot's own bundle writer and signed with a test key, checked with the real
//! `minisign`. Fast lane: no QEMU, no network. The QEMU proof is tests/ota.rs.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use ingot::bundle::{self, Manifest, Member};
use ingot::trust::minisign::SecretKey;
use sha2::{Digest, Sha256};

const SLOT_A: &str = "11111111-1111-8111-8111-111111111111";
const SLOT_B: &str = "22222222-2222-8222-8222-222222222222";

struct Device {
    dir: tempfile::TempDir,
    key: SecretKey,
}

fn sha(d: &[u8]) -> String {
    hex::encode(Sha256::digest(d))
}

impl Device {
    /// A device running `version` from `slot`, with a blessed entry for it.
    fn new(version: &str, slot: char) -> Device {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for p in ["esp/loader/entries", "run", "state"] {
            std::fs::create_dir_all(d.join(p)).unwrap();
        }
        std::fs::write(d.join("slot-a"), vec![0u8; 1 << 20]).unwrap();
        std::fs::write(d.join("slot-b"), vec![0u8; 1 << 20]).unwrap();
        std::fs::write(
            d.join("devmap"),
            format!(
                "{SLOT_A} {}\n{SLOT_B} {}\n",
                d.join("slot-a").display(),
                d.join("slot-b").display()
            ),
        )
        .unwrap();
        let key = SecretKey::generate();
        std::fs::write(d.join("update.pub"), key.public().to_file()).unwrap();
        let dev = Device { dir, key };
        dev.running(version, slot);
        dev.entry(&format!("edge-{version}.conf"), slot);
        std::fs::create_dir_all(dev.p(&format!("esp/edge/{version}"))).unwrap();
        std::fs::write(dev.p(&format!("esp/edge/{version}/linux")), "old kernel").unwrap();
        dev
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// What the running system says about itself: its configuration and command line.
    fn running(&self, version: &str, slot: char) {
        std::fs::write(
            self.p("ota.conf"),
            format!("IMAGE=edge\nVERSION={version}\nARCH=x86_64\nHARDWARE=qemu-x86_64-ab\nTRIES=3\nWATCHDOG=0\nSLOT_A={SLOT_A}\nSLOT_B={SLOT_B}\nESP_UUID=x\nDATA=\n"),
        )
        .unwrap();
        let uuid = if slot == 'a' { SLOT_A } else { SLOT_B };
        std::fs::write(
            self.p("cmdline"),
            format!("root=PARTUUID={uuid} ro ingot.slot={slot} console=ttyS0 quiet\n"),
        )
        .unwrap();
    }

    fn entry(&self, name: &str, slot: char) {
        let uuid = if slot == 'a' { SLOT_A } else { SLOT_B };
        let version = name
            .trim_start_matches("edge-")
            .split(['+', '.'])
            .take(3)
            .collect::<Vec<_>>()
            .join(".");
        let version = version.trim_end_matches(".conf").to_string();
        std::fs::write(
            self.p(&format!("esp/loader/entries/{name}")),
            format!("title edge {version}\nversion {version}\nsort-key edge\nlinux /edge/{version}/linux\ninitrd /edge/{version}/initrd\noptions root=PARTUUID={uuid} ro ingot.slot={slot} console=ttyS0\n"),
        )
        .unwrap();
    }

    fn entries(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.p("esp/loader/entries"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// Run the updater; (exit code, stdout, stderr).
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let o = Command::new("sh")
            .arg(common::root().join("device/ingot-update"))
            .args(args)
            .env("INGOT_OTA_CONF", self.p("ota.conf"))
            .env("INGOT_OTA_PUBKEY", self.p("update.pub"))
            .env("INGOT_OTA_RUN", self.p("run"))
            .env("INGOT_OTA_CMDLINE", self.p("cmdline"))
            .env("INGOT_OTA_ESP", self.p("esp"))
            .env("INGOT_OTA_DEVMAP", self.p("devmap"))
            .env("INGOT_OTA_STATE", self.p("state"))
            .env(
                "INGOT_OTA_REBOOT",
                format!("touch {}", self.p("rebooted").display()),
            )
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    /// A bundle of `version` with a small root image, signed with `key` (the device's own
    /// when `None`); `edit` may change the manifest after the members are hashed.
    fn bundle(
        &self,
        name: &str,
        version: &str,
        key: Option<&SecretKey>,
        edit: impl Fn(&mut Manifest),
    ) -> (PathBuf, Vec<u8>) {
        let root: Vec<u8> = (0..96 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
        let gz = bundle::gzip(&root).unwrap();
        let kernel_raw = format!("kernel {version}").into_bytes();
        let kernel = bundle::gzip(&kernel_raw).unwrap();
        let initrd = format!("initrd {version}").into_bytes();
        let payload: [(&str, &[u8]); 3] = [
            (bundle::LINUX, &kernel),
            (bundle::INITRD, &initrd),
            (bundle::ROOTFS, &gz),
        ];
        let mut m = Manifest {
            image: "edge".into(),
            version: version.into(),
            arch: "x86_64".into(),
            hardware: "qemu-x86_64-ab".into(),
            min_version: "0.0.0".into(),
            options: "console=ttyS0 quiet panic=-1".into(),
            rootfs: (sha(&root), root.len() as u64),
            kernel: (sha(&kernel_raw), kernel_raw.len() as u64),
            delta: None,
            members: payload
                .iter()
                .map(|(n, d)| Member {
                    name: (*n).into(),
                    sha256: sha(d),
                    size: d.len() as u64,
                })
                .collect(),
        };
        edit(&mut m);
        let k = key.unwrap_or(&self.key);
        let sig = k.sign_bytes(m.to_text().as_bytes(), &m.trusted_comment());
        let path = self.p(name);
        bundle::write(&path, &m, Some(&sig), &payload, 0).unwrap();
        (path, root)
    }
}

fn refused(dev: &Device, bundle: &Path, why: &str) {
    let before = (std::fs::read(dev.p("slot-b")).unwrap(), dev.entries());
    let (code, _, err) = dev.run(&["install", bundle.to_str().unwrap(), "--no-reboot"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("ingot-update: rejected: ") && err.contains(why),
        "wanted `{why}`: {err}"
    );
    assert_eq!(
        (std::fs::read(dev.p("slot-b")).unwrap(), dev.entries()),
        before,
        "a refused bundle wrote something"
    );
    let last = std::fs::read_to_string(dev.p("state/last-result")).unwrap();
    assert!(
        last.starts_with("rejected: ") && last.contains(why),
        "{last}"
    );
}

#[test]
fn the_code_that_runs_on_the_device_passes_shellcheck() {
    // The updater, the first boot's SSH host keys, and the initramfs's /init, which every
    // image boots through.
    for script in [
        "device/ingot-update",
        "device/ingot-ssh-hostkeys",
        "src/boot/initramfs-init.sh",
    ] {
        let o = Command::new("shellcheck")
            .args(["-s", "sh", "-S", "style"])
            .arg(common::root().join(script))
            .output()
            .expect("shellcheck (Debian package shellcheck; .ci/host-deps installs it)");
        assert!(
            o.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
}

#[test]
fn bad_bundles_are_refused_before_anything_is_written() {
    let dev = Device::new("1.0.0", 'a');
    let (good, _) = dev.bundle("good.bundle", "2.0.0", None, |_| {});
    // One flipped byte in the compressed root image (the last member).
    let mut bytes = std::fs::read(&good).unwrap();
    let b = bundle::Bundle::read(&good).unwrap();
    let gz = b.members.iter().find(|m| m.name == bundle::ROOTFS).unwrap();
    let at = bytes
        .windows(3)
        .rposition(|w| w[0] != 0 && w[1] != 0 && w[2] != 0)
        .unwrap()
        - (gz.size as usize / 2);
    bytes[at] ^= 0x10;
    let flipped = dev.p("flipped.bundle");
    std::fs::write(&flipped, &bytes).unwrap();
    refused(&dev, &flipped, "member rootfs.img.gz");
    // Truncated: the signature member survives but a payload member does not.
    let truncated = dev.p("truncated.bundle");
    std::fs::write(&truncated, &std::fs::read(&good).unwrap()[..4096]).unwrap();
    refused(&dev, &truncated, "truncated");
    let other = SecretKey::generate();
    let (p, _) = dev.bundle("other-key.bundle", "2.0.0", Some(&other), |_| {});
    refused(&dev, &p, "signed by another key");
    // The manifest edited after signing.
    let mut text = std::fs::read(&good).unwrap();
    let pos = text
        .windows(13)
        .position(|w| w == b"version 2.0.0")
        .unwrap();
    text[pos + 8] = b'9';
    let edited = dev.p("edited.bundle");
    std::fs::write(&edited, &text).unwrap();
    refused(&dev, &edited, "bad signature");
    let (p, _) = dev.bundle("arm.bundle", "2.0.0", None, |m| m.arch = "aarch64".into());
    refused(&dev, &p, "wrong arch");
    let (p, _) = dev.bundle("other-image.bundle", "2.0.0", None, |m| {
        m.image = "vm".into()
    });
    refused(&dev, &p, "wrong image");
    let (p, _) = dev.bundle("other-hw.bundle", "2.0.0", None, |m| {
        m.hardware = "rpi".into()
    });
    refused(&dev, &p, "wrong hardware");
    let (p, _) = dev.bundle("old.bundle", "0.9.0", None, |_| {});
    refused(&dev, &p, "downgrade");
    let (p, _) = dev.bundle("same.bundle", "1.0.0", None, |_| {});
    refused(&dev, &p, "running version");
    let (p, _) = dev.bundle("needs-newer.bundle", "3.0.0", None, |m| {
        m.min_version = "2.0.0".into()
    });
    refused(&dev, &p, "needs at least version 2.0.0");
    let (p, _) = dev.bundle("big.bundle", "2.0.0", None, |m| m.rootfs.1 = 2 << 20);
    refused(&dev, &p, "slot b is too small");
    refused(&dev, &dev.p("missing.bundle"), "cannot read");
    // A dry run checks everything and writes nothing.
    let before = std::fs::read(dev.p("slot-b")).unwrap();
    let (code, _, err) = dev.run(&["install", good.to_str().unwrap(), "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("dry run: would write 2.0.0"), "{err}");
    assert_eq!(std::fs::read(dev.p("slot-b")).unwrap(), before);
    assert!(!dev.p("run/lock").exists(), "lock left behind");
}

#[test]
fn install_writes_the_inactive_slot_and_the_counted_entry_last() {
    let dev = Device::new("1.0.0", 'a');
    // What a power cut leaves: a temporary entry and a half-copied kernel of another version.
    dev.entry("edge-1.5.0+3.conf.tmp", 'b');
    std::fs::create_dir_all(dev.p("esp/edge/1.5.0")).unwrap();
    std::fs::write(dev.p("esp/edge/1.5.0/linux.tmp"), "half").unwrap();
    let (b, root) = dev.bundle("u.bundle", "2.0.0", None, |_| {});
    let (code, _, err) = dev.run(&["install", b.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(dev.p("rebooted").exists(), "no reboot after the install");
    assert!(
        err.contains(
            "repair: removing the stale temporary file loader/entries/edge-1.5.0+3.conf.tmp"
        ),
        "{err}"
    );
    assert!(!dev.p("esp/edge/1.5.0").exists(), "{err}");
    // Each step says what it does before it does it, in this order.
    let order = [
        "checking the manifest's signature",
        "checking member rootfs.img.gz",
        "writing the root image to slot b",
        "checking slot b",
        "copying linux",
        "kernel and initramfs in place",
        "temporary entry written",
        "installed 2.0.0 to slot b",
    ];
    let mut at = 0;
    for step in order {
        let p = err[at..]
            .find(step)
            .unwrap_or_else(|| panic!("`{step}` missing or out of order: {err}"));
        at += p;
    }
    let slot = std::fs::read(dev.p("slot-b")).unwrap();
    assert_eq!(&slot[..root.len()], &root[..]);
    assert_eq!(dev.entries(), ["edge-1.0.0.conf", "edge-2.0.0+3.conf"]);
    let entry = std::fs::read_to_string(dev.p("esp/loader/entries/edge-2.0.0+3.conf")).unwrap();
    assert!(
        entry.contains(&format!(
            "options root=PARTUUID={SLOT_B} ro ingot.slot=b console=ttyS0 quiet panic=-1\n"
        )),
        "{entry}"
    );
    assert!(entry.contains("linux /edge/2.0.0/linux\n"), "{entry}");
    assert_eq!(
        std::fs::read_to_string(dev.p("esp/edge/2.0.0/linux")).unwrap(),
        "kernel 2.0.0"
    );
    assert_eq!(
        std::fs::read_to_string(dev.p("esp/edge/2.0.0/rootfs.sha256")).unwrap(),
        format!("{} {}\n", sha(&root), root.len())
    );
    let (_, out, _) = dev.run(&["status", "--json"]);
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s["running"]["version"], "1.0.0");
    assert_eq!(s["other"]["state"], "pending");
    assert_eq!(s["other"]["tries_left"], 3);
    assert!(s["last_result"]
        .as_str()
        .unwrap()
        .contains("installed 2.0.0 to slot b"));
    // A second install while one is pending is refused.
    let (b3, _) = dev.bundle("u3.bundle", "3.0.0", None, |_| {});
    refused(&dev, &b3, "pending");

    // The device boots 2.0.0 from slot b (systemd-boot counted one try) and it is good.
    std::fs::rename(
        dev.p("esp/loader/entries/edge-2.0.0+3.conf"),
        dev.p("esp/loader/entries/edge-2.0.0+2-1.conf"),
    )
    .unwrap();
    dev.running("2.0.0", 'b');
    let (code, out, err) = dev.run(&["boot-result", "ok"]);
    assert_eq!((code, out.trim()), (0, "slot=b"), "{err}");
    assert_eq!(dev.entries(), ["edge-1.0.0.conf", "edge-2.0.0.conf"]);
    let (code, out, _) = dev.run(&["status", "--verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("running:      2.0.0 on slot b (verify: ok)")
            && out.contains("other slot:   a, 1.0.0 good"),
        "{out}"
    );
    // A changed byte in the running slot is found.
    let mut s = std::fs::read(dev.p("slot-b")).unwrap();
    s[100] ^= 1;
    std::fs::write(dev.p("slot-b"), &s).unwrap();
    let (code, out, _) = dev.run(&["status", "--verify"]);
    assert_eq!(code, 1);
    assert!(out.contains("verify: mismatch"), "{out}");
}

#[test]
fn boots_are_blessed_judged_and_repaired() {
    // 3.0.0 on slot a used its last try and failed: the device is back on 2.0.0 (slot b).
    let dev = Device::new("2.0.0", 'b');
    dev.entry("edge-3.0.0+0-3.conf", 'a');
    let (code, out, err) = dev.run(&["boot-result", "ok"]);
    assert_eq!((code, out.trim()), (0, "slot=b rollback=1"), "{err}");
    let (_, out, _) = dev.run(&["status", "--json"]);
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            s["other"]["version"].as_str(),
            s["other"]["state"].as_str(),
            s["rollback"].as_bool()
        ),
        (Some("3.0.0"), Some("bad"), Some(true)),
        "{out}"
    );
    // The same bundle is not installed again by `auto`'s path: it failed before.
    // A failed boot of a counted entry reboots; of the last good one, it stays up.
    dev.entry("edge-2.0.0+1-2.conf", 'b');
    std::fs::remove_file(dev.p("esp/loader/entries/edge-2.0.0.conf")).unwrap();
    let (_, _, err) = dev.run(&["boot-result", "fail"]);
    assert!(
        dev.p("rebooted").exists() && err.contains("rebooting (1 tries left)"),
        "{err}"
    );
    std::fs::remove_file(dev.p("rebooted")).unwrap();
    // Two names for one version (a torn rename): the one with fewer tries left stays.
    dev.entry("edge-2.0.0+2-1.conf", 'b');
    let (code, _, err) = dev.run(&["boot-result", "ok"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("two entries for 2.0.0; removing edge-2.0.0+2-1.conf"),
        "{err}"
    );
    assert_eq!(dev.entries(), ["edge-2.0.0.conf", "edge-3.0.0+0-3.conf"]);
    let (_, out, err) = dev.run(&["boot-result", "fail"]);
    assert!(
        !dev.p("rebooted").exists() && err.contains("staying up") && out.contains("slot=b"),
        "{err}"
    );
}

/// Segments small enough that the test's images take three.
const SEGMENTS: bundle::Segments = bundle::Segments {
    size: 1 << 20,
    margin: 1 << 20,
};

/// A delta bundle from the running 1.0.0 to 1.0.1: the root image as zstd patches made by
/// Ingot's library, the kernel and initrd left out as unchanged; `edit` may change the manifest
/// before it is signed.
fn delta_bundle(dev: &Device, base: &[u8], target: &[u8], edit: impl Fn(&mut Manifest)) -> PathBuf {
    let patches = ingot::ota::delta::patch_segments(&SEGMENTS, base, target).unwrap();
    let names: Vec<String> = (0..patches.len() as u64)
        .map(bundle::patch_member)
        .collect();
    let payload: Vec<(&str, &[u8])> = names
        .iter()
        .zip(&patches)
        .map(|(n, p)| (n.as_str(), p.as_slice()))
        .collect();
    let mut m = Manifest {
        image: "edge".into(),
        version: "1.0.1".into(),
        arch: "x86_64".into(),
        hardware: "qemu-x86_64-ab".into(),
        min_version: "0.0.0".into(),
        options: "console=ttyS0 quiet panic=-1".into(),
        rootfs: (sha(target), target.len() as u64),
        kernel: (sha(b"old kernel"), 10),
        delta: Some(bundle::Delta {
            base_version: "1.0.0".into(),
            base_rootfs: (sha(base), base.len() as u64),
            memory: 64 << 20,
            segments: SEGMENTS,
            same_initrd: Some(sha(b"old initrd")),
        }),
        members: payload
            .iter()
            .map(|(n, p)| Member {
                name: n.to_string(),
                sha256: sha(p),
                size: p.len() as u64,
            })
            .collect(),
    };
    edit(&mut m);
    // Parse what was made: the Rust reader accepts exactly what the device will read.
    bundle::Manifest::parse(&m.to_text()).unwrap();
    let sig = dev
        .key
        .sign_bytes(m.to_text().as_bytes(), &m.trusted_comment());
    let path = dev.p("delta.bundle");
    bundle::write(&path, &m, Some(&sig), &payload, 0).unwrap();
    path
}

#[test]
fn a_delta_bundle_is_rebuilt_from_the_running_slot_and_refused_on_another_base() {
    let dev = Device::new("1.0.0", 'a');
    std::fs::write(dev.p("esp/edge/1.0.0/initrd"), "old initrd").unwrap();
    // 2.5 MiB images in three segments; 100 KiB inserted at 1.5 MiB moves every later byte
    // across a segment boundary. The slots are larger than the images; slot b holds junk.
    let base: Vec<u8> = (0u32..5 << 19)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let mut slot = base.clone();
    slot.resize(4 << 20, 0);
    std::fs::write(dev.p("slot-a"), &slot).unwrap();
    std::fs::write(dev.p("slot-b"), vec![0xeeu8; 4 << 20]).unwrap();
    let mut target = base[..3 << 19].to_vec();
    target.extend((0..100u32 << 10).map(|i| (i % 251) as u8));
    target.extend_from_slice(&base[3 << 19..]);
    target[50_000..54_096].fill(0x5a);

    // Memory the device does not have: refused before writing.
    let p = delta_bundle(&dev, &base, &target, |m| {
        if let Some(d) = m.delta.as_mut() {
            d.memory = 1 << 50;
        }
    });
    refused(&dev, &p, "needs 1125899906842624 bytes of memory");
    // A flipped byte in the patch.
    let p = delta_bundle(&dev, &base, &target, |_| {});
    let mut bytes = std::fs::read(&p).unwrap();
    let n = bytes.len();
    let at = bytes[..n - 1024].iter().rposition(|b| *b != 0).unwrap() - 40;
    bytes[at] ^= 0x01;
    let flipped = dev.p("delta-flipped.bundle");
    std::fs::write(&flipped, &bytes).unwrap();
    refused(&dev, &flipped, "member rootfs.img.zst-patch");
    // Another base: the running slot does not hold the root image the delta was made from.
    let mut other = slot.clone();
    other[10] ^= 0xff;
    std::fs::write(dev.p("slot-a"), &other).unwrap();
    refused(&dev, &p, "this delta updates 1.0.0's root image");
    std::fs::write(dev.p("slot-a"), &slot).unwrap();

    let (code, _, err) = dev.run(&["install", p.to_str().unwrap(), "--no-reboot"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("rebuilding 1.0.1's root image from slot a") && err.contains("; 3 segments)"),
        "{err}"
    );
    let b = std::fs::read(dev.p("slot-b")).unwrap();
    assert_eq!(
        &b[..target.len()],
        &target[..],
        "slot b is not the target image"
    );
    assert_eq!(
        std::fs::read(dev.p("esp/edge/1.0.1/linux")).unwrap(),
        b"old kernel"
    );
    assert_eq!(
        std::fs::read(dev.p("esp/edge/1.0.1/initrd")).unwrap(),
        b"old initrd"
    );
    assert!(
        dev.entries().contains(&"edge-1.0.1+3.conf".to_string()),
        "{:?}",
        dev.entries()
    );
    assert!(
        !dev.p("run/work").exists(),
        "the base copy was left in tmpfs"
    );
}
