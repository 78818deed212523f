//! Stage: the disk. The root filesystem planned (fixed size or the tree plus headroom), the
//! ESP made from the boot chain and checked against its partition, the GPT layout, then
//! disk.raw written sparse, the size budget checked, and the converted and compressed disks.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::system::System;
use crate::base::identity::{derived_guid, Identity};
use crate::boot;
use crate::config::{ByteSize, Hardware, Profile};
use crate::disk;
use crate::fs::ext4;
use crate::image_dir;
use crate::progress::Stages;

/// What the disk stage hands on.
pub struct DiskImage {
    /// disk.raw in the staging directory.
    pub raw: PathBuf,
    /// The GPT layout.
    pub layout: disk::Layout,
    /// The root filesystem's plan (to explain a byte offset).
    pub plan: ext4::Plan,
    /// Bytes of data in disk.raw (allocated, not apparent).
    pub data_bytes: u64,
}

fn allocated(p: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(p)
        .with_context(|| format!("reading {}", p.display()))?
        .blocks()
        * 512)
}

/// Run the stage, writing into `work`.
pub fn write_disk(
    sys: &System,
    profile: &Profile,
    hw: &Hardware,
    id: &Identity,
    work: &Path,
    stages: &mut Stages,
) -> Result<DiskImage> {
    let (arch, epoch, ident) = (hw.arch, id.epoch, id.id());
    let (tree, sd_boot) = (&sys.tree, &sys.sd_boot);
    let (kernel_bytes, initrd) = (&sys.kernel_bytes, &sys.initrd);
    // Root filesystem and disk layout.
    let fixed = match hw.disk.size.as_str() {
        "auto" => None,
        s => Some(ByteSize::parse(s).map_err(anyhow::Error::msg)?.0),
    };
    let root_guid = derived_guid(&ident, "root").to_string().to_uppercase();
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(derived_guid(&ident, "rootfs").as_bytes());
    let mut seed = [0u8; 16];
    seed.copy_from_slice(derived_guid(&ident, "hash-seed").as_bytes());
    let mut params = ext4::Params {
        size: None,
        uuid,
        hash_seed: seed,
        time: epoch,
        label: "root".into(),
    };
    let cmdline = boot::cmdline(&root_guid, hw);
    let esp = boot::esp_tree(
        sd_boot,
        arch,
        &id.name,
        &id.version,
        kernel_bytes,
        initrd,
        &cmdline,
    )?;
    let esp_need = esp.content_bytes() + (8 << 20);
    if esp_need > hw.disk.esp_size.0 {
        bail!(
            "{}: disk.esp_size {} is too small for the kernel and initramfs ({} needed)",
            hw.path.display(),
            hw.disk.esp_size,
            ByteSize(esp_need)
        );
    }
    let mut plan = ext4::plan(tree, &params)?;
    let layout = disk::layout(
        &ident,
        arch,
        hw.disk.esp_size.0,
        plan.size_bytes(),
        &hw.disk.partitions,
        fixed,
    )?;
    if fixed.is_some() {
        params.size = Some(layout.partitions[1].size);
        plan = ext4::plan(tree, &params)?;
    }

    stages.next(&format!(
        "[{ident}] writing disk.raw ({} MiB)",
        layout.size >> 20
    ))?;
    let raw = work.join(image_dir::DISK_RAW);
    {
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&raw)
            .with_context(|| format!("creating {}", raw.display()))?;
        f.set_len(layout.size)
            .with_context(|| format!("sizing {}", raw.display()))?;
        let espp = &layout.partitions[0];
        crate::fs::fat::write(
            disk::Window::new(&f, espp.offset, espp.size),
            &esp,
            u32::from_le_bytes(uuid[..4].try_into()?),
            "ESP",
            epoch,
        )
        .context("writing the ESP")?;
        let rootp = &layout.partitions[1];
        plan.write(&mut ext4::FileAt {
            file: &f,
            base: rootp.offset,
        })
        .context("writing the root filesystem")?;
        disk::write_gpt(&mut f, &layout)?;
        f.sync_all()
            .with_context(|| format!("writing {}", raw.display()))?;
    }
    let data_bytes = allocated(&raw)?;
    if let Some(budget) = profile.output.size_budget {
        if data_bytes > budget.0 {
            bail!("size budget exceeded: disk.raw holds {} of data, the profile allows {} ([output] size_budget in {})", ByteSize(data_bytes), budget, profile.path.display());
        }
    }
    for f in &profile.output.formats {
        let fmt = format!("{f:?}").to_lowercase();
        let name = format!("disk.{fmt}");
        stages.next(&format!("[{ident}] converting to {name}"))?;
        disk::convert(&raw, &work.join(&name), &fmt, &ident)?;
    }
    if profile.output.zstd {
        stages.next_plain(&format!(
            "[{ident}] compressing disk.raw.zst (level {})",
            profile.output.zstd_level.0
        ))?;
        let bar = stages.bytes(layout.size);
        bar.set_prefix("zstd");
        disk::compress_zstd(
            &raw,
            &work.join(image_dir::DISK_ZST),
            profile.output.zstd_level.0,
            &|n| bar.inc(n),
        )?;
        bar.finish_and_clear();
    }

    Ok(DiskImage {
        raw,
        layout,
        plan,
        data_bytes,
    })
}
