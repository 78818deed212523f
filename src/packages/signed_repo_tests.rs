//! The package source against a signed file:// archive the tests generate: resolution,
//! verification of every digest and signature, unpacking, and the offline paths.

use super::testrepo::{flip_byte, signing_key, TestRepo};
use super::*;
use crate::tree::Tree;
use tar::EntryType::*;

fn sample() -> TestRepo {
    let mut r = TestRepo::new();
    r.add(
        "app",
        "1.0-1",
        "Depends: libfoo (>= 2.0) | libbar, mail-transport-agent\n",
        &[
            ("./usr/", Directory, b"", ""),
            ("./usr/bin/", Directory, b"", ""),
            ("./usr/bin/app", Regular, b"#!/bin/sh\necho app\n", ""),
        ],
    );
    r.add(
        "libfoo",
        "1.5-1",
        "",
        &[("./usr/lib/libfoo.so.1", Regular, b"old", "")],
    );
    r.add(
        "libfoo",
        "2.1-1",
        "",
        &[("./usr/lib/libfoo.so.2", Regular, b"new", "")],
    );
    r.add("libbar", "9", "", &[]);
    r.add(
        "tinymta",
        "1:0.9",
        "Provides: mail-transport-agent\n",
        &[("./usr/sbin/sendmail", Regular, b"mta", "")],
    );
    r.publish();
    r
}

fn resolve_names(r: &TestRepo, include: &[&str]) -> Result<Vec<String>> {
    let src = r.source();
    let (index, rel) = load_index(&src, &r.profile(&["app"]), Arch::X86_64)?;
    assert_eq!(rel.len(), 1);
    // The Release's own date is kept, for the lockfile and the provenance.
    assert_eq!(rel[0].date, "Sat, 01 Jan 2000 00:00:00 UTC");
    let req = resolve::Request {
        include: include.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    Ok(resolve::resolve(&index, &req)?
        .into_iter()
        .map(|p| format!("{}={}", p.name, p.version))
        .collect())
}

#[test]
fn resolves_alternatives_provides_and_versions_from_a_signed_repo() {
    let r = sample();
    assert_eq!(
        resolve_names(&r, &["app"]).unwrap(),
        ["app=1.0-1", "libfoo=2.1-1", "tinymta=1:0.9"]
    );
    // A pin to an old version that breaks the dependency falls to the next alternative.
    assert_eq!(
        resolve_names(&r, &["libfoo=1.5-1", "app"]).unwrap(),
        ["app=1.0-1", "libbar=9", "libfoo=1.5-1", "tinymta=1:0.9"]
    );
    let e = resolve_names(&r, &["ap"]).unwrap_err().to_string();
    assert!(e.contains("`ap`") && e.contains("did you mean"), "{e}");
}

#[test]
fn fetches_verifies_and_unpacks_with_owners_and_modes() {
    let r = sample();
    let src = r.source();
    let (index, _) = load_index(&src, &r.profile(&["app"]), Arch::X86_64).unwrap();
    let req = resolve::Request {
        include: vec!["app".into()],
        ..Default::default()
    };
    let set: Vec<Locked> = resolve::resolve(&index, &req)
        .unwrap()
        .into_iter()
        .map(|info| Locked {
            role: Role::Image,
            info,
        })
        .collect();
    let ready = fetch_all(&src, &set).unwrap();
    let tree = unpack_image(&ready, Arch::X86_64).unwrap();
    assert_eq!(tree.read("/usr/bin/app").unwrap(), b"#!/bin/sh\necho app\n");
    let e = tree.get("usr/bin/app").unwrap();
    assert_eq!((e.mode & 0o7777, e.uid, e.gid), (0o755, 0, 0));
    assert_eq!(tree.read("/usr/lib/libfoo.so.2").unwrap(), b"new");
    let status = String::from_utf8(tree.read("/var/lib/dpkg/status").unwrap()).unwrap();
    assert!(
        status.contains("Package: tinymta\nStatus: install ok installed\n"),
        "{status}"
    );
    let list = String::from_utf8(tree.read("/var/lib/dpkg/info/app.list").unwrap()).unwrap();
    assert!(list.contains("/usr/bin/app\n"), "{list}");
    // A second run is served from the cache, even with the pool gone.
    std::fs::remove_dir_all(r.path("pool")).unwrap();
    assert_eq!(fetch_all(&src, &set).unwrap().len(), 3);
    // And with the whole archive gone (air-gapped after `ingot fetch`): the cached
    // InRelease is verified again and the indexes come from the cache by digest.
    std::fs::remove_dir_all(r.path("dists")).unwrap();
    assert_eq!(
        resolve_names(&r, &["app"]).unwrap(),
        ["app=1.0-1", "libfoo=2.1-1", "tinymta=1:0.9"]
    );
    assert_eq!(fetch_all(&src, &set).unwrap().len(), 3);
}

#[test]
fn tampered_packages_index_is_refused() {
    let r = sample();
    flip_byte(&r.path("dists/test/main/binary-amd64/Packages.gz"));
    let e = format!("{:#}", resolve_names(&r, &["app"]).unwrap_err());
    assert!(
        e.contains("Packages.gz") && e.contains("does not match") && e.contains("signed"),
        "{e}"
    );
}

#[test]
fn bad_unsigned_and_expired_releases_are_refused() {
    let r = sample();
    r.publish_signed_by(&signing_key());
    let e = resolve_names(&r, &["app"]).unwrap_err();
    assert!(
        matches!(e.downcast_ref(), Some(repo::RepoError::BadSignature { .. })),
        "{e:#}"
    );
    // The signed text altered after signing.
    r.publish();
    let p = r.path("dists/test/InRelease");
    let t = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, t.replace("Origin: Ingot tests", "Origin: Ingot tesTs")).unwrap();
    let e = resolve_names(&r, &["app"]).unwrap_err();
    assert!(
        e.to_string().contains("does not verify against keyring"),
        "{e:#}"
    );
    // No signature at all.
    let start = t.find("Origin:").unwrap();
    let end = t.find("-----BEGIN PGP SIGNATURE").unwrap();
    std::fs::write(&p, &t[start..end]).unwrap();
    let e = resolve_names(&r, &["app"]).unwrap_err();
    assert!(
        e.to_string().contains("does not verify against keyring"),
        "{e:#}"
    );

    let mut r = sample();
    r.release_extra = "Valid-Until: Sun, 02 Jan 2000 00:00:00 UTC\n".into();
    r.publish();
    let e = resolve_names(&r, &["app"]).unwrap_err();
    assert!(
        matches!(e.downcast_ref(), Some(repo::RepoError::Expired { .. })),
        "{e:#}"
    );
}

fn fetch_and_unpack(r: &TestRepo, name: &str) -> Result<Tree> {
    let src = r.source();
    let (index, _) = load_index(&src, &r.profile(&[name]), Arch::X86_64)?;
    let set = vec![Locked {
        role: Role::Image,
        info: index.best(name).unwrap().clone(),
    }];
    unpack_image(&fetch_all(&src, &set)?, Arch::X86_64)
}

#[test]
fn tampered_deb_is_refused_naming_package_and_url() {
    let r = sample();
    flip_byte(&r.path("pool/main/libbar_9_amd64.deb"));
    let e = format!("{:#}", fetch_and_unpack(&r, "libbar").unwrap_err());
    assert!(
        e.contains("package libbar 9")
            && e.contains("libbar_9_amd64.deb")
            && e.contains("does not match"),
        "{e}"
    );
    // Neither the bad bytes nor a temporary file are left in the cache.
    let bad = std::fs::read(r.path("pool/main/libbar_9_amd64.deb")).unwrap();
    for f in std::fs::read_dir(r.dir.path().join("cache/sha256")).unwrap() {
        let f = f.unwrap().path();
        assert!(
            std::fs::read(&f).unwrap() != bad,
            "{} holds the corrupt .deb",
            f.display()
        );
        assert!(
            !f.file_name().unwrap().to_string_lossy().contains(".tmp-"),
            "{} left behind",
            f.display()
        );
    }
}

#[test]
fn hostile_packages_fail_naming_package_and_entry() {
    let mut r = TestRepo::new();
    r.add(
        "dotdot",
        "1",
        "",
        &[("./usr/../../etc/shadow", Regular, b"x", "")],
    );
    r.add(
        "escape",
        "1",
        "",
        &[
            ("./usr/share/", Directory, b"", ""),
            ("./usr/share/doc", Symlink, b"", "../../../../../tmp"),
            ("./usr/share/doc/owned", Regular, b"x", ""),
        ],
    );
    r.publish();
    let e = format!("{:#}", fetch_and_unpack(&r, "dotdot").unwrap_err());
    assert!(
        e.contains("package dotdot") && e.contains("../../etc/shadow"),
        "{e}"
    );
    let e = format!("{:#}", fetch_and_unpack(&r, "escape").unwrap_err());
    assert!(
        e.contains("package escape") && e.contains("points outside the image"),
        "{e}"
    );
    assert!(!Path::new("/tmp/owned").exists());
}

#[test]
fn an_edited_extraction_or_index_cache_never_changes_what_is_unpacked() {
    let r = sample();
    let genuine = fetch_and_unpack(&r, "libfoo")
        .unwrap()
        .read("usr/lib/libfoo.so.2");
    assert_eq!(genuine.as_deref(), Some(&b"new"[..]));
    // Edit the cached data.tar in place (same size: a size check would not notice), and
    // the cached decompressed Packages index.
    let extract = r.dir.path().join("cache/extract");
    for e in std::fs::read_dir(&extract).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let mut bytes = std::fs::read(&p).unwrap();
        if name.ends_with(".tar") {
            if let Some(at) = bytes.windows(3).position(|w| w == b"new") {
                bytes[at..at + 3].copy_from_slice(b"bad");
                std::fs::write(&p, &bytes).unwrap();
            }
        } else if name.ends_with(".index") {
            let text = String::from_utf8(bytes)
                .unwrap()
                .replace("Version: 2.1-1", "Version: 9.9-9");
            std::fs::write(&p, text).unwrap();
        }
    }
    let again = fetch_and_unpack(&r, "libfoo").unwrap();
    assert_eq!(
        again.read("usr/lib/libfoo.so.2").as_deref(),
        Some(&b"new"[..])
    );
    let src = r.source();
    let (index, _) = load_index(&src, &r.profile(&["libfoo"]), Arch::X86_64).unwrap();
    assert_eq!(index.best("libfoo").unwrap().version, "2.1-1");
}

#[test]
fn a_locked_entry_whose_fields_were_edited_is_refused() {
    let r = sample();
    let src = r.source();
    let (index, _) = load_index(&src, &r.profile(&["libfoo"]), Arch::X86_64).unwrap();
    let mut info = index.best("libfoo").unwrap().clone();
    fetch_all(
        &src,
        &[Locked {
            role: Role::Image,
            info: info.clone(),
        }],
    )
    .unwrap();
    info.version = "9.9-9".into();
    let e = fetch_all(
        &src,
        &[Locked {
            role: Role::Image,
            info,
        }],
    )
    .unwrap_err();
    let e = format!("{e:#}");
    assert!(
        e.contains("Version `9.9-9`") && e.contains("`2.1-1`"),
        "{e}"
    );
}

#[test]
fn an_edited_cached_firmware_file_is_replaced_by_the_packages_bytes() {
    let mut r = TestRepo::new();
    r.add(
        "ovmf",
        "1",
        "",
        &[
            (
                "./usr/share/OVMF/CODE.fd",
                Regular,
                b"genuine firmware code",
                "",
            ),
            ("./usr/share/OVMF/VARS.fd", Regular, b"variable store", ""),
        ],
    );
    r.publish();
    let fw: crate::config::Firmware = toml::from_str(&format!(
        "name = \"ovmf\"\narch = \"x86_64\"\npackage = \"ovmf\"\nsuite = \"{}\"\ncode = \"/usr/share/OVMF/CODE.fd\"\nvars = \"/usr/share/OVMF/VARS.fd\"\n",
        super::testrepo::SUITE
    ))
    .unwrap();
    let src = r.source();
    let (code, vars) = fetch_firmware(&src, &fw).unwrap();
    assert_eq!(std::fs::read(&code).unwrap(), b"genuine firmware code");
    assert_eq!(std::fs::read(vars.unwrap()).unwrap(), b"variable store");
    // The same length, other bytes: QEMU must still be given the package's.
    flip_byte(&code);
    let (again, _) = fetch_firmware(&src, &fw).unwrap();
    assert_eq!(again, code);
    assert_eq!(std::fs::read(&again).unwrap(), b"genuine firmware code");
}
