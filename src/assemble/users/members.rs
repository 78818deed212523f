//! Group memberships a postinst adds to accounts that exist (`adduser USER GROUP`, `usermod
//! -a -G`), written into the image's group and gshadow files.

use anyhow::Result;

use crate::tree::Tree;

/// The user and groups of a postinst's `adduser [--quiet] USER GROUP` or `usermod -a -G
/// GROUP[,GROUP...] USER` (adding an account that exists to groups that do); `None` for any
/// other form of either tool (`adduser --system` makes an account: see `apply`).
pub(in crate::assemble) fn membership(
    tool: &str,
    args: &[String],
) -> Option<(String, Vec<String>)> {
    match tool {
        "adduser" => {
            let operands: Vec<&String> = args
                .iter()
                .filter(|a| !matches!(a.as_str(), "--quiet" | "-q"))
                .collect();
            match operands.as_slice() {
                [u, g] if !u.starts_with('-') && !g.starts_with('-') => {
                    Some((u.to_string(), vec![g.to_string()]))
                }
                _ => None,
            }
        }
        "usermod" => {
            let (mut append, mut groups, mut user) = (false, None, None);
            let mut it = args.iter();
            while let Some(a) = it.next() {
                match a.as_str() {
                    "-a" | "--append" => append = true,
                    "-G" | "--groups" => groups = Some(it.next()?.clone()),
                    "-aG" => (append, groups) = (true, Some(it.next()?.clone())),
                    o if o.starts_with('-') => return None,
                    u if user.is_none() => user = Some(u.to_string()),
                    _ => return None,
                }
            }
            let groups: Vec<String> = groups?.split(',').map(str::to_string).collect();
            (append && groups.iter().all(|g| !g.is_empty())).then_some((user?, groups))
        }
        _ => None,
    }
}

/// Add `user` to `groups` in the image's group and gshadow files (each file keeping its
/// owner and mode), as adduser does: nothing for a group the user is already in (its primary
/// group or a listed one). False, with nothing changed, when the user or a group is missing.
pub(in crate::assemble) fn add_member(
    tree: &mut Tree,
    user: &str,
    groups: &[String],
) -> Result<bool> {
    let read = |tree: &Tree, p: &str| {
        String::from_utf8_lossy(&tree.read(p).unwrap_or_default()).into_owned()
    };
    let colons = |l: &str| l.split(':').map(str::to_string).collect::<Vec<_>>();
    let passwd = read(tree, "etc/passwd");
    let Some(gid) = passwd
        .lines()
        .map(colons)
        .find(|f| f.first().map(String::as_str) == Some(user))
        .and_then(|f| f.get(3)?.parse::<u32>().ok())
    else {
        return Ok(false);
    };
    let group = read(tree, "etc/group");
    let entry = |name: &str| {
        group
            .lines()
            .map(colons)
            .find(|f| f.first().map(String::as_str) == Some(name))
    };
    let mut wanted = Vec::new();
    for g in groups {
        let Some(f) = entry(g) else {
            return Ok(false);
        };
        let primary = f.get(2).and_then(|x| x.parse::<u32>().ok()) == Some(gid);
        let listed = f.get(3).is_some_and(|m| m.split(',').any(|m| m == user));
        if !primary && !listed && !wanted.contains(g) {
            wanted.push(g.clone());
        }
    }
    if wanted.is_empty() {
        return Ok(true);
    }
    // group's members are its fourth field, gshadow's too.
    for path in ["etc/group", "etc/gshadow"] {
        let text = read(tree, path);
        let Some(e) = tree.get_mut(path) else {
            continue;
        };
        let mut out = String::new();
        for line in text.lines() {
            let mut f: Vec<&str> = line.split(':').collect();
            let joined;
            if f.len() >= 4 && wanted.iter().any(|g| g == f[0]) {
                joined = if f[3].is_empty() {
                    user.to_string()
                } else {
                    format!("{},{user}", f[3])
                };
                f[3] = &joined;
            }
            out.push_str(&f.join(":"));
            out.push('\n');
        }
        e.kind = crate::tree::Kind::File(crate::tree::Content::bytes(out));
    }
    Ok(true)
}
