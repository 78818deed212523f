//! How bundles reach the device: a raw disk holding the bundle, or a disk holding one URL line
//! and a tiny HTTP server on 127.0.0.1 (the guest's 10.0.2.2) serving the current step's bundle.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// A tiny HTTP/1.0 server on 127.0.0.1 serving one file (whichever the current step names)
/// for any GET, until dropped. Bounded: one request at a time, a header of at most 16 KiB,
/// 30 s per connection.
pub(super) struct Server {
    pub(super) port: u16,
    pub(super) file: Arc<Mutex<PathBuf>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub(super) fn start() -> Result<Self> {
        let l = TcpListener::bind("127.0.0.1:0").context("binding a port on 127.0.0.1")?;
        l.set_nonblocking(true)?;
        let port = l.local_addr()?.port();
        let file = Arc::new(Mutex::new(PathBuf::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (f2, s2) = (file.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s2.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((c, _)) => {
                        let path = f2.lock().map(|p| p.clone()).unwrap_or_default();
                        let _ = serve(c, &path);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        });
        Ok(Server {
            port,
            file,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(c: TcpStream, path: &Path) -> Result<()> {
    c.set_nonblocking(false)?;
    c.set_read_timeout(Some(Duration::from_secs(30)))?;
    c.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut r = BufReader::new(c.try_clone()?);
    let mut seen = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        seen += line.len();
        if seen > 16 << 10 {
            bail!("request header too long");
        }
    }
    let mut c = c;
    match std::fs::File::open(path) {
        Ok(mut f) => {
            let len = f.metadata()?.len();
            write!(
                c,
                "HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
            )?;
            std::io::copy(&mut f, &mut c)?;
        }
        Err(_) => write!(c, "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n")?,
    }
    c.flush()?;
    Ok(())
}

/// The media disk for `--via http`: one line naming the URL, padded to a sector multiple.
pub(super) fn pointer_media(path: &Path, port: u16) -> Result<()> {
    let mut text = format!("INGOT-UPDATE-URL http://10.0.2.2:{port}/update.bundle\n").into_bytes();
    text.resize(4096, 0);
    crate::base::fsx::write(path, text)
}

/// The media disk for `--via disk`: a copy of the bundle padded to whole sectors (QEMU
/// attaches a raw file whose size is not a sector multiple with a warning and rounds down).
pub(super) fn bundle_media(bundle: &Path, path: &Path) -> Result<()> {
    let mut data = crate::base::fsx::read(bundle)?;
    let len = data.len().div_ceil(512).max(1) * 512;
    data.resize(len, 0);
    crate::base::fsx::write(path, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_http_server_serves_the_current_file_and_stops() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("b");
        std::fs::write(&f, b"bundle bytes").unwrap();
        let s = Server::start().unwrap();
        *s.file.lock().unwrap() = f.clone();
        let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        c.write_all(b"GET /update.bundle HTTP/1.0\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut got = String::new();
        std::io::Read::read_to_string(&mut c, &mut got).unwrap();
        assert!(
            got.starts_with("HTTP/1.0 200 OK\r\n") && got.contains("Content-Length: 12\r\n"),
            "{got}"
        );
        assert!(got.ends_with("\r\n\r\nbundle bytes"), "{got}");
        drop(s);
    }
}
