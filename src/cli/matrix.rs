//! `ingot matrix`: the build matrix in the `include:` shape CI systems read.

use std::path::PathBuf;

use anyhow::Result;

/// `matrix`: one `include:` entry per (profile, hardware), checked as a build would.
pub fn matrix(profiles: &[PathBuf], hardware: &[PathBuf]) -> Result<()> {
    let mut include = Vec::new();
    for p in profiles {
        let prof = crate::config::load_profile(p)?;
        for h in hardware {
            let hw = crate::config::load_hardware_for(p, h)?;
            let h = &hw.path;
            include.push(serde_json::json!({
                "profile": p.display().to_string(),
                "hardware": h.display().to_string(),
                "image": prof.image.name,
                "version": prof.image.version.0,
                "tag": crate::registry::reference::version_tag(&prof.image.version.0),
                "arch": hw.arch.name(),
                "hardware_name": hw.name,
                "id": format!("{}-{}-{}", prof.image.name, prof.image.version.0, hw.arch.name()),
                "ab": hw.ab.is_some(),
            }));
        }
    }
    // The name to upload a runner's image directory under: its id, unless two entries share
    // it (two hardware profiles of one arch build the same directory name), then with the
    // hardware's name, so neither replaces the other when a later job gathers them.
    let ids: Vec<String> = include
        .iter()
        .map(|e| e["id"].as_str().unwrap_or_default().to_string())
        .collect();
    for e in &mut include {
        let id = e["id"].as_str().unwrap_or_default().to_string();
        let artifact = if ids.iter().filter(|i| **i == id).count() > 1 {
            format!("{id}-{}", e["hardware_name"].as_str().unwrap_or_default())
        } else {
            id
        };
        e["artifact"] = serde_json::Value::String(artifact);
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({ "include": include }))?
    );
    Ok(())
}
