//! What apt's rules say about one candidate against the set chosen so far: whether a chosen
//! package already satisfies a dependency, whether the candidate conflicts with or breaks a
//! chosen package (or is conflicted by one), and how providers rank.

use std::collections::BTreeMap;

use super::ResolveError;
use crate::packages::index::{parse_deps, Dep, Index, PackageInfo};

/// One `Conflicts`/`Breaks` clause of a chosen package.
pub(super) struct Against {
    /// Declaring package's name and version.
    pub(super) owner: (String, String),
    pub(super) field: &'static str,
    pub(super) dep: Dep,
}

/// Why a candidate may not join the chosen set.
pub(super) struct Clash {
    /// The chosen package it clashes with (name and version).
    pub(super) other: String,
    /// The package that declares the clause (name and version).
    pub(super) declarer: String,
    /// `Conflicts` or `Breaks`.
    pub(super) field: &'static str,
    /// The clause.
    pub(super) clause: String,
}

/// Why `pkg` may not join `chosen`.
pub(super) fn clash(
    index: &Index,
    chosen: &BTreeMap<String, PackageInfo>,
    against: &[Against],
    pkg: &PackageInfo,
) -> Result<Option<Clash>, ResolveError> {
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
                    return Ok(Some(Clash {
                        other: who(c),
                        declarer: who(pkg),
                        field,
                        clause: d.to_string(),
                    }));
                }
            }
            for (n, pv) in index.provides.get(&d.name).into_iter().flatten() {
                if *n != pkg.name && holds(&d, pv.as_deref()) {
                    if let Some(c) = chosen.get(n) {
                        return Ok(Some(Clash {
                            other: who(c),
                            declarer: who(pkg),
                            field,
                            clause: d.to_string(),
                        }));
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
            return Ok(Some(Clash {
                other: owner.clone(),
                declarer: owner,
                field: a.field,
                clause: a.dep.to_string(),
            }));
        }
    }
    Ok(None)
}

pub(super) fn who(p: &PackageInfo) -> String {
    format!("{} {}", p.name, p.version)
}

/// apt's order of `Priority`: a lower rank is preferred among providers.
pub(super) fn priority_rank(priority: &str) -> u8 {
    match priority {
        "required" => 0,
        "important" => 1,
        "standard" => 2,
        "optional" => 3,
        "extra" => 4,
        _ => 5,
    }
}

pub(super) fn satisfied(index: &Index, chosen: &BTreeMap<String, PackageInfo>, d: &Dep) -> bool {
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
