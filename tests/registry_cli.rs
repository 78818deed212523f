//! Registry commands on bad input, in the fast lane (no registry binary, loopback only):
//! references that do not parse, an unreachable registry, a registry that wants credentials
//! (Basic and the bearer-token flow, answered from an auth file), and `matrix`.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use common::*;

fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let o = ingot_env(args, env);
    (
        o.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
fn references_that_do_not_parse_exit_2_before_anything_is_contacted() {
    let dir = tempfile::tempdir().unwrap();
    let k = dir.path().join("k");
    ok(&ingot(&["keygen", "--out", k.to_str().unwrap()]), "keygen");
    let pubk = format!("{}.pub", k.display());
    for (args, needle) in [
        (
            vec!["pull", "edge-minimal:1.0.0", "x", "--key", &pubk],
            "no registry",
        ),
        (
            vec!["pull", "localhost:5000/Golden/edge:1", "x", "--key", &pubk],
            "lowercase",
        ),
        (
            vec![
                "pull",
                "localhost:5000/golden/edge@sha256:abc",
                "x",
                "--key",
                &pubk,
            ],
            "sha256:<64",
        ),
        (
            vec![
                "retention",
                "localhost:5000/golden/edge:1.0.0",
                "--keep",
                "1",
            ],
            "without a tag",
        ),
        (
            vec![
                "promote",
                "localhost:5000/golden/edge:1.0.0",
                "1.2.3",
                "--key",
                &pubk,
                "--sign-key",
                "x",
            ],
            "looks like a version",
        ),
    ] {
        let (code, err) = run(&args, &[]);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!root().join("x").exists());
    }
}

#[test]
fn an_unreachable_registry_is_named_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let k = dir.path().join("k");
    ok(&ingot(&["keygen", "--out", k.to_str().unwrap()]), "keygen");
    // A port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dest = dir.path().join("pulled");
    let (code, err) = run(
        &[
            "pull",
            &format!("127.0.0.1:{port}/golden/edge:1.0.0"),
            dest.to_str().unwrap(),
            "--key",
            &format!("{}.pub", k.display()),
        ],
        &[],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cannot reach the registry"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        2,
        "only the key pair"
    );
}

/// A scripted registry: every request gets 401 with a Basic or Bearer challenge unless it carries
/// `Authorization: <accepted>`; then 404 (no such manifest). `/token` answers the bearer
/// flow when it carries `Authorization: <token_basic>`. Returns the port and the requests seen.
fn scripted(bearer: bool, accepted: String, token_basic: String) -> (u16, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let challenge = if bearer {
        format!(
            "Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"test\",scope=\"repository:golden/edge:pull\""
        )
    } else {
        "Basic realm=\"test\"".to_string()
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    std::thread::spawn(move || {
        for conn in l.incoming().take(20) {
            let Ok(mut c) = conn else { continue };
            let mut r = BufReader::new(c.try_clone().unwrap());
            let mut first = String::new();
            let _ = r.read_line(&mut first);
            let mut auth = String::new();
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some(v) = h
                    .strip_prefix("Authorization: ")
                    .or_else(|| h.strip_prefix("authorization: "))
                {
                    auth = v.trim().to_string();
                }
            }
            s2.lock()
                .unwrap()
                .push(format!("{} [{auth}]", first.trim()));
            let resp = if first.contains("/token") {
                if auth == token_basic {
                    let body = r#"{"token":"t0k3n"}"#;
                    format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
                } else {
                    "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_string()
                }
            } else if auth == accepted {
                let body =
                    r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;
                format!("HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
            } else {
                let body =
                    r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
                format!("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: {challenge}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
            };
            let _ = c.write_all(resp.as_bytes());
        }
    });
    (port, seen)
}

#[test]
fn credentials_come_from_the_auth_file_for_basic_and_bearer_challenges() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let k = dir.path().join("k");
    ok(&ingot(&["keygen", "--out", k.to_str().unwrap()]), "keygen");
    let pubk = format!("{}.pub", k.display());
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("ci:s3cret")
    );
    let empty_home = dir.path().join("home");
    std::fs::create_dir(&empty_home).unwrap();
    let home = empty_home.to_str().unwrap();

    for bearer in [false, true] {
        let (port, seen) = if bearer {
            scripted(true, "Bearer t0k3n".into(), basic.clone())
        } else {
            scripted(false, basic.clone(), String::new())
        };
        let reference = format!("127.0.0.1:{port}/golden/edge:1.0.0");
        let dest = dir.path().join("pulled");
        // No credentials anywhere: 401, named, exit 1, nothing written.
        let (code, err) = run(
            &["pull", &reference, dest.to_str().unwrap(), "--key", &pubk],
            &[
                ("HOME", home),
                ("XDG_RUNTIME_DIR", ""),
                ("DOCKER_CONFIG", ""),
                ("REGISTRY_AUTH_FILE", ""),
            ],
        );
        assert_eq!(code, Some(1), "{err}");
        assert!(
            err.contains("401") && err.contains("no credentials"),
            "{err}"
        );
        assert!(!dest.exists());
        // With an auth file: the credentials are used, and the registry's own answer (no such
        // manifest) comes through.
        let auth = dir.path().join("auth.json");
        std::fs::write(
            &auth,
            format!(
                r#"{{"auths":{{"127.0.0.1:{port}":{{"auth":"{}"}}}}}}"#,
                base64::engine::general_purpose::STANDARD.encode("ci:s3cret")
            ),
        )
        .unwrap();
        let (code, err) = run(
            &["pull", &reference, dest.to_str().unwrap(), "--key", &pubk],
            &[
                ("HOME", home),
                ("REGISTRY_AUTH_FILE", auth.to_str().unwrap()),
            ],
        );
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains("no such tag"), "bearer={bearer}: {err}");
        assert!(!dest.exists());
        let seen = seen.lock().unwrap().clone();
        if bearer {
            assert!(
                seen.iter().any(|l| l.contains("/token?")
                    && l.contains("scope=repository%3Agolden%2Fedge%3Apull")
                    && l.contains(&basic)),
                "{seen:?}"
            );
            assert!(
                seen.iter()
                    .any(|l| l.contains("/manifests/1.0.0") && l.contains("Bearer t0k3n")),
                "{seen:?}"
            );
        } else {
            assert!(
                seen.iter()
                    .any(|l| l.contains("/manifests/1.0.0") && l.contains(&basic)),
                "{seen:?}"
            );
        }
    }
}

#[test]
fn matrix_lists_one_entry_per_profile_and_hardware() {
    let (code, out) = run(
        &[
            "matrix",
            "profiles/edge-minimal.toml",
            "profiles/vm-base.toml",
            "--hardware",
            "hardware/qemu-x86_64.toml",
            "--hardware",
            "hardware/qemu-aarch64-ab.toml",
        ],
        &[],
    );
    assert_eq!(code, Some(0), "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let inc = v["include"].as_array().unwrap();
    assert_eq!(inc.len(), 4);
    assert_eq!(inc[0]["profile"], "profiles/edge-minimal.toml");
    assert_eq!(inc[0]["arch"], "x86_64");
    assert_eq!(inc[1]["arch"], "aarch64");
    assert_eq!(inc[1]["ab"], true);
    assert_eq!(inc[3]["id"], "vm-base-1.0.0-aarch64");
    assert_eq!(inc[3]["artifact"], "vm-base-1.0.0-aarch64");
    // Two hardware profiles of one arch build the same directory name; the names their
    // runners upload under still differ, so a later job gathers both.
    let (code, out) = run(
        &[
            "matrix",
            "profiles/edge-minimal.toml",
            "--hardware",
            "hardware/qemu-x86_64.toml",
            "--hardware",
            "hardware/qemu-x86_64-ab.toml",
        ],
        &[],
    );
    assert_eq!(code, Some(0), "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let inc = v["include"].as_array().unwrap();
    assert_eq!(inc[0]["id"], inc[1]["id"]);
    assert_eq!(inc[0]["artifact"], "edge-minimal-1.0.0-x86_64-qemu-x86_64");
    assert_eq!(
        inc[1]["artifact"],
        "edge-minimal-1.0.0-x86_64-qemu-x86_64-ab"
    );
    let (code, err) = run(&["matrix", "profiles/nope.toml"], &[]);
    assert_eq!(code, Some(2), "{err}");
}
