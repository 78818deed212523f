//! Entry points for the fuzz targets under `fuzz/` and for the fast lane's corpus replay
//! (`tests/fuzz_replay.rs`): each takes arbitrary bytes, feeds them to one parser of untrusted
//! input and must return — no panic, no hang, no allocation the input's length does not bound.
//! Errors are the expected outcome for almost every input and are dropped here.

use std::io::Cursor;
use std::path::Path;

use crate::packages::{control, deb, index, repo};

/// The names of the targets, one per parser of untrusted input (and one fuzz target each).
pub const TARGETS: &[&str] = &[
    "deb_ar",
    "tar_members",
    "control",
    "inrelease",
    "minisign",
    "dsse",
    "profile",
    "ready_line",
    "disk_headers",
    "update_bundle",
    "registry",
    "cloud_seed",
    "qcow2",
    "postinst",
];

/// Run the named target on `data`; false for an unknown name.
pub fn run(target: &str, data: &[u8]) -> bool {
    match target {
        "deb_ar" => deb_ar(data),
        "tar_members" => tar_members(data),
        "control" => control_and_packages(data),
        "inrelease" => inrelease(data),
        "minisign" => minisign(data),
        "dsse" => dsse(data),
        "profile" => profile(data),
        "ready_line" => ready_line(data),
        "disk_headers" => disk_headers(data),
        "update_bundle" => update_bundle(data),
        "registry" => registry(data),
        "cloud_seed" => cloud_seed(data),
        "qcow2" => qcow2(data),
        "postinst" => postinst(data),
        _ => return false,
    }
    true
}

/// A maintainer script: the readers of accounts, alternatives and overrides, and the
/// evaluation of a first `postinst configure`, with an image that answers each question about
/// a path yes, no or not known by the path's bytes (so that every kind of branch is taken).
pub fn postinst(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = crate::packages::accounts::from_script(text);
    let _ = crate::packages::alternatives::from_script(text);
    let _ = crate::packages::statoverride::from_script(text);
    let _ = crate::packages::nss::from_script(text);
    let defaults = crate::packages::script::template_defaults(text);
    let answer = |path: &str, op: char| -> crate::packages::script::Known {
        let h = path.bytes().fold(u32::from(op), |h, b| {
            h.wrapping_mul(31).wrapping_add(u32::from(b))
        });
        match h % 3 {
            0 => Some(true),
            1 => Some(false),
            _ => None,
        }
    };
    let _ = crate::packages::script::first_configure(text, &defaults, &answer);
}

/// The ar archive of a .deb.
pub fn deb_ar(data: &[u8]) {
    let _ = deb::ar_members(&mut Cursor::new(data));
}

/// The members of a data.tar, unpacked into a file tree (path and link checks included).
pub fn tar_members(data: &[u8]) {
    let Ok(dir) = crate::base::fsx::scratch_dir("ingot-fuzz-tar") else {
        return;
    };
    let p = dir.path().join("data.tar");
    if std::fs::write(&p, data).is_ok() {
        let mut t = crate::tree::Tree::new();
        let _ = deb::unpack(&p, "fuzz", &mut t);
    }
}

/// Control files and Packages indexes: paragraphs, the index built from them, dependency
/// fields.
pub fn control_and_packages(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = control::parse(text);
    let mut i = index::Index::default();
    if i.add(text, "fuzz", "amd64").is_ok() {
        i.finish();
    }
    let _ = index::parse_deps(text);
}

/// InRelease: the clear-signed message (against an empty keyring) and the Release fields.
pub fn inrelease(data: &[u8]) {
    let _ = repo::verify_inrelease(data, &[], "fuzz:InRelease", Path::new("none"));
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = repo::parse_release("fuzz:", "fuzz", text, String::new(), "fuzz:InRelease");
    }
}

/// minisign signatures, public keys and secret keys, and a verification against a fixed key.
pub fn minisign(data: &[u8]) {
    use crate::trust::minisign::{PublicKey, SecretKey, Signature};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Signature::parse(text);
    let _ = PublicKey::parse(text);
    let _ = SecretKey::parse(text);
    let _ = fixed_key().verify_bytes(b"fuzz", text);
}

/// DSSE envelopes (one provenance line), verified against a fixed key.
pub fn dsse(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::trust::verify_dsse_line(text, &fixed_key());
    }
}

/// The TOML profile loader (one file, no `extends`).
pub fn profile(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::config::profile_from_str(Path::new("fuzz.toml"), text);
    }
}

/// The guest's INGOT-READY line and the console classifier over a whole log.
pub fn ready_line(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = crate::boottest::console::parse_ready(&text);
    let _ = crate::boottest::console::classify_log(&text, crate::config::Arch::Aarch64);
}

/// An update bundle: the tar walk, member hashing, the manifest parser and the checks.
pub fn update_bundle(data: &[u8]) {
    if let Ok(b) = crate::bundle::Bundle::read_from(Cursor::new(data), Path::new("fuzz")) {
        let _ = b.check(None);
        let _ = b.payload_bytes();
    }
    let _ = crate::bundle::Manifest::parse(&String::from_utf8_lossy(data));
}

/// VMDK and VHDX header reads (the identifier pinning after qemu-img convert).
pub fn disk_headers(data: &[u8]) {
    for fmt in ["vmdk", "vhdx"] {
        let mut d = data.to_vec();
        let _ = crate::disk::pin_bytes(&mut d, fmt, "fuzz-1.0.0-x86_64");
    }
}

/// A pulled disk.qcow2 read front to back into disk.raw, fed in pieces of several sizes, for
/// a disk of the size its seeds describe (16 KiB) and for the size the header claims (capped:
/// in a pull, that size comes from the signed manifest).
pub fn qcow2(data: &[u8]) {
    let claimed = data
        .get(24..32)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_be_bytes)
        .min(1 << 20);
    for (size, step) in [(16 << 10, 4096), (16 << 10, 7), (claimed, 1 << 16)] {
        let _ = crate::disk::raw_of_qcow2(data, size, step);
    }
}

/// What a registry (or the user) hands the registry commands: a reference, a
/// `WWW-Authenticate` challenge, an OCI image manifest or index and the choice of one image of
/// an index, an evidence statement, and two tags (the first two lines) ordered as versions.
pub fn registry(data: &[u8]) {
    use crate::registry::{auth, evidence, pull, reference, retention, types};
    let text = String::from_utf8_lossy(data);
    if let Ok(r) = reference::Reference::parse(&text) {
        let _ = (r.to_string(), r.is_loopback(), r.target().map(str::len));
        let _ = r.with_tag("1.0.0").to_string();
    }
    let _ = reference::Reference::parse_repository(&text);
    let _ = reference::valid_tag(&text);
    let _ = auth::challenge_params(&text);
    if let Ok(m) = serde_json::from_slice::<types::ImageManifest>(data) {
        for l in &m.layers {
            let _ = (l.title(), l.hex());
        }
    }
    if let Ok(i) = serde_json::from_slice::<types::Index>(data) {
        let _ = pull::select(&i, Some("x86_64"), None, "fuzz");
        let _ = pull::select(&i, None, Some("qemu-x86_64"), "fuzz");
    }
    if let Ok(st) = serde_json::from_slice::<evidence::Statement>(data) {
        let _ = evidence::is_fallback_tag(&evidence::fallback_tag(&st.subject));
    }
    let mut lines = text.lines();
    if let (Some(a), Some(b)) = (lines.next(), lines.next()) {
        let _ = retention::semver_cmp(a, b);
    }
}

/// A NoCloud seed's inputs: the user's user-data put together with the boot test's own part,
/// the hostname cloud-init would take from user-data and meta-data (split at a `---` line, or
/// the whole input as either), and host-key fingerprints read from a console.
pub fn cloud_seed(data: &[u8]) {
    use crate::boottest::{cloud, seed};
    let _ = seed::user_data(Some(data), "ssh-ed25519 AAAA fuzz", cloud::USER);
    let text = String::from_utf8_lossy(data);
    let (user, meta) = text.split_once("\n---\n").unwrap_or((&text, &text));
    let _ = seed::expected_hostname(Some(user.as_bytes()), meta);
    let _ = seed::expected_hostname(None, &text);
    let _ = cloud::console_host_keys(text.lines());
}

fn fixed_key() -> crate::trust::minisign::PublicKey {
    // A fixed, valid ed25519 point (derived from a constant seed): no secret is involved.
    let sk = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    crate::trust::minisign::PublicKey {
        id: [1, 2, 3, 4, 5, 6, 7, 8],
        key: sk.verifying_key(),
    }
}
