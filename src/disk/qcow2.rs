//! qcow2 read front to back: the raw disk a qcow2 file describes, handed out in guest order
//! while the file arrives. `qemu-img convert` lays a new file out so that this works: the
//! header, then the L1 table, then each L2 table ahead of the data clusters it maps, those in
//! guest order. A file laid out otherwise (a cluster ahead of the table that maps it, or out
//! of guest order), or one that needs more than its own clusters to read (a backing file,
//! encryption, compressed clusters, an external data file, extended L2 entries), is an error,
//! and the caller gets the raw disk another way. Every table and cluster must lie inside the
//! file's length, which the caller gives, and the disk must be the size the caller expects: a
//! hostile file cannot make it hold more than a small fraction of the bytes it must send.

use std::collections::BTreeMap;
use std::io;

use anyhow::{bail, ensure, Context, Result};

/// Where the raw disk goes, in order: bytes, or a run of zeros (unallocated clusters).
pub trait RawSink {
    /// The next bytes of the disk.
    fn data(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// The next `n` bytes of the disk are zero.
    fn zeros(&mut self, n: u64) -> io::Result<()>;
}

const MAGIC: &[u8; 4] = b"QFI\xfb";
/// The header fields read (version 3's fixed part; a version 2 file is longer than this too,
/// its first cluster being the header's).
const HEADER: usize = 104;
/// Host offset bits of L1 and L2 entries.
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// L2 entry: the cluster is compressed.
const COMPRESSED: u64 = 1 << 62;
/// L2 entry (version 3): the cluster reads as zeros.
const ZERO: u64 = 1;
/// Incompatible feature bit 0 (dirty: refcounts may be stale) does not change how data is
/// read; every other bit does.
const DIRTY: u64 = 1;

/// What a table region is.
#[derive(Debug, Clone, Copy)]
enum Table {
    L1,
    /// An L2 table and the first guest cluster it maps.
    L2(u64),
}

/// A table being collected as it arrives.
#[derive(Debug)]
struct Pending {
    table: Table,
    len: usize,
    bytes: Vec<u8>,
}

/// The file's layout, once the header has arrived.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    version: u32,
    cluster: u64,
}

/// A qcow2 file being read as it arrives; `feed` it the file in order, then `finish`.
#[derive(Debug)]
pub struct Qcow2Stream {
    /// The raw disk's size: the header must say so.
    size: u64,
    /// The file's length: every table and cluster lies inside it.
    file_len: u64,
    /// Bytes of the file seen so far.
    pos: u64,
    head: Vec<u8>,
    geometry: Option<Geometry>,
    /// Tables still to arrive (or arriving), by file offset.
    tables: BTreeMap<u64, Pending>,
    /// Data clusters still to arrive: file offset to guest offset.
    clusters: BTreeMap<u64, u64>,
    /// Bytes of the raw disk handed out.
    out: u64,
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

impl Qcow2Stream {
    /// Read a qcow2 file of `file_len` bytes whose raw disk must be `size` bytes.
    pub fn new(size: u64, file_len: u64) -> Self {
        Qcow2Stream {
            size,
            file_len,
            pos: 0,
            head: Vec::with_capacity(HEADER),
            geometry: None,
            tables: BTreeMap::new(),
            clusters: BTreeMap::new(),
            out: 0,
        }
    }

    /// The next bytes of the file.
    pub fn feed(&mut self, mut data: &[u8], sink: &mut dyn RawSink) -> Result<()> {
        while !data.is_empty() {
            let Some(g) = self.geometry else {
                let n = (HEADER - self.head.len()).min(data.len());
                self.head.extend_from_slice(&data[..n]);
                self.advance(n, &mut data);
                if self.head.len() == HEADER {
                    self.header()?;
                }
                continue;
            };
            // A data cluster the tables mapped.
            let at = self.pos - self.pos % g.cluster;
            if let Some(&guest) = self.clusters.get(&at) {
                let n = ((at + g.cluster - self.pos) as usize).min(data.len());
                let g_at = guest + (self.pos - at);
                let done = self.pos + n as u64 == at + g.cluster;
                if g_at >= self.size {
                    // The last cluster's bytes past the disk's end.
                    if done {
                        self.clusters.remove(&at);
                    }
                    self.advance(n, &mut data);
                    continue;
                }
                if g_at < self.out {
                    bail!(
                        "the cluster at byte {at} holds disk byte {guest}, after disk byte {} came: not in disk order",
                        self.out
                    );
                }
                if g_at > self.out {
                    sink.zeros(g_at - self.out)?;
                    self.out = g_at;
                }
                // The last cluster may reach past the disk's end.
                let inside = ((self.size - g_at) as usize).min(n);
                sink.data(&data[..inside])?;
                self.out += inside as u64;
                if done {
                    self.clusters.remove(&at);
                }
                self.advance(n, &mut data);
                continue;
            }
            // A table arriving.
            if let Some((&start, t)) = self.tables.range_mut(..=self.pos).next_back() {
                if self.pos < start + t.len as u64 {
                    let n = (t.len - t.bytes.len()).min(data.len());
                    t.bytes.extend_from_slice(&data[..n]);
                    let done = t.bytes.len() == t.len;
                    self.advance(n, &mut data);
                    if done {
                        if let Some(t) = self.tables.remove(&start) {
                            self.table(g, t)?;
                        }
                    }
                    continue;
                }
            }
            // Nothing read here (refcounts, header extensions, padding): on to the next table
            // or cluster.
            let end = self.pos + data.len() as u64;
            let next_table = self.tables.range(self.pos + 1..).next().map(|(k, _)| *k);
            let next_cluster = self.clusters.range(self.pos + 1..).next().map(|(k, _)| *k);
            let next = [next_table, next_cluster]
                .into_iter()
                .flatten()
                .fold(end, u64::min);
            self.advance((next - self.pos) as usize, &mut data);
        }
        Ok(())
    }

    /// The file ended: everything it mapped must have come. The rest of the disk is zeros.
    pub fn finish(self, sink: &mut dyn RawSink) -> Result<()> {
        ensure!(
            self.geometry.is_some(),
            "the file ends inside its header ({} bytes)",
            self.pos
        );
        if let Some((at, _)) = self.tables.iter().next() {
            bail!(
                "the file ends at byte {} before its table at byte {at}",
                self.pos
            );
        }
        if let Some((at, guest)) = self.clusters.iter().next() {
            bail!(
                "the file ends at byte {} before the cluster at byte {at} (disk byte {guest})",
                self.pos
            );
        }
        if self.out < self.size {
            sink.zeros(self.size - self.out)?;
        }
        Ok(())
    }

    fn advance(&mut self, n: usize, data: &mut &[u8]) {
        self.pos += n as u64;
        *data = &data[n..];
    }

    fn header(&mut self) -> Result<()> {
        let h = &self.head;
        ensure!(&h[..4] == MAGIC, "not a qcow2 file (no QFI magic)");
        let version = be32(h, 4);
        ensure!(version == 2 || version == 3, "qcow2 version {version}");
        ensure!(be64(h, 8) == 0, "it has a backing file");
        let bits = be32(h, 20);
        ensure!((9..=21).contains(&bits), "cluster bits {bits}");
        let cluster = 1u64 << bits;
        let size = be64(h, 24);
        ensure!(
            size == self.size,
            "its disk is {size} bytes, not the {} expected",
            self.size
        );
        ensure!(be32(h, 32) == 0, "it is encrypted");
        let l1_size = u64::from(be32(h, 36));
        let l1_at = be64(h, 40);
        if version == 3 {
            let incompatible = be64(h, 72);
            ensure!(
                incompatible & !DIRTY == 0,
                "incompatible features {incompatible:#x} (external data, compression type or extended L2)"
            );
        }
        self.geometry = Some(Geometry { version, cluster });
        // Entries of the L1 table the disk's size needs; ones past them map nothing in it.
        let per_l2 = cluster / 8;
        let needed = size.div_ceil(cluster).div_ceil(per_l2);
        ensure!(
            l1_size >= needed,
            "its L1 table has {l1_size} entries, {needed} needed for {size} bytes"
        );
        if needed > 0 {
            let len = usize::try_from(needed * 8).context("L1 table size")?;
            self.add_table(l1_at, len, Table::L1, cluster)?;
        }
        Ok(())
    }

    fn add_table(&mut self, at: u64, len: usize, table: Table, cluster: u64) -> Result<()> {
        ensure!(
            at.is_multiple_of(cluster) && at != 0,
            "a table at byte {at}, not at a cluster"
        );
        ensure!(
            at >= self.pos,
            "the table at byte {at} comes before what points to it (byte {}): not laid out front to back",
            self.pos
        );
        let end = at
            .checked_add(len as u64)
            .filter(|e| *e <= self.file_len)
            .with_context(|| {
                format!(
                    "the table at byte {at} ends past the file's {} bytes",
                    self.file_len
                )
            })?;
        let overlaps = self
            .tables
            .range(..end)
            .next_back()
            .is_some_and(|(s, t)| s + t.len as u64 > at)
            || self.clusters.range(at - at % cluster..end).next().is_some();
        ensure!(!overlaps, "the table at byte {at} overlaps another");
        self.tables.insert(
            at,
            Pending {
                table,
                len,
                bytes: Vec::new(),
            },
        );
        Ok(())
    }

    fn table(&mut self, g: Geometry, t: Pending) -> Result<()> {
        let per_l2 = g.cluster / 8;
        let disk_clusters = self.size.div_ceil(g.cluster);
        match t.table {
            Table::L1 => {
                for (i, e) in t.bytes.chunks_exact(8).enumerate() {
                    let at = be64(e, 0) & OFFSET_MASK;
                    if at != 0 {
                        let len = usize::try_from(g.cluster).context("cluster size")?;
                        self.add_table(at, len, Table::L2(i as u64 * per_l2), g.cluster)?;
                    }
                }
            }
            Table::L2(first) => {
                for (j, e) in t.bytes.chunks_exact(8).enumerate() {
                    let index = first + j as u64;
                    if index >= disk_clusters {
                        break;
                    }
                    let e = be64(e, 0);
                    ensure!(e & COMPRESSED == 0, "cluster {index} is compressed");
                    if g.version == 3 && e & ZERO != 0 {
                        continue;
                    }
                    let at = e & OFFSET_MASK;
                    if at == 0 {
                        continue;
                    }
                    self.add_cluster(at, index * g.cluster, g.cluster)?;
                }
            }
        }
        Ok(())
    }

    fn add_cluster(&mut self, at: u64, guest: u64, cluster: u64) -> Result<()> {
        ensure!(
            at.is_multiple_of(cluster),
            "disk byte {guest} is mapped to byte {at}, not a cluster"
        );
        ensure!(
            at >= self.pos,
            "disk byte {guest} is at byte {at}, before the table that maps it: not laid out front to back"
        );
        // Its first byte inside the file (the last cluster may be cut short at the file's end).
        ensure!(
            at < self.file_len,
            "disk byte {guest} is at byte {at}, past the file's {} bytes",
            self.file_len
        );
        let in_table = self
            .tables
            .range(..at + cluster)
            .next_back()
            .is_some_and(|(s, t)| s + t.len as u64 > at);
        ensure!(
            !in_table && !self.clusters.contains_key(&at),
            "the cluster at byte {at} is mapped twice"
        );
        self.clusters.insert(at, guest);
        Ok(())
    }
}

/// The raw disk of a whole qcow2 file held in memory (tests and fuzzing).
pub fn raw_of_qcow2(file: &[u8], size: u64, step: usize) -> Result<Vec<u8>> {
    raw_announced(file, size, file.len() as u64, step)
}

/// `raw_of_qcow2` of bytes announced as `file_len` long (a stream cut short when more).
fn raw_announced(file: &[u8], size: u64, file_len: u64, step: usize) -> Result<Vec<u8>> {
    struct Bytes(Vec<u8>, u64);
    impl RawSink for Bytes {
        fn data(&mut self, bytes: &[u8]) -> io::Result<()> {
            self.0.extend_from_slice(bytes);
            Ok(())
        }
        fn zeros(&mut self, n: u64) -> io::Result<()> {
            // Bounded by the size the caller expects.
            let len = self.0.len() as u64 + n;
            if len > self.1 {
                return Err(io::Error::other("past the disk's end"));
            }
            self.0.resize(len as usize, 0);
            Ok(())
        }
    }
    let mut s = Qcow2Stream::new(size, file_len);
    let mut out = Bytes(Vec::new(), size);
    for piece in file.chunks(step.max(1)) {
        s.feed(piece, &mut out)?;
    }
    s.finish(&mut out)?;
    Ok(out.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    /// A raw disk of `size` bytes: data, runs of zeros a cluster or more long, and a last
    /// sector of data (so the qcow2 file's last cluster reaches past the disk's end).
    fn raw(size: usize) -> Vec<u8> {
        (0..size)
            .map(|i| {
                if (i / 3000) % 4 == 1 || (i / 70_000) % 5 == 2 {
                    0
                } else {
                    (i % 251) as u8 | 1
                }
            })
            .collect()
    }

    /// `qemu-img convert` of `raw` with `opts`; None without qemu-img.
    fn convert(dir: &Path, raw: &[u8], opts: &[&str]) -> Option<Vec<u8>> {
        let (r, q) = (dir.join("in.raw"), dir.join("out.qcow2"));
        std::fs::write(&r, raw).unwrap();
        let _ = std::fs::remove_file(&q);
        let s = Command::new("qemu-img")
            .args(["convert", "-q", "-f", "raw", "-O", "qcow2"])
            .args(opts)
            .arg(&r)
            .arg(&q)
            .status();
        match s {
            Ok(s) => {
                assert!(s.success(), "qemu-img convert {opts:?}");
                Some(std::fs::read(&q).unwrap())
            }
            Err(_) => {
                eprintln!("qemu-img not installed: skipped");
                None
            }
        }
    }

    #[test]
    fn qemu_img_files_give_back_the_raw_disk_whatever_the_pieces() {
        let dir = tempfile::tempdir().unwrap();
        for (size, opts) in [
            // 512-byte clusters: 64 L2 tables for 2 MiB, each ahead of its clusters.
            (2 << 20, &["-o", "cluster_size=512"][..]),
            (2 << 20, &["-o", "cluster_size=4096,compat=0.10"][..]),
            (3 * 65536 + 1536, &[][..]),
            (5 << 20, &["-o", "cluster_size=65536,lazy_refcounts=on"][..]),
            (0, &[][..]),
        ] {
            let raw = raw(size);
            let Some(q) = convert(dir.path(), &raw, opts) else {
                return;
            };
            for step in [1usize << 20, 4096, 509, 1] {
                if step == 1 && q.len() > 1 << 20 {
                    continue;
                }
                let got = raw_of_qcow2(&q, size as u64, step)
                    .unwrap_or_else(|e| panic!("{opts:?} size {size} step {step}: {e:#}"));
                assert!(got == raw, "{opts:?} size {size} step {step}: differs");
            }
        }
    }

    #[test]
    fn files_it_cannot_read_front_to_back_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let raw = raw(1 << 20);
        let Some(plain) = convert(dir.path(), &raw, &["-o", "cluster_size=4096"]) else {
            return;
        };
        let err = |q: &[u8], size: u64| format!("{:#}", raw_of_qcow2(q, size, 4096).unwrap_err());
        assert!(err(&plain, 2 << 20).contains("not the 2097152 expected"));
        // Cut short of the length it was announced with, and cut with its true length.
        let cut = &plain[..plain.len() - 4096];
        let e = format!(
            "{:#}",
            raw_announced(cut, 1 << 20, plain.len() as u64, 4096).unwrap_err()
        );
        assert!(e.contains("ends at byte"), "{e}");
        assert!(err(cut, 1 << 20).contains("past the file"));
        assert!(err(&plain[..50], 1 << 20).contains("inside its header"));
        assert!(err(&raw, 1 << 20).contains("not a qcow2 file"));
        let compressed = convert(dir.path(), &raw, &["-c"]).unwrap();
        assert!(err(&compressed, 1 << 20).contains("compressed"));
        // A backing file is another file's data.
        let base = dir.path().join("base.qcow2");
        std::fs::write(dir.path().join("base.qcow2"), &plain).unwrap();
        let over = dir.path().join("over.qcow2");
        let made = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
            .arg(&base)
            .arg(&over)
            .status()
            .unwrap();
        assert!(made.success());
        assert!(err(&std::fs::read(&over).unwrap(), 1 << 20).contains("backing file"));
        // A table placed ahead of the L1 that points at it: L1 moved past the L2 it maps.
        let mut moved = plain.clone();
        let l1 = be64(&moved, 40) as usize;
        let l2 = (be64(&moved, l1) & OFFSET_MASK) as usize;
        assert!(l2 > l1, "qemu-img wrote L1 after L2");
        let to = moved.len();
        let entry = moved[l1..l1 + 8].to_vec();
        moved.extend_from_slice(&entry);
        moved.resize(to + 4096, 0);
        moved[40..48].copy_from_slice(&(to as u64).to_be_bytes());
        assert!(err(&moved, 1 << 20).contains("front to back"));
        // Offsets past the file's end, up to the top of the address space, are errors (an
        // L1 table there once overflowed the end offset).
        for l1_at in [!4095u64, 1 << 40] {
            let mut far = plain.clone();
            far[40..48].copy_from_slice(&l1_at.to_be_bytes());
            assert!(
                err(&far, 1 << 20).contains("past the file"),
                "L1 at {l1_at}"
            );
        }
        let mut far = plain.clone();
        let first = l2
            + (0..512)
                .map(|i| i * 8)
                .find(|o| be64(&far, l2 + o) != 0)
                .unwrap();
        let entry = be64(&far, first) & !OFFSET_MASK | (1 << 40);
        far[first..first + 8].copy_from_slice(&entry.to_be_bytes());
        assert!(err(&far, 1 << 20).contains("past the file"));
    }
}
