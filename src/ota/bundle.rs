//! The update bundle (`update.bundle`): one deterministic ustar archive whose first member is a
//! small line-based manifest, then that manifest's minisign signature, then the kernel, the
//! initramfs and the gzip-compressed root filesystem image. Only the manifest is signed; every
//! other member is chained to it by SHA-256. The format is line-based so that the device's
//! POSIX-shell updater reads it with `read`, after `minisign -V` has checked it.
//!
//! ```text
//! ingot-bundle 1
//! image edge-minimal
//! version 2.0.0
//! arch x86_64
//! hardware qemu-x86_64-ab
//! min-version 0.0.0
//! options console=ttyS0 quiet panic=-1
//! rootfs <sha256 of the uncompressed root image> <bytes>
//! kernel <sha256 of the uncompressed kernel image> <bytes>
//! member linux.gz <sha256> <bytes>
//! member initrd <sha256> <bytes>
//! member rootfs.img.gz <sha256> <bytes>
//! ```
//!
//! A delta bundle (`update-from-<base version>.bundle`, made by `ota::delta`) carries the root
//! image as a zstd patch against the base version's root image, which the device reads from the
//! slot it runs, and leaves out the kernel and initramfs when the base has the same ones:
//!
//! ```text
//! base <base version> <sha256 of the base root image> <bytes>
//! memory <bytes the device needs free to apply it>
//! same-initrd <sha256>                  (when the initrd member is left out)
//! member rootfs.img.zst-patch <sha256> <bytes>
//! ```

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::base::fsx;
use crate::trust::minisign;

/// The bundle's file name in an image directory.
pub const FILE: &str = "update.bundle";
/// Member names, in archive order.
pub const MANIFEST: &str = "manifest";
/// The manifest's minisign signature.
pub const SIGNATURE: &str = "manifest.minisig";
/// The kernel image, gzip-compressed (an arm64 kernel is an uncompressed Image of ~30 MB).
pub const LINUX: &str = "linux.gz";
/// The initramfs.
pub const INITRD: &str = "initrd";
/// The gzip-compressed root filesystem image.
pub const ROOTFS: &str = "rootfs.img.gz";
/// The payload members of a full bundle, in archive order.
pub const PAYLOAD: [&str; 3] = [LINUX, INITRD, ROOTFS];
/// The root image as a zstd patch against the base root image (delta bundles).
pub const ROOTFS_PATCH: &str = "rootfs.img.zst-patch";
/// Every member name a manifest may list.
pub const KNOWN_MEMBERS: [&str; 4] = [LINUX, INITRD, ROOTFS, ROOTFS_PATCH];

/// Largest manifest or signature member read (both are a few hundred bytes).
const MAX_SMALL: u64 = 64 << 10;

/// Why a bundle cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum BundleError {
    /// The manifest's first line is not `ingot-bundle 1`.
    #[error("not an Ingot bundle manifest (first line `{0}`)")]
    NotAManifest(String),
    /// A line that does not parse.
    #[error("manifest line {line}: {what}")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        what: String,
    },
    /// A required field is missing.
    #[error("manifest has no `{0}` line")]
    Missing(&'static str),
}

/// One payload member as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Member name.
    pub name: String,
    /// Hex SHA-256 of its bytes.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
}

/// The signed bundle manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Image name.
    pub image: String,
    /// The version this bundle installs.
    pub version: String,
    /// Architecture name.
    pub arch: String,
    /// Hardware profile name.
    pub hardware: String,
    /// The oldest version it may be installed over.
    pub min_version: String,
    /// The boot entry template: the kernel command line after `root=PARTUUID=… ro ingot.slot=…`.
    pub options: String,
    /// SHA-256 and size of the uncompressed root filesystem image (what the slot holds).
    pub rootfs: (String, u64),
    /// SHA-256 and size of the uncompressed kernel image (what the ESP holds).
    pub kernel: (String, u64),
    /// For a delta bundle: what it applies to.
    pub delta: Option<Delta>,
    /// Payload members.
    pub members: Vec<Member>,
}

/// What a delta bundle applies to and needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta {
    /// The base version.
    pub base_version: String,
    /// SHA-256 and size of the base root image (what the running slot must hold).
    pub base_rootfs: (String, u64),
    /// Bytes of memory the device needs free to apply the patch.
    pub memory: u64,
    /// The initrd's SHA-256 when it is left out (the base's is the same).
    pub same_initrd: Option<String>,
}

fn word(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

fn hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Manifest {
    /// The text that is signed.
    pub fn to_text(&self) -> String {
        let mut t = format!(
            "ingot-bundle 1\nimage {}\nversion {}\narch {}\nhardware {}\nmin-version {}\noptions {}\nrootfs {} {}\nkernel {} {}\n",
            self.image, self.version, self.arch, self.hardware, self.min_version, self.options,
            self.rootfs.0, self.rootfs.1, self.kernel.0, self.kernel.1
        );
        if let Some(d) = &self.delta {
            t.push_str(&format!(
                "base {} {} {}\nmemory {}\n",
                d.base_version, d.base_rootfs.0, d.base_rootfs.1, d.memory
            ));
            if let Some(i) = &d.same_initrd {
                t.push_str(&format!("same-initrd {i}\n"));
            }
        }
        for m in &self.members {
            t.push_str(&format!("member {} {} {}\n", m.name, m.sha256, m.size));
        }
        t
    }

    /// The trusted comment of the manifest's signature.
    pub fn trusted_comment(&self) -> String {
        format!(
            "bundle image={} version={} arch={} hardware={}",
            self.image, self.version, self.arch, self.hardware
        )
    }

    /// Parse manifest text, checking every field is what the device's updater accepts.
    pub fn parse(text: &str) -> Result<Self, BundleError> {
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, "ingot-bundle 1")) => {}
            other => {
                let first = other.map(|(_, l)| l).unwrap_or("");
                return Err(BundleError::NotAManifest(
                    first.chars().take(40).collect::<String>(),
                ));
            }
        }
        let (mut image, mut version, mut arch, mut hardware, mut min, mut options) =
            (None, None, None, None, None, None);
        let (mut rootfs, mut kernel) = (None, None);
        let (mut base, mut memory, mut same_initrd) = (None, None, None);
        let mut members = Vec::new();
        for (i, line) in lines {
            let bad = |what: &str| BundleError::BadLine {
                line: i + 1,
                what: what.to_string(),
            };
            let (key, val) = line.split_once(' ').ok_or_else(|| bad("no value"))?;
            let need_word = |v: &str| {
                if word(v) {
                    Ok(v.to_string())
                } else {
                    Err(bad(&format!("`{key}` is not a plain word")))
                }
            };
            match key {
                "image" => image = Some(need_word(val)?),
                "version" => version = Some(need_word(val)?),
                "arch" => arch = Some(need_word(val)?),
                "hardware" => hardware = Some(need_word(val)?),
                "min-version" => min = Some(need_word(val)?),
                "options" => {
                    if !val
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b" =._,:/-".contains(&b))
                    {
                        return Err(bad("`options` has characters a command line may not"));
                    }
                    options = Some(val.to_string());
                }
                "base" => match val.split(' ').collect::<Vec<_>>().as_slice() {
                    [v, sha, size] if word(v) && hex64(sha) && base.is_none() => {
                        let size: u64 = size.parse().map_err(|_| bad("size is not a number"))?;
                        base = Some((v.to_string(), sha.to_string(), size));
                    }
                    _ => return Err(bad("expected `base VERSION SHA256 SIZE`")),
                },
                "memory" => {
                    memory = Some(
                        val.parse::<u64>()
                            .map_err(|_| bad("memory is not a number"))?,
                    )
                }
                "same-initrd" if hex64(val) => same_initrd = Some(val.to_string()),
                "same-initrd" => return Err(bad("SHA-256 is not 64 lowercase hex digits")),
                "rootfs" | "kernel" | "member" => {
                    let f: Vec<&str> = val.split(' ').collect();
                    let (name, sha, size) = match (key, f.as_slice()) {
                        ("rootfs" | "kernel", [sha, size]) => ("", *sha, *size),
                        ("member", [name, sha, size]) => (*name, *sha, *size),
                        _ => return Err(bad("expected `[NAME] SHA256 SIZE`")),
                    };
                    let size: u64 = size.parse().map_err(|_| bad("size is not a number"))?;
                    if !hex64(sha) {
                        return Err(bad("SHA-256 is not 64 lowercase hex digits"));
                    }
                    if key == "rootfs" {
                        rootfs = Some((sha.to_string(), size));
                    } else if key == "kernel" {
                        kernel = Some((sha.to_string(), size));
                    } else if KNOWN_MEMBERS.contains(&name)
                        && !members.iter().any(|m: &Member| m.name == name)
                    {
                        members.push(Member {
                            name: name.to_string(),
                            sha256: sha.to_string(),
                            size,
                        });
                    } else {
                        return Err(bad(&format!("unknown or repeated member `{name}`")));
                    }
                }
                other => return Err(bad(&format!("unknown field `{other}`"))),
            }
        }
        let has = |n: &str| members.iter().any(|m| m.name == n);
        let delta = match base {
            None => {
                if !PAYLOAD.iter().all(|p| has(p)) || has(ROOTFS_PATCH) {
                    return Err(BundleError::Missing("member"));
                }
                if memory.is_some() || same_initrd.is_some() {
                    return Err(BundleError::Missing("base"));
                }
                None
            }
            Some((v, sha, size)) => {
                // A patch instead of the image; the initrd either carried or named as the same.
                if !has(ROOTFS_PATCH) || has(ROOTFS) || has(INITRD) == same_initrd.is_some() {
                    return Err(BundleError::Missing("member"));
                }
                Some(Delta {
                    base_version: v,
                    base_rootfs: (sha, size),
                    memory: memory.ok_or(BundleError::Missing("memory"))?,
                    same_initrd,
                })
            }
        };
        Ok(Manifest {
            image: image.ok_or(BundleError::Missing("image"))?,
            version: version.ok_or(BundleError::Missing("version"))?,
            arch: arch.ok_or(BundleError::Missing("arch"))?,
            hardware: hardware.ok_or(BundleError::Missing("hardware"))?,
            min_version: min.ok_or(BundleError::Missing("min-version"))?,
            options: options.ok_or(BundleError::Missing("options"))?,
            rootfs: rootfs.ok_or(BundleError::Missing("rootfs"))?,
            kernel: kernel.ok_or(BundleError::Missing("kernel"))?,
            delta,
            members,
        })
    }
}

fn header(name: &str, size: u64, mtime: i64) -> Result<tar::Header> {
    let mut h = tar::Header::new_ustar();
    h.set_path(name)?;
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(u64::try_from(mtime).unwrap_or(0));
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    Ok(h)
}

/// Write a bundle to `path` (through a temporary name): the manifest, its signature when
/// given, then the payload. Deterministic: fixed owner, mode and `mtime`, member order fixed.
pub fn write(
    path: &Path,
    manifest: &Manifest,
    signature: Option<&str>,
    payload: &[(&str, &[u8])],
    mtime: i64,
) -> Result<()> {
    let tmp = fsx::temp_beside(path);
    let result = (|| -> Result<()> {
        let f =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut b = tar::Builder::new(std::io::BufWriter::new(f));
        let text = manifest.to_text();
        let mut members: Vec<(&str, &[u8])> = vec![(MANIFEST, text.as_bytes())];
        if let Some(s) = signature {
            members.push((SIGNATURE, s.as_bytes()));
        }
        members.extend_from_slice(payload);
        for (name, data) in members {
            b.append(&header(name, data.len() as u64, mtime)?, data)
                .with_context(|| format!("writing {name} into {}", path.display()))?;
        }
        let mut w = b.into_inner()?;
        w.flush()?;
        w.into_inner()
            .map_err(|e| e.into_error())?
            .sync_all()
            .with_context(|| format!("writing {}", tmp.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    fsx::rename(&tmp, path)
}

/// A member as found in a bundle file.
#[derive(Debug, Clone)]
pub struct Found {
    /// Member name.
    pub name: String,
    /// Hex SHA-256 of its bytes.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
}

/// A bundle as read from a file: the manifest text and signature as stored, the manifest parsed,
/// and each member's digest as computed while reading.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The manifest's bytes.
    pub manifest_text: String,
    /// The parsed manifest.
    pub manifest: Manifest,
    /// The signature member, when signed.
    pub signature: Option<String>,
    /// Every member in archive order.
    pub members: Vec<Found>,
}

impl Bundle {
    /// Read a bundle file, hashing every member (bounded: the manifest and signature are small).
    pub fn read(path: &Path) -> Result<Self> {
        let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        Self::read_from(std::io::BufReader::new(f), path)
    }

    /// Read a bundle from any reader; `path` names it in errors (the fuzz target's entry point).
    pub fn read_from(r: impl Read, path: &Path) -> Result<Self> {
        let mut ar = tar::Archive::new(r);
        let (mut text, mut sig) = (None, None);
        let mut members = Vec::new();
        for e in ar
            .entries()
            .with_context(|| format!("{}: not a tar archive", path.display()))?
        {
            let mut e = e.with_context(|| format!("{}: damaged tar archive", path.display()))?;
            let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let size = e.header().size()?;
            let is_small = name == MANIFEST || name == SIGNATURE;
            if is_small && size > MAX_SMALL {
                bail!("{}: member {name} is {size} bytes; a manifest or signature is at most {MAX_SMALL}", path.display());
            }
            let mut h = Sha256::new();
            let mut small = Vec::new();
            let mut buf = vec![0u8; 1 << 16];
            let mut n_total = 0u64;
            loop {
                let n = e
                    .read(&mut buf)
                    .with_context(|| format!("{}: reading member {name}", path.display()))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                if is_small {
                    small.extend_from_slice(&buf[..n]);
                }
                n_total += n as u64;
            }
            if n_total != size {
                bail!(
                    "{}: member {name} is truncated ({n_total} of {size} bytes)",
                    path.display()
                );
            }
            match name.as_str() {
                MANIFEST => {
                    text =
                        Some(String::from_utf8(small).with_context(|| {
                            format!("{}: manifest is not UTF-8", path.display())
                        })?)
                }
                SIGNATURE => {
                    sig =
                        Some(String::from_utf8(small).with_context(|| {
                            format!("{}: signature is not UTF-8", path.display())
                        })?)
                }
                _ => {}
            }
            members.push(Found {
                name,
                sha256: hex::encode(h.finalize()),
                size,
            });
        }
        let manifest_text = text.with_context(|| {
            format!(
                "{}: no `{MANIFEST}` member: not an update bundle",
                path.display()
            )
        })?;
        let manifest = Manifest::parse(&manifest_text)
            .with_context(|| format!("{}: {MANIFEST}", path.display()))?;
        Ok(Bundle {
            manifest_text,
            manifest,
            signature: sig,
            members,
        })
    }

    /// Check what the device checks, on the build host: the signature with `key` (when given),
    /// then every payload member against the manifest.
    pub fn check(&self, key: Option<&minisign::PublicKey>) -> Result<()> {
        if let Some(k) = key {
            let sig = self
                .signature
                .as_deref()
                .context("the bundle is not signed (no manifest.minisig member)")?;
            k.verify_bytes(self.manifest_text.as_bytes(), sig)
                .context("the bundle's manifest signature")?;
        }
        for want in &self.manifest.members {
            let got = self
                .members
                .iter()
                .find(|f| f.name == want.name)
                .with_context(|| format!("member {} is missing", want.name))?;
            if got.sha256 != want.sha256 || got.size != want.size {
                bail!(
                    "member {}: SHA-256 {} ({} bytes) does not match the manifest ({}, {} bytes)",
                    want.name,
                    got.sha256,
                    got.size,
                    want.sha256,
                    want.size
                );
            }
        }
        Ok(())
    }

    /// Bytes of the payload members: what the bundle's size is compared with.
    pub fn payload_bytes(&self) -> u64 {
        self.members
            .iter()
            .filter(|m| KNOWN_MEMBERS.contains(&m.name.as_str()))
            .map(|m| m.size)
            .sum()
    }
}

/// gzip a root filesystem or kernel image (deterministic: no name, no time in the header).
pub fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut e = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::new(6));
    e.write_all(data)?;
    Ok(e.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(payload: &[(&str, &[u8])]) -> Manifest {
        Manifest {
            image: "edge".into(),
            version: "2.0.0".into(),
            arch: "x86_64".into(),
            hardware: "qemu-x86_64-ab".into(),
            min_version: "1.0.0".into(),
            options: "console=ttyS0 quiet panic=-1".into(),
            rootfs: (hex::encode(Sha256::digest(b"root")), 4),
            kernel: (hex::encode(Sha256::digest(b"kernel")), 6),
            delta: None,
            members: payload
                .iter()
                .map(|(n, d)| Member {
                    name: (*n).into(),
                    sha256: hex::encode(Sha256::digest(d)),
                    size: d.len() as u64,
                })
                .collect(),
        }
    }

    #[test]
    fn a_bundle_round_trips_signs_and_names_a_changed_member() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join(FILE);
        let gz = gzip(b"root").unwrap();
        let payload: Vec<(&str, &[u8])> =
            vec![(LINUX, b"kernel"), (INITRD, b"initrd"), (ROOTFS, &gz)];
        let m = manifest(&payload);
        assert_eq!(Manifest::parse(&m.to_text()).unwrap(), m);
        write(&p, &m, None, &payload, 1_700_000_000).unwrap();
        let first = std::fs::read(&p).unwrap();
        write(&p, &m, None, &payload, 1_700_000_000).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), first, "not deterministic");
        let b = Bundle::read(&p).unwrap();
        assert!(b.signature.is_none());
        b.check(None).unwrap();
        let key = minisign::SecretKey::generate();
        assert!(
            b.check(Some(&key.public())).is_err(),
            "unsigned bundle passed"
        );
        let sig = key.sign_bytes(m.to_text().as_bytes(), &m.trusted_comment());
        write(&p, &m, Some(&sig), &payload, 1_700_000_000).unwrap();
        let b = Bundle::read(&p).unwrap();
        b.check(Some(&key.public())).unwrap();
        let other = minisign::SecretKey::generate();
        assert!(b.check(Some(&other.public())).is_err());
        // Flip one byte of the kernel member: the check names it.
        let mut bytes = std::fs::read(&p).unwrap();
        let at = bytes.windows(6).rposition(|w| w == b"kernel").unwrap();
        bytes[at] ^= 1;
        std::fs::write(&p, &bytes).unwrap();
        let e = Bundle::read(&p)
            .unwrap()
            .check(Some(&key.public()))
            .unwrap_err();
        assert!(e.to_string().contains("member linux.gz"), "{e}");
        // Truncated: an error, not a panic.
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        assert!(Bundle::read(&p).and_then(|b| b.check(None)).is_err());
    }

    #[test]
    fn the_committed_fuzz_seed_is_a_whole_bundle() {
        // Written by Python's tarfile and gzip, not by this module: the reader takes any ustar.
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus/update_bundle/small-unsigned.bundle");
        let b = Bundle::read(&p).unwrap();
        b.check(None).unwrap();
        assert_eq!(b.manifest.version, "2.0.0");
        assert_eq!(
            b.payload_bytes(),
            b.members[1..].iter().map(|m| m.size).sum::<u64>()
        );
    }

    #[test]
    fn manifest_errors_name_the_line() {
        let m = manifest(&[(LINUX, b"k"), (INITRD, b"i"), (ROOTFS, b"r")]);
        let text = m.to_text();
        assert!(matches!(
            Manifest::parse("tar\n"),
            Err(BundleError::NotAManifest(_))
        ));
        let bad = text.replace("version 2.0.0", "version 2.0.0;reboot");
        assert_eq!(
            Manifest::parse(&bad).unwrap_err(),
            BundleError::BadLine {
                line: 3,
                what: "`version` is not a plain word".into()
            }
        );
        let bad = text.replace("options console", "options $(reboot) console");
        assert!(matches!(
            Manifest::parse(&bad),
            Err(BundleError::BadLine { line: 7, .. })
        ));
        let bad = text.replace("member initrd", "member initrd2");
        assert!(Manifest::parse(&bad).is_err());
        let short: String = text
            .lines()
            .filter(|l| !l.starts_with("rootfs"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(
            Manifest::parse(&short).unwrap_err(),
            BundleError::Missing("rootfs")
        );
    }
}
