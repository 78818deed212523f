//! Dependency resolution: from a profile's package list to the set of packages to install.
//!
//! Greedy and deterministic, choosing as apt does: requests are taken in order; a dependency
//! already satisfied by a chosen package (by name and version, or through `Provides`) adds
//! nothing; otherwise the first alternative as written that a real package satisfies wins, and
//! for a virtual package a provider already chosen, else the provider of highest `Priority`
//! (required, important, standard, optional, extra), ties broken by name. A candidate that
//! `Conflicts` with or `Breaks` a chosen package (or is conflicted by one), by name or through
//! `Provides`, is passed over for the next alternative; when none is left the error names both
//! packages and the clause. `Recommends` are soft: one nothing can satisfy is skipped and noted.
//! Packages named `preinstalled` (Ingot's generated entries, already in the index) are chosen
//! before anything, as installed packages are for apt; a `left_out` rule skips, with a note,
//! the hard dependencies it names of the packages it names.

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
    /// Every way to satisfy a dependency would install two packages that may not be
    /// installed together.
    #[error("{needed_by} needs `{dep}`, but {package} cannot be installed with {other}: {clause}")]
    Conflict {
        /// Who asked.
        needed_by: String,
        /// The dependency clause.
        dep: String,
        /// The candidate passed over (name and version).
        package: String,
        /// The chosen package it clashes with (name and version).
        other: String,
        /// The clause, with the package that declares it: `chrony 4.3 Conflicts: time-daemon`.
        clause: String,
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
    /// Chosen first, as if installed (they must be in the index).
    pub preinstalled: Vec<String>,
    /// Hard dependencies deliberately not installed.
    pub left_out: Vec<LeftOut>,
}

/// Hard dependencies a build does not install, and why: a `Depends` clause of a package whose
/// name starts with `owner_prefix`, every alternative of which is in `deps`, is skipped and
/// noted in [`Resolution::skipped`].
#[derive(Debug, Clone, Default)]
pub struct LeftOut {
    /// Whose clauses (`linux-image-`).
    pub owner_prefix: String,
    /// Which dependencies.
    pub deps: Vec<String>,
    /// Why, for the note.
    pub why: String,
}

/// A resolved set and what was left out on the way.
#[derive(Debug, Clone, Default)]
pub struct Resolution {
    /// Packages sorted by name.
    pub packages: Vec<PackageInfo>,
    /// `Recommends` skipped because nothing could satisfy them, and dependencies left out by
    /// a [`LeftOut`] rule, one line each.
    pub skipped: Vec<String>,
}

/// Resolve a request against an index. Returns packages sorted by name.
pub fn resolve(index: &Index, req: &Request) -> Result<Vec<PackageInfo>, ResolveError> {
    resolve_noting(index, req).map(|r| r.packages)
}

/// One `Conflicts`/`Breaks` clause of a chosen package.
struct Against {
    /// Declaring package's name and version.
    owner: (String, String),
    field: &'static str,
    dep: Dep,
}

/// Why `pkg` may not join `chosen`: (other package, declarer, field, clause).
fn clash(
    index: &Index,
    chosen: &BTreeMap<String, PackageInfo>,
    against: &[Against],
    pkg: &PackageInfo,
) -> Result<Option<(String, String, &'static str, String)>, ResolveError> {
    let holds = |d: &Dep, version: Option<&str>| match (&d.constraint, version) {
        (None, _) => true,
        (Some((r, v)), Some(have)) => r.holds(have, v),
        (Some(_), None) => false,
    };
    let malformed = |message| ResolveError::Malformed {
        package: pkg.name.clone(),
        message,
    };
    // What the candidate declares against chosen packages.
    for (field, text) in [("Conflicts", &pkg.conflicts), ("Breaks", &pkg.breaks)] {
        for d in parse_deps(text).map_err(malformed)?.into_iter().flatten() {
            if let Some(c) = chosen.get(&d.name) {
                if c.name != pkg.name && holds(&d, Some(&c.version)) {
                    return Ok(Some((who(c), who(pkg), field, d.to_string())));
                }
            }
            for (n, pv) in index.provides.get(&d.name).into_iter().flatten() {
                if *n != pkg.name && holds(&d, pv.as_deref()) {
                    if let Some(c) = chosen.get(n) {
                        return Ok(Some((who(c), who(pkg), field, d.to_string())));
                    }
                }
            }
        }
    }
    // What chosen packages declare against the candidate, by its name or what it provides.
    let provided = parse_deps(&pkg.provides).map_err(malformed)?;
    for a in against.iter().filter(|a| a.owner.0 != pkg.name) {
        let by_name = a.dep.name == pkg.name && holds(&a.dep, Some(&pkg.version));
        let by_provides = provided.iter().flatten().any(|p| {
            p.name == a.dep.name && holds(&a.dep, p.constraint.as_ref().map(|(_, v)| v.as_str()))
        });
        if by_name || by_provides {
            let owner = format!("{} {}", a.owner.0, a.owner.1);
            return Ok(Some((owner.clone(), owner, a.field, a.dep.to_string())));
        }
    }
    Ok(None)
}

fn who(p: &PackageInfo) -> String {
    format!("{} {}", p.name, p.version)
}

/// apt's order of `Priority`: a lower rank is preferred among providers.
fn priority_rank(priority: &str) -> u8 {
    match priority {
        "required" => 0,
        "important" => 1,
        "standard" => 2,
        "optional" => 3,
        "extra" => 4,
        _ => 5,
    }
}

/// [`resolve`], also returning the `Recommends` it skipped.
pub fn resolve_noting(index: &Index, req: &Request) -> Result<Resolution, ResolveError> {
    let excluded: BTreeSet<&str> = req.exclude.iter().map(String::as_str).collect();
    let mut chosen: BTreeMap<String, PackageInfo> = BTreeMap::new();
    let mut against: Vec<Against> = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    // (who asked, alternatives, soft: a Recommends)
    let mut queue: VecDeque<(String, Vec<Dep>, bool)> = VecDeque::new();
    for name in &req.preinstalled {
        let p = index
            .best(name)
            .cloned()
            .ok_or_else(|| unknown(index, name, "the image builder"))?;
        chosen.insert(p.name.clone(), p);
    }
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
            false,
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
                    false,
                ));
            }
        }
    }
    while let Some((needed_by, alts, soft)) = queue.pop_front() {
        if alts.iter().any(|d| satisfied(index, &chosen, d)) {
            continue;
        }
        let dep = alts
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" | ");
        if !soft {
            let rule = req.left_out.iter().find(|r| {
                needed_by.starts_with(&r.owner_prefix)
                    && alts.iter().all(|d| r.deps.contains(&d.name))
            });
            if let Some(r) = rule {
                skipped.push(format!(
                    "{needed_by} depends on `{dep}`: left out, {}",
                    r.why
                ));
                continue;
            }
        }
        // The first candidate passed over for a conflict, for the error.
        let mut first_clash = None;
        let mut pick = None;
        for d in alts.iter().filter(|d| !excluded.contains(d.name.as_str())) {
            // A name chosen at a version that does not fit cannot be chosen again: try the
            // next alternative.
            let mut candidates: Vec<PackageInfo> = Vec::new();
            if !chosen.contains_key(&d.name) {
                candidates.extend(index.best_matching(d).cloned());
            }
            // A virtual package: a provider already chosen, else by priority, then by name.
            let mut provs: Vec<(bool, u8, &str)> = index
                .provides
                .get(&d.name)
                .into_iter()
                .flatten()
                .filter(|(_, pv)| match (&d.constraint, pv) {
                    (None, _) => true,
                    (Some((r, v)), Some(pv)) => r.holds(pv, v),
                    (Some(_), None) => false,
                })
                .filter(|(n, _)| !excluded.contains(n.as_str()))
                .filter_map(|(n, _)| {
                    let p = index.best(n)?;
                    Some((
                        !chosen.contains_key(n),
                        priority_rank(&p.priority),
                        n.as_str(),
                    ))
                })
                .collect();
            provs.sort();
            provs.dedup();
            candidates.extend(provs.iter().filter_map(|(_, _, n)| index.best(n).cloned()));
            for c in candidates {
                match clash(index, &chosen, &against, &c)? {
                    None => {
                        pick = Some(c);
                        break;
                    }
                    Some(why) => {
                        first_clash.get_or_insert((who(&c), why));
                    }
                }
            }
            if pick.is_some() {
                break;
            }
        }
        let Some(pkg) = pick else {
            if soft {
                skipped.push(format!(
                    "{needed_by} recommends `{dep}`: skipped, nothing satisfies it{}",
                    match &first_clash {
                        Some((p, (other, ..))) =>
                            format!(" ({p} cannot be installed with {other})"),
                        None => String::new(),
                    }
                ));
                continue;
            }
            if let Some((package, (other, declarer, field, clause))) = first_clash {
                return Err(ResolveError::Conflict {
                    needed_by,
                    dep,
                    package,
                    other,
                    clause: format!("{declarer} {field}: {clause}"),
                });
            }
            if let Some(prev) = alts.iter().find_map(|d| chosen.get(&d.name)) {
                return Err(ResolveError::Unsatisfiable {
                    needed_by,
                    dep,
                    detail: format!("; {} {} was already chosen", prev.name, prev.version),
                });
            }
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
            if soft {
                continue;
            }
            return Err(ResolveError::Unsatisfiable {
                needed_by,
                dep,
                detail: format!("; {} {} was already chosen", prev.name, prev.version),
            });
        }
        let me = who(&pkg);
        for (field, text) in [("Conflicts", &pkg.conflicts), ("Breaks", &pkg.breaks)] {
            let clauses = parse_deps(text).map_err(|message| ResolveError::Malformed {
                package: pkg.name.clone(),
                message,
            })?;
            against.extend(clauses.into_iter().flatten().map(|dep| Against {
                owner: (pkg.name.clone(), pkg.version.clone()),
                field,
                dep,
            }));
        }
        let mut fields = vec![
            (pkg.pre_depends.as_str(), false),
            (pkg.depends.as_str(), false),
        ];
        if req.recommends {
            fields.push((pkg.recommends.as_str(), true));
        }
        for (field, soft) in fields {
            let clauses = parse_deps(field).map_err(|message| ResolveError::Malformed {
                package: pkg.name.clone(),
                message,
            })?;
            for c in clauses {
                queue.push_back((me.clone(), c, soft));
            }
        }
        chosen.insert(pkg.name.clone(), pkg);
    }
    Ok(Resolution {
        packages: chosen.into_values().collect(),
        skipped,
    })
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
mod tests;
