//! Debian's registry (distribution 2.8) has no referrers API, so the end-to-end tests only
//! exercise the fallback tag. These run `attach` and `find` against a small in-process
//! registry that speaks the distribution spec's wire format, once with the referrers API
//! (it answers a manifest PUT with `OCI-Subject` and serves `GET /referrers/<digest>`) and
//! once without, and check which path each took.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::registry::Reference;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Store {
    blobs: HashMap<String, Vec<u8>>,
    /// Tag or digest -> (media type, bytes).
    manifests: HashMap<String, (String, Vec<u8>)>,
    /// Request lines, in order.
    seen: Vec<String>,
}

fn respond(c: &mut std::net::TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = c.write_all(head.as_bytes());
    let _ = c.write_all(body);
}

/// A registry on a free loopback port; `api` turns the referrers API on.
fn registry(api: bool) -> (u16, Arc<Mutex<Store>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let store = Arc::new(Mutex::new(Store::default()));
    let s = store.clone();
    std::thread::spawn(move || {
        for conn in l.incoming().take(500) {
            let Ok(mut c) = conn else { continue };
            let mut r = BufReader::new(c.try_clone().unwrap());
            let mut first = String::new();
            let _ = r.read_line(&mut first);
            let mut len = 0usize;
            let mut ctype = String::new();
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                let (k, v) = h.split_once(':').unwrap_or((&h, ""));
                match k.to_ascii_lowercase().as_str() {
                    "content-length" => len = v.trim().parse().unwrap_or(0),
                    "content-type" => ctype = v.trim().to_string(),
                    _ => {}
                }
            }
            let mut body = vec![0u8; len];
            let _ = r.read_exact(&mut body);
            let mut words = first.split_whitespace();
            let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            let mut st = s.lock().unwrap();
            st.seen.push(format!("{method} {path}"));
            let rest = path.strip_prefix("/v2/golden/vm/").unwrap_or("");
            let not_found = |c: &mut std::net::TcpStream| respond(c, "404 Not Found", &[], b"");
            if let Some(d) = rest.strip_prefix("blobs/uploads/") {
                if method == "POST" {
                    respond(
                        &mut c,
                        "202 Accepted",
                        &[("Location", "/v2/golden/vm/blobs/uploads/u".into())],
                        b"",
                    );
                } else {
                    let digest = d.split("digest=").nth(1).unwrap_or("").to_string();
                    st.blobs.insert(digest, body);
                    respond(&mut c, "201 Created", &[], b"");
                }
            } else if let Some(d) = rest.strip_prefix("blobs/") {
                match st.blobs.get(d) {
                    Some(b) if method == "GET" => respond(&mut c, "200 OK", &[], &b.clone()),
                    Some(_) => respond(&mut c, "200 OK", &[], b""),
                    None => not_found(&mut c),
                }
            } else if let Some(t) = rest.strip_prefix("manifests/") {
                if method == "PUT" {
                    let digest = format!("sha256:{}", crate::base::fsx::sha256_hex(&body));
                    let subject = serde_json::from_slice::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v["subject"]["digest"].as_str().map(str::to_string));
                    st.manifests
                        .insert(t.to_string(), (ctype.clone(), body.clone()));
                    st.manifests.insert(digest, (ctype, body));
                    match subject {
                        Some(sd) if api => {
                            respond(&mut c, "201 Created", &[("OCI-Subject", sd)], b"")
                        }
                        _ => respond(&mut c, "201 Created", &[], b""),
                    }
                } else {
                    match st.manifests.get(t).cloned() {
                        Some((m, b)) => respond(&mut c, "200 OK", &[("Content-Type", m)], &b),
                        None => not_found(&mut c),
                    }
                }
            } else if let Some(d) = rest.strip_prefix("referrers/").filter(|_| api) {
                let mut list = Vec::new();
                for (k, (m, b)) in &st.manifests {
                    let v: serde_json::Value = serde_json::from_slice(b).unwrap_or_default();
                    if k.starts_with("sha256:") && v["subject"]["digest"] == d {
                        list.push(serde_json::json!({"mediaType": m, "digest": k, "size": b.len(), "artifactType": v["artifactType"]}));
                    }
                }
                let idx = serde_json::json!({"schemaVersion": 2, "mediaType": types::INDEX_MEDIA, "manifests": list});
                respond(
                    &mut c,
                    "200 OK",
                    &[("Content-Type", types::INDEX_MEDIA.into())],
                    idx.to_string().as_bytes(),
                );
            } else {
                not_found(&mut c);
            }
        }
    });
    (port, store)
}

#[test]
fn referrers_api_is_used_where_the_registry_has_it_and_the_fallback_tag_elsewhere() {
    let key = SecretKey::generate();
    let subject = Descriptor::of(types::MANIFEST_MEDIA, b"{\"the\":\"image\"}");
    for api in [true, false] {
        let (port, store) = registry(api);
        let reference = Reference::parse(&format!("127.0.0.1:{port}/golden/vm:1.0.0")).unwrap();
        let client = Client::new(&reference, &Default::default(), true).unwrap();
        let st = Statement {
            kind: Kind::Revocation,
            subject: subject.digest.clone(),
            repository: format!("127.0.0.1:{port}/golden/vm"),
            created: now(),
            by: "test".into(),
            passed: None,
            channel: None,
            previous: None,
            previous_to: None,
            evidence: Vec::new(),
            reason: Some("CVE in the kernel".into()),
            report: serde_json::Value::Null,
        };
        let digest = attach(&client, &subject, &st, &key).unwrap();
        let found = find(
            &client,
            &subject.digest,
            Kind::Revocation,
            Some(&key.public()),
        )
        .unwrap();
        assert_eq!(found.len(), 1, "api={api}");
        assert_eq!(found[0].digest, digest);
        assert!(found[0].verified, "{:?}", found[0].problem);
        assert_eq!(
            found[0].statement.reason.as_deref(),
            Some("CVE in the kernel")
        );
        let seen = store.lock().unwrap().seen.clone();
        let fallback = format!("/manifests/{}", fallback_tag(&subject.digest));
        let touched_fallback = seen.iter().any(|l| l.ends_with(&fallback));
        let asked_api = seen.iter().any(|l| l.contains("/referrers/"));
        assert!(asked_api, "{seen:?}");
        if api {
            assert!(
                !touched_fallback,
                "the registry indexes referrers itself: {seen:?}"
            );
        } else {
            assert!(
                seen.iter()
                    .any(|l| l == &format!("PUT /v2/golden/vm{fallback}")),
                "no fallback index written: {seen:?}"
            );
        }
    }
}
