//! A static file server on 127.0.0.1 for guests: QEMU's user network reaches the host's
//! loopback as 10.0.2.2, so a guest can fetch from a directory the test made (an apt
//! repository) without any traffic leaving the host.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Serves the files under a directory for `GET` and `HEAD` (HTTP/1.0, one request per
/// connection) until dropped, and records the paths it answered with a file. Bounded: a request
/// header of at most 16 KiB, 30 s per connection, no path outside the directory.
pub struct DirServer {
    pub port: u16,
    served: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DirServer {
    pub fn start(dir: &Path) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let served = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (dir, s2, stop2) = (dir.to_path_buf(), served.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((c, _)) => {
                        if let Some(p) = answer(c, &dir) {
                            s2.lock().unwrap().push(p);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        DirServer {
            port,
            served,
            stop,
            thread: Some(thread),
        }
    }

    /// The paths served with a file so far, in order.
    pub fn served(&self) -> Vec<String> {
        self.served.lock().unwrap().clone()
    }
}

impl Drop for DirServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answer one request; the path when a file was sent.
fn answer(c: TcpStream, dir: &Path) -> Option<String> {
    c.set_nonblocking(false).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    c.set_write_timeout(Some(Duration::from_secs(30))).ok()?;
    let mut r = BufReader::new(c.try_clone().ok()?);
    let mut first = String::new();
    r.read_line(&mut first).ok()?;
    let mut seen = first.len();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 || line == "\r\n" || line == "\n" || seen > 16 << 10 {
            break;
        }
        seen += line.len();
    }
    let mut words = first.split_whitespace();
    let (method, target) = (words.next()?, words.next()?);
    let path = decode(target.split(['?', '#']).next()?.trim_start_matches('/'))?;
    let path = path.as_str();
    let file: Option<PathBuf> = Path::new(path)
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        .then(|| dir.join(path))
        .filter(|f| f.is_file());
    let mut c = c;
    match file {
        Some(f) if method == "GET" || method == "HEAD" => {
            let body = std::fs::read(&f).ok()?;
            write!(
                c,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .ok()?;
            if method == "GET" {
                c.write_all(&body).ok()?;
            }
            Some(path.to_string())
        }
        _ => {
            let _ = c.write_all(
                b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            None
        }
    }
}

/// A request path's percent escapes decoded (apt asks for `jq_1.6-2.1%2bdeb12u3_amd64.deb`).
fn decode(p: &str) -> Option<String> {
    let b = p.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
