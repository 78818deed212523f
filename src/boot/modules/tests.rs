//! Module resolution and pruning on small hand-made module trees.

use super::*;
use crate::tree::Entry;

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
    // Asked for by a file's list: an error of that file at the item, exit 2 (bad input);
    // the first file that lists it, as for a profile and the one it extends.
    let dir = tempfile::tempdir().unwrap();
    let (child, parent) = (dir.path().join("c.toml"), dir.path().join("p.toml"));
    std::fs::write(&child, "[kernel]\nmodules = [\"ext4\"]\n").unwrap();
    std::fs::write(
        &parent,
        "[kernel]\nmodules = [\n  \"virtio_blk\",\n  \"virtio_blkk\",\n]\n",
    )
    .unwrap();
    let wanted = ["virtio_blkk".to_string()];
    let files = [child.as_path(), parent.as_path()];
    let e = resolve_listed(
        &t,
        "6.1.0-test",
        &wanted,
        "c.toml",
        (&files, "kernel.modules"),
    )
    .unwrap_err();
    assert_eq!(crate::cli::exit_code(&e), 2, "{e:#}");
    assert_eq!(
        e.to_string(),
        format!(
            "{}:4:3: kernel.modules: kernel 6.1.0-test has no module or alias `virtio_blkk`; did you mean `virtio_blk`?",
            parent.display()
        )
    );
    // A module no file lists (the root file system's driver): the error as it was.
    let e = resolve_listed(
        &t,
        "6.1.0-test",
        &["vfat".into()],
        "hw.toml",
        (&files, "modules"),
    )
    .unwrap_err();
    assert_eq!(crate::cli::exit_code(&e), 1, "{e:#}");
    assert!(e.to_string().starts_with("hw.toml: modules: "), "{e}");
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

#[test]
fn a_module_comes_after_what_its_soft_dependencies_load_first() {
    use crate::boot::kmod::test_module;
    let base = "usr/lib/modules/6.1.0-test";
    let mut t = Tree::new();
    // Debian's generic kernel: ext4 a module whose `softdep=pre: crc32c` is an alias two
    // modules offer; a `post:` name is not loaded first.
    for (p, fields) in [
        (
            "kernel/fs/ext4/ext4.ko",
            &["name=ext4", "softdep=pre: crc32c post: quota_v2"][..],
        ),
        ("kernel/fs/jbd2/jbd2.ko", &["name=jbd2"][..]),
        (
            "kernel/crypto/crc32c_generic.ko",
            &["name=crc32c_generic"][..],
        ),
        (
            "kernel/arch/x86/crypto/crc32c-intel.ko",
            &["name=crc32c_intel"][..],
        ),
        ("kernel/fs/quota/quota_v2.ko", &["name=quota_v2"][..]),
    ] {
        t.insert(
            &format!("{base}/{p}"),
            Entry::file(test_module(fields), 0o644),
        )
        .unwrap();
    }
    t.insert(
        &format!("{base}/modules.dep"),
        Entry::file(
            "kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko\nkernel/fs/jbd2/jbd2.ko:\nkernel/crypto/crc32c_generic.ko:\nkernel/arch/x86/crypto/crc32c-intel.ko:\nkernel/fs/quota/quota_v2.ko:\n",
            0o644,
        ),
    )
    .unwrap();
    t.insert(
        &format!("{base}/modules.alias"),
        Entry::file(
            "alias crc32c crc32c_generic\nalias crypto-crc32c crc32c_generic\nalias crc32c crc32c_intel\nalias cpu:type:x86,ven*feature:*0094* crc32c_intel\n",
            0o644,
        ),
    )
    .unwrap();
    let got = resolve_modules(&t, "6.1.0-test", &["ext4".into()], "hw.toml").unwrap();
    assert_eq!(
        got,
        [
            "kernel/fs/jbd2/jbd2.ko",
            "kernel/crypto/crc32c_generic.ko",
            "kernel/arch/x86/crypto/crc32c-intel.ko",
            "kernel/fs/ext4/ext4.ko",
        ]
    );
    // A soft dependency the kernel builds in needs nothing.
    t.insert(
        &format!("{base}/modules.builtin"),
        Entry::file("kernel/crypto/crc32c.ko\n", 0o644),
    )
    .unwrap();
    t.insert(&format!("{base}/modules.alias"), Entry::file("", 0o644))
        .unwrap();
    let got = resolve_modules(&t, "6.1.0-test", &["ext4".into()], "hw.toml").unwrap();
    assert_eq!(got, ["kernel/fs/jbd2/jbd2.ko", "kernel/fs/ext4/ext4.ko"]);
}
