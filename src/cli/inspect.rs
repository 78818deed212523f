//! `ingot inspect DIR`: partitions, labels, identity-bearing files and the biggest contributors
//! to the root filesystem, from the image's manifest.

use std::path::Path;

use anyhow::Result;
use serde_json::json;

use crate::config::ByteSize;
use crate::image_dir::ImageDir;

/// Print an image directory's report (text, or JSON with `as_json`).
pub fn inspect(image: &Path, as_json: bool) -> Result<()> {
    let dir = ImageDir::open(image)?;
    let m = &dir.manifest;
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
