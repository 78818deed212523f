//! One function per subcommand: read the inputs, call the library, print the result.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::{source, SourceOpts};
use crate::base::fsx;
use crate::build;
use crate::config;
use crate::image_dir::{self, ImageDir};
use crate::packages::{self, Lockfile};
use crate::progress;
use crate::trust::minisign;

/// `validate FILE...`.
pub fn validate(files: &[PathBuf], quiet: bool) -> Result<()> {
    for f in files {
        let kind = config::validate(f)?;
        if !quiet {
            println!("{}: ok ({kind:?})", f.display());
        }
    }
    Ok(())
}

/// Flags of `build`.
pub struct BuildFlags {
    /// Output root.
    pub out: PathBuf,
    /// Signing key.
    pub key: Option<PathBuf>,
    /// Use the lockfile.
    pub locked: bool,
    /// Build twice and compare.
    pub check_reproducible: bool,
    /// Earlier image directories to make delta bundles from.
    pub delta_from: Vec<PathBuf>,
    /// JSON on stdout.
    pub json: bool,
}

/// `build PROFILE --hardware HW...`.
pub fn build(
    profile: &Path,
    hardware: &[PathBuf],
    f: BuildFlags,
    so: &SourceOpts,
    quiet: bool,
) -> Result<()> {
    let p = config::load_profile(profile)?;
    let hws = hardware
        .iter()
        .map(|h| config::load_hardware_for(profile, h))
        .collect::<Result<Vec<_>, _>>()?;
    // One image directory per arch (`OUT/<name>-<version>-<arch>`): two hardware profiles of
    // one arch in one build would have the second silently replace the first.
    for (i, a) in hws.iter().enumerate() {
        if let Some(b) = hws[..i].iter().find(|b| b.arch == a.arch) {
            return Err(crate::base::BadInput(format!(
                "--hardware {} and --hardware {} are both {}: their images would be the same directory, {}; build them into separate --out directories",
                b.path.display(),
                a.path.display(),
                a.arch,
                build::identity(&p, a.arch).id()
            ))
            .into());
        }
    }
    // Everything checkable before any work: the key, the epoch.
    let key = f
        .key
        .as_deref()
        .map(minisign::SecretKey::from_file)
        .transpose()?
        .map(std::sync::Arc::new);
    build::source_date_epoch()?;
    for hw in &hws {
        build::preflight(&p, hw, key.is_some())?;
    }
    for d in &f.delta_from {
        let m = ImageDir::open(d)?.manifest;
        if m.image != p.image.name || !hws.iter().any(|h| h.name == m.hardware.name) {
            return Err(crate::base::BadInput(format!(
                "--delta-from {}: {} for {}, but this build makes {} for {}",
                d.display(),
                m.image,
                m.hardware.name,
                p.image.name,
                hws.iter()
                    .map(|h| h.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .into());
        }
    }
    build::check_out(&f.out, &p, &hws)?;
    let src = source(so, &p.distribution.suite, quiet)?;
    let mut report = Vec::new();
    for hw in &hws {
        let started = std::time::Instant::now();
        let opts = build::Options {
            out: f.out.clone(),
            locked: f.locked,
            key: key.clone(),
            quiet,
            delta_from: f.delta_from.clone(),
        };
        let b = build::build(&p, hw, &src, &opts)?;
        if f.check_reproducible {
            let again = f.out.join(".reproducibility");
            let b2 = build::build(
                &p,
                hw,
                &src,
                &build::Options {
                    out: again.clone(),
                    ..opts.clone()
                },
            )?;
            build::reproduce::compare_dirs(&b, &b2)?;
            let _ = std::fs::remove_dir_all(&again);
            if !f.json {
                println!("{}: reproducible (two builds byte-identical)", b.id);
            }
        }
        if f.json {
            report.push(build_summary(&b, f.check_reproducible, started.elapsed()));
        } else {
            println!("{}", b.dir.display());
        }
    }
    if f.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "images": report }))?
        );
    }
    Ok(())
}

/// One built image for `build --json`: what CI needs to pick the artifacts up.
fn build_summary(
    b: &build::Built,
    reproducible_checked: bool,
    took: Duration,
) -> serde_json::Value {
    let m = &b.manifest;
    json!({
        "dir": b.dir,
        "image": m.image,
        "version": m.version,
        "arch": m.arch,
        "hardware": m.hardware,
        "artifacts": m.artifacts,
        "data_bytes": b.data_bytes,
        "signed": b.dir.join(image_dir::SIGNATURE).exists(),
        "reproducible_checked": reproducible_checked,
        "seconds": (took.as_secs_f64() * 100.0).round() / 100.0,
    })
}

/// `lock PROFILE --hardware HW...`.
pub fn lock(profile: &Path, hardware: &[PathBuf], so: &SourceOpts, quiet: bool) -> Result<()> {
    let p = config::load_profile(profile)?;
    let src = source(so, &p.distribution.suite, quiet)?;
    let mut lock = Lockfile {
        version: Lockfile::VERSION,
        target: Vec::new(),
    };
    for h in hardware {
        let hw = config::load_hardware_for(profile, h)?;
        let pb = progress::spinner(
            &format!("resolving {} for {}", p.image.name, hw.name),
            progress::live(quiet),
        );
        let t = packages::resolve_target(&src, &p, &hw)?;
        pb.finish_and_clear();
        for s in &t.skipped {
            eprintln!("note: {}: {s}", hw.name);
        }
        lock.target.push(t);
    }
    let path = packages::lock_path(profile);
    fsx::write_atomic(&path, lock.to_toml()?.as_bytes())?;
    println!("{}", path.display());
    Ok(())
}

/// `fetch PROFILE --hardware HW...`.
pub fn fetch(
    profile: &Path,
    hardware: &[PathBuf],
    locked: bool,
    so: &SourceOpts,
    quiet: bool,
) -> Result<()> {
    let p = config::load_profile(profile)?;
    // Every hardware profile and its firmware, before the mirror is asked anything.
    let hws = hardware
        .iter()
        .map(|h| {
            let hw = config::load_hardware_for(profile, h)?;
            let fw = config::firmware_for(&hw)?;
            Ok((hw, fw))
        })
        .collect::<Result<Vec<_>>>()?;
    let src = source(so, &p.distribution.suite, quiet)?;
    for (hw, fw) in hws {
        let pb = progress::spinner(
            &format!("resolving {} for {}", p.image.name, hw.name),
            progress::live(quiet),
        );
        let set = packages::package_set(&src, &p, &hw, locked)?;
        pb.finish_and_clear();
        let ready = packages::fetch_all(&src, &set.package)?;
        packages::fetch_firmware(&src, &fw)?;
        println!(
            "{}: {} packages cached in {}",
            hw.name,
            ready.len(),
            src.cache.root().display()
        );
    }
    Ok(())
}

/// `keygen --out PREFIX`.
pub fn keygen(out: &Path) -> Result<()> {
    use std::io::Write;
    let bad = |m: String| -> anyhow::Error { crate::base::BadInput(m).into() };
    let skp = PathBuf::from(format!("{}.key", out.display()));
    let pkp = PathBuf::from(format!("{}.pub", out.display()));
    if skp.symlink_metadata().is_ok() {
        return Err(bad(format!(
            "{} exists; refusing to overwrite a secret key",
            skp.display()
        )));
    }
    if pkp.symlink_metadata().is_ok() {
        return Err(bad(format!(
            "{} exists; refusing to overwrite a public key others may trust (move it away first)",
            pkp.display()
        )));
    }
    let dir = match skp.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(bad(format!(
            "--out {}: {} is not a directory",
            out.display(),
            dir.display()
        )));
    }
    // Both halves are written under temporary names (the secret one mode 0600, as tempfile
    // creates it; the public one 0644) and linked into place without overwriting: a key pair
    // is all there or not at all, and a file that appeared meanwhile is never replaced.
    let sk = minisign::SecretKey::generate();
    let half = |text: String, what: &str| -> Result<tempfile::NamedTempFile> {
        let mut f = tempfile::Builder::new()
            .prefix(".ingot-keygen-")
            .tempfile_in(&dir)
            .with_context(|| format!("creating the {what} key in {}", dir.display()))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.as_file().sync_all())
            .with_context(|| format!("writing the {what} key in {}", dir.display()))?;
        Ok(f)
    };
    let secret = half(sk.to_file(), "secret")?;
    let public = half(sk.public().to_file(), "public")?;
    {
        use std::os::unix::fs::PermissionsExt;
        public
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .with_context(|| format!("writing the public key in {}", dir.display()))?;
    }
    secret
        .persist_noclobber(&skp)
        .map_err(|e| e.error)
        .with_context(|| format!("creating {}", skp.display()))?;
    if let Err(e) = public.persist_noclobber(&pkp) {
        let _ = std::fs::remove_file(&skp);
        return Err(e.error).with_context(|| format!("creating {}", pkp.display()));
    }
    println!(
        "secret key: {} (mode 0600)\npublic key: {}\nkey id: {}",
        skp.display(),
        pkp.display(),
        minisign::key_id_hex(&sk.id)
    );
    Ok(())
}

/// `sign DIR --key KEY`.
pub fn sign(image: &Path, key: &Path) -> Result<()> {
    let sk = minisign::SecretKey::from_file(key)?;
    let dir = ImageDir::sign(image, &sk)?;
    println!("{}", dir.file(image_dir::SIGNATURE).display());
    Ok(())
}

/// `verify DIR --key PUB`.
pub fn verify(image: &Path, key: &Path, strict: bool, quiet: bool) -> Result<()> {
    let pk = minisign::PublicKey::from_file(key)?;
    let pb = progress::spinner(
        &format!("verifying {}", image.display()),
        progress::live(quiet),
    );
    let checked = ImageDir::open_verified(image, &pk);
    pb.finish_and_clear();
    let dir = checked?;
    let extra = dir.unlisted_files()?;
    for name in &extra {
        eprintln!(
            "warning: {}: {name} is not listed in the signed manifest (not verified)",
            image.display()
        );
    }
    if strict && !extra.is_empty() {
        bail!(
            "{}: {} file(s) not listed in the signed manifest: {} (--strict)",
            image.display(),
            extra.len(),
            extra.join(", ")
        );
    }
    println!(
        "{}: signature and every artifact digest verified",
        image.display()
    );
    Ok(())
}
