//! How an image directory becomes OCI documents: one image manifest per directory (each file a
//! layer titled with its name) and one index per version over the directories pushed together.
//!
//! Everything here is derived from the signed manifest and the files, never from the clock or
//! the registry: two identical builds give byte-identical documents, so the same digest.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};

use super::types::{self, Descriptor, ImageManifest, Index, Platform};
use crate::base::fsx;
use crate::image_dir::{self, ImageDir};

/// `artifactType` of an image manifest.
pub const IMAGE_TYPE: &str = "application/vnd.ingot.image.v1";
/// `artifactType` of a version's index.
pub const INDEX_TYPE: &str = "application/vnd.ingot.image.index.v1";
/// Annotation: the image's name (the title may be the profile's own).
pub const IMAGE_NAME: &str = "dev.ingot.image.name";
/// Annotation: the hardware profile.
pub const HARDWARE: &str = "dev.ingot.hardware";
/// Annotation: the architecture, as Ingot names it.
pub const ARCH: &str = "dev.ingot.arch";
/// Annotation: the image has A/B slots (its promotion needs an OTA report).
pub const AB: &str = "dev.ingot.ab";

/// The media type of each file of an image directory.
pub fn media_type(name: &str) -> &'static str {
    if crate::image_dir::is_delta_bundle(name) {
        return "application/vnd.ingot.update-bundle.v1.tar";
    }
    match name {
        image_dir::MANIFEST => "application/vnd.ingot.manifest.v1+json",
        image_dir::SIGNATURE => "application/vnd.ingot.minisign.signature.v1",
        image_dir::DISK_ZST => "application/vnd.ingot.disk.raw.v1+zstd",
        image_dir::DISK_RAW => "application/vnd.ingot.disk.raw.v1",
        "disk.qcow2" => "application/vnd.ingot.disk.qcow2.v1",
        "disk.vmdk" => "application/vnd.ingot.disk.vmdk.v1",
        "disk.vhdx" => "application/vnd.ingot.disk.vhdx.v1",
        "disk.vhd" => "application/vnd.ingot.disk.vhd.v1",
        "disk.tar.gz" => "application/vnd.ingot.disk.gce.v1.tar+gzip",
        "disk.ova" => "application/vnd.ingot.disk.ova.v1.tar",
        image_dir::SBOM_SPDX => "application/spdx+json",
        image_dir::SBOM_CDX => "application/vnd.cyclonedx+json",
        image_dir::PROVENANCE => "application/vnd.dsse.envelope.v1+json",
        image_dir::LOCKFILE => "application/vnd.ingot.packages-lock.v1",
        image_dir::BUNDLE => "application/vnd.ingot.update-bundle.v1.tar",
        _ => "application/octet-stream",
    }
}

/// An image directory as an OCI artifact.
#[derive(Debug, Clone)]
pub struct LocalImage {
    /// The image manifest.
    pub manifest: ImageManifest,
    /// Its bytes (what is pushed and hashed).
    pub bytes: Vec<u8>,
    /// Its descriptor as an index entry (platform and hardware annotations).
    pub entry: Descriptor,
    /// Each layer with the file it comes from.
    pub files: Vec<(Descriptor, PathBuf)>,
}

/// The files of a directory that travel, in layer order: the manifest and its signature, then
/// the artifacts, with `disk.raw` always carried as `disk.raw.zst` (pull rebuilds it and checks
/// it against the signed manifest).
pub fn layer_files(dir: &ImageDir) -> Vec<String> {
    let arts = &dir.manifest.artifacts;
    let mut names = vec![image_dir::MANIFEST.to_string()];
    if dir.file(image_dir::SIGNATURE).exists() {
        names.push(image_dir::SIGNATURE.to_string());
    }
    for n in image_dir::ARTIFACTS_IN_ORDER {
        if *n == image_dir::MANIFEST || !arts.contains_key(*n) {
            continue;
        }
        if *n == image_dir::DISK_RAW {
            // The compressed disk travels instead (derived here when the build made none).
            if !arts.contains_key(image_dir::DISK_ZST) {
                names.push(image_dir::DISK_ZST.to_string());
            }
            continue;
        }
        names.push(n.to_string());
    }
    // Artifacts a newer build may list that this list does not know yet, sorted.
    for n in arts.keys() {
        if !names.contains(n) && n != image_dir::DISK_RAW {
            names.push(n.clone());
        }
    }
    names
}

/// Level of a `disk.raw.zst` derived for a push (the builds' default).
pub const DERIVED_ZSTD_LEVEL: i32 = 9;

/// `disk.raw.zst` for an image whose build made none: compressed once per disk digest into the
/// cache with the build's fixed-worker zstd settings, so every machine derives the same bytes
/// (and so the same OCI digest).
fn derived_zst(dir: &ImageDir) -> Result<PathBuf> {
    let raw = dir
        .manifest
        .artifacts
        .get(image_dir::DISK_RAW)
        .context("no disk.raw in the manifest")?;
    let cache = crate::packages::cache::Cache::open(None)?;
    let folder = cache.root().join("registry-zst");
    std::fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
    let out = folder.join(format!("{}-{DERIVED_ZSTD_LEVEL}.zst", raw.sha256));
    if !out.exists() {
        // The cache is keyed by the signed digest: check the disk really has it first.
        let (got, size) = fsx::sha256_path(&dir.disk())?;
        if got != raw.sha256 || size != raw.size {
            anyhow::bail!(
                "{}: SHA-256 {got} ({size} bytes) does not match the signed manifest ({}, {} bytes)",
                dir.disk().display(),
                raw.sha256,
                raw.size
            );
        }
        let tmp = fsx::temp_beside(&out);
        let _guard = crate::interrupt::TempGuard::new(tmp.clone());
        let result = crate::disk::compress_zstd(&dir.disk(), &tmp, DERIVED_ZSTD_LEVEL, &|_| {});
        if let Err(e) = result.and_then(|()| fsx::rename(&tmp, &out)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    }
    Ok(out)
}

/// The OCI image manifest of an image directory. Artifact digests come from the (verified)
/// manifest; the manifest and signature are hashed here.
pub fn image(dir: &ImageDir) -> Result<LocalImage> {
    let m = &dir.manifest;
    let mut files = Vec::new();
    for name in layer_files(dir) {
        let (path, digest, size) = match m.artifacts.get(&name) {
            Some(a) => (dir.file(&name), a.sha256.clone(), a.size),
            None if name == image_dir::DISK_ZST => {
                let p = derived_zst(dir)?;
                let (d, s) = fsx::sha256_path(&p)?;
                (p, d, s)
            }
            None => {
                let p = dir.file(&name);
                let (d, s) = fsx::sha256_path(&p)?;
                (p, d, s)
            }
        };
        let mut d = Descriptor {
            media_type: media_type(&name).to_string(),
            digest: format!("sha256:{digest}"),
            size,
            artifact_type: None,
            platform: None,
            annotations: BTreeMap::new(),
        };
        d.annotations.insert(types::TITLE.to_string(), name);
        files.push((d, path));
    }
    let mut annotations = m.labels.clone();
    annotations.insert(types::VERSION.to_string(), m.version.clone());
    annotations.insert(
        types::CREATED.to_string(),
        crate::base::identity::rfc3339(m.source_date_epoch),
    );
    annotations
        .entry(types::TITLE.to_string())
        .or_insert_with(|| m.image.clone());
    annotations.insert(IMAGE_NAME.to_string(), m.image.clone());
    annotations.insert(HARDWARE.to_string(), m.hardware.name.clone());
    annotations.insert(ARCH.to_string(), m.arch.clone());
    if m.boot.hardware.ab.is_some() {
        annotations.insert(AB.to_string(), "true".to_string());
    }
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: types::MANIFEST_MEDIA.to_string(),
        artifact_type: Some(IMAGE_TYPE.to_string()),
        config: types::empty_config(),
        layers: files.iter().map(|(d, _)| d.clone()).collect(),
        subject: None,
        annotations,
    };
    let bytes = types::to_bytes(&manifest);
    let mut entry = Descriptor::of(types::MANIFEST_MEDIA, &bytes);
    entry.artifact_type = Some(IMAGE_TYPE.to_string());
    entry.platform = Some(Platform {
        architecture: m.boot.hardware.arch.debian().to_string(),
        os: "linux".to_string(),
    });
    for k in [HARDWARE, ARCH, IMAGE_NAME, AB] {
        if let Some(v) = manifest.annotations.get(k) {
            entry.annotations.insert(k.to_string(), v.clone());
        }
    }
    Ok(LocalImage {
        manifest,
        bytes,
        entry,
        files,
    })
}

/// The index of one version over its images (sorted by architecture, then hardware). Every
/// image must have the same name and version.
pub fn index(images: &[LocalImage]) -> Result<(Index, Vec<u8>)> {
    let first = images.first().context("no image to index")?;
    let name = first.manifest.annotations.get(IMAGE_NAME).cloned();
    let version = first.manifest.annotations.get(types::VERSION).cloned();
    for i in images {
        let (n, v) = (
            i.manifest.annotations.get(IMAGE_NAME),
            i.manifest.annotations.get(types::VERSION),
        );
        if n != name.as_ref() || v != version.as_ref() {
            anyhow::bail!(
                "one push takes the images of one name and version: {} {} and {} {}",
                name.as_deref().unwrap_or("?"),
                version.as_deref().unwrap_or("?"),
                n.map_or("?", |s| s.as_str()),
                v.map_or("?", |s| s.as_str())
            );
        }
    }
    let mut entries: Vec<Descriptor> = images.iter().map(|i| i.entry.clone()).collect();
    entries.sort_by(|a, b| {
        (a.annotations.get(ARCH), a.annotations.get(HARDWARE))
            .cmp(&(b.annotations.get(ARCH), b.annotations.get(HARDWARE)))
    });
    for w in entries.windows(2) {
        if w[0].annotations.get(ARCH) == w[1].annotations.get(ARCH)
            && w[0].annotations.get(HARDWARE) == w[1].annotations.get(HARDWARE)
        {
            anyhow::bail!(
                "two images for the same hardware {} and arch {}",
                w[0].annotations.get(HARDWARE).map_or("?", |s| s.as_str()),
                w[0].annotations.get(ARCH).map_or("?", |s| s.as_str())
            );
        }
    }
    let created = images
        .iter()
        .filter_map(|i| i.manifest.annotations.get(types::CREATED))
        .max()
        .cloned();
    let mut annotations = BTreeMap::new();
    if let Some(n) = name {
        annotations.insert(IMAGE_NAME.to_string(), n.clone());
        annotations.insert(types::TITLE.to_string(), n);
    }
    if let Some(v) = version {
        annotations.insert(types::VERSION.to_string(), v);
    }
    if let Some(c) = created {
        annotations.insert(types::CREATED.to_string(), c);
    }
    let idx = Index {
        schema_version: 2,
        media_type: types::INDEX_MEDIA.to_string(),
        artifact_type: Some(INDEX_TYPE.to_string()),
        manifests: entries,
        annotations,
    };
    let bytes = types::to_bytes(&idx);
    Ok((idx, bytes))
}
