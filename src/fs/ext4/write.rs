//! Writing: superblock and group descriptors with their backups, bitmaps, inode tables, the journal, directories and file data.

#[allow(unused_imports)]
use super::*;

impl Plan {
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

    pub(super) fn dir_content(&self, ino: u32, n: &Node) -> Vec<Vec<u8>> {
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

    pub(super) fn physical(&self, extents: &[Extent], logical: u64) -> u64 {
        for e in extents {
            let l = u64::from(e.logical);
            if logical >= l && logical < l + u64::from(e.len) {
                return e.start + logical - l;
            }
        }
        0
    }

    pub(super) fn write_leaves(
        &self,
        ino: u32,
        n: &Node,
        out: &mut dyn WriteAt,
    ) -> Result<(), Ext4Error> {
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

    pub(super) fn write_extents(
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

    pub(super) fn write_content(
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
