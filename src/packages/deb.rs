//! Reading `.deb` files: the `ar` container, `control.tar` and `data.tar` (xz, zstd, gzip or
//! uncompressed), and unpacking `data.tar` into the file tree.
//!
//! `data.tar` is decompressed once into the extraction cache; the tree then refers to byte ranges
//! of that file, so a warm rebuild decompresses nothing and file contents never sit in memory.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::tree::{normalize, Content, Entry, Kind, Tree};

/// One member of an `ar` archive.
#[derive(Debug, Clone)]
pub struct ArMember {
    /// Member name (trailing `/` stripped).
    pub name: String,
    /// Offset of its data in the archive.
    pub offset: u64,
    /// Its size.
    pub size: u64,
}

/// Why an `ar` archive (the outer layer of a .deb) was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DebError {
    /// No `!<arch>` magic.
    #[error("not a Debian package (no ar magic)")]
    NotAr,
    /// A member header without its terminator.
    #[error("corrupt ar member header at offset {0}")]
    CorruptHeader(u64),
    /// A member size that is not a decimal number.
    #[error("bad ar member size at offset {0}")]
    BadSize(u64),
    /// A member that claims to run past the end of the file.
    #[error("ar member `{name}` claims {size} bytes past the end of the file")]
    PastEnd {
        /// Member name.
        name: String,
        /// Claimed size.
        size: u64,
    },
    /// Reading failed.
    #[error("reading the ar archive: {0}")]
    Io(#[from] io::Error),
}

/// List the members of an `ar` archive. Sizes are checked against the file length.
pub fn ar_members(f: &mut (impl Read + Seek)) -> Result<Vec<ArMember>, DebError> {
    let total = f.seek(SeekFrom::End(0))?;
    f.seek(SeekFrom::Start(0))?;
    let mut magic = [0u8; 8];
    if f.read_exact(&mut magic).is_err() || &magic != b"!<arch>\n" {
        return Err(DebError::NotAr);
    }
    let mut out = Vec::new();
    let mut pos = 8u64;
    while pos + 60 <= total {
        f.seek(SeekFrom::Start(pos))?;
        let mut hdr = [0u8; 60];
        f.read_exact(&mut hdr)?;
        if &hdr[58..60] != b"`\n" {
            return Err(DebError::CorruptHeader(pos));
        }
        let name = String::from_utf8_lossy(&hdr[0..16])
            .trim_end()
            .trim_end_matches('/')
            .to_string();
        let size: u64 = std::str::from_utf8(&hdr[48..58])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or(DebError::BadSize(pos))?;
        let offset = pos + 60;
        if offset.checked_add(size).is_none_or(|end| end > total) {
            return Err(DebError::PastEnd { name, size });
        }
        out.push(ArMember { name, offset, size });
        pos = offset + size + (size & 1);
    }
    Ok(out)
}

pub(crate) fn decoder<'a>(name: &str, r: impl Read + 'a) -> Result<Box<dyn Read + 'a>> {
    Ok(if name.ends_with(".xz") {
        Box::new(xz2::read::XzDecoder::new_multi_decoder(r))
    } else if name.ends_with(".zst") {
        Box::new(zstd::stream::read::Decoder::new(r)?)
    } else if name.ends_with(".gz") {
        Box::new(flate2::read::GzDecoder::new(r))
    } else if name.ends_with(".tar") {
        Box::new(r)
    } else {
        bail!("unsupported member compression `{name}`")
    })
}

/// What the extraction cache records about one .deb.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Extracted {
    /// The `control` file.
    pub control: String,
    /// Length of the decompressed data.tar.
    pub data_len: u64,
    /// SHA-256 of the decompressed data.tar.
    pub data_sha256: String,
    /// Machine-readable licence names from `/usr/share/doc/*/copyright`, if any.
    #[serde(default)]
    pub licenses: Vec<String>,
    /// System accounts its `preinst` and `postinst` make (`None` in a cache entry written
    /// before they were read: they are then read from the .deb again).
    #[serde(default)]
    pub accounts: Option<Vec<super::accounts::Account>>,
    /// The [`super::accounts::READER`] that read them: a cache entry read by another is read
    /// again.
    #[serde(default)]
    pub accounts_reader: u32,
    /// The NSS services its `postinst` adds to `/etc/nsswitch.conf` (read with the accounts,
    /// by the same reader).
    #[serde(default)]
    pub nss: Vec<super::nss::NssEntry>,
    /// The alternatives its `postinst` registers (read by the same reader).
    #[serde(default)]
    pub alternatives: Vec<super::alternatives::Alternative>,
    /// The owners, groups and modes its `postinst` sets (read by the same reader).
    #[serde(default)]
    pub statoverrides: Vec<super::statoverride::Override>,
    /// The `Default` of each of its debconf templates.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub debconf: std::collections::BTreeMap<String, String>,
    /// The members of its control.tar that dpkg keeps as `/var/lib/dpkg/info/PKG.NAME`.
    #[serde(default)]
    pub info: Vec<InfoFile>,
}

impl Extracted {
    /// Its `postinst`, which the assembly evaluates against the image (see `super::script`).
    pub fn postinst(&self) -> Option<&str> {
        self.info
            .iter()
            .find(|m| m.name == "postinst")
            .map(|m| m.text.as_str())
    }
}

/// A control.tar member dpkg keeps in its database when it installs the package: maintainer
/// scripts, `md5sums`, `conffiles`, `triggers`, `shlibs`, `symbols`, `templates`, `config`,
/// ... (every regular file but `control`, which becomes the package's status entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InfoFile {
    /// Member name (`postinst`).
    pub name: String,
    /// Its permission bits in the archive (scripts 0755).
    pub mode: u32,
    /// Its text. Debian's members are text; one that is not is left out, with a warning.
    pub text: String,
}

/// What Ingot reads from a package's maintainer scripts.
struct Scripts {
    accounts: Vec<super::accounts::Account>,
    nss: Vec<super::nss::NssEntry>,
    alternatives: Vec<super::alternatives::Alternative>,
    statoverrides: Vec<super::statoverride::Override>,
    debconf: std::collections::BTreeMap<String, String>,
    info: Vec<InfoFile>,
}

/// The largest control.tar member read: Debian's largest, the md5sums of packages with many
/// files, are a few MB.
const MEMBER_LIMIT: u64 = 64 << 20;

/// The `control` file, what the maintainer scripts make (accounts, NSS services, ...), and
/// the members dpkg keeps, from a .deb's control.tar.
fn read_control(f: &mut File, member: &ArMember) -> Result<(String, Scripts)> {
    f.seek(SeekFrom::Start(member.offset))?;
    let mut control = String::new();
    let mut scripts = Scripts {
        accounts: Vec::new(),
        nss: Vec::new(),
        alternatives: Vec::new(),
        statoverrides: Vec::new(),
        debconf: Default::default(),
        info: Vec::new(),
    };
    // The debconf templates whose defaults the postinst may read.
    let mut templates = String::new();
    let mut ar = tar::Archive::new(decoder(&member.name, f.take(member.size))?);
    for e in ar.entries()? {
        let mut e = e?;
        let name = normalize(&e.path()?.to_string_lossy(), true).ok();
        if name.as_deref() == Some("control") {
            e.read_to_string(&mut control)?;
            continue;
        }
        let (Some(name), true) = (name, e.header().entry_type().is_file()) else {
            continue;
        };
        let mode = e.header().mode().unwrap_or(0o644) & 0o7777;
        let size = e.header().size().unwrap_or(0);
        if size > MEMBER_LIMIT {
            bail!("control.tar member `{name}` is {size} bytes, more than the {MEMBER_LIMIT} Ingot reads");
        }
        let mut bytes = Vec::new();
        e.by_ref().take(MEMBER_LIMIT).read_to_end(&mut bytes)?;
        let Ok(text) = String::from_utf8(bytes) else {
            // Not text (no such member in Debian): nothing Ingot can read or keep.
            eprintln!("warning: control member `{name}` is not UTF-8 text; not kept in the image's dpkg database");
            continue;
        };
        match name.as_str() {
            "preinst" | "postinst" => {
                scripts.accounts.extend(super::accounts::from_script(&text));
                if name == "postinst" {
                    scripts.nss.extend(super::nss::from_script(&text));
                    scripts
                        .alternatives
                        .extend(super::alternatives::from_script(&text));
                    scripts
                        .statoverrides
                        .extend(super::statoverride::from_script(&text));
                }
            }
            "templates" => templates.clone_from(&text),
            _ => {}
        }
        scripts.info.push(InfoFile { name, mode, text });
    }
    scripts.info.sort_by(|a, b| a.name.cmp(&b.name));
    scripts.debconf = super::script::template_defaults(&templates);
    Ok((control, scripts))
}

/// Decompress a verified .deb into the extraction cache (once) and return its description and
/// the path of the uncompressed data.tar.
pub fn extract(deb: &Path, tar_path: &Path, meta_path: &Path) -> Result<(Extracted, PathBuf)> {
    if let Ok(text) = std::fs::read_to_string(meta_path) {
        if let Ok(meta) = serde_json::from_str::<Extracted>(&text) {
            // The extract is trusted only when its bytes still hash to what was recorded when
            // it was made from the verified .deb: an edited or truncated cache entry is made
            // again, never shipped under the package's genuine digests.
            match crate::base::fsx::sha256_file(tar_path) {
                Ok((h, n)) if h == meta.data_sha256 && n == meta.data_len => {
                    let mut meta = meta;
                    if meta.accounts.is_none() || meta.accounts_reader != super::accounts::READER {
                        let mut f = File::open(deb)
                            .with_context(|| format!("opening {}", deb.display()))?;
                        let members = ar_members(&mut f)?;
                        let control_m = members
                            .iter()
                            .find(|m| m.name.starts_with("control.tar"))
                            .context("no control.tar member")?;
                        let scripts = read_control(&mut f, control_m)?.1;
                        meta.accounts = Some(scripts.accounts);
                        meta.nss = scripts.nss;
                        meta.alternatives = scripts.alternatives;
                        meta.statoverrides = scripts.statoverrides;
                        meta.debconf = scripts.debconf;
                        meta.info = scripts.info;
                        meta.accounts_reader = super::accounts::READER;
                        crate::base::fsx::write_atomic(
                            meta_path,
                            serde_json::to_string(&meta)?.as_bytes(),
                        )?;
                    }
                    return Ok((meta, tar_path.to_path_buf()));
                }
                Ok(_) => eprintln!(
                    "warning: cache entry {} does not match its recorded SHA-256; extracting {} again",
                    tar_path.display(),
                    deb.display()
                ),
                Err(_) => {}
            }
        }
    }
    let mut f = File::open(deb).with_context(|| format!("opening {}", deb.display()))?;
    let members = ar_members(&mut f)?;
    let control_m = members
        .iter()
        .find(|m| m.name.starts_with("control.tar"))
        .context("no control.tar member")?;
    let data_m = members
        .iter()
        .find(|m| m.name.starts_with("data.tar"))
        .context("no data.tar member")?;
    let (control, scripts) = read_control(&mut f, control_m)?;
    if control.is_empty() {
        bail!("control.tar has no control file");
    }
    f.seek(SeekFrom::Start(data_m.offset))?;
    let tmp = crate::base::fsx::temp_beside(tar_path);
    let res = (|| -> Result<(u64, String)> {
        let dec = decoder(&data_m.name, BufReader::new((&mut f).take(data_m.size)))?;
        let mut hashed = crate::base::fsx::HashingReader::new(dec);
        let mut out = io::BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        io::copy(&mut hashed, &mut out).context("decompressing data.tar")?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        let (sha, n) = hashed.finish();
        Ok((n, sha))
    })();
    let (data_len, data_sha256) = match res {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, tar_path)?;
    let licenses = scan_licenses(tar_path).unwrap_or_default();
    let meta = Extracted {
        control,
        data_len,
        data_sha256,
        licenses,
        accounts: Some(scripts.accounts),
        accounts_reader: super::accounts::READER,
        nss: scripts.nss,
        alternatives: scripts.alternatives,
        statoverrides: scripts.statoverrides,
        debconf: scripts.debconf,
        info: scripts.info,
    };
    crate::base::fsx::write_atomic(meta_path, serde_json::to_string(&meta)?.as_bytes())?;
    Ok((meta, tar_path.to_path_buf()))
}

/// Licence names from a machine-readable (DEP-5) copyright file in the data.
fn scan_licenses(tar_path: &Path) -> Result<Vec<String>> {
    let mut ar = tar::Archive::new(BufReader::new(File::open(tar_path)?));
    let mut out = std::collections::BTreeSet::new();
    for e in ar.entries()? {
        let mut e = e?;
        let p = e.path()?.to_string_lossy().into_owned();
        if p.ends_with("/copyright")
            && p.contains("usr/share/doc/")
            && e.header().entry_type().is_file()
        {
            let mut text = String::new();
            if e.by_ref().take(1 << 20).read_to_string(&mut text).is_err() {
                continue;
            }
            if !text.starts_with("Format:") {
                continue;
            }
            for line in text.lines() {
                if let Some(l) = line.strip_prefix("License:") {
                    let l = l.trim();
                    if !l.is_empty() {
                        out.insert(l.to_string());
                    }
                }
            }
        }
    }
    Ok(out.into_iter().collect())
}

/// Walk an uncompressed data.tar and add its entries to the tree. Returns the installed paths
/// (for the dpkg `.list` file). `package` names the package in errors.
pub fn unpack(tar_path: &Path, package: &str, tree: &mut Tree) -> Result<Vec<String>> {
    let file = Arc::new(tar_path.to_path_buf());
    let origin: Arc<str> = Arc::from(package);
    let mut ar = tar::Archive::new(BufReader::with_capacity(1 << 16, File::open(tar_path)?));
    let mut listed = Vec::new();
    // Seek past contents instead of reading them: only headers are needed here.
    for e in ar
        .entries_with_seek()
        .with_context(|| format!("package {package}: reading data.tar"))?
    {
        let mut e = e.with_context(|| format!("package {package}: corrupt data.tar"))?;
        let raw = e.path()?.to_string_lossy().into_owned();
        let path = normalize(&raw, false)
            .with_context(|| format!("package {package}: entry `{raw}` is unsafe"))?;
        let h = e.header();
        let mode = h.mode().unwrap_or(0o644) & 0o7777;
        let uid = u32::try_from(h.uid().unwrap_or(0)).unwrap_or(0);
        let gid = u32::try_from(h.gid().unwrap_or(0)).unwrap_or(0);
        let mtime = i64::try_from(h.mtime().unwrap_or(0)).unwrap_or(0);
        let ty = h.entry_type();
        let kind = match ty {
            tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File(Content::Slice {
                file: file.clone(),
                offset: e.raw_file_position(),
                len: e.size(),
            }),
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Symlink => {
                let t = e
                    .link_name()?
                    .with_context(|| format!("package {package}: symlink `{raw}` has no target"))?;
                Kind::Symlink(t.to_string_lossy().into_owned())
            }
            tar::EntryType::Link => {
                let t = e.link_name()?.with_context(|| {
                    format!("package {package}: hard link `{raw}` has no target")
                })?;
                let t = normalize(&t.to_string_lossy(), false).with_context(|| {
                    format!("package {package}: hard link `{raw}` target is unsafe")
                })?;
                let target = tree
                    .resolve_parent(&t)
                    .with_context(|| format!("package {package}: hard link `{raw}`"))?;
                Kind::HardLink(target)
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                let major = h.device_major()?.unwrap_or(0);
                let minor = h.device_minor()?.unwrap_or(0);
                if ty == tar::EntryType::Char {
                    Kind::CharDev { major, minor }
                } else {
                    Kind::BlockDev { major, minor }
                }
            }
            tar::EntryType::Fifo => Kind::Fifo,
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => continue,
            other => bail!("package {package}: entry `{raw}` has unsupported type {other:?}"),
        };
        let mut entry = Entry::new(kind, mode);
        entry.uid = uid;
        entry.gid = gid;
        entry.mtime = mtime;
        entry.origin = origin.clone();
        if let Some(exts) = e.pax_extensions()? {
            for ext in exts {
                let ext = ext?;
                if let Some(name) = ext.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) {
                    entry
                        .xattrs
                        .insert(name.to_string(), ext.value_bytes().to_vec());
                }
            }
        }
        if path.is_empty() {
            continue;
        }
        tree.insert(&path, entry)
            .with_context(|| format!("package {package}: entry `{raw}`"))?;
        listed.push(format!("/{path}"));
    }
    Ok(listed)
}

#[cfg(test)]
pub(crate) mod tests;
