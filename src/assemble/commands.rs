//! The plain file commands a package's postinst certainly runs on a first install (see
//! `packages::script`), done to the tree as the commands would do them on the machine:
//! `mkdir`, `touch`, `chmod` with an octal mode, `chown` and `chgrp` by name, `ln -s`, `cp`,
//! `install` (a directory, or a file, `/dev/null` making an empty one), `rm` of a file, and
//! `adduser USER GROUP` (or `usermod -a -G`) adding an account to a group. Only
//! absolute paths count (a script that `cd`s first names paths relative to a directory this
//! does not follow), never under `/proc`, `/sys`, `/dev` or `/run`, and only the options each
//! command is read with here; a command with any other option is left out. bind9's
//! `/var/lib/bind` (775 `root:bind`), apache2's log files and ntpsec's state directory come
//! from here.

use anyhow::{Context, Result};

use crate::packages::script::{APPEND, WRITE};
use crate::tree::{Entry, Kind, Tree};

/// A command's options: each as its short letter, with its value where it takes one.
type Opts = Vec<(char, String)>;

/// A command's options and its operands; `None` when it has an option not in `flags` or
/// `valued` (or `long`, the long names of both).
fn options(
    args: &[String],
    flags: &str,
    valued: &str,
    long: &[(&str, char)],
) -> Option<(Opts, Vec<String>)> {
    let mut opts = Vec::new();
    let mut operands = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            operands.extend(it.by_ref().cloned());
            break;
        }
        if let Some(l) = a.strip_prefix("--") {
            let (name, value) = match l.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (l, None),
            };
            let c = long.iter().find(|(n, _)| *n == name)?.1;
            let value = match (valued.contains(c), value) {
                (true, Some(v)) => v,
                (true, None) => it.next()?.clone(),
                (false, None) => String::new(),
                (false, Some(_)) => return None,
            };
            opts.push((c, value));
        } else if a.len() > 1 && a.starts_with('-') {
            let chars: Vec<char> = a[1..].chars().collect();
            for (i, c) in chars.iter().enumerate() {
                if valued.contains(*c) {
                    let rest: String = chars[i + 1..].iter().collect();
                    let v = if rest.is_empty() {
                        it.next()?.clone()
                    } else {
                        rest
                    };
                    opts.push((*c, v));
                    break;
                }
                if !flags.contains(*c) {
                    return None;
                }
                opts.push((*c, String::new()));
            }
        } else {
            operands.push(a.clone());
        }
    }
    Some((opts, operands))
}

/// The directory a script's commands run in: `/` (where dpkg starts a maintainer script),
/// then what a `cd` the script certainly ran with an absolute path set; `None` once it
/// changed in a way not known (a `cd` that may run, or to a path not known, or a subshell's).
type Cwd<'a> = Option<&'a str>;

/// `p` made absolute against `cwd`.
fn absolute(cwd: Cwd, p: &str) -> Option<String> {
    if p.starts_with('/') {
        return Some(p.to_string());
    }
    Some(format!("{}/{p}", cwd?.trim_end_matches('/')))
}

/// The tree path of a path a command may change.
fn target(cwd: Cwd, p: &str) -> Option<String> {
    let p = absolute(cwd, p)?;
    let rel = p.strip_prefix('/')?.trim_end_matches('/');
    let first = rel.split('/').next().unwrap_or_default();
    let ok = !rel.is_empty()
        && !rel
            .split('/')
            .any(|c| c == ".." || c == "." || c.is_empty())
        && !matches!(first, "proc" | "sys" | "dev" | "run");
    ok.then(|| rel.to_string())
}

/// The id of `who` (a name, or a number as chown takes one) in the tree's `/etc/passwd` or
/// `/etc/group`.
fn id_of(tree: &Tree, db: &str, who: &str) -> Option<u32> {
    if !who.is_empty() && who.bytes().all(|b| b.is_ascii_digit()) {
        return super::statoverride::id_of(tree, db, &format!("#{who}"));
    }
    super::statoverride::id_of(tree, db, who)
}

fn kind_at(tree: &Tree, rel: &str) -> Option<Kind> {
    let at = tree.resolve(rel).ok()?;
    tree.get(&at).map(|e| e.kind.clone())
}

fn parent_is_dir(tree: &Tree, rel: &str) -> bool {
    let parent = rel.rsplit_once('/').map_or("", |(d, _)| d);
    parent.is_empty() || kind_at(tree, parent) == Some(Kind::Dir)
}

/// Set owner and group (either may stay), as chown does: setuid and setgid go from an
/// executable file.
/// The entry a command names (links followed) and, with -R, every entry below it, each with
/// whether it is below.
fn operand_entries<'t>(
    tree: &'t mut Tree,
    rel: &str,
    recursive: bool,
) -> Vec<(bool, &'t mut crate::tree::Entry)> {
    let Ok(at) = tree.resolve(rel) else {
        return Vec::new();
    };
    if !recursive {
        return tree.get_mut(&at).map(|e| (false, e)).into_iter().collect();
    }
    let prefix = format!("{at}/");
    tree.iter_mut()
        .filter(|(p, _)| **p == at || p.starts_with(&prefix))
        .map(|(p, e)| (*p != at, e))
        .collect()
}

fn set_owner(tree: &mut Tree, rel: &str, uid: Option<u32>, gid: Option<u32>, recursive: bool) {
    // Below the operand, -R changes a link itself (chown's default -P).
    for (_, e) in operand_entries(tree, rel, recursive) {
        if matches!(e.kind, Kind::File(_)) && e.mode & 0o111 != 0 {
            e.mode &= !0o6000;
        }
        if let Some(u) = uid {
            e.uid = u;
        }
        if let Some(g) = gid {
            e.gid = g;
        }
    }
}

fn set_mode(tree: &mut Tree, rel: &str, mode: u32, recursive: bool) {
    change_mode(tree, rel, &|_, _| mode, recursive);
}

/// Each entry's mode made `f(mode, is a directory)`.
fn change_mode(tree: &mut Tree, rel: &str, f: &dyn Fn(u32, bool) -> u32, recursive: bool) {
    for (below, e) in operand_entries(tree, rel, recursive) {
        // chmod -R passes over the links it meets.
        if !(below && matches!(e.kind, Kind::Symlink(_))) {
            e.mode = f(e.mode, e.kind == Kind::Dir);
        }
    }
}

/// `USER[:GROUP]` (or `USER.GROUP`, `:GROUP`) as ids; `None` when a name has no account.
fn owner_group(tree: &Tree, spec: &str) -> Option<(Option<u32>, Option<u32>)> {
    let (u, g) = match spec.split_once([':', '.']) {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let uid = match u {
        "" => None,
        u => Some(id_of(tree, "etc/passwd", u)?),
    };
    let gid = match g {
        None | Some("") => None,
        Some(g) => Some(id_of(tree, "etc/group", g)?),
    };
    Some((uid, gid))
}

pub(super) fn apply(tree: &mut Tree, package: &str, commands: &[Vec<String>]) -> Result<()> {
    let mut dir = Some("/".to_string());
    // dpkg runs maintainer scripts under umask 022; `umask` changes it for what follows
    // (libpam-modules makes /etc/security/opasswd under 066). `None`: not known.
    let mut mask = Some(0o022);
    for c in commands {
        let tool = c[0].rsplit('/').next().unwrap_or_default();
        let args = &c[1..];
        let cwd = dir.as_deref();
        // /run is a tmpfs at boot: what a script makes there (base-files' /run/lock) the
        // init and systemd-tmpfiles make at every boot instead.
        let paths: Vec<&String> = args.iter().filter(|a| a.starts_with('/')).collect();
        if matches!(
            tool,
            "mkdir" | "touch" | "chmod" | "chown" | "chgrp" | "rm" | "rmdir" | "install"
        ) && !paths.is_empty()
            && paths.iter().all(|p| *p == "/run" || p.starts_with("/run/"))
        {
            continue;
        }
        let done = match tool {
            "cd" => {
                // The evaluator passes `cd` with one absolute path, or alone when where the
                // script now runs is not known.
                dir = match args {
                    [d] if target(None, d).is_some() || d == "/" => Some(d.clone()),
                    _ => None,
                };
                continue;
            }
            "umask" => {
                mask = match args {
                    [m] => octal(m).filter(|m| *m <= 0o777),
                    _ => None,
                };
                continue;
            }
            "mkdir" | "touch" | "cp" | WRITE | APPEND if mask.is_none() => false,
            "mkdir" => mkdir(tree, cwd, args, mask.unwrap_or(0o022))?,
            "touch" => touch(tree, cwd, args, mask.unwrap_or(0o022))?,
            "chmod" => chmod(tree, cwd, args),
            "chown" | "chgrp" => chown(tree, cwd, tool == "chgrp", args),
            "ln" => ln(tree, cwd, args)?,
            "cp" => cp(tree, cwd, args, mask.unwrap_or(0o022))?,
            "install" => install(tree, cwd, args)?,
            "rm" => rm(tree, cwd, args),
            "rmdir" => rmdir(tree, cwd, args),
            "systemd-tmpfiles" => super::tmpfiles::run(tree, args)?,
            WRITE | APPEND => write(tree, cwd, args, tool == APPEND, mask.unwrap_or(0o022))?,
            "adduser" | "usermod" => match super::users::membership(tool, args) {
                Some((user, groups)) => super::users::add_member(tree, &user, &groups)?,
                None => continue,
            },
            _ => continue,
        };
        if !done {
            let what = match (tool, args.first()) {
                (WRITE, Some(f)) => format!("> {f}"),
                (APPEND, Some(f)) => format!(">> {f}"),
                _ => c.join(" "),
            };
            eprintln!(
                "note: {package}'s postinst runs `{what}`, which the build does not do (an option or path it does not read, or an account the image lacks)"
            );
        }
    }
    Ok(())
}

fn mkdir(tree: &mut Tree, cwd: Cwd, args: &[String], umask: u32) -> Result<bool> {
    let Some((opts, paths)) = options(args, "pvZ", "m", &[("parents", 'p'), ("mode", 'm')]) else {
        return Ok(false);
    };
    let parents = opts.iter().any(|(c, _)| *c == 'p');
    let mode = match opts.iter().find(|(c, _)| *c == 'm') {
        Some((_, m)) => match octal(m) {
            Some(m) => m,
            None => return Ok(false),
        },
        None => 0o777 & !umask,
    };
    for p in &paths {
        let Some(rel) = target(cwd, p) else {
            return Ok(false);
        };
        if kind_at(tree, &rel).is_some() {
            continue;
        }
        if !parents && !parent_is_dir(tree, &rel) {
            return Ok(false);
        }
        tree.mkdir_p(&rel)
            .with_context(|| format!("making /{rel}"))?;
        set_mode(tree, &rel, mode, false);
    }
    Ok(true)
}

fn touch(tree: &mut Tree, cwd: Cwd, args: &[String], umask: u32) -> Result<bool> {
    let Some((_, paths)) = options(args, "", "", &[]) else {
        return Ok(false);
    };
    for p in &paths {
        let Some(rel) = target(cwd, p) else {
            return Ok(false);
        };
        if kind_at(tree, &rel).is_none() {
            if !parent_is_dir(tree, &rel) {
                return Ok(false);
            }
            tree.insert(&rel, Entry::file(Vec::new(), 0o666 & !umask))
                .with_context(|| format!("making /{rel}"))?;
        }
    }
    Ok(true)
}

/// `cat <<EOF > FILE`, `echo WORDS >> FILE` (the evaluator's [`WRITE`] and [`APPEND`]): a
/// new file as the shell makes one (0644 under dpkg's umask 022, root's), or an existing
/// regular file's text replaced or added to, its mode and owner kept. What goes to a device
/// or the machine's runtime directories changes nothing in the image.
fn write(tree: &mut Tree, cwd: Cwd, args: &[String], append: bool, umask: u32) -> Result<bool> {
    let [file, text] = args else {
        return Ok(false);
    };
    let Some(abs) = absolute(cwd, file) else {
        return Ok(false);
    };
    let first = abs
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default();
    if matches!(first, "dev" | "proc" | "sys" | "run") {
        return Ok(true);
    }
    let Some(rel) = target(cwd, file) else {
        return Ok(false);
    };
    let at = tree.resolve(&rel).unwrap_or(rel);
    let entry = match tree.get(&at) {
        None if parent_is_dir(tree, &at) => Entry::file(text.clone().into_bytes(), 0o666 & !umask),
        Some(e) => {
            let Kind::File(old) = &e.kind else {
                return Ok(false);
            };
            let mut data = if append { old.read_all()? } else { Vec::new() };
            data.extend_from_slice(text.as_bytes());
            let mut n = Entry::file(data, e.mode);
            (n.uid, n.gid) = (e.uid, e.gid);
            n
        }
        None => return Ok(false),
    };
    tree.insert(&at, entry)
        .with_context(|| format!("writing /{at}"))?;
    Ok(true)
}

fn chmod(tree: &mut Tree, cwd: Cwd, args: &[String]) -> bool {
    let Some((opts, ops)) = options(args, "R", "", &[("recursive", 'R')]) else {
        return false;
    };
    let recursive = !opts.is_empty();
    let Some((m, paths)) = ops.split_first() else {
        return false;
    };
    let Some(rels) = paths
        .iter()
        .map(|p| target(cwd, p))
        .collect::<Option<Vec<_>>>()
    else {
        return false;
    };
    if let Some(mode) = octal(m) {
        for rel in rels {
            set_mode(tree, &rel, mode, recursive);
        }
        return true;
    }
    let Some(f) = symbolic(m) else { return false };
    for rel in rels {
        change_mode(tree, &rel, &f, recursive);
    }
    true
}

fn chown(tree: &mut Tree, cwd: Cwd, group_only: bool, args: &[String]) -> bool {
    let Some((opts, ops)) = options(args, "R", "", &[("recursive", 'R')]) else {
        return false;
    };
    let recursive = !opts.is_empty();
    let Some((spec, paths)) = ops.split_first() else {
        return false;
    };
    let spec = if group_only {
        format!(":{spec}")
    } else {
        spec.clone()
    };
    let Some((uid, gid)) = owner_group(tree, &spec) else {
        return false;
    };
    let Some(rels) = paths
        .iter()
        .map(|p| target(cwd, p))
        .collect::<Option<Vec<_>>>()
    else {
        return false;
    };
    for rel in rels {
        set_owner(tree, &rel, uid, gid, recursive);
    }
    true
}

/// The bytes and metadata of the regular file at absolute path `src` (`/dev/null`: empty).
fn source(tree: &Tree, cwd: Cwd, src: &str) -> Option<Entry> {
    let src = absolute(cwd, src)?;
    if src == "/dev/null" {
        return Some(Entry::file(Vec::new(), 0o644));
    }
    let at = tree.resolve(src.strip_prefix('/')?).ok()?;
    let e = tree.get(&at)?;
    matches!(e.kind, Kind::File(_)).then(|| e.clone())
}

/// Where a copy of `src` goes for the operand `dest` (into it when it is a directory).
fn destination(tree: &Tree, cwd: Cwd, src: &str, dest: &str) -> Option<String> {
    let rel = target(cwd, dest)?;
    if kind_at(tree, &rel) == Some(Kind::Dir) {
        let name = src.rsplit('/').next()?;
        return target(cwd, &format!("/{rel}/{name}"));
    }
    parent_is_dir(tree, &rel).then_some(rel)
}

fn cp(tree: &mut Tree, cwd: Cwd, args: &[String], umask: u32) -> Result<bool> {
    let Some((opts, ops)) = options(
        args,
        "pafZ",
        "",
        &[("archive", 'a'), ("force", 'f'), ("preserve", 'p')],
    ) else {
        return Ok(false);
    };
    let keep = opts.iter().any(|(c, _)| matches!(c, 'p' | 'a'));
    let [src, dest] = ops.as_slice() else {
        return Ok(false);
    };
    let (Some(mut e), Some(rel)) = (source(tree, cwd, src), destination(tree, cwd, src, dest))
    else {
        return Ok(false);
    };
    if !keep {
        // A new file: the source's mode under the scripts' umask, root's.
        e.mode &= 0o777 & !umask;
        e.uid = 0;
        e.gid = 0;
        e.mtime = 0;
    }
    e.origin = "".into();
    tree.insert(&rel, e)
        .with_context(|| format!("copying to /{rel}"))?;
    Ok(true)
}

fn install(tree: &mut Tree, cwd: Cwd, args: &[String]) -> Result<bool> {
    let Some((opts, ops)) = options(
        args,
        "dDpvZ",
        "mog",
        &[
            ("directory", 'd'),
            ("mode", 'm'),
            ("owner", 'o'),
            ("group", 'g'),
        ],
    ) else {
        return Ok(false);
    };
    let get = |c: char| opts.iter().find(|(o, _)| *o == c).map(|(_, v)| v.as_str());
    let mode = match get('m').map(octal) {
        Some(None) => return Ok(false),
        Some(Some(m)) => Some(m),
        None => None,
    };
    let spec = format!("{}:{}", get('o').unwrap_or(""), get('g').unwrap_or(""));
    let Some((uid, gid)) = owner_group(tree, &spec) else {
        return Ok(false);
    };
    if get('d').is_some() {
        for p in &ops {
            let Some(rel) = target(cwd, p) else {
                return Ok(false);
            };
            tree.mkdir_p(&rel)
                .with_context(|| format!("making /{rel}"))?;
            set_mode(tree, &rel, mode.unwrap_or(0o755), false);
            set_owner(tree, &rel, uid, gid, false);
        }
        return Ok(true);
    }
    let [src, dest] = ops.as_slice() else {
        return Ok(false);
    };
    let Some(mut e) = source(tree, cwd, src) else {
        return Ok(false);
    };
    let rel = match (get('D'), target(cwd, dest)) {
        (Some(_), Some(rel)) => {
            if let Some((d, _)) = rel.rsplit_once('/') {
                tree.mkdir_p(d).with_context(|| format!("making /{d}"))?;
            }
            rel
        }
        _ => match destination(tree, cwd, src, dest) {
            Some(rel) => rel,
            None => return Ok(false),
        },
    };
    e.mode = mode.unwrap_or(0o755);
    e.uid = uid.unwrap_or(0);
    e.gid = gid.unwrap_or(0);
    e.mtime = 0;
    e.origin = "".into();
    tree.insert(&rel, e)
        .with_context(|| format!("installing /{rel}"))?;
    Ok(true)
}

mod link;
mod modes;
mod remove;
use link::ln;
use modes::{octal, symbolic};
use remove::{rm, rmdir};

#[cfg(test)]
mod tests;
