//! `ingot pull`: a version (or one pinned manifest) down into an image directory that `verify`
//! accepts, or nothing at all.
//!
//! The manifest's digest is checked against the reference, every blob is hashed while it
//! streams, `disk.raw` is rebuilt (sparse) from `disk.qcow2` or `disk.raw.zst` as it arrives,
//! and the whole directory is then verified against its signed manifest, which must also be
//! the version, arch and hardware the tag and the index claim, before it is renamed into place.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use super::artifact;
use super::client::Client;
use super::evidence;
use super::reference::{tag_kind, version_tag, TagKind};
use super::types::{self, Descriptor, ImageManifest, Index};
use super::unpack::Rebuild;
use super::Reference;
use crate::base::fsx::HashingReader;
use crate::config::Format;
use crate::image_dir::{self, ImageDir, Manifest};
use crate::trust::minisign::PublicKey;

/// What a reference resolved to.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The tag's (or pinned) document: digest, media type and bytes.
    pub top: (String, String, Vec<u8>),
    /// When it is an index, the index.
    pub index: Option<Index>,
}

impl Resolved {
    /// The top document as a subject descriptor.
    pub fn descriptor(&self) -> Descriptor {
        let (d, media, bytes) = &self.top;
        Descriptor {
            media_type: media.clone(),
            digest: d.clone(),
            size: bytes.len() as u64,
            artifact_type: None,
            platform: None,
            annotations: Default::default(),
        }
    }

    /// The image manifests it covers: every index entry, or the manifest itself.
    pub fn images(&self) -> Vec<Descriptor> {
        match &self.index {
            Some(i) => i.manifests.clone(),
            None => vec![self.descriptor()],
        }
    }
}

/// Resolve the client's reference (tag or digest).
pub fn resolve(client: &Client) -> Result<Resolved> {
    let r = &client.reference;
    let target = r
        .target()
        .ok_or_else(|| super::BadInput(format!("{r}: give a tag or @sha256:<digest>")))?;
    let (media, bytes, digest) = client
        .get_manifest(target)?
        .ok_or_else(|| anyhow!("{r}: no such tag or digest in the registry"))?;
    let index = if media == types::INDEX_MEDIA {
        let i: Index =
            serde_json::from_slice(&bytes).with_context(|| format!("{r}: not an OCI index"))?;
        Some(i)
    } else if media == types::MANIFEST_MEDIA {
        None
    } else {
        bail!("{r}: a {media}, not an Ingot image");
    };
    Ok(Resolved {
        top: (digest, media, bytes),
        index,
    })
}

/// Pick one image of an index: the only one, or the one matching `arch`/`hardware`.
pub fn select(
    index: &Index,
    arch: Option<&str>,
    hardware: Option<&str>,
    what: &str,
) -> Result<Descriptor> {
    let fits: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| {
            arch.is_none_or(|a| {
                d.annotations.get(artifact::ARCH).map(String::as_str) == Some(a)
                    || d.platform.as_ref().map(|p| p.architecture.as_str()) == Some(a)
            }) && hardware.is_none_or(|h| {
                d.annotations.get(artifact::HARDWARE).map(String::as_str) == Some(h)
            })
        })
        .collect();
    match fits.as_slice() {
        [one] => Ok((*one).clone()),
        _ => {
            let all: Vec<String> = index
                .manifests
                .iter()
                .map(|d| {
                    format!(
                        "{} ({})",
                        d.annotations
                            .get(artifact::HARDWARE)
                            .map_or("?", |s| s.as_str()),
                        d.annotations
                            .get(artifact::ARCH)
                            .map_or("?", |s| s.as_str())
                    )
                })
                .collect();
            Err(super::BadInput(format!(
                "{what}: {} images match; choose with --arch or --hardware among: {}",
                fits.len(),
                all.join(", ")
            ))
            .into())
        }
    }
}

/// Fetch an image manifest by digest.
pub fn image_manifest(client: &Client, digest: &str) -> Result<(ImageManifest, Vec<u8>)> {
    let (media, bytes, _) = client
        .get_manifest(digest)?
        .ok_or_else(|| anyhow!("{}@{digest}: not in the registry", client.reference))?;
    if media != types::MANIFEST_MEDIA {
        bail!("{digest}: a {media}, not an image manifest");
    }
    let m: ImageManifest = serde_json::from_slice(&bytes)
        .with_context(|| format!("{digest}: not an OCI image manifest"))?;
    if m.artifact_type.as_deref() != Some(artifact::IMAGE_TYPE) {
        bail!(
            "{digest}: artifact type {}, not an Ingot image ({})",
            m.artifact_type.as_deref().unwrap_or("none"),
            artifact::IMAGE_TYPE
        );
    }
    Ok((m, bytes))
}

/// How to pull.
pub struct PullOptions<'a> {
    /// The key the image's signature must verify with.
    pub key: &'a PublicKey,
    /// Which image of a multi-arch version.
    pub arch: Option<&'a str>,
    /// Which hardware.
    pub hardware: Option<&'a str>,
    /// Pull even a revoked digest.
    pub allow_revoked: bool,
    /// No progress.
    pub quiet: bool,
}

/// Pull into `dest` (replaced only by a complete, verified directory). Returns the image
/// manifest's digest.
pub fn pull(client: &Client, dest: &Path, opts: &PullOptions<'_>) -> Result<String> {
    let r = &client.reference;
    // Before any transfer: a pull that could not be put in place is better refused at once.
    crate::build::publish::replaceable(
        dest,
        "pull",
        "give a new path (or an image directory to replace)",
    )?;
    let res = resolve(client)?;
    if let Some(w) = super::promote::check_channel_tag(client, &res.top.0, opts.key)? {
        if !opts.quiet {
            eprintln!("warning: {w}");
        }
    }
    let listed = match &res.index {
        Some(i) => select(i, opts.arch, opts.hardware, &r.to_string())?,
        None => res.descriptor(),
    };
    let chosen = listed.digest.clone();
    let (m, _) = image_manifest(client, &chosen)?;
    let mut subjects = vec![res.top.0.as_str()];
    if chosen != res.top.0 {
        subjects.push(chosen.as_str());
    }
    if let Some(f) = evidence::revoked(client, &subjects, opts.key)? {
        let msg = format!("{r}: {}", f.revocation_text());
        if !opts.allow_revoked {
            bail!("{msg} (--allow-revoked pulls it anyway)");
        }
        eprintln!("warning: {msg}");
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = dest
        .file_name()
        .ok_or_else(|| super::BadInput(format!("{}: not a directory name", dest.display())))?
        .to_string_lossy()
        .into_owned();
    let staging = crate::build::publish::Staging::create(&parent, &name)?;
    let work = staging.path().to_path_buf();
    for d in &m.layers {
        let title = d
            .title()
            .ok_or_else(|| anyhow!("{chosen}: a layer without a file name"))?;
        if !(image_dir::is_artifact(title)
            || title == image_dir::MANIFEST
            || title == image_dir::SIGNATURE)
            || title.contains('/')
            || m.layers.iter().filter(|l| l.title() == Some(title)).count() > 1
        {
            bail!("{chosen}: layer named `{title}` is not a file of an image directory");
        }
    }
    let live = crate::progress::live(opts.quiet);
    let multi = crate::progress::multi(live);
    // Without a disk.raw layer, disk.raw is rebuilt from disk.raw.zst while it downloads.
    let rebuild = !m
        .layers
        .iter()
        .any(|l| l.title() == Some(image_dir::DISK_RAW));
    let raw_path = work.join(image_dir::DISK_RAW);
    // manifest.json and its signature first (a few kB): an image that is not what the tag and
    // the index claim is refused before hundreds of megabytes are fetched, and the manifest
    // says whether disk.raw.zst is a file of the image or only its transfer form, which is
    // then decompressed without being kept. The full verification below reads these same
    // bytes again.
    let (first, rest): (Vec<&Descriptor>, Vec<&Descriptor>) = m.layers.iter().partition(|d| {
        d.title() == Some(image_dir::MANIFEST) || d.title() == Some(image_dir::SIGNATURE)
    });
    let fetch = |d: &Descriptor, keep: bool, unpack: Option<Rebuild>| {
        let title = d.title().unwrap_or_default();
        let bar = multi.add(crate::progress::transfer(title, d.size, live));
        let path = work.join(title);
        fetch_blob(client, d, keep.then_some(path.as_path()), unpack, &bar)
    };
    for d in &first {
        fetch(d, true, None)?;
    }
    let mp = work.join(image_dir::MANIFEST);
    // Both arrived: a signature that does not verify fails the pull now as it would at the
    // end. Without one of them, the full verification says what is missing.
    let early = match std::fs::read(&mp)
        .ok()
        .zip(std::fs::read_to_string(work.join(image_dir::SIGNATURE)).ok())
    {
        Some((bytes, sig)) => {
            opts.key
                .verify_bytes(&bytes, &sig)
                .map_err(anyhow::Error::from)
                .context("manifest.json's signature")
                .with_context(|| format!("{r}: the pulled image does not verify"))?;
            Some(image_dir::Manifest::parse(&bytes, &mp)?)
        }
        None => None,
    };
    if let Some(signed) = &early {
        check_claims(r, &listed, signed, opts)?;
    }
    let zst_listed = early
        .as_ref()
        .is_none_or(|m| m.artifacts.contains_key(image_dir::DISK_ZST));
    // Where disk.raw comes from. disk.qcow2 (a file of the image, so fetched anyway) holds
    // the same data, uncompressed: copying its clusters out costs less than decompressing
    // disk.raw.zst, and disk.raw.zst, when only disk.raw's transfer form, is then not
    // fetched at all. disk.raw.zst remains the way when it is a file of the image itself, or
    // when the qcow2 file turns out not to be readable front to back.
    // A disk.raw the qcow2 file gave that is not the signed one (a qcow2 file read otherwise
    // than the builder's tools read it) is a reason to take disk.raw.zst too, not a failed
    // pull: the verification below holds whichever way disk.raw came.
    let signed_raw = early
        .as_ref()
        .and_then(|m| m.artifacts.get(image_dir::DISK_RAW))
        .map(|a| (a.sha256.clone(), a.size));
    let qcow2 = |d: &Descriptor| d.title() == Some(Format::Qcow2.file_name());
    let from_qcow2 = match &signed_raw {
        Some((_, size)) if rebuild && !zst_listed && rest.iter().any(|d| qcow2(d)) => Some(*size),
        _ => None,
    };
    let zst = |d: &Descriptor| rebuild && d.title() == Some(image_dir::DISK_ZST);
    let (later, mut now): (Vec<&Descriptor>, Vec<&Descriptor>) = rest
        .into_iter()
        .partition(|d| from_qcow2.is_some() && zst(d));
    // The largest first: they are the longest paths, and the small ones fill in beside them.
    now.sort_by_key(|d| std::cmp::Reverse(d.size));
    let rebuilt = super::parallel(&now, |d| {
        let unpack = match from_qcow2 {
            Some(size) if qcow2(d) => Some(Rebuild::qcow2(&raw_path, size, d.size)?),
            _ if zst(d) => Some(Rebuild::zstd(&raw_path)?),
            _ => None,
        };
        let rebuilt = fetch(d, !zst(d) || zst_listed, unpack)?;
        Ok((qcow2(d), rebuilt))
    })?;
    let note = |e: &anyhow::Error| {
        if !opts.quiet {
            eprintln!(
                "note: disk.raw not rebuilt from {} ({e:#}); fetching disk.raw.zst",
                Format::Qcow2.file_name()
            );
        }
    };
    let mut raw = None;
    for (from_qcow2, r) in rebuilt {
        let fallback = from_qcow2 && !later.is_empty();
        match r {
            Some(Ok(r)) if fallback && signed_raw.as_ref() != Some(&r) => note(&anyhow!(
                "the disk it describes hashes to sha256:{}, {} bytes, not the signed disk.raw",
                r.0,
                r.1
            )),
            Some(Ok(r)) => raw = Some(r),
            Some(Err(e)) if fallback => note(&e),
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
    if raw.is_none() {
        for d in &later {
            if let Some(r) = fetch(d, zst_listed, Some(Rebuild::zstd(&raw_path)?))? {
                raw = Some(r?);
            }
        }
    }
    // Each blob was hashed as it streamed and matched its descriptor: those digests are what
    // the signed manifest is checked against, with disk.raw hashed as it was rebuilt.
    let mut known = image_dir::Known::default();
    for d in &m.layers {
        let title = d.title().unwrap_or_default().to_string();
        known.hashed.insert(title, (d.hex().to_string(), d.size));
    }
    if let Some(raw) = raw {
        known.hashed.insert(image_dir::DISK_RAW.to_string(), raw);
    }
    let dir = ImageDir::open_verified_with(&work, opts.key, &known)
        .with_context(|| format!("{r}: the pulled image does not verify"))?;
    check_claims(r, &listed, &dir.manifest, opts)?;
    let extra = dir.unlisted_files()?;
    let extra: Vec<&String> = extra
        .iter()
        .filter(|n| n.as_str() != crate::build::publish::MARKER)
        .collect();
    if !extra.is_empty() {
        bail!("{r}: files the signed manifest does not list: {extra:?}");
    }
    staging.publish()?;
    Ok(chosen)
}

/// The signed manifest of an image must be what the reference and the index said it was. A
/// registry, or anyone who can push to it, can put any image's signed bytes under any tag: a
/// valid signature alone would let it serve an older release under a newer version tag, or
/// one architecture's image as another's. The user's `--arch` and `--hardware` are held to it
/// too (a pinned image digest is picked from no index).
fn check_claims(
    r: &Reference,
    listed: &Descriptor,
    signed: &Manifest,
    opts: &PullOptions<'_>,
) -> Result<()> {
    check_listing(r, listed, signed)?;
    if let Some(a) = opts.arch.filter(|a| *a != signed.arch) {
        bail!(
            "--arch {a}: {r} is a {} image by its signed manifest",
            signed.arch
        );
    }
    if let Some(h) = opts.hardware.filter(|h| *h != signed.hardware.name) {
        bail!(
            "--hardware {h}: {r} is built for {} by its signed manifest",
            signed.hardware.name
        );
    }
    Ok(())
}

/// [`check_claims`] without the user's `--arch` and `--hardware`: what the tag and the index
/// say (promote checks each image of a version with it).
pub fn check_listing(r: &Reference, listed: &Descriptor, signed: &Manifest) -> Result<()> {
    if let Some(t) = r.tag.as_deref() {
        if tag_kind(t) == TagKind::Version && version_tag(&signed.version) != t {
            bail!(
                "{r}: the signed manifest is {} {}, not version {t}: the tag names another release (refused)",
                signed.image,
                signed.version
            );
        }
    }
    let claims = [
        ("architecture", artifact::ARCH, &signed.arch),
        ("hardware", artifact::HARDWARE, &signed.hardware.name),
    ];
    for (what, key, truth) in claims {
        if let Some(c) = listed.annotations.get(key).filter(|c| *c != truth) {
            bail!(
                "{r}: {} is listed as {what} {c}, but its signed manifest says {truth} (refused)",
                listed.digest
            );
        }
    }
    Ok(())
}

/// Stream one blob to `path`, hashing it, bounded by its descriptor's size, and feeding it to
/// `unpack` when given. The blob must be what its descriptor names; then comes what `unpack`
/// made of it (the hex SHA-256 and size of the file it rebuilt), or why it made nothing.
fn fetch_blob(
    client: &Client,
    d: &Descriptor,
    path: Option<&Path>,
    mut unpack: Option<Rebuild>,
    bar: &indicatif::ProgressBar,
) -> Result<Option<Result<(String, u64)>>> {
    let name = d.title().unwrap_or("blob");
    let reader = bar.wrap_read(client.get_blob(&d.digest)?.take(d.size.saturating_add(1)));
    let mut hr = HashingReader::new(reader);
    // No path: the blob is only the transfer form of what `unpack` rebuilds.
    let mut f = match path {
        Some(p) => Some(File::create(p).with_context(|| format!("creating {}", p.display()))?),
        None => None,
    };
    // disk.raw is rebuilt as the blob arrives: one pass, no second read.
    let mut unpack_error = None;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        crate::interrupt::check()?;
        let n = hr
            .read(&mut buf)
            .with_context(|| format!("fetching {name} ({})", d.digest))?;
        if n == 0 {
            break;
        }
        if let (Some(f), Some(p)) = (f.as_mut(), path) {
            f.write_all(&buf[..n])
                .with_context(|| format!("writing {}", p.display()))?;
        }
        if let Some(u) = unpack.as_mut() {
            if let Err(e) = u.feed(&buf[..n]) {
                // Go on hashing: a blob that is not what the manifest names is the better
                // message, and only a blob that is would make this a broken image.
                unpack_error = Some(e);
                unpack = None;
            }
        }
    }
    bar.finish_and_clear();
    let (hex, size) = hr.finish();
    if size != d.size || format!("sha256:{hex}") != d.digest {
        bail!(
            "{name}: the registry sent {size} bytes hashing to sha256:{hex}; the manifest says {} bytes, {} (refusing the pull)",
            d.size,
            d.digest
        );
    }
    if let Some(e) = unpack_error {
        return Ok(Some(Err(
            e.context(format!("{name}: rebuilding disk.raw from it"))
        )));
    }
    Ok(unpack.map(|u| {
        u.finish()
            .with_context(|| format!("{name}: rebuilding disk.raw from it"))
    }))
}
