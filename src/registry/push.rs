//! `ingot push`: verified image directories up as one index per version.
//!
//! Blobs the repository already has are skipped (HEAD), blobs this machine pushed to another
//! repository of the same registry are mounted, large blobs go up in chunks whose session is
//! remembered on disk after every chunk, so an interrupted push resumes where the registry
//! says it stopped. Version tags are write-once: a tag that names another digest is refused.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use super::artifact::{self, LocalImage};
use super::client::{Body, Client};
use super::reference::Reference;
use super::types::{self, Descriptor};
use super::BadInput;
use crate::base::fsx;
use crate::image_dir::ImageDir;
use crate::trust::minisign::PublicKey;

/// Default chunk size for uploads (`INGOT_REGISTRY_CHUNK` overrides, in bytes).
pub const DEFAULT_CHUNK: u64 = 32 << 20;

/// What a push did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Pushed {
    /// The reference pushed to.
    pub reference: String,
    /// The index digest the tag names (empty with `no_index`).
    pub digest: String,
    /// Each image: (id, manifest digest).
    pub images: Vec<(String, String)>,
    /// Blobs sent.
    pub uploaded: usize,
    /// Bytes sent (a resumed upload counts only what this push sent).
    pub uploaded_bytes: u64,
    /// Blobs the repository already had.
    pub skipped: usize,
    /// Blobs mounted from another repository.
    pub mounted: usize,
    /// The tag already named this exact index.
    pub unchanged: bool,
}

/// How to push.
pub struct PushOptions<'a> {
    /// Key the directories' signatures must verify with.
    pub key: Option<&'a PublicKey>,
    /// Push a directory without a signature (digests are still checked).
    pub allow_unsigned: bool,
    /// No progress output.
    pub quiet: bool,
    /// Push blobs and image manifests only (by digest): no index, no tag. For CI fan-out,
    /// where each runner pushes its own image and one last push of every directory tags
    /// the version's index (uploading nothing again).
    pub no_index: bool,
}

/// Open the directories and check their signatures (with a key), or refuse unsigned ones
/// unless they are allowed. The digests are checked by [`push`], which hashes every file as
/// it reads it for the registry: one pass over each file, and nothing is published (no image
/// manifest, no tag) until every file matches the manifest.
pub fn open_dirs(dirs: &[PathBuf], opts: &PushOptions<'_>) -> Result<Vec<ImageDir>> {
    let later = crate::image_dir::Known {
        caller_checks_all: true,
        ..Default::default()
    };
    let mut out = Vec::new();
    for d in dirs {
        ImageDir::check_given(d)?;
        let dir = match opts.key {
            Some(k) => ImageDir::open_verified_with(d, k, &later)?,
            None if opts.allow_unsigned => ImageDir::open(d)?,
            None => {
                return Err(BadInput(format!(
                    "{}: push verifies the signature first: give --key PUB (or --allow-unsigned to push an unsigned image)",
                    d.display()
                ))
                .into())
            }
        };
        out.push(dir);
    }
    Ok(out)
}

/// Push `dirs` as one version under `reference` (whose tag must be that version).
pub fn push(client: &Client, dirs: &[ImageDir], opts: &PushOptions<'_>) -> Result<Pushed> {
    let reference = &client.reference;
    if reference.digest.is_some() {
        return Err(BadInput(format!("{reference}: push takes a tag, not a digest")).into());
    }
    let images: Vec<LocalImage> = dirs.iter().map(artifact::image).collect::<Result<_>>()?;
    let (_, index_bytes) = artifact::index(&images)?;
    let version = &dirs[0].manifest.version;
    let want = super::reference::version_tag(version);
    let tag = match (&reference.tag, opts.no_index) {
        (Some(t), _) => t.clone(),
        (None, true) => want.clone(),
        (None, false) => {
            return Err(BadInput(format!(
                "{reference}: push needs a tag, the images' version (for example :{want})"
            ))
            .into())
        }
    };
    if tag != want {
        let spelt = if want != *version {
            format!(" (`{version}` as a tag: OCI tags have no `+`, so build metadata follows `_`)")
        } else {
            String::new()
        };
        return Err(BadInput(format!(
            "{reference}: the tag must be the images' version {want}{spelt} (version tags are write-once; channels move with `ingot promote`)"
        ))
        .into());
    }
    let index_digest = format!("sha256:{}", fsx::sha256_hex(&index_bytes));
    let existing = if opts.no_index {
        None
    } else {
        client.get_manifest(&tag)?
    };
    if let Some((_, _, d)) = &existing {
        if *d != index_digest {
            bail!(
                "{reference} already names {d}, and these images make {index_digest}: version tags are write-once (build a new version)"
            );
        }
    }
    let mut done = Pushed {
        reference: reference.to_string(),
        digest: index_digest.clone(),
        images: Vec::new(),
        uploaded: 0,
        uploaded_bytes: 0,
        skipped: 0,
        mounted: 0,
        unchanged: existing.is_some(),
    };
    let chunk = chunk_size()?;
    let mounts = MountRecord::open(&reference.registry);
    let empty = types::empty_config();
    let mut blobs: Vec<(Descriptor, Source)> = vec![(empty, Source::Bytes(types::EMPTY_BLOB))];
    let mut twins = Vec::new();
    for (img, dir) in images.iter().zip(dirs) {
        for (d, path) in &img.files {
            // An artifact's digest is the signed manifest's claim, checked as the file is
            // read; the other layers' digests were just hashed from the files themselves.
            let check = d
                .title()
                .is_some_and(|t| dir.manifest.artifacts.contains_key(t));
            let src = Source::File {
                path: path.clone(),
                check,
            };
            if blobs.iter().any(|(b, _)| b.digest == d.digest) {
                // The same content in another directory travels once; its file is hashed too.
                twins.push((d.clone(), src));
            } else {
                blobs.push((d.clone(), src));
            }
        }
    }
    let live = crate::progress::live(opts.quiet);
    let multi = crate::progress::multi(live);
    let outcomes = super::parallel(&blobs, |(d, src)| -> Result<Sent> {
        crate::interrupt::check()?;
        if client.has_blob(&d.digest)? {
            src.check_whole(d)?;
            return Ok(Sent::Skipped);
        }
        if let Some(from) = mounts.source_for(&d.digest, &reference.repository) {
            // Checked once mounted (the record is only a hint): the registry's copy is
            // whatever has that digest, but a push stands for the local directory.
            if client.mount(&d.digest, &from)? {
                src.check_whole(d)?;
                mounts.record(&d.digest, &reference.repository);
                return Ok(Sent::Mounted);
            }
        }
        let name = d.title().unwrap_or("config").to_string();
        let bar = multi.add(crate::progress::transfer(&name, d.size, live));
        let n = upload(client, d, src, &name, chunk, opts.quiet, &bar)?;
        mounts.record(&d.digest, &reference.repository);
        Ok(Sent::Uploaded(n))
    })?;
    super::parallel(&twins, |(d, src)| src.check_whole(d))?;
    for o in outcomes {
        match o {
            Sent::Skipped => done.skipped += 1,
            Sent::Mounted => done.mounted += 1,
            Sent::Uploaded(n) => {
                done.uploaded += 1;
                done.uploaded_bytes += n;
            }
        }
    }
    for (img, dir) in images.iter().zip(dirs) {
        client.put_manifest(&img.entry.digest, types::MANIFEST_MEDIA, &img.bytes)?;
        done.images
            .push((dir.manifest.id.clone(), img.entry.digest.clone()));
    }
    if opts.no_index {
        done.digest = String::new();
    } else if existing.is_none() {
        // Last look before the tag moves: another pusher may have won the race.
        if let Some((_, _, d)) = client.get_manifest(&tag)? {
            if d != index_digest {
                bail!("{reference} was pushed by someone else meanwhile ({d}); version tags are write-once");
            }
        }
        client.put_manifest(&tag, types::INDEX_MEDIA, &index_bytes)?;
    }
    Ok(done)
}

/// What happened to one blob.
enum Sent {
    Skipped,
    Mounted,
    Uploaded(u64),
}

/// Where a blob's bytes come from.
enum Source {
    Bytes(&'static [u8]),
    /// A file; `check`: its digest is a claim of the signed manifest, to be checked.
    File {
        path: PathBuf,
        check: bool,
    },
}

impl Source {
    /// For a blob that is not uploaded (the registry has it, or mounts it): hash the file
    /// all the same, since the push stands for the directory.
    fn check_whole(&self, d: &Descriptor) -> Result<()> {
        if let Source::File { path, check: true } = self {
            let (got, size) = fsx::sha256_path(path)?;
            check_file(d, path, &got, size)?;
        }
        Ok(())
    }
}

/// A file's digest against the signed manifest's (the same verdict `verify` gives).
fn check_file(d: &Descriptor, path: &Path, got: &str, size: u64) -> Result<()> {
    crate::image_dir::check_digest(d.title().unwrap_or("blob"), got, size, d.hex(), d.size)
        .with_context(|| format!("refusing to push {}", path.display()))
}

fn chunk_size() -> Result<u64> {
    match std::env::var("INGOT_REGISTRY_CHUNK") {
        Ok(s) if !s.trim().is_empty() => {
            let n = crate::config::ByteSize::parse(s.trim())
                .map_err(|e| BadInput(format!("INGOT_REGISTRY_CHUNK: {e}")))?
                .0;
            if n < 64 << 10 {
                return Err(BadInput("INGOT_REGISTRY_CHUNK: at least 64KiB".into()).into());
            }
            Ok(n)
        }
        _ => Ok(DEFAULT_CHUNK),
    }
}

fn upload(
    client: &Client,
    d: &Descriptor,
    src: &Source,
    name: &str,
    chunk: u64,
    quiet: bool,
    bar: &indicatif::ProgressBar,
) -> Result<u64> {
    let (path, check) = match src {
        Source::Bytes(b) => {
            let url = client.start_upload()?;
            client.finish_upload(&url, &d.digest, Body::Bytes(b))?;
            return Ok(b.len() as u64);
        }
        Source::File { path, check } => (path, *check),
    };
    // A file of another length fails before a byte is sent (reads below stop at the size).
    let len = std::fs::metadata(path)
        .with_context(|| format!("opening {}", path.display()))?
        .len();
    if len != d.size {
        src.check_whole(d)?;
    }
    let live = crate::progress::live(quiet);
    let result = if d.size <= chunk {
        crate::progress::log(
            quiet || live,
            &format!("uploading {name} ({} bytes)", d.size),
        );
        // Small enough to hold: hashed before it is sent, then sent in one request.
        let bytes = fsx::read(path)?;
        if check {
            check_file(d, path, &fsx::sha256_hex(&bytes), bytes.len() as u64)?;
        }
        let url = client.start_upload()?;
        client
            .finish_upload(&url, &d.digest, Body::Bytes(&bytes))
            .map(|()| {
                bar.set_position(d.size);
                d.size
            })
    } else {
        chunked(client, d, path, check, name, chunk, quiet, live, bar)
    };
    bar.finish_and_clear();
    result
}

/// The state file of one chunked upload: the session URL after the last chunk the registry
/// took, and how many bytes that was.
fn state_path(client: &Client, digest: &str) -> Option<PathBuf> {
    let cache = crate::packages::cache::Cache::open(None).ok()?;
    let key = fsx::sha256_hex(
        format!(
            "{}/{}",
            client.reference.registry, client.reference.repository
        )
        .as_bytes(),
    );
    // The folder is made when the first chunk's state is saved, not for every push.
    let dir = cache.root().join("registry-uploads").join(&key[..16]);
    Some(dir.join(digest.replace(':', "-")))
}

#[allow(clippy::too_many_arguments)]
fn chunked(
    client: &Client,
    d: &Descriptor,
    path: &Path,
    check: bool,
    name: &str,
    chunk: u64,
    quiet: bool,
    live: bool,
    bar: &indicatif::ProgressBar,
) -> Result<u64> {
    let state = state_path(client, &d.digest);
    let mut start = 0u64;
    let mut url = None;
    if let Some(s) = state
        .as_deref()
        .and_then(|p| std::fs::read_to_string(p).ok())
    {
        if let Some(saved) = s.lines().next() {
            match client.upload_status(saved.trim())? {
                Some((held, next)) if held <= d.size => {
                    start = held;
                    url = Some(next);
                    crate::progress::log(
                        quiet,
                        &format!("resuming {name} at byte {held} of {}", d.size),
                    );
                }
                _ => crate::progress::log(
                    quiet,
                    &format!(
                        "{name}: the registry no longer has the interrupted upload; starting again"
                    ),
                ),
            }
        }
    }
    let resumed_at = start;
    let mut url = match url {
        Some(u) => u,
        None => client.start_upload()?,
    };
    let chunks = d.size.div_ceil(chunk);
    crate::progress::log(
        quiet || live,
        &format!("uploading {name} ({} bytes) in {chunks} chunks", d.size),
    );
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut buf = vec![0u8; usize::try_from(chunk).unwrap_or(usize::MAX)];
    // The digest covers the whole file: what the registry already holds is hashed from the
    // file here, the rest as each chunk is read.
    let mut hash = check.then(Sha256::new);
    match hash.as_mut() {
        Some(h) => {
            let mut held = start;
            while held > 0 {
                let want = usize::try_from(held.min(chunk)).unwrap_or(buf.len());
                f.read_exact(&mut buf[..want])
                    .with_context(|| format!("reading {}", path.display()))?;
                h.update(&buf[..want]);
                held -= want as u64;
            }
        }
        None => {
            f.seek(SeekFrom::Start(start))
                .with_context(|| format!("seeking in {}", path.display()))?;
        }
    }
    bar.set_position(start);
    while start < d.size {
        // Stop only between chunks: the registry then holds whole chunks, and the saved
        // session resumes exactly there.
        crate::interrupt::check()?;
        let want = usize::try_from((d.size - start).min(chunk)).unwrap_or(buf.len());
        f.read_exact(&mut buf[..want])
            .with_context(|| format!("reading {}", path.display()))?;
        let data = &buf[..want];
        // Hashed on a second thread while the registry takes the chunk: the registry is the
        // slow side of a push, so the check costs it no time.
        url = std::thread::scope(|sc| {
            let hashing = hash.as_mut().map(|h| sc.spawn(move || h.update(data)));
            let sent = client.patch(&url, start, data);
            if let Some(t) = hashing {
                t.join()
                    .map_err(|_| anyhow::anyhow!("the hashing thread panicked"))?;
            }
            sent
        })?;
        start += want as u64;
        if let Some(p) = &state {
            if let Some(dir) = p.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let _ = fsx::write_atomic(p, format!("{url}\n{start}\n").as_bytes());
        }
        bar.set_position(start);
        if !live && !quiet {
            eprintln!(
                "{name}: {} of {chunks} chunks sent",
                start.div_ceil(chunk).min(chunks)
            );
        }
    }
    if let Some(h) = hash {
        if let Err(e) = check_file(d, path, &hex::encode(h.finalize()), d.size) {
            // Never completed: the registry drops the session (asked here; best effort).
            let _ = client.send("DELETE", &url, &[], Body::Empty, "cancelling an upload");
            if let Some(p) = &state {
                let _ = std::fs::remove_file(p);
            }
            return Err(e);
        }
    }
    client.finish_upload(&url, &d.digest, Body::Empty)?;
    if let Some(p) = &state {
        let _ = std::fs::remove_file(p);
        // Gone too once no other upload to that repository is unfinished (fails otherwise).
        if let Some(dir) = p.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
    Ok(d.size - resumed_at)
}

/// Which repositories of a registry this machine has pushed each blob to, so a push to a new
/// repository can mount instead of upload. A hint only: a failed mount falls back to upload.
struct MountRecord {
    path: Option<PathBuf>,
}

impl MountRecord {
    fn open(registry: &str) -> Self {
        let path = crate::packages::cache::Cache::open(None).ok().map(|c| {
            c.root()
                .join("registry-blobs")
                .join(&fsx::sha256_hex(registry.as_bytes())[..16])
        });
        MountRecord { path }
    }

    fn source_for(&self, digest: &str, repo: &str) -> Option<String> {
        let p = self.path.as_ref()?.join(digest.replace(':', "-"));
        let text = std::fs::read_to_string(p).ok()?;
        text.lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && *l != repo)
            .map(str::to_string)
    }

    fn record(&self, digest: &str, repo: &str) {
        let Some(dir) = &self.path else { return };
        let _ = std::fs::create_dir_all(dir);
        let p = dir.join(digest.replace(':', "-"));
        let mut repos: Vec<String> = std::fs::read_to_string(&p)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        if !repos.iter().any(|r| r == repo) {
            repos.insert(0, repo.to_string());
            repos.truncate(8);
            let _ = fsx::write_atomic(&p, (repos.join("\n") + "\n").as_bytes());
        }
    }
}

/// The reference a push writes, checked before any directory is read.
pub fn parse_target(s: &str) -> Result<Reference> {
    Ok(Reference::parse(s)?)
}
