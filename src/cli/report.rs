//! `ingot report`, and the `--html` of `boot-test` and `ota-test`: reading the inputs and
//! writing the page over `crate::report`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::base::BadInput;
use crate::image_dir::ImageDir;
use crate::report::{render, Inputs};

/// `ingot report` flags.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Image directories.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// A boot-test JSON report (`boot-test --json`) to draw; repeatable.
    #[arg(long = "boot-test", value_name = "REPORT.json")]
    pub boot_tests: Vec<PathBuf>,
    /// An OTA-test JSON report (`ota-test --json`); repeatable.
    #[arg(long = "ota-test", value_name = "REPORT.json")]
    pub ota_tests: Vec<PathBuf>,
    /// An audit (`ingot audit --json` output) to include.
    #[arg(long, value_name = "AUDIT.json")]
    pub audit: Option<PathBuf>,
    /// The previous image directory: the changes to the first image are listed.
    #[arg(long, value_name = "DIR")]
    pub previous: Option<PathBuf>,
    /// Public key the signatures are checked with (else shown as not checked).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Where to write the page (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// A report given to draw: one that cannot be read or is not JSON is bad input (exit 2).
fn json(p: &Path) -> Result<serde_json::Value> {
    let bytes = crate::base::fsx::read(p).map_err(|e| BadInput(format!("{e:#}")))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| BadInput(format!("{}: not JSON: {e}", p.display())).into())
}

fn name(p: &Path) -> String {
    p.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// Write the page atomically, or print it.
pub fn write_page(page: &str, out: Option<&Path>) -> Result<()> {
    match out {
        Some(p) => crate::base::fsx::write_atomic(p, page.as_bytes()),
        None => {
            print!("{page}");
            Ok(())
        }
    }
}

/// `ingot report`.
pub fn report(a: &ReportArgs) -> Result<()> {
    let mut i = Inputs {
        key: a
            .key
            .as_deref()
            .map(super::registry::public_key)
            .transpose()?,
        ..Inputs::default()
    };
    for d in &a.images {
        i.images.push(ImageDir::open(d)?);
    }
    for p in &a.boot_tests {
        let r = serde_json::from_value(json(p)?)
            .with_context(|| format!("{}: not a boot-test report", p.display()))?;
        i.boot_reports.push((name(p), r));
    }
    for p in &a.ota_tests {
        i.ota_reports.push((name(p), json(p)?));
    }
    i.audit = a.audit.as_deref().map(json).transpose()?;
    i.previous = a.previous.as_deref().map(ImageDir::open).transpose()?;
    write_page(&render(&i)?, a.out.as_deref())
}
