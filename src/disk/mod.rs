//! GPT disk assembly: places the EFI system partition, the root filesystem and any extra
//! partitions the hardware profile asks for at 1 MiB alignment, with disk and partition GUIDs
//! derived from the image identity, and writes `disk.raw` sparse.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::base::identity::derived_guid;
use crate::config::{Arch, ExtraPartition};

mod cloud;
mod convert;
mod gpt_read;
mod qcow2;
mod sparse_tar;

pub use cloud::{fixed_vhd, gce_tarball, ova, ovf, pin_vhd_footer, Machine};
pub use convert::{compress_zstd, convert, pin_bytes, pin_converted, PosIo};
pub use gpt_read::{read_gpt, GptEntry};
pub use qcow2::{raw_of_qcow2, Qcow2Stream, RawSink};

const MIB: u64 = 1 << 20;
const SECTOR: u64 = 512;

/// EFI system partition type.
pub const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
/// Generic Linux data.
pub const LINUX_DATA: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
/// The Discoverable Partitions type of a swap partition.
pub const SWAP: &str = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F";

/// One partition in the plan.
#[derive(Debug, Clone, Serialize)]
pub struct Part {
    /// GPT name.
    pub name: String,
    /// Type GUID.
    pub type_guid: String,
    /// Partition GUID.
    pub guid: String,
    /// First byte.
    pub offset: u64,
    /// Length in bytes.
    pub size: u64,
}

/// The disk layout.
#[derive(Debug, Clone, Serialize)]
pub struct Layout {
    /// Disk GUID.
    pub disk_guid: String,
    /// Whole disk size.
    pub size: u64,
    /// Partitions in table order: ESP, root, extras.
    pub partitions: Vec<Part>,
}

/// The image's content does not fit the size the hardware profile fixed (`disk.size`,
/// `ab.slot_size`): the profile's setting to change, not a fault of the build.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct DoesNotFit {
    /// The key that fixed the size, as `[table] key`: `disk` `size`, `ab` `slot_size`.
    pub key: (&'static str, &'static str),
    /// What needs how much room.
    pub message: String,
}

fn type_for(kind: &str, arch: Arch) -> Result<String> {
    Ok(match kind {
        "root" => arch.root_partition_type().to_string(),
        "linux" | "data" => LINUX_DATA.to_string(),
        "home" => "933AC7E1-2EB4-4F13-B844-0E14E2AEF915".to_string(),
        "var" => "4D21B016-B534-45C2-A9FB-5C16E091FD2D".to_string(),
        "swap" => SWAP.to_string(),
        g if uuid::Uuid::parse_str(g).is_ok() => g.to_uppercase(),
        other => bail!("partition type `{other}` is not root, linux, home, var, swap or a GUID"),
    })
}

/// Plan the disk: ESP first, root second, extras after, and last a BIOS boot partition when
/// `bios`; `fixed` is the whole disk size when the hardware profile sets one.
pub fn layout(
    identity: &str,
    arch: Arch,
    esp_size: u64,
    root_size: u64,
    extras: &[ExtraPartition],
    fixed: Option<u64>,
    bios: bool,
) -> Result<Layout> {
    let align = |v: u64| v.div_ceil(MIB) * MIB;
    let mut parts = Vec::new();
    let mut at = MIB;
    let mut push = |name: &str, ty: String, size: u64, purpose: &str, at: &mut u64| {
        let size = align(size);
        parts.push(Part {
            name: name.to_string(),
            type_guid: ty,
            guid: derived_guid(identity, purpose).to_string().to_uppercase(),
            offset: *at,
            size,
        });
        *at += size;
    };
    push("esp", ESP_TYPE.to_string(), esp_size, "esp", &mut at);
    let bios_size = if bios {
        crate::boot::bios::BIOS_BOOT_SIZE
    } else {
        0
    };
    let extras_size: u64 = extras.iter().map(|e| align(e.size.0)).sum::<u64>() + bios_size;
    let root_size = match fixed {
        Some(total) => {
            let room = total.saturating_sub(at + extras_size + MIB);
            if room < align(root_size) {
                return Err(DoesNotFit {
                    key: ("disk", "size"),
                    message: format!(
                        "disk.size {} MiB is too small: the root filesystem needs {} MiB, the ESP {} MiB and extra partitions {} MiB (plus 2 MiB for the partition tables)",
                        total / MIB, align(root_size) / MIB, esp_size / MIB, extras_size / MIB
                    ),
                }
                .into());
            }
            room / MIB * MIB
        }
        None => root_size,
    };
    push(
        "root",
        arch.root_partition_type().to_string(),
        root_size,
        "root",
        &mut at,
    );
    for e in extras {
        push(
            &e.name,
            type_for(&e.kind, arch)?,
            e.size.0,
            &format!("part:{}", e.name),
            &mut at,
        );
    }
    if bios {
        push(
            "bios-boot",
            crate::boot::bios::BIOS_BOOT_TYPE.to_string(),
            bios_size,
            "bios-boot",
            &mut at,
        );
    }
    Ok(Layout {
        disk_guid: derived_guid(identity, "disk").to_string().to_uppercase(),
        size: fixed.unwrap_or(at + MIB),
        partitions: parts,
    })
}

/// Partition names of an A/B disk, in table order after the ESP.
pub const AB_PARTS: [&str; 3] = ["root-a", "root-b", "data"];

/// Plan an A/B disk: ESP, `root-a`, `root-b` (each `slot` bytes, the arch's root type) and,
/// when `data` is not 0, a `data` partition. Every partition GUID derives from `stable` (image
/// name and arch, never the version), so all versions of an image agree on which partition is
/// which; `root_size` must fit a slot.
pub fn layout_ab(
    stable: &str,
    arch: Arch,
    esp_size: u64,
    root_size: u64,
    slot: u64,
    data: u64,
) -> Result<Layout> {
    let align = |v: u64| v.div_ceil(MIB) * MIB;
    if root_size > slot {
        return Err(DoesNotFit {
            key: ("ab", "slot_size"),
            message: format!(
                "ab.slot_size {} MiB is too small: the root filesystem needs {} MiB",
                slot / MIB,
                root_size.div_ceil(MIB)
            ),
        }
        .into());
    }
    let mut parts = Vec::new();
    let mut at = MIB;
    let sizes = [
        ("esp", ESP_TYPE.to_string(), esp_size),
        (AB_PARTS[0], arch.root_partition_type().to_string(), slot),
        (AB_PARTS[1], arch.root_partition_type().to_string(), slot),
        (AB_PARTS[2], LINUX_DATA.to_string(), data),
    ];
    for (name, type_guid, size) in sizes {
        if size == 0 {
            continue;
        }
        let size = align(size);
        parts.push(Part {
            name: name.to_string(),
            type_guid,
            guid: derived_guid(stable, name).to_string().to_uppercase(),
            offset: at,
            size,
        });
        at += size;
    }
    Ok(Layout {
        disk_guid: derived_guid(stable, "disk").to_string().to_uppercase(),
        size: at + MIB,
        partitions: parts,
    })
}

/// A window of a file, usable as a `Read + Write + Seek` device (for fatfs).
pub struct Window<'a> {
    file: &'a File,
    base: u64,
    len: u64,
    pos: u64,
}

impl<'a> Window<'a> {
    /// A window of `len` bytes at `base`.
    pub fn new(file: &'a File, base: u64, len: u64) -> Self {
        Window {
            file,
            base,
            len,
            pos: 0,
        }
    }
}

impl Read for Window<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.len.saturating_sub(self.pos)) as usize;
        let r = self.file.read_at(&mut buf[..n], self.base + self.pos)?;
        self.pos += r as u64;
        Ok(r)
    }
}

impl Write for Window<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.pos + buf.len() as u64 > self.len {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "write past the end of the partition",
            ));
        }
        self.file.write_all_at(buf, self.base + self.pos)?;
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Window<'_> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let new = match pos {
            SeekFrom::Start(p) => p as i128,
            SeekFrom::End(d) => self.len as i128 + d as i128,
            SeekFrom::Current(d) => self.pos as i128 + d as i128,
        };
        if new < 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start",
            ));
        }
        self.pos = new as u64;
        Ok(self.pos)
    }
}

/// Make `part` a swap area, as `mkswap -p 4096` does: the version-1 header (last usable
/// page, no bad pages, `uuid`, `label`) in the first page and `SWAPSPACE2` at its end. systemd
/// activates a swap partition of the disk it booted from (systemd-gpt-auto-generator), and
/// failed to on an unformatted one, leaving the system degraded. Debian's kernels for both
/// arches use 4 KiB pages.
pub fn write_swap(file: &File, part: &Part, uuid: &[u8; 16], label: &str) -> Result<()> {
    const PAGE: usize = 4096;
    let pages = part.size / PAGE as u64;
    if pages < 10 {
        bail!(
            "partition `{}` is {} bytes: a swap area needs at least 10 pages of 4 KiB",
            part.name,
            part.size
        );
    }
    let mut page = vec![0u8; PAGE];
    let last_page = u32::try_from(pages - 1).context("swap partition too large")?;
    page[1024..1028].copy_from_slice(&1u32.to_le_bytes());
    page[1028..1032].copy_from_slice(&last_page.to_le_bytes());
    // nr_badpages stays 0.
    page[1036..1052].copy_from_slice(uuid);
    let name = label.as_bytes();
    let n = name.len().min(15);
    page[1052..1052 + n].copy_from_slice(&name[..n]);
    page[PAGE - 10..].copy_from_slice(b"SWAPSPACE2");
    file.write_all_at(&page, part.offset)
        .with_context(|| format!("writing the swap area of partition `{}`", part.name))
}

/// Write the GPT (protective MBR, primary and backup headers) for a layout into `file`.
pub fn write_gpt(file: &mut File, l: &Layout) -> Result<()> {
    let lb = gpt::disk::LogicalBlockSize::Lb512;
    let mbr = gpt::mbr::ProtectiveMBR::with_lb_size(
        u32::try_from(l.size / SECTOR - 1).unwrap_or(0xFFFF_FFFF),
    );
    mbr.overwrite_lba0(file)
        .context("writing the protective MBR")?;
    let disk_guid = uuid::Uuid::parse_str(&l.disk_guid)?;
    let mut disk = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(lb)
        .create_from_device(&mut *file, Some(disk_guid))
        .context("creating the GPT")?;
    let mut parts = std::collections::BTreeMap::new();
    for (i, p) in l.partitions.iter().enumerate() {
        parts.insert(
            i as u32 + 1,
            gpt::partition::Partition {
                part_type_guid: gpt::partition_types::Type {
                    guid: uuid::Uuid::parse_str(&p.type_guid)?,
                    os: gpt::partition_types::OperatingSystem::Linux,
                },
                part_guid: uuid::Uuid::parse_str(&p.guid)?,
                first_lba: p.offset / SECTOR,
                last_lba: (p.offset + p.size) / SECTOR - 1,
                flags: 0,
                name: p.name.clone(),
            },
        );
    }
    disk.update_partitions(parts)
        .context("filling the partition table")?;
    disk.write_inplace()
        .context("writing the partition table")?;
    Ok(())
}

/// SHA-256 and size of the whole disk image and of each partition, in one sequential read:
/// the whole disk's digest on this thread, the partitions' on another (the same bytes hashed
/// twice, so two cores halve the time); a few 1 MiB buffers pass between them.
pub fn sha256_with_partitions(path: &Path, l: &Layout) -> Result<((String, u64), Vec<String>)> {
    use std::sync::mpsc;
    let mut f = File::open(path)
        .and_then(crate::base::sparse::SparseReader::new)
        .with_context(|| format!("reading {}", path.display()))?;
    let (full_tx, full_rx) = mpsc::sync_channel::<(u64, Vec<u8>, usize)>(4);
    let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
    for _ in 0..6 {
        free_tx
            .send(vec![0u8; 1 << 20])
            .expect("the receiver is still here");
    }
    std::thread::scope(|sc| {
        let partitions = sc.spawn(move || {
            let mut parts: Vec<Sha256> = l.partitions.iter().map(|_| Sha256::new()).collect();
            for (pos, buf, n) in full_rx {
                let end = pos + n as u64;
                for (p, h) in l.partitions.iter().zip(parts.iter_mut()) {
                    let (a, b) = (p.offset.max(pos), (p.offset + p.size).min(end));
                    if a < b {
                        h.update(&buf[(a - pos) as usize..(b - pos) as usize]);
                    }
                }
                // The reader may have finished (and dropped its end) after an error.
                let _ = free_tx.send(buf);
            }
            parts
                .into_iter()
                .map(|h| hex::encode(h.finalize()))
                .collect::<Vec<String>>()
        });
        let mut whole = Sha256::new();
        let mut pos = 0u64;
        let read = (|| -> Result<()> {
            loop {
                crate::interrupt::check()?;
                let mut buf = free_rx.recv().context("the partition hasher stopped")?;
                let n = f
                    .read(&mut buf)
                    .with_context(|| format!("reading {}", path.display()))?;
                if n == 0 {
                    return Ok(());
                }
                whole.update(&buf[..n]);
                full_tx
                    .send((pos, buf, n))
                    .context("the partition hasher stopped")?;
                pos += n as u64;
            }
        })();
        drop(full_tx);
        let parts = partitions
            .join()
            .map_err(|_| anyhow::anyhow!("the partition hasher panicked"))?;
        read?;
        Ok(((hex::encode(whole.finalize()), pos), parts))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_aligns_and_rejects_small_fixed_disks() {
        let l = layout(
            "id",
            Arch::X86_64,
            64 * MIB,
            100 * MIB + 5,
            &[],
            None,
            false,
        )
        .unwrap();
        let hybrid = layout(
            "id",
            Arch::X86_64,
            64 * MIB,
            100 * MIB,
            &[],
            Some(300 * MIB),
            true,
        )
        .unwrap();
        let last = hybrid.partitions.last().unwrap();
        assert_eq!((last.name.as_str(), last.size), ("bios-boot", MIB));
        assert_eq!(last.offset + last.size, 299 * MIB);
        assert_eq!(hybrid.partitions[1].size, 300 * MIB - 3 * MIB - 64 * MIB);
        assert!(l
            .partitions
            .iter()
            .all(|p| p.offset % MIB == 0 && p.size % MIB == 0));
        assert_eq!(l.partitions[1].size, 101 * MIB);
        let ab = layout_ab(
            "edge-x86_64",
            Arch::X86_64,
            128 * MIB,
            30 * MIB,
            64 * MIB,
            8 * MIB,
        )
        .unwrap();
        let names: Vec<&str> = ab.partitions.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["esp", "root-a", "root-b", "data"]);
        assert_eq!(ab.partitions[1].type_guid, ab.partitions[2].type_guid);
        assert_ne!(ab.partitions[1].guid, ab.partitions[2].guid);
        // The same name and arch give the same slots, whatever else changes.
        let again = layout_ab(
            "edge-x86_64",
            Arch::X86_64,
            128 * MIB,
            60 * MIB,
            64 * MIB,
            0,
        )
        .unwrap();
        assert_eq!(again.partitions[2].guid, ab.partitions[2].guid);
        assert_eq!(again.partitions.len(), 3);
        // What does not fit names the hardware profile's key, for the build to place at its line.
        let key = |e: anyhow::Error| e.downcast::<DoesNotFit>().unwrap().key;
        let e = layout_ab("e", Arch::X86_64, 128 * MIB, 65 * MIB, 64 * MIB, 0).unwrap_err();
        assert!(
            e.to_string().contains("ab.slot_size 64 MiB is too small"),
            "{e}"
        );
        assert_eq!(key(e), ("ab", "slot_size"));
        let e = layout(
            "id",
            Arch::X86_64,
            64 * MIB,
            500 * MIB,
            &[],
            Some(256 * MIB),
            false,
        )
        .unwrap_err();
        assert_eq!(key(e), ("disk", "size"));
    }

    #[test]
    fn the_disk_and_each_partition_are_hashed_as_their_bytes_are() {
        let d = tempfile::tempdir().unwrap();
        let l = layout("id", Arch::X86_64, 33 * MIB, 5 * MIB + 7, &[], None, false).unwrap();
        let size = l.size as usize;
        // Bytes everywhere, crossing the partitions' edges, in a file with holes.
        let mut bytes = vec![0u8; size];
        for (i, b) in bytes.iter_mut().enumerate().filter(|(i, _)| i % 3 != 0) {
            *b = (i / 4096 % 251) as u8 * u8::from(i / MIB as usize % 4 != 2);
        }
        let p = d.path().join("disk.raw");
        std::fs::write(&p, &bytes).unwrap();
        let ((whole, n), parts) = sha256_with_partitions(&p, &l).unwrap();
        assert_eq!(n, l.size);
        assert_eq!(whole, hex::encode(Sha256::digest(&bytes)));
        assert_eq!(parts.len(), l.partitions.len());
        for (part, got) in l.partitions.iter().zip(&parts) {
            let range = part.offset as usize..(part.offset + part.size) as usize;
            assert_eq!(
                *got,
                hex::encode(Sha256::digest(&bytes[range])),
                "{}",
                part.name
            );
        }
    }

    #[test]
    fn a_swap_partition_gets_the_header_mkswap_writes() {
        let d = tempfile::tempdir().unwrap();
        let size = 4 * MIB;
        // The partition at 1 MiB of a file, beside bytes that must stay as they are.
        let disk = d.path().join("disk");
        std::fs::write(&disk, vec![0xA5u8; (size + 2 * MIB) as usize]).unwrap();
        let part = Part {
            name: "swap-with-a-long-name".into(),
            type_guid: SWAP.into(),
            guid: String::new(),
            offset: MIB,
            size,
        };
        let uuid = *uuid::Uuid::parse_str("6af8c9c9-3652-85ce-b70e-b38a70f9c9ee")
            .unwrap()
            .as_bytes();
        let f = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
        write_swap(&f, &part, &uuid, &part.name).unwrap();
        let ours = std::fs::read(&disk).unwrap();
        assert!(ours[..MIB as usize].iter().all(|&b| b == 0xA5));
        // util-linux's mkswap over a file of the partition's size, with the same UUID and
        // label (which mkswap cuts to 15 bytes and a NUL), writes the same first page.
        let mk = d.path().join("mk");
        std::fs::write(&mk, vec![0xA5u8; size as usize]).unwrap();
        let o = std::process::Command::new("mkswap")
            .args([
                "-U",
                "6af8c9c9-3652-85ce-b70e-b38a70f9c9ee",
                "-L",
                "swap-with-a-long",
            ])
            .args(["-p", "4096"])
            .arg(&mk)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let theirs = std::fs::read(&mk).unwrap();
        let start = MIB as usize;
        assert!(
            ours[start..start + 4096] == theirs[..4096],
            "first page differs"
        );
        // Nothing past the header page is touched.
        assert!(ours[start + 4096..].iter().all(|&b| b == 0xA5));
        let small = Part {
            size: 16 * 1024,
            ..part
        };
        assert!(write_swap(&f, &small, &uuid, "s").is_err());
    }
}
