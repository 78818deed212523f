//! `rm` and `rmdir` as a postinst runs them.

use super::{options, target, Cwd};
use crate::tree::{Kind, Tree};

/// `rmdir DIR...`: each an empty directory (base-files' postinst empties `/var/run` for its
/// link to `/run`); one that is not there is nothing to do (mariadb-server's leftover
/// upgrade directory); false, with the directories before it gone, at one that is not empty.
pub(super) fn rmdir(tree: &mut Tree, cwd: Cwd, args: &[String]) -> bool {
    for p in args {
        let Some(rel) = target(cwd, p) else {
            return false;
        };
        if tree.get(&rel).is_none() {
            continue;
        }
        let empty = tree.children(&rel).next().is_none();
        if !(empty && matches!(tree.get(&rel).map(|e| &e.kind), Some(Kind::Dir))) {
            return false;
        }
        tree.remove(&rel);
    }
    true
}

pub(super) fn rm(tree: &mut Tree, cwd: Cwd, args: &[String]) -> bool {
    let long = [("force", 'f'), ("recursive", 'r'), ("verbose", 'v')];
    let Some((opts, paths)) = options(args, "frRv", "", &long) else {
        return false;
    };
    let recursive = opts.iter().any(|(c, _)| matches!(c, 'r' | 'R'));
    let Some(rels) = paths
        .iter()
        .map(|p| target(cwd, p))
        .collect::<Option<Vec<_>>>()
    else {
        return false;
    };
    // A whole top-level directory (`rm -r /etc`) is no postinst's business: left out.
    if recursive && rels.iter().any(|r| !r.trim_matches('/').contains('/')) {
        return false;
    }
    for rel in rels {
        let at = tree.resolve_parent(&rel).unwrap_or(rel);
        match tree.get(&at).map(|e| &e.kind) {
            // A directory goes only with -r, as rm does.
            Some(Kind::Dir) if !recursive => {}
            Some(_) => {
                tree.remove(&at);
            }
            None => {}
        }
    }
    true
}
