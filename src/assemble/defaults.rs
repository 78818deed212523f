//! What the `postinst` of Debian's essential packages makes on a first install, from files the
//! packages ship for the purpose (Ingot runs no maintainer scripts):
//!
//! - base-files: `/etc/profile`, `/etc/motd`, root's `.profile` and `.bashrc` (copies of
//!   `/usr/share/base-files/*`), `/var/run` and `/var/lock` as links into `/run`, the
//!   `/usr/local` hierarchy, `/var/mail`, `/etc/opt`, `/var/opt`, `/media` and the dpkg
//!   origin;
//! - readline-common: `/etc/inputrc`; netbase: `/etc/networks`; kmod: `/etc/modules`;
//!   ca-certificates: `/usr/local/share/ca-certificates` (for the machine's own CAs);
//! - libc-bin: `/etc/nsswitch.conf`, with the services the NSS module packages add
//!   (`dh_installnss`, read from their postinst by `packages::nss`);
//! - debianutils and the shells: `/etc/shells` and `/var/lib/shells.state`, as
//!   `update-shells` writes them;
//! - libpam-modules: an empty `/etc/environment` and `/etc/security/opasswd`;
//! - libwrap0: `/etc/hosts.allow` and `/etc/hosts.deny`, comments only (all allowed);
//! - login: `/etc/subuid` and `/etc/subgid`, with the range `useradd` gives each user of a
//!   uid from `UID_MIN` to `UID_MAX` (the profile's people, for rootless containers);
//! - tzdata: `/etc/localtime` and `/etc/timezone` for its default answer, UTC;
//! - any package with an AppArmor profile (`dh_apparmor`): an empty
//!   `/etc/apparmor.d/local/NAME` for each profile that includes `<local/NAME>`, so the
//!   profile loads once AppArmor's tools are there.
//!
//! Each is made only when its source is in the tree and the target is not: a profile's own
//! `[[files]]` are installed afterwards and replace any of them.

use anyhow::{Context, Result};

use crate::packages::nss::{NssEntry, Position};
use crate::tree::{Entry, Kind, Tree};

/// Files a postinst copies from the package's own default when the target is missing.
const COPIED: &[(&str, &str)] = &[
    ("usr/share/base-files/dot.profile", "root/.profile"),
    ("usr/share/base-files/dot.bashrc", "root/.bashrc"),
    ("usr/share/base-files/profile", "etc/profile"),
    ("usr/share/base-files/motd", "etc/motd"),
    ("usr/share/readline/inputrc", "etc/inputrc"),
];

/// The networks file netbase's postinst writes (RFC 1122 and RFC 3927 names).
const NETWORKS: &str = "default\t\t0.0.0.0\nloopback\t127.0.0.0\nlink-local\t169.254.0.0\n\n";

/// The modules file kmod's postinst writes: none, and how to name one.
const MODULES: &str =
    "# /etc/modules: kernel modules to load at boot time, one per line (read by\n\
    # systemd-modules-load through /etc/modules-load.d/modules.conf). Lines starting with \"#\"\n\
    # are ignored; parameters may follow a module's name.\n\n";

pub(super) fn apply(tree: &mut Tree, nss: &[NssEntry]) -> Result<()> {
    for (src, dst) in COPIED {
        install_from_default(tree, src, dst)?;
    }
    // netbase ships /etc/services and /etc/protocols; its postinst writes this one.
    if tree.exists("etc/services")
        && tree.exists("etc/protocols")
        && tree.get("etc/networks").is_none()
    {
        tree.insert("etc/networks", Entry::file(NETWORKS, 0o644))?;
    }
    let wrap = ["x86_64-linux-gnu", "aarch64-linux-gnu"]
        .iter()
        .any(|t| tree.exists(&format!("usr/lib/{t}/libwrap.so.0")));
    for (file, what) in [("hosts.allow", "allowed"), ("hosts.deny", "denied")] {
        let path = format!("etc/{file}");
        if wrap && tree.get(&path).is_none() {
            let text = format!(
                "# /etc/{file}: hosts {what} access to services built with tcp_wrappers\n\
                 # (libwrap); see hosts_access(5). Nothing is listed.\n"
            );
            tree.insert(&path, Entry::file(text, 0o644))?;
        }
    }
    if tree.exists("usr/bin/kmod") && tree.get("etc/modules").is_none() {
        tree.insert("etc/modules", Entry::file(MODULES, 0o644))?;
    }
    base_files(tree)?;
    if tree.exists("usr/sbin/update-ca-certificates")
        && matches!(
            tree.get("usr/local/share").map(|e| &e.kind),
            Some(Kind::Dir)
        )
        && tree.get("usr/local/share/ca-certificates").is_none()
    {
        tree.insert("usr/local/share/ca-certificates", Entry::dir(0o755))?;
    }
    nsswitch(tree, nss)?;
    shells(tree)?;
    subordinate_ids(tree)?;
    if tree.exists("etc/security/pam_env.conf") {
        // pam_env reads /etc/environment at every login and logs an error when it is missing.
        if tree.get("etc/environment").is_none() {
            tree.insert("etc/environment", Entry::file("", 0o644))?;
        }
        if tree.get("etc/security/opasswd").is_none() {
            tree.insert("etc/security/opasswd", Entry::file("", 0o600))?;
        }
    }
    if tree.exists("usr/share/zoneinfo/Etc/UTC") && tree.get("etc/localtime").is_none() {
        tree.insert(
            "etc/localtime",
            Entry::symlink("/usr/share/zoneinfo/Etc/UTC"),
        )?;
        if tree.get("etc/timezone").is_none() {
            tree.insert("etc/timezone", Entry::file("Etc/UTC\n", 0o644))?;
        }
    }
    apparmor_locals(tree)?;
    Ok(())
}

/// The site-specific include each AppArmor profile names (`#include <local/NAME>`, `include
/// if exists <local/NAME>`), made empty where missing, as `dh_apparmor`'s postinst does with
/// `install --mode 644 /dev/null`.
fn apparmor_locals(tree: &mut Tree) -> Result<()> {
    let dir = "etc/apparmor.d";
    let profiles: Vec<String> = tree
        .children(dir)
        .filter(|p| matches!(tree.get(p).map(|e| &e.kind), Some(Kind::File(_))))
        .map(str::to_string)
        .collect();
    for p in profiles {
        let text = String::from_utf8_lossy(&tree.read(&p).unwrap_or_default()).into_owned();
        for line in text.lines() {
            let l = line.trim_start();
            let rest = l
                .strip_prefix("#include")
                .or_else(|| l.strip_prefix("include if exists"))
                .or_else(|| l.strip_prefix("include"));
            let Some(name) = rest
                .map(str::trim)
                .and_then(|r| r.strip_prefix("<local/"))
                .and_then(|r| r.strip_suffix('>'))
            else {
                continue;
            };
            let ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c))
                && !name.starts_with('.');
            let local = format!("{dir}/local/{name}");
            if ok && tree.get(&local).is_none() {
                tree.insert(&local, Entry::file(Vec::new(), 0o644))
                    .with_context(|| format!("writing /{local}"))?;
            }
        }
    }
    Ok(())
}

/// Copy `src` to `dst` as `cp -p` would (content, mode, owner, time), when `dst` is absent
/// and `src` a regular file. Whether it was copied.
fn install_from_default(tree: &mut Tree, src: &str, dst: &str) -> Result<bool> {
    if tree.get(dst).is_some() {
        return Ok(false);
    }
    let Ok(at) = tree.resolve(src) else {
        return Ok(false);
    };
    let Some(e) = tree.get(&at).filter(|e| matches!(e.kind, Kind::File(_))) else {
        return Ok(false);
    };
    let e = e.clone();
    tree.insert(dst, e)
        .with_context(|| format!("writing /{dst}"))?;
    Ok(true)
}

/// The gid of group `name` in the tree's `/etc/group`.
pub(super) fn group_id(tree: &Tree, name: &str) -> Option<u32> {
    let group = tree.read("etc/group")?;
    String::from_utf8_lossy(&group).lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next() == Some(name))
            .then(|| f.nth(1)?.parse().ok())
            .flatten()
    })
}

fn base_files(tree: &mut Tree) -> Result<()> {
    const SHARE: &str = "usr/share/base-files";
    if !matches!(tree.get(SHARE).map(|e| &e.kind), Some(Kind::Dir)) {
        return Ok(());
    }
    let mail = group_id(tree, "mail").unwrap_or(0);
    for (dir, mode, gid) in [
        ("mnt", 0o755, 0),
        ("srv", 0o755, 0),
        ("opt", 0o755, 0),
        ("etc/opt", 0o755, 0),
        ("var/opt", 0o755, 0),
        ("media", 0o755, 0),
        ("var/mail", 0o2775, mail),
    ] {
        if tree.get(dir).is_none() {
            let mut e = Entry::dir(mode);
            e.gid = gid;
            tree.insert(dir, e)?;
        }
    }
    if tree.get("var/spool/mail").is_none() {
        tree.insert("var/spool/mail", Entry::symlink("../mail"))?;
    }
    // base-files ships /var/run and /var/lock as directories and its postinst makes them
    // links into /run, which is a tmpfs at boot: left as directories, what programs write
    // there would persist on the root filesystem across boots, apart from /run. Anything a
    // package put below them goes where dpkg would have put it through the links.
    for (dir, target) in [("var/run", "/run"), ("var/lock", "/run/lock")] {
        if !matches!(tree.get(dir).map(|e| &e.kind), Some(Kind::Dir)) {
            continue;
        }
        let below: Vec<(String, Entry)> = tree
            .iter()
            .filter(|(p, _)| p.starts_with(&format!("{dir}/")))
            .map(|(p, e)| (p.clone(), e.clone()))
            .collect();
        tree.remove(dir);
        let dest = target.trim_start_matches('/');
        tree.mkdir_p(dest)?;
        for (p, e) in below {
            let to = format!("{dest}{}", &p[dir.len()..]);
            if tree.get(&to).is_none() {
                tree.insert(&to, e)?;
            }
        }
        tree.insert(dir, Entry::symlink(target))?;
    }
    for dir in [
        "usr/local",
        "usr/local/share",
        "usr/local/share/man",
        "usr/local/bin",
        "usr/local/games",
        "usr/local/lib",
        "usr/local/include",
        "usr/local/sbin",
        "usr/local/src",
        "usr/local/etc",
    ] {
        if tree.get(dir).is_none() {
            tree.insert(dir, Entry::dir(0o755))?;
        }
    }
    if tree.get("usr/local/man").is_none() {
        tree.insert("usr/local/man", Entry::symlink("share/man"))?;
    }
    if tree.get("etc/dpkg/origins/default").is_none() && tree.exists("etc/dpkg/origins/debian") {
        tree.insert("etc/dpkg/origins/default", Entry::symlink("debian"))?;
    }
    Ok(())
}

/// A number `/etc/login.defs` sets, else `default`.
fn login_def(defs: &str, key: &str, default: u64) -> u64 {
    defs.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(key))
                .then(|| w.next()?.parse().ok())
                .flatten()
        })
        .next_back()
        .unwrap_or(default)
}

/// `/etc/subuid` and `/etc/subgid` as login's postinst makes them and `useradd` fills them:
/// each user whose uid is from `UID_MIN` to `UID_MAX`, in `/etc/passwd` order, gets the next
/// `SUB_UID_COUNT` ids from `SUB_UID_MIN` (and likewise for groups).
fn subordinate_ids(tree: &mut Tree) -> Result<()> {
    let Some(defs) = tree.read("etc/login.defs") else {
        return Ok(());
    };
    let defs = String::from_utf8_lossy(&defs).into_owned();
    let passwd = String::from_utf8_lossy(&tree.read("etc/passwd").unwrap_or_default()).into_owned();
    let (min, max) = (
        login_def(&defs, "UID_MIN", 1000),
        login_def(&defs, "UID_MAX", 60000),
    );
    let people: Vec<&str> = passwd
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let uid: u64 = f.nth(1)?.parse().ok()?;
            (min..=max).contains(&uid).then_some(name)
        })
        .collect();
    for (file, kind) in [("etc/subuid", "UID"), ("etc/subgid", "GID")] {
        // login's postinst makes each one empty (`touch`); useradd fills it for each person.
        if tree.read(file).is_some_and(|t| !t.is_empty())
            || tree
                .get(file)
                .is_some_and(|e| !matches!(e.kind, Kind::File(_)))
        {
            continue;
        }
        let first = login_def(&defs, &format!("SUB_{kind}_MIN"), 100_000);
        let count = login_def(&defs, &format!("SUB_{kind}_COUNT"), 65_536);
        let last = login_def(&defs, &format!("SUB_{kind}_MAX"), 600_100_000);
        let mut text = String::new();
        if count > 0 {
            for (k, name) in people.iter().enumerate() {
                let start = first + k as u64 * count;
                if start + count - 1 > last {
                    break;
                }
                text.push_str(&format!("{name}:{start}:{count}\n"));
            }
        }
        tree.insert(file, Entry::file(text, 0o644))?;
    }
    Ok(())
}

/// One database line split into its prefix (`hosts:` and the spacing after it), its services
/// (each with the actions that follow it) and its comment.
fn add_service(line: &str, e: &NssEntry) -> Option<String> {
    let (body, comment) = match line.split_once('#') {
        Some((b, c)) => (b, Some(c)),
        None => (line, None),
    };
    let rest = body.strip_prefix(&format!("{}:", e.db))?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let lead = rest.len() - rest.trim_start().len();
    let prefix = &body[..e.db.len() + 1 + lead];
    let mut items: Vec<String> = Vec::new();
    let mut open = false;
    for w in rest.split_whitespace() {
        match items.last_mut() {
            Some(last) if open || w.starts_with('[') => {
                last.push(' ');
                last.push_str(w);
            }
            _ => items.push(w.to_string()),
        }
        open = if open || w.starts_with('[') {
            !w.contains(']')
        } else {
            false
        };
    }
    let name = |item: &str| item.split_whitespace().next().unwrap_or("").to_string();
    if items.iter().any(|i| name(i) == e.service) {
        return None;
    }
    let new = match &e.action {
        Some(a) => format!("{} {a}", e.service),
        None => e.service.clone(),
    };
    let at = match &e.position {
        Position::First => 0,
        Position::Last => items.len(),
        Position::Before(s) => items.iter().position(|i| name(i) == *s)?,
        Position::After(s) => items.iter().position(|i| name(i) == *s)? + 1,
    };
    items.insert(at, new);
    let mut out = format!("{prefix}{}", items.join(" "));
    if let Some(c) = comment {
        out.push_str(" #");
        out.push_str(c);
    }
    Some(out)
}

fn nsswitch(tree: &mut Tree, nss: &[NssEntry]) -> Result<()> {
    const CONF: &str = "etc/nsswitch.conf";
    // libc-bin's postinst copies its default (here, or by the script itself); the NSS
    // modules' postinsts then add their services to whichever it is.
    install_from_default(tree, "usr/share/libc-bin/nsswitch.conf", CONF)?;
    if nss.is_empty() || !matches!(tree.get(CONF).map(|e| &e.kind), Some(Kind::File(_))) {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&tree.read(CONF).unwrap_or_default()).into_owned();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for e in nss {
        for l in lines.iter_mut() {
            if let Some(new) = add_service(l, e) {
                *l = new;
            }
        }
    }
    let mut out = lines.join("\n");
    if text.ends_with('\n') {
        out.push('\n');
    }
    let at = tree.resolve(CONF)?;
    if let Some(entry) = tree.get_mut(&at) {
        entry.kind = Kind::File(crate::tree::Content::bytes(out));
    }
    Ok(())
}

/// `/etc/shells` and `/var/lib/shells.state` as debianutils' `update-shells` writes them on a
/// system that has neither: the template's lines, then every shell the template and
/// `/usr/share/debianutils/shells.d/*` list (in name order), each also under its directory's
/// real path (`/bin/bash` and `/usr/bin/bash` on a merged-/usr system).
fn shells(tree: &mut Tree) -> Result<()> {
    const TEMPLATE: &str = "usr/share/debianutils/shells";
    const PKG_DIR: &str = "usr/share/debianutils/shells.d";
    // debianutils' postinst copies the template to /etc/shells (`cp -p`) and runs
    // update-shells, which is what is done here: from that copy when the script made it.
    if tree.get("var/lib/shells.state").is_some() {
        return Ok(());
    }
    let Some(template) = tree.read(TEMPLATE) else {
        return Ok(());
    };
    let template = String::from_utf8_lossy(&template).into_owned();
    let base = match (tree.get("etc/shells"), tree.read("etc/shells")) {
        (None, _) => template.clone(),
        (Some(e), Some(copied)) if matches!(e.kind, Kind::File(_)) => {
            String::from_utf8_lossy(&copied).into_owned()
        }
        _ => return Ok(()),
    };
    let mut sources = vec![template.clone()];
    let listed: Vec<String> = tree.children(PKG_DIR).map(str::to_string).collect();
    for f in listed {
        if let Some(text) = tree.read(&f) {
            sources.push(String::from_utf8_lossy(&text).into_owned());
        }
    }
    let mut packaged: Vec<String> = Vec::new();
    for text in &sources {
        for raw in text.lines() {
            let line = raw.split('#').next().unwrap_or("");
            if line.is_empty() {
                continue;
            }
            packaged.push(line.to_string());
            let (dir, base) = match line.rsplit_once('/') {
                Some(("", b)) => ("/", b),
                Some((d, b)) => (d, b),
                None => (".", line),
            };
            if let Ok(real) = tree.resolve(dir) {
                let real = if real.is_empty() {
                    String::new()
                } else {
                    format!("/{real}")
                };
                let realshell = format!("{real}/{base}");
                if realshell != line {
                    packaged.push(realshell);
                }
            }
        }
    }
    // Debian 13's update-shells takes each packaged shell once (its lists name both
    // `/bin/bash` and `/usr/bin/bash`); Debian 12's takes one listed twice twice, into
    // /etc/shells too. Which one the image has decides.
    let once = tree.read("usr/sbin/update-shells").is_some_and(|s| {
        String::from_utf8_lossy(&s).contains("! hashset_contains \"$PKG_SHELLS\" \"$line\"")
    });
    if once {
        let mut seen = std::collections::BTreeSet::new();
        packaged.retain(|s| seen.insert(s.clone()));
    }
    let mut out = String::new();
    let mut listed: Vec<&str> = Vec::new();
    for line in base.lines() {
        let shell = line.split('#').next().unwrap_or("");
        if shell.is_empty() || !listed.contains(&shell) {
            out.push_str(line);
            out.push('\n');
            listed.push(shell);
        }
    }
    let mut state = String::new();
    for shell in &packaged {
        state.push_str(shell);
        state.push('\n');
        if !listed.contains(&shell.as_str()) {
            out.push_str(shell);
            out.push('\n');
        }
    }
    let mode = match tree.get("etc/shells") {
        Some(e) => e.mode,
        None => tree.get(&tree.resolve(TEMPLATE)?).map_or(0o644, |e| e.mode),
    };
    tree.insert("etc/shells", Entry::file(out, mode))?;
    tree.insert("var/lib/shells.state", Entry::file(state, 0o644))?;
    Ok(())
}

#[cfg(test)]
mod tests;
