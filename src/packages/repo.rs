//! Debian repository client: fetching `InRelease` and checking its OpenPGP signature against
//! the archive keyring, and fetching the `Packages` index whose SHA-256 the verified `Release`
//! names. Where the mirror is comes from [`super::mirror`].

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use pgp::composed::{CleartextSignedMessage, Deserializable, SignedPublicKey};
use sha2::{Digest, Sha256};

use super::cache::Cache;
use super::control;

/// Default keyring shipped by Debian's `debian-archive-keyring` package.
pub const DEFAULT_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// Errors of the repository's trust chain, matchable by tests.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepoError {
    /// `InRelease` is not signed by any key in the keyring.
    #[error("{url}: the InRelease signature does not verify against keyring {keyring}")]
    BadSignature {
        /// InRelease URL.
        url: String,
        /// Keyring used.
        keyring: String,
    },
    /// The Release file's Valid-Until has passed.
    #[error("{url}: Release expired on {until} (Valid-Until); the mirror is stale or replayed")]
    Expired {
        /// InRelease URL.
        url: String,
        /// Valid-Until value.
        until: String,
    },
    /// An index whose digest differs from the one the Release lists.
    #[error("{url}: SHA-256 {got} does not match {want} from the signed Release")]
    IndexDigest {
        /// Index URL.
        url: String,
        /// Digest seen.
        got: String,
        /// Digest expected.
        want: String,
    },
    /// The signed Release is for another suite than the one asked for (apt refuses it too).
    #[error("{url}: the signed Release is for {found}, not {wanted} (a mirror serving another release under this name?)")]
    WrongSuite {
        /// InRelease URL.
        url: String,
        /// The suite asked for.
        wanted: String,
        /// Codename and Suite the Release names.
        found: String,
    },
    /// The InRelease could not be fetched, and no cached copy was to stand in.
    #[error("{url}: {cause}")]
    Unreachable {
        /// InRelease URL.
        url: String,
        /// Why the fetch failed.
        cause: String,
    },
    /// The Release lists no index for this component and architecture.
    #[error("{url}: the Release lists no Packages index for {component}/binary-{arch}")]
    NoIndex {
        /// InRelease URL.
        url: String,
        /// Component.
        component: String,
        /// Debian architecture.
        arch: String,
    },
}

/// A `Release` file whose signature has been checked.
#[derive(Debug, Clone)]
pub struct Release {
    /// Mirror base URL.
    pub mirror: String,
    /// Suite (codename) as requested.
    pub suite: String,
    /// SHA-256 of the InRelease bytes (for provenance).
    pub digest: String,
    /// `Date` field.
    pub date: String,
    /// `NotAutomatic: yes` (backports, experimental): apt never picks its packages unless
    /// asked for by suite or version, which the resolver follows.
    pub not_automatic: bool,
    /// path → (sha256, size).
    pub sha256: Vec<(String, String, u64)>,
}

impl Release {
    /// Base URL of the suite's `dists/` directory.
    pub fn dist_url(&self) -> String {
        format!("{}/dists/{}", self.mirror, self.suite)
    }
}

/// Load an OpenPGP keyring (binary or armored, any number of keys).
pub fn load_keyring(path: &Path) -> Result<Vec<SignedPublicKey>> {
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "reading keyring {} (install debian-archive-keyring or pass --keyring)",
            path.display()
        )
    })?;
    let keys: Vec<SignedPublicKey> = if bytes.starts_with(b"-----BEGIN") {
        let (iter, _) = SignedPublicKey::from_armor_many(std::io::Cursor::new(bytes))
            .with_context(|| format!("parsing keyring {}", path.display()))?;
        iter.filter_map(|k| k.ok()).collect()
    } else {
        SignedPublicKey::from_bytes_many(std::io::Cursor::new(bytes))
            .with_context(|| format!("parsing keyring {}", path.display()))?
            .filter_map(|k| k.ok())
            .collect()
    };
    if keys.is_empty() {
        bail!("keyring {} holds no public keys", path.display());
    }
    Ok(keys)
}

/// Check a clear-signed `InRelease` against the keyring and return the signed text.
pub fn verify_inrelease(
    bytes: &[u8],
    keys: &[SignedPublicKey],
    url: &str,
    keyring: &Path,
) -> Result<String> {
    let bad = || RepoError::BadSignature {
        url: url.to_string(),
        keyring: keyring.display().to_string(),
    };
    let text = std::str::from_utf8(bytes).map_err(|_| bad())?;
    let (msg, _) = CleartextSignedMessage::from_string(text).map_err(|_| bad())?;
    let ok = keys.iter().any(|k| {
        msg.verify(&k.primary_key).is_ok()
            || k.public_subkeys.iter().any(|s| msg.verify(&s.key).is_ok())
    });
    if !ok {
        return Err(bad().into());
    }
    // Only the signed text counts; anything outside the signature is ignored.
    Ok(msg.signed_text().replace("\r\n", "\n"))
}

/// Parse the signed Release text.
pub fn parse_release(
    mirror: &str,
    suite: &str,
    text: &str,
    digest: String,
    url: &str,
) -> Result<Release> {
    let paras = control::parse(text).map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    let p = paras
        .first()
        .with_context(|| format!("{url}: empty Release"))?;
    let (codename, label) = (p.get("Codename"), p.get("Suite"));
    if codename != Some(suite) && label != Some(suite) {
        return Err(RepoError::WrongSuite {
            url: url.to_string(),
            wanted: suite.to_string(),
            found: format!(
                "Codename `{}`, Suite `{}`",
                codename.unwrap_or("none"),
                label.unwrap_or("none")
            ),
        }
        .into());
    }
    if let Some(until) = p.get("Valid-Until") {
        if let Some(t) = parse_rfc2822(until) {
            if t < crate::base::identity::now_secs() {
                return Err(RepoError::Expired {
                    url: url.to_string(),
                    until: until.to_string(),
                }
                .into());
            }
        }
    }
    let mut sha256 = Vec::new();
    for line in p.get("SHA256").unwrap_or("").lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if let [h, s, path] = w[..] {
            sha256.push((path.to_string(), h.to_lowercase(), s.parse().unwrap_or(0)));
        }
    }
    if sha256.is_empty() {
        bail!("{url}: Release has no SHA256 list (refusing an index without digests)");
    }
    Ok(Release {
        mirror: mirror.to_string(),
        suite: suite.to_string(),
        digest,
        date: p.get("Date").unwrap_or("").to_string(),
        not_automatic: p.get("NotAutomatic") == Some("yes"),
        sha256,
    })
}

/// Parse `Sat, 11 Jul 2026 10:16:37 UTC` to seconds since the epoch.
pub fn parse_rfc2822(s: &str) -> Option<i64> {
    let w: Vec<&str> = s.split_whitespace().collect();
    let w = if w.first()?.ends_with(',') {
        &w[1..]
    } else {
        &w[..]
    };
    let day: i64 = w.first()?.parse().ok()?;
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mname = *w.get(1)?;
    let month = months.iter().position(|m| *m == mname)? as i64 + 1;
    let year: i64 = w.get(2)?.parse().ok()?;
    let hms: Vec<i64> = w
        .get(3)?
        .split(':')
        .filter_map(|x| x.parse().ok())
        .collect();
    if hms.len() != 3 {
        return None;
    }
    Some(
        crate::base::identity::days_from_civil(year, month, day) * 86400
            + hms[0] * 3600
            + hms[1] * 60
            + hms[2],
    )
}

/// Fetch and verify `InRelease` for a suite. On a network failure, a previously verified copy in
/// the cache is used (and verified again), so builds work offline.
pub fn fetch_release(
    cache: &Cache,
    mirror: &str,
    suite: &str,
    keyring: &Path,
    keys: &[SignedPublicKey],
) -> Result<Release> {
    fetch_release_with(cache, mirror, suite, keyring, keys, true)
}

/// [`fetch_release`], with the cached copy standing in for an unreachable mirror only when
/// `offline` allows it; otherwise the failure is [`RepoError::Unreachable`] (an audit must see
/// the archive as it is now).
pub fn fetch_release_with(
    cache: &Cache,
    mirror: &str,
    suite: &str,
    keyring: &Path,
    keys: &[SignedPublicKey],
    offline: bool,
) -> Result<Release> {
    let url = format!("{mirror}/dists/{suite}/InRelease");
    let saved = cache.release_path(&url);
    let bytes = match super::http::get(&url, super::http::INDEX_CAP) {
        Ok(b) => b,
        Err(e) if !offline => {
            return Err(RepoError::Unreachable {
                url,
                cause: format!("{e:#}"),
            }
            .into())
        }
        Err(e) => match std::fs::read(&saved) {
            Ok(b) => {
                eprintln!(
                    "warning: {e:#}; using the cached InRelease from {}",
                    saved.display()
                );
                b
            }
            Err(_) => return Err(e),
        },
    };
    let text = verify_inrelease(&bytes, keys, &url, keyring)?;
    let digest = hex::encode(Sha256::digest(&bytes));
    let rel = parse_release(mirror, suite, &text, digest, &url)?;
    cache.save_release(&url, &bytes)?;
    Ok(rel)
}

/// Fetch the `Packages` index of one component and arch, check it against the Release, and
/// return its decompressed text. Indexes are cached by digest.
pub fn fetch_packages(cache: &Cache, rel: &Release, component: &str, arch: &str) -> Result<String> {
    let base = format!("{component}/binary-{arch}/Packages");
    let pick = ["xz", "gz", ""]
        .iter()
        .find_map(|ext| {
            let name = if ext.is_empty() {
                base.clone()
            } else {
                format!("{base}.{ext}")
            };
            rel.sha256
                .iter()
                .find(|(p, _, _)| *p == name)
                .map(|(p, h, s)| (p.clone(), h.clone(), *s, *ext))
        })
        .ok_or_else(|| RepoError::NoIndex {
            url: format!("{}/InRelease", rel.dist_url()),
            component: component.to_string(),
            arch: arch.to_string(),
        })?;
    let (path, sha, size, ext) = pick;
    let url = format!("{}/{}", rel.dist_url(), path);
    // The decompressed text is kept beside the extraction cache, keyed by the digest the
    // signed Release gives for the compressed index (it is written only after that digest
    // matched), so a warm build neither hashes nor decompresses the index again.
    let plain = cache.extract_path(&sha, "index");
    let plain_sum = cache.extract_path(&sha, "index.sha256");
    if let (Ok(text), Ok(sum)) = (
        std::fs::read_to_string(&plain),
        std::fs::read_to_string(&plain_sum),
    ) {
        if hex::encode(Sha256::digest(text.as_bytes())) == sum.trim() {
            return Ok(text);
        }
        eprintln!(
            "warning: cache entry {} does not match its recorded SHA-256; decompressing {path} again",
            plain.display()
        );
    }
    let file = cache.fetch_verified(&url, &sha, size, &path, None)?;
    let raw = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let mut text = String::new();
    match ext {
        "xz" => {
            xz2::read::XzDecoder::new(&raw[..]).read_to_string(&mut text)?;
        }
        "gz" => {
            flate2::read::GzDecoder::new(&raw[..]).read_to_string(&mut text)?;
        }
        _ => text = String::from_utf8(raw).context("index is not UTF-8")?,
    }
    crate::base::fsx::write_atomic(&plain, text.as_bytes())?;
    crate::base::fsx::write_atomic(
        &plain_sum,
        hex::encode(Sha256::digest(text.as_bytes())).as_bytes(),
    )?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_for_another_suite_is_refused() {
        let text = "Origin: Debian\nSuite: testing\nCodename: trixie\nSHA256:\n 00 1 main/binary-amd64/Packages\n";
        let e = parse_release("m", "bookworm", text, String::new(), "u").unwrap_err();
        assert!(
            matches!(
                e.downcast_ref::<RepoError>(),
                Some(RepoError::WrongSuite { .. })
            ),
            "{e:#}"
        );
        assert!(format!("{e:#}").contains("trixie"), "{e:#}");
        // Asked by codename or by suite name, both are the archive's own words.
        for asked in ["trixie", "testing"] {
            parse_release("m", asked, text, String::new(), "u").unwrap();
        }
    }

    #[test]
    fn rfc2822_dates() {
        assert_eq!(parse_rfc2822("Thu, 01 Jan 1970 00:00:10 UTC"), Some(10));
        assert_eq!(
            parse_rfc2822("Sat, 11 Jul 2026 10:16:37 UTC"),
            Some(1783764997)
        );
    }
}
