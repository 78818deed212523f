//! A real OCI registry for tests: Debian's `docker-registry` (distribution 2.8) with a config
//! file of the test's own, on a free 127.0.0.1 port, storage in a temporary directory, deletion
//! enabled. Killed when dropped. `skopeo` is the independent client.

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running registry.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// Its storage root.
    pub storage: PathBuf,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Start one and wait (at most 20 s) until `/v2/` answers.
    pub fn start() -> Registry {
        Registry::start_with(None)
    }

    /// Start one serving TLS with this certificate and key (PEM files).
    pub fn start_with(tls: Option<(&Path, &Path)>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let storage = dir.path().join("storage");
        let cfg = dir.path().join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{}",
                storage.display(),
                tls.map(|(c, k)| format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    c.display(),
                    k.display()
                ))
                .unwrap_or_default()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("docker-registry not installed; run .ci/host-deps");
        let mut reg = Registry {
            child,
            host: format!("127.0.0.1:{port}"),
            storage,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = reg.child.try_wait().unwrap() {
                panic!("docker-registry exited at once: {st}");
            }
            if let Ok(mut s) = TcpStream::connect(&reg.host) {
                use std::io::Write;
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = write!(s, "GET /v2/ HTTP/1.0\r\n\r\n");
                let mut buf = [0u8; 12];
                if s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.") {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer in 20 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        reg
    }

    /// `HOST/REPO[:TAG]`.
    pub fn at(&self, repo_and_tag: &str) -> String {
        format!("{}/{repo_and_tag}", self.host)
    }

    /// The blob file of a digest in the registry's storage.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// skopeo against a plain-HTTP loopback registry: (success, stdout, stderr).
pub fn skopeo(args: &[&str]) -> (bool, String, String) {
    let mut full = vec![args[0]];
    full.push("--tls-verify=false");
    full.extend(&args[1..]);
    let o = Command::new("skopeo")
        .args(&full)
        .output()
        .expect("skopeo not installed; run .ci/host-deps");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The raw manifest skopeo reads for a reference, and its digest.
pub fn skopeo_raw(reference: &str) -> (serde_json::Value, String) {
    let o = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--raw"])
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo");
    assert!(
        o.status.success(),
        "skopeo inspect {reference}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    (
        serde_json::from_slice(&o.stdout).unwrap(),
        format!("sha256:{}", super::hex_sha256(&o.stdout)),
    )
}

/// The tags skopeo lists.
pub fn skopeo_tags(repo: &str) -> Vec<String> {
    let (good, out, err) = skopeo(&["list-tags", &format!("docker://{repo}")]);
    assert!(good, "skopeo list-tags {repo}: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut t: Vec<String> = v["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    t.sort();
    t
}

/// Whether the directory holds any entry whose name contains `.tmp`.
pub fn has_temp_entries(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .any(|e| e.file_name().to_string_lossy().contains(".tmp"))
        })
        .unwrap_or(false)
}
