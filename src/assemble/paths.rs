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
/// or primary gid is 0; for `R`/`Q` whether the path's owner/group is root's; for `m`, `O`
/// and `E` (PATH is `USER WORD`) see `account_test`. The
/// tree is as the packages unpacked it and the scripts configured before this one left it.
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
    if matches!(op, 'm' | 'O' | 'E') {
        let (user, word) = path.split_once(' ')?;
        return account_test(tree, user, word, op);
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
    let Some(e) = followed(tree, rel)? else {
        return Some(false);
    };
    Some(match op {
        'e' | 'r' | 'w' => true,
        'f' => matches!(e.kind, Kind::File(_)),
        'd' => e.kind == Kind::Dir,
        'x' => e.mode & 0o111 != 0 && matches!(e.kind, Kind::File(_) | Kind::Dir),
        'R' => e.uid == 0,
        'Q' => e.gid == 0,
        's' => match &e.kind {
            Kind::File(c) => !c.is_empty(),
            _ => true,
        },
        _ => return None,
    })
}

/// The entry at `rel` with links followed as `stat` follows them: `Some(None)` when there is
/// none (a link that leads outside the root or nowhere is a file that does not exist), `None`
/// for a hard link to nothing.
fn followed<'t>(tree: &'t Tree, rel: &str) -> Option<Option<&'t crate::tree::Entry>> {
    let Ok(at) = tree.resolve(rel) else {
        return Some(None);
    };
    let Some(e) = tree.get(&at) else {
        return Some(None);
    };
    match &e.kind {
        Kind::HardLink(t) => tree.get(t).map(Some),
        _ => Some(Some(e)),
    }
}

/// The image's `/etc/passwd` or `/etc/group`, as lines split at `:`.
fn db(tree: &Tree, path: &str) -> Vec<Vec<String>> {
    let text = tree.read(path).unwrap_or_default();
    String::from_utf8_lossy(&text)
        .lines()
        .map(|l| l.split(':').map(str::to_string).collect())
        .collect()
}

/// `m`: whether `id -Gn USER | grep -qw WORD` succeeds; `O`/`E`: whether the path WORD
/// belongs to USER / to USER's primary group (`test -O`, `test -G` as USER).
fn account_test(tree: &Tree, user: &str, word: &str, op: char) -> Known {
    let passwd = db(tree, "etc/passwd");
    // No such user: `id` prints nothing, and `su` fails.
    let Some(pw) = passwd
        .iter()
        .find(|f| f.first().map(String::as_str) == Some(user))
    else {
        return Some(false);
    };
    let uid: u32 = pw.get(2)?.parse().ok()?;
    let gid: u32 = pw.get(3)?.parse().ok()?;
    if op == 'm' {
        // grep reads WORD as a pattern: only a plain name is answered.
        if word.is_empty()
            || !word
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return None;
        }
        let groups = db(tree, "etc/group");
        let gid_text = gid.to_string();
        // The primary group first (its number when it has no name), then each group that
        // lists USER, as `id -Gn` prints them.
        let mut names: Vec<&str> = vec![groups
            .iter()
            .find(|g| g.get(2) == Some(&gid_text))
            .and_then(|g| g.first())
            .map_or(gid_text.as_str(), String::as_str)];
        for g in &groups {
            let listed = g.get(3).is_some_and(|m| m.split(',').any(|m| m == user));
            if listed && !names.contains(&g[0].as_str()) {
                names.push(&g[0]);
            }
        }
        return Some(grep_word(&names.join(" "), word));
    }
    let Some(e) = followed(tree, word.trim_start_matches('/'))? else {
        return Some(false);
    };
    Some(if op == 'O' {
        e.uid == uid
    } else {
        e.gid == gid
    })
}

/// Whether `grep -w WORD` (WORD a plain name) matches the line `text`: WORD found with no
/// letter, digit or `_` right before or after it.
fn grep_word(text: &str, word: &str) -> bool {
    let is_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    text.match_indices(word).any(|(i, _)| {
        !is_word(text[..i].chars().next_back()) && !is_word(text[i + word.len()..].chars().next())
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

    #[test]
    fn group_membership_and_ownership_are_what_id_grep_and_test_would_say() {
        let mut t = Tree::new();
        t.insert(
            "etc/passwd",
            Entry::file(
                "root:x:0:0::/root:/bin/sh\npostgres:x:105:110::/var/lib/postgresql:/bin/bash\nodd:x:106:4242::/:/bin/false\n",
                0o644,
            ),
        )
        .unwrap();
        t.insert(
            "etc/group",
            Entry::file(
                "root:x:0:\nssl-cert:x:109:postgres\npostgres:x:110:\nssl:x:111:other\nmy_grp:x:112:odd\n",
                0o644,
            ),
        )
        .unwrap();
        let mut home = Entry::new(Kind::Dir, 0o755);
        (home.uid, home.gid) = (105, 0);
        t.insert("var/lib/postgresql", home).unwrap();
        t.insert("srv/link", Entry::symlink("/var/lib/postgresql"))
            .unwrap();
        for (q, op, want) in [
            // `id -Gn postgres` prints "postgres ssl-cert".
            ("postgres postgres", 'm', Some(true)),
            ("postgres ssl-cert", 'm', Some(true)),
            // grep -w: a word of a longer name (ssl in ssl-cert) matches, a part of one not.
            ("postgres ssl", 'm', Some(true)),
            ("postgres cert", 'm', Some(true)),
            ("postgres post", 'm', Some(false)),
            ("postgres root", 'm', Some(false)),
            // A primary group with no name is printed as its number.
            ("odd 4242", 'm', Some(true)),
            ("odd my", 'm', Some(false)),
            ("odd my_grp", 'm', Some(true)),
            ("nobody postgres", 'm', Some(false)),
            // A pattern is not answered.
            ("postgres ssl.cert", 'm', None),
            ("postgres /var/lib/postgresql", 'O', Some(true)),
            ("postgres /var/lib/postgresql", 'E', Some(false)),
            ("root /var/lib/postgresql", 'E', Some(true)),
            ("postgres /srv/link", 'O', Some(true)),
            ("postgres /srv/none", 'O', Some(false)),
            ("nobody /var/lib/postgresql", 'O', Some(false)),
        ] {
            assert_eq!(test(&t, q, op), want, "-{op} {q}");
        }
    }
}
