//! Where a test run's outputs go: the report paths checked before anything boots, the reports
//! written when it ends, and the console logs' directory and names.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The reports a test run writes when it ends (`--json`, `--junit`, `--html`) and its log
/// directory, checked before anything boots: a run of many minutes must not end without its
/// report because the path was a directory or lay under a file. Nothing is made here (a
/// report's missing directories are made when it is written, by [`write_report`]). Bad input
/// (exit 2), naming the flag.
pub fn check_outputs(reports: &[(&str, Option<&Path>)], logs: Option<&Path>) -> Result<()> {
    let bad = |flag: &str, p: &Path, why: String| -> anyhow::Error {
        crate::base::BadInput(format!("{flag} {}: {why}", p.display())).into()
    };
    let under_a_file = |p: &Path| {
        let mut a = p.parent();
        while let Some(d) = a.filter(|d| !d.as_os_str().is_empty()) {
            match std::fs::metadata(d) {
                Ok(m) if m.is_dir() => return None,
                Ok(_) => return Some(d.to_path_buf()),
                Err(_) => a = d.parent(),
            }
        }
        None
    };
    if let Some(l) = logs {
        if l.exists() && !l.is_dir() {
            return Err(bad("--logs", l, "exists and is not a directory".into()));
        }
        if let Some(f) = under_a_file(l) {
            return Err(bad(
                "--logs",
                l,
                format!("{} is not a directory", f.display()),
            ));
        }
    }
    for (flag, p) in reports {
        let Some(p) = p else { continue };
        if p.is_dir() {
            return Err(bad(
                flag,
                p,
                "is a directory; give the report's file name".into(),
            ));
        }
        if let Some(f) = under_a_file(p) {
            return Err(bad(flag, p, format!("{} is not a directory", f.display())));
        }
    }
    Ok(())
}

/// Write a report the run was asked for, making its missing directories first (as the log
/// directory beside a report is made), atomically.
pub fn write_report(p: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    crate::base::fsx::write_atomic(p, bytes)
}

/// Where boot-test keeps console logs: `--logs`, else beside the JSON or JUnit report, else a
/// new directory under the system's temporary directory (kept: it is the only copy).
pub fn log_dir(logs: Option<&Path>, json: Option<&Path>, junit: Option<&Path>) -> Result<PathBuf> {
    let dir = if let Some(l) = logs {
        l.to_path_buf()
    } else if let Some(report) = json.or(junit) {
        match report.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        }
    } else {
        crate::base::fsx::scratch_dir("ingot-boot-logs")?.keep()
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating the log directory {}", dir.display()))?;
    Ok(dir)
}

/// One log-name stem per image: the directory's name (`edge-minimal-1.0.0-x86_64`), with `-2`,
/// `-3`… when two image directories share a name.
pub fn log_names(images: &[PathBuf]) -> Vec<String> {
    distinct(images.iter().map(|i| {
        i.canonicalize()
            .unwrap_or_else(|_| i.clone())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".into())
    }))
}

/// The stems, each made distinct from those before it by `-2`, `-3`…
pub fn distinct(stems: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for base in stems {
        let mut name = base.clone();
        let mut k = 2;
        while names.contains(&name) {
            name = format!("{base}-{k}");
            k += 1;
        }
        names.push(name);
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_logs_go_beside_the_report_with_one_name_per_image() {
        let t = tempfile::tempdir().unwrap();
        let report = t.path().join("ci").join("report.xml");
        assert_eq!(
            log_dir(None, None, Some(&report)).unwrap(),
            t.path().join("ci")
        );
        let json = t.path().join("j").join("r.json");
        assert_eq!(
            log_dir(None, Some(&json), Some(&report)).unwrap(),
            t.path().join("j")
        );
        let logs = t.path().join("logs");
        assert_eq!(log_dir(Some(&logs), Some(&json), None).unwrap(), logs);
        assert!(logs.is_dir());
        assert_eq!(
            log_dir(None, Some(Path::new("r.json")), None).unwrap(),
            PathBuf::from(".")
        );
        let names = log_names(&[
            PathBuf::from("/nonexistent/a/edge-1.0-x86_64"),
            PathBuf::from("/nonexistent/b/edge-1.0-x86_64"),
            PathBuf::from("/nonexistent/b/edge-1.0-aarch64"),
        ]);
        assert_eq!(
            names,
            ["edge-1.0-x86_64", "edge-1.0-x86_64-2", "edge-1.0-aarch64"]
        );
    }
}
