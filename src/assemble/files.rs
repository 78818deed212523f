//! Files from the profile: literal content, a host file (resolved and checked when the
//! profile was read, opened here without following links or blocking) or a symlink, and overlay
//! directories copied as regular files, directories and symlinks only.

use anyhow::{bail, Context, Result};

use crate::tree::{Content, Entry, Kind, Tree};

pub(super) fn install_file(
    tree: &mut Tree,
    f: &crate::config::FileSpec,
    origin: &str,
    files: &[&std::path::Path],
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
    // A path the image's own tree cannot take is the entry's to change: bad input, at the
    // entry's `path` line in `files` (the profile, then those it extends).
    let bad = |message: String| -> anyhow::Error {
        crate::config::rule_at_value(files, "path", &f.path, format!("{origin}: {message}")).into()
    };
    // A directory of the image (or a link to one, as /bin is to /usr/bin) is never replaced
    // by a profile's file: everything under it would go with it. `resolve` follows a final
    // link and is the path itself otherwise.
    let replaces_dir = tree
        .resolve(&f.path)
        .ok()
        .and_then(|p| tree.get(&p))
        .is_some_and(|x| x.kind == Kind::Dir);
    if replaces_dir {
        return Err(bad(format!(
            "{what} {}: the image has a directory there, which it would replace with everything under it; give a path inside it",
            f.path
        )));
    }
    tree.insert(&f.path, e)
        .map_err(|err| bad(format!("{what} {}: {err}", f.path)))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_file_never_replaces_a_directory_of_the_image() {
        let dir = tempfile::tempdir().unwrap();
        let profile = dir.path().join("p.toml");
        std::fs::write(&profile, "[[files]]\npath = \"/bin\"\ncontent = \"x\"\n").unwrap();
        let mut t = Tree::new();
        t.insert("usr/bin/sh", Entry::file("", 0o755)).unwrap();
        t.insert("bin", Entry::symlink("usr/bin")).unwrap();
        t.insert("etc/resolv.conf", Entry::symlink("../run/resolv.conf"))
            .unwrap();
        let spec = |path: &str| crate::config::FileSpec {
            path: path.into(),
            content: Some("x".into()),
            source: None,
            link: None,
            mode: None,
            uid: 0,
            gid: 0,
            allow_outside: false,
        };
        for path in ["/bin", "/usr/bin", "/usr/bin/sh/x"] {
            let e = install_file(&mut t, &spec(path), "files", &[&profile]).unwrap_err();
            assert_eq!(crate::cli::exit_code(&e), 2, "{path}: {e:#}");
            // Shown at the entry's line when the file writes that path.
            if path == "/bin" {
                let want = format!(
                    "{}:2:1: files: file /bin: the image has a directory there",
                    profile.display()
                );
                assert!(e.to_string().starts_with(&want), "{e}");
            }
        }
        // Nothing was replaced.
        assert!(t.exists("usr/bin/sh"));
        assert!(matches!(
            t.get("bin").map(|e| &e.kind),
            Some(Kind::Symlink(_))
        ));
        // A link to a file is replaced, as a profile writing its own resolv.conf means.
        install_file(&mut t, &spec("/etc/resolv.conf"), "files", &[&profile]).unwrap();
        assert_eq!(t.read("etc/resolv.conf").unwrap(), b"x");
    }
}
