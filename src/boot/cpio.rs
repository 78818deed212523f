//! cpio "newc" archive writer for the initramfs, with fixed inode numbers and times so the
//! archive (and its gzip wrapper, whose header carries no time) is reproducible.

use std::io::Write;

use crate::tree::{Kind, Tree};

#[allow(clippy::too_many_arguments)]
fn header(
    out: &mut Vec<u8>,
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u32,
    size: u32,
    rdev: (u32, u32),
    name: &str,
) {
    let namesize = name.len() as u32 + 1;
    let fields = [
        ino, mode, 0, 0, nlink, mtime, size, 0, 0, rdev.0, rdev.1, namesize, 0,
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad(out);
}

fn pad(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// Serialise a tree (files, directories, symlinks, device nodes) as a newc archive.
pub fn newc(tree: &Tree, mtime: u32) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    for (ino, (path, e)) in (1u32..).zip(tree.iter()) {
        let name = if path.is_empty() { "." } else { path.as_str() };
        let perm = e.mode & 0o7777;
        match &e.kind {
            Kind::Dir => header(&mut out, ino, 0o040000 | perm, 2, mtime, 0, (0, 0), name),
            Kind::File(_) | Kind::HardLink(_) => {
                // Hard links are stored as full copies: the initramfs is tiny and the kernel's
                // unpacker needs no link bookkeeping that way.
                let data = match &e.kind {
                    Kind::File(c) => c.read_all()?,
                    _ => tree.read(path).ok_or_else(|| {
                        std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            format!("initramfs: hard link /{path} has no target"),
                        )
                    })?,
                };
                header(
                    &mut out,
                    ino,
                    0o100000 | perm,
                    1,
                    mtime,
                    data.len() as u32,
                    (0, 0),
                    name,
                );
                out.extend_from_slice(&data);
                pad(&mut out);
            }
            Kind::Symlink(t) => {
                header(
                    &mut out,
                    ino,
                    0o120777,
                    1,
                    mtime,
                    t.len() as u32,
                    (0, 0),
                    name,
                );
                out.extend_from_slice(t.as_bytes());
                pad(&mut out);
            }
            Kind::CharDev { major, minor } => header(
                &mut out,
                ino,
                0o020000 | perm,
                1,
                mtime,
                0,
                (*major, *minor),
                name,
            ),
            Kind::BlockDev { major, minor } => header(
                &mut out,
                ino,
                0o060000 | perm,
                1,
                mtime,
                0,
                (*major, *minor),
                name,
            ),
            Kind::Fifo => header(&mut out, ino, 0o010000 | perm, 1, mtime, 0, (0, 0), name),
        }
    }
    header(&mut out, 0, 0, 1, 0, 0, (0, 0), "TRAILER!!!");
    Ok(out)
}

/// gzip with a fixed header (no name, no time), as the kernel's initramfs loader accepts.
pub fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut e = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    e.write_all(data)?;
    e.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Entry;

    #[test]
    fn newc_layout() {
        let mut t = Tree::new();
        t.insert("init", Entry::file("#!/bin/sh\n", 0o755)).unwrap();
        t.insert("bin/sh", Entry::symlink("busybox")).unwrap();
        let a = newc(&t, 0).unwrap();
        assert!(a.starts_with(b"070701"));
        assert_eq!(a.len() % 4, 0);
        let s = String::from_utf8_lossy(&a);
        assert!(s.contains("bin/sh") && s.contains("TRAILER!!!"));
        assert_eq!(gzip(&a).unwrap(), gzip(&a).unwrap());
    }
}
