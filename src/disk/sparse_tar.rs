//! A disk image as one sparse member of a GNU tar (the old GNU sparse format, type `S`, which
//! `tar --format=oldgnu -S` writes and Compute Engine's import instructions use): only the
//! disk's data is stored, with a map of where it goes; the holes come back as zeros when the
//! member is extracted. A fixed-size disk of mostly holes is then as cheap to pack as the data
//! it holds (a 16 GiB disk holding 20 MiB had every zero gzip'd).
//!
//! The map is found by content, not asked of the file system: a piece of `CHUNK` bytes is
//! data when it holds a byte that is not zero. Which file system the build wrote to (one that
//! reports holes, one that does not) therefore cannot change the tarball. Pieces wholly inside
//! a hole the file system reports are zero and are not read.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::base::sparse::{data_extents, is_zero};

/// The granularity of the map.
const CHUNK: u64 = 64 << 10;

/// Where the data of a file is, as (offset, length) runs in order.
pub type Map = Vec<(u64, u64)>;

/// The data runs of `f` (`len` bytes): maximal runs of `CHUNK`-aligned pieces that hold a
/// byte that is not zero.
pub fn data_map(f: &File, len: u64) -> io::Result<Map> {
    let mut map: Map = Vec::new();
    let mut buf = vec![0u8; CHUNK as usize];
    let mut next = 0; // the first piece not yet looked at
    for (start, n) in data_extents(f, len) {
        let first = (start / CHUNK).max(next);
        let last = (start + n).div_ceil(CHUNK);
        for piece in first..last {
            crate::interrupt::check().map_err(io::Error::other)?;
            let at = piece * CHUNK;
            let want = CHUNK.min(len - at) as usize;
            f.read_exact_at(&mut buf[..want], at)?;
            if is_zero(&buf[..want]) {
                continue;
            }
            match map.last_mut() {
                Some((o, l)) if *o + *l == at => *l += want as u64,
                _ => map.push((at, want as u64)),
            }
        }
        next = next.max(last);
    }
    Ok(map)
}

/// The old GNU sparse map as tar stores it: the member header's four entries, then extension
/// blocks of 21 each. A file that ends in a hole ends its map with an empty run at its end, as
/// GNU tar writes it, so that extraction gives the file its whole length.
fn entries(map: &Map, len: u64) -> Vec<(u64, u64)> {
    let mut e = map.clone();
    if e.last().is_none_or(|(o, l)| o + l < len) {
        e.push((len, 0));
    }
    e
}

/// Append `raw` to `t` as the sparse member `name`, with `mtime`.
pub fn append<W: Write>(
    t: &mut tar::Builder<W>,
    raw: &Path,
    name: &str,
    mtime: i64,
) -> io::Result<()> {
    let f = File::open(raw)?;
    let len = f.metadata()?.len();
    let map = data_map(&f, len)?;
    let stored: u64 = map.iter().map(|(_, l)| l).sum();
    let e = entries(&map, len);
    let mut h = crate::base::fsx::tar_file_header(tar::Header::new_gnu(), name, stored, mtime)?;
    h.set_entry_type(tar::EntryType::GNUSparse);
    let (head, rest) = e.split_at(e.len().min(4));
    {
        let g = h
            .as_gnu_mut()
            .ok_or_else(|| io::Error::other("not a GNU tar header"))?;
        g.set_real_size(len);
        for (slot, (o, l)) in g.sparse.iter_mut().zip(head) {
            slot.set_offset(*o);
            slot.set_length(*l);
        }
        g.isextended[0] = u8::from(!rest.is_empty());
    }
    h.set_cksum();
    // The extension blocks go between the header and the data: tar::Builder writes what it is
    // given after the header and pads the whole to 512 bytes, and each block is 512 bytes.
    let mut blocks = Vec::new();
    let groups: Vec<&[(u64, u64)]> = rest.chunks(21).collect();
    for (i, group) in groups.iter().enumerate() {
        let mut x = tar::GnuExtSparseHeader::new();
        for (slot, (o, l)) in x.sparse_mut().iter_mut().zip(group.iter()) {
            slot.set_offset(*o);
            slot.set_length(*l);
        }
        x.isextended[0] = u8::from(i + 1 < groups.len());
        blocks.extend_from_slice(x.as_bytes());
    }
    let data = Runs {
        file: f,
        runs: map,
        at: 0,
        done: 0,
    };
    t.append(&h, io::Cursor::new(blocks).chain(data))
}

/// The bytes of the data runs, one after another.
struct Runs {
    file: File,
    runs: Map,
    /// Index of the run being read, and how much of it has been.
    at: usize,
    done: u64,
}

impl Read for Runs {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        crate::interrupt::check().map_err(io::Error::other)?;
        while let Some(&(o, l)) = self.runs.get(self.at) {
            if self.done == l {
                (self.at, self.done) = (self.at + 1, 0);
                continue;
            }
            let want = usize::try_from(l - self.done)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            let n = self.file.read_at(&mut buf[..want], o + self.done)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the disk became shorter while it was packed",
                ));
            }
            self.done += n as u64;
            return Ok(n);
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(dir: &Path, len: u64, data: &[(u64, &[u8])]) -> std::path::PathBuf {
        let p = dir.join("disk.raw");
        let f = File::create(&p).unwrap();
        f.set_len(len).unwrap();
        for (at, bytes) in data {
            f.write_all_at(bytes, *at).unwrap();
        }
        p
    }

    /// What a reader that knows the format (the tar crate's, which GNU tar agrees with in the
    /// end-to-end lane) gives back: the file byte for byte.
    fn round_trip(p: &Path) -> (Vec<u8>, tar::EntryType, u64) {
        let mut t = tar::Builder::new(Vec::new());
        append(&mut t, p, "disk.raw", 1).unwrap();
        let bytes = t.into_inner().unwrap();
        let mut a = tar::Archive::new(&bytes[..]);
        let mut entries = a.entries().unwrap();
        let mut e = entries.next().unwrap().unwrap();
        let kind = e.header().entry_type();
        let size = e.header().entry_size().unwrap();
        let mut out = Vec::new();
        e.read_to_end(&mut out).unwrap();
        drop(e);
        assert!(entries.next().is_none(), "one member");
        (out, kind, size)
    }

    #[test]
    fn a_sparse_member_extracts_to_the_same_bytes_and_stores_only_the_data() {
        let t = tempfile::tempdir().unwrap();
        // Data at the start, a run across a chunk boundary, a zero-filled written range (data
        // to the file system, a hole to the map), and a hole at the end.
        let p = disk(
            t.path(),
            40 * CHUNK + 100,
            &[
                (0, b"boot"),
                (3 * CHUNK - 2, b"across"),
                (10 * CHUNK, &[0u8; 8192]),
                (20 * CHUNK + 5, b"x"),
            ],
        );
        let want = std::fs::read(&p).unwrap();
        let f = File::open(&p).unwrap();
        let map = data_map(&f, want.len() as u64).unwrap();
        assert_eq!(
            map,
            vec![(0, CHUNK), (2 * CHUNK, 2 * CHUNK), (20 * CHUNK, CHUNK)]
        );
        let (got, kind, size) = round_trip(&p);
        assert_eq!(kind, tar::EntryType::GNUSparse);
        assert_eq!(size, 4 * CHUNK, "only the data is stored");
        assert!(got == want, "extracted bytes differ");
    }

    #[test]
    fn many_runs_spill_into_extension_blocks_and_an_empty_disk_keeps_its_length() {
        let t = tempfile::tempdir().unwrap();
        // 30 separate runs: 4 in the header, then two extension blocks (21 + 6), the last run
        // ending the file.
        let data: Vec<(u64, &[u8])> = (0..30).map(|i| (i * 2 * CHUNK, &b"z"[..])).collect();
        let p = disk(t.path(), 59 * CHUNK, &data);
        let (got, _, size) = round_trip(&p);
        assert_eq!(size, 30 * CHUNK);
        let want = std::fs::read(&p).unwrap();
        assert!(got == want);
        // GNU tar reads the extension blocks the same way.
        let mut b = tar::Builder::new(Vec::new());
        append(&mut b, &p, "disk.raw", 1).unwrap();
        let x = t.path().join("x");
        std::fs::create_dir(&x).unwrap();
        std::fs::write(t.path().join("a.tar"), b.into_inner().unwrap()).unwrap();
        let o = std::process::Command::new("tar")
            .arg("-xf")
            .arg(t.path().join("a.tar"))
            .arg("-C")
            .arg(&x)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(std::fs::read(x.join("disk.raw")).unwrap() == want);
        let e = t.path().join("empty");
        File::create(&e).unwrap().set_len(5 * CHUNK).unwrap();
        let (got, _, size) = round_trip(&e);
        assert_eq!((got.len() as u64, size), (5 * CHUNK, 0));
        assert!(got.iter().all(|b| *b == 0));
    }
}
