//! The console classifier: reads a guest's serial console line by line and says what the boot
//! came to — the `INGOT-READY` line, a kernel panic, an initramfs that found no root, UEFI
//! falling back to its shell, a failed boot option — and, on a timeout, the first stall the guest
//! kernel reported. Pure: no QEMU, no clock; tested on recorded console logs of both arches.

use std::borrow::Cow;

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
    /// The UEFI firmware stopped on a CPU exception while it ran a boot-time program (the
    /// boot loader, the kernel's EFI stub): edk2 prints the registers and halts.
    FirmwareException {
        /// The firmware's line naming the exception.
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
    /// systemd-boot had no entry it could start: its menu held only its own "Reboot Into
    /// Firmware Interface", which it took when the menu timed out, and QEMU exited at the reset.
    NoBootEntry,
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
            Failure::FirmwareException { line } => write!(
                f,
                "the UEFI firmware stopped on a CPU exception in the boot loader or the kernel's EFI stub (a machine with too little memory for them, or a loader built for another CPU): {line}"
            ),
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
            Failure::NoBootEntry => f.write_str(
                "systemd-boot found no boot entry it could start: its menu offered only \"Reboot Into Firmware Interface\", which it took when the menu timed out; check that the ESP holds loader/entries/*.conf, that loader.conf's `default` matches one, and that the linux and initrd files an entry names are there",
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

/// Whether the text a console line shows (see [`shown_text`]) ends at GRUB's command prompt,
/// normal (`grub> `) or rescue (`grub rescue> `): nobody answers it in a boot test.
fn waits_at_grub_prompt(shown: &[&str]) -> bool {
    shown
        .last()
        .is_some_and(|t| t.ends_with("grub>") || t.ends_with("grub rescue>"))
}

/// SYSLINUX's complaint about a kernel or initrd it could not load, as one clean line.
/// SeaBIOS copies the loader's screen to the serial port that SYSLINUX also writes to, so the
/// two copies of the text may arrive interleaved: the path is read up to its first end.
fn syslinux_error(line: &str) -> Option<String> {
    let (path, reason) = if let Some(at) = line.find("Could not find kernel image: ") {
        let rest = &line[at + "Could not find kernel image: ".len()..];
        (rest, "not found")
    } else {
        let at = line.find("Loading ")?;
        let rest = &line[at + "Loading ".len()..];
        let tail = &rest[rest.rfind("failed:")? + "failed:".len()..];
        let reason = if tail.contains("No such file or directory") {
            "No such file or directory"
        } else {
            tail.trim()
        };
        (rest, reason)
    };
    let path = path.split(char::is_whitespace).next().unwrap_or_default();
    let path = path.split("Loading").next().unwrap_or_default();
    Some(format!("SYSLINUX: cannot load {path}: {reason}"))
}

/// The classifier's state over one boot's console.
#[derive(Debug, Clone)]
pub struct Console {
    arch: Arch,
    stall: Option<String>,
    bds: Option<String>,
    grub_error: Option<String>,
    /// SYSLINUX's first failed load: its `boot:` prompt after it waits for nobody.
    syslinux_error: Option<String>,
    /// The last text shown was a systemd-boot menu holding only the firmware-setup entry.
    firmware_menu_only: bool,
    failure: Option<Failure>,
}

/// systemd-boot's own menu entry for the firmware's setup, shown whatever the ESP holds.
const FIRMWARE_ENTRY: &str = "Reboot Into Firmware Interface";

/// The runs of text between a console line's escape sequences (cursor moves, colours).
fn between_escapes(line: &str) -> Vec<&str> {
    let mut runs = Vec::new();
    let mut rest = line;
    while !rest.is_empty() {
        let (text, after) = match rest.find('\u{1b}') {
            Some(i) => {
                let tail = &rest[i + 1..];
                // A CSI sequence ends at its first byte in @..~; anything else is one character.
                let end = match tail.strip_prefix('[') {
                    Some(csi) => csi
                        .find(|c: char| ('@'..='~').contains(&c))
                        .map_or(tail.len(), |e| e + 2),
                    None => tail.chars().next().map_or(0, char::len_utf8),
                };
                (&rest[..i], &tail[end..])
            }
            None => (rest, ""),
        };
        runs.push(text);
        rest = after;
    }
    runs
}

/// A console line without its escape sequences. SeaBIOS copies a loader's screen to the
/// serial port with cursor moves that can fall inside a word (`/[05;09Hvmlinuz`), depending
/// on how fast the guest runs.
fn plain(line: &str) -> Cow<'_, str> {
    if line.contains('\u{1b}') {
        Cow::Owned(between_escapes(line).concat())
    } else {
        Cow::Borrowed(line)
    }
}

/// The pieces of text a console line shows on screen: escape sequences, box-drawing lines (or
/// their ASCII dashes) and runs of spaces (how a full-screen menu places its items) separate them.
fn shown_text(line: &str) -> Vec<&str> {
    between_escapes(line)
        .into_iter()
        .flat_map(|run| run.split(['─', '│']))
        .flat_map(|t| t.split("  "))
        .map(str::trim)
        // A rule drawn in ASCII (a firmware console without box-drawing characters).
        .filter(|piece| !piece.is_empty() && !piece.chars().all(|c| c == '-'))
        .collect()
}

/// Whether the text a console line shows is a systemd-boot menu whose only entry is
/// [`FIRMWARE_ENTRY`] (its countdown aside).
fn firmware_menu_only(shown: &[&str]) -> bool {
    shown.contains(&FIRMWARE_ENTRY)
        && shown
            .iter()
            .all(|p| *p == FIRMWARE_ENTRY || p.starts_with("Boot in ") && p.ends_with(" s."))
}

impl Console {
    /// A classifier for a guest of this arch.
    pub fn new(arch: Arch) -> Self {
        Console {
            arch,
            stall: None,
            bds: None,
            grub_error: None,
            syslinux_error: None,
            firmware_menu_only: false,
            failure: None,
        }
    }

    /// Whether a console line, finished or not, ends at a boot loader's prompt that nobody in a
    /// boot test answers: GRUB's, or SYSLINUX's `boot:` after it failed to load a file (before
    /// that, the prompt may just be counting down to its default).
    pub fn waits_at_loader_prompt(&self, line: &str) -> bool {
        self.at_loader_prompt(&shown_text(line))
    }

    /// [`Console::waits_at_loader_prompt`] on the text a line shows.
    fn at_loader_prompt(&self, shown: &[&str]) -> bool {
        waits_at_grub_prompt(shown)
            || self.syslinux_error.is_some() && shown.last().is_some_and(|t| t.ends_with("boot:"))
    }

    /// What a boot is that QEMU ended before the ready line (with no fatal line seen).
    pub fn exited(&self) -> Failure {
        if self.firmware_menu_only {
            Failure::NoBootEntry
        } else {
            Failure::QemuExited
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
        let shown = shown_text(line);
        if !shown.is_empty() {
            self.firmware_menu_only = firmware_menu_only(&shown);
        }
        if let Some(at) = line.find("BdsDxe: failed to load") {
            self.bds = Some(line[at..].trim().to_string());
        }
        if self.grub_error.is_none() {
            // GRUB's first complaint (a kernel file it did not find), kept for the rescue
            // prompt that follows it.
            let plain = plain(line);
            if let Some(at) = plain.find("error: ") {
                self.grub_error = Some(format!("GRUB: {}", plain[at..].trim()));
            }
        }
        if self.syslinux_error.is_none() {
            self.syslinux_error = syslinux_error(&plain(line));
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
        } else if line.contains("!!!! X64 Exception Type")
            || line.contains("!!!! IA32 Exception Type")
            || line.contains("Synchronous Exception at 0x")
        {
            Some(Failure::FirmwareException {
                line: line.trim().trim_matches('!').trim().to_string(),
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
        } else if self.at_loader_prompt(&shown) {
            // GRUB ran its configuration, which failed (a kernel it did not find), or SYSLINUX
            // failed to load a file, and the loader waits at its command line: its first error
            // says why.
            Some(Failure::RescueShell {
                line: self
                    .grub_error
                    .clone()
                    .or_else(|| self.syslinux_error.clone())
                    .unwrap_or_else(|| line.trim().to_string()),
            })
        } else if line.contains("You are in emergency mode")
            || line.contains("You are in rescue mode")
            || line.contains("Give root password for maintenance")
            // sulogin where root is locked (Debian's cloud images): no shell even for someone
            // at the console.
            || line.contains("Cannot open access to console, the root account is locked")
            || line.contains("Dropping to a shell")
            // dracut's initramfs (Fedora, RHEL, SUSE and their cloud images).
            || line.contains("Entering emergency mode. Exit the shell to continue")
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
    // A log that just stops may still say why QEMU ended.
    match (c.failure.take(), c.exited()) {
        (Some(f), _) => Some(Err(f)),
        (None, Failure::QemuExited) => None,
        (None, f) => Some(Err(f)),
    }
}

#[cfg(test)]
mod tests;
