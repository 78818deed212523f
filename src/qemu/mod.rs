//! QEMU launcher: the command line for a VM spec (machine, CPU, accelerator, UEFI pflash, the
//! disk through a throw-away snapshot), starting the child so that it is always killed, and the
//! interactive console. What a boot's console means is the boot test's business (`boottest`).

mod accel;
mod vars;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::config::{Arch, Hardware};

pub use accel::{accel_runs_guest, pick_accel, Accel};
pub use vars::copy_vars;

/// Check the QEMU binary exists, naming the Debian package otherwise.
pub fn require_binary(arch: Arch) -> Result<()> {
    let (b, pkg) = (arch.qemu_binary(), arch.qemu_package());
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

/// The serial device QEMU's first `-serial` (the console Ingot reads) is to the guest
/// kernel: the 16550 UART `ttyS0` of x86 machines, the PL011 `ttyAMA0` of Arm's `virt`.
/// An image whose kernel console is elsewhere boots with nothing to read, and a boot test
/// would only time out: it is refused, saying why.
pub fn serial_console(hw: &Hardware) -> Result<(), String> {
    let want = match hw.arch {
        Arch::X86_64 => "ttyS0",
        Arch::Aarch64 => "ttyAMA0",
    };
    let dev = hw.console.split(',').next().unwrap_or_default();
    if dev == want {
        return Ok(());
    }
    Err(format!(
        "hardware `{}` puts the kernel's console on {dev}, but QEMU connects only the first serial port, {want} on {}, which Ingot reads for the boot; build it with console = \"{want}\" in that hardware file",
        hw.name, hw.arch
    ))
}

/// Everything needed to start a VM. Whoever builds one checks the QEMU binary first
/// (`require_binary`), once, so the boots themselves do not.
#[derive(Debug, Clone)]
pub struct VmSpec {
    /// Guest arch.
    pub arch: Arch,
    /// Hardware profile.
    pub hw: Hardware,
    /// Disk image: attached with `snapshot=on` (never modified), unless `persistent`.
    pub disk: PathBuf,
    /// Its format when it is not raw (a foreign image: qcow2, vmdk, vpc, vhdx).
    pub disk_format: Option<String>,
    /// The disk is a qcow2 overlay written in place, so that what the guest writes survives
    /// its reboots (an OTA test's disk; never an image directory's file).
    pub persistent: bool,
    /// A second disk, read-only: update media, or a cloud-init seed.
    pub media: Option<PathBuf>,
    /// A 127.0.0.1 port QEMU forwards to the guest's SSH port (22).
    pub ssh_port: Option<u16>,
    /// A Unix socket QEMU listens on for the guest agent's virtio-serial channel
    /// (`org.qemu.guest_agent.0`), for an image that ships qemu-guest-agent.
    pub agent: Option<PathBuf>,
    /// Firmware code: a UEFI code volume, or a BIOS image when `vars` is `None`.
    pub code: PathBuf,
    /// UEFI variable-store template (copied per boot); `None` boots the BIOS in `code`.
    pub vars: Option<PathBuf>,
    /// A BIOS image the disk boots with too (a hybrid disk): see [`VmSpec::under_bios`].
    pub bios: Option<PathBuf>,
    /// Acceleration.
    pub accel: Accel,
}

impl VmSpec {
    /// The same VM started by its BIOS instead of UEFI, for a hybrid disk.
    pub fn under_bios(&self) -> Option<VmSpec> {
        self.bios.as_ref().map(|b| VmSpec {
            code: b.clone(),
            vars: None,
            bios: None,
            ..self.clone()
        })
    }
}

/// Build the argument list; `vars_copy` is this boot's private firmware state (see
/// [`copy_vars`]).
pub fn args(spec: &VmSpec, vars_copy: &Path, interactive: bool) -> Vec<String> {
    let q = &spec.hw.qemu;
    let machine = match spec.vars {
        Some(_) => q.machine.clone(),
        // No display: QEMU then tells SeaBIOS (fw_cfg's "nographic") to write its own
        // messages ("No bootable device.") to COM1, the console the boot test reads.
        None => format!("{},graphics=off", q.machine),
    };
    let mut a: Vec<String> = vec![
        "-machine".into(),
        machine,
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
    ];
    match spec.vars {
        Some(_) => {
            a.extend([
                "-drive".into(),
                format!(
                    "if=pflash,format=raw,unit=0,readonly=on,file={}",
                    opt_path(&spec.code)
                ),
                "-drive".into(),
                format!("if=pflash,format=raw,unit=1,file={}", opt_path(vars_copy)),
            ]);
            // AAVMF (edk2's ArmVirtQemu) waits its boot-menu timeout, 5 s, for a key before
            // it boots; QEMU's boot-menu wait (fw_cfg `etc/boot-menu-wait`) overrides it.
            // Measured under TCG from a pristine store: the boot loader starts 0.9 s after
            // QEMU instead of 6.2 s (1000 ms: 2.2 s). OVMF already waits for nothing. Someone
            // at the console of `ingot run` keeps the firmware's wait to reach its setup.
            if !interactive {
                a.extend(["-boot".into(), "menu=on,splash-time=0".into()]);
            }
        }
        None => a.extend(["-bios".into(), spec.code.display().to_string()]),
    }
    a.extend([
        "-drive".into(),
        if spec.persistent {
            format!(
                "if=none,id=disk0,format=qcow2,file={}",
                opt_path(&spec.disk)
            )
        } else {
            format!(
                "if=none,id=disk0,format={},snapshot=on,file={}",
                spec.disk_format.as_deref().unwrap_or("raw"),
                opt_path(&spec.disk)
            )
        },
        "-device".into(),
        "virtio-blk-pci,drive=disk0,bootindex=0".into(),
        "-netdev".into(),
        match spec.ssh_port {
            Some(p) => format!("user,id=net0,hostfwd=tcp:127.0.0.1:{p}-:22"),
            None => "user,id=net0".into(),
        },
        "-device".into(),
        // Under a BIOS the NIC's option ROM (iPXE) would try a network boot after the disks
        // and keep a disk with no boot loader from ever saying so: no ROM.
        if spec.vars.is_some() {
            "virtio-net-pci,netdev=net0".into()
        } else {
            "virtio-net-pci,netdev=net0,romfile=".into()
        },
        "-device".into(),
        "virtio-rng-pci".into(),
    ]);
    if let Some(m) = &spec.media {
        a.extend([
            "-drive".into(),
            format!(
                "if=none,id=media0,format=raw,readonly=on,file={}",
                opt_path(m)
            ),
            "-device".into(),
            "virtio-blk-pci,drive=media0".into(),
        ]);
    }
    if let Some(sock) = &spec.agent {
        a.extend([
            "-device".into(),
            "virtio-serial-pci,id=ingot-vser".into(),
            "-chardev".into(),
            format!(
                "socket,id=ingot-qga,path={},server=on,wait=off",
                sock.display()
            ),
            "-device".into(),
            "virtserialport,bus=ingot-vser.0,chardev=ingot-qga,name=org.qemu.guest_agent.0".into(),
        ]);
    }
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

/// A child killed and reaped when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start QEMU for `spec` with stdout piped. The child is registered for Ctrl-C and killed
/// when the returned guards drop.
pub fn start_vm(
    spec: &VmSpec,
    args: &[String],
    stderr: Stdio,
) -> Result<(KillOnDrop, crate::interrupt::ChildGuard)> {
    let child = Command::new(spec.arch.qemu_binary())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("starting {}", spec.arch.qemu_binary()))?;
    let registered = crate::interrupt::ChildGuard::new(child.id());
    Ok((KillOnDrop(child), registered))
}

/// Boot interactively with the console on the terminal.
pub fn run_interactive(spec: &VmSpec, work: &Path) -> Result<i32> {
    let vars = work.join(format!("vars-run-{}.fd", std::process::id()));
    copy_vars(spec, &vars)?;
    eprintln!(
        "booting {} ({:?}); Ctrl-A X quits",
        spec.disk.display(),
        spec.accel
    );
    let status = Command::new(spec.arch.qemu_binary())
        .args(args(spec, &vars, true))
        .status()?;
    let _ = std::fs::remove_file(&vars);
    Ok(status.code().unwrap_or(1))
}

/// A path as the value of a QEMU option: a comma there ends the value (`file=/a,b` would
/// read `b` as another option), so it is doubled, as QEMU's option syntax escapes it.
fn opt_path(p: &std::path::Path) -> String {
    p.display().to_string().replace(',', ",,")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comma_in_a_path_stays_in_the_option_value() {
        assert_eq!(
            opt_path(Path::new("/tmp/a,b/disk.raw")),
            "/tmp/a,,b/disk.raw"
        );
        let mut s = spec("qemu-x86_64.toml", true);
        s.disk = "/tmp/x,snapshot=off/disk.raw".into();
        let a = args(&s, Path::new("vars.fd"), false);
        assert!(
            a.iter()
                .any(|x| x.ends_with("file=/tmp/x,,snapshot=off/disk.raw")),
            "{a:?}"
        );
    }

    fn spec(hw: &str, vars: bool) -> VmSpec {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let hw = crate::config::load_hardware(&dir.join("hardware").join(hw)).unwrap();
        VmSpec {
            arch: hw.arch,
            hw,
            disk: "disk.raw".into(),
            disk_format: None,
            persistent: false,
            media: None,
            ssh_port: None,
            agent: None,
            code: "code.fd".into(),
            vars: vars.then(|| "vars.fd".into()),
            bios: None,
            accel: Accel::Tcg,
        }
    }

    fn boot_menu(a: &[String]) -> Option<&str> {
        a.windows(2)
            .find(|w| w[0] == "-boot")
            .map(|w| w[1].as_str())
    }

    #[test]
    fn uefi_boots_skip_the_firmware_boot_menu_wait_unless_someone_is_at_the_console() {
        for hw in ["qemu-aarch64.toml", "qemu-x86_64.toml"] {
            let s = spec(hw, true);
            let v = Path::new("v.fd");
            assert_eq!(
                boot_menu(&args(&s, v, false)),
                Some("menu=on,splash-time=0"),
                "{hw}"
            );
            assert_eq!(boot_menu(&args(&s, v, true)), None, "{hw}");
        }
        // SeaBIOS: no menu prompt on its serial console.
        let bios = spec("qemu-x86_64.toml", false);
        assert_eq!(boot_menu(&args(&bios, Path::new("port"), false)), None);
    }

    #[test]
    fn seabios_writes_to_the_serial_console_without_a_hand_made_fw_cfg_item() {
        // QEMU warns about a `-fw_cfg` name outside "opt/" on every boot, and that warning
        // then showed in failure excerpts; a machine without graphics gets SeaBIOS's serial
        // console from QEMU itself.
        let a = args(&spec("qemu-x86_64.toml", false), Path::new("unused"), false);
        let machine = a.windows(2).find(|w| w[0] == "-machine").unwrap();
        assert_eq!(machine[1], "q35,graphics=off");
        assert!(!a.iter().any(|x| x == "-fw_cfg"), "{a:?}");
        let uefi = args(&spec("qemu-x86_64.toml", true), Path::new("v.fd"), false);
        assert!(uefi.windows(2).any(|w| w[0] == "-machine" && w[1] == "q35"));
    }

    #[test]
    fn the_console_must_be_the_serial_port_qemu_connects() {
        let mut x86 = spec("qemu-x86_64.toml", true).hw;
        assert_eq!(serial_console(&x86), Ok(()));
        x86.console = "ttyS0,115200n8".into();
        assert_eq!(serial_console(&x86), Ok(()));
        x86.console = "ttyS1".into();
        let e = serial_console(&x86).unwrap_err();
        assert!(
            e.contains("console on ttyS1") && e.contains("ttyS0 on x86_64"),
            "{e}"
        );
        let mut arm = spec("qemu-aarch64.toml", true).hw;
        assert_eq!(serial_console(&arm), Ok(()));
        arm.console = "ttyS0".into();
        assert!(serial_console(&arm)
            .unwrap_err()
            .contains("ttyAMA0 on aarch64"));
    }
}
