//! The boot chain: the kernel from the image tree, Ingot's own initramfs (static busybox, the
//! kernel modules the hardware profile names plus their dependencies, and an `/init` that finds
//! the root partition by PARTUUID), systemd-boot as the removable-media boot loader, and a Boot
//! Loader Specification entry.

pub mod bios;
pub mod cpio;
pub mod kmod;
mod modules;

pub(crate) use modules::decompress_module;
use modules::module_name;
pub use modules::{prune_modules_for, resolve_modules, OTA_MODULES};

use anyhow::{Context, Result};

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
    let mut modules = modules::resolve_initramfs_modules(image, &kernel.release, hw)?;
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
