//! Dependency resolution: from a profile's package list to the set of packages to install.
//!
//! Greedy and deterministic, choosing as apt does: every package asked for is chosen first
//! (the essential set, then the profile's list in order), then each one's dependencies are
//! settled depth first, as apt's `MarkInstall` recurses, so what a clause finds already
//! chosen is what apt would have marked by then. A dependency already satisfied by a chosen package (by name and version, or through `Provides`) adds
//! nothing; otherwise the first alternative as written that a real package satisfies wins, and
//! for a virtual package a provider already chosen, else the provider of highest `Priority`
//! (required, important, standard, optional, extra), ties broken by name. A candidate that
//! `Conflicts` with or `Breaks` a chosen package (or is conflicted by one), by name or through
//! `Provides`, is passed over for the next alternative; when none is left the error names both
//! packages and the clause. `Recommends` are soft: one nothing can satisfy is skipped and noted.
//! Packages named `preinstalled` (Ingot's generated entries, already in the index) are chosen
//! before anything, as installed packages are for apt, and give way, with a note, to a package
//! that conflicts with them, as apt removes an installed one; a `left_out` rule skips, with a
//! note, the hard dependencies it names of the packages it names.

use std::collections::{BTreeMap, BTreeSet};

use super::index::{parse_deps, Dep, Index, PackageInfo};

mod rules;
use rules::{clash, priority_rank, satisfied, who, Against, Clash};

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
    /// A package asked for by name is only virtual, and more than one package provides it:
    /// apt refuses it too ("has no installation candidate") rather than pick one.
    #[error(
        "package `{name}` (needed by {needed_by}) is a virtual package provided by {}: name the one to install",
        providers.join(", ")
    )]
    Virtual {
        /// The virtual name.
        name: String,
        /// Who asked.
        needed_by: String,
        /// The packages whose candidate provides it, by name.
        providers: Vec<String>,
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

impl ResolveError {
    /// The name, as the profile's list writes it, of the request this failure is about when
    /// the profile itself asked for it (not a dependency, not the essential set): what a
    /// message can point at in the profile's file.
    pub fn profile_request(&self) -> Option<&str> {
        let (who, what) = match self {
            ResolveError::Unknown {
                name, needed_by, ..
            }
            | ResolveError::Virtual {
                name, needed_by, ..
            } => (needed_by, name),
            ResolveError::Unsatisfiable { needed_by, dep, .. }
            | ResolveError::Conflict { needed_by, dep, .. } => (needed_by, dep),
            ResolveError::Malformed { .. } => return None,
        };
        let name = what
            .split(|c: char| c.is_whitespace() || "=/(".contains(c))
            .next()
            .unwrap_or(what);
        (who == "the profile").then_some(name)
    }
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

/// [`resolve`], also returning the `Recommends` it skipped.
pub fn resolve_noting(index: &Index, req: &Request) -> Result<Resolution, ResolveError> {
    let mut r = Resolver {
        index,
        req,
        excluded: req.exclude.iter().map(String::as_str).collect(),
        chosen: BTreeMap::new(),
        against: Vec::new(),
        skipped: Vec::new(),
    };
    for name in &req.preinstalled {
        let p = index
            .best(name)
            .cloned()
            .ok_or_else(|| unknown(index, name, "the image builder"))?;
        r.chosen.insert(p.name.clone(), p);
    }
    // What is asked for, the essential set first (as mmdebstrap installs it before the rest).
    let mut asked: Vec<(String, Dep)> = Vec::new();
    if req.essential {
        for (name, list) in &index.packages {
            let p = &list[0];
            if p.essential || p.priority == "required" {
                asked.push((
                    "essential set".into(),
                    Dep {
                        name: name.clone(),
                        constraint: None,
                    },
                ));
            }
        }
    }
    for spec in &req.include {
        asked.push(("the profile".into(), requested(index, spec, &r.excluded)?));
    }
    // apt marks every package asked for before it installs the dependencies of any, then
    // settles each one's dependencies in turn.
    let mut marked = Vec::new();
    for (needed_by, dep) in asked {
        if let Some(name) = r.choose(&needed_by, &[dep], false)? {
            marked.push(name);
        }
    }
    for name in marked {
        r.install_dependencies(&name)?;
    }
    Ok(Resolution {
        packages: r.chosen.into_values().collect(),
        skipped: r.skipped,
    })
}

/// A profile's request as a dependency: `name`, `name=version`, or apt's `name/suite` (that
/// suite's version, how backports are asked for). A name only packages provide stands for its
/// provider when there is one (apt: "Note, selecting"); with several, apt picks none and
/// neither does this: which one an image gets is the profile's choice to write down.
fn requested(index: &Index, spec: &str, excluded: &BTreeSet<&str>) -> Result<Dep, ResolveError> {
    let (name, constraint) = match (spec.split_once('='), spec.split_once('/')) {
        (Some((n, v)), _) => (
            n,
            Some((crate::base::debversion::Relation::Eq, v.to_string())),
        ),
        (None, Some((n, suite))) => {
            let v = index
                .packages
                .get(n)
                .and_then(|l| l.iter().find(|p| p.suite == suite))
                .ok_or_else(|| ResolveError::Unsatisfiable {
                    needed_by: "the profile".into(),
                    dep: spec.to_string(),
                    detail: format!("; suite {suite} has no {n} (is it in extra_suites?)"),
                })?;
            (
                n,
                Some((crate::base::debversion::Relation::Eq, v.version.clone())),
            )
        }
        (None, None) => (spec, None),
    };
    if !index.packages.contains_key(name) {
        let providers: BTreeSet<&str> = index
            .provides
            .get(name)
            .into_iter()
            .flatten()
            .map(|(n, _)| n.as_str())
            .filter(|n| !excluded.contains(n))
            .collect();
        match providers.len() {
            0 if !index.provides.contains_key(name) => {
                return Err(unknown(index, name, "the profile"))
            }
            0 | 1 => {}
            _ => {
                return Err(ResolveError::Virtual {
                    name: name.to_string(),
                    needed_by: "the profile".into(),
                    providers: providers.into_iter().map(str::to_string).collect(),
                })
            }
        }
    }
    Ok(Dep {
        name: name.to_string(),
        constraint,
    })
}

/// The resolution under way.
struct Resolver<'a> {
    index: &'a Index,
    req: &'a Request,
    excluded: BTreeSet<&'a str>,
    chosen: BTreeMap<String, PackageInfo>,
    against: Vec<Against>,
    skipped: Vec<String>,
}

impl Resolver<'_> {
    /// Settle the dependencies of the chosen package `root` depth first, as apt's
    /// `MarkInstall` does: each clause in the order `Pre-Depends`, `Depends`, `Recommends`,
    /// and a package chosen for a clause has its own dependencies settled before the next
    /// clause is looked at. The order decides what a later clause finds already satisfied
    /// (sysstat's `Recommends: systemd | cron` is met by the cron that logrotate, pulled in
    /// earlier, brought).
    fn install_dependencies(&mut self, root: &str) -> Result<(), ResolveError> {
        let first = self.clauses(&self.chosen[root])?;
        let mut stack = vec![(who(&self.chosen[root]), first.into_iter())];
        while let Some((me, clauses)) = stack.last_mut() {
            let Some((alts, soft)) = clauses.next() else {
                stack.pop();
                continue;
            };
            let me = me.clone();
            if let Some(name) = self.choose(&me, &alts, soft)? {
                let p = &self.chosen[&name];
                let next = self.clauses(p)?;
                stack.push((who(p), next.into_iter()));
            }
        }
        Ok(())
    }

    /// The clauses of `pkg` to satisfy, with whether each is soft (a `Recommends`).
    fn clauses(&self, pkg: &PackageInfo) -> Result<Vec<(Vec<Dep>, bool)>, ResolveError> {
        let mut fields = vec![
            (pkg.pre_depends.as_str(), false),
            (pkg.depends.as_str(), false),
        ];
        if self.req.recommends {
            fields.push((pkg.recommends.as_str(), true));
        }
        let mut out = Vec::new();
        for (field, soft) in fields {
            let clauses = parse_deps(field).map_err(|message| ResolveError::Malformed {
                package: pkg.name.clone(),
                message,
            })?;
            out.extend(clauses.into_iter().map(|c| (c, soft)));
        }
        Ok(out)
    }

    /// Satisfy one clause: nothing when a chosen package already does, else the first
    /// candidate that clashes with nothing chosen, which joins the set (its dependencies
    /// not yet looked at). Returns the name of the package that joined.
    fn choose(
        &mut self,
        needed_by: &str,
        alts: &[Dep],
        soft: bool,
    ) -> Result<Option<String>, ResolveError> {
        let index = self.index;
        if alts.iter().any(|d| satisfied(index, &self.chosen, d)) {
            return Ok(None);
        }
        let dep = alts
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" | ");
        if !soft {
            let rule = self.req.left_out.iter().find(|r| {
                needed_by.starts_with(&r.owner_prefix)
                    && alts.iter().all(|d| r.deps.contains(&d.name))
            });
            if let Some(r) = rule {
                self.skipped.push(format!(
                    "{needed_by} depends on `{dep}`: left out, {}",
                    r.why
                ));
                return Ok(None);
            }
        }
        // The first candidate passed over for a conflict, for the error.
        let mut first_clash = None;
        let mut pick = None;
        let usable: Vec<&Dep> = alts
            .iter()
            .filter(|d| !self.excluded.contains(d.name.as_str()))
            .collect();
        for d in usable {
            for c in self.candidates(d) {
                match self.clash_displacing(needed_by, &c)? {
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
            return self.unsatisfied(needed_by, alts, dep, soft, first_clash);
        };
        if let Some(prev) = self.chosen.get(&pkg.name) {
            // Chosen before at another version: the request conflicts with it.
            if soft {
                return Ok(None);
            }
            return Err(ResolveError::Unsatisfiable {
                needed_by: needed_by.to_string(),
                dep,
                detail: format!("; {} {} was already chosen", prev.name, prev.version),
            });
        }
        for (field, text) in [("Conflicts", &pkg.conflicts), ("Breaks", &pkg.breaks)] {
            let clauses = parse_deps(text).map_err(|message| ResolveError::Malformed {
                package: pkg.name.clone(),
                message,
            })?;
            self.against
                .extend(clauses.into_iter().flatten().map(|dep| Against {
                    owner: (pkg.name.clone(), pkg.version.clone()),
                    field,
                    dep,
                }));
        }
        let name = pkg.name.clone();
        self.chosen.insert(name.clone(), pkg);
        Ok(Some(name))
    }

    /// The candidates for one alternative, in apt's order: the real package (unless a name
    /// chosen at a version that does not fit), then providers, one already chosen first, then
    /// by `Priority`, then by name.
    fn candidates(&self, d: &Dep) -> Vec<PackageInfo> {
        let index = self.index;
        let mut candidates: Vec<PackageInfo> = Vec::new();
        if !self.chosen.contains_key(&d.name) {
            candidates.extend(index.best_matching(d).cloned());
        }
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
            .filter(|(n, _)| !self.excluded.contains(n.as_str()))
            .filter_map(|(n, _)| {
                let p = index.best(n)?;
                Some((
                    !self.chosen.contains_key(n),
                    priority_rank(&p.priority),
                    n.as_str(),
                ))
            })
            .collect();
        provs.sort();
        provs.dedup();
        candidates.extend(provs.iter().filter_map(|(_, _, n)| index.best(n).cloned()));
        candidates
    }

    /// [`clash`], except that a package the image builder put in first (Ingot's generated
    /// entries) gives way, as apt removes an installed package that a new one conflicts with:
    /// initramfs-tools, which a profile may ask for (flash-kernel needs it), replaces
    /// `ingot-initramfs` as what provides `linux-initramfs-tool`. The note says so.
    fn clash_displacing(
        &mut self,
        needed_by: &str,
        c: &PackageInfo,
    ) -> Result<Option<Clash>, ResolveError> {
        loop {
            let Some(why) = clash(self.index, &self.chosen, &self.against, c)? else {
                return Ok(None);
            };
            let other = why.other.split(' ').next().unwrap_or_default().to_string();
            if other == c.name || !self.req.preinstalled.contains(&other) {
                return Ok(Some(why));
            }
            let Some(gone) = self.chosen.remove(&other) else {
                return Ok(Some(why));
            };
            self.against.retain(|a| a.owner.0 != other);
            self.skipped.push(format!(
                "{} left out: {} (for {needed_by}) cannot be installed with it ({} {}: {}), and \
                 replaces it",
                who(&gone),
                who(c),
                why.declarer,
                why.field,
                why.clause
            ));
        }
    }

    /// The outcome of a clause nothing can satisfy: a note for a `Recommends`, else the error.
    fn unsatisfied(
        &mut self,
        needed_by: &str,
        alts: &[Dep],
        dep: String,
        soft: bool,
        first_clash: Option<(String, Clash)>,
    ) -> Result<Option<String>, ResolveError> {
        let index = self.index;
        let needed_by = needed_by.to_string();
        if soft {
            self.skipped.push(format!(
                "{needed_by} recommends `{dep}`: skipped, nothing satisfies it{}",
                match &first_clash {
                    Some((p, c)) => format!(" ({p} cannot be installed with {})", c.other),
                    None => String::new(),
                }
            ));
            return Ok(None);
        }
        if let Some((package, c)) = first_clash {
            return Err(ResolveError::Conflict {
                needed_by,
                dep,
                package,
                other: c.other,
                clause: format!("{} {}: {}", c.declarer, c.field, c.clause),
            });
        }
        if let Some(prev) = alts.iter().find_map(|d| self.chosen.get(&d.name)) {
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
                Some(p) if self.excluded.contains(d.name.as_str()) => {
                    format!("; {} {} is excluded by the profile", p.name, p.version)
                }
                Some(p) => format!("; the index has {} {}", p.name, p.version),
                None => format!("; nothing provides {}", d.name),
            })
            .collect::<String>();
        Err(ResolveError::Unsatisfiable {
            needed_by,
            dep,
            detail,
        })
    }
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
