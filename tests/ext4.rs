//! The ext4 writer checked by independent tools: `e2fsck -fn` must report a clean filesystem and
//! the `ext4-view` crate must read every file back exactly as the tree holds it.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::process::Command;

use ingot::fs::ext4::{self, FileAt, Params};
use ingot::tree::{Content, Entry, Kind, Tree};

fn params(size: Option<u64>) -> Params {
    Params {
        size,
        uuid: *b"0123456789abcdef",
        hash_seed: *b"fedcba9876543210",
        time: 1_700_000_000,
        label: "root".into(),
    }
}

fn write_image(tree: &Tree, size: Option<u64>) -> (tempfile::TempDir, std::path::PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("fs.img");
    let plan = ext4::plan(tree, &params(size)).unwrap();
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(plan.size_bytes()).unwrap();
    plan.write(&mut FileAt { file: &f, base: 0 }).unwrap();
    (d, path)
}

fn e2fsck(path: &std::path::Path) {
    let out = Command::new("e2fsck")
        .args(["-fn"])
        .arg(path)
        .output()
        .expect("e2fsck (e2fsprogs) must be installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "e2fsck reported problems:\n{text}");
}

fn file(data: &[u8], mode: u32, uid: u32) -> Entry {
    let mut e = Entry::file(data.to_vec(), mode);
    e.uid = uid;
    e.gid = uid + 1;
    e.mtime = 1_600_000_000;
    e
}

/// Read every path back with ext4-view and compare with the tree.
fn compare(tree: &Tree, path: &std::path::Path) {
    let fs = ext4_view::Ext4::load(Box::new(std::fs::File::open(path).unwrap())).unwrap();
    for (p, e) in tree.iter() {
        let abs = format!("/{p}");
        let meta = fs
            .symlink_metadata(abs.as_str())
            .unwrap_or_else(|err| panic!("{abs}: {err}"));
        if let Kind::HardLink(t) = &e.kind {
            // A hard link is the same inode as its target.
            let target = fs.symlink_metadata(format!("/{t}").as_str()).unwrap();
            assert_eq!(meta.uid(), target.uid());
            assert_eq!(fs.read(abs.as_str()).unwrap(), tree.read(t).unwrap());
            continue;
        }
        assert_eq!(meta.uid(), e.uid, "{abs} uid");
        assert_eq!(meta.gid(), e.gid, "{abs} gid");
        assert_eq!(
            u32::from(meta.mode()) & 0o7777,
            e.mode & 0o7777,
            "{abs} mode"
        );
        match &e.kind {
            Kind::File(c) => assert_eq!(
                fs.read(abs.as_str()).unwrap(),
                c.read_all().unwrap(),
                "{abs} content"
            ),
            Kind::Symlink(t) => assert_eq!(
                fs.read_link(abs.as_str()).unwrap().to_str().unwrap(),
                t,
                "{abs} target"
            ),
            Kind::Dir => assert!(meta.is_dir()),
            _ => {}
        }
    }
}

#[test]
fn empty_tree() {
    let t = Tree::new();
    let (_d, p) = write_image(&t, None);
    e2fsck(&p);
    compare(&t, &p);
}

#[test]
fn many_kinds_of_entries() {
    let mut t = Tree::new();
    t.insert("etc/hostname", file(b"", 0o644, 0)).unwrap();
    t.insert("usr/bin/tool", file(b"#!/bin/sh\necho hi\n", 0o4755, 0))
        .unwrap();
    t.insert(
        "usr/bin/tool-link",
        Entry::new(Kind::HardLink("usr/bin/tool".into()), 0o755),
    )
    .unwrap();
    t.insert("usr/bin/short", Entry::symlink("tool")).unwrap();
    let long = "x/".repeat(100) + "target";
    t.insert("usr/bin/long", Entry::symlink(&long)).unwrap();
    let deep = (0..60)
        .map(|i| format!("d{i}"))
        .collect::<Vec<_>>()
        .join("/");
    t.insert(&format!("{deep}/leaf"), file(b"deep", 0o600, 1000))
        .unwrap();
    t.insert(
        "home/ünïcødé-名前",
        file("unicode ✓".as_bytes(), 0o640, 1000),
    )
    .unwrap();
    t.insert(
        "dev/null",
        Entry::new(Kind::CharDev { major: 1, minor: 3 }, 0o666),
    )
    .unwrap();
    t.insert(
        "dev/big",
        Entry::new(
            Kind::BlockDev {
                major: 259,
                minor: 70000,
            },
            0o660,
        ),
    )
    .unwrap();
    t.insert("run/fifo", Entry::new(Kind::Fifo, 0o600)).unwrap();
    let mut cap = file(b"\x7fELF", 0o755, 0);
    cap.xattrs.insert(
        "security.capability".into(),
        vec![
            1, 0, 0, 2, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
    );
    cap.xattrs.insert("user.note".into(), b"hi".to_vec());
    t.insert("usr/bin/ping", cap).unwrap();
    let mut big = vec![0u8; 5 << 20];
    for (i, b) in big.iter_mut().enumerate().step_by(4093) {
        *b = (i % 251) as u8;
    }
    t.insert("var/big", file(&big, 0o644, 0)).unwrap();
    // A mostly-zero file: the image stays sparse.
    let mut sparse = vec![0u8; 64 << 20];
    sparse[40 << 20] = 1;
    t.insert("var/sparse", file(&sparse, 0o644, 0)).unwrap();
    let (_d, p) = write_image(&t, None);
    e2fsck(&p);
    compare(&t, &p);
    // ext4-view does not read extended attributes; debugfs does.
    assert_eq!(
        ea_get(&p, "/usr/bin/ping", "security.capability"),
        [1, 0, 0, 2, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(ea_get(&p, "/usr/bin/ping", "user.note"), b"hi");
}

#[test]
fn thousands_of_files_and_a_huge_directory() {
    let mut t = Tree::new();
    for i in 0..10_000 {
        t.insert(
            &format!("big/entry-with-a-longish-name-{i:05}"),
            file(format!("{i}").as_bytes(), 0o644, 0),
        )
        .unwrap();
    }
    for i in 0..3000 {
        t.insert(&format!("small/{}/{i}", i % 37), file(b"x", 0o644, 0))
            .unwrap();
    }
    let (_d, p) = write_image(&t, None);
    e2fsck(&p);
    compare(&t, &p);
}

#[test]
fn spans_many_groups_with_fixed_size() {
    let mut t = Tree::new();
    // 300 MiB of data forces files across several groups and superblock backups.
    for i in 0..30 {
        let data: Vec<u8> = (0..(10 << 20))
            .map(|j: usize| ((i * 7 + j) % 253) as u8)
            .collect();
        t.insert(
            &format!("data/{i}"),
            Entry::new(Kind::File(Content::bytes(data)), 0o644),
        )
        .unwrap();
    }
    let (_d, p) = write_image(&t, Some(1 << 30));
    e2fsck(&p);
    compare(&t, &p);
}

#[test]
fn too_small_fails_before_writing() {
    let mut t = Tree::new();
    t.insert("blob", Entry::file(vec![1u8; 8 << 20], 0o644))
        .unwrap();
    let e = ext4::plan(&t, &params(Some(4 << 20)))
        .err()
        .expect("must not fit");
    let msg = e.to_string();
    assert!(msg.contains("needs") && msg.contains("MiB"), "{msg}");
}

#[test]
fn same_tree_same_bytes() {
    let mut t = Tree::new();
    for i in 0..200 {
        t.insert(&format!("f/{i}"), file(&vec![i as u8; i * 37], 0o644, 0))
            .unwrap();
    }
    let (_a, pa) = write_image(&t, None);
    let (_b, pb) = write_image(&t, None);
    assert_eq!(std::fs::read(pa).unwrap(), std::fs::read(pb).unwrap());
    let _ = BTreeMap::<u8, u8>::new();
}

#[test]
fn describe_names_the_file_a_byte_belongs_to() {
    let mut t = Tree::new();
    let marker: Vec<u8> = (0..9000u32).map(|i| (i % 251) as u8 ^ 0x5a).collect();
    t.insert("etc/one", file(b"first", 0o644, 0)).unwrap();
    t.insert("srv/data/marked", file(&marker, 0o600, 7))
        .unwrap();
    let plan = ext4::plan(&t, &params(None)).unwrap();
    let (_d, path) = write_image(&t, None);
    let img = std::fs::read(path).unwrap();
    let at = img
        .windows(64)
        .position(|w| w == &marker[..64])
        .expect("marker written");
    assert_eq!(
        plan.describe(at as u64 + 5000),
        "the contents of /srv/data/marked"
    );
    assert_eq!(plan.describe(1024), "superblock or group descriptors");
}

/// `debugfs -R "ea_get PATH NAME"`: an independent reader for extended attributes.
fn ea_get(img: &std::path::Path, path: &str, name: &str) -> Vec<u8> {
    let d = tempfile::tempdir().unwrap();
    let dump = d.path().join("value");
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("ea_get -f {} {path} {name}", dump.display()))
        .arg(img)
        .output()
        .expect("debugfs (e2fsprogs) must be installed");
    std::fs::read(&dump).unwrap_or_else(|_| {
        panic!(
            "debugfs could not read {name} of {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn extended_attributes_in_the_inode_and_in_their_own_block() {
    let mut t = Tree::new();
    let cap = vec![
        1, 0, 0, 2, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    // Small: fits in the inode's spare space.
    let mut small = file(b"\x7fELF", 0o755, 0);
    small
        .xattrs
        .insert("security.capability".into(), cap.clone());
    t.insert("usr/bin/ping", small).unwrap();
    // Large: a SELinux-style label and a user attribute of 1000 bytes need an external block.
    let mut big = file(b"data", 0o644, 0);
    let label = b"system_u:object_r:container_file_t:s0:c1,c2\0".to_vec();
    let blob: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
    big.xattrs.insert("security.selinux".into(), label.clone());
    big.xattrs.insert("user.blob".into(), blob.clone());
    big.xattrs.insert("user.odd".into(), b"abc".to_vec());
    t.insert("srv/labelled", big).unwrap();
    // A directory with a large attribute too.
    let mut dir = Entry::new(Kind::Dir, 0o755);
    dir.xattrs.insert("user.dirnote".into(), vec![b'x'; 300]);
    t.insert("srv/dir", dir).unwrap();
    let (_d, p) = write_image(&t, None);
    e2fsck(&p);
    compare(&t, &p);
    assert_eq!(ea_get(&p, "/usr/bin/ping", "security.capability"), cap);
    assert_eq!(ea_get(&p, "/srv/labelled", "security.selinux"), label);
    assert_eq!(ea_get(&p, "/srv/labelled", "user.blob"), blob);
    assert_eq!(ea_get(&p, "/srv/labelled", "user.odd"), b"abc");
    assert_eq!(ea_get(&p, "/srv/dir", "user.dirnote"), vec![b'x'; 300]);

    // Too large for one block: a clear error naming the path.
    let mut huge = file(b"x", 0o644, 0);
    huge.xattrs.insert("user.huge".into(), vec![0u8; 5000]);
    let mut t2 = Tree::new();
    t2.insert("etc/huge", huge).unwrap();
    let err = match ext4::plan(&t2, &params(None)) {
        Ok(_) => panic!("a 5000-byte attribute cannot fit one block"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("/etc/huge") && err.contains("extended attributes"),
        "{err}"
    );
}

/// A sink whose every write fails, like a full or read-only disk.
struct Broken;

impl ext4::WriteAt for Broken {
    fn write_all_at(&mut self, _: &[u8], _: u64) -> std::io::Result<()> {
        Err(std::io::Error::other("no space left on the test device"))
    }
}

#[test]
fn each_error_names_what_is_wrong() {
    use ext4::Ext4Error;
    // NameTooLong: a 256-byte name.
    let mut t = Tree::new();
    let long = "n".repeat(256);
    t.insert(&format!("etc/{long}"), file(b"x", 0o644, 0))
        .unwrap();
    let e = ext4::plan(&t, &params(None)).err().unwrap();
    assert!(
        matches!(&e, Ext4Error::NameTooLong(p) if p.ends_with(&long)),
        "{e}"
    );
    // BrokenHardLink: a hard link to a directory.
    let mut t = Tree::new();
    t.insert("etc", Entry::new(Kind::Dir, 0o755)).unwrap();
    t.insert("link", Entry::new(Kind::HardLink("etc".into()), 0o644))
        .unwrap();
    let e = ext4::plan(&t, &params(None)).err().unwrap();
    assert!(matches!(&e, Ext4Error::BrokenHardLink { .. }), "{e}");
    assert!(
        e.to_string().contains("/link") && e.to_string().contains("/etc"),
        "{e}"
    );
    // XattrTooLarge: more than one block of attributes.
    let mut t = Tree::new();
    let mut f = file(b"x", 0o644, 0);
    f.xattrs.insert("user.big".into(), vec![b'v'; 5000]);
    t.insert("big", f).unwrap();
    let e = ext4::plan(&t, &params(None)).err().unwrap();
    assert!(
        matches!(&e, Ext4Error::XattrTooLarge { needed, .. } if *needed > 5000),
        "{e}"
    );
    // TooSmall is `too_small_fails_before_writing`. ShortContent: a host file that shrank
    // after the tree recorded its length.
    let d = tempfile::tempdir().unwrap();
    let host = d.path().join("data");
    std::fs::write(&host, vec![1u8; 10000]).unwrap();
    let mut t = Tree::new();
    t.insert(
        "shrunk",
        Entry::new(
            Kind::File(Content::Slice {
                file: std::sync::Arc::new(host.clone()),
                offset: 0,
                len: 10000,
            }),
            0o644,
        ),
    )
    .unwrap();
    let plan = ext4::plan(&t, &params(None)).unwrap();
    std::fs::write(&host, b"short").unwrap();
    let mut out = Vec::new();
    let e = plan.write(&mut out).err().unwrap();
    assert!(
        matches!(&e, Ext4Error::ShortContent { len: 10000, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("/shrunk"), "{e}");
    // Io: the sink fails.
    let e = plan.write(&mut Broken).err().unwrap();
    assert!(matches!(&e, Ext4Error::Io(_)), "{e}");
    assert!(e.to_string().contains("no space left"), "{e}");
}
