//! Stage: the evidence. The lockfile, both SBOMs, the in-toto provenance in a DSSE envelope
//! (signed when a key is given), and the manifest with every artifact's digest, then its
//! signature. Each artifact is hashed once.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;

use super::image::DiskImage;
use super::system::System;
use super::Options;
use crate::base::fsx::{self, sha256_file};
use crate::base::identity::Identity;
use crate::config::{self, Hardware, Profile};
use crate::disk;
use crate::image_dir::{self, Manifest};
use crate::packages::{LockTarget, Lockfile, Ready, Source};
use crate::progress::Stages;
use crate::sysprep;
use crate::tree::Tree;
use crate::trust;

/// What the inputs were, for the provenance.
pub struct Inputs<'a> {
    /// The profile.
    pub profile: &'a Profile,
    /// Its files' digest (the `extends` chain).
    pub profile_digest: &'a str,
    /// The hardware profile.
    pub hw: &'a Hardware,
    /// Its file's digest.
    pub hw_digest: &'a str,
    /// The package source.
    pub src: &'a Source,
    /// The resolved (or locked) package set.
    pub set: &'a LockTarget,
    /// The fetched packages.
    pub ready: &'a [Ready],
    /// Build options.
    pub opts: &'a Options,
}

/// Run the stage, writing into `work`.
#[allow(clippy::too_many_arguments)]
pub fn attest(
    work: &Path,
    inputs: &Inputs<'_>,
    sys: &System,
    img: &DiskImage,
    id: &Identity,
    labels: &BTreeMap<String, String>,
    stages: &mut Stages,
) -> Result<Manifest> {
    let Inputs {
        profile,
        profile_digest,
        hw,
        hw_digest,
        src,
        set,
        ready,
        opts,
    } = *inputs;
    let (ident, epoch, tree) = (id.id(), id.epoch, &sys.tree);
    let (raw, layout) = (&img.raw, &img.layout);
    // Lockfile, SBOMs, provenance, manifest, signature.
    stages.next(&format!("[{ident}] SBOMs, provenance, manifest"))?;
    let lock = Lockfile {
        version: Lockfile::VERSION,
        target: vec![set.clone()],
    };
    fsx::write(&work.join(image_dir::LOCKFILE), lock.to_toml()?)?;
    let suite = &profile.distribution.suite;
    let added = trust::added_files(tree);
    let (name, version) = (id.name.as_str(), id.version.as_str());
    for (file, doc) in [
        (
            image_dir::SBOM_SPDX,
            trust::spdx(name, version, suite, epoch, ready, &added),
        ),
        (
            image_dir::SBOM_CDX,
            trust::cyclonedx(name, version, suite, epoch, ready, &added),
        ),
    ] {
        fsx::write(&work.join(file), serde_json::to_string_pretty(&doc)? + "\n")?;
    }
    let key = opts.key.as_deref();
    // Each artifact is hashed once: the provenance subjects and the manifest share the digests,
    // and disk.raw is read a single time for its own digest and its partitions'.
    let (raw_digest, part_digests) = disk::sha256_with_partitions(raw, layout)?;
    let mut digests: BTreeMap<String, (String, u64)> = BTreeMap::new();
    digests.insert("disk.raw".into(), raw_digest);
    for name in artifact_names(work)? {
        if let std::collections::btree_map::Entry::Vacant(slot) = digests.entry(name) {
            let d = sha256_file(&work.join(slot.key()))?;
            slot.insert(d);
        }
    }
    let lock_digest = digests
        .get("packages.lock")
        .map(|(h, _)| h.clone())
        .context("packages.lock was not written")?;
    let outputs: Vec<(String, String)> = digests
        .iter()
        .map(|(n, (h, _))| (n.clone(), h.clone()))
        .collect();
    let statement = trust::provenance_statement(
        &outputs,
        json!({
            "profile": {"path": profile.path.display().to_string(), "sha256": profile_digest},
            "hardware": {"path": hw.path.display().to_string(), "sha256": hw_digest},
            "locked": opts.locked, "sourceDateEpoch": epoch,
        }),
        set.releases.iter().map(|(s, d)| {
            let mut r = json!({"uri": format!("{}/dists/{s}/InRelease", src.mirror_for(s)), "digest": {"sha256": d}});
            // When the archive was published: an old date under a valid signature is a replay.
            if let Some(date) = set.release_dates.get(s) {
                r["annotations"] = json!({"date": date});
            }
            r
        })
            .chain(std::iter::once(json!({"name": "packages.lock", "digest": {"sha256": lock_digest}})))
            .collect(),
        epoch,
    );
    fsx::write(
        &work.join(image_dir::PROVENANCE),
        trust::canonical(&trust::dsse(&statement, key)) + "\n",
    )?;
    let manifest = manifest_json(
        work,
        &mut digests,
        profile,
        hw,
        id,
        labels,
        layout,
        &part_digests,
        tree,
    )?;
    let text = manifest.to_canonical()?;
    fsx::write(&work.join(image_dir::MANIFEST), &text)?;
    if let Some(k) = &key {
        fsx::write(
            &work.join(image_dir::SIGNATURE),
            k.sign_bytes(text.as_bytes(), &manifest.trusted_comment()),
        )?;
    }
    Ok(manifest)
}

fn artifact_names(dir: &Path) -> Result<Vec<String>> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| image_dir::is_artifact(n))
        .collect();
    v.sort();
    Ok(v)
}

/// Bytes of file content in the final image by where they came from: the package name, or
/// Ingot's own origin tags (`ingot:profile`, …), or `ingot` for files with none: what the
/// image really carries after sysprep and pruning, for `ingot inspect`.
fn contents_by_origin(tree: &Tree) -> BTreeMap<String, image_dir::Contribution> {
    let mut by: BTreeMap<String, image_dir::Contribution> = BTreeMap::new();
    for (_, e) in tree.iter() {
        if let crate::tree::Kind::File(c) = &e.kind {
            let key = if e.origin.is_empty() {
                "ingot".to_string()
            } else {
                e.origin.to_string()
            };
            let slot = by.entry(key).or_default();
            slot.bytes += c.len();
            slot.files += 1;
        }
    }
    by
}

#[allow(clippy::too_many_arguments)]
fn manifest_json(
    work: &Path,
    digests: &mut BTreeMap<String, (String, u64)>,
    profile: &Profile,
    hw: &Hardware,
    id: &Identity,
    labels: &BTreeMap<String, String>,
    layout: &disk::Layout,
    part_digests: &[String],
    tree: &Tree,
) -> Result<Manifest> {
    let mut artifacts = BTreeMap::new();
    for name in artifact_names(work)? {
        if !digests.contains_key(&name) {
            let d = sha256_file(&work.join(&name))
                .with_context(|| format!("hashing {}", work.join(&name).display()))?;
            digests.insert(name.clone(), d);
        }
        let (sha256, size) = digests[&name].clone();
        artifacts.insert(name, image_dir::Artifact { sha256, size });
    }
    let partitions = layout
        .partitions
        .iter()
        .zip(part_digests)
        .map(|(p, sha)| image_dir::PartitionRecord {
            name: p.name.clone(),
            type_guid: p.type_guid.clone(),
            guid: p.guid.clone(),
            offset: p.offset,
            size: p.size,
            sha256: sha.clone(),
        })
        .collect();
    Ok(Manifest {
        image: id.name.clone(),
        version: id.version.clone(),
        arch: id.arch.clone(),
        id: id.id(),
        description: profile.image.description.clone(),
        hardware: image_dir::HardwareRef {
            name: hw.name.clone(),
            file: hw
                .path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned()),
        },
        boot: image_dir::BootSpec {
            hardware: hw.clone(),
            firmware: config::firmware_for(hw)?,
        },
        labels: labels.clone(),
        artifacts,
        disk: image_dir::DiskRecord {
            guid: layout.disk_guid.clone(),
            size: layout.size,
            partitions,
        },
        lockfile_sha256: digests
            .get(image_dir::LOCKFILE)
            .map(|d| d.0.clone())
            .context("packages.lock was not written")?,
        ingot_version: env!("CARGO_PKG_VERSION").to_string(),
        source_date_epoch: id.epoch,
        contents: contents_by_origin(tree),
        sysprep: image_dir::SysprepRecord {
            identity: sysprep::identity_report(tree),
            operations: sysprep::OPERATIONS
                .iter()
                .map(|(k, _)| (*k).to_string())
                .collect(),
        },
        agents: profile
            .agents
            .iter()
            .map(|a| image_dir::AgentRecord {
                name: a.name.clone(),
                packages: a.packages.clone(),
                service: a.service.clone(),
                probe: a.probe.clone(),
                probe_timeout: Some(a.probe_timeout),
            })
            .collect(),
        size_budget: profile.output.size_budget.map(|b| b.0),
    })
}
