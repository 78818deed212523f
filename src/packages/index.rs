//! The package index: `Packages` paragraphs of one or more suites, merged, with dependency
//! fields parsed and virtual packages (`Provides`) indexed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::control;
use crate::base::debversion::{self as version, Relation};

/// One binary package as the index describes it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PackageInfo {
    /// Package name.
    pub name: String,
    /// Debian version.
    pub version: String,
    /// Debian architecture (`amd64`, `all`).
    pub arch: String,
    /// Pool path relative to the mirror.
    pub filename: String,
    /// .deb size.
    pub size: u64,
    /// .deb SHA-256.
    pub sha256: String,
    /// Suite it came from.
    pub suite: String,
    /// Raw `Depends`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub depends: String,
    /// Raw `Pre-Depends`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pre_depends: String,
    /// Raw `Recommends`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub recommends: String,
    /// Raw `Provides`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub provides: String,
    /// Raw `Conflicts`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub conflicts: String,
    /// Raw `Breaks` (for an image that is unpacked whole, the same as `Conflicts`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub breaks: String,
    /// `Essential: yes`.
    #[serde(default)]
    pub essential: bool,
    /// `Priority`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub priority: String,
    /// `Maintainer` (the SBOM supplier).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub maintainer: String,
    /// `Source` package name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// The source's version when it differs from the package's (`Source: name (version)`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_version: String,
}

/// One alternative of a dependency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dep {
    /// Package name without arch qualifier.
    pub name: String,
    /// Version constraint.
    pub constraint: Option<(Relation, String)>,
}

impl std::fmt::Display for Dep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.constraint {
            Some((r, v)) => write!(f, "{} ({} {})", self.name, r.as_str(), v),
            None => f.write_str(&self.name),
        }
    }
}

/// Parse a dependency field into a conjunction of alternatives. Architecture qualifiers
/// (`:any`, `:native`, `:amd64`) are dropped: an image holds one architecture.
pub fn parse_deps(field: &str) -> Result<Vec<Vec<Dep>>, String> {
    let mut out = Vec::new();
    for clause in field.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let mut alts = Vec::new();
        for alt in clause.split('|').map(str::trim) {
            // Drop architecture restrictions `[...]` and build profiles `<...>`, which follow
            // any version constraint in parentheses.
            let after = alt.find(')').map_or(0, |i| i + 1);
            let cut = alt[after..]
                .find(['[', '<'])
                .map_or(alt.len(), |i| after + i);
            let alt = alt[..cut].trim();
            let (name_part, constraint) = match alt.split_once('(') {
                Some((n, rest)) => {
                    let inner = rest.trim_end().trim_end_matches(')').trim();
                    let op_len = inner
                        .find(|c: char| !matches!(c, '<' | '>' | '='))
                        .unwrap_or(inner.len());
                    let rel = Relation::parse(&inner[..op_len])
                        .ok_or_else(|| format!("bad relation in `{alt}`"))?;
                    (n.trim(), Some((rel, inner[op_len..].trim().to_string())))
                }
                None => (alt.trim(), None),
            };
            let name = name_part.split(':').next().unwrap_or(name_part).to_string();
            if name.is_empty() {
                return Err(format!("empty package name in `{clause}`"));
            }
            alts.push(Dep { name, constraint });
        }
        out.push(alts);
    }
    Ok(out)
}

impl PackageInfo {
    fn from_paragraph(p: &control::Paragraph, suite: &str) -> Option<Self> {
        let get = |k: &str| p.get(k).unwrap_or("").to_string();
        Some(PackageInfo {
            name: p.get("Package")?.to_string(),
            version: p.get("Version")?.to_string(),
            arch: p.get("Architecture")?.to_string(),
            filename: p.get("Filename")?.to_string(),
            size: p.get("Size")?.parse().ok()?,
            sha256: p.get("SHA256")?.to_lowercase(),
            suite: suite.to_string(),
            depends: get("Depends"),
            pre_depends: get("Pre-Depends"),
            recommends: get("Recommends"),
            provides: get("Provides"),
            conflicts: get("Conflicts"),
            breaks: get("Breaks"),
            essential: p.get("Essential") == Some("yes"),
            priority: get("Priority"),
            maintainer: get("Maintainer"),
            source: get("Source")
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_string(),
            source_version: get("Source")
                .split_once('(')
                .map(|(_, v)| v.trim().trim_end_matches(')').trim().to_string())
                .unwrap_or_default(),
        })
    }

    /// One `Packages` paragraph as read from `suite`; `None` when a required field is missing
    /// or the text is not a paragraph.
    pub fn from_stanza(text: &str, suite: &str) -> Option<Self> {
        let paras = control::parse(text).ok()?;
        Self::from_paragraph(paras.first()?, suite)
    }
}

/// Merged index of every suite for one architecture.
#[derive(Debug, Default)]
pub struct Index {
    /// name → candidates, best version first.
    pub packages: BTreeMap<String, Vec<PackageInfo>>,
    /// virtual name → (provider name, provided version).
    pub provides: BTreeMap<String, Vec<(String, Option<String>)>>,
    /// Suites whose Release says `NotAutomatic: yes`: apt's pin priority 100 against the
    /// default 500, so their versions are candidates only where no other suite has the package.
    pub not_automatic: std::collections::BTreeSet<String>,
}

impl Index {
    /// Add a `Packages` file's text for `suite`, keeping packages of `arch` and `all`.
    pub fn add(&mut self, text: &str, suite: &str, arch: &str) -> Result<(), String> {
        for para in control::parse(text)? {
            let Some(info) = PackageInfo::from_paragraph(&para, suite) else {
                continue;
            };
            if info.arch != arch && info.arch != "all" {
                continue;
            }
            self.packages
                .entry(info.name.clone())
                .or_default()
                .push(info);
        }
        Ok(())
    }

    /// Sort candidates and build the provides table. Call after the last `add`.
    pub fn finish(&mut self) {
        self.provides.clear();
        let low = &self.not_automatic;
        for list in self.packages.values_mut() {
            // apt's candidate order: pin priority first, then version.
            list.sort_by(|a, b| {
                low.contains(&a.suite)
                    .cmp(&low.contains(&b.suite))
                    .then_with(|| version::compare(&b.version, &a.version))
            });
            list.dedup_by(|a, b| a.version == b.version);
        }
        for list in self.packages.values() {
            // Only the best candidate's Provides count: it is the one the resolver installs.
            record_provides(&mut self.provides, &list[0]);
        }
    }

    /// Add a package Ingot makes itself to a finished index (its only candidate, its Provides
    /// recorded), without sorting the whole index again.
    pub fn add_finished(&mut self, info: PackageInfo) {
        record_provides(&mut self.provides, &info);
        self.packages.insert(info.name.clone(), vec![info]);
    }

    /// Best candidate of a real package.
    pub fn best(&self, name: &str) -> Option<&PackageInfo> {
        self.packages.get(name).and_then(|l| l.first())
    }

    /// Best candidate satisfying a constraint.
    pub fn best_matching(&self, dep: &Dep) -> Option<&PackageInfo> {
        self.packages
            .get(&dep.name)?
            .iter()
            .find(|p| match &dep.constraint {
                Some((r, v)) => r.holds(&p.version, v),
                None => true,
            })
    }
}

/// Record what `p` provides (virtual name → its name and the provided version).
fn record_provides(
    provides: &mut BTreeMap<String, Vec<(String, Option<String>)>>,
    p: &PackageInfo,
) {
    for clause in parse_deps(&p.provides).unwrap_or_default() {
        for d in clause {
            let v = d.constraint.map(|(_, v)| v);
            provides
                .entry(d.name)
                .or_default()
                .push((p.name.clone(), v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependency_syntax() {
        let d = parse_deps("libc6 (>= 2.34), awk | mawk:any, python3:any (<< 3.12) [amd64], foo <!nocheck>, libc6 (<< 2.37)").unwrap();
        assert_eq!(d.len(), 5);
        assert_eq!(d[4][0].to_string(), "libc6 (<< 2.37)");
        assert_eq!(d[0][0].to_string(), "libc6 (>= 2.34)");
        assert_eq!(d[1][1].name, "mawk");
        assert_eq!(d[2][0].to_string(), "python3 (<< 3.12)");
        assert_eq!(d[3][0].name, "foo");
        assert!(parse_deps("a (~~ 1)").is_err());
    }
}
