//! The lockfile (`PROFILE.lock`): every package of a target pinned by name, version, size and
//! SHA-256, with the suites' InRelease digests, so a locked build fetches exactly that.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::index::PackageInfo;

/// Why a package is in the set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Installed in the root filesystem.
    Image,
    /// Used at build time only (initramfs busybox, boot loader binary).
    Boot,
    /// Made by Ingot (see `packages::generated`): a dpkg database entry with no .deb.
    Generated,
}

/// A locked package.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Locked {
    /// Role in the build.
    pub role: Role,
    /// Package metadata.
    #[serde(flatten)]
    pub info: PackageInfo,
}

/// One architecture's package set in a lockfile.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LockTarget {
    /// Hardware profile name.
    pub hardware: String,
    /// Debian architecture.
    pub arch: String,
    /// Digest of every input that decides the package set.
    pub inputs_digest: String,
    /// Digests of the InRelease files the set was resolved from.
    #[serde(default)]
    pub releases: BTreeMap<String, String>,
    /// The `Date` of each of those Release files: how fresh the archive was.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub release_dates: BTreeMap<String, String>,
    /// `Recommends` the resolver skipped because nothing could satisfy them (apt skips them
    /// too), and the kernel's helpers left out of an image without dpkg, one line each: the
    /// lock's log of what was left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    /// Packages, sorted by role then name.
    pub package: Vec<Locked>,
}

/// A lockfile: one target per hardware profile.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Lockfile {
    /// Format version.
    pub version: u32,
    /// Targets.
    pub target: Vec<LockTarget>,
}

impl Lockfile {
    /// The lockfile format this Ingot writes and reads.
    pub const VERSION: u32 = 1;

    /// Read a lockfile.
    pub fn load(path: &Path) -> Result<Self> {
        let text = crate::base::fsx::read_to_string(path)
            .with_context(|| format!("lockfile {}", path.display()))?;
        Self::parse(&text, path)
    }

    /// Parse a lockfile's text; `path` names it in errors (with line and column).
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        // A profile given where its lockfile belongs: say so rather than "missing field".
        let table = toml::from_str::<toml::Table>(text).ok();
        if table.is_some_and(|t| t.contains_key("image") && !t.contains_key("target")) {
            anyhow::bail!(
                "{}: this is a profile, not a lockfile; give its lockfile (written by `ingot lock`, beside the profile as PROFILE.lock) or an image directory",
                path.display()
            );
        }
        // A lockfile that does not parse is bad input (exit 2), at its line.
        let lock: Self = toml::from_str(text).map_err(|e| {
            let (l, c) = e
                .span()
                .map_or((1, 1), |s| crate::config::line_col(text, s.start));
            crate::base::BadInput(format!("{}:{l}:{c}: {}", path.display(), e.message()))
        })?;
        if lock.version != Self::VERSION {
            let line = text
                .lines()
                .position(|l| l.trim_start().starts_with("version"))
                .map_or(1, |i| i + 1);
            return Err(crate::base::BadInput(format!(
                "{}:{line}:1: lockfile version {}: this Ingot reads version {}; run `ingot lock` again",
                path.display(),
                lock.version,
                Self::VERSION
            ))
            .into());
        }
        Ok(lock)
    }

    /// Serialise deterministically.
    pub fn to_toml(&self) -> Result<String> {
        Ok(format!(
            "# Written by `ingot lock`; pins every package by version and SHA-256.\n{}",
            toml::to_string(self)?
        ))
    }

    /// The target for a hardware profile.
    pub fn target(&self, hw: &str) -> Option<&LockTarget> {
        self.target.iter().find(|t| t.hardware == hw)
    }
}

/// Where a profile's lockfile lives: `PROFILE.lock` beside `PROFILE.toml`.
pub fn lock_path(profile: &Path) -> PathBuf {
    profile.with_extension("lock")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_is_named_as_one_and_a_bad_lockfile_by_line() {
        let p = Path::new("profiles/vm-base.toml");
        let text = std::fs::read_to_string(p).unwrap();
        let e = Lockfile::parse(&text, p).unwrap_err().to_string();
        assert!(
            e.contains("vm-base.toml: this is a profile, not a lockfile"),
            "{e}"
        );
        let e = Lockfile::parse("version = 1\n[[target]]\nname = 3\n", Path::new("x.lock"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("x.lock:2:1: missing field"), "{e}");
    }
}
