//! Debian changelogs: found in a package's data (`usr/share/doc/PKG/changelog.Debian.gz`, or
//! `changelog.gz` for native packages), parsed into entries (version, urgency, date, the CVE
//! ids the text names), and kept in the extraction cache by the package's verified digest so a
//! warm audit reads no .deb again.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::base::debversion;
use crate::packages::cache::Cache;
use crate::packages::deb;

/// Bytes of decompressed changelog kept (the newest entries come first; the kernel's runs to
/// a few MiB, of which only the part newer than an image's version matters).
const KEEP: u64 = 8 << 20;

/// One upload in a changelog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Source version of the upload.
    pub version: String,
    /// Its distribution field (`bookworm-security`).
    pub distribution: String,
    /// `urgency=`.
    pub urgency: String,
    /// The trailer's date, as written.
    pub date: String,
    /// That date in seconds since the epoch, when it parses.
    pub epoch: Option<i64>,
    /// CVE ids the entry names, sorted, without repeats.
    pub cves: Vec<String>,
}

/// Parse a changelog into its entries, newest first (file order). Lines that are neither a
/// header, a trailer nor inside an entry are ignored, as dpkg-parsechangelog does.
pub fn parse(text: &str) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    let mut body = String::new();
    let mut open = false;
    for line in text.lines() {
        if let Some(e) = header(line) {
            if open {
                finish(out.last_mut(), &body);
            }
            out.push(e);
            body.clear();
            open = true;
        } else if let Some(rest) = line.strip_prefix(" -- ") {
            if open {
                finish(out.last_mut(), &body);
                if let (Some(e), Some((_, date))) = (out.last_mut(), rest.split_once(">  ")) {
                    e.date = date.trim().to_string();
                    e.epoch = parse_date(&e.date);
                }
                body.clear();
                open = false;
            }
        } else if open {
            body.push_str(line);
            body.push('\n');
        }
    }
    if open {
        finish(out.last_mut(), &body);
    }
    out
}

fn finish(e: Option<&mut Entry>, body: &str) {
    if let Some(e) = e {
        e.cves = cves(body);
    }
}

/// `package (version) distribution; urgency=high`.
fn header(line: &str) -> Option<Entry> {
    if line.starts_with([' ', '\t']) || line.is_empty() {
        return None;
    }
    let (_, rest) = line.split_once(" (")?;
    let (version, rest) = rest.split_once(')')?;
    let (dist, fields) = rest.split_once(';')?;
    if version.is_empty() || version.contains(' ') {
        return None;
    }
    let urgency = fields
        .split(',')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case("urgency"))
        .map_or("low".to_string(), |(_, v)| v.trim().to_lowercase());
    Some(Entry {
        version: version.to_string(),
        distribution: dist.trim().to_string(),
        urgency,
        date: String::new(),
        epoch: None,
        cves: Vec::new(),
    })
}

/// Every `CVE-YYYY-NNNN…` in `text`, upper-cased, sorted, without repeats.
pub fn cves(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let mut out = std::collections::BTreeSet::new();
    let mut i = 0;
    while i + 13 <= b.len() {
        if b[i..i + 4].eq_ignore_ascii_case(b"CVE-")
            && (i == 0 || !b[i - 1].is_ascii_alphanumeric())
        {
            let year = &b[i + 4..i + 8];
            let digits = b[i + 9..].iter().take_while(|c| c.is_ascii_digit()).count();
            if year.iter().all(u8::is_ascii_digit) && b[i + 8] == b'-' && digits >= 4 {
                let end = i + 9 + digits;
                out.insert(format!("CVE-{}", &text[i + 4..end]));
                i = end;
                continue;
            }
        }
        i += 1;
    }
    out.into_iter().collect()
}

/// `Tue, 05 Mar 2024 10:11:12 +0100` in seconds since the epoch (UTC).
pub fn parse_date(s: &str) -> Option<i64> {
    let t = crate::packages::repo::parse_rfc2822(s)?;
    let zone = s.split_whitespace().last().unwrap_or("");
    let offset = match zone.as_bytes() {
        [sign @ (b'+' | b'-'), rest @ ..]
            if rest.len() == 4 && rest.iter().all(u8::is_ascii_digit) =>
        {
            let h: i64 = zone[1..3].parse().ok()?;
            let m: i64 = zone[3..5].parse().ok()?;
            let v = h * 3600 + m * 60;
            if *sign == b'-' {
                -v
            } else {
                v
            }
        }
        _ => 0,
    };
    Some(t - offset)
}

/// The entries newer than `installed` and no newer than `available` (source versions).
pub fn between<'a>(entries: &'a [Entry], installed: &str, available: &str) -> Vec<&'a Entry> {
    use std::cmp::Ordering::*;
    entries
        .iter()
        .filter(|e| {
            debversion::compare(&e.version, installed) == Greater
                && debversion::compare(&e.version, available) != Greater
        })
        .collect()
}

/// What a package's data holds for its changelog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Found {
    /// The changelog's text (decompressed, cut at [`KEEP`] bytes).
    Text {
        /// The text.
        text: String,
    },
    /// `usr/share/doc/PKG` is a symbolic link to another package's directory.
    Link {
        /// The directory it points to (a package name).
        target: String,
    },
    /// Neither.
    None,
}

/// Cached form: the finding plus the SHA-256 of its JSON, so an edited entry is read again.
#[derive(Serialize, Deserialize)]
struct Cached {
    found: Found,
    sha256: String,
}

/// The changelog of package `name` in the verified .deb at `path` (digest `sha256`),
/// from the cache when it was read before.
pub fn of_deb(cache: &Cache, path: &Path, name: &str, sha256: &str) -> Result<Found> {
    let at = cache.extract_path(sha256, "changelog");
    if let Ok(bytes) = std::fs::read(&at) {
        if let Ok(c) = serde_json::from_slice::<Cached>(&bytes) {
            let json = serde_json::to_vec(&c.found)?;
            if hex::encode(Sha256::digest(&json)) == c.sha256 {
                return Ok(c.found);
            }
        }
    }
    let found = read_deb(path, name).with_context(|| format!("{name}: {}", path.display()))?;
    let json = serde_json::to_vec(&found)?;
    let c = Cached {
        sha256: hex::encode(Sha256::digest(&json)),
        found,
    };
    crate::base::fsx::write_atomic(&at, &serde_json::to_vec(&c)?)?;
    Ok(c.found)
}

/// Walk data.tar until the changelog (or the link that replaces its directory) is found.
fn read_deb(path: &Path, name: &str) -> Result<Found> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let members = deb::ar_members(&mut f)?;
    let data = members
        .iter()
        .find(|m| m.name.starts_with("data.tar"))
        .context("no data.tar member")?;
    f.seek(SeekFrom::Start(data.offset))?;
    let dec = deb::decoder(&data.name, BufReader::new((&mut f).take(data.size)))?;
    let mut ar = tar::Archive::new(dec);
    let dir = format!("usr/share/doc/{name}");
    let wanted = [
        format!("{dir}/changelog.Debian.gz"),
        format!("{dir}/changelog.gz"),
    ];
    let mut native: Option<String> = None;
    for e in ar.entries()? {
        let mut e = e?;
        let p = e.path()?.to_string_lossy().into_owned();
        let p = p.trim_start_matches("./").trim_end_matches('/');
        if p == dir && e.header().entry_type().is_symlink() {
            if let Some(t) = e.link_name()? {
                let t = t.to_string_lossy();
                let target = t.trim_end_matches('/').rsplit('/').next().unwrap_or("");
                if !target.is_empty() {
                    return Ok(Found::Link {
                        target: target.to_string(),
                    });
                }
            }
        }
        if !e.header().entry_type().is_file() {
            continue;
        }
        if p == wanted[0] || (p == wanted[1] && native.is_none()) {
            let mut text = String::new();
            flate2::read::GzDecoder::new(&mut e)
                .take(KEEP)
                .read_to_string(&mut text)
                .with_context(|| format!("decompressing {p}"))?;
            if p == wanted[0] {
                return Ok(Found::Text { text });
            }
            native = Some(text);
        }
    }
    Ok(native.map_or(Found::None, |text| Found::Text { text }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "openssl (3.0.15-1~deb12u1) bookworm-security; urgency=medium\n\n  * New upstream release.\n    - Fixes CVE-2024-9143 and cve-2024-5535.\n  * Also CVE-2024-9143 again; not XCVE-2020-1234 nor CVE-12-1.\n\n -- Sebastian Andrzej Siewior <sebastian@breakpoint.cc>  Tue, 05 Nov 2024 22:10:11 +0100\n\nopenssl (3.0.14-1~deb12u2) bookworm; urgency=low\n\n  * Rebuild.\n\n -- Someone <x@example.org>  Sat, 01 Jun 2024 00:00:00 +0000\n\nopenssl (3.0.11-1~deb12u2) bookworm-security; urgency=high\n\n  * CVE-2023-5678\n\n -- Someone <x@example.org>  Mon, 01 Jan 2024 00:00:00 +0000\n";

    #[test]
    fn entries_carry_versions_urgency_dates_and_cves() {
        let e = parse(LOG);
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].version, "3.0.15-1~deb12u1");
        assert_eq!(e[0].distribution, "bookworm-security");
        assert_eq!(e[0].urgency, "medium");
        assert_eq!(e[0].cves, ["CVE-2024-5535", "CVE-2024-9143"]);
        // 22:10:11 at +0100 is 21:10:11 UTC.
        assert_eq!(
            e[0].epoch,
            Some(crate::base::identity::days_from_civil(2024, 11, 5) * 86400 + 21 * 3600 + 611)
        );
        assert!(e[1].cves.is_empty());
        assert_eq!(e[2].urgency, "high");
        assert_eq!(e[2].cves, ["CVE-2023-5678"]);
    }

    #[test]
    fn between_takes_newer_than_installed_up_to_available() {
        let e = parse(LOG);
        let v: Vec<&str> = between(&e, "3.0.11-1~deb12u2", "3.0.15-1~deb12u1")
            .iter()
            .map(|e| e.version.as_str())
            .collect();
        assert_eq!(v, ["3.0.15-1~deb12u1", "3.0.14-1~deb12u2"]);
        assert!(between(&e, "3.0.15-1~deb12u1", "3.0.15-1~deb12u1").is_empty());
        assert_eq!(between(&e, "3.0.14-1~deb12u2", "3.0.14-1~deb12u2").len(), 0);
    }

    #[test]
    fn garbage_is_no_entry_and_no_panic() {
        assert!(parse("").is_empty());
        assert!(parse(" -- nobody\n\n  * stray\nfoo (1) x\n").is_empty());
        assert_eq!(cves("CVE-2024-"), Vec::<String>::new());
        assert_eq!(cves("CVE-2024-1234"), ["CVE-2024-1234"]);
        assert_eq!(cves("(CVE-2024-123456)"), ["CVE-2024-123456"]);
    }

    #[test]
    fn the_changelog_or_the_doc_link_is_found_in_the_deb() {
        use crate::packages::testrepo::{gzip, make_deb};
        use tar::EntryType::{Regular, Symlink};
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::open(Some(&d.path().join("c"))).unwrap();
        let gz = gzip(LOG.as_bytes());
        let deb = make_deb(
            "Package: openssl\n",
            &[(
                "./usr/share/doc/openssl/changelog.Debian.gz",
                Regular,
                &gz,
                "",
            )],
        );
        let p = d.path().join("a.deb");
        std::fs::write(&p, &deb).unwrap();
        let found = of_deb(&cache, &p, "openssl", &"a".repeat(64)).unwrap();
        assert_eq!(found, Found::Text { text: LOG.into() });
        // The second read comes from the cache, even with the .deb gone.
        std::fs::remove_file(&p).unwrap();
        assert_eq!(
            of_deb(&cache, &p, "openssl", &"a".repeat(64)).unwrap(),
            found
        );
        let link = make_deb(
            "Package: libssl3\n",
            &[("./usr/share/doc/libssl3", Symlink, b"", "openssl")],
        );
        std::fs::write(&p, &link).unwrap();
        assert_eq!(
            of_deb(&cache, &p, "libssl3", &"b".repeat(64)).unwrap(),
            Found::Link {
                target: "openssl".into()
            }
        );
    }
}
