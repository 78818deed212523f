//! The owners, groups and modes the packages' postinst would set (see
//! `packages::statoverride`): applied to the files in the tree once the accounts exist, and the
//! overrides a script records with `dpkg-statoverride --add` written to dpkg's database
//! (`/var/lib/dpkg/statoverride`), so that dpkg keeps them across upgrades on the machine.

use anyhow::Result;

use crate::packages::statoverride::Override;
use crate::tree::{Kind, Tree};

/// The id of `who` (a name, or `#ID`) in the image's `/etc/passwd` or `/etc/group`.
pub(super) fn id_of(tree: &Tree, db: &str, who: &str) -> Option<u32> {
    if let Some(id) = who.strip_prefix('#') {
        return id.parse().ok();
    }
    let text = tree.read(db)?;
    String::from_utf8_lossy(&text).lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next() == Some(who)).then(|| f.nth(1)?.parse().ok())?
    })
}

pub(super) fn apply(tree: &mut Tree, overrides: &[Override]) -> Result<()> {
    let mut records: Vec<String> = Vec::new();
    for o in overrides {
        let Ok(at) = tree.resolve(&o.path) else {
            continue;
        };
        // A file the profile left out (or a package that ships none there): dpkg would
        // have failed the script; there is nothing to change.
        if tree.get(&at).is_none() {
            continue;
        }
        let uid = o
            .owner
            .as_deref()
            .map(|u| (u, id_of(tree, "etc/passwd", u)));
        let gid = o.group.as_deref().map(|g| (g, id_of(tree, "etc/group", g)));
        let missing = uid.iter().chain(gid.iter()).find(|(_, id)| id.is_none());
        if let Some((name, _)) = missing {
            eprintln!(
                "warning: a maintainer script gives {} to `{name}`, which the image has no account for; left as its package ships it",
                o.path
            );
            continue;
        }
        if o.recorded {
            records.push(format!(
                "{} {} {:o} {}\n",
                o.owner.as_deref().unwrap_or("root"),
                o.group.as_deref().unwrap_or("root"),
                o.mode.unwrap_or(0),
                o.path
            ));
        }
        if !o.applied {
            continue;
        }
        let Some(e) = tree.get_mut(&at) else { continue };
        if uid.is_some() || gid.is_some() {
            // chown clears setuid and setgid on an executable, root's or not; the mode
            // below (chmod after chgrp, as the scripts and dpkg-statoverride do) sets them.
            if matches!(e.kind, Kind::File(_)) && e.mode & 0o111 != 0 {
                e.mode &= !0o6000;
            }
            if let Some((_, Some(u))) = uid {
                e.uid = u;
            }
            if let Some((_, Some(g))) = gid {
                e.gid = g;
            }
        }
        if let Some(m) = o.mode {
            e.mode = m;
        }
    }
    if !records.is_empty() && tree.get("var/lib/dpkg").is_some() {
        records.sort_by(|a, b| a.rsplit(' ').next().cmp(&b.rsplit(' ').next()));
        super::put(tree, "var/lib/dpkg/statoverride", records.concat(), 0o644)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packages::statoverride::ov;
    use crate::tree::Entry;

    #[test]
    fn owners_groups_and_modes_are_set_and_dpkg_records_them() {
        let mut t = Tree::new();
        t.insert(
            "etc/passwd",
            Entry::file(
                "root:x:0:0::/root:/bin/sh\nmessagebus:x:100:101::/:/usr/sbin/nologin\n",
                0o644,
            ),
        )
        .unwrap();
        t.insert(
            "etc/group",
            Entry::file("root:x:0:\n_ssh:x:102:\nmessagebus:x:101:\n", 0o644),
        )
        .unwrap();
        t.mkdir_p("var/lib/dpkg").unwrap();
        t.insert("usr/bin/ssh-agent", Entry::file("elf", 0o4755))
            .unwrap();
        t.insert("usr/lib/dbus-1.0/helper", Entry::file("elf", 0o755))
            .unwrap();
        t.insert("usr/lib/other", Entry::file("elf", 0o755))
            .unwrap();
        t.mkdir_p("usr/lib/private").unwrap();
        t.insert("bin", Entry::symlink("usr/bin")).unwrap();
        apply(
            &mut t,
            &[
                // Through the merged-/usr link; the setuid bit the file had goes with chgrp.
                ov("/bin/ssh-agent", None, Some("_ssh"), None, false, true),
                ov(
                    "/usr/lib/dbus-1.0/helper",
                    Some("root"),
                    Some("messagebus"),
                    Some(0o4754),
                    true,
                    true,
                ),
                ov(
                    "/usr/lib/other",
                    Some("root"),
                    Some("root"),
                    Some(0o700),
                    true,
                    false,
                ),
                ov(
                    "/usr/lib/private",
                    Some("#7"),
                    None,
                    Some(0o2770),
                    false,
                    true,
                ),
                ov(
                    "/usr/lib/gone",
                    Some("root"),
                    Some("root"),
                    Some(0o700),
                    true,
                    true,
                ),
                ov(
                    "/usr/lib/other",
                    Some("nobody-here"),
                    None,
                    Some(0o700),
                    false,
                    true,
                ),
            ],
        )
        .unwrap();
        let e = t.get("usr/bin/ssh-agent").unwrap();
        assert_eq!((e.uid, e.gid, e.mode), (0, 102, 0o755));
        let e = t.get("usr/lib/dbus-1.0/helper").unwrap();
        assert_eq!((e.uid, e.gid, e.mode), (0, 101, 0o4754));
        // Recorded without --update: unchanged until the next unpack.
        let e = t.get("usr/lib/other").unwrap();
        assert_eq!((e.uid, e.gid, e.mode), (0, 0, 0o755));
        let e = t.get("usr/lib/private").unwrap();
        assert_eq!((e.uid, e.gid, e.mode), (7, 0, 0o2770));
        assert_eq!(
            String::from_utf8(t.read("var/lib/dpkg/statoverride").unwrap()).unwrap(),
            "root messagebus 4754 /usr/lib/dbus-1.0/helper\nroot root 700 /usr/lib/other\n"
        );
    }
}
