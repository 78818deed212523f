//! `ingot inspect DIR`: partitions, labels, identity-bearing files and the biggest contributors
//! to the root filesystem, from the image's manifest.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::json;

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
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"manifest": m, "identity": identity, "largest_packages": sizes.iter().take(15).collect::<Vec<_>>()})
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
