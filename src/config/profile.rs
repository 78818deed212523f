//! Image profiles (`profiles/*.toml`): the schema of every table (merged by `merge.rs`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::checks::FileSpec;
use super::values::{checked, ByteSize, Format, InitSystem, SemVer, ZstdLevel};

/// `[image]` table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImageMeta {
    /// Image name: lowercase letters, digits and dashes.
    pub name: String,
    /// Semantic version of this image.
    pub version: SemVer,
    /// One line saying what the image is for (it goes into the manifest, the OVF descriptor
    /// and reports).
    #[serde(default, deserialize_with = "checked::one_line")]
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
    #[serde(default, deserialize_with = "checked::package_specs")]
    pub include: Vec<String>,
    /// Also install every `Essential: yes` and `Priority: required` package (unset: as the
    /// profile it extends says, else no).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub essential: Option<bool>,
    /// Follow `Recommends` as well as `Depends` (unset: as the profile it extends says, else
    /// no).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommends: Option<bool>,
    /// Packages never to install even when something depends on them (documentation only in
    /// effect: a dependency that needs an excluded package fails resolution).
    #[serde(default, deserialize_with = "checked::package_names")]
    pub exclude: Vec<String>,
    /// Compile the image's Python modules to byte code at build time, as the packages'
    /// postinst (py3compile) would (unset: as the profile it extends says, else yes). Needs the
    /// image's Python version on the build host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub byte_compile: Option<bool>,
}

impl Packages {
    /// Whether Python modules are byte-compiled.
    pub fn byte_compile(&self) -> bool {
        self.byte_compile.unwrap_or(true)
    }

    /// Whether the Essential/required set is installed.
    pub fn essential(&self) -> bool {
        self.essential.unwrap_or(false)
    }

    /// Whether Recommends are followed.
    pub fn recommends(&self) -> bool {
        self.recommends.unwrap_or(false)
    }
}

/// A user account created in the image.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Login name (Debian adduser's rules; a leading `_` only for a system account).
    #[serde(deserialize_with = "checked::account_name")]
    pub name: String,
    /// Numeric id; chosen from 1000 upwards when absent (from 999 down for a system account).
    pub uid: Option<u32>,
    /// A system account, as `adduser --system` makes one (what packages' maintainer scripts
    /// do, which Ingot does not run): a uid below 1000, no home, a locked password, and
    /// `/usr/sbin/nologin` unless a shell is given. A uid below 1000 means the same.
    #[serde(default)]
    pub system: bool,
    /// Supplementary groups (created when missing).
    #[serde(default, deserialize_with = "checked::account_names")]
    pub groups: Vec<String>,
    /// Login shell: `/bin/sh` unless given, `/usr/sbin/nologin` for a system account.
    #[serde(default, deserialize_with = "checked::passwd_field_opt")]
    pub shell: Option<String>,
    /// SSH public keys written to `~/.ssh/authorized_keys`, one line each.
    #[serde(default, deserialize_with = "checked::one_line_each")]
    pub ssh_authorized_keys: Vec<String>,
    /// Full name (GECOS).
    #[serde(default, deserialize_with = "checked::passwd_field")]
    pub comment: String,
    /// Allow uid 0 for this user (a second root account); refused otherwise.
    #[serde(default)]
    pub allow_uid0: bool,
}

impl User {
    /// A system account: `system = true`, or a uid below 1000 given.
    pub fn is_system(&self) -> bool {
        self.system || self.uid.is_some_and(|id| id < 1000)
    }

    /// The login shell written to passwd.
    pub fn login_shell(&self) -> &str {
        match &self.shell {
            Some(s) => s,
            None if self.is_system() => "/usr/sbin/nologin",
            None => "/bin/sh",
        }
    }
}

/// A group created in the image.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// Group name (Debian adduser's rules; a leading `_` only for a system group).
    #[serde(deserialize_with = "checked::account_name")]
    pub name: String,
    /// Numeric id; chosen from 1000 upwards when absent (from 999 down for a system group).
    pub gid: Option<u32>,
    /// A system group (`addgroup --system`): a gid below 1000. A gid below 1000 means the same.
    #[serde(default)]
    pub system: bool,
}

/// An agent: software that must run and report ready on every boot.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    /// Short name shown in the `INGOT-READY` line (letters, digits, `.`, `_`, `-`).
    #[serde(deserialize_with = "checked::agent_name")]
    pub name: String,
    /// Debian packages that carry the agent.
    #[serde(default, deserialize_with = "checked::package_specs")]
    pub packages: Vec<String>,
    /// Files that carry the agent.
    #[serde(default)]
    pub files: Vec<FileSpec>,
    /// systemd unit to enable (systemd images) or command to start in the background (busybox).
    #[serde(default, deserialize_with = "checked::one_line_opt")]
    pub service: Option<String>,
    /// Shell command that exits 0 once the agent is ready (one line).
    #[serde(deserialize_with = "checked::one_line")]
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
    /// Arguments appended to the kernel command line after the hardware profile's (`quiet`,
    /// `init=/sbin/my-init`, …). Ingot writes `root=`, `ro`/`rw` and `ingot.*` itself.
    #[serde(default, deserialize_with = "checked::kernel_args")]
    pub cmdline: String,
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

/// `[ota]` table: how an image on an A/B disk (hardware `[ab]`) takes updates. Ignored on a
/// single-root disk.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Ota {
    /// Boot attempts a new version gets before the device falls back (systemd-boot's counter).
    #[serde(default = "default_tries")]
    pub tries: u32,
    /// Hardware watchdog (softdog) timeout in seconds: a hung boot resets after this; 0 turns
    /// the watchdog off. Generous by default: an emulated device can be several times slower.
    #[serde(default = "default_watchdog")]
    pub watchdog: u32,
    /// The oldest version this image's update bundle may be installed over.
    #[serde(default = "default_min_version")]
    pub min_version: SemVer,
}

fn default_tries() -> u32 {
    3
}
fn default_watchdog() -> u32 {
    120
}
fn default_min_version() -> SemVer {
    SemVer("0.0.0".into())
}

impl Default for Ota {
    fn default() -> Self {
        Ota {
            tries: default_tries(),
            watchdog: default_watchdog(),
            min_version: default_min_version(),
        }
    }
}

/// Labels Ingot writes from the build itself; a profile may not set them (the version only to
/// the image's own version). Everything else in `[labels]`, `dev.ingot.owner` and
/// `dev.ingot.support` included, is the profile's.
pub const DERIVED_LABELS: &[&str] = &[
    "org.opencontainers.image.created",
    "dev.ingot.image.id",
    "dev.ingot.builder.version",
    "dev.ingot.profile.digest",
    "dev.ingot.hardware",
    "dev.ingot.arch",
];

/// One profile file as written, every field optional so that `extends` can fill the gaps.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProfileFile {
    pub(super) extends: Option<String>,
    pub(super) image: Option<ImageMeta>,
    pub(super) distribution: Option<Distribution>,
    pub(super) packages: Option<Packages>,
    pub(super) init: Option<InitSystem>,
    #[serde(default)]
    pub(super) users: Vec<User>,
    #[serde(default)]
    pub(super) groups: Vec<Group>,
    #[serde(default)]
    pub(super) files: Vec<FileSpec>,
    #[serde(default)]
    pub(super) overlays: Vec<String>,
    #[serde(default, deserialize_with = "checked::unit_names")]
    pub(super) services: Vec<String>,
    #[serde(default)]
    pub(super) labels: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) agent: Vec<Agent>,
    pub(super) kernel: Option<KernelSettings>,
    pub(super) network: Option<Network>,
    pub(super) sysprep: Option<Sysprep>,
    pub(super) output: Option<Output>,
    pub(super) ota: Option<Ota>,
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
    /// `[ota]`.
    pub ota: Ota,
}

impl Profile {
    /// The files that may hold a value of this profile: its own, as the user named it, then
    /// those it extends, nearest first.
    pub fn files(&self) -> Vec<&std::path::Path> {
        std::iter::once(self.path.as_path())
            .chain(self.sources.iter().skip(1).map(PathBuf::as_path))
            .collect()
    }
}
