//! `ingot report`: one self-contained HTML page for image directories and the test runs about
//! them: identity and signature status, a size map, partitions against the disk and the size
//! budget, the package table, boot timelines, OTA steps, and the audit and diff when given.
//! Reads image directories and reports only; the same inputs give the same bytes.

pub mod html;
pub mod svg;

use std::fmt::Write as _;

use anyhow::Result;
use serde_json::Value;

use crate::boottest::report::Report as BootReport;
use crate::boottest::timeline::{self, Phase};
use crate::image_dir::{ImageDir, DISK_RAW, SBOM_SPDX, SIGNATURE};
use crate::trust::minisign::PublicKey;
use html::{esc, kv_table};

/// Packages drawn in the size map; the rest are summed into one bar.
const MAP_ROWS: usize = 30;

/// What goes on the page.
#[derive(Default)]
pub struct Inputs {
    /// Image directories.
    pub images: Vec<ImageDir>,
    /// Key their signatures are checked with.
    pub key: Option<PublicKey>,
    /// Boot-test JSON reports, each with the name it is shown under.
    pub boot_reports: Vec<(String, BootReport)>,
    /// OTA-test JSON reports.
    pub ota_reports: Vec<(String, Value)>,
    /// `ingot audit --json` output.
    pub audit: Option<Value>,
    /// A previous image directory to diff the first image against.
    pub previous: Option<ImageDir>,
}

/// Render the page.
pub fn render(i: &Inputs) -> Result<String> {
    let mut b = String::new();
    let title = match i.images.first() {
        Some(d) if i.images.len() == 1 => format!("Ingot report: {}", d.manifest.id),
        _ => "Ingot report".to_string(),
    };
    let _ = writeln!(b, "<h1>{}</h1>", esc(&title));
    if !i.images.is_empty() {
        b.push_str("<nav><ul>");
        for d in &i.images {
            let id = &d.manifest.id;
            let _ = write!(b, "<li><a href=\"#{0}\">{0}</a></li>", esc(id));
        }
        b.push_str("</ul></nav>\n");
    }
    for (n, d) in i.images.iter().enumerate() {
        image_section(&mut b, d, i.key.as_ref())?;
        if n == 0 {
            if let Some(prev) = &i.previous {
                diff_section(&mut b, prev, d)?;
            }
        }
    }
    if let Some(a) = &i.audit {
        audit_section(&mut b, a);
    }
    for (name, r) in &i.boot_reports {
        boot_section(&mut b, name, r);
    }
    for (name, r) in &i.ota_reports {
        ota_section(&mut b, name, r);
    }
    // The long tables last, so the pictures come first.
    for d in &i.images {
        packages_table(&mut b, d);
    }
    Ok(html::page(&title, &b))
}

fn signature(d: &ImageDir, key: Option<&PublicKey>) -> String {
    let signed = d.file(SIGNATURE).exists();
    match (key, signed) {
        (_, false) => "<span class=\"bad\">unsigned</span>".into(),
        (None, true) => "signed; not checked (no --key given)".into(),
        (Some(k), true) => match ImageDir::open_verified(&d.path, k) {
            Ok(_) => {
                "<span class=\"ok\">verified</span>: signature and every artifact digest".into()
            }
            Err(e) => format!(
                "<span class=\"bad\">does not verify</span>: {}",
                esc(&format!("{e:#}"))
            ),
        },
    }
}

fn image_section(b: &mut String, d: &ImageDir, key: Option<&PublicKey>) -> Result<()> {
    let m = &d.manifest;
    let _ = writeln!(b, "<section class=\"image\" id=\"{}\">", esc(&m.id));
    let _ = writeln!(b, "<h2>{}</h2><p>{}</p>", esc(&m.id), esc(&m.description));
    let mut rows = vec![
        ("name".to_string(), esc(&m.image)),
        ("version".into(), esc(&m.version)),
        ("architecture".into(), esc(&m.arch)),
        ("hardware".into(), esc(&m.hardware.name)),
        ("signature".into(), signature(d, key)),
        (
            "manifest.json SHA-256".into(),
            format!(
                "<code>{}</code>",
                crate::base::fsx::sha256_hex(d.manifest_bytes())
            ),
        ),
        (
            "SOURCE_DATE_EPOCH".into(),
            format!(
                "{} ({})",
                m.source_date_epoch,
                crate::base::identity::rfc3339(m.source_date_epoch)
            ),
        ),
        (
            "built by".into(),
            format!("Ingot {}", esc(&m.ingot_version)),
        ),
    ];
    for (name, a) in &m.artifacts {
        rows.push((
            name.clone(),
            format!("<code>{}</code> {}", a.sha256, svg::bytes(a.size)),
        ));
    }
    b.push_str(&kv_table("identity", &rows));
    let labels: Vec<(String, String)> = m.labels.iter().map(|(k, v)| (k.clone(), esc(v))).collect();
    b.push_str("<h3>Labels</h3>");
    b.push_str(&kv_table("labels", &labels));

    // Size map: bytes per package in the root filesystem.
    let mut items: Vec<(String, u64)> = m
        .contents
        .iter()
        .map(|(k, c)| (k.clone(), c.bytes))
        .collect();
    items.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let total: u64 = items.iter().map(|i| i.1).sum();
    if items.len() > MAP_ROWS {
        let rest: u64 = items[MAP_ROWS..].iter().map(|i| i.1).sum();
        let n = items.len() - MAP_ROWS;
        items.truncate(MAP_ROWS);
        items.push((format!("{n} more"), rest));
    }
    let _ = writeln!(
        b,
        "<h3>Size map</h3><p>File bytes in the root filesystem by package: {} in all.</p>",
        svg::bytes(total)
    );
    b.push_str(&svg::bars(&items, "sizemap"));

    // Partitions against the disk and the budget.
    let parts: Vec<(String, u64, u64)> = m
        .disk
        .partitions
        .iter()
        .map(|p| (p.name.clone(), p.offset, p.size))
        .collect();
    let data = allocated(&d.file(DISK_RAW));
    let _ = writeln!(b, "<h3>Partitions</h3>");
    b.push_str(&svg::disk(&parts, m.disk.size, data, m.size_budget));
    let mut prow = String::from(
        "<table class=\"partitions\"><tr><th>partition</th><th>offset</th><th>size</th><th>share of the disk</th></tr>",
    );
    for p in &m.disk.partitions {
        let _ = write!(
            prow,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.1} %</td></tr>",
            esc(&p.name),
            p.offset,
            svg::bytes(p.size),
            p.size as f64 * 100.0 / m.disk.size.max(1) as f64
        );
    }
    prow.push_str("</table>");
    b.push_str(&prow);
    let _ = writeln!(
        b,
        "<p>Disk {}; data written {}; size budget {}.</p>",
        svg::bytes(m.disk.size),
        data.map_or("unknown (no disk.raw)".into(), svg::bytes),
        match (m.size_budget, data) {
            (Some(bud), Some(dt)) => format!(
                "{} ({:.0} % used)",
                svg::bytes(bud),
                dt as f64 * 100.0 / bud.max(1) as f64
            ),
            (Some(bud), None) => svg::bytes(bud),
            (None, _) => "none set".into(),
        }
    );
    b.push_str("</section>\n");
    Ok(())
}

/// Bytes the sparse disk really holds.
fn allocated(p: &std::path::Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).ok().map(|m| m.blocks() * 512)
}

fn packages_table(b: &mut String, d: &ImageDir) {
    let Ok(text) = crate::base::fsx::read(&d.file(SBOM_SPDX)) else {
        return;
    };
    let Ok(v) = serde_json::from_slice::<Value>(&text) else {
        return;
    };
    let source: std::collections::BTreeMap<String, String> =
        crate::packages::Lockfile::load(&d.file(crate::image_dir::LOCKFILE))
            .ok()
            .and_then(|l| l.target.into_iter().next())
            .map(|t| {
                t.package
                    .into_iter()
                    .map(|p| (p.info.name.clone(), p.info.source.clone()))
                    .collect()
            })
            .unwrap_or_default();
    let mut rows: Vec<[String; 5]> = v["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| {
            p["SPDXID"]
                .as_str()
                .is_some_and(|s| s.starts_with("SPDXRef-Package-"))
        })
        .map(|p| {
            let s = |k: &str| p[k].as_str().unwrap_or("").to_string();
            let name = s("name");
            let purl = p["externalRefs"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["referenceType"] == "purl")
                .and_then(|r| r["referenceLocator"].as_str())
                .unwrap_or("")
                .to_string();
            let lic = match s("licenseDeclared").as_str() {
                "" | "NOASSERTION" => s("licenseConcluded"),
                l => l.to_string(),
            };
            [
                name.clone(),
                s("versionInfo"),
                source
                    .get(&name)
                    .filter(|x| !x.is_empty())
                    .cloned()
                    .unwrap_or(name),
                lic,
                purl,
            ]
        })
        .collect();
    rows.sort();
    let _ = writeln!(
        b,
        "<section class=\"packages\"><h2>Packages of {}</h2><p>{} packages, from <code>{SBOM_SPDX}</code> (use the browser's find to search).</p>",
        esc(&d.manifest.id),
        rows.len()
    );
    b.push_str("<table class=\"packages\"><tr><th>package</th><th>version</th><th>source</th><th>licence</th><th>purl</th></tr>");
    for r in rows {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"mono\">{}</td></tr>",
            esc(&r[0]),
            esc(&r[1]),
            esc(&r[2]),
            esc(&r[3]),
            esc(&r[4])
        );
    }
    b.push_str("</table></section>\n");
}

fn diff_section(b: &mut String, prev: &ImageDir, d: &ImageDir) -> Result<()> {
    let diff = crate::audit::diff::diff(prev, d, None)?;
    let _ = writeln!(
        b,
        "<section class=\"diff\"><h3>Changes from {}</h3>",
        esc(&diff.old)
    );
    let mut rows: Vec<(String, String)> = Vec::new();
    for p in &diff.added {
        rows.push((format!("added {}", p.name), esc(&p.version)));
    }
    for p in &diff.removed {
        rows.push((format!("removed {}", p.name), esc(&p.version)));
    }
    for c in diff.upgraded.iter().chain(&diff.downgraded) {
        rows.push((c.name.clone(), format!("{} → {}", esc(&c.old), esc(&c.new))));
    }
    for (k, p) in diff
        .labels
        .iter()
        .chain(&diff.partitions)
        .chain(&diff.agents)
    {
        rows.push((
            k.clone(),
            format!(
                "{} → {}",
                esc(p.old.as_deref().unwrap_or("-")),
                esc(p.new.as_deref().unwrap_or("-"))
            ),
        ));
    }
    if let Some(k) = &diff.kernel {
        rows.push((
            "kernel".into(),
            format!(
                "{} → {}",
                esc(k.old.as_deref().unwrap_or("-")),
                esc(k.new.as_deref().unwrap_or("-"))
            ),
        ));
    }
    if rows.is_empty() {
        b.push_str("<p>No change in packages, labels, kernel, partitions or agents.</p>");
    } else {
        b.push_str(&kv_table("changes", &rows));
    }
    b.push_str("</section>\n");
    Ok(())
}

fn audit_section(b: &mut String, v: &Value) {
    let a = &v["audit"];
    let findings = a["findings"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(
        b,
        "<section class=\"audit\"><h2>Security audit of {}</h2><p>{} of {} packages have a newer version in the suites read ({}).</p>",
        esc(a["subject"].as_str().unwrap_or("")),
        findings.len(),
        a["packages"].as_u64().unwrap_or(0),
        esc(&a["suites"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["suite"].as_str())
            .collect::<Vec<_>>()
            .join(", "))
    );
    if !findings.is_empty() {
        b.push_str("<table class=\"findings\"><tr><th>package</th><th>installed</th><th>available</th><th>suite</th><th>CVE ids</th></tr>");
        for f in &findings {
            let s = |k: &str| esc(f[k].as_str().unwrap_or(""));
            let cves: Vec<&str> = f["cves"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"mono\">{}</td></tr>",
                s("package"),
                s("installed"),
                s("available"),
                s("suite"),
                esc(&cves.join(" "))
            );
        }
        b.push_str("</table>");
    }
    b.push_str("</section>\n");
}

/// Phases of a boot: from the report, else worked out again from its console log.
fn phases_of(c: &crate::boottest::report::BootCase) -> Vec<Phase> {
    if !c.phases.is_empty() {
        return c.phases.clone();
    }
    match (&c.ready, &c.console_log) {
        (Some(r), Some(l)) if c.ok => crate::base::fsx::read_to_string(l)
            .map(|t| timeline::phases(&t, r, c.seconds))
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

fn boot_section(b: &mut String, name: &str, r: &BootReport) {
    let _ = writeln!(
        b,
        "<section class=\"boots\"><h2>Boot test: {}</h2><p>{}</p>",
        esc(name),
        if r.passed {
            "<span class=\"ok\">passed</span>"
        } else {
            "<span class=\"bad\">failed</span>"
        }
    );
    for img in &r.images {
        let label = img
            .image
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let rows: Vec<(String, Vec<Phase>)> = img
            .boots
            .iter()
            .map(|c| (format!("boot {}", c.boot), phases_of(c)))
            .collect();
        let _ = writeln!(b, "<h3>{}</h3>", esc(&label));
        b.push_str(&svg::timeline(&rows));
        b.push_str(html::LEGEND);
        b.push_str("<ul class=\"boot-summary\">");
        for (c, (_, p)) in img.boots.iter().zip(&rows) {
            let words = if c.ok {
                format!(
                    "ready after {:.1} s{}",
                    c.seconds,
                    timeline::slowest(p).map_or(String::new(), |s| format!("; {s}"))
                )
            } else {
                format!(
                    "<span class=\"bad\">failed</span> after {:.1} s: {}",
                    c.seconds,
                    esc(c.failure.as_deref().unwrap_or(""))
                )
            };
            let flaky = if c.flaky {
                " (flaky: passed on a retry)"
            } else {
                ""
            };
            let _ = write!(b, "<li>boot {}: {words}{flaky}</li>", c.boot);
        }
        b.push_str("</ul>\n");
    }
    b.push_str("</section>\n");
}

fn secs(v: &Value) -> String {
    v.as_f64().map_or("-".into(), |s| format!("{s:.1} s"))
}

fn ota_section(b: &mut String, name: &str, r: &Value) {
    let passed = r["error"].is_null()
        && r["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|s| s["passed"] == true);
    let _ = writeln!(
        b,
        "<section class=\"ota\"><h2>OTA test: {}</h2><p>{} {} from {} ({}), {} in all: {}</p>",
        esc(name),
        esc(r["name"].as_str().unwrap_or("")),
        esc(r["arch"].as_str().unwrap_or("")),
        esc(r["base_version"].as_str().unwrap_or("")),
        esc(r["via"].as_str().unwrap_or("")),
        secs(&r["seconds"]),
        if passed {
            "<span class=\"ok\">passed</span>"
        } else {
            "<span class=\"bad\">failed</span>"
        }
    );
    b.push_str("<table class=\"ota-steps\"><tr><th>step</th><th>expected</th><th>outcome</th><th>version</th><th>install</th><th>reboot to ready</th><th>rollback</th><th>step time</th><th>device said</th></tr>");
    for s in r["steps"].as_array().into_iter().flatten() {
        let t = |k: &str| esc(s[k].as_str().unwrap_or("-"));
        let expect = match &s["expect"] {
            Value::String(x) => x.clone(),
            other => other.to_string(),
        };
        let _ = write!(
            b,
            "<tr><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td>{} → {}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            t("step"),
            esc(&expect),
            if s["passed"] == true {
                "<span class=\"ok\">passed</span>"
            } else {
                "<span class=\"bad\">failed</span>"
            },
            t("from_version"),
            t("to_version"),
            secs(&s["install_seconds"]),
            secs(&s["reboot_to_ready_seconds"]),
            secs(&s["rollback_seconds"]),
            secs(&s["seconds"]),
            t("message"),
        );
    }
    b.push_str("</table>");
    if let Some(e) = r["error"].as_str() {
        let _ = write!(b, "<p class=\"bad\">{}</p>", esc(e));
    }
    b.push_str("</section>\n");
}
