//! Hardware profiles (`hardware/*.toml`): the board or VM an image is built for: arch, kernel,
//! initramfs modules, command line, console, disk layout, firmware and QEMU settings.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::values::{checked, Arch, ByteSize};
use super::{not_a, rule_at, ConfigError, MAX_DISK};

/// Disk partition added by a hardware profile beyond the ESP and root.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraPartition {
    /// GPT partition name.
    pub name: String,
    /// `root` (a second root slot of the arch's root type), `linux` (generic data), `home`,
    /// `var`, `swap`, or a literal type GUID.
    #[serde(rename = "type")]
    pub kind: String,
    /// Size of the partition.
    pub size: ByteSize,
}

/// `[disk]` table of a hardware profile.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DiskLayout {
    /// Size of the EFI system partition.
    #[serde(default = "default_esp")]
    pub esp_size: ByteSize,
    /// Root filesystem type (only `ext4`).
    #[serde(default = "default_rootfs")]
    pub root_fs: String,
    /// Total disk size, or `"auto"` for the tree plus headroom.
    #[serde(default = "default_auto")]
    pub size: String,
    /// Partitions after root.
    #[serde(default)]
    pub partitions: Vec<ExtraPartition>,
    /// A hybrid disk that a BIOS boots too (x86_64, one root): GRUB's i386-pc boot code in the
    /// protective MBR and its core image in a BIOS boot partition after the others, loading
    /// the same kernel, initramfs and command line from the ESP as systemd-boot does.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bios: bool,
}

fn default_esp() -> ByteSize {
    ByteSize(64 << 20)
}
fn default_rootfs() -> String {
    "ext4".into()
}
fn default_auto() -> String {
    "auto".into()
}

/// `[qemu]` table of a hardware profile.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QemuSettings {
    /// `-machine` value.
    pub machine: String,
    /// `-cpu` value under TCG (KVM runs `host`). A profile that names none gets the model the
    /// shipped profiles of its arch use ([`default_cpu`]).
    #[serde(default)]
    pub cpu: String,
    /// Memory in MiB.
    #[serde(default = "default_mem")]
    pub memory: u32,
    /// Virtual CPUs.
    #[serde(default = "default_smp")]
    pub smp: u32,
    /// Extra arguments appended verbatim.
    #[serde(default)]
    pub extra_args: Vec<String>,
}

/// The TCG CPU model of a hardware profile without `cpu`: the one the shipped profiles of the
/// arch use, for the reasons their comments measure. x86_64: `qemu64`, the baseline Debian
/// builds for, faster to boot under TCG than `max`, and without the Intel identity that turns
/// on page-table isolation. aarch64: `max` without pointer authentication, which Debian's
/// kernel would otherwise use on every function return, at a helper call each under TCG.
pub(super) fn default_cpu(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "qemu64",
        Arch::Aarch64 => "max,pauth=off",
    }
}
fn default_mem() -> u32 {
    1024
}
fn default_smp() -> u32 {
    2
}

/// `[ab]` table of a hardware profile: an A/B disk for over-the-air updates. The disk then holds
/// the ESP, two root slots (`root-a`, `root-b`, both of the arch's root type, mounted read-only),
/// and an optional `data` partition (ext4, mounted at `/data`) that survives updates.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AbLayout {
    /// Size of each root slot: room for this version's root filesystem and later ones.
    pub slot_size: ByteSize,
    /// Size of the data partition; 0 leaves it out (state then lives in tmpfs).
    #[serde(default)]
    pub data_size: ByteSize,
}

/// A hardware profile: the board or VM an image is built for.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Hardware {
    /// Hardware name.
    pub name: String,
    /// CPU architecture.
    pub arch: Arch,
    /// Debian kernel package (a metapackage is followed to the real image package).
    pub kernel_package: String,
    /// Kernel modules the initramfs must carry and load (dependencies added automatically).
    #[serde(default)]
    pub modules: Vec<String>,
    /// Kernel command line (Ingot adds `root=PARTUUID=…`); one line.
    #[serde(default, deserialize_with = "checked::one_line")]
    pub cmdline: String,
    /// Console device, e.g. `ttyS0` or `ttyAMA0`.
    #[serde(deserialize_with = "checked::console")]
    pub console: String,
    /// Firmware descriptor name (file in `firmware/`).
    pub firmware: String,
    /// Disk layout.
    pub disk: DiskLayout,
    /// A/B slots for OTA updates (absent: one root partition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ab: Option<AbLayout>,
    /// QEMU settings for boot tests.
    pub qemu: QemuSettings,
    /// Keep only the kernel modules the initramfs needs plus these module directories
    /// (relative to `kernel/`), to keep edge images small. Empty keeps everything.
    #[serde(default)]
    pub keep_module_dirs: Vec<String>,
    /// When true, prune kernel modules to `keep_module_dirs` plus the initramfs set.
    #[serde(default)]
    pub prune_modules: bool,
    /// Where the file was loaded from (never written out: it is the build host's path).
    #[serde(skip)]
    pub path: PathBuf,
}

/// The hardware's names and words, each checked where it is written: they reach file names
/// (`firmware/<firmware>.toml`), the image's labels and the updater's configuration (`name`),
/// the resolver (`kernel_package`), the module tree (`modules`, `keep_module_dirs`), the GPT
/// (partition names and types) and QEMU's options (`machine`, `cpu`). A value that could not
/// be what its key means is refused here, before a build fetches anything.
pub(super) fn check_words(path: &Path, hw: &Hardware) -> Result<(), ConfigError> {
    let word = checked::is_word;
    let bad = |key: &str, value: &str, what: &str| not_a(path, key, value, what);
    // An item of a list: at the line of its key.
    let bad_item = |key: &str, value: &str, what: &str| {
        rule_at(
            &[path],
            None,
            key,
            format!("{key}: `{}` is not {what}", value.escape_debug()),
        )
    };
    if !word(&hw.name, &[]) {
        return Err(bad(
            "name",
            &hw.name,
            "a plain name (letters, digits, `.`, `_`, `-`; at most 64), like qemu-x86_64",
        ));
    }
    if !word(&hw.firmware, &[]) {
        return Err(bad(
            "firmware",
            &hw.firmware,
            "the name of a file in firmware/ (letters, digits, `.`, `_`, `-`)",
        ));
    }
    let package = |s: &str| {
        s.len() >= 2
            && word(s, &['+'])
            && !s.contains('_')
            && s.chars().all(|c| !c.is_ascii_uppercase())
    };
    if !package(&hw.kernel_package) {
        return Err(bad(
            "kernel_package",
            &hw.kernel_package,
            "a Debian package name (like linux-image-cloud-amd64)",
        ));
    }
    for m in &hw.modules {
        if !word(m, &[]) {
            return Err(bad_item(
                "modules",
                m,
                "a kernel module name (like virtio_blk)",
            ));
        }
    }
    for d in &hw.keep_module_dirs {
        if !d.split('/').all(|c| word(c, &[]) && c != "..") {
            return Err(bad_item(
                "keep_module_dirs",
                d,
                "a directory under the kernel's module tree (like drivers/net)",
            ));
        }
    }
    for (key, v) in [("machine", &hw.qemu.machine), ("cpu", &hw.qemu.cpu)] {
        if !word(v, &[',', '=', '+']) {
            return Err(bad(
                key,
                v,
                "a QEMU model with its options (letters, digits and `._-,=+`)",
            ));
        }
    }
    let mut names = std::collections::BTreeSet::new();
    for p in &hw.disk.partitions {
        // The GPT holds 36 UTF-16 units of name; Ingot's own partitions' names are taken.
        let taken = ["esp", "root", "bios-boot"];
        if !word(&p.name, &[])
            || p.name.len() > 36
            || taken.contains(&p.name.as_str())
            || !names.insert(p.name.as_str())
        {
            return Err(bad("name", &p.name, "a free partition name (letters, digits, `.`, `_`, `-`; at most 36; not esp, root, bios-boot or one given before)"));
        }
        let known = ["root", "linux", "data", "home", "var", "swap"];
        if !known.contains(&p.kind.as_str()) && uuid::Uuid::parse_str(&p.kind).is_err() {
            return Err(bad(
                "type",
                &p.kind,
                "root, linux, data, home, var, swap or a partition type GUID",
            ));
        }
        if p.size.0 == 0 || p.size.0 > MAX_DISK {
            return Err(rule_at(
                &[path],
                Some(&format!("\"{}\"", p.name)),
                "size",
                format!(
                    "partition `{}`: size must be above 0 and at most {}",
                    p.name,
                    ByteSize(MAX_DISK)
                ),
            ));
        }
    }
    Ok(())
}

impl Hardware {
    /// The modules the initramfs loads (with what they need): the profile's `modules`, the
    /// root filesystem's driver (a module in Debian's generic kernels, built into the cloud
    /// ones) and, for an A/B disk, overlayfs for the writable /etc and /var.
    pub fn initramfs_modules(&self) -> Vec<String> {
        let mut m = self.modules.clone();
        m.push(self.disk.root_fs.clone());
        if self.ab.is_some() {
            m.push("overlay".into());
        }
        m
    }
}

/// The hardware profile a command uses when `--hardware` is not given.
pub const DEFAULT_HARDWARE: &str = "hardware/qemu-x86_64.toml";

/// Where the hardware file `hw` is read from for `profile`: as given, or, when `hw` is the
/// default and the working directory has no such file, the default beside the profile's
/// directory (`profiles/x.toml` → `hardware/qemu-x86_64.toml` next to `profiles/`), so a
/// command run from outside the checkout finds the checkout's default.
fn hardware_path(profile: &Path, hw: &Path) -> PathBuf {
    hardware_path_from(Path::new("."), profile, hw)
}

/// Load the hardware file `hw` names for `profile` (see [`hardware_path`]); a missing
/// default says where it was looked for.
pub fn load_hardware_for(profile: &Path, hw: &Path) -> Result<Hardware, ConfigError> {
    let path = hardware_path(profile, hw);
    match super::load_hardware(&path) {
        Err(ConfigError::Read { error, .. })
            if error.kind() == std::io::ErrorKind::NotFound && path == Path::new(DEFAULT_HARDWARE) =>
        {
            Err(super::rule(
                &path,
                "no such file in the working directory or beside the profile's directory (the default hardware profile); name one with --hardware FILE",
            ))
        }
        r => r,
    }
}

/// [`hardware_path`] with `cwd` as the working directory.
fn hardware_path_from(cwd: &Path, profile: &Path, hw: &Path) -> PathBuf {
    if hw != Path::new(DEFAULT_HARDWARE) || cwd.join(hw).exists() {
        return hw.to_path_buf();
    }
    let beside = profile
        .parent()
        .and_then(Path::parent)
        .map(|root| root.join(DEFAULT_HARDWARE));
    match beside {
        Some(b) if b.is_file() => b,
        _ => hw.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_hardware;

    #[test]
    fn a_hardware_profile_without_cpu_gets_the_model_its_arch_ships_with() {
        let d = tempfile::tempdir().unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        std::os::unix::fs::symlink(root.join("firmware"), d.path().join("firmware")).unwrap();
        std::fs::create_dir(d.path().join("hardware")).unwrap();
        for file in ["qemu-x86_64.toml", "qemu-aarch64.toml"] {
            let text = std::fs::read_to_string(root.join("hardware").join(file)).unwrap();
            let shipped = load_hardware(&root.join("hardware").join(file)).unwrap();
            let cpu_line = text
                .lines()
                .find(|l| l.starts_with("cpu = "))
                .unwrap_or_else(|| panic!("{file}: no cpu line"));
            let dir = d.path().join("hardware");
            let without = dir.join(file);
            std::fs::write(&without, text.replace(&format!("{cpu_line}\n"), "")).unwrap();
            let hw = load_hardware(&without).unwrap();
            assert_eq!(hw.qemu.cpu, shipped.qemu.cpu, "{file}");
            assert_eq!(hw.qemu.cpu, default_cpu(hw.arch), "{file}");
            // Said, but empty: refused at its line.
            let empty = dir.join(file);
            std::fs::write(&empty, text.replace(cpu_line, "cpu = \"\"")).unwrap();
            let line = text.lines().position(|l| l == cpu_line).unwrap() + 1;
            let e = load_hardware(&empty).unwrap_err().to_string();
            assert!(
                e.contains(&format!("{file}:{line}:")) && e.contains("cpu"),
                "{e}"
            );
        }
    }

    #[test]
    fn default_hardware_is_found_beside_the_profiles_directory() {
        let checkout = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(checkout.path().join("hardware")).unwrap();
        std::fs::write(checkout.path().join(DEFAULT_HARDWARE), "").unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let profile = checkout.path().join("profiles/p.toml");
        let default = Path::new(DEFAULT_HARDWARE);
        // Run from elsewhere: the checkout's default, beside the profile's directory.
        assert_eq!(
            hardware_path_from(elsewhere.path(), &profile, default),
            checkout.path().join(DEFAULT_HARDWARE)
        );
        // Run from inside the checkout: the working directory's.
        assert_eq!(
            hardware_path_from(checkout.path(), &profile, default),
            default
        );
        // A path the user gave is read as given.
        let given = Path::new("hardware/qemu-aarch64.toml");
        assert_eq!(hardware_path_from(elsewhere.path(), &profile, given), given);
        // No default beside the profile either: the path as given, so the error names it.
        let lone = elsewhere.path().join("p.toml");
        assert_eq!(
            hardware_path_from(elsewhere.path(), &lone, default),
            default
        );
    }
}
