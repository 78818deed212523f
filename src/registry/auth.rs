//! Credentials the container tools leave behind (`REGISTRY_AUTH_FILE`, podman's
//! `$XDG_RUNTIME_DIR/containers/auth.json`, docker's `~/.docker/config.json`), and the
//! parameters of a `WWW-Authenticate` challenge.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use base64::Engine as _;

/// `key="value", key2=value2` as pairs (values may hold commas inside quotes).
pub fn challenge_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((k, after)) = rest.split_once('=') else {
            break;
        };
        let key = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (val, tail) = if let Some(q) = after.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (&q[..end], &q[end + 1..]),
                None => (q, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        out.push((key, val.to_string()));
        rest = tail.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

/// The auth files the container tools write, in the order they are consulted.
fn auth_files() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|p| !p.is_empty()) {
        v.push(PathBuf::from(p));
        return v;
    }
    if let Some(r) = std::env::var_os("XDG_RUNTIME_DIR").filter(|p| !p.is_empty()) {
        v.push(Path::new(&r).join("containers/auth.json"));
    }
    match std::env::var_os("DOCKER_CONFIG").filter(|p| !p.is_empty()) {
        Some(d) => v.push(Path::new(&d).join("config.json")),
        None => {
            if let Some(h) = std::env::var_os("HOME") {
                v.push(Path::new(&h).join(".docker/config.json"));
            }
        }
    }
    v
}

/// User and password for `registry` from the first auth file that names it.
pub fn credentials(registry: &str) -> Result<Option<(String, String)>> {
    for f in auth_files() {
        let Ok(text) = crate::base::fsx::read_to_string(&f) else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a JSON auth file", f.display()))?;
        let Some(auths) = v.get("auths").and_then(|a| a.as_object()) else {
            continue;
        };
        for (k, entry) in auths {
            let host = k
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap_or("");
            if host != registry {
                continue;
            }
            let Some(a) = entry.get("auth").and_then(|a| a.as_str()) else {
                continue;
            };
            let raw = base64::engine::general_purpose::STANDARD
                .decode(a.trim())
                .with_context(|| format!("{}: auths.{k}.auth is not base64", f.display()))?;
            let s = String::from_utf8(raw)
                .with_context(|| format!("{}: auths.{k}.auth is not UTF-8", f.display()))?;
            let (u, p) = s.split_once(':').ok_or_else(|| {
                anyhow!(
                    "{}: auths.{k}.auth is not base64(user:password)",
                    f.display()
                )
            })?;
            return Ok(Some((u.to_string(), p.to_string())));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_parameters_keep_commas_inside_quotes() {
        let p = challenge_params(
            r#"realm="https://auth.test/token",service="registry.test",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(
            p,
            vec![
                ("realm".into(), "https://auth.test/token".into()),
                ("service".into(), "registry.test".into()),
                ("scope".into(), "repository:a/b:pull,push".into())
            ]
        );
    }
}
