//! Dependency resolution: from a profile's package list to the set of packages to install.
//!
//! Greedy and deterministic: requests are taken in order; a dependency already satisfied by a
//! chosen package (by name and version, or through `Provides`) adds nothing; otherwise the first
//! alternative with a matching real package wins, then the first provider by name.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::index::{parse_deps, Dep, Index, PackageInfo};

/// Why resolution failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResolveError {
    /// A requested package is not in any suite.
    #[error("package `{name}` (needed by {needed_by}) does not exist in the index{hint}")]
    Unknown {
        /// Missing name.
        name: String,
        /// Who asked.
        needed_by: String,
        /// "; did you mean …" or empty.
        hint: String,
    },
    /// No alternative of a dependency can be satisfied.
    #[error("{needed_by} needs `{dep}`, which nothing in the index satisfies{detail}")]
    Unsatisfiable {
        /// Who asked.
        needed_by: String,
        /// The dependency clause.
        dep: String,
        /// What the index has instead.
        detail: String,
    },
    /// A dependency field could not be parsed.
    #[error("{package}: malformed dependency field: {message}")]
    Malformed {
        /// Package whose field is bad.
        package: String,
        /// Parser message.
        message: String,
    },
}

/// What to resolve.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Packages asked for by name (`name` or `name=version`).
    pub include: Vec<String>,
    /// Add every `Essential: yes` and `Priority: required` package.
    pub essential: bool,
    /// Follow `Recommends`.
    pub recommends: bool,
    /// Never choose these.
    pub exclude: Vec<String>,
}

/// Resolve a request against an index. Returns packages sorted by name.
pub fn resolve(index: &Index, req: &Request) -> Result<Vec<PackageInfo>, ResolveError> {
    let excluded: BTreeSet<&str> = req.exclude.iter().map(String::as_str).collect();
    let mut chosen: BTreeMap<String, PackageInfo> = BTreeMap::new();
    let mut queue: VecDeque<(String, Vec<Dep>)> = VecDeque::new();
    for spec in &req.include {
        let (name, constraint) = match (spec.split_once('='), spec.split_once('/')) {
            (Some((n, v)), _) => (
                n,
                Some((crate::base::debversion::Relation::Eq, v.to_string())),
            ),
            // apt's `name/suite`: that suite's version (how backports are asked for).
            (None, Some((n, suite))) => {
                let v = index
                    .packages
                    .get(n)
                    .and_then(|l| l.iter().find(|p| p.suite == suite))
                    .ok_or_else(|| ResolveError::Unsatisfiable {
                        needed_by: "the profile".into(),
                        dep: spec.clone(),
                        detail: format!("; suite {suite} has no {n} (is it in extra_suites?)"),
                    })?;
                (
                    n,
                    Some((crate::base::debversion::Relation::Eq, v.version.clone())),
                )
            }
            (None, None) => (spec.as_str(), None),
        };
        if !index.packages.contains_key(name) && !index.provides.contains_key(name) {
            return Err(unknown(index, name, "the profile"));
        }
        queue.push_back((
            "the profile".into(),
            vec![Dep {
                name: name.to_string(),
                constraint,
            }],
        ));
    }
    if req.essential {
        for (name, list) in &index.packages {
            let p = &list[0];
            if p.essential || p.priority == "required" {
                queue.push_back((
                    "essential set".into(),
                    vec![Dep {
                        name: name.clone(),
                        constraint: None,
                    }],
                ));
            }
        }
    }
    while let Some((needed_by, alts)) = queue.pop_front() {
        if alts.iter().any(|d| satisfied(index, &chosen, d)) {
            continue;
        }
        let pick = alts
            .iter()
            .filter(|d| !excluded.contains(d.name.as_str()))
            .find_map(|d| {
                // A name chosen at a version that does not fit cannot be chosen again: try the
                // next alternative.
                let real = match chosen.contains_key(&d.name) {
                    true => None,
                    false => index.best_matching(d).cloned(),
                };
                real.or_else(|| {
                    // A virtual package: first provider (by name) whose provided version fits.
                    index.provides.get(&d.name).and_then(|provs| {
                        let mut provs: Vec<_> = provs
                            .iter()
                            .filter(|(_, pv)| match (&d.constraint, pv) {
                                (None, _) => true,
                                (Some((r, v)), Some(pv)) => r.holds(pv, v),
                                (Some(_), None) => false,
                            })
                            .filter(|(n, _)| !excluded.contains(n.as_str()))
                            .map(|(n, _)| n.clone())
                            .collect();
                        provs.sort();
                        // Prefer a provider already chosen.
                        provs
                            .iter()
                            .find(|n| chosen.contains_key(*n))
                            .or(provs.first())
                            .and_then(|n| index.best(n).cloned())
                    })
                })
            });
        let Some(pkg) = pick else {
            if let Some(prev) = alts.iter().find_map(|d| chosen.get(&d.name)) {
                return Err(ResolveError::Unsatisfiable {
                    needed_by,
                    dep: alts
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(" | "),
                    detail: format!("; {} {} was already chosen", prev.name, prev.version),
                });
            }
            let dep = alts
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" | ");
            if alts.len() == 1
                && !index.packages.contains_key(&alts[0].name)
                && !index.provides.contains_key(&alts[0].name)
            {
                return Err(unknown(index, &alts[0].name, &needed_by));
            }
            let detail = alts
                .iter()
                .map(|d| match index.best(&d.name) {
                    Some(p) if excluded.contains(d.name.as_str()) => {
                        format!("; {} {} is excluded by the profile", p.name, p.version)
                    }
                    Some(p) => format!("; the index has {} {}", p.name, p.version),
                    None => format!("; nothing provides {}", d.name),
                })
                .collect::<String>();
            return Err(ResolveError::Unsatisfiable {
                needed_by,
                dep,
                detail,
            });
        };
        if let Some(prev) = chosen.get(&pkg.name) {
            // Chosen before at another version: the request conflicts with it.
            let dep = alts
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" | ");
            return Err(ResolveError::Unsatisfiable {
                needed_by,
                dep,
                detail: format!("; {} {} was already chosen", prev.name, prev.version),
            });
        }
        let who = format!("{} {}", pkg.name, pkg.version);
        let mut fields = vec![pkg.pre_depends.as_str(), pkg.depends.as_str()];
        if req.recommends {
            fields.push(pkg.recommends.as_str());
        }
        for field in fields {
            let clauses = parse_deps(field).map_err(|message| ResolveError::Malformed {
                package: pkg.name.clone(),
                message,
            })?;
            for c in clauses {
                queue.push_back((who.clone(), c));
            }
        }
        chosen.insert(pkg.name.clone(), pkg);
    }
    Ok(chosen.into_values().collect())
}

fn satisfied(index: &Index, chosen: &BTreeMap<String, PackageInfo>, d: &Dep) -> bool {
    if let Some(p) = chosen.get(&d.name) {
        if match &d.constraint {
            Some((r, v)) => r.holds(&p.version, v),
            None => true,
        } {
            return true;
        }
    }
    index.provides.get(&d.name).is_some_and(|provs| {
        provs.iter().any(|(n, pv)| {
            chosen.contains_key(n)
                && match (&d.constraint, pv) {
                    (None, _) => true,
                    (Some((r, v)), Some(pv)) => r.holds(pv, v),
                    (Some(_), None) => false,
                }
        })
    })
}

fn unknown(index: &Index, name: &str, needed_by: &str) -> ResolveError {
    let mut close: Vec<(f64, &str)> = index
        .packages
        .keys()
        .map(|k| (strsim::jaro_winkler(name, k), k.as_str()))
        .filter(|(s, _)| *s > 0.85)
        .collect();
    close.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    let hint = if close.is_empty() {
        String::new()
    } else {
        format!(
            "; did you mean {}?",
            close
                .iter()
                .take(3)
                .map(|(_, n)| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    ResolveError::Unknown {
        name: name.to_string(),
        needed_by: needed_by.to_string(),
        hint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(text: &str) -> Index {
        let mut i = Index::default();
        i.add(text, "test", "amd64").unwrap();
        i.finish();
        i
    }

    fn pkg(name: &str, version: &str, extra: &str) -> String {
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: amd64\nFilename: pool/{name}.deb\nSize: 1\nSHA256: {}\n{extra}\n",
            "0".repeat(64)
        )
    }

    fn names(v: &[PackageInfo]) -> Vec<String> {
        v.iter()
            .map(|p| format!("{}={}", p.name, p.version))
            .collect()
    }

    #[test]
    fn alternatives_provides_versions() {
        let i = idx(&[
            pkg(
                "app",
                "1.0",
                "Depends: libc (>= 2.0), awk, mail-transport-agent | exim",
            ),
            pkg("libc", "2.1", ""),
            pkg("libc", "1.9", ""),
            pkg("mawk", "1.3", "Provides: awk\nPriority: required"),
            pkg("gawk", "5", "Provides: awk"),
            pkg("exim", "4", ""),
            pkg("unused", "1", ""),
        ]
        .join("\n"));
        let r = resolve(
            &i,
            &Request {
                include: vec!["app".into()],
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(names(&r), ["app=1.0", "exim=4", "gawk=5", "libc=2.1"]);
        // With the essential set, mawk is chosen first and satisfies awk.
        let r = resolve(
            &i,
            &Request {
                include: vec!["app".into()],
                essential: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(names(&r).contains(&"mawk=1.3".to_string()));
        assert!(!names(&r).contains(&"gawk=5".to_string()));
    }

    #[test]
    fn version_too_old_is_explained() {
        let i = idx(&[
            pkg("app", "1", "Depends: libc (>= 3)"),
            pkg("libc", "2.1", ""),
        ]
        .join("\n"));
        let e = resolve(
            &i,
            &Request {
                include: vec!["app".into()],
                ..Default::default()
            },
        )
        .unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("app 1 needs `libc (>= 3)`") && s.contains("the index has libc 2.1"),
            "{s}"
        );
    }

    #[test]
    fn unknown_names_get_suggestions() {
        let i = idx(&[
            pkg("openssh-server", "1", ""),
            pkg("openssh-client", "1", ""),
        ]
        .join("\n"));
        let e = resolve(
            &i,
            &Request {
                include: vec!["openssh-sever".into()],
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("did you mean `openssh-server`"),
            "{e}"
        );
    }

    #[test]
    fn pinned_version() {
        let i = idx(&[pkg("libc", "2.1", ""), pkg("libc", "1.9", "")].join("\n"));
        let r = resolve(
            &i,
            &Request {
                include: vec!["libc=1.9".into()],
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(names(&r), ["libc=1.9"]);
    }

    #[test]
    fn a_not_automatic_suite_is_used_only_when_asked_for_as_apt_does() {
        let mut i = Index::default();
        i.add(
            &[pkg("kernel", "6.1", ""), pkg("logsave", "1.47.0", "")].join("\n"),
            "bookworm",
            "amd64",
        )
        .unwrap();
        i.add(
            &[
                pkg("kernel", "6.12", ""),
                pkg("logsave", "1.47.2", ""),
                pkg("only-bpo", "2.0", ""),
            ]
            .join("\n"),
            "bookworm-backports",
            "amd64",
        )
        .unwrap();
        i.not_automatic.insert("bookworm-backports".into());
        i.finish();
        let r = |inc: &[&str]| {
            names(
                &resolve(
                    &i,
                    &Request {
                        include: inc.iter().map(|s| s.to_string()).collect(),
                        ..Default::default()
                    },
                )
                .unwrap(),
            )
        };
        assert_eq!(r(&["kernel", "logsave"]), ["kernel=6.1", "logsave=1.47.0"]);
        assert_eq!(
            r(&["kernel", "logsave/bookworm-backports"]),
            ["kernel=6.1", "logsave=1.47.2"]
        );
        // A package only the backports suite has is its candidate.
        assert_eq!(r(&["only-bpo"]), ["only-bpo=2.0"]);
        let e = resolve(
            &i,
            &Request {
                include: vec!["kernel/sid".into()],
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("suite sid has no kernel"), "{e}");
    }
}
