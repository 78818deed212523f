//! Files from the profile: literal content, a host file (resolved and checked when the
//! profile was read, opened here without following links or blocking) or a symlink, and overlay
//! directories copied as regular files, directories and symlinks only.

use anyhow::{bail, Context, Result};

use crate::tree::{Content, Entry, Kind, Tree};

pub(super) fn install_file(
    tree: &mut Tree,
    f: &crate::config::FileSpec,
    origin: &str,
) -> Result<()> {
    let (what, mut e) = if let Some(target) = &f.link {
        ("link", Entry::symlink(target))
    } else {
        let data = match (&f.content, &f.source) {
            (Some(c), _) => c.clone().into_bytes(),
            (None, Some(src)) => crate::base::fsx::read_regular(std::path::Path::new(src))
                .with_context(|| format!("{origin}: file {}", f.path))?,
            (None, None) => Vec::new(),
        };
        let mode = f.mode.map_or(0o644, |m| m.0);
        ("file", Entry::new(Kind::File(Content::bytes(data)), mode))
    };
    e.uid = f.uid;
    e.gid = f.gid;
    e.origin = std::sync::Arc::from("ingot:profile");
    tree.insert(&f.path, e)
        .with_context(|| format!("{origin}: {what} {}", f.path))?;
    Ok(())
}

pub(super) fn overlay(tree: &mut Tree, dir: &std::path::Path) -> Result<()> {
    fn walk(tree: &mut Tree, root: &std::path::Path, dir: &std::path::Path) -> Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("overlay {}", dir.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("overlay {}", dir.display()))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p
                .strip_prefix(root)
                .unwrap_or(&p)
                .to_string_lossy()
                .into_owned();
            let meta = std::fs::symlink_metadata(&p)
                .with_context(|| format!("overlay {}", p.display()))?;
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o7777;
            let ft = meta.file_type();
            let mut entry = if ft.is_dir() {
                Entry::dir(mode)
            } else if ft.is_symlink() {
                Entry::symlink(
                    &std::fs::read_link(&p)
                        .with_context(|| format!("overlay {}", p.display()))?
                        .to_string_lossy(),
                )
            } else if ft.is_file() {
                Entry::file(crate::base::fsx::read_regular(&p)?, mode)
            } else {
                // Never read a FIFO (it blocks) or a device (it may never end).
                bail!(
                    "overlay {}: {} is {}; overlays hold regular files, directories and symlinks only",
                    root.display(),
                    p.display(),
                    crate::base::fsx::kind_of(&ft)
                );
            };
            entry.origin = std::sync::Arc::from("ingot:overlay");
            tree.insert(&rel, entry)?;
            if meta.is_dir() {
                walk(tree, root, &p)?;
            }
        }
        Ok(())
    }
    walk(tree, dir, dir)
}
