//! The build: profile + hardware → packages → tree → assembled system → sysprep → filesystems →
//! GPT disk → lockfile, SBOMs, provenance, manifest and signature, all written into a temporary
//! directory that replaces the previous image only when complete.

pub mod publish;
pub mod reproduce;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::assemble::{self, Identity};
use crate::base::fsx::{self, sha256_file};
use crate::base::identity::derived_guid;
use crate::boot;
use crate::config::{self, ByteSize, Hardware, Profile};
use crate::disk;
use crate::fs::ext4;
use crate::image_dir::{self, Manifest};
use crate::packages::{self, Lockfile, Source};
use crate::progress::{log, Stages};
use crate::sysprep;
use crate::tree::Tree;
use crate::trust::{self, minisign};

/// Options of one build.
#[derive(Debug, Clone)]
pub struct Options {
    /// Output root.
    pub out: PathBuf,
    /// Use the lockfile exactly.
    pub locked: bool,
    /// Signing key, read and checked before any build starts.
    pub key: Option<Arc<minisign::SecretKey>>,
    /// Print progress.
    pub quiet: bool,
}

/// What a build produced.
#[derive(Clone)]
pub struct Built {
    /// Image directory.
    pub dir: PathBuf,
    /// Identity.
    pub id: String,
    /// Bytes of data in disk.raw (allocated, not apparent).
    pub data_bytes: u64,
    /// The disk layout.
    pub layout: disk::Layout,
    /// The root filesystem's plan, to say which file a byte of disk.raw belongs to.
    pub root_plan: Arc<ext4::Plan>,
    /// What was written to manifest.json.
    pub manifest: Manifest,
}

impl Built {
    /// What a byte offset of `disk.raw` holds: GPT, which partition, and in the root
    /// filesystem which file or metadata.
    pub fn describe(&self, offset: u64) -> String {
        for (i, p) in self.layout.partitions.iter().enumerate() {
            if offset >= p.offset && offset < p.offset + p.size {
                let inner = offset - p.offset;
                return match i {
                    0 => format!("partition `{}` (FAT), byte {inner}", p.name),
                    1 => format!(
                        "partition `{}` (ext4), {}",
                        p.name,
                        self.root_plan.describe(inner)
                    ),
                    _ => format!("partition `{}`, byte {inner}", p.name),
                };
            }
        }
        "the GPT headers or partition entries".into()
    }
}

fn digest_files(paths: &[&Path]) -> Result<String> {
    let mut h = Sha256::new();
    for p in paths {
        h.update(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?);
    }
    Ok(hex::encode(h.finalize()))
}

fn stamp_times(tree: &mut Tree, epoch: i64) {
    for (_, e) in tree.iter_mut() {
        if e.mtime == 0 || e.mtime > epoch {
            e.mtime = epoch;
        }
    }
}

/// Latest `SOURCE_DATE_EPOCH` accepted: 9999-12-31T23:59:59Z (later dates do not fit the
/// four-digit years of RFC 3339 and FAT).
const MAX_EPOCH: i64 = 253_402_300_799;

/// `SOURCE_DATE_EPOCH` from the environment: none when unset or empty, an input error (exit 2)
/// when it is not a whole number of seconds from 1970 to 9999.
pub fn source_date_epoch() -> Result<Option<i64>, config::ConfigError> {
    let bad = |s: &str, why: &str| config::ConfigError::Rule {
        path: PathBuf::from("SOURCE_DATE_EPOCH"),
        message: format!("`{s}` {why}"),
    };
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) if !s.trim().is_empty() => {
            let v: i64 = s
                .trim()
                .parse()
                .map_err(|_| bad(&s, "is not a whole number of seconds"))?;
            if !(0..=MAX_EPOCH).contains(&v) {
                return Err(bad(&s, "is outside 1970-01-01 to 9999-12-31"));
            }
            Ok(Some(v))
        }
        _ => Ok(None),
    }
}

/// Build one image for one hardware profile.
pub fn build(profile: &Profile, hw: &Hardware, src: &Source, opts: &Options) -> Result<Built> {
    let arch = hw.arch;
    let id = Identity {
        name: profile.image.name.clone(),
        version: profile.image.version.0.clone(),
        arch: arch.name().to_string(),
        epoch: 0,
    };
    let ident = id.id();
    // Converted formats need qemu-img: say so before any work, not after the disk is written.
    if let Some(f) = profile.output.formats.first() {
        let found = std::process::Command::new("qemu-img")
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            bail!(
                "{}: [output] formats asks for disk.{}, which needs qemu-img: install the Debian package qemu-utils",
                profile.path.display(),
                format!("{f:?}").to_lowercase()
            );
        }
    }
    let staging = publish::Staging::create(&opts.out, &ident)?;
    let work = staging.path().to_path_buf();

    let mut stages = Stages::new(opts.quiet);
    stages.next(&format!("[{ident}] resolving packages"))?;
    let set = packages::package_set(src, profile, hw, opts.locked)?;
    stages.next_plain(&format!(
        "[{ident}] fetching {} packages",
        set.package.len()
    ))?;
    let ready = packages::fetch_all(src, &set.package)?;
    stages.next(&format!("[{ident}] unpacking"))?;
    let mut tree = packages::unpack_image(&ready, arch)?;
    let epoch = match source_date_epoch()? {
        Some(e) => e,
        None => tree.iter().map(|(_, e)| e.mtime).max().unwrap_or(0),
    };
    let id = Identity { epoch, ..id };
    let profile_digest = digest_files(
        &profile
            .sources
            .iter()
            .map(PathBuf::as_path)
            .collect::<Vec<_>>(),
    )?;
    let hw_digest = digest_files(&[hw.path.as_path()])?;
    let labels = assemble::labels(profile, hw, &id, &profile_digest);

    stages.next(&format!("[{ident}] assembling"))?;
    let kernel = boot::find_kernel(&tree)?;
    boot::kmod::depmod(&mut tree, &kernel.release)?;
    boot::prune_modules_for(&mut tree, &kernel, profile, hw)?;
    if !profile.sysprep.keep_docs {
        assemble::strip_docs(&mut tree);
    }
    assemble::system(&mut tree, profile, hw, &id, &labels)?;
    let busybox = packages::unpack_boot(&ready, "busybox-static")?;
    let sd_boot = packages::unpack_boot(&ready, "systemd-boot-efi")?;
    let initrd = boot::initramfs(&tree, &busybox, &kernel, hw, epoch)?;
    let kernel_bytes = boot::take_kernel(&mut tree, &kernel, profile.kernel.keep_boot_files)?;

    stages.next(&format!("[{ident}] sysprep"))?;
    sysprep::strip(&mut tree, profile)?;
    let findings = sysprep::scan(&tree, &profile.sysprep.allow_secrets)?;
    if let Some(f) = findings.first() {
        bail!(
            "secret scan: {} looks like a {} ({} finding(s) in all); remove it or allow-list the path in [sysprep] allow_secrets",
            f.path, f.kind, findings.len()
        );
    }
    stamp_times(&mut tree, epoch);

    // Root filesystem and disk layout.
    let fixed = match hw.disk.size.as_str() {
        "auto" => None,
        s => Some(ByteSize::parse(s).map_err(anyhow::Error::msg)?.0),
    };
    let root_guid = derived_guid(&ident, "root").to_string().to_uppercase();
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(derived_guid(&ident, "rootfs").as_bytes());
    let mut seed = [0u8; 16];
    seed.copy_from_slice(derived_guid(&ident, "hash-seed").as_bytes());
    let mut params = ext4::Params {
        size: None,
        uuid,
        hash_seed: seed,
        time: epoch,
        label: "root".into(),
    };
    let cmdline = boot::cmdline(&root_guid, hw);
    let esp = boot::esp_tree(
        &sd_boot,
        arch,
        &id.name,
        &id.version,
        &kernel_bytes,
        &initrd,
        &cmdline,
    )?;
    let esp_need = esp.content_bytes() + (8 << 20);
    if esp_need > hw.disk.esp_size.0 {
        bail!(
            "{}: disk.esp_size {} is too small for the kernel and initramfs ({} needed)",
            hw.path.display(),
            hw.disk.esp_size,
            ByteSize(esp_need)
        );
    }
    let mut plan = ext4::plan(&tree, &params)?;
    let layout = disk::layout(
        &ident,
        arch,
        hw.disk.esp_size.0,
        plan.size_bytes(),
        &hw.disk.partitions,
        fixed,
    )?;
    if fixed.is_some() {
        params.size = Some(layout.partitions[1].size);
        plan = ext4::plan(&tree, &params)?;
    }

    stages.next(&format!(
        "[{ident}] writing disk.raw ({} MiB)",
        layout.size >> 20
    ))?;
    let raw = work.join("disk.raw");
    {
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&raw)
            .with_context(|| format!("creating {}", raw.display()))?;
        f.set_len(layout.size)
            .with_context(|| format!("sizing {}", raw.display()))?;
        let espp = &layout.partitions[0];
        crate::fs::fat::write(
            disk::Window::new(&f, espp.offset, espp.size),
            &esp,
            u32::from_le_bytes(uuid[..4].try_into()?),
            "ESP",
            epoch,
        )
        .context("writing the ESP")?;
        let rootp = &layout.partitions[1];
        plan.write(&mut ext4::FileAt {
            file: &f,
            base: rootp.offset,
        })
        .context("writing the root filesystem")?;
        disk::write_gpt(&mut f, &layout)?;
        f.sync_all()
            .with_context(|| format!("writing {}", raw.display()))?;
    }
    let data_bytes = allocated(&raw)?;
    if let Some(budget) = profile.output.size_budget {
        if data_bytes > budget.0 {
            bail!("size budget exceeded: disk.raw holds {} of data, the profile allows {} ([output] size_budget in {})", ByteSize(data_bytes), budget, profile.path.display());
        }
    }
    for f in &profile.output.formats {
        let fmt = format!("{f:?}").to_lowercase();
        let name = format!("disk.{fmt}");
        stages.next(&format!("[{ident}] converting to {name}"))?;
        disk::convert(&raw, &work.join(&name), &fmt, &ident)?;
    }
    if profile.output.zstd {
        stages.next_plain(&format!(
            "[{ident}] compressing disk.raw.zst (level {})",
            profile.output.zstd_level.0
        ))?;
        let bar = stages.bytes(layout.size);
        bar.set_prefix("zstd");
        disk::compress_zstd(
            &raw,
            &work.join(image_dir::DISK_ZST),
            profile.output.zstd_level.0,
            &|n| bar.inc(n),
        )?;
        bar.finish_and_clear();
    }

    // Lockfile, SBOMs, provenance, manifest, signature.
    stages.next(&format!("[{ident}] SBOMs, provenance, manifest"))?;
    let lock = Lockfile {
        version: 1,
        target: vec![set.clone()],
    };
    fsx::write(&work.join(image_dir::LOCKFILE), lock.to_toml()?)?;
    let suite = &profile.distribution.suite;
    let added = trust::added_files(&tree);
    std::fs::write(
        work.join("sbom.spdx.json"),
        serde_json::to_string_pretty(&trust::spdx(
            &id.name,
            &id.version,
            suite,
            epoch,
            &ready,
            &added,
        ))? + "\n",
    )?;
    std::fs::write(
        work.join("sbom.cdx.json"),
        serde_json::to_string_pretty(&trust::cyclonedx(
            &id.name,
            &id.version,
            suite,
            epoch,
            &ready,
            &added,
        ))? + "\n",
    )?;
    let key = opts.key.as_deref();
    // Each artifact is hashed once: the provenance subjects and the manifest share the digests,
    // and disk.raw is read a single time for its own digest and its partitions'.
    let (raw_digest, part_digests) = disk::sha256_with_partitions(&raw, &layout)?;
    let mut digests: BTreeMap<String, (String, u64)> = BTreeMap::new();
    digests.insert("disk.raw".into(), raw_digest);
    for name in artifact_names(&work)? {
        if let std::collections::btree_map::Entry::Vacant(slot) = digests.entry(name) {
            let d = sha256_file(&work.join(slot.key()))?;
            slot.insert(d);
        }
    }
    let lock_digest = digests
        .get("packages.lock")
        .map(|(h, _)| h.clone())
        .context("packages.lock was not written")?;
    let outputs: Vec<(String, String)> = digests
        .iter()
        .map(|(n, (h, _))| (n.clone(), h.clone()))
        .collect();
    let statement = trust::provenance_statement(
        &outputs,
        json!({
            "profile": {"path": profile.path.display().to_string(), "sha256": profile_digest},
            "hardware": {"path": hw.path.display().to_string(), "sha256": hw_digest},
            "locked": opts.locked, "sourceDateEpoch": epoch,
        }),
        set.releases.iter().map(|(s, d)| json!({"uri": format!("{}/dists/{s}/InRelease", src.mirror_for(s)), "digest": {"sha256": d}}))
            .chain(std::iter::once(json!({"name": "packages.lock", "digest": {"sha256": lock_digest}})))
            .collect(),
        epoch,
    );
    std::fs::write(
        work.join("provenance.intoto.jsonl"),
        trust::canonical(&trust::dsse(&statement, key)) + "\n",
    )?;
    let manifest = manifest_json(
        &work,
        &mut digests,
        profile,
        hw,
        &id,
        &labels,
        &layout,
        &part_digests,
        &tree,
    )?;
    let text = manifest.to_canonical()?;
    fsx::write(&work.join(image_dir::MANIFEST), &text)?;
    if let Some(k) = &key {
        fsx::write(
            &work.join(image_dir::SIGNATURE),
            k.sign_bytes(text.as_bytes(), &manifest.trusted_comment()),
        )?;
    }
    crate::interrupt::check()?;
    // Replace the previous image only now that everything is complete.
    let final_dir = staging.publish()?;
    stages.end();
    log(
        opts.quiet,
        &format!(
            "[{ident}] done: {} ({} of data)",
            final_dir.display(),
            ByteSize(data_bytes)
        ),
    );
    Ok(Built {
        dir: final_dir,
        id: ident,
        data_bytes,
        layout,
        root_plan: Arc::new(plan),
        manifest,
    })
}

fn allocated(p: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(p)?.blocks() * 512)
}

fn artifact_names(dir: &Path) -> Result<Vec<String>> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| image_dir::is_artifact(n))
        .collect();
    v.sort();
    Ok(v)
}

/// Bytes of file content in the final image by where they came from: the package name, or
/// Ingot's own origin tags (`ingot:profile`, …), or `ingot` for files with none: what the
/// image really carries after sysprep and pruning, for `ingot inspect`.
fn contents_by_origin(tree: &Tree) -> BTreeMap<String, image_dir::Contribution> {
    let mut by: BTreeMap<String, image_dir::Contribution> = BTreeMap::new();
    for (_, e) in tree.iter() {
        if let crate::tree::Kind::File(c) = &e.kind {
            let key = if e.origin.is_empty() {
                "ingot".to_string()
            } else {
                e.origin.to_string()
            };
            let slot = by.entry(key).or_default();
            slot.bytes += c.len();
            slot.files += 1;
        }
    }
    by
}

#[allow(clippy::too_many_arguments)]
fn manifest_json(
    work: &Path,
    digests: &mut BTreeMap<String, (String, u64)>,
    profile: &Profile,
    hw: &Hardware,
    id: &Identity,
    labels: &BTreeMap<String, String>,
    layout: &disk::Layout,
    part_digests: &[String],
    tree: &Tree,
) -> Result<Manifest> {
    let mut artifacts = BTreeMap::new();
    for name in artifact_names(work)? {
        if !digests.contains_key(&name) {
            let d = sha256_file(&work.join(&name))
                .with_context(|| format!("hashing {}", work.join(&name).display()))?;
            digests.insert(name.clone(), d);
        }
        let (sha256, size) = digests[&name].clone();
        artifacts.insert(name, image_dir::Artifact { sha256, size });
    }
    let partitions = layout
        .partitions
        .iter()
        .zip(part_digests)
        .map(|(p, sha)| image_dir::PartitionRecord {
            name: p.name.clone(),
            type_guid: p.type_guid.clone(),
            guid: p.guid.clone(),
            offset: p.offset,
            size: p.size,
            sha256: sha.clone(),
        })
        .collect();
    Ok(Manifest {
        image: id.name.clone(),
        version: id.version.clone(),
        arch: id.arch.clone(),
        id: id.id(),
        description: profile.image.description.clone(),
        hardware: image_dir::HardwareRef {
            name: hw.name.clone(),
            file: hw
                .path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned()),
        },
        boot: image_dir::BootSpec {
            hardware: hw.clone(),
            firmware: config::firmware_for(hw)?,
        },
        labels: labels.clone(),
        artifacts,
        disk: image_dir::DiskRecord {
            guid: layout.disk_guid.clone(),
            size: layout.size,
            partitions,
        },
        lockfile_sha256: digests
            .get(image_dir::LOCKFILE)
            .map(|d| d.0.clone())
            .context("packages.lock was not written")?,
        ingot_version: env!("CARGO_PKG_VERSION").to_string(),
        source_date_epoch: id.epoch,
        contents: contents_by_origin(tree),
        sysprep: image_dir::SysprepRecord {
            identity: sysprep::identity_report(tree),
            operations: sysprep::OPERATIONS
                .iter()
                .map(|(k, _)| (*k).to_string())
                .collect(),
        },
    })
}
