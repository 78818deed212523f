//! What a registry answered: a status error with the OCI error codes in its body, and the
//! `Link` header of paged lists.

/// A status the registry answered with, and its own words.
#[derive(Debug, thiserror::Error)]
#[error("{what}: the registry answered {status}{detail}")]
pub struct StatusError {
    /// What was asked.
    pub what: String,
    /// HTTP status.
    pub status: u16,
    /// The OCI error codes and messages, if any.
    pub detail: String,
}

/// The HTTP status inside an error from `Client::send`, if it was one.
pub fn status_of(e: &anyhow::Error) -> Option<u16> {
    e.chain()
        .find_map(|c| c.downcast_ref::<StatusError>())
        .map(|s| s.status)
}

pub(super) fn next_link(h: &str) -> Option<String> {
    // `<url>; rel="next"`
    let (u, rest) = h.trim().strip_prefix('<')?.split_once('>')?;
    rest.contains("rel=\"next\"").then(|| u.to_string())
}

pub(super) fn oci_errors(text: &str) -> String {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return String::new();
    };
    let errs: Vec<String> = v
        .get("errors")
        .and_then(|e| e.as_array())
        .map(|a| {
            a.iter()
                .map(|e| {
                    format!(
                        "{} {}",
                        e.get("code").and_then(|c| c.as_str()).unwrap_or(""),
                        e.get("message").and_then(|c| c.as_str()).unwrap_or("")
                    )
                    .trim()
                    .to_string()
                })
                .collect()
        })
        .unwrap_or_default();
    if errs.is_empty() {
        String::new()
    } else {
        format!(": {}", errs.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_errors_parse() {
        assert_eq!(
            next_link(r#"</v2/a/tags/list?n=2&last=b>; rel="next""#).as_deref(),
            Some("/v2/a/tags/list?n=2&last=b")
        );
        assert_eq!(
            oci_errors(r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#),
            ": MANIFEST_UNKNOWN manifest unknown"
        );
    }
}
