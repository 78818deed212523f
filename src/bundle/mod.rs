//! The update bundle (`update.bundle`): one deterministic ustar archive whose first member is a
//! small line-based manifest, then that manifest's minisign signature, then the kernel, the
//! initramfs and the gzip-compressed root filesystem image. Only the manifest is signed; every
//! other member is chained to it by SHA-256. The format is line-based so that the device's
//! POSIX-shell updater reads it with `read`, after `minisign -V` has checked it.
//!
//! ```text
//! ingot-bundle 1
//! image edge-minimal
//! version 2.0.0
//! arch x86_64
//! hardware qemu-x86_64-ab
//! min-version 0.0.0
//! options console=ttyS0 quiet panic=-1
//! rootfs <sha256 of the uncompressed root image> <bytes>
//! kernel <sha256 of the uncompressed kernel image> <bytes>
//! member linux.gz <sha256> <bytes>
//! member initrd <sha256> <bytes>
//! member rootfs.img.gz <sha256> <bytes>
//! ```
//!
//! A delta bundle (`update-from-<base version>.bundle`, made by `ota::delta`) carries the root
//! image as a zstd patch against the base version's root image, which the device reads from the
//! slot it runs, and leaves out the kernel and initramfs when the base has the same ones:
//!
//! ```text
//! base <base version> <sha256 of the base root image> <bytes>
//! memory <bytes the device needs free to apply it>
//! segments <segment bytes> <margin bytes>
//! same-initrd <sha256>                  (when the initrd member is left out)
//! member rootfs.img.zst-patch.0 <sha256> <bytes>
//! member rootfs.img.zst-patch.1 <sha256> <bytes>
//! ```
//!
//! The patch comes in segments so that the device's memory does not grow with the image: patch
//! `i` rebuilds bytes `[i·S, (i+1)·S)` of the new root image against a window of the base root
//! image reaching the margin either side of the same offset (`Segments::base_range`).

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::base::fsx;
use crate::trust::minisign;

/// The bundle's file name in an image directory (`image_dir::BUNDLE`).
pub const FILE: &str = "update.bundle";
/// Member names, in archive order.
pub const MANIFEST: &str = "manifest";
/// The manifest's minisign signature.
pub const SIGNATURE: &str = "manifest.minisig";
/// The kernel image, gzip-compressed (an arm64 kernel is an uncompressed Image of ~30 MB).
pub const LINUX: &str = "linux.gz";
/// The initramfs.
pub const INITRD: &str = "initrd";
/// The gzip-compressed root filesystem image.
pub const ROOTFS: &str = "rootfs.img.gz";
/// The payload members of a full bundle, in archive order.
pub const PAYLOAD: [&str; 3] = [LINUX, INITRD, ROOTFS];
/// The root image as zstd patches against the base root image (delta bundles): the name of
/// segment `i`'s patch is this and `i` in decimal.
pub const ROOTFS_PATCH: &str = "rootfs.img.zst-patch.";
/// Member names a manifest may list besides the patches.
const FIXED_MEMBERS: [&str; 3] = [LINUX, INITRD, ROOTFS];

/// The member holding segment `i`'s patch.
pub fn patch_member(i: u64) -> String {
    format!("{ROOTFS_PATCH}{i}")
}

/// The segment a patch member rebuilds, if `name` is one (plain decimal, no leading zeros).
pub fn patch_index(name: &str) -> Option<u64> {
    let i: u64 = name.strip_prefix(ROOTFS_PATCH)?.parse().ok()?;
    (patch_member(i) == name).then_some(i)
}

/// A member name a manifest may list.
pub fn is_known_member(name: &str) -> bool {
    FIXED_MEMBERS.contains(&name) || patch_index(name).is_some()
}

/// Largest manifest or signature member read (both are a few hundred bytes).
const MAX_SMALL: u64 = 64 << 10;

mod manifest;

pub use manifest::{BundleError, Delta, Manifest, Member, Segments};

fn header(name: &str, size: u64, mtime: i64) -> Result<tar::Header> {
    Ok(crate::base::fsx::tar_file_header(
        tar::Header::new_ustar(),
        name,
        size,
        mtime,
    )?)
}

/// Write a bundle to `path` (through a temporary name): the manifest, its signature when
/// given, then the payload. Deterministic: fixed owner, mode and `mtime`, member order fixed.
pub fn write(
    path: &Path,
    manifest: &Manifest,
    signature: Option<&str>,
    payload: &[(&str, &[u8])],
    mtime: i64,
) -> Result<()> {
    let tmp = fsx::temp_beside(path);
    let result = (|| -> Result<()> {
        let f =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut b = tar::Builder::new(std::io::BufWriter::new(f));
        let text = manifest.to_text();
        let mut members: Vec<(&str, &[u8])> = vec![(MANIFEST, text.as_bytes())];
        if let Some(s) = signature {
            members.push((SIGNATURE, s.as_bytes()));
        }
        members.extend_from_slice(payload);
        for (name, data) in members {
            b.append(&header(name, data.len() as u64, mtime)?, data)
                .with_context(|| format!("writing {name} into {}", path.display()))?;
        }
        let mut w = b.into_inner()?;
        w.flush()?;
        w.into_inner()
            .map_err(|e| e.into_error())?
            .sync_all()
            .with_context(|| format!("writing {}", tmp.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    fsx::rename(&tmp, path)
}

/// A member as found in a bundle file.
#[derive(Debug, Clone)]
pub struct Found {
    /// Member name.
    pub name: String,
    /// Hex SHA-256 of its bytes.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
}

/// A bundle as read from a file: the manifest text and signature as stored, the manifest parsed,
/// and each member's digest as computed while reading.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The manifest's bytes.
    pub manifest_text: String,
    /// The parsed manifest.
    pub manifest: Manifest,
    /// The signature member, when signed.
    pub signature: Option<String>,
    /// Every member in archive order.
    pub members: Vec<Found>,
}

impl Bundle {
    /// Read a bundle file, hashing every member (bounded: the manifest and signature are small).
    pub fn read(path: &Path) -> Result<Self> {
        let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        Self::read_from(std::io::BufReader::new(f), path)
    }

    /// Read a bundle from any reader; `path` names it in errors (the fuzz target's entry point).
    pub fn read_from(r: impl Read, path: &Path) -> Result<Self> {
        let mut ar = tar::Archive::new(r);
        let (mut text, mut sig) = (None, None);
        let mut members = Vec::new();
        for e in ar
            .entries()
            .with_context(|| format!("{}: not a tar archive", path.display()))?
        {
            let mut e = e.with_context(|| format!("{}: damaged tar archive", path.display()))?;
            let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let size = e.header().size()?;
            let is_small = name == MANIFEST || name == SIGNATURE;
            if is_small && size > MAX_SMALL {
                bail!("{}: member {name} is {size} bytes; a manifest or signature is at most {MAX_SMALL}", path.display());
            }
            let mut h = Sha256::new();
            let mut small = Vec::new();
            let mut buf = vec![0u8; 1 << 16];
            let mut n_total = 0u64;
            loop {
                let n = e
                    .read(&mut buf)
                    .with_context(|| format!("{}: reading member {name}", path.display()))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                if is_small {
                    small.extend_from_slice(&buf[..n]);
                }
                n_total += n as u64;
            }
            if n_total != size {
                bail!(
                    "{}: member {name} is truncated ({n_total} of {size} bytes)",
                    path.display()
                );
            }
            match name.as_str() {
                MANIFEST => {
                    text =
                        Some(String::from_utf8(small).with_context(|| {
                            format!("{}: manifest is not UTF-8", path.display())
                        })?)
                }
                SIGNATURE => {
                    sig =
                        Some(String::from_utf8(small).with_context(|| {
                            format!("{}: signature is not UTF-8", path.display())
                        })?)
                }
                _ => {}
            }
            members.push(Found {
                name,
                sha256: hex::encode(h.finalize()),
                size,
            });
        }
        let manifest_text = text.with_context(|| {
            format!(
                "{}: no `{MANIFEST}` member: not an update bundle",
                path.display()
            )
        })?;
        let manifest = Manifest::parse(&manifest_text)
            .with_context(|| format!("{}: {MANIFEST}", path.display()))?;
        Ok(Bundle {
            manifest_text,
            manifest,
            signature: sig,
            members,
        })
    }

    /// Check what the device checks, on the build host: the signature with `key` (when given),
    /// then every payload member against the manifest.
    pub fn check(&self, key: Option<&minisign::PublicKey>) -> Result<()> {
        if let Some(k) = key {
            let sig = self
                .signature
                .as_deref()
                .context("the bundle is not signed (no manifest.minisig member)")?;
            k.verify_bytes(self.manifest_text.as_bytes(), sig)
                .context("the bundle's manifest signature")?;
        }
        for want in &self.manifest.members {
            let got = self
                .members
                .iter()
                .find(|f| f.name == want.name)
                .with_context(|| format!("member {} is missing", want.name))?;
            if got.sha256 != want.sha256 || got.size != want.size {
                bail!(
                    "member {}: SHA-256 {} ({} bytes) does not match the manifest ({}, {} bytes)",
                    want.name,
                    got.sha256,
                    got.size,
                    want.sha256,
                    want.size
                );
            }
        }
        Ok(())
    }

    /// Bytes of the payload members: what the bundle's size is compared with.
    pub fn payload_bytes(&self) -> u64 {
        self.members
            .iter()
            .filter(|m| is_known_member(&m.name))
            .map(|m| m.size)
            .sum()
    }
}

/// gzip a root filesystem or kernel image (deterministic: no name, no time in the header).
pub fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut e = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::new(6));
    e.write_all(data)?;
    Ok(e.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(payload: &[(&str, &[u8])]) -> Manifest {
        Manifest {
            image: "edge".into(),
            version: "2.0.0".into(),
            arch: "x86_64".into(),
            hardware: "qemu-x86_64-ab".into(),
            min_version: "1.0.0".into(),
            options: "console=ttyS0 quiet panic=-1".into(),
            rootfs: (hex::encode(Sha256::digest(b"root")), 4),
            kernel: (hex::encode(Sha256::digest(b"kernel")), 6),
            delta: None,
            members: payload
                .iter()
                .map(|(n, d)| Member {
                    name: (*n).into(),
                    sha256: hex::encode(Sha256::digest(d)),
                    size: d.len() as u64,
                })
                .collect(),
        }
    }

    #[test]
    fn a_bundle_round_trips_signs_and_names_a_changed_member() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join(FILE);
        let gz = gzip(b"root").unwrap();
        let payload: Vec<(&str, &[u8])> =
            vec![(LINUX, b"kernel"), (INITRD, b"initrd"), (ROOTFS, &gz)];
        let m = manifest(&payload);
        assert_eq!(Manifest::parse(&m.to_text()).unwrap(), m);
        write(&p, &m, None, &payload, 1_700_000_000).unwrap();
        let first = std::fs::read(&p).unwrap();
        write(&p, &m, None, &payload, 1_700_000_000).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), first, "not deterministic");
        let b = Bundle::read(&p).unwrap();
        assert!(b.signature.is_none());
        b.check(None).unwrap();
        let key = minisign::SecretKey::generate();
        assert!(
            b.check(Some(&key.public())).is_err(),
            "unsigned bundle passed"
        );
        let sig = key.sign_bytes(m.to_text().as_bytes(), &m.trusted_comment());
        write(&p, &m, Some(&sig), &payload, 1_700_000_000).unwrap();
        let b = Bundle::read(&p).unwrap();
        b.check(Some(&key.public())).unwrap();
        let other = minisign::SecretKey::generate();
        assert!(b.check(Some(&other.public())).is_err());
        // Flip one byte of the kernel member: the check names it.
        let mut bytes = std::fs::read(&p).unwrap();
        let at = bytes.windows(6).rposition(|w| w == b"kernel").unwrap();
        bytes[at] ^= 1;
        std::fs::write(&p, &bytes).unwrap();
        let e = Bundle::read(&p)
            .unwrap()
            .check(Some(&key.public()))
            .unwrap_err();
        assert!(e.to_string().contains("member linux.gz"), "{e}");
        // Truncated: an error, not a panic.
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        assert!(Bundle::read(&p).and_then(|b| b.check(None)).is_err());
    }

    #[test]
    fn the_committed_fuzz_seed_is_a_whole_bundle() {
        // Written by Python's tarfile and gzip, not by this module: the reader takes any ustar.
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus/update_bundle/small-unsigned.bundle");
        let b = Bundle::read(&p).unwrap();
        b.check(None).unwrap();
        assert_eq!(b.manifest.version, "2.0.0");
        assert_eq!(
            b.payload_bytes(),
            b.members[1..].iter().map(|m| m.size).sum::<u64>()
        );
    }

    #[test]
    fn manifest_errors_name_the_line() {
        let m = manifest(&[(LINUX, b"k"), (INITRD, b"i"), (ROOTFS, b"r")]);
        let text = m.to_text();
        assert!(matches!(
            Manifest::parse("tar\n"),
            Err(BundleError::NotAManifest(_))
        ));
        let bad = text.replace("version 2.0.0", "version 2.0.0;reboot");
        assert_eq!(
            Manifest::parse(&bad).unwrap_err(),
            BundleError::BadLine {
                line: 3,
                what: "`version` is not a plain word".into()
            }
        );
        let bad = text.replace("options console", "options $(reboot) console");
        assert!(matches!(
            Manifest::parse(&bad),
            Err(BundleError::BadLine { line: 7, .. })
        ));
        let bad = text.replace("member initrd", "member initrd2");
        assert!(Manifest::parse(&bad).is_err());
        let short: String = text
            .lines()
            .filter(|l| !l.starts_with("rootfs"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(
            Manifest::parse(&short).unwrap_err(),
            BundleError::Missing("rootfs")
        );
    }

    #[test]
    fn a_delta_manifest_lists_one_patch_per_segment() {
        let mut m = manifest(&[
            (LINUX, b"k"),
            ("rootfs.img.zst-patch.0", b"p0"),
            ("rootfs.img.zst-patch.1", b"p1"),
        ]);
        m.rootfs.1 = (1 << 20) + 1;
        m.delta = Some(Delta {
            base_version: "1.0.0".into(),
            base_rootfs: (hex::encode(Sha256::digest(b"base")), 1 << 20),
            memory: 64 << 20,
            segments: Segments {
                size: 1 << 20,
                margin: 0,
            },
            same_initrd: Some(hex::encode(Sha256::digest(b"i"))),
        });
        let text = m.to_text();
        assert!(text.contains("\nsegments 1048576 0\n"), "{text}");
        assert_eq!(Manifest::parse(&text).unwrap(), m);
        assert_eq!(patch_index("rootfs.img.zst-patch.12"), Some(12));
        assert_eq!(patch_index("rootfs.img.zst-patch.012"), None);
        assert_eq!(patch_index("rootfs.img.zst-patch."), None);
        // A missing, extra or out-of-range patch; segments not in whole MiB; none at all.
        let no_second: String = text
            .lines()
            .filter(|l| !l.starts_with("member rootfs.img.zst-patch.1"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(
            Manifest::parse(&no_second).unwrap_err(),
            BundleError::Missing("member")
        );
        let third = format!("{text}member rootfs.img.zst-patch.2 {} 2\n", "0".repeat(64));
        assert_eq!(
            Manifest::parse(&third).unwrap_err(),
            BundleError::Missing("member")
        );
        let odd = text.replace("segments 1048576 0", "segments 1048577 0");
        assert!(matches!(
            Manifest::parse(&odd),
            Err(BundleError::BadLine { line: 12, .. })
        ));
        let tiny = text.replace("segments 1048576 0", "segments 0 0");
        assert!(Manifest::parse(&tiny).is_err());
        let none = text.replace("segments 1048576 0\n", "");
        assert_eq!(
            Manifest::parse(&none).unwrap_err(),
            BundleError::Missing("segments")
        );
    }
}
