//! `ota-test BASE_DIR STEP...`: parse, run the library's harness, print and write the reports.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};

use super::{source, SourceOpts};
use crate::base::fsx;
use crate::boottest;
use crate::image_dir::ImageDir;
use crate::ota::harness::{self, Step, Via};

/// `ota-test`'s flags.
pub struct OtaFlags {
    /// Seconds one boot may take to report ready (installs get four times as long).
    pub timeout: u64,
    /// How bundles reach the device.
    pub via: Via,
    /// JUnit XML report.
    pub junit: Option<PathBuf>,
    /// JSON report.
    pub json: Option<PathBuf>,
    /// HTML report.
    pub html: Option<PathBuf>,
    /// Log directory.
    pub logs: Option<PathBuf>,
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
            bail!("step `{}`: {} is not a file", s.text, s.bundle.display());
        }
    }
    if let Some(k) = &f.keep_disk {
        keepable(k, base)?;
    }
    let src = source(so, &dir.manifest.boot.firmware.suite, quiet)?;
    let spec = boottest::vm_spec(&dir, f.accel.as_deref(), &src)?;
    let log_dir = boottest::log_dir(f.logs.as_deref(), f.json.as_deref(), f.junit.as_deref())?;
    let opts = harness::Options {
        timeout: Duration::from_secs(f.timeout),
        via: f.via,
        log_dir: log_dir.clone(),
        keep_disk: f.keep_disk,
        quiet,
    };
    let report = harness::run(&dir, spec, steps, &opts)?;
    if let Some(p) = &f.json {
        fsx::write_atomic(
            p,
            (serde_json::to_string_pretty(&report)? + "\n").as_bytes(),
        )?;
    }
    if let Some(p) = &f.junit {
        fsx::write_atomic(p, report.junit_xml().as_bytes())?;
    }
    if let Some(p) = &f.html {
        let page = crate::report::render(&crate::report::Inputs {
            images: vec![dir.clone()],
            ota_reports: vec![("this run".into(), serde_json::to_value(&report)?)],
            ..Default::default()
        })?;
        super::report::write_page(&page, Some(p))?;
    }
    if f.logs.is_none() && f.json.is_none() && f.junit.is_none() && !quiet {
        eprintln!("console logs: {}", log_dir.display());
    }
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
        Ok(_) => {
            let mut magic = [0u8; 4];
            let qcow2 = std::fs::File::open(k)
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
                .is_ok()
                && magic == *b"QFI\xfb";
            if qcow2 {
                Ok(())
            } else {
                Err(bad(
                    "exists and is not a disk an earlier run kept (a qcow2 file); give a new file name",
                ))
            }
        }
    }
}
