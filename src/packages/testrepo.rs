//! A small Debian repository the tests generate themselves: `.deb` files in a pool, a `Packages`
//! index, and an `InRelease` clear-signed with a throw-away OpenPGP key. The tests drive the real
//! client code against it through `file://`, then tamper with one piece at a time.

use std::path::{Path, PathBuf};

use pgp::composed::{
    CleartextSignedMessage, KeyType, SecretKeyParamsBuilder, SignedPublicKey, SignedSecretKey,
};
use pgp::ser::Serialize;
use pgp::types::Password;
use sha2::{Digest, Sha256};

use super::cache::Cache;
use super::deb::tests::make_deb;
use super::Source;

/// One tar entry of a test package: path, kind, data, link target.
pub type TarEntry<'a> = (&'a str, tar::EntryType, &'a [u8], &'a str);

/// A file:// repository under a temporary directory, suite `test`, component `main`.
pub struct TestRepo {
    /// Holds the archive, keyring and cache.
    pub dir: tempfile::TempDir,
    key: SignedSecretKey,
    stanzas: Vec<String>,
    /// Extra fields for the Release (e.g. `Valid-Until`).
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
            stanzas: Vec::new(),
            release_extra: String::new(),
        }
    }

    /// Archive root.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("archive")
    }

    /// `file://` URL of the archive.
    pub fn mirror(&self) -> String {
        format!("file://{}", self.root().display())
    }

    /// Path of a file inside the archive.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    /// Add a package. `fields` are extra control fields (`Depends: ...`, one per line).
    pub fn add(&mut self, name: &str, version: &str, fields: &str, entries: &[TarEntry<'_>]) {
        let control = format!(
            "Package: {name}\nVersion: {version}\nArchitecture: amd64\nMaintainer: Test <t@example.invalid>\n{fields}Description: test package {name}\n"
        );
        let deb = make_deb(&control, entries);
        let file = format!("pool/main/{name}_{}_amd64.deb", version.replace(':', "%3a"));
        let p = self.path(&file);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, &deb).unwrap();
        self.stanzas.push(format!(
            "{}Filename: {file}\nSize: {}\nSHA256: {}\n",
            control.replace("Description", "Priority: optional\nDescription"),
            deb.len(),
            hex::encode(Sha256::digest(&deb))
        ));
    }

    /// Write `Packages`, `Packages.gz` and a clear-signed `InRelease` listing their digests.
    pub fn publish(&self) {
        self.publish_signed_by(&self.key)
    }

    /// Publish, signing the Release with another key.
    pub fn publish_signed_by(&self, key: &SignedSecretKey) {
        let dist = self.path("dists/test");
        let idx_dir = dist.join("main/binary-amd64");
        std::fs::create_dir_all(&idx_dir).unwrap();
        let packages = self.stanzas.join("\n");
        std::fs::write(idx_dir.join("Packages"), &packages).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, packages.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        std::fs::write(idx_dir.join("Packages.gz"), &gz).unwrap();
        let mut release = format!(
            "Origin: Ingot tests\nSuite: test\nCodename: test\nDate: Sat, 01 Jan 2000 00:00:00 UTC\n{}Architectures: amd64\nComponents: main\nSHA256:\n",
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
            keyring: self.dir.path().join("keyring.gpg"),
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
                "init = \"systemd\"\n[image]\nname = \"t\"\nversion = \"1.0.0\"\n[distribution]\nsuite = \"test\"\n[packages]\ninclude = [{}]\n",
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
