//! Reading a GPT back from a disk image, for `inspect`: the primary header (signature,
//! header CRC-32, where the entry array is), the entry array (its CRC-32) and each used entry.
//! Every length and offset read is checked against the file; a disk that is not a GPT disk
//! Ingot can read is a typed error naming what is wrong.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::SECTOR;

/// Why a disk could not be read as GPT.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum GptError {
    /// Reading failed.
    #[error("{0}")]
    Io(String),
    /// Shorter than a protective MBR and a GPT header.
    #[error("{0} bytes is too short for a GPT disk")]
    TooShort(u64),
    /// No `EFI PART` signature at LBA 1.
    #[error("no GPT header at LBA 1 (not a GPT disk)")]
    NoHeader,
    /// The header's CRC-32 does not match.
    #[error("the GPT header's CRC-32 does not match (corrupt header)")]
    HeaderCrc,
    /// Header fields out of range.
    #[error("the GPT header is out of range: {0}")]
    Range(String),
    /// The entry array's CRC-32 does not match.
    #[error("the GPT partition entries' CRC-32 does not match (corrupt table)")]
    EntriesCrc,
}

/// One used partition entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptEntry {
    /// Name (UTF-16LE in the entry).
    pub name: String,
    /// Type GUID, upper case.
    pub type_guid: String,
    /// Unique partition GUID, upper case.
    pub guid: String,
    /// First byte.
    pub offset: u64,
    /// Bytes.
    pub size: u64,
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = flate2::Crc::new();
    c.update(data);
    c.sum()
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn guid(b: &[u8]) -> String {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    uuid::Uuid::from_bytes_le(a).to_string().to_uppercase()
}

/// Parse the GPT of a disk held by `read_at` (`len` bytes long).
pub fn parse_gpt(
    len: u64,
    read_at: &dyn Fn(&mut [u8], u64) -> std::io::Result<()>,
) -> Result<(String, Vec<GptEntry>), GptError> {
    if len < 34 * SECTOR {
        return Err(GptError::TooShort(len));
    }
    let io = |e: std::io::Error| GptError::Io(e.to_string());
    let mut hdr = [0u8; 512];
    read_at(&mut hdr, SECTOR).map_err(io)?;
    if &hdr[..8] != b"EFI PART" {
        return Err(GptError::NoHeader);
    }
    let hsize = le32(&hdr, 12) as usize;
    if !(92..=512).contains(&hsize) {
        return Err(GptError::Range(format!("header size {hsize}")));
    }
    let want = le32(&hdr, 16);
    let mut h = hdr[..hsize].to_vec();
    h[16..20].fill(0);
    if crc32(&h) != want {
        return Err(GptError::HeaderCrc);
    }
    let disk_guid = guid(&hdr[56..72]);
    let entries_lba = le64(&hdr, 72);
    let count = le32(&hdr, 80) as u64;
    let esize = le32(&hdr, 84) as u64;
    if !(128..=4096).contains(&esize) || count > 1024 {
        return Err(GptError::Range(format!("{count} entries of {esize} bytes")));
    }
    let table_len = count * esize;
    let table_at = entries_lba
        .checked_mul(SECTOR)
        .filter(|at| at.checked_add(table_len).is_some_and(|end| end <= len))
        .ok_or_else(|| GptError::Range(format!("entry array at LBA {entries_lba}")))?;
    let mut table = vec![0u8; table_len as usize];
    read_at(&mut table, table_at).map_err(io)?;
    if crc32(&table) != le32(&hdr, 88) {
        return Err(GptError::EntriesCrc);
    }
    let mut out = Vec::new();
    for e in table.chunks_exact(esize as usize) {
        if e[..16].iter().all(|&b| b == 0) {
            continue;
        }
        let (first, last) = (le64(e, 32), le64(e, 40));
        let size = last
            .checked_sub(first)
            .and_then(|n| n.checked_add(1))
            .and_then(|n| n.checked_mul(SECTOR))
            .filter(|s| first.saturating_mul(SECTOR).saturating_add(*s) <= len)
            .ok_or_else(|| GptError::Range(format!("partition LBA {first}..{last}")))?;
        let units: Vec<u16> = e[56..128]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        out.push(GptEntry {
            name: String::from_utf16_lossy(&units),
            type_guid: guid(&e[..16]),
            guid: guid(&e[16..32]),
            offset: first * SECTOR,
            size,
        });
    }
    Ok((disk_guid, out))
}

/// Read the GPT of a disk image file: (disk GUID, used entries).
pub fn read_gpt(path: &Path) -> anyhow::Result<(String, Vec<GptEntry>)> {
    use anyhow::Context;
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = f
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    parse_gpt(len, &|buf, at| f.read_exact_at(buf, at))
        .with_context(|| format!("{}: not a GPT disk Ingot can read", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_mem(d: &[u8]) -> Result<(String, Vec<GptEntry>), GptError> {
        parse_gpt(d.len() as u64, &|buf, at| {
            let at = at as usize;
            buf.copy_from_slice(&d[at..at + buf.len()]);
            Ok(())
        })
    }

    #[test]
    fn random_zero_and_short_disks_are_refused() {
        assert_eq!(parse_mem(&[]).err(), Some(GptError::TooShort(0)));
        assert_eq!(
            parse_mem(&vec![0u8; 1 << 20]).err(),
            Some(GptError::NoHeader)
        );
        let mut junk = vec![0u8; 1 << 20];
        let mut x = 0x1234_5678u32;
        for b in &mut junk {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        assert_eq!(parse_mem(&junk).err(), Some(GptError::NoHeader));
        junk[512..520].copy_from_slice(b"EFI PART");
        assert!(parse_mem(&junk).is_err());
    }

    #[test]
    fn reads_back_the_table_ingot_writes() {
        let l = super::super::layout(
            "t-1.0.0-x86_64",
            crate::config::Arch::X86_64,
            64 << 20,
            100 << 20,
            &[],
            None,
            true,
        )
        .unwrap();
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("disk.raw");
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        f.set_len(l.size).unwrap();
        super::super::write_gpt(&mut f, &l).unwrap();
        let (guid, parts) = read_gpt(&p).unwrap();
        assert_eq!(guid, l.disk_guid.to_uppercase());
        assert_eq!(parts.len(), l.partitions.len());
        for (a, b) in parts.iter().zip(&l.partitions) {
            assert_eq!(
                (&a.name, &a.type_guid, &a.guid, a.offset, a.size),
                (
                    &b.name,
                    &b.type_guid.to_uppercase(),
                    &b.guid.to_uppercase(),
                    b.offset,
                    b.size
                )
            );
        }
    }
}
