//! `ingot audit` against a signed repository generated here: a main suite, an -updates suite
//! and a security suite (in its own archive, as Debian serves it) where newer versions carry
//! changelogs naming CVE ids. The planted findings, and only those, must come out, with the
//! exit status each gate asks for; a tampered security index and an unreachable archive must
//! never read as "no findings". Offline (file:// and a closed loopback port): fast lane.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use ingot::base::identity::{now_secs, rfc3339};
use ingot::packages::testrepo::{flip_byte, gzip, TestRepo};
use ingot::packages::{LockTarget, Locked, Lockfile, Role};

/// `Tue, 05 Nov 2024 22:10:11 +0000` of `days` ago.
fn changelog_date(days: i64) -> String {
    let t = now_secs() - days * 86400;
    let (y, m, d, rem) = ingot::base::identity::civil(t);
    let mon = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][m as usize - 1];
    format!(
        "Mon, {d:02} {mon} {y} {:02}:{:02}:{:02} +0000",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn entry(pkg: &str, version: &str, dist: &str, urgency: &str, text: &str, days: i64) -> String {
    format!(
        "{pkg} ({version}) {dist}; urgency={urgency}\n\n  * {text}\n\n -- Test <t@example.invalid>  {}\n\n",
        changelog_date(days)
    )
}

struct Planted {
    repo: TestRepo,
    lock: PathBuf,
}

/// The archive and the lockfile of an "image" resolved from `test` and `test-updates`.
fn planted() -> Planted {
    use tar::EntryType::{Regular, Symlink};
    let mut r = TestRepo::new();
    let old_ssl = entry(
        "openssl",
        "1.0-1",
        "test",
        "medium",
        "Fixes CVE-2020-0001.",
        900,
    );
    let ssl_log = gzip(
        format!(
            "{}{}{old_ssl}",
            entry(
                "openssl",
                "1.0-1+deb1u2",
                "test-security",
                "high",
                "Fix CVE-2026-1111 (buffer overflow).",
                30
            ),
            entry(
                "openssl",
                "1.0-1+deb1u1",
                "test-security",
                "medium",
                "Fix CVE-2026-2222 and cve-2026-1111 in the tests.",
                40
            ),
        )
        .as_bytes(),
    );
    let zlib_log = gzip(
        format!(
            "{}{}",
            entry(
                "zlib",
                "1.2-1+deb1u1",
                "test-security",
                "high",
                "CVE-2026-3333: inflate.",
                2
            ),
            entry("zlib", "1.2-1", "test", "low", "Initial.", 800)
        )
        .as_bytes(),
    );
    let tz_log = gzip(
        format!(
            "{}{}",
            entry(
                "tzdata",
                "2026b-1",
                "test-updates",
                "medium",
                "New timezone data.",
                1
            ),
            entry(
                "tzdata",
                "2026a-1",
                "test",
                "medium",
                "New timezone data.",
                100
            )
        )
        .as_bytes(),
    );
    let old_ssl_gz = gzip(old_ssl.as_bytes());
    let ssl_doc = "./usr/share/doc/openssl/changelog.Debian.gz";
    let zlib_doc = "./usr/share/doc/zlib1g/changelog.Debian.gz";
    let tz_doc = "./usr/share/doc/tzdata/changelog.Debian.gz";
    // The image: test + test-updates.
    r.add_to(
        "test",
        "openssl",
        "1.0-1",
        "",
        &[(ssl_doc, Regular, &old_ssl_gz, "")],
    );
    let link = [("./usr/share/doc/libssl3", Symlink, &b""[..], "openssl")];
    r.add_to("test", "libssl3", "1.0-1", "Source: openssl\n", &link);
    r.add_to("test", "zlib1g", "1:1.2-1", "Source: zlib (1.2-1)\n", &[]);
    r.add_to("test", "tzdata", "2026a-1", "", &[]);
    r.add_to("test", "curl", "7.0-1", "", &[]);
    r.add_to(
        "test-updates",
        "tzdata",
        "2026b-1",
        "",
        &[(tz_doc, Regular, &tz_log, "")],
    );
    // The security suite, which the image's profile did not name.
    for v in ["1.0-1+deb1u1", "1.0-1+deb1u2"] {
        r.add_to(
            "test-security",
            "openssl",
            v,
            "",
            &[(ssl_doc, Regular, &ssl_log, "")],
        );
        r.add_to("test-security", "libssl3", v, "Source: openssl\n", &link);
    }
    let zl = [(zlib_doc, Regular, &zlib_log[..], "")];
    r.add_to(
        "test-security",
        "zlib1g",
        "1:1.2-1+deb1u1",
        "Source: zlib (1.2-1+deb1u1)\n",
        &zl,
    );
    // Same version as installed: no finding.
    r.add_to("test-security", "curl", "7.0-1", "", &[]);
    r.publish();

    // The lockfile, as `ingot lock` pins it: every package from the index it was resolved from.
    let src = r.source();
    let mut lock_releases = std::collections::BTreeMap::new();
    let mut package = Vec::new();
    for suite in ["test", "test-updates"] {
        let keys = ingot::packages::repo::load_keyring(&r.keyring()).unwrap();
        let rel = ingot::packages::repo::fetch_release(
            &src.cache,
            &r.mirror(),
            suite,
            &r.keyring(),
            &keys,
        )
        .unwrap();
        lock_releases.insert(suite.to_string(), rel.digest.clone());
        let text =
            ingot::packages::repo::fetch_packages(&src.cache, &rel, "main", "amd64").unwrap();
        for para in text.split("\n\n") {
            let Some(p) = ingot::packages::index::PackageInfo::from_stanza(para, suite) else {
                continue;
            };
            // The image was resolved before tzdata 2026b-1 reached -updates.
            if suite == "test-updates" {
                continue;
            }
            package.push(Locked {
                role: Role::Image,
                info: p,
            });
        }
    }
    let lock = Lockfile {
        version: 1,
        target: vec![LockTarget {
            hardware: "qemu-x86_64".into(),
            arch: "amd64".into(),
            inputs_digest: "0".repeat(64),
            releases: lock_releases,
            release_dates: Default::default(),
            skipped: Vec::new(),
            package,
        }],
    };
    let path = r.dir.path().join("image.lock");
    std::fs::write(&path, lock.to_toml().unwrap()).unwrap();
    Planted {
        repo: r,
        lock: path,
    }
}

fn audit(p: &Planted, cache: &Path, extra: &[&str]) -> Output {
    let keyring = p.repo.keyring();
    let mut args = vec![
        "audit",
        p.lock.to_str().unwrap(),
        "--keyring",
        keyring.to_str().unwrap(),
        "--cache",
        cache.to_str().unwrap(),
    ];
    if !extra.contains(&"--mirror") {
        args.extend(["--mirror", "MIRROR"]);
    }
    args.extend(extra);
    let mirror = p.repo.mirror();
    let args: Vec<&str> = args
        .iter()
        .map(|a| if *a == "MIRROR" { mirror.as_str() } else { a })
        .collect();
    ingot_env(&args, &[("INGOT_SECURITY_MIRROR", "")])
}

fn code_and_text(o: &Output) -> (Option<i32>, String, String) {
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn audit_lists_exactly_the_planted_fixes_and_gates_decide_the_exit_status() {
    let p = planted();
    let cache = p.repo.dir.path().join("audit-cache");
    let o = audit(&p, &cache, &["--json"]);
    let (code, out, err) = code_and_text(&o);
    assert_eq!(code, Some(0), "no gate given: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let findings = v["audit"]["findings"].as_array().unwrap();
    let mut got: Vec<(String, String, String, String, Vec<String>, bool)> = findings
        .iter()
        .map(|f| {
            (
                f["package"].as_str().unwrap().to_string(),
                f["installed"].as_str().unwrap().to_string(),
                f["available"].as_str().unwrap().to_string(),
                f["suite"].as_str().unwrap().to_string(),
                f["cves"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c.as_str().unwrap().to_string())
                    .collect(),
                f["security"].as_bool().unwrap(),
            )
        })
        .collect();
    got.sort();
    let ssl = vec!["CVE-2026-1111".to_string(), "CVE-2026-2222".to_string()];
    let want = vec![
        (
            "libssl3".into(),
            "1.0-1".into(),
            "1.0-1+deb1u2".into(),
            "test-security".into(),
            ssl.clone(),
            true,
        ),
        (
            "openssl".into(),
            "1.0-1".into(),
            "1.0-1+deb1u2".into(),
            "test-security".into(),
            ssl,
            true,
        ),
        (
            "tzdata".into(),
            "2026a-1".into(),
            "2026b-1".into(),
            "test-updates".into(),
            vec![],
            false,
        ),
        (
            "zlib1g".into(),
            "1:1.2-1".into(),
            "1:1.2-1+deb1u1".into(),
            "test-security".into(),
            vec!["CVE-2026-3333".to_string()],
            true,
        ),
    ];
    assert_eq!(got, want, "{out}");
    // The security suite was read although the image's set did not use it.
    let suites: Vec<(&str, bool)> = v["audit"]["suites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["suite"].as_str().unwrap(),
                s["in_image"].as_bool().unwrap(),
            )
        })
        .collect();
    assert!(suites.contains(&("test-security", false)), "{suites:?}");
    // Entries carry urgency and dates; the source's entry already installed is not listed.
    let ssl = findings.iter().find(|f| f["package"] == "openssl").unwrap();
    let urg: Vec<&str> = ssl["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["urgency"].as_str().unwrap())
        .collect();
    assert_eq!(urg, ["high", "medium"]);
    assert!(
        !out.contains("CVE-2020-0001"),
        "an installed fix was listed"
    );
    // libssl3's doc directory links to openssl's: its changelog came from there.
    let libssl = findings.iter().find(|f| f["package"] == "libssl3").unwrap();
    assert!(libssl["changelog"]
        .as_str()
        .unwrap()
        .starts_with("openssl "));

    // Gates: (flags, exit status).
    for (flags, want) in [
        (vec!["--fail-on", "any"], 1),
        (vec!["--fail-on", "security"], 1),
        // openssl's first missed fix is 40 days old, zlib's 2.
        (vec!["--fail-on", "security", "--max-age", "10"], 1),
        (vec!["--fail-on", "security", "--max-age", "45"], 0),
        (vec!["--max-age", "45"], 0),
        (vec!["--max-age", "35"], 1),
    ] {
        let o = audit(&p, &cache, &flags);
        let (code, out, err) = code_and_text(&o);
        assert_eq!(code, Some(want), "{flags:?}:\n{out}\n{err}");
        if want == 1 {
            assert!(out.contains("gate: FAILED"), "{out}");
            assert!(err.contains("audit gate failed"), "{err}");
        } else {
            assert!(out.contains("gate: passed"), "{out}");
        }
    }
    // --fail-on security with a 10-day grace names openssl and libssl3 (40 days) but not zlib.
    let o = audit(&p, &cache, &["--fail-on", "security", "--max-age", "10"]);
    let out = String::from_utf8_lossy(&o.stdout);
    let reasons: Vec<&str> = out.lines().filter(|l| l.starts_with("  - ")).collect();
    assert_eq!(reasons.len(), 2, "{out}");
    assert!(reasons.iter().all(|r| r.contains("CVE-2026-1111")), "{out}");

    // The table names every finding and the weekly count runs to today.
    let since = &rfc3339(now_secs() - 50 * 86400)[..10];
    let o = audit(&p, &cache, &["--since", since]);
    let (code, out, _) = code_and_text(&o);
    assert_eq!(code, Some(0));
    for needle in [
        "openssl",
        "libssl3",
        "zlib1g",
        "tzdata",
        "CVE-2026-3333",
        "test-security",
    ] {
        assert!(out.contains(needle), "{needle} missing:\n{out}");
    }
    // Uploads in the window: openssl deb1u1 and deb1u2, zlib deb1u1, tzdata 2026b-1.
    assert!(out.contains("mean "), "{out}");
    let weekly: usize = out
        .lines()
        .skip_while(|l| !l.starts_with("fixes missed per week"))
        .skip(1)
        .take_while(|l| !l.contains("mean"))
        .map(|l| {
            l.split_whitespace()
                .nth(1)
                .unwrap()
                .parse::<usize>()
                .unwrap()
        })
        .sum();
    assert_eq!(weekly, 4, "{out}");
}

#[test]
fn cyclonedx_output_lists_each_cve_with_the_affected_purl_and_the_fixed_version() {
    let p = planted();
    let cache = p.repo.dir.path().join("audit-cache");
    let vex = p.repo.dir.path().join("vex.cdx.json");
    let o = audit(&p, &cache, &["--cyclonedx", vex.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&vex).unwrap()).unwrap();
    assert_eq!(v["specVersion"], "1.5");
    let vulns = v["vulnerabilities"].as_array().unwrap();
    let ids: Vec<&str> = vulns.iter().map(|x| x["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["CVE-2026-1111", "CVE-2026-2222", "CVE-2026-3333"]);
    let zlib = &vulns[2]["affects"][0];
    assert_eq!(
        zlib["ref"],
        "pkg:deb/debian/zlib1g@1%3A1.2-1?arch=amd64&distro=test"
    );
    assert_eq!(zlib["versions"][1]["version"], "1:1.2-1+deb1u1");
    assert_eq!(zlib["versions"][1]["status"], "unaffected");
    let refs: Vec<&str> = v["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["bom-ref"].as_str().unwrap())
        .collect();
    for vul in vulns {
        for a in vul["affects"].as_array().unwrap() {
            assert!(refs.contains(&a["ref"].as_str().unwrap()), "dangling ref");
        }
    }
    // The schema validator the SBOM tests use (installed by .ci/host-deps).
    if cfg!(ingot_e2e) {
        let py = format!(
            "import sys\nfrom cyclonedx.validation.json import JsonStrictValidator\nfrom cyclonedx.schema import SchemaVersion\nerr = JsonStrictValidator(SchemaVersion.V1_5).validate_str(open('{}').read())\nsys.exit(str(err) if err else 0)\n",
            vex.display()
        );
        let (good, o) = tool("python3", &["-c", &py]);
        assert!(good, "CycloneDX schema: {o}");
    }
}

#[test]
fn a_tampered_security_index_is_refused_and_an_unreachable_archive_exits_2() {
    let p = planted();
    // Tampered: the security suite's index no longer matches its signed Release.
    flip_byte(
        &p.repo
            .root_of("test-security")
            .join("dists/test-security/main/binary-amd64/Packages.gz"),
    );
    let fresh = p.repo.dir.path().join("fresh-cache");
    let o = audit(&p, &fresh, &["--fail-on", "security"]);
    let (code, out, err) = code_and_text(&o);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("does not match"), "{err}");
    assert!(!out.contains("nothing pending"), "{out}");

    // Warm cache, archive gone: exit 2, said in words, never "nothing pending".
    let p = planted();
    let cache = p.repo.dir.path().join("warm");
    assert_eq!(audit(&p, &cache, &[]).status.code(), Some(0));
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mirror = format!("http://127.0.0.1:{port}/debian");
    let o = audit(&p, &cache, &["--mirror", &mirror]);
    let (code, out, err) = code_and_text(&o);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.contains("could not reach the archive"), "{err}");
    assert!(out.is_empty(), "{out}");
    // And with a mirror that is a missing file:// path.
    let gone = format!("file://{}/nowhere", p.repo.dir.path().display());
    let o = audit(&p, &cache, &["--mirror", &gone]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn audit_input_mistakes_exit_2_naming_the_input() {
    let p = planted();
    let cache = p.repo.dir.path().join("c");
    let o = audit(&p, &cache, &["--since", "last-week"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--since last-week"));
    let o = ingot(&["audit", "/nonexistent/image-dir"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/image-dir"));
    // A profile given where its lockfile belongs is named as one.
    let profile = root().join("profiles/vm-base.toml");
    let o = ingot(&["audit", profile.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr)
        .contains("vm-base.toml: this is a profile, not a lockfile"));
    // A lockfile with two targets needs --hardware.
    let mut lock = Lockfile::load(&p.lock).unwrap();
    let mut second = lock.target[0].clone();
    second.hardware = "other".into();
    lock.target.push(second);
    std::fs::write(&p.lock, lock.to_toml().unwrap()).unwrap();
    let o = audit(&p, &cache, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--hardware"));
    let o = audit(&p, &cache, &["--hardware", "other", "--fail-on", "any"]);
    assert_eq!(o.status.code(), Some(1));
}

/// The image's packages as (name, version, arch), read from its lockfile independently.
fn locked(dir: &Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(dir.join("packages.lock")).unwrap();
    let v: toml::Value = toml::from_str(&text).unwrap();
    v["target"][0]["package"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["version"].as_str().unwrap().to_string(),
                p["arch"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `dpkg --compare-versions a gt b`: Debian's own ordering, not Ingot's.
fn dpkg_newer(a: &str, b: &str) -> bool {
    std::process::Command::new("dpkg")
        .args(["--compare-versions", a, "gt", b])
        .status()
        .unwrap()
        .success()
}

#[test]
#[cfg_attr(not(ingot_e2e), ignore = "end-to-end lane: set INGOT_E2E=1")]
fn real_archive_an_image_without_security_updates_lists_each_and_one_with_them_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    // vm-base as shipped takes bookworm-security; this copy takes bookworm alone.
    let nosec = tmp.path().join("vm-nosec.toml");
    std::fs::write(
        &nosec,
        format!(
            "extends = \"{}\"\n[image]\nname = \"vm-nosec\"\nversion = \"1.0.0\"\n[distribution]\nsuite = \"bookworm\"\nextra_suites = []\n",
            root().join("profiles/vm-base.toml").display()
        ),
    )
    .unwrap();
    let old = build_x86_64(nosec.to_str().unwrap(), &out);
    let o = ingot(&["audit", old.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&ok(&o, "audit")).unwrap();
    let sec = v["audit"]["suites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["suite"] == "bookworm-security")
        .expect("the security suite was read")
        .clone();
    assert_eq!(sec["in_image"], false);
    // The security suite's index, fetched and read here with curl, xz and dpkg.
    let url = format!(
        "{}/dists/bookworm-security/main/binary-amd64/Packages.xz",
        sec["mirror"].as_str().unwrap()
    );
    let xz = std::process::Command::new("curl")
        .args(["-fsSL", &url])
        .output()
        .unwrap();
    assert!(xz.status.success(), "curl {url}");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut xz2::read::XzDecoder::new(&xz.stdout[..]), &mut text)
        .unwrap();
    let mut security: std::collections::BTreeMap<String, String> = Default::default();
    for para in text.split("\n\n") {
        let field = |k: &str| {
            para.lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim().to_string())
        };
        if let (Some(n), Some(ver), Some(a)) =
            (field("Package:"), field("Version:"), field("Architecture:"))
        {
            if a == "amd64" || a == "all" {
                let e = security.entry(n).or_insert(ver.clone());
                if dpkg_newer(&ver, e) {
                    *e = ver;
                }
            }
        }
    }
    let findings = v["audit"]["findings"].as_array().unwrap();
    let found: std::collections::BTreeMap<&str, &serde_json::Value> = findings
        .iter()
        .map(|f| (f["package"].as_str().unwrap(), f))
        .collect();
    let mut expected = 0;
    for (name, have, _) in locked(&old) {
        let Some(newer) = security.get(&name) else {
            continue;
        };
        if !dpkg_newer(newer, &have) {
            continue;
        }
        expected += 1;
        let f = found
            .get(name.as_str())
            .unwrap_or_else(|| panic!("{name} {have} < {newer} in bookworm-security, not listed"));
        assert!(
            !dpkg_newer(newer, f["available"].as_str().unwrap()),
            "{name}: listed {} but security has {newer}",
            f["available"]
        );
        assert!(
            !f["entries"].as_array().unwrap().is_empty()
                || f["changelog"].as_str().unwrap().starts_with("no changelog"),
            "{name}: a newer version with no missed changelog entry"
        );
    }
    assert!(
        expected > 0,
        "bookworm-security has nothing newer than bookworm's vm-base set"
    );
    let with_cves: Vec<&&serde_json::Value> = found
        .values()
        .filter(|f| !f["cves"].as_array().unwrap().is_empty())
        .collect();
    assert!(!with_cves.is_empty(), "no finding names a CVE");
    // Independent: each CVE listed is in the newer package's changelog text.
    for f in with_cves
        .iter()
        .filter(|f| f["suite"] == "bookworm-security")
        .take(3)
    {
        // The binary the changelog was read from ("NAME VERSION").
        let from = f["changelog"].as_str().unwrap();
        let (name, version) = from.split_once(' ').unwrap();
        let deb = tmp.path().join(format!("{name}.deb"));
        let url = format!(
            "{}/{}",
            sec["mirror"].as_str().unwrap(),
            security_filename(&text, name, version)
        );
        let o = std::process::Command::new("curl")
            .args(["-fsSL", "-o", deb.to_str().unwrap(), &url])
            .status()
            .unwrap();
        assert!(o.success(), "curl {url}");
        // Native packages (apt) ship changelog.gz, the others changelog.Debian.gz.
        let x = tmp.path().join(format!("{name}.x"));
        let sh = format!(
            "dpkg-deb -x {deb} {x} && f={x}/usr/share/doc/{name}/changelog.Debian.gz && {{ [ -f $f ] || f={x}/usr/share/doc/{name}/changelog.gz; }} && zcat $f | dpkg-parsechangelog -l- --since {since} -S Changes",
            deb = deb.display(),
            x = x.display(),
            since = f["installed_source"].as_str().unwrap()
        );
        let (good, changes) = tool("sh", &["-c", &sh]);
        assert!(good, "{sh}: {changes}");
        for c in f["cves"].as_array().unwrap() {
            let c = c.as_str().unwrap();
            assert!(
                changes.to_uppercase().contains(c),
                "{name}: {c} not in its changelog"
            );
        }
    }
    // The HTML report's audit section shows the same findings, one row each.
    let audit_json = tmp.path().join("audit.json");
    std::fs::write(
        &audit_json,
        ok(&ingot(&["audit", old.to_str().unwrap(), "--json"]), "audit"),
    )
    .unwrap();
    let page_file = tmp.path().join("old.html");
    ok(
        &ingot(&[
            "report",
            old.to_str().unwrap(),
            "--audit",
            audit_json.to_str().unwrap(),
            "--out",
            page_file.to_str().unwrap(),
        ]),
        "report --audit",
    );
    let page = std::fs::read_to_string(&page_file).unwrap();
    let section = between(&page, "<section class=\"audit\">", "</section>");
    assert!(
        section.contains(&format!("{} of ", findings.len())),
        "{section}"
    );
    let rows: Vec<Vec<String>> = section
        .split("<tr><td>")
        .skip(1)
        .map(|r| {
            r.split("</td>")
                .map(|c| {
                    c.trim_start_matches("<td>")
                        .trim_start_matches("<td class=\"mono\">")
                        .to_string()
                })
                .take(5)
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), findings.len(), "{section}");
    for f in findings {
        let row = rows
            .iter()
            .find(|r| r[0] == f["package"].as_str().unwrap())
            .unwrap_or_else(|| panic!("{} has no row: {section}", f["package"]));
        assert_eq!(row[1], f["installed"].as_str().unwrap());
        assert_eq!(row[2], f["available"].as_str().unwrap());
        for c in f["cves"].as_array().unwrap() {
            assert!(
                row[4].split(' ').any(|x| x == c.as_str().unwrap()),
                "{row:?}"
            );
        }
    }

    let o = ingot(&["audit", old.to_str().unwrap(), "--fail-on", "security"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );

    // vm-base as shipped, with bookworm-security: nothing pending at build time.
    let new = build_x86_64("profiles/vm-base.toml", &out);
    let vex = tmp.path().join("vex.json");
    let o = ingot(&[
        "audit",
        new.to_str().unwrap(),
        "--fail-on",
        "security",
        "--cyclonedx",
        vex.to_str().unwrap(),
    ]);
    let text = ok(&o, "audit of vm-base");
    assert!(text.contains("nothing pending"), "{text}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&vex).unwrap()).unwrap();
    assert!(v["vulnerabilities"].as_array().unwrap().is_empty());
}

/// The `Filename` of `name` at `version` in a Packages text.
fn security_filename(text: &str, name: &str, version: &str) -> String {
    text.split("\n\n")
        .find(|p| {
            p.lines().any(|l| l == format!("Package: {name}"))
                && p.lines().any(|l| l == format!("Version: {version}"))
        })
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("Filename: ")))
        .unwrap_or_else(|| panic!("{name} {version} not in the security index"))
        .to_string()
}

#[test]
#[cfg_attr(not(ingot_e2e), ignore = "end-to-end lane: set INGOT_E2E=1")]
fn diff_names_exactly_the_added_package_and_the_changed_label() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let v11 = tmp.path().join("edge-1.1.0.toml");
    std::fs::write(
        &v11,
        format!(
            "extends = \"{}\"\n[image]\nname = \"edge-minimal\"\nversion = \"1.1.0\"\n[packages]\ninclude = [\"busybox-static\", \"netbase\"]\n[labels]\n\"dev.ingot.support\" = \"#edge-oncall-2\"\n",
            root().join("profiles/edge-minimal.toml").display()
        ),
    )
    .unwrap();
    let old = build_x86_64("profiles/edge-minimal.toml", &out);
    let new = build_x86_64(v11.to_str().unwrap(), &out);
    let o = ingot(&[
        "diff",
        old.to_str().unwrap(),
        new.to_str().unwrap(),
        "--json",
    ]);
    let d: serde_json::Value = serde_json::from_str(&ok(&o, "diff")).unwrap();
    let names = |k: &str| -> Vec<String> {
        d[k].as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names("added"), ["netbase"], "{d:#}");
    assert!(names("removed").is_empty(), "{d:#}");
    assert!(names("upgraded").is_empty(), "{d:#}");
    assert!(names("downgraded").is_empty(), "{d:#}");
    let labels: Vec<&String> = d["labels"].as_object().unwrap().keys().collect();
    assert_eq!(labels, ["dev.ingot.support"], "{d:#}");
    assert_eq!(d["labels"]["dev.ingot.support"]["old"], "#edge-oncall");
    assert_eq!(d["labels"]["dev.ingot.support"]["new"], "#edge-oncall-2");
    assert!(d["kernel"].is_null() && d["agents"].as_object().unwrap().is_empty());
    assert!(d["partitions"].as_object().unwrap().is_empty(), "{d:#}");
    assert!(d["root_bytes"]["new"].as_u64() > d["root_bytes"]["old"].as_u64());
    // The same in words and in Markdown.
    let o = ingot(&[
        "diff",
        old.to_str().unwrap(),
        new.to_str().unwrap(),
        "--markdown",
    ]);
    let md = ok(&o, "diff --markdown");
    assert!(md.contains("### packages added (1)\n- `netbase` "), "{md}");
    assert!(
        md.contains("- `dev.ingot.support`: #edge-oncall -> #edge-oncall-2"),
        "{md}"
    );
    assert!(!md.contains("packages removed"), "{md}");
    // An image against itself: nothing.
    let o = ingot(&["diff", old.to_str().unwrap(), old.to_str().unwrap()]);
    assert!(ok(&o, "diff").contains("no change in packages"));
    // The HTML report of the new image against the old shows the same two changes, and
    // nothing else.
    let page_file = tmp.path().join("new.html");
    ok(
        &ingot(&[
            "report",
            new.to_str().unwrap(),
            "--previous",
            old.to_str().unwrap(),
            "--out",
            page_file.to_str().unwrap(),
        ]),
        "report --previous",
    );
    let page = std::fs::read_to_string(&page_file).unwrap();
    let section = between(&page, "<section class=\"diff\">", "</section>");
    assert!(
        section.contains("Changes from edge-minimal-1.0.0-x86_64"),
        "{section}"
    );
    let rows: Vec<&str> = section.split("<tr>").skip(1).collect();
    assert_eq!(rows.len(), 2, "{section}");
    assert!(
        rows[0].starts_with("<th>added netbase</th><td>"),
        "{section}"
    );
    assert_eq!(
        rows[1].split("</tr>").next().unwrap(),
        "<th>dev.ingot.support</th><td>#edge-oncall → #edge-oncall-2</td>",
        "{section}"
    );
    // Against itself: the section says there is no change.
    let o = ingot(&[
        "report",
        old.to_str().unwrap(),
        "--previous",
        old.to_str().unwrap(),
        "--out",
        page_file.to_str().unwrap(),
    ]);
    ok(&o, "report --previous itself");
    let page = std::fs::read_to_string(&page_file).unwrap();
    assert!(
        between(&page, "<section class=\"diff\">", "</section>").contains("No change in packages")
    );
}

/// The text from `start` to the first `end` after it (both included).
fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("no `{start}` in the page"));
    let to = text[from..]
        .find(end)
        .map(|e| from + e + end.len())
        .unwrap();
    &text[from..to]
}
