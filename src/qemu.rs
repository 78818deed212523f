//! QEMU launcher and boot test: builds the command line from the manifest and hardware profile,
//! boots the disk through a throw-away snapshot with UEFI firmware, reads the serial console until
//! the `INGOT-READY` line (or a panic, a root-not-found message, or the timeout), and always kills
//! the VM.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::config::{Arch, Hardware};

/// How to accelerate the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// KVM, only when it really works.
    Kvm,
    /// Software emulation.
    Tcg,
}

/// Pick KVM only when the CPU advertises virtualisation, `/dev/kvm` opens, the guest arch
/// matches the host, and a probe guest really runs under it; otherwise TCG. (On some hosts
/// `/dev/kvm` exists and creates VMs, but guests never execute an instruction.)
pub fn pick_accel(arch: Arch, requested: Option<&str>) -> Accel {
    match requested {
        Some("kvm") => return Accel::Kvm,
        Some("tcg") => return Accel::Tcg,
        _ => {}
    }
    static PROBED: [std::sync::OnceLock<Accel>; 2] =
        [std::sync::OnceLock::new(), std::sync::OnceLock::new()];
    let slot = match arch {
        Arch::X86_64 => &PROBED[0],
        Arch::Aarch64 => &PROBED[1],
    };
    *slot.get_or_init(|| match kvm_candidate(arch) {
        true if accel_runs_guest(arch, Accel::Kvm, Duration::from_secs(5)) => Accel::Kvm,
        _ => Accel::Tcg,
    })
}

/// The probe guest's firmware: a few instructions at the reset vector that end the VM with a
/// recognisable status. x86: `finit; mov al, 0x2a; out 0xf4, al` to an `isa-debug-exit` device
/// (QEMU exits with status 0x2a * 2 + 1). The `finit` is there because a bare port write is
/// not enough: on a host seen on 2026-11-27 (no vmx/svm advertised, `/dev/kvm` usable) KVM ran
/// the port write but stopped with "KVM internal error ... emulation failure" at the first FPU
/// instruction, which OVMF executes early, so real guests could not boot. aarch64: PSCI
/// `SYSTEM_OFF` through `hvc` (QEMU exits with status 0).
fn probe_firmware(arch: Arch) -> (Vec<u8>, i32) {
    match arch {
        Arch::X86_64 => {
            let mut rom = vec![0xF4u8; 64 << 10]; // hlt everywhere else
            let reset = rom.len() - 16;
            rom[reset..reset + 8]
                .copy_from_slice(&[0x9B, 0xDB, 0xE3, 0xB0, 0x2A, 0xE6, 0xF4, 0xF4]);
            (rom, 0x2A * 2 + 1)
        }
        Arch::Aarch64 => {
            let mut rom = Vec::new();
            for insn in [0x5280_0100u32, 0x72B0_8000, 0xD400_0002, 0x1400_0000] {
                rom.extend_from_slice(&insn.to_le_bytes());
            }
            rom.resize(4096, 0);
            (rom, 0)
        }
    }
}

/// Start a guest under `accel` that only runs the probe firmware, and say whether it
/// finished within `limit`. Used to decide whether KVM really works here.
pub fn accel_runs_guest(arch: Arch, accel: Accel, limit: Duration) -> bool {
    let Ok(dir) = scratch_dir(&format!("ingot-probe-{}", arch.name())) else {
        return false;
    };
    let (rom, want) = probe_firmware(arch);
    let fw = dir.path().join("probe.rom");
    if std::fs::write(&fw, rom).is_err() {
        return false;
    }
    let accel_arg = match accel {
        Accel::Kvm => "kvm",
        Accel::Tcg => "tcg",
    };
    let mut cmd = Command::new(binary(arch));
    cmd.args([
        "-accel",
        accel_arg,
        "-display",
        "none",
        "-nodefaults",
        "-no-reboot",
    ]);
    // The same machine type and CPU model the boot test would use under this accelerator:
    // here KVM runs a bare guest on `pc` but QEMU aborts setting MSRs for `q35 -cpu host`.
    let cpu = if accel == Accel::Kvm { "host" } else { "max" };
    cmd.args(["-cpu", cpu]);
    match arch {
        Arch::X86_64 => {
            cmd.args([
                "-machine",
                "q35",
                "-device",
                "isa-debug-exit,iobase=0xf4,iosize=0x04",
            ]);
        }
        Arch::Aarch64 => {
            cmd.args(["-machine", "virt"]);
        }
    }
    cmd.arg("-bios").arg(&fw);
    let ok = match cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(child) => {
            let mut child = KillOnDrop(child);
            let start = Instant::now();
            loop {
                match child.0.try_wait() {
                    Ok(Some(st)) => break st.code() == Some(want),
                    Ok(None) if start.elapsed() < limit => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => break false,
                }
            }
        }
        Err(_) => false,
    };
    ok
}

/// A new directory under the system's temporary directory, removed when dropped (`keep` it
/// to hand it to the user).
pub fn scratch_dir(prefix: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("{prefix}-"))
        .tempdir()
        .context("creating a directory under the system's temporary directory")
}

/// KVM is worth probing: host and guest arch match, the CPU advertises virtualisation and
/// `/dev/kvm` opens.
fn kvm_candidate(arch: Arch) -> bool {
    let host_ok = match arch {
        Arch::X86_64 => cfg!(target_arch = "x86_64"),
        Arch::Aarch64 => cfg!(target_arch = "aarch64"),
    };
    let flags = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let virt = flags
        .lines()
        .any(|l| l.starts_with("flags") && (l.contains(" vmx") || l.contains(" svm")));
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    host_ok && (virt || cfg!(target_arch = "aarch64")) && dev
}

/// QEMU binary for an arch.
pub fn binary(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "qemu-system-x86_64",
        Arch::Aarch64 => "qemu-system-aarch64",
    }
}

/// Check the QEMU binary exists, naming the Debian package otherwise.
pub fn require_binary(arch: Arch) -> Result<()> {
    let b = binary(arch);
    let pkg = match arch {
        Arch::X86_64 => "qemu-system-x86",
        Arch::Aarch64 => "qemu-system-arm",
    };
    if Command::new(b)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        bail!("{b} not found: install the Debian package `{pkg}` (on bookworm with backported qemu-utils: `apt-get install -t bookworm-backports {pkg}`)");
    }
    Ok(())
}

/// Everything needed to start a VM. Whoever builds one checks the QEMU binary first
/// (`require_binary`), once, so the boots themselves do not.
#[derive(Debug, Clone)]
pub struct VmSpec {
    /// Guest arch.
    pub arch: Arch,
    /// Hardware profile.
    pub hw: Hardware,
    /// Disk image (attached with `snapshot=on`: never modified).
    pub disk: PathBuf,
    /// UEFI code volume.
    pub code: PathBuf,
    /// UEFI variable-store template (copied per boot).
    pub vars: PathBuf,
    /// Acceleration.
    pub accel: Accel,
}

/// Build the argument list; `vars_copy` is this boot's private variable store.
pub fn args(spec: &VmSpec, vars_copy: &Path, interactive: bool) -> Vec<String> {
    let q = &spec.hw.qemu;
    let mut a: Vec<String> = vec![
        "-machine".into(),
        q.machine.clone(),
        "-cpu".into(),
        if spec.accel == Accel::Kvm {
            "host".into()
        } else {
            q.cpu.clone()
        },
        "-m".into(),
        q.memory.to_string(),
        "-smp".into(),
        q.smp.to_string(),
        "-accel".into(),
        match (spec.accel, spec.arch) {
            (Accel::Kvm, _) => "kvm".into(),
            // x86_64 guests run single-threaded under TCG. With one host thread per vCPU
            // (QEMU 10.0.2), a Linux guest sometimes hung in early boot: a vCPU whose local
            // APIC timer was still periodic kept the timer vector (236) in service, so no
            // interrupt reached it again (read with `info lapic` after the hang). Seen in 5
            // of 225 boots at 4 and 8 vCPUs and once in a CI run at 2; single-threaded, 0 of
            // 120 at 4 vCPUs. It costs vm-base about 4 s (median 26.5 s against 22.1 s over 5
            // boots) and edge-minimal 0.3 s. aarch64 never hung and loses more (vm-base 41.6 s
            // against 32.3 s), so it keeps a thread per vCPU.
            (Accel::Tcg, Arch::X86_64) => "tcg,thread=single".into(),
            (Accel::Tcg, Arch::Aarch64) => "tcg,thread=multi".into(),
        },
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-display".into(),
        "none".into(),
        "-no-reboot".into(),
        "-drive".into(),
        format!(
            "if=pflash,format=raw,unit=0,readonly=on,file={}",
            spec.code.display()
        ),
        "-drive".into(),
        format!("if=pflash,format=raw,unit=1,file={}", vars_copy.display()),
        "-drive".into(),
        format!(
            "if=none,id=disk0,format=raw,snapshot=on,file={}",
            spec.disk.display()
        ),
        "-device".into(),
        "virtio-blk-pci,drive=disk0,bootindex=0".into(),
        "-netdev".into(),
        "user,id=net0".into(),
        "-device".into(),
        "virtio-net-pci,netdev=net0".into(),
        "-device".into(),
        "virtio-rng-pci".into(),
    ];
    if interactive {
        a.extend(["-serial".into(), "mon:stdio".into()]);
    } else {
        a.extend([
            "-serial".into(),
            "stdio".into(),
            "-monitor".into(),
            "none".into(),
        ]);
    }
    a.extend(q.extra_args.iter().cloned());
    a
}

/// The parsed `INGOT-READY` line.
#[derive(Debug, Clone, Serialize, PartialEq)]
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
}

/// Parse an `INGOT-READY` line.
pub fn parse_ready(line: &str) -> Option<Ready> {
    let rest = line[line.find("INGOT-READY ")?..].strip_prefix("INGOT-READY ")?;
    let mut r = Ready {
        image: String::new(),
        version: String::new(),
        machine_id: String::new(),
        agents: Vec::new(),
        uptime: String::new(),
    };
    for kv in rest.split_whitespace() {
        let (k, v) = kv.split_once('=')?;
        match k {
            "image" => r.image = v.into(),
            "version" => r.version = v.into(),
            "machine-id" => r.machine_id = v.into(),
            "uptime" => r.uptime = v.into(),
            "agents" => {
                r.agents = v
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .filter_map(|a| a.split_once(':').map(|(n, s)| (n.into(), s.into())))
                    .collect()
            }
            _ => {}
        }
    }
    Some(r)
}

/// Whether a (lower-cased) console line is the guest kernel reporting that a CPU stalled: an
/// RCU stall (a CPU that stopped taking timer interrupts or ran too long with them off) or a
/// soft lockup. Under TCG on a loaded host these can also mean the guest was starved.
fn reports_stall(lower: &str) -> bool {
    lower.contains("rcu: info:") && lower.contains("stall")
        || lower.contains("watchdog: bug: soft lockup")
}

/// Result of one boot.
#[derive(Debug, Clone, Serialize)]
pub struct BootOutcome {
    /// The ready line, when seen.
    pub ready: Option<Ready>,
    /// Seconds from QEMU start to the ready line (or to the failure).
    pub seconds: f64,
    /// Why the boot failed, if it did.
    pub failure: Option<String>,
    /// Last console lines.
    pub tail: Vec<String>,
    /// Console log file.
    pub log: PathBuf,
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The variable store every boot copies: the firmware's template after the firmware has
/// started once on this machine type with no disk and no network attached, so that it has
/// written its own settings (console, language, memory map hints) and holds no boot entry for
/// any image. Made once and kept beside the template; measured here under TCG, OVMF reaches
/// the boot loader about 1 s sooner from it. Falls back to the pristine template when the
/// firmware does not reach its shell.
pub fn vars_template(spec: &VmSpec) -> PathBuf {
    match primed_vars(spec) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("note: using the pristine UEFI variable store: {e:#}");
            spec.vars.clone()
        }
    }
}

/// Text every boot of this machine configuration shares, naming the primed store.
fn machine_key(spec: &VmSpec) -> String {
    use sha2::{Digest, Sha256};
    let q = &spec.hw.qemu;
    let text = format!(
        "{}\n{}\n{}\n{}\n{:?}\n{}",
        binary(spec.arch),
        q.machine,
        q.cpu,
        q.memory,
        spec.accel,
        q.extra_args.join(" ")
    );
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

fn primed_vars(spec: &VmSpec) -> Result<PathBuf> {
    let name = spec
        .vars
        .file_name()
        .context("variable store has no file name")?
        .to_string_lossy();
    let dest = spec
        .vars
        .with_file_name(format!("{name}.primed-{}", machine_key(spec)));
    if dest.exists() {
        return Ok(dest);
    }
    let tmp = dest.with_file_name(format!(
        ".{name}.primed.{}.{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _cleanup = crate::interrupt::TempGuard::new(tmp.clone());
    std::fs::copy(&spec.vars, &tmp).with_context(|| format!("copying {}", spec.vars.display()))?;
    let mut a = args(spec, &tmp, false);
    // Firmware only: no disk, network or rng device, so no boot entry can be recorded.
    strip_devices(&mut a);
    let (mut child, _registered) = start_vm(spec, &a, Stdio::null())?;
    let mut out = child.0.stdout.take().context("no stdout")?;
    let (tx, rx) = mpsc::channel::<bool>();
    std::thread::spawn(move || {
        use std::io::Read;
        const MARK: &[u8] = b"startup.nsh";
        // The unread end of the previous chunk, so a mark split across reads is still seen.
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            // The UEFI shell's start-up countdown: boot manager work is over.
            if seen.windows(MARK.len()).any(|w| w == MARK) {
                let _ = tx.send(true);
                return;
            }
            seen.drain(..seen.len().saturating_sub(MARK.len() - 1));
        }
        let _ = tx.send(false);
    });
    let start = Instant::now();
    let reached = loop {
        if crate::interrupt::requested() {
            bail!("interrupted");
        }
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(r) => break r,
            Err(mpsc::RecvTimeoutError::Timeout) if start.elapsed() < Duration::from_secs(60) => {}
            Err(_) => break false,
        }
    };
    drop(child);
    if !reached {
        bail!("the firmware did not reach its shell without a disk within 60 s");
    }
    std::fs::rename(&tmp, &dest).with_context(|| format!("writing {}", dest.display()))?;
    Ok(dest)
}

/// Start QEMU for `spec` with stdout piped. The child is registered for Ctrl-C and killed
/// when the returned guards drop.
fn start_vm(
    spec: &VmSpec,
    args: &[String],
    stderr: Stdio,
) -> Result<(KillOnDrop, crate::interrupt::ChildGuard)> {
    let child = Command::new(binary(spec.arch))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("starting {}", binary(spec.arch)))?;
    let registered = crate::interrupt::ChildGuard::new(child.id());
    Ok((KillOnDrop(child), registered))
}

/// Remove the disk, network and rng devices (and their back ends) from an argument list.
fn strip_devices(a: &mut Vec<String>) {
    let mut out = Vec::with_capacity(a.len());
    let mut i = 0;
    while i < a.len() {
        let dev = matches!(a[i].as_str(), "-device" | "-netdev")
            || (a[i] == "-drive" && a.get(i + 1).is_some_and(|v| !v.starts_with("if=pflash")));
        if dev && i + 1 < a.len() {
            i += 2;
            continue;
        }
        out.push(a[i].clone());
        i += 1;
    }
    *a = out;
}

/// Boot once and wait for the ready line.
pub fn boot_once(spec: &VmSpec, timeout: Duration, log: &Path, work: &Path) -> Result<BootOutcome> {
    let vars = work.join(format!(
        "vars-{}-{:?}.fd",
        std::process::id(),
        std::thread::current().id()
    ));
    let template = vars_template(spec);
    std::fs::copy(&template, &vars)
        .with_context(|| format!("copying UEFI variables {}", template.display()))?;
    let start = Instant::now();
    let (mut child, _registered) = start_vm(spec, &args(spec, &vars, false), Stdio::piped())?;
    let stdout = child.0.stdout.take().context("no stdout")?;
    let stderr = child.0.stderr.take().context("no stderr")?;
    let (tx, rx) = mpsc::channel::<Option<String>>();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n') {
            let Ok(l) = line else { break };
            let s = String::from_utf8_lossy(&l).replace('\r', "");
            if tx.send(Some(s)).is_err() {
                return;
            }
        }
        let _ = tx.send(None);
    });
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx2.send(Some(format!("[qemu] {line}")));
        }
    });
    let mut all: Vec<String> = Vec::new();
    let mut outcome = BootOutcome {
        ready: None,
        seconds: 0.0,
        failure: None,
        tail: Vec::new(),
        log: log.to_path_buf(),
    };
    let mut fatal_at: Option<Instant> = None;
    let mut bds_failure: Option<String> = None;
    // The first stall the guest kernel reports (RCU stall, soft lockup): named on a timeout.
    let mut stall: Option<String> = None;
    loop {
        if crate::interrupt::requested() {
            outcome.failure = Some("interrupted".into());
            break;
        }
        let left = timeout.checked_sub(start.elapsed());
        let wait = match (left, fatal_at) {
            (None, _) => {
                outcome.failure.get_or_insert_with(|| {
                    format!(
                        "timeout: no INGOT-READY line within {}s{}",
                        timeout.as_secs(),
                        stall
                            .as_deref()
                            .map(|l| format!("; the guest kernel reported a stall first: {l}"))
                            .unwrap_or_default()
                    )
                });
                break;
            }
            (Some(_), Some(t)) if t.elapsed() > Duration::from_secs(3) => break,
            (Some(l), _) => l.min(Duration::from_millis(500)),
        };
        match rx.recv_timeout(wait) {
            Ok(Some(line)) => {
                if let Some(r) = parse_ready(&line) {
                    outcome.ready = Some(r);
                    outcome.seconds = start.elapsed().as_secs_f64();
                    all.push(format!("[{:8.3}] {line}", start.elapsed().as_secs_f64()));
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if stall.is_none() && reports_stall(&lower) {
                    stall = Some(format!(
                        "`{}` at {:.0}s",
                        line.trim(),
                        start.elapsed().as_secs_f64()
                    ));
                }
                if line.contains("BdsDxe: failed to load") {
                    let at = line.find("BdsDxe:").unwrap_or(0);
                    bds_failure = Some(line[at..].trim().to_string());
                }
                // The firmware fell back to its built-in shell: no boot entry on the disk worked.
                if outcome.failure.is_none()
                    && (line.contains("UEFI Interactive Shell")
                        || line.contains("starting") && line.contains("EFI Internal Shell"))
                {
                    outcome.failure = Some(format!(
                        "UEFI found nothing bootable on the disk and fell back to its shell{}; check that the ESP holds EFI/BOOT/{} (systemd-boot)",
                        bds_failure
                            .as_deref()
                            .map(|b| format!(" ({b})"))
                            .unwrap_or_default(),
                        match spec.arch {
                            Arch::X86_64 => "BOOTX64.EFI",
                            Arch::Aarch64 => "BOOTAA64.EFI",
                        }
                    ));
                    outcome.seconds = start.elapsed().as_secs_f64();
                    fatal_at = Some(Instant::now());
                }
                if outcome.failure.is_none()
                    && (line.contains("Kernel panic")
                        || line.contains("ingot-initramfs: FATAL")
                        || lower.contains("no bootable option")
                        || lower.contains("boot option") && lower.contains("failed"))
                {
                    outcome.failure = Some(line.trim().to_string());
                    outcome.seconds = start.elapsed().as_secs_f64();
                    fatal_at = Some(Instant::now());
                }
                // Host seconds since QEMU started: shows where a slow boot spends its time.
                all.push(format!("[{:8.3}] {line}", start.elapsed().as_secs_f64()));
            }
            Ok(None) => {
                outcome
                    .failure
                    .get_or_insert_with(|| "QEMU exited before the INGOT-READY line".into());
                break;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    drop(child);
    let _ = std::fs::remove_file(&vars);
    if outcome.seconds == 0.0 {
        outcome.seconds = start.elapsed().as_secs_f64();
    }
    std::fs::write(log, all.join("\n") + "\n")
        .with_context(|| format!("writing {}", log.display()))?;
    outcome.tail = all.iter().rev().take(40).rev().cloned().collect();
    Ok(outcome)
}

/// Boot interactively with the console on the terminal.
pub fn run_interactive(spec: &VmSpec, work: &Path) -> Result<i32> {
    let vars = work.join(format!("vars-run-{}.fd", std::process::id()));
    std::fs::copy(vars_template(spec), &vars)?;
    eprintln!(
        "booting {} ({:?}); Ctrl-A X quits",
        spec.disk.display(),
        spec.accel
    );
    let status = Command::new(binary(spec.arch))
        .args(args(spec, &vars, true))
        .status()?;
    let _ = std::fs::remove_file(&vars);
    Ok(status.code().unwrap_or(1))
}

#[cfg(test)]
mod tests {
    #[test]
    fn priming_runs_the_firmware_without_devices() {
        let mut a: Vec<String> = [
            "-machine",
            "q35",
            "-drive",
            "if=pflash,format=raw,unit=0,file=code.fd",
            "-drive",
            "if=none,id=disk0,file=disk.raw",
            "-device",
            "virtio-blk-pci,drive=disk0",
            "-netdev",
            "user,id=net0",
            "-device",
            "virtio-net-pci,netdev=net0",
            "-serial",
            "stdio",
        ]
        .map(String::from)
        .to_vec();
        super::strip_devices(&mut a);
        assert_eq!(
            a,
            [
                "-machine",
                "q35",
                "-drive",
                "if=pflash,format=raw,unit=0,file=code.fd",
                "-serial",
                "stdio"
            ]
        );
    }

    #[test]
    fn stall_lines() {
        // Lines from a TCG boot that hung (2026-11-27), and from ordinary boots.
        for l in [
            "[  25.673] [   22.597279] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:",
            "[  253.341960] rcu: INFO: rcu_sched self-detected stall on CPU",
            "[  277.584863] watchdog: BUG: soft lockup - CPU#0 stuck for 250s! [(udev-worker):120]",
        ] {
            assert!(super::reports_stall(&l.to_ascii_lowercase()), "{l}");
        }
        for l in [
            "[    0.158942] rcu: Preemptible hierarchical RCU implementation.",
            "[    0.159310] rcu: RCU calculated value of scheduler-enlistment delay is 25 jiffies.",
            "[    2.031659] Unstable clock detected, switching default tracing clock to \"global\"",
        ] {
            assert!(!super::reports_stall(&l.to_ascii_lowercase()), "{l}");
        }
    }

    #[test]
    fn ready_line() {
        let r = super::parse_ready("[  3.1] INGOT-READY image=edge version=1.0.0 machine-id=abc agents=hb:ok,x:fail uptime=3.2").unwrap();
        assert_eq!(r.image, "edge");
        assert_eq!(
            r.agents,
            vec![
                ("hb".to_string(), "ok".to_string()),
                ("x".into(), "fail".into())
            ]
        );
        assert!(super::parse_ready("nothing").is_none());
    }
}
