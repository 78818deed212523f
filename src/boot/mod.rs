//! The boot chain: the kernel from the image tree, Ingot's own initramfs (static busybox, the
//! kernel modules the hardware profile names plus their dependencies, and an `/init` that finds
//! the root partition by PARTUUID), systemd-boot as the removable-media boot loader, and a Boot
//! Loader Specification entry.

pub mod bios;
pub mod cpio;
pub mod kmod;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use anyhow::{bail, Context, Result};

use crate::config::{Arch, Hardware};
use crate::tree::{Entry, Kind, Tree};

/// The kernel found in the image tree.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// Release string (`6.1.0-48-cloud-amd64`).
    pub release: String,
    /// Path of the image in the tree.
    pub image_path: String,
}

/// Find the installed kernel (`/boot/vmlinuz-*`, newest by version).
pub fn find_kernel(tree: &Tree) -> Result<Kernel> {
    let mut found: Vec<String> = tree
        .children("boot")
        .filter_map(|p| p.strip_prefix("boot/vmlinuz-").map(str::to_string))
        .collect();
    found.sort_by(|a, b| crate::base::debversion::compare(a, b));
    let release = found
        .pop()
        .context("no kernel in the image: /boot/vmlinuz-* missing (check the hardware profile's kernel_package)")?;
    Ok(Kernel {
        image_path: format!("boot/vmlinuz-{release}"),
        release,
    })
}

fn canon(name: &str) -> String {
    name.replace('-', "_")
}

fn module_name(path: &str) -> String {
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
    let mut order: Vec<String> = Vec::new();
    let mut seen = BTreeSet::new();
    fn visit(
        m: &str,
        deps: &BTreeMap<String, (String, Vec<String>)>,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<String>,
    ) {
        let Some((path, d)) = deps.get(m) else { return };
        if !seen.insert(m.to_string()) {
            return;
        }
        for dep in d {
            visit(&module_name(dep), deps, seen, order);
        }
        order.push(path.clone());
    }
    for w in wanted {
        let name = canon(w);
        if deps.contains_key(&name) {
            visit(&name, &deps, &mut seen, &mut order);
        } else if builtin.contains(&name) {
            continue;
        } else if let Some((_, m)) = aliases.iter().find(|(pat, _)| glob(pat, w)) {
            let m = m.clone();
            visit(&m, &deps, &mut seen, &mut order);
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
            bail!("{hw_file}: modules: kernel {release} has no module or alias `{w}`{hint}");
        }
    }
    Ok(order)
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

const INIT: &str = include_str!("initramfs-init.sh");

/// Every command `/init` runs, linked to busybox in the archive.
const INITRAMFS_APPLETS: &[&str] = &[
    "sh",
    "mount",
    "umount",
    "insmod",
    "cut",
    "tr",
    "dd",
    "hexdump",
    "ls",
    "usleep",
    "sleep",
    "poweroff",
    "reboot",
    "switch_root",
    "blockdev",
    "mkdir",
    "sed",
];

/// Build the initramfs: busybox from the target arch's `busybox-static`, modules in load order,
/// and the `/init` script.
pub fn initramfs(
    image: &Tree,
    busybox: &Tree,
    kernel: &Kernel,
    hw: &Hardware,
    time: i64,
) -> Result<Vec<u8>> {
    let mut wanted = hw.modules.clone();
    if hw.ab.is_some() {
        // The writable /etc and /var of a read-only A/B root.
        wanted.push("overlay".into());
    }
    let mut modules = resolve_modules(
        image,
        &kernel.release,
        &wanted,
        &hw.path.display().to_string(),
    )?;
    if hw.ab.is_some() {
        // The watchdog /init arms for a counted boot (`ingot.watchdog=`), when the kernel has
        // it as a module; one built in needs nothing, and without it a hang cannot reset.
        if let Ok(files) = resolve_modules(image, &kernel.release, &["softdog".into()], "") {
            for f in files {
                if !modules.contains(&f) {
                    modules.push(f);
                }
            }
        }
    }
    let mut t = Tree::new();
    let bb = busybox
        .read("/bin/busybox")
        .or_else(|| busybox.read("/usr/bin/busybox"))
        .context("busybox-static has no /bin/busybox")?;
    t.insert("bin/busybox", Entry::file(bb, 0o755))?;
    for applet in INITRAMFS_APPLETS {
        t.insert(&format!("bin/{applet}"), Entry::symlink("busybox"))?;
    }
    for d in ["dev", "proc", "sys", "newroot", "run", "tmp"] {
        t.insert(d, Entry::dir(0o755))?;
    }
    t.insert(
        "dev/console",
        Entry::new(Kind::CharDev { major: 5, minor: 1 }, 0o600),
    )?;
    t.insert(
        "dev/null",
        Entry::new(Kind::CharDev { major: 1, minor: 3 }, 0o666),
    )?;
    let mut list = String::new();
    for m in &modules {
        let src = format!("usr/lib/modules/{}/{m}", kernel.release);
        let data = image
            .read(&src)
            .with_context(|| format!("module file {src} missing"))?;
        let data = decompress_module(m, data)?;
        let dest = format!("lib/modules/{}", module_name(m));
        t.insert(&format!("{dest}.ko"), Entry::file(data, 0o644))?;
        list.push_str(&format!("/{dest}.ko\n"));
    }
    t.insert("etc/modules.order", Entry::file(list, 0o644))?;
    t.insert("init", Entry::file(INIT, 0o755))?;
    let archive = cpio::newc(&t, time as u32)?;
    Ok(cpio::gzip(&archive)?)
}

/// Paths on the ESP for one image version (Boot Loader Specification type #1 layout).
pub fn esp_tree(
    sd_boot: &Tree,
    arch: Arch,
    image_id: &str,
    version: &str,
    kernel: &[u8],
    initrd: &[u8],
    cmdline: &str,
) -> Result<Tree> {
    let suffix = arch.efi_suffix();
    let efi = sd_boot
        .read(&format!(
            "/usr/lib/systemd/boot/efi/systemd-boot{suffix}.efi"
        ))
        .with_context(|| format!("systemd-boot-efi has no systemd-boot{suffix}.efi"))?;
    let mut t = Tree::new();
    t.insert(
        &format!("EFI/BOOT/BOOT{}.EFI", suffix.to_uppercase()),
        Entry::file(efi.clone(), 0o644),
    )?;
    t.insert(
        &format!("EFI/systemd/systemd-boot{suffix}.efi"),
        Entry::file(efi, 0o644),
    )?;
    let dir = format!("{image_id}/{version}");
    t.insert(&format!("{dir}/linux"), Entry::file(kernel.to_vec(), 0o644))?;
    t.insert(
        &format!("{dir}/initrd"),
        Entry::file(initrd.to_vec(), 0o644),
    )?;
    let entry = format!(
        "title {image_id} {version}\nversion {version}\nsort-key {image_id}\nlinux /{dir}/linux\ninitrd /{dir}/initrd\noptions {cmdline}\n"
    );
    t.insert(
        &format!("loader/entries/{image_id}-{version}.conf"),
        Entry::file(entry, 0o644),
    )?;
    t.insert(
        "loader/loader.conf",
        Entry::file(
            format!("timeout 0\ndefault {image_id}-*\nconsole-mode keep\neditor no\n"),
            0o644,
        ),
    )?;
    Ok(t)
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

/// What an A/B slot's command line carries beyond a plain one.
#[derive(Debug, Clone, Copy)]
pub struct AbArgs<'a> {
    /// The slot (`a` or `b`), named by `ingot.slot=` so the updater and the ready line know
    /// which slot runs.
    pub slot: char,
    /// The data partition's GUID (`ingot.data=`): the initramfs mounts it at `/data` and puts
    /// writable overlays of `/etc` and `/var` on it.
    pub data: Option<&'a str>,
    /// The watchdog timeout in seconds (`ingot.watchdog=`, 0 for none): the initramfs arms
    /// softdog with it before the root is even mounted, so a boot that hangs anywhere resets.
    pub watchdog: u32,
}

/// The kernel command line: the root partition by PARTUUID, the console, then the hardware
/// profile's own arguments (checked to be one line when the profile was read), then the image
/// profile's `[kernel] cmdline`. An A/B slot is mounted read-only (see [`AbArgs`]).
pub fn cmdline(root_guid: &str, hw: &Hardware, extra: &str, ab: Option<&AbArgs>) -> String {
    let guid = root_guid.to_lowercase();
    match ab {
        // The device's updater writes the same line for the slot it installs to.
        Some(a) => format!(
            "root=PARTUUID={guid} ro ingot.slot={} {}",
            a.slot,
            cmdline_tail(hw, extra, ab)
        ),
        None => format!("root=PARTUUID={guid} rw {}", cmdline_tail(hw, extra, None)),
    }
}

/// The part of a command line after `root=PARTUUID=… ro ingot.slot=…`: what an update
/// bundle's boot entry template carries.
pub fn cmdline_tail(hw: &Hardware, extra: &str, ab: Option<&AbArgs>) -> String {
    let mut words = vec![format!("console={}", hw.console)];
    if let Some(a) = ab {
        if let Some(d) = a.data {
            words.push(format!("ingot.data={}", d.to_lowercase()));
        }
        if a.watchdog > 0 {
            words.push(format!("ingot.watchdog={}", a.watchdog));
        }
    }
    words.extend(hw.cmdline.split_whitespace().map(str::to_string));
    words.extend(extra.split_whitespace().map(str::to_string));
    words.join(" ")
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
    let mut init_modules = resolve_modules(
        tree,
        &kernel.release,
        &hw.modules,
        &hw.path.display().to_string(),
    )?;
    if hw.ab.is_some() {
        init_modules.extend(ota_module_files(tree, &kernel.release));
    }
    if let Some(wanted) = &profile.kernel.modules {
        // The profile names what the running system needs: keep that and the initramfs set.
        let mut keep = resolve_modules(
            tree,
            &kernel.release,
            wanted,
            &format!("{} [kernel]", profile.path.display()),
        )?;
        keep.extend(init_modules.iter().cloned());
        prune_modules(tree, &kernel.release, &keep, &[]);
        kmod::depmod(tree, &kernel.release)?;
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
        kmod::depmod(tree, &kernel.release)?;
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

/// The kernel image's bytes for the ESP. Unless `keep` is set, the root filesystem loses its
/// copy, `System.map` and the device trees: the boot loader reads the kernel from the ESP and a
/// UEFI boot gets its tables from the firmware (or an ESP `devicetree` entry).
pub fn take_kernel(tree: &mut Tree, kernel: &Kernel, keep: bool) -> Result<Vec<u8>> {
    let bytes = tree
        .read(&kernel.image_path)
        .context("reading the kernel image")?;
    if !keep {
        tree.remove(&kernel.image_path);
        tree.remove(&format!("boot/System.map-{}", kernel.release));
        tree.remove(&format!("usr/lib/linux-image-{}", kernel.release));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lvm_and_raid_keep_device_mapper_when_the_hardware_prunes() {
        let mut t = Tree::new();
        let kept = vec!["drivers/net".to_string()];
        assert!(tools_module_dirs(&t, &kept).is_empty());
        t.insert("usr/sbin/mdadm", Entry::file("", 0o755)).unwrap();
        t.insert("usr/sbin/lvm", Entry::file("", 0o755)).unwrap();
        // One directory, named for the first tool that needs it.
        assert_eq!(
            tools_module_dirs(&t, &kept),
            [("usr/sbin/lvm", "lvm2", "drivers/md")]
        );
        // A hardware profile that keeps it already needs nothing more.
        assert!(tools_module_dirs(&t, &["drivers/md".to_string()]).is_empty());
    }

    #[test]
    fn module_resolution_orders_dependencies() {
        let mut t = Tree::new();
        let base = "usr/lib/modules/6.1.0-test";
        t.insert(&format!("{base}/modules.dep"), Entry::file("kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio_ring.ko: kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio.ko:\nkernel/drivers/net/virtio_net.ko: kernel/drivers/virtio/virtio.ko\n", 0o644)).unwrap();
        t.insert(
            &format!("{base}/modules.alias"),
            Entry::file("alias virtio:d00000001v* virtio_net\n", 0o644),
        )
        .unwrap();
        t.insert(
            &format!("{base}/modules.builtin"),
            Entry::file("kernel/fs/ext4/ext4.ko\n", 0o644),
        )
        .unwrap();
        let hw = "hw.toml";
        let m = resolve_modules(
            &t,
            "6.1.0-test",
            &[
                "virtio-blk".into(),
                "ext4".into(),
                "virtio:d00000001v00001AF4".into(),
            ],
            hw,
        )
        .unwrap();
        assert_eq!(
            m,
            vec![
                "kernel/drivers/virtio/virtio.ko",
                "kernel/drivers/virtio/virtio_ring.ko",
                "kernel/drivers/block/virtio_blk.ko",
                "kernel/drivers/net/virtio_net.ko"
            ]
        );
        let e = resolve_modules(&t, "6.1.0-test", &["virtio_blkk".into()], hw)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("hw.toml")
                && e.contains("virtio_blkk")
                && e.contains("did you mean `virtio_blk`"),
            "{e}"
        );
    }

    #[test]
    fn pruning_keeps_what_kept_modules_depend_on_wherever_it_lies() {
        let base = "usr/lib/modules/6.12.0-test";
        let mut t = Tree::new();
        for m in [
            "kernel/drivers/net/wireguard/wireguard.ko.xz",
            "kernel/arch/x86/crypto/curve25519-x86_64.ko.xz",
            "kernel/lib/crypto/libcurve25519-generic.ko.xz",
            "kernel/fs/isofs/isofs.ko.xz",
            "kernel/drivers/cdrom/cdrom.ko.xz",
            "kernel/drivers/gpu/drm/drm.ko.xz",
            "kernel/drivers/block/loop.ko.xz",
        ] {
            t.insert(&format!("{base}/{m}"), Entry::file("x", 0o644))
                .unwrap();
        }
        t.insert(
            &format!("{base}/modules.dep"),
            Entry::file(
                "kernel/drivers/net/wireguard/wireguard.ko.xz: kernel/arch/x86/crypto/curve25519-x86_64.ko.xz kernel/lib/crypto/libcurve25519-generic.ko.xz\n\
                 kernel/arch/x86/crypto/curve25519-x86_64.ko.xz: kernel/lib/crypto/libcurve25519-generic.ko.xz\n\
                 kernel/lib/crypto/libcurve25519-generic.ko.xz:\n\
                 kernel/fs/isofs/isofs.ko.xz: kernel/drivers/cdrom/cdrom.ko.xz\n\
                 kernel/drivers/cdrom/cdrom.ko.xz:\n\
                 kernel/drivers/gpu/drm/drm.ko.xz:\n\
                 kernel/drivers/block/loop.ko.xz:\n",
                0o644,
            ),
        )
        .unwrap();
        prune_modules(
            &mut t,
            "6.12.0-test",
            &["kernel/drivers/block/loop.ko.xz".into()],
            &["drivers/net".into(), "fs".into()],
        );
        let left: Vec<&String> = t
            .iter()
            .map(|(p, _)| p)
            .filter(|p| p.contains(".ko"))
            .collect();
        assert_eq!(
            left,
            [
                "usr/lib/modules/6.12.0-test/kernel/arch/x86/crypto/curve25519-x86_64.ko.xz",
                "usr/lib/modules/6.12.0-test/kernel/drivers/block/loop.ko.xz",
                "usr/lib/modules/6.12.0-test/kernel/drivers/cdrom/cdrom.ko.xz",
                "usr/lib/modules/6.12.0-test/kernel/drivers/net/wireguard/wireguard.ko.xz",
                "usr/lib/modules/6.12.0-test/kernel/fs/isofs/isofs.ko.xz",
                "usr/lib/modules/6.12.0-test/kernel/lib/crypto/libcurve25519-generic.ko.xz",
            ]
        );
    }
}
