//! The build: profile + hardware → packages → tree → assembled system → sysprep → filesystems →
//! GPT disk → lockfile, SBOMs, provenance, manifest and signature, all written into a temporary
//! directory that replaces the previous image only when complete.

mod attest;
mod bundle;
mod image;
pub mod publish;
pub mod reproduce;
mod system;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::assemble::{self, Identity};
use crate::config::{self, ByteSize, Hardware, Profile};
use crate::disk;
use crate::fs::ext4;
use crate::image_dir::Manifest;
use crate::packages::{self, Source};
use crate::progress::{log, Stages};
use crate::trust::minisign;

/// Options of one build.
#[derive(Debug, Clone)]
pub struct Options {
    /// Output root.
    pub out: PathBuf,
    /// Use the lockfile exactly.
    pub locked: bool,
    /// Signing key, read and checked before any build starts.
    pub key: Option<Arc<minisign::SecretKey>>,
    /// Print progress.
    pub quiet: bool,
    /// Image directories of earlier versions to make delta bundles from.
    pub delta_from: Vec<PathBuf>,
}

/// What a build produced.
#[derive(Clone)]
pub struct Built {
    /// Image directory.
    pub dir: PathBuf,
    /// Identity.
    pub id: String,
    /// Bytes of data in disk.raw (allocated, not apparent).
    pub data_bytes: u64,
    /// The disk layout.
    pub layout: disk::Layout,
    /// The root filesystem's plan, to say which file a byte of disk.raw belongs to.
    pub root_plan: Arc<ext4::Plan>,
    /// What was written to manifest.json.
    pub manifest: Manifest,
}

impl Built {
    /// What a byte offset of `disk.raw` holds: GPT, which partition, and in the root
    /// filesystem which file or metadata.
    pub fn describe(&self, offset: u64) -> String {
        for (i, p) in self.layout.partitions.iter().enumerate() {
            if offset >= p.offset && offset < p.offset + p.size {
                let inner = offset - p.offset;
                return match i {
                    0 => format!("partition `{}` (FAT), byte {inner}", p.name),
                    1 => format!(
                        "partition `{}` (ext4), {}",
                        p.name,
                        self.root_plan.describe(inner)
                    ),
                    _ => format!("partition `{}`, byte {inner}", p.name),
                };
            }
        }
        "the GPT headers or partition entries".into()
    }
}

fn digest_files(paths: &[&Path]) -> Result<String> {
    let mut h = Sha256::new();
    for p in paths {
        h.update(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?);
    }
    Ok(hex::encode(h.finalize()))
}

/// Latest `SOURCE_DATE_EPOCH` accepted: 9999-12-31T23:59:59Z (later dates do not fit the
/// four-digit years of RFC 3339 and FAT).
const MAX_EPOCH: i64 = 253_402_300_799;

/// `SOURCE_DATE_EPOCH` from the environment: none when unset or empty, an input error (exit 2)
/// when it is not a whole number of seconds from 1970 to 9999.
pub fn source_date_epoch() -> Result<Option<i64>, config::ConfigError> {
    let bad = |s: &str, why: &str| config::ConfigError::Rule {
        path: PathBuf::from("SOURCE_DATE_EPOCH"),
        message: format!("`{s}` {why}"),
    };
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) if !s.trim().is_empty() => {
            let v: i64 = s
                .trim()
                .parse()
                .map_err(|_| bad(&s, "is not a whole number of seconds"))?;
            if !(0..=MAX_EPOCH).contains(&v) {
                return Err(bad(&s, "is outside 1970-01-01 to 9999-12-31"));
            }
            Ok(Some(v))
        }
        _ => Ok(None),
    }
}

/// The identity of `profile`'s image for `arch`, whose `id()` names its directory in `--out`
/// (the epoch is 0 until the packages are unpacked and give it).
pub fn identity(profile: &Profile, arch: config::Arch) -> Identity {
    Identity {
        name: profile.image.name.clone(),
        version: profile.image.version.0.clone(),
        arch: arch.name().to_string(),
        epoch: 0,
    }
}

/// What a build of `profile` for `hw` needs that can be checked before any work: the host's
/// tools for the formats and the BIOS boot code, and what an A/B image asks of the build (a
/// key to sign its bundle, a version that can name boot entries). `signed`: a key was given.
pub fn preflight(profile: &Profile, hw: &Hardware, signed: bool) -> Result<()> {
    // The manifest records the hardware's firmware, and the boot test boots with it: a name
    // with no firmware file, or one of the other arch, is the hardware profile's mistake at
    // its line, said now rather than after the disk is written.
    config::firmware_for(hw)?;
    // Converted formats need qemu-img: say so before any work, not after the disk is written.
    if let Some(f) = profile.output.formats.first() {
        if !host_has("qemu-img") {
            bail!(
                "{}: [output] formats asks for {}, which needs qemu-img: install the Debian package qemu-utils",
                profile.path.display(),
                f.file_name()
            );
        }
    }
    if hw.disk.bios && !host_has("grub-mkimage") {
        bail!(
            "{}: disk.bios needs grub-mkimage on the build host: install the Debian package grub-common",
            hw.path.display()
        );
    }
    if hw.ab.is_some() && !signed {
        return Err(config::ConfigError::Rule {
            path: hw.path.clone(),
            message: "[ab]: an A/B image carries the public key its update bundles are signed with, and its bundle is signed at build time: build it with --key".into(),
        }
        .into());
    }
    if hw.ab.is_some() && profile.image.version.0.contains('+') {
        return Err(config::rule_at(
            &profile.files(),
            Some("[image]"),
            "version",
            format!(
                "image.version: `{}` has build metadata (`+…`), which an A/B image for {} cannot have: the version names its boot entries, where `+` starts systemd-boot's try counter",
                profile.image.version.0,
                hw.path.display()
            ),
        )
        .into());
    }
    Ok(())
}

/// Build one image for one hardware profile: the stages in order, each handing the next a
/// typed value (package set and fetched packages → unpacked tree → [`system::System`] →
/// [`image::DiskImage`] → the manifest), all written into a staging directory that replaces the
/// previous image only when complete.
pub fn build(profile: &Profile, hw: &Hardware, src: &Source, opts: &Options) -> Result<Built> {
    let arch = hw.arch;
    let id = identity(profile, arch);
    let ident = id.id();
    preflight(profile, hw, opts.key.is_some())?;
    let staging = publish::Staging::create(&opts.out, &ident)?;
    let work = staging.path().to_path_buf();

    let mut stages = Stages::new(opts.quiet);
    stages.next(&format!("[{ident}] resolving packages"))?;
    let set = packages::package_set(src, profile, hw, opts.locked)?;
    stages.next_plain(&format!(
        "[{ident}] fetching {} packages",
        set.package.len()
    ))?;
    let ready = packages::fetch_all(src, &set.package)?;
    stages.next(&format!("[{ident}] unpacking"))?;
    let tree = packages::unpack_image(&ready, arch)?;
    let epoch = match source_date_epoch()? {
        Some(e) => e,
        None => tree.iter().map(|(_, e)| e.mtime).max().unwrap_or(0),
    };
    let id = Identity { epoch, ..id };
    let profile_digest = digest_files(
        &profile
            .sources
            .iter()
            .map(PathBuf::as_path)
            .collect::<Vec<_>>(),
    )?;
    let hw_digest = digest_files(&[hw.path.as_path()])?;
    let labels = assemble::labels(profile, hw, &id, &profile_digest);

    stages.next(&format!("[{ident}] assembling"))?;
    let update_key = opts.key.as_ref().map(|k| k.public());
    let sys = system::system(
        tree,
        &ready,
        profile,
        hw,
        &id,
        &labels,
        &mut stages,
        &ident,
        update_key.as_ref(),
    )?;
    let img = image::write_disk(&sys, profile, hw, &id, &work, &mut stages)?;
    let bases = bundle::bases_for(&opts.delta_from, hw, &id.name)?;
    bundle::write(
        &work,
        &sys,
        &img,
        profile,
        hw,
        &id,
        opts.key.as_deref(),
        &bases,
        &mut stages,
    )?;
    let inputs = attest::Inputs {
        profile,
        profile_digest: &profile_digest,
        hw,
        hw_digest: &hw_digest,
        src,
        set: &set,
        ready: &ready,
        opts,
    };
    let manifest = attest::attest(&work, &inputs, &sys, &img, &id, &labels, &mut stages)?;
    crate::interrupt::check()?;
    // Replace the previous image only now that everything is complete.
    let final_dir = staging.publish()?;
    stages.end();
    log(
        opts.quiet,
        &format!(
            "[{ident}] done: {} ({} of data)",
            final_dir.display(),
            ByteSize(img.data_bytes)
        ),
    );
    Ok(Built {
        dir: final_dir,
        id: ident,
        data_bytes: img.data_bytes,
        layout: img.layout,
        root_plan: Arc::new(img.plan),
        manifest,
    })
}

/// Does the build host run `tool --version`?
fn host_has(tool: &str) -> bool {
    std::process::Command::new(tool)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// What `--out` must be for images of `profile` on each of `hws`, checked before any work:
/// a directory (or nothing yet), where each image replaces only an image directory, never a
/// directory of the user's own that has the image's name. A build that replaces another
/// hardware profile's image of the same name, version and arch (a plain and an A/B build of
/// one arch) says so first.
pub fn check_out(out: &Path, profile: &Profile, hws: &[Hardware]) -> Result<()> {
    if out.exists() && !out.is_dir() {
        return Err(crate::base::BadInput(format!(
            "--out {}: exists and is not a directory",
            out.display()
        ))
        .into());
    }
    for hw in hws {
        let ident = identity(profile, hw.arch).id();
        let dir = out.join(&ident);
        publish::replaceable(&dir, "the build", "move it away or give another --out")?;
        if let Some(other) = replaces_other_hardware(&dir, &hw.name) {
            // Not quiet-able: an image is about to be lost, said before the minutes of work.
            eprintln!(
                "warning: {} holds {ident} built for hardware {other}; this build for {} replaces it when done (give --out another directory to keep both)",
                dir.display(),
                hw.name
            );
        }
    }
    Ok(())
}

/// The hardware name of the image already at `dir` when it is not `hw` (the directory name
/// holds the image's name, version and arch, but not its hardware: a plain and an A/B build of
/// one arch share it).
fn replaces_other_hardware(dir: &Path, hw: &str) -> Option<String> {
    let prev = crate::image_dir::ImageDir::open(dir).ok()?;
    (prev.manifest.hardware.name != hw).then_some(prev.manifest.hardware.name)
}
