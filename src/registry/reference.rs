//! Image references, `REGISTRY/REPOSITORY[:TAG][@sha256:HEX]`, checked against the grammar of
//! the OCI distribution spec before anything is contacted.
//!
//! The registry part is never implied: Ingot has no default registry, so a reference must start
//! with a host name that has a dot or a port, or `localhost`.

use std::fmt;

use super::BadInput;

/// A parsed reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]`.
    pub registry: String,
    /// `path/of/repository`.
    pub repository: String,
    /// Tag, if any.
    pub tag: Option<String>,
    /// `sha256:<hex>`, if pinned.
    pub digest: Option<String>,
}

impl Reference {
    /// Parse `s`; `what` names the argument in errors.
    pub fn parse(s: &str) -> Result<Self, BadInput> {
        let bad = |why: &str| BadInput(format!("reference `{s}`: {why}"));
        if s.is_empty() || s.len() > 512 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad(
                "expected REGISTRY/REPOSITORY[:TAG][@sha256:HEX] without spaces",
            ));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                let hex = d
                    .strip_prefix("sha256:")
                    .ok_or_else(|| bad("the digest must be sha256:<64 lowercase hex digits>"))?;
                if !is_hex64(hex) {
                    return Err(bad("the digest must be sha256:<64 lowercase hex digits>"));
                }
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        let (registry, path) = rest.split_once('/').ok_or_else(|| {
            bad("no registry: write it out, for example localhost:5000/golden/edge-minimal:1.0.0")
        })?;
        if !(registry.contains('.') || registry.contains(':') || registry == "localhost") {
            return Err(bad(
                "the first part must be a registry host (with a dot or a port, or localhost); Ingot has no default registry",
            ));
        }
        if !valid_host(registry) {
            return Err(bad("the registry part is not HOST[:PORT]"));
        }
        // A tag follows the last ':' after the last '/'.
        let last = path.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match path[last..].find(':') {
            Some(i) => (&path[..last + i], Some(&path[last + i + 1..])),
            None => (path, None),
        };
        if repository.is_empty() || !repository.split('/').all(valid_component) {
            return Err(bad(
                "the repository must be lowercase path components ([a-z0-9] separated by ., _, __ or -)",
            ));
        }
        if repository.len() > 255 {
            return Err(bad("the repository name is longer than 255 characters"));
        }
        if let Some(t) = tag {
            if !valid_tag(t) {
                let hint = if t.contains('+') && valid_tag(&version_tag(t)) {
                    format!(
                        "; a version's build metadata follows `_` in a tag: :{}",
                        version_tag(t)
                    )
                } else {
                    String::new()
                };
                return Err(bad(&format!(
                    "a tag is 1-128 characters of [A-Za-z0-9_.-] and starts with a letter, digit or _{hint}"
                )));
            }
        }
        Ok(Reference {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// A repository reference: no tag and no digest allowed.
    pub fn parse_repository(s: &str) -> Result<Self, BadInput> {
        let r = Reference::parse(s)?;
        if r.tag.is_some() || r.digest.is_some() {
            return Err(BadInput(format!(
                "`{s}`: expected a repository (REGISTRY/REPOSITORY) without a tag or digest"
            )));
        }
        Ok(r)
    }

    /// What to ask the registry for: the digest when pinned, else the tag.
    pub fn target(&self) -> Option<&str> {
        self.digest.as_deref().or(self.tag.as_deref())
    }

    /// The same repository with another tag.
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }

    /// The same repository pinned to a digest.
    pub fn with_digest(&self, digest: &str) -> Reference {
        Reference {
            tag: None,
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }

    /// Whether the host is a loopback address, where plain HTTP is allowed.
    pub fn is_loopback(&self) -> bool {
        let host = match self.registry.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => self.registry.as_str(),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// 64 lowercase hex digits.
pub fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// What a tag is in a repository Ingot pushes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagKind {
    /// A semantic version: write-once, ordered by retention.
    Version,
    /// Looks like a version but is not semver (`1.2`, `v1.2.0`, `2024.01`): nothing can order
    /// it, so retention refuses it and promote will not make it a channel.
    NotSemver,
    /// Anything else names a channel (`golden-stable`).
    Channel,
}

/// The tag that names a version. OCI tags have no `+`, so semver build metadata
/// (`1.0.0+b5`) is written with `_` (`1.0.0_b5`), as Helm does for charts in OCI registries;
/// no semantic version holds a `_`, so the tag reads back as one version only.
pub fn version_tag(version: &str) -> String {
    version.replace('+', "_")
}

/// Read `t` as a version (its build metadata after `_`), a version-like tag that is not
/// semver, or a channel.
pub fn tag_kind(t: &str) -> TagKind {
    if crate::config::SemVer::parse(&t.replace('_', "+")).is_ok() {
        return TagKind::Version;
    }
    let digits = t.strip_prefix(['v', 'V']).unwrap_or(t);
    if digits.starts_with(|c: char| c.is_ascii_digit()) {
        TagKind::NotSemver
    } else {
        TagKind::Channel
    }
}

fn valid_host(h: &str) -> bool {
    let (host, port) = match h.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || h.starts_with('[') => (host, Some(port)),
        _ => (h, None),
    };
    if let Some(p) = port {
        if p.parse::<u16>().map_or(true, |p| p == 0) {
            return false;
        }
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

fn alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_like_the_distribution_grammar() {
        let r = Reference::parse("localhost:5000/golden/edge-minimal:1.2.0").unwrap();
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.repository, "golden/edge-minimal");
        assert_eq!(r.tag.as_deref(), Some("1.2.0"));
        assert!(r.is_loopback());
        assert_eq!(r.to_string(), "localhost:5000/golden/edge-minimal:1.2.0");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("127.0.0.1:41234/x/y@{d}")).unwrap();
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        assert_eq!(r.target(), Some(d.as_str()));
        assert!(r.is_loopback());
        assert!(!Reference::parse("registry.example:443/a:b")
            .unwrap()
            .is_loopback());
        for bad in [
            "",
            "edge-minimal:1.0",
            "golden/edge-minimal:1.0",
            "localhost:5000/Upper/case",
            "localhost:5000/a//b",
            "localhost:5000/a:",
            "localhost:5000/a:-x",
            "localhost:5000/a@sha256:abc",
            "localhost:5000/a@md5:0123",
            "localhost:99999/a",
            "localhost:5000/a b",
            "localhost:5000/a-",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
        assert!(Reference::parse_repository("localhost:5000/a:1").is_err());
        assert!(Reference::parse_repository("localhost:5000/a__b/c-d.e").is_ok());
    }

    #[test]
    fn tags_are_versions_channels_or_version_like_tags_nothing_can_order() {
        // Build metadata follows `_` in a tag (`1.0.0+b5` is pushed as `1.0.0_b5`).
        for t in [
            "1.0.0",
            "10.2.3-rc.1",
            "0.0.1-alpha",
            "1.0.0_rc1",
            "2.1.0-rc.1_b.7",
        ] {
            assert_eq!(tag_kind(t), TagKind::Version, "{t}");
        }
        assert_eq!(version_tag("2.1.0-rc.1+b.7"), "2.1.0-rc.1_b.7");
        for t in [
            "1.2",
            "v1.2.0",
            "V2",
            "2024.01.15",
            "01.2.3",
            "1.0.0_",
            "1.0.0_a_b",
        ] {
            assert_eq!(tag_kind(t), TagKind::NotSemver, "{t}");
        }
        for t in [
            "golden-stable",
            "latest",
            "golden-legacy",
            "vm",
            "v",
            "_1.0.0",
        ] {
            assert_eq!(tag_kind(t), TagKind::Channel, "{t}");
        }
    }
}
