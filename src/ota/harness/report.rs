//! What an OTA test reports: how each QEMU run ended, each step's result and timings, the
//! whole run, and its JUnit form.

use std::path::PathBuf;

use serde::Serialize;

use super::step::{Expect, Via};
use crate::boottest::console::Ready;

/// How one QEMU run ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "end", rename_all = "kebab-case")]
pub enum End {
    /// Reported ready (the harness then stopped it).
    Ready,
    /// The guest rebooted or powered off (QEMU runs with `-no-reboot`).
    Exited,
    /// The updater refused the bundle: its line.
    Rejected {
        /// The device's console line.
        line: String,
    },
    /// The updater failed after it began writing: its line.
    Failed {
        /// The device's console line.
        line: String,
    },
    /// The harness cut the power at the marker.
    Cut {
        /// The updater had already passed the next step when the power went (the cut came
        /// late; the test still holds, but did not hit the window it aimed at).
        late: bool,
    },
    /// Nothing decisive within the timeout: the guest or the emulator hung.
    Hang {
        /// What the console showed last, or the stall the kernel reported.
        detail: String,
    },
    /// Ctrl-C.
    Interrupted,
}

/// One QEMU run.
#[derive(Debug, Clone, Serialize)]
pub struct BootRun {
    /// Console log.
    pub log: PathBuf,
    /// With the update media attached.
    pub media: bool,
    /// The ready line, when one came.
    pub ready: Option<Ready>,
    /// Seconds from QEMU start to the ready line.
    pub ready_seconds: Option<f64>,
    /// How it ended.
    #[serde(flatten)]
    pub end: End,
    /// Seconds the install took on the device (update source found to installed), if one ran.
    pub install_seconds: Option<f64>,
    /// What applying a delta bundle took on the device, as the updater measured it.
    pub delta: Option<DeltaApplied>,
    /// Seconds QEMU ran.
    pub seconds: f64,
    /// Why a boot that did not come up ended: the kernel's panic, the watchdog's reset, the
    /// initramfs's fatal line or the updater's verdict on a boot that was not good.
    pub cause: Option<String>,
}

/// A delta bundle applied on the device: the updater's own figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeltaApplied {
    /// Seconds the rebuild of the root image into the inactive slot took (reading the base
    /// windows and running zstd on each segment).
    pub seconds: f64,
    /// Peak memory: zstd's peak resident set plus the base window in tmpfs (none when the device
    /// has no busybox `time` to measure it).
    pub peak_bytes: Option<u64>,
    /// The memory the bundle states it needs.
    pub stated_bytes: Option<u64>,
}

impl DeltaApplied {
    /// Read the updater's line `delta applied in S.SSs[, peak memory N bytes (… the bundle
    /// states M)]`.
    pub fn parse(line: &str) -> Option<DeltaApplied> {
        let rest = &line[line.find(DELTA_APPLIED)? + DELTA_APPLIED.len()..];
        let seconds = rest.split('s').next()?.parse().ok()?;
        let number_after = |key: &str| -> Option<u64> {
            let at = rest.find(key)? + key.len();
            let digits: String = rest[at..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        };
        Some(DeltaApplied {
            seconds,
            peak_bytes: number_after(", peak memory "),
            stated_bytes: number_after("the bundle states "),
        })
    }
}

impl std::fmt::Display for DeltaApplied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
        write!(f, "delta rebuilt on the device in {:.2}s", self.seconds)?;
        match (self.peak_bytes, self.stated_bytes) {
            (Some(p), Some(s)) => write!(
                f,
                ", peak memory {:.1} MiB of the {:.1} MiB the bundle states",
                mib(p),
                mib(s)
            ),
            (Some(p), None) => write!(f, ", peak memory {:.1} MiB", mib(p)),
            _ => write!(f, ", peak memory not measured"),
        }
    }
}

/// How the updater's line on an applied delta begins.
pub const DELTA_APPLIED: &str = "ingot-update: delta applied in ";

/// What one step came to.
#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    /// The step as given.
    pub step: String,
    /// What was expected.
    pub expect: Expect,
    /// Did the device do it.
    pub passed: bool,
    /// Why not, or what the device said.
    pub message: String,
    /// Version running before the step.
    pub from_version: String,
    /// Version running after it.
    pub to_version: Option<String>,
    /// The version the bundle's manifest names, when the harness could read it.
    pub bundle_version: Option<String>,
    /// Install time on the device.
    pub install_seconds: Option<f64>,
    /// A delta bundle's reconstruction on the device.
    pub delta: Option<DeltaApplied>,
    /// Reboot after the install to ready on the new version.
    pub reboot_to_ready_seconds: Option<f64>,
    /// From the reboot after a broken install to ready on the previous version.
    pub rollback_seconds: Option<f64>,
    /// Boots of the new version that failed before the fallback.
    pub failed_attempts: u32,
    /// Every QEMU run of the step.
    pub boots: Vec<BootRun>,
    /// Seconds the step took.
    pub seconds: f64,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Base image directory.
    pub image: PathBuf,
    /// Image name.
    pub name: String,
    /// Architecture.
    pub arch: String,
    /// Version the base image runs.
    pub base_version: String,
    /// How bundles reached the device.
    pub via: Via,
    /// The machine id the device made at its first boot (kept on the data partition: every
    /// later boot must report the same one).
    pub machine_id: Option<String>,
    /// The first boot.
    pub first_boot: Option<BootRun>,
    /// Each step.
    pub steps: Vec<StepResult>,
    /// Why the run stopped early, if it did.
    pub error: Option<String>,
    /// Seconds the run took.
    pub seconds: f64,
}

impl Report {
    /// Every step passed and nothing stopped the run.
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.steps.iter().all(|s| s.passed)
    }

    /// JUnit XML: one testcase per step (and one for the first boot).
    pub fn junit_xml(&self) -> String {
        use crate::boottest::report::xml_escape as esc;
        let mut cases = String::new();
        let mut failures = 0;
        let mut case = |name: &str, secs: f64, failure: Option<&str>, out: &str| {
            cases.push_str(&format!(
                "    <testcase classname=\"ota-test.{}\" name=\"{}\" time=\"{secs:.3}\">\n",
                esc(&self.name),
                esc(name)
            ));
            if let Some(f) = failure {
                failures += 1;
                cases.push_str(&format!("      <failure message=\"{}\"/>\n", esc(f)));
            }
            cases.push_str(&format!(
                "      <system-out>{}</system-out>\n    </testcase>\n",
                esc(out)
            ));
        };
        let logs = |b: &[BootRun]| {
            b.iter()
                .map(|r| r.log.display().to_string())
                .collect::<Vec<_>>()
                .join("\n")
        };
        if let Some(b) = &self.first_boot {
            let fail = b
                .ready
                .is_none()
                .then(|| format!("first boot: {:?}", b.end));
            case(
                "first boot",
                b.seconds,
                fail.as_deref(),
                &logs(std::slice::from_ref(b)),
            );
        }
        for (i, s) in self.steps.iter().enumerate() {
            case(
                &format!("step {}: {}", i + 1, s.step),
                s.seconds,
                (!s.passed).then_some(s.message.as_str()),
                &format!("{}\n{}", s.message, logs(&s.boots)),
            );
        }
        if let Some(e) = &self.error {
            case("run", 0.0, Some(e), "");
        }
        let tests = self.steps.len()
            + usize::from(self.first_boot.is_some())
            + usize::from(self.error.is_some());
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n  <testsuite name=\"ota-test {}\" tests=\"{tests}\" failures=\"{failures}\" time=\"{:.3}\">\n{cases}  </testsuite>\n</testsuites>\n",
            esc(&self.name),
            self.seconds
        )
    }
}

/// One line saying how a run ended.
pub(super) fn describe(r: &BootRun) -> String {
    match &r.end {
        End::Ready => "ready".into(),
        End::Exited if r.install_seconds.is_some() => "installed, rebooted".into(),
        End::Exited => match &r.cause {
            Some(c) => format!("rebooted: {c}"),
            None => "rebooted".into(),
        },
        End::Rejected { line } | End::Failed { line } => line.clone(),
        End::Cut { late: false } => "power cut".into(),
        End::Cut { late: true } => "power cut (late)".into(),
        End::Hang { detail } => format!("hang: {detail}"),
        End::Interrupted => "interrupted".into(),
    }
}

/// Every agent reported ok.
pub(super) fn agents_ok(r: &Ready) -> bool {
    !r.agents.is_empty() && r.agents.iter().all(|(_, s)| s == "ok")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_updaters_delta_line_is_read() {
        let d = DeltaApplied::parse(
            "[  41.2] ingot-update: delta applied in 12.07s, peak memory 141557760 bytes (zstd 91226112 resident + base window 50331648 in tmpfs; the bundle states 203423744; 2 segments)",
        )
        .unwrap();
        assert_eq!(
            d,
            DeltaApplied {
                seconds: 12.07,
                peak_bytes: Some(141_557_760),
                stated_bytes: Some(203_423_744),
            }
        );
        assert_eq!(
            d.to_string(),
            "delta rebuilt on the device in 12.07s, peak memory 135.0 MiB of the 194.0 MiB the bundle states"
        );
        let d = DeltaApplied::parse(
            "ingot-update: delta applied in 3.50s (peak memory not measured: no busybox time; 1 segments)",
        )
        .unwrap();
        assert_eq!((d.seconds, d.peak_bytes), (3.5, None));
        assert!(DeltaApplied::parse("ingot-update: installed 1.0.1").is_none());
    }
}
