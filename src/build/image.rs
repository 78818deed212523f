//! Stage: the disk. The root filesystem planned (fixed size or the tree plus headroom), the
//! ESP made from the boot chain and checked against its partition, the GPT layout, then
//! disk.raw written sparse, the size budget checked, and the converted and compressed disks.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::system::System;
use crate::base::identity::{derived_guid, Identity};
use crate::boot;
use crate::config::{ByteSize, Format, Hardware, Profile};
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
    /// On an A/B disk: the root filesystem image in slot A, what an update bundle carries.
    pub root_image: Option<RootImage>,
}

/// The root filesystem image as written into a slot: where, how long, its digest.
#[derive(Debug, Clone)]
pub struct RootImage {
    /// Offset of the slot in disk.raw.
    pub offset: u64,
    /// Bytes of the filesystem (the slot may be larger).
    pub size: u64,
    /// Hex SHA-256 of those bytes.
    pub sha256: String,
}

/// A size the hardware profile fixed and the image does not fit: bad input, at that line.
fn at_size(hw: &Hardware, e: anyhow::Error) -> anyhow::Error {
    match e.downcast::<disk::DoesNotFit>() {
        Ok(fit) => {
            let (table, key) = fit.key;
            crate::config::rule_at(&[&hw.path], Some(&format!("[{table}]")), key, fit.message)
                .into()
        }
        Err(e) => e,
    }
}

fn allocated(p: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(p)
        .with_context(|| format!("reading {}", p.display()))?
        .blocks()
        * 512)
}

/// SHA-256 of `len` bytes of `f` at `offset`.
fn sha256_range(f: &std::fs::File, offset: u64, len: u64) -> Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut r = f;
    r.seek(SeekFrom::Start(offset))?;
    let (sha, n) = crate::base::fsx::HashingReader::new(r.take(len)).drain()?;
    if n != len {
        bail!("disk.raw ends inside the root filesystem ({n} of {len} bytes)");
    }
    Ok(sha)
}

/// The file on the ESP that records a version's root image digest and size (`SHA256 SIZE`),
/// for `ingot-update status --verify`.
pub const ROOTFS_SHA256: &str = "rootfs.sha256";

/// What an A/B command line for `slot` carries, from the layout's data partition and the
/// profile's `[ota]` watchdog; `None` without A/B slots.
pub(super) fn ab_args<'a>(
    profile: &Profile,
    hw: &Hardware,
    layout: &'a disk::Layout,
    slot: char,
) -> Option<boot::AbArgs<'a>> {
    hw.ab.as_ref().map(|_| boot::AbArgs {
        slot,
        data: layout
            .partitions
            .iter()
            .find(|p| p.name == "data")
            .map(|p| p.guid.as_str()),
        watchdog: profile.ota.watchdog,
    })
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
    if hw.disk.bios && sys.grub.is_none() {
        bail!(
            "{}: disk.bios without grub-pc-bin in the package set",
            hw.path.display()
        );
    }
    let (kernel_bytes, initrd) = (&sys.kernel_bytes, &sys.initrd);
    // Root filesystem and disk layout.
    let fixed = match hw.disk.size.as_str() {
        "auto" => None,
        s => Some(ByteSize::parse(s).map_err(anyhow::Error::msg)?.0),
    };
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
    let mut plan = ext4::plan(tree, &params)?;
    // A disk sized to its tree also holds what first boot adds (a database's files).
    if fixed.is_none() && hw.ab.is_none() && sys.first_boot_reserve > 0 {
        params.size = Some((plan.size_bytes() + sys.first_boot_reserve).div_ceil(1 << 20) << 20);
        plan = ext4::plan(tree, &params)?;
    }
    let stable = id.stable();
    let layout = match &hw.ab {
        Some(ab) => disk::layout_ab(
            &stable,
            arch,
            hw.disk.esp_size.0,
            plan.size_bytes(),
            ab.slot_size.0,
            ab.data_size.0,
        )
        .map_err(|e| at_size(hw, e))?,
        None => disk::layout(
            &ident,
            arch,
            hw.disk.esp_size.0,
            plan.size_bytes(),
            &hw.disk.partitions,
            fixed,
            hw.disk.bios,
        )
        .map_err(|e| at_size(hw, e))?,
    };
    if fixed.is_some() {
        params.size = Some(layout.partitions[1].size);
        plan = ext4::plan(tree, &params)?;
    }
    // The image boots slot a; an update's entry for slot b gets the same line but the slot.
    let cmdline = boot::cmdline(
        &layout.partitions[1].guid,
        hw,
        &profile.kernel.cmdline,
        ab_args(profile, hw, &layout, 'a').as_ref(),
    );
    let mut esp = boot::esp_tree(
        sd_boot,
        arch,
        &id.name,
        &id.version,
        kernel_bytes,
        initrd,
        &cmdline,
    )?;
    // An A/B ESP holds two versions' kernels and initramfs at once (during an update).
    let copies = if hw.ab.is_some() { 2 } else { 1 };
    let boot_files = (kernel_bytes.len() + initrd.len()) as u64;
    let esp_need = esp.content_bytes() + (copies - 1) * boot_files + (8 << 20);
    if esp_need > hw.disk.esp_size.0 {
        let what = if copies == 2 {
            "two versions' kernels and initramfs (an A/B update keeps the running one)"
        } else {
            "the kernel and initramfs"
        };
        bail!(
            "{}: disk.esp_size {} is too small for {what} ({} needed)",
            hw.path.display(),
            hw.disk.esp_size,
            ByteSize(esp_need)
        );
    }

    stages.next(&format!(
        "[{ident}] writing disk.raw ({} MiB)",
        layout.size >> 20
    ))?;
    let raw = work.join(image_dir::DISK_RAW);
    let mut root_image = None;
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
        let rootp = &layout.partitions[1];
        plan.write(&mut ext4::FileAt {
            file: &f,
            base: rootp.offset,
        })
        .context("writing the root filesystem")?;
        if hw.ab.is_some() {
            // The slot's digest goes on the ESP beside the kernel, so the device can check
            // its running slot against it at any time.
            let size = plan.size_bytes();
            let sha256 = sha256_range(&f, rootp.offset, size)?;
            esp.insert(
                &format!("{}/{}/{ROOTFS_SHA256}", id.name, id.version),
                crate::tree::Entry::file(format!("{sha256} {size}\n"), 0o644),
            )?;
            root_image = Some(RootImage {
                offset: rootp.offset,
                size,
                sha256,
            });
            if let Some(datap) = layout.partitions.iter().find(|p| p.name == "data") {
                write_data_fs(&f, datap, &stable, epoch)?;
            }
        }
        for p in layout
            .partitions
            .iter()
            .filter(|p| p.type_guid == disk::SWAP)
        {
            let mut uuid = [0u8; 16];
            uuid.copy_from_slice(derived_guid(&ident, &format!("swap-{}", p.name)).as_bytes());
            disk::write_swap(&f, p, &uuid, &p.name)?;
        }
        let espp = &layout.partitions[0];
        crate::fs::fat::write(
            disk::Window::new(&f, espp.offset, espp.size),
            &esp,
            u32::from_le_bytes(uuid[..4].try_into()?),
            "ESP",
            epoch,
        )
        .context("writing the ESP")?;
        disk::write_gpt(&mut f, &layout)?;
        if let Some(grub) = &sys.grub {
            write_bios_boot(&f, grub, &layout, id, &cmdline)?;
        }
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
        let name = f.file_name();
        stages.next(&format!("[{ident}] converting to {name}"))?;
        let out = work.join(name);
        match f {
            Format::Qcow2 | Format::Vmdk | Format::Vhdx => {
                disk::convert(&raw, &out, &format!("{f:?}").to_lowercase(), &ident)?
            }
            Format::Vhd => disk::fixed_vhd(&raw, &out, &ident, epoch)?,
            Format::Gce => disk::gce_tarball(&raw, &out, epoch)?,
            Format::Ova => {
                let m = disk::Machine {
                    name: profile.image.name.clone(),
                    version: profile.image.version.0.clone(),
                    description: profile.image.description.clone(),
                    memory_mib: hw.qemu.memory,
                    cpus: hw.qemu.smp,
                };
                disk::ova(&raw, &out, work, &m, &ident, epoch)?
            }
        }
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
        root_image,
    })
}

/// The data partition of an A/B disk: an empty ext4 filesystem (with the updater's `ingot/`
/// directory) whose ids derive from the image name and arch, so it reads the same to every
/// version.
fn write_data_fs(f: &std::fs::File, part: &disk::Part, stable: &str, epoch: i64) -> Result<()> {
    let mut t = crate::tree::Tree::new();
    t.mkdir_p("ingot")?;
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(derived_guid(stable, "datafs").as_bytes());
    let mut seed = [0u8; 16];
    seed.copy_from_slice(derived_guid(stable, "data-hash-seed").as_bytes());
    let params = ext4::Params {
        size: Some(part.size),
        uuid,
        hash_seed: seed,
        time: epoch,
        label: "data".into(),
    };
    ext4::plan(&t, &params)?
        .write(&mut ext4::FileAt {
            file: f,
            base: part.offset,
        })
        .context("writing the data filesystem")?;
    Ok(())
}

/// A hybrid disk's BIOS path: GRUB's core image (loading the ESP's kernel and initramfs of this
/// version with the UEFI entry's command line) in the BIOS boot partition, and the boot code
/// that loads it in front of the protective MBR's partition table.
fn write_bios_boot(
    f: &std::fs::File,
    grub: &crate::tree::Tree,
    layout: &disk::Layout,
    id: &Identity,
    cmdline: &str,
) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let part = layout
        .partitions
        .iter()
        .find(|p| p.type_guid == boot::bios::BIOS_BOOT_TYPE)
        .context("the layout has no BIOS boot partition")?;
    let cfg = boot::bios::config(
        &format!("{}/{}", id.name, id.version),
        cmdline,
        &format!("{} {}", id.name, id.version),
    );
    let mut core = boot::bios::core_image(grub, &cfg)?;
    let code = boot::bios::place(&boot::bios::boot_img(grub)?, &mut core, part.offset / 512)?;
    f.write_all_at(&core, part.offset)
        .context("writing GRUB's core image")?;
    f.write_all_at(&code, 0)
        .context("writing the MBR boot code")?;
    Ok(())
}
