//! The accounts the units an image starts run as must be in the image.
//!
//! A Debian package whose service runs as its own user (chrony's `User=_chrony`) makes that
//! user in its maintainer script, which Ingot does not run; Ingot makes the accounts such
//! scripts name literally (`packages::accounts`), not one a script names through a variable or
//! a unit a profile brings. Without the account the unit fails at every boot (status
//! 217/USER) while the build and, unless an agent probes that service, the boot test say
//! nothing. So every unit the profile starts is read (unit file and drop-ins) for the users
//! and groups it names, and a name the image's passwd or group lacks stops the build with the
//! lines to add to the profile.

use anyhow::{bail, Result};

use crate::tree::Tree;

use super::init::{template_of, unit_file, UNIT_FILE_DIRS as UNIT_DIRS};

/// The accounts a unit names: users, groups, and whether systemd makes a dynamic user for it.
#[derive(Debug, Default, PartialEq)]
struct Accounts {
    user: Option<String>,
    group: Option<String>,
    supplementary: Vec<String>,
    dynamic: bool,
}

/// The unit file and its drop-ins, in the order systemd reads them: the file from the first
/// directory that has it (an instance's from its template), then every `UNIT.d/*.conf` by file
/// name (one in `/etc` hiding the same name in `/usr/lib`; an instance's hiding its template's).
fn unit_texts(tree: &Tree, unit: &str) -> Vec<String> {
    let read = |p: &str| {
        tree.read(p)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    let names: Vec<String> = template_of(unit)
        .into_iter()
        .chain([unit.to_string()])
        .collect();
    let mut texts: Vec<String> = names
        .iter()
        .rev()
        .find_map(|n| unit_file(tree, n))
        .map(|(_, text)| text)
        .into_iter()
        .collect();
    let mut dropins = std::collections::BTreeMap::new();
    for n in &names {
        for d in UNIT_DIRS.iter().rev() {
            let dir = format!("{d}/{n}.d");
            for p in tree.children(&dir) {
                let name = &p[dir.len() + 1..];
                if name.ends_with(".conf") {
                    dropins.insert(name.to_string(), p.to_string());
                }
            }
        }
    }
    texts.extend(dropins.values().filter_map(|p| read(p)));
    texts
}

/// Read the account settings of a unit's texts. A later assignment replaces an earlier one;
/// an empty one resets (`SupplementaryGroups=` clears the list). Values with specifiers or
/// variables (`%i`, `$X`) and numeric ids are left out: they are not names to look up.
fn accounts(texts: &[String]) -> Accounts {
    let mut a = Accounts::default();
    let literal = |v: &str| {
        !v.is_empty() && !v.contains(['%', '$']) && !v.bytes().all(|b| b.is_ascii_digit())
    };
    for text in texts {
        let mut section = "";
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                section = line;
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let v = v.trim();
            match (section, k.trim()) {
                ("[Service]", "User") | ("[Socket]", "SocketUser") => {
                    a.user = Some(v.to_string()).filter(|v| literal(v));
                }
                ("[Service]", "Group") | ("[Socket]", "SocketGroup") => {
                    a.group = Some(v.to_string()).filter(|v| literal(v));
                }
                ("[Service]", "SupplementaryGroups") if v.is_empty() => a.supplementary.clear(),
                ("[Service]", "SupplementaryGroups") => a.supplementary.extend(
                    v.split_whitespace()
                        .filter(|g| literal(g))
                        .map(String::from),
                ),
                ("[Service]", "DynamicUser") => {
                    a.dynamic = matches!(v, "yes" | "true" | "on" | "1");
                }
                _ => {}
            }
        }
    }
    a
}

/// The names in the first field of an `/etc/passwd` or `/etc/group` of the tree.
fn names(tree: &Tree, path: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(&tree.read(path).unwrap_or_default()).into_owned();
    text.lines()
        .filter_map(|l| l.split(':').next())
        .map(String::from)
        .collect()
}

/// Check that every account the `units` (unit name, where it was asked for) run as is in the
/// image's passwd and group. A unit with `DynamicUser=yes` is left alone: systemd makes its
/// user when it starts.
pub fn check(tree: &Tree, units: &[(String, String)]) -> Result<()> {
    let users = names(tree, "etc/passwd");
    let groups = names(tree, "etc/group");
    for (unit, origin) in units {
        let a = accounts(&unit_texts(tree, unit));
        if a.dynamic {
            continue;
        }
        if let Some(u) = a.user.as_ref().filter(|u| !users.contains(u)) {
            bail!(
                "{origin}: unit `{unit}` runs as User={u}, but the image has no such user (neither the profile nor a package's maintainer script, as far as Ingot can read it, makes one); add it to the profile:\n  [[users]]\n  name = \"{u}\"\n  system = true"
            );
        }
        if let Some(g) = a
            .group
            .iter()
            .chain(&a.supplementary)
            .find(|g| !groups.contains(g))
        {
            bail!(
                "{origin}: unit `{unit}` names group {g}, but the image has no such group (neither the profile nor a package's maintainer script, as far as Ingot can read it, makes one); add it to the profile:\n  [[groups]]\n  name = \"{g}\"\n  system = true"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Entry;

    fn tree(files: &[(&str, &str)]) -> Tree {
        let mut t = Tree::new();
        for (p, c) in files {
            t.insert(p, Entry::file(*c, 0o644)).unwrap();
        }
        t
    }

    #[test]
    fn settings_follow_drop_ins_in_systemds_order() {
        let t = tree(&[
            (
                "usr/lib/systemd/system/a.service",
                "[Unit]\nUser=nobody-here\n[Service]\nUser=_a\nGroup=_g\nSupplementaryGroups=x y\n",
            ),
            (
                "usr/lib/systemd/system/a.service.d/10-u.conf",
                "[Service]\nUser=%i\nSupplementaryGroups=\nSupplementaryGroups=z\n",
            ),
            // Hidden by /etc's file of the same name.
            (
                "usr/lib/systemd/system/a.service.d/20-d.conf",
                "[Service]\nDynamicUser=yes\n",
            ),
            ("etc/systemd/system/a.service.d/20-d.conf", "[Service]\n"),
        ]);
        assert_eq!(
            accounts(&unit_texts(&t, "a.service")),
            Accounts {
                user: None,
                group: Some("_g".into()),
                supplementary: vec!["z".into()],
                dynamic: false
            }
        );
    }

    #[test]
    fn an_instance_reads_its_templates_file_and_both_drop_in_folders() {
        let t = tree(&[
            ("usr/lib/systemd/system/w@.service", "[Service]\nUser=_w\n"),
            (
                "usr/lib/systemd/system/w@.service.d/a.conf",
                "[Service]\nGroup=_t\n",
            ),
            (
                "etc/systemd/system/w@x.service.d/b.conf",
                "[Service]\nSupplementaryGroups=_i\n",
            ),
        ]);
        assert_eq!(
            accounts(&unit_texts(&t, "w@x.service")),
            Accounts {
                user: Some("_w".into()),
                group: Some("_t".into()),
                supplementary: vec!["_i".into()],
                dynamic: false
            }
        );
    }

    #[test]
    fn a_unit_whose_account_is_missing_stops_the_build_naming_the_fix() {
        let passwd =
            "root:x:0:0:root:/root:/bin/sh\nsvc:x:101:101::/nonexistent:/usr/sbin/nologin\n";
        let group = "root:x:0:\nsvc:x:101:\nadm:x:4:\n";
        let base = [("etc/passwd", passwd), ("etc/group", group)];
        let with = |unit: &str| {
            let mut files = base.to_vec();
            files.push(("usr/lib/systemd/system/u.service", unit));
            tree(&files)
        };
        let units = [("u.service".to_string(), "p.toml".to_string())];
        for ok in [
            "[Service]\nUser=svc\nGroup=adm\n",
            "[Service]\nUser=1234\nSupplementaryGroups=svc\n",
            "[Service]\nDynamicUser=yes\nUser=_made\n",
            "[Service]\nExecStart=/bin/true\n",
        ] {
            check(&with(ok), &units).unwrap();
        }
        let e = check(&with("[Service]\nUser=_chrony\n"), &units).unwrap_err();
        let e = format!("{e:#}");
        assert!(
            e.contains("p.toml: unit `u.service` runs as User=_chrony")
                && e.contains("name = \"_chrony\"\n  system = true"),
            "{e}"
        );
        let e = check(&with("[Socket]\nSocketGroup=_sock\n"), &units).unwrap_err();
        assert!(format!("{e:#}").contains("names group _sock"), "{e:#}");
    }
}
