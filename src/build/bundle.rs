//! Stage: the update bundle of an A/B image. The root filesystem image exactly as written into
//! slot A (read back from disk.raw) and the kernel, gzip-compressed, with the initramfs, under a
//! manifest signed with the build key (an unsigned build gets its signature from `ingot sign`).

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use super::image::DiskImage;
use super::system::System;
use crate::base::identity::Identity;
use crate::boot;
use crate::bundle::{self, Manifest, Member};
use crate::config::{Hardware, Profile};
use crate::progress::Stages;
use crate::trust::minisign;

/// Write `update.bundle` into `work` when the disk is A/B, and a delta bundle from each base
/// bundle in `deltas`; otherwise nothing.
#[allow(clippy::too_many_arguments)]
pub fn write(
    work: &Path,
    sys: &System,
    img: &DiskImage,
    profile: &Profile,
    hw: &Hardware,
    id: &Identity,
    key: Option<&minisign::SecretKey>,
    deltas: &[std::path::PathBuf],
    stages: &mut Stages,
) -> Result<()> {
    let Some(root) = &img.root_image else {
        if let Some(d) = deltas.first() {
            anyhow::bail!(
                "--delta-from {}: {} has no A/B slots, so no update bundle to make a delta of",
                d.display(),
                hw.name
            );
        }
        return Ok(());
    };
    stages.next(&format!("[{}] writing {}", id.id(), bundle::FILE))?;
    let mut f =
        std::fs::File::open(&img.raw).with_context(|| format!("reading {}", img.raw.display()))?;
    f.seek(SeekFrom::Start(root.offset))?;
    let mut rootfs = Vec::new();
    f.take(root.size)
        .read_to_end(&mut rootfs)
        .with_context(|| format!("reading the root filesystem from {}", img.raw.display()))?;
    let gz = bundle::gzip(&rootfs)?;
    let kernel_gz = bundle::gzip(&sys.kernel_bytes)?;
    let payload: [(&str, &[u8]); 3] = [
        (bundle::LINUX, &kernel_gz),
        (bundle::INITRD, &sys.initrd),
        (bundle::ROOTFS, &gz),
    ];
    let manifest = Manifest {
        image: id.name.clone(),
        version: id.version.clone(),
        arch: id.arch.clone(),
        hardware: hw.name.clone(),
        min_version: profile.ota.min_version.0.clone(),
        options: boot::cmdline_tail(
            hw,
            &profile.kernel.cmdline,
            super::image::ab_args(profile, hw, &img.layout, 'b').as_ref(),
        ),
        rootfs: (root.sha256.clone(), root.size),
        kernel: (
            hex::encode(Sha256::digest(&sys.kernel_bytes)),
            sys.kernel_bytes.len() as u64,
        ),
        delta: None,
        members: Member::list(&payload),
    };
    let sig = key.map(|k| k.sign_bytes(manifest.to_text().as_bytes(), &manifest.trusted_comment()));
    bundle::write(
        &work.join(bundle::FILE),
        &manifest,
        sig.as_deref(),
        &payload,
        id.epoch,
    )?;
    let parts = crate::ota::delta::Parts {
        manifest: &manifest,
        rootfs: &rootfs,
        kernel_gz: &kernel_gz,
        initrd: &sys.initrd,
    };
    for base in deltas {
        stages.next(&format!(
            "[{}] writing a delta bundle from {}",
            id.id(),
            base.display()
        ))?;
        crate::ota::delta::write(work, base, &parts, key, id.epoch)?;
    }
    Ok(())
}

/// The base bundles among `--delta-from` directories that fit this build (same image, arch
/// and hardware): each directory fits exactly one build of a multi-hardware run.
pub fn bases_for(
    dirs: &[std::path::PathBuf],
    hw: &Hardware,
    name: &str,
) -> Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for d in dirs {
        let m = crate::image_dir::ImageDir::open(d)?.manifest;
        if m.image == name && m.hardware.name == hw.name {
            let b = d.join(bundle::FILE);
            if !b.is_file() {
                anyhow::bail!(
                    "--delta-from {}: no {} (not an A/B image)",
                    d.display(),
                    bundle::FILE
                );
            }
            out.push(b);
        }
    }
    Ok(out)
}
