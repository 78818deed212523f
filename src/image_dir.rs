//! The image directory: the contract between the build and everything that reads its output
//! (`inspect`, `sign`, `verify`, `boot-test`, and later update bundles and registries).
//!
//! It owns the artifact file names, the manifest's typed form, the trusted comment of its
//! signature, and a verified load that reads `manifest.json` once: the bytes whose signature is
//! checked are the bytes that are parsed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::base::fsx;
use crate::config::{Firmware, Hardware};
use crate::trust::minisign;

/// The signed manifest.
pub const MANIFEST: &str = "manifest.json";
/// Its minisign signature.
pub const SIGNATURE: &str = "manifest.json.sig";
/// The sparse GPT disk.
pub const DISK_RAW: &str = "disk.raw";
/// The zstd-compressed disk.
pub const DISK_ZST: &str = "disk.raw.zst";
/// The lockfile the image was built from.
pub const LOCKFILE: &str = "packages.lock";
/// SPDX 2.3 SBOM.
pub const SBOM_SPDX: &str = "sbom.spdx.json";
/// CycloneDX SBOM.
pub const SBOM_CDX: &str = "sbom.cdx.json";
/// in-toto provenance in a DSSE envelope.
pub const PROVENANCE: &str = "provenance.intoto.jsonl";
/// The update bundle of an A/B image (format: `bundle`).
pub const BUNDLE: &str = crate::bundle::FILE;

/// The file name of the delta bundle from `base_version` (made by `ota::delta`).
pub fn delta_bundle(base_version: &str) -> String {
    format!("update-from-{base_version}.bundle")
}

/// Is this an image directory file name of a delta bundle?
pub fn is_delta_bundle(name: &str) -> bool {
    name.strip_prefix("update-from-")
        .and_then(|r| r.strip_suffix(".bundle"))
        .is_some_and(|v| !v.is_empty() && !v.contains('/'))
}

/// Every file a build may write, in the order a reproducibility check compares them (disk
/// first, so a difference in a derived file is explained by the disk).
pub const ARTIFACTS_IN_ORDER: &[&str] = &[
    DISK_RAW,
    DISK_ZST,
    BUNDLE,
    "disk.qcow2",
    "disk.vmdk",
    "disk.vhdx",
    "disk.vhd",
    "disk.tar.gz",
    "disk.ova",
    LOCKFILE,
    SBOM_SPDX,
    SBOM_CDX,
    PROVENANCE,
    MANIFEST,
];

/// Is this file name one the manifest lists with a digest (everything but the manifest and
/// its signature)?
pub fn is_artifact(name: &str) -> bool {
    // A file of the directory itself: `disk./../x` is no artifact.
    if name.contains(['/', '\\', '\0']) {
        return false;
    }
    name.starts_with("disk.")
        || name.starts_with("sbom.")
        || name == LOCKFILE
        || name == PROVENANCE
        || name == BUNDLE
        || is_delta_bundle(name)
}

/// Digest and size of one artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// Hex SHA-256.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
}

/// Which hardware profile an image was built for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HardwareRef {
    /// The profile's name.
    pub name: String,
    /// Its file name, as given to the build.
    pub file: Option<String>,
}

/// Everything a boot test needs, so an image directory boots wherever it is copied, without
/// the project's hardware/ and firmware/ directories.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BootSpec {
    /// The hardware profile as built.
    pub hardware: Hardware,
    /// The UEFI firmware it boots with.
    pub firmware: Firmware,
}

/// One GPT partition as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionRecord {
    /// GPT name.
    pub name: String,
    /// Type GUID.
    #[serde(rename = "type")]
    pub type_guid: String,
    /// Partition GUID.
    pub guid: String,
    /// First byte.
    pub offset: u64,
    /// Bytes.
    pub size: u64,
    /// Hex SHA-256 of the partition's bytes.
    pub sha256: String,
}

/// The disk as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiskRecord {
    /// Disk GUID.
    pub guid: String,
    /// Bytes.
    pub size: u64,
    /// Partitions in table order.
    pub partitions: Vec<PartitionRecord>,
}

/// Bytes and files one origin (a package, or Ingot's own tags) contributes to the root.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contribution {
    /// File bytes.
    pub bytes: u64,
    /// Files.
    pub files: u64,
}

/// What sysprep did and what identity-bearing files look like after it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SysprepRecord {
    /// (path, state) of each identity-bearing file.
    pub identity: Vec<(String, String)>,
    /// The operations applied.
    pub operations: Vec<String>,
}

/// `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Image name.
    pub image: String,
    /// Image version.
    pub version: String,
    /// Architecture name.
    pub arch: String,
    /// `name-version-arch`.
    pub id: String,
    /// The profile's description.
    pub description: String,
    /// The hardware profile.
    pub hardware: HardwareRef,
    /// How to boot it.
    pub boot: BootSpec,
    /// Labels, the profile's and the generated ones.
    pub labels: BTreeMap<String, String>,
    /// Every artifact with its digest.
    pub artifacts: BTreeMap<String, Artifact>,
    /// The disk.
    pub disk: DiskRecord,
    /// SHA-256 of `packages.lock`.
    pub lockfile_sha256: String,
    /// The Ingot that built it.
    pub ingot_version: String,
    /// `SOURCE_DATE_EPOCH` of the build.
    pub source_date_epoch: i64,
    /// Bytes by origin in the root filesystem.
    pub contents: BTreeMap<String, Contribution>,
    /// The sysprep record.
    pub sysprep: SysprepRecord,
    /// The agents the image carries, by name, with their readiness probes (absent in
    /// manifests of earlier Ingots).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<AgentRecord>,
    /// The profile's size budget for the data in `disk.raw`, in bytes, when it set one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_budget: Option<u64>,
}

/// One agent as built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// Its name (in the INGOT-READY line).
    pub name: String,
    /// Its packages.
    pub packages: Vec<String>,
    /// Its systemd unit or command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The readiness probe.
    pub probe: String,
    /// Seconds the ready check waits for the probe to pass (absent in manifests of earlier
    /// Ingots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_timeout: Option<u32>,
}

impl Manifest {
    /// The longest `probe_timeout` of its agents (none recorded: `None`).
    pub fn longest_probe(&self) -> Option<u32> {
        self.agents.iter().filter_map(|a| a.probe_timeout).max()
    }

    /// The trusted comment of the manifest's signature: what `minisign -V` prints.
    pub fn trusted_comment(&self) -> String {
        format!(
            "image={} version={} arch={} epoch={}",
            self.image, self.version, self.arch, self.source_date_epoch
        )
    }

    /// Canonical JSON (sorted keys, no insignificant white space): the bytes that are signed.
    pub fn to_canonical(&self) -> Result<String> {
        Ok(crate::trust::canonical(
            &serde_json::to_value(self).context("encoding manifest.json")?,
        ))
    }

    /// Parse manifest bytes, naming the file in errors.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self> {
        let m: Manifest = serde_json::from_slice(bytes).with_context(|| {
            format!(
                "{}: not a manifest this Ingot reads (rebuild the image with this Ingot)",
                path.display()
            )
        })?;
        // Every name is a file of the directory: verify, push and the rest join it to the
        // directory's path, so `../x` would reach outside it.
        if let Some(n) = m.artifacts.keys().find(|n| !is_artifact(n)) {
            anyhow::bail!(
                "{}: artifacts: `{}` is not a file of an image directory (disk.*, sbom.*, packages.lock, provenance.intoto.jsonl, update bundles)",
                path.display(),
                n.escape_debug()
            );
        }
        Ok(m)
    }
}

/// An image directory with its manifest read.
#[derive(Debug, Clone)]
pub struct ImageDir {
    /// The directory.
    pub path: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// The manifest's bytes as read (what a signature covers).
    bytes: Vec<u8>,
}

impl ImageDir {
    /// A path the user gave as an image directory must be one: a path that does not exist,
    /// a file, or a directory without a `manifest.json` is bad input (exit 2), said before
    /// anything is read. A manifest that is there but unreadable, malformed or unsigned is the
    /// image's own failure and is reported by what reads it.
    pub fn check_given(path: &Path) -> Result<(), crate::base::BadInput> {
        let bad = |why: &str| Err(crate::base::BadInput(format!("{}: {why}", path.display())));
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bad("no such image directory"),
            Ok(m) if !m.is_dir() => bad("not an image directory (not a directory)"),
            Ok(_) if std::fs::symlink_metadata(path.join(MANIFEST)).is_err() => {
                bad(&format!("not an image directory (it holds no {MANIFEST})"))
            }
            _ => Ok(()),
        }
    }

    /// Read the manifest (unverified: for inspection and boot tests).
    pub fn open(path: &Path) -> Result<Self> {
        Self::check_given(path)?;
        let mp = path.join(MANIFEST);
        let bytes = fsx::read(&mp).with_context(|| {
            format!(
                "{}: not an image directory (no readable {MANIFEST})",
                path.display()
            )
        })?;
        let manifest = Manifest::parse(&bytes, &mp)?;
        Ok(ImageDir {
            path: path.to_path_buf(),
            manifest,
            bytes,
        })
    }

    /// Read the manifest once, check its signature over exactly those bytes, then check every
    /// artifact's digest and size, and the provenance's DSSE signature.
    pub fn open_verified(path: &Path, key: &minisign::PublicKey) -> Result<Self> {
        Self::check_given(path)?;
        Self::open_verified_with(path, key, &Known::default())
    }

    /// [`ImageDir::open_verified`] for a caller that has hashed some files already (a pull
    /// hashes each blob while it streams: `known.hashed` gives those digests and sizes) or
    /// checks every file itself as it reads it (a push: `known.caller_checks_all`). The
    /// signature, bundle and provenance are always checked.
    pub fn open_verified_with(
        path: &Path,
        key: &minisign::PublicKey,
        known: &Known,
    ) -> Result<Self> {
        let mp = path.join(MANIFEST);
        let bytes = fsx::read(&mp)?;
        let sig = fsx::read(&path.join(SIGNATURE))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .with_context(|| format!("{}: no {SIGNATURE} (image not signed)", path.display()))?;
        key.verify_bytes(&bytes, &sig)
            .with_context(|| mp.display().to_string())?;
        let manifest = Manifest::parse(&bytes, &mp)?;
        check_artifacts(path, &manifest, known)?;
        for name in manifest.artifacts.keys() {
            if name == BUNDLE || is_delta_bundle(name) {
                // The digest above covers the file; the device checks the manifest's own
                // signature.
                crate::bundle::Bundle::read(&path.join(name))?
                    .check(Some(key))
                    .with_context(|| path.join(name).display().to_string())?;
            }
        }
        let prov = path.join(PROVENANCE);
        if manifest.artifacts.contains_key(PROVENANCE) {
            let text = String::from_utf8_lossy(&fsx::read(&prov)?).into_owned();
            crate::trust::verify_dsse_line(text.lines().next().unwrap_or(""), key)
                .with_context(|| prov.display().to_string())?;
        }
        Ok(ImageDir {
            path: path.to_path_buf(),
            manifest,
            bytes,
        })
    }

    /// A file of the directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The raw disk.
    pub fn disk(&self) -> PathBuf {
        self.file(DISK_RAW)
    }

    /// The manifest's bytes as read.
    pub fn manifest_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Files in the directory that the manifest does not account for (neither an artifact
    /// nor the manifest or its signature), sorted.
    pub fn unlisted_files(&self) -> Result<Vec<String>> {
        let mut extra = Vec::new();
        for e in std::fs::read_dir(&self.path)
            .with_context(|| format!("listing {}", self.path.display()))?
        {
            let e = e.with_context(|| format!("listing {}", self.path.display()))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name != MANIFEST && name != SIGNATURE && !self.manifest.artifacts.contains_key(&name)
            {
                extra.push(name);
            }
        }
        extra.sort();
        Ok(extra)
    }

    /// Sign an image directory after the fact: the provenance's DSSE envelope gets this key's
    /// signature (so `verify` checks it like a build signed from the start), the manifest
    /// records the provenance's new digest, and the manifest is signed. Each file is replaced
    /// atomically; the manifest last but one, its signature last.
    pub fn sign(path: &Path, key: &minisign::SecretKey) -> Result<Self> {
        let mut dir = ImageDir::open(path)?;
        if dir.manifest.artifacts.contains_key(PROVENANCE) {
            let prov = dir.file(PROVENANCE);
            let text = fsx::read_to_string(&prov)?;
            let env: serde_json::Value = serde_json::from_str(text.lines().next().unwrap_or(""))
                .with_context(|| format!("{}: not a DSSE envelope", prov.display()))?;
            let signed = crate::trust::dsse_add_signature(&env, key)
                .with_context(|| prov.display().to_string())?;
            let line = crate::trust::canonical(&signed) + "\n";
            fsx::write_atomic(&prov, line.as_bytes())?;
            let (sha256, size) = fsx::sha256_path(&prov)?;
            dir.manifest
                .artifacts
                .insert(PROVENANCE.to_string(), Artifact { sha256, size });
            let text = dir.manifest.to_canonical()?;
            fsx::write_atomic(&dir.file(MANIFEST), text.as_bytes())?;
            dir.bytes = text.into_bytes();
        }
        fsx::write_atomic(&dir.file(SIGNATURE), dir.signature(key).as_bytes())?;
        Ok(dir)
    }

    /// The signature text for this manifest, made with `key`.
    pub fn signature(&self, key: &minisign::SecretKey) -> String {
        key.sign_bytes(&self.bytes, &self.manifest.trusted_comment())
    }
}

/// Digests a verifier already has, and files it need not check.
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// File name → (hex SHA-256, size), hashed by the caller.
    pub hashed: BTreeMap<String, (String, u64)>,
    /// Check no artifact's digest here: the caller checks each file as it reads it (a push
    /// hashes every file on its way to the registry and publishes nothing until all match).
    pub caller_checks_all: bool,
}

/// The one verdict on a file's digest: it must be the signed manifest's, size included.
pub fn check_digest(name: &str, got: &str, size: u64, want: &str, want_size: u64) -> Result<()> {
    if got != want || size != want_size {
        bail!(
            "{name}: SHA-256 {got} ({size} bytes) does not match the signed manifest ({want}, {want_size} bytes)"
        );
    }
    Ok(())
}

/// Check every artifact against the manifest: the files not already known are hashed, two at
/// a time (the big ones dominate, and the build hosts have at least two cores).
fn check_artifacts(path: &Path, manifest: &Manifest, known: &Known) -> Result<()> {
    if known.caller_checks_all {
        return Ok(());
    }
    let todo: Vec<(&String, &Artifact)> = manifest.artifacts.iter().collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<Result<()>> = std::thread::scope(|sc| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                sc.spawn(|| -> Result<()> {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((name, a)) = todo.get(i) else {
                            return Ok(());
                        };
                        let (got, size) = match known.hashed.get(*name) {
                            Some(k) => k.clone(),
                            None => {
                                let p = path.join(name);
                                fsx::sha256_file(&p)
                                    .with_context(|| format!("{}: cannot read", p.display()))?
                            }
                        };
                        check_digest(name, &got, size, &a.sha256, a.size)?;
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a hashing thread panicked")))
            })
            .collect()
    });
    results.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_names_are_owned_here() {
        for n in ARTIFACTS_IN_ORDER {
            assert_eq!(is_artifact(n), *n != MANIFEST, "{n}");
        }
        assert!(!is_artifact(SIGNATURE));
        assert!(!is_artifact("notes.txt"));
        assert!(!is_artifact("disk./../../etc/shadow"));
        assert!(!is_artifact("update-from-1.0.0/../x.bundle"));
    }
}
