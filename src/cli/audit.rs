//! `ingot audit` and `ingot diff`: parsing and printing over `crate::audit`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::SourceOpts;
use crate::audit::{self, diff, Audit, Gate, Subject};
use crate::base::identity::{now_secs, rfc3339};
use crate::base::BadInput;
use crate::image_dir::ImageDir;

/// The gate failed: exit status 1, after the report.
#[derive(Debug, thiserror::Error)]
#[error("audit gate failed: {0}")]
pub struct GateFailed(pub String);

/// `ingot audit` flags.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Image directory, lockfile (PROFILE.lock), or registry reference (with --key).
    pub target: String,
    /// The lockfile target to audit, when the lockfile has several.
    #[arg(long)]
    pub hardware: Option<String>,
    /// Exit 1 when an image package lacks a newer version of this kind: `security` (offered by
    /// the security suite, or its changelog names a CVE) or `any`.
    #[arg(long, value_enum)]
    pub fail_on: Option<audit::FailOn>,
    /// Count only fixes published more than DAYS ago (a grace period); alone, it applies to
    /// every finding.
    #[arg(long, value_name = "DAYS")]
    pub max_age: Option<u32>,
    /// Also count the fixes the image missed per week since this date (YYYY-MM-DD).
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write a CycloneDX 1.5 document of the CVEs (for Dependency-Track and the like).
    #[arg(long, value_name = "FILE")]
    pub cyclonedx: Option<PathBuf>,
    /// Public key: the image directory's (or registry image's) signature must verify.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Registry image: architecture to pick from a multi-arch version.
    #[arg(long)]
    pub arch: Option<String>,
    /// Package source options (the archive to audit against).
    #[command(flatten)]
    pub source: SourceOpts,
    /// Registry options (for a registry reference).
    #[command(flatten)]
    pub registry: super::registry::RegistryOpts,
}

/// `ingot diff` flags.
#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// The image directory running now.
    pub old: PathBuf,
    /// The image directory proposed.
    pub new: PathBuf,
    /// Print JSON.
    #[arg(long, conflicts_with = "markdown")]
    pub json: bool,
    /// Print Markdown (release notes for a promotion request).
    #[arg(long)]
    pub markdown: bool,
    /// Public key both images' signatures must verify with.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Do not read changelogs (no CVE ids for upgrades; nothing is fetched).
    #[arg(long)]
    pub no_changelogs: bool,
    /// Package source options (where the new packages' changelogs come from).
    #[command(flatten)]
    pub source: SourceOpts,
}

fn parse_day(s: &str) -> Result<i64, BadInput> {
    let bad = || BadInput(format!("--since {s}: expected a date as YYYY-MM-DD"));
    let p: Vec<&str> = s.split('-').collect();
    let [y, m, d] = p[..] else { return Err(bad()) };
    let (y, m, d): (i64, i64, i64) = (
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        d.parse().map_err(|_| bad())?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || y < 1970 {
        return Err(bad());
    }
    Ok(crate::base::identity::days_from_civil(y, m, d) * 86400)
}

fn subject(a: &AuditArgs) -> Result<Subject> {
    let path = Path::new(&a.target);
    if path.exists() {
        if let (Some(k), true) = (&a.key, path.is_dir()) {
            // The bytes whose signature was checked are the ones audited.
            let key = super::registry::public_key(k)?;
            return Subject::of(&ImageDir::open_verified(path, &key)?, a.hardware.as_deref());
        }
        if path.is_dir() {
            return Subject::open(path, a.hardware.as_deref());
        }
        // A lockfile that does not parse, or names no such hardware, is bad input (exit 2).
        return Subject::open(path, a.hardware.as_deref())
            .map_err(|e| BadInput(format!("{e:#}")).into());
    }
    if !a.target.contains('/') || crate::registry::Reference::parse(&a.target).is_err() {
        return Err(BadInput(format!(
            "{}: no such image directory or lockfile, nor a registry reference",
            a.target
        ))
        .into());
    }
    let key = a.key.as_ref().ok_or_else(|| {
        BadInput(format!(
            "{}: auditing a registry image needs --key (its signature is checked)",
            a.target
        ))
    })?;
    super::registry::audit_subject(
        &a.target,
        key,
        a.arch.as_deref(),
        a.hardware.as_deref(),
        &a.registry,
    )
}

/// `ingot audit`.
pub fn audit(a: &AuditArgs, quiet: bool) -> Result<()> {
    let since = a.since.as_deref().map(parse_day).transpose()?;
    let subj = subject(a)?;
    let src = super::source(&a.source, &subj.main_suite(), quiet)?;
    let found = audit::audit(&src, &subj)?;
    let now = now_secs();
    let gate = Gate {
        fail_on: a.fail_on,
        max_age_days: a.max_age,
    };
    let verdict = gate.judge(&found, now);
    let weekly = since.map(|t| audit::gate::weekly(&found, t, now));
    if let Some(path) = &a.cyclonedx {
        let doc = audit::cyclonedx::document(&found, now);
        crate::base::fsx::write_atomic(path, serde_json::to_string_pretty(&doc)?.as_bytes())?;
    }
    if a.json {
        let v = serde_json::json!({
            "audit": found,
            "now": rfc3339(now),
            "age_days": found.image.as_ref().map(|i| (now - i.source_date_epoch).div_euclid(86400)),
            "verdict": verdict,
            "weekly": weekly,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", table(&found, now, weekly.as_deref()));
        if gate.is_set() {
            if verdict.passed {
                println!("gate: passed");
            } else {
                println!("gate: FAILED");
                for r in &verdict.reasons {
                    println!("  - {r}");
                }
            }
        }
    }
    if !verdict.passed {
        return Err(GateFailed(format!(
            "{} finding(s) fail it ({})",
            verdict.reasons.len(),
            gate_words(&gate)
        ))
        .into());
    }
    Ok(())
}

fn gate_words(g: &Gate) -> String {
    let mut w = Vec::new();
    if let Some(f) = g.fail_on {
        w.push(format!(
            "--fail-on {}",
            match f {
                audit::FailOn::Security => "security",
                audit::FailOn::Any => "any",
            }
        ));
    }
    if let Some(d) = g.max_age_days {
        w.push(format!("--max-age {d}"));
    }
    w.join(" ")
}

/// At most eight CVE ids for a terminal line, then how many more (`--json` lists all).
fn some_cves(cves: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut s: String = cves.iter().take(SHOWN).map(|c| format!(" {c}")).collect();
    if cves.len() > SHOWN {
        let _ = write!(s, " (+{} more)", cves.len() - SHOWN);
    }
    s
}

fn day(t: i64) -> String {
    rfc3339(t)[..10].to_string()
}

/// The terminal report.
pub fn table(a: &Audit, now: i64, weekly: Option<&[audit::gate::Week]>) -> String {
    let mut s = String::new();
    match &a.image {
        Some(i) => {
            let _ = writeln!(
                s,
                "{}: {} packages ({}), built {} ({} days ago)",
                i.id,
                a.packages,
                a.arch,
                day(i.source_date_epoch),
                (now - i.source_date_epoch).div_euclid(86400)
            );
        }
        None => {
            let _ = writeln!(s, "{}: {} packages ({})", a.subject, a.packages, a.arch);
        }
    }
    for r in &a.suites {
        let _ = writeln!(
            s,
            "  read {} ({}){}",
            r.suite,
            r.date,
            if r.in_image {
                ""
            } else {
                "; added by the audit: the image did not use it"
            }
        );
    }
    if a.findings.is_empty() {
        let _ = writeln!(
            s,
            "nothing pending: every package is at the newest version these suites offer"
        );
    } else {
        let w = |f: fn(&audit::Finding) -> usize, min: usize| {
            a.findings.iter().map(f).max().unwrap_or(0).max(min)
        };
        let (wp, wi, wa, ws) = (
            w(|f| f.package.len(), 7),
            w(|f| f.installed.len(), 9),
            w(|f| f.available.len(), 9),
            w(|f| f.suite.len(), 5),
        );
        let _ = writeln!(
            s,
            "{:wp$}  {:wi$}  {:wa$}  {:ws$}  SOURCE / CVES",
            "PACKAGE", "INSTALLED", "AVAILABLE", "SUITE"
        );
        for f in &a.findings {
            let _ = writeln!(
                s,
                "{:wp$}  {:wi$}  {:wa$}  {:ws$}  {}{}",
                f.package,
                f.installed,
                f.available,
                f.suite,
                f.source,
                some_cves(&f.cves)
            );
            for e in &f.entries {
                let _ = writeln!(
                    s,
                    "{:wp$}    {} {} urgency={} {}{}",
                    "",
                    e.version,
                    e.distribution,
                    e.urgency,
                    e.epoch.map(day).unwrap_or_else(|| "date?".into()),
                    some_cves(&e.cves)
                );
            }
            if f.entries.is_empty() {
                let _ = writeln!(s, "{:wp$}    ({})", "", f.changelog);
            }
        }
        let cves: std::collections::BTreeSet<&String> =
            a.findings.iter().flat_map(|f| &f.cves).collect();
        let _ = writeln!(
            s,
            "{} of {} packages have a newer version ({} security); {} CVE ids",
            a.findings.len(),
            a.packages,
            a.findings.iter().filter(|f| f.security).count(),
            cves.len()
        );
    }
    if let Some(weeks) = weekly {
        let _ = writeln!(s, "fixes missed per week (uploads; security):");
        for w in weeks {
            let _ = writeln!(s, "  {}  {:3}  {:3}", &w.start[..10], w.fixes, w.security);
        }
        if !weeks.is_empty() {
            let total: usize = weeks.iter().map(|w| w.fixes).sum();
            let _ = writeln!(
                s,
                "  mean {:.1} per week over {} weeks",
                total as f64 / weeks.len() as f64,
                weeks.len()
            );
        }
    }
    s
}

/// `ingot diff`.
pub fn diff(a: &DiffArgs, quiet: bool) -> Result<()> {
    let open = |p: &Path| -> Result<ImageDir> {
        match &a.key {
            Some(k) => ImageDir::open_verified(p, &super::registry::public_key(k)?),
            None => ImageDir::open(p),
        }
    };
    let (old, new) = (open(&a.old)?, open(&a.new)?);
    let src = if a.no_changelogs {
        None
    } else {
        let suite = Subject::of(&new, None)?.main_suite();
        match super::source(&a.source, &suite, quiet) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("warning: {e:#}; upgrades will list no CVE ids");
                None
            }
        }
    };
    let d = diff::diff(&old, &new, src.as_ref())?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&d)?);
    } else {
        print!("{}", render(&d, a.markdown));
    }
    Ok(())
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map_or("-".into(), |v| v.to_string())
}

fn signed_delta(p: &diff::Pair<u64>) -> String {
    let (o, n) = (p.old.unwrap_or(0) as i128, p.new.unwrap_or(0) as i128);
    format!("{} -> {} ({:+})", opt(&p.old), opt(&p.new), n - o)
}

/// Text or Markdown.
pub fn render(d: &diff::Diff, md: bool) -> String {
    let mut s = String::new();
    let (h, item) = if md { ("### ", "- ") } else { ("", "  ") };
    let code = |x: &str| {
        if md {
            format!("`{}`", x.replace('`', "'"))
        } else {
            x.to_string()
        }
    };
    let _ = writeln!(
        s,
        "{}{} -> {}",
        if md { "## " } else { "" },
        code(&d.old),
        code(&d.new)
    );
    let mut section = |title: &str, lines: Vec<String>| {
        if lines.is_empty() {
            return;
        }
        let _ = writeln!(s, "{h}{title} ({})", lines.len());
        for l in lines {
            let _ = writeln!(s, "{item}{l}");
        }
    };
    section(
        "packages added",
        d.added
            .iter()
            .map(|p| format!("{} {}", code(&p.name), p.version))
            .collect(),
    );
    section(
        "packages removed",
        d.removed
            .iter()
            .map(|p| format!("{} {}", code(&p.name), p.version))
            .collect(),
    );
    section(
        "packages upgraded",
        d.upgraded
            .iter()
            .map(|c| {
                let cves = if c.cves.is_empty() {
                    if c.entries.is_empty() {
                        format!(" ({})", c.changelog)
                    } else {
                        String::new()
                    }
                } else {
                    format!(": fixes {}", c.cves.join(" "))
                };
                format!("{} {} -> {}{cves}", code(&c.name), c.old, c.new)
            })
            .collect(),
    );
    section(
        "packages downgraded",
        d.downgraded
            .iter()
            .map(|c| format!("{} {} -> {}", code(&c.name), c.old, c.new))
            .collect(),
    );
    let pairs = |m: &std::collections::BTreeMap<String, diff::Pair<String>>| -> Vec<String> {
        m.iter()
            .map(|(k, p)| format!("{}: {} -> {}", code(k), opt(&p.old), opt(&p.new)))
            .collect()
    };
    section("labels", pairs(&d.labels));
    section(
        "kernel",
        d.kernel
            .iter()
            .map(|p| format!("{} -> {}", opt(&p.old), opt(&p.new)))
            .collect(),
    );
    section("partitions", pairs(&d.partitions));
    section("agents", pairs(&d.agents));
    section(
        "sizes (bytes)",
        vec![
            format!("disk {}", signed_delta(&d.disk_size)),
            format!("root files {}", signed_delta(&d.root_bytes)),
            format!("artifacts {}", signed_delta(&d.artifact_bytes)),
        ],
    );
    section("labels derived from the build", pairs(&d.derived_labels));
    if d.is_empty() {
        let _ = writeln!(
            s,
            "no change in packages, labels, kernel, partitions or agents"
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_calendar_day_only() {
        assert_eq!(parse_day("1970-01-02").unwrap(), 86400);
        for bad in [
            "2024-13-01",
            "2024-1",
            "yesterday",
            "2024-02-32",
            "1969-12-31",
        ] {
            assert!(parse_day(bad).is_err(), "{bad}");
        }
    }
}
