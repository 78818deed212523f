//! `systemd-tmpfiles --create CONF...`, which debhelper's `dh_installtmpfiles` puts in a
//! package's postinst: what the named tmpfiles.d files say of the image's persistent paths,
//! done at build time as dpkg's run of the script does it (systemd's `/etc/credstore` 0700,
//! `/var/lib/systemd/pstore`, `/etc/default/locale` as a link to `../locale.conf`, zabbix-agent's
//! log directory owned by its account). What lives in the machine's runtime file systems
//! (`/run`, `/tmp`, `/var/tmp`, `/dev`, `/proc`, `/sys`) is left to the boot, which runs every
//! tmpfiles.d file again; so are lines for the boot only (`!`), from credentials (`^`), with
//! `%` specifiers (machine id, boot id), and the types that remove, clean, copy, write or set
//! attributes or ACLs.

use anyhow::{Context, Result};

use crate::tree::{Entry, Kind, Tree};

/// A path tmpfiles may act on here: absolute, clean, and not under a runtime file system.
fn persistent(path: &str) -> Option<String> {
    let rel = path.strip_prefix('/')?.trim_end_matches('/');
    let first = rel.split('/').next().unwrap_or_default();
    let ok = !rel.is_empty()
        && !rel
            .split('/')
            .any(|c| c == ".." || c == "." || c.is_empty())
        && !matches!(first, "proc" | "sys" | "dev" | "run" | "tmp")
        && !rel.starts_with("var/tmp")
        && !matches!(rel, "var/run" | "var/lock")
        && !rel.starts_with("var/run/")
        && !rel.starts_with("var/lock/");
    ok.then(|| rel.to_string())
}

/// The configuration `name` names: `/etc/tmpfiles.d` overrides `/usr/lib/tmpfiles.d`.
fn config(tree: &Tree, name: &str) -> Option<String> {
    if name.contains('/') {
        return None;
    }
    ["etc/tmpfiles.d", "usr/lib/tmpfiles.d", "lib/tmpfiles.d"]
        .iter()
        .find_map(|d| tree.read(&format!("{d}/{name}")))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// A mode field: `None` for `-`; `(mode, only when made)` for `0755` or `:0755`.
fn mode(field: &str) -> Option<Option<(u32, bool)>> {
    if field == "-" {
        return Some(None);
    }
    let (only_new, digits) = match field.strip_prefix(':') {
        Some(d) => (true, d),
        None => (false, field),
    };
    let m = u32::from_str_radix(digits, 8)
        .ok()
        .filter(|m| *m <= 0o7777)?;
    Some(Some((m, only_new)))
}

/// An owner or group field: `None` for `-`; `(id, only when made)`.
fn owner(tree: &Tree, db: &str, field: &str) -> Option<Option<(u32, bool)>> {
    if field == "-" {
        return Some(None);
    }
    let (only_new, name) = match field.strip_prefix(':') {
        Some(n) => (true, n),
        None => (false, field),
    };
    let spec = if name.bytes().all(|b| b.is_ascii_digit()) {
        format!("#{name}")
    } else {
        name.to_string()
    };
    let id = super::statoverride::id_of(tree, db, &spec)?;
    Some(Some((id, only_new)))
}

/// Run `systemd-tmpfiles ARGS` against the tree: `--create` with the configurations named.
/// False (nothing done) for another option, no configuration named (all of them: the boot
/// does that), or a configuration that is not in the image.
pub(super) fn run(tree: &mut Tree, args: &[String]) -> Result<bool> {
    let mut create = false;
    let mut names = Vec::new();
    for a in args {
        match a.as_str() {
            "--create" => create = true,
            // dpkg's root is the running system's: `--root=` with nothing, or `/`.
            "--root=" | "--root=/" => {}
            o if o.starts_with('-') => return Ok(false),
            n => names.push(n.to_string()),
        }
    }
    if !create || names.is_empty() {
        return Ok(false);
    }
    let mut texts = Vec::new();
    for n in &names {
        match config(tree, n) {
            Some(t) => texts.push(t),
            None => return Ok(false),
        }
    }
    for text in texts {
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            apply_line(tree, line)?;
        }
    }
    Ok(true)
}

/// One tmpfiles.d line; what it does not cover is passed over.
fn apply_line(tree: &mut Tree, line: &str) -> Result<()> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let (Some(kind), Some(path)) = (f.first(), f.get(1)) else {
        return Ok(());
    };
    let field = |i: usize| f.get(i).copied().unwrap_or("-");
    let (letter, modifiers) = kind.split_at(1);
    // `-` (errors ignored) and `$` (removed on --purge) change nothing at --create; `+`
    // replaces what is there (for `L+`).
    if modifiers.chars().any(|c| !matches!(c, '-' | '$' | '+')) || line.contains('%') {
        return Ok(());
    }
    let force = modifiers.contains('+');
    let Some(rel) = persistent(path) else {
        return Ok(());
    };
    match letter {
        "d" | "D" | "v" | "q" | "Q" | "f" | "z" | "Z" => {
            let (Some(m), Some(u), Some(g)) = (
                mode(field(2)),
                owner(tree, "etc/passwd", field(3)),
                owner(tree, "etc/group", field(4)),
            ) else {
                return Ok(());
            };
            let exists = tree.get(&rel).is_some();
            let made = match (letter, exists) {
                (_, true) => false,
                ("z" | "Z", false) => return Ok(()),
                // `f` with an argument writes it: left to the boot.
                ("f", false) if field(6) != "-" => return Ok(()),
                (_, false) => {
                    let parent = rel.rsplit_once('/').map_or("", |(d, _)| d);
                    if !parent.is_empty()
                        && !matches!(tree.get(parent).map(|e| &e.kind), Some(Kind::Dir))
                    {
                        return Ok(());
                    }
                    let entry = if letter == "f" {
                        Entry::file(Vec::new(), 0o644)
                    } else {
                        Entry::dir(0o755)
                    };
                    tree.insert(&rel, entry)
                        .with_context(|| format!("making /{rel}"))?;
                    true
                }
            };
            let Some(e) = tree.get(&rel) else {
                return Ok(());
            };
            // A directory line does nothing to what is not one, a file line to a directory.
            let is_dir = matches!(e.kind, Kind::Dir);
            let adjusts_any = matches!(letter, "z" | "Z");
            if !adjusts_any && matches!(letter, "d" | "D" | "v" | "q" | "Q") != is_dir {
                return Ok(());
            }
            let adjust = |e: &mut Entry| {
                if matches!(e.kind, Kind::Symlink(_)) {
                    return;
                }
                if let Some((m, only_new)) = m {
                    if made || !only_new {
                        e.mode = m;
                    }
                }
                if let Some((id, only_new)) = u {
                    if made || !only_new {
                        e.uid = id;
                    }
                }
                if let Some((id, only_new)) = g {
                    if made || !only_new {
                        e.gid = id;
                    }
                }
            };
            if letter == "Z" {
                // The path and everything below it.
                let below = format!("{rel}/");
                for (p, e) in tree.iter_mut() {
                    if *p == rel || p.starts_with(&below) {
                        adjust(e);
                    }
                }
            } else if let Some(e) = tree.get_mut(&rel) {
                adjust(e);
            }
        }
        "L" => {
            let to = f.get(6..).map(|a| a.join(" ")).unwrap_or_default();
            if to.is_empty() || to == "-" {
                return Ok(());
            }
            match tree.get(&rel).map(|e| &e.kind) {
                None => {}
                Some(Kind::Symlink(t)) if *t == to => return Ok(()),
                Some(Kind::Dir) => return Ok(()),
                Some(_) if force => {
                    tree.remove(&rel);
                }
                Some(_) => return Ok(()),
            }
            let parent = rel.rsplit_once('/').map_or("", |(d, _)| d);
            if parent.is_empty() || matches!(tree.get(parent).map(|e| &e.kind), Some(Kind::Dir)) {
                tree.insert(&rel, Entry::symlink(to.as_str()))
                    .with_context(|| format!("linking /{rel}"))?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests;
