//! `ingot report` as people see it: pages for edge-minimal and vm-base with real boot-test
//! reports, opened in headless Chromium (Debian's package, installed by .ci/host-deps). The DOM
//! Chromium built is checked (one timeline row per boot, phases in order, the size map's largest
//! package the one `inspect` names), hostile labels show as text, the page makes no network
//! request (Chromium's own net log), and the same inputs give the same bytes.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// Headless Chromium with the flags that keep it off the network on its own account.
fn chromium(user_dir: &Path, extra: &[&str], url: &str) -> String {
    let mut args = vec![
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1200,1800",
    ];
    let ud = format!("--user-data-dir={}", user_dir.display());
    args.push(&ud);
    args.extend(extra);
    args.push(url);
    let o = Command::new("timeout")
        .arg("120")
        .arg("chromium")
        .args(&args)
        .output()
        .expect("chromium not installed; run .ci/host-deps");
    assert!(
        o.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The URL requests a page started (Chromium's own, whose initiator is "not an origin", are
/// left out), from its net log.
fn page_requests(netlog: &Path) -> Vec<String> {
    let d: serde_json::Value = serde_json::from_slice(&std::fs::read(netlog).unwrap()).unwrap();
    let types = d["constants"]["logEventTypes"].as_object().unwrap();
    let start = types["URL_REQUEST_START_JOB"].as_u64().unwrap();
    d["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"].as_u64() == Some(start) && e["params"]["url"].is_string())
        .filter(|e| e["params"]["initiator"].as_str() != Some("not an origin"))
        .map(|e| e["params"]["url"].as_str().unwrap_or("").to_string())
        .collect()
}

/// `data-X="..."` values of the tags that carry `marker`, in document order.
fn attrs(dom: &str, marker: &str, attr: &str) -> Vec<String> {
    dom.match_indices(marker)
        .filter_map(|(i, _)| {
            let tag_end = dom[i..].find('>')? + i;
            let tag = &dom[i..tag_end];
            let at = tag.find(&format!("{attr}=\""))? + attr.len() + 2;
            Some(tag[at..at + tag[at..].find('"')?].to_string())
        })
        .collect()
}

/// The timeline rows of a dumped page: each boot's phase names, and their starts.
fn rows(dom: &str) -> Vec<(String, Vec<String>, Vec<f64>)> {
    let svg = &dom[dom.find("<svg class=\"timeline\"").unwrap()..];
    let svg = &svg[..svg.find("</svg>").unwrap()];
    svg.split("<g class=\"boot\"")
        .skip(1)
        .map(|g| {
            let label = attrs(&format!("<g{g}"), "<g", "data-boot")[0].clone();
            let names = attrs(g, "<rect class=\"phase", "data-phase");
            let starts = attrs(g, "<rect class=\"phase", "data-start")
                .iter()
                .map(|s| s.parse().unwrap())
                .collect();
            (label, names, starts)
        })
        .collect()
}

fn boot(dir: &Path, boots: &str, json: &Path) {
    let _place = guests(1);
    ok(
        &ingot(&[
            "boot-test",
            dir.to_str().unwrap(),
            "--boots",
            boots,
            "--retries",
            "1",
            "--json",
            json.to_str().unwrap(),
        ]),
        "boot-test",
    );
}

fn report(args: &[&str]) -> Vec<u8> {
    ok(&ingot(args), "report");
    let out = args[args.iter().position(|a| *a == "--out").unwrap() + 1];
    std::fs::read(out).unwrap()
}

#[test]
#[cfg_attr(not(ingot_e2e), ignore = "end-to-end lane: set INGOT_E2E=1")]
fn pages_for_edge_and_vm_base_show_timelines_size_maps_and_escape_hostile_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let out = t.join("out");
    // edge-minimal with a label that would be markup if it were not escaped (a newline the
    // build refuses; it is planted in a copied manifest below).
    let hostile = "<script>alert(1)</script> \"q\" 'a' & b";
    let edge_profile = t.join("edge.toml");
    std::fs::write(
        &edge_profile,
        format!(
            "extends = \"{}\"\n[labels]\n\"dev.ingot.note\" = {}\n",
            root().join("profiles/edge-minimal.toml").display(),
            toml::Value::String(hostile.into())
        ),
    )
    .unwrap();
    let edge = build_x86_64(edge_profile.to_str().unwrap(), &out);
    let vm = build_x86_64("profiles/vm-base.toml", &out);
    let (ej, vj) = (t.join("edge.json"), t.join("vm.json"));
    boot(&edge, "2", &ej);
    boot(&vm, "1", &vj);

    let edge_html = t.join("edge.html");
    let args = |dir: &Path, json: &Path, html: &Path| -> Vec<String> {
        vec![
            "report".into(),
            dir.display().to_string(),
            "--boot-test".into(),
            json.display().to_string(),
            "--out".into(),
            html.display().to_string(),
        ]
    };
    let a: Vec<String> = args(&edge, &ej, &edge_html);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let first = report(&a);
    assert_eq!(first, report(&a), "the same inputs gave different pages");
    let vm_html = t.join("vm.html");
    let v: Vec<String> = args(&vm, &vj, &vm_html);
    let v: Vec<&str> = v.iter().map(String::as_str).collect();
    let vm_page = report(&v);
    assert!(
        vm_page.len() < 1 << 20,
        "vm-base page is {} bytes",
        vm_page.len()
    );

    for (dir, html, boots, json) in [(&edge, &edge_html, 2, &ej), (&vm, &vm_html, 1, &vj)] {
        // Each boot's firmware, from the boot-test report: under UEFI systemd-boot marks where
        // the loader starts; under SeaBIOS GRUB does not, so the two phases are one.
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
        let firmware: Vec<String> = report["images"][0]["boots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["firmware"].as_str().unwrap_or("uefi").to_string())
            .collect();
        let net = t.join(format!("{}.netlog.json", boots));
        let dom = chromium(
            &t.join(format!("ud{boots}")),
            &["--dump-dom", &format!("--log-net-log={}", net.display())],
            &format!("file://{}", html.display()),
        );
        // One row per boot, phases in boot order, each starting where the last began or later.
        // A hybrid BIOS/UEFI disk boots at least once under each firmware.
        let r = rows(&dom);
        assert!(firmware.len() >= boots, "{firmware:?}");
        assert_eq!(r.len(), firmware.len(), "{}", html.display());
        for ((label, names, starts), fw) in r.iter().zip(&firmware) {
            let mut order = match fw.as_str() {
                "bios" => vec!["firmware and boot loader"],
                _ => vec!["firmware", "boot loader"],
            };
            order.extend(["kernel", "initramfs", "init"]);
            let n = order.len();
            assert_eq!(&names[..n], order, "{label} ({fw}): {names:?}");
            assert_eq!(names.last().unwrap(), "check-in", "{label}");
            assert!(names[n..names.len() - 1]
                .iter()
                .all(|n| n.starts_with("agent ")));
            assert!(
                starts.windows(2).all(|w| w[0] <= w[1] + 1e-9),
                "{label}: {starts:?}"
            );
        }
        // The size map's first bar is the package inspect names largest.
        let inspect: serde_json::Value = serde_json::from_str(&ok(
            &ingot(&["inspect", dir.to_str().unwrap(), "--json"]),
            "inspect",
        ))
        .unwrap();
        let largest = inspect["largest_packages"][0][1].as_str().unwrap();
        let bars = attrs(&dom, "<g class=\"bar\"", "data-name");
        assert_eq!(bars[0], largest);
        // No script at all, and no request the page made.
        assert!(!dom.contains("<script"), "a script element in the DOM");
        assert_eq!(page_requests(&net), Vec::<String>::new());
    }
    // The hostile label is text.
    let dom = chromium(
        &t.join("ud-h"),
        &["--dump-dom"],
        &format!("file://{}", edge_html.display()),
    );
    assert!(
        dom.contains("<td>&lt;script&gt;alert(1)&lt;/script&gt; \"q\" 'a' &amp; b</td>"),
        "label not shown as text"
    );
    // A manifest edited by hand (unsigned copy) with a newline and an attribute breaker.
    let copy = copy_image(&edge, &t.join("copy"));
    let mp = copy.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&mp).unwrap()).unwrap();
    m["labels"]["dev.ingot.note"] = "\"><script>alert(2)</script>\nsecond line".into();
    m["contents"]["\"><img src=x>"] = serde_json::json!({"bytes": 1, "files": 1});
    std::fs::write(&mp, serde_json::to_vec(&m).unwrap()).unwrap();
    let h2 = t.join("copy.html");
    report(&[
        "report",
        copy.to_str().unwrap(),
        "--out",
        h2.to_str().unwrap(),
    ]);
    let net = t.join("copy.netlog.json");
    let dom = chromium(
        &t.join("ud-c"),
        &["--dump-dom", &format!("--log-net-log={}", net.display())],
        &format!("file://{}", h2.display()),
    );
    assert!(
        !dom.contains("<script") && !dom.contains("<img"),
        "markup got through"
    );
    assert!(dom.contains("&lt;script&gt;alert(2)&lt;/script&gt;\nsecond line"));
    assert_eq!(page_requests(&net), Vec::<String>::new());
    // The net-log check does see a page's own request: a page with an image on loopback.
    let control = t.join("control.html");
    std::fs::write(
        &control,
        "<!DOCTYPE html><img src=\"http://127.0.0.1:9/x.png\">",
    )
    .unwrap();
    let net = t.join("control.netlog.json");
    chromium(
        &t.join("ud-x"),
        &["--dump-dom", &format!("--log-net-log={}", net.display())],
        &format!("file://{}", control.display()),
    );
    assert_eq!(page_requests(&net), ["http://127.0.0.1:9/x.png"]);
    // A screenshot of the vm-base page renders.
    let png = t.join("vm.png");
    chromium(
        &t.join("ud-s"),
        &[&format!("--screenshot={}", png.display())],
        &format!("file://{}", vm_html.display()),
    );
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 20_000);
}

#[test]
#[cfg_attr(not(ingot_e2e), ignore = "end-to-end lane: set INGOT_E2E=1")]
fn boot_test_html_writes_the_same_page_for_its_run() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let edge = build_x86_64("profiles/edge-minimal.toml", &out);
    let (json, html) = (tmp.path().join("b.json"), tmp.path().join("b.html"));
    ok(
        &ingot(&[
            "boot-test",
            edge.to_str().unwrap(),
            "--boots",
            "1",
            "--json",
            json.to_str().unwrap(),
            "--html",
            html.to_str().unwrap(),
        ]),
        "boot-test --html",
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg class=\"timeline\""));
    assert!(page.contains("<h2>Boot test: this run</h2>"));
    let again = tmp.path().join("again.html");
    ok(
        &ingot(&[
            "report",
            edge.to_str().unwrap(),
            "--boot-test",
            json.to_str().unwrap(),
            "--out",
            again.to_str().unwrap(),
        ]),
        "report",
    );
    // The same page but for the report's name in the heading.
    let again = std::fs::read_to_string(&again).unwrap();
    assert_eq!(page.replace("this run", "b.json"), again);
    // A page in a directory that does not exist yet: the directory is made, as boot-test's
    // --html does (it failed with exit 1).
    let nested = tmp.path().join("no-such-dir/p.html");
    ok(
        &ingot(&[
            "report",
            edge.to_str().unwrap(),
            "--out",
            nested.to_str().unwrap(),
        ]),
        "report into a new directory",
    );
    assert!(std::fs::read_to_string(&nested).unwrap().contains("<h2>"));
    // A directory given as --out: bad input (exit 2) before anything is read, the path named
    // once, and no temporary file left beside it.
    let dest = tmp.path().join("out");
    let o = ingot(&[
        "report",
        edge.to_str().unwrap(),
        "--out",
        dest.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.matches(dest.to_str().unwrap()).count(), 1, "{err}");
    assert!(err.contains("is a directory"), "{err}");
    // A report to draw that is missing, a device or not JSON is bad input (exit 2); it was
    // exit 1, as a page that cannot be written still is.
    let not_json = tmp.path().join("not.json");
    std::fs::write(&not_json, "{\n").unwrap();
    let missing = tmp.path().join("missing.json");
    // JSON of another kind: a boot-test report given as an OTA test was drawn as a run with
    // no steps, shown as passed.
    let other = tmp.path().join("other.json");
    std::fs::write(&other, "{\"images\": 3}").unwrap();
    for (flag, given, why) in [
        ("--boot-test", missing.as_path(), "No such file"),
        ("--ota-test", Path::new("/dev/null"), "not a regular file"),
        ("--audit", not_json.as_path(), "not JSON"),
        ("--boot-test", other.as_path(), "not a boot-test report"),
        (
            "--ota-test",
            json.as_path(),
            "not an OTA-test report (ota-test --json): `name` is missing",
        ),
        (
            "--audit",
            json.as_path(),
            "not an audit (ingot audit --json): no `audit` object",
        ),
    ] {
        let o = ingot(&[
            "report",
            edge.to_str().unwrap(),
            flag,
            given.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{flag}: {err}");
        assert!(err.contains(why), "{flag}: {err}");
        assert!(o.stdout.is_empty(), "{flag}: a page was printed");
    }
    let hidden: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert_eq!(hidden, Vec::<String>::new());
}
