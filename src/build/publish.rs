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
}
