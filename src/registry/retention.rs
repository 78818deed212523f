//! `ingot retention`: retire old versions of a repository by policy.
//!
//! Versions are ordered by semantic version, then by build time (the `created` annotation,
//! from the build's epoch, never the push time). The newest N per image and architecture are
//! kept, and so is every digest a channel tag names. The rest is deleted by digest (Debian's
//! registry cannot delete a tag; deleting the digest drops its tags), together with the
//! evidence that refers to it and the fallback referrers index. Each decision is printed;
//! `--dry-run` prints them and changes nothing.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};

use super::artifact;
use super::client::Client;
use super::evidence;
use super::reference::TagKind;
use super::types::{self, Index};
use super::BadInput;

/// How to retire.
pub struct RetentionOptions {
    /// Versions kept per image and architecture.
    pub keep: usize,
    /// Only versions built more than this many days ago may go.
    pub older_than_days: Option<u64>,
    /// Decide and print, change nothing.
    pub dry_run: bool,
}

/// One version's fate.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Decision {
    /// The version tag.
    pub tag: String,
    /// Its digest.
    pub digest: String,
    /// Kept.
    pub keep: bool,
    /// Why.
    pub why: String,
    /// Evidence manifests deleted with it.
    pub referrers_deleted: usize,
}

struct Version {
    tag: String,
    digest: String,
    created: String,
    image: String,
    /// (arch, manifest digest)
    children: Vec<(String, String)>,
}

/// Compare two semantic versions (semver 2.0 precedence; build metadata ignored).
pub fn semver_cmp(a: &str, b: &str) -> Ordering {
    fn split(v: &str) -> (Vec<u64>, Option<&str>) {
        // A tag writes build metadata after `_` (see `version_tag`).
        let v = v.split(['+', '_']).next().unwrap_or(v);
        let (core, pre) = match v.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (v, None),
        };
        (
            core.split('.').map(|n| n.parse().unwrap_or(0)).collect(),
            pre,
        )
    }
    let (ca, pa) = split(a);
    let (cb, pb) = split(b);
    ca.cmp(&cb).then_with(|| match (pa, pb) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => {
            let (xs, ys): (Vec<&str>, Vec<&str>) = (x.split('.').collect(), y.split('.').collect());
            for (p, q) in xs.iter().zip(&ys) {
                let o = match (p.parse::<u64>(), q.parse::<u64>()) {
                    (Ok(m), Ok(n)) => m.cmp(&n),
                    (Ok(_), Err(_)) => Ordering::Less,
                    (Err(_), Ok(_)) => Ordering::Greater,
                    (Err(_), Err(_)) => p.cmp(q),
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
            xs.len().cmp(&ys.len())
        }
    })
}

/// Decide (and unless dry-run, delete) for the client's repository.
pub fn retention(client: &Client, opts: &RetentionOptions) -> Result<Vec<Decision>> {
    if opts.keep == 0 {
        return Err(BadInput("--keep must be at least 1".into()).into());
    }
    let mut versions = Vec::new();
    let mut channels: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for tag in client.tags()? {
        if evidence::is_fallback_tag(&tag) {
            continue;
        }
        let Some((media, bytes, digest)) = client.get_manifest(&tag)? else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("tag {tag}: the manifest is not JSON"))?;
        let at = v.get("artifactType").and_then(|a| a.as_str()).unwrap_or("");
        if at != artifact::INDEX_TYPE && at != artifact::IMAGE_TYPE {
            return Err(BadInput(format!(
                "tag {tag}: not an Ingot image ({}); retention manages only repositories Ingot pushes to",
                if at.is_empty() { media.as_str() } else { at }
            ))
            .into());
        }
        match super::reference::tag_kind(&tag) {
            TagKind::Version => {}
            TagKind::NotSemver => {
                return Err(BadInput(format!(
                    "tag {tag} is not a semantic version (MAJOR.MINOR.PATCH, no leading v), so retention cannot order it; delete or retag it"
                ))
                .into());
            }
            TagKind::Channel => {
                channels.entry(digest).or_default().push(tag);
                continue;
            }
        }
        let ann = |k: &str| {
            v.pointer(&format!("/annotations/{}", k.replace('/', "~1")))
                .and_then(|x| x.as_str())
                .unwrap_or("")
                .to_string()
        };
        let children = if media == types::INDEX_MEDIA {
            let idx: Index = serde_json::from_slice(&bytes)
                .with_context(|| format!("tag {tag}: not an OCI index"))?;
            idx.manifests
                .iter()
                .map(|d| {
                    (
                        d.annotations
                            .get(artifact::ARCH)
                            .cloned()
                            .unwrap_or_default(),
                        d.digest.clone(),
                    )
                })
                .collect()
        } else {
            vec![(ann(artifact::ARCH), digest.clone())]
        };
        versions.push(Version {
            tag,
            digest,
            created: ann(types::CREATED),
            image: ann(artifact::IMAGE_NAME),
            children,
        });
    }
    // Newest first: semver, then build time.
    versions.sort_by(|a, b| semver_cmp(&b.tag, &a.tag).then_with(|| b.created.cmp(&a.created)));
    let mut kept_for: BTreeMap<usize, String> = BTreeMap::new();
    let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (i, v) in versions.iter().enumerate() {
        let arches: BTreeSet<&String> = v.children.iter().map(|(a, _)| a).collect();
        for a in arches {
            let n = counts.entry((v.image.clone(), a.clone())).or_default();
            *n += 1;
            if *n <= opts.keep && !kept_for.contains_key(&i) {
                kept_for.insert(i, format!("newest {} of {} {a}", opts.keep, v.image));
            }
        }
    }
    let cutoff = opts.older_than_days.map(|d| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |x| x.as_secs() as i64);
        crate::base::identity::rfc3339(now - (d as i64) * 86_400)
    });
    let mut out = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        // A channel may name one image of the version (a promotion of `REF@sha256:<image>`):
        // deleting the version would delete that image with it, so the whole version stays.
        let named_image = v.children.iter().find_map(|(arch, d)| {
            channels
                .get(d)
                .filter(|_| *d != v.digest)
                .map(|ch| format!("its {arch} image named by channel {}", ch.join(", ")))
        });
        let why_keep = if let Some(ch) = channels.get(&v.digest) {
            Some(format!("named by channel {}", ch.join(", ")))
        } else if let Some(w) = named_image {
            Some(w)
        } else if let Some(w) = kept_for.get(&i) {
            Some(w.clone())
        } else {
            cutoff
                .as_ref()
                .filter(|c| v.created > **c)
                .map(|c| format!("built {} (newer than {c})", v.created))
        };
        let mut d = Decision {
            tag: v.tag.clone(),
            digest: v.digest.clone(),
            keep: why_keep.is_some(),
            why: why_keep
                .unwrap_or_else(|| format!("older than the newest {} of {}", opts.keep, v.image)),
            referrers_deleted: 0,
        };
        if !d.keep {
            let mut subjects = vec![v.digest.clone()];
            subjects.extend(
                v.children
                    .iter()
                    .map(|(_, c)| c.clone())
                    .filter(|c| *c != v.digest),
            );
            for s in &subjects {
                let refs = evidence::referrers(client, s)?;
                d.referrers_deleted += refs.len();
                if opts.dry_run {
                    continue;
                }
                for r in &refs {
                    client.delete_manifest(&r.digest)?;
                }
                let gone: Vec<String> = refs.iter().map(|r| r.digest.clone()).collect();
                evidence::remove_from_fallback(client, s, &gone)?;
            }
            if !opts.dry_run {
                for s in &subjects {
                    client.delete_manifest(s)?;
                }
            }
        }
        out.push(d);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semver_precedence() {
        let mut v = vec![
            "1.0.0",
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "0.9.9",
            "1.10.0",
            "1.2.0",
            "1.0.0-rc.1",
            "1.1.0_b5",
        ];
        v.sort_by(|a, b| semver_cmp(a, b));
        assert_eq!(
            v,
            [
                "0.9.9",
                "1.0.0-alpha",
                "1.0.0-alpha.1",
                "1.0.0-beta.2",
                "1.0.0-beta.11",
                "1.0.0-rc.1",
                "1.0.0",
                "1.1.0_b5",
                "1.2.0",
                "1.10.0"
            ]
        );
    }
}
