//! The bundle manifest: the small line-based text that is signed, its typed form, and the parser
//! that accepts exactly what the device's updater accepts.

use sha2::{Digest, Sha256};

use super::{is_known_member, patch_index, patch_member, INITRD, PAYLOAD, ROOTFS};

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

impl Member {
    /// The manifest entries of a payload: each member's name, digest and size.
    pub fn list(payload: &[(&str, &[u8])]) -> Vec<Member> {
        payload
            .iter()
            .map(|(name, data)| Member {
                name: (*name).to_string(),
                sha256: hex::encode(Sha256::digest(data)),
                size: data.len() as u64,
            })
            .collect()
    }
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
    /// How the patch is cut into segments.
    pub segments: Segments,
    /// The initrd's SHA-256 when it is left out (the base's is the same).
    pub same_initrd: Option<String>,
}

/// How a delta's patch is cut: segment `i` rebuilds bytes `[i·size, (i+1)·size)` of the new
/// root image from a window of the base root image `margin` either side of the same offset.
/// Both are whole MiB, so the device reads the window with `dd bs=1M`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segments {
    /// Bytes of the new root image one segment rebuilds.
    pub size: u64,
    /// How far either side of its own offset a segment's base window reaches.
    pub margin: u64,
}

/// The unit of segment sizes and margins.
const MIB: u64 = 1 << 20;
/// Most segments a delta may have (a 128 GiB root image in 32 MiB segments).
pub const MAX_SEGMENTS: u64 = 4096;

impl Segments {
    /// How many segments a root image of `target` bytes takes.
    pub fn count(&self, target: u64) -> u64 {
        target.div_ceil(self.size)
    }

    /// Bytes `[start, end)` of the new root image segment `i` rebuilds.
    pub fn target_range(&self, i: u64, target: u64) -> (u64, u64) {
        let start = (i * self.size).min(target);
        (start, (start + self.size).min(target))
    }

    /// Bytes `[start, end)` of the base root image segment `i` is patched against: `margin`
    /// either side of the segment's own offset (`size + 2·margin` bytes), slid back to stay
    /// full where the base ends. `start` is a whole MiB; the last window, from the last whole
    /// MiB that leaves room for a full one, runs to the end of the base.
    pub fn base_range(&self, i: u64, base: u64) -> (u64, u64) {
        let span = self.size + 2 * self.margin;
        let last = base.saturating_sub(span) / MIB * MIB;
        let start = (i * self.size).saturating_sub(self.margin).min(last);
        (start, if start == last { base } else { start + span })
    }

    fn check(&self) -> Result<(), &'static str> {
        if self.size == 0 || !self.size.is_multiple_of(MIB) || !self.margin.is_multiple_of(MIB) {
            return Err("segment size and margin must be whole MiB, the size not 0");
        }
        Ok(())
    }
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
                "base {} {} {}\nmemory {}\nsegments {} {}\n",
                d.base_version,
                d.base_rootfs.0,
                d.base_rootfs.1,
                d.memory,
                d.segments.size,
                d.segments.margin
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
        let (mut base, mut memory, mut same_initrd, mut segments) = (None, None, None, None);
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
                "segments" => {
                    let seg = match val.split(' ').collect::<Vec<_>>().as_slice() {
                        [size, margin] if segments.is_none() => Segments {
                            size: size
                                .parse()
                                .map_err(|_| bad("segment size is not a number"))?,
                            margin: margin
                                .parse()
                                .map_err(|_| bad("segment margin is not a number"))?,
                        },
                        _ => return Err(bad("expected `segments SIZE MARGIN`")),
                    };
                    seg.check().map_err(bad)?;
                    segments = Some((i + 1, seg));
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
                    } else if is_known_member(name)
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
        let patches = members
            .iter()
            .filter(|m| patch_index(&m.name).is_some())
            .count() as u64;
        let rootfs = rootfs.ok_or(BundleError::Missing("rootfs"))?;
        let delta = match base {
            None => {
                if !PAYLOAD.iter().all(|p| has(p)) || patches > 0 {
                    return Err(BundleError::Missing("member"));
                }
                if memory.is_some() || same_initrd.is_some() || segments.is_some() {
                    return Err(BundleError::Missing("base"));
                }
                None
            }
            Some((v, sha, size)) => {
                let (seg_line, segments) = segments.ok_or(BundleError::Missing("segments"))?;
                // Patches instead of the image, one per segment; the initrd either carried or
                // named as the same.
                let n = segments.count(rootfs.1);
                if n > MAX_SEGMENTS {
                    return Err(BundleError::BadLine {
                        line: seg_line,
                        what: format!(
                            "{n} segments of the {}-byte root image, more than {MAX_SEGMENTS}",
                            rootfs.1
                        ),
                    });
                }
                if n == 0
                    || patches != n
                    || !(0..n).all(|i| has(&patch_member(i)))
                    || has(ROOTFS)
                    || has(INITRD) == same_initrd.is_some()
                {
                    return Err(BundleError::Missing("member"));
                }
                Some(Delta {
                    base_version: v,
                    base_rootfs: (sha, size),
                    memory: memory.ok_or(BundleError::Missing("memory"))?,
                    segments,
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
            rootfs,
            kernel: kernel.ok_or(BundleError::Missing("kernel"))?,
            delta,
            members,
        })
    }
}
