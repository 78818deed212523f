//! ed25519 keys and signatures in minisign's format, so `minisign -V` verifies Ingot's
//! signatures without Ingot. Signatures are prehashed (BLAKE2b-512), so multi-GB files stream.
//!
//! Parsing is split from I/O: `PublicKey::parse`, `SecretKey::parse` and `Signature::parse`
//! take text and return a typed [`MinisignError`]; the `*_file` helpers add the path.

use std::io::Read;
use std::path::Path;

use crate::base::BadInput;
use anyhow::{Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use blake2::{Blake2b512, Digest};
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};

/// Why a key or signature was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum MinisignError {
    /// No base64 line where the format has one.
    #[error("no key or signature line")]
    Empty,
    /// The base64 line does not decode.
    #[error("bad base64")]
    Base64,
    /// Decoded, but not the algorithm and length this format has.
    #[error("not a minisign ed25519 {0}")]
    WrongKind(&'static str),
    /// A password-protected secret key (scrypt KDF).
    #[error("password-protected keys are not supported; use `ingot keygen`")]
    Encrypted,
    /// The key bytes are not a valid ed25519 key.
    #[error("invalid ed25519 key")]
    BadKey,
    /// The signature file lacks lines.
    #[error("signature file is truncated")]
    Truncated,
    /// No `trusted comment:` line.
    #[error("signature has no trusted comment")]
    NoTrustedComment,
    /// Made by another key.
    #[error("signature was made by key {found}, not by this key {expected}")]
    OtherKey {
        /// Key id in the signature.
        found: String,
        /// Key id of the key given.
        expected: String,
    },
    /// The signature does not match the signed bytes.
    #[error("signature does not match the file (changed since signing?)")]
    Mismatch,
    /// The trusted comment was changed after signing.
    #[error("the trusted comment was altered")]
    CommentAltered,
}

/// A secret key with its minisign key id.
pub struct SecretKey {
    /// Key id (8 bytes).
    pub id: [u8; 8],
    /// ed25519 signing key.
    pub key: SigningKey,
}

impl std::fmt::Debug for SecretKey {
    /// The key id only: a secret key never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({})", key_id_hex(&self.id))
    }
}

/// A public key with its key id.
#[derive(Debug, Clone)]
pub struct PublicKey {
    /// Key id.
    pub id: [u8; 8],
    /// ed25519 verifying key.
    pub key: VerifyingKey,
}

/// A parsed `.minisig`: key id, prehashed signature, trusted comment and its signature.
#[derive(Debug, Clone)]
pub struct Signature {
    /// Key id of the signer.
    pub key_id: [u8; 8],
    /// Signature over BLAKE2b-512 of the file.
    pub sig: ed25519_dalek::Signature,
    /// The trusted comment.
    pub trusted_comment: String,
    /// Signature over `sig ‖ trusted_comment`.
    pub global: ed25519_dalek::Signature,
}

/// Key id as minisign prints it (hex of the little-endian number).
pub fn key_id_hex(id: &[u8; 8]) -> String {
    format!("{:016X}", u64::from_le_bytes(*id))
}

/// The first line that is neither a comment nor blank, decoded.
fn payload_line(text: &str) -> Result<Vec<u8>, MinisignError> {
    let line = text
        .lines()
        .find(|l| !l.starts_with("untrusted comment:") && !l.trim().is_empty())
        .ok_or(MinisignError::Empty)?;
    B64.decode(line.trim()).map_err(|_| MinisignError::Base64)
}

fn id_of(b: &[u8]) -> [u8; 8] {
    let mut id = [0u8; 8];
    id.copy_from_slice(&b[..8]);
    id
}

fn sig_of(b: &[u8]) -> Result<ed25519_dalek::Signature, MinisignError> {
    ed25519_dalek::Signature::from_slice(b).map_err(|_| MinisignError::WrongKind("signature"))
}

/// The text of a key file the user named. A key that cannot be read (missing, a directory, a
/// device, not text) or does not parse is bad input (exit 2), as any other input file is: only
/// a signature that does not verify is a failed verification.
fn read_key(path: &Path, kind: &str) -> Result<String> {
    crate::base::fsx::read_to_string(path).map_err(|e| BadInput(format!("{kind}: {e:#}")).into())
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

    /// Parse the text of a secret key file written by `to_file` (or an unencrypted minisign key).
    pub fn parse(text: &str) -> Result<Self, MinisignError> {
        let b = payload_line(text)?;
        if b.len() != 158 || &b[0..2] != b"Ed" {
            return Err(MinisignError::WrongKind("secret key"));
        }
        if b[2..4] != [0, 0] {
            return Err(MinisignError::Encrypted);
        }
        let id = id_of(&b[54..62]);
        let kp: [u8; 64] = b[62..126]
            .try_into()
            .map_err(|_| MinisignError::WrongKind("secret key"))?;
        let key = SigningKey::from_keypair_bytes(&kp).map_err(|_| MinisignError::BadKey)?;
        Ok(SecretKey { id, key })
    }

    /// Read and parse a secret key file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = read_key(path, "secret key")?;
        Self::parse(&text)
            .map_err(|e| BadInput(format!("secret key {}: {e}", path.display())).into())
    }

    /// Sign a BLAKE2b-512 prehash with a trusted comment: the `.minisig` text.
    fn sign_digest(&self, digest: &[u8], trusted_comment: &str) -> String {
        let sig = self.key.sign(digest);
        let mut line1 = Vec::new();
        line1.extend_from_slice(b"ED");
        line1.extend_from_slice(&self.id);
        line1.extend_from_slice(&sig.to_bytes());
        let mut global = sig.to_bytes().to_vec();
        global.extend_from_slice(trusted_comment.as_bytes());
        let gsig = self.key.sign(&global);
        format!(
            "untrusted comment: signature from ingot secret key {}\n{}\ntrusted comment: {}\n{}\n",
            key_id_hex(&self.id),
            B64.encode(line1),
            trusted_comment,
            B64.encode(gsig.to_bytes())
        )
    }

    /// Sign bytes held in memory.
    pub fn sign_bytes(&self, data: &[u8], trusted_comment: &str) -> String {
        self.sign_digest(&Blake2b512::digest(data), trusted_comment)
    }

    /// Sign a file's bytes (prehashed, streamed) with a trusted comment.
    pub fn sign_file(&self, path: &Path, trusted_comment: &str) -> Result<String> {
        Ok(self.sign_digest(&blake2b_file(path)?, trusted_comment))
    }
}

impl Signature {
    /// Parse a `.minisig` file's text.
    pub fn parse(text: &str) -> Result<Self, MinisignError> {
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() < 4 {
            return Err(MinisignError::Truncated);
        }
        let b = B64
            .decode(lines[1].trim())
            .map_err(|_| MinisignError::Base64)?;
        if b.len() != 74 || &b[0..2] != b"ED" {
            return Err(MinisignError::WrongKind("prehashed signature"));
        }
        let trusted_comment = lines[2]
            .strip_prefix("trusted comment: ")
            .ok_or(MinisignError::NoTrustedComment)?
            .to_string();
        let gb = B64
            .decode(lines[3].trim())
            .map_err(|_| MinisignError::Base64)?;
        Ok(Signature {
            key_id: id_of(&b[2..10]),
            sig: sig_of(&b[10..74])?,
            trusted_comment,
            global: sig_of(&gb)?,
        })
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

    /// Parse a public key file's text (or the bare base64 line).
    pub fn parse(text: &str) -> Result<Self, MinisignError> {
        let b = payload_line(text)?;
        if b.len() != 42 || &b[0..2] != b"Ed" {
            return Err(MinisignError::WrongKind("public key"));
        }
        let raw: [u8; 32] = b[10..42]
            .try_into()
            .map_err(|_| MinisignError::WrongKind("public key"))?;
        let key = VerifyingKey::from_bytes(&raw).map_err(|_| MinisignError::BadKey)?;
        Ok(PublicKey {
            id: id_of(&b[2..10]),
            key,
        })
    }

    /// Read and parse a public key file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = read_key(path, "public key")?;
        Self::parse(&text)
            .map_err(|e| BadInput(format!("public key {}: {e}", path.display())).into())
    }

    /// Check a parsed signature against a BLAKE2b-512 prehash; returns the trusted comment.
    fn verify_digest(&self, digest: &[u8], sig_text: &str) -> Result<String, MinisignError> {
        let s = Signature::parse(sig_text)?;
        if s.key_id != self.id {
            return Err(MinisignError::OtherKey {
                found: key_id_hex(&s.key_id),
                expected: key_id_hex(&self.id),
            });
        }
        self.key
            .verify(digest, &s.sig)
            .map_err(|_| MinisignError::Mismatch)?;
        let mut global = s.sig.to_bytes().to_vec();
        global.extend_from_slice(s.trusted_comment.as_bytes());
        self.key
            .verify(&global, &s.global)
            .map_err(|_| MinisignError::CommentAltered)?;
        Ok(s.trusted_comment)
    }

    /// Verify a signature over bytes held in memory; returns the trusted comment.
    pub fn verify_bytes(&self, data: &[u8], sig_text: &str) -> Result<String, MinisignError> {
        self.verify_digest(&Blake2b512::digest(data), sig_text)
    }

    /// Verify a minisign signature over a file; returns the trusted comment.
    pub fn verify_file(&self, path: &Path, sig_text: &str) -> Result<String> {
        let digest = blake2b_file(path)?;
        self.verify_digest(&digest, sig_text)
            .with_context(|| path.display().to_string())
    }
}

fn blake2b_file(path: &Path) -> Result<Vec<u8>> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Blake2b512::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
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
        assert_eq!(sig, sk.sign_bytes(b"{}", "image=x version=1"));
        std::fs::write(&f, b"{ }").unwrap();
        assert!(pk.verify_file(&f, &sig).is_err());
        std::fs::write(&f, b"{}").unwrap();
        let forged = sig.replace("image=x", "image=y");
        assert_eq!(
            pk.verify_bytes(b"{}", &forged),
            Err(MinisignError::CommentAltered)
        );
        let other = SecretKey::generate().public();
        assert!(matches!(
            other.verify_bytes(b"{}", &sig),
            Err(MinisignError::OtherKey { .. })
        ));
        assert_eq!(pk.verify_bytes(b"{ }", &sig), Err(MinisignError::Mismatch));
    }

    #[test]
    fn each_malformed_input_has_its_own_error() {
        let sk = SecretKey::generate();
        let sig = sk.sign_bytes(b"x", "c");
        let lines: Vec<&str> = sig.lines().collect();
        assert_eq!(
            Signature::parse(&lines[..3].join("\n")).err(),
            Some(MinisignError::Truncated)
        );
        let no_tc = format!("{}\n{}\nnot a comment\n{}\n", lines[0], lines[1], lines[3]);
        assert_eq!(
            Signature::parse(&no_tc).err(),
            Some(MinisignError::NoTrustedComment)
        );
        let bad64 = format!("{}\n!!!\n{}\n{}\n", lines[0], lines[2], lines[3]);
        assert_eq!(Signature::parse(&bad64).err(), Some(MinisignError::Base64));
        let pubtext = sk.public().to_file();
        assert_eq!(
            Signature::parse(&format!("{pubtext}{pubtext}")).err(),
            Some(MinisignError::WrongKind("prehashed signature"))
        );
        assert_eq!(PublicKey::parse("").err(), Some(MinisignError::Empty));
        assert_eq!(
            PublicKey::parse(&sk.to_file()).err(),
            Some(MinisignError::WrongKind("public key"))
        );
        let mut enc = B64.decode(sk.to_file().lines().nth(1).unwrap()).unwrap();
        enc[2] = b'S';
        assert_eq!(
            SecretKey::parse(&format!("untrusted comment: k\n{}\n", B64.encode(&enc))).err(),
            Some(MinisignError::Encrypted)
        );
    }
}
