//! Positioned writes: into a partition of a disk file, into memory, and coalesced.

#[allow(unused_imports)]
use super::*;

/// Positioned writes, so the writer can fill a partition inside a disk file or a `Vec<u8>`.
pub trait WriteAt {
    /// Write all of `data` at byte offset `off`.
    fn write_all_at(&mut self, data: &[u8], off: u64) -> io::Result<()>;
}

impl WriteAt for Vec<u8> {
    fn write_all_at(&mut self, data: &[u8], off: u64) -> io::Result<()> {
        let off = usize::try_from(off).map_err(|_| io::Error::other("offset too large"))?;
        let end = off + data.len();
        if self.len() < end {
            self.resize(end, 0);
        }
        self[off..end].copy_from_slice(data);
        Ok(())
    }
}

/// A window of a file starting at `base` (a partition inside a disk image).
pub struct FileAt<'a> {
    /// The file.
    pub file: &'a File,
    /// Byte offset of the window.
    pub base: u64,
}

impl WriteAt for FileAt<'_> {
    fn write_all_at(&mut self, data: &[u8], off: u64) -> io::Result<()> {
        FileExt::write_all_at(self.file, data, self.base + off)
    }
}

/// Merges writes that follow each other into one large write: file data goes out block by
/// block (all-zero blocks are skipped to keep the image sparse), and thousands of 4 KiB
/// `pwrite`s would otherwise dominate. A gap shorter than a block (the unused tail of a file's
/// last block, which only that file owns) is bridged with zeros; longer gaps stay holes.
pub(super) struct Coalesce<'a> {
    out: &'a mut dyn WriteAt,
    buf: Vec<u8>,
    start: u64,
}

impl<'a> Coalesce<'a> {
    const LIMIT: usize = 8 << 20;

    pub(super) fn new(out: &'a mut dyn WriteAt) -> Self {
        Coalesce {
            out,
            buf: Vec::with_capacity(Self::LIMIT + BLOCK as usize),
            start: 0,
        }
    }

    pub(super) fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.out.write_all_at(&self.buf, self.start)?;
            self.buf.clear();
        }
        Ok(())
    }

    pub(super) fn inner(self) -> &'a mut dyn WriteAt {
        self.out
    }
}

impl WriteAt for Coalesce<'_> {
    fn write_all_at(&mut self, data: &[u8], off: u64) -> io::Result<()> {
        let end = self.start + self.buf.len() as u64;
        // Contiguous, or the next block boundary after a partly filled block.
        let bridgeable = !self.buf.is_empty()
            && off >= end
            && off - end < BLOCK
            && (off == end || off.is_multiple_of(BLOCK));
        if bridgeable && self.buf.len() + data.len() <= Self::LIMIT {
            self.buf.resize((off - self.start) as usize, 0);
            self.buf.extend_from_slice(data);
            return Ok(());
        }
        self.flush()?;
        if data.len() >= Self::LIMIT {
            return self.out.write_all_at(data, off);
        }
        self.start = off;
        self.buf.extend_from_slice(data);
        Ok(())
    }
}
