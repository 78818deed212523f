//! Firmware descriptors (`firmware/*.toml`): which Debian package ships the code volume and,
//! for UEFI, the variable-store template for an architecture. A descriptor without `vars` is a
//! BIOS (SeaBIOS), loaded with `-bios`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::values::Arch;

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
