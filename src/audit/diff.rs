//! `ingot diff OLD NEW`: what changed between two image directories, read from their
//! manifests and lockfiles: packages added, removed, upgraded (with the CVE ids fixed on the
//! way, from the new package's changelog) and downgraded; labels; kernel; partitions; agents;
//! sizes.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use serde::Serialize;

use super::{changelog, Subject};
use crate::config::DERIVED_LABELS;
use crate::image_dir::ImageDir;
use crate::packages::index::PackageInfo;
use crate::packages::Source;

/// A package on one side only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Package {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
}

/// A package on both sides with different versions.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// Name.
    pub name: String,
    /// Old version.
    pub old: String,
    /// New version.
    pub new: String,
    /// CVE ids the new package's changelog names between the two (upgrades only).
    pub cves: Vec<String>,
    /// Changelog entries between the two, newest first (upgrades only).
    pub entries: Vec<changelog::Entry>,
    /// Where the changelog came from, or why it could not be read.
    pub changelog: String,
}

/// A value present on either side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pair<T> {
    /// Old value (absent: added).
    pub old: Option<T>,
    /// New value (absent: removed).
    pub new: Option<T>,
}

/// Everything that differs.
#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    /// `name-version-arch` of each side.
    pub old: String,
    /// See `old`.
    pub new: String,
    /// Packages only in NEW.
    pub added: Vec<Package>,
    /// Packages only in OLD.
    pub removed: Vec<Package>,
    /// Packages with a higher version in NEW.
    pub upgraded: Vec<Change>,
    /// Packages with a lower version in NEW.
    pub downgraded: Vec<Change>,
    /// The profile's labels that differ, by key.
    pub labels: BTreeMap<String, Pair<String>>,
    /// Labels Ingot derives from the build (version, date, digests) that differ.
    pub derived_labels: BTreeMap<String, Pair<String>>,
    /// The kernel packages (`linux-image-*`), when they differ.
    pub kernel: Option<Pair<String>>,
    /// Partitions whose presence, type or size differ, by GPT name.
    pub partitions: BTreeMap<String, Pair<String>>,
    /// Agents added, removed or changed, by name.
    pub agents: BTreeMap<String, Pair<String>>,
    /// Disk bytes.
    pub disk_size: Pair<u64>,
    /// Root filesystem file bytes (every origin).
    pub root_bytes: Pair<u64>,
    /// Bytes of every artifact the manifests list.
    pub artifact_bytes: Pair<u64>,
}

impl Diff {
    /// Nothing differs but the derived labels (and sizes that follow from nothing).
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.upgraded.is_empty()
            && self.downgraded.is_empty()
            && self.labels.is_empty()
            && self.kernel.is_none()
            && self.partitions.is_empty()
            && self.agents.is_empty()
    }
}

fn changed<T: PartialEq + Clone>(
    old: &BTreeMap<String, T>,
    new: &BTreeMap<String, T>,
) -> BTreeMap<String, Pair<T>> {
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    keys.into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| {
            (
                k.clone(),
                Pair {
                    old: old.get(k).cloned(),
                    new: new.get(k).cloned(),
                },
            )
        })
        .collect()
}

/// Compare two image directories. With `src`, upgrades get the CVE ids from the new
/// packages' changelogs (fetched through the verified cache); without it, or when the archive
/// cannot be reached, each upgrade says why it has none.
pub fn diff(old: &ImageDir, new: &ImageDir, src: Option<&Source>) -> Result<Diff> {
    let so = Subject::of(old, None)?;
    let sn = Subject::of(new, None)?;
    let pk = |s: &Subject| -> BTreeMap<String, PackageInfo> {
        s.lock
            .package
            .iter()
            .map(|l| (l.info.name.clone(), l.info.clone()))
            .collect()
    };
    let (po, pn) = (pk(&so), pk(&sn));
    let mut d = Diff {
        old: old.manifest.id.clone(),
        new: new.manifest.id.clone(),
        added: Vec::new(),
        removed: Vec::new(),
        upgraded: Vec::new(),
        downgraded: Vec::new(),
        labels: BTreeMap::new(),
        derived_labels: BTreeMap::new(),
        kernel: None,
        partitions: BTreeMap::new(),
        agents: BTreeMap::new(),
        disk_size: Pair {
            old: Some(old.manifest.disk.size),
            new: Some(new.manifest.disk.size),
        },
        root_bytes: Pair {
            old: Some(old.manifest.contents.values().map(|c| c.bytes).sum()),
            new: Some(new.manifest.contents.values().map(|c| c.bytes).sum()),
        },
        artifact_bytes: Pair {
            old: Some(old.manifest.artifacts.values().map(|a| a.size).sum()),
            new: Some(new.manifest.artifacts.values().map(|a| a.size).sum()),
        },
    };
    let mut ups: Vec<(&PackageInfo, &PackageInfo)> = Vec::new();
    for (name, n) in &pn {
        match po.get(name) {
            None => d.added.push(Package {
                name: name.clone(),
                version: n.version.clone(),
            }),
            Some(o) => match crate::base::debversion::compare(&n.version, &o.version) {
                std::cmp::Ordering::Greater => ups.push((o, n)),
                std::cmp::Ordering::Less => d.downgraded.push(Change {
                    name: name.clone(),
                    old: o.version.clone(),
                    new: n.version.clone(),
                    cves: Vec::new(),
                    entries: Vec::new(),
                    changelog: String::new(),
                }),
                std::cmp::Ordering::Equal => {}
            },
        }
    }
    for (name, o) in &po {
        if !pn.contains_key(name) {
            d.removed.push(Package {
                name: name.clone(),
                version: o.version.clone(),
            });
        }
    }
    let missed = match src {
        Some(src) if !ups.is_empty() => {
            let find = |name: &str, like: &PackageInfo| {
                pn.get(name)
                    .filter(|p| super::source_of(p).1 == super::source_of(like).1)
                    .cloned()
            };
            super::missed_entries(src, &find, &ups).unwrap_or_else(|e| {
                vec![(Vec::new(), format!("changelog not read: {e:#}")); ups.len()]
            })
        }
        _ => vec![(Vec::new(), "changelog not read (no archive given)".into()); ups.len()],
    };
    for ((o, n), (entries, note)) in ups.iter().zip(missed) {
        d.upgraded.push(Change {
            name: n.name.clone(),
            old: o.version.clone(),
            new: n.version.clone(),
            cves: entries
                .iter()
                .flat_map(|e| e.cves.iter().cloned())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            entries,
            changelog: note,
        });
    }
    let (user, derived): (BTreeMap<_, _>, BTreeMap<_, _>) =
        changed(&old.manifest.labels, &new.manifest.labels)
            .into_iter()
            .partition(|(k, _)| !derived_label(k));
    d.labels = user;
    d.derived_labels = derived;
    let kernel = |m: &BTreeMap<String, PackageInfo>| {
        m.values()
            .filter(|p| p.name.starts_with("linux-image-"))
            .map(|p| format!("{} {}", p.name, p.version))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (ko, kn) = (kernel(&po), kernel(&pn));
    if ko != kn {
        d.kernel = Some(Pair {
            old: Some(ko).filter(|k| !k.is_empty()),
            new: Some(kn).filter(|k| !k.is_empty()),
        });
    }
    let parts = |i: &ImageDir| -> BTreeMap<String, String> {
        i.manifest
            .disk
            .partitions
            .iter()
            .map(|p| {
                (
                    p.name.clone(),
                    format!("{} bytes, type {}", p.size, p.type_guid),
                )
            })
            .collect()
    };
    d.partitions = changed(&parts(old), &parts(new));
    let agents = |i: &ImageDir| -> BTreeMap<String, String> {
        i.manifest
            .agents
            .iter()
            .map(|a| {
                (
                    a.name.clone(),
                    format!("packages [{}], probe `{}`", a.packages.join(", "), a.probe),
                )
            })
            .collect()
    };
    d.agents = changed(&agents(old), &agents(new));
    Ok(d)
}

/// A label Ingot writes from the build (it changes with every build or version).
fn derived_label(k: &str) -> bool {
    DERIVED_LABELS.contains(&k)
        || k == "org.opencontainers.image.version"
        || k == "org.opencontainers.image.title"
}
