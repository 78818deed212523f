//! Value types of the configuration files: sizes, versions, modes, architectures (with every
//! per-arch fact), init systems, output formats and compression levels. Each checks itself when
//! it is read, so a bad value is reported with its file, line and column.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Size in bytes, written as an integer or a string such as `"64MiB"`, `"2GiB"`, `"512K"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parse `"64MiB"`, `"1G"`, `"4096"`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("`{s}` is not a size (expected for example \"64MiB\")"))?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "K" | "KiB" | "k" => 1 << 10,
            "M" | "MiB" => 1 << 20,
            "G" | "GiB" => 1 << 30,
            "T" | "TiB" => 1 << 40,
            other => {
                return Err(format!(
                    "unknown size unit `{other}` in `{s}` (expected B, KiB, MiB, GiB or TiB)"
                ))
            }
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("size `{s}` is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(ByteSize(n)),
            Raw::S(s) => ByteSize::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b >= 1 << 30 && b.is_multiple_of(1 << 20) {
            write!(f, "{:.2} GiB", b as f64 / (1u64 << 30) as f64)
        } else if b >= 1 << 20 {
            write!(f, "{:.1} MiB", b as f64 / (1u64 << 20) as f64)
        } else if b >= 1 << 10 {
            write!(f, "{:.1} KiB", b as f64 / 1024.0)
        } else {
            write!(f, "{b} bytes")
        }
    }
}

/// A semantic version `MAJOR.MINOR.PATCH[-PRE][+BUILD]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SemVer(pub String);

impl SemVer {
    /// Check the semver 2.0 grammar (numeric identifiers without leading zeros).
    pub fn parse(s: &str) -> Result<Self, String> {
        let err = || {
            format!("`{s}` is not a semantic version (expected MAJOR.MINOR.PATCH, for example \"1.4.0\")")
        };
        let (core, _build) = match s.split_once('+') {
            Some((c, b)) if !b.is_empty() && b.split('.').all(ident_ok) => (c, Some(b)),
            Some(_) => return Err(err()),
            None => (s, None),
        };
        let core = match core.split_once('-') {
            Some((c, p)) if !p.is_empty() && p.split('.').all(ident_ok) => c,
            Some(_) => return Err(err()),
            None => core,
        };
        if s.len() > 64 {
            return Err(format!(
                "version `{}…` is {} characters long; at most 64 (it names directories and files)",
                &s[..s.char_indices().nth(16).map_or(s.len(), |(i, _)| i)],
                s.len()
            ));
        }
        let nums: Vec<&str> = core.split('.').collect();
        if nums.len() != 3 || !nums.iter().all(|n| numeric_ok(n)) {
            return Err(err());
        }
        Ok(SemVer(s.to_string()))
    }
}

fn numeric_ok(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && (n == "0" || !n.starts_with('0'))
}
fn ident_ok(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl<'de> Deserialize<'de> for SemVer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SemVer::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for SemVer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// File mode written as an octal string (`"0644"`) or an integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Mode(pub u32);

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u32),
            S(String),
        }
        let m = match Raw::deserialize(d)? {
            Raw::N(n) => n,
            Raw::S(s) => u32::from_str_radix(s.trim_start_matches("0o"), 8).map_err(|_| {
                serde::de::Error::custom(format!("`{s}` is not an octal mode such as \"0644\""))
            })?,
        };
        if m > 0o7777 {
            return Err(serde::de::Error::custom(format!(
                "mode {m:o} has bits beyond 07777"
            )));
        }
        Ok(Mode(m))
    }
}

/// CPU architecture of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// 64-bit x86 (Debian `amd64`).
    X86_64,
    /// 64-bit Arm (Debian `arm64`).
    Aarch64,
}

impl Arch {
    /// Debian architecture name.
    pub fn debian(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }
    /// Name used in file names and QEMU binaries.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }
    /// Suffix of UEFI removable-media boot files (`BOOTX64.EFI`).
    pub fn efi_suffix(self) -> &'static str {
        match self {
            Arch::X86_64 => "x64",
            Arch::Aarch64 => "aa64",
        }
    }
    /// The removable-media boot loader path UEFI looks for on the ESP.
    pub fn removable_loader(self) -> String {
        format!("EFI/BOOT/BOOT{}.EFI", self.efi_suffix().to_uppercase())
    }
    /// Discoverable Partitions Specification root partition type GUID.
    pub fn root_partition_type(self) -> &'static str {
        match self {
            Arch::X86_64 => "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
            Arch::Aarch64 => "B921B045-1DF0-41C3-AF44-4C6F280D3FAE",
        }
    }
    /// The QEMU system emulator binary.
    pub fn qemu_binary(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86_64",
            Arch::Aarch64 => "qemu-system-aarch64",
        }
    }
    /// The Debian package that ships [`Arch::qemu_binary`].
    pub fn qemu_package(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86",
            Arch::Aarch64 => "qemu-system-arm",
        }
    }
    /// Whether this is the build host's own architecture (KVM is possible only then).
    pub fn is_host(self) -> bool {
        match self {
            Arch::X86_64 => cfg!(target_arch = "x86_64"),
            Arch::Aarch64 => cfg!(target_arch = "aarch64"),
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which init system the image runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InitSystem {
    /// busybox `init` with an inittab and rc scripts written by Ingot.
    Busybox,
    /// systemd from the image's packages.
    Systemd,
}

/// Disk artifact formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// QEMU copy-on-write.
    Qcow2,
    /// VMware.
    Vmdk,
    /// Hyper-V.
    Vhdx,
    /// Azure: a fixed VHD (`disk.vhd`).
    Vhd,
    /// Google Compute Engine: `disk.raw` in a gzip'd GNU tar (`disk.tar.gz`).
    Gce,
    /// VirtualBox and VMware: OVF 2.0, a stream-optimized VMDK and a SHA-256 manifest
    /// (`disk.ova`).
    Ova,
}

impl Format {
    /// The artifact's file name in the image directory.
    pub fn file_name(self) -> &'static str {
        match self {
            Format::Qcow2 => "disk.qcow2",
            Format::Vmdk => "disk.vmdk",
            Format::Vhdx => "disk.vhdx",
            Format::Vhd => "disk.vhd",
            Format::Gce => "disk.tar.gz",
            Format::Ova => "disk.ova",
        }
    }
}

/// A zstd compression level, checked when the profile is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct ZstdLevel(pub i32);

impl Default for ZstdLevel {
    fn default() -> Self {
        ZstdLevel(9)
    }
}

impl TryFrom<i64> for ZstdLevel {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, String> {
        match v {
            1..=19 => Ok(ZstdLevel(v as i32)),
            _ => Err(format!("zstd_level {v} is out of range (expected 1 to 19)")),
        }
    }
}

impl From<ZstdLevel> for i64 {
    fn from(l: ZstdLevel) -> i64 {
        l.0.into()
    }
}

pub mod checked;
