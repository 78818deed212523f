//! On-disk structures of ext4 (the kernel's `Documentation/filesystems/ext4/`): superblock,
//! group descriptor, inode, extent header/entry, directory entry, journal superblock, and their
//! crc32c checksums. Each encoder writes every field explicitly at its documented offset.

/// Block size used by the writer.
pub const BLOCK: u64 = 4096;
/// Bytes per on-disk inode.
pub const INODE_SIZE: usize = 256;
/// `i_extra_isize`.
pub const EXTRA_ISIZE: u16 = 32;
/// Blocks per group (one bitmap block's worth of bits).
pub const BLOCKS_PER_GROUP: u64 = 32768;
/// Group descriptor size with the 64bit feature.
pub const DESC_SIZE: usize = 64;
/// Longest run one extent can describe (initialised extents).
pub const MAX_EXTENT_LEN: u64 = 32768;

/// Compat features.
pub const COMPAT_HAS_JOURNAL: u32 = 0x4;
/// Extended attributes.
pub const COMPAT_EXT_ATTR: u32 = 0x8;
/// Hashed directories allowed.
pub const COMPAT_DIR_INDEX: u32 = 0x20;
/// Directory entries carry a file type.
pub const INCOMPAT_FILETYPE: u32 = 0x2;
/// Extent-mapped files.
pub const INCOMPAT_EXTENTS: u32 = 0x40;
/// 64-bit block numbers.
pub const INCOMPAT_64BIT: u32 = 0x80;
/// Flexible block groups.
pub const INCOMPAT_FLEX_BG: u32 = 0x200;
/// Superblock backups only in groups 0, 1 and powers of 3, 5, 7.
pub const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;
/// Files over 2 GiB.
pub const RO_COMPAT_LARGE_FILE: u32 = 0x2;
/// `i_blocks` beyond 2^32 sectors.
pub const RO_COMPAT_HUGE_FILE: u32 = 0x8;
/// More than 65000 subdirectories.
pub const RO_COMPAT_DIR_NLINK: u32 = 0x20;
/// Inodes carry extra fields.
pub const RO_COMPAT_EXTRA_ISIZE: u32 = 0x40;
/// crc32c checksums on all metadata.
pub const RO_COMPAT_METADATA_CSUM: u32 = 0x400;

/// `i_flags`: file uses extents.
pub const EXTENTS_FL: u32 = 0x80000;
/// Group flag: inode table zeroed.
pub const BG_INODE_ZEROED: u16 = 0x4;

/// Linux's raw crc32c (no final inversion), as ext4 uses it: `crc32c(seed, data)`.
pub fn crc32c(seed: u32, data: &[u8]) -> u32 {
    !crc32c::crc32c_append(!seed, data)
}

pub(crate) fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}
pub(crate) fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
pub(crate) fn lo32(v: u64) -> u32 {
    (v & 0xFFFF_FFFF) as u32
}
pub(crate) fn hi32(v: u64) -> u32 {
    (v >> 32) as u32
}

/// Is there a superblock backup in this group (sparse_super)?
pub fn has_super(group: u64) -> bool {
    if group <= 1 {
        return true;
    }
    [3u64, 5, 7].iter().any(|&b| {
        let mut p = b;
        while p < group {
            p *= b;
        }
        p == group
    })
}

/// Superblock fields that vary.
#[derive(Debug, Clone)]
pub struct SuperFields {
    /// `s_inodes_count`.
    pub inodes_count: u32,
    /// `s_blocks_count_lo` and `s_blocks_count_hi`.
    pub blocks_count: u64,
    /// `s_free_blocks_count_lo` and `_hi`.
    pub free_blocks: u64,
    /// `s_free_inodes_count`.
    pub free_inodes: u32,
    /// `s_inodes_per_group`.
    pub inodes_per_group: u32,
    /// `s_mkfs_time`, `s_wtime` and `s_lastcheck`.
    pub time: u32,
    /// `s_uuid`.
    pub uuid: [u8; 16],
    /// `s_hash_seed`.
    pub hash_seed: [u8; 16],
    /// `s_volume_name`.
    pub label: [u8; 16],
    /// `s_log_groups_per_flex`.
    pub log_groups_per_flex: u8,
    /// `s_jnl_blocks`: the journal inode's `i_block` and `i_size` backup.
    pub jnl_blocks: [u32; 17],
    /// `s_block_group_nr` of this copy.
    pub group_nr: u16,
}

/// Encode the 1024-byte superblock.
pub fn superblock(f: &SuperFields) -> [u8; 1024] {
    let mut b = [0u8; 1024];
    put32(&mut b, 0x0, f.inodes_count);
    put32(&mut b, 0x4, lo32(f.blocks_count));
    put32(&mut b, 0x8, 0); // reserved blocks: images need none held back
    put32(&mut b, 0xC, lo32(f.free_blocks));
    put32(&mut b, 0x10, f.free_inodes);
    put32(&mut b, 0x14, 0); // first data block (0 for 4 KiB blocks)
    put32(&mut b, 0x18, 2); // log2(block size) - 10
    put32(&mut b, 0x1C, 2); // cluster size = block size
    put32(&mut b, 0x20, BLOCKS_PER_GROUP as u32);
    put32(&mut b, 0x24, BLOCKS_PER_GROUP as u32);
    put32(&mut b, 0x28, f.inodes_per_group);
    put32(&mut b, 0x2C, 0); // mtime: never mounted
    put32(&mut b, 0x30, f.time); // wtime
    put16(&mut b, 0x34, 0); // mount count
    put16(&mut b, 0x36, 0xFFFF); // max mount count: no forced checks
    put16(&mut b, 0x38, 0xEF53);
    put16(&mut b, 0x3A, 1); // clean
    put16(&mut b, 0x3C, 1); // errors: continue
    put32(&mut b, 0x40, f.time); // last check
    put32(&mut b, 0x4C, 1); // dynamic revision
    put32(&mut b, 0x54, 11); // first non-reserved inode
    put16(&mut b, 0x58, INODE_SIZE as u16);
    put16(&mut b, 0x5A, f.group_nr);
    put32(
        &mut b,
        0x5C,
        COMPAT_HAS_JOURNAL | COMPAT_EXT_ATTR | COMPAT_DIR_INDEX,
    );
    put32(
        &mut b,
        0x60,
        INCOMPAT_FILETYPE | INCOMPAT_EXTENTS | INCOMPAT_64BIT | INCOMPAT_FLEX_BG,
    );
    put32(
        &mut b,
        0x64,
        RO_COMPAT_SPARSE_SUPER
            | RO_COMPAT_LARGE_FILE
            | RO_COMPAT_HUGE_FILE
            | RO_COMPAT_DIR_NLINK
            | RO_COMPAT_EXTRA_ISIZE
            | RO_COMPAT_METADATA_CSUM,
    );
    b[0x68..0x78].copy_from_slice(&f.uuid);
    b[0x78..0x88].copy_from_slice(&f.label);
    put32(&mut b, 0xE0, 8); // journal inode
    b[0xEC..0xFC].copy_from_slice(&f.hash_seed);
    b[0xFC] = 1; // half_md4
    b[0xFD] = 1; // s_jnl_backup_type: journal inode blocks copied below
    put16(&mut b, 0xFE, DESC_SIZE as u16);
    put32(&mut b, 0x100, 0x0C); // default mount options: user_xattr, acl
    put32(&mut b, 0x108, f.time); // mkfs time
    for (i, v) in f.jnl_blocks.iter().enumerate() {
        put32(&mut b, 0x10C + 4 * i, *v);
    }
    put32(&mut b, 0x150, hi32(f.blocks_count));
    put32(&mut b, 0x158, hi32(f.free_blocks));
    put16(&mut b, 0x15C, EXTRA_ISIZE);
    put16(&mut b, 0x15E, EXTRA_ISIZE);
    put32(&mut b, 0x160, 0x1); // signed directory hash
    b[0x174] = f.log_groups_per_flex;
    b[0x175] = 1; // crc32c
    let c = crc32c(!0, &b[..0x3FC]);
    put32(&mut b, 0x3FC, c);
    b
}

/// Group descriptor fields.
#[derive(Debug, Clone, Default)]
pub struct GroupDesc {
    /// `bg_block_bitmap_lo` / `_hi`.
    pub block_bitmap: u64,
    /// `bg_inode_bitmap_lo` / `_hi`.
    pub inode_bitmap: u64,
    /// `bg_inode_table_lo` / `_hi`.
    pub inode_table: u64,
    /// `bg_free_blocks_count_lo` / `_hi`.
    pub free_blocks: u32,
    /// `bg_free_inodes_count_lo` / `_hi`.
    pub free_inodes: u32,
    /// `bg_used_dirs_count_lo` / `_hi`.
    pub used_dirs: u32,
    /// `bg_itable_unused_lo` / `_hi`.
    pub itable_unused: u32,
    /// `bg_block_bitmap_csum_lo` / `_hi`.
    pub block_bitmap_csum: u32,
    /// `bg_inode_bitmap_csum_lo` / `_hi`.
    pub inode_bitmap_csum: u32,
}

/// Encode one 64-byte group descriptor with its checksum.
pub fn group_desc(d: &GroupDesc, group: u32, csum_seed: u32) -> [u8; DESC_SIZE] {
    let mut b = [0u8; DESC_SIZE];
    put32(&mut b, 0x0, lo32(d.block_bitmap));
    put32(&mut b, 0x4, lo32(d.inode_bitmap));
    put32(&mut b, 0x8, lo32(d.inode_table));
    put16(&mut b, 0xC, (d.free_blocks & 0xFFFF) as u16);
    put16(&mut b, 0xE, (d.free_inodes & 0xFFFF) as u16);
    put16(&mut b, 0x10, (d.used_dirs & 0xFFFF) as u16);
    put16(&mut b, 0x12, BG_INODE_ZEROED);
    put16(&mut b, 0x18, (d.block_bitmap_csum & 0xFFFF) as u16);
    put16(&mut b, 0x1A, (d.inode_bitmap_csum & 0xFFFF) as u16);
    put16(&mut b, 0x1C, (d.itable_unused & 0xFFFF) as u16);
    put32(&mut b, 0x20, hi32(d.block_bitmap));
    put32(&mut b, 0x24, hi32(d.inode_bitmap));
    put32(&mut b, 0x28, hi32(d.inode_table));
    put16(&mut b, 0x2C, (d.free_blocks >> 16) as u16);
    put16(&mut b, 0x2E, (d.free_inodes >> 16) as u16);
    put16(&mut b, 0x30, (d.used_dirs >> 16) as u16);
    put16(&mut b, 0x32, (d.itable_unused >> 16) as u16);
    put16(&mut b, 0x38, (d.block_bitmap_csum >> 16) as u16);
    put16(&mut b, 0x3A, (d.inode_bitmap_csum >> 16) as u16);
    let c = crc32c(crc32c(csum_seed, &group.to_le_bytes()), &b);
    put16(&mut b, 0x1E, (c & 0xFFFF) as u16);
    b
}

/// Seed for per-inode checksums (inode number, then generation 0).
pub fn inode_seed(csum_seed: u32, ino: u32) -> u32 {
    crc32c(crc32c(csum_seed, &ino.to_le_bytes()), &0u32.to_le_bytes())
}

/// Fill in an inode's checksum (fields zeroed during the computation).
pub fn seal_inode(b: &mut [u8; INODE_SIZE], csum_seed: u32, ino: u32) {
    put16(b, 0x7C, 0);
    put16(b, 0x82, 0);
    let c = crc32c(inode_seed(csum_seed, ino), b);
    put16(b, 0x7C, (c & 0xFFFF) as u16);
    put16(b, 0x82, (c >> 16) as u16);
}

/// An extent: `len` blocks at `start`, logical block `logical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// `ee_block`: first logical block.
    pub logical: u32,
    /// `ee_start_lo` / `ee_start_hi`: first physical block.
    pub start: u64,
    /// `ee_len`: blocks.
    pub len: u16,
}

/// Extent header bytes.
pub fn extent_header(entries: u16, max: u16, depth: u16) -> [u8; 12] {
    let mut b = [0u8; 12];
    put16(&mut b, 0, 0xF30A);
    put16(&mut b, 2, entries);
    put16(&mut b, 4, max);
    put16(&mut b, 6, depth);
    b
}

/// Extent entry bytes.
pub fn extent_entry(e: &Extent) -> [u8; 12] {
    let mut b = [0u8; 12];
    put32(&mut b, 0, e.logical);
    put16(&mut b, 4, e.len);
    put16(&mut b, 6, (e.start >> 32) as u16);
    put32(&mut b, 8, lo32(e.start));
    b
}

/// Extent index entry bytes.
pub fn extent_index(logical: u32, leaf: u64) -> [u8; 12] {
    let mut b = [0u8; 12];
    put32(&mut b, 0, logical);
    put32(&mut b, 4, lo32(leaf));
    put16(&mut b, 8, (leaf >> 32) as u16);
    b
}

/// Directory entry file types.
pub fn dirent_type(mode: u16) -> u8 {
    match mode & 0xF000 {
        0x8000 => 1,
        0x4000 => 2,
        0x2000 => 3,
        0x6000 => 4,
        0x1000 => 5,
        0xC000 => 6,
        0xA000 => 7,
        _ => 0,
    }
}

/// Minimum record length of a directory entry with a name of `n` bytes.
pub fn rec_len(n: usize) -> usize {
    (8 + n + 3) & !3
}

/// Pack directory entries `(name, inode, type)` into blocks, each closed by the checksum tail.
pub fn dir_blocks(entries: &[(Vec<u8>, u32, u8)], csum_seed: u32, dir_ino: u32) -> Vec<Vec<u8>> {
    let usable = BLOCK as usize - 12;
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    let mut cur: Vec<u8> = Vec::with_capacity(BLOCK as usize);
    let mut last_off = 0usize;
    let close = |cur: &mut Vec<u8>, last_off: usize, blocks: &mut Vec<Vec<u8>>| {
        let mut b = std::mem::take(cur);
        if b.is_empty() {
            // An empty block: one unused entry spanning it.
            b.resize(8, 0);
            put16(&mut b, 4, usable as u16);
        } else {
            let extend = usable - b.len();
            let rl = u16::from_le_bytes([b[last_off + 4], b[last_off + 5]]) as usize + extend;
            put16(&mut b, last_off + 4, rl as u16);
        }
        b.resize(BLOCK as usize, 0);
        // Tail: zero inode, rec_len 12, name_len 0, type 0xDE, checksum.
        put16(&mut b, usable + 4, 12);
        b[usable + 7] = 0xDE;
        let c = crc32c(inode_seed(csum_seed, dir_ino), &b[..usable]);
        put32(&mut b, usable + 8, c);
        blocks.push(b);
    };
    for (name, ino, ty) in entries {
        let rl = rec_len(name.len());
        if cur.len() + rl > usable {
            close(&mut cur, last_off, &mut blocks);
        }
        last_off = cur.len();
        let start = cur.len();
        cur.resize(start + rl, 0);
        put32(&mut cur, start, *ino);
        put16(&mut cur, start + 4, rl as u16);
        cur[start + 6] = name.len() as u8;
        cur[start + 7] = *ty;
        cur[start + 8..start + 8 + name.len()].copy_from_slice(name);
    }
    close(&mut cur, last_off, &mut blocks);
    blocks
}

/// An empty directory block (for lost+found's spare blocks).
pub fn empty_dir_block(csum_seed: u32, dir_ino: u32) -> Vec<u8> {
    dir_blocks(&[], csum_seed, dir_ino).remove(0)
}

/// The jbd2 journal superblock (big-endian), for an empty journal of `len` blocks.
pub fn journal_superblock(len: u32, uuid: &[u8; 16]) -> Vec<u8> {
    let mut b = vec![0u8; BLOCK as usize];
    let be = |b: &mut [u8], off: usize, v: u32| b[off..off + 4].copy_from_slice(&v.to_be_bytes());
    be(&mut b, 0x0, 0xC03B_3998);
    be(&mut b, 0x4, 4); // superblock v2
    be(&mut b, 0xC, BLOCK as u32);
    be(&mut b, 0x10, len);
    be(&mut b, 0x14, 1); // first log block
    be(&mut b, 0x18, 1); // first expected commit id
    be(&mut b, 0x1C, 0); // start 0: journal is clean
    b[0x30..0x40].copy_from_slice(uuid);
    be(&mut b, 0x40, 1); // one user: this filesystem
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_super_groups() {
        let g: Vec<u64> = (0..30).filter(|&g| has_super(g)).collect();
        assert_eq!(g, vec![0, 1, 3, 5, 7, 9, 25, 27]);
    }

    #[test]
    fn crc32c_matches_linux_convention() {
        // Linux crc32c(~0, "123456789") followed by ~ equals the standard check value.
        assert_eq!(!crc32c(!0, b"123456789"), 0xE306_9283);
    }

    #[test]
    fn dir_block_rec_lens_cover_block() {
        let e = vec![
            (b".".to_vec(), 2, 2),
            (b"..".to_vec(), 2, 2),
            (b"file".to_vec(), 12, 1),
        ];
        let blocks = dir_blocks(&e, 0, 2);
        assert_eq!(blocks.len(), 1);
        let b = &blocks[0];
        let mut off = 0;
        while off < 4084 {
            let rl = u16::from_le_bytes([b[off + 4], b[off + 5]]) as usize;
            assert!(rl >= 8);
            off += rl;
        }
        assert_eq!(off, 4084);
    }
}
