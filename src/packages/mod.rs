//! Package source: verified repository client, resolver, lockfile, cache and unpacking.
//! From a profile's package list to a file tree, with no root, apt or dpkg on the host.

pub mod cache;
pub mod control;
pub mod deb;
pub mod http;
pub mod index;
pub mod repo;
pub mod resolve;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{Arch, Firmware, Hardware, Profile};
use crate::tree::{Entry, Tree};
use cache::Cache;
use index::{Index, PackageInfo};

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
        let explicit_mirror = mirror.is_some_and(|m| !m.is_empty())
            || std::env::var("INGOT_MIRROR").is_ok_and(|m| !m.is_empty());
        Ok(Source {
            explicit_mirror,
            mirror: repo::mirror_url(mirror, suite)?,
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
                return m.trim_end_matches('/').to_string();
            }
        }
        if !self.explicit_mirror {
            if let Ok(m) = repo::mirror_url(None, suite) {
                return m;
            }
        }
        format!("{}-security", self.mirror)
    }
}

/// Why a package is in the set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Installed in the root filesystem.
    Image,
    /// Used at build time only (initramfs busybox, boot loader binary).
    Boot,
}

/// A locked package.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Locked {
    /// Role in the build.
    pub role: Role,
    /// Package metadata.
    #[serde(flatten)]
    pub info: PackageInfo,
}

/// One architecture's package set in a lockfile.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LockTarget {
    /// Hardware profile name.
    pub hardware: String,
    /// Debian architecture.
    pub arch: String,
    /// Digest of every input that decides the package set.
    pub inputs_digest: String,
    /// Digests of the InRelease files the set was resolved from.
    #[serde(default)]
    pub releases: BTreeMap<String, String>,
    /// Packages, sorted by role then name.
    pub package: Vec<Locked>,
}

/// A lockfile: one target per hardware profile.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Lockfile {
    /// Format version.
    pub version: u32,
    /// Targets.
    pub target: Vec<LockTarget>,
}

impl Lockfile {
    /// Read a lockfile.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading lockfile {}", path.display()))?;
        toml::from_str(&text).map_err(|e| {
            let (l, c) = e
                .span()
                .map_or((1, 1), |s| crate::config::line_col(&text, s.start));
            anyhow::anyhow!("{}:{l}:{c}: {}", path.display(), e.message())
        })
    }

    /// Serialise deterministically.
    pub fn to_toml(&self) -> Result<String> {
        Ok(format!(
            "# Written by `ingot lock`; pins every package by version and SHA-256.\n{}",
            toml::to_string(self)?
        ))
    }

    /// The target for a hardware profile.
    pub fn target(&self, hw: &str) -> Option<&LockTarget> {
        self.target.iter().find(|t| t.hardware == hw)
    }
}

/// Where a profile's lockfile lives: `PROFILE.lock` beside `PROFILE.toml`.
pub fn lock_path(profile: &Path) -> PathBuf {
    profile.with_extension("lock")
}

/// Packages the image needs from the profile (and its agents).
pub fn image_request(profile: &Profile) -> resolve::Request {
    let mut include = profile.packages.include.clone();
    for a in &profile.agents {
        include.extend(a.packages.iter().cloned());
    }
    if profile.init == crate::config::InitSystem::Busybox
        && !include.iter().any(|p| p.starts_with("busybox"))
    {
        include.push("busybox-static".into());
    }
    include.dedup();
    resolve::Request {
        include,
        essential: profile.packages.essential,
        recommends: profile.packages.recommends,
        exclude: profile.packages.exclude.clone(),
    }
}

/// Digest of the inputs that decide a package set, so `--locked` notices a changed profile.
pub fn inputs_digest(profile: &Profile, hw: &Hardware) -> String {
    let req = image_request(profile);
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
    let (index, releases) = load_index(src, profile, hw.arch)?;
    let mut set: Vec<Locked> = resolve::resolve(&index, &image_request(profile))
        .with_context(|| format!("resolving {} for {}", profile.path.display(), hw.name))?
        .into_iter()
        .map(|info| Locked {
            role: Role::Image,
            info,
        })
        .collect();
    // The kernel is taken without its dependencies: its maintainer-script helpers
    // (initramfs-tools, linux-base) are replaced by Ingot's own initramfs.
    let mut kernel = vec![hw.kernel_package.clone()];
    let mut seen = 0;
    while seen < kernel.len() {
        let name = kernel[seen].clone();
        seen += 1;
        let p = index.best(&name).cloned().ok_or_else(|| {
            anyhow::anyhow!(
                "{}: kernel_package `{name}` is not in the index",
                hw.path.display()
            )
        })?;
        for clause in index::parse_deps(&p.depends).unwrap_or_default() {
            if let Some(d) = clause.iter().find(|d| d.name.starts_with("linux-image-")) {
                kernel.push(d.name.clone());
            }
        }
        if !set.iter().any(|l| l.info.name == p.name) {
            set.push(Locked {
                role: Role::Image,
                info: p,
            });
        }
    }
    for name in ["busybox-static", "systemd-boot-efi"] {
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
    let t = lock.target(&hw.name).with_context(|| {
        format!(
            "{}: no target for hardware `{}`; run `ingot lock {} --hardware {}`",
            path.display(),
            hw.name,
            profile.path.display(),
            hw.path.display()
        )
    })?;
    let want = inputs_digest(profile, hw);
    if t.inputs_digest != want {
        bail!(
            "{}: the profile or hardware changed since the lockfile was written (inputs digest {} != {}); run `ingot lock` again",
            path.display(),
            &t.inputs_digest[..12.min(t.inputs_digest.len())],
            &want[..12]
        );
    }
    Ok(t.clone())
}

/// A package fetched, verified and decompressed into the extraction cache.
#[derive(Debug, Clone)]
pub struct Ready {
    /// Lock entry.
    pub locked: Locked,
    /// Extraction metadata.
    pub extracted: deb::Extracted,
    /// Uncompressed data.tar in the cache.
    pub data_tar: PathBuf,
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:>10} [{bar:30}] {bytes}/{total_bytes} {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// Download (in parallel, verified) and decompress every package in the set.
pub fn fetch_all(src: &Source, set: &[Locked]) -> Result<Vec<Ready>> {
    let total: u64 = set.iter().map(|l| l.info.size).sum();
    let multi = MultiProgress::new();
    if !src.progress {
        multi.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let overall = multi.add(ProgressBar::new(total));
    overall.set_style(bar_style());
    overall.set_prefix("packages");
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<Ready>>>> =
        Mutex::new((0..set.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..src.jobs.min(set.len()).max(1) {
            let bar = multi.add(ProgressBar::new(0));
            bar.set_style(bar_style());
            bar.set_prefix("fetch");
            let (next, results, overall) = (&next, &results, &overall);
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(l) = set.get(i) else { break };
                bar.set_length(l.info.size);
                bar.set_position(0);
                bar.set_message(l.info.name.clone());
                let r = fetch_one(src, l, &|n| {
                    bar.inc(n);
                    overall.inc(n);
                });
                if let Ok(mut g) = results.lock() {
                    g[i] = Some(r);
                }
            });
        }
    });
    overall.finish_and_clear();
    let _ = multi.clear();
    results
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a download thread panicked"))?
        .into_iter()
        .map(|r| r.unwrap_or_else(|| bail!("package was not fetched")))
        .collect()
}

fn fetch_one(src: &Source, l: &Locked, progress: &dyn Fn(u64)) -> Result<Ready> {
    let info = &l.info;
    let url = format!("{}/{}", src.mirror_for(&info.suite), info.filename);
    let what = format!("package {} {}", info.name, info.version);
    let deb = src
        .cache
        .fetch_verified(&url, &info.sha256, info.size, &what, Some(progress))?;
    let (extracted, data_tar) = deb::extract(
        &deb,
        &src.cache.extract_path(&info.sha256, "tar"),
        &src.cache.extract_path(&info.sha256, "json"),
    )
    .with_context(|| format!("{what}: unpacking {}", deb.display()))?;
    Ok(Ready {
        locked: l.clone(),
        extracted,
        data_tar,
    })
}

/// Lay down the merged-usr skeleton: `/bin`, `/sbin`, `/lib` (and `/lib64` on x86_64) are
/// symlinks into `/usr`, so package files under them land in `/usr`.
pub fn merged_usr(tree: &mut Tree, arch: Arch) -> Result<()> {
    let mut dirs = vec!["bin", "sbin", "lib"];
    if arch == Arch::X86_64 {
        dirs.push("lib64");
    }
    for d in dirs {
        tree.insert(&format!("usr/{d}"), Entry::dir(0o755))?;
        tree.insert(d, Entry::symlink(&format!("usr/{d}")))?;
    }
    Ok(())
}

/// Unpack the image packages into a tree (sorted by name, so the result never depends on
/// download order) and record them in the dpkg database.
pub fn unpack_image(ready: &[Ready], arch: Arch) -> Result<Tree> {
    let mut tree = Tree::new();
    merged_usr(&mut tree, arch)?;
    let mut status = String::new();
    let mut lists: Vec<(String, String)> = Vec::new();
    for r in ready.iter().filter(|r| r.locked.role == Role::Image) {
        let name = &r.locked.info.name;
        let listed = deb::unpack(&r.data_tar, name, &mut tree)?;
        let mut control = r.extracted.control.trim_end().to_string();
        // dpkg's status file carries Status right after Package.
        if let Some(pos) = control.find('\n') {
            control.insert_str(pos + 1, "Status: install ok installed\n");
        }
        status.push_str(&control);
        status.push_str("\n\n");
        let multi_same = r
            .extracted
            .control
            .lines()
            .any(|l| l.trim() == "Multi-Arch: same");
        let list_name = if multi_same {
            format!("{name}:{}", r.locked.info.arch)
        } else {
            name.clone()
        };
        let mut text = String::from("/.\n");
        for p in listed {
            text.push_str(p.trim_end_matches('/'));
            text.push('\n');
        }
        lists.push((list_name, text));
    }
    tree.insert("var/lib/dpkg/status", Entry::file(status, 0o644))?;
    tree.insert("var/lib/dpkg/available", Entry::file("", 0o644))?;
    tree.insert(
        "var/lib/dpkg/arch",
        Entry::file(format!("{}\n", arch.debian()), 0o644),
    )?;
    for (n, text) in lists {
        tree.insert(
            &format!("var/lib/dpkg/info/{n}.list"),
            Entry::file(text, 0o644),
        )?;
    }
    Ok(tree)
}

/// Unpack one build-time package into its own tree (for the boot chain).
pub fn unpack_boot(ready: &[Ready], name: &str) -> Result<Tree> {
    let r = ready
        .iter()
        .find(|r| r.locked.info.name == name)
        .with_context(|| format!("build-time package `{name}` missing from the package set"))?;
    let mut tree = Tree::new();
    deb::unpack(&r.data_tar, name, &mut tree)?;
    Ok(tree)
}

/// Fetch a firmware descriptor's package and return the paths of its code and variable files
/// (cached under the extraction cache).
pub fn fetch_firmware(src: &Source, fw: &Firmware) -> Result<(PathBuf, PathBuf)> {
    let keys = repo::load_keyring(&src.keyring)?;
    let rel = repo::fetch_release(&src.cache, &src.mirror, &fw.suite, &src.keyring, &keys)?;
    let mut index = Index::default();
    let arch = fw.arch.debian();
    let text = repo::fetch_packages(&src.cache, &rel, "main", arch)?;
    index
        .add(&text, &fw.suite, arch)
        .map_err(|e| anyhow::anyhow!(e))?;
    index.finish();
    let info = index.best(&fw.package).cloned().with_context(|| {
        format!(
            "{}: firmware package `{}` is not in {}",
            fw.path.display(),
            fw.package,
            fw.suite
        )
    })?;
    let ready = fetch_one(
        src,
        &Locked {
            role: Role::Boot,
            info: info.clone(),
        },
        &|_| {},
    )?;
    let tree = unpack_boot(std::slice::from_ref(&ready), &fw.package)?;
    let dir = src.cache.root().join("firmware").join(&info.sha256);
    std::fs::create_dir_all(&dir)?;
    let mut out = Vec::new();
    for f in [&fw.code, &fw.vars] {
        let data = tree.read(f).with_context(|| {
            format!(
                "{}: `{f}` is not in package {}",
                fw.path.display(),
                fw.package
            )
        })?;
        let p = dir.join(Path::new(f).file_name().unwrap_or_default());
        if std::fs::metadata(&p).map(|m| m.len()).ok() != Some(data.len() as u64) {
            crate::base::fsx::write_atomic(&p, &data)?;
        }
        out.push(p);
    }
    let vars = out.pop().unwrap_or_default();
    let code = out.pop().unwrap_or_default();
    Ok((code, vars))
}

#[cfg(test)]
mod testrepo;

/// The repository client, resolver, cache and unpacker driven end to end against a signed
/// repository generated by the tests, then against tampered copies of it.
#[cfg(test)]
mod signed_repo_tests {
    use super::testrepo::{flip_byte, signing_key, TestRepo};
    use super::*;
    use tar::EntryType::*;

    fn sample() -> TestRepo {
        let mut r = TestRepo::new();
        r.add(
            "app",
            "1.0-1",
            "Depends: libfoo (>= 2.0) | libbar, mail-transport-agent\n",
            &[
                ("./usr/", Directory, b"", ""),
                ("./usr/bin/", Directory, b"", ""),
                ("./usr/bin/app", Regular, b"#!/bin/sh\necho app\n", ""),
            ],
        );
        r.add(
            "libfoo",
            "1.5-1",
            "",
            &[("./usr/lib/libfoo.so.1", Regular, b"old", "")],
        );
        r.add(
            "libfoo",
            "2.1-1",
            "",
            &[("./usr/lib/libfoo.so.2", Regular, b"new", "")],
        );
        r.add("libbar", "9", "", &[]);
        r.add(
            "tinymta",
            "1:0.9",
            "Provides: mail-transport-agent\n",
            &[("./usr/sbin/sendmail", Regular, b"mta", "")],
        );
        r.publish();
        r
    }

    fn resolve_names(r: &TestRepo, include: &[&str]) -> Result<Vec<String>> {
        let src = r.source();
        let (index, rel) = load_index(&src, &r.profile(&["app"]), Arch::X86_64)?;
        assert_eq!(rel.len(), 1);
        let req = resolve::Request {
            include: include.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        Ok(resolve::resolve(&index, &req)?
            .into_iter()
            .map(|p| format!("{}={}", p.name, p.version))
            .collect())
    }

    #[test]
    fn resolves_alternatives_provides_and_versions_from_a_signed_repo() {
        let r = sample();
        assert_eq!(
            resolve_names(&r, &["app"]).unwrap(),
            ["app=1.0-1", "libfoo=2.1-1", "tinymta=1:0.9"]
        );
        // A pin to an old version that breaks the dependency falls to the next alternative.
        assert_eq!(
            resolve_names(&r, &["libfoo=1.5-1", "app"]).unwrap(),
            ["app=1.0-1", "libbar=9", "libfoo=1.5-1", "tinymta=1:0.9"]
        );
        let e = resolve_names(&r, &["ap"]).unwrap_err().to_string();
        assert!(e.contains("`ap`") && e.contains("did you mean"), "{e}");
    }

    #[test]
    fn fetches_verifies_and_unpacks_with_owners_and_modes() {
        let r = sample();
        let src = r.source();
        let (index, _) = load_index(&src, &r.profile(&["app"]), Arch::X86_64).unwrap();
        let req = resolve::Request {
            include: vec!["app".into()],
            ..Default::default()
        };
        let set: Vec<Locked> = resolve::resolve(&index, &req)
            .unwrap()
            .into_iter()
            .map(|info| Locked {
                role: Role::Image,
                info,
            })
            .collect();
        let ready = fetch_all(&src, &set).unwrap();
        let tree = unpack_image(&ready, Arch::X86_64).unwrap();
        assert_eq!(tree.read("/usr/bin/app").unwrap(), b"#!/bin/sh\necho app\n");
        let e = tree.get("usr/bin/app").unwrap();
        assert_eq!((e.mode & 0o7777, e.uid, e.gid), (0o755, 0, 0));
        assert_eq!(tree.read("/usr/lib/libfoo.so.2").unwrap(), b"new");
        let status = String::from_utf8(tree.read("/var/lib/dpkg/status").unwrap()).unwrap();
        assert!(
            status.contains("Package: tinymta\nStatus: install ok installed\n"),
            "{status}"
        );
        let list = String::from_utf8(tree.read("/var/lib/dpkg/info/app.list").unwrap()).unwrap();
        assert!(list.contains("/usr/bin/app\n"), "{list}");
        // A second run is served from the cache, even with the pool gone.
        std::fs::remove_dir_all(r.path("pool")).unwrap();
        assert_eq!(fetch_all(&src, &set).unwrap().len(), 3);
        // And with the whole archive gone (air-gapped after `ingot fetch`): the cached
        // InRelease is verified again and the indexes come from the cache by digest.
        std::fs::remove_dir_all(r.path("dists")).unwrap();
        assert_eq!(
            resolve_names(&r, &["app"]).unwrap(),
            ["app=1.0-1", "libfoo=2.1-1", "tinymta=1:0.9"]
        );
        assert_eq!(fetch_all(&src, &set).unwrap().len(), 3);
    }

    #[test]
    fn tampered_packages_index_is_refused() {
        let r = sample();
        flip_byte(&r.path("dists/test/main/binary-amd64/Packages.gz"));
        let e = format!("{:#}", resolve_names(&r, &["app"]).unwrap_err());
        assert!(
            e.contains("Packages.gz") && e.contains("does not match") && e.contains("signed"),
            "{e}"
        );
    }

    #[test]
    fn bad_unsigned_and_expired_releases_are_refused() {
        let r = sample();
        r.publish_signed_by(&signing_key());
        let e = resolve_names(&r, &["app"]).unwrap_err();
        assert!(
            matches!(e.downcast_ref(), Some(repo::RepoError::BadSignature { .. })),
            "{e:#}"
        );
        // The signed text altered after signing.
        r.publish();
        let p = r.path("dists/test/InRelease");
        let t = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, t.replace("Origin: Ingot tests", "Origin: Ingot tesTs")).unwrap();
        let e = resolve_names(&r, &["app"]).unwrap_err();
        assert!(
            e.to_string().contains("does not verify against keyring"),
            "{e:#}"
        );
        // No signature at all.
        let start = t.find("Origin:").unwrap();
        let end = t.find("-----BEGIN PGP SIGNATURE").unwrap();
        std::fs::write(&p, &t[start..end]).unwrap();
        let e = resolve_names(&r, &["app"]).unwrap_err();
        assert!(
            e.to_string().contains("does not verify against keyring"),
            "{e:#}"
        );

        let mut r = sample();
        r.release_extra = "Valid-Until: Sun, 02 Jan 2000 00:00:00 UTC\n".into();
        r.publish();
        let e = resolve_names(&r, &["app"]).unwrap_err();
        assert!(
            matches!(e.downcast_ref(), Some(repo::RepoError::Expired { .. })),
            "{e:#}"
        );
    }

    fn fetch_and_unpack(r: &TestRepo, name: &str) -> Result<Tree> {
        let src = r.source();
        let (index, _) = load_index(&src, &r.profile(&[name]), Arch::X86_64)?;
        let set = vec![Locked {
            role: Role::Image,
            info: index.best(name).unwrap().clone(),
        }];
        unpack_image(&fetch_all(&src, &set)?, Arch::X86_64)
    }

    #[test]
    fn tampered_deb_is_refused_naming_package_and_url() {
        let r = sample();
        flip_byte(&r.path("pool/main/libbar_9_amd64.deb"));
        let e = format!("{:#}", fetch_and_unpack(&r, "libbar").unwrap_err());
        assert!(
            e.contains("package libbar 9")
                && e.contains("libbar_9_amd64.deb")
                && e.contains("does not match"),
            "{e}"
        );
        // Neither the bad bytes nor a temporary file are left in the cache.
        let bad = std::fs::read(r.path("pool/main/libbar_9_amd64.deb")).unwrap();
        for f in std::fs::read_dir(r.dir.path().join("cache/sha256")).unwrap() {
            let f = f.unwrap().path();
            assert!(
                std::fs::read(&f).unwrap() != bad,
                "{} holds the corrupt .deb",
                f.display()
            );
            assert!(
                !f.file_name().unwrap().to_string_lossy().contains(".tmp-"),
                "{} left behind",
                f.display()
            );
        }
    }

    #[test]
    fn hostile_packages_fail_naming_package_and_entry() {
        let mut r = TestRepo::new();
        r.add(
            "dotdot",
            "1",
            "",
            &[("./usr/../../etc/shadow", Regular, b"x", "")],
        );
        r.add(
            "escape",
            "1",
            "",
            &[
                ("./usr/share/", Directory, b"", ""),
                ("./usr/share/doc", Symlink, b"", "../../../../../tmp"),
                ("./usr/share/doc/owned", Regular, b"x", ""),
            ],
        );
        r.publish();
        let e = format!("{:#}", fetch_and_unpack(&r, "dotdot").unwrap_err());
        assert!(
            e.contains("package dotdot") && e.contains("../../etc/shadow"),
            "{e}"
        );
        let e = format!("{:#}", fetch_and_unpack(&r, "escape").unwrap_err());
        assert!(
            e.contains("package escape") && e.contains("points outside the image"),
            "{e}"
        );
        assert!(!Path::new("/tmp/owned").exists());
    }
}
