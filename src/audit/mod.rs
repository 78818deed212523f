//! Security freshness, answered from Debian itself: which packages of an image have a newer
//! version in the image's suites (the security suite always among them), and which CVE ids,
//! urgencies and upload dates the missed changelog entries name. Reads the image directory's
//! lockfile (or a lockfile) only; the archive's indexes are fetched fresh and verified, never
//! taken stale from the cache.

pub mod changelog;
pub mod cyclonedx;
pub mod diff;
pub mod gate;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::base::debversion;
use crate::image_dir::{ImageDir, Manifest, LOCKFILE};
use crate::packages::index::PackageInfo;
use crate::packages::{repo, LockTarget, Lockfile, Role, Source};

pub use gate::{FailOn, Gate};

/// The archive could not be asked: exit status 2, never "no findings".
#[derive(Debug, thiserror::Error)]
#[error("could not reach the archive at {url}: {cause}; nothing was audited (the audit needs the archive's current indexes, which no cache can stand in for)")]
pub struct Unreachable {
    /// What was asked for.
    pub url: String,
    /// Why it failed.
    pub cause: String,
}

/// The image an audit is about, when it is an image directory.
#[derive(Debug, Clone, Serialize)]
pub struct ImageInfo {
    /// `name-version-arch`.
    pub id: String,
    /// Image name.
    pub image: String,
    /// Image version.
    pub version: String,
    /// `SOURCE_DATE_EPOCH` of its build.
    pub source_date_epoch: i64,
}

/// What is audited: a package set and, for an image directory, the image.
#[derive(Debug, Clone)]
pub struct Subject {
    /// The image, when known.
    pub image: Option<ImageInfo>,
    /// Its packages and the suites they came from.
    pub lock: LockTarget,
    /// Where the set was read (for messages).
    pub origin: String,
}

impl Subject {
    /// Read an image directory (its manifest and `packages.lock`, whose digest the manifest
    /// records) or a lockfile (`--hardware` picks its target when it has several).
    pub fn open(path: &Path, hardware: Option<&str>) -> Result<Self> {
        if path.is_dir() {
            return Self::of(&ImageDir::open(path)?, hardware);
        }
        Ok(Subject {
            image: None,
            lock: pick(Lockfile::load(path)?, hardware, path)?,
            origin: path.display().to_string(),
        })
    }

    /// An image directory already open (verified or not): its manifest as read, and its
    /// lockfile checked against it.
    pub fn of(dir: &ImageDir, hardware: Option<&str>) -> Result<Self> {
        let lp = dir.file(LOCKFILE);
        let bytes = crate::base::fsx::read(&lp)?;
        Self::from_parts(&dir.manifest, &bytes, hardware, &lp)
    }

    /// An image from its manifest and its lockfile's bytes (checked against the manifest's
    /// `lockfile_sha256`); `origin` names where the lockfile was read.
    pub fn from_parts(
        m: &Manifest,
        lock: &[u8],
        hardware: Option<&str>,
        origin: &Path,
    ) -> Result<Self> {
        let got = hex::encode(Sha256::digest(lock));
        if got != m.lockfile_sha256 {
            anyhow::bail!(
                "{}: SHA-256 {got} does not match lockfile_sha256 {} in the manifest",
                origin.display(),
                m.lockfile_sha256
            );
        }
        let text = std::str::from_utf8(lock)
            .with_context(|| format!("{}: not UTF-8", origin.display()))?;
        let lockfile = Lockfile::parse(text, origin)?;
        let lock = pick(lockfile, hardware.or(Some(&m.hardware.name)), origin)?;
        Ok(Subject {
            image: Some(ImageInfo {
                id: m.id.clone(),
                image: m.image.clone(),
                version: m.version.clone(),
                source_date_epoch: m.source_date_epoch,
            }),
            lock,
            origin: m.id.clone(),
        })
    }

    /// The suite the set was built from: the one without a `-` most packages came from.
    pub fn main_suite(&self) -> String {
        let mut count: BTreeMap<&str, usize> = self
            .lock
            .releases
            .keys()
            .filter(|s| !s.contains('-'))
            .map(|s| (s.as_str(), 0))
            .collect();
        for l in &self.lock.package {
            if let Some(c) = count.get_mut(l.info.suite.as_str()) {
                *c += 1;
            }
        }
        count
            .into_iter()
            .max_by_key(|(s, c)| (*c, std::cmp::Reverse(*s)))
            .map(|(s, _)| s.to_string())
            .or_else(|| self.lock.package.first().map(|l| l.info.suite.clone()))
            .unwrap_or_default()
    }
}

fn pick(lock: Lockfile, hardware: Option<&str>, path: &Path) -> Result<LockTarget> {
    let names: Vec<String> = lock.target.iter().map(|t| t.hardware.clone()).collect();
    match hardware {
        Some(h) => lock
            .target
            .into_iter()
            .find(|t| t.hardware == h)
            .with_context(|| {
                format!(
                    "{}: no target for hardware `{h}` (it has {})",
                    path.display(),
                    names.join(", ")
                )
            }),
        None if lock.target.len() == 1 => Ok(lock
            .target
            .into_iter()
            .next()
            .unwrap_or_else(|| unreachable!("one target"))),
        None => Err(crate::base::BadInput(format!(
            "{}: {} targets ({}); name one with --hardware",
            path.display(),
            names.len(),
            names.join(", ")
        ))
        .into()),
    }
}

/// A suite the audit read.
#[derive(Debug, Clone, Serialize)]
pub struct SuiteRead {
    /// Suite name.
    pub suite: String,
    /// Base URL it was read from.
    pub mirror: String,
    /// Its Release `Date`.
    pub date: String,
    /// SHA-256 of the InRelease read.
    pub inrelease_sha256: String,
    /// The image's set was resolved from it (else the audit added it: the security suite).
    pub in_image: bool,
}

/// One package with a newer version available.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Binary package.
    pub package: String,
    /// Its architecture.
    pub arch: String,
    /// Installed version.
    pub installed: String,
    /// Newest version available to it.
    pub available: String,
    /// The suite offering it.
    pub suite: String,
    /// Source package.
    pub source: String,
    /// The installed and available source versions.
    pub installed_source: String,
    /// See `installed_source`.
    pub available_source: String,
    /// `image` or `boot` (initramfs, boot loader).
    pub role: Role,
    /// Offered by a security suite, or its missed changelog entries name a CVE.
    pub security: bool,
    /// The missed changelog entries, newest first.
    pub entries: Vec<changelog::Entry>,
    /// Every CVE id those entries name.
    pub cves: Vec<String>,
    /// Upload date of the oldest missed entry: since when a fix has been waiting.
    pub first_fix: Option<i64>,
    /// Where the changelog was read, or why it could not be.
    pub changelog: String,
    /// Package URL of the installed package (as in `sbom.cdx.json`).
    pub purl: String,
}

/// What an audit found.
#[derive(Debug, Clone, Serialize)]
pub struct Audit {
    /// What was audited.
    pub subject: String,
    /// The image, for an image directory.
    pub image: Option<ImageInfo>,
    /// Debian architecture.
    pub arch: String,
    /// Packages checked.
    pub packages: usize,
    /// Suites read.
    pub suites: Vec<SuiteRead>,
    /// Findings, by package name.
    pub findings: Vec<Finding>,
}

/// Source name and version of a package: `Source: name (version)`, `Source: name`, or none
/// (the binary's own name and version, less a binNMU suffix).
pub fn source_of(p: &PackageInfo) -> (String, String) {
    let name = if p.source.is_empty() {
        &p.name
    } else {
        &p.source
    };
    let ver = Some(p.source_version.clone())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| match p.version.rfind("+b") {
            Some(i)
                if p.version[i + 2..].chars().all(|c| c.is_ascii_digit())
                    && i + 2 < p.version.len() =>
            {
                p.version[..i].to_string()
            }
            _ => p.version.clone(),
        });
    (name.to_string(), ver)
}

/// One suite's verified index text.
struct SuiteIndex {
    read: SuiteRead,
    not_automatic: bool,
    texts: Vec<String>,
}

/// Fetch a suite's InRelease fresh (no cached copy stands in), verify it, and its indexes.
fn read_suite(
    src: &Source,
    keys: &[pgp::composed::SignedPublicKey],
    suite: &str,
    components: &[String],
    arch: &str,
    in_image: bool,
) -> Result<SuiteIndex> {
    let mirror = src.mirror_for(suite);
    let rel = repo::fetch_release_with(&src.cache, &mirror, suite, &src.keyring, keys, false)
        .map_err(|e| match e.downcast_ref::<repo::RepoError>() {
            Some(repo::RepoError::Unreachable { url, cause }) => Unreachable {
                url: url.clone(),
                cause: cause.clone(),
            }
            .into(),
            _ => e,
        })?;
    let mut texts = Vec::new();
    for comp in components {
        match repo::fetch_packages(&src.cache, &rel, comp, arch) {
            Ok(t) => texts.push(t),
            // A suite may lack a component the image uses (the security archive has no
            // non-free-firmware in older releases): nothing to offer from there.
            Err(e)
                if e.downcast_ref::<repo::RepoError>()
                    .is_some_and(|r| matches!(r, repo::RepoError::NoIndex { .. })) => {}
            Err(e) => return Err(e.context(format!("suite {suite}, component {comp}"))),
        }
    }
    Ok(SuiteIndex {
        read: SuiteRead {
            suite: suite.to_string(),
            mirror,
            date: rel.date.clone(),
            inrelease_sha256: rel.digest.clone(),
            in_image,
        },
        not_automatic: rel.not_automatic,
        texts,
    })
}

/// Paragraphs of `text` for the packages in `names`, without parsing the others.
fn stanzas_for(text: &str, names: &BTreeSet<&str>, suite: &str) -> Vec<PackageInfo> {
    let mut out = Vec::new();
    for para in text.split("\n\n") {
        let para = para.trim_start_matches('\n');
        let Some(first) = para.lines().find_map(|l| l.strip_prefix("Package:")) else {
            continue;
        };
        if !names.contains(first.trim()) {
            continue;
        }
        if let Some(p) = PackageInfo::from_stanza(para, suite) {
            out.push(p);
        }
    }
    out
}

/// Audit a package set against the archive `src` points at.
pub fn audit(src: &Source, subject: &Subject) -> Result<Audit> {
    let lock = &subject.lock;
    let keys = repo::load_keyring(&src.keyring)?;
    let main = subject.main_suite();
    let mut suites: Vec<(String, bool)> = lock.releases.keys().map(|s| (s.clone(), true)).collect();
    let security = format!("{main}-security");
    if !main.is_empty() && !suites.iter().any(|(s, _)| *s == security) {
        suites.push((security, false));
    }
    let components: Vec<String> = lock
        .package
        .iter()
        .filter_map(|l| l.info.filename.strip_prefix("pool/")?.split('/').next())
        .map(String::from)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let components = if components.is_empty() {
        vec!["main".to_string()]
    } else {
        components
    };
    let read = crate::base::parallel::map(&suites, suites.len(), |(s, in_image)| {
        read_suite(src, &keys, s, &components, &lock.arch, *in_image)
    })?;
    let names: BTreeSet<&str> = lock.package.iter().map(|l| l.info.name.as_str()).collect();
    // Every version of the image's packages the suites offer.
    let mut offered: BTreeMap<String, Vec<(PackageInfo, bool)>> = BTreeMap::new();
    for s in &read {
        for text in &s.texts {
            for p in stanzas_for(text, &names, &s.read.suite) {
                if p.arch == lock.arch || p.arch == "all" {
                    offered
                        .entry(p.name.clone())
                        .or_default()
                        .push((p, s.not_automatic));
                }
            }
        }
    }
    let mut findings = Vec::new();
    for l in &lock.package {
        let have = &l.info;
        // apt takes a newer version from a NotAutomatic suite (backports) only for a package
        // that came from there.
        let best = offered
            .get(&have.name)
            .into_iter()
            .flatten()
            .filter(|(p, na)| !*na || p.suite == have.suite)
            .filter(|(p, _)| debversion::compare(&p.version, &have.version).is_gt())
            .max_by(|a, b| debversion::compare(&a.0.version, &b.0.version));
        let Some((new, _)) = best else { continue };
        let (source, installed_source) = source_of(have);
        let (_, available_source) = source_of(new);
        findings.push((
            Finding {
                package: have.name.clone(),
                arch: have.arch.clone(),
                installed: have.version.clone(),
                available: new.version.clone(),
                suite: new.suite.clone(),
                source,
                installed_source,
                available_source,
                role: l.role,
                security: new.suite.ends_with("-security"),
                entries: Vec::new(),
                cves: Vec::new(),
                first_fix: None,
                changelog: String::new(),
                purl: crate::trust::purl(&have.name, &have.version, &have.arch, &main),
            },
            new.clone(),
        ));
    }
    attach_changelogs(src, &read, &mut findings)?;
    Ok(Audit {
        subject: subject.origin.clone(),
        image: subject.image.clone(),
        arch: lock.arch.clone(),
        packages: lock.package.len(),
        suites: read.into_iter().map(|s| s.read).collect(),
        findings: findings.into_iter().map(|(f, _)| f).collect(),
    })
}

/// Give each finding the changelog entries it misses, its CVE ids and its first fix.
fn attach_changelogs(
    src: &Source,
    read: &[SuiteIndex],
    findings: &mut [(Finding, PackageInfo)],
) -> Result<()> {
    let installed: Vec<PackageInfo> = findings
        .iter()
        .map(|(f, new)| PackageInfo {
            version: f.installed.clone(),
            source_version: f.installed_source.clone(),
            ..new.clone()
        })
        .collect();
    let pairs: Vec<(&PackageInfo, &PackageInfo)> = installed
        .iter()
        .zip(findings.iter().map(|(_, n)| n))
        .collect();
    let missed = missed_entries(src, &|name, like| find_in(read, name, like), &pairs)?;
    for ((f, _), (entries, note)) in findings.iter_mut().zip(missed) {
        f.changelog = note;
        f.cves = entries
            .iter()
            .flat_map(|e| e.cves.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        // Since when the fix has been waiting in the image's release: entries merged from
        // elsewhere (an unstable upload backported) count from their upload to this release.
        let release = f.suite.split('-').next().unwrap_or("").to_string();
        let ours = |e: &&changelog::Entry| e.distribution.split('-').next() == Some(&release);
        f.first_fix = if entries.iter().any(|e| ours(&e)) {
            entries.iter().filter(ours).filter_map(|e| e.epoch).min()
        } else {
            entries.iter().filter_map(|e| e.epoch).min()
        };
        f.security |= !f.cves.is_empty();
        f.entries = entries;
    }
    Ok(())
}

/// For each (installed, newer) pair, the newer package's changelog entries the installed one
/// lacks, and where the changelog was read. Each source's changelog is read once (from the
/// first binary of the group that carries it, the one named like the source first), through
/// the verified cache.
pub(crate) fn missed_entries(
    src: &Source,
    find: &(dyn Fn(&str, &PackageInfo) -> Option<PackageInfo> + Sync),
    pairs: &[(&PackageInfo, &PackageInfo)],
) -> Result<Vec<(Vec<changelog::Entry>, String)>> {
    let mut groups: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    for (i, (_, new)) in pairs.iter().enumerate() {
        let (name, ver) = source_of(new);
        groups.entry((name, ver)).or_default().push(i);
    }
    let groups: Vec<((String, String), Vec<usize>)> = groups.into_iter().collect();
    let texts = crate::base::parallel::map(&groups, src.jobs.max(1), |((source, _), idx)| {
        let mut order: Vec<&PackageInfo> = idx.iter().map(|&i| pairs[i].1).collect();
        order.sort_by_key(|p| p.name != *source);
        changelog_of(src, find, &order)
    })?;
    let mut out = vec![(Vec::new(), String::new()); pairs.len()];
    for ((_, idx), (text, note)) in groups.iter().zip(texts) {
        let entries = text.as_deref().map(changelog::parse).unwrap_or_default();
        for &i in idx {
            let (old, new) = pairs[i];
            let picked = changelog::between(&entries, &source_of(old).1, &source_of(new).1)
                .into_iter()
                .cloned()
                .collect();
            out[i] = (picked, note.clone());
        }
    }
    Ok(out)
}

/// The changelog text carried by the first of `pkgs` that has one, following a linked doc
/// directory to the package `find(target, linking package)` names; with a note saying where
/// it came from or why there is none.
pub(crate) fn changelog_of(
    src: &Source,
    find: &(dyn Fn(&str, &PackageInfo) -> Option<PackageInfo> + Sync),
    pkgs: &[&PackageInfo],
) -> Result<(Option<String>, String)> {
    let mut tried = Vec::new();
    let mut queue: Vec<PackageInfo> = pkgs.iter().map(|p| (*p).clone()).collect();
    let mut i = 0;
    while i < queue.len() && i < 8 {
        let p = queue[i].clone();
        i += 1;
        let deb = fetch_deb(src, &p)?;
        match changelog::of_deb(&src.cache, &deb, &p.name, &p.sha256)? {
            changelog::Found::Text { text } => {
                return Ok((Some(text), format!("{} {}", p.name, p.version)));
            }
            changelog::Found::Link { target } => {
                tried.push(format!("{} (doc links to {target})", p.name));
                if queue.iter().all(|q| q.name != target) {
                    if let Some(t) = find(&target, &p) {
                        queue.push(t);
                    }
                }
            }
            changelog::Found::None => tried.push(format!("{} (no changelog)", p.name)),
        }
    }
    Ok((None, format!("no changelog found: {}", tried.join(", "))))
}

/// The package `name` of the same source version as `like`, from `like`'s suite.
fn find_in(read: &[SuiteIndex], name: &str, like: &PackageInfo) -> Option<PackageInfo> {
    let (_, want) = source_of(like);
    let names = BTreeSet::from([name]);
    read.iter()
        .filter(|s| s.read.suite == like.suite)
        .flat_map(|s| s.texts.iter())
        .flat_map(|t| stanzas_for(t, &names, &like.suite))
        .find(|t| source_of(t).1 == want && (t.arch == like.arch || t.arch == "all"))
}

/// The verified .deb of `p`, from the cache or the suite's archive.
fn fetch_deb(src: &Source, p: &PackageInfo) -> Result<std::path::PathBuf> {
    let url = format!("{}/{}", src.mirror_for(&p.suite), p.filename);
    src.cache
        .fetch_verified(&url, &p.sha256, p.size, &p.name, None)
        .map_err(|e| {
            if format!("{e:#}").contains("does not match") {
                e
            } else {
                Unreachable {
                    url,
                    cause: format!("{e:#}"),
                }
                .into()
            }
        })
}

#[cfg(test)]
mod tests;
