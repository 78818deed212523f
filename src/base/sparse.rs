//! Reading a sparse file whole: the bytes of its data regions from the file, the bytes of its
//! holes as zeros from memory. What is read is what a plain read would give, byte for byte, so
//! digests and compressed output do not change; but a disk image of mostly holes (a 16 GiB
//! fixed-size disk holding 20 MiB) is no longer paged in as zeros by the kernel, which spent
//! two thirds of zstd's time zero-filling pages and evicted the page cache doing it.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use rustix::fs::SeekFrom;

/// Whether `buf` holds only zero bytes. Folds 4 KiB at a time without an early exit inside a
/// block, which the compiler vectorises (a byte-at-a-time `all` is several times slower, and a
/// disk is mostly zeros).
pub fn is_zero(buf: &[u8]) -> bool {
    buf.chunks(4096)
        .all(|c| c.iter().fold(0u8, |acc, b| acc | b) == 0)
}

/// The data extents of `file` (`len` bytes) as the file system reports them, as (offset,
/// length) in order; the whole file when it cannot report holes.
pub fn data_extents(file: &File, len: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < len {
        let start = match rustix::fs::seek(file, SeekFrom::Data(pos)) {
            Ok(s) if s < len => s,
            Ok(_) | Err(rustix::io::Errno::NXIO) => break,
            Err(_) => return vec![(0, len)],
        };
        let end = rustix::fs::seek(file, SeekFrom::Hole(start))
            .unwrap_or(len)
            .clamp(start + 1, len);
        out.push((start, end - start));
        pos = end;
    }
    out
}

/// A reader over a file that answers its holes (as `lseek(SEEK_DATA/SEEK_HOLE)` reports them)
/// with zeros and reads only its data. A filesystem that cannot report holes reads as one data
/// region, as before.
pub struct SparseReader {
    file: File,
    /// Next byte to return.
    pos: u64,
    /// The file's length when opened: the reader ends there.
    len: u64,
    /// End of the region `pos` is in, and whether that region is a hole.
    region_end: u64,
    hole: bool,
}

impl SparseReader {
    /// Read `file` from its start.
    pub fn new(file: File) -> io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(SparseReader {
            file,
            pos: 0,
            len,
            region_end: 0,
            hole: false,
        })
    }

    /// Find the region that starts at `self.pos`.
    fn next_region(&mut self) {
        let pos = self.pos;
        match rustix::fs::seek(&self.file, SeekFrom::Data(pos)) {
            // Holes up to the next data, or to the end.
            Ok(data) if data > self.pos => {
                (self.hole, self.region_end) = (true, data.min(self.len));
            }
            Err(rustix::io::Errno::NXIO) => (self.hole, self.region_end) = (true, self.len),
            // Data here: up to the next hole (the end counts as one).
            Ok(_) => {
                let end = rustix::fs::seek(&self.file, SeekFrom::Hole(pos)).unwrap_or(self.len);
                (self.hole, self.region_end) = (false, end.clamp(self.pos + 1, self.len));
            }
            // No hole reporting here (EINVAL): all data.
            Err(_) => (self.hole, self.region_end) = (false, self.len),
        }
    }
}

impl Read for SparseReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len || buf.is_empty() {
            return Ok(0);
        }
        if self.pos >= self.region_end {
            self.next_region();
        }
        let want = usize::try_from(self.region_end - self.pos)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = if self.hole {
            buf[..want].fill(0);
            want
        } else {
            self.file.read_at(&mut buf[..want], self.pos)?
        };
        // A file cut short while it is read ends the reading there.
        if n == 0 {
            self.len = self.pos;
        }
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeros_are_told_from_data_in_any_block() {
        assert!(is_zero(&[]));
        assert!(is_zero(&[0u8; 10_000]));
        let mut b = vec![0u8; 10_000];
        b[9_999] = 1;
        assert!(!is_zero(&b));
        b[9_999] = 0;
        b[0] = 0x80;
        assert!(!is_zero(&b));
    }
    use std::io::{Seek, Write};

    #[test]
    fn a_sparse_file_reads_as_a_plain_read_gives_it() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        let mut f = File::create(&p).unwrap();
        // Holes before, between and after data; data regions not aligned to blocks.
        for (at, bytes) in [(3 << 20, &b"abc"[..]), ((7 << 20) + 4093, &[7u8; 9000][..])] {
            f.seek(io::SeekFrom::Start(at)).unwrap();
            f.write_all(bytes).unwrap();
        }
        f.set_len(12 << 20).unwrap();
        drop(f);
        let plain = std::fs::read(&p).unwrap();
        for chunk in [1usize, 4096, 1 << 20, 5 << 20] {
            let mut r = SparseReader::new(File::open(&p).unwrap()).unwrap();
            let mut got = Vec::new();
            let mut buf = vec![0xAAu8; chunk];
            loop {
                let n = r.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            assert_eq!(got.len(), plain.len(), "chunk {chunk}");
            assert!(got == plain, "chunk {chunk}: the bytes differ");
        }
        // A file of data alone, and an empty one.
        std::fs::write(&p, b"xyz").unwrap();
        let mut s = String::new();
        SparseReader::new(File::open(&p).unwrap())
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "xyz");
        std::fs::write(&p, b"").unwrap();
        let mut v = Vec::new();
        SparseReader::new(File::open(&p).unwrap())
            .unwrap()
            .read_to_end(&mut v)
            .unwrap();
        assert!(v.is_empty());
    }
}
