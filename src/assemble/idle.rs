//! What a systemd image need not do at every boot: generators and units that would find
//! nothing to do are masked, and the update stamps tell sysusers the accounts are current.

use anyhow::Result;

use super::put;
use crate::tree::{Entry, Tree};

/// systemd generators that would find nothing to do in this image, with what they read: each
/// is a process started before the first unit on every boot (80-200 ms apiece in a TCG guest,
/// where they all share one host thread). A generator stays when the image or the kernel
/// command line (hardware and image profile) holds its input; input given only later (a
/// crypttab added on the machine, an option typed at the boot menu) finds it masked by
/// `/etc/systemd/system-generators/NAME -> /dev/null`, which is removed to restore it.
const IDLE_GENERATORS: &[(&str, &[&str], &[&str])] = &[
    // (generator, files in the image it reads, kernel command-line words it reads)
    ("systemd-cryptsetup-generator", &["etc/crypttab"], &["luks"]),
    (
        "systemd-veritysetup-generator",
        &["etc/veritytab"],
        &["verity", "roothash", "usrhash"],
    ),
    (
        "systemd-integritysetup-generator",
        &["etc/integritytab"],
        &["integrity"],
    ),
    ("systemd-hibernate-resume-generator", &[], &["resume"]),
    ("systemd-rc-local-generator", &["etc/rc.local"], &[]),
];

/// Mask the generators of [`IDLE_GENERATORS`] whose inputs are absent, and the SysV generator
/// when every script in `/etc/init.d` has a native unit (it then makes no unit either: Ingot
/// runs no maintainer scripts, so no `rc?.d` link enables one anyway).
pub(super) fn mask_idle_generators(tree: &mut Tree, cmdline: &str) -> Result<()> {
    let dir = "usr/lib/systemd/system-generators";
    let mask = |tree: &mut Tree, name: &str| -> Result<()> {
        // Leaves alone anything already at the path (a profile's own file or link, which
        // `exists` would look through to a /dev/null the tree does not hold).
        if tree.exists(&format!("{dir}/{name}"))
            && tree
                .get(&format!("etc/systemd/system-generators/{name}"))
                .is_none()
        {
            tree.insert(
                &format!("etc/systemd/system-generators/{name}"),
                Entry::symlink("/dev/null"),
            )?;
        }
        Ok(())
    };
    for (name, files, words) in IDLE_GENERATORS {
        let used = files.iter().any(|f| tree.exists(f))
            || cmdline.split_whitespace().any(|w| {
                let key = w.split('=').next().unwrap_or(w);
                words.iter().any(|x| key.contains(x))
            });
        if !used {
            mask(tree, name)?;
        }
    }
    let scripts: Vec<String> = tree
        .children("etc/init.d")
        .filter_map(|p| p.rsplit('/').next())
        .filter(|n| !n.starts_with('.') && *n != "README" && *n != "skeleton")
        .map(str::to_string)
        .collect();
    // A unit of the script's name, even a link (Debian masks hwclock.sh's with /dev/null and
    // aliases kmod's and procps's to systemd's own), makes the generator skip the script.
    let native = |s: &str| {
        let unit = s.strip_suffix(".sh").unwrap_or(s);
        [
            "etc/systemd/system",
            "usr/lib/systemd/system",
            "lib/systemd/system",
        ]
        .iter()
        .any(|d| {
            tree.resolve_parent(&format!("{d}/{unit}.service"))
                .is_ok_and(|p| tree.get(&p).is_some())
        })
    };
    if scripts.iter().all(|s| native(s)) {
        mask(tree, "systemd-sysv-generator")?;
    }
    Ok(())
}

/// Kernel command-line options `systemd-network-generator` turns into network units (systemd
/// 252's table; the names its binary carries).
const NETWORK_GENERATOR_WORDS: &[&str] = &[
    "ip",
    "rd.route",
    "nameserver",
    "rd.peerdns",
    "vlan",
    "bridge",
    "bond",
    "ifname",
    "net.ifname-policy",
];

/// `modprobe@` instances other units only want (a `Wants=`, never a `Requires=`): systemd-logind
/// wants drm, systemd-pstore efi_pstore, systemd-repart loop and dm_mod.
const WANTED_MODPROBES: &[&str] = &["drm", "efi_pstore", "dm_mod", "loop"];

/// Is module `name` in the image's kernel (a file, built in, or an alias)? None when the tree
/// holds no kernel and module index to tell.
fn kernel_has_module(tree: &Tree, name: &str) -> Option<bool> {
    let kernel = crate::boot::find_kernel(tree).ok()?;
    if !tree.exists(&format!("usr/lib/modules/{}/modules.dep", kernel.release)) {
        return None;
    }
    Some(crate::boot::resolve_modules(tree, &kernel.release, &[name.to_string()], "").is_ok())
}

/// Mask units that would start on every boot only to find nothing to do: the network
/// generator without a network option on the kernel command line (it runs before udevd),
/// systemd-repart without a `repart.d` definition (its condition fails, but its wants still
/// start `modprobe@loop` and `modprobe@dm_mod`), and the wanted `modprobe@` instances of
/// modules this kernel does not have (pruned from the image). A unit the profile names in
/// `services`, or any entry already at the mask's path, is left alone; removing the
/// `/etc/systemd/system/NAME -> /dev/null` link restores a unit.
pub(super) fn mask_idle_units(tree: &mut Tree, cmdline: &str, services: &[String]) -> Result<()> {
    let mut idle: Vec<String> = Vec::new();
    let words: Vec<&str> = cmdline
        .split_whitespace()
        .map(|w| w.split('=').next().unwrap_or(w))
        .collect();
    if !words.iter().any(|w| NETWORK_GENERATOR_WORDS.contains(w)) {
        idle.push("systemd-network-generator.service".into());
    }
    let repart = ["etc", "usr/lib", "usr/local/lib", "lib"]
        .iter()
        .any(|d| tree.children(&format!("{d}/repart.d")).next().is_some());
    if !repart {
        idle.push("systemd-repart.service".into());
    }
    for m in WANTED_MODPROBES {
        if kernel_has_module(tree, m) == Some(false) {
            idle.push(format!("modprobe@{m}.service"));
        }
    }
    for unit in idle {
        let shipped = ["usr/lib/systemd/system", "lib/systemd/system"]
            .iter()
            .any(|d| {
                let template = match unit.split_once('@') {
                    Some((t, _)) => format!("{t}@.service"),
                    None => unit.clone(),
                };
                tree.exists(&format!("{d}/{template}"))
            });
        let at = format!("etc/systemd/system/{unit}");
        if shipped && !services.contains(&unit) && tree.get(&at).is_none() {
            tree.insert(&at, Entry::symlink("/dev/null"))?;
        }
    }
    Ok(())
}

/// `/etc/.updated` and `/var/.updated`, as systemd-update-done would leave them after the
/// first boot of an up-to-date system (Debian's systemd 252 does not ship that unit, so
/// nothing ever writes them). Units with `ConditionNeedsUpdate=` (in bookworm,
/// systemd-sysusers) then skip: the image's users and groups were made from every
/// sysusers.d fragment at build time, so on each boot sysusers would only read them again
/// (a process on the critical path before `sysinit.target`). The stamps take the build's
/// epoch as mtime, which no file under `/usr` exceeds; an image whose `/usr` changes later
/// (a package installed on the machine) makes the condition true again, as systemd intends.
pub(super) fn updated_stamps(tree: &mut Tree) -> Result<()> {
    for d in ["etc", "var"] {
        if tree.get(&format!("{d}/.updated")).is_some() {
            continue;
        }
        put(
            tree,
            &format!("{d}/.updated"),
            "# Written by ingot: this directory was brought up to date with /usr when the image\n\
             # was built (see ConditionNeedsUpdate= in systemd.unit(5)).\n",
            0o644,
        )?;
    }
    Ok(())
}
