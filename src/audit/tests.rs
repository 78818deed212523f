//! The verdict and the weekly count on hand-made findings, and source versions.

use super::changelog::Entry;
use super::gate::{weekly, FailOn, Gate};
use super::*;

const DAY: i64 = 86400;
const NOW: i64 = 20_000 * DAY;

fn entry(version: &str, days_ago: i64, cves: &[&str]) -> Entry {
    Entry {
        version: version.into(),
        distribution: "bookworm-security".into(),
        urgency: "high".into(),
        date: String::new(),
        epoch: Some(NOW - days_ago * DAY),
        cves: cves.iter().map(|c| c.to_string()).collect(),
    }
}

fn finding(package: &str, suite: &str, entries: Vec<Entry>) -> Finding {
    let cves: Vec<String> = entries.iter().flat_map(|e| e.cves.clone()).collect();
    Finding {
        package: package.into(),
        arch: "amd64".into(),
        installed: "1".into(),
        available: "2".into(),
        suite: suite.into(),
        source: package.into(),
        installed_source: "1".into(),
        available_source: "2".into(),
        role: Role::Image,
        security: suite.ends_with("-security") || !cves.is_empty(),
        first_fix: entries.iter().filter_map(|e| e.epoch).min(),
        entries,
        cves,
        changelog: String::new(),
        purl: String::new(),
    }
}

fn audit_of(findings: Vec<Finding>) -> Audit {
    Audit {
        subject: "t".into(),
        image: None,
        arch: "amd64".into(),
        packages: 10,
        suites: Vec::new(),
        findings,
    }
}

#[test]
fn gates_pick_findings_by_kind_and_forgive_young_fixes() {
    let a = audit_of(vec![
        finding(
            "ssl",
            "bookworm-security",
            vec![entry("2", 20, &["CVE-1-0001"])],
        ),
        finding("tz", "bookworm-updates", vec![entry("2", 90, &[])]),
        finding("nodate", "bookworm", vec![]),
    ]);
    let judge = |fail_on, max_age_days| {
        Gate {
            fail_on,
            max_age_days,
        }
        .judge(&a, NOW)
    };
    assert!(judge(None, None).passed, "no gate, no failure");
    assert_eq!(judge(Some(FailOn::Any), None).reasons.len(), 3);
    let sec = judge(Some(FailOn::Security), None);
    assert_eq!(sec.reasons.len(), 1);
    assert!(sec.reasons[0].starts_with("ssl 1 -> 2 (bookworm-security): CVE-1-0001"));
    assert!(
        judge(Some(FailOn::Security), Some(20)).passed,
        "20 days is not more than 20"
    );
    assert!(!judge(Some(FailOn::Security), Some(19)).passed);
    // Alone, --max-age covers every finding; one without a date counts as too old.
    let r = judge(None, Some(60)).reasons;
    assert_eq!(r.len(), 2, "{r:?}");
    assert!(r[0].contains("tz") && r[0].contains("90 days"));
    assert!(r[1].contains("nodate") && r[1].contains("date unknown"));
}

#[test]
fn weekly_counts_each_source_upload_once_in_its_week() {
    let mut libssl = finding(
        "libssl3",
        "bookworm-security",
        vec![entry("2", 3, &["CVE-1-1"])],
    );
    libssl.source = "ssl".into();
    let a = audit_of(vec![
        finding(
            "ssl",
            "bookworm-security",
            vec![entry("2", 3, &["CVE-1-1"])],
        ),
        libssl,
        finding("tz", "bookworm-updates", vec![entry("2", 10, &[])]),
        finding("old", "bookworm", vec![entry("2", 400, &[])]),
    ]);
    let mut tz = a.findings[2].clone();
    tz.entries[0].distribution = "bookworm-updates".into();
    let a = Audit {
        findings: vec![
            a.findings[0].clone(),
            a.findings[1].clone(),
            tz,
            a.findings[3].clone(),
        ],
        ..a
    };
    let w = weekly(&a, NOW - 14 * DAY, NOW);
    assert_eq!(w.len(), 3);
    let counts: Vec<(usize, usize)> = w.iter().map(|w| (w.fixes, w.security)).collect();
    // Week 0 (14 to 7 days ago): tz, 10 days ago. Week 1: ssl, 3 days ago, once although
    // two binaries miss it. Week 2 starts today. The upload 400 days ago is before the window.
    assert_eq!(counts, [(1, 0), (1, 1), (0, 0)]);
}

#[test]
fn source_versions_come_from_the_source_field_or_drop_a_binnmu_suffix() {
    let p = |name: &str, version: &str, source: &str, sv: &str| PackageInfo {
        name: name.into(),
        version: version.into(),
        arch: "amd64".into(),
        filename: String::new(),
        size: 0,
        sha256: String::new(),
        suite: "bookworm".into(),
        depends: String::new(),
        pre_depends: String::new(),
        recommends: String::new(),
        provides: String::new(),
        conflicts: String::new(),
        breaks: String::new(),
        essential: false,
        priority: String::new(),
        maintainer: String::new(),
        source: source.into(),
        source_version: sv.into(),
    };
    assert_eq!(
        source_of(&p("zlib1g", "1:1.2-1", "zlib", "1.2-1")),
        ("zlib".into(), "1.2-1".into())
    );
    assert_eq!(
        source_of(&p("a", "1.0-1+b2", "", "")),
        ("a".into(), "1.0-1".into())
    );
    assert_eq!(
        source_of(&p("a", "1.0+bzr5", "", "")),
        ("a".into(), "1.0+bzr5".into())
    );
    assert_eq!(
        source_of(&p("libx", "2", "x", "")),
        ("x".into(), "2".into())
    );
}
