//! Delta bundles: the root image as a zstd patch against the root image the device already
//! runs, in the format of zstd's `--patch-from` (the base as a raw-content prefix, long-distance
//! matching, a window covering base and target), so the device applies it with Debian's `zstd`:
//! `zstd -d --patch-from=BASE --memory=… PATCH -o SLOT`.
//!
//! Deterministic: single-threaded compression with fixed parameters, so the same pair of
//! images gives the same bytes.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::bundle::{self, Bundle, Delta, Manifest, Member};

/// Compression level of the patch (the CLI's `--patch-from` default is 3; 9 finds more of the
/// moved blocks for a little more build time).
pub const LEVEL: i32 = 9;

/// The file name of the delta bundle from `base_version` (the name's home is `image_dir`).
pub fn file_name(base_version: &str) -> String {
    crate::image_dir::delta_bundle(base_version)
}

/// The window log of a patch: a block of the target matches the base mostly at the same offset,
/// a distance of about the base's size, so the window covers the larger image plus 8 MiB of
/// slack for blocks that moved. (Covering base and target together would double the device's
/// window memory for a few more long-distance matches.)
pub fn window_log(base: u64, target: u64) -> u32 {
    let reach = base.max(target) + (8 << 20);
    (64 - (reach - 1).leading_zeros()).clamp(20, 31)
}

/// Memory the device needs free: the base copy in tmpfs, the base again as zstd's reference
/// (Debian 12's zstd reads the dictionary file into memory), the decoder's window buffer (no
/// larger than the target, whose size the frame records), and 32 MiB for zstd's tables and the
/// pipeline. Measured with Debian's zstd 1.5.4 on the build host: 100 MB peak RSS for
/// edge-minimal (48 MiB root image), 600 MB for vm-base (292 MiB), each within this less the
/// tmpfs copy.
pub fn memory_needed(base: u64, target: u64) -> u64 {
    2 * base + (1u64 << window_log(base, target)).min(target) + (32 << 20)
}

/// Compress `target` as a patch against `base`.
pub fn patch(base: &[u8], target: &[u8]) -> Result<Vec<u8>> {
    use zstd::stream::raw::CParameter;
    let mut enc = zstd::stream::write::Encoder::with_ref_prefix(Vec::new(), LEVEL, base)
        .context("starting the zstd patch")?;
    enc.set_parameter(CParameter::WindowLog(window_log(
        base.len() as u64,
        target.len() as u64,
    )))?;
    enc.long_distance_matching(true)?;
    enc.include_checksum(true)?;
    enc.include_contentsize(true)?;
    enc.set_pledged_src_size(Some(target.len() as u64))?;
    enc.write_all(target).context("writing the zstd patch")?;
    Ok(enc.finish()?)
}

/// Apply a patch (the build host's check that the patch reproduces the target).
pub fn apply(base: &[u8], patch: &[u8]) -> Result<Vec<u8>> {
    let mut dec = zstd::stream::read::Decoder::with_ref_prefix(patch, base)
        .context("starting the zstd patch decoder")?;
    dec.window_log_max(31)?;
    let mut out = Vec::new();
    dec.read_to_end(&mut out)
        .context("applying the zstd patch")?;
    Ok(out)
}

/// What a delta is made from: a full bundle's parts.
pub struct Parts<'a> {
    /// The full bundle's manifest (of the new version).
    pub manifest: &'a Manifest,
    /// The new root image.
    pub rootfs: &'a [u8],
    /// The new kernel, gzip-compressed (as in the full bundle).
    pub kernel_gz: &'a [u8],
    /// The new initramfs.
    pub initrd: &'a [u8],
}

/// The root image a full bundle carries (gunzipped), checked against its manifest.
pub fn root_image_of(path: &Path) -> Result<(Bundle, Vec<u8>)> {
    let b = Bundle::read(path)?;
    b.check(None).with_context(|| path.display().to_string())?;
    if b.manifest.delta.is_some() {
        bail!(
            "{}: a delta bundle cannot be a base; give the image directory's update.bundle",
            path.display()
        );
    }
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut ar = tar::Archive::new(std::io::BufReader::new(f));
    for e in ar.entries()? {
        let e = e?;
        if e.path_bytes().as_ref() == bundle::ROOTFS.as_bytes() {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(e)
                .read_to_end(&mut out)
                .with_context(|| format!("{}: unpacking {}", path.display(), bundle::ROOTFS))?;
            let (sha, size) = &b.manifest.rootfs;
            if hex::encode(Sha256::digest(&out)) != *sha || out.len() as u64 != *size {
                bail!(
                    "{}: the root image does not match its manifest",
                    path.display()
                );
            }
            return Ok((b, out));
        }
    }
    bail!("{}: no {} member", path.display(), bundle::ROOTFS)
}

/// Write `update-from-<base>.bundle` into `work`: the delta from the base bundle to `new`.
/// Returns the file's path and the sizes (delta bundle, full payload) for the log.
pub fn write(
    work: &Path,
    base_bundle: &Path,
    new: &Parts<'_>,
    key: Option<&crate::trust::minisign::SecretKey>,
    mtime: i64,
) -> Result<std::path::PathBuf> {
    let (base, base_root) = root_image_of(base_bundle)?;
    let (bm, nm) = (&base.manifest, new.manifest);
    if (bm.image.as_str(), bm.arch.as_str(), bm.hardware.as_str())
        != (nm.image.as_str(), nm.arch.as_str(), nm.hardware.as_str())
    {
        bail!(
            "{}: the base is {} for {} ({}); this build is {} for {} ({})",
            base_bundle.display(),
            bm.image,
            bm.arch,
            bm.hardware,
            nm.image,
            nm.arch,
            nm.hardware
        );
    }
    if bm.version == nm.version {
        bail!(
            "{}: the base is this version ({})",
            base_bundle.display(),
            nm.version
        );
    }
    let p = patch(&base_root, new.rootfs)?;
    if apply(&base_root, &p)? != new.rootfs {
        bail!(
            "the zstd patch from {} does not reproduce the root image",
            bm.version
        );
    }
    let base_initrd = base
        .manifest
        .members
        .iter()
        .find(|m| m.name == bundle::INITRD)
        .map(|m| m.sha256.clone());
    let initrd_sha = hex::encode(Sha256::digest(new.initrd));
    let same_initrd = base_initrd.as_deref() == Some(initrd_sha.as_str());
    let same_kernel = bm.kernel == nm.kernel;
    let mut payload: Vec<(&str, &[u8])> = Vec::new();
    if !same_kernel {
        payload.push((bundle::LINUX, new.kernel_gz));
    }
    if !same_initrd {
        payload.push((bundle::INITRD, new.initrd));
    }
    payload.push((bundle::ROOTFS_PATCH, &p));
    let manifest = Manifest {
        delta: Some(Delta {
            base_version: bm.version.clone(),
            base_rootfs: bm.rootfs.clone(),
            memory: memory_needed(bm.rootfs.1, nm.rootfs.1),
            same_initrd: same_initrd.then_some(initrd_sha),
        }),
        members: Member::list(&payload),
        ..nm.clone()
    };
    let sig = key.map(|k| k.sign_bytes(manifest.to_text().as_bytes(), &manifest.trusted_comment()));
    let out = work.join(file_name(&bm.version));
    bundle::write(&out, &manifest, sig.as_deref(), &payload, mtime)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_reproduces_the_target_and_is_small_when_little_changed() {
        let base: Vec<u8> = (0..4u32 << 20)
            .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
            .collect();
        let mut target = base.clone();
        target[1 << 20..(1 << 20) + 4096].fill(7);
        target.extend_from_slice(b"a new file at the end");
        let p = patch(&base, &target).unwrap();
        assert!(p.len() < 64 << 10, "patch of {} bytes", p.len());
        assert_eq!(apply(&base, &p).unwrap(), target);
        assert_eq!(patch(&base, &target).unwrap(), p, "deterministic");
        assert!(apply(&target, &p).is_err() || apply(&target, &p).unwrap() != target);
        assert_eq!(window_log(45 << 20, 45 << 20), 26);
        assert_eq!(window_log(300 << 20, 310 << 20), 29);
        assert_eq!(memory_needed(48 << 20, 48 << 20), 176 << 20);
        assert!(crate::image_dir::is_delta_bundle(
            "update-from-1.0.0.bundle"
        ));
        assert!(!crate::image_dir::is_delta_bundle("update.bundle"));
    }
}
