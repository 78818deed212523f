//! Package source: verified repository client, resolver, lockfile, cache and unpacking.
//! From a profile's package list to a file tree, with no root, apt or dpkg on the host.

pub mod accounts;
pub mod alternatives;
pub mod cache;
pub mod control;
pub mod deb;
mod dpkgdb;
pub mod generated;
pub mod http;
pub mod index;
pub mod mirror;
pub mod nss;
pub mod repo;
pub mod resolve;
pub mod script;
pub mod statoverride;

mod fetch;
mod lock;
mod order;
mod unpack;

pub use fetch::{fetch_all, fetch_firmware, Ready};
pub use lock::{lock_path, LockTarget, Locked, Lockfile, Role};
pub use order::configure_order;
pub use unpack::{merged_usr, unpack_boot, unpack_image};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::config::{Arch, Hardware, Profile};
use cache::Cache;
use index::Index;

/// The build-time package that holds GRUB's BIOS (i386-pc) images and modules.
pub const GRUB_PC: &str = "grub-pc-bin";

/// Where packages come from and where they are kept.
#[derive(Debug, Clone)]
pub struct Source {
    /// Mirror base URL.
    pub mirror: String,
    /// Archive keyring.
    pub keyring: PathBuf,
    /// Download and extraction cache.
    pub cache: Cache,
    /// Parallel downloads / decompressions.
    pub jobs: usize,
    /// Show progress bars.
    pub progress: bool,
    /// The mirror was given explicitly (`--mirror` or `INGOT_MIRROR`), not read from apt.
    pub explicit_mirror: bool,
    /// Security suites' base URLs, worked out once (the lookup reads the apt sources).
    pub security_mirrors: std::sync::Arc<Mutex<BTreeMap<String, String>>>,
}

impl Source {
    /// Mirror from the option, `INGOT_MIRROR` or the host's apt sources; keyring from the option,
    /// `INGOT_KEYRING` or Debian's default; cache from the option, `INGOT_CACHE` or XDG.
    pub fn new(
        mirror: Option<&str>,
        suite: &str,
        keyring: Option<&Path>,
        cache: Option<&Path>,
        jobs: usize,
        progress: bool,
    ) -> Result<Self> {
        let keyring = keyring
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("INGOT_KEYRING").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(repo::DEFAULT_KEYRING));
        if let Ok(m) = std::env::var("INGOT_SECURITY_MIRROR") {
            if !m.is_empty() && !mirror::supported_mirror(m.trim_end_matches('/')) {
                return Err(crate::base::BadInput(format!(
                    "INGOT_SECURITY_MIRROR {}: not a mirror Ingot can fetch from (http://HOST/PATH, https://HOST/PATH or file:///ABSOLUTE/PATH)",
                    http::keep_credentials(&m)
                ))
                .into());
            }
        }
        let explicit_mirror = mirror.is_some_and(|m| !m.is_empty())
            || std::env::var("INGOT_MIRROR").is_ok_and(|m| !m.is_empty());
        Ok(Source {
            explicit_mirror,
            mirror: self::mirror::mirror_url(mirror, suite)?,
            keyring,
            cache: Cache::open(cache)?,
            jobs: jobs.max(1),
            progress,
            security_mirrors: Default::default(),
        })
    }
}

impl Source {
    /// Base URL serving `suite`. The security suite lives in its own archive: it comes from
    /// `INGOT_SECURITY_MIRROR`, else the host's apt sources (when the main mirror did too),
    /// else `<mirror>-security`, the usual layout of a Debian mirror.
    pub fn mirror_for(&self, suite: &str) -> String {
        if !suite.ends_with("-security") {
            return self.mirror.clone();
        }
        let Ok(mut known) = self.security_mirrors.lock() else {
            return self.security_mirror_uncached(suite);
        };
        known
            .entry(suite.to_string())
            .or_insert_with(|| self.security_mirror_uncached(suite))
            .clone()
    }

    fn security_mirror_uncached(&self, suite: &str) -> String {
        if let Ok(m) = std::env::var("INGOT_SECURITY_MIRROR") {
            if !m.is_empty() {
                return http::keep_credentials(m.trim_end_matches('/'));
            }
        }
        if !self.explicit_mirror {
            if let Ok(m) = mirror::mirror_url(None, suite) {
                return m;
            }
        }
        format!("{}-security", self.mirror)
    }
}

/// Packages the image needs from the profile (and its agents).
pub fn image_request(profile: &Profile, hw: &Hardware) -> resolve::Request {
    let mut include = profile.packages.include.clone();
    // An A/B image's updater checks bundle signatures with Debian's minisign, the ESP with
    // dosfstools' fsck.fat before it mounts it (a power cut leaves it marked dirty), and
    // applies delta bundles with zstd's --patch-from.
    if hw.ab.is_some() {
        for p in ["minisign", "dosfstools", "zstd"] {
            if !include.iter().any(|i| i == p) {
                include.push(p.into());
            }
        }
    }
    for a in &profile.agents {
        include.extend(a.packages.iter().cloned());
    }
    if profile.init == crate::config::InitSystem::Busybox
        && !include.iter().any(|p| p.starts_with("busybox"))
    {
        include.push("busybox-static".into());
    }
    include.dedup();
    // The kernel is resolved with the rest: its Provides, Conflicts and Breaks count, and its
    // dependencies are installed, except what Ingot's build does in its place.
    if !include.contains(&hw.kernel_package) {
        include.push(hw.kernel_package.clone());
    }
    resolve::Request {
        include,
        essential: profile.packages.essential(),
        recommends: profile.packages.recommends(),
        exclude: profile.packages.exclude.clone(),
        preinstalled: vec![generated::INITRAMFS.into()],
        left_out: Vec::new(),
    }
}

/// A failed resolution as an error of the profile's file when the profile itself asked for
/// the package it is about: at that item of `[packages] include` (or an agent's `packages`),
/// in the profile or the one it extends that lists it, so it reads as bad input (exit 2).
fn at_request(profile: &Profile, hw: &Hardware, e: resolve::ResolveError) -> anyhow::Error {
    let message = |field: &str| format!("{field}: {e} (resolving for {})", hw.name);
    let files = profile.files();
    let located = e.profile_request().and_then(|name| {
        let written = |item: &str| {
            item.strip_prefix(name)
                .is_some_and(|r| r.is_empty() || r.starts_with(['=', '/']))
        };
        crate::config::rule_at_item(&files, "include", written, message("packages.include"))
            .or_else(|| {
                crate::config::rule_at_item(&files, "packages", written, message("agent.packages"))
            })
    });
    match located {
        Some(c) => c.into(),
        None => anyhow::Error::new(e).context(format!(
            "resolving {} for {}",
            profile.path.display(),
            hw.name
        )),
    }
}

/// The suites a profile's packages come from, for a message.
fn suites_of(profile: &Profile) -> String {
    std::iter::once(&profile.distribution.suite)
        .chain(&profile.distribution.extra_suites)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The kernel's helpers for its maintainer scripts (`linux-base`: linux-update-symlinks;
/// `kmod`: depmod in the postinst), which Ingot runs none of: left out of an image that has no
/// dpkg to run them (nothing could ever configure the kernel there), installed in one that has.
fn kernel_helpers_left_out() -> resolve::LeftOut {
    resolve::LeftOut {
        owner_prefix: "linux-image-".into(),
        deps: vec!["linux-base".into(), "kmod".into()],
        why: "the kernel's maintainer-script helper; this image has no dpkg to run maintainer scripts, and Ingot indexes the modules itself".into(),
    }
}

/// Digest of the inputs that decide a package set, so `--locked` notices a changed profile.
pub fn inputs_digest(profile: &Profile, hw: &Hardware) -> String {
    let req = image_request(profile, hw);
    let v = serde_json::json!({
        "distribution": profile.distribution,
        "include": req.include,
        "essential": req.essential,
        "recommends": req.recommends,
        "exclude": req.exclude,
        "kernel": hw.kernel_package,
        "arch": hw.arch.debian(),
    });
    hex::encode(Sha256::digest(v.to_string().as_bytes()))
}

/// Load and merge the verified indexes of every suite.
pub fn load_index(
    src: &Source,
    profile: &Profile,
    arch: Arch,
) -> Result<(Index, Vec<repo::Release>)> {
    let keys = repo::load_keyring(&src.keyring)?;
    let mut index = Index::default();
    let mut releases = Vec::new();
    let suites = std::iter::once(&profile.distribution.suite)
        .chain(profile.distribution.extra_suites.iter());
    for suite in suites {
        let mirror = src.mirror_for(suite);
        let rel = repo::fetch_release(&src.cache, &mirror, suite, &src.keyring, &keys)?;
        if rel.not_automatic {
            index.not_automatic.insert(suite.clone());
        }
        for comp in &profile.distribution.components {
            let text = repo::fetch_packages(&src.cache, &rel, comp, arch.debian())
                .with_context(|| format!("suite {suite}, component {comp}"))?;
            index
                .add(&text, suite, arch.debian())
                .map_err(|e| anyhow::anyhow!("{mirror}/dists/{suite}: Packages: {e}"))?;
        }
        releases.push(rel);
    }
    index.finish();
    Ok((index, releases))
}

/// Resolve the full package set for one hardware target.
pub fn resolve_target(src: &Source, profile: &Profile, hw: &Hardware) -> Result<LockTarget> {
    let (mut index, releases) = load_index(src, profile, hw.arch)?;
    index.add_finished(generated::initramfs());
    if index.best(&hw.kernel_package).is_none() {
        return Err(crate::config::rule_at(
            &[hw.path.as_path()],
            None,
            "kernel_package",
            format!(
                "kernel_package: `{}` is not in the index of {}",
                hw.kernel_package,
                suites_of(profile)
            ),
        )
        .into());
    }
    let mut req = image_request(profile, hw);
    let resolve = |req: &resolve::Request| {
        resolve::resolve_noting(&index, req).map_err(|e| at_request(profile, hw, e))
    };
    // First as for an image without dpkg; if dpkg is in the set after all, the kernel's
    // helpers are installed too.
    req.left_out.push(kernel_helpers_left_out());
    let mut resolution = resolve(&req)?;
    if resolution.packages.iter().any(|p| p.name == "dpkg") {
        req.left_out.clear();
        resolution = resolve(&req)?;
    }
    let mut set: Vec<Locked> = resolution
        .packages
        .into_iter()
        .map(|info| Locked {
            role: if generated::is_generated(&info) {
                Role::Generated
            } else {
                Role::Image
            },
            info,
        })
        .collect();
    let mut build_time = vec!["busybox-static", "systemd-boot-efi"];
    if hw.disk.bios {
        // GRUB's i386-pc boot code and modules, assembled into the disk, never installed.
        build_time.push(GRUB_PC);
    }
    for name in build_time {
        let p = index
            .best(name)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("build-time package `{name}` is not in the index"))?;
        set.push(Locked {
            role: Role::Boot,
            info: p,
        });
    }
    set.sort_by(|a, b| (a.role, &a.info.name).cmp(&(b.role, &b.info.name)));
    Ok(LockTarget {
        hardware: hw.name.clone(),
        arch: hw.arch.debian().to_string(),
        inputs_digest: inputs_digest(profile, hw),
        releases: releases
            .iter()
            .map(|r| (r.suite.clone(), r.digest.clone()))
            .collect(),
        release_dates: releases
            .iter()
            .filter(|r| !r.date.is_empty())
            .map(|r| (r.suite.clone(), r.date.clone()))
            .collect(),
        skipped: resolution.skipped,
        package: set,
    })
}

/// The package set for a build: from the lockfile when `locked`, else freshly resolved.
pub fn package_set(
    src: &Source,
    profile: &Profile,
    hw: &Hardware,
    locked: bool,
) -> Result<LockTarget> {
    if !locked {
        return resolve_target(src, profile, hw);
    }
    let path = lock_path(&profile.path);
    let lock = Lockfile::load(&path)?;
    // A lock that does not fit the build is bad input (exit 2): the user's lockfile is stale
    // or edited, and nothing was fetched from it yet.
    let bad = |m: String| anyhow::Error::from(crate::base::BadInput(m));
    let t = lock.target(&hw.name).ok_or_else(|| {
        bad(format!(
            "{}: no target for hardware `{}`; run `ingot lock {} --hardware {}`",
            path.display(),
            hw.name,
            profile.path.display(),
            hw.path.display()
        ))
    })?;
    let want = inputs_digest(profile, hw);
    if t.inputs_digest != want {
        return Err(bad(format!(
            "{}: the profile or hardware changed since the lockfile was written (inputs digest {} != {}); run `ingot lock` again",
            path.display(),
            &t.inputs_digest[..12.min(t.inputs_digest.len())],
            &want[..12]
        )));
    }
    // What the .deb itself cannot vouch for (its control file checks name, version and
    // architecture once fetched): the suite it came from, which the SBOM and provenance
    // record, must be one the profile names; and its file a plain path in the pool.
    let d = &profile.distribution;
    for l in t.package.iter().filter(|l| l.role != Role::Generated) {
        let i = &l.info;
        if i.suite != d.suite && !d.extra_suites.contains(&i.suite) {
            return Err(bad(format!(
                "{}: package {} {}: the lock says suite `{}`, which the profile does not name (it names {}); an edited lockfile?",
                path.display(),
                i.name,
                i.version,
                i.suite,
                std::iter::once(&d.suite)
                    .chain(&d.extra_suites)
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let plain = i.filename.starts_with("pool/")
            && i.filename.ends_with(".deb")
            && i.filename
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\\'));
        if !plain {
            return Err(bad(format!(
                "{}: package {} {}: filename `{}` is not a .deb path under pool/; an edited lockfile?",
                path.display(),
                i.name,
                i.version,
                i.filename
            )));
        }
    }
    Ok(t.clone())
}

/// Test tooling: a signed repository generated on the spot (used by tests only).
#[doc(hidden)]
pub mod testrepo;

/// The repository client, resolver, cache and unpacker driven end to end against a signed
/// repository generated by the tests, then against tampered copies of it.
#[cfg(test)]
mod signed_repo_tests;
