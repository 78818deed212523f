//! BIOS boot for hybrid x86_64 disks. GRUB's i386-pc images come from Debian's `grub-pc-bin`
//! (fetched like systemd-boot, never installed): `grub-mkimage` (host package grub-common)
//! assembles a core image from its modules with an embedded configuration that loads the
//! kernel, initramfs and command line the UEFI path boots from the ESP; the core image goes in a
//! BIOS boot partition and GRUB's boot sector code in the protective MBR, patched the way
//! `grub-bios-setup` patches them. Nothing is mounted and nothing needs root.

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::tree::{Kind, Tree};

/// GPT type of the BIOS boot partition GRUB embeds its core image in.
pub const BIOS_BOOT_TYPE: &str = "21686148-6449-6E6F-744E-656564454649";

/// Size of the BIOS boot partition: GRUB's core image here is about 140 KiB.
pub const BIOS_BOOT_SIZE: u64 = 1 << 20;

/// Where grub-pc-bin keeps the i386-pc images and modules.
const GRUB_DIR: &str = "usr/lib/grub/i386-pc";

/// Modules built into the core image: the BIOS disk driver, GPT, FAT (the ESP), the Linux
/// loader, and the serial console so that GRUB's messages reach a headless VM's log.
const MODULES: &[&str] = &[
    "biosdisk", "part_gpt", "fat", "linux", "serial", "terminal", "echo",
];

/// Bytes of boot code in the MBR before the disk signature and partition table.
pub const MBR_CODE: usize = 0x1b8;

// Fields of GRUB's boot.img and diskboot.img (include/grub/i386/pc/boot.h).
const KERNEL_SECTOR: usize = 0x5c;
const DRIVE_CHECK: usize = 0x66;
const BLOCKLIST: usize = 512 - 12;

/// The line GRUB prints before loading the kernel: the console shows which loader ran.
pub const LOADING: &str = "Ingot: GRUB (BIOS) loading";

/// One word of a GRUB command line, single-quoted (no expansion inside).
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The embedded configuration: serial console, then the kernel and initramfs of `dir` on the
/// ESP (GRUB's root: the prefix names the boot disk's first partition) with `cmdline`.
pub fn config(dir: &str, cmdline: &str, title: &str) -> String {
    let args: Vec<String> = cmdline.split_whitespace().map(quote).collect();
    format!(
        "serial --unit=0 --speed=115200\n\
         terminal_input serial console\n\
         terminal_output serial console\n\
         echo {}\n\
         linux /{dir}/linux {}\n\
         initrd /{dir}/initrd\n\
         boot\n",
        quote(&format!("{LOADING} {title}")),
        args.join(" ")
    )
}

/// GRUB's core image for `cfg`, made by the host's `grub-mkimage` from grub-pc-bin's files.
pub fn core_image(grub: &Tree, cfg: &str) -> Result<Vec<u8>> {
    let scratch = crate::base::fsx::scratch_dir("ingot-grub")?;
    let dir = scratch.path().join("i386-pc");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut n = 0;
    for (path, e) in grub.iter() {
        let Some(name) = path.strip_prefix(&format!("{GRUB_DIR}/")) else {
            continue;
        };
        if name.contains('/') || !matches!(e.kind, Kind::File(_)) {
            continue;
        }
        grub.copy_out(path, &dir.join(name))?;
        n += 1;
    }
    for need in ["boot.img", "diskboot.img", "kernel.img", "moddep.lst"] {
        if !dir.join(need).exists() {
            bail!("grub-pc-bin has no /{GRUB_DIR}/{need} ({n} files found there)");
        }
    }
    let cfg_path = scratch.path().join("embedded.cfg");
    std::fs::write(&cfg_path, cfg).with_context(|| format!("writing {}", cfg_path.display()))?;
    let out = scratch.path().join("core.img");
    crate::base::tool::run(
        std::process::Command::new("grub-mkimage")
            .args(["-O", "i386-pc", "-p", "(,gpt1)/"])
            .arg("-d")
            .arg(&dir)
            .arg("-c")
            .arg(&cfg_path)
            .arg("-o")
            .arg(&out)
            .args(MODULES)
            .env("LC_ALL", "C"),
        "grub-common",
        "grub-mkimage failed",
    )?;
    read_core(&out)
}

fn read_core(path: &Path) -> Result<Vec<u8>> {
    let core = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if core.len() < 1024 || core.len() as u64 > BIOS_BOOT_SIZE {
        bail!(
            "GRUB's core image is {} bytes; the BIOS boot partition holds {}",
            core.len(),
            BIOS_BOOT_SIZE
        );
    }
    Ok(core)
}

/// Patch `core` for its place at sector `lba` and return the MBR boot code that loads it: the
/// first sector's blocklist names the rest of the core image, the boot code names the first
/// sector and trusts the drive number the BIOS passes (as `grub-bios-setup` does for a hard
/// disk).
pub fn place(boot_img: &[u8], core: &mut [u8], lba: u64) -> Result<Vec<u8>> {
    if boot_img.len() != 512 || boot_img[510..] != [0x55, 0xaa] {
        bail!("grub-pc-bin's boot.img is not a 512-byte boot sector");
    }
    let sectors = core.len().div_ceil(512) as u64;
    let len = u16::from_le_bytes([core[BLOCKLIST + 8], core[BLOCKLIST + 9]]);
    if u64::from(len) != sectors - 1 {
        bail!(
            "GRUB's core image is {sectors} sectors but its first sector's blocklist says {} more",
            len
        );
    }
    core[BLOCKLIST..BLOCKLIST + 8].copy_from_slice(&(lba + 1).to_le_bytes());
    let mut code = boot_img[..MBR_CODE].to_vec();
    code[KERNEL_SECTOR..KERNEL_SECTOR + 8].copy_from_slice(&lba.to_le_bytes());
    // A jump over the floppy check: two no-ops make GRUB use the drive the BIOS booted.
    code[DRIVE_CHECK] = 0x90;
    code[DRIVE_CHECK + 1] = 0x90;
    Ok(code)
}

/// GRUB's boot.img from grub-pc-bin.
pub fn boot_img(grub: &Tree) -> Result<Vec<u8>> {
    grub.read(&format!("/{GRUB_DIR}/boot.img"))
        .with_context(|| format!("grub-pc-bin has no /{GRUB_DIR}/boot.img"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_quotes_every_word_and_names_the_esp_files() {
        let c = config("vm/1.0.0", "root=PARTUUID=ab rw it's", "vm 1.0.0");
        assert!(c.contains("linux /vm/1.0.0/linux 'root=PARTUUID=ab' 'rw' 'it'\\''s'\n"));
        assert!(c.contains("initrd /vm/1.0.0/initrd\nboot\n"));
        assert!(c.contains("echo 'Ingot: GRUB (BIOS) loading vm 1.0.0'"));
    }

    #[test]
    fn placing_patches_the_blocklist_and_the_boot_code() {
        let mut boot = vec![0u8; 512];
        boot[510] = 0x55;
        boot[511] = 0xaa;
        boot[DRIVE_CHECK] = 0xeb;
        let mut core = vec![0u8; 512 * 3 + 100];
        core[BLOCKLIST + 8] = 3;
        let code = place(&boot, &mut core, 4096).unwrap();
        assert_eq!(code.len(), MBR_CODE);
        assert_eq!(
            &code[KERNEL_SECTOR..KERNEL_SECTOR + 8],
            &4096u64.to_le_bytes()
        );
        assert_eq!(&code[DRIVE_CHECK..DRIVE_CHECK + 2], &[0x90, 0x90]);
        assert_eq!(&core[BLOCKLIST..BLOCKLIST + 8], &4097u64.to_le_bytes());
        // A core image whose blocklist disagrees with its length is refused.
        core[BLOCKLIST + 8] = 9;
        assert!(place(&boot, &mut core, 4096).is_err());
        assert!(place(&boot[..511], &mut core, 4096).is_err());
    }
}
