//! The order dpkg configures a package set in: each package after what it depends on
//! (`Pre-Depends`, then `Depends`), so a postinst sees what its dependencies' postinsts
//! made (dovecot-core's sees ssl-cert's certificate). Ties and dependency loops go by the
//! order given.

use std::collections::BTreeMap;

use super::index::{parse_deps, PackageInfo};

/// Indices into `pkgs` in configure order.
pub fn configure_order(pkgs: &[&PackageInfo]) -> Vec<usize> {
    let mut by_name: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, p) in pkgs.iter().enumerate() {
        by_name.entry(p.name.as_str()).or_insert(i);
    }
    // A virtual name stands for the first package in the set that provides it.
    let mut provided: BTreeMap<String, usize> = BTreeMap::new();
    for (i, p) in pkgs.iter().enumerate() {
        for alts in parse_deps(&p.provides).unwrap_or_default() {
            for d in alts {
                provided.entry(d.name).or_insert(i);
            }
        }
    }
    let deps: Vec<Vec<usize>> = pkgs
        .iter()
        .map(|p| {
            let mut fields = parse_deps(&p.pre_depends).unwrap_or_default();
            fields.extend(parse_deps(&p.depends).unwrap_or_default());
            // Of each clause, the first alternative the set holds.
            fields
                .iter()
                .filter_map(|alts| {
                    alts.iter().find_map(|d| {
                        by_name
                            .get(d.name.as_str())
                            .or_else(|| provided.get(&d.name))
                            .copied()
                    })
                })
                .collect()
        })
        .collect();
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Visiting,
        Done,
    }
    let mut marks = vec![Mark::New; pkgs.len()];
    let mut out = Vec::with_capacity(pkgs.len());
    // Depth first without recursion: (package, next dependency to look at).
    for root in 0..pkgs.len() {
        if marks[root] != Mark::New {
            continue;
        }
        let mut stack = vec![(root, 0usize)];
        marks[root] = Mark::Visiting;
        while let Some((at, next)) = stack.pop() {
            match deps[at].get(next) {
                Some(&d) => {
                    stack.push((at, next + 1));
                    // A dependency already on the path closes a loop and is not waited for:
                    // the package that closed the loop is configured before it.
                    if marks[d] == Mark::New {
                        marks[d] = Mark::Visiting;
                        stack.push((d, 0));
                    }
                }
                None => {
                    marks[at] = Mark::Done;
                    out.push(at);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, depends: &str, pre: &str, provides: &str) -> PackageInfo {
        PackageInfo {
            name: name.into(),
            depends: depends.into(),
            pre_depends: pre.into(),
            provides: provides.into(),
            ..PackageInfo::default()
        }
    }

    #[test]
    fn dependencies_come_first_loops_and_ties_keep_the_given_order() {
        let set = [
            pkg(
                "dovecot-core",
                "libc6 (>= 2.36), ssl-cert, mail-agent | exim4",
                "",
                "",
            ),
            pkg("libc6", "", "", ""),
            pkg(
                "postfix",
                "ssl-cert",
                "debconf",
                "mail-transport-agent, mail-agent",
            ),
            pkg("a-loop", "b-loop", "", ""),
            pkg("b-loop", "a-loop", "", ""),
            pkg("ssl-cert", "openssl", "debconf (>= 0.5) | debconf-2.0", ""),
            pkg("debconf", "", "", "debconf-2.0"),
            pkg("openssl", "libc6", "", ""),
        ];
        let refs: Vec<&PackageInfo> = set.iter().collect();
        let names: Vec<&str> = configure_order(&refs)
            .into_iter()
            .map(|i| set[i].name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "libc6",
                "debconf",
                "openssl",
                "ssl-cert",
                "postfix",
                "dovecot-core",
                "b-loop",
                "a-loop"
            ]
        );
    }
}
