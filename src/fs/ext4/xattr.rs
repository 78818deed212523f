//! Extended attributes: name prefixes, the entry hash, and the external xattr block.

#[allow(unused_imports)]
use super::*;

pub(super) fn xattr_prefix(name: &str) -> (u8, &str) {
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

pub(super) const IN_INODE_XATTR: usize = INODE_SIZE - 128 - EXTRA_ISIZE as usize;

/// Header of an external xattr block (the entries' terminator is counted in `need`).
pub(super) const XATTR_BLOCK_HEADER: usize = 32;

/// The hash of one xattr entry (name, then the value's little-endian words), as the kernel's
/// `ext4_xattr_hash_entry` computes it.
pub(super) fn xattr_entry_hash(name: &[u8], value: &[u8]) -> u32 {
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
pub(super) fn xattr_block(seed: u32, block: u64, xattrs: &[(u8, Vec<u8>, Vec<u8>)]) -> Vec<u8> {
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
