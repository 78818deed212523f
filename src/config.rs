//! Configuration model: image profiles (`profiles/`), hardware profiles (`hardware/`) and UEFI
//! firmware descriptors (`firmware/`). Every file is TOML with unknown keys rejected; every error
//! names the file, line, column and field, and suggests the closest valid key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

/// A configuration file that could not be read or is not valid.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("{path}: cannot read: {error}")]
    Read {
        /// File that failed.
        path: PathBuf,
        /// Underlying I/O error, part of this message (not a separate cause in the chain, so
        /// `{:#}` does not print it twice).
        error: std::io::Error,
    },
    /// The file is not valid for its kind, at a known position.
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        /// File that failed.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong and what was expected.
        message: String,
    },
    /// The file is valid TOML but its content breaks a rule that has no single position.
    #[error("{path}: {message}")]
    Rule {
        /// File that failed.
        path: PathBuf,
        /// What is wrong and what was expected.
        message: String,
    },
}

/// Size in bytes, written as an integer or a string such as `"64MiB"`, `"2GiB"`, `"512K"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
        if b >= 1 << 30 && b % (1 << 20) == 0 {
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

/// `[image]` table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImageMeta {
    /// Image name: lowercase letters, digits and dashes.
    pub name: String,
    /// Semantic version of this image.
    pub version: SemVer,
    /// One line saying what the image is for.
    #[serde(default)]
    pub description: String,
}

/// `[distribution]` table. The mirror is deliberately absent: it comes from the command line,
/// `INGOT_MIRROR` or the host's apt sources.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Distribution {
    /// Only `debian` for now.
    #[serde(default = "default_distro")]
    pub name: String,
    /// Main suite, e.g. `bookworm`.
    pub suite: String,
    /// Further suites on the same mirror layered on top (e.g. `bookworm-updates`).
    #[serde(default)]
    pub extra_suites: Vec<String>,
    /// Archive components.
    #[serde(default = "default_components")]
    pub components: Vec<String>,
}

fn default_distro() -> String {
    "debian".into()
}
fn default_components() -> Vec<String> {
    vec!["main".into()]
}

/// `[packages]` table.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Packages {
    /// Packages to install; dependencies are added by the resolver.
    #[serde(default)]
    pub include: Vec<String>,
    /// Also install every `Essential: yes` and `Priority: required` package.
    #[serde(default)]
    pub essential: bool,
    /// Follow `Recommends` as well as `Depends`.
    #[serde(default)]
    pub recommends: bool,
    /// Packages never to install even when something depends on them (documentation only in
    /// effect: a dependency that needs an excluded package fails resolution).
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// A user account created in the image.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Login name.
    pub name: String,
    /// Numeric id; chosen from 1000 upwards when absent.
    pub uid: Option<u32>,
    /// Supplementary groups (created when missing).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Login shell.
    #[serde(default = "default_shell")]
    pub shell: String,
    /// SSH public keys written to `~/.ssh/authorized_keys`.
    #[serde(default)]
    pub ssh_authorized_keys: Vec<String>,
    /// Full name (GECOS).
    #[serde(default)]
    pub comment: String,
}

fn default_shell() -> String {
    "/bin/sh".into()
}

/// A group created in the image.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// Group name.
    pub name: String,
    /// Numeric id; chosen from 1000 upwards when absent.
    pub gid: Option<u32>,
}

/// A file placed in the image by the profile.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// Absolute path inside the image.
    pub path: String,
    /// Literal content.
    pub content: Option<String>,
    /// Host file, relative to the profile, to copy.
    pub source: Option<String>,
    /// Mode (default 0644, or 0755 for `executable = true`).
    pub mode: Option<Mode>,
    /// Owner uid.
    #[serde(default)]
    pub uid: u32,
    /// Owner gid.
    #[serde(default)]
    pub gid: u32,
}

/// An agent: software that must run and report ready on every boot.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    /// Short name shown in the `INGOT-READY` line.
    pub name: String,
    /// Debian packages that carry the agent.
    #[serde(default)]
    pub packages: Vec<String>,
    /// Files that carry the agent.
    #[serde(default)]
    pub files: Vec<FileSpec>,
    /// systemd unit to enable (systemd images) or command to start in the background (busybox).
    pub service: Option<String>,
    /// Shell command that exits 0 once the agent is ready.
    pub probe: String,
    /// Seconds to wait for the probe.
    #[serde(default = "default_probe_timeout")]
    pub probe_timeout: u32,
}

fn default_probe_timeout() -> u32 {
    60
}

/// `[sysprep]` table.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Sysprep {
    /// Paths the secret scan must accept (exact image paths).
    #[serde(default)]
    pub allow_secrets: Vec<String>,
    /// Keep `/usr/share/doc`, man pages and locales (default: drop them, keeping copyright).
    #[serde(default)]
    pub keep_docs: bool,
}

/// `[kernel]` table: what the running system needs from the kernel's module tree.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KernelSettings {
    /// Modules (names or aliases) the running system needs. When set, the root filesystem keeps
    /// only these, their dependencies and the initramfs set, overriding the hardware profile's
    /// `keep_module_dirs`; busybox images load them at boot.
    pub modules: Option<Vec<String>>,
    /// Keep the kernel image and `System.map` in `/boot` of the root filesystem as well as on
    /// the ESP (default: the ESP copy only).
    #[serde(default)]
    pub keep_boot_files: bool,
}

/// `[network]` table: how the running system gets an address.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Configure every Ethernet interface by DHCP at boot (default true): busybox images run
    /// `udhcpc`, systemd images get a `systemd-networkd` rule.
    #[serde(default = "yes")]
    pub dhcp: bool,
}

fn yes() -> bool {
    true
}

impl Default for Network {
    fn default() -> Self {
        Network { dhcp: true }
    }
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

/// `[output]` table.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Output {
    /// Converted disk formats beside `disk.raw`.
    #[serde(default)]
    pub formats: Vec<Format>,
    /// Also write `disk.raw.zst`.
    #[serde(default)]
    pub zstd: bool,
    /// zstd level for `disk.raw.zst`, 1 to 19 (default 9: 19 saves about a tenth more and
    /// takes fifteen times as long).
    #[serde(default)]
    pub zstd_level: ZstdLevel,
    /// Largest allowed amount of data in the disk image.
    pub size_budget: Option<ByteSize>,
}

/// One profile file as written, every field optional so that `extends` can fill the gaps.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    extends: Option<String>,
    image: Option<ImageMeta>,
    distribution: Option<Distribution>,
    packages: Option<Packages>,
    init: Option<InitSystem>,
    #[serde(default)]
    users: Vec<User>,
    #[serde(default)]
    groups: Vec<Group>,
    #[serde(default)]
    files: Vec<FileSpec>,
    #[serde(default)]
    overlays: Vec<String>,
    #[serde(default)]
    services: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    agent: Vec<Agent>,
    kernel: Option<KernelSettings>,
    network: Option<Network>,
    sysprep: Option<Sysprep>,
    output: Option<Output>,
}

/// A complete image profile after `extends` has been applied.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    /// The file this profile was loaded from.
    pub path: PathBuf,
    /// Every file that contributed, child first.
    pub sources: Vec<PathBuf>,
    /// `[image]`.
    pub image: ImageMeta,
    /// `[distribution]`.
    pub distribution: Distribution,
    /// `[packages]`.
    pub packages: Packages,
    /// Init system.
    pub init: InitSystem,
    /// Users.
    pub users: Vec<User>,
    /// Groups.
    pub groups: Vec<Group>,
    /// Files, with `source` resolved to absolute host paths.
    pub files: Vec<FileSpec>,
    /// Overlay directories (absolute host paths) copied over the tree.
    pub overlays: Vec<PathBuf>,
    /// systemd units to enable.
    pub services: Vec<String>,
    /// Free-form labels.
    pub labels: BTreeMap<String, String>,
    /// Agents.
    pub agents: Vec<Agent>,
    /// `[kernel]`.
    pub kernel: KernelSettings,
    /// `[network]`.
    pub network: Network,
    /// `[sysprep]`.
    pub sysprep: Sysprep,
    /// `[output]`.
    pub output: Output,
}

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
    /// Kernel command line (Ingot adds `root=PARTUUID=…`).
    #[serde(default)]
    pub cmdline: String,
    /// Console device, e.g. `ttyS0` or `ttyAMA0`.
    pub console: String,
    /// Firmware descriptor name (file in `firmware/`).
    pub firmware: String,
    /// Disk layout.
    pub disk: DiskLayout,
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

/// A UEFI firmware descriptor.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Firmware {
    /// Descriptor name (`ovmf`, `aavmf`).
    pub name: String,
    /// Architecture it boots.
    pub arch: Arch,
    /// Debian package that ships it.
    pub package: String,
    /// Suite to take the package from.
    #[serde(default = "default_suite")]
    pub suite: String,
    /// Path of the code volume inside the package.
    pub code: String,
    /// Path of the variable-store template inside the package.
    pub vars: String,
    /// Where the file was loaded from (never written out: it is the build host's path).
    #[serde(skip)]
    pub path: PathBuf,
}

fn default_suite() -> String {
    "bookworm".into()
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.to_path_buf(),
        error,
    })
}

/// Line and column (1-based) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.chars().count(), |i| before[i + 1..].chars().count())
        + 1;
    (line, col)
}

fn parse_toml<T: for<'de> Deserialize<'de>>(path: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map_or((1, 1), |s| line_col(text, s.start));
        let mut message = e.message().trim().to_string();
        if let Some(hint) = unknown_key_hint(&message) {
            message.push_str(&hint);
        }
        ConfigError::Invalid {
            path: path.to_path_buf(),
            line,
            column,
            message,
        }
    })
}

/// For serde's "unknown field `x`, expected one of `a`, `b`" add "; did you mean `a`?".
fn unknown_key_hint(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (bad, rest) = rest.split_once('`')?;
    let candidates: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    let best = candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(bad, c), *c))
        .filter(|(score, _)| *score > 0.75)
        .max_by(|a, b| a.0.total_cmp(&b.0))?;
    Some(format!("; did you mean `{}`?", best.1))
}

fn rule(path: &Path, message: impl Into<String>) -> ConfigError {
    ConfigError::Rule {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Load an image profile, following `extends`.
pub fn load_profile(path: &Path) -> Result<Profile, ConfigError> {
    let mut chain: Vec<(PathBuf, ProfileFile)> = Vec::new();
    let mut next = Some(path.to_path_buf());
    while let Some(p) = next.take() {
        let canon = p.canonicalize().map_err(|error| ConfigError::Read {
            path: p.clone(),
            error,
        })?;
        if chain.iter().any(|(seen, _)| *seen == canon) {
            return Err(rule(
                path,
                format!(
                    "`extends` forms a cycle through {} (a profile cannot extend itself)",
                    canon.display()
                ),
            ));
        }
        let text = read(&p)?;
        let file: ProfileFile = parse_toml(&p, &text)?;
        if let Some(parent) = &file.extends {
            let base = canon.parent().unwrap_or(Path::new("."));
            next = Some(base.join(parent));
        }
        chain.push((canon, file));
    }
    merge_chain(path, chain)
}

fn merge_chain(path: &Path, chain: Vec<(PathBuf, ProfileFile)>) -> Result<Profile, ConfigError> {
    let sources: Vec<PathBuf> = chain.iter().map(|(p, _)| p.clone()).collect();
    let mut acc = ProfileFile::default();
    let mut files = Vec::new();
    let mut overlays = Vec::new();
    // Apply from the root ancestor down to the child; later files win.
    for (p, f) in chain.into_iter().rev() {
        let dir = p.parent().unwrap_or(Path::new(".")).to_path_buf();
        acc.image = f.image.or(acc.image);
        acc.distribution = f.distribution.or(acc.distribution);
        acc.packages = match (acc.packages.take(), f.packages) {
            (Some(mut a), Some(b)) => {
                a.include.extend(b.include);
                a.exclude.extend(b.exclude);
                a.essential = b.essential;
                a.recommends = b.recommends;
                Some(a)
            }
            (a, b) => b.or(a),
        };
        acc.init = f.init.or(acc.init);
        acc.users.extend(f.users);
        acc.groups.extend(f.groups);
        for mut spec in f.files {
            if let Some(src) = &spec.source {
                spec.source = Some(dir.join(src).to_string_lossy().into_owned());
            }
            files.push(spec);
        }
        overlays.extend(f.overlays.iter().map(|o| dir.join(o)));
        acc.services.extend(f.services);
        acc.labels.extend(f.labels);
        acc.agent.extend(f.agent);
        acc.kernel = f.kernel.or(acc.kernel);
        acc.network = f.network.or(acc.network);
        acc.sysprep = f.sysprep.or(acc.sysprep);
        acc.output = f.output.or(acc.output);
    }
    let image = acc
        .image
        .ok_or_else(|| rule(path, "missing table `[image]` (name, version)"))?;
    if image.name.is_empty()
        || !image
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(rule(
            path,
            format!(
                "image.name `{}` must be lowercase letters, digits and dashes",
                image.name
            ),
        ));
    }
    let distribution = acc.distribution.ok_or_else(|| {
        rule(
            path,
            "missing table `[distribution]` (suite = \"bookworm\"); the mirror is never set in a profile",
        )
    })?;
    if distribution.name != "debian" {
        return Err(rule(
            path,
            format!(
                "distribution.name `{}` is not supported (expected \"debian\")",
                distribution.name
            ),
        ));
    }
    let mut names = std::collections::BTreeSet::new();
    for a in &acc.agent {
        if !names.insert(a.name.clone()) {
            return Err(rule(path, format!("agent `{}` is declared twice", a.name)));
        }
        if a.name.is_empty() || a.name.contains([' ', ',', ':', '=']) {
            return Err(rule(
                path,
                format!(
                    "agent name `{}` may not be empty or contain spaces, `,`, `:` or `=`",
                    a.name
                ),
            ));
        }
    }
    for f in &files {
        if !f.path.starts_with('/') {
            return Err(rule(
                path,
                format!("file path `{}` must be absolute", f.path),
            ));
        }
        if f.content.is_some() == f.source.is_some() {
            return Err(rule(
                path,
                format!(
                    "file `{}` needs exactly one of `content` or `source`",
                    f.path
                ),
            ));
        }
    }
    Ok(Profile {
        path: path.to_path_buf(),
        sources,
        image,
        distribution,
        packages: acc.packages.unwrap_or_default(),
        init: acc.init.unwrap_or(InitSystem::Busybox),
        users: acc.users,
        groups: acc.groups,
        files,
        overlays,
        services: acc.services,
        labels: acc.labels,
        agents: acc.agent,
        kernel: acc.kernel.unwrap_or_default(),
        network: acc.network.unwrap_or_default(),
        sysprep: acc.sysprep.unwrap_or_default(),
        output: acc.output.unwrap_or_default(),
    })
}

/// Load a hardware profile.
pub fn load_hardware(path: &Path) -> Result<Hardware, ConfigError> {
    let text = read(path)?;
    let mut hw: Hardware = parse_toml(path, &text)?;
    hw.path = path.to_path_buf();
    if hw.disk.root_fs != "ext4" {
        return Err(rule(
            path,
            format!(
                "disk.root_fs `{}` is not supported (expected \"ext4\")",
                hw.disk.root_fs
            ),
        ));
    }
    if hw.disk.size != "auto" {
        ByteSize::parse(&hw.disk.size)
            .map_err(|e| rule(path, format!("disk.size: {e} (or \"auto\")")))?;
    }
    if hw.disk.esp_size.0 < 33 << 20 {
        return Err(rule(
            path,
            "disk.esp_size must be at least 33MiB (FAT32 minimum)",
        ));
    }
    Ok(hw)
}

/// Load a firmware descriptor.
pub fn load_firmware(path: &Path) -> Result<Firmware, ConfigError> {
    let text = read(path)?;
    let mut fw: Firmware = parse_toml(path, &text)?;
    fw.path = path.to_path_buf();
    Ok(fw)
}

/// Find the firmware descriptor a hardware profile names: `firmware/<name>.toml` beside the
/// hardware directory.
pub fn firmware_for(hw: &Hardware) -> Result<Firmware, ConfigError> {
    let root = hw
        .path
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    let path = root.join("firmware").join(format!("{}.toml", hw.firmware));
    let fw = load_firmware(&path)?;
    if fw.arch != hw.arch {
        return Err(rule(
            &hw.path,
            format!(
                "firmware `{}` boots {} but the hardware is {}",
                fw.name, fw.arch, hw.arch
            ),
        ));
    }
    Ok(fw)
}

/// What kind of configuration a file holds, judged by its directory or its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `profiles/`
    Profile,
    /// `hardware/`
    Hardware,
    /// `firmware/`
    Firmware,
}

/// Guess a file's kind from the directory it lives in, falling back to its keys.
pub fn kind_of(path: &Path) -> Kind {
    let dir = path
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("");
    match dir {
        "hardware" => Kind::Hardware,
        "firmware" => Kind::Firmware,
        "profiles" => Kind::Profile,
        _ => {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if text.contains("kernel_package") {
                Kind::Hardware
            } else if text.lines().any(|l| l.trim_start().starts_with("vars")) {
                Kind::Firmware
            } else {
                Kind::Profile
            }
        }
    }
}

/// Check one file of any kind.
pub fn validate(path: &Path) -> Result<Kind, ConfigError> {
    let kind = kind_of(path);
    match kind {
        Kind::Profile => {
            load_profile(path)?;
        }
        Kind::Hardware => {
            let hw = load_hardware(path)?;
            firmware_for(&hw)?;
        }
        Kind::Firmware => {
            load_firmware(path)?;
        }
    }
    Ok(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    const GOOD: &str =
        "[image]\nname = \"x\"\nversion = \"1.0.0\"\n[distribution]\nsuite = \"bookworm\"\n";

    #[test]
    fn semver_rules() {
        assert!(SemVer::parse("1.2.3").is_ok());
        assert!(SemVer::parse("1.2.3-rc.1+build.5").is_ok());
        assert!(SemVer::parse("1.2").is_err());
        assert!(SemVer::parse("01.2.3").is_err());
        assert!(SemVer::parse("1.2.3-").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(ByteSize::parse("64MiB").unwrap().0, 64 << 20);
        assert_eq!(ByteSize::parse("2G").unwrap().0, 2 << 30);
        assert!(ByteSize::parse("12 parsecs").is_err());
    }

    #[test]
    fn typo_names_line_column_and_suggests() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "p.toml",
            &format!("{GOOD}[packages]\nincldue = [\"busybox\"]\n"),
        );
        let e = load_profile(&p).unwrap_err().to_string();
        assert!(e.contains("p.toml:7:1"), "{e}");
        assert!(e.contains("incldue"), "{e}");
        assert!(e.contains("did you mean `include`"), "{e}");
    }

    #[test]
    fn bad_version_and_wrong_type() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "p.toml", &GOOD.replace("1.0.0", "1.0"));
        let e = load_profile(&p).unwrap_err().to_string();
        assert!(e.contains(":3:11") && e.contains("semantic version"), "{e}");
        let p = write(d.path(), "q.toml", &format!("init = 3\n{GOOD}"));
        let e = load_profile(&p).unwrap_err().to_string();
        assert!(e.contains("q.toml:1:8"), "{e}");
    }

    #[test]
    fn extends_merges_and_rejects_cycles() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "base.toml",
            &format!("{GOOD}[packages]\ninclude = [\"a\"]\n[labels]\nowner = \"x\"\n"),
        );
        let c = write(
            d.path(),
            "child.toml",
            "extends = \"base.toml\"\n[packages]\ninclude = [\"b\"]\n[labels]\nteam = \"y\"\n",
        );
        let p = load_profile(&c).unwrap();
        assert_eq!(p.packages.include, vec!["a", "b"]);
        assert_eq!(p.labels.len(), 2);
        assert_eq!(p.image.name, "x");
        let s = write(d.path(), "self.toml", "extends = \"self.toml\"\n");
        let e = load_profile(&s).unwrap_err().to_string();
        assert!(e.contains("cycle"), "{e}");
    }

    #[test]
    fn unsupported_arch_is_positioned() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "hw.toml",
            "name = \"x\"\narch = \"riscv64\"\nkernel_package = \"k\"\nconsole = \"ttyS0\"\nfirmware = \"ovmf\"\n[disk]\n[qemu]\nmachine = \"q35\"\n",
        );
        let e = load_hardware(&p).unwrap_err().to_string();
        assert!(e.contains("hw.toml:2:8") && e.contains("riscv64"), "{e}");
    }
}
