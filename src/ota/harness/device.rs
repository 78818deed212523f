//! One QEMU run of the device under test: its persistent disk and UEFI variables, update media
//! attached or not, read line by line until the ready line, the updater's verdict, a reboot, the
//! power-cut marker, or a hang.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::report::{describe, BootRun, DeltaApplied, End};
use super::step::Cut;
use super::Options;
use crate::boottest::boot::{console_lines, ConsoleEvent};
use crate::boottest::console::{Console, Seen};
use crate::qemu::{self, VmSpec};

/// What the harness waits for in one run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Until {
    /// The ready line (then the VM is stopped).
    Ready,
    /// After the ready line: the updater's verdict, a reboot, or the cut marker.
    Install(Option<Cut>),
}

/// The line the updater prints when an install is complete (before it reboots).
const INSTALLED: &str = "ingot-update: installed ";
/// The line `ingot-update auto` prints when an install from a source it found did not happen.
const AUTO_DONE: &str = "ingot-update: auto: no update installed";
/// What the updater says when a counted boot was not good and it reboots.
const NOT_GOOD: &str = "ingot-update: boot of ";
/// The line it prints when it starts on a source it found.
const FOUND: &str = "ingot-update: found an update source";
/// The line it prints when no extra disk held a bundle (or its URL): the media was passed
/// over, which is the device refusing it before writing anything.
const NO_SOURCE: &str = "ingot-update: auto: no update source:";

pub(super) struct Device<'a> {
    pub(super) spec: VmSpec,
    pub(super) vars: PathBuf,
    pub(super) opts: &'a Options,
    pub(super) runs: usize,
    pub(super) say: &'a dyn Fn(String),
}

impl Device<'_> {
    /// One QEMU run on the device's disk, `media` attached or not.
    pub(super) fn boot(&mut self, media: Option<&Path>, until: Until) -> Result<BootRun> {
        self.runs += 1;
        let log = self
            .opts
            .log_dir
            .join(format!("ota-{:02}.console.log", self.runs));
        let mut spec = self.spec.clone();
        spec.media = media.map(Path::to_path_buf);
        let timeout = match until {
            // An install reads the bundle three times and writes a slot, under emulation.
            Until::Install(_) => self.opts.timeout * 4,
            Until::Ready => self.opts.timeout,
        };
        let start = Instant::now();
        let (mut child, _registered) =
            qemu::start_vm(&spec, &qemu::args(&spec, &self.vars, false), Stdio::piped())?;
        let rx = console_lines(&mut child)?;
        let mut console = Console::new(spec.arch);
        let mut all: Vec<String> = Vec::new();
        let (mut ready, mut ready_at) = (None, None);
        let (mut found_at, mut installed_at) = (None, None);
        let mut delta = None;
        let mut cut_at: Option<Instant> = None;
        let (mut verdict, mut verdict_at): (Option<End>, Option<Instant>) = (None, None);
        let mut last_line = String::new();
        let mut not_good: Option<String> = None;
        let end = loop {
            if crate::interrupt::requested() {
                break End::Interrupted;
            }
            if verdict_at.is_some_and(|t| t.elapsed() > Duration::from_secs(20)) {
                if let Some(v) = verdict.take() {
                    break v;
                }
            }
            if let Some(t) = cut_at {
                // Into the slot write by a little; right at the marker for the later points,
                // whose next step takes the guest only milliseconds.
                let delay = match until {
                    Until::Install(Some(Cut::Slot)) => Duration::from_millis(300),
                    _ => Duration::ZERO,
                };
                if t.elapsed() >= delay {
                    let late = all.iter().any(|l| {
                        l.contains("ingot-update: checking slot")
                            || l.contains("ingot-update: copying linux")
                            || l.contains("ingot-update: installed")
                    });
                    let late = late && matches!(until, Until::Install(Some(Cut::Slot)));
                    break End::Cut { late };
                }
            }
            let Some(left) = timeout.checked_sub(start.elapsed()) else {
                let f = console.timeout(timeout.as_secs());
                let detail = match f {
                    crate::boottest::console::Failure::Timeout { stall: Some(s), .. } => {
                        format!("the guest kernel reported a stall: {s}")
                    }
                    _ => format!("last console line: `{}`", last_line.trim()),
                };
                break End::Hang {
                    detail: format!("nothing decisive within {}s; {detail}", timeout.as_secs()),
                };
            };
            match rx.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(ConsoleEvent::Line(line)) => {
                    let at = start.elapsed().as_secs_f64();
                    all.push(format!("[{at:8.3}] {line}"));
                    if !line.trim().is_empty() {
                        last_line = line.clone();
                    }
                    if let Seen::Ready(r) = console.feed(&line, at) {
                        ready = Some(*r);
                        ready_at = Some(at);
                        if until == Until::Ready {
                            break End::Ready;
                        }
                        continue;
                    }
                    if let Some(p) = line.find(NOT_GOOD).filter(|_| line.contains("is not good")) {
                        not_good.get_or_insert_with(|| line[p..].trim().to_string());
                    }
                    if line.contains(FOUND) {
                        found_at = Some(at);
                    }
                    if let Some(d) = DeltaApplied::parse(&line) {
                        delta = Some(d);
                    }
                    if line.contains(INSTALLED) {
                        installed_at = Some(at);
                    }
                    if let Until::Install(cut) = until {
                        // The updater cleans up (and unmounts the ESP) after its verdict, then
                        // says it is done: stop only then, as a user would, not mid-cleanup.
                        if line.contains(AUTO_DONE) {
                            if let Some(v) = verdict.take() {
                                break v;
                            }
                        }
                        if let Some(p) = line.find(NO_SOURCE) {
                            break End::Rejected {
                                line: line[p..].trim().to_string(),
                            };
                        }
                        if let Some(p) = line.find("ingot-update: rejected:") {
                            verdict.get_or_insert(End::Rejected {
                                line: line[p..].trim().to_string(),
                            });
                            verdict_at.get_or_insert_with(Instant::now);
                        }
                        if let Some(p) = line.find("ingot-update: failed:") {
                            verdict.get_or_insert(End::Failed {
                                line: line[p..].trim().to_string(),
                            });
                            verdict_at.get_or_insert_with(Instant::now);
                        }
                        if let Some(c) = cut {
                            if cut_at.is_none() && line.contains(c.marker()) {
                                cut_at = Some(Instant::now());
                                if c != Cut::Slot {
                                    break End::Cut { late: false };
                                }
                            }
                        }
                    }
                }
                Ok(ConsoleEvent::Closed) => break End::Exited,
                Ok(ConsoleEvent::Partial(_)) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break End::Exited,
            }
        };
        // Kill at once: for a power cut this is the cut itself.
        drop(child);
        let seconds = start.elapsed().as_secs_f64();
        std::fs::write(&log, all.join("\n") + "\n")
            .with_context(|| format!("writing {}", log.display()))?;
        let cause = match end {
            End::Ready => None,
            _ => console.failure().map(|f| f.to_string()).or(not_good),
        };
        let run = BootRun {
            log,
            media: media.is_some(),
            ready,
            ready_seconds: ready_at,
            end,
            install_seconds: match (found_at, installed_at) {
                (Some(a), Some(b)) => Some(b - a),
                _ => None,
            },
            delta,
            seconds,
            cause,
        };
        (self.say)(format!(
            "  boot {}{}: {} in {:.1}s{}",
            self.runs,
            if run.media { " (update media)" } else { "" },
            describe(&run),
            run.seconds,
            run.ready
                .as_ref()
                .map(|r| format!(
                    " [version {} slot {}{}]",
                    r.version,
                    r.slot.as_deref().unwrap_or("?"),
                    if r.rollback { " rollback" } else { "" }
                ))
                .unwrap_or_default()
        ));
        Ok(run)
    }
}
