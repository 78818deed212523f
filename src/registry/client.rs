//! A blocking client for the OCI distribution API (v1.1): manifests, blobs (monolithic, chunked
//! and resumed uploads, cross-repository mounts), tags, referrers and deletion, with the
//! credentials and token flow the container ecosystem uses.
//!
//! Plain HTTP is used only for loopback hosts or with `--insecure`. Every answer body is read
//! with a size cap; a blob read is hashed by the caller against its descriptor, because a
//! registry serves whatever its storage holds.

use std::io::Read;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;

use super::auth::{challenge_params, credentials};
use super::reference::Reference;
use super::status::{next_link, oci_errors};
pub use super::status::{status_of, StatusError};
use super::types::{Descriptor, Index};

/// Media types a manifest GET accepts.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// Largest manifest read (the distribution spec suggests registries accept 4 MiB).
pub const MANIFEST_CAP: u64 = 4 << 20;

/// How the client reaches a registry.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Allow plain HTTP to a host that is not loopback.
    pub insecure: bool,
    /// PEM certificates trusted besides the built-in roots (a private CA); implies HTTPS even
    /// on loopback.
    pub ca_file: Option<std::path::PathBuf>,
}

/// TLS settings trusting the built-in roots plus the certificates in `pem`.
fn tls_with_ca(pem: &std::path::Path) -> Result<ureq::tls::TlsConfig> {
    use rustls_pki_types::pem::PemObject;
    let mut roots: Vec<ureq::tls::Certificate<'static>> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|c| ureq::tls::Certificate::from_der(c.as_ref()))
        .collect();
    let mut check = rustls::RootCertStore::empty();
    let mut n = 0;
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(pem)
        .with_context(|| format!("{}: cannot read the CA bundle", pem.display()))?
    {
        let cert =
            cert.with_context(|| format!("{}: not a PEM certificate bundle", pem.display()))?;
        // ureq skips a root it cannot parse; refuse it here, naming the file.
        check
            .add(cert.clone())
            .with_context(|| format!("{}: a certificate rustls does not accept", pem.display()))?;
        roots.push(ureq::tls::Certificate::from_der(cert.as_ref()).to_owned());
        n += 1;
    }
    if n == 0 {
        return Err(super::BadInput(format!(
            "{}: no certificate in the CA bundle",
            pem.display()
        ))
        .into());
    }
    Ok(ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
        .build())
}

/// An answer from the registry.
pub type Response = ureq::http::Response<ureq::Body>;

/// A header of an answer, when present and text.
fn header<'a>(resp: &'a Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// One connection's worth of state for one repository.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    /// The repository this client talks to.
    pub reference: Reference,
    creds: Option<(String, String)>,
    auth: Mutex<Option<String>>,
    push: bool,
}

/// A request body.
pub enum Body<'a> {
    /// None.
    Empty,
    /// Bytes in memory.
    Bytes(&'a [u8]),
}

impl Client {
    /// A client for `reference`'s repository; `push` asks for push rights when a token is needed.
    pub fn new(reference: &Reference, opts: &Options, push: bool) -> Result<Self> {
        let scheme = if opts.ca_file.is_none() && (reference.is_loopback() || opts.insecure) {
            "http"
        } else {
            "https"
        };
        let mut cfg = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_per_read(Some(Duration::from_secs(120)))
            .timeout_per_write(Some(Duration::from_secs(120)))
            .max_redirects(5)
            // A token goes along a redirect only to the same host over HTTPS (blob storage
            // elsewhere signs its own URLs).
            .redirect_auth_headers(ureq::config::RedirectAuthHeaders::SameHost)
            // Statuses are answers to read (a 401's challenge, an error's JSON), not failures.
            .http_status_as_error(false)
            .user_agent(concat!("ingot/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &opts.ca_file {
            cfg = cfg.tls_config(tls_with_ca(ca)?);
        }
        let agent = ureq::Agent::new_with_config(cfg.build());
        Ok(Client {
            agent,
            base: format!("{scheme}://{}", reference.registry),
            reference: reference.clone(),
            creds: credentials(&reference.registry)?,
            auth: Mutex::new(None),
            push,
        })
    }

    /// `/v2/<repository>/<rest>` as a full URL.
    pub fn url(&self, rest: &str) -> String {
        format!("{}/v2/{}/{rest}", self.base, self.reference.repository)
    }

    /// A `Location` header made absolute.
    fn absolute(&self, loc: &str) -> String {
        if loc.starts_with("http://") || loc.starts_with("https://") {
            loc.to_string()
        } else {
            format!("{}{loc}", self.base)
        }
    }

    /// Send one request, answering an authentication challenge once (for bodies that can be
    /// sent again). Statuses of 400 and above become a [`StatusError`] naming `what`.
    pub fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Body<'_>,
        what: &str,
    ) -> Result<Response> {
        let call = |auth: &Option<String>| -> Result<Response, ureq::Error> {
            let mut req = ureq::http::Request::builder().method(method).uri(url);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            if let Some(a) = auth {
                req = req.header("Authorization", a.as_str());
            }
            match body {
                Body::Empty => self.agent.run(req.body(())?),
                Body::Bytes(b) => self.agent.run(req.body(b)?),
            }
        };
        let current = self.auth.lock().map(|g| g.clone()).unwrap_or_default();
        let first = call(&current);
        match first {
            Ok(resp) if resp.status() == 401 => {
                let challenge = header(&resp, "WWW-Authenticate").unwrap_or("").to_string();
                let auth = self.authorize(&challenge, what)?;
                if let Ok(mut g) = self.auth.lock() {
                    *g = Some(auth.clone());
                }
                self.finish(call(&Some(auth)), what)
            }
            other => self.finish(other, what),
        }
    }

    fn finish(&self, r: Result<Response, ureq::Error>, what: &str) -> Result<Response> {
        let resp = match r {
            Ok(resp) if resp.status().as_u16() < 400 => return Ok(resp),
            Ok(resp) => resp,
            Err(e) => {
                if crate::interrupt::requested() {
                    return Err(crate::interrupt::Interrupted.into());
                }
                return Err(anyhow!(
                    "{what}: cannot reach the registry at {}: {e}",
                    self.base
                ));
            }
        };
        let status = resp.status().as_u16();
        let mut text = String::new();
        let _ = resp
            .into_body()
            .into_reader()
            .take(64 << 10)
            .read_to_string(&mut text);
        let mut detail = oci_errors(&text);
        if status == 400 && text.contains("HTTP request to an HTTPS server") {
            detail.push_str(
                " (the registry speaks HTTPS: give --ca-file with its CA to use it on loopback)",
            );
        }
        if status == 401 {
            detail.push_str(&format!(
                " (no usable credentials for {}: log in with `docker login` or `podman login`, or point REGISTRY_AUTH_FILE at an auth file)",
                self.reference.registry
            ));
        }
        Err(StatusError {
            what: what.to_string(),
            status,
            detail,
        }
        .into())
    }

    /// Answer a `WWW-Authenticate` challenge: Basic with the stored credentials, or the
    /// distribution spec's bearer-token flow.
    fn authorize(&self, challenge: &str, what: &str) -> Result<String> {
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        let basic = self.creds.as_ref().map(|(u, p)| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        });
        let no_creds = || {
            StatusError {
            what: what.to_string(),
            status: 401,
            detail: format!(
                " (no credentials for {}: log in with `docker login` or `podman login`, or point REGISTRY_AUTH_FILE at an auth file)",
                self.reference.registry
            ),
        }
        };
        if scheme.eq_ignore_ascii_case("basic") {
            return basic.ok_or_else(|| no_creds().into());
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            bail!("{what}: the registry asks for authentication scheme `{scheme}`, which Ingot does not speak");
        }
        let p = challenge_params(params);
        let realm = p
            .iter()
            .find(|(k, _)| k == "realm")
            .map(|(_, v)| v.clone())
            .ok_or_else(|| anyhow!("{what}: bearer challenge without a realm"))?;
        let mut url = url::Url::parse(&realm)
            .with_context(|| format!("{what}: token realm `{realm}` is not a URL"))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some((_, s)) = p.iter().find(|(k, _)| k == "service") {
                q.append_pair("service", s);
            }
            let scope = p
                .iter()
                .find(|(k, _)| k == "scope")
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| {
                    format!(
                        "repository:{}:{}",
                        self.reference.repository,
                        if self.push { "pull,push" } else { "pull" }
                    )
                });
            q.append_pair("scope", &scope);
        }
        let mut req = self.agent.get(url.as_str());
        if let Some(b) = &basic {
            req = req.header("Authorization", b.as_str());
        }
        let resp = match req.call() {
            Ok(r) if matches!(r.status().as_u16(), 401 | 403) => return Err(no_creds().into()),
            Ok(r) if r.status().as_u16() >= 400 => {
                bail!(
                    "{what}: token request to {realm} failed: HTTP {}",
                    r.status()
                )
            }
            Ok(r) => r,
            Err(e) => bail!("{what}: token request to {realm} failed: {e}"),
        };
        let mut text = String::new();
        resp.into_body()
            .into_reader()
            .take(1 << 20)
            .read_to_string(&mut text)
            .with_context(|| format!("{what}: reading the token from {realm}"))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{what}: the token answer from {realm} is not JSON"))?;
        let token = v
            .get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .ok_or_else(|| anyhow!("{what}: the token answer from {realm} has no token"))?;
        Ok(format!("Bearer {token}"))
    }

    /// Does the repository hold this blob?
    pub fn has_blob(&self, digest: &str) -> Result<bool> {
        let what = format!("checking blob {digest}");
        match self.send(
            "HEAD",
            &self.url(&format!("blobs/{digest}")),
            &[],
            Body::Empty,
            &what,
        ) {
            Ok(_) => Ok(true),
            Err(e) if status_of(&e) == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Mount a blob from another repository of the same registry; false when the registry
    /// started an upload instead (it does not have it there, or does not mount).
    pub fn mount(&self, digest: &str, from: &str) -> Result<bool> {
        let url = self.url(&format!("blobs/uploads/?mount={digest}&from={from}"));
        let resp = self.send("POST", &url, &[], Body::Bytes(&[]), "mounting a blob")?;
        if resp.status() == 201 {
            return Ok(true);
        }
        // An upload session was opened instead: cancel it (best effort).
        if let Some(loc) = header(&resp, "Location") {
            let _ = self.send(
                "DELETE",
                &self.absolute(loc),
                &[],
                Body::Empty,
                "cancelling an upload",
            );
        }
        Ok(false)
    }

    /// Open an upload session; returns its absolute URL.
    pub fn start_upload(&self) -> Result<String> {
        let resp = self.send(
            "POST",
            &self.url("blobs/uploads/"),
            &[],
            Body::Bytes(&[]),
            "starting an upload",
        )?;
        let loc = header(&resp, "Location")
            .ok_or_else(|| anyhow!("starting an upload: no Location in the answer"))?;
        Ok(self.absolute(loc))
    }

    /// How many bytes an upload session holds, and its current URL; None when the registry no
    /// longer knows the session.
    pub fn upload_status(&self, url: &str) -> Result<Option<(u64, String)>> {
        match self.send("GET", url, &[], Body::Empty, "asking an upload's state") {
            Ok(resp) => {
                let next = header(&resp, "Location").map(|l| self.absolute(l));
                let held = header(&resp, "Range")
                    .and_then(|r| r.split_once('-'))
                    .and_then(|(_, end)| end.parse::<u64>().ok())
                    .map_or(0, |end| end.saturating_add(1));
                Ok(Some((held, next.unwrap_or_else(|| url.to_string()))))
            }
            Err(e) if matches!(status_of(&e), Some(400 | 404 | 416)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Send one chunk of an upload; returns the session's next URL.
    pub fn patch(&self, url: &str, start: u64, data: &[u8]) -> Result<String> {
        let range = format!("{start}-{}", start + data.len() as u64 - 1);
        let resp = self.send(
            "PATCH",
            url,
            &[
                ("Content-Type", "application/octet-stream"),
                ("Content-Range", &range),
            ],
            Body::Bytes(data),
            "uploading a chunk",
        )?;
        Ok(header(&resp, "Location")
            .map(|l| self.absolute(l))
            .unwrap_or_else(|| url.to_string()))
    }

    /// Close an upload session with the blob's digest (and a last body, possibly empty).
    pub fn finish_upload(&self, url: &str, digest: &str, body: Body<'_>) -> Result<()> {
        let sep = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{sep}digest={digest}");
        self.send(
            "PUT",
            &url,
            &[("Content-Type", "application/octet-stream")],
            body,
            &format!("completing the upload of {digest}"),
        )?;
        Ok(())
    }

    /// Stream a blob (the caller hashes it).
    pub fn get_blob(&self, digest: &str) -> Result<Box<dyn Read + Send + Sync>> {
        let resp = self.send(
            "GET",
            &self.url(&format!("blobs/{digest}")),
            &[],
            Body::Empty,
            &format!("fetching blob {digest}"),
        )?;
        Ok(Box::new(resp.into_body().into_reader()))
    }

    /// A manifest by tag or digest: (media type, bytes, digest of the bytes); None if absent.
    /// A digest reference is checked against the bytes.
    pub fn get_manifest(&self, target: &str) -> Result<Option<(String, Vec<u8>, String)>> {
        // As a reference is written: `repo:tag`, `repo@sha256:…`.
        let sep = if target.starts_with("sha256:") {
            '@'
        } else {
            ':'
        };
        let what = format!(
            "fetching manifest {}{sep}{target}",
            self.reference.repository
        );
        let resp = match self.send(
            "GET",
            &self.url(&format!("manifests/{target}")),
            &[("Accept", ACCEPT)],
            Body::Empty,
            &what,
        ) {
            Ok(r) => r,
            Err(e) if status_of(&e) == Some(404) => return Ok(None),
            Err(e) => return Err(e),
        };
        let media = header(&resp, "Content-Type")
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let mut bytes = Vec::new();
        resp.into_body()
            .into_reader()
            .take(MANIFEST_CAP + 1)
            .read_to_end(&mut bytes)
            .with_context(|| what.clone())?;
        if bytes.len() as u64 > MANIFEST_CAP {
            bail!("{what}: larger than {MANIFEST_CAP} bytes");
        }
        let digest = format!("sha256:{}", crate::base::fsx::sha256_hex(&bytes));
        if target.starts_with("sha256:") && target != digest {
            bail!("{what}: the registry sent bytes whose digest is {digest}");
        }
        Ok(Some((media, bytes, digest)))
    }

    /// Put a manifest under a tag or its digest; returns whether the registry took the
    /// `subject` itself (it answered with `OCI-Subject`).
    pub fn put_manifest(&self, target: &str, media: &str, bytes: &[u8]) -> Result<bool> {
        let resp = self.send(
            "PUT",
            &self.url(&format!("manifests/{target}")),
            &[("Content-Type", media)],
            Body::Bytes(bytes),
            &format!("putting manifest {}:{target}", self.reference.repository),
        )?;
        Ok(header(&resp, "OCI-Subject").is_some())
    }

    /// Delete a manifest by digest (every tag on it goes too).
    pub fn delete_manifest(&self, digest: &str) -> Result<()> {
        match self.send(
            "DELETE",
            &self.url(&format!("manifests/{digest}")),
            &[],
            Body::Empty,
            &format!("deleting {}@{digest}", self.reference.repository),
        ) {
            Ok(_) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every tag of the repository (following `Link` pages), sorted.
    pub fn tags(&self) -> Result<Vec<String>> {
        let mut url = self.url("tags/list?n=1000");
        let mut all = Vec::new();
        for _ in 0..1000 {
            let resp = match self.send("GET", &url, &[], Body::Empty, "listing tags") {
                Ok(r) => r,
                Err(e) if status_of(&e) == Some(404) => return Ok(Vec::new()),
                Err(e) => return Err(e),
            };
            let next = header(&resp, "Link").and_then(next_link);
            let mut text = String::new();
            resp.into_body()
                .into_reader()
                .take(16 << 20)
                .read_to_string(&mut text)
                .context("listing tags")?;
            let v: serde_json::Value =
                serde_json::from_str(&text).context("listing tags: the answer is not JSON")?;
            if let Some(t) = v.get("tags").and_then(|t| t.as_array()) {
                all.extend(t.iter().filter_map(|x| x.as_str().map(str::to_string)));
            }
            match next {
                Some(n) => url = self.absolute(&n),
                None => {
                    all.sort();
                    all.dedup();
                    return Ok(all);
                }
            }
        }
        bail!("listing tags: more than 1000 pages")
    }

    /// The referrers API's answer for `digest`; None when the registry has no such API.
    pub fn referrers_api(&self, digest: &str) -> Result<Option<Vec<Descriptor>>> {
        let resp = match self.send(
            "GET",
            &self.url(&format!("referrers/{digest}")),
            &[("Accept", "application/vnd.oci.image.index.v1+json")],
            Body::Empty,
            "listing referrers",
        ) {
            Ok(r) => r,
            Err(e) if matches!(status_of(&e), Some(404 | 405)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let ct = header(&resp, "Content-Type").unwrap_or("").to_string();
        let mut bytes = Vec::new();
        resp.into_body()
            .into_reader()
            .take(MANIFEST_CAP)
            .read_to_end(&mut bytes)
            .context("listing referrers")?;
        if !ct.starts_with("application/vnd.oci.image.index.v1+json") {
            return Ok(None);
        }
        let idx: Index = serde_json::from_slice(&bytes).context("referrers: not an OCI index")?;
        Ok(Some(idx.manifests))
    }
}
