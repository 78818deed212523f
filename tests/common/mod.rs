//! Helpers shared by the integration tests: running the binary, the independent checking tools,
//! reading image directories.
#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

pub mod registry;
pub mod serve;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The project root.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The ingot binary, run from the project root with its temporary directory inside one this
/// test binary removes when it exits: what ingot keeps there for the user (`boot-test`'s console
/// logs when no `--logs` is given) would otherwise pile up in the system's, run after run.
pub fn ingot_command() -> Command {
    static SCRATCH: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let tmp = SCRATCH.get_or_init(shared_tempdir);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ingot"));
    cmd.current_dir(root()).env("TMPDIR", tmp.path());
    cmd
}

/// Run ingot from the project root.
pub fn ingot(args: &[&str]) -> Output {
    ingot_command().args(args).output().expect("running ingot")
}

/// Places for QEMU guests, one per host core. The end-to-end tests that boot several guests
/// at once take as many places as they start guests, so that tests cargo runs side by side never
/// put more guests on the host than it has cores: on two cores, five guests at once (the
/// two cloud tests side by side) once slowed a vm-cloud boot's userspace to six minutes.
pub struct Guests(Vec<std::fs::File>);

/// Wait (up to an hour, then panic) for `n` places, capped at the host's cores; they are held
/// until the returned value is dropped. Places are `flock`s on files in the temporary
/// directory, so they hold across threads and test binaries alike.
pub fn guests(n: usize) -> Guests {
    let cores = std::thread::available_parallelism().map_or(2, |c| c.get());
    let want = n.clamp(1, cores);
    let dir = std::env::temp_dir().join("ingot-test-guests");
    std::fs::create_dir_all(&dir).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3600);
    loop {
        let mut held = Vec::new();
        for i in 0..cores {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(dir.join(format!("place-{i}")))
                .unwrap();
            if f.try_lock().is_ok() {
                held.push(f);
                if held.len() == want {
                    return Guests(held);
                }
            }
        }
        // Not enough free: give back what was taken (so two waiters never hold one each of
        // the two a pair needs) and try again.
        drop(held);
        assert!(
            std::time::Instant::now() < deadline,
            "no {want} free QEMU guest places in an hour"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// A temporary directory for a fixture kept in a `static` (built once, shared by a binary's
/// tests). Rust never drops statics, so a `TempDir` there alone would stay behind in the
/// temporary directory: four such fixtures left about 4 GB per run of the suite. Its path is
/// removed when the test binary exits (libtest returns from `main` or calls `exit`, and both
/// run the C library's exit handlers); a binary killed by a signal still leaves it.
pub fn shared_tempdir() -> tempfile::TempDir {
    static HOOK: std::sync::Once = std::sync::Once::new();
    let dir = tempfile::tempdir().unwrap();
    AT_EXIT.lock().unwrap().push(dir.path().to_path_buf());
    HOOK.call_once(|| {
        // The one C call of the tests: registering a plain function with no state of its own.
        #[allow(unsafe_code)]
        // SAFETY: `remove_shared` is an `extern "C" fn()` that lives as long as the program.
        let failed = unsafe { libc::atexit(remove_shared) } != 0;
        assert!(
            !failed,
            "atexit refused the clean-up of shared test directories"
        );
    });
    dir
}

static AT_EXIT: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

extern "C" fn remove_shared() {
    if let Ok(mut dirs) = AT_EXIT.lock() {
        for d in dirs.drain(..) {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Run ingot with extra environment variables.
pub fn ingot_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = ingot_command();
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("running ingot")
}

/// Run ingot (with PATH replaced when given, to hide host tools), expecting exit status 1;
/// return its stderr.
pub fn ingot_fails(args: &[&str], path: Option<&Path>) -> String {
    let mut cmd = ingot_command();
    cmd.args(args);
    if let Some(p) = path {
        cmd.env("PATH", p);
    }
    let o = cmd.output().expect("running ingot");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "ingot {args:?}: {err}");
    err
}

/// `ingot build -q PROFILE --out OUT`, expected to fail: its stderr.
pub fn build_fails(profile: &Path, out: &Path, path: Option<&Path>) -> String {
    ingot_fails(
        &[
            "build",
            "-q",
            profile.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        path,
    )
}

/// Assert success; stdout and stderr together.
pub fn ok(o: &Output, what: &str) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        o.status.success(),
        "{what} failed ({:?}):\n{text}",
        o.status.code()
    );
    text
}

/// Run a host tool: (success, stdout + stderr).
pub fn tool(cmd: &str, args: &[&str]) -> (bool, String) {
    let o = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} not installed ({e}); run .ci/host-deps"));
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

/// A copy of `disk` at `to` without the file at `path` in the FAT partition that starts at
/// 1 MiB (the ESP of Ingot's and the test disks), deleted with mtools, as a broken disk for a
/// boot test.
pub fn copy_without_esp_file(disk: &Path, to: &Path, path: &str) {
    std::fs::copy(disk, to).unwrap();
    let (good, o) = tool("mdel", &["-i", &format!("{}@@1M", to.display()), path]);
    assert!(good, "mdel {path}: {o}");
}

/// Hex SHA-256.
pub fn hex_sha256(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// An image directory's manifest as plain JSON (an independent reading of the file).
pub fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

/// Digest of every file below `dir` (relative path → SHA-256), to show a failed run left a
/// directory exactly as it was.
pub fn tree_digests(dir: &Path) -> std::collections::BTreeMap<PathBuf, String> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                out.insert(rel, "dir".into());
                stack.push(p);
            } else if ft.is_symlink() {
                out.insert(
                    rel,
                    format!("link:{}", std::fs::read_link(&p).unwrap().display()),
                );
            } else {
                out.insert(rel, hex_sha256(&std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

pub fn extract_partition(dir: &Path, name: &str, dest: &Path) {
    let m = manifest(dir);
    let p = m["disk"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap();
    let (off, size) = (p["offset"].as_u64().unwrap(), p["size"].as_u64().unwrap());
    let (good, out) = tool(
        "dd",
        &[
            &format!("if={}", dir.join("disk.raw").display()),
            &format!("of={}", dest.display()),
            "bs=1M",
            &format!("skip={}", off >> 20),
            &format!("count={}", size >> 20),
            "conv=sparse",
            "status=none",
        ],
    );
    assert!(good, "{out}");
}

pub fn check_disk(dir: &Path, tmp: &Path) {
    let raw = dir.join("disk.raw");
    let (good, out) = tool("sgdisk", &["-v", raw.to_str().unwrap()]);
    assert!(
        good && out.contains("No problems found"),
        "sgdisk -v: {out}"
    );
    let esp = tmp.join("esp.img");
    extract_partition(dir, "esp", &esp);
    let (good, out) = tool("fsck.vfat", &["-n", esp.to_str().unwrap()]);
    assert!(good, "fsck.vfat -n: {out}");
    let root = tmp.join("root.img");
    extract_partition(dir, "root", &root);
    let (good, out) = tool("e2fsck", &["-fn", root.to_str().unwrap()]);
    assert!(good, "e2fsck -fn: {out}");
    let _ = std::fs::remove_file(esp);
    let _ = std::fs::remove_file(root);
    check_bios_boot(dir);
}

/// A hybrid disk: sgdisk names its last partition a BIOS boot partition, the MBR holds boot
/// code that names that partition's first sector, whose blocklist names the next one.
fn check_bios_boot(dir: &Path) {
    let m = manifest(dir);
    let parts = m["disk"]["partitions"].as_array().unwrap();
    let Some(n) = parts.iter().position(|p| p["name"] == "bios-boot") else {
        assert!(!m["boot"]["hardware"]["disk"]["bios"]
            .as_bool()
            .unwrap_or(false));
        return;
    };
    assert_eq!(n + 1, parts.len(), "the BIOS boot partition comes last");
    let raw = dir.join("disk.raw");
    let (good, out) = tool(
        "sgdisk",
        &["-i", &(n + 1).to_string(), raw.to_str().unwrap()],
    );
    assert!(good && out.contains("BIOS boot partition"), "{out}");
    let lba = parts[n]["offset"].as_u64().unwrap() / 512;
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(&raw).unwrap();
    let mut mbr = [0u8; 512];
    f.read_exact(&mut mbr).unwrap();
    assert_eq!(&mbr[510..], &[0x55, 0xaa]);
    assert_eq!(mbr[0x1c2], 0xee, "a protective MBR");
    assert!(
        mbr[..0x1b8].iter().any(|b| *b != 0),
        "no boot code in the MBR"
    );
    assert_eq!(u64::from_le_bytes(mbr[0x5c..0x64].try_into().unwrap()), lba);
    let mut first = [0u8; 512];
    f.seek(SeekFrom::Start(lba * 512)).unwrap();
    f.read_exact(&mut first).unwrap();
    assert_eq!(
        u64::from_le_bytes(first[500..508].try_into().unwrap()),
        lba + 1
    );
}

/// Run a debugfs request against the image's root filesystem (extracted to `tmp`): an
/// independent reader of what the image holds.
pub fn debugfs_root(dir: &Path, tmp: &Path, request: &str) -> String {
    let root = tmp.join("root-for-debugfs.img");
    extract_partition(dir, "root", &root);
    let (_, out) = tool("debugfs", &["-R", request, root.to_str().unwrap()]);
    let _ = std::fs::remove_file(&root);
    out
}

pub fn build(profile: &str, hws: &[&str], out: &Path, extra: &[&str]) -> Vec<PathBuf> {
    let mut args = vec!["build", "-q", profile, "--out", out.to_str().unwrap()];
    for h in hws {
        args.extend(["--hardware", h]);
    }
    args.extend(extra);
    let text = ok(&ingot(&args), &format!("ingot build {profile}"));
    text.lines()
        .filter(|l| l.starts_with(out.to_str().unwrap()))
        .map(PathBuf::from)
        .collect()
}

/// Build one profile for qemu-x86_64 into `out`; its image directory.
pub fn build_x86_64(profile: &str, out: &Path) -> PathBuf {
    build(profile, &["hardware/qemu-x86_64.toml"], out, &[])
        .pop()
        .unwrap()
}

pub fn no_qemu_left(disk: &Path) {
    let (_, ps) = tool("ps", &["-eo", "args"]);
    assert!(
        !ps.lines()
            .any(|l| l.contains("qemu-system") && l.contains(disk.to_str().unwrap())),
        "a QEMU process survived:\n{ps}"
    );
}

/// Two builds' artifacts are byte-identical.
pub fn same_bytes(a: &[PathBuf], b: &[PathBuf]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        for f in [
            "disk.raw",
            "disk.raw.zst",
            "disk.qcow2",
            "disk.vmdk",
            "disk.vhdx",
            "disk.vhd",
            "disk.tar.gz",
            "disk.ova",
            "manifest.json",
            "sbom.spdx.json",
            "sbom.cdx.json",
            "packages.lock",
        ] {
            if !x.join(f).exists() {
                continue;
            }
            assert!(
                std::fs::read(x.join(f)).unwrap() == std::fs::read(y.join(f)).unwrap(),
                "{f} differs between two builds of {}{}",
                x.display(),
                if f == "manifest.json" {
                    manifest_difference(x, y)
                } else {
                    String::new()
                }
            );
        }
    }
}

/// What differs between two image directories' manifests, to say why a reproducibility check
/// failed: the top-level fields, the artifacts whose digests differ, and, when the provenance
/// differs, the archive indexes (InRelease digests) each build recorded.
fn manifest_difference(x: &Path, y: &Path) -> String {
    let read = |d: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(d.join("manifest.json")).unwrap()).unwrap()
    };
    let (a, b) = (read(x), read(y));
    let empty = serde_json::Map::new();
    let (ao, bo) = (
        a.as_object().unwrap_or(&empty),
        b.as_object().unwrap_or(&empty),
    );
    let fields: std::collections::BTreeSet<&String> = ao
        .keys()
        .chain(bo.keys())
        .filter(|k| ao.get(*k) != bo.get(*k))
        .collect();
    let arts = |m: &serde_json::Value| m["artifacts"].as_object().cloned().unwrap_or_default();
    let (aa, ba) = (arts(&a), arts(&b));
    let artifacts: std::collections::BTreeSet<&String> = aa
        .keys()
        .chain(ba.keys())
        .filter(|k| aa.get(*k) != ba.get(*k))
        .collect();
    let mut out = format!(": fields {fields:?}, artifacts {artifacts:?}");
    if artifacts.iter().any(|k| k.starts_with("provenance")) {
        for d in [x, y] {
            let deps = std::fs::read_to_string(d.join("provenance.intoto.jsonl"))
                .ok()
                .and_then(|t| {
                    let env: serde_json::Value =
                        serde_json::from_str(t.lines().next().unwrap_or("")).ok()?;
                    use base64::Engine;
                    let payload = base64::engine::general_purpose::STANDARD
                        .decode(env["payload"].as_str()?)
                        .ok()?;
                    let st: serde_json::Value = serde_json::from_slice(&payload).ok()?;
                    Some(st["predicate"]["buildDefinition"]["resolvedDependencies"].to_string())
                })
                .unwrap_or_default();
            out.push_str(&format!("\n{}: provenance inputs {deps}", d.display()));
        }
    }
    out
}

pub fn dsse_independent(path: &Path, pubkey_file: &str) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let env: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let ty = env["payloadType"].as_str().unwrap();
    assert_eq!(ty, "application/vnd.in-toto+json");
    let body = b64.decode(env["payload"].as_str().unwrap()).unwrap();
    let mut pae = Vec::new();
    pae.extend_from_slice(b"DSSEv1 ");
    pae.extend_from_slice(ty.len().to_string().as_bytes());
    pae.push(b' ');
    pae.extend_from_slice(ty.as_bytes());
    pae.push(b' ');
    pae.extend_from_slice(body.len().to_string().as_bytes());
    pae.push(b' ');
    pae.extend_from_slice(&body);
    let pk_line = std::fs::read_to_string(pubkey_file)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    let pk = b64.decode(pk_line).unwrap();
    let vk = ed25519_dalek::VerifyingKey::from_bytes(pk[10..42].try_into().unwrap()).unwrap();
    let sig = ed25519_dalek::Signature::from_slice(
        &b64.decode(env["signatures"][0]["sig"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    use ed25519_dalek::Verifier;
    vk.verify(&pae, &sig)
        .expect("DSSE signature must verify over the independently computed PAE");
    let st: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(st["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(st["predicateType"], "https://slsa.dev/provenance/v1");
}

/// A private copy of an image directory (sparse files stay sparse).
pub fn copy_image(src: &Path, into: &Path) -> PathBuf {
    std::fs::create_dir_all(into).unwrap();
    let (good, o) = tool(
        "cp",
        &[
            "-a",
            "--sparse=always",
            src.to_str().unwrap(),
            into.to_str().unwrap(),
        ],
    );
    assert!(good, "cp: {o}");
    into.join(src.file_name().unwrap())
}

/// apt `deb` lines for `suites`, from the mirrors Ingot itself takes (the host's apt sources,
/// or INGOT_MIRROR): for apt and mmdebstrap, the oracles some tests hold Ingot to.
#[allow(dead_code)]
pub fn apt_sources(suites: &[&str]) -> String {
    suites
        .iter()
        .map(|s| {
            let m = ingot::packages::mirror::mirror_url(None, s).unwrap();
            format!("deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {m} {s} main\n")
        })
        .collect()
}
