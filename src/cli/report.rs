//! `ingot report`, and the `--html` of `boot-test` and `ota-test`: reading the inputs and
//! writing the page over `crate::report`.

use std::path::{Path, PathBuf};

use anyhow::Result;

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

/// Where `boot-test` and `ota-test` write their reports and console logs.
#[derive(Debug, clap::Args)]
pub struct TestOutputs {
    /// JUnit XML report.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// JSON report (each boot's timings, checks and console log).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// HTML report: the images and this run on one page (as `ingot report`).
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Directory for each boot's console log (default: beside the --json or else the --junit
    /// report; without either, a new directory under the system's temporary directory, printed
    /// at the end). The image directories are never written.
    #[arg(long)]
    pub logs: Option<PathBuf>,
}

impl TestOutputs {
    /// Refuse, before anything boots, a report or log path that cannot be written.
    pub fn check(&self) -> Result<()> {
        crate::boottest::check_outputs(
            &[
                ("--json", self.json.as_deref()),
                ("--junit", self.junit.as_deref()),
                ("--html", self.html.as_deref()),
            ],
            self.logs.as_deref(),
        )
    }

    /// The console log directory, made if need be.
    pub fn log_dir(&self) -> Result<PathBuf> {
        crate::boottest::log_dir(
            self.logs.as_deref(),
            self.json.as_deref(),
            self.junit.as_deref(),
        )
    }

    /// Write the reports that were asked for, each atomically; the page is drawn only when
    /// --html was given.
    pub fn write(
        &self,
        json: &str,
        junit: &str,
        html: impl FnOnce() -> Result<Inputs>,
    ) -> Result<()> {
        if let Some(p) = &self.json {
            crate::boottest::write_report(p, format!("{}\n", json.trim_end()).as_bytes())?;
        }
        if let Some(p) = &self.junit {
            crate::boottest::write_report(p, junit.as_bytes())?;
        }
        if let Some(p) = &self.html {
            crate::boottest::write_report(p, render(&html()?)?.as_bytes())?;
        }
        Ok(())
    }

    /// Say where the console logs went when no flag put them in a known place.
    pub fn announce(&self, log_dir: &Path, quiet: bool) {
        if self.logs.is_none() && self.json.is_none() && self.junit.is_none() && !quiet {
            eprintln!("console logs: {}", log_dir.display());
        }
    }
}

/// A report given to draw: one that cannot be read or is not JSON is bad input (exit 2).
fn json(p: &Path) -> Result<serde_json::Value> {
    let bytes = crate::base::fsx::read(p).map_err(|e| BadInput(format!("{e:#}")))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| BadInput(format!("{}: not JSON: {e}", p.display())).into())
}

/// A JSON report of the kind `what` names, checked for the fields the page reads (`key` and
/// whether it is a string, number, list or object), so that another file given in its place
/// (a boot-test report as an OTA test, say) is refused (exit 2) instead of drawn as a run
/// with nothing in it, which the page would show as passed.
fn report_of(
    p: &Path,
    what: &str,
    within: Option<&str>,
    fields: &[(&str, &str)],
) -> Result<serde_json::Value> {
    let v = json(p)?;
    let bad = |why: String| BadInput(format!("{}: not {what}: {why}", p.display()));
    let top = match within {
        Some(k) => v
            .get(k)
            .filter(|o| o.is_object())
            .ok_or_else(|| bad(format!("no `{k}` object")))?,
        None => &v,
    };
    if !top.is_object() {
        return Err(bad("not a JSON object".into()).into());
    }
    for (key, kind) in fields {
        let ok = match (top.get(*key), *kind) {
            (Some(f), "string") => f.is_string(),
            (Some(f), "number") => f.is_number(),
            (Some(f), "list") => f.is_array(),
            (Some(f), _) => f.is_object(),
            (None, _) => false,
        };
        if !ok {
            return Err(bad(format!("`{key}` is missing or not a {kind}")).into());
        }
    }
    Ok(v)
}

fn name(p: &Path) -> String {
    p.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// Write the page atomically (making the directories it goes in, as the test commands do
/// for their reports), or print it.
pub fn write_page(page: &str, out: Option<&Path>) -> Result<()> {
    match out {
        Some(p) => crate::boottest::write_report(p, page.as_bytes()),
        None => {
            print!("{page}");
            Ok(())
        }
    }
}

/// `ingot report`.
pub fn report(a: &ReportArgs) -> Result<()> {
    // A page that could not be written is refused before anything is read (exit 2).
    crate::boottest::check_outputs(&[("--out", a.out.as_deref())], None)?;
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
            .map_err(|e| BadInput(format!("{}: not a boot-test report: {e}", p.display())))?;
        i.boot_reports.push((name(p), r));
    }
    for p in &a.ota_tests {
        let r = report_of(
            p,
            "an OTA-test report (ota-test --json)",
            None,
            &[
                ("name", "string"),
                ("arch", "string"),
                ("base_version", "string"),
                ("via", "string"),
                ("steps", "list"),
                ("seconds", "number"),
            ],
        )?;
        if r["steps"].as_array().is_some_and(|s| s.is_empty()) && r["error"].is_null() {
            return Err(BadInput(format!(
                "{}: an OTA-test report with no steps and no error: not a finished run",
                p.display()
            ))
            .into());
        }
        i.ota_reports.push((name(p), r));
    }
    i.audit = a
        .audit
        .as_deref()
        .map(|p| {
            report_of(
                p,
                "an audit (ingot audit --json)",
                Some("audit"),
                &[
                    ("subject", "string"),
                    ("packages", "number"),
                    ("suites", "list"),
                    ("findings", "list"),
                ],
            )
        })
        .transpose()?;
    i.previous = a.previous.as_deref().map(ImageDir::open).transpose()?;
    write_page(&render(&i)?, a.out.as_deref())
}
