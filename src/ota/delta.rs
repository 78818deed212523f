//! Delta bundles: the root image as zstd patches against the root image the device already
//! runs, in the format of zstd's `--patch-from` (the base as a raw-content prefix, long-distance
//! matching), so the device applies them with Debian's `zstd`:
//! `zstd -d --patch-from=WINDOW --memory=… PATCH`.
//!
//! The image is cut into segments (`bundle::Segments`): each is patched against a window of the
//! base around the same offset, so the device needs memory for one window, not the whole
//! image, and a 300 MiB root image updates on a device with 256 MiB free. Ingot's filesystems
//! are deterministic: a changed package moves later blocks by its size difference, well within
//! the window's margin.
//!
//! Deterministic: single-threaded compression of each segment with fixed parameters, so the
//! same pair of images gives the same bytes.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::bundle::{self, Bundle, Delta, Manifest, Member, Segments};

/// Compression level of the patch (the CLI's `--patch-from` default is 3; 9 finds more of the
/// moved blocks for a little more build time).
pub const LEVEL: i32 = 9;

/// How delta bundles are cut: 32 MiB of the new image per segment, patched against the base
/// 16 MiB either side of the same offset.
pub const SEGMENTS: Segments = Segments {
    size: 32 << 20,
    margin: 16 << 20,
};

/// The file name of the delta bundle from `base_version` (the name's home is `image_dir`).
pub fn file_name(base_version: &str) -> String {
    crate::image_dir::delta_bundle(base_version)
}

/// The window log of a segment's patch: it reaches from the segment's last byte back to the
/// first byte of its base window, plus 8 MiB of slack.
pub fn window_log(window: u64, segment: u64) -> u32 {
    let reach = window + segment + (8 << 20);
    (64 - (reach - 1).leading_zeros()).clamp(20, 31)
}

/// Memory the device needs free, for the largest base window: the window copied into tmpfs,
/// and zstd's peak resident set, which ota-test measured on the device at twice the window
/// plus 2 MiB (Debian 12's zstd reads the dictionary file into memory, and its decoding buffer
/// grows as large), whatever the segment's size; at least the patch's window, which the device
/// passes to `zstd --memory`; and 32 MiB for the rest of the pipeline.
pub fn memory_needed(seg: &Segments, base: u64, target: u64) -> u64 {
    (0..seg.count(target))
        .map(|i| {
            let (bs, be) = seg.base_range(i, base);
            let (ts, te) = seg.target_range(i, target);
            // zstd --memory must also cover the frame's window.
            (3 * (be - bs)).max(1 << window_log(be - bs, te - ts))
        })
        .max()
        .unwrap_or(0)
        + (32 << 20)
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

/// The patches of `target` against `base`, one per segment (two at a time), each checked to
/// rebuild its segment.
pub fn patch_segments(seg: &Segments, base: &[u8], target: &[u8]) -> Result<Vec<Vec<u8>>> {
    let (bl, tl) = (base.len() as u64, target.len() as u64);
    let idx: Vec<u64> = (0..seg.count(tl)).collect();
    crate::base::parallel::map(&idx, 2, |&i| {
        let (bs, be) = seg.base_range(i, bl);
        let (ts, te) = seg.target_range(i, tl);
        let (window, part) = (
            &base[bs as usize..be as usize],
            &target[ts as usize..te as usize],
        );
        let p = patch(window, part)?;
        if apply(window, &p)? != part {
            bail!("the zstd patch of segment {i} does not reproduce it");
        }
        Ok(p)
    })
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
    let patches = patch_segments(&SEGMENTS, &base_root, new.rootfs)
        .with_context(|| format!("patching from {}", bm.version))?;
    let names: Vec<String> = (0..patches.len() as u64)
        .map(bundle::patch_member)
        .collect();
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
    for (name, p) in names.iter().zip(&patches) {
        payload.push((name, p));
    }
    let manifest = Manifest {
        delta: Some(Delta {
            base_version: bm.version.clone(),
            base_rootfs: bm.rootfs.clone(),
            memory: memory_needed(&SEGMENTS, bm.rootfs.1, nm.rootfs.1),
            segments: SEGMENTS,
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
        // One segment of a 48 MiB image: the whole base as its window.
        assert_eq!(window_log(48 << 20, 32 << 20), 27);
        assert_eq!(memory_needed(&SEGMENTS, 48 << 20, 48 << 20), 176 << 20);
        assert_eq!(memory_needed(&SEGMENTS, 20 << 20, 48 << 20), 96 << 20);
        // A 292 MiB image needs one 64 MiB window at a time, not the image three times over.
        assert_eq!(memory_needed(&SEGMENTS, 292 << 20, 293 << 20), 224 << 20);
        // Segments: every window within the base, starting on a whole MiB, around its
        // segment's offset; the window slides back at the end of the base.
        let seg = Segments {
            size: 1 << 20,
            margin: 1 << 20,
        };
        assert_eq!(seg.base_range(0, 10 << 20), (0, 3 << 20));
        assert_eq!(seg.base_range(4, 10 << 20), (3 << 20, 6 << 20));
        assert_eq!(seg.base_range(9, 10 << 20), (7 << 20, 10 << 20));
        assert_eq!(
            seg.base_range(12, (10 << 20) + 5),
            (7 << 20, (10 << 20) + 5)
        );
        assert_eq!(seg.base_range(6, (10 << 20) + 5), (5 << 20, 8 << 20));
        assert_eq!(seg.base_range(3, 2 << 20), (0, 2 << 20));
        assert_eq!(seg.target_range(2, (2 << 20) + 7), (2 << 20, (2 << 20) + 7));
        assert!(crate::image_dir::is_delta_bundle(
            "update-from-1.0.0.bundle"
        ));
        assert!(!crate::image_dir::is_delta_bundle("update.bundle"));
    }

    #[test]
    fn segment_patches_rebuild_an_image_whose_later_blocks_moved() {
        let seg = Segments {
            size: 1 << 20,
            margin: 1 << 20,
        };
        let base: Vec<u8> = (0..5u32 << 20)
            .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
            .collect();
        // 100 KiB inserted at 1.5 MiB: every later byte moves, across segment boundaries.
        let mut target = base[..3 << 19].to_vec();
        target.extend((0..100u32 << 10).map(|i| (i % 251) as u8));
        target.extend_from_slice(&base[3 << 19..]);
        let patches = patch_segments(&seg, &base, &target).unwrap();
        assert_eq!(patches.len() as u64, seg.count(target.len() as u64));
        let mut rebuilt = Vec::new();
        for (i, p) in patches.iter().enumerate() {
            let (bs, be) = seg.base_range(i as u64, base.len() as u64);
            rebuilt.extend(apply(&base[bs as usize..be as usize], p).unwrap());
        }
        assert!(rebuilt == target, "segments do not rebuild the image");
        let total: usize = patches.iter().map(Vec::len).sum();
        assert!(total < 128 << 10, "{total} bytes of patches");
        assert_eq!(patch_segments(&seg, &base, &target).unwrap(), patches);
    }
}
