//! Write-once ext4 writer: lays out a fresh filesystem for a file tree in one pass.
//!
//! Layout (flex_bg style): superblock and group descriptors at the start of group 0 (backups in
//! groups 0, 1 and powers of 3, 5, 7), then every group's block bitmap, inode bitmap and inode
//! table, then the journal, then directory and file data in inode order. Inode numbers are
//! assigned in path order, so the same tree always gives the same bytes. Features: extents,
//! filetype, dir_index (directories are written linear), sparse_super, large_file, huge_file,
//! dir_nlink, extra_isize, flex_bg, 64bit, metadata_csum (crc32c) and a journal.

pub mod layout;

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::tree::{Content, Kind, Tree};
use layout::*;

/// Why a filesystem could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Ext4Error {
    /// The tree does not fit the fixed size.
    #[error("the tree needs {needed} bytes ({} MiB) of ext4 but the partition has {available} bytes ({} MiB)", needed.div_ceil(1 << 20), available >> 20)]
    TooSmall {
        /// Bytes needed.
        needed: u64,
        /// Bytes available.
        available: u64,
    },
    /// Extended attributes that do not fit the inode.
    #[error("`/{path}`: extended attributes need {needed} bytes but only {room} fit in the inode")]
    XattrTooLarge {
        /// Path.
        path: String,
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        room: usize,
    },
    /// A hard link to a path that is not a regular file in the tree.
    #[error("hard link `/{path}` points at `/{target}`, which is not a regular file in the tree")]
    BrokenHardLink {
        /// Link path.
        path: String,
        /// Target.
        target: String,
    },
    /// A name longer than 255 bytes.
    #[error("`/{0}`: file name longer than 255 bytes")]
    NameTooLong(String),
    /// A regular file's content changed size while being written.
    #[error("`/{path}`: content is shorter than the {len} bytes recorded")]
    ShortContent {
        /// Path.
        path: String,
        /// Expected length.
        len: u64,
    },
    /// Writing failed.
    #[error("writing ext4: {0}")]
    Io(#[from] io::Error),
}

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
struct Coalesce<'a> {
    out: &'a mut dyn WriteAt,
    buf: Vec<u8>,
    start: u64,
}

impl<'a> Coalesce<'a> {
    const LIMIT: usize = 8 << 20;

    fn new(out: &'a mut dyn WriteAt) -> Self {
        Coalesce {
            out,
            buf: Vec::with_capacity(Self::LIMIT + BLOCK as usize),
            start: 0,
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.out.write_all_at(&self.buf, self.start)?;
            self.buf.clear();
        }
        Ok(())
    }

    fn inner(self) -> &'a mut dyn WriteAt {
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

/// Identity and size of the filesystem to write.
#[derive(Debug, Clone)]
pub struct Params {
    /// Fixed size in bytes, or `None` for the tree plus headroom.
    pub size: Option<u64>,
    /// Filesystem UUID.
    pub uuid: [u8; 16],
    /// Directory hash seed.
    pub hash_seed: [u8; 16],
    /// Creation time recorded in the superblock.
    pub time: i64,
    /// Volume label (up to 16 bytes).
    pub label: String,
}

#[derive(Debug, Clone)]
enum Data {
    None,
    File(Content),
    Bytes(Vec<u8>),
    Dir(Vec<Vec<u8>>),
    /// lost+found: one directory block followed by empty spare blocks.
    DirSpare(Vec<Vec<u8>>, usize),
    Journal(u32),
}

#[derive(Debug, Clone)]
struct Node {
    path: String,
    mode: u16,
    uid: u32,
    gid: u32,
    time: i64,
    links: u32,
    size: u64,
    inline: Option<[u8; 60]>,
    xattrs: Vec<(u8, Vec<u8>, Vec<u8>)>,
    /// The xattrs live in their own block (they do not fit in the inode); its number once
    /// allocated.
    xattr_external: bool,
    xattr_block: Option<u64>,
    data: Data,
    extents: Vec<Extent>,
    leaf_blocks: Vec<u64>,
}

impl Node {
    fn blocks_needed(&self) -> u64 {
        match &self.data {
            Data::None => 0,
            Data::File(c) => c.len().div_ceil(BLOCK),
            Data::Bytes(b) => (b.len() as u64).div_ceil(BLOCK),
            Data::Dir(b) => b.len() as u64,
            Data::DirSpare(b, n) => (b.len() + n) as u64,
            Data::Journal(n) => u64::from(*n),
        }
    }
}

fn type_bits(kind: &Kind) -> u16 {
    match kind {
        Kind::File(_) | Kind::HardLink(_) => 0x8000,
        Kind::Dir => 0x4000,
        Kind::Symlink(_) => 0xA000,
        Kind::CharDev { .. } => 0x2000,
        Kind::BlockDev { .. } => 0x6000,
        Kind::Fifo => 0x1000,
    }
}

fn xattr_prefix(name: &str) -> (u8, &str) {
    for (p, i) in [
        ("user.", 1u8),
        ("trusted.", 4),
        ("security.", 6),
        ("system.posix_acl_access", 2),
        ("system.posix_acl_default", 3),
        ("system.", 7),
    ] {
        if let Some(rest) = name.strip_prefix(p) {
            return (i, if i == 2 || i == 3 { "" } else { rest });
        }
    }
    (0, name)
}

const IN_INODE_XATTR: usize = INODE_SIZE - 128 - EXTRA_ISIZE as usize;

/// Header of an external xattr block (the entries' terminator is counted in `need`).
const XATTR_BLOCK_HEADER: usize = 32;

/// The hash of one xattr entry (name, then the value's little-endian words), as the kernel's
/// `ext4_xattr_hash_entry` computes it.
fn xattr_entry_hash(name: &[u8], value: &[u8]) -> u32 {
    let mut h = 0u32;
    for &c in name {
        h = (h << 5) ^ (h >> 27) ^ u32::from(c);
    }
    for w in value.chunks(4) {
        let mut word = [0u8; 4];
        word[..w.len()].copy_from_slice(w);
        h = (h << 16) ^ (h >> 16) ^ u32::from_le_bytes(word);
    }
    h
}

/// An external xattr block: header, entries sorted as the kernel keeps them (index, name
/// length, name), values packed down from the end, hashes and the metadata checksum.
fn xattr_block(seed: u32, block: u64, xattrs: &[(u8, Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut b = vec![0u8; BLOCK as usize];
    put32(&mut b, 0, 0xEA02_0000);
    put32(&mut b, 4, 1); // refcount
    put32(&mut b, 8, 1); // blocks
    let mut sorted = xattrs.to_vec();
    sorted.sort_by(|a, b| (a.0, a.1.len(), &a.1).cmp(&(b.0, b.1.len(), &b.1)));
    let mut entry_off = XATTR_BLOCK_HEADER;
    let mut value_end = BLOCK as usize;
    let mut block_hash = 0u32;
    for (idx, name, value) in &sorted {
        value_end -= (value.len() + 3) & !3;
        b[value_end..value_end + value.len()].copy_from_slice(value);
        let h = xattr_entry_hash(name, value);
        b[entry_off] = name.len() as u8;
        b[entry_off + 1] = *idx;
        put16(&mut b, entry_off + 2, value_end as u16);
        put32(&mut b, entry_off + 4, 0);
        put32(&mut b, entry_off + 8, value.len() as u32);
        put32(&mut b, entry_off + 12, h);
        b[entry_off + 16..entry_off + 16 + name.len()].copy_from_slice(name);
        entry_off += 16 + ((name.len() + 3) & !3);
        block_hash = (block_hash << 16) ^ (block_hash >> 16) ^ h;
    }
    put32(&mut b, 12, block_hash);
    let c = crc32c(crc32c(seed, &block.to_le_bytes()), &b);
    put32(&mut b, 16, c);
    b
}

fn journal_blocks(total: u64) -> u32 {
    match total {
        t if t < 32768 => 1024,
        t if t < 256 * 1024 => 4096,
        t if t < 512 * 1024 => 8192,
        t if t < 4096 * 1024 => 16384,
        _ => 32768,
    }
}

/// Everything decided about the filesystem before a byte is written.
pub struct Plan {
    nodes: Vec<Node>,
    blocks: u64,
    groups: u64,
    ipg: u32,
    gdt_blocks: u64,
    bitmaps_at: u64,
    tables: Vec<u64>,
    cursor: u64,
    params: Params,
    csum_seed: u32,
}

impl Plan {
    /// Size of the filesystem in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.blocks * BLOCK
    }
    /// Blocks actually used.
    pub fn used_bytes(&self) -> u64 {
        self.cursor * BLOCK
    }
}

/// Work out inode numbers, directory contents, sizes and block placement for a tree.
pub fn plan(tree: &Tree, params: &Params) -> Result<Plan, Ext4Error> {
    let csum_seed = crc32c(!0, &params.uuid);
    let mut nodes = collect_nodes(tree, csum_seed)?;
    let data_blocks: u64 = nodes
        .iter()
        .map(|n| n.blocks_needed() + u64::from(n.xattr_external))
        .sum();
    let leaf_guess: u64 = nodes
        .iter()
        .map(|n| {
            if n.blocks_needed() > 3 * MAX_EXTENT_LEN {
                n.blocks_needed() / (300 * MAX_EXTENT_LEN) + 1
            } else {
                0
            }
        })
        .sum();
    let inodes_needed = nodes.len() as u64 + 1;
    let mut total = match params.size {
        Some(s) => s / BLOCK,
        None => data_blocks + 4096,
    };
    let geometry = |total: u64| {
        let groups = total.div_ceil(BLOCKS_PER_GROUP).max(1);
        let want_inodes = (total * BLOCK / 16384).max(inodes_needed + inodes_needed / 4 + 64);
        let ipg = want_inodes.div_ceil(groups).div_ceil(16) * 16;
        let ipg = ipg.clamp(16, 32768);
        let gdt = (groups * DESC_SIZE as u64).div_ceil(BLOCK);
        let itb = ipg * INODE_SIZE as u64 / BLOCK;
        let backups = (0..groups).filter(|&g| has_super(g)).count() as u64;
        let meta = backups * (1 + gdt) + groups * (2 + itb);
        (groups, ipg, gdt, itb, meta)
    };
    if params.size.is_none() {
        for _ in 0..4 {
            let (_, _, _, _, meta) = geometry(total);
            let used = meta + data_blocks + leaf_guess + u64::from(journal_blocks(total));
            // Headroom: 15% plus 16 MiB, so a booted image has room for logs and state.
            total = (used + used * 15 / 100 + 4096).div_ceil(256) * 256;
        }
    }
    let (groups, ipg, gdt_blocks, itable_blocks, meta) = geometry(total);
    let journal_len = journal_blocks(total);
    let needed = meta + data_blocks + leaf_guess + u64::from(journal_len);
    if needed > total || ipg * groups < inodes_needed {
        return Err(Ext4Error::TooSmall {
            needed: needed.max(total + 1) * BLOCK,
            available: total * BLOCK,
        });
    }
    let mut p = Plan {
        nodes: Vec::new(),
        blocks: total,
        groups,
        ipg: ipg as u32,
        gdt_blocks,
        bitmaps_at: 0,
        tables: Vec::new(),
        cursor: 0,
        params: params.clone(),
        csum_seed,
    };
    // Metadata of all groups packed after group 0's superblock and descriptors.
    p.cursor = 1 + gdt_blocks;
    p.bitmaps_at = p.cursor;
    p.cursor = p.alloc_contiguous(2 * groups)?;
    for _ in 0..groups {
        p.cursor = p.alloc_contiguous(itable_blocks)?;
        p.tables.push(p.cursor - itable_blocks);
    }
    nodes[7].data = Data::Journal(journal_len);
    nodes[7].size = u64::from(journal_len) * BLOCK;
    for n in nodes.iter_mut() {
        if n.xattr_external {
            n.xattr_block = Some(p.alloc_runs(1)?[0].0);
        }
        let need = n.blocks_needed();
        if need == 0 {
            continue;
        }
        let runs = p.alloc_runs(need)?;
        let mut logical = 0u32;
        for (start, len) in runs {
            let mut s = start;
            let mut l = len;
            while l > 0 {
                let take = l.min(MAX_EXTENT_LEN);
                n.extents.push(Extent {
                    logical,
                    start: s,
                    len: take as u16,
                });
                logical += take as u32;
                s += take;
                l -= take;
            }
        }
        if n.extents.len() > 4 {
            let leaves = n.extents.len().div_ceil(340);
            for _ in 0..leaves {
                let (b, _) = p.alloc_runs(1)?[0];
                n.leaf_blocks.push(b);
            }
            if leaves > 4 {
                return Err(Ext4Error::TooSmall {
                    needed: u64::MAX / 2,
                    available: p.blocks * BLOCK,
                });
            }
        }
    }
    p.nodes = nodes;
    Ok(p)
}

impl Plan {
    /// What a byte offset of the filesystem holds, for a person reading a reproducibility
    /// report: a file's data or extent tree, its inode, or which piece of metadata.
    pub fn describe(&self, offset: u64) -> String {
        let block = offset / BLOCK;
        let name = |i: usize| {
            let p = &self.nodes[i].path;
            if p.is_empty() {
                format!("inode {}", i + 1)
            } else {
                format!("/{}", p.trim_start_matches('/'))
            }
        };
        if self.reserved_at(block).is_some() {
            return "superblock or group descriptors".into();
        }
        if block >= self.bitmaps_at && block < self.bitmaps_at + 2 * self.groups {
            return "block or inode bitmap".into();
        }
        let ipb = BLOCK / INODE_SIZE as u64;
        let itable_blocks = u64::from(self.ipg) / ipb;
        for (g, &t) in self.tables.iter().enumerate() {
            if block >= t && block < t + itable_blocks {
                let idx = g as u64 * u64::from(self.ipg) + (offset - t * BLOCK) / INODE_SIZE as u64;
                return match self.nodes.get(idx as usize) {
                    Some(_) => format!("the inode of {}", name(idx as usize)),
                    None => "an unused inode".into(),
                };
            }
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if n.leaf_blocks.contains(&block) {
                return format!("the extent tree of {}", name(i));
            }
            if n.xattr_block == Some(block) {
                return format!("the extended attributes of {}", name(i));
            }
            if n.extents
                .iter()
                .any(|e| block >= e.start && block < e.start + u64::from(e.len))
            {
                return format!("the contents of {}", name(i));
            }
        }
        "free space".into()
    }

    fn reserved_at(&self, block: u64) -> Option<u64> {
        let g = block / BLOCKS_PER_GROUP;
        let off = block % BLOCKS_PER_GROUP;
        if has_super(g) && off < 1 + self.gdt_blocks {
            Some(g * BLOCKS_PER_GROUP + 1 + self.gdt_blocks)
        } else {
            None
        }
    }

    fn next_reserved(&self, from: u64) -> u64 {
        let mut g = from / BLOCKS_PER_GROUP + 1;
        while g < self.groups {
            if has_super(g) {
                return g * BLOCKS_PER_GROUP;
            }
            g += 1;
        }
        self.blocks
    }

    fn too_small(&self) -> Ext4Error {
        Ext4Error::TooSmall {
            needed: (self.cursor + 1) * BLOCK,
            available: self.blocks * BLOCK,
        }
    }

    fn alloc_contiguous(&mut self, n: u64) -> Result<u64, Ext4Error> {
        if let Some(after) = self.reserved_at(self.cursor) {
            self.cursor = after;
        }
        if self.cursor + n > self.next_reserved(self.cursor) {
            self.cursor = self.next_reserved(self.cursor);
            if let Some(after) = self.reserved_at(self.cursor) {
                self.cursor = after;
            }
        }
        if self.cursor + n > self.blocks {
            return Err(self.too_small());
        }
        Ok(self.cursor + n)
    }

    fn alloc_runs(&mut self, mut n: u64) -> Result<Vec<(u64, u64)>, Ext4Error> {
        let mut runs = Vec::new();
        while n > 0 {
            if let Some(after) = self.reserved_at(self.cursor) {
                self.cursor = after;
            }
            let limit = self.next_reserved(self.cursor).min(self.blocks);
            if self.cursor >= limit {
                return Err(self.too_small());
            }
            let take = n.min(limit - self.cursor);
            runs.push((self.cursor, take));
            self.cursor += take;
            n -= take;
        }
        Ok(runs)
    }
}

/// A directory entry before encoding: name, inode, file type.
type DirEnt = (Vec<u8>, u32, u8);

fn collect_nodes(tree: &Tree, seed: u32) -> Result<Vec<Node>, Ext4Error> {
    // Inode numbers: 1..=10 reserved (8 is the journal), 11 lost+found, then path order.
    let mut ino_of: HashMap<&str, u32> = HashMap::new();
    ino_of.insert("", 2);
    let mut order: Vec<&str> = Vec::new();
    let mut next = 12u32;
    let has_lf = tree.get("lost+found").is_some_and(|e| e.kind == Kind::Dir);
    for (path, e) in tree.iter() {
        if path.is_empty() || matches!(e.kind, Kind::HardLink(_)) {
            continue;
        }
        if path == "lost+found" && has_lf {
            ino_of.insert(path, 11);
            continue;
        }
        if path.rsplit('/').next().is_some_and(|n| n.len() > 255) {
            return Err(Ext4Error::NameTooLong(path.clone()));
        }
        ino_of.insert(path, next);
        order.push(path);
        next += 1;
    }
    let mut links: HashMap<u32, u32> = HashMap::new();
    let mut children: HashMap<&str, Vec<DirEnt>> = HashMap::new();
    let mut subdirs: HashMap<&str, u32> = HashMap::new();
    if !has_lf {
        children
            .entry("")
            .or_default()
            .push((b"lost+found".to_vec(), 11, 2));
        *subdirs.entry("").or_default() += 1;
    }
    for (path, e) in tree.iter() {
        if path.is_empty() {
            continue;
        }
        let parent = path.rfind('/').map_or("", |i| &path[..i]);
        let name = path.rsplit('/').next().unwrap_or(path).as_bytes().to_vec();
        let (ino, ty) = match &e.kind {
            Kind::HardLink(t) => {
                let ino = match (ino_of.get(t.as_str()), tree.get(t).map(|e| &e.kind)) {
                    (Some(i), Some(Kind::File(_))) => *i,
                    _ => {
                        return Err(Ext4Error::BrokenHardLink {
                            path: path.clone(),
                            target: t.clone(),
                        })
                    }
                };
                (ino, 1)
            }
            k => (ino_of[path.as_str()], dirent_type(type_bits(k))),
        };
        *links.entry(ino).or_default() += 1;
        if e.kind == Kind::Dir {
            *subdirs.entry(parent).or_default() += 1;
        }
        children.entry(parent).or_default().push((name, ino, ty));
    }

    let empty_node = |path: &str, mode: u16| Node {
        path: path.to_string(),
        mode,
        uid: 0,
        gid: 0,
        time: 0,
        links: 0,
        size: 0,
        inline: None,
        xattrs: Vec::new(),
        xattr_external: false,
        xattr_block: None,
        data: Data::None,
        extents: Vec::new(),
        leaf_blocks: Vec::new(),
    };
    let total = next as usize - 1;
    let mut nodes: Vec<Node> = (1..=total).map(|_| empty_node("", 0)).collect();
    let root_time = tree.get("").map_or(0, |e| e.mtime);
    // Journal.
    nodes[7] = Node {
        mode: 0x8000 | 0o600,
        links: 1,
        time: root_time,
        data: Data::Journal(0),
        ..empty_node("<journal>", 0)
    };
    let dir_node = |path: &str, parent_ino: u32, ino: u32, e: &crate::tree::Entry| -> Node {
        let mut list = vec![(b".".to_vec(), ino, 2u8), (b"..".to_vec(), parent_ino, 2u8)];
        list.extend(children.get(path).cloned().unwrap_or_default());
        let blocks = dir_blocks(&list, seed, ino);
        Node {
            path: path.to_string(),
            mode: 0x4000 | (e.mode & 0o7777) as u16,
            uid: e.uid,
            gid: e.gid,
            time: e.mtime,
            links: 2 + subdirs.get(path).copied().unwrap_or(0),
            size: blocks.len() as u64 * BLOCK,
            inline: None,
            xattrs: Vec::new(),
            xattr_external: false,
            xattr_block: None,
            data: Data::Dir(blocks),
            extents: Vec::new(),
            leaf_blocks: Vec::new(),
        }
    };
    let root = tree
        .get("")
        .cloned()
        .unwrap_or_else(|| crate::tree::Entry::dir(0o755));
    nodes[1] = dir_node("", 2, 2, &root);
    // lost+found: 16 KiB like mke2fs, so e2fsck can reconnect files without allocating.
    let lf_entry = tree.get("lost+found").cloned().unwrap_or_else(|| {
        let mut e = crate::tree::Entry::dir(0o700);
        e.mtime = root_time;
        e
    });
    let mut lf = dir_node("lost+found", 2, 11, &lf_entry);
    if let Data::Dir(b) = std::mem::replace(&mut lf.data, Data::None) {
        lf.data = Data::DirSpare(b, 3);
    }
    lf.size = 4 * BLOCK;
    nodes[10] = lf;
    for path in order {
        let e = tree.get(path).expect("path from the same tree");
        let ino = ino_of[path];
        let parent = path.rfind('/').map_or("", |i| &path[..i]);
        let mut node = match &e.kind {
            Kind::Dir => dir_node(path, ino_of[parent], ino, e),
            k => {
                let mut n = empty_node(path, type_bits(k) | (e.mode & 0o7777) as u16);
                n.uid = e.uid;
                n.gid = e.gid;
                n.time = e.mtime;
                n.links = links.get(&ino).copied().unwrap_or(1);
                match k {
                    Kind::File(c) => {
                        n.size = c.len();
                        n.data = Data::File(c.clone());
                    }
                    Kind::Symlink(t) => {
                        n.size = t.len() as u64;
                        if t.len() < 60 {
                            let mut ib = [0u8; 60];
                            ib[..t.len()].copy_from_slice(t.as_bytes());
                            n.inline = Some(ib);
                        } else {
                            n.data = Data::Bytes(t.as_bytes().to_vec());
                        }
                    }
                    Kind::CharDev { major, minor } | Kind::BlockDev { major, minor } => {
                        let mut ib = [0u8; 60];
                        if *major < 256 && *minor < 256 {
                            put32(&mut ib, 0, (major << 8) | minor);
                        } else {
                            put32(
                                &mut ib,
                                4,
                                (minor & 0xFF) | (major << 8) | ((minor & !0xFF) << 12),
                            );
                        }
                        n.inline = Some(ib);
                    }
                    _ => {}
                }
                n
            }
        };
        for (name, value) in &e.xattrs {
            let (idx, short) = xattr_prefix(name);
            node.xattrs
                .push((idx, short.as_bytes().to_vec(), value.clone()));
        }
        let need: usize = 8 + node
            .xattrs
            .iter()
            .map(|(_, n, v)| 16 + ((n.len() + 3) & !3) + ((v.len() + 3) & !3))
            .sum::<usize>();
        if !node.xattrs.is_empty() && need > IN_INODE_XATTR {
            // Too big for the inode: all of them go to one external block.
            let block_need = XATTR_BLOCK_HEADER + need;
            if block_need > BLOCK as usize {
                return Err(Ext4Error::XattrTooLarge {
                    path: path.to_string(),
                    needed: block_need,
                    room: BLOCK as usize,
                });
            }
            node.xattr_external = true;
        }
        nodes[ino as usize - 1] = node;
    }
    Ok(nodes)
}

fn encode_time(secs: i64) -> (u32, u32) {
    let lo = secs as u32;
    let epoch = ((secs - i64::from(lo as i32)) >> 32) as u32 & 3;
    (lo, epoch)
}

impl Plan {
    fn encode_inode(&self, ino: u32, n: &Node) -> [u8; INODE_SIZE] {
        let mut b = [0u8; INODE_SIZE];
        if n.mode == 0 {
            return b;
        }
        put16(&mut b, 0x0, n.mode);
        put16(&mut b, 0x2, (n.uid & 0xFFFF) as u16);
        put32(&mut b, 0x4, lo32(n.size));
        let (t, ex) = encode_time(n.time);
        for off in [0x8, 0xC, 0x10, 0x90] {
            put32(&mut b, off, t);
        }
        for off in [0x84, 0x88, 0x8C, 0x94] {
            put32(&mut b, off, ex);
        }
        put16(&mut b, 0x18, (n.gid & 0xFFFF) as u16);
        put16(&mut b, 0x1A, n.links.min(65000) as u16);
        let blocks = (n.extents.iter().map(|e| u64::from(e.len)).sum::<u64>()
            + n.leaf_blocks.len() as u64
            + u64::from(n.xattr_block.is_some()))
            * (BLOCK / 512);
        if let Some(xb) = n.xattr_block {
            put32(&mut b, 0x68, lo32(xb));
            put16(&mut b, 0x76, (xb >> 32) as u16);
        }
        put32(&mut b, 0x1C, lo32(blocks));
        put16(&mut b, 0x74, (blocks >> 32) as u16);
        put32(&mut b, 0x6C, hi32(n.size));
        put16(&mut b, 0x78, (n.uid >> 16) as u16);
        put16(&mut b, 0x7A, (n.gid >> 16) as u16);
        put16(&mut b, 0x80, EXTRA_ISIZE);
        if let Some(ib) = n.inline {
            b[0x28..0x28 + 60].copy_from_slice(&ib);
        } else if matches!(n.mode & 0xF000, 0x8000 | 0x4000 | 0xA000) {
            put32(&mut b, 0x20, EXTENTS_FL);
            let mut ib = Vec::with_capacity(60);
            if n.leaf_blocks.is_empty() {
                ib.extend(extent_header(n.extents.len() as u16, 4, 0));
                for e in &n.extents {
                    ib.extend(extent_entry(e));
                }
            } else {
                ib.extend(extent_header(n.leaf_blocks.len() as u16, 4, 1));
                for (i, leaf) in n.leaf_blocks.iter().enumerate() {
                    ib.extend(extent_index(n.extents[i * 340].logical, *leaf));
                }
            }
            ib.resize(60, 0);
            b[0x28..0x28 + 60].copy_from_slice(&ib);
        }
        if !n.xattrs.is_empty() && !n.xattr_external {
            let r = &mut b[128 + EXTRA_ISIZE as usize..];
            put32(r, 0, 0xEA02_0000);
            let region = r.len() - 4;
            let mut entry_off = 4usize;
            let mut value_end = region;
            let mut sorted = n.xattrs.clone();
            sorted.sort();
            for (idx, name, value) in &sorted {
                let vlen = (value.len() + 3) & !3;
                value_end -= vlen;
                r[4 + value_end..4 + value_end + value.len()].copy_from_slice(value);
                r[entry_off] = name.len() as u8;
                r[entry_off + 1] = *idx;
                put16(r, entry_off + 2, value_end as u16);
                put32(r, entry_off + 4, 0);
                put32(r, entry_off + 8, value.len() as u32);
                put32(r, entry_off + 12, 0);
                r[entry_off + 16..entry_off + 16 + name.len()].copy_from_slice(name);
                entry_off += 16 + ((name.len() + 3) & !3);
            }
        }
        seal_inode(&mut b, self.csum_seed, ino);
        b
    }

    /// Write the filesystem. Blocks that are entirely zero are skipped, so a file target pre-sized
    /// with `set_len` stays sparse.
    pub fn write(&self, out: &mut dyn WriteAt) -> Result<(), Ext4Error> {
        let seed = self.csum_seed;
        let ipg = u64::from(self.ipg);
        let n_inodes = self.nodes.len() as u64;
        let time = self.params.time;
        // Inode tables.
        let mut gd = Vec::with_capacity(self.groups as usize);
        for g in 0..self.groups {
            let first = g * ipg;
            let used = n_inodes.saturating_sub(first).min(ipg);
            let table = self.tables[g as usize];
            let mut buf = Vec::with_capacity(used as usize * INODE_SIZE);
            let mut used_dirs = 0u32;
            for i in 0..used {
                let ino = (first + i + 1) as u32;
                let n = &self.nodes[(first + i) as usize];
                if n.mode & 0xF000 == 0x4000 {
                    used_dirs += 1;
                }
                buf.extend_from_slice(&self.encode_inode(ino, n));
            }
            if !buf.is_empty() {
                out.write_all_at(&buf, table * BLOCK)?;
            }
            // Inode bitmap: used inodes, then padding bits set past inodes_per_group.
            let mut ib = vec![0u8; BLOCK as usize];
            for i in 0..used as usize {
                ib[i / 8] |= 1 << (i % 8);
            }
            for i in (ipg as usize)..(BLOCK as usize * 8) {
                ib[i / 8] |= 1 << (i % 8);
            }
            let ib_csum = crc32c(seed, &ib[..(ipg / 8) as usize]);
            out.write_all_at(&ib, (self.bitmaps_at + self.groups + g) * BLOCK)?;
            // Block bitmap.
            let mut bb = vec![0u8; BLOCK as usize];
            let start = g * BLOCKS_PER_GROUP;
            let mut free = 0u32;
            for i in 0..BLOCKS_PER_GROUP {
                let blk = start + i;
                let used =
                    blk >= self.blocks || blk < self.cursor || self.reserved_at(blk).is_some();
                if used {
                    bb[(i / 8) as usize] |= 1 << (i % 8);
                } else {
                    free += 1;
                }
            }
            let bb_csum = crc32c(seed, &bb);
            out.write_all_at(&bb, (self.bitmaps_at + g) * BLOCK)?;
            gd.push(GroupDesc {
                block_bitmap: self.bitmaps_at + g,
                inode_bitmap: self.bitmaps_at + self.groups + g,
                inode_table: table,
                free_blocks: free,
                free_inodes: (ipg - used) as u32,
                used_dirs,
                itable_unused: (ipg - used) as u32,
                block_bitmap_csum: bb_csum,
                inode_bitmap_csum: ib_csum,
            });
        }
        // Data, in inode order.
        let mut files: HashMap<Arc<PathBuf>, File> = HashMap::new();
        let mut buf = Vec::new();
        let mut co = Coalesce::new(out);
        let out = &mut co;
        for (i, n) in self.nodes.iter().enumerate() {
            let ino = i as u32 + 1;
            if let Some(xb) = n.xattr_block {
                out.write_all_at(&xattr_block(seed, xb, &n.xattrs), xb * BLOCK)?;
            }
            if n.extents.is_empty() {
                continue;
            }
            self.write_leaves(ino, n, out)?;
            match &n.data {
                Data::None => {}
                Data::Journal(len) => {
                    out.write_all_at(
                        &journal_superblock(*len, &self.params.uuid),
                        n.extents[0].start * BLOCK,
                    )?;
                }
                Data::Bytes(b) => self.write_extents(&n.extents, b, 0, out)?,
                Data::Dir(_) | Data::DirSpare(..) => {
                    let blocks = self.dir_content(ino, n);
                    for (k, blk) in blocks.iter().enumerate() {
                        out.write_all_at(blk, self.physical(&n.extents, k as u64) * BLOCK)?;
                    }
                }
                Data::File(c) => self.write_content(n, c, &mut files, &mut buf, out)?,
            }
        }
        co.flush()?;
        let out = co.inner();
        // Superblock and descriptor copies.
        let journal = &self.nodes[7];
        let jinode = self.encode_inode(8, journal);
        let mut jnl = [0u32; 17];
        for (k, v) in jnl.iter_mut().take(15).enumerate() {
            *v = u32::from_le_bytes([
                jinode[0x28 + 4 * k],
                jinode[0x29 + 4 * k],
                jinode[0x2A + 4 * k],
                jinode[0x2B + 4 * k],
            ]);
        }
        jnl[15] = hi32(journal.size);
        jnl[16] = lo32(journal.size);
        let mut label = [0u8; 16];
        let lb = self.params.label.as_bytes();
        label[..lb.len().min(16)].copy_from_slice(&lb[..lb.len().min(16)]);
        let free_blocks: u64 = gd.iter().map(|d| u64::from(d.free_blocks)).sum();
        let free_inodes: u32 = gd.iter().map(|d| d.free_inodes).sum();
        let mut table = Vec::with_capacity((self.gdt_blocks * BLOCK) as usize);
        for (g, d) in gd.iter().enumerate() {
            table.extend_from_slice(&group_desc(d, g as u32, seed));
        }
        table.resize((self.gdt_blocks * BLOCK) as usize, 0);
        let mut log_flex = 0u8;
        while (1u64 << log_flex) < self.groups {
            log_flex += 1;
        }
        for g in (0..self.groups).filter(|&g| has_super(g)) {
            let fields = SuperFields {
                inodes_count: (ipg * self.groups) as u32,
                blocks_count: self.blocks,
                free_blocks,
                free_inodes,
                inodes_per_group: self.ipg,
                time: time as u32,
                uuid: self.params.uuid,
                hash_seed: self.params.hash_seed,
                label,
                log_groups_per_flex: log_flex.max(4),
                jnl_blocks: jnl,
                group_nr: g as u16,
            };
            let sb = superblock(&fields);
            let base = g * BLOCKS_PER_GROUP * BLOCK;
            out.write_all_at(&sb, base + if g == 0 { 1024 } else { 0 })?;
            out.write_all_at(&table, base + BLOCK)?;
        }
        // The last byte, so that a Vec or file target has the full size.
        out.write_all_at(&[0], self.blocks * BLOCK - 1)?;
        Ok(())
    }

    fn dir_content(&self, ino: u32, n: &Node) -> Vec<Vec<u8>> {
        match &n.data {
            Data::Dir(b) => b.clone(),
            Data::DirSpare(b, spare) => {
                let mut v = b.clone();
                v.extend((0..*spare).map(|_| empty_dir_block(self.csum_seed, ino)));
                v
            }
            _ => Vec::new(),
        }
    }

    fn physical(&self, extents: &[Extent], logical: u64) -> u64 {
        for e in extents {
            let l = u64::from(e.logical);
            if logical >= l && logical < l + u64::from(e.len) {
                return e.start + logical - l;
            }
        }
        0
    }

    fn write_leaves(&self, ino: u32, n: &Node, out: &mut dyn WriteAt) -> Result<(), Ext4Error> {
        for (k, leaf) in n.leaf_blocks.iter().enumerate() {
            let chunk = &n.extents[k * 340..((k + 1) * 340).min(n.extents.len())];
            let mut b = Vec::with_capacity(BLOCK as usize);
            b.extend(extent_header(chunk.len() as u16, 340, 0));
            for e in chunk {
                b.extend(extent_entry(e));
            }
            b.resize(BLOCK as usize - 4, 0);
            let c = crc32c(inode_seed(self.csum_seed, ino), &b);
            b.extend(c.to_le_bytes());
            out.write_all_at(&b, leaf * BLOCK)?;
        }
        Ok(())
    }

    fn write_extents(
        &self,
        extents: &[Extent],
        data: &[u8],
        first_logical: u64,
        out: &mut dyn WriteAt,
    ) -> Result<(), Ext4Error> {
        let mut pos = 0usize;
        for e in extents {
            let l = u64::from(e.logical);
            let len = u64::from(e.len);
            if l + len <= first_logical {
                continue;
            }
            let skip = first_logical.saturating_sub(l);
            let mut blk = e.start + skip;
            let mut left = len - skip;
            while left > 0 && pos < data.len() {
                let end = (pos + BLOCK as usize).min(data.len());
                let chunk = &data[pos..end];
                if chunk.iter().any(|&x| x != 0) {
                    out.write_all_at(chunk, blk * BLOCK)?;
                }
                pos = end;
                blk += 1;
                left -= 1;
            }
        }
        Ok(())
    }

    fn write_content(
        &self,
        n: &Node,
        c: &Content,
        files: &mut HashMap<Arc<PathBuf>, File>,
        buf: &mut Vec<u8>,
        out: &mut dyn WriteAt,
    ) -> Result<(), Ext4Error> {
        const CHUNK: u64 = 1 << 20;
        let len = c.len();
        let want = len.min(CHUNK) as usize;
        if buf.len() < want {
            buf.resize(want, 0);
        }
        let mut done = 0u64;
        while done < len {
            let take = (len - done).min(CHUNK) as usize;
            match c {
                Content::Inline(b) => {
                    buf[..take].copy_from_slice(&b[done as usize..done as usize + take])
                }
                Content::Slice { file, offset, .. } => {
                    if !files.contains_key(file) {
                        if files.len() > 4096 {
                            files.clear();
                        }
                        files.insert(file.clone(), File::open(file.as_path())?);
                    }
                    files[file]
                        .read_exact_at(&mut buf[..take], offset + done)
                        .map_err(|_| Ext4Error::ShortContent {
                            path: n.path.clone(),
                            len,
                        })?;
                }
            }
            self.write_extents(&n.extents, &buf[..take], done / BLOCK, out)?;
            done += take as u64;
        }
        Ok(())
    }
}
