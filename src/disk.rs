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

const MIB: u64 = 1 << 20;
const SECTOR: u64 = 512;

/// EFI system partition type.
pub const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
/// Generic Linux data.
pub const LINUX_DATA: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";

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

fn type_for(kind: &str, arch: Arch) -> Result<String> {
    Ok(match kind {
        "root" => arch.root_partition_type().to_string(),
        "linux" | "data" => LINUX_DATA.to_string(),
        "home" => "933AC7E1-2EB4-4F13-B844-0E14E2AEF915".to_string(),
        "var" => "4D21B016-B534-45C2-A9FB-5C16E091FD2D".to_string(),
        "swap" => "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F".to_string(),
        g if uuid::Uuid::parse_str(g).is_ok() => g.to_uppercase(),
        other => bail!("partition type `{other}` is not root, linux, home, var, swap or a GUID"),
    })
}

/// Plan the disk: ESP first, root second, extras after; `fixed` is the whole disk size when the
/// hardware profile sets one.
pub fn layout(
    identity: &str,
    arch: Arch,
    esp_size: u64,
    root_size: u64,
    extras: &[ExtraPartition],
    fixed: Option<u64>,
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
    let extras_size: u64 = extras.iter().map(|e| align(e.size.0)).sum();
    let root_size = match fixed {
        Some(total) => {
            let room = total.saturating_sub(at + extras_size + MIB);
            if room < align(root_size) {
                bail!(
                    "disk.size {} MiB is too small: the root filesystem needs {} MiB, the ESP {} MiB and extra partitions {} MiB (plus 2 MiB for the partition tables)",
                    total / MIB, align(root_size) / MIB, esp_size / MIB, extras_size / MIB
                );
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
    Ok(Layout {
        disk_guid: derived_guid(identity, "disk").to_string().to_uppercase(),
        size: fixed.unwrap_or(at + MIB),
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

/// SHA-256 and size of the whole disk image and of each partition, in one sequential read.
pub fn sha256_with_partitions(path: &Path, l: &Layout) -> Result<((String, u64), Vec<String>)> {
    let mut f = File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut whole = Sha256::new();
    let mut parts: Vec<Sha256> = l.partitions.iter().map(|_| Sha256::new()).collect();
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        whole.update(chunk);
        let end = pos + n as u64;
        for (p, h) in l.partitions.iter().zip(parts.iter_mut()) {
            let (a, b) = (p.offset.max(pos), (p.offset + p.size).min(end));
            if a < b {
                h.update(&chunk[(a - pos) as usize..(b - pos) as usize]);
            }
        }
        pos = end;
    }
    Ok((
        (hex::encode(whole.finalize()), pos),
        parts
            .into_iter()
            .map(|h| hex::encode(h.finalize()))
            .collect(),
    ))
}

/// `qemu-img convert` stamps random identifiers into VMDK and VHDX files; replace them with
/// ones derived from the image identity so that those artifacts are reproducible too.
pub fn pin_converted(path: &Path, format: &str, identity: &str) -> Result<()> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut io = &f;
    match format {
        "vmdk" => pin_vmdk(&mut io, identity),
        "vhdx" => pin_vhdx(&mut io, identity),
        _ => Ok(()),
    }
    .with_context(|| format!("pinning the identifiers of {}", path.display()))?;
    f.sync_all()?;
    Ok(())
}

/// Positioned reads and writes over a converted disk: the file itself, or bytes in memory for
/// tests and fuzzing. Every offset taken from a header is checked against `size` first.
pub trait PosIo {
    /// Fill `buf` from `off`.
    fn read_exact_at(&mut self, buf: &mut [u8], off: u64) -> io::Result<()>;
    /// Write `buf` at `off`.
    fn write_all_at(&mut self, buf: &[u8], off: u64) -> io::Result<()>;
    /// Current length in bytes.
    fn size(&mut self) -> io::Result<u64>;
}

impl PosIo for &File {
    fn read_exact_at(&mut self, buf: &mut [u8], off: u64) -> io::Result<()> {
        FileExt::read_exact_at(*self, buf, off)
    }
    fn write_all_at(&mut self, buf: &[u8], off: u64) -> io::Result<()> {
        FileExt::write_all_at(*self, buf, off)
    }
    fn size(&mut self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
}

impl PosIo for Vec<u8> {
    fn read_exact_at(&mut self, buf: &mut [u8], off: u64) -> io::Result<()> {
        let start = usize::try_from(off).map_err(|_| io::Error::other("offset too large"))?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"))?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write_all_at(&mut self, buf: &[u8], off: u64) -> io::Result<()> {
        let start = usize::try_from(off).map_err(|_| io::Error::other("offset too large"))?;
        let end = start
            .checked_add(buf.len())
            .filter(|e| *e <= Vec::len(self))
            .ok_or_else(|| io::Error::other("write past the end"))?;
        self[start..end].copy_from_slice(buf);
        Ok(())
    }
    fn size(&mut self) -> io::Result<u64> {
        Ok(Vec::len(self) as u64)
    }
}

/// Pin the random identifiers of a converted disk held in memory (`vmdk` or `vhdx`).
pub fn pin_bytes(data: &mut Vec<u8>, format: &str, identity: &str) -> Result<()> {
    match format {
        "vmdk" => pin_vmdk(data, identity),
        "vhdx" => pin_vhdx(data, identity),
        _ => Ok(()),
    }
}

/// VMDK (monolithicSparse): the descriptor's content id line `CID=…`. QEMU prints it without
/// zero padding, so the descriptor text is rewritten whole within its fixed area.
fn pin_vmdk(f: &mut dyn PosIo, identity: &str) -> Result<()> {
    let mut head = [0u8; 512];
    f.read_exact_at(&mut head, 0)?;
    if &head[..4] != b"KDMV" {
        bail!("not a sparse VMDK (no KDMV magic)");
    }
    let sectors = |at: usize| u64::from_le_bytes(head[at..at + 8].try_into().unwrap_or_default());
    let (offset, size) = (sectors(28) * SECTOR, sectors(36) * SECTOR);
    if offset == 0 || size == 0 || size > 1 << 20 {
        bail!("no embedded VMDK descriptor");
    }
    if offset.saturating_add(size) > f.size()? {
        bail!("the VMDK descriptor lies past the end of the file");
    }
    let mut area = vec![0u8; size as usize];
    f.read_exact_at(&mut area, offset)?;
    let end = area.iter().position(|&b| b == 0).unwrap_or(area.len());
    let text = std::str::from_utf8(&area[..end]).context("VMDK descriptor is not text")?;
    let cid = format!(
        "{:08x}",
        derived_guid(identity, "vmdk-cid").as_u128() as u32
    );
    let mut found = false;
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        if line.starts_with("CID=") {
            found = true;
            out.push_str(&format!("CID={cid}\n"));
        } else {
            out.push_str(line);
        }
    }
    if !found {
        bail!("no CID= line in the VMDK descriptor");
    }
    if out.len() > area.len() {
        bail!("the VMDK descriptor has no room for the pinned CID");
    }
    let mut new = out.into_bytes();
    new.resize(area.len(), 0);
    f.write_all_at(&new, offset)?;
    Ok(())
}

/// On-disk bytes of a GUID (first three fields little-endian), as VHDX stores them.
fn guid_bytes(g: uuid::Uuid) -> [u8; 16] {
    g.to_bytes_le()
}

/// The 32-byte entry whose leading GUID is `id`, in a 64 KiB VHDX table (region table or
/// metadata table) whose entries start at `first`.
fn vhdx_entry(table: &[u8], first: usize, count: usize, id: uuid::Uuid) -> Option<&[u8]> {
    table[first..]
        .chunks_exact(32)
        .take(count)
        .find(|e| e[..16] == guid_bytes(id))
}

/// VHDX: the file and data write GUIDs and sequence numbers of both headers (whose CRC-32C is
/// then recomputed), the stale log entries (ignored while the headers' log GUID is zero) and
/// the virtual disk id (Page 83 data) in the metadata region.
fn pin_vhdx(f: &mut dyn PosIo, identity: &str) -> Result<()> {
    const HEADERS: [u64; 2] = [64 << 10, 128 << 10];
    let mut sig = [0u8; 8];
    f.read_exact_at(&mut sig, 0)?;
    if &sig != b"vhdxfile" {
        bail!("not a VHDX file");
    }
    let mut hdrs = [vec![0u8; 4096], vec![0u8; 4096]];
    for (h, off) in hdrs.iter_mut().zip(HEADERS) {
        f.read_exact_at(h, off)?;
        if &h[..4] != b"head" {
            bail!("no VHDX header at {off}");
        }
    }
    let seq = |h: &[u8]| u64::from_le_bytes(h[8..16].try_into().unwrap_or_default());
    let base = seq(&hdrs[0]).min(seq(&hdrs[1]));
    // Equal GUIDs stay equal, different ones stay different.
    let mut seen: Vec<[u8; 16]> = Vec::new();
    let mut pinned = |orig: &[u8]| -> [u8; 16] {
        let o: [u8; 16] = orig.try_into().unwrap_or_default();
        let i = seen.iter().position(|s| *s == o).unwrap_or_else(|| {
            seen.push(o);
            seen.len() - 1
        });
        guid_bytes(derived_guid(identity, &format!("vhdx-guid-{i}")))
    };
    let mut log = None;
    for h in hdrs.iter_mut() {
        if h[48..64].iter().any(|&b| b != 0) {
            bail!("the VHDX log is still active (non-zero log GUID)");
        }
        let s = seq(h) - base + 1;
        h[8..16].copy_from_slice(&s.to_le_bytes());
        for field in [16..32, 32..48] {
            let g = pinned(&h[field.clone()]);
            h[field].copy_from_slice(&g);
        }
        let log_len = u32::from_le_bytes(h[68..72].try_into()?);
        let log_off = u64::from_le_bytes(h[72..80].try_into()?);
        log = Some((log_off, log_len));
        h[4..8].fill(0);
        let c = crc32c::crc32c(h);
        h[4..8].copy_from_slice(&c.to_le_bytes());
    }
    for (h, off) in hdrs.iter().zip(HEADERS) {
        f.write_all_at(h, off)?;
    }
    if let Some((off, len)) = log {
        // The log lies inside the file qemu-img wrote; never zero past its end.
        let end = off.saturating_add(u64::from(len));
        if len > 0 && off >= MIB && end <= f.size()? {
            let zeros = vec![0u8; 1 << 20];
            let mut at = off;
            while at < end {
                let n = (end - at).min(zeros.len() as u64);
                f.write_all_at(&zeros[..n as usize], at)?;
                at += n;
            }
        }
    }
    // Region table → metadata region → the Page 83 item.
    const METADATA_REGION: uuid::Uuid = uuid::uuid!("8B7CA206-4790-4B9A-B8FE-575F050F886E");
    const PAGE83: uuid::Uuid = uuid::uuid!("BECA12AB-B2E6-4523-93EF-C309E000C746");
    let mut rt = vec![0u8; 64 << 10];
    f.read_exact_at(&mut rt, 192 << 10)?;
    if &rt[..4] != b"regi" {
        bail!("no VHDX region table");
    }
    let count = u32::from_le_bytes(rt[8..12].try_into()?) as usize;
    let meta = vhdx_entry(&rt, 16, count, METADATA_REGION)
        .map(|e| u64::from_le_bytes(e[16..24].try_into().unwrap_or_default()))
        .context("no metadata region in the VHDX region table")?;
    let mut table = vec![0u8; 64 << 10];
    if meta.saturating_add(64 << 10) > f.size()? {
        bail!("the VHDX metadata region lies past the end of the file");
    }
    f.read_exact_at(&mut table, meta)?;
    if &table[..8] != b"metadata" {
        bail!("no VHDX metadata table");
    }
    let entries = u16::from_le_bytes(table[10..12].try_into()?) as usize;
    let item = vhdx_entry(&table, 32, entries, PAGE83)
        .map(|e| u32::from_le_bytes(e[16..20].try_into().unwrap_or_default()))
        .context("no virtual disk id in the VHDX metadata")?;
    let at = meta + u64::from(item);
    if at.saturating_add(16) > f.size()? {
        bail!("the VHDX virtual disk id lies past the end of the file");
    }
    f.write_all_at(&guid_bytes(derived_guid(identity, "vhdx-disk-id")), at)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    fn fake_vmdk(dir: &Path, name: &str, cid: &str) -> std::path::PathBuf {
        let mut d = vec![0u8; 512 * 24];
        d[..4].copy_from_slice(b"KDMV");
        d[28..36].copy_from_slice(&1u64.to_le_bytes());
        d[36..44].copy_from_slice(&20u64.to_le_bytes());
        let text = format!("# Disk DescriptorFile\nversion=1\nCID={cid}\nparentCID=ffffffff\ncreateType=\"monolithicSparse\"\n");
        d[512..512 + text.len()].copy_from_slice(text.as_bytes());
        let p = dir.join(name);
        std::fs::write(&p, d).unwrap();
        p
    }

    #[test]
    fn vmdk_cid_is_pinned_whatever_its_width() {
        let t = tempfile::tempdir().unwrap();
        let a = fake_vmdk(t.path(), "a.vmdk", "9f3a21c4");
        let b = fake_vmdk(t.path(), "b.vmdk", "3a21c4");
        for p in [&a, &b] {
            pin_converted(p, "vmdk", "img-1.0.0-x86_64").unwrap();
        }
        let (x, y) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        assert_eq!(x, y);
        let text = String::from_utf8_lossy(&x[512..1024]);
        let cid = text.lines().find(|l| l.starts_with("CID=")).unwrap();
        assert_eq!(cid.len(), 12, "{text}");
        assert!(text.contains("\nparentCID=ffffffff\ncreateType"), "{text}");
    }

    use super::*;

    #[test]
    fn layout_aligns_and_rejects_small_fixed_disks() {
        let l = layout("id", Arch::X86_64, 64 * MIB, 100 * MIB + 5, &[], None).unwrap();
        assert!(l
            .partitions
            .iter()
            .all(|p| p.offset % MIB == 0 && p.size % MIB == 0));
        assert_eq!(l.partitions[1].size, 101 * MIB);
        assert!(layout(
            "id",
            Arch::X86_64,
            64 * MIB,
            500 * MIB,
            &[],
            Some(256 * MIB)
        )
        .is_err());
    }
}
