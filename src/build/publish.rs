//! Publishing an image directory into `--out` without ever losing data: the build writes into
//! a temporary directory beside the final one, and only a complete result replaces the previous
//! image (moved aside, then removed).
//!
//! Every directory Ingot creates in `--out` carries a marker file, [`MARKER`], naming the image,
//! which the creating process holds locked (`flock`) while it lives. Stale-directory cleanup
//! touches only directories with a marker whose lock it can take: never a user's own
//! `.something.tmp-1` or `.backup.old-2`, and never a live build's directory, even one from
//! another PID namespace sharing the output directory.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The marker file inside each of Ingot's own temporary directories.
pub const MARKER: &str = ".ingot-build-in-progress";

/// A locked marker: dropping it releases the lock.
struct Marker {
    _lock: File,
}

fn mark(dir: &Path, ident: &str) -> Result<Marker> {
    let p = dir.join(MARKER);
    let f = File::create(&p).with_context(|| format!("creating {}", p.display()))?;
    f.try_lock()
        .with_context(|| format!("locking {}", p.display()))?;
    std::fs::write(&p, format!("ingot build of {ident}\n"))
        .with_context(|| format!("writing {}", p.display()))?;
    Ok(Marker { _lock: f })
}

/// Whether `dir` is one of Ingot's directories whose build is gone: it has a marker and the
/// marker's lock is free.
fn stale(dir: &Path) -> bool {
    let Ok(f) = File::open(dir.join(MARKER)) else {
        return false;
    };
    f.try_lock().is_ok()
}

/// The temporary directory of one build, removed when dropped unless published.
pub struct Staging {
    work: PathBuf,
    out: PathBuf,
    ident: String,
    marker: Option<Marker>,
    _guard: crate::interrupt::TempGuard,
}

impl Staging {
    /// Create `OUT/.IDENT.tmp-PID` with its locked marker, after removing what crashed builds
    /// of any image left behind.
    pub fn create(out: &Path, ident: &str) -> Result<Self> {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        clean_stale(out);
        // A build killed between marking the previous image and moving it aside left the
        // marker inside it: take it out again, so the image holds only what it listed.
        let prev_marker = out.join(ident).join(MARKER);
        if prev_marker.exists() && stale(&out.join(ident)) {
            let _ = std::fs::remove_file(&prev_marker);
        }
        let work = out.join(format!(".{ident}.tmp-{}", std::process::id()));
        let guard = crate::interrupt::TempGuard::new(work.clone());
        if work.exists() {
            // Our own PID from an earlier life (a restarted container): only if it is ours.
            if stale(&work) {
                std::fs::remove_dir_all(&work)
                    .with_context(|| format!("removing {}", work.display()))?;
            } else {
                anyhow::bail!(
                    "{} exists and is not a stale Ingot build directory; move it away",
                    work.display()
                );
            }
        }
        std::fs::create_dir(&work).with_context(|| format!("creating {}", work.display()))?;
        let marker = Some(mark(&work, ident)?);
        Ok(Staging {
            work,
            out: out.to_path_buf(),
            ident: ident.to_string(),
            marker,
            _guard: guard,
        })
    }

    /// Where the build writes.
    pub fn path(&self) -> &Path {
        &self.work
    }

    /// Replace `OUT/IDENT` with the finished directory. The previous image is moved aside
    /// (marked, so a crash here is repaired by the next build) and removed afterwards.
    pub fn publish(mut self) -> Result<PathBuf> {
        let final_dir = self.out.join(&self.ident);
        let old = self
            .out
            .join(format!(".{}.old-{}", self.ident, std::process::id()));
        let _old_marker = if final_dir.exists() {
            let m = mark(&final_dir, &self.ident)?;
            crate::base::fsx::rename(&final_dir, &old)?;
            Some(m)
        } else {
            None
        };
        let _ = std::fs::remove_file(self.work.join(MARKER));
        self.marker = None;
        crate::base::fsx::rename(&self.work, &final_dir)?;
        self.work = PathBuf::new();
        if old.exists() {
            let _ = std::fs::remove_dir_all(&old);
        }
        Ok(final_dir)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.work.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.work);
        }
    }
}

/// Whether an image directory may take the place of `dest` (for `who`, the command that
/// writes it): `dest` does not exist, or it is a directory holding nothing but files of an
/// image directory (an earlier build or pull of it). A directory with anything else in it
/// (`ingot pull REF ~/images` meant as "into", or a user's own directory under a build's
/// `--out` that happens to have the image's name) would be lost with its contents, so it is
/// refused, naming what it holds and what to do `instead`.
pub fn replaceable(dest: &Path, who: &str, instead: &str) -> Result<(), crate::base::BadInput> {
    use crate::base::BadInput;
    use crate::image_dir;
    let meta = match std::fs::symlink_metadata(dest) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(BadInput(format!("{}: {e}", dest.display()))),
    };
    if !meta.is_dir() {
        return Err(BadInput(format!(
            "{}: exists and is not a directory; {who} writes a whole image directory there, so {instead}",
            dest.display()
        )));
    }
    let entries =
        std::fs::read_dir(dest).map_err(|e| BadInput(format!("{}: {e}", dest.display())))?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let is_file = e.file_type().is_ok_and(|t| t.is_file());
        let ours = image_dir::is_artifact(&name)
            || name == image_dir::MANIFEST
            || name == image_dir::SIGNATURE
            || name == MARKER;
        if !(is_file && ours) {
            return Err(BadInput(format!(
                "{}: holds `{name}`, which is not a file of an image directory; {who} replaces the whole directory, so {instead}",
                dest.display()
            )));
        }
    }
    Ok(())
}

/// Remove the temporary directories of builds that were killed, and put back a previous image
/// that a killed build had moved aside. Only marked directories whose lock is free are touched.
pub fn clean_stale(out: &Path) {
    let Ok(rd) = std::fs::read_dir(out) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix('.') else {
            continue;
        };
        let path = e.path();
        if !path.is_dir() || !stale(&path) {
            continue;
        }
        if rest.rsplit_once(".tmp-").is_some() {
            let _ = std::fs::remove_dir_all(&path);
        } else if let Some((id, _)) = rest.rsplit_once(".old-") {
            let dest = out.join(id);
            if dest.exists() {
                let _ = std::fs::remove_dir_all(&path);
            } else {
                let _ = std::fs::remove_file(path.join(MARKER));
                let _ = std::fs::rename(&path, dest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ingots_own_stale_directories_are_touched() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path();
        // The user's own files that look like ours.
        for d in [".backup.old-888888", ".notes.tmp-4242", ".x.tmp-1"] {
            std::fs::create_dir(out.join(d)).unwrap();
            std::fs::write(out.join(d).join("keep"), d).unwrap();
        }
        // A crashed build's staging directory, and a previous image it had moved aside.
        std::fs::create_dir(out.join(".img-1-x86_64.tmp-99")).unwrap();
        std::fs::write(out.join(".img-1-x86_64.tmp-99").join(MARKER), "x").unwrap();
        std::fs::create_dir(out.join(".img-1-x86_64.old-99")).unwrap();
        std::fs::write(out.join(".img-1-x86_64.old-99").join(MARKER), "x").unwrap();
        std::fs::write(out.join(".img-1-x86_64.old-99").join("disk.raw"), "d").unwrap();
        // A previous image marked by a build killed before it moved the image aside.
        std::fs::create_dir(out.join("img-2-x86_64")).unwrap();
        std::fs::write(out.join("img-2-x86_64").join(MARKER), "x").unwrap();
        drop(Staging::create(out, "img-2-x86_64").unwrap());
        assert!(!out.join("img-2-x86_64").join(MARKER).exists());
        // A live build (its marker locked by this process).
        let live = Staging::create(out, "live-1-aarch64").unwrap();
        clean_stale(out);
        for d in [".backup.old-888888", ".notes.tmp-4242", ".x.tmp-1"] {
            assert!(out.join(d).join("keep").exists(), "{d} was touched");
        }
        assert!(!out.join(".img-1-x86_64.tmp-99").exists());
        assert_eq!(
            std::fs::read(out.join("img-1-x86_64").join("disk.raw")).unwrap(),
            b"d"
        );
        assert!(!out.join("img-1-x86_64").join(MARKER).exists());
        assert!(
            live.path().join(MARKER).exists(),
            "a live build was removed"
        );
        let done = live.publish().unwrap();
        assert!(done.is_dir() && !done.join(MARKER).exists());
    }

    fn replaceable_here(p: &Path) -> Result<(), crate::base::BadInput> {
        replaceable(p, "pull", "give a new path")
    }

    #[test]
    fn only_a_missing_empty_or_image_directory_is_replaced() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path();
        assert!(replaceable_here(&p.join("new")).is_ok());
        std::fs::create_dir(p.join("empty")).unwrap();
        assert!(replaceable_here(&p.join("empty")).is_ok());
        let img = p.join("img");
        std::fs::create_dir(&img).unwrap();
        for f in [
            "manifest.json",
            "manifest.json.sig",
            "disk.raw",
            "sbom.cdx.json",
        ] {
            std::fs::write(img.join(f), "x").unwrap();
        }
        assert!(replaceable_here(&img).is_ok());
        std::fs::write(img.join("notes.txt"), "mine").unwrap();
        let e = replaceable_here(&img).unwrap_err().to_string();
        assert!(e.contains("holds `notes.txt`"), "{e}");
        std::fs::remove_file(img.join("notes.txt")).unwrap();
        std::fs::create_dir(img.join("disk.d")).unwrap();
        assert!(replaceable_here(&img).is_err(), "a subdirectory");
        std::fs::write(p.join("file"), "x").unwrap();
        let e = replaceable_here(&p.join("file")).unwrap_err().to_string();
        assert!(e.contains("is not a directory"), "{e}");
    }
}
