//! Hardware profiles (`hardware/*.toml`): the board or VM an image is built for: arch, kernel,
//! initramfs modules, command line, console, disk layout, firmware and QEMU settings.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::values::{checked, Arch, ByteSize};

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
    /// `-cpu` value.
    #[serde(default = "default_cpu")]
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

fn default_cpu() -> String {
    "max".into()
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
