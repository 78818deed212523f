//! Tests of reading .deb files: the extraction cache, the control members and unpacking.

use super::*;

#[test]
fn accounts_of_the_maintainer_scripts_are_read_and_read_again_by_a_newer_reader() {
    let t = tempfile::tempdir().unwrap();
    let deb = t.path().join("p.deb");
    std::fs::write(
        &deb,
        super::super::testrepo::make_deb_with_scripts(
            "Package: p\nVersion: 1\nArchitecture: amd64\n",
            &[(
                "postinst",
                "#!/bin/sh\nadduser --system --group _p >/dev/null\n",
            )],
            &[("./usr/", tar::EntryType::Directory, b"", "")],
        ),
    )
    .unwrap();
    let (tar, meta) = (t.path().join("p.tar"), t.path().join("p.json"));
    let names = |e: &Extracted| -> Vec<String> {
        e.accounts
            .iter()
            .flatten()
            .map(|a| a.name.clone())
            .collect()
    };
    let (first, _) = extract(&deb, &tar, &meta).unwrap();
    assert_eq!(names(&first), ["_p"]);
    // What dpkg keeps of the control.tar: the script, as it ships, not the control file.
    assert_eq!(
        first.info,
        [InfoFile {
            name: "postinst".into(),
            mode: 0o755,
            text: "#!/bin/sh\nadduser --system --group _p >/dev/null\n".into()
        }]
    );
    // A cache entry an older reader wrote (here: one that found nothing) is read again.
    let mut old = first.clone();
    old.accounts = Some(Vec::new());
    old.info = Vec::new();
    old.accounts_reader = 0;
    std::fs::write(&meta, serde_json::to_string(&old).unwrap()).unwrap();
    let (again, _) = extract(&deb, &tar, &meta).unwrap();
    assert_eq!(names(&again), ["_p"]);
    assert_eq!(again.accounts_reader, super::super::accounts::READER);
    // ... as are its control members, which an older reader did not keep.
    assert_eq!(again.info, first.info);
}

pub use crate::packages::testrepo::make_deb;

/// The tree refers to the extracted data.tar, so the directory is returned with it.
fn unpack_bytes(deb: &[u8]) -> Result<(tempfile::TempDir, Tree)> {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("x.deb");
    std::fs::write(&p, deb).unwrap();
    let (_, tar) = extract(&p, &d.path().join("x.tar"), &d.path().join("x.json"))?;
    let mut t = Tree::new();
    unpack(&tar, "evil", &mut t)?;
    Ok((d, t))
}

#[test]
fn roundtrip_and_hostile_entries() {
    use tar::EntryType::*;
    let ok = make_deb(
        "Package: a\n",
        &[
            ("./usr/", Directory, b"", ""),
            ("./usr/bin/x", Regular, b"hello", ""),
            ("./usr/bin/y", Link, b"", "./usr/bin/x"),
            ("./usr/bin/z", Symlink, b"", "x"),
        ],
    );
    let (_d, t) = unpack_bytes(&ok).unwrap();
    assert_eq!(t.read("/usr/bin/x").unwrap(), b"hello");
    assert!(matches!(t.get("usr/bin/y").unwrap().kind, Kind::HardLink(ref s) if s == "usr/bin/x"));
    assert_eq!(t.read("/usr/bin/z").unwrap(), b"hello");

    let dotdot = make_deb("Package: a\n", &[("./../etc/passwd", Regular, b"x", "")]);
    let e = format!("{:#}", unpack_bytes(&dotdot).unwrap_err());
    assert!(
        e.contains("package evil") && e.contains("../etc/passwd") && e.contains("unsafe"),
        "{e}"
    );

    let escape = make_deb(
        "Package: a\n",
        &[
            ("./etc", Symlink, b"", "../../../../tmp"),
            ("./etc/x", Regular, b"x", ""),
        ],
    );
    let e = format!("{:#}", unpack_bytes(&escape).unwrap_err());
    assert!(
        e.contains("package evil") && e.contains("points outside the image"),
        "{e}"
    );
}

/// One PAX extended-header record: `LEN KEY=VALUE\n`, LEN counting the whole record.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // space, '=', newline
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    assert_eq!(r.len(), len);
    r
}

#[test]
fn pax_extended_attributes_reach_the_tree() {
    use tar::EntryType::*;
    let cap = [
        1u8, 0, 0, 2, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let mut pax = pax_record("SCHILY.xattr.security.capability", &cap);
    pax.extend(pax_record("SCHILY.xattr.user.origin", b"test"));
    let deb = make_deb(
        "Package: a\n",
        &[
            ("./usr/", Directory, b"", ""),
            ("./usr/bin/", Directory, b"", ""),
            ("./PaxHeaders/ping", XHeader, &pax, ""),
            ("./usr/bin/ping", Regular, b"\x7fELF", ""),
            ("./usr/bin/plain", Regular, b"x", ""),
        ],
    );
    let (_d, t) = unpack_bytes(&deb).unwrap();
    let ping = t.get("usr/bin/ping").unwrap();
    assert_eq!(ping.xattrs.get("security.capability").unwrap(), &cap);
    assert_eq!(ping.xattrs.get("user.origin").unwrap(), b"test");
    assert_eq!(ping.xattrs.len(), 2);
    // The extension belongs to the one entry after it.
    assert!(t.get("usr/bin/plain").unwrap().xattrs.is_empty());
    assert!(t.get("PaxHeaders/ping").is_none());
}

#[test]
fn truncated_ar_is_rejected() {
    let ok = make_deb("Package: a\n", &[]);
    let mut cut = ok.clone();
    cut.truncate(ok.len() - 10);
    let e = ar_members(&mut io::Cursor::new(cut)).unwrap_err();
    assert!(matches!(e, DebError::PastEnd { .. }), "{e}");
    assert!(e.to_string().contains("past the end"), "{e}");
}

#[test]
fn each_malformed_ar_has_its_own_error() {
    let ok = make_deb("Package: a\n", &[]);
    assert!(matches!(
        ar_members(&mut io::Cursor::new(b"PK\x03\x04".to_vec())),
        Err(DebError::NotAr)
    ));
    let mut bad = ok.clone();
    bad[8 + 58] = b'x';
    assert!(matches!(
        ar_members(&mut io::Cursor::new(bad)),
        Err(DebError::CorruptHeader(8))
    ));
    let mut bad = ok.clone();
    bad[8 + 48..8 + 58].copy_from_slice(b"12ab      ");
    assert!(matches!(
        ar_members(&mut io::Cursor::new(bad)),
        Err(DebError::BadSize(8))
    ));
}
