//! ed25519 keys and signatures in minisign's format, so `minisign -V` verifies Ingot's
//! signatures without Ingot. Signatures are prehashed (BLAKE2b-512), so multi-GB files stream.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use blake2::{Blake2b512, Digest};
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};

/// A secret key with its minisign key id.
pub struct SecretKey {
    /// Key id (8 bytes).
    pub id: [u8; 8],
    /// ed25519 signing key.
    pub key: SigningKey,
}

/// A public key with its key id.
#[derive(Debug, Clone)]
pub struct PublicKey {
    /// Key id.
    pub id: [u8; 8],
    /// ed25519 verifying key.
    pub key: VerifyingKey,
}

/// Key id as minisign prints it (hex of the little-endian number).
pub fn key_id_hex(id: &[u8; 8]) -> String {
    format!("{:016X}", u64::from_le_bytes(*id))
}

impl SecretKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let key = SigningKey::generate(&mut rand_core::OsRng);
        let mut id = [0u8; 8];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut id);
        SecretKey { id, key }
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey {
            id: self.id,
            key: self.key.verifying_key(),
        }
    }

    /// minisign's unencrypted secret key file.
    pub fn to_file(&self) -> String {
        let mut b = Vec::new();
        b.extend_from_slice(b"Ed");
        b.extend_from_slice(&[0, 0]); // no KDF: the file itself must be protected (mode 0600)
        b.extend_from_slice(b"B2");
        b.extend_from_slice(&[0u8; 32 + 8 + 8]);
        let mut keynum = Vec::new();
        keynum.extend_from_slice(&self.id);
        keynum.extend_from_slice(&self.key.to_keypair_bytes());
        let mut h = blake2::Blake2b::<blake2::digest::consts::U32>::new();
        h.update(b"Ed");
        h.update(&keynum);
        b.extend_from_slice(&keynum);
        b.extend_from_slice(&h.finalize());
        format!(
            "untrusted comment: ingot secret key {} (unencrypted; keep offline)\n{}\n",
            key_id_hex(&self.id),
            B64.encode(b)
        )
    }

    /// Parse a secret key file written by `to_file` (or an unencrypted minisign key).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading secret key {}", path.display()))?;
        let line = text
            .lines()
            .nth(1)
            .with_context(|| format!("{}: not a minisign secret key", path.display()))?;
        let b = B64
            .decode(line.trim())
            .with_context(|| format!("{}: bad base64", path.display()))?;
        if b.len() != 158 || &b[0..2] != b"Ed" {
            bail!("{}: not an ed25519 minisign secret key", path.display());
        }
        if b[2..4] != [0, 0] {
            bail!(
                "{}: password-protected keys are not supported; use `ingot keygen`",
                path.display()
            );
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&b[54..62]);
        let kp: [u8; 64] = b[62..126].try_into()?;
        let key = SigningKey::from_keypair_bytes(&kp)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(SecretKey { id, key })
    }

    /// Sign a file's bytes (prehashed) with a trusted comment.
    pub fn sign_file(&self, path: &Path, trusted_comment: &str) -> Result<String> {
        let digest = blake2b_file(path)?;
        let sig = self.key.sign(&digest);
        let mut line1 = Vec::new();
        line1.extend_from_slice(b"ED");
        line1.extend_from_slice(&self.id);
        line1.extend_from_slice(&sig.to_bytes());
        let mut global = sig.to_bytes().to_vec();
        global.extend_from_slice(trusted_comment.as_bytes());
        let gsig = self.key.sign(&global);
        Ok(format!(
            "untrusted comment: signature from ingot secret key {}\n{}\ntrusted comment: {}\n{}\n",
            key_id_hex(&self.id),
            B64.encode(line1),
            trusted_comment,
            B64.encode(gsig.to_bytes())
        ))
    }
}

impl PublicKey {
    /// minisign public key file.
    pub fn to_file(&self) -> String {
        let mut b = b"Ed".to_vec();
        b.extend_from_slice(&self.id);
        b.extend_from_slice(self.key.as_bytes());
        format!(
            "untrusted comment: minisign public key {}\n{}\n",
            key_id_hex(&self.id),
            B64.encode(b)
        )
    }

    /// Parse a minisign public key file (or the bare base64 line).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading public key {}", path.display()))?;
        let line = text
            .lines()
            .find(|l| !l.starts_with("untrusted comment:") && !l.trim().is_empty())
            .with_context(|| format!("{}: empty public key", path.display()))?;
        let b = B64
            .decode(line.trim())
            .with_context(|| format!("{}: bad base64", path.display()))?;
        if b.len() != 42 || &b[0..2] != b"Ed" {
            bail!("{}: not a minisign ed25519 public key", path.display());
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&b[2..10]);
        let key = VerifyingKey::from_bytes(b[10..42].try_into()?)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(PublicKey { id, key })
    }

    /// Verify a minisign signature over a file; returns the trusted comment.
    pub fn verify_file(&self, path: &Path, sig_text: &str) -> Result<String> {
        let lines: Vec<&str> = sig_text.lines().collect();
        if lines.len() < 4 {
            bail!("signature file is truncated");
        }
        let b = B64
            .decode(lines[1].trim())
            .context("signature: bad base64")?;
        if b.len() != 74 || &b[0..2] != b"ED" {
            bail!("signature is not a prehashed ed25519 minisign signature");
        }
        if b[2..10] != self.id {
            bail!(
                "signature was made by key {}, not by this key {}",
                key_id_hex(b[2..10].try_into()?),
                key_id_hex(&self.id)
            );
        }
        let sig = ed25519_dalek::Signature::from_slice(&b[10..74])?;
        let digest = blake2b_file(path)?;
        self.key.verify(&digest, &sig).map_err(|_| {
            anyhow::anyhow!(
                "{}: signature does not match the file (changed since signing?)",
                path.display()
            )
        })?;
        let tc = lines[2]
            .strip_prefix("trusted comment: ")
            .context("signature: no trusted comment")?;
        let gb = B64
            .decode(lines[3].trim())
            .context("signature: bad base64 in global signature")?;
        let gsig = ed25519_dalek::Signature::from_slice(&gb)?;
        let mut global = b[10..74].to_vec();
        global.extend_from_slice(tc.as_bytes());
        self.key
            .verify(&global, &gsig)
            .map_err(|_| anyhow::anyhow!("the trusted comment was altered"))?;
        Ok(tc.to_string())
    }
}

fn blake2b_file(path: &Path) -> Result<Vec<u8>> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Blake2b512::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let d = tempfile::tempdir().unwrap();
        let sk = SecretKey::generate();
        let skp = d.path().join("k.key");
        std::fs::write(&skp, sk.to_file()).unwrap();
        let sk = SecretKey::from_file(&skp).unwrap();
        let pkp = d.path().join("k.pub");
        std::fs::write(&pkp, sk.public().to_file()).unwrap();
        let pk = PublicKey::from_file(&pkp).unwrap();
        let f = d.path().join("m.json");
        std::fs::write(&f, b"{}").unwrap();
        let sig = sk.sign_file(&f, "image=x version=1").unwrap();
        assert_eq!(pk.verify_file(&f, &sig).unwrap(), "image=x version=1");
        std::fs::write(&f, b"{ }").unwrap();
        assert!(pk.verify_file(&f, &sig).is_err());
        std::fs::write(&f, b"{}").unwrap();
        let forged = sig.replace("image=x", "image=y");
        assert!(pk.verify_file(&f, &forged).is_err());
        let other = SecretKey::generate().public();
        assert!(other.verify_file(&f, &sig).is_err());
    }
}
