//! Which accelerator a guest gets: KVM only when the CPU advertises it, the guest arch is the
//! host's, `/dev/kvm` opens and a probe guest really runs under it; TCG otherwise.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::Arch;

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
    let Ok(dir) = crate::base::fsx::scratch_dir(&format!("ingot-probe-{}", arch.name())) else {
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
    let mut cmd = Command::new(arch.qemu_binary());
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
            let mut child = super::KillOnDrop(child);
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

/// KVM is worth probing: host and guest arch match, the CPU advertises virtualisation and
/// `/dev/kvm` opens.
fn kvm_candidate(arch: Arch) -> bool {
    let host_ok = arch.is_host();
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
