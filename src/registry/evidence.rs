//! Signed evidence about an image, kept in the registry as referrers of its manifest: boot-test
//! and OTA-test reports, promotion records and revocations.
//!
//! Each is an artifact whose `subject` is the manifest it speaks about, with two layers: a JSON
//! statement and its minisign signature (trusted comment naming the kind and the subject). The
//! referrers API is used where the registry has it; otherwise the spec's fallback, an index
//! under the tag `sha256-<hex>` that the client reads, extends and puts back.

use std::collections::BTreeMap;
use std::io::Read;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::client::Client;
use super::types::{self, Descriptor, ImageManifest, Index};
use crate::base::fsx;
use crate::trust::minisign::{PublicKey, SecretKey};

/// What a piece of evidence is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A boot-test report.
    BootReport,
    /// An OTA-test report.
    OtaReport,
    /// A channel tag moved to this digest.
    Promotion,
    /// This digest must not be pulled or promoted.
    Revocation,
}

impl Kind {
    /// The artifact type.
    pub fn artifact_type(self) -> &'static str {
        match self {
            Kind::BootReport => "application/vnd.ingot.boot-report.v1+json",
            Kind::OtaReport => "application/vnd.ingot.ota-report.v1+json",
            Kind::Promotion => "application/vnd.ingot.promotion.v1+json",
            Kind::Revocation => "application/vnd.ingot.revocation.v1+json",
        }
    }

    /// The kind of an artifact type.
    pub fn from_artifact_type(t: &str) -> Option<Kind> {
        [
            Kind::BootReport,
            Kind::OtaReport,
            Kind::Promotion,
            Kind::Revocation,
        ]
        .into_iter()
        .find(|k| k.artifact_type() == t)
    }

    /// Its name in messages and statements.
    pub fn name(self) -> &'static str {
        match self {
            Kind::BootReport => "boot-report",
            Kind::OtaReport => "ota-report",
            Kind::Promotion => "promotion",
            Kind::Revocation => "revocation",
        }
    }
}

/// The signed statement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    /// What it is.
    pub kind: Kind,
    /// The manifest digest it is about.
    pub subject: String,
    /// The repository, `registry/path`.
    pub repository: String,
    /// When it was made (RFC 3339, UTC).
    pub created: String,
    /// Who made it (`--by`, else user@host).
    pub by: String,
    /// Reports: the test passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passed: Option<bool>,
    /// Promotions: the channel tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Promotions: the digest the channel named before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    /// Promotions: where the previous holder went (the legacy channel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_to: Option<String>,
    /// Promotions: the evidence it rested on (artifact digests).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<String>,
    /// Revocations: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Reports: the report itself.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub report: serde_json::Value,
}

const STATEMENT: &str = "statement.json";
const STATEMENT_SIG: &str = "statement.json.minisig";
const STATEMENT_MEDIA: &str = "application/vnd.ingot.statement.v1+json";
const SIG_MEDIA: &str = "application/vnd.ingot.minisign.signature.v1";
/// Annotation on evidence: kind.
pub const KIND: &str = "dev.ingot.evidence.kind";
/// Annotation on reports: passed or failed.
pub const PASSED: &str = "dev.ingot.evidence.passed";
/// Annotation on promotions: the channel.
pub const CHANNEL: &str = "dev.ingot.channel";

/// Who is acting: `--by`, else `$USER@hostname`.
pub fn actor(by: Option<&str>) -> String {
    if let Some(b) = by {
        return b.to_string();
    }
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{user}@{host}")
}

/// Now, RFC 3339.
pub fn now() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    // Milliseconds, so records made in one second still sort in order.
    let s = crate::base::identity::rfc3339(t.as_secs() as i64);
    format!("{}.{:03}Z", s.trim_end_matches('Z'), t.subsec_millis())
}

/// The fallback tag of a subject digest.
pub fn fallback_tag(digest: &str) -> String {
    digest.replace(':', "-")
}

/// Is this a fallback referrers tag?
pub fn is_fallback_tag(tag: &str) -> bool {
    tag.strip_prefix("sha256-")
        .is_some_and(super::reference::is_hex64)
}

/// Upload a small blob unless the repository has it.
pub fn put_small_blob(client: &Client, d: &Descriptor, bytes: &[u8]) -> Result<()> {
    if !client.has_blob(&d.digest)? {
        let url = client.start_upload()?;
        client.finish_upload(&url, &d.digest, super::client::Body::Bytes(bytes))?;
    }
    Ok(())
}

/// Sign `st` and attach it to `subject`; returns the evidence manifest's digest.
pub fn attach(
    client: &Client,
    subject: &Descriptor,
    st: &Statement,
    key: &SecretKey,
) -> Result<String> {
    let body = crate::trust::canonical(&serde_json::to_value(st).context("encoding statement")?);
    let sig = key.sign_bytes(
        body.as_bytes(),
        &format!(
            "ingot-evidence kind={} subject={}",
            st.kind.name(),
            st.subject
        ),
    );
    let mut layers = Vec::new();
    for (name, media, bytes) in [
        (STATEMENT, STATEMENT_MEDIA, body.as_bytes()),
        (STATEMENT_SIG, SIG_MEDIA, sig.as_bytes()),
    ] {
        let mut d = Descriptor::of(media, bytes);
        d.annotations.insert(types::TITLE.into(), name.into());
        put_small_blob(client, &d, bytes)?;
        layers.push(d);
    }
    put_small_blob(client, &types::empty_config(), types::EMPTY_BLOB)?;
    let mut annotations = BTreeMap::new();
    annotations.insert(types::CREATED.to_string(), st.created.clone());
    annotations.insert(KIND.to_string(), st.kind.name().to_string());
    if let Some(p) = st.passed {
        annotations.insert(PASSED.to_string(), p.to_string());
    }
    if let Some(c) = &st.channel {
        annotations.insert(CHANNEL.to_string(), c.clone());
    }
    let m = ImageManifest {
        schema_version: 2,
        media_type: types::MANIFEST_MEDIA.into(),
        artifact_type: Some(st.kind.artifact_type().into()),
        config: types::empty_config(),
        layers,
        subject: Some(Descriptor {
            media_type: subject.media_type.clone(),
            digest: subject.digest.clone(),
            size: subject.size,
            artifact_type: None,
            platform: None,
            annotations: BTreeMap::new(),
        }),
        annotations: annotations.clone(),
    };
    let bytes = types::to_bytes(&m);
    let mut desc = Descriptor::of(types::MANIFEST_MEDIA, &bytes);
    desc.artifact_type = m.artifact_type.clone();
    desc.annotations = annotations;
    let native = client.put_manifest(&desc.digest, types::MANIFEST_MEDIA, &bytes)?;
    if !native {
        add_to_fallback(client, &subject.digest, &desc)?;
    }
    Ok(desc.digest)
}

/// Read, extend and put back the fallback index of `subject`.
fn add_to_fallback(client: &Client, subject: &str, desc: &Descriptor) -> Result<()> {
    let tag = fallback_tag(subject);
    let mut idx = match client.get_manifest(&tag)? {
        Some((_, bytes, _)) => serde_json::from_slice::<Index>(&bytes)
            .with_context(|| format!("{tag}: the referrers fallback index is not an OCI index"))?,
        None => Index::empty(),
    };
    if idx.manifests.iter().any(|d| d.digest == desc.digest) {
        return Ok(());
    }
    idx.manifests.push(desc.clone());
    client.put_manifest(&tag, types::INDEX_MEDIA, &types::to_bytes(&idx))?;
    Ok(())
}

/// Remove evidence manifests from a fallback index (after they were deleted); deletes the
/// index itself when nothing is left.
pub fn remove_from_fallback(client: &Client, subject: &str, gone: &[String]) -> Result<()> {
    let tag = fallback_tag(subject);
    let Some((_, bytes, digest)) = client.get_manifest(&tag)? else {
        return Ok(());
    };
    let mut idx: Index = serde_json::from_slice(&bytes)
        .with_context(|| format!("{tag}: the referrers fallback index is not an OCI index"))?;
    idx.manifests.retain(|d| !gone.contains(&d.digest));
    if idx.manifests.is_empty() {
        client.delete_manifest(&digest)
    } else {
        client.put_manifest(&tag, types::INDEX_MEDIA, &types::to_bytes(&idx))?;
        Ok(())
    }
}

/// Every referrer of `subject` (API or fallback).
pub fn referrers(client: &Client, subject: &str) -> Result<Vec<Descriptor>> {
    if let Some(list) = client.referrers_api(subject)? {
        return Ok(list);
    }
    match client.get_manifest(&fallback_tag(subject))? {
        Some((_, bytes, _)) => Ok(serde_json::from_slice::<Index>(&bytes)
            .with_context(|| {
                format!(
                    "{}: the referrers fallback index is not an OCI index",
                    fallback_tag(subject)
                )
            })?
            .manifests),
        None => Ok(Vec::new()),
    }
}

/// One piece of evidence as read back.
#[derive(Debug, Clone)]
pub struct Found {
    /// Its manifest digest.
    pub digest: String,
    /// The statement.
    pub statement: Statement,
    /// Its signature verified with the key given.
    pub verified: bool,
    /// Why it did not verify.
    pub problem: Option<String>,
}

/// Read the evidence of `kind` about `subject`, checking each signature with `key`.
pub fn find(
    client: &Client,
    subject: &str,
    kind: Kind,
    key: Option<&PublicKey>,
) -> Result<Vec<Found>> {
    let mut out = Vec::new();
    for d in referrers(client, subject)? {
        if d.artifact_type.as_deref() != Some(kind.artifact_type()) {
            continue;
        }
        out.push(load(client, &d.digest, subject, kind, key)?);
    }
    out.sort_by(|a, b| a.statement.created.cmp(&b.statement.created));
    Ok(out)
}

fn load(
    client: &Client,
    digest: &str,
    subject: &str,
    kind: Kind,
    key: Option<&PublicKey>,
) -> Result<Found> {
    let (_, bytes, _) = client
        .get_manifest(digest)?
        .ok_or_else(|| anyhow!("evidence {digest} is listed but not in the registry"))?;
    let m: ImageManifest = serde_json::from_slice(&bytes)
        .with_context(|| format!("evidence {digest}: not an OCI image manifest"))?;
    let blob = |name: &str| small_layer(client, &m, digest, name);
    let body = blob(STATEMENT)?;
    let statement: Statement = serde_json::from_slice(&body)
        .with_context(|| format!("evidence {digest}: the statement is not one Ingot reads"))?;
    let mut problem = None;
    if m.subject.as_ref().map(|s| s.digest.as_str()) != Some(subject)
        || statement.subject != subject
        || statement.kind != kind
    {
        problem = Some(format!(
            "evidence {digest} speaks about {} as {}, not about {subject} as {}",
            statement.subject,
            statement.kind.name(),
            kind.name()
        ));
    }
    let verified = match key {
        Some(k) if problem.is_none() => {
            let sig = String::from_utf8(blob(STATEMENT_SIG)?).unwrap_or_default();
            match k.verify_bytes(&body, &sig) {
                Ok(_) => true,
                Err(e) => {
                    problem = Some(format!("evidence {digest}: signature: {e}"));
                    false
                }
            }
        }
        _ => false,
    };
    Ok(Found {
        digest: digest.to_string(),
        statement,
        verified,
        problem,
    })
}

impl Found {
    /// A revocation in words: what, by whom, when, why.
    pub fn revocation_text(&self) -> String {
        format!(
            "{} was revoked by {} on {}: {}",
            self.statement.subject,
            self.statement.by,
            self.statement.created,
            self.statement
                .reason
                .as_deref()
                .unwrap_or("(no reason given)")
        )
    }
}

/// A small layer of a manifest, found by its title, read whole (at most 16 MiB) and checked
/// against its descriptor: statements, signatures, an image's manifest.json.
pub fn small_layer(
    client: &Client,
    m: &ImageManifest,
    digest: &str,
    title: &str,
) -> Result<Vec<u8>> {
    let d = m
        .layers
        .iter()
        .find(|l| l.title() == Some(title))
        .ok_or_else(|| anyhow!("{digest}: no {title} layer"))?;
    if d.size > 16 << 20 {
        bail!("{digest}: {title} is {} bytes", d.size);
    }
    let mut buf = Vec::new();
    client
        .get_blob(&d.digest)?
        .take(d.size + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("{digest}: reading {title}"))?;
    if format!("sha256:{}", fsx::sha256_hex(&buf)) != d.digest {
        bail!("{digest}: {title} does not hash to its descriptor's digest");
    }
    Ok(buf)
}

/// The first verified revocation of any of `subjects`.
pub fn revoked(client: &Client, subjects: &[&str], key: &PublicKey) -> Result<Option<Found>> {
    for s in subjects {
        for f in find(client, s, Kind::Revocation, Some(key))? {
            if f.verified {
                return Ok(Some(f));
            }
            if let Some(p) = &f.problem {
                eprintln!("warning: ignoring a revocation that does not verify: {p}");
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests;
