//! `--check-reproducible`: two builds of the same inputs compared artifact by artifact; the
//! first difference is named by byte range and by what it belongs to (a partition, a file in
//! the root filesystem, a JSON path, a lockfile line).

use anyhow::{bail, Result};

use super::Built;
use crate::base::fsx;
use crate::image_dir::ARTIFACTS_IN_ORDER;

/// Compare two builds of the same inputs artifact by artifact; name the first difference.
pub fn compare_dirs(first: &Built, second: &Built) -> Result<()> {
    let (a, b) = (&first.dir, &second.dir);
    for name in ARTIFACTS_IN_ORDER.iter().copied() {
        let (x, y) = (a.join(name), b.join(name));
        if !x.exists() {
            continue;
        }
        let (dx, dy) = (fsx::read(&x)?, fsx::read(&y)?);
        if dx != dy {
            let first_at = dx
                .iter()
                .zip(dy.iter())
                .position(|(p, q)| p != q)
                .unwrap_or(dx.len().min(dy.len()));
            let last = dx
                .iter()
                .zip(dy.iter())
                .rposition(|(p, q)| p != q)
                .unwrap_or(first_at);
            let what = explain_difference(name, &dx, &dy)
                .or_else(|| {
                    (name == "disk.raw").then(|| {
                        format!(
                            "the first differing byte is in {}",
                            first.describe(first_at as u64)
                        )
                    })
                })
                .map(|w| format!("; {w}"))
                .unwrap_or_default();
            bail!(
                "not reproducible: {name} differs in bytes {first_at}..={last} (sizes {} and {}){what}",
                dx.len(),
                dy.len()
            );
        }
    }
    Ok(())
}

/// Say where two versions of a non-disk artifact differ: the first JSON path for JSON files
/// (one document per line for `.jsonl`), the first line for the lockfile, and for the
/// compressed or converted disks the fact that disk.raw itself was identical (the files are
/// compared in that order).
fn explain_difference(name: &str, a: &[u8], b: &[u8]) -> Option<String> {
    if name == "disk.raw" {
        return None;
    }
    if name.starts_with("disk.") {
        return Some(format!(
            "disk.raw is identical, so {name}'s own encoding differs (compressor or qemu-img)"
        ));
    }
    let (ta, tb) = (std::str::from_utf8(a).ok()?, std::str::from_utf8(b).ok()?);
    if name.ends_with(".jsonl") {
        for (n, (la, lb)) in ta.lines().zip(tb.lines()).enumerate() {
            let va: serde_json::Value = serde_json::from_str(la).ok()?;
            let vb: serde_json::Value = serde_json::from_str(lb).ok()?;
            if let Some((path, x, y)) = json_difference(&va, &vb, "$".into()) {
                return Some(format!(
                    "line {}: {path} is {x} in one build and {y} in the other",
                    n + 1
                ));
            }
        }
    }
    if name.ends_with(".json") {
        let va: serde_json::Value = serde_json::from_str(ta).ok()?;
        let vb: serde_json::Value = serde_json::from_str(tb).ok()?;
        let (path, x, y) = json_difference(&va, &vb, "$".into())?;
        return Some(format!("{path} is {x} in one build and {y} in the other"));
    }
    let (n, (la, lb)) = ta
        .lines()
        .zip(tb.lines())
        .enumerate()
        .find(|(_, (x, y))| x != y)?;
    Some(format!("line {}: `{la}` against `{lb}`", n + 1))
}

/// The first JSON path where two values differ, with both values (shortened).
fn json_difference(
    a: &serde_json::Value,
    b: &serde_json::Value,
    path: String,
) -> Option<(String, String, String)> {
    use serde_json::Value;
    let short = |v: &Value| {
        let s = v.to_string();
        if s.len() > 80 {
            format!("{}…", s.chars().take(77).collect::<String>())
        } else {
            s
        }
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                match y.get(k) {
                    Some(w) => {
                        if let Some(d) = json_difference(v, w, format!("{path}.{k}")) {
                            return Some(d);
                        }
                    }
                    None => return Some((format!("{path}.{k}"), short(v), "absent".into())),
                }
            }
            y.iter()
                .find(|(k, _)| !x.contains_key(*k))
                .map(|(k, w)| (format!("{path}.{k}"), "absent".into(), short(w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                if let Some(d) = json_difference(v, w, format!("{path}[{i}]")) {
                    return Some(d);
                }
            }
            (x.len() != y.len()).then(|| {
                (
                    format!("{path}.length"),
                    x.len().to_string(),
                    y.len().to_string(),
                )
            })
        }
        _ => (a != b).then(|| (path, short(a), short(b))),
    }
}

#[cfg(test)]
mod tests {
    use super::explain_difference;

    #[test]
    fn differences_are_named_by_json_path_or_line() {
        let a = br#"{"packages":[{"name":"a","checksum":"11"},{"name":"b","checksum":"22"}]}"#;
        let b = br#"{"packages":[{"name":"a","checksum":"11"},{"name":"b","checksum":"23"}]}"#;
        assert_eq!(
            explain_difference("sbom.spdx.json", a, b).unwrap(),
            r#"$.packages[1].checksum is "22" in one build and "23" in the other"#
        );
        let a = b"{\"x\":1}\n{\"payload\":\"AA\"}\n";
        let b = b"{\"x\":1}\n{\"payload\":\"AB\",\"extra\":true}\n";
        assert_eq!(
            explain_difference("provenance.intoto.jsonl", a, b).unwrap(),
            r#"line 2: $.payload is "AA" in one build and "AB" in the other"#
        );
        assert_eq!(
            explain_difference("packages.lock", b"a = 1\nb = 2\n", b"a = 1\nb = 3\n").unwrap(),
            "line 2: `b = 2` against `b = 3`"
        );
        assert!(explain_difference("disk.raw.zst", b"\x28\xb5", b"\x28\xb6")
            .unwrap()
            .contains("disk.raw is identical"));
        assert_eq!(explain_difference("disk.raw", b"\0", b"\x01"), None);
    }
}
