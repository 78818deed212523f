//! Configuration model: image profiles (`profiles/`), hardware profiles (`hardware/`) and UEFI
//! firmware descriptors (`firmware/`). Every file is TOML with unknown keys rejected; every error
//! names the file, line, column and field, and suggests the closest valid key.

mod checks;
mod firmware;
mod hardware;
mod locate;
mod merge;
mod profile;
mod values;

use std::path::{Path, PathBuf};

use serde::Deserialize;

use merge::merge_chain;
use profile::ProfileFile;

pub use checks::FileSpec;
pub use firmware::Firmware;
pub use hardware::{
    load_hardware_for, AbLayout, DiskLayout, ExtraPartition, Hardware, QemuSettings,
    DEFAULT_HARDWARE,
};
pub use locate::line_col;
pub(crate) use locate::{find_key, not_a, rule, rule_at, rule_at_item, rule_at_value};
pub use profile::{
    Agent, Distribution, Group, ImageMeta, KernelSettings, Network, Ota, Output, Packages, Profile,
    Sysprep, User, DERIVED_LABELS,
};
pub use values::checked::account_name_error;
pub use values::{Arch, ByteSize, Format, InitSystem, Mode, SemVer, ZstdLevel};

/// A configuration file that could not be read or is not valid.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("{path}: cannot read: {error}")]
    Read {
        /// File that failed.
        path: PathBuf,
        /// Underlying I/O error, part of this message (not a separate cause in the chain, so
        /// `{:#}` does not print it twice).
        error: std::io::Error,
    },
    /// The file is not valid for its kind, at a known position.
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        /// File that failed.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong and what was expected.
        message: String,
    },
    /// The file is valid TOML but its content breaks a rule that has no single position.
    #[error("{path}: {message}")]
    Rule {
        /// File that failed.
        path: PathBuf,
        /// What is wrong and what was expected.
        message: String,
    },
}

/// Largest fixed disk size: disk.raw is one sparse file on the build host, and ext4 (the
/// usual host filesystem) caps a file at 16 TiB.
pub const MAX_DISK: u64 = 16 << 40;

/// Largest configuration file read: a profile is a few KiB; `/dev/zero` is endless.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

pub(crate) fn read(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read;
    let io_err = |error| ConfigError::Read {
        path: path.to_path_buf(),
        error,
    };
    // Without blocking: opening a FIFO for reading waits for a writer.
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io_err)?;
    let meta = f.metadata().map_err(io_err)?;
    if !meta.is_file() {
        return Err(rule(path, "not a regular file"));
    }
    let mut text = String::new();
    f.take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(io_err)?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(rule(
            path,
            format!("larger than {MAX_CONFIG_BYTES} bytes; not a configuration file"),
        ));
    }
    Ok(text)
}

pub(crate) fn parse_toml<T: for<'de> Deserialize<'de>>(
    path: &Path,
    text: &str,
) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map_or((1, 1), |s| line_col(text, s.start));
        let mut message = e.message().trim().to_string();
        if let Some(hint) = unknown_key_hint(&message) {
            message.push_str(&hint);
        }
        ConfigError::Invalid {
            path: path.to_path_buf(),
            line,
            column,
            message,
        }
    })
}

/// For serde's "unknown field `x`, expected one of `a`, `b`" add "; did you mean `a`?".
fn unknown_key_hint(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (bad, rest) = rest.split_once('`')?;
    let candidates: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    let best = candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(bad, c), *c))
        .filter(|(score, _)| *score > 0.75)
        .max_by(|a, b| a.0.total_cmp(&b.0))?;
    Some(format!("; did you mean `{}`?", best.1))
}

/// Parse one profile's text as if read from `path`, without following `extends`: the same
/// checks and messages as [`load_profile`] for a single file (the fuzz targets' entry point).
pub fn profile_from_str(path: &Path, text: &str) -> Result<Profile, ConfigError> {
    let file: ProfileFile = parse_toml(path, text)?;
    merge_chain(path, vec![(path.to_path_buf(), file)])
}

/// Load an image profile, following `extends`.
pub fn load_profile(path: &Path) -> Result<Profile, ConfigError> {
    let mut chain: Vec<(PathBuf, ProfileFile)> = Vec::new();
    let mut next = Some(path.to_path_buf());
    while let Some(p) = next.take() {
        let canon = p.canonicalize().map_err(|error| ConfigError::Read {
            path: p.clone(),
            error,
        })?;
        if chain.iter().any(|(seen, _)| *seen == canon) {
            return Err(rule(
                path,
                format!(
                    "`extends` forms a cycle through {} (a profile cannot extend itself)",
                    canon.display()
                ),
            ));
        }
        let text = read(&p)?;
        let file: ProfileFile = parse_toml(&p, &text)?;
        if let Some(parent) = &file.extends {
            let base = canon.parent().unwrap_or(Path::new("."));
            next = Some(base.join(parent));
        }
        chain.push((canon, file));
    }
    merge_chain(path, chain)
}

/// Load a hardware profile.
pub fn load_hardware(path: &Path) -> Result<Hardware, ConfigError> {
    let text = read(path)?;
    let mut hw: Hardware = parse_toml(path, &text)?;
    hw.path = path.to_path_buf();
    // Each rule points at the line that sets the value (the file alone when a default broke it).
    let at = |table: &str, key: &str, message: String| -> ConfigError {
        match find_key(&text, Some(&format!("[{table}]")), key) {
            Some((line, column)) => ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                message,
            },
            None => rule(path, message),
        }
    };
    // Absent, not empty: `cpu = ""` is refused below, at its line.
    if hw.qemu.cpu.is_empty() && find_key(&text, Some("[qemu]"), "cpu").is_none() {
        hw.qemu.cpu = hardware::default_cpu(hw.arch).into();
    }
    hardware::check_words(path, &hw)?;
    if hw.disk.root_fs != "ext4" {
        return Err(at(
            "disk",
            "root_fs",
            format!(
                "disk.root_fs `{}` is not supported (expected \"ext4\")",
                hw.disk.root_fs
            ),
        ));
    }
    if hw.disk.size != "auto" {
        ByteSize::parse(&hw.disk.size)
            .map_err(|e| at("disk", "size", format!("disk.size: {e} (or \"auto\")")))?;
    }
    if hw.disk.size != "auto" {
        let size = ByteSize::parse(&hw.disk.size).map_err(|e| at("disk", "size", e))?;
        if size.0 > MAX_DISK {
            return Err(at(
                "disk",
                "size",
                format!(
                    "disk.size {} is larger than {} (ext4's largest file on the build host)",
                    hw.disk.size,
                    ByteSize(MAX_DISK)
                ),
            ));
        }
    }
    if hw.qemu.memory == 0 || hw.qemu.smp == 0 || hw.qemu.smp > 64 {
        return Err(at(
            "qemu",
            if hw.qemu.memory == 0 { "memory" } else { "smp" },
            format!(
                "qemu.memory ({} MiB) must be at least 1 and qemu.smp ({}) between 1 and 64",
                hw.qemu.memory, hw.qemu.smp
            ),
        ));
    }
    if let Some(ab) = &hw.ab {
        if !hw.disk.partitions.is_empty() || hw.disk.size != "auto" {
            return Err(at(
                "disk",
                if hw.disk.partitions.is_empty() { "size" } else { "partitions" },
                "[ab] lays the disk out itself (ESP, root-a, root-b, data): remove disk.partitions and leave disk.size \"auto\"".into(),
            ));
        }
        if ab.slot_size.0 < 16 << 20 || ab.slot_size.0 > MAX_DISK / 4 {
            return Err(at(
                "ab",
                "slot_size",
                format!(
                    "ab.slot_size {} must be between 16MiB and {}",
                    ab.slot_size,
                    ByteSize(MAX_DISK / 4)
                ),
            ));
        }
        if ab.data_size.0 != 0 && (ab.data_size.0 < 4 << 20 || ab.data_size.0 > MAX_DISK / 4) {
            return Err(at(
                "ab",
                "data_size",
                format!(
                    "ab.data_size {} must be 0 (no data partition) or between 4MiB and {}",
                    ab.data_size,
                    ByteSize(MAX_DISK / 4)
                ),
            ));
        }
    }
    if hw.disk.bios && (hw.arch != Arch::X86_64 || hw.ab.is_some()) {
        return Err(at(
            "disk",
            "bios",
            format!(
                "disk.bios: a BIOS boots x86_64 disks with one root; this is {}{}",
                hw.arch,
                if hw.ab.is_some() {
                    " with [ab] slots (the updater switches slots through systemd-boot's entries)"
                } else {
                    ""
                }
            ),
        ));
    }
    if hw.disk.esp_size.0 < 33 << 20 {
        return Err(at(
            "disk",
            "esp_size",
            "disk.esp_size must be at least 33MiB (FAT32 minimum)".into(),
        ));
    }
    Ok(hw)
}

/// Load a firmware descriptor.
pub fn load_firmware(path: &Path) -> Result<Firmware, ConfigError> {
    let text = read(path)?;
    let mut fw: Firmware = parse_toml(path, &text)?;
    fw.path = path.to_path_buf();
    firmware::check(path, &fw)?;
    Ok(fw)
}

/// Find the firmware descriptor a hardware profile names: `firmware/<name>.toml` beside the
/// hardware directory.
pub fn firmware_for(hw: &Hardware) -> Result<Firmware, ConfigError> {
    // `hardware/x.toml` → `./firmware`; a bare `x.toml` (run inside `hardware/`) → `../firmware`.
    let dir = hw.path.parent().unwrap_or(Path::new(""));
    let root = if dir.as_os_str().is_empty() || dir == Path::new(".") {
        PathBuf::from("..")
    } else {
        match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    };
    let path = root.join("firmware").join(format!("{}.toml", hw.firmware));
    let at_firmware = |message: String| rule_at(&[&hw.path], None, "firmware", message);
    let fw = match load_firmware(&path) {
        Err(ConfigError::Read { error, .. }) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(at_firmware(format!(
                "firmware: no firmware `{}` ({} does not exist; the firmware files sit in \
                 `firmware/` beside the hardware profile's directory)",
                hw.firmware,
                path.display()
            )));
        }
        r => r?,
    };
    if fw.arch != hw.arch {
        return Err(at_firmware(format!(
            "firmware: `{}` boots {} but the hardware is {}",
            fw.name, fw.arch, hw.arch
        )));
    }
    Ok(fw)
}

/// What kind of configuration a file holds, judged by its directory or its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `profiles/`
    Profile,
    /// `hardware/`
    Hardware,
    /// `firmware/`
    Firmware,
}

/// Guess a file's kind from the directory it lives in, falling back to its keys.
pub fn kind_of(path: &Path) -> Kind {
    let dir = path
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("");
    match dir {
        "hardware" => Kind::Hardware,
        "firmware" => Kind::Firmware,
        "profiles" => Kind::Profile,
        _ => {
            // The bounded reader: a path like /dev/zero is refused, not read forever (the
            // error itself comes from loading it as a profile below).
            let text = read(path).unwrap_or_default();
            if text.contains("kernel_package") {
                Kind::Hardware
            } else if text.lines().any(|l| l.trim_start().starts_with("vars")) {
                Kind::Firmware
            } else {
                Kind::Profile
            }
        }
    }
}

/// Check one file of any kind.
pub fn validate(path: &Path) -> Result<Kind, ConfigError> {
    let kind = kind_of(path);
    match kind {
        Kind::Profile => {
            load_profile(path)?;
        }
        Kind::Hardware => {
            let hw = load_hardware(path)?;
            firmware_for(&hw)?;
        }
        Kind::Firmware => {
            load_firmware(path)?;
        }
    }
    Ok(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    const GOOD: &str =
        "[image]\nname = \"x\"\nversion = \"1.0.0\"\n[distribution]\nsuite = \"bookworm\"\n";

    #[test]
    fn semver_rules() {
        assert!(SemVer::parse("1.2.3").is_ok());
        assert!(SemVer::parse("1.2.3-rc.1+build.5").is_ok());
        assert!(SemVer::parse("1.2").is_err());
        assert!(SemVer::parse("01.2.3").is_err());
        assert!(SemVer::parse("1.2.3-").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(ByteSize::parse("64MiB").unwrap().0, 64 << 20);
        assert_eq!(ByteSize::parse("2G").unwrap().0, 2 << 30);
        assert!(ByteSize::parse("12 parsecs").is_err());
    }

    #[test]
    fn typo_names_line_column_and_suggests() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "p.toml",
            &format!("{GOOD}[packages]\nincldue = [\"busybox\"]\n"),
        );
        let e = load_profile(&p).unwrap_err().to_string();
        assert!(e.contains("p.toml:7:1"), "{e}");
        assert!(e.contains("incldue"), "{e}");
        assert!(e.contains("did you mean `include`"), "{e}");
    }

    #[test]
    fn bad_version_and_wrong_type() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "p.toml", &GOOD.replace("1.0.0", "1.0"));
        let e = load_profile(&p).unwrap_err().to_string();
        assert!(e.contains(":3:11") && e.contains("semantic version"), "{e}");
        let p = write(d.path(), "q.toml", &format!("init = 3\n{GOOD}"));
        let e = load_profile(&p).unwrap_err().to_string();
        assert!(e.contains("q.toml:1:8"), "{e}");
    }

    #[test]
    fn extends_merges_and_rejects_cycles() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "base.toml",
            &format!(
                "{GOOD}[packages]\ninclude = [\"aa\"]\nessential = true\n[labels]\nowner = \"x\"\n"
            ),
        );
        let c = write(
            d.path(),
            "child.toml",
            "extends = \"base.toml\"\n[packages]\ninclude = [\"bb\"]\n[labels]\nteam = \"y\"\n",
        );
        let p = load_profile(&c).unwrap();
        assert_eq!(p.packages.include, vec!["aa", "bb"]);
        // The child's [packages] does not say: the parent's Essential set stays.
        assert!(p.packages.essential());
        assert_eq!(p.labels.len(), 2);
        assert_eq!(p.image.name, "x");
        let s = write(d.path(), "self.toml", "extends = \"self.toml\"\n");
        let e = load_profile(&s).unwrap_err().to_string();
        assert!(e.contains("cycle"), "{e}");
    }

    #[test]
    fn unsupported_arch_is_positioned() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "hw.toml",
            "name = \"x\"\narch = \"riscv64\"\nkernel_package = \"k\"\nconsole = \"ttyS0\"\nfirmware = \"ovmf\"\n[disk]\n[qemu]\nmachine = \"q35\"\n",
        );
        let e = load_hardware(&p).unwrap_err().to_string();
        assert!(e.contains("hw.toml:2:8") && e.contains("riscv64"), "{e}");
    }
    #[test]
    fn firmware_mistakes_are_shown_at_their_line_in_either_file() {
        let d = tempfile::tempdir().unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let ovmf = std::fs::read_to_string(root.join("firmware/ovmf.toml")).unwrap();
        let line_of = |text: &str, key: &str| {
            1 + text
                .lines()
                .position(|l| l.starts_with(&format!("{key} = ")))
                .unwrap()
        };
        for (key, bad) in [
            ("package", "ovmf; true"),
            ("suite", "../trixie"),
            ("code", "/usr/share/../../etc/shadow"),
            ("code", "OVMF_CODE_4M.fd"),
            ("vars", "/usr/share/OVMF//x"),
        ] {
            let line = line_of(&ovmf, key);
            let text: Vec<String> = ovmf
                .lines()
                .map(|l| match l.starts_with(&format!("{key} = ")) {
                    true => format!("{key} = \"{bad}\""),
                    false => l.to_string(),
                })
                .collect();
            let p = write(d.path(), "fw.toml", &text.join("\n"));
            let e = load_firmware(&p).unwrap_err().to_string();
            assert!(
                e.contains(&format!("fw.toml:{line}:1: {key} `")),
                "{key}: {e}"
            );
        }
        // The hardware profile's `firmware` line, for a name with no file and for a firmware of
        // another arch.
        std::fs::create_dir_all(d.path().join("hardware")).unwrap();
        std::os::unix::fs::symlink(root.join("firmware"), d.path().join("firmware")).unwrap();
        let x86 = std::fs::read_to_string(root.join("hardware/qemu-x86_64.toml")).unwrap();
        let line = line_of(&x86, "firmware");
        for (name, says) in [("ovfm", "no firmware `ovfm`"), ("aavmf", "boots aarch64")] {
            let p = d.path().join("hardware/hw.toml");
            std::fs::write(
                &p,
                x86.replace("firmware = \"ovmf\"", &format!("firmware = \"{name}\"")),
            )
            .unwrap();
            let e = firmware_for(&load_hardware(&p).unwrap())
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&format!("hw.toml:{line}:1: firmware: ")) && e.contains(says),
                "{e}"
            );
        }
        for f in ["ovmf", "aavmf", "seabios"] {
            load_firmware(&root.join(format!("firmware/{f}.toml"))).unwrap();
        }
    }
}
