//! Converted disk formats: `qemu-img convert` writes them, then the random identifiers it
//! stamps into VMDK (CID) and VHDX (file, data and virtual disk GUIDs) are replaced with ones
//! derived from the image, so converted disks reproduce too. Every offset read from a header
//! is checked against the file size.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::{MIB, SECTOR};
use crate::base::identity::derived_guid;

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

/// zstd worker threads for `disk.raw.zst`. Fixed: the frame layout then never depends on the
/// build host's cores, so disk.raw.zst (whose digest the manifest records) reproduces
/// everywhere.
const ZSTD_WORKERS: u32 = 4;

/// `qemu-img convert` the raw disk to `format` (`qcow2`, `vmdk`, `vhdx`) at `out`, then pin
/// the identifiers it stamps at random.
pub fn convert(raw: &Path, out: &Path, format: &str, identity: &str) -> Result<()> {
    crate::base::tool::run(
        std::process::Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", format])
            .arg(raw)
            .arg(out),
        "qemu-utils",
        &format!("qemu-img convert of {} to {format} failed", raw.display()),
    )?;
    pin_converted(out, format, identity)
}

/// Compress the raw disk into `out` with zstd at `level` (a checksummed frame, fixed worker
/// count), telling `progress` of the bytes read; stops at Ctrl-C.
pub fn compress_zstd(raw: &Path, out: &Path, level: i32, progress: &dyn Fn(u64)) -> Result<()> {
    use std::io::{Read, Write};
    let ctx = || format!("compressing {} into {}", raw.display(), out.display());
    let file = File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut enc = zstd::stream::write::Encoder::new(file, level).with_context(ctx)?;
    enc.multithread(ZSTD_WORKERS).with_context(ctx)?;
    enc.include_checksum(true).with_context(ctx)?;
    let mut input = File::open(raw)
        .and_then(crate::base::sparse::SparseReader::new)
        .with_context(|| format!("opening {}", raw.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        crate::interrupt::check()?;
        let n = input.read(&mut buf).with_context(ctx)?;
        if n == 0 {
            break;
        }
        enc.write_all(&buf[..n]).with_context(ctx)?;
        progress(n as u64);
    }
    enc.finish()
        .with_context(ctx)?
        .sync_all()
        .with_context(ctx)?;
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
    // Sector counts from the header: a huge one must not wrap around when made bytes (found
    // by the disk_headers fuzz target).
    let bytes_at = |at: usize| {
        u64::from_le_bytes(head[at..at + 8].try_into().unwrap_or_default()).checked_mul(SECTOR)
    };
    let (Some(offset), Some(size)) = (bytes_at(28), bytes_at(36)) else {
        bail!("the VMDK descriptor's offset or size is out of range");
    };
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
    use super::*;
    use std::path::Path;
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

    #[test]
    fn a_descriptor_offset_that_overflows_is_an_error_not_a_panic() {
        let mut d = vec![0u8; 4096];
        d[..4].copy_from_slice(b"KDMV");
        d[28..36].copy_from_slice(&(u64::MAX / 3).to_le_bytes());
        d[36..44].copy_from_slice(&1u64.to_le_bytes());
        let e = pin_bytes(&mut d, "vmdk", "x-1.0.0-x86_64").unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e:#}");
    }
}
