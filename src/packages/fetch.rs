//! Fetching: every package of a set downloaded (in parallel, with progress bars on a
//! terminal) into the verified cache and extracted once; and the UEFI firmware package.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use super::index::Index;
use super::{deb, repo, unpack_boot, Locked, Role, Source};
use crate::config::Firmware;

/// A package fetched, verified and decompressed into the extraction cache.
#[derive(Debug, Clone)]
pub struct Ready {
    /// Lock entry.
    pub locked: Locked,
    /// Extraction metadata.
    pub extracted: deb::Extracted,
    /// Uncompressed data.tar in the cache.
    pub data_tar: PathBuf,
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:>10} [{bar:30}] {bytes}/{total_bytes} {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// Download (in parallel, verified) and decompress every package in the set.
pub fn fetch_all(src: &Source, set: &[Locked]) -> Result<Vec<Ready>> {
    let total: u64 = set.iter().map(|l| l.info.size).sum();
    let multi = crate::progress::multi(src.progress);
    let overall = multi.add(ProgressBar::new(total));
    overall.set_style(bar_style());
    overall.set_prefix("packages");
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<Ready>>>> =
        Mutex::new((0..set.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..src.jobs.min(set.len()).max(1) {
            let bar = multi.add(ProgressBar::new(0));
            bar.set_style(bar_style());
            bar.set_prefix("fetch");
            let (next, results, overall) = (&next, &results, &overall);
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(l) = set.get(i) else { break };
                bar.set_length(l.info.size);
                bar.set_position(0);
                bar.set_message(l.info.name.clone());
                let r = fetch_one(src, l, &|n| {
                    bar.inc(n);
                    overall.inc(n);
                });
                if let Ok(mut g) = results.lock() {
                    g[i] = Some(r);
                }
            });
        }
    });
    overall.finish_and_clear();
    let _ = multi.clear();
    results
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a download thread panicked"))?
        .into_iter()
        .map(|r| r.unwrap_or_else(|| bail!("package was not fetched")))
        .collect()
}

fn fetch_one(src: &Source, l: &Locked, progress: &dyn Fn(u64)) -> Result<Ready> {
    let info = &l.info;
    if l.role == Role::Generated {
        // Made here, nothing to download: the lock entry must be one Ingot makes.
        if !super::generated::is_generated(info) {
            return Err(crate::base::BadInput(format!(
                "package {} {}: the lock says it is generated, but Ingot generates no such package (an edited lockfile?)",
                info.name,
                info.version
            ))
            .into());
        }
        return Ok(Ready {
            locked: l.clone(),
            extracted: deb::Extracted {
                control: super::generated::control(info),
                data_len: 0,
                data_sha256: String::new(),
                licenses: Vec::new(),
                accounts: Some(Vec::new()),
                accounts_reader: super::accounts::READER,
                nss: Vec::new(),
                alternatives: Vec::new(),
                statoverrides: Vec::new(),
                debconf: Default::default(),
                info: Vec::new(),
            },
            data_tar: super::generated::empty_tar(&src.cache)?,
        });
    }
    let url = format!("{}/{}", src.mirror_for(&info.suite), info.filename);
    let what = format!("package {} {}", info.name, info.version);
    let deb = src
        .cache
        .fetch_verified(&url, &info.sha256, info.size, &what, Some(progress))?;
    let (extracted, data_tar) = deb::extract(
        &deb,
        &src.cache.extract_path(&info.sha256, "tar"),
        &src.cache.extract_path(&info.sha256, "json"),
    )
    .with_context(|| format!("{what}: unpacking {}", deb.display()))?;
    check_control(l, &extracted.control)?;
    Ok(Ready {
        locked: l.clone(),
        extracted,
        data_tar,
    })
}

/// The package's own control file must agree with what the lock (or the index) says of it:
/// the .deb matched the recorded SHA-256, so its control file is genuine, and a lockfile whose
/// name, version or architecture was edited would otherwise give an SBOM that lies while dpkg
/// says otherwise.
fn check_control(l: &Locked, control: &str) -> Result<()> {
    let paras = super::control::parse(control)
        .map_err(|e| anyhow::anyhow!("package {}: control file: {e}", l.info.name))?;
    let p = paras
        .first()
        .with_context(|| format!("package {}: empty control file", l.info.name))?;
    for (field, recorded) in [
        ("Package", &l.info.name),
        ("Version", &l.info.version),
        ("Architecture", &l.info.arch),
    ] {
        let actual = p.get(field).unwrap_or("");
        if actual != recorded.as_str() {
            // Bad input (exit 2): the lockfile, or the index it came from, is what is wrong.
            return Err(crate::base::BadInput(format!(
                "package {} {}: the lock says {field} `{recorded}` but the .deb with SHA-256 {} says `{actual}` (an edited lockfile?)",
                l.info.name,
                l.info.version,
                l.info.sha256
            ))
            .into());
        }
    }
    Ok(())
}

/// Fetch a firmware descriptor's package and return the paths of its code and variable files
/// (cached under the extraction cache); no variable file for a BIOS.
pub fn fetch_firmware(src: &Source, fw: &Firmware) -> Result<(PathBuf, Option<PathBuf>)> {
    let keys = repo::load_keyring(&src.keyring)?;
    let rel = repo::fetch_release(&src.cache, &src.mirror, &fw.suite, &src.keyring, &keys)?;
    let mut index = Index::default();
    let arch = fw.arch.debian();
    let text = repo::fetch_packages(&src.cache, &rel, "main", arch)?;
    index
        .add(&text, &fw.suite, arch)
        .map_err(|e| anyhow::anyhow!(e))?;
    index.finish();
    let info = index.best(&fw.package).cloned().with_context(|| {
        format!(
            "{}: firmware package `{}` is not in {}",
            fw.path.display(),
            fw.package,
            fw.suite
        )
    })?;
    let ready = fetch_one(
        src,
        &Locked {
            role: Role::Boot,
            info: info.clone(),
        },
        &|_| {},
    )?;
    let tree = unpack_boot(std::slice::from_ref(&ready), &fw.package)?;
    let dir = src.cache.root().join("firmware").join(&info.sha256);
    std::fs::create_dir_all(&dir)?;
    let mut out = Vec::new();
    for f in [&fw.code, &fw.vars].into_iter().filter(|f| !f.is_empty()) {
        let data = tree.read(f).with_context(|| {
            format!(
                "{}: `{f}` is not in package {}",
                fw.path.display(),
                fw.package
            )
        })?;
        let p = dir.join(Path::new(f).file_name().unwrap_or_default());
        // The copy QEMU is given must be the verified package's bytes, whatever a shared or
        // stale cache holds (a file of the same length is not enough).
        if std::fs::read(&p).ok().as_deref() != Some(&data[..]) {
            crate::base::fsx::write_atomic(&p, &data)?;
        }
        out.push(p);
    }
    let mut out = out.into_iter();
    let code = out.next().unwrap_or_default();
    Ok((code, out.next()))
}
