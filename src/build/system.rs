//! Stage: the assembled system. From the unpacked package tree to the finished root file tree
//! and its boot chain: kernel modules indexed and pruned, documentation stripped, the system
//! assembled (users, init, agents, labels), the initramfs built, the kernel taken out for the
//! ESP, sysprep applied, the secret scan passed, and every mtime clamped to the epoch.

use anyhow::{bail, Result};

use crate::base::identity::Identity;
use crate::config::{Hardware, Profile};
use crate::packages::{self, Ready};
use crate::progress::Stages;
use crate::tree::Tree;
use crate::{assemble, boot, sysprep};

/// What the system stage hands on: the root tree and what the ESP is made of.
pub struct System {
    /// The root filesystem's tree, after sysprep.
    pub tree: Tree,
    /// The kernel image for the ESP.
    pub kernel_bytes: Vec<u8>,
    /// The initramfs for the ESP.
    pub initrd: Vec<u8>,
    /// systemd-boot's files.
    pub sd_boot: Tree,
    /// grub-pc-bin's files, for a disk a BIOS boots too.
    pub grub: Option<Tree>,
    /// Bytes the data each machine makes at its first boot needs (a database's files).
    pub first_boot_reserve: u64,
}

fn stamp_times(tree: &mut Tree, epoch: i64) {
    for (_, e) in tree.iter_mut() {
        e.mtime = crate::tree::stamped(e.mtime, epoch);
    }
}

/// Run the stage on the unpacked `tree`.
#[allow(clippy::too_many_arguments)]
pub fn system(
    mut tree: Tree,
    ready: &[Ready],
    profile: &Profile,
    hw: &Hardware,
    id: &Identity,
    labels: &std::collections::BTreeMap<String, String>,
    stages: &mut Stages,
    ident: &str,
    update_key: Option<&crate::trust::minisign::PublicKey>,
) -> Result<System> {
    let epoch = id.epoch;
    let kernel = boot::find_kernel(&tree)?;
    boot::kmod::depmod(&mut tree, &kernel.release)?;
    boot::prune_modules_for(&mut tree, &kernel, profile, hw)?;
    if profile.init == crate::config::InitSystem::Systemd {
        // libkmod (udev, modprobe) needs depmod's binary indexes; the busybox images' modprobe
        // and Ingot's initramfs read the text modules.dep.
        boot::kmod::binary_indexes(&mut tree, &kernel.release)?;
    }
    if !profile.sysprep.keep_docs {
        assemble::strip_docs(&mut tree)?;
    }
    // What the image's packages' maintainer scripts would add.
    let image_pkgs = || {
        ready
            .iter()
            .filter(|r| r.locked.role == packages::Role::Image)
    };
    let scripts = assemble::Scripts {
        accounts: image_pkgs()
            .flat_map(|r| r.extracted.accounts.iter().flatten().cloned())
            .collect(),
        nss: image_pkgs()
            .flat_map(|r| r.extracted.nss.iter().cloned())
            .collect(),
        alternatives: image_pkgs()
            .flat_map(|r| r.extracted.alternatives.iter().cloned())
            .collect(),
        statoverrides: image_pkgs()
            .flat_map(|r| r.extracted.statoverrides.iter().cloned())
            .collect(),
        postinsts: {
            // In the order dpkg configures them: each after its dependencies.
            let pkgs: Vec<_> = image_pkgs().collect();
            let infos: Vec<_> = pkgs.iter().map(|r| &r.locked.info).collect();
            packages::configure_order(&infos)
                .into_iter()
                .filter_map(|i| {
                    let r = pkgs[i];
                    Some(assemble::Postinst {
                        package: r.locked.info.name.clone(),
                        script: r.extracted.postinst()?.to_string(),
                        debconf: r.extracted.debconf.clone(),
                    })
                })
                .collect()
        },
    };
    assemble::system(&mut tree, profile, hw, id, labels, update_key, &scripts)?;
    if profile.packages.byte_compile() {
        assemble::python::byte_compile(&mut tree, epoch)?;
    }
    let busybox = packages::unpack_boot(ready, "busybox-static")?;
    let sd_boot = packages::unpack_boot(ready, "systemd-boot-efi")?;
    let grub = if hw.disk.bios {
        Some(packages::unpack_boot(ready, packages::GRUB_PC)?)
    } else {
        None
    };
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
    let first_boot_reserve = assemble::first_boot_reserve(&tree);

    Ok(System {
        tree,
        first_boot_reserve,
        kernel_bytes,
        initrd,
        sd_boot,
        grub,
    })
}
