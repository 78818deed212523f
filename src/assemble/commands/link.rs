//! `ln` as a postinst runs it: symbolic links, `-f` over what is there, `-r` relative.

use anyhow::{Context, Result};

use super::{absolute, options, parent_is_dir, target, Cwd};
use crate::tree::{Entry, Kind, Tree};

pub(super) fn ln(tree: &mut Tree, cwd: Cwd, args: &[String]) -> Result<bool> {
    let Some((opts, ops)) = options(
        args,
        "sfnTr",
        "",
        &[
            ("symbolic", 's'),
            ("force", 'f'),
            ("no-dereference", 'n'),
            ("relative", 'r'),
        ],
    ) else {
        return Ok(false);
    };
    let has = |c: char| opts.iter().any(|(o, _)| *o == c);
    let [to, link] = ops.as_slice() else {
        return Ok(false);
    };
    let Some(rel) = target(cwd, link) else {
        return Ok(false);
    };
    let relative;
    let to = if has('r') {
        // `-r` (locales on Debian 13: `ln -sfr /etc/locale.conf /etc/default/locale`): the
        // target as a path from the link's directory, both resolved through the image's
        // links as `realpath -m` resolves them.
        let Some(abs) = absolute(cwd, to) else {
            return Ok(false);
        };
        let (Some(from), Some(dest)) = (canonical(tree, parent_of(&rel)), canonical(tree, &abs))
        else {
            return Ok(false);
        };
        relative = relative_path(&from, &dest);
        &relative
    } else {
        to
    };
    if !has('s') || to.is_empty() || !parent_is_dir(tree, &rel) {
        return Ok(false);
    }
    let at = tree.resolve_parent(&rel).unwrap_or(rel.clone());
    match tree.get(&at).map(|e| &e.kind) {
        None => {}
        // Into a directory that is there: not what these scripts mean.
        Some(Kind::Dir) => return Ok(false),
        Some(_) if has('f') => {
            tree.remove(&at);
        }
        Some(_) => return Ok(true),
    }
    tree.insert(&rel, Entry::symlink(to.as_str()))
        .with_context(|| format!("linking /{rel}"))?;
    Ok(true)
}

/// The directory part of a tree path (`""` for the root).
fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(d, _)| d)
}

/// `path` (absolute, or relative to the root) with every link in it followed and `.`, `..`
/// taken, as `realpath -m` gives it: a tree path.
fn canonical(tree: &Tree, path: &str) -> Option<String> {
    let mut at = String::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => at = parent_of(&at).to_string(),
            c if at.is_empty() => at = tree.resolve(c).ok()?,
            c => at = tree.resolve(&format!("{at}/{c}")).ok()?,
        }
    }
    Some(at)
}

/// The path from directory `from` to `to`, both tree paths (relative to the root, resolved).
pub(super) fn relative_path(from: &str, to: &str) -> String {
    let parts = |p: &str| -> Vec<String> {
        p.split('/')
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect()
    };
    let (from, to) = (parts(from), parts(to));
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out: Vec<String> = vec!["..".to_string(); from.len() - common];
    out.extend(to[common..].iter().cloned());
    if out.is_empty() {
        ".".to_string()
    } else {
        out.join("/")
    }
}
