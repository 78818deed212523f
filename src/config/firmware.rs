//! Firmware descriptors (`firmware/*.toml`): which Debian package ships the code volume and,
//! for UEFI, the variable-store template for an architecture. A descriptor without `vars` is a
//! BIOS (SeaBIOS), loaded with `-bios`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::values::{checked, Arch};
use super::{not_a, rule_at, ConfigError};

/// A firmware descriptor.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Firmware {
    /// Descriptor name (`ovmf`, `aavmf`).
    pub name: String,
    /// Architecture it boots.
    pub arch: Arch,
    /// Debian package that ships it.
    pub package: String,
    /// Suite to take the package from.
    #[serde(default = "default_suite")]
    pub suite: String,
    /// Path of the code volume inside the package.
    pub code: String,
    /// Path of the variable-store template inside the package; absent for a BIOS (SeaBIOS),
    /// which keeps no variables.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vars: String,
    /// Where the file was loaded from (never written out: it is the build host's path).
    #[serde(skip)]
    pub path: PathBuf,
}

fn default_suite() -> String {
    "bookworm".into()
}

/// The descriptor's words, each at its line: `package` and `suite` reach the archive's URLs,
/// `code` and `vars` are looked up in the unpacked package, and a mistake in any of them would
/// otherwise show only when a boot test fetches the firmware.
pub(super) fn check(path: &Path, fw: &Firmware) -> Result<(), ConfigError> {
    let bad = |key: &str, value: &str, what: &str| not_a(path, key, value, what);
    if !checked::is_word(&fw.name, &[]) {
        return Err(bad(
            "name",
            &fw.name,
            "a plain name (letters, digits, `.`, `_`, `-`), like ovmf",
        ));
    }
    if checked::package_spec_error(&fw.package, false).is_some() {
        return Err(bad(
            "package",
            &fw.package,
            "a Debian package name (like ovmf or qemu-efi-aarch64)",
        ));
    }
    let suite_ok = fw.suite.len() <= 64
        && fw.suite.starts_with(|c: char| c.is_ascii_lowercase())
        && fw
            .suite
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !suite_ok {
        return Err(bad(
            "suite",
            &fw.suite,
            "a suite name (lowercase letters, digits and dashes, like trixie)",
        ));
    }
    for (key, value) in [("code", &fw.code), ("vars", &fw.vars)] {
        if key == "vars" && value.is_empty() {
            continue;
        }
        let parts: Vec<&str> = value.strip_prefix('/').unwrap_or("").split('/').collect();
        let ok = value.starts_with('/')
            && parts
                .iter()
                .all(|c| !c.is_empty() && *c != "." && *c != "..")
            && checked::field_error(value, false).is_none();
        if !ok {
            return Err(if value.is_empty() {
                rule_at(
                    &[path],
                    None,
                    key,
                    format!("{key}: empty; give the file's path in the package"),
                )
            } else {
                bad(
                    key,
                    value,
                    "a plain absolute path of a file in the package (like /usr/share/OVMF/OVMF_CODE_4M.fd)",
                )
            });
        }
    }
    Ok(())
}
