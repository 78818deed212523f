//! The transport under the repository client and the cache: `http`, `https` and `file` URLs,
//! every download bounded in size and time and stoppable with Ctrl-C.
//!
//! A mirror is untrusted input. Each read checks the byte limit (the size the signed index
//! promises, or a cap for index files), an overall deadline and the interrupt flag, so an
//! endless or trickling answer ends with an error naming the URL. Redirects are followed by
//! hand, only to `http` and `https`, at most [`MAX_REDIRECTS`] times.

use std::io::Read;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Cap for files whose size no signed index gives (InRelease, firmware descriptors).
pub const INDEX_CAP: u64 = 64 << 20;
/// Redirect hops followed.
pub const MAX_REDIRECTS: u32 = 5;

/// User names and passwords that came in mirror addresses, as `Authorization` header values
/// keyed by origin (`scheme://host:port`).
static CREDENTIALS: std::sync::Mutex<std::collections::BTreeMap<String, String>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// A mirror address without the user name and password it may carry
/// (`https://USER:TOKEN@HOST/debian`, as apt's sources allow). They are kept here and sent (HTTP
/// Basic) only with requests to that same origin, never to a host a redirect names; everything
/// that records or prints an address (provenance, cache keys, errors) gets it without them.
pub fn keep_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some((userinfo, host)) = rest[..end].rsplit_once('@') else {
        return url.to_string();
    };
    let clean = format!("{scheme}://{host}{}", &rest[end..]);
    if scheme == "http" || scheme == "https" {
        let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        let pair = format!("{}:{}", percent_decoded(user), percent_decoded(pass));
        let value = format!(
            "Basic {}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pair)
        );
        if let (Some(o), Ok(mut known)) = (origin(&clean), CREDENTIALS.lock()) {
            known.insert(o, value);
        }
    }
    clean
}

/// `%XX` escapes of a URL's user name or password, decoded.
fn percent_decoded(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match hex
            .filter(|_| b[i] == b'%')
            .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            Some(v) => {
                out.push(v);
                i += 3;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `scheme://host:port` of an http(s) URL, the port written out.
fn origin(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    Some(format!(
        "{}://{}:{}",
        u.scheme(),
        u.host_str()?,
        u.port_or_known_default()?
    ))
}

/// The `Authorization` header for a request to `url`, when its mirror address carried one.
fn authorization(url: &str) -> Option<String> {
    let o = origin(url)?;
    CREDENTIALS.lock().ok()?.get(&o).cloned()
}

/// How long one download may take in all: `INGOT_HTTP_TIMEOUT` seconds, else 10 minutes plus
/// one second per 256 KiB expected.
fn deadline_for(max_bytes: u64) -> Duration {
    if let Some(s) = std::env::var("INGOT_HTTP_TIMEOUT")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
    {
        return Duration::from_secs(s.max(1));
    }
    Duration::from_secs(600 + max_bytes / (256 << 10))
}

/// A reader that refuses to go past a byte limit or a deadline, and stops on Ctrl-C.
struct Bounded<R> {
    inner: R,
    url: String,
    read: u64,
    limit: u64,
    deadline: Instant,
    allowed: Duration,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if crate::interrupt::requested() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Interrupted,
                crate::interrupt::Interrupted,
            ));
        }
        if Instant::now() > self.deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "{}: no complete answer within {}s (INGOT_HTTP_TIMEOUT sets the limit)",
                    self.url,
                    self.allowed.as_secs()
                ),
            ));
        }
        // Ask for one byte more than allowed, so an over-long answer is seen, not cut.
        let room = usize::try_from(self.limit.saturating_sub(self.read).saturating_add(1))
            .unwrap_or(usize::MAX);
        let want = buf.len().min(room);
        let n = self.inner.read(&mut buf[..want])?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(std::io::Error::other(format!(
                "{}: the answer is longer than the {} bytes expected",
                self.url, self.limit
            )));
        }
        Ok(n)
    }
}

/// Fetch a URL into memory (at most `max_bytes`).
pub fn get(url: &str, max_bytes: u64) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    open(url, max_bytes)?
        .read_to_end(&mut buf)
        .with_context(|| format!("reading {url}"))?;
    Ok(buf)
}

fn agent() -> ureq::Agent {
    let cfg = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(15)))
        // A stalled connection is noticed within this; the overall deadline bounds a trickle.
        .timeout_per_read(Some(Duration::from_secs(15)))
        .max_redirects(0)
        .user_agent(concat!("ingot/", env!("CARGO_PKG_VERSION")))
        .build();
    ureq::Agent::with_parts(
        cfg,
        ureq::unversioned::transport::DefaultConnector::new(),
        Lookup(ureq::unversioned::resolver::DefaultResolver::default()),
    )
}

/// A resolver whose failure to find a host is final: the standard one reports a name that
/// does not resolve as an I/O error, like a dropped connection, and that one is not retried.
#[derive(Debug)]
struct Lookup<R>(R);

impl<R: ureq::unversioned::resolver::Resolver> ureq::unversioned::resolver::Resolver for Lookup<R> {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        match self.0.resolve(uri, config, timeout) {
            Err(ureq::Error::Io(_)) => Err(ureq::Error::HostNotFound),
            other => other,
        }
    }
}

/// An answer from a mirror.
type Response = ureq::http::Response<ureq::Body>;

/// Why one GET failed.
enum CallError {
    /// From the HTTP library: status or transport.
    Ureq(Box<ureq::Error>),
    /// A redirect Ingot does not follow (another scheme, or too many hops).
    Refused(String),
}

/// One GET, following redirects to http/https only.
fn call(agent: &ureq::Agent, url: &str) -> Result<Response, CallError> {
    let mut here = url.to_string();
    for _ in 0..=MAX_REDIRECTS {
        let mut req = agent.get(&here);
        if let Some(auth) = authorization(&here) {
            req = req.header("Authorization", auth);
        }
        let resp = req.call().map_err(|e| CallError::Ureq(Box::new(e)))?;
        if !resp.status().is_redirection() {
            return Ok(resp);
        }
        let Some(loc) = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
        else {
            return Ok(resp);
        };
        let next = url::Url::parse(&here)
            .and_then(|base| base.join(&loc))
            .map(|u| u.to_string())
            .unwrap_or(loc);
        if !(next.starts_with("http://") || next.starts_with("https://")) {
            return Err(CallError::Refused(format!(
                "redirected to {next}; only http:// and https:// redirects are followed"
            )));
        }
        here = next;
    }
    Err(CallError::Refused(format!(
        "more than {MAX_REDIRECTS} redirects"
    )))
}

/// Open a URL for streaming (at most `max_bytes`), retrying transient failures with backoff.
pub fn open(url: &str, max_bytes: u64) -> Result<Box<dyn Read + Send>> {
    open_within(url, max_bytes, deadline_for(max_bytes))
}

/// [`open`] with an explicit overall deadline.
fn open_within(url: &str, max_bytes: u64, allowed: Duration) -> Result<Box<dyn Read + Send>> {
    let wrap = |inner: Box<dyn Read + Send>| -> Box<dyn Read + Send> {
        Box::new(Bounded {
            inner,
            url: url.to_string(),
            read: 0,
            limit: max_bytes,
            deadline: Instant::now() + allowed,
            allowed,
        })
    };
    if let Some(path) = url.strip_prefix("file://") {
        let f = std::fs::File::open(path).with_context(|| format!("opening {url}"))?;
        if !f.metadata().is_ok_and(|m| m.is_file()) {
            bail!("{url}: not a regular file");
        }
        return Ok(wrap(Box::new(f)));
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!("{url}: only http://, https:// and file:// mirrors are supported");
    }
    let agent = agent();
    let mut delay = Duration::from_millis(300);
    let mut attempt = 0;
    loop {
        attempt += 1;
        crate::interrupt::check()?;
        let e = match call(&agent, url) {
            Ok(resp) if resp.status().is_success() => {
                return Ok(wrap(Box::new(resp.into_body().into_reader())))
            }
            Ok(resp) => bail!("{url}: HTTP {}", resp.status()),
            Err(CallError::Refused(why)) => bail!("{url}: {why}"),
            Err(CallError::Ureq(e)) => *e,
        };
        match e {
            ureq::Error::StatusCode(code) if code < 500 && code != 429 => {
                bail!("{url}: HTTP {code} (permanent; not retried)")
            }
            e if attempt < 4 && transient(&e) => {
                eprintln!("warning: {url}: {e}; retrying in {delay:?}");
                std::thread::sleep(delay);
                delay *= 3;
            }
            e => {
                return Err(anyhow::Error::new(e))
                    .with_context(|| format!("{url}: giving up after {attempt} attempt(s)"))
            }
        }
    }
}

/// Worth another try: server errors, throttling, timeouts, connection trouble; not a bad URL,
/// a host name that does not resolve, or an answer such as 404 that will not change.
fn transient(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::StatusCode(code) => *code >= 500 || *code == 408 || *code == 429,
        ureq::Error::BadUri(_) | ureq::Error::Http(_) | ureq::Error::HostNotFound => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    /// A resolver that finds nothing, the way the system's does for an unknown name: no
    /// lookup leaves the machine.
    #[derive(Debug)]
    struct Nowhere;

    impl ureq::unversioned::resolver::Resolver for Nowhere {
        fn resolve(
            &self,
            _: &ureq::http::Uri,
            _: &ureq::config::Config,
            _: ureq::unversioned::transport::NextTimeout,
        ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
            Err(ureq::Error::Io(std::io::Error::other(
                "failed to lookup address information: Name or service not known",
            )))
        }
    }

    #[test]
    fn only_answers_that_may_change_are_retried() {
        for c in [500, 502, 503, 408, 429] {
            assert!(transient(&ureq::Error::StatusCode(c)), "{c}");
        }
        for c in [400, 403, 404, 410] {
            assert!(!transient(&ureq::Error::StatusCode(c)), "{c}");
        }
        // A dropped connection is worth another try.
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(transient(&ureq::Error::Io(reset)));
        // A host name that does not resolve is not, through the resolver `agent` uses.
        let agent = ureq::Agent::with_parts(
            ureq::Agent::config_builder().build(),
            ureq::unversioned::transport::DefaultConnector::new(),
            Lookup(Nowhere),
        );
        let e = agent
            .get("http://no-such-host.invalid/")
            .call()
            .unwrap_err();
        assert!(matches!(e, ureq::Error::HostNotFound), "{e}");
        assert!(!transient(&e), "{e}");
        // A 404 from a real server comes back as a status, not retried.
        let (url, h) = serve(1, |s| {
            let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        });
        let started = Instant::now();
        let e = get(&format!("{url}/gone"), 1 << 20).unwrap_err();
        assert!(format!("{e:#}").contains("HTTP 404"), "{e:#}");
        assert!(started.elapsed() < Duration::from_secs(1), "retried a 404");
        h.join().unwrap();
    }

    /// A server on 127.0.0.1 that answers one request with `answer` and sends the request's
    /// `Authorization` header (or "none") down the channel.
    fn serve_recording(
        answer: String,
    ) -> (
        String,
        std::sync::mpsc::Receiver<String>,
        std::thread::JoinHandle<()>,
    ) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        let h = std::thread::spawn(move || {
            let Some(Ok(mut s)) = l.incoming().next() else {
                return;
            };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            let mut auth = "none".to_string();
            while r.read_line(&mut line).is_ok_and(|n| n > 2) {
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("authorization") {
                        auth = v.trim().to_string();
                    }
                }
                line.clear();
            }
            let _ = s.write_all(answer.as_bytes());
            let _ = tx.send(auth);
        });
        (url, rx, h)
    }

    #[test]
    fn credentials_in_a_mirror_address_go_to_its_origin_only() {
        // The second server is where the first redirects; it must not see the password.
        let (other, other_auth, h2) =
            serve_recording("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".into());
        let (mirror, auth, h1) = serve_recording(format!(
            "HTTP/1.1 302 Found\r\nLocation: {other}/moved\r\nContent-Length: 0\r\n\r\n"
        ));
        let with = mirror.replace("http://", "http://ci%2Dbot:s3cr%40t@");
        let clean = keep_credentials(&format!("{with}/debian"));
        assert_eq!(clean, format!("{mirror}/debian"));
        assert_eq!(
            get(&format!("{clean}/dists/x/InRelease"), 1 << 10).unwrap(),
            b"ok"
        );
        // "ci-bot:s3cr@t", decoded, in Basic form.
        assert_eq!(auth.recv().unwrap(), "Basic Y2ktYm90OnMzY3JAdA==");
        assert_eq!(other_auth.recv().unwrap(), "none");
        h1.join().unwrap();
        h2.join().unwrap();
        // Addresses without credentials, and other schemes, pass unchanged.
        for plain in [
            "http://h/debian",
            "file:///srv/debian",
            "https://h:8443/a@b",
        ] {
            assert_eq!(keep_credentials(plain), plain);
        }
        assert_eq!(keep_credentials("file://u@/srv"), "file:///srv");
    }

    /// A one-connection-at-a-time HTTP server on 127.0.0.1 answering each request with
    /// `respond`; ends after `requests` requests.
    fn serve(
        requests: usize,
        respond: impl Fn(&mut std::net::TcpStream) + Send + 'static,
    ) -> (String, std::thread::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let h = std::thread::spawn(move || {
            for s in l.incoming().take(requests) {
                let Ok(mut s) = s else { return };
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                while r.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                respond(&mut s);
            }
        });
        (url, h)
    }

    #[test]
    fn hostile_answers_end_with_an_error_naming_the_url() {
        // Longer than promised.
        let (url, h) = serve(1, |s| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n");
            let _ = s.write_all(&[b'x'; 100]);
        });
        let e = get(&format!("{url}/InRelease"), 10).unwrap_err();
        assert!(
            format!("{e:#}").contains("longer than the 10 bytes"),
            "{e:#}"
        );
        h.join().unwrap();
        // Endless: stopped at the cap, not at memory's end.
        let (url, h) = serve(1, |s| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n");
            let chunk = [b'y'; 65536];
            while s.write_all(&chunk).is_ok() {}
        });
        let e = get(&format!("{url}/endless"), 1 << 20).unwrap_err();
        assert!(format!("{e:#}").contains("/endless"), "{e:#}");
        h.join().unwrap();
        // A redirect to file:// is refused, not followed (and no panic).
        let (url, h) = serve(1, |s| {
            let _ = s.write_all(
                b"HTTP/1.1 302 Found\r\nLocation: file:///etc/shadow\r\nContent-Length: 0\r\n\r\n",
            );
        });
        let e = get(&format!("{url}/redirect"), 1 << 20).unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.contains("file:///etc/shadow") && msg.contains("redirect"),
            "{msg}"
        );
        h.join().unwrap();
        // Truncated: fewer bytes than Content-Length.
        let (url, h) = serve(1, |s| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc");
        });
        assert!(get(&format!("{url}/short"), 1 << 20).is_err());
        h.join().unwrap();
    }

    #[test]
    fn a_trickle_hits_the_deadline() {
        let (url, h) = serve(1, |s| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
            for _ in 0..40 {
                if s.write_all(b"z").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let started = Instant::now();
        let mut r = open_within(&format!("{url}/trickle"), 1000, Duration::from_secs(1)).unwrap();
        let mut buf = Vec::new();
        let e = r.read_to_end(&mut buf).unwrap_err();
        assert!(e.to_string().contains("within 1s"), "{e}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        drop(r);
        h.join().unwrap();
    }
}
