//! depmod, declaratively: Debian's kernel packages ship no `modules.dep` (their postinst runs
//! depmod). Ingot reads each module's ELF `.modinfo` section and writes `modules.dep` and
//! `modules.alias` in depmod's text format.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;

use crate::tree::{Entry, Kind, Tree};

fn u16le(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}
fn u32le(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn u64le(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

/// The `key=value` strings of an ELF64 little-endian module's `.modinfo` section. Every offset
/// is bounds-checked; a malformed file yields `None`.
pub fn modinfo(elf: &[u8]) -> Option<Vec<(String, String)>> {
    if elf.get(0..4)? != b"\x7fELF" || *elf.get(4)? != 2 || *elf.get(5)? != 1 {
        return None;
    }
    let shoff = usize::try_from(u64le(elf, 0x28)?).ok()?;
    let shentsize = usize::from(u16le(elf, 0x3A)?);
    let shnum = usize::from(u16le(elf, 0x3C)?);
    let shstrndx = usize::from(u16le(elf, 0x3E)?);
    let sect = |i: usize| -> Option<(u32, usize, usize)> {
        let h = shoff.checked_add(i.checked_mul(shentsize)?)?;
        let off = usize::try_from(u64le(elf, h + 0x18)?).ok()?;
        let size = usize::try_from(u64le(elf, h + 0x20)?).ok()?;
        elf.get(off..off.checked_add(size)?)?;
        Some((u32le(elf, h)?, off, size))
    };
    let (_, stroff, strsize) = sect(shstrndx)?;
    let names = &elf[stroff..stroff + strsize];
    for i in 0..shnum {
        let (name, off, size) = sect(i)?;
        let n = names.get(name as usize..)?;
        let end = n.iter().position(|&c| c == 0)?;
        if &n[..end] == b".modinfo" {
            return Some(
                elf[off..off + size]
                    .split(|&c| c == 0)
                    .filter_map(|kv| {
                        std::str::from_utf8(kv)
                            .ok()?
                            .split_once('=')
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                    })
                    .collect(),
            );
        }
    }
    None
}

/// Module names a module's `depends=` fields list.
fn depends(mi: &[(String, String)]) -> impl Iterator<Item = String> + '_ {
    mi.iter()
        .filter(|(k, _)| k == "depends")
        .flat_map(|(_, v)| v.split(',').filter(|s| !s.is_empty()).map(str::to_string))
}

/// Module file suffixes: plain, and compressed as kernels built with `MODULE_COMPRESS` ship
/// them (the kernel or kmod decompresses them when loading).
const MODULE_SUFFIXES: &[&str] = &[".ko", ".ko.xz", ".ko.zst", ".ko.gz"];

/// Is this path a kernel module file?
fn is_module(path: &str) -> bool {
    MODULE_SUFFIXES.iter().any(|s| path.ends_with(s))
}

/// The module name a file's name gives (`virtio-blk.ko.xz` is `virtio_blk`).
fn file_module_name(rel: &str) -> String {
    let file = rel.rsplit('/').next().unwrap_or("");
    MODULE_SUFFIXES
        .iter()
        .find_map(|s| file.strip_suffix(s))
        .unwrap_or(file)
        .replace('-', "_")
}

/// Write `modules.dep` and `modules.alias` for the modules present in the tree.
pub fn depmod(tree: &mut Tree, release: &str) -> Result<usize> {
    let base = format!("usr/lib/modules/{release}/");
    let files: Vec<String> = tree
        .iter()
        .filter(|(p, e)| p.starts_with(&base) && is_module(p) && matches!(e.kind, Kind::File(_)))
        .map(|(p, _)| p.clone())
        .collect();
    let mut by_name: BTreeMap<String, String> = BTreeMap::new();
    let mut info: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for p in &files {
        let data = tree.read(p).unwrap_or_default();
        // Debian 13's kernels compress every module (xz): `.modinfo` is read from the
        // decompressed ELF file. One that does not decompress gets no dependencies, as an
        // unreadable plain one does.
        let data = super::decompress_module(p, data).unwrap_or_default();
        let mi = modinfo(&data).unwrap_or_default();
        let rel = p[base.len()..].to_string();
        let name = mi
            .iter()
            .find(|(k, _)| k == "name")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| file_module_name(&rel));
        // `-` and `_` are one character in module names: `depends=` may spell a name
        // (curve25519-x86_64) otherwise than the module's own `name=` (curve25519_x86_64).
        by_name.insert(name.replace('-', "_"), rel.clone());
        info.push((rel, mi));
    }
    let mut dep = String::new();
    let mut alias = String::from("# Aliases extracted from modules themselves.\n");
    for (rel, mi) in &info {
        // Direct dependencies first, then theirs (depmod lists the full closure).
        let mut closure: Vec<String> = Vec::new();
        let mut stack: Vec<String> = depends(mi).collect();
        while let Some(d) = stack.pop() {
            let Some(path) = by_name.get(&d.replace('-', "_")) else {
                continue;
            };
            if closure.contains(path) {
                continue;
            }
            closure.push(path.clone());
            if let Some((_, dmi)) = info.iter().find(|(r, _)| r == path) {
                stack.extend(depends(dmi));
            }
        }
        dep.push_str(&format!(
            "{rel}:{}{}\n",
            if closure.is_empty() { "" } else { " " },
            closure.join(" ")
        ));
        let name = file_module_name(rel);
        for (_, a) in mi.iter().filter(|(k, _)| k == "alias") {
            alias.push_str(&format!("alias {a} {name}\n"));
        }
    }
    tree.insert(&format!("{base}modules.dep"), Entry::file(dep, 0o644))?;
    tree.insert(&format!("{base}modules.alias"), Entry::file(alias, 0o644))?;
    Ok(files.len())
}

/// After pruning: `modules.dep` and `modules.alias` narrowed to the modules still in the
/// tree, as [`depmod`] would write them for it, without reading any module again (for a
/// Debian 13 kernel that would mean decompressing every kept module a second time). Pruning
/// keeps each kept module's dependencies, so every remaining line stays whole.
pub fn retain_present(tree: &mut Tree, release: &str) -> Result<()> {
    let base = format!("usr/lib/modules/{release}/");
    let read = |name: &str| {
        String::from_utf8_lossy(&tree.read(&format!("{base}{name}")).unwrap_or_default())
            .into_owned()
    };
    let (dep, alias) = (read("modules.dep"), read("modules.alias"));
    let mut names = BTreeSet::new();
    let mut kept_dep = String::new();
    for line in dep.lines() {
        let m = line.split(':').next().unwrap_or("");
        if tree.get(&format!("{base}{m}")).is_some() {
            names.insert(file_module_name(m));
            kept_dep.push_str(line);
            kept_dep.push('\n');
        }
    }
    let kept_alias: String = alias
        .lines()
        .filter(|l| l.starts_with('#') || l.rsplit(' ').next().is_some_and(|n| names.contains(n)))
        .map(|l| format!("{l}\n"))
        .collect();
    tree.insert(&format!("{base}modules.dep"), Entry::file(kept_dep, 0o644))?;
    tree.insert(
        &format!("{base}modules.alias"),
        Entry::file(kept_alias, 0o644),
    )?;
    Ok(())
}

/// The binary indexes libkmod reads (`modules.dep.bin`, `modules.alias.bin`,
/// `modules.symbols.bin`, `modules.builtin.bin`, …), which only depmod writes: made at build
/// time by the host's depmod (Debian package kmod) over a copy of the image's final module
/// tree, so a systemd image does not spend its first boot indexing modules (12.7 s of a
/// vm-cloud boot under TCG). depmod reads modules of any architecture.
pub fn binary_indexes(tree: &mut Tree, release: &str) -> Result<usize> {
    use anyhow::Context;
    let base = format!("usr/lib/modules/{release}/");
    let scratch = crate::base::fsx::scratch_dir("ingot-depmod")?;
    let root = scratch.path().join("lib/modules").join(release);
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let files: Vec<String> = tree
        .iter()
        .filter(|(p, e)| p.starts_with(&base) && matches!(e.kind, Kind::File(_)))
        .map(|(p, _)| p.clone())
        .collect();
    for p in &files {
        let rel = &p[base.len()..];
        // Ingot's own text indexes are made again by depmod.
        if rel.starts_with("modules.")
            && !rel.starts_with("modules.builtin")
            && rel != "modules.order"
        {
            continue;
        }
        tree.copy_out(p, &root.join(rel))?;
    }
    let depmod = ["/usr/sbin/depmod", "/sbin/depmod"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("depmod");
    crate::base::tool::run(
        std::process::Command::new(depmod)
            .arg("-b")
            .arg(scratch.path())
            .arg(release)
            .env("LC_ALL", "C"),
        "kmod",
        &format!("depmod for kernel {release} failed"),
    )?;
    let mut n = 0;
    let mut made: Vec<String> = std::fs::read_dir(&root)
        .with_context(|| format!("reading {}", root.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("modules.") && !files.contains(&format!("{base}{name}")))
        .collect();
    // Ingot's text modules.dep and modules.alias give way to depmod's.
    made.extend(["modules.dep".to_string(), "modules.alias".to_string()]);
    made.sort();
    made.dedup();
    for name in made {
        let f = root.join(&name);
        let data = std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?;
        tree.insert(&format!("{base}{name}"), Entry::file(data, 0o644))?;
        n += 1;
    }
    Ok(n)
}

/// A module file for tests elsewhere: an ELF file whose `.modinfo` holds `fields`.
#[cfg(test)]
pub(crate) use tests::module as test_module;

#[cfg(test)]
mod tests {
    #[test]
    fn rejects_garbage() {
        assert!(super::modinfo(b"not an elf").is_none());
        let mut e = vec![0u8; 64];
        e[..6].copy_from_slice(b"\x7fELF\x02\x01");
        e[0x28] = 0xFF; // section headers past the end
        assert!(super::modinfo(&e).is_none());
    }

    /// A minimal ELF64 little-endian file whose `.modinfo` section holds `fields`.
    pub(crate) fn module(fields: &[&str]) -> Vec<u8> {
        let shstrtab = b"\0.shstrtab\0.modinfo\0".to_vec();
        let modinfo: Vec<u8> = fields
            .iter()
            .flat_map(|f| [f.as_bytes(), b"\0"].concat())
            .collect();
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let str_at = elf.len();
        elf.extend(&shstrtab);
        let info_at = elf.len();
        elf.extend(&modinfo);
        let shoff = elf.len();
        elf[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        elf[0x3A..0x3C].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3C..0x3E].copy_from_slice(&3u16.to_le_bytes());
        elf[0x3E..0x40].copy_from_slice(&1u16.to_le_bytes());
        for (name, at, len) in [
            (0u32, 0, 0),
            (1, str_at, shstrtab.len()),
            (11, info_at, modinfo.len()),
        ] {
            let mut h = vec![0u8; 64];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&(at as u64).to_le_bytes());
            h[0x20..0x28].copy_from_slice(&(len as u64).to_le_bytes());
            elf.extend(h);
        }
        elf
    }

    #[test]
    fn compressed_modules_are_indexed_like_plain_ones() {
        use crate::tree::{Entry, Tree};
        use std::io::Write;
        let xz = |b: Vec<u8>| {
            let mut e = xz2::write::XzEncoder::new(Vec::new(), 6);
            e.write_all(&b).unwrap();
            e.finish().unwrap()
        };
        let k = "usr/lib/modules/6.12.0-1-amd64";
        let mut t = Tree::new();
        let files = [
            (
                "kernel/drivers/virtio/virtio.ko.xz",
                xz(module(&["name=virtio", "depends="])),
            ),
            (
                "kernel/drivers/block/virtio_blk.ko.xz",
                xz(module(&[
                    "alias=virtio:d00000002v*",
                    "depends=virtio_ring,virtio",
                    "name=virtio_blk",
                ])),
            ),
            (
                "kernel/drivers/virtio/virtio_ring.ko.zst",
                zstd::encode_all(&module(&["depends=virtio"])[..], 3).unwrap(),
            ),
            ("kernel/fs/fat/vfat-x.ko", module(&["depends=fat"])),
            // A dependency spelt with `-` whose module names itself with `_`.
            (
                "kernel/drivers/net/wireguard/wireguard.ko.xz",
                xz(module(&["depends=curve25519-x86_64", "name=wireguard"])),
            ),
            (
                "kernel/arch/x86/crypto/curve25519-x86_64.ko.xz",
                xz(module(&["name=curve25519_x86_64"])),
            ),
            ("kernel/fs/fat/fat.ko.gz", {
                let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                g.write_all(&module(&["name=fat"])).unwrap();
                g.finish().unwrap()
            }),
        ];
        for (p, data) in files {
            t.insert(&format!("{k}/{p}"), Entry::file(data, 0o644))
                .unwrap();
        }
        assert_eq!(super::depmod(&mut t, "6.12.0-1-amd64").unwrap(), 7);
        let dep = String::from_utf8(t.read(&format!("{k}/modules.dep")).unwrap()).unwrap();
        let line = |m: &str| {
            dep.lines()
                .find(|l| l.starts_with(&format!("{m}:")))
                .unwrap_or_else(|| panic!("{m} missing from\n{dep}"))
                .to_string()
        };
        let blk = line("kernel/drivers/block/virtio_blk.ko.xz");
        assert!(
            blk.contains("kernel/drivers/virtio/virtio_ring.ko.zst"),
            "{blk}"
        );
        assert!(blk.contains(" kernel/drivers/virtio/virtio.ko.xz"), "{blk}");
        assert_eq!(
            line("kernel/drivers/virtio/virtio.ko.xz"),
            "kernel/drivers/virtio/virtio.ko.xz:"
        );
        assert_eq!(
            line("kernel/fs/fat/vfat-x.ko"),
            "kernel/fs/fat/vfat-x.ko: kernel/fs/fat/fat.ko.gz"
        );
        assert_eq!(
            line("kernel/drivers/net/wireguard/wireguard.ko.xz"),
            "kernel/drivers/net/wireguard/wireguard.ko.xz: kernel/arch/x86/crypto/curve25519-x86_64.ko.xz"
        );
        let alias = String::from_utf8(t.read(&format!("{k}/modules.alias")).unwrap()).unwrap();
        assert!(
            alias.contains("alias virtio:d00000002v* virtio_blk\n"),
            "{alias}"
        );
        // Narrowed after a pruning that kept dependencies, the index is what depmod writes
        // for the pruned tree.
        let mut pruned = t.clone();
        for m in [
            "kernel/fs/fat/vfat-x.ko",
            "kernel/fs/fat/fat.ko.gz",
            "kernel/drivers/block/virtio_blk.ko.xz",
        ] {
            pruned.remove(&format!("{k}/{m}"));
        }
        let mut fresh = pruned.clone();
        super::retain_present(&mut pruned, "6.12.0-1-amd64").unwrap();
        super::depmod(&mut fresh, "6.12.0-1-amd64").unwrap();
        for f in ["modules.dep", "modules.alias"] {
            let (a, b) = (
                pruned.read(&format!("{k}/{f}")),
                fresh.read(&format!("{k}/{f}")),
            );
            assert_eq!(a, b, "{f}");
        }
        assert!(
            !String::from_utf8(pruned.read(&format!("{k}/modules.alias")).unwrap())
                .unwrap()
                .contains("virtio_blk")
        );
        // The names a boot resolves go through the same index.
        let order = crate::boot::resolve_modules(
            &t,
            "6.12.0-1-amd64",
            &["virtio_blk".into(), "vfat_x".into()],
            "hw.toml",
        )
        .unwrap();
        assert_eq!(
            order,
            [
                "kernel/drivers/virtio/virtio.ko.xz",
                "kernel/drivers/virtio/virtio_ring.ko.zst",
                "kernel/drivers/block/virtio_blk.ko.xz",
                "kernel/fs/fat/fat.ko.gz",
                "kernel/fs/fat/vfat-x.ko",
            ]
        );
    }
}
