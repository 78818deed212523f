//! What an A/B image carries for over-the-air updates: the on-device updater (`ingot-update`,
//! plain POSIX shell kept in `device/`), its configuration (image identity, the slot, ESP and
//! data partition GUIDs, tries and watchdog), the public key it trusts, and the `/data` mount
//! point. Every value written into the shell-sourced configuration is checked to be a plain
//! word first.

use anyhow::{bail, Result};

use super::put;
use crate::base::identity::{derived_guid, Identity};
use crate::config::{Hardware, Profile};
use crate::tree::{Entry, Tree};
use crate::trust::minisign::PublicKey;

/// The updater, installed as `/usr/sbin/ingot-update`.
pub const UPDATER: &str = include_str!("../../device/ingot-update");

/// busybox applets the updater uses beyond an edge image's usual set.
pub(super) const OTA_APPLETS: &[&str] = &[
    "base64",
    "basename",
    "gunzip",
    "hexdump",
    "readlink",
    "sha256sum",
];
/// …and those busybox installs in sbin.
pub(super) const OTA_SBIN: &[&str] = &["blockdev", "watchdog"];

/// The GUID of an A/B partition (`esp`, `root-a`, `root-b`, `data`): the same for every
/// version of the image, as `disk::layout_ab` writes it.
pub fn partition_guid(id: &Identity, part: &str) -> String {
    derived_guid(&id.stable(), part).to_string()
}

fn word_ok(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// The updater's configuration, sourced by the shell: every value a plain word.
pub fn config_text(profile: &Profile, hw: &Hardware, id: &Identity) -> Result<String> {
    let Some(ab) = &hw.ab else {
        bail!("{}: not an A/B hardware profile", hw.path.display());
    };
    if id.version.contains('+') {
        bail!(
            "{}: version `{}` has build metadata (`+…`): on an A/B disk the version names boot entries, where `+` starts systemd-boot's try counter",
            profile.path.display(),
            id.version
        );
    }
    let data = if ab.data_size.0 == 0 {
        String::new()
    } else {
        partition_guid(id, "data")
    };
    let vals = [
        ("IMAGE", id.name.clone()),
        ("VERSION", id.version.clone()),
        ("ARCH", id.arch.clone()),
        ("HARDWARE", hw.name.clone()),
        ("TRIES", profile.ota.tries.to_string()),
        ("WATCHDOG", profile.ota.watchdog.to_string()),
        ("SLOT_A", partition_guid(id, "root-a")),
        ("SLOT_B", partition_guid(id, "root-b")),
        ("ESP_UUID", partition_guid(id, "esp")),
        ("DATA", data),
    ];
    let mut text =
        String::from("# Written by ingot at build time: what ingot-update needs to know.\n");
    for (k, v) in vals {
        if !v.is_empty() && !word_ok(&v) {
            bail!(
                "{}: `{v}` ({k}) is not a plain word of letters, digits, `.`, `-` and `_`",
                hw.path.display()
            );
        }
        text.push_str(&format!("{k}={v}\n"));
    }
    Ok(text)
}

/// Install the updater, its configuration, the trusted key and the `/data` mount point.
pub fn install(
    tree: &mut Tree,
    profile: &Profile,
    hw: &Hardware,
    id: &Identity,
    key: &PublicKey,
) -> Result<()> {
    put(tree, "usr/sbin/ingot-update", UPDATER, 0o755)?;
    put(
        tree,
        "etc/ingot/ota.conf",
        config_text(profile, hw, id)?,
        0o644,
    )?;
    put(tree, "etc/ingot/update.pub", key.to_file(), 0o644)?;
    tree.mkdir_p("data")?;
    if !tree.exists("etc/machine-id") {
        // The bind mount of the persistent machine id needs a file to land on.
        tree.insert("etc/machine-id", Entry::file("", 0o444))?;
    }
    Ok(())
}
