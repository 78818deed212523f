//! A boot-test matrix for CI (`boot-test --matrix FILE`): cells of image directories and
//! foreign disks × arch × firmware × readiness × checks, in one TOML file, run as one boot
//! test with one JUnit file and one JSON summary. Paths are relative to the file; one disk may
//! be in several cells (each boots its own throwaway overlay).
//!
//! ```toml
//! ready = 'login:'            # default for foreign cells
//! [[cell]]
//! name = "packer-x86"
//! disk = "output/debian.qcow2"
//! arch = "x86_64"
//! ssh = "debian"              # log in (a seed installs a throwaway key) after the pattern
//! cloud_init = true
//! checks = ["systemctl is-system-running --wait"]
//! [[cell]]
//! name = "packer-x86-bios"
//! disk = "output/debian.qcow2"
//! arch = "x86_64"
//! firmware = "bios"
//! [[cell]]
//! name = "edge"
//! image = "out/edge-minimal-1.0.0-x86_64"
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::base::BadInput;

/// The file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// Default readiness pattern for foreign cells.
    ready: Option<String>,
    /// Boots per cell.
    boots: Option<u32>,
    /// The cells.
    #[serde(default)]
    cell: Vec<RawCell>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCell {
    name: String,
    image: Option<PathBuf>,
    disk: Option<PathBuf>,
    arch: Option<String>,
    format: Option<String>,
    firmware: Option<String>,
    ready: Option<String>,
    ssh: Option<String>,
    ssh_key: Option<PathBuf>,
    cloud_init: Option<bool>,
    #[serde(default)]
    checks: Vec<String>,
}

/// What one cell boots.
#[derive(Debug, Clone, PartialEq)]
pub enum What {
    /// An Ingot image directory.
    Image {
        /// The directory.
        dir: PathBuf,
        /// Commands run over its SSH login (a cloud-init image).
        checks: Vec<String>,
    },
    /// A foreign disk.
    Disk {
        /// The file.
        disk: PathBuf,
        /// Its arch.
        arch: crate::config::Arch,
        /// Its format, when given.
        format: Option<String>,
        /// UEFI or BIOS.
        firmware: super::foreign::Firmware,
        /// Readiness pattern; without one, the SSH login is the readiness.
        ready: Option<String>,
        /// The SSH login and its checks.
        login: Option<super::SshLogin>,
    },
}

/// One cell.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// Its name (the JUnit testcase and log name).
    pub name: String,
    /// What it boots.
    pub what: What,
}

/// A parsed matrix.
#[derive(Debug, Clone)]
pub struct Matrix {
    /// Boots per cell (1 unless the file says).
    pub boots: Option<u32>,
    /// The cells, in file order.
    pub cells: Vec<Cell>,
}

/// One cell's outcome, for the JSON summary.
#[derive(Debug, Clone, Serialize)]
pub struct CellResult {
    /// Cell name.
    pub name: String,
    /// Every boot passed.
    pub passed: bool,
    /// Median seconds from QEMU start to ready over the passed boots.
    pub time_to_ready: Option<f64>,
    /// The first failure, in words.
    pub failure: Option<String>,
}

fn bad(path: &Path, text: &str, at: Option<std::ops::Range<usize>>, msg: String) -> BadInput {
    let (l, c) = at.map_or((1, 1), |r| crate::config::line_col(text, r.start));
    BadInput(format!("{}:{l}:{c}: {msg}", path.display()))
}

/// Where `[[cell]]` number `n` (from 0) starts, for messages.
fn cell_at(text: &str, n: usize) -> Option<std::ops::Range<usize>> {
    let at = text.match_indices("[[cell]]").nth(n)?.0;
    Some(at..at + 8)
}

/// Where cell `n` assigns `key` (`arch = …`), for a message about that field.
fn field_at(text: &str, n: usize, key: &str) -> Option<std::ops::Range<usize>> {
    let start = cell_at(text, n)?.start;
    let end = cell_at(text, n + 1).map_or(text.len(), |r| r.start);
    let mut at = start;
    for line in text[start..end].split_inclusive('\n') {
        let t = line.trim_start();
        let assigns = t
            .strip_prefix(key)
            .is_some_and(|r| r.trim_start().starts_with('='));
        if assigns {
            let from = at + (line.len() - t.len());
            return Some(from..from + key.len());
        }
        at += line.len();
    }
    None
}

/// Read a matrix file.
pub fn load(path: &Path) -> Result<Matrix, BadInput> {
    let text = crate::base::fsx::read_to_string(path).map_err(|e| BadInput(format!("{e:#}")))?;
    let f: File =
        toml::from_str(&text).map_err(|e| bad(path, &text, e.span(), e.message().to_string()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut cells: Vec<Cell> = Vec::new();
    if f.cell.is_empty() {
        return Err(bad(path, &text, None, "no [[cell]]".into()));
    }
    if f.boots == Some(0) {
        // A run of no boots would pass every cell.
        let at = text
            .match_indices("boots")
            .find(|(i, _)| text[..*i].trim_end_matches([' ', '\t']).ends_with('\n') || *i == 0)
            .map(|(i, _)| i..i + 5);
        return Err(bad(path, &text, at, "`boots` must be at least 1".into()));
    }
    for (n, c) in f.cell.into_iter().enumerate() {
        let at = || cell_at(&text, n);
        let here = |m: String| bad(path, &text, at(), format!("cell `{}`: {m}", c.name));
        // At the line of the field the message is about, else at the cell.
        let field = |key: &str, m: String| {
            bad(
                path,
                &text,
                field_at(&text, n, key).or_else(at),
                format!("cell `{}`: {m}", c.name),
            )
        };
        if c.name.is_empty() || c.name.contains(['/', '\n']) {
            return Err(field("name", "a name is one line without `/`".into()));
        }
        if cells.iter().any(|x| x.name == c.name) {
            return Err(field("name", "two cells have this name".into()));
        }
        let what = match (c.image, c.disk) {
            (Some(i), None) => {
                if c.arch.is_some() || c.format.is_some() || c.ready.is_some() {
                    return Err(here(
                        "an image directory brings its own arch and ready line; `arch`, `format` and `ready` are for `disk` cells".into(),
                    ));
                }
                if c.ssh.is_some() || c.ssh_key.is_some() || c.cloud_init.is_some() {
                    return Err(here(
                        "an image directory with cloud-init and OpenSSH is always logged in to; `ssh`, `ssh_key` and `cloud_init` are for `disk` cells".into(),
                    ));
                }
                if let Some(fw) = c.firmware.as_deref().filter(|f| *f != "uefi") {
                    return Err(field("firmware", format!(
                        "firmware `{fw}`: an Ingot image directory boots UEFI, as its manifest records"
                    )));
                }
                What::Image {
                    dir: base.join(i),
                    checks: c.checks,
                }
            }
            (None, Some(d)) => {
                let arch = match c.arch.as_deref() {
                    Some("x86_64") => crate::config::Arch::X86_64,
                    Some("aarch64") => crate::config::Arch::Aarch64,
                    Some(a) => return Err(field("arch", format!("arch `{a}`: x86_64 or aarch64"))),
                    None => return Err(here("a disk cell needs `arch`".into())),
                };
                if let Some(fmt) = c.format.as_deref() {
                    super::foreign::driver(fmt).map_err(|e| field("format", e.0))?;
                }
                let firmware =
                    super::foreign::Firmware::parse(c.firmware.as_deref().unwrap_or("uefi"), arch)
                        .map_err(|e| field("firmware", e.0))?;
                let login = match c.ssh {
                    Some(user) => {
                        if !super::cloud::valid_user(&user) {
                            return Err(field("ssh", format!(
                                "ssh `{user}`: not a user name (lowercase letters, digits, `_`, `-`)"
                            )));
                        }
                        let key = c.ssh_key.map(|k| base.join(k));
                        if let Some(k) = key.as_ref().filter(|k| !k.is_file()) {
                            return Err(field("ssh_key", format!(
                                "ssh_key {}: not a readable file",
                                k.display()
                            )));
                        }
                        Some(super::SshLogin {
                            user,
                            key,
                            cloud_init: c.cloud_init.unwrap_or(false),
                            checks: c.checks,
                        })
                    }
                    None if c.ssh_key.is_some() || c.cloud_init.is_some() => {
                        return Err(here("`ssh_key` and `cloud_init` need `ssh = USER`".into()))
                    }
                    None if !c.checks.is_empty() => {
                        return Err(here(
                            "`checks` run over an SSH login: give `ssh = USER` (and `ssh_key` when the disk does not run cloud-init)".into(),
                        ))
                    }
                    None => None,
                };
                let ready = c.ready.or_else(|| f.ready.clone());
                if ready.is_none() && login.is_none() {
                    return Err(here(
                        "a disk cell needs `ready` (or a top-level one), `ssh`, or both".into(),
                    ));
                }
                if let Some(r) = &ready {
                    regex::Regex::new(r).map_err(|e| field("ready", format!("ready: {e}")))?;
                }
                let disk = base.join(&d);
                match std::fs::metadata(&disk) {
                    Ok(m) if m.is_file() => {}
                    Ok(m) => {
                        return Err(field(
                            "disk",
                            format!(
                                "disk {}: not a regular file ({}); give a disk image file",
                                disk.display(),
                                crate::base::fsx::kind_of(&m.file_type())
                            ),
                        ))
                    }
                    Err(e) => return Err(field("disk", format!("disk {}: {e}", disk.display()))),
                }
                What::Disk {
                    disk,
                    arch,
                    format: c.format,
                    firmware,
                    ready,
                    login,
                }
            }
            _ => return Err(here("give exactly one of `image` and `disk`".into())),
        };
        cells.push(Cell { name: c.name, what });
    }
    Ok(Matrix {
        boots: f.boots,
        cells,
    })
}

/// The summary of one result.
pub fn summarize(name: &str, r: &super::report::ImageResult) -> CellResult {
    let mut t: Vec<f64> = r.boots.iter().filter(|b| b.ok).map(|b| b.seconds).collect();
    t.sort_by(f64::total_cmp);
    CellResult {
        name: name.into(),
        passed: r.passed(),
        time_to_ready: (!t.is_empty()).then(|| t[(t.len() - 1) / 2]),
        failure: r
            .boots
            .iter()
            .find_map(|b| b.failure.clone())
            .or_else(|| r.machine_id_failure.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Matrix, BadInput> {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.toml");
        std::fs::write(&p, text).unwrap();
        // The disks the cells name (`dir` is a directory).
        for disk in ["x.qcow2", "d.qcow2", "x", "d"] {
            std::fs::write(d.path().join(disk), b"").unwrap();
        }
        std::fs::create_dir(d.path().join("dir")).unwrap();
        load(&p).map_err(|e| BadInput(e.0.replace(&d.path().display().to_string(), "D")))
    }

    #[test]
    fn cells_take_defaults_and_paths_are_relative_to_the_file() {
        let m = parse("ready = 'login:'\nboots = 2\n[[cell]]\nname = \"a\"\ndisk = \"x.qcow2\"\narch = \"aarch64\"\n[[cell]]\nname = \"b\"\nimage = \"out/e\"\n").unwrap();
        assert_eq!(m.boots, Some(2));
        match &m.cells[0].what {
            What::Disk {
                disk, ready, arch, ..
            } => {
                assert!(disk.ends_with("x.qcow2") && disk.is_absolute());
                assert_eq!(ready.as_deref(), Some("login:"));
                assert_eq!(*arch, crate::config::Arch::Aarch64);
            }
            w => panic!("{w:?}"),
        }
        assert!(matches!(&m.cells[1].what, What::Image { dir, .. } if dir.ends_with("out/e")));
    }

    #[test]
    fn a_login_can_be_the_readiness_and_one_disk_can_be_in_two_cells() {
        let m = parse("[[cell]]\nname = \"uefi\"\ndisk = \"d.qcow2\"\narch = \"x86_64\"\nssh = \"debian\"\ncloud_init = true\nchecks = [\"id -un\", \"true\"]\n[[cell]]\nname = \"bios\"\ndisk = \"d.qcow2\"\narch = \"x86_64\"\nfirmware = \"bios\"\nready = \"login:\"\n[[cell]]\nname = \"img\"\nimage = \"out/c\"\nchecks = [\"true\"]\n").unwrap();
        match &m.cells[0].what {
            What::Disk { ready, login, .. } => {
                assert_eq!(*ready, None);
                assert_eq!(
                    login.as_ref().unwrap(),
                    &crate::boottest::SshLogin {
                        user: "debian".into(),
                        key: None,
                        cloud_init: true,
                        checks: vec!["id -un".into(), "true".into()],
                    }
                );
            }
            w => panic!("{w:?}"),
        }
        match (&m.cells[0].what, &m.cells[1].what) {
            (What::Disk { disk: a, .. }, What::Disk { disk: b, login, .. }) => {
                assert_eq!(a, b);
                assert!(login.is_none());
            }
            w => panic!("{w:?}"),
        }
        assert!(
            matches!(&m.cells[2].what, What::Image { checks, .. } if checks == &["true".to_string()])
        );
    }

    #[test]
    fn mistakes_name_the_file_line_and_cell() {
        for (text, want) in [
            ("[[cell]]\nname = \"a\"\ndisk = \"x\"\n", "D/m.toml:1:1: cell `a`: a disk cell needs `arch`"),
            ("[[cell]]\nname = \"a\"\nimage = \"i\"\n[[cell]]\nname = \"b\"\ndisk = \"x\"\narch = \"x86_64\"\nready = \"(\"\n", "D/m.toml:8:1: cell `b`: ready: "),
            ("[[cell]]\nname = \"a\"\ndisk = \"x\"\n  arch = \"riscv64\"\n", "D/m.toml:4:3: cell `a`: arch `riscv64`"),
            ("[[cell]]\nname = \"a\"\narch = \"x86_64\"\nready = \"x\"\ndisk = \"gone.raw\"\n", "D/m.toml:5:1: cell `a`: disk D/gone.raw: No such file"),
            ("[[cell]]\nname = \"a\"\narch = \"x86_64\"\nready = \"x\"\ndisk = \"dir\"\n", "D/m.toml:5:1: cell `a`: disk D/dir: not a regular file (a directory)"),
            ("[[cell]]\nname = \"a/b\"\nimage = \"i\"\n", "D/m.toml:2:1: cell `a/b`: a name is one line"),
            ("[[cell]]\nname = \"a\"\nimage = \"i\"\nfirmware = \"bios\"\n", "cell `a`: firmware `bios`"),
            ("[[cell]]\nname = \"a\"\nimage = \"i\"\ndisk = \"d\"\n", "exactly one of"),
            ("[[cell]]\nname = \"a\"\nimage = \"i\"\ncolour = 1\n", "D/m.toml:4:1: unknown field `colour`"),
            ("boots = 1\n", "no [[cell]]"),
            ("# nobootsat all\nready = 'x'\n  boots = 0\n[[cell]]\nname = \"a\"\nimage = \"i\"\n", "D/m.toml:3:3: `boots` must be at least 1"),
            ("[[cell]]\nname = \"a\"\ndisk = \"x\"\narch = \"x86_64\"\n", "needs `ready` (or a top-level one), `ssh`, or both"),
            ("ready = 'x'\n[[cell]]\nname = \"a\"\ndisk = \"x\"\narch = \"x86_64\"\nchecks = [\"true\"]\n", "cell `a`: `checks` run over an SSH login"),
            ("ready = 'x'\n[[cell]]\nname = \"a\"\ndisk = \"x\"\narch = \"x86_64\"\ncloud_init = true\n", "need `ssh = USER`"),
            ("[[cell]]\nname = \"a\"\ndisk = \"x\"\narch = \"x86_64\"\nssh = \"Root\"\n", "ssh `Root`: not a user name"),
            ("[[cell]]\nname = \"a\"\ndisk = \"x\"\narch = \"x86_64\"\nssh = \"ops\"\nssh_key = \"nokey\"\n", "ssh_key D/nokey: not a readable file"),
            ("[[cell]]\nname = \"a\"\nimage = \"i\"\nssh = \"ops\"\n", "always logged in to"),
        ] {
            let e = parse(text).unwrap_err().0;
            assert!(e.contains(want), "{e}");
        }
    }
}
