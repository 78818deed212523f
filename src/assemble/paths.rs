//! What the image being assembled answers about a path, for the maintainer scripts
//! `packages::script` evaluates: `[ -e PATH ]` and its kin, and `command -v NAME`.

use crate::packages::script::Known;
use crate::tree::{Kind, Tree};

/// Where `command -v` looks (root's `PATH` in a maintainer script).
const PATH: &[&str] = &[
    "usr/local/sbin",
    "usr/local/bin",
    "usr/sbin",
    "usr/bin",
    "sbin",
    "bin",
];

/// `[ -OP PATH ]` for `op` one of `e f d L h x s r w`, or for `c` whether `command -v PATH`
/// finds it; for `u`/`g` whether the account PATH names is there, for `U`/`G` whether its uid
/// or primary gid is 0. The tree is as the packages unpacked it, before the scripts run.
pub(super) fn test(tree: &Tree, path: &str, op: char) -> Known {
    if op == 'c' {
        if path.contains('/') {
            return test(tree, path, 'x');
        }
        return Some(PATH.iter().any(|d| {
            let p = format!("{d}/{path}");
            test(tree, &p, 'x') == Some(true) && test(tree, &p, 'f') == Some(true)
        }));
    }
    if op == 'U' || op == 'G' {
        // Whether the account's uid (`U`) or primary gid (`G`) is 0; not known without it.
        let text = tree.read("etc/passwd").unwrap_or_default();
        let prefix = format!("{path}:");
        let text = String::from_utf8_lossy(&text);
        let line = text.lines().find(|l| l.starts_with(&prefix))?;
        let field = line.split(':').nth(if op == 'U' { 2 } else { 3 })?;
        return Some(field == "0");
    }
    if op == 'u' || op == 'g' {
        // `getent passwd NAME` / `getent group NAME`: whether the image has the account.
        let db = if op == 'u' { "etc/passwd" } else { "etc/group" };
        let text = tree.read(db).unwrap_or_default();
        let prefix = format!("{path}:");
        return Some(
            String::from_utf8_lossy(&text)
                .lines()
                .any(|l| l.starts_with(&prefix)),
        );
    }
    let rel = path.trim_start_matches('/');
    if op == 'L' || op == 'h' {
        let at = tree.resolve_parent(rel).ok()?;
        return Some(matches!(
            tree.get(&at).map(|e| &e.kind),
            Some(Kind::Symlink(_))
        ));
    }
    // A link that leads outside the root or nowhere is a file that does not exist.
    let Ok(at) = tree.resolve(rel) else {
        return Some(false);
    };
    let Some(mut e) = tree.get(&at) else {
        return Some(false);
    };
    if let Kind::HardLink(t) = &e.kind {
        e = tree.get(t)?;
    }
    Some(match op {
        'e' | 'r' | 'w' => true,
        'f' => matches!(e.kind, Kind::File(_)),
        'd' => e.kind == Kind::Dir,
        'x' => e.mode & 0o111 != 0 && matches!(e.kind, Kind::File(_) | Kind::Dir),
        's' => match &e.kind {
            Kind::File(c) => !c.is_empty(),
            _ => true,
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Entry;

    #[test]
    fn tests_follow_links_as_test_does_and_commands_are_found_on_path() {
        let mut t = Tree::new();
        t.mkdir_p("usr/bin").unwrap();
        t.insert("bin", Entry::symlink("usr/bin")).unwrap();
        t.insert("usr/sbin/a2enmod", Entry::file("#!/usr/bin/perl", 0o755))
            .unwrap();
        t.insert("etc/a/conf", Entry::file("", 0o644)).unwrap();
        t.insert("etc/a/enabled", Entry::symlink("conf")).unwrap();
        t.insert("etc/a/dangling", Entry::symlink("none")).unwrap();
        for (op, p, want) in [
            ('e', "/etc/a/conf", true),
            ('s', "/etc/a/conf", false),
            ('f', "/etc/a/enabled", true),
            ('L', "/etc/a/enabled", true),
            ('L', "/etc/a/conf", false),
            ('e', "/etc/a/dangling", false),
            ('h', "/etc/a/dangling", true),
            ('d', "/bin", true),
            ('d', "/etc/a/conf", false),
            ('x', "/usr/sbin/a2enmod", true),
            ('x', "/etc/a/conf", false),
            ('e', "/etc/none", false),
            ('c', "a2enmod", true),
            ('c', "ucf", false),
            ('c', "/usr/sbin/a2enmod", true),
        ] {
            assert_eq!(test(&t, p, op), Some(want), "-{op} {p}");
        }
    }

    #[test]
    fn accounts_are_looked_up_in_the_images_passwd_and_group() {
        let mut t = Tree::new();
        t.insert(
            "etc/passwd",
            Entry::file(
                "root:x:0:0::/root:/bin/sh\nmemcache:x:100:101::/:/bin/false\n",
                0o644,
            ),
        )
        .unwrap();
        t.insert("etc/group", Entry::file("root:x:0:\n", 0o644))
            .unwrap();
        assert_eq!(test(&t, "memcache", 'u'), Some(true));
        assert_eq!(test(&t, "memcach", 'u'), Some(false));
        assert_eq!(test(&t, "memcache", 'g'), Some(false));
        assert_eq!(test(&t, "root", 'g'), Some(true));
        assert_eq!(test(&t, "root", 'U'), Some(true));
        assert_eq!(test(&t, "memcache", 'U'), Some(false));
        assert_eq!(test(&t, "memcache", 'G'), Some(false));
        assert_eq!(test(&t, "nobody-here", 'U'), None);
    }
}
