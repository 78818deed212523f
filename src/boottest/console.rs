//! The console classifier: reads a guest's serial console line by line and says what the boot
//! came to — the `INGOT-READY` line, a kernel panic, an initramfs that found no root, UEFI
//! falling back to its shell, a failed boot option — and, on a timeout, the first stall the guest
//! kernel reported. Pure: no QEMU, no clock; tested on recorded console logs of both arches.

use serde::{Deserialize, Serialize};

use crate::config::Arch;

/// The parsed `INGOT-READY` line.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Ready {
    /// Image name.
    pub image: String,
    /// Version.
    pub version: String,
    /// Machine id the guest generated.
    pub machine_id: String,
    /// agent → ok/fail.
    pub agents: Vec<(String, String)>,
    /// Guest uptime when it checked in.
    pub uptime: String,
    /// The A/B slot it runs from (`a` or `b`), on an A/B disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// On an A/B disk: it runs an older version because a newer one failed every attempt.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rollback: bool,
    /// Guest uptime when the check-in agent started (init had got that far).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// agent → guest uptime when its probe first passed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probes: Vec<(String, String)>,
    /// Units the profile's `services` start that had failed by the ready line (systemd).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<String>,
    /// Other units that had failed by the ready line (systemd; reported, not judged).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub degraded: Vec<String>,
    /// For a foreign image: the console line that matched `--ready`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched: Option<String>,
}

impl Ready {
    /// A foreign image's readiness: the console line that matched its pattern.
    pub fn matched(line: &str) -> Self {
        Ready {
            matched: Some(line.trim().to_string()),
            ..Ready::default()
        }
    }
}

/// Longest ready line read: a line past this is not Ingot's agent talking.
const MAX_READY_LINE: usize = 64 << 10;

/// Parse an `INGOT-READY` line (anywhere in the console line, after a timestamp prefix).
pub fn parse_ready(line: &str) -> Option<Ready> {
    if line.len() > MAX_READY_LINE {
        return None;
    }
    let rest = line[line.find("INGOT-READY ")?..].strip_prefix("INGOT-READY ")?;
    let mut r = Ready::default();
    for kv in rest.split_whitespace() {
        let (k, v) = kv.split_once('=')?;
        match k {
            "image" => r.image = v.into(),
            "version" => r.version = v.into(),
            "machine-id" => r.machine_id = v.into(),
            "uptime" => r.uptime = v.into(),
            "slot" => r.slot = Some(v.into()),
            "rollback" => r.rollback = v == "1",
            "start" => r.start = Some(v.into()),
            "agents" => r.agents = pairs(v),
            "probes" => r.probes = pairs(v),
            "failed" => r.failed = names(v),
            "degraded" => r.degraded = names(v),
            _ => {}
        }
    }
    Some(r)
}

/// `a,b` as names.
fn names(v: &str) -> Vec<String> {
    v.split(',')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// `a:x,b:y` as pairs.
fn pairs(v: &str) -> Vec<(String, String)> {
    v.split(',')
        .filter(|s| !s.is_empty())
        .filter_map(|a| a.split_once(':').map(|(n, s)| (n.into(), s.into())))
        .collect()
}

/// Why a boot failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Failure {
    /// No ready line within the timeout; the first stall the guest kernel reported, if any.
    Timeout {
        /// The timeout in seconds.
        seconds: u64,
        /// The first RCU stall or soft lockup line, with when it came.
        stall: Option<String>,
    },
    /// The kernel panicked.
    KernelPanic {
        /// The panic line.
        line: String,
    },
    /// The initramfs did not find (or could not mount) the root partition.
    RootNotFound {
        /// The initramfs's own message, naming the PARTUUID.
        line: String,
    },
    /// UEFI found nothing bootable and fell back to its shell.
    NothingBootable {
        /// The boot loader path to check.
        loader: String,
        /// The firmware's own message about the failed load.
        detail: Option<String>,
    },
    /// A rescue or emergency shell: GRUB's rescue prompt, systemd's emergency mode, an
    /// initramfs that dropped to a shell.
    RescueShell {
        /// The line that shows it.
        line: String,
    },
    /// The BIOS (SeaBIOS) found no boot loader on any disk.
    BiosNothingBootable {
        /// SeaBIOS's line.
        line: String,
    },
    /// A boot option failed (firmware message).
    BootOptionFailed {
        /// The firmware's line.
        line: String,
    },
    /// The watchdog reset the machine: the boot hung for the watchdog's whole timeout.
    WatchdogReset {
        /// The kernel's line.
        line: String,
    },
    /// QEMU ended before the ready line.
    QemuExited,
    /// Ctrl-C or SIGTERM.
    Interrupted,
    /// A ready line that does not match the image, or an agent that failed.
    Rejected {
        /// What is wrong.
        reason: String,
    },
    /// Ready, but the QEMU guest agent the image ships did not answer.
    Agent {
        /// The last problem.
        detail: String,
    },
    /// Ready, but the SSH login after it failed.
    Login {
        /// The step that failed: connection, authentication, cloud-init status, hostname, host
        /// key.
        step: String,
        /// What it said.
        detail: String,
    },
    /// No SSH login worked within the timeout (the readiness of a foreign disk booted
    /// with `--ssh` and no console pattern).
    NoLogin {
        /// The timeout.
        seconds: u64,
        /// The step the last attempt failed at (connection, authentication).
        step: String,
        /// What it said.
        detail: String,
    },
    /// The boot could not be run (QEMU did not start, a file could not be written).
    Host {
        /// The error chain.
        message: String,
    },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Timeout { seconds, stall } => write!(
                f,
                "timeout: no INGOT-READY line within {seconds}s{}",
                stall
                    .as_deref()
                    .map(|l| format!("; the guest kernel reported a stall first: {l}"))
                    .unwrap_or_default()
            ),
            Failure::KernelPanic { line }
            | Failure::RootNotFound { line }
            | Failure::BootOptionFailed { line } => f.write_str(line),
            Failure::RescueShell { line } => {
                write!(f, "the boot ended in a rescue or emergency shell: {line}")
            }
            Failure::NothingBootable { loader, detail } => write!(
                f,
                "UEFI found nothing bootable on the disk and fell back to its shell{}; check that the ESP holds {loader} (systemd-boot)",
                detail.as_deref().map(|b| format!(" ({b})")).unwrap_or_default()
            ),
            Failure::WatchdogReset { line } => write!(
                f,
                "the watchdog reset the machine (nothing kept it alive for its whole timeout: the boot hung): {line}"
            ),
            Failure::BiosNothingBootable { line } => write!(
                f,
                "the BIOS found no boot loader on the disk (no boot code in its first sector, or no partition marked legacy-BIOS-bootable): {line}"
            ),
            Failure::QemuExited => f.write_str("QEMU exited before the INGOT-READY line"),
            Failure::Interrupted => f.write_str("interrupted"),
            Failure::Rejected { reason } => f.write_str(reason),
            Failure::Login { step, detail } => {
                write!(f, "ready, but the SSH login failed at {step}: {detail}")
            }
            Failure::Agent { detail } => {
                write!(f, "ready, but the QEMU guest agent did not answer: {detail}")
            }
            Failure::NoLogin {
                seconds,
                step,
                detail,
            } => write!(
                f,
                "timeout: no SSH login within {seconds}s; the last attempt failed at {step}: {detail}"
            ),
            Failure::Host { message } => f.write_str(message),
        }
    }
}

/// What one console line meant.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// The ready line: the boot is over.
    Ready(Box<Ready>),
    /// The first fatal line: the boot has failed (a few more lines may follow).
    Fatal(Failure),
    /// Anything else.
    Line,
}

/// Whether a (lower-cased) console line is the guest kernel reporting that a CPU stalled: an
/// RCU stall (a CPU that stopped taking timer interrupts or ran too long with them off) or a
/// soft lockup. Under TCG on a loaded host these can also mean the guest was starved.
pub fn reports_stall(lower: &str) -> bool {
    lower.contains("rcu: info:") && lower.contains("stall")
        || lower.contains("watchdog: bug: soft lockup")
}

/// The classifier's state over one boot's console.
#[derive(Debug, Clone)]
pub struct Console {
    arch: Arch,
    stall: Option<String>,
    bds: Option<String>,
    grub_error: Option<String>,
    failure: Option<Failure>,
}

impl Console {
    /// A classifier for a guest of this arch.
    pub fn new(arch: Arch) -> Self {
        Console {
            arch,
            stall: None,
            bds: None,
            grub_error: None,
            failure: None,
        }
    }

    /// The failure recognised so far.
    pub fn failure(&self) -> Option<&Failure> {
        self.failure.as_ref()
    }

    /// What a timeout after `seconds` is, given what the console showed.
    pub fn timeout(&self, seconds: u64) -> Failure {
        Failure::Timeout {
            seconds,
            stall: self.stall.clone(),
        }
    }

    /// Read one console line, `at` seconds after QEMU started.
    pub fn feed(&mut self, line: &str, at: f64) -> Seen {
        if let Some(r) = parse_ready(line) {
            return Seen::Ready(Box::new(r));
        }
        let lower = line.to_ascii_lowercase();
        if self.stall.is_none() && reports_stall(&lower) {
            self.stall = Some(format!("`{}` at {at:.0}s", line.trim()));
        }
        if let Some(at) = line.find("BdsDxe: failed to load") {
            self.bds = Some(line[at..].trim().to_string());
        }
        if self.grub_error.is_none() {
            // GRUB's first complaint (a kernel file it did not find), kept for the rescue
            // prompt that follows it.
            if let Some(at) = line.find("error: ") {
                self.grub_error = Some(format!("GRUB: {}", line[at..].trim()));
            }
        }
        if self.failure.is_some() {
            return Seen::Line;
        }
        let failure = if line.contains("UEFI Interactive Shell")
            || line.contains("starting") && line.contains("EFI Internal Shell")
        {
            Some(Failure::NothingBootable {
                loader: self.arch.removable_loader(),
                detail: self.bds.clone(),
            })
        } else if line.contains("softdog: Initiating system reboot") {
            Some(Failure::WatchdogReset {
                line: line.trim().to_string(),
            })
        } else if line.contains("Kernel panic") {
            Some(Failure::KernelPanic {
                line: line.trim().to_string(),
            })
        } else if line.contains("ingot-initramfs: FATAL")
            || line.contains("Gave up waiting for root")
            || line.contains("Unable to find root device")
        {
            Some(Failure::RootNotFound {
                line: line.trim().to_string(),
            })
        } else if line.contains("Entering rescue mode...") {
            Some(Failure::RescueShell {
                line: self
                    .grub_error
                    .clone()
                    .unwrap_or_else(|| line.trim().to_string()),
            })
        } else if line.contains("grub rescue>")
            || line.contains("You are in emergency mode")
            || line.contains("You are in rescue mode")
            || line.contains("Give root password for maintenance")
            || line.contains("Dropping to a shell")
        {
            Some(Failure::RescueShell {
                line: line.trim().to_string(),
            })
        } else if line.contains("No bootable device.") {
            Some(Failure::BiosNothingBootable {
                line: line.trim().to_string(),
            })
        } else if lower.contains("no bootable option")
            || lower.contains("boot option") && lower.contains("failed")
        {
            Some(Failure::BootOptionFailed {
                line: line.trim().to_string(),
            })
        } else {
            None
        };
        match failure {
            Some(f) => {
                self.failure = Some(f.clone());
                Seen::Fatal(f)
            }
            None => Seen::Line,
        }
    }
}

/// Replay a recorded console (as boot-test writes it: `[  seconds] line`) and say how the boot
/// ended: the ready line, the failure, or `None` when the log just stops.
pub fn classify_log(text: &str, arch: Arch) -> Option<Result<Ready, Failure>> {
    let mut c = Console::new(arch);
    for raw in text.lines() {
        let (at, line) = match raw.strip_prefix('[').and_then(|r| r.split_once("] ")) {
            Some((t, rest)) if t.trim().parse::<f64>().is_ok() => {
                (t.trim().parse::<f64>().unwrap_or(0.0), rest)
            }
            _ => (0.0, raw),
        };
        match c.feed(line, at) {
            Seen::Ready(r) => return Some(Ok(*r)),
            Seen::Fatal(_) | Seen::Line => {}
        }
    }
    c.failure.map(Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stall_lines() {
        // Lines from a TCG boot that hung (2026-11-27), and from ordinary boots.
        for l in [
            "[  25.673] [   22.597279] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:",
            "[  253.341960] rcu: INFO: rcu_sched self-detected stall on CPU",
            "[  277.584863] watchdog: BUG: soft lockup - CPU#0 stuck for 250s! [(udev-worker):120]",
        ] {
            assert!(reports_stall(&l.to_ascii_lowercase()), "{l}");
        }
        for l in [
            "[    0.158942] rcu: Preemptible hierarchical RCU implementation.",
            "[    0.159310] rcu: RCU calculated value of scheduler-enlistment delay is 25 jiffies.",
            "[    2.031659] Unstable clock detected, switching default tracing clock to \"global\"",
        ] {
            assert!(!reports_stall(&l.to_ascii_lowercase()), "{l}");
        }
        let mut c = Console::new(Arch::X86_64);
        c.feed(
            "[   22.597279] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:",
            25.4,
        );
        assert_eq!(
            c.timeout(120).to_string(),
            "timeout: no INGOT-READY line within 120s; the guest kernel reported a stall first: `[   22.597279] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:` at 25s"
        );
    }

    #[test]
    fn ready_line() {
        // The decoy tests/foreign/make-disk.sh prints before its pattern is a ready line.
        assert!(parse_ready("INGOT-READY image=decoy version=0 machine-id=00000000000000000000000000000000 uptime=1").is_some());
        let r = parse_ready("[  3.1] INGOT-READY image=edge version=1.0.0 machine-id=abc agents=hb:ok,x:fail uptime=3.2").unwrap();
        assert_eq!(r.image, "edge");
        assert_eq!(
            r.agents,
            vec![
                ("hb".to_string(), "ok".to_string()),
                ("x".into(), "fail".into())
            ]
        );
        assert!(parse_ready("nothing").is_none());
        assert!(parse_ready("INGOT-READY image").is_none());
    }

    #[test]
    fn a_watchdog_reset_and_a_bios_without_a_loader_are_named() {
        let mut c = Console::new(Arch::X86_64);
        let Seen::Fatal(f) = c.feed("[   21.5] softdog: Initiating system reboot", 21.6) else {
            panic!("a watchdog reset is fatal")
        };
        assert!(matches!(f, Failure::WatchdogReset { .. }));
        assert!(f.to_string().contains("the boot hung"), "{f}");
        let mut c = Console::new(Arch::X86_64);
        assert_eq!(c.feed("Boot failed: not a bootable disk", 1.0), Seen::Line);
        let Seen::Fatal(f) = c.feed("No bootable device.", 1.2) else {
            panic!("SeaBIOS giving up is fatal")
        };
        assert!(f.to_string().contains("legacy-BIOS-bootable"), "{f}");
    }

    #[test]
    fn grub_without_its_kernel_names_the_missing_file() {
        let mut c = Console::new(Arch::X86_64);
        for line in [
            "GRUB loading.",
            "Welcome to GRUB!",
            "Ingot: GRUB (BIOS) loading vm 1.0.0",
            "error: file `/vm/1.0.0/linux' not found.",
            "error: you need to load the kernel first.",
        ] {
            assert_eq!(c.feed(line, 1.0), Seen::Line, "{line}");
        }
        let Seen::Fatal(f) = c.feed("Entering rescue mode...", 1.5) else {
            panic!("GRUB's rescue mode is fatal")
        };
        assert_eq!(
            f.to_string(),
            "the boot ended in a rescue or emergency shell: GRUB: error: file `/vm/1.0.0/linux' not found."
        );
    }

    #[test]
    fn the_first_fatal_line_wins_and_names_the_loader() {
        let mut c = Console::new(Arch::Aarch64);
        assert_eq!(
            c.feed(
                "BdsDxe: failed to load Boot0001 \"UEFI Misc Device\": Not Found",
                3.0
            ),
            Seen::Line
        );
        let Seen::Fatal(f) = c.feed("UEFI Interactive Shell v2.2", 3.5) else {
            panic!("the shell is fatal")
        };
        assert_eq!(
            f.to_string(),
            "UEFI found nothing bootable on the disk and fell back to its shell (BdsDxe: failed to load Boot0001 \"UEFI Misc Device\": Not Found); check that the ESP holds EFI/BOOT/BOOTAA64.EFI (systemd-boot)"
        );
        assert_eq!(c.feed("Kernel panic - not syncing", 4.0), Seen::Line);
        assert_eq!(c.failure(), Some(&f));
    }

    #[test]
    fn recorded_console_logs_of_both_arches_classify_as_they_ended() {
        let ready = |text: &str, arch| match classify_log(text, arch) {
            Some(Ok(r)) => r,
            other => panic!("not ready: {other:?}"),
        };
        let x = ready(
            include_str!("../../tests/fixtures/console/x86_64-ready.log"),
            Arch::X86_64,
        );
        let a = ready(
            include_str!("../../tests/fixtures/console/aarch64-ready.log"),
            Arch::Aarch64,
        );
        for r in [&x, &a] {
            assert_eq!(
                (r.image.as_str(), r.version.as_str()),
                ("edge-minimal", "1.0.0")
            );
            assert_eq!(r.machine_id.len(), 32);
            assert!(r.agents.iter().all(|(_, s)| s == "ok"), "{:?}", r.agents);
        }
        assert_ne!(x.machine_id, a.machine_id);
        match classify_log(
            include_str!("../../tests/fixtures/console/x86_64-root-not-found.log"),
            Arch::X86_64,
        ) {
            Some(Err(Failure::RootNotFound { line })) => {
                assert!(
                    line.contains("PARTUUID=deadbeef-0000-4000-8000-000000000000"),
                    "{line}"
                )
            }
            other => panic!("expected root not found, got {other:?}"),
        }
    }

    #[test]
    fn recorded_panics_and_uefi_shells_of_both_arches_are_named() {
        for (text, arch) in [
            (
                include_str!("../../tests/fixtures/console/x86_64-kernel-panic.log"),
                Arch::X86_64,
            ),
            (
                include_str!("../../tests/fixtures/console/aarch64-kernel-panic.log"),
                Arch::Aarch64,
            ),
        ] {
            match classify_log(text, arch) {
                Some(Err(Failure::KernelPanic { line })) => assert!(
                    line.contains("VFS: Unable to mount root fs on unknown-block(0,0)"),
                    "{arch:?}: {line}"
                ),
                other => panic!("{arch:?}: expected a kernel panic, got {other:?}"),
            }
        }
        for (text, arch, loader) in [
            (
                include_str!("../../tests/fixtures/console/x86_64-uefi-shell.log"),
                Arch::X86_64,
                "BOOTX64.EFI",
            ),
            (
                include_str!("../../tests/fixtures/console/aarch64-uefi-shell.log"),
                Arch::Aarch64,
                "BOOTAA64.EFI",
            ),
        ] {
            match classify_log(text, arch) {
                Some(Err(f @ Failure::NothingBootable { .. })) => {
                    let words = f.to_string();
                    assert!(words.contains(loader), "{arch:?}: {words}");
                    assert!(words.contains("Not Found"), "{arch:?}: {words}");
                }
                other => panic!("{arch:?}: expected nothing bootable, got {other:?}"),
            }
        }
    }
}
