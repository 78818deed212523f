//! Content-addressed download cache (`$XDG_CACHE_HOME/ingot`, or `INGOT_CACHE`).
//!
//! Layout: `sha256/<hex>` holds verified blobs (.debs, indexes); `extract/<hex>.tar` holds the
//! decompressed `data.tar` of a verified .deb with `extract/<hex>.json` describing it;
//! `release/<hex of url>` keeps the last verified InRelease per suite for offline builds.
//! A blob is admitted only after its digest matches; a blob whose digest no longer matches is
//! evicted and fetched again.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::base::fsx::{sha256_file, temp_beside, write_atomic};

/// The cache root.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// Open (creating) the cache at an explicit root, `INGOT_CACHE`, or `$XDG_CACHE_HOME/ingot`.
    pub fn open(explicit: Option<&Path>) -> Result<Self> {
        let root = match explicit {
            Some(p) => p.to_path_buf(),
            None => match std::env::var_os("INGOT_CACHE") {
                Some(p) if !p.is_empty() => PathBuf::from(p),
                _ => match std::env::var_os("XDG_CACHE_HOME") {
                    Some(p) if !p.is_empty() => PathBuf::from(p).join("ingot"),
                    _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into()))
                        .join(".cache/ingot"),
                },
            },
        };
        for sub in ["sha256", "extract", "release"] {
            fs::create_dir_all(root.join(sub)).with_context(|| {
                format!("creating cache directory {}", root.join(sub).display())
            })?;
        }
        Ok(Cache { root })
    }

    /// Cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a blob with this digest lives.
    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        self.root.join("sha256").join(sha256)
    }

    /// Where a .deb's extracted data lives.
    pub fn extract_path(&self, sha256: &str, ext: &str) -> PathBuf {
        self.root.join("extract").join(format!("{sha256}.{ext}"))
    }

    pub(crate) fn release_path(&self, url: &str) -> PathBuf {
        self.root
            .join("release")
            .join(hex::encode(Sha256::digest(url.as_bytes())))
    }

    pub(crate) fn save_release(&self, url: &str, bytes: &[u8]) -> Result<()> {
        write_atomic(&self.release_path(url), bytes)
    }

    /// Return the cached blob if present and intact; an entry whose digest does not match is
    /// evicted (and `None` returned).
    pub fn lookup(&self, sha256: &str, size: u64) -> Option<PathBuf> {
        self.lookup_sized(sha256, size, "blob").ok().flatten()
    }

    /// [`Cache::lookup`], except that a cached blob with the right digest but another size
    /// than `size` is an error about the size (whoever recorded it, an edited lockfile say,
    /// is wrong), not a corrupt entry: the blob is kept.
    fn lookup_sized(&self, sha256: &str, size: u64, what: &str) -> Result<Option<PathBuf>> {
        let p = self.blob_path(sha256);
        if fs::symlink_metadata(&p).is_err() {
            return Ok(None);
        }
        if let Ok((h, len)) = sha256_file(&p) {
            if h == sha256 {
                if len != size && size != 0 {
                    return Err(wrong_size(what, sha256, len, size));
                }
                return Ok(Some(p));
            }
        }
        eprintln!(
            "warning: cache entry {} is corrupt; evicting and fetching again",
            p.display()
        );
        let _ = fs::remove_file(&p);
        Ok(None)
    }

    /// Return a verified blob, downloading it when absent or corrupt. `what` names the package
    /// or index in errors; `progress` is told of bytes as they arrive.
    pub fn fetch_verified(
        &self,
        url: &str,
        sha256: &str,
        size: u64,
        what: &str,
        progress: Option<&dyn Fn(u64)>,
    ) -> Result<PathBuf> {
        if let Some(p) = self.lookup_sized(sha256, size, what)? {
            if let Some(cb) = progress {
                cb(size);
            }
            return Ok(p);
        }
        let dest = self.blob_path(sha256);
        let tmp = temp_beside(&dest);
        let res = (|| -> Result<()> {
            let mut reader = super::http::open(
                url,
                if size > 0 {
                    size
                } else {
                    super::http::INDEX_CAP
                },
            )?;
            let mut out =
                File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
            let mut hashed = crate::base::fsx::HashingReader::new(&mut reader);
            let mut buf = vec![0u8; 256 << 10];
            loop {
                crate::interrupt::check()?;
                let n = hashed
                    .read(&mut buf)
                    .with_context(|| format!("downloading {url}"))?;
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n])
                    .with_context(|| format!("writing {}", tmp.display()))?;
                if let Some(cb) = progress {
                    cb(n as u64);
                }
            }
            out.sync_all()
                .with_context(|| format!("writing {}", tmp.display()))?;
            let (got, total) = hashed.finish();
            if got != sha256 {
                bail!(
                    "{what}: {url}: SHA-256 {got} does not match {sha256} from the signed index (size {total}, expected {size})"
                );
            }
            if total != size && size != 0 {
                return Err(wrong_size(what, sha256, total, size));
            }
            Ok(())
        })();
        match res {
            Ok(()) => {
                fs::rename(&tmp, &dest)?;
                Ok(dest)
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }
}

/// The blob is genuine (its SHA-256 is the one asked for) but not the size the caller
/// expected: the expectation is what is wrong.
/// Bad input (exit 2), as every disagreement between a lock entry and its genuine .deb is.
fn wrong_size(what: &str, sha256: &str, len: u64, size: u64) -> anyhow::Error {
    crate::base::BadInput(format!(
        "{what}: the file with SHA-256 {sha256} is {len} bytes, not the {size} recorded for it (an edited lockfile?)"
    ))
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_entry_is_evicted_and_refetched() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::open(Some(&d.path().join("c"))).unwrap();
        let src = d.path().join("blob");
        fs::write(&src, b"hello").unwrap();
        let sha = hex::encode(Sha256::digest(b"hello"));
        let url = format!("file://{}", src.display());
        let p = cache.fetch_verified(&url, &sha, 5, "blob", None).unwrap();
        fs::write(&p, b"hellx").unwrap();
        assert!(cache.lookup(&sha, 5).is_none());
        assert!(!p.exists());
        let p = cache.fetch_verified(&url, &sha, 5, "blob", None).unwrap();
        assert_eq!(fs::read(p).unwrap(), b"hello");
        let bad = cache
            .fetch_verified(&url, &"0".repeat(64), 5, "pkg", None)
            .unwrap_err();
        assert!(format!("{bad:#}").contains("does not match"));
        // The right digest with another recorded size: the record is wrong, cached or not,
        // and the cached blob stays.
        let cached = cache.blob_path(&sha);
        for _ in 0..2 {
            let e = cache
                .fetch_verified(&url, &sha, 99, "pkg", None)
                .unwrap_err();
            assert!(format!("{e:#}").contains("is 5 bytes, not the 99"), "{e:#}");
            assert!(cached.exists());
        }
        fs::remove_file(&cached).unwrap();
        let e = cache
            .fetch_verified(&url, &sha, 99, "pkg", None)
            .unwrap_err();
        assert!(format!("{e:#}").contains("is 5 bytes, not the 99"), "{e:#}");
        assert!(!cached.exists(), "kept a blob under a wrong expectation");
    }
}
