//! Image profiles (`profiles/*.toml`): the schema of every table, and how `extends` chains
//! are merged (a child file wins over its ancestors, key by key).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::checks::{check_file, host_source, overlay_dir, FileSpec};
use super::values::{checked, ByteSize, Format, InitSystem, SemVer, ZstdLevel};
use super::{rule, ConfigError};

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
    #[serde(default)]
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
    /// Login name (Debian adduser's rules).
    #[serde(deserialize_with = "checked::account_name")]
    pub name: String,
    /// Numeric id; chosen from 1000 upwards when absent.
    pub uid: Option<u32>,
    /// Supplementary groups (created when missing).
    #[serde(default, deserialize_with = "checked::account_names")]
    pub groups: Vec<String>,
    /// Login shell.
    #[serde(default = "default_shell", deserialize_with = "checked::passwd_field")]
    pub shell: String,
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

fn default_shell() -> String {
    "/bin/sh".into()
}

/// A group created in the image.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// Group name (Debian adduser's rules).
    #[serde(deserialize_with = "checked::account_name")]
    pub name: String,
    /// Numeric id; chosen from 1000 upwards when absent.
    pub gid: Option<u32>,
}

/// An agent: software that must run and report ready on every boot.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    /// Short name shown in the `INGOT-READY` line (letters, digits, `.`, `_`, `-`).
    #[serde(deserialize_with = "checked::agent_name")]
    pub name: String,
    /// Debian packages that carry the agent.
    #[serde(default)]
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
    ota: Option<Ota>,
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

pub(super) fn merge_chain(
    path: &Path,
    chain: Vec<(PathBuf, ProfileFile)>,
) -> Result<Profile, ConfigError> {
    let sources: Vec<PathBuf> = chain.iter().map(|(p, _)| p.clone()).collect();
    // Rules over the merged profile point at the file and line that set the value.
    let chain_files: Vec<&Path> = sources.iter().map(PathBuf::as_path).collect();
    let at = |after: Option<&str>, key: &str, message: String| {
        super::rule_at(&chain_files, after, key, message)
    };
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
                // A child that says nothing keeps its parent's choice.
                a.essential = b.essential.or(a.essential);
                a.recommends = b.recommends.or(a.recommends);
                a.byte_compile = b.byte_compile.or(a.byte_compile);
                Some(a)
            }
            (a, b) => b.or(a),
        };
        acc.init = f.init.or(acc.init);
        acc.users.extend(f.users);
        acc.groups.extend(f.groups);
        for mut spec in f.files {
            check_file(&p, &spec)?;
            if let Some(src) = spec.source.clone() {
                spec.source = Some(host_source(&p, &dir, &spec, &src)?);
            }
            files.push(spec);
        }
        let mut agents = f.agent;
        for a in &mut agents {
            for spec in &mut a.files {
                check_file(&p, spec)?;
                if let Some(src) = spec.source.clone() {
                    spec.source = Some(host_source(&p, &dir, spec, &src)?);
                }
            }
        }
        for o in &f.overlays {
            overlays.push(overlay_dir(&p, &dir, o)?);
        }
        acc.services.extend(f.services);
        acc.labels.extend(f.labels);
        acc.agent.extend(agents);
        acc.kernel = f.kernel.or(acc.kernel);
        acc.network = f.network.or(acc.network);
        acc.sysprep = f.sysprep.or(acc.sysprep);
        acc.output = f.output.or(acc.output);
        acc.ota = f.ota.or(acc.ota);
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
        return Err(at(
            Some("[image]"),
            "name",
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
        return Err(at(
            Some("[distribution]"),
            "name",
            format!(
                "distribution.name `{}` is not supported (expected \"debian\")",
                distribution.name
            ),
        ));
    }
    let suite_ok = |x: &str| {
        !x.is_empty()
            && x.len() <= 64
            && x.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    for sname in std::iter::once(&distribution.suite).chain(&distribution.extra_suites) {
        if !suite_ok(sname) {
            return Err(at(
                Some("[distribution]"),
                if *sname == distribution.suite {
                    "suite"
                } else {
                    "extra_suites"
                },
                format!(
                    "distribution suite `{}` must be lowercase letters, digits and dashes (like bookworm-security)",
                    sname.escape_debug()
                ),
            ));
        }
    }
    for c in &distribution.components {
        if !suite_ok(c) {
            return Err(at(
                Some("[distribution]"),
                "components",
                format!(
                    "distribution component `{}` is not a component name",
                    c.escape_debug()
                ),
            ));
        }
    }
    if image.name.len() > 64 {
        return Err(at(
            Some("[image]"),
            "name",
            "image.name is longer than 64 characters".into(),
        ));
    }
    for (k, v) in &acc.labels {
        if let Some(e) = checked::field_error(k, false).or_else(|| checked::field_error(v, false)) {
            return Err(at(
                Some("[labels]"),
                k,
                format!("label `{}`: {e}", k.escape_debug()),
            ));
        }
        let derived = DERIVED_LABELS.contains(&k.as_str())
            || k == "org.opencontainers.image.version" && *v != image.version.0;
        if derived {
            return Err(at(
                Some("[labels]"),
                k,
                format!(
                    "[labels] `{k}` = `{v}`: Ingot derives this label from the build (image version, SOURCE_DATE_EPOCH, builder); remove it from the profile"
                ),
            ));
        }
    }
    for u in &acc.users {
        let after = format!("\"{}\"", u.name);
        match u.uid {
            Some(0) if !u.allow_uid0 => {
                return Err(at(
                    Some(&after),
                    "uid",
                    format!(
                        "user `{}`: uid 0 would be a second root account; set allow_uid0 = true if that is meant",
                        u.name
                    ),
                ))
            }
            Some(id) => {
                if let Some(e) = checked::id_error(id) {
                    return Err(at(Some(&after), "uid", format!("user `{}`: uid {e}", u.name)));
                }
            }
            None => {}
        }
    }
    for g in &acc.groups {
        if let Some(e) = g.gid.and_then(checked::id_error) {
            let after = format!("\"{}\"", g.name);
            return Err(at(
                Some(&after),
                "gid",
                format!("group `{}`: gid {e}", g.name),
            ));
        }
    }
    if let Some(o) = &acc.ota {
        if !(1..=10).contains(&o.tries) || o.watchdog > 3600 {
            let key = if (1..=10).contains(&o.tries) {
                "watchdog"
            } else {
                "tries"
            };
            return Err(at(
                Some("[ota]"),
                key,
                format!(
                    "[ota] tries = {} must be 1 to 10 and watchdog = {} at most 3600 seconds",
                    o.tries, o.watchdog
                ),
            ));
        }
    }
    let mut names = std::collections::BTreeSet::new();
    for a in &acc.agent {
        if !names.insert(a.name.clone()) {
            return Err(super::rule_at_value(
                &chain_files,
                "name",
                &a.name,
                format!("agent `{}` is declared twice (first here)", a.name),
            ));
        }
        if a.name.is_empty() || a.name.contains([' ', ',', ':', '=']) {
            return Err(super::rule_at_value(
                &chain_files,
                "name",
                &a.name,
                format!(
                    "agent name `{}` may not be empty or contain spaces, `,`, `:` or `=`",
                    a.name
                ),
            ));
        }
    }
    if acc.init.unwrap_or(InitSystem::Busybox) == InitSystem::Busybox && !acc.services.is_empty() {
        return Err(at(
            None,
            "services",
            format!(
                "`services` ({}) names systemd units, but this image uses busybox init; start programs as agents' `service` instead",
                acc.services.join(", ")
            ),
        ));
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
        ota: acc.ota.unwrap_or_default(),
    })
}
