//! `ingot inspect DIR`: partitions, labels, identity-bearing files and the biggest contributors
//! to the root filesystem, from the image's manifest.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::bundle::Bundle;
use crate::config::ByteSize;
use crate::image_dir::ImageDir;

/// Print an image directory's report (text, or JSON with `as_json`).
pub fn inspect(image: &Path, as_json: bool) -> Result<()> {
    let dir = ImageDir::open(image)?;
    let m = &dir.manifest;
    // The report is of the disk, not only of the manifest: read its partition table and
    // refuse a disk that is not the one the manifest describes.
    disk_matches_manifest(&dir)?;
    // Bytes each package (or Ingot itself) contributes to the image, as the build recorded
    // them after sysprep and module pruning.
    let mut sizes: Vec<(u64, String)> = m
        .contents
        .iter()
        .map(|(k, v)| (v.bytes, k.clone()))
        .collect();
    sizes.sort_by(|a, b| b.cmp(a));
    let identity = &m.sysprep.identity;
    let bundle = match m.artifacts.contains_key(crate::image_dir::BUNDLE) {
        true => Some(Bundle::read(&dir.file(crate::image_dir::BUNDLE))?),
        false => None,
    };
    // Delta bundles: (file, bundle, bytes of the file).
    let mut deltas = Vec::new();
    for (name, a) in &m.artifacts {
        if crate::image_dir::is_delta_bundle(name) {
            deltas.push((name.clone(), Bundle::read(&dir.file(name))?, a.size));
        }
    }
    let full_size = m
        .artifacts
        .get(crate::image_dir::BUNDLE)
        .map_or(0, |a| a.size);
    if as_json {
        let b = bundle.as_ref().map(|b| {
            let bm = &b.manifest;
            json!({"image": bm.image, "version": bm.version, "arch": bm.arch, "hardware": bm.hardware,
                   "min_version": bm.min_version, "signed": b.signature.is_some(),
                   "rootfs": {"sha256": bm.rootfs.0, "size": bm.rootfs.1},
                   "members": b.members.iter().map(|f| json!({"name": f.name, "sha256": f.sha256, "size": f.size})).collect::<Vec<_>>()})
        });
        let d: Vec<_> = deltas
            .iter()
            .map(|(name, b, size)| {
                let base = b.manifest.delta.as_ref();
                json!({"file": name, "size": size, "full_size": full_size,
                       "ratio": if full_size > 0 { *size as f64 / full_size as f64 } else { 0.0 },
                       "base_version": base.map(|d| d.base_version.clone()),
                       "base_rootfs": base.map(|d| json!({"sha256": d.base_rootfs.0, "size": d.base_rootfs.1})),
                       "memory": base.map(|d| d.memory),
                       "members": b.members.iter().map(|f| json!({"name": f.name, "sha256": f.sha256, "size": f.size})).collect::<Vec<_>>()})
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"manifest": m, "identity": identity, "largest_packages": sizes.iter().take(15).collect::<Vec<_>>(), "update_bundle": b, "delta_bundles": d})
            )?
        );
        return Ok(());
    }
    println!("image     {} {} ({})", m.image, m.version, m.arch);
    println!("hardware  {}", m.hardware.name);
    println!("disk      {} bytes, GUID {}", m.disk.size, m.disk.guid);
    for p in &m.disk.partitions {
        println!(
            "  {:<8} type {} guid {} offset {} size {}",
            p.name, p.type_guid, p.guid, p.offset, p.size
        );
    }
    if let Some(b) = &bundle {
        let bm = &b.manifest;
        b.check(None)
            .with_context(|| dir.file(crate::image_dir::BUNDLE).display().to_string())?;
        println!(
            "update bundle  {} {} for {} ({}), installs over {} and later; {}",
            bm.image,
            bm.version,
            bm.hardware,
            bm.arch,
            bm.min_version,
            if b.signature.is_some() {
                "signed"
            } else {
                "unsigned"
            }
        );
        println!(
            "  root image {} uncompressed, sha256 {}",
            ByteSize(bm.rootfs.1),
            bm.rootfs.0
        );
        print_members(b);
    }
    for (name, b, size) in &deltas {
        b.check(None)
            .with_context(|| dir.file(name).display().to_string())?;
        if let Some(d) = &b.manifest.delta {
            println!(
                "delta bundle   {name}: {} from {} (root image sha256 {}), {} against {} full ({:.1}%, saves {}); needs {} of memory on the device",
                b.manifest.version,
                d.base_version,
                d.base_rootfs.0,
                ByteSize(*size),
                ByteSize(full_size),
                *size as f64 * 100.0 / full_size.max(1) as f64,
                ByteSize(full_size.saturating_sub(*size)),
                ByteSize(d.memory)
            );
            print_members(b);
        }
    }
    println!("labels");
    for (k, v) in &m.labels {
        println!("  {k} = {v}");
    }
    println!("identity-bearing files (checked after sysprep)");
    for (p, s) in identity {
        println!("  {p:<40} {s}");
    }
    let total: u64 = sizes.iter().map(|(s, _)| s).sum();
    println!(
        "largest contributors (file bytes in the root filesystem; {} in all)",
        ByteSize(total)
    );
    for (s, n) in sizes.iter().take(15) {
        println!("  {:>10}  {n}", ByteSize(*s).to_string());
    }
    Ok(())
}

/// The disk's own GPT must be the one the manifest records: same size, disk GUID and
/// partitions (name, type, GUID, offset, size).
fn disk_matches_manifest(dir: &ImageDir) -> Result<()> {
    let disk = dir.disk();
    let m = &dir.manifest;
    let len = std::fs::metadata(&disk)
        .with_context(|| format!("reading {}", disk.display()))?
        .len();
    if len != m.disk.size {
        bail!(
            "{}: {len} bytes, but manifest.json says the disk has {}",
            disk.display(),
            m.disk.size
        );
    }
    let (guid, parts) = crate::disk::read_gpt(&disk)?;
    let found: Vec<(String, String, String, u64, u64)> = parts
        .into_iter()
        .map(|p| (p.name, p.type_guid, p.guid, p.offset, p.size))
        .collect();
    let recorded: Vec<(String, String, String, u64, u64)> = m
        .disk
        .partitions
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                p.type_guid.to_uppercase(),
                p.guid.to_uppercase(),
                p.offset,
                p.size,
            )
        })
        .collect();
    if guid != m.disk.guid.to_uppercase() || found != recorded {
        bail!(
            "{}: the partition table on the disk does not match manifest.json (disk GUID {guid}, partitions {found:?})",
            disk.display()
        );
    }
    Ok(())
}

/// A bundle's members, one line each: name, size, digest.
fn print_members(b: &Bundle) {
    for f in &b.members {
        println!(
            "  {:<20} {:>10}  sha256 {}",
            f.name,
            ByteSize(f.size).to_string(),
            f.sha256
        );
    }
}
