//! Kernel modules: resolving names and aliases to files in load order through `modules.dep`,
//! decompressing them for the initramfs, and pruning the module tree to what the image needs.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};

use super::{kmod, Kernel};
use crate::config::Hardware;
use crate::tree::{Kind, Tree};

fn canon(name: &str) -> String {
    name.replace('-', "_")
}

pub(super) fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    canon(file.split(".ko").next().unwrap_or(file))
}

fn glob(pattern: &str, s: &str) -> bool {
    let (p, s) = (pattern.as_bytes(), s.as_bytes());
    let (mut pi, mut si, mut star, mut mark) = (0, 0, None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            pi += 1;
            mark = si;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// A wanted module the kernel has neither as a module, nor as an alias, nor built in.
#[derive(Debug, thiserror::Error)]
#[error("{label}: modules: kernel {release} has no module or alias `{name}`{hint}")]
pub struct NoModule {
    label: String,
    release: String,
    name: String,
    hint: String,
}

/// [`resolve_modules`] for a list a file gives under `field`: a module the kernel lacks is an
/// error of that file at its item (the first of `files` that lists it), bad input (exit 2).
fn resolve_listed(
    tree: &Tree,
    release: &str,
    wanted: &[String],
    label: &str,
    (files, field): (&[&Path], &str),
) -> Result<Vec<String>> {
    resolve_modules(tree, release, wanted, label).map_err(|e| match e.downcast::<NoModule>() {
        Ok(n) => {
            let message = format!(
                "{field}: kernel {} has no module or alias `{}`{}",
                n.release, n.name, n.hint
            );
            match crate::config::rule_at_item(files, "modules", |i| i == n.name, message) {
                Some(located) => located.into(),
                None => n.into(),
            }
        }
        Err(e) => e,
    })
}

/// [`resolve_listed`] for the hardware profile's initramfs modules.
pub fn resolve_initramfs_modules(tree: &Tree, release: &str, hw: &Hardware) -> Result<Vec<String>> {
    let label = hw.path.display().to_string();
    let files = [hw.path.as_path()];
    resolve_listed(
        tree,
        release,
        &hw.initramfs_modules(),
        &label,
        (&files, "modules"),
    )
}

/// Resolve module names (or aliases) to module paths in load order, dependencies first.
pub fn resolve_modules(
    tree: &Tree,
    release: &str,
    wanted: &[String],
    hw_file: &str,
) -> Result<Vec<String>> {
    let base = format!("usr/lib/modules/{release}");
    let dep_text = tree
        .read(&format!("{base}/modules.dep"))
        .with_context(|| format!("kernel {release} has no modules.dep"))?;
    let dep_text = String::from_utf8_lossy(&dep_text);
    let mut deps: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for line in dep_text.lines() {
        if let Some((m, rest)) = line.split_once(':') {
            let d: Vec<String> = rest.split_whitespace().map(str::to_string).collect();
            deps.insert(module_name(m), (m.to_string(), d));
        }
    }
    let builtin: BTreeSet<String> = tree
        .read(&format!("{base}/modules.builtin"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .lines()
                .map(module_name)
                .collect()
        })
        .unwrap_or_default();
    let aliases: Vec<(String, String)> = tree
        .read(&format!("{base}/modules.alias"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .lines()
                .filter_map(|l| {
                    let mut w = l.split_whitespace();
                    (w.next() == Some("alias")).then_some(())?;
                    Some((w.next()?.to_string(), canon(w.next()?)))
                })
                .collect()
        })
        .unwrap_or_default();
    let walk = Walk {
        tree,
        base: &base,
        deps: &deps,
        builtin: &builtin,
        aliases: &aliases,
    };
    let mut order: Vec<String> = Vec::new();
    let mut seen = BTreeSet::new();
    for w in wanted {
        let name = canon(w);
        if deps.contains_key(&name) {
            walk.visit(&name, &mut seen, &mut order);
        } else if builtin.contains(&name) {
            continue;
        } else if let Some((_, m)) = aliases.iter().find(|(pat, _)| glob(pat, w)) {
            walk.visit(m, &mut seen, &mut order);
        } else {
            let mut close: Vec<(f64, &String)> = deps
                .keys()
                .map(|k| (strsim::jaro_winkler(&name, k), k))
                .filter(|(s, _)| *s > 0.85)
                .collect();
            close.sort_by(|a, b| b.0.total_cmp(&a.0));
            let hint = close
                .first()
                .map(|(_, k)| format!("; did you mean `{k}`?"))
                .unwrap_or_default();
            return Err(NoModule {
                label: hw_file.to_string(),
                release: release.to_string(),
                name: w.clone(),
                hint,
            }
            .into());
        }
    }
    Ok(order)
}

/// The kernel's module indexes, walked from a wanted module to its load order.
struct Walk<'a> {
    tree: &'a Tree,
    base: &'a str,
    /// Module name → (path, every module it needs, from `modules.dep`).
    deps: &'a BTreeMap<String, (String, Vec<String>)>,
    builtin: &'a BTreeSet<String>,
    /// (alias pattern, module name), from `modules.alias`.
    aliases: &'a [(String, String)],
}

impl Walk<'_> {
    /// Add module `m` after what it needs: its `modules.dep` line, then the modules its
    /// `softdep=pre:` names, by name or by exact alias (each module offering it, as modprobe
    /// loads them). ext4 needs a crc32c driver loaded first: in Debian's generic kernels,
    /// where ext4 is a module, /init's mount failed with "Cannot load crc32c driver".
    fn visit(&self, m: &str, seen: &mut BTreeSet<String>, order: &mut Vec<String>) {
        let Some((path, d)) = self.deps.get(m) else {
            return;
        };
        if !seen.insert(m.to_string()) {
            return;
        }
        for dep in d {
            self.visit(&module_name(dep), seen, order);
        }
        for soft in self.soft_pre(path) {
            let name = canon(&soft);
            if self.deps.contains_key(&name) {
                self.visit(&name, seen, order);
            } else if !self.builtin.contains(&name) {
                for (_, by) in self.aliases.iter().filter(|(a, _)| *a == soft) {
                    self.visit(by, seen, order);
                }
            }
        }
        order.push(path.clone());
    }

    /// The names after `pre:` in a module's `softdep=` fields (`pre: crc32c post: x`).
    fn soft_pre(&self, path: &str) -> Vec<String> {
        let file = format!("{}/{path}", self.base);
        let data = self.tree.read(&file).unwrap_or_default();
        let data = decompress_module(path, data).unwrap_or_default();
        let mut out = Vec::new();
        for (_, v) in super::kmod::modinfo(&data)
            .unwrap_or_default()
            .iter()
            .filter(|(k, _)| k == "softdep")
        {
            let mut pre = false;
            for w in v.split_whitespace() {
                if let Some(section) = w.strip_suffix(':') {
                    pre = section == "pre";
                } else if pre {
                    out.push(w.to_string());
                }
            }
        }
        out
    }
}

pub(crate) fn decompress_module(path: &str, data: Vec<u8>) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    if path.ends_with(".xz") {
        xz2::read::XzDecoder::new(&data[..]).read_to_end(&mut out)?;
    } else if path.ends_with(".zst") {
        out = zstd::decode_all(&data[..])?;
    } else if path.ends_with(".gz") {
        flate2::read::GzDecoder::new(&data[..]).read_to_end(&mut out)?;
    } else {
        return Ok(data);
    }
    Ok(out)
}

/// Remove kernel modules the image does not need (hardware profiles with `prune_modules`):
/// all but `keep_files`, the modules under `keep_dirs`, and every module those depend on by
/// the kernel's `modules.dep` (read before the pruning), wherever it lies. A kept module
/// whose dependency was pruned would fail to load ("Unknown symbol"): wireguard needs the
/// curve25519 code under arch/, isofs and udf need cdrom, hv_sock needs hv_vmbus.
fn prune_modules(tree: &mut Tree, release: &str, keep_files: &[String], keep_dirs: &[String]) {
    let base = format!("usr/lib/modules/{release}/");
    let files: Vec<String> = tree
        .iter()
        .filter(|(p, e)| {
            p.starts_with(&base) && p.contains(".ko") && matches!(e.kind, Kind::File(_))
        })
        .map(|(p, _)| p[base.len()..].to_string())
        .collect();
    let mut keep: BTreeSet<String> = files
        .iter()
        .filter(|rel| {
            keep_files.iter().any(|k| k == *rel)
                || keep_dirs
                    .iter()
                    .any(|d| rel.starts_with(&format!("kernel/{d}")))
        })
        .cloned()
        .collect();
    // modules.dep lists each module's whole dependency closure on its line.
    let dep = tree.read(&format!("{base}modules.dep")).unwrap_or_default();
    for line in String::from_utf8_lossy(&dep).lines() {
        if let Some((m, deps)) = line.split_once(':') {
            if keep.contains(m) {
                keep.extend(deps.split_whitespace().map(str::to_string));
            }
        }
    }
    for rel in files.iter().filter(|r| !keep.contains(*r)) {
        tree.remove(&format!("{base}{rel}"));
    }
}

/// Modules an A/B image needs beyond its hardware's: overlayfs for the initramfs's writable
/// /etc and /var, FAT for the updater to bless boots and install kernels on the ESP, and the
/// software watchdog. Those the kernel lacks (or builds in) are skipped.
pub const OTA_MODULES: &[&str] = &[
    "overlay",
    "fat",
    "vfat",
    "nls_cp437",
    "nls_ascii",
    "nls_utf8",
    "softdog",
];

/// The OTA modules this kernel has as loadable files, dependencies first.
fn ota_module_files(tree: &Tree, release: &str) -> Vec<String> {
    let mut out = Vec::new();
    for m in OTA_MODULES {
        if let Ok(files) = resolve_modules(tree, release, &[(*m).to_string()], "") {
            out.extend(files);
        }
    }
    out
}

/// Index the kernel's modules, and keep only those the image needs: the profile's `[kernel]
/// modules` plus the initramfs set when the profile names any, else the initramfs set (and the
/// hardware's kept directories) when the hardware asks for pruning.
pub fn prune_modules_for(
    tree: &mut Tree,
    kernel: &Kernel,
    profile: &crate::config::Profile,
    hw: &Hardware,
) -> Result<()> {
    kmod::depmod(tree, &kernel.release)?;
    let mut init_modules = resolve_initramfs_modules(tree, &kernel.release, hw)?;
    if hw.ab.is_some() {
        init_modules.extend(ota_module_files(tree, &kernel.release));
    }
    if let Some(wanted) = &profile.kernel.modules {
        // The profile names what the running system needs: keep that and the initramfs set.
        let mut keep = resolve_listed(
            tree,
            &kernel.release,
            wanted,
            &format!("{} [kernel]", profile.path.display()),
            (&profile.files(), "kernel.modules"),
        )?;
        keep.extend(init_modules.iter().cloned());
        prune_modules(tree, &kernel.release, &keep, &[]);
        kmod::retain_present(tree, &kernel.release)?;
    } else if hw.prune_modules {
        let mut dirs = hw.keep_module_dirs.clone();
        for (tool, package, dir) in tools_module_dirs(tree, &dirs) {
            eprintln!(
                "note: {}: keeping the kernel's {dir} modules (device-mapper and md) for {package} (/{tool}), which {} prunes",
                profile.path.display(),
                hw.path.display()
            );
            dirs.push(dir.to_string());
        }
        prune_modules(tree, &kernel.release, &init_modules, &dirs);
        kmod::retain_present(tree, &kernel.release)?;
    }
    Ok(())
}

/// Module directories a tool in the image cannot work without, kept when the hardware prunes
/// the rest: LVM, dm-crypt and software RAID drive the kernel's device-mapper and md (4.4 MB
/// of the cloud kernel's modules). Without them `lvm` failed on `/dev/mapper/control`.
const TOOL_MODULE_DIRS: &[(&str, &str, &str)] = &[
    ("usr/sbin/lvm", "lvm2", "drivers/md"),
    ("usr/sbin/cryptsetup", "cryptsetup", "drivers/md"),
    ("usr/sbin/mdadm", "mdadm", "drivers/md"),
];

/// The (tool, package, directory) of [`TOOL_MODULE_DIRS`] the image has a tool of and `kept`
/// lacks, each directory once.
fn tools_module_dirs(
    tree: &Tree,
    kept: &[String],
) -> Vec<(&'static str, &'static str, &'static str)> {
    let mut out: Vec<(&str, &str, &str)> = Vec::new();
    for &(tool, package, dir) in TOOL_MODULE_DIRS {
        if tree.exists(tool)
            && !kept.iter().any(|d| d == dir)
            && !out.iter().any(|(_, _, d)| *d == dir)
        {
            out.push((tool, package, dir));
        }
    }
    out
}

#[cfg(test)]
mod tests;
