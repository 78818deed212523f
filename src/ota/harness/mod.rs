//! `ingot ota-test`: boot an A/B image in QEMU, then hand the device each update bundle in turn
//! and check what it does with it: installs it and comes up on the new version, falls back to
//! the previous version after the new one fails every attempt, refuses it before writing, or
//! survives a power cut mid-install. The disk is a qcow2 overlay over the image's disk.raw and
//! the UEFI variables one store, both kept for the whole run, so the device lives through its
//! reboots as a real one would; the image directory is never written.
//!
//! Bundles reach the device on a second, read-only virtio disk (the device's `ingot-update auto`
//! finds it after a good boot), or with `--via http` from a server on 127.0.0.1 that the guest
//! reaches as 10.0.2.2 (the disk then holds only a pointer line). The device judges every
//! bundle itself: the harness only reads a bundle's manifest, when it can, to know which
//! version to expect.

mod device;
mod report;
mod server;
mod step;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::boottest::console::Ready;
use crate::bundle::Bundle;
use crate::image_dir::ImageDir;
use crate::qemu::{self, VmSpec};
use device::{Device, Until};
use report::{agents_ok, describe};
pub use report::{BootRun, End, Report, StepResult};
use server::{bundle_media, pointer_media, Server};
pub use step::{Cut, Expect, Step, Via};

/// How to run an OTA test.
#[derive(Debug, Clone)]
pub struct Options {
    /// Longest one boot may take to report ready.
    pub timeout: Duration,
    /// How bundles reach the device.
    pub via: Via,
    /// Where console logs go.
    pub log_dir: PathBuf,
    /// Keep the device's disk (qcow2 over the image's disk.raw) here at the end.
    pub keep_disk: Option<PathBuf>,
    /// No progress lines.
    pub quiet: bool,
}

/// Run the steps against the image in `base`.
pub fn run(base: &ImageDir, spec: VmSpec, steps: &[Step], opts: &Options) -> Result<Report> {
    let start = Instant::now();
    let say = |s: String| {
        if !opts.quiet {
            eprintln!("{s}");
        }
    };
    let work = crate::base::fsx::scratch_dir("ingot-ota-test")?;
    let overlay = work.path().join("device.qcow2");
    let raw = base
        .disk()
        .canonicalize()
        .with_context(|| format!("{}: no disk.raw", base.path.display()))?;
    crate::base::tool::run(
        std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(&raw)
            .arg(&overlay),
        "qemu-utils",
        "qemu-img create failed",
    )?;
    let vars = work.path().join("vars.fd");
    qemu::copy_vars(&spec, &vars)?;
    std::fs::create_dir_all(&opts.log_dir)
        .with_context(|| format!("creating {}", opts.log_dir.display()))?;
    let server = match opts.via {
        Via::Http => Some(Server::start()?),
        Via::Disk => None,
    };
    let media = work.path().join("media.img");
    let mut dev = Device {
        spec: VmSpec {
            disk: overlay.clone(),
            disk_format: None,
            persistent: true,
            media: None,
            ssh_port: None,
            agent: None,
            ..spec
        },
        vars,
        opts,
        runs: 0,
        say: &say,
    };
    let m = &base.manifest;
    let mut report = Report {
        image: base.path.clone(),
        name: m.image.clone(),
        arch: m.arch.clone(),
        base_version: m.version.clone(),
        via: opts.via,
        machine_id: None,
        first_boot: None,
        steps: Vec::new(),
        error: None,
        seconds: 0.0,
    };
    say(format!("{}: first boot", base.path.display()));
    let first = dev.boot(None, Until::Ready)?;
    let mut current = match &first.ready {
        Some(r) if r.version == m.version && agents_ok(r) && r.slot.is_some() => r.clone(),
        Some(r) if r.slot.is_none() => {
            report.error = Some(format!(
                "{} is not an A/B image (its ready line names no slot): build it for hardware with an [ab] table",
                base.path.display()
            ));
            report.first_boot = Some(first);
            report.seconds = start.elapsed().as_secs_f64();
            return Ok(report);
        }
        _ => {
            report.error = Some(format!(
                "the first boot did not come up ready: {}",
                describe(&first)
            ));
            report.first_boot = Some(first);
            report.seconds = start.elapsed().as_secs_f64();
            return Ok(report);
        }
    };
    report.machine_id = Some(current.machine_id.clone());
    report.first_boot = Some(first);
    for (i, step) in steps.iter().enumerate() {
        if crate::interrupt::requested() {
            report.error = Some("interrupted".into());
            break;
        }
        say(format!("step {}: {}", i + 1, step.text));
        let t = Instant::now();
        match opts.via {
            Via::Disk => bundle_media(&step.bundle, &media)?,
            Via::Http => {
                let s = server.as_ref().context("no HTTP server")?;
                if let Ok(mut f) = s.file.lock() {
                    *f = step.bundle.clone();
                }
                pointer_media(&media, s.port)?;
            }
        }
        let mut r = run_step(&mut dev, step, &current, &media)?;
        // Every boot after the first must report the machine id the device made then: it
        // lives on the data partition, which updates and rollbacks leave alone.
        if let (Some(mid), Some(rd)) = (
            &report.machine_id,
            r.boots.iter().rev().find_map(|b| b.ready.as_ref()),
        ) {
            if &rd.machine_id != mid && r.passed {
                r.passed = false;
                r.message = format!(
                    "the machine id changed from {mid} to {}: the data partition did not survive",
                    rd.machine_id
                );
            }
        }
        r.seconds = t.elapsed().as_secs_f64();
        say(format!(
            "step {}: {} — {}{}",
            i + 1,
            if r.passed { "ok" } else { "FAILED" },
            r.message,
            r.delta
                .as_ref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        ));
        if let Some(last) = r.boots.iter().rev().find_map(|b| b.ready.clone()) {
            current = last;
        }
        let stop = r.boots.iter().any(|b| matches!(b.end, End::Interrupted));
        report.steps.push(r);
        if stop {
            report.error = Some("interrupted".into());
            break;
        }
    }
    drop(server);
    if let Some(k) = &opts.keep_disk {
        crate::base::fsx::rename(&overlay, k)
            .or_else(|_| {
                std::fs::copy(&overlay, k)
                    .map(|_| ())
                    .map_err(anyhow::Error::from)
            })
            .with_context(|| format!("keeping the device disk as {}", k.display()))?;
    }
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

fn run_step(
    dev: &mut Device<'_>,
    step: &Step,
    current: &Ready,
    media: &Path,
) -> Result<StepResult> {
    let bundle_version = Bundle::read(&step.bundle).ok().map(|b| b.manifest.version);
    let mut r = StepResult {
        step: step.text.clone(),
        expect: step.expect,
        passed: false,
        message: String::new(),
        from_version: current.version.clone(),
        to_version: None,
        bundle_version: bundle_version.clone(),
        install_seconds: None,
        delta: None,
        reboot_to_ready_seconds: None,
        rollback_seconds: None,
        failed_attempts: 0,
        boots: Vec::new(),
        seconds: 0.0,
    };
    let cut = match step.expect {
        Expect::PowerCut(c) => Some(c),
        _ => None,
    };
    let install = dev.boot(Some(media), Until::Install(cut))?;
    r.install_seconds = install.install_seconds;
    r.delta = install.delta.clone();
    let end = install.end.clone();
    let ready_before = install.ready.clone();
    r.boots.push(install);
    if let Some(rd) = &ready_before {
        if rd.version != current.version {
            r.message = format!(
                "the device came up on {} with the update media attached, expected {}",
                rd.version, current.version
            );
            return Ok(r);
        }
    }
    match (step.expect, &end) {
        (_, End::Hang { detail }) => {
            r.message = format!("hang, not an update result: {detail}");
            return Ok(r);
        }
        (_, End::Interrupted) => {
            r.message = "interrupted".into();
            return Ok(r);
        }
        (Expect::Rejected, End::Rejected { line }) => {
            r.message = line.clone();
            let check = dev.boot(None, Until::Ready)?;
            let v = check.ready.as_ref().map(|x| x.version.clone());
            r.to_version = v.clone();
            r.passed = v.as_deref() == Some(current.version.as_str())
                && check.ready.as_ref().is_some_and(agents_ok);
            if !r.passed {
                r.message = format!("{line}; but the next boot was {}", describe(&check));
            }
            r.boots.push(check);
            return Ok(r);
        }
        (Expect::Rejected, other) => {
            r.message = format!(
                "expected the device to refuse the bundle; it {}",
                end_words(other)
            );
            return Ok(r);
        }
        (_, End::Rejected { line }) | (_, End::Failed { line }) => {
            r.message = format!("the device refused or failed the install: {line}");
            return Ok(r);
        }
        (Expect::PowerCut(_), End::Cut { late }) => {
            let check = dev.boot(None, Until::Ready)?;
            let came = check.ready.clone();
            r.boots.push(check);
            match &came {
                Some(x) if x.version == current.version && agents_ok(x) => {}
                // The guest finished the boot entry in the instant between its marker line
                // and the kill: it boots the new version, which is a good outcome, but this
                // run did not test the point it aimed at, and says so.
                Some(x)
                    if bundle_version.as_deref() == Some(x.version.as_str()) && agents_ok(x) =>
                {
                    r.to_version = Some(x.version.clone());
                    r.passed = true;
                    r.message = format!(
                        "the cut came after the boot entry was complete: the device came up on {} (the point was not hit; run again to test it)",
                        x.version
                    );
                    return Ok(r);
                }
                _ => {
                    r.message = format!(
                        "after the power cut the device did not come up on {}: {}",
                        current.version,
                        describe(r.boots.last().context("no boot")?)
                    );
                    return Ok(r);
                }
            }
            // Install the same bundle again: it must now succeed.
            let again = dev.boot(Some(media), Until::Install(None))?;
            let again_end = again.end.clone();
            r.install_seconds = again.install_seconds.or(r.install_seconds);
            r.delta = again.delta.clone().or(r.delta.take());
            r.boots.push(again);
            if again_end != End::Exited {
                r.message = format!(
                    "after the power cut, installing again did not complete: it {}",
                    end_words(&again_end)
                );
                return Ok(r);
            }
            let note = if *late {
                " (the cut came after the slot was written)"
            } else {
                ""
            };
            return finish_update(dev, &mut r, bundle_version.as_deref(), current, note);
        }
        (Expect::PowerCut(_), other) => {
            r.message = format!(
                "the updater never reached the cut point; it {}",
                end_words(other)
            );
            return Ok(r);
        }
        (_, End::Exited) => {}
        (_, other) => {
            r.message = format!("expected an install and a reboot; it {}", end_words(other));
            return Ok(r);
        }
    }
    match step.expect {
        Expect::Updated => finish_update(dev, &mut r, bundle_version.as_deref(), current, ""),
        Expect::RolledBack => {
            let mut secs = 0.0;
            // tries (at most 10) failed boots, then the fallback.
            for _ in 0..12 {
                let b = dev.boot(None, Until::Ready)?;
                secs += b.seconds;
                let ready = b.ready.clone();
                let end = b.end.clone();
                r.boots.push(b);
                match (&ready, &end) {
                    (Some(x), _) if agents_ok(x) => {
                        r.to_version = Some(x.version.clone());
                        r.rollback_seconds = Some(secs);
                        r.passed = x.version == current.version && x.rollback;
                        r.message = if r.passed {
                            format!(
                                "{} failed {} boot(s){}; back on {} with the rollback flag after {secs:.1}s",
                                bundle_version.as_deref().unwrap_or("the new version"),
                                r.failed_attempts,
                                causes(&r.boots),
                                x.version
                            )
                        } else if x.version != current.version {
                            format!(
                                "the device came up on {}, expected a rollback to {}",
                                x.version, current.version
                            )
                        } else {
                            "back on the previous version, but its ready line has no rollback flag"
                                .into()
                        };
                        return Ok(r);
                    }
                    (_, End::Exited) => r.failed_attempts += 1,
                    (_, End::Hang { detail }) => {
                        r.message = format!("hang, not a failed attempt: {detail}");
                        return Ok(r);
                    }
                    _ => {
                        r.message = format!(
                            "unexpected boot: {}",
                            describe(r.boots.last().context("no boot")?)
                        );
                        return Ok(r);
                    }
                }
            }
            r.message = format!("no good boot after {} failed attempts", r.failed_attempts);
            Ok(r)
        }
        _ => Ok(r),
    }
}

/// Why the failed boots failed, each cause once (the kernel's `[  3.6]` stamps left out, so
/// three identical panics read as one), in the order they came: ` (cause; cause)`.
fn causes(boots: &[BootRun]) -> String {
    let stamp = regex::Regex::new(r"\[\s*\d+\.\d+\]\s*").expect("a valid pattern");
    let mut seen: Vec<String> = Vec::new();
    for c in boots
        .iter()
        .filter(|b| b.end == End::Exited && b.install_seconds.is_none())
        .filter_map(|b| b.cause.as_deref())
    {
        let c = stamp.replace_all(c, "").into_owned();
        if !seen.contains(&c) {
            seen.push(c);
        }
    }
    if seen.is_empty() {
        String::new()
    } else {
        format!(" ({})", seen.join("; "))
    }
}

fn end_words(e: &End) -> String {
    match e {
        End::Ready => "stayed up without acting on the media".into(),
        End::Exited => "installed it and rebooted".into(),
        End::Rejected { line } => format!("refused it: {line}"),
        End::Failed { line } => format!("failed: {line}"),
        End::Cut { .. } => "was cut".into(),
        End::Hang { detail } => format!("hung: {detail}"),
        End::Interrupted => "was interrupted".into(),
    }
}

/// After an install that rebooted: the next boot must be the bundle's version, ready.
fn finish_update(
    dev: &mut Device<'_>,
    r: &mut StepResult,
    want: Option<&str>,
    current: &Ready,
    note: &str,
) -> Result<StepResult> {
    let b = dev.boot(None, Until::Ready)?;
    let ready = b.ready.clone();
    r.reboot_to_ready_seconds = b.ready_seconds;
    let desc = describe(&b);
    r.boots.push(b);
    match ready {
        Some(x) if agents_ok(&x) => {
            r.to_version = Some(x.version.clone());
            let slot_changed = x.slot != current.slot;
            r.passed = want.is_none_or(|w| w == x.version)
                && x.version != current.version
                && slot_changed
                && !x.rollback;
            r.message = if r.passed {
                format!(
                    "{} → {} on slot {}{note}",
                    current.version,
                    x.version,
                    x.slot.as_deref().unwrap_or("?")
                )
            } else {
                format!(
                    "after the install the device came up on {} slot {} (rollback {}), expected {} on the other slot",
                    x.version,
                    x.slot.as_deref().unwrap_or("?"),
                    x.rollback,
                    want.unwrap_or("a new version")
                )
            };
        }
        _ => r.message = format!("the new version did not come up ready: {desc}"),
    }
    Ok(r.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_cause_at_another_uptime_is_named_once() {
        let run = |cause: Option<&str>, end: End| BootRun {
            log: PathBuf::new(),
            media: false,
            ready: None,
            ready_seconds: None,
            end,
            install_seconds: None,
            delta: None,
            seconds: 6.0,
            cause: cause.map(str::to_string),
        };
        let boots = [
            run(
                Some("[    3.63] Kernel panic - not syncing: Attempted to kill init!"),
                End::Exited,
            ),
            run(
                Some("[    3.04] Kernel panic - not syncing: Attempted to kill init!"),
                End::Exited,
            ),
            run(
                Some("the watchdog reset the machine: [   17.6] softdog: Initiating system reboot"),
                End::Exited,
            ),
            run(None, End::Ready),
        ];
        assert_eq!(
            causes(&boots),
            " (Kernel panic - not syncing: Attempted to kill init!; the watchdog reset the machine: softdog: Initiating system reboot)"
        );
        assert_eq!(causes(&boots[3..]), "");
    }
}
