//! Inode encoding: mode, owners, times, size, flags, extents or inline data, checksum.

#[allow(unused_imports)]
use super::*;

pub(super) fn encode_time(secs: i64) -> (u32, u32) {
    let lo = secs as u32;
    let epoch = ((secs - i64::from(lo as i32)) >> 32) as u32 & 3;
    (lo, epoch)
}

impl Plan {
    pub(super) fn encode_inode(&self, ino: u32, n: &Node) -> [u8; INODE_SIZE] {
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
}
