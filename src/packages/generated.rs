//! Packages Ingot makes itself: dpkg database entries for what its build does in place of a
//! Debian package, so dpkg and apt in the image see every dependency met and nothing lied
//! about. They have no .deb: the lock records them with the role `generated`, the SBOM lists
//! them with Ingot as supplier, and unpacking writes their status entry only.

use std::path::PathBuf;

use anyhow::Result;

use super::cache::Cache;
use super::index::PackageInfo;

/// The entry for the initramfs Ingot builds: it provides `linux-initramfs-tool`, which every
/// Debian kernel package depends on (`initramfs-tools | linux-initramfs-tool`).
pub const INITRAMFS: &str = "ingot-initramfs";

/// The version of [`INITRAMFS`]: raised when what the entry stands for changes.
const INITRAMFS_VERSION: &str = "1";

/// The suite generated packages are recorded under (not a Debian suite).
pub const SUITE: &str = "ingot";

/// What Ingot's maintainers are called in the entries' `Maintainer` field.
const MAINTAINER: &str = "Ingot image builder";

/// The [`INITRAMFS`] entry.
pub fn initramfs() -> PackageInfo {
    PackageInfo {
        name: INITRAMFS.into(),
        version: INITRAMFS_VERSION.into(),
        arch: "all".into(),
        filename: String::new(),
        size: 0,
        sha256: String::new(),
        suite: SUITE.into(),
        depends: String::new(),
        pre_depends: String::new(),
        recommends: String::new(),
        provides: "linux-initramfs-tool".into(),
        conflicts: String::new(),
        breaks: String::new(),
        essential: false,
        priority: "optional".into(),
        maintainer: MAINTAINER.into(),
        source: String::new(),
        source_version: String::new(),
    }
}

/// Whether a lock entry is one of these (by name and suite, as the lock records them).
pub fn is_generated(info: &PackageInfo) -> bool {
    info.suite == SUITE && info.name == INITRAMFS
}

/// The entry's control paragraph, as dpkg keeps it (without `Status`).
pub fn control(info: &PackageInfo) -> String {
    let mut c = format!(
        "Package: {}\nVersion: {}\nArchitecture: {}\nMaintainer: {}\nPriority: {}\nSection: admin\n",
        info.name, info.version, info.arch, info.maintainer, info.priority
    );
    if !info.provides.is_empty() {
        c.push_str(&format!("Provides: {}\n", info.provides));
    }
    c.push_str(
        "Description: initramfs built by Ingot at image build time\n Ingot builds the image's initramfs itself and runs no kernel maintainer\n scripts; this entry stands for that initramfs so that the kernel's\n linux-initramfs-tool dependency is met for dpkg and apt.\n",
    );
    c
}

/// An empty data.tar (one end-of-archive record) in the cache, for unpacking an entry that
/// has no files.
pub fn empty_tar(cache: &Cache) -> Result<PathBuf> {
    let p = cache.extract_path("empty", "tar");
    let bytes = vec![0u8; 10240];
    if std::fs::read(&p).ok().as_deref() != Some(&bytes[..]) {
        crate::base::fsx::write_atomic(&p, &bytes)?;
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entry_reads_back_as_dpkg_would_keep_it() {
        let i = initramfs();
        let text = format!(
            "{}Filename: x\nSize: 0\nSHA256: 00\n",
            control(&i).replace("Description", "X-Description")
        );
        let back = PackageInfo::from_stanza(&text, SUITE).unwrap();
        assert_eq!(back.name, INITRAMFS);
        assert_eq!(back.provides, "linux-initramfs-tool");
        assert_eq!(back.arch, "all");
        assert!(is_generated(&i));
        let paras = crate::packages::control::parse(&control(&i)).unwrap();
        assert_eq!(paras.len(), 1);
        assert!(paras[0].get("Description").unwrap().contains("initramfs"));
    }
}
