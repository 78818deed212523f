//! Planning: inode numbers, group layout, and block allocation for every node, before any byte is written; and `describe`, which names what a byte offset holds.

#[allow(unused_imports)]
use super::*;

pub(super) fn journal_blocks(total: u64) -> u32 {
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
    pub(super) nodes: Vec<Node>,
    pub(super) blocks: u64,
    pub(super) groups: u64,
    pub(super) ipg: u32,
    pub(super) gdt_blocks: u64,
    pub(super) bitmaps_at: u64,
    pub(super) tables: Vec<u64>,
    pub(super) cursor: u64,
    pub(super) params: Params,
    pub(super) csum_seed: u32,
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

    pub(super) fn reserved_at(&self, block: u64) -> Option<u64> {
        let g = block / BLOCKS_PER_GROUP;
        let off = block % BLOCKS_PER_GROUP;
        if has_super(g) && off < 1 + self.gdt_blocks {
            Some(g * BLOCKS_PER_GROUP + 1 + self.gdt_blocks)
        } else {
            None
        }
    }

    pub(super) fn next_reserved(&self, from: u64) -> u64 {
        let mut g = from / BLOCKS_PER_GROUP + 1;
        while g < self.groups {
            if has_super(g) {
                return g * BLOCKS_PER_GROUP;
            }
            g += 1;
        }
        self.blocks
    }

    pub(super) fn too_small(&self) -> Ext4Error {
        Ext4Error::TooSmall {
            needed: (self.cursor + 1) * BLOCK,
            available: self.blocks * BLOCK,
        }
    }

    pub(super) fn alloc_contiguous(&mut self, n: u64) -> Result<u64, Ext4Error> {
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

    pub(super) fn alloc_runs(&mut self, mut n: u64) -> Result<Vec<(u64, u64)>, Ext4Error> {
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
