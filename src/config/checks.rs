//! A file a profile places in the image (`[[files]]`, an agent's files), and the checks on
//! what a profile takes from the build host: file sources (inside the profile's directory,
//! regular files, never a pseudo-filesystem), overlay directories (regular files, directories
//! and symlinks only) and the image paths files are placed at.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::values::{checked, Mode};
use super::{rule_at, rule_at_value, ConfigError};

/// A file placed in the image by the profile.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// Absolute path inside the image.
    pub path: String,
    /// Literal content.
    pub content: Option<String>,
    /// Host file, relative to the profile, to copy.
    pub source: Option<String>,
    /// A symbolic link to this target instead of a file (`/etc/localtime` to a zone, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Mode (default 0644).
    pub mode: Option<Mode>,
    /// Owner uid.
    #[serde(default)]
    pub uid: u32,
    /// Owner gid.
    #[serde(default)]
    pub gid: u32,
    /// Allow `source` to lie outside the profile's directory (a deliberate host path).
    #[serde(default)]
    pub allow_outside: bool,
}

/// Host paths a profile may never copy from: kernel and device pseudo-filesystems.
const PSEUDO_FS: &[&str] = &["/proc", "/sys", "/dev", "/run"];

/// Resolve a file's `source` against the directory of the profile that names it: the real
/// path (symlinks followed, so a link cannot lead out unseen) must be a regular file inside
/// that directory, or anywhere but a pseudo-filesystem when `allow_outside` is set.
pub(super) fn host_source(
    path: &Path,
    dir: &Path,
    spec: &FileSpec,
    src: &str,
) -> Result<String, ConfigError> {
    let at_source = |m: String| rule_at_value(&[path], "source", src, m);
    let joined = dir.join(src);
    let what = format!("file `{}`: source `{src}`", spec.path);
    let real = joined
        .canonicalize()
        .map_err(|e| at_source(format!("{what}: {e}")))?;
    if PSEUDO_FS.iter().any(|p| real.starts_with(p)) {
        return Err(at_source(format!(
            "{what} is {}, a pseudo-filesystem: refused",
            real.display()
        )));
    }
    let base = dir
        .canonicalize()
        .map_err(|e| at_source(format!("{what}: {}: {e}", dir.display())))?;
    if !real.starts_with(&base) && !spec.allow_outside {
        return Err(at_source(
            format!(
                "{what} resolves to {}, outside the profile's directory {}; set allow_outside = true for a deliberate host path",
                real.display(),
                base.display()
            ),
        ));
    }
    let meta = std::fs::metadata(&real).map_err(|e| at_source(format!("{what}: {e}")))?;
    if !meta.is_file() {
        return Err(at_source(format!(
            "{what} is not a regular file ({})",
            real.display()
        )));
    }
    Ok(real.to_string_lossy().into_owned())
}

/// An overlay directory: inside the profile's directory, and holding only regular files,
/// directories and symlinks (a FIFO would hang the build, a device would be read forever).
pub(super) fn overlay_dir(path: &Path, dir: &Path, o: &str) -> Result<PathBuf, ConfigError> {
    let at_overlays = |m: String| rule_at(&[path], None, "overlays", m);
    let what = format!("overlay `{o}`");
    let real = dir
        .join(o)
        .canonicalize()
        .map_err(|e| at_overlays(format!("{what}: {e}")))?;
    let base = dir
        .canonicalize()
        .map_err(|e| at_overlays(format!("{what}: {}: {e}", dir.display())))?;
    if !real.starts_with(&base) || PSEUDO_FS.iter().any(|p| real.starts_with(p)) {
        return Err(at_overlays(format!(
            "{what} resolves to {}, outside the profile's directory {}",
            real.display(),
            base.display()
        )));
    }
    let mut stack = vec![real.clone()];
    while let Some(d) = stack.pop() {
        let rd = std::fs::read_dir(&d)
            .map_err(|e| at_overlays(format!("{what}: {}: {e}", d.display())))?;
        for e in rd {
            let e = e.map_err(|e| at_overlays(format!("{what}: {}: {e}", d.display())))?;
            let ft = e
                .file_type()
                .map_err(|err| at_overlays(format!("{what}: {}: {err}", e.path().display())))?;
            if ft.is_dir() {
                stack.push(e.path());
            } else if !ft.is_file() && !ft.is_symlink() {
                return Err(at_overlays(format!(
                    "{what}: {} is {}; overlays hold regular files, directories and symlinks only",
                    e.path().display(),
                    crate::base::fsx::kind_of(&ft)
                )));
            }
        }
    }
    Ok(real)
}

/// The checks every file spec gets, the profile's and the agents' alike.
pub(super) fn check_file(path: &Path, f: &FileSpec) -> Result<(), ConfigError> {
    let at_path = |m: String| rule_at_value(&[path], "path", &f.path, m);
    if !f.path.starts_with('/') {
        return Err(at_path(format!("file path `{}` must be absolute", f.path)));
    }
    if f.path.split('/').any(|c| c == "..") {
        return Err(at_path(format!(
            "file path `{}` must not contain `..`",
            f.path
        )));
    }
    if let Some(e) = checked::field_error(&f.path, false) {
        return Err(at_path(format!("file path: {e}")));
    }
    // One spelling per file: `/etc//x`, `/etc/./x` and `/etc/x/` would each be a second entry
    // for `/etc/x` that the duplicate check could not see, and `/` is no file at all.
    if f.path[1..].split('/').any(|c| c.is_empty() || c == ".") {
        return Err(at_path(format!(
            "file path `{}` must name a file plainly: no empty or `.` components and no trailing `/`",
            f.path
        )));
    }
    if PSEUDO_FS[..3]
        .iter()
        .any(|p| f.path == *p || f.path.starts_with(&format!("{p}/")))
    {
        return Err(at_path(format!(
            "file `{}` is under a pseudo-filesystem mounted at boot; it would be hidden",
            f.path
        )));
    }
    let given = [&f.content, &f.source, &f.link]
        .iter()
        .filter(|v| v.is_some())
        .count();
    if given != 1 {
        return Err(at_path(format!(
            "file `{}` needs exactly one of `content`, `source` or `link`",
            f.path
        )));
    }
    if let Some(target) = &f.link {
        let at_link = |m: String| rule_at_value(&[path], "link", target, m);
        if f.mode.is_some() {
            return Err(at_path(format!(
                "file `{}` is a link: a link has no mode of its own (its target's applies)",
                f.path
            )));
        }
        // The kernel reads a link's target up to PATH_MAX; a NUL would end it early.
        if target.is_empty() || target.len() >= 4096 || target.contains('\0') {
            return Err(at_link(format!(
                "file `{}`: a link target must be 1 to 4095 bytes with no NUL",
                f.path
            )));
        }
    }
    for (key, id) in [("uid", f.uid), ("gid", f.gid)] {
        if let Some(e) = checked::id_error(id) {
            let after = format!("\"{}\"", f.path);
            return Err(super::rule_at(
                &[path],
                Some(&after),
                key,
                format!("file `{}`: owner {key} {e}", f.path),
            ));
        }
    }
    Ok(())
}
