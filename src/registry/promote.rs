//! Channels: `promote` moves a channel tag to a version only on signed evidence, `revoke` marks
//! a digest as never to be pulled or promoted, `history` reads a channel's promotions back.
//!
//! A promotion re-puts the exact manifest bytes under the channel tag (so the digest is the
//! version's), moves the previous holder to a legacy channel first when asked (so it is never
//! untagged in between), and attaches a signed record naming who, when, from which digest to
//! which, and the evidence it rested on.

use anyhow::{bail, Context, Result};

use super::artifact;
use super::client::Client;
use super::evidence::{self, Found, Kind, Statement};
use super::pull::{self, Resolved};
use super::reference::{tag_kind, TagKind};
use super::types::Descriptor;
use super::BadInput;
use crate::image_dir::{self, Manifest};
use crate::trust::minisign::{PublicKey, SecretKey};

/// A gate a promotion must pass besides signature, evidence and revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Every image's layers together at most this many bytes.
    Size(u64),
    /// The security audit: no package may lack a published security fix (`ingot audit
    /// --fail-on security` against the digest being promoted).
    Audit,
}

impl Gate {
    /// Parse `size<=2GiB` or `audit`.
    pub fn parse(s: &str) -> Result<Self, BadInput> {
        if let Some(v) = s.strip_prefix("size<=") {
            let b = crate::config::ByteSize::parse(v.trim())
                .map_err(|e| BadInput(format!("--require {s}: {e}")))?;
            return Ok(Gate::Size(b.0));
        }
        if s == "audit" {
            return Ok(Gate::Audit);
        }
        Err(BadInput(format!(
            "--require {s}: unknown gate (known: size<=SIZE, audit)"
        )))
    }
}

/// Is `channel` a usable channel tag (not a version, not a referrers tag)?
pub fn check_channel(channel: &str) -> Result<(), BadInput> {
    if !super::reference::valid_tag(channel) {
        return Err(BadInput(format!(
            "channel `{channel}`: a tag is 1-128 characters of [A-Za-z0-9_.-]"
        )));
    }
    if super::reference::tag_kind(channel) != super::reference::TagKind::Channel
        || evidence::is_fallback_tag(channel)
    {
        return Err(BadInput(format!(
            "channel `{channel}` looks like a version or a referrers tag; name channels like golden-stable"
        )));
    }
    Ok(())
}

/// How to promote.
pub struct PromoteOptions<'a> {
    /// Key for the image signature and the evidence.
    pub key: &'a PublicKey,
    /// Key that signs the promotion record.
    pub sign: &'a SecretKey,
    /// Where the channel's previous holder goes.
    pub previous_to: Option<&'a str>,
    /// Gates.
    pub gates: &'a [Gate],
    /// Who promotes.
    pub by: Option<&'a str>,
    /// Promote a revoked digest anyway.
    pub allow_revoked: bool,
    /// The Debian archive the `audit` gate asks.
    pub archive: Option<&'a crate::packages::Source>,
}

/// What a promotion did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Promoted {
    /// The channel.
    pub channel: String,
    /// The digest it names now.
    pub digest: String,
    /// The digest it named before.
    pub previous: Option<String>,
    /// Where that went.
    pub previous_to: Option<String>,
    /// The evidence used.
    pub evidence: Vec<String>,
    /// The promotion record's digest (None when nothing changed).
    pub record: Option<String>,
}

/// Check an image manifest's signed manifest.json against the key and its layers.
/// The image manifest `digest`'s signed `manifest.json`, its signature checked with `key` and
/// every layer that names an artifact checked against the digest the manifest lists.
pub fn verify_signed(client: &Client, digest: &str, key: &PublicKey) -> Result<Manifest> {
    let (m, _) = pull::image_manifest(client, digest)?;
    let small = |name: &str| {
        evidence::small_layer(client, &m, digest, name)
            .with_context(|| format!("{digest}: not a signed image"))
    };
    let bytes = small(image_dir::MANIFEST)?;
    let sig = String::from_utf8(small(image_dir::SIGNATURE)?).unwrap_or_default();
    key.verify_bytes(&bytes, &sig)
        .with_context(|| format!("{digest}: the image signature does not verify"))?;
    let man = Manifest::parse(&bytes, std::path::Path::new(image_dir::MANIFEST))?;
    for l in &m.layers {
        let Some(t) = l.title() else { continue };
        if let Some(a) = man.artifacts.get(t) {
            if l.digest != format!("sha256:{}", a.sha256) || l.size != a.size {
                bail!("{digest}: layer {t} is not the file the signed manifest lists");
            }
        }
    }
    Ok(man)
}

/// Run the security audit on the signed image `digest` (its manifest and lockfile are all it
/// reads) and refuse the promotion when a security fix is missing.
fn audit_gate(
    client: &Client,
    digest: &str,
    man: &Manifest,
    opts: &PromoteOptions<'_>,
) -> Result<()> {
    let src = opts
        .archive
        .context("--require audit: no Debian archive to audit against")?;
    let (m, _) = pull::image_manifest(client, digest)?;
    let lock = evidence::small_layer(client, &m, digest, image_dir::LOCKFILE)?;
    let origin = std::path::PathBuf::from(format!("{digest}/{}", image_dir::LOCKFILE));
    let subject = crate::audit::Subject::from_parts(man, &lock, None, &origin)?;
    let found = crate::audit::audit(src, &subject)?;
    let gate = crate::audit::Gate {
        fail_on: Some(crate::audit::FailOn::Security),
        max_age_days: None,
    };
    let v = gate.judge(&found, crate::base::identity::now_secs());
    if !v.passed {
        bail!(
            "{}: --require audit: {} package(s) lack a published security fix: {}; promotion refused",
            man.id,
            v.reasons.len(),
            v.reasons.join("; ")
        );
    }
    Ok(())
}

/// The newest verified report of `kind` for `subject`, which must have passed.
fn passing_report(client: &Client, subject: &str, kind: Kind, key: &PublicKey) -> Result<Found> {
    let all = evidence::find(client, subject, kind, Some(key))?;
    let unverified = all.iter().filter(|f| !f.verified).count();
    let newest = all.iter().rev().find(|f| f.verified);
    let what = match kind {
        Kind::OtaReport => "OTA-test",
        _ => "boot-test",
    };
    match newest {
        Some(f) if f.statement.passed == Some(true) => Ok(f.clone()),
        Some(f) => bail!(
            "{subject}: the newest signed {what} report ({}, {} by {}) failed; promotion refused",
            f.digest,
            f.statement.created,
            f.statement.by
        ),
        None => bail!(
            "{subject}: no signed {what} report{}; run `ingot {} … --attach REF --key KEY` first",
            if unverified > 0 {
                format!(" ({unverified} whose signature does not verify with this key)")
            } else {
                String::new()
            },
            if kind == Kind::OtaReport {
                "ota-test"
            } else {
                "boot-test"
            }
        ),
    }
}

/// Promote the client's reference to `channel`.
pub fn promote(client: &Client, channel: &str, opts: &PromoteOptions<'_>) -> Result<Promoted> {
    check_channel(channel)?;
    if let Some(p) = opts.previous_to {
        check_channel(p)?;
        if p == channel {
            return Err(BadInput("--previous-to must name another channel".into()).into());
        }
    }
    let res: Resolved = pull::resolve(client)?;
    let top = res.top.0.clone();
    if let Some(w) = check_channel_tag(client, &top, opts.key)? {
        eprintln!("warning: {w}");
    }
    let images = res.images();
    let mut subjects: Vec<&str> = vec![top.as_str()];
    subjects.extend(images.iter().map(|d| d.digest.as_str()));
    if let Some(f) = evidence::revoked(client, &subjects, opts.key)? {
        let msg = f.revocation_text();
        if !opts.allow_revoked {
            bail!("{msg}; promotion refused");
        }
        eprintln!("warning: promoting anyway: {msg}");
    }
    let mut evidence_used = Vec::new();
    for img in &images {
        let man = verify_signed(client, &img.digest, opts.key)?;
        pull::check_listing(&client.reference, img, &man)?;
        evidence_used.push(passing_report(client, &img.digest, Kind::BootReport, opts.key)?.digest);
        if man.boot.hardware.ab.is_some() {
            evidence_used
                .push(passing_report(client, &img.digest, Kind::OtaReport, opts.key)?.digest);
        }
        for g in opts.gates {
            match g {
                Gate::Size(max) => {
                    let (m, _) = pull::image_manifest(client, &img.digest)?;
                    let total: u64 = m.layers.iter().map(|l| l.size).sum();
                    if total > *max {
                        bail!(
                            "{}: {total} bytes in the registry, over the size budget of {max} bytes",
                            man.id
                        );
                    }
                }
                Gate::Audit => audit_gate(client, &img.digest, &man, opts)?,
            }
        }
    }
    let previous = client.get_manifest(channel)?;
    if previous.as_ref().map(|p| p.2.as_str()) == Some(top.as_str()) {
        return Ok(Promoted {
            channel: channel.into(),
            digest: top,
            previous: None,
            previous_to: None,
            evidence: evidence_used,
            record: None,
        });
    }
    if let (Some(to), Some((media, bytes, _))) = (opts.previous_to, &previous) {
        client.put_manifest(to, media, bytes)?;
    }
    let (_, media, bytes) = &res.top;
    client.put_manifest(channel, media, bytes)?;
    let st = Statement {
        kind: Kind::Promotion,
        subject: top.clone(),
        repository: format!(
            "{}/{}",
            client.reference.registry, client.reference.repository
        ),
        created: evidence::now(),
        by: evidence::actor(opts.by),
        passed: None,
        channel: Some(channel.into()),
        previous: previous.as_ref().map(|p| p.2.clone()),
        previous_to: previous.as_ref().and(opts.previous_to.map(str::to_string)),
        evidence: evidence_used.clone(),
        reason: None,
        report: serde_json::Value::Null,
    };
    let record = evidence::attach(client, &res.descriptor(), &st, opts.sign)?;
    Ok(Promoted {
        channel: channel.into(),
        digest: top,
        previous: st.previous,
        previous_to: st.previous_to,
        evidence: evidence_used,
        record: Some(record),
    })
}

/// Attach a signed revocation to the client's reference.
pub fn revoke(
    client: &Client,
    reason: &str,
    key: &SecretKey,
    by: Option<&str>,
) -> Result<(String, String)> {
    if reason.trim().is_empty() || reason.len() > 4096 {
        return Err(BadInput("--reason: one to 4096 characters".into()).into());
    }
    let res = pull::resolve(client)?;
    let st = Statement {
        kind: Kind::Revocation,
        subject: res.top.0.clone(),
        repository: format!(
            "{}/{}",
            client.reference.registry, client.reference.repository
        ),
        created: evidence::now(),
        by: evidence::actor(by),
        passed: None,
        channel: None,
        previous: None,
        previous_to: None,
        evidence: Vec::new(),
        reason: Some(reason.to_string()),
        report: serde_json::Value::Null,
    };
    let rec = evidence::attach(client, &res.descriptor(), &st, key)?;
    Ok((res.top.0, rec))
}

/// Attach a test report to the manifest a local image directory makes (it must be in the
/// repository: the report names the exact digest that was tested).
pub fn attach_report(
    client: &Client,
    dir: &crate::image_dir::ImageDir,
    kind: Kind,
    passed: bool,
    report: serde_json::Value,
    key: &SecretKey,
) -> Result<(String, String)> {
    let img = artifact::image(dir)?;
    let digest = img.entry.digest.clone();
    if client.get_manifest(&digest)?.is_none() {
        bail!(
            "{}@{digest}: the tested image is not in the registry; push it before attaching evidence",
            client.reference
        );
    }
    let subject = Descriptor {
        artifact_type: None,
        platform: None,
        annotations: Default::default(),
        ..img.entry.clone()
    };
    let st = Statement {
        kind,
        subject: digest.clone(),
        repository: format!(
            "{}/{}",
            client.reference.registry, client.reference.repository
        ),
        created: evidence::now(),
        by: evidence::actor(None),
        passed: Some(passed),
        channel: None,
        previous: None,
        previous_to: None,
        evidence: Vec::new(),
        reason: None,
        report,
    };
    let rec = evidence::attach(client, &subject, &st, key)?;
    Ok((digest, rec))
}

/// One line of a channel's history.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HistoryEntry {
    /// When.
    pub created: String,
    /// Who.
    pub by: String,
    /// From.
    pub previous: Option<String>,
    /// To.
    pub digest: String,
    /// The version (annotation of the promoted document).
    pub version: Option<String>,
    /// Where the previous holder went.
    pub previous_to: Option<String>,
    /// Evidence digests.
    pub evidence: Vec<String>,
    /// The record's signature verified with the key given.
    pub verified: bool,
    /// The record.
    pub record: String,
    /// The channel whose promotion moved this digest here (`--previous-to`), when it came so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moved_by: Option<String>,
}

/// A channel tag (not pinned by a digest) must name what the last promotion record of that
/// channel that verifies with `key` put there: anyone who can push can move the tag to another
/// signed image, an older one with a known flaw above all, and the image's own signature
/// would not show it. Refused when it does not; when no record verifies (none made, or signed
/// with another key), the returned warning says the tag went unchecked.
pub fn check_channel_tag(client: &Client, digest: &str, key: &PublicKey) -> Result<Option<String>> {
    let r = &client.reference;
    let Some(tag) = r
        .tag
        .as_deref()
        .filter(|t| r.digest.is_none() && tag_kind(t) == TagKind::Channel)
    else {
        return Ok(None);
    };
    let (h, _) = history(client, Some(key))?;
    match h.iter().rev().find(|e| e.verified) {
        Some(e) if e.digest == digest => Ok(None),
        Some(e) => bail!(
            "{r}: the tag names {digest}, but the last promotion record of {tag} that verifies put {} there: the tag was moved outside `ingot promote` (refused; name a version or a digest to take it anyway)",
            e.digest
        ),
        None if h.is_empty() => Ok(Some(format!(
            "{r}: no promotion to {tag} is recorded; what the tag names is not checked against one"
        ))),
        None => Ok(Some(format!(
            "{r}: no promotion record of {tag} verifies with the key; what the tag names is not checked against them"
        ))),
    }
}

/// What a channel's tag names now against what its promotion records put there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelState {
    /// The tag names what the last record about the channel put there.
    Recorded,
    /// The repository has no such tag; these are the channel tags it has.
    NoTag(Vec<String>),
    /// The tag exists but no promotion record speaks of the channel.
    Unrecorded,
    /// The tag names `now`, but the records last put `recorded` there (None: no record ever
    /// named the channel): it was moved outside `ingot promote`.
    Moved {
        /// The tag's digest.
        now: String,
        /// The digest the records say.
        recorded: Option<String>,
    },
}

/// The promotions of the client's tag (a channel), oldest first, and whether the tag still
/// names what they say. Records count towards that check only when they verify with `key`
/// (all of them when no key is given).
pub fn history(
    client: &Client,
    key: Option<&PublicKey>,
) -> Result<(Vec<HistoryEntry>, ChannelState)> {
    let channel =
        client.reference.tag.clone().ok_or_else(|| {
            BadInput(format!("{}: name the channel as the tag", client.reference))
        })?;
    if tag_kind(&channel) != TagKind::Channel {
        return Err(BadInput(format!(
            "{}: `{channel}` is not a channel tag (a version or digest tag has no promotions; name a channel such as golden-stable)",
            client.reference
        ))
        .into());
    }
    let mut digests: Vec<(String, Option<String>)> = Vec::new();
    let mut now = None;
    let mut channels = Vec::new();
    for t in client.tags()? {
        if evidence::is_fallback_tag(&t) {
            continue;
        }
        if let Some((_, bytes, d)) = client.get_manifest(&t)? {
            if t == channel {
                now = Some(d.clone());
            }
            if tag_kind(&t) == TagKind::Channel {
                channels.push(t.clone());
            }
            if !digests.iter().any(|(x, _)| *x == d) {
                let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
                let version = v
                    .pointer("/annotations/org.opencontainers.image.version")
                    .and_then(|x| x.as_str())
                    .map(str::to_string);
                digests.push((d, version));
            }
        }
    }
    let mut out = Vec::new();
    let version_of = |d: &str| {
        digests
            .iter()
            .find(|(x, _)| x == d)
            .and_then(|(_, v)| v.clone())
    };
    for (d, version) in &digests {
        for f in evidence::find(client, d, Kind::Promotion, key)? {
            let st = &f.statement;
            let entry = |digest: &str, version: Option<String>| HistoryEntry {
                created: st.created.clone(),
                by: st.by.clone(),
                previous: st.previous.clone(),
                digest: digest.to_string(),
                version,
                previous_to: st.previous_to.clone(),
                evidence: st.evidence.clone(),
                verified: f.verified,
                record: f.digest.clone(),
                moved_by: None,
            };
            if st.channel.as_deref() == Some(channel.as_str()) {
                out.push(entry(d, version.clone()));
            }
            // A promotion elsewhere that moved that channel's holder here (`--previous-to`).
            if let (Some(prev), Some(to)) = (&st.previous, &st.previous_to) {
                if *to == channel {
                    out.push(HistoryEntry {
                        previous: None,
                        previous_to: None,
                        evidence: Vec::new(),
                        moved_by: st.channel.clone(),
                        ..entry(prev, version_of(prev))
                    });
                }
            }
        }
    }
    out.sort_by(|a, b| a.created.cmp(&b.created).then(a.record.cmp(&b.record)));
    // A holder moved here replaced whatever the channel held before it.
    for i in 1..out.len() {
        if out[i].moved_by.is_some() {
            out[i].previous = Some(out[i - 1].digest.clone());
        }
    }
    let recorded = out
        .iter()
        .rev()
        .find(|e| e.verified || key.is_none())
        .map(|e| e.digest.clone());
    let state = match now {
        None if out.is_empty() => ChannelState::NoTag(channels),
        // Nothing to hold the tag to: made by hand, or its records went with the versions
        // retention deleted (a record lives on the version it promoted).
        Some(_) if out.is_empty() => ChannelState::Unrecorded,
        Some(now) if recorded.as_deref() != Some(now.as_str()) => {
            ChannelState::Moved { now, recorded }
        }
        _ => ChannelState::Recorded,
    };
    Ok((out, state))
}
