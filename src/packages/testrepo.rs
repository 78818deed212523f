//! A small Debian repository the tests generate themselves: `.deb` files in a pool, a `Packages`
//! index per suite, and an `InRelease` clear-signed with a throw-away OpenPGP key. The tests
//! drive the real client code against it through `file://`, then tamper with one piece at a
//! time. Public (but hidden) so that the integration tests can drive the `ingot` binary against
//! it too; nothing in the tool itself uses it.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use pgp::composed::{
    CleartextSignedMessage, KeyType, SecretKeyParamsBuilder, SignedPublicKey, SignedSecretKey,
};
use pgp::ser::Serialize;
use pgp::types::Password;
use sha2::{Digest, Sha256};

use super::cache::Cache;
use super::Source;

/// One tar entry of a test package: path, kind, data, link target.
pub type TarEntry<'a> = (&'a str, tar::EntryType, &'a [u8], &'a str);

/// The suite [`TestRepo::add`] fills.
pub const SUITE: &str = "test";

/// A file:// repository under a temporary directory, component `main`, architecture amd64.
/// Suites ending in `-security` live in a second archive beside the first
/// (`archive-security`), the way Debian serves them, so `<mirror>-security` finds them.
pub struct TestRepo {
    /// Holds the archives, keyring and cache.
    pub dir: tempfile::TempDir,
    key: SignedSecretKey,
    stanzas: BTreeMap<String, Vec<String>>,
    /// Extra fields for every Release (e.g. `Valid-Until`).
    pub release_extra: String,
}

/// Make an ed25519 signing key.
pub fn signing_key() -> SignedSecretKey {
    let mut params = SecretKeyParamsBuilder::default();
    params
        .key_type(KeyType::Ed25519Legacy)
        .can_certify(true)
        .can_sign(true)
        .primary_user_id("Ingot test archive <test@example.invalid>".into());
    params
        .build()
        .expect("key parameters")
        .generate(rand_core::OsRng)
        .expect("key generation")
}

impl Default for TestRepo {
    fn default() -> Self {
        Self::new()
    }
}

impl TestRepo {
    /// An empty repository with a fresh key; its public half is written to `keyring.gpg`.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = signing_key();
        let public = SignedPublicKey::from(key.clone());
        let mut bytes = Vec::new();
        public.to_writer(&mut bytes).unwrap();
        std::fs::write(dir.path().join("keyring.gpg"), bytes).unwrap();
        TestRepo {
            dir,
            key,
            stanzas: BTreeMap::from([(SUITE.to_string(), Vec::new())]),
            release_extra: String::new(),
        }
    }

    /// Archive root of the main suites.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("archive")
    }

    /// Archive root serving `suite`.
    pub fn root_of(&self, suite: &str) -> PathBuf {
        if suite.ends_with("-security") {
            self.dir.path().join("archive-security")
        } else {
            self.root()
        }
    }

    /// `file://` URL of the archive.
    pub fn mirror(&self) -> String {
        format!("file://{}", self.root().display())
    }

    /// The public key file.
    pub fn keyring(&self) -> PathBuf {
        self.dir.path().join("keyring.gpg")
    }

    /// Path of a file inside the main archive.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    /// Add a package to suite `test`. `fields` are extra control fields (`Depends: ...`, one
    /// per line).
    pub fn add(&mut self, name: &str, version: &str, fields: &str, entries: &[TarEntry<'_>]) {
        self.add_to(SUITE, name, version, fields, entries)
    }

    /// Add a package to `suite`.
    pub fn add_to(
        &mut self,
        suite: &str,
        name: &str,
        version: &str,
        fields: &str,
        entries: &[TarEntry<'_>],
    ) {
        let control = format!(
            "Package: {name}\nVersion: {version}\nArchitecture: amd64\nMaintainer: Test <t@example.invalid>\n{fields}Description: test package {name}\n"
        );
        let deb = make_deb(&control, entries);
        let file = format!("pool/main/{name}_{}_amd64.deb", version.replace(':', "%3a"));
        let p = self.root_of(suite).join(&file);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, &deb).unwrap();
        self.stanzas
            .entry(suite.to_string())
            .or_default()
            .push(format!(
                "{}Filename: {file}\nSize: {}\nSHA256: {}\n",
                control.replace("Description", "Priority: optional\nDescription"),
                deb.len(),
                hex::encode(Sha256::digest(&deb))
            ));
    }

    /// Write every suite's `Packages`, `Packages.gz` and a clear-signed `InRelease` listing
    /// their digests.
    pub fn publish(&self) {
        self.publish_signed_by(&self.key)
    }

    /// Publish, signing the Releases with another key.
    pub fn publish_signed_by(&self, key: &SignedSecretKey) {
        for (suite, stanzas) in &self.stanzas {
            self.publish_suite(suite, stanzas, key);
        }
    }

    fn publish_suite(&self, suite: &str, stanzas: &[String], key: &SignedSecretKey) {
        let dist = self.root_of(suite).join("dists").join(suite);
        let idx_dir = dist.join("main/binary-amd64");
        std::fs::create_dir_all(&idx_dir).unwrap();
        let packages = stanzas.join("\n");
        std::fs::write(idx_dir.join("Packages"), &packages).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(packages.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        std::fs::write(idx_dir.join("Packages.gz"), &gz).unwrap();
        let mut release = format!(
            "Origin: Ingot tests\nSuite: {suite}\nCodename: {suite}\nDate: Sat, 01 Jan 2000 00:00:00 UTC\n{}Architectures: amd64\nComponents: main\nSHA256:\n",
            self.release_extra
        );
        for (name, data) in [
            ("main/binary-amd64/Packages", packages.as_bytes()),
            ("main/binary-amd64/Packages.gz", &gz[..]),
        ] {
            release.push_str(&format!(
                " {} {} {name}\n",
                hex::encode(Sha256::digest(data)),
                data.len()
            ));
        }
        let signed = CleartextSignedMessage::sign(
            rand_core::OsRng,
            &release,
            &key.primary_key,
            &Password::empty(),
        )
        .unwrap();
        let text = signed.to_armored_string(Default::default()).unwrap();
        std::fs::write(dist.join("InRelease"), text).unwrap();
    }

    /// A package source reading this archive, with its own cache.
    pub fn source(&self) -> Source {
        Source {
            mirror: self.mirror(),
            keyring: self.keyring(),
            cache: Cache::open(Some(&self.dir.path().join("cache"))).unwrap(),
            jobs: 2,
            progress: false,
            explicit_mirror: true,
            security_mirrors: Default::default(),
        }
    }

    /// Write a profile for suite `test` including `packages`, and return it loaded.
    pub fn profile(&self, packages: &[&str]) -> crate::config::Profile {
        let list: Vec<String> = packages.iter().map(|p| format!("{p:?}")).collect();
        let path = self.dir.path().join("p.toml");
        std::fs::write(
            &path,
            format!(
                "init = \"systemd\"\n[image]\nname = \"t\"\nversion = \"1.0.0\"\n[distribution]\nsuite = \"{SUITE}\"\n[packages]\ninclude = [{}]\n",
                list.join(", ")
            ),
        )
        .unwrap();
        crate::config::load_profile(&path).unwrap()
    }
}

/// Flip one byte in the middle of a file.
pub fn flip_byte(path: &Path) {
    let mut b = std::fs::read(path).unwrap();
    let at = b.len() / 2;
    b[at] ^= 0x20;
    std::fs::write(path, b).unwrap();
}

/// gzip `data` (the way Debian ships changelogs).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Build a .deb in memory: `entries` are (path, kind, data, link) tar entries for
/// data.tar.gz, written byte for byte (hostile names included).
pub fn make_deb(control: &str, entries: &[TarEntry<'_>]) -> Vec<u8> {
    make_deb_with_scripts(control, &[], entries)
}

/// [`make_deb`] with maintainer scripts (`postinst`, ...) beside the control file.
pub fn make_deb_with_scripts(
    control: &str,
    scripts: &[(&str, &str)],
    entries: &[TarEntry<'_>],
) -> Vec<u8> {
    fn tar_of(entries: &[TarEntry<'_>]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, ty, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*ty);
            h.set_size(data.len() as u64);
            h.set_mode(0o755);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1);
            // Raw name bytes: the builder API refuses `..`, which hostile packages use.
            let name = h.as_old_mut().name.as_mut();
            name.fill(0);
            name[..path.len()].copy_from_slice(path.as_bytes());
            if !link.is_empty() {
                let l = h.as_old_mut().linkname.as_mut();
                l[..link.len()].copy_from_slice(link.as_bytes());
            }
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }
    let names: Vec<String> = scripts.iter().map(|(n, _)| format!("./{n}")).collect();
    let mut control_entries = vec![("./control", tar::EntryType::Regular, control.as_bytes(), "")];
    for (name, (_, text)) in names.iter().zip(scripts) {
        control_entries.push((name.as_str(), tar::EntryType::Regular, text.as_bytes(), ""));
    }
    let control_tar = gzip(&tar_of(&control_entries));
    let data_tar = gzip(&tar_of(entries));
    let mut out = b"!<arch>\n".to_vec();
    for (name, data) in [
        ("debian-binary", b"2.0\n".to_vec()),
        ("control.tar.gz", control_tar),
        ("data.tar.gz", data_tar),
    ] {
        out.extend(
            format!(
                "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
                name,
                0,
                0,
                0,
                100644,
                data.len()
            )
            .as_bytes(),
        );
        out.extend(&data);
        if data.len() % 2 == 1 {
            out.push(b'\n');
        }
    }
    out
}
