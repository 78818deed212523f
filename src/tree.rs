//! The in-memory file tree: the one data structure every stage hands to the next.
//!
//! Paths are stored normalised and relative to the image root (`usr/bin/ls`; the root itself is
//! `""`). File contents are references, not copies: either bytes held in memory or a byte range of
//! a file in the extraction cache, so a tree of a few hundred megabytes costs little memory and the
//! filesystem writer streams contents straight from the cache.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;

/// Where a regular file's bytes live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// Bytes in memory.
    Inline(Arc<Vec<u8>>),
    /// `len` bytes at `offset` of a host file (an uncompressed `data.tar` in the cache).
    Slice {
        /// Host file.
        file: Arc<PathBuf>,
        /// Byte offset in it.
        offset: u64,
        /// Length.
        len: u64,
    },
}

impl Content {
    /// Content held in memory.
    pub fn bytes(data: impl Into<Vec<u8>>) -> Self {
        Content::Inline(Arc::new(data.into()))
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Content::Inline(b) => b.len() as u64,
            Content::Slice { len, .. } => *len,
        }
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A reader over the content.
    pub fn reader(&self) -> io::Result<Box<dyn Read + '_>> {
        Ok(match self {
            Content::Inline(b) => Box::new(io::Cursor::new(b.as_slice())),
            Content::Slice { file, offset, len } => {
                let mut f = File::open(file.as_path())?;
                f.seek(SeekFrom::Start(*offset))?;
                Box::new(f.take(*len))
            }
        })
    }

    /// Read everything (for small files the assembler edits, such as `/etc/passwd`).
    pub fn read_all(&self) -> io::Result<Vec<u8>> {
        let mut v = Vec::with_capacity(usize::try_from(self.len()).unwrap_or(0));
        self.reader()?.read_to_end(&mut v)?;
        Ok(v)
    }
}

/// The kind of a tree entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Regular file.
    File(Content),
    /// Directory.
    Dir,
    /// Symbolic link with its target as written.
    Symlink(String),
    /// Hard link to another path in the tree (resolved to the same inode when written).
    HardLink(String),
    /// Character device.
    CharDev {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// Block device.
    BlockDev {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// Named pipe.
    Fifo,
}

/// One entry: kind plus the metadata a filesystem records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// What it is.
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky (no type bits).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Extended attributes, full names (`security.capability`).
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// Package that installed it (empty for entries Ingot made).
    pub origin: Arc<str>,
}

/// The time a file with modification time `mtime` has in an image built at `epoch`: times
/// after the epoch, and the unset time zero of entries Ingot made, become the epoch.
pub fn stamped(mtime: i64, epoch: i64) -> i64 {
    if mtime == 0 || mtime > epoch {
        epoch
    } else {
        mtime
    }
}

impl Entry {
    /// A root-owned directory.
    pub fn dir(mode: u32) -> Self {
        Self::new(Kind::Dir, mode)
    }
    /// A root-owned file.
    pub fn file(data: impl Into<Vec<u8>>, mode: u32) -> Self {
        Self::new(Kind::File(Content::bytes(data)), mode)
    }
    /// A symlink.
    pub fn symlink(target: &str) -> Self {
        Self::new(Kind::Symlink(target.to_string()), 0o777)
    }
    /// Any kind, root-owned, time zero (the build stamps times later).
    pub fn new(kind: Kind, mode: u32) -> Self {
        Entry {
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: BTreeMap::new(),
            origin: Arc::from(""),
        }
    }
}

/// A path problem: escaping the root, going through a non-directory, and so on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TreeError {
    /// Absolute after normalisation or containing `..`.
    #[error("unsafe path `{0}` (absolute or containing `..`)")]
    UnsafePath(String),
    /// Resolving a symlink on the way would leave the image root.
    #[error("`{path}` would be written through symlink `{link}` -> `{target}`, which points outside the image")]
    SymlinkEscape {
        /// Path being written.
        path: String,
        /// Symlink on the way.
        link: String,
        /// Its target.
        target: String,
    },
    /// A path component is a file, not a directory.
    #[error("`{0}` has a parent that is not a directory")]
    NotADirectory(String),
    /// Too many symlinks.
    #[error("too many levels of symbolic links resolving `{0}`")]
    Loop(String),
    /// Missing path.
    #[error("`{0}` does not exist in the image")]
    Missing(String),
}

/// The file tree.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    entries: BTreeMap<String, Entry>,
}

/// Normalise a path as stored in a package (`./usr/bin/`, `usr//bin`) to `usr/bin`.
/// Rejects `..` components and, when `allow_absolute` is false, absolute paths.
pub fn normalize(path: &str, allow_absolute: bool) -> Result<String, TreeError> {
    let trimmed = path.strip_prefix("./").unwrap_or(path);
    if trimmed.starts_with('/') && !allow_absolute {
        return Err(TreeError::UnsafePath(path.to_string()));
    }
    let mut out: Vec<&str> = Vec::new();
    for comp in trimmed.split('/') {
        match comp {
            "" | "." => {}
            ".." => return Err(TreeError::UnsafePath(path.to_string())),
            c => out.push(c),
        }
    }
    Ok(out.join("/"))
}

fn parent_of(p: &str) -> &str {
    p.rfind('/').map_or("", |i| &p[..i])
}

fn name_of(p: &str) -> &str {
    p.rfind('/').map_or(p, |i| &p[i + 1..])
}

impl Tree {
    /// An empty tree holding only the root directory.
    pub fn new() -> Self {
        let mut entries = BTreeMap::new();
        entries.insert(String::new(), Entry::dir(0o755));
        Tree { entries }
    }

    /// Number of entries, root included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Never true: the root always exists.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Iterate in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.entries.iter()
    }

    /// Iterate mutably in path order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&String, &mut Entry)> {
        self.entries.iter_mut()
    }

    /// Look an entry up by its stored (already resolved) path.
    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.get(path.trim_start_matches('/'))
    }

    /// Mutable lookup by stored path.
    pub fn get_mut(&mut self, path: &str) -> Option<&mut Entry> {
        self.entries.get_mut(path.trim_start_matches('/'))
    }

    /// Remove an entry and, for a directory, everything below it. Returns how many went.
    pub fn remove(&mut self, path: &str) -> usize {
        let path = path
            .trim_start_matches('/')
            .trim_end_matches('/')
            .to_string();
        let prefix = format!("{path}/");
        // The entry itself, then everything under `path/` (a contiguous range: siblings such as
        // `path-x` sort between the two, so they are looked up separately).
        let mut doomed: Vec<String> = self
            .entries
            .get_key_value(&path)
            .map(|(k, _)| k.clone())
            .into_iter()
            .collect();
        doomed.extend(
            self.entries
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .map(|(k, _)| k.clone()),
        );
        doomed.retain(|k| !k.is_empty());
        for k in &doomed {
            self.entries.remove(k);
        }
        doomed.len()
    }

    /// Remove everything strictly below a directory, keeping the directory.
    pub fn clear_dir(&mut self, path: &str) -> usize {
        let path = path.trim_start_matches('/').trim_end_matches('/');
        let children: Vec<String> = self.children(path).map(|s| s.to_string()).collect();
        children.iter().map(|c| self.remove(c)).sum()
    }

    /// Remove every entry below a directory that is not itself a directory (files, links,
    /// device nodes), at any depth, keeping the directories. Returns how many went.
    pub fn remove_files_below(&mut self, path: &str) -> usize {
        let prefix = format!("{}/", path.trim_start_matches('/').trim_end_matches('/'));
        let before = self.entries.len();
        self.entries
            .retain(|k, e| !(k.starts_with(&prefix) && e.kind != Kind::Dir));
        before - self.entries.len()
    }

    /// Direct children of a stored directory path, as full paths, sorted.
    pub fn children<'a>(&'a self, dir: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        self.entries
            .range(prefix.clone()..)
            .take_while(move |(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| !k.is_empty())
            .map(|(k, _)| k.as_str())
            .filter(move |k| !k[dir.len()..].trim_start_matches('/').contains('/'))
            .filter(move |k| dir.is_empty() || k.len() > dir.len())
    }

    /// Resolve a path through symlinks in its directories (not the last component), the way
    /// `open(2)` would inside a chroot, refusing to leave the root.
    pub fn resolve_parent(&self, path: &str) -> Result<String, TreeError> {
        let norm = normalize(path, true)?;
        if norm.is_empty() {
            return Ok(norm);
        }
        let parent = parent_of(&norm);
        let dir = self.resolve_dir(parent, &norm, 0)?;
        let name = name_of(&norm);
        Ok(if dir.is_empty() {
            name.to_string()
        } else {
            format!("{dir}/{name}")
        })
    }

    /// Resolve every component, following a final symlink too.
    pub fn resolve(&self, path: &str) -> Result<String, TreeError> {
        let p = self.resolve_parent(path)?;
        match self.entries.get(&p) {
            Some(Entry {
                kind: Kind::Symlink(_),
                ..
            }) => self.resolve_dir(&p, path, 0),
            _ => Ok(p),
        }
    }

    fn resolve_dir(&self, dir: &str, for_path: &str, depth: u32) -> Result<String, TreeError> {
        if depth > 40 {
            return Err(TreeError::Loop(for_path.to_string()));
        }
        let mut cur: Vec<String> = Vec::new();
        let comps: Vec<&str> = dir.split('/').filter(|c| !c.is_empty()).collect();
        let last = comps.len().saturating_sub(1);
        for (i, comp) in comps.into_iter().enumerate() {
            cur.push(comp.to_string());
            let joined = cur.join("/");
            match self.entries.get(&joined).map(|e| &e.kind) {
                Some(Kind::Symlink(target)) => {
                    let base = parent_of(&joined);
                    let combined = if target.starts_with('/') {
                        target.clone()
                    } else {
                        format!("{base}/{target}")
                    };
                    let lexical =
                        lexical_clean(&combined).ok_or_else(|| TreeError::SymlinkEscape {
                            path: for_path.to_string(),
                            link: format!("/{joined}"),
                            target: target.clone(),
                        })?;
                    let resolved = self.resolve_dir(&lexical, for_path, depth + 1)?;
                    cur = resolved
                        .split('/')
                        .filter(|c| !c.is_empty())
                        .map(str::to_string)
                        .collect();
                }
                Some(Kind::Dir) | None => {}
                // The final component may be a file (a symlink's target); only parents must be
                // directories.
                Some(_) if i == last => {}
                Some(_) => return Err(TreeError::NotADirectory(for_path.to_string())),
            }
        }
        Ok(cur.join("/"))
    }

    /// Insert an entry at `path` (resolved through directory symlinks), creating missing parent
    /// directories (0755 root). An existing directory keeps its place when a directory is
    /// inserted again (metadata updated); a directory symlink is kept when a package ships the
    /// same path as a directory (merged-usr); anything else is replaced.
    pub fn insert(&mut self, path: &str, entry: Entry) -> Result<String, TreeError> {
        let resolved = self.resolve_parent(path)?;
        self.mkdir_p(parent_of(&resolved))?;
        match (self.entries.get_mut(&resolved), &entry.kind) {
            (Some(existing), Kind::Dir) if existing.kind == Kind::Dir => {
                existing.mode = entry.mode;
                existing.uid = entry.uid;
                existing.gid = entry.gid;
                existing.mtime = entry.mtime;
            }
            (
                Some(Entry {
                    kind: Kind::Symlink(_),
                    ..
                }),
                Kind::Dir,
            ) => {}
            (Some(existing), _) if existing.kind == Kind::Dir => {
                if resolved.is_empty() {
                    return Err(TreeError::UnsafePath(path.to_string()));
                }
                self.remove(&resolved);
                self.entries.insert(resolved.clone(), entry);
            }
            _ => {
                self.entries.insert(resolved.clone(), entry);
            }
        }
        Ok(resolved)
    }

    /// Create a directory and its parents (root-owned, 0755) where missing.
    pub fn mkdir_p(&mut self, dir: &str) -> Result<(), TreeError> {
        let mut cur = String::new();
        for comp in dir.split('/').filter(|c| !c.is_empty()) {
            if !cur.is_empty() {
                cur.push('/');
            }
            cur.push_str(comp);
            match self.entries.get(&cur).map(|e| &e.kind) {
                None => {
                    self.entries.insert(cur.clone(), Entry::dir(0o755));
                }
                Some(Kind::Dir) => {}
                Some(Kind::Symlink(_)) => {
                    cur = self.resolve_dir(&cur, dir, 0)?;
                }
                Some(_) => return Err(TreeError::NotADirectory(dir.to_string())),
            }
        }
        Ok(())
    }

    /// Read a regular file (following symlinks).
    pub fn read(&self, path: &str) -> Option<Vec<u8>> {
        let p = self.resolve(path).ok()?;
        match &self.entries.get(&p)?.kind {
            Kind::File(c) => c.read_all().ok(),
            Kind::HardLink(t) => self.read(&format!("/{t}")),
            _ => None,
        }
    }

    /// Write the regular file at `path` to `dest` on the build host (parents created): for the
    /// host tools that work on a copy (depmod, grub-mkimage, compileall).
    pub fn copy_out(&self, path: &str, dest: &std::path::Path) -> anyhow::Result<()> {
        use anyhow::Context;
        if let Some(d) = dest.parent() {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let data = self.read(path).with_context(|| {
            format!(
                "reading /{} from the image tree",
                path.trim_start_matches('/')
            )
        })?;
        std::fs::write(dest, data).with_context(|| format!("writing {}", dest.display()))
    }

    /// Does this path exist (following symlinks)?
    pub fn exists(&self, path: &str) -> bool {
        self.resolve(path)
            .ok()
            .is_some_and(|p| self.entries.contains_key(&p))
    }

    /// Total bytes of regular file content.
    pub fn content_bytes(&self) -> u64 {
        self.entries
            .values()
            .map(|e| match &e.kind {
                Kind::File(c) => c.len(),
                _ => 0,
            })
            .sum()
    }
}

/// Clean `a/./b/../c` lexically; `None` when `..` climbs above the root.
fn lexical_clean(p: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c),
        }
    }
    Some(out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_rejects_dotdot_and_absolute() {
        assert_eq!(normalize("./usr//bin/", false).unwrap(), "usr/bin");
        assert!(normalize("/etc/passwd", false).is_err());
        assert!(normalize("./usr/../../etc", false).is_err());
    }

    #[test]
    fn merged_usr_through_symlink() {
        let mut t = Tree::new();
        t.insert("usr/bin", Entry::dir(0o755)).unwrap();
        t.insert("bin", Entry::symlink("usr/bin")).unwrap();
        let p = t.insert("bin/sh", Entry::file("x", 0o755)).unwrap();
        assert_eq!(p, "usr/bin/sh");
        // A package shipping ./bin as a directory keeps the symlink.
        t.insert("bin", Entry::dir(0o755)).unwrap();
        assert!(matches!(t.get("bin").unwrap().kind, Kind::Symlink(_)));
        assert_eq!(t.read("/bin/sh").unwrap(), b"x");
    }

    #[test]
    fn symlink_escape_is_refused() {
        let mut t = Tree::new();
        t.insert("evil", Entry::symlink("../../../tmp")).unwrap();
        let e = t.insert("evil/x", Entry::file("x", 0o644)).unwrap_err();
        assert!(matches!(e, TreeError::SymlinkEscape { .. }), "{e}");
    }

    #[test]
    fn children_and_remove() {
        let mut t = Tree::new();
        t.insert("a/b/c", Entry::file("", 0o644)).unwrap();
        t.insert("a/b-x", Entry::file("", 0o644)).unwrap();
        t.insert("a/d", Entry::file("", 0o644)).unwrap();
        let kids: Vec<_> = t.children("a").collect();
        assert_eq!(kids, vec!["a/b", "a/b-x", "a/d"]);
        let top: Vec<_> = t.children("").collect();
        assert_eq!(top, vec!["a"]);
        assert_eq!(t.remove("a/b"), 2);
        assert!(t.get("a/b-x").is_some());
    }
}
