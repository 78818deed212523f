//! disk.raw rebuilt as a blob streams in, from disk.raw.zst (decompressed straight into
//! buffers) or from disk.qcow2 (its clusters copied out in disk order), with a second thread
//! hashing and writing those buffers, leaving holes where the data is zero.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::base::sparse::is_zero;

/// disk.raw being rebuilt from the blob that streams in: `feed` it the blob, then `finish`.
pub(super) enum Rebuild {
    /// From disk.raw.zst.
    Zstd(Unzstd),
    /// From disk.qcow2.
    Qcow2(Box<crate::disk::Qcow2Stream>, Handoff),
}

impl Rebuild {
    /// Rebuild the file at `raw` from disk.raw.zst.
    pub(super) fn zstd(raw: &Path) -> Result<Self> {
        Ok(Rebuild::Zstd(Unzstd::new(Handoff::spawn(
            SparseWriter::create(raw)?,
        ))?))
    }

    /// Rebuild the file at `raw`, `size` bytes, from disk.qcow2 (`file_len` bytes).
    pub(super) fn qcow2(raw: &Path, size: u64, file_len: u64) -> Result<Self> {
        Ok(Rebuild::Qcow2(
            Box::new(crate::disk::Qcow2Stream::new(size, file_len)),
            Handoff::spawn(SparseWriter::create(raw)?),
        ))
    }

    /// The next bytes of the blob.
    pub(super) fn feed(&mut self, data: &[u8]) -> Result<()> {
        match self {
            Rebuild::Zstd(u) => Ok(u.feed(data)?),
            Rebuild::Qcow2(q, out) => q.feed(data, out),
        }
    }

    /// The blob ended: the hex SHA-256 and size of what was written.
    pub(super) fn finish(self) -> Result<(String, u64)> {
        match self {
            Rebuild::Zstd(u) => u.finish(),
            Rebuild::Qcow2(q, mut out) => {
                q.finish(&mut out)?;
                out.finish()
            }
        }
    }
}

/// Bytes per buffer handed to the disk.raw thread, and the granularity of holes in it.
const HANDOFF: usize = 1 << 20;
const HOLE: usize = 128 << 10;

/// A `SparseWriter` on a thread of its own. The thread that receives and decompresses
/// disk.raw.zst hands it full buffers, so hashing and writing disk.raw overlap with the
/// decompression: on one thread those three were the pull's longest path (about 60 % of its
/// CPU time for vm-base, against under 40 % for the largest other blob). A fixed set of
/// buffers goes round between the two threads (fresh ones would each cost page faults).
pub(super) struct Handoff {
    buf: Vec<u8>,
    free: Vec<Vec<u8>>,
    tx: Option<std::sync::mpsc::Sender<Vec<u8>>>,
    back: std::sync::mpsc::Receiver<Vec<u8>>,
    worker: Option<std::thread::JoinHandle<Result<(String, u64)>>>,
}

/// Buffers in the round.
const BUFFERS: usize = 4;

impl Handoff {
    fn spawn(mut w: SparseWriter) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let (back, returned) = std::sync::mpsc::channel();
        let worker = std::thread::spawn(move || -> Result<(String, u64)> {
            for mut b in rx {
                w.write_all(&b)
                    .with_context(|| format!("writing {}", w.path.display()))?;
                b.clear();
                // Gone only once the sender has finished.
                let _ = back.send(b);
            }
            w.finish()
        });
        Handoff {
            buf: Vec::with_capacity(HANDOFF),
            free: (1..BUFFERS).map(|_| Vec::with_capacity(HANDOFF)).collect(),
            tx: Some(tx),
            back: returned,
            worker: Some(worker),
        }
    }

    /// Hand the filled buffer over and take an empty one (waiting for the writer to free one
    /// when all are in its queue).
    fn hand_over(&mut self) -> std::io::Result<()> {
        let full = std::mem::take(&mut self.buf);
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send(full).is_ok());
        let next = match self.free.pop() {
            Some(b) => Some(b),
            None if sent => self.back.recv().ok(),
            None => None,
        };
        if let (true, Some(b)) = (sent, next) {
            self.buf = b;
            return Ok(());
        }
        // The thread stopped: its error says why.
        let why = match self.worker.take().map(|w| w.join()) {
            Some(Ok(Err(e))) => format!("{e:#}"),
            _ => "the disk.raw writer stopped".to_string(),
        };
        Err(std::io::Error::other(why))
    }

    /// Everything written: the hex SHA-256 and size of disk.raw.
    fn finish(mut self) -> Result<(String, u64)> {
        if !self.buf.is_empty() {
            let full = std::mem::take(&mut self.buf);
            if let Some(tx) = &self.tx {
                let _ = tx.send(full);
            }
        }
        drop(self.tx.take());
        match self.worker.take().map(|w| w.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => bail!("the disk.raw writer panicked"),
            None => bail!("the disk.raw writer stopped"),
        }
    }
}

impl crate::disk::RawSink for Handoff {
    fn data(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            let n = (self.buf.capacity() - self.buf.len()).min(bytes.len());
            self.buf.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.buf.len() == self.buf.capacity() {
                self.hand_over()?;
            }
        }
        Ok(())
    }

    fn zeros(&mut self, mut n: u64) -> std::io::Result<()> {
        while n > 0 {
            let room = self.buf.capacity() - self.buf.len();
            let k = usize::try_from(n).unwrap_or(usize::MAX).min(room);
            self.buf.resize(self.buf.len() + k, 0);
            n -= k as u64;
            if self.buf.len() == self.buf.capacity() {
                self.hand_over()?;
            }
        }
        Ok(())
    }
}

impl Drop for Handoff {
    /// A pull that stops early waits for the thread, which ends once its queue is written.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

/// A zstd stream decompressed straight into the buffers a `Handoff` passes on (no copy
/// through a buffer of the decoder's own).
pub(super) struct Unzstd {
    dec: zstd::stream::raw::Decoder<'static>,
    out: Handoff,
    /// The last step ended a frame with all its output given out.
    at_frame_end: bool,
}

impl Unzstd {
    fn new(out: Handoff) -> Result<Self> {
        Ok(Unzstd {
            dec: zstd::stream::raw::Decoder::new()?,
            out,
            at_frame_end: false,
        })
    }

    /// Decompress `data`, handing over every buffer it fills.
    pub(super) fn feed(&mut self, data: &[u8]) -> std::io::Result<()> {
        use zstd::stream::raw::{InBuffer, Operation, OutBuffer};
        let mut input = InBuffer::around(data);
        loop {
            // Appended after what the buffer holds (`around` alone would start at 0).
            let filled = self.out.buf.len();
            let hint = self.dec.run(
                &mut input,
                &mut OutBuffer::around_pos(&mut self.out.buf, filled),
            )?;
            self.at_frame_end = hint == 0;
            let full = self.out.buf.len() == self.out.buf.capacity();
            if full {
                self.out.hand_over()?;
            }
            // Done with `data` once it is all read and nothing waits inside the decoder: the
            // buffer had room left, or the frame ended (a further step would start a new one).
            if input.pos() == data.len() && (!full || self.at_frame_end) {
                return Ok(());
            }
        }
    }

    /// The stream must have ended with a whole frame.
    pub(super) fn finish(self) -> Result<(String, u64)> {
        if !self.at_frame_end {
            bail!("the zstd stream ends inside a frame");
        }
        self.out.finish()
    }
}

/// A file written with holes where the data is zero, hashing everything written.
struct SparseWriter {
    file: File,
    path: std::path::PathBuf,
    sha: sha2::Sha256,
    pos: u64,
}

impl SparseWriter {
    fn create(path: &Path) -> Result<Self> {
        Ok(SparseWriter {
            file: File::create(path).with_context(|| format!("creating {}", path.display()))?,
            path: path.to_path_buf(),
            sha: sha2::Digest::new(),
            pos: 0,
        })
    }

    /// Set the length (trailing holes) and return the hex SHA-256 and size.
    fn finish(self) -> Result<(String, u64)> {
        self.file
            .set_len(self.pos)
            .with_context(|| format!("writing {}", self.path.display()))?;
        Ok((hex::encode(sha2::Digest::finalize(self.sha)), self.pos))
    }
}

impl Write for SparseWriter {
    /// Hashes `buf`, then writes its runs of non-zero `HOLE`-sized blocks and skips its runs
    /// of zero ones, one system call per run.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        sha2::Digest::update(&mut self.sha, buf);
        let mut rest = buf;
        while !rest.is_empty() {
            let mut run = rest.len().min(HOLE);
            let zero = is_zero(&rest[..run]);
            while run < rest.len() {
                let end = rest.len().min(run + HOLE);
                if is_zero(&rest[run..end]) != zero {
                    break;
                }
                run = end;
            }
            if zero {
                self.file.seek(SeekFrom::Current(run as i64))?;
            } else {
                self.file.write_all(&rest[..run])?;
            }
            rest = &rest[run..];
        }
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_blocks_become_holes_and_everything_is_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.raw");
        let mut w = SparseWriter::create(&path).unwrap();
        let data = [
            vec![7u8; 4096],
            vec![0u8; 1 << 20],
            vec![9u8; 100],
            vec![0u8; 8192],
        ];
        for d in &data {
            w.write_all(d).unwrap();
        }
        let (hex, size) = w.finish().unwrap();
        let all = data.concat();
        assert_eq!(size, all.len() as u64);
        assert_eq!(
            hex,
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&all))
        );
        assert_eq!(std::fs::read(&path).unwrap(), all);
        // The megabyte of zeros was skipped, not written.
        use std::os::unix::fs::MetadataExt;
        assert!(std::fs::metadata(&path).unwrap().blocks() * 512 < 512 * 1024);
    }

    /// Decompress `compressed` through `Unzstd`, fed `step` bytes at a time.
    fn unzstd(compressed: &[u8], step: usize, path: &Path) -> Result<(String, u64)> {
        let mut u = Unzstd::new(Handoff::spawn(SparseWriter::create(path)?))?;
        for piece in compressed.chunks(step) {
            u.feed(piece)?;
        }
        u.finish()
    }

    #[test]
    fn zstd_is_rebuilt_whole_whatever_the_pieces_and_buffer_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.raw");
        // Exactly three hand-over buffers (the frame ends just as a buffer fills, which once
        // made a further step start a phantom frame), then one byte more, with zero runs
        // and data between them.
        for len in [3 * HANDOFF, 3 * HANDOFF + 1, HOLE - 1, 0] {
            let raw: Vec<u8> = (0..len)
                .map(|i| {
                    if (i / HOLE) % 3 == 1 {
                        0
                    } else {
                        (i % 251) as u8
                    }
                })
                .collect();
            let z = zstd::encode_all(&raw[..], 3).unwrap();
            for step in [1usize << 20, 7, 4096] {
                let (hex, size) = unzstd(&z, step, &path).unwrap();
                assert_eq!(size, len as u64, "len {len} step {step}");
                assert_eq!(
                    hex,
                    crate::base::fsx::sha256_hex(&raw),
                    "len {len} step {step}"
                );
                assert_eq!(std::fs::read(&path).unwrap(), raw, "len {len} step {step}");
            }
        }
        // Two frames one after the other are one stream.
        let (a, b) = (vec![1u8; 5000], vec![2u8; HANDOFF]);
        let mut z = zstd::encode_all(&a[..], 1).unwrap();
        z.extend(zstd::encode_all(&b[..], 1).unwrap());
        let (_, size) = unzstd(&z, 1000, &path).unwrap();
        assert_eq!(size, (a.len() + b.len()) as u64);
        assert_eq!(std::fs::read(&path).unwrap(), [a, b].concat());
    }

    #[test]
    fn a_cut_or_corrupt_zstd_stream_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.raw");
        let raw: Vec<u8> = (0..2 * HANDOFF).map(|i| (i % 13) as u8).collect();
        let z = zstd::encode_all(&raw[..], 3).unwrap();
        let cut = unzstd(&z[..z.len() - 10], 4096, &path).unwrap_err();
        assert!(
            format!("{cut:#}").contains("ends inside a frame"),
            "{cut:#}"
        );
        let mut bad = z.clone();
        bad[..4].copy_from_slice(b"nope");
        assert!(unzstd(&bad, 4096, &path).is_err());
    }
}
