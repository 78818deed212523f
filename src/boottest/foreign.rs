//! Disks Ingot did not build (Packer and mkosi outputs, Debian's cloud images, last year's
//! golden images): their format read by `qemu-img info`, the VM from Ingot's own QEMU machine
//! for the arch (the shipped hardware and firmware profiles, built in), UEFI firmware fetched
//! like any package, and the file attached with `snapshot=on`, so QEMU writes to a throwaway
//! overlay and never to the file.

use std::path::Path;

use anyhow::{Context, Result};

use crate::config::Arch;
use crate::packages::{self, Source};
use crate::qemu::{self, VmSpec};

/// Formats QEMU boots and the names they go by.
const FORMATS: &[(&str, &str)] = &[
    ("raw", "raw"),
    ("qcow2", "qcow2"),
    ("vmdk", "vmdk"),
    ("vhd", "vpc"),
    ("vpc", "vpc"),
    ("vhdx", "vhdx"),
];

/// The firmware a foreign disk boots with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// UEFI (OVMF, AAVMF): the disk's ESP holds a loader at the removable path.
    Uefi,
    /// BIOS (SeaBIOS, x86_64 only): the disk's first sector holds a boot loader.
    Bios,
}

impl Firmware {
    /// `uefi` or `bios` for `arch`, as a flag or a matrix cell gives it.
    pub fn parse(name: &str, arch: Arch) -> Result<Self, crate::base::BadInput> {
        match (name, arch) {
            ("uefi", _) => Ok(Firmware::Uefi),
            ("bios", Arch::X86_64) => Ok(Firmware::Bios),
            ("bios", a) => Err(crate::base::BadInput(format!(
                "firmware bios: BIOS boots are for x86_64 disks; {a} boots UEFI"
            ))),
            (f, _) => Err(crate::base::BadInput(format!(
                "firmware `{f}`: uefi or bios"
            ))),
        }
    }
}

/// The machine Ingot tests its own images on, per arch, and its firmware descriptor.
fn builtin(
    arch: Arch,
    firmware: Firmware,
) -> (&'static str, &'static str, &'static str, &'static str) {
    let (fw_name, fw_text) = match (arch, firmware) {
        (Arch::X86_64, Firmware::Bios) => ("seabios", include_str!("../../firmware/seabios.toml")),
        (Arch::X86_64, Firmware::Uefi) => ("ovmf", include_str!("../../firmware/ovmf.toml")),
        (Arch::Aarch64, _) => ("aavmf", include_str!("../../firmware/aavmf.toml")),
    };
    match arch {
        Arch::X86_64 => (
            "qemu-x86_64",
            include_str!("../../hardware/qemu-x86_64.toml"),
            fw_name,
            fw_text,
        ),
        Arch::Aarch64 => (
            "qemu-aarch64",
            include_str!("../../hardware/qemu-aarch64.toml"),
            fw_name,
            fw_text,
        ),
    }
}

/// Under a BIOS: what is wrong with the disk's first sector, read before booting. A partition
/// table (the 0x55AA signature) in front of no boot code at all (440 zero bytes, as `sgdisk`
/// leaves a GPT's protective MBR) is started by SeaBIOS, which then hangs until the timeout:
/// named here instead, at once. `None` for a UEFI boot or a first sector with code.
pub fn bios_preflight(spec: &VmSpec, work: &Path) -> Result<Option<String>> {
    if spec.vars.is_some() {
        return Ok(None);
    }
    let format = spec.disk_format.as_deref().unwrap_or("raw");
    let sector = if format == "raw" {
        let mut b = vec![0u8; 512];
        let mut f = std::fs::File::open(&spec.disk)
            .with_context(|| format!("reading {}", spec.disk.display()))?;
        let n = std::io::Read::read(&mut f, &mut b)?;
        b.truncate(n);
        b
    } else {
        let out = work.join(format!(
            "sector0-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        crate::base::tool::run(
            std::process::Command::new("qemu-img")
                .args(["dd", "-f", format, "-O", "raw", "bs=512", "count=1"])
                .arg(format!("if={}", spec.disk.display()))
                .arg(format!("of={}", out.display())),
            "qemu-utils",
            &format!("{}: qemu-img dd", spec.disk.display()),
        )?;
        let b = std::fs::read(&out)?;
        let _ = std::fs::remove_file(&out);
        b
    };
    Ok(no_boot_code(&sector).then(|| {
        "the disk's first sector has a partition table but no boot code (its first 440 bytes are zero); SeaBIOS would start it and hang".to_string()
    }))
}

/// A first sector with the boot signature and nothing in the boot code area.
fn no_boot_code(sector: &[u8]) -> bool {
    sector.len() >= 512 && sector[510..512] == [0x55, 0xAA] && sector[..440].iter().all(|b| *b == 0)
}

/// `qemu-img info --output=json` of `disk`, read as `format` when given.
fn qemu_img_info(disk: &Path, format: Option<&str>) -> Result<serde_json::Value> {
    let mut cmd = std::process::Command::new("qemu-img");
    cmd.args(["info", "--output=json"]);
    if let Some(f) = format {
        cmd.args(["-f", f]);
    }
    let o = crate::base::tool::run(
        cmd.arg(disk),
        "qemu-utils",
        &format!("{}: qemu-img info", disk.display()),
    )?;
    serde_json::from_slice(&o.stdout)
        .with_context(|| format!("{}: qemu-img info gave no JSON", disk.display()))
}

/// `qemu-img info`'s name for the file's format.
pub fn detect_format(disk: &Path) -> Result<String> {
    let v = qemu_img_info(disk, None)?;
    v["format"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("{}: qemu-img info names no format", disk.display()))
}

/// A disk another tool built may name other files for QEMU to open: a qcow2's backing file,
/// a VMDK descriptor's extents. Boot-tested as given, such a disk would hand the guest a host
/// file (`/etc/shadow` as a backing file, a VMDK extent on `/dev/sda`). Only a disk whose data
/// is all in its own file is booted; `qemu-img convert` makes one of any other.
fn self_contained(disk: &Path, format: &str) -> Result<()> {
    let v = qemu_img_info(disk, Some(format))?;
    let refuse = |what: String| -> Result<()> {
        Err(crate::base::BadInput(format!(
            "--disk {}: {what}; boot-test takes a disk whose data is all in its own file (make one with `qemu-img convert -O qcow2 {} self-contained.qcow2`)",
            disk.display(),
            disk.display()
        ))
        .into())
    };
    for key in ["backing-filename", "full-backing-filename"] {
        if let Some(b) = v[key].as_str() {
            return refuse(format!("it has a backing file, {b}"));
        }
    }
    let own = disk.canonicalize().ok();
    let mut todo = vec![&v];
    while let Some(node) = todo.pop() {
        for child in node["children"].as_array().into_iter().flatten() {
            let info = &child["info"];
            if let Some(f) = info["filename"].as_str() {
                let same = Path::new(f).canonicalize().ok() == own || Path::new(f) == disk;
                if !same {
                    return refuse(format!(
                        "its {} is another file, {f}",
                        child["name"].as_str().unwrap_or("data")
                    ));
                }
            }
            todo.push(info);
        }
    }
    Ok(())
}

/// QEMU's driver name for a format given on the command line (`vhd` is `vpc`).
pub fn driver(format: &str) -> Result<&'static str, crate::base::BadInput> {
    FORMATS
        .iter()
        .find(|(n, _)| *n == format)
        .map(|(_, d)| *d)
        .ok_or_else(|| {
            crate::base::BadInput(format!(
                "--format {format}: one of raw, qcow2, vmdk, vhd, vhdx"
            ))
        })
}

/// SeaBIOS from the archive (the built-in `firmware/seabios.toml`), for the BIOS boots of a
/// hybrid Ingot image: the path of its BIOS image in the cache.
pub fn seabios(src: &Source) -> Result<std::path::PathBuf> {
    let work = crate::base::fsx::scratch_dir("ingot-seabios")?;
    let path = work.path().join("seabios.toml");
    std::fs::write(&path, include_str!("../../firmware/seabios.toml"))
        .with_context(|| format!("writing {}", path.display()))?;
    let fw = crate::config::load_firmware(&path)?;
    let (code, _) = packages::fetch_firmware(src, &fw).context("SeaBIOS")?;
    Ok(code)
}

/// The VM for a foreign disk: Ingot's machine for `arch`, its firmware from the archive through
/// `src`, the disk in `format` (detected when `None`). `work` holds the built-in profiles.
pub fn vm_spec(
    disk: &Path,
    arch: Arch,
    firmware: Firmware,
    format: Option<&str>,
    accel: Option<&str>,
    src: &Source,
    work: &Path,
) -> Result<VmSpec> {
    match std::fs::metadata(disk) {
        Ok(m) if m.is_file() => {}
        Ok(m) => {
            return Err(crate::base::BadInput(format!(
                "--disk {}: not a regular file ({}); give a disk image file",
                disk.display(),
                crate::base::fsx::kind_of(&m.file_type())
            ))
            .into())
        }
        Err(e) => {
            return Err(crate::base::BadInput(format!("--disk {}: {e}", disk.display())).into())
        }
    }
    let format = match format {
        Some(f) => driver(f)?.to_string(),
        None => {
            let f = detect_format(disk)?;
            driver(&f)
                .with_context(|| format!("{}: a {f} disk", disk.display()))?
                .to_string()
        }
    };
    self_contained(disk, &format)?;
    let (hw_name, hw_text, fw_name, fw_text) = builtin(arch, firmware);
    let root = work.join(format!("profiles-{hw_name}"));
    std::fs::create_dir_all(root.join("hardware"))?;
    std::fs::create_dir_all(root.join("firmware"))?;
    let hw_path = root.join("hardware").join(format!("{hw_name}.toml"));
    std::fs::write(&hw_path, hw_text)?;
    std::fs::write(
        root.join("firmware").join(format!("{fw_name}.toml")),
        fw_text,
    )?;
    let mut hw = crate::config::load_hardware(&hw_path)?;
    hw.firmware = fw_name.to_string();
    let fw = crate::config::firmware_for(&hw)?;
    let (code, vars) = packages::fetch_firmware(src, &fw).context("firmware")?;
    Ok(VmSpec {
        arch,
        accel: qemu::pick_accel(arch, accel),
        hw,
        disk: std::fs::canonicalize(disk)?,
        disk_format: Some(format),
        persistent: false,
        media: None,
        ssh_port: None,
        agent: None,
        code,
        vars,
        bios: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_protective_mbr_without_code_is_named_and_one_with_code_is_not() {
        let mut s = vec![0u8; 512];
        assert!(!no_boot_code(&s), "no signature: SeaBIOS says so itself");
        s[510] = 0x55;
        s[511] = 0xAA;
        s[446] = 0x00;
        s[450] = 0xEE;
        assert!(no_boot_code(&s));
        s[0] = 0xEB;
        assert!(!no_boot_code(&s));
        assert!(!no_boot_code(&s[..100]));
    }
}
