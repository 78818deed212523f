//! Unpacking: the extracted data.tar of every image package into one file tree (merged /usr,
//! dpkg's status and file lists), and the boot-only packages into trees of their own.

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
    let mut status = String::new();
    let mut lists: Vec<(String, String)> = Vec::new();
    let mut ready: Vec<&Ready> = ready
        .iter()
        .filter(|r| matches!(r.locked.role, Role::Image | Role::Generated))
        .collect();
    ready.sort_by(|a, b| a.locked.info.name.cmp(&b.locked.info.name));
    for r in ready {
        let name = &r.locked.info.name;
        let listed = deb::unpack(&r.data_tar, name, &mut tree)?;
        let mut control = r.extracted.control.trim_end().to_string();
        // dpkg's status file carries Status right after Package.
        if let Some(pos) = control.find('\n') {
            control.insert_str(pos + 1, "Status: install ok installed\n");
        }
        status.push_str(&control);
        status.push_str("\n\n");
        let multi_same = r
            .extracted
            .control
            .lines()
            .any(|l| l.trim() == "Multi-Arch: same");
        let list_name = if multi_same {
            format!("{name}:{}", r.locked.info.arch)
        } else {
            name.clone()
        };
        let mut text = String::from("/.\n");
        for p in listed {
            text.push_str(p.trim_end_matches('/'));
            text.push('\n');
        }
        lists.push((list_name, text));
    }
    tree.insert("var/lib/dpkg/status", Entry::file(status, 0o644))?;
    tree.insert("var/lib/dpkg/available", Entry::file("", 0o644))?;
    tree.insert(
        "var/lib/dpkg/arch",
        Entry::file(format!("{}\n", arch.debian()), 0o644),
    )?;
    for (n, text) in lists {
        tree.insert(
            &format!("var/lib/dpkg/info/{n}.list"),
            Entry::file(text, 0o644),
        )?;
    }
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
