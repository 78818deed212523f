//! The tree as the writer sees it: one node per inode, in inode order, with its data, xattrs and extents.

#[allow(unused_imports)]
use super::*;

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
pub(super) enum Data {
    None,
    File(Content),
    Bytes(Vec<u8>),
    Dir(Vec<Vec<u8>>),
    /// lost+found: one directory block followed by empty spare blocks.
    DirSpare(Vec<Vec<u8>>, usize),
    Journal(u32),
}

#[derive(Debug, Clone)]
pub(super) struct Node {
    pub(super) path: String,
    pub(super) mode: u16,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) time: i64,
    pub(super) links: u32,
    pub(super) size: u64,
    pub(super) inline: Option<[u8; 60]>,
    pub(super) xattrs: Vec<(u8, Vec<u8>, Vec<u8>)>,
    /// The xattrs live in their own block (they do not fit in the inode); its number once
    /// allocated.
    pub(super) xattr_external: bool,
    pub(super) xattr_block: Option<u64>,
    pub(super) data: Data,
    pub(super) extents: Vec<Extent>,
    pub(super) leaf_blocks: Vec<u64>,
}

impl Node {
    pub(super) fn blocks_needed(&self) -> u64 {
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

pub(super) fn type_bits(kind: &Kind) -> u16 {
    match kind {
        Kind::File(_) | Kind::HardLink(_) => 0x8000,
        Kind::Dir => 0x4000,
        Kind::Symlink(_) => 0xA000,
        Kind::CharDev { .. } => 0x2000,
        Kind::BlockDev { .. } => 0x6000,
        Kind::Fifo => 0x1000,
    }
}

/// A directory entry before encoding: name, inode, file type.
type DirEnt = (Vec<u8>, u32, u8);

pub(super) fn collect_nodes(tree: &Tree, seed: u32) -> Result<Vec<Node>, Ext4Error> {
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
