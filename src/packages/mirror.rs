//! Where the Debian mirror is: `--mirror`, `INGOT_MIRROR`, or the host's apt sources (deb822
//! `*.sources` and one-line `sources.list`), and which addresses Ingot can fetch from.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::control;

/// Work out the mirror: the explicit option, then `INGOT_MIRROR`, then the host's apt sources
/// (deb822 `*.sources` and one-line `sources.list`), taking the first entry that serves `suite`.
/// When none does, the first entry for a Debian release (a suite without a `-`, with the `main`
/// component) stands in: the archive serves every release from one address, so a bookworm host
/// can fetch trixie's firmware without a new apt entry. A `-security` suite looks first for
/// another release's security entry (the security archive, too, serves every release).
pub fn mirror_url(explicit: Option<&str>, suite: &str) -> Result<String> {
    chosen_mirror(explicit, suite).map(|m| super::http::keep_credentials(&m))
}

/// [`mirror_url`] as given, credentials and all.
fn chosen_mirror(explicit: Option<&str>, suite: &str) -> Result<String> {
    if let Some(m) = explicit.filter(|m| !m.is_empty()) {
        // The command line's --mirror takes INGOT_MIRROR as its default value.
        let from = if std::env::var("INGOT_MIRROR").is_ok_and(|e| e == m) {
            "INGOT_MIRROR"
        } else {
            "--mirror"
        };
        return given_mirror(from, m);
    }
    if let Ok(m) = std::env::var("INGOT_MIRROR") {
        if !m.is_empty() {
            return given_mirror("INGOT_MIRROR", &m);
        }
    }
    let apt = std::env::var("INGOT_APT_DIR").unwrap_or_else(|_| "/etc/apt".into());
    if let Some(m) = mirror_from_apt(Path::new(&apt), suite) {
        return Ok(m);
    }
    // Nothing was given and the host names no mirror: a usage error, like a missing option.
    Err(crate::base::BadInput(format!(
        "no Debian mirror: pass --mirror URL, set INGOT_MIRROR, or add a `{suite}` entry to the host's apt sources ({apt}/sources.list.d/*.sources)"
    ))
    .into())
}

/// Can Ingot fetch from this mirror address? http:// and https:// with a host, or file://
/// with an absolute path (apt's own `file:/path` is not a URL Ingot reads).
pub fn supported_mirror(url: &str) -> bool {
    let host = |rest: &str| !rest.is_empty() && !rest.starts_with('/');
    match url.split_once("://") {
        Some(("http" | "https", rest)) => host(rest),
        Some(("file", rest)) => rest.starts_with('/'),
        _ => false,
    }
}

/// A mirror the user gave (`from`: the option or variable): one Ingot cannot fetch from is bad
/// input, refused before any work rather than when the first index is fetched.
fn given_mirror(from: &str, m: &str) -> Result<String> {
    let given = m;
    let m = m.trim_end_matches('/');
    if !supported_mirror(m) {
        return Err(crate::base::BadInput(format!(
            "{from} {}: not a mirror Ingot can fetch from (http://HOST/PATH, https://HOST/PATH or file:///ABSOLUTE/PATH)",
            super::http::keep_credentials(given)
        ))
        .into());
    }
    Ok(m.to_string())
}

/// The first apt entry serving `suite`, else (for a `-security` suite) the first for another
/// release's security suite, else the first for a Debian release with `main`;
/// entries Ingot cannot fetch from (`cdrom:`, `mirror+file:`, `tor+http://`) are passed over.
fn mirror_from_apt(apt: &Path, suite: &str) -> Option<String> {
    let mut entries = apt_entries(apt);
    for e in &mut entries {
        // apt writes a local archive as `file:/srv/debian`.
        if let Some(path) = e.uri.strip_prefix("file:").filter(|p| !p.starts_with("//")) {
            e.uri = format!("file://{path}");
        }
    }
    entries.retain(|e| supported_mirror(&e.uri));
    let release =
        |e: &&AptEntry| !e.suite.contains('-') && e.components.iter().any(|c| c == "main");
    // The security archive is an address of its own, serving every release's `-security`
    // suite: a bookworm host's entry for it serves trixie-security too (the main archive
    // has no such suite).
    let security = |e: &&AptEntry| {
        suite.ends_with("-security")
            && e.suite.ends_with("-security")
            && e.components.iter().any(|c| c == "main")
    };
    entries
        .iter()
        .find(|e| e.suite == suite)
        .or_else(|| entries.iter().find(security))
        .or_else(|| entries.iter().find(release))
        .map(|e| e.uri.clone())
}

/// One `deb` line (or one suite of a deb822 stanza) of the host's apt sources.
#[derive(Debug, PartialEq)]
struct AptEntry {
    uri: String,
    suite: String,
    components: Vec<String>,
}

/// Every enabled `deb` entry of the host's apt sources, in apt's file order.
fn apt_entries(apt: &Path) -> Vec<AptEntry> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(apt.join("sources.list.d"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files.insert(0, apt.join("sources.list"));
    let mut out = Vec::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let name = f.to_string_lossy();
        if name.ends_with(".sources") {
            for p in control::parse(&text).unwrap_or_default() {
                let types = p.get("Types").unwrap_or("");
                if p.get("Enabled") == Some("no") || !types.split_whitespace().any(|t| t == "deb") {
                    continue;
                }
                let Some(uri) = p.get("URIs").and_then(|u| u.split_whitespace().next()) else {
                    continue;
                };
                let components: Vec<String> = p
                    .get("Components")
                    .unwrap_or("")
                    .split_whitespace()
                    .map(String::from)
                    .collect();
                for suite in p.get("Suites").unwrap_or("").split_whitespace() {
                    out.push(AptEntry {
                        uri: uri.trim_end_matches('/').to_string(),
                        suite: suite.to_string(),
                        components: components.clone(),
                    });
                }
            }
        } else if name.ends_with(".list") {
            for line in text.lines() {
                let line = line.trim();
                if !line.starts_with("deb ") {
                    continue;
                }
                // Options sit in brackets before the URI and may contain spaces (`[ a=b ]`).
                let rest: Vec<&str> = line[4..]
                    .split(']')
                    .next_back()
                    .unwrap_or("")
                    .split_whitespace()
                    .collect();
                if rest.len() >= 2 {
                    out.push(AptEntry {
                        uri: rest[0].trim_end_matches('/').to_string(),
                        suite: rest[1].to_string(),
                        components: rest[2..].iter().map(|c| c.to_string()).collect(),
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apt_sources_deb822_and_list() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sources.list.d")).unwrap();
        std::fs::write(
            d.path().join("sources.list.d/debian.sources"),
            "Types: deb\nURIs: http://mirror.invalid/debian/\nSuites: bookworm bookworm-updates\nComponents: main\n",
        )
        .unwrap();
        assert_eq!(
            mirror_from_apt(d.path(), "bookworm-updates").as_deref(),
            Some("http://mirror.invalid/debian")
        );
        std::fs::write(
            d.path().join("sources.list"),
            "deb [arch=amd64 signed-by=/x] http://other.invalid/debian trixie main\n",
        )
        .unwrap();
        assert_eq!(
            mirror_from_apt(d.path(), "trixie").as_deref(),
            Some("http://other.invalid/debian")
        );
        // No entry for sid: the first Debian release entry with `main`, in apt's order
        // (sources.list first), serves it too; not the security archive or a third-party
        // repository without `main`.
        assert_eq!(
            mirror_from_apt(d.path(), "sid").as_deref(),
            Some("http://other.invalid/debian")
        );
        std::fs::write(
            d.path().join("sources.list"),
            "deb http://vendor.invalid/repo stable extras\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("sources.list.d/debian.sources"),
            "Types: deb\nURIs: http://security.invalid/debian-security\nSuites: bookworm-security\nComponents: main\n\nTypes: deb\nURIs: http://mirror.invalid/debian/\nSuites: bookworm\nComponents: main contrib\n",
        )
        .unwrap();
        assert_eq!(
            mirror_from_apt(d.path(), "trixie").as_deref(),
            Some("http://mirror.invalid/debian")
        );
        // Another release's security suite comes from the security archive the host lists.
        assert_eq!(
            mirror_from_apt(d.path(), "trixie-security").as_deref(),
            Some("http://security.invalid/debian-security")
        );
        assert_eq!(
            mirror_from_apt(d.path(), "trixie-updates").as_deref(),
            Some("http://mirror.invalid/debian")
        );
        std::fs::write(d.path().join("sources.list.d/debian.sources"), "").unwrap();
        assert_eq!(mirror_from_apt(d.path(), "trixie"), None);
        // Entries Ingot cannot fetch from are passed over; apt's `file:/path` is read as the
        // file:// URL it means.
        std::fs::write(
            d.path().join("sources.list"),
            "deb cdrom:[Debian 12]/ bookworm main
deb mirror+file:/etc/apt/mirrors.txt bookworm main
deb file:/srv/debian bookworm main
",
        )
        .unwrap();
        assert_eq!(
            mirror_from_apt(d.path(), "bookworm").as_deref(),
            Some("file:///srv/debian")
        );
    }

    #[test]
    fn a_mirror_ingot_cannot_fetch_from_is_refused_as_given() {
        for ok in [
            "http://deb.invalid/debian",
            "https://deb.invalid",
            "file:///srv/debian",
            "http://127.0.0.1:8080/debian",
        ] {
            assert!(supported_mirror(ok), "{ok}");
            assert_eq!(given_mirror("--mirror", &format!("{ok}/")).unwrap(), ok);
        }
        for bad in [
            "ftp://deb.invalid/debian",
            "notaurl",
            "http://",
            "http:///debian",
            "file://relative/path",
            "file:/srv/debian",
            "",
        ] {
            assert!(!supported_mirror(bad), "{bad}");
        }
        let e = given_mirror("INGOT_MIRROR", "ftp://deb.invalid/debian").unwrap_err();
        assert!(e.downcast_ref::<crate::base::BadInput>().is_some());
        assert!(e
            .to_string()
            .starts_with("INGOT_MIRROR ftp://deb.invalid/debian: not a mirror"));
    }
}
