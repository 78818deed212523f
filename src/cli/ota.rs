//! `ota-test BASE_DIR STEP...`: parse, run the library's harness, print and write the reports.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};

use super::{source, SourceOpts};
use crate::boottest;
use crate::image_dir::ImageDir;
use crate::ota::harness::{self, Step, Via};

/// `ota-test`'s flags.
pub struct OtaFlags {
    /// Seconds one boot may take to report ready (installs get four times as long).
    pub timeout: Option<u64>,
    /// How bundles reach the device.
    pub via: Via,
    /// Reports and console logs.
    pub out: super::report::TestOutputs,
    /// Keep the device's disk here.
    pub keep_disk: Option<PathBuf>,
    /// Forced accelerator.
    pub accel: Option<String>,
    /// Where to attach the signed report.
    pub attach: super::registry::AttachOpts,
}

/// Run the OTA test.
pub fn ota_test(
    base: &Path,
    steps: &[Step],
    f: OtaFlags,
    so: &SourceOpts,
    quiet: bool,
) -> Result<()> {
    f.out.check()?;
    let dir = ImageDir::open(base)?;
    // Said before anything boots (the harness also checks the ready line of the image it
    // booted): a single-root image has no second slot to update.
    if dir.manifest.boot.hardware.ab.is_none() {
        return Err(crate::base::BadInput(format!(
            "{}: not an A/B image (built for {}, which has no [ab] table); ota-test needs a base built for hardware with [ab] slots, such as hardware/qemu-x86_64-ab.toml",
            base.display(),
            dir.manifest.boot.hardware.name
        ))
        .into());
    }
    let attach = f.attach.prepare()?;
    crate::qemu::require_binary(dir.manifest.boot.hardware.arch)?;
    for s in steps {
        if !s.bundle.is_file() {
            return Err(crate::base::BadInput(format!(
                "step `{}`: {} is not a file",
                s.text,
                s.bundle.display()
            ))
            .into());
        }
    }
    if let Some(k) = &f.keep_disk {
        keepable(k, base)?;
    }
    let src = source(so, &dir.manifest.boot.firmware.suite, quiet)?;
    let spec = boottest::vm_spec(&dir, f.accel.as_deref(), &src)?;
    let log_dir = f.out.log_dir()?;
    let opts = harness::Options {
        timeout: boottest::boot_timeout(f.timeout.map(Duration::from_secs), Some(&dir.manifest)),
        via: f.via,
        log_dir: log_dir.clone(),
        keep_disk: f.keep_disk,
        quiet,
    };
    let report = harness::run(&dir, spec, steps, &opts)?;
    f.out.write(
        &serde_json::to_string_pretty(&report)?,
        &report.junit_xml(),
        || {
            Ok(crate::report::Inputs {
                images: vec![dir.clone()],
                ota_reports: vec![("this run".into(), serde_json::to_value(&report)?)],
                ..Default::default()
            })
        },
    )?;
    f.out.announce(&log_dir, quiet);
    if let Some(a) = &attach {
        a.reports(
            crate::registry::evidence::Kind::OtaReport,
            &[(
                base.to_path_buf(),
                report.passed(),
                serde_json::to_value(&report)?,
            )],
            quiet,
        )?;
    }
    for (i, s) in report.steps.iter().enumerate() {
        if !s.passed {
            eprintln!("FAIL step {}: {}: {}", i + 1, s.step, s.message);
        }
    }
    if let Some(e) = &report.error {
        eprintln!("FAIL: {e}");
    }
    if !report.passed() {
        crate::interrupt::check()?;
        bail!("ota test failed");
    }
    println!(
        "ota test passed: {} step(s) in {:.0}s",
        report.steps.len(),
        report.seconds
    );
    Ok(())
}

/// `--keep-disk FILE`, checked before anything boots: the device's disk is renamed to FILE at
/// the end, so FILE may be new or a disk an earlier run kept (a qcow2 file), never a device,
/// a directory, another file of the user's, or a file inside the base image (its disk.raw is
/// the kept disk's backing file).
fn keepable(k: &Path, base: &Path) -> Result<(), crate::base::BadInput> {
    let bad = |why: &str| crate::base::BadInput(format!("--keep-disk {}: {why}", k.display()));
    let parent = match k.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let (Ok(parent), Ok(base)) = (parent.canonicalize(), base.canonicalize()) else {
        return Err(bad("its directory does not exist"));
    };
    if parent.starts_with(&base) {
        return Err(bad(
            "inside the base image directory, whose disk.raw the kept disk is an overlay of",
        ));
    }
    match std::fs::symlink_metadata(k) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(bad(&e.to_string())),
        Ok(m) if !m.is_file() => Err(bad(
            "exists and is not a regular file; give a new file name",
        )),
        Ok(_) if kept_by_ota_test(k) => Ok(()),
        Ok(_) => Err(bad(
            "exists and is not a disk an earlier run kept (a qcow2 overlay of an image's disk.raw); give a new file name",
        )),
    }
}

/// Whether `k` is a disk `--keep-disk` kept: a qcow2 file whose backing file is an image
/// directory's disk.raw (a user's own qcow2 VM disk has none, or another).
fn kept_by_ota_test(k: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(k) else {
        return false;
    };
    // The header: magic, version, then the backing file name's offset (u64) and size (u32).
    let mut h = [0u8; 20];
    if f.read_exact(&mut h).is_err() || h[..4] != *b"QFI\xfb" {
        return false;
    }
    let offset = u64::from_be_bytes(h[8..16].try_into().unwrap_or_default());
    let size = u32::from_be_bytes(h[16..20].try_into().unwrap_or_default());
    if offset == 0 || size == 0 || size > 4096 {
        return false;
    }
    let mut name = vec![0u8; size as usize];
    f.seek(SeekFrom::Start(offset)).is_ok()
        && f.read_exact(&mut name).is_ok()
        && name.ends_with(b"/disk.raw")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A qcow2 header (as `qemu-img create -b`) naming `backing`, or none.
    fn qcow2(dir: &Path, name: &str, backing: Option<&str>) -> PathBuf {
        let mut d = vec![0u8; 1024];
        d[..4].copy_from_slice(b"QFI\xfb");
        d[4..8].copy_from_slice(&3u32.to_be_bytes());
        if let Some(b) = backing {
            d[8..16].copy_from_slice(&512u64.to_be_bytes());
            d[16..20].copy_from_slice(&(b.len() as u32).to_be_bytes());
            d[512..512 + b.len()].copy_from_slice(b.as_bytes());
        }
        let p = dir.join(name);
        std::fs::write(&p, d).unwrap();
        p
    }

    #[test]
    fn only_a_qcow2_over_an_images_disk_raw_counts_as_kept() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        assert!(kept_by_ota_test(&qcow2(
            d,
            "kept.qcow2",
            Some("/srv/out/edge-minimal-1.0.0-x86_64/disk.raw")
        )));
        assert!(!kept_by_ota_test(&qcow2(d, "vm.qcow2", None)));
        assert!(!kept_by_ota_test(&qcow2(
            d,
            "other.qcow2",
            Some("/srv/base.img")
        )));
        std::fs::write(d.join("notes.txt"), "QFI").unwrap();
        assert!(!kept_by_ota_test(&d.join("notes.txt")));
        assert!(!kept_by_ota_test(&d.join("missing.qcow2")));
    }
}
