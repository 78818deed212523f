//! Boot-test results as types, and the two files CI reads: the JSON report and JUnit XML (with
//! reruns in the form Maven Surefire writes them, which CI servers show as flaky).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::console::{Failure, Ready};

/// One boot (or one attempt of it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BootCase {
    /// Boot number, from 1.
    pub boot: u32,
    /// Passed.
    pub ok: bool,
    /// Seconds to the ready line or the failure.
    pub seconds: f64,
    /// Why it failed, in words.
    pub failure: Option<String>,
    /// Why it failed, as a kind the tests and tools can match.
    #[serde(default)]
    pub cause: Option<Failure>,
    /// The ready line.
    #[serde(default)]
    pub ready: Option<Ready>,
    /// The console log.
    #[serde(default)]
    pub console_log: Option<PathBuf>,
    /// The last console lines of a failed boot.
    #[serde(default)]
    pub tail: Vec<String>,
    /// Passed only after a retry.
    #[serde(default)]
    pub flaky: bool,
    /// Earlier failed attempts of this boot.
    #[serde(default)]
    pub attempts: Vec<BootCase>,
    /// Where the time went (a passed boot whose console showed the markers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<super::timeline::Phase>,
    /// The SSH login after the ready line (a cloud-init image with OpenSSH).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<super::cloud::Login>,
    /// What the QEMU guest agent said (an image that ships it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<super::agent::Agent>,
    /// `uefi` or `bios`: which firmware started a hybrid disk in this boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware: Option<String>,
}

impl BootCase {
    /// A boot with this outcome.
    pub fn new(
        boot: u32,
        seconds: f64,
        cause: Option<Failure>,
        ready: Option<Ready>,
        log: Option<PathBuf>,
        tail: Vec<String>,
    ) -> Self {
        let phases = match (&ready, &log) {
            (Some(r), Some(l)) if cause.is_none() => crate::base::fsx::read_to_string(l)
                .map(|text| super::timeline::phases(&text, r, seconds))
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        BootCase {
            phases,
            boot,
            ok: cause.is_none(),
            seconds,
            failure: cause.as_ref().map(ToString::to_string),
            tail: if cause.is_some() { tail } else { Vec::new() },
            cause,
            ready,
            console_log: log,
            flaky: false,
            attempts: Vec::new(),
            login: None,
            agent: None,
            firmware: None,
        }
    }

    fn tail_text(&self) -> String {
        self.tail.join("\n")
    }
}

/// Every boot of one image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageResult {
    /// The image directory (or disk).
    pub image: PathBuf,
    /// Its boots, in order; the first failure ends the list.
    pub boots: Vec<BootCase>,
    /// Two boots reported the same machine id, or presented the same SSH host key: identity
    /// baked into the image.
    pub machine_id_failure: Option<String>,
}

impl ImageResult {
    /// Every boot passed and the machine ids differ.
    pub fn passed(&self) -> bool {
        self.machine_id_failure.is_none() && self.boots.iter().all(|c| c.ok)
    }
}

/// The JSON report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Every image passed.
    pub passed: bool,
    /// Per image.
    pub images: Vec<ImageResult>,
}

impl Report {
    /// A report over these results (sorted by image path).
    pub fn new(mut images: Vec<ImageResult>) -> Self {
        images.sort_by(|a, b| a.image.cmp(&b.image));
        Report {
            passed: images.iter().all(ImageResult::passed),
            images,
        }
    }

    /// Boots that passed only on a retry.
    pub fn flaky(&self) -> usize {
        self.images
            .iter()
            .flat_map(|r| &r.boots)
            .filter(|c| c.flaky)
            .count()
    }
}

pub(crate) fn xml_escape(s: &str) -> String {
    s.chars()
        .filter(|c| *c == '\n' || *c == '\t' || (*c >= ' ' && *c != '\u{7f}'))
        .collect::<String>()
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn log_text(p: &Option<PathBuf>) -> String {
    p.as_deref()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// JUnit XML: one testsuite, one testcase per image and boot.
pub fn junit_xml(results: &[ImageResult]) -> String {
    let mut cases = String::new();
    let (mut total, mut failures) = (0, 0);
    for r in results {
        let img_name = Path::new(&r.image)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        for c in &r.boots {
            total += 1;
            let name = format!("{img_name} boot {}", c.boot);
            cases.push_str(&format!(
                "  <testcase classname=\"ingot.boot\" name=\"{}\" time=\"{:.3}\">\n",
                xml_escape(&name),
                c.seconds
            ));
            if let Some(f) = &c.failure {
                failures += 1;
                cases.push_str(&format!(
                    "    <failure message=\"{}\">{}</failure>\n",
                    xml_escape(f),
                    xml_escape(&c.tail_text())
                ));
            }
            // Earlier failed attempts: `flakyFailure` when the boot passed at last,
            // `rerunFailure` when it never did.
            let tag = if c.ok { "flakyFailure" } else { "rerunFailure" };
            for a in &c.attempts {
                cases.push_str(&format!(
                    "    <{tag} message=\"{}\" type=\"boot\">\n      <stackTrace>{}</stackTrace>\n      <system-out>{}</system-out>\n    </{tag}>\n",
                    xml_escape(a.failure.as_deref().unwrap_or("")),
                    xml_escape(&a.tail_text()),
                    xml_escape(&log_text(&a.console_log))
                ));
            }
            cases.push_str(&format!(
                "    <system-out>{}</system-out>\n  </testcase>\n",
                xml_escape(&log_text(&c.console_log))
            ));
            // Each `--check` is a testcase of its own: those that passed with what they
            // printed, and the one that failed (which also failed the boot).
            for (cmd, out) in c.login.iter().flat_map(|l| &l.checks) {
                total += 1;
                cases.push_str(&format!(
                    "  <testcase classname=\"ingot.check\" name=\"{}\">\n    <system-out>{}</system-out>\n  </testcase>\n",
                    xml_escape(&format!("{name} check {cmd}")),
                    xml_escape(out)
                ));
            }
            if let Some(Failure::Login { step, detail }) = &c.cause {
                if let Some(cmd) = step
                    .strip_prefix("check `")
                    .and_then(|s| s.strip_suffix('`'))
                {
                    total += 1;
                    failures += 1;
                    cases.push_str(&format!(
                        "  <testcase classname=\"ingot.check\" name=\"{}\">\n    <failure message=\"{}\"/>\n  </testcase>\n",
                        xml_escape(&format!("{name} check {cmd}")),
                        xml_escape(detail)
                    ));
                }
            }
        }
        if let Some(f) = &r.machine_id_failure {
            total += 1;
            failures += 1;
            cases.push_str(&format!("  <testcase classname=\"ingot.boot\" name=\"{} machine-id\">\n    <failure message=\"{}\"/>\n  </testcase>\n", xml_escape(&r.image.display().to_string()), xml_escape(f)));
        }
    }
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites tests=\"{total}\" failures=\"{failures}\">\n<testsuite name=\"ingot boot-test\" tests=\"{total}\" failures=\"{failures}\">\n{cases}</testsuite>\n</testsuites>\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ingot report` reads the times back from the JSON a run wrote and must draw the page
    /// that run drew: every time survives the round trip bit for bit. (The default JSON float
    /// parser was one unit in the last place off for some, which turned a 1.55 s phase into
    /// "1.5 s" on one page and "1.6 s" on the other.)
    #[test]
    fn times_survive_the_json_round_trip_exactly() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            // Host seconds with millisecond steps and their differences, as phases have.
            let a = (x >> 40) as f64 / 1000.0;
            let b = ((x >> 20) & 0xfffff) as f64 / 1000.0;
            for v in [a, b, a - b, a + b, a * 1.000_001] {
                let back: f64 = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
                assert_eq!(back.to_bits(), v.to_bits(), "{v:?}");
            }
        }
    }

    #[test]
    fn each_check_is_a_testcase_of_its_own() {
        let mut good = BootCase::new(1, 30.0, None, None, None, vec![]);
        good.login = Some(super::super::cloud::Login {
            seconds: 31.0,
            hostname: "h".into(),
            cloud_init: "done".into(),
            host_key: "SHA256:x".into(),
            checks: vec![
                ("id -un".into(), "debian".into()),
                ("echo '<a>'".into(), "<a>".into()),
            ],
            analyze: String::new(),
        });
        let bad = BootCase::new(
            2,
            40.0,
            Some(Failure::Login {
                step: "check `systemctl is-failed x`".into(),
                detail: "exit 1: active".into(),
            }),
            None,
            None,
            vec![],
        );
        let xml = junit_xml(&[ImageResult {
            image: "/d/vendor.qcow2".into(),
            boots: vec![good, bad],
            machine_id_failure: None,
        }]);
        assert!(
            xml.contains("<testsuite name=\"ingot boot-test\" tests=\"5\" failures=\"2\">"),
            "{xml}"
        );
        assert!(
            xml.contains(
                "name=\"vendor.qcow2 boot 1 check id -un\">\n    <system-out>debian</system-out>"
            ),
            "{xml}"
        );
        assert!(xml.contains("<system-out>&lt;a&gt;</system-out>"), "{xml}");
        assert!(xml.contains("name=\"vendor.qcow2 boot 2 check systemctl is-failed x\">\n    <failure message=\"exit 1: active\"/>"), "{xml}");
    }

    #[test]
    fn junit_reports_reruns_the_way_ci_servers_read_them() {
        let timeout = Failure::Timeout {
            seconds: 120,
            stall: None,
        };
        let attempt = |log: &str| {
            BootCase::new(
                1,
                120.0,
                Some(timeout.clone()),
                None,
                Some(log.into()),
                vec!["rcu: INFO: rcu_preempt detected stalls <on> CPUs".into()],
            )
        };
        let mut flaky = BootCase::new(
            1,
            7.1,
            None,
            None,
            Some("/l/edge.boot-1.retry-1.console.log".into()),
            vec![],
        );
        flaky.flaky = true;
        flaky.attempts = vec![attempt("/l/edge.boot-1.console.log")];
        let plain = BootCase::new(
            2,
            6.9,
            None,
            None,
            Some("/l/edge.boot-2.console.log".into()),
            vec![],
        );
        let mut never = BootCase::new(
            1,
            3.0,
            Some(Failure::KernelPanic {
                line: "Kernel panic".into(),
            }),
            None,
            Some("/l/a.boot-1.retry-1.console.log".into()),
            vec!["VFS".into()],
        );
        never.attempts = vec![attempt("/l/a.boot-1.console.log")];
        let results = vec![
            ImageResult {
                image: "/o/edge-1.0-x86_64".into(),
                boots: vec![flaky, plain],
                machine_id_failure: None,
            },
            ImageResult {
                image: "/o/edge-1.0-aarch64".into(),
                boots: vec![never],
                machine_id_failure: None,
            },
        ];
        let xml = junit_xml(&results);
        // Three testcases; only the boot that failed every attempt counts as a failure.
        assert!(
            xml.contains("<testsuite name=\"ingot boot-test\" tests=\"3\" failures=\"1\">"),
            "{xml}"
        );
        let flaky = xml
            .find("<flakyFailure message=\"timeout: no INGOT-READY line within 120s\"")
            .expect("flakyFailure");
        assert!(xml[..flaky].contains("name=\"edge-1.0-x86_64 boot 1\""));
        assert!(xml.contains(
            "<stackTrace>rcu: INFO: rcu_preempt detected stalls &lt;on&gt; CPUs</stackTrace>"
        ));
        assert!(xml.contains("<system-out>/l/edge.boot-1.console.log</system-out>"));
        let failure = xml
            .find("<failure message=\"Kernel panic\">VFS</failure>")
            .expect("failure");
        let rerun = xml.find("<rerunFailure message=").expect("rerunFailure");
        assert!(failure < rerun && flaky < failure);
        assert_eq!(xml.matches("<testcase ").count(), 3);
        assert_eq!(xml.matches("</testcase>").count(), 3);
        let report = Report::new(results);
        assert!(!report.passed);
        assert_eq!(report.flaky(), 1);
        let back: Report = serde_json::from_str(&serde_json::to_string(&report).unwrap()).unwrap();
        assert_eq!(back.images[0].image, PathBuf::from("/o/edge-1.0-aarch64"));
        assert_eq!(
            back.images[0].boots[0].cause,
            report.images[0].boots[0].cause
        );
    }
}
