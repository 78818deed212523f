//! Unpacking: the extracted data.tar of every image package into one file tree (merged /usr,
//! dpkg's database: `super::dpkgdb`), and the boot-only packages into trees of their own.

use anyhow::{Context, Result};

use super::{deb, Ready, Role};
use crate::config::Arch;
use crate::tree::{Entry, Tree};

/// Lay down the merged-usr skeleton: `/bin`, `/sbin`, `/lib` (and `/lib64` on x86_64) are
/// symlinks into `/usr`, so package files under them land in `/usr`.
pub fn merged_usr(tree: &mut Tree, arch: Arch) -> Result<()> {
    let mut dirs = vec!["bin", "sbin", "lib"];
    if arch == Arch::X86_64 {
        dirs.push("lib64");
    }
    for d in dirs {
        tree.insert(&format!("usr/{d}"), Entry::dir(0o755))?;
        tree.insert(d, Entry::symlink(&format!("usr/{d}")))?;
    }
    Ok(())
}

/// Unpack the image packages into a tree (sorted by name, so the result never depends on
/// download order) and record them, and Ingot's generated entries, in the dpkg database.
pub fn unpack_image(ready: &[Ready], arch: Arch) -> Result<Tree> {
    let mut tree = Tree::new();
    merged_usr(&mut tree, arch)?;
    let mut db = super::dpkgdb::Db::default();
    let mut ready: Vec<&Ready> = ready
        .iter()
        .filter(|r| matches!(r.locked.role, Role::Image | Role::Generated))
        .collect();
    ready.sort_by(|a, b| a.locked.info.name.cmp(&b.locked.info.name));
    for r in ready {
        let name = &r.locked.info.name;
        let listed = deb::unpack(&r.data_tar, name, &mut tree)?;
        db.add(
            &tree,
            &r.extracted.control,
            &r.extracted.info,
            name,
            &r.locked.info.arch,
            &listed,
        );
    }
    db.write(&mut tree, arch)?;
    Ok(tree)
}

/// Unpack one build-time package into its own tree (for the boot chain).
pub fn unpack_boot(ready: &[Ready], name: &str) -> Result<Tree> {
    let r = ready
        .iter()
        .find(|r| r.locked.info.name == name)
        .with_context(|| format!("build-time package `{name}` missing from the package set"))?;
    let mut tree = Tree::new();
    deb::unpack(&r.data_tar, name, &mut tree)?;
    Ok(tree)
}
