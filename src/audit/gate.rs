//! The audit's verdict: which findings fail a gate (`--fail-on`, `--max-age`), in words, and
//! the missed fixes per week since a date, for choosing a rebuild cadence.

use std::collections::BTreeSet;

use serde::Serialize;

use super::{Audit, Finding};
use crate::base::identity::rfc3339;

/// Which findings fail the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FailOn {
    /// Offered by a security suite, or naming a CVE.
    Security,
    /// Any newer version.
    Any,
}

/// A gate: `fail_on` picks the findings that count; `max_age_days` forgives those whose first
/// missed fix is younger than that many days. Alone, `max_age_days` applies to every finding.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Gate {
    /// Findings that count.
    pub fail_on: Option<FailOn>,
    /// Grace period in days.
    pub max_age_days: Option<u32>,
}

/// The gate's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// The gate asked for.
    pub gate: Gate,
    /// Did it pass (always, when no gate was asked for).
    pub passed: bool,
    /// Why it failed: one line per finding that fails it.
    pub reasons: Vec<String>,
}

impl Gate {
    /// Was any gate asked for?
    pub fn is_set(&self) -> bool {
        self.fail_on.is_some() || self.max_age_days.is_some()
    }

    /// Judge an audit at time `now`.
    pub fn judge(&self, a: &Audit, now: i64) -> Verdict {
        let mut reasons = Vec::new();
        if self.is_set() {
            for f in &a.findings {
                if self.fail_on == Some(FailOn::Security) && !f.security {
                    continue;
                }
                let age = match (self.max_age_days, f.first_fix) {
                    (None, _) => None,
                    (Some(days), Some(t)) => {
                        let waited = (now - t).div_euclid(86400);
                        if waited <= i64::from(days) {
                            continue;
                        }
                        Some(format!("a fix waiting {waited} days (> {days})"))
                    }
                    (Some(_), None) => Some("fix date unknown, counted as too old".to_string()),
                };
                reasons.push(describe(f, age));
            }
        }
        Verdict {
            gate: *self,
            passed: reasons.is_empty(),
            reasons,
        }
    }
}

fn describe(f: &Finding, age: Option<String>) -> String {
    let mut s = format!(
        "{} {} -> {} ({})",
        f.package, f.installed, f.available, f.suite
    );
    if !f.cves.is_empty() {
        let shown: Vec<&str> = f.cves.iter().take(3).map(String::as_str).collect();
        s.push_str(&format!(": {}", shown.join(" ")));
        if f.cves.len() > 3 {
            s.push_str(&format!(" (+{} more)", f.cves.len() - 3));
        }
    } else if f.security {
        s.push_str(": security update");
    }
    if let Some(a) = age {
        s.push_str(&format!("; {a}"));
    }
    s
}

/// Missed fixes in one week.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Week {
    /// First day of the week (UTC, RFC 3339).
    pub start: String,
    /// Uploads published that week that the image lacks (each source upload once).
    pub fixes: usize,
    /// Of those, the ones naming a CVE or coming from a security suite.
    pub security: usize,
}

/// The uploads the image lacks, by week from `since` up to `now`.
pub fn weekly(a: &Audit, since: i64, now: i64) -> Vec<Week> {
    const WEEK: i64 = 7 * 86400;
    let weeks = ((now - since).max(0) / WEEK + 1) as usize;
    let mut out: Vec<Week> = (0..weeks)
        .map(|i| Week {
            start: rfc3339(since + i as i64 * WEEK),
            fixes: 0,
            security: 0,
        })
        .collect();
    let mut seen = BTreeSet::new();
    for f in &a.findings {
        for e in &f.entries {
            let Some(t) = e.epoch else { continue };
            if t < since || t > now || !seen.insert((f.source.clone(), e.version.clone())) {
                continue;
            }
            let w = &mut out[((t - since) / WEEK) as usize];
            w.fixes += 1;
            if !e.cves.is_empty() || e.distribution.ends_with("-security") {
                w.security += 1;
            }
        }
    }
    out
}
