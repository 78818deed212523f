//! The audit as a CycloneDX 1.5 vulnerability document (VEX-style): one vulnerability per CVE
//! id, each naming the affected components by the purl `sbom.cdx.json` gives them, with the
//! installed version affected and the available one not. Dependency-Track and similar tools
//! take it as it is.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{Audit, Finding};
use crate::base::identity::{derived_guid, rfc3339};

/// The document, stamped `now`.
pub fn document(a: &Audit, now: i64) -> Value {
    let mut by_cve: BTreeMap<&str, Vec<&Finding>> = BTreeMap::new();
    for f in &a.findings {
        for c in &f.cves {
            by_cve.entry(c).or_default().push(f);
        }
    }
    let components: Vec<Value> = a
        .findings
        .iter()
        .filter(|f| !f.cves.is_empty())
        .map(|f| {
            json!({
                "type": "library", "bom-ref": f.purl, "name": f.package,
                "version": f.installed, "purl": f.purl,
            })
        })
        .collect();
    let vulns: Vec<Value> = by_cve
        .iter()
        .map(|(cve, fs)| {
            let fixes: Vec<String> = fs
                .iter()
                .map(|f| format!("{} {} ({})", f.package, f.available, f.suite))
                .collect();
            let published = fs
                .iter()
                .flat_map(|f| f.entries.iter())
                .filter(|e| e.cves.iter().any(|c| c == cve))
                .filter_map(|e| e.epoch)
                .min();
            let mut v = json!({
                "bom-ref": format!("vuln:{cve}"),
                "id": cve,
                "source": {"name": "Debian", "url": format!("https://security-tracker.debian.org/tracker/{cve}")},
                "recommendation": format!("Upgrade to {}", fixes.join(", ")),
                "affects": fs.iter().map(|f| json!({
                    "ref": f.purl,
                    "versions": [
                        {"version": f.installed, "status": "affected"},
                        {"version": f.available, "status": "unaffected"},
                    ],
                })).collect::<Vec<_>>(),
            });
            if let Some(t) = published {
                v["published"] = json!(rfc3339(t));
            }
            v
        })
        .collect();
    let (name, version) = match &a.image {
        Some(i) => (i.image.clone(), i.version.clone()),
        None => (a.subject.clone(), String::new()),
    };
    let mut subject =
        json!({"type": "operating-system", "bom-ref": format!("image:{name}"), "name": name});
    if !version.is_empty() {
        subject["version"] = json!(version);
    }
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": format!("urn:uuid:{}", derived_guid(&format!("{name}-{version}-{now}"), "audit")),
        "version": 1,
        "metadata": {
            "timestamp": rfc3339(now),
            "tools": [{"vendor": "ingot", "name": "ingot", "version": env!("CARGO_PKG_VERSION")}],
            "component": subject,
        },
        "components": components,
        "vulnerabilities": vulns,
    })
}
