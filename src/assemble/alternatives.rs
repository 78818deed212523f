//! What `update-alternatives --install` in the packages' postinst would leave (see
//! `packages::alternatives`): for each group, the present choice of the highest priority
//! behind `/etc/alternatives/NAME`, the generic link to it, the links of that choice's
//! slaves whose files are there (man pages are stripped, so theirs are not), and dpkg's record
//! of the group in `/var/lib/dpkg/alternatives/NAME` in automatic mode, so that
//! `update-alternatives` on the machine knows every choice.

use anyhow::Result;

use crate::packages::alternatives::Alternative;
use crate::tree::{Entry, Kind, Tree};

/// May the generic link `link` be made (nothing there, or already this group's link)? A file
/// a package ships at that path is not replaced, as update-alternatives does not.
fn free(tree: &Tree, link: &str, name: &str) -> bool {
    let Ok(at) = tree.resolve_parent(link) else {
        return false;
    };
    match tree.get(&at).map(|e| &e.kind) {
        None => true,
        Some(Kind::Symlink(t)) => *t == format!("/etc/alternatives/{name}"),
        Some(_) => false,
    }
}

pub(super) fn apply(tree: &mut Tree, registered: &[Alternative]) -> Result<()> {
    let mut names: Vec<&str> = Vec::new();
    for a in registered {
        if !names.contains(&a.master.name.as_str()) {
            names.push(&a.master.name);
        }
    }
    let record = tree.exists("usr/bin/update-alternatives");
    for name in names {
        let first = registered
            .iter()
            .find(|a| a.master.name == name)
            .map(|a| a.master.link.clone())
            .unwrap_or_default();
        // update-alternatives refuses a choice that names another link for the group; a path
        // registered twice counts once (the last registration, as a reinstall would leave it).
        let mut choices: Vec<&Alternative> = Vec::new();
        for a in registered
            .iter()
            .filter(|a| a.master.name == name && a.master.link == first)
        {
            choices.retain(|c| c.master.path != a.master.path);
            if tree.exists(&a.master.path) {
                choices.push(a);
            }
        }
        choices.sort_by(|a, b| a.master.path.cmp(&b.master.path));
        // Highest priority; of equals, the first by path.
        let Some(best) = choices.iter().copied().rev().max_by_key(|a| a.priority) else {
            continue;
        };
        if !free(tree, &first, name) || tree.get(&format!("etc/alternatives/{name}")).is_some() {
            continue;
        }
        tree.insert(
            &format!("etc/alternatives/{name}"),
            Entry::symlink(&best.master.path),
        )?;
        tree.insert(&first, Entry::symlink(&format!("/etc/alternatives/{name}")))?;
        // The group's slaves, by name, each with the link the first choice to name it gave.
        let mut slaves: Vec<(&str, &str)> = Vec::new();
        for c in &choices {
            for s in &c.slaves {
                if !slaves.iter().any(|(n, _)| *n == s.name) {
                    slaves.push((&s.name, &s.link));
                }
            }
        }
        slaves.sort();
        for s in &best.slaves {
            let alt = format!("etc/alternatives/{}", s.name);
            if tree.exists(&s.path) && free(tree, &s.link, &s.name) && tree.get(&alt).is_none() {
                tree.insert(&alt, Entry::symlink(&s.path))?;
                tree.insert(&s.link, Entry::symlink(&format!("/{alt}")))?;
            }
        }
        if record {
            let mut admin = format!("auto\n{first}\n");
            for (n, l) in &slaves {
                admin.push_str(&format!("{n}\n{l}\n"));
            }
            admin.push('\n');
            for c in &choices {
                admin.push_str(&format!("{}\n{}\n", c.master.path, c.priority));
                for (n, _) in &slaves {
                    let path = c.slaves.iter().find(|s| s.name == *n).map(|s| &s.path);
                    admin.push_str(path.map_or("", String::as_str));
                    admin.push('\n');
                }
            }
            admin.push('\n');
            tree.insert(
                &format!("var/lib/dpkg/alternatives/{name}"),
                Entry::file(admin, 0o644),
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packages::alternatives::from_script;

    fn link(t: &Tree, path: &str) -> Option<String> {
        match &t.get(path)?.kind {
            Kind::Symlink(s) => Some(s.clone()),
            _ => None,
        }
    }

    #[test]
    fn the_present_choice_of_the_highest_priority_wins_and_dpkg_records_the_group() {
        let mut t = Tree::new();
        for f in [
            "usr/bin/mawk",
            "usr/bin/gawk",
            "usr/bin/update-alternatives",
            "usr/bin/less",
        ] {
            t.insert(f, Entry::file("", 0o755)).unwrap();
        }
        t.insert("usr/share/man/man1/gawk.1.gz", Entry::file("", 0o644))
            .unwrap();
        // A file a package ships at a generic path stays.
        t.insert("usr/bin/pager", Entry::file("own", 0o755))
            .unwrap();
        let registered = from_script(
            "update-alternatives --install /usr/bin/awk awk /usr/bin/mawk 5 \\\n\
             --slave /usr/share/man/man1/awk.1.gz awk.1.gz /usr/share/man/man1/mawk.1.gz \\\n\
             --slave /usr/bin/nawk nawk /usr/bin/mawk\n\
             update-alternatives --install /usr/bin/awk awk /usr/bin/gawk 10 \\\n\
             --slave /usr/share/man/man1/awk.1.gz awk.1.gz /usr/share/man/man1/gawk.1.gz \\\n\
             --slave /usr/bin/nawk nawk /usr/bin/gawk --slave /usr/bin/igawk igawk /usr/bin/igawk\n\
             update-alternatives --install /usr/bin/awk awk /usr/bin/original-awk 50\n\
             update-alternatives --install /usr/bin/pager pager /usr/bin/less 77\n",
        );
        apply(&mut t, &registered).unwrap();
        assert_eq!(
            link(&t, "usr/bin/awk").as_deref(),
            Some("/etc/alternatives/awk")
        );
        assert_eq!(
            link(&t, "etc/alternatives/awk").as_deref(),
            Some("/usr/bin/gawk")
        );
        assert_eq!(
            link(&t, "usr/bin/nawk").as_deref(),
            Some("/etc/alternatives/nawk")
        );
        assert_eq!(
            link(&t, "etc/alternatives/nawk").as_deref(),
            Some("/usr/bin/gawk")
        );
        assert_eq!(
            link(&t, "etc/alternatives/awk.1.gz").as_deref(),
            Some("/usr/share/man/man1/gawk.1.gz")
        );
        assert!(
            t.get("usr/bin/igawk").is_none(),
            "a slave whose file is missing"
        );
        assert!(t.get("etc/alternatives/pager").is_none());
        assert_eq!(t.read("usr/bin/pager").unwrap(), b"own");
        // As dpkg writes it: slaves by name, choices by path, a slave a choice lacks empty.
        let admin = String::from_utf8(t.read("var/lib/dpkg/alternatives/awk").unwrap()).unwrap();
        assert_eq!(
            admin,
            "auto\n/usr/bin/awk\nawk.1.gz\n/usr/share/man/man1/awk.1.gz\nigawk\n/usr/bin/igawk\n\
             nawk\n/usr/bin/nawk\n\n\
             /usr/bin/gawk\n10\n/usr/share/man/man1/gawk.1.gz\n/usr/bin/igawk\n/usr/bin/gawk\n\
             /usr/bin/mawk\n5\n/usr/share/man/man1/mawk.1.gz\n\n/usr/bin/mawk\n\n"
        );
    }
}
