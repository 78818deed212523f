//! Trust: manifest, signatures (minisign), SBOMs (SPDX 2.3, CycloneDX 1.5), provenance
//! (in-toto Statement v1 + SLSA Provenance v1 in a DSSE envelope), and verification.

pub mod minisign;

use anyhow::{Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::Signer;
use serde_json::{json, Value};

use crate::base::identity::rfc3339;
use crate::packages::Ready;

/// Canonical JSON: sorted keys (serde_json's map is ordered), no insignificant whitespace.
pub fn canonical(v: &Value) -> String {
    v.to_string()
}

/// Package URL of a Debian package.
pub fn purl(name: &str, version: &str, arch: &str, suite: &str) -> String {
    let enc = |s: &str| {
        s.replace('%', "%25")
            .replace('+', "%2B")
            .replace(':', "%3A")
    };
    format!(
        "pkg:deb/debian/{}@{}?arch={}&distro={}",
        enc(name),
        enc(version),
        arch,
        suite
    )
}

fn spdx_id(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn spdx_license(l: &[String]) -> String {
    // Debian's DEP-5 names are close to SPDX ids but not always valid; keep only those that are
    // plain ids and fall back to NOASSERTION.
    let ok: Vec<&String> = l
        .iter()
        .filter(|x| {
            !x.is_empty()
                && x.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '+')
        })
        .collect();
    if ok.is_empty() || ok.len() != l.len() {
        return "NOASSERTION".into();
    }
    let mapped: Vec<String> = ok
        .iter()
        .map(|x| {
            let s = x.as_str();
            if s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
                && !s.ends_with('+')
            {
                format!("LicenseRef-{s}")
            } else {
                format!("LicenseRef-{}", s.replace('+', "-or-later"))
            }
        })
        .collect();
    if mapped.len() == 1 {
        mapped[0].clone()
    } else {
        format!("({})", mapped.join(" AND "))
    }
}

/// A file Ingot or the profile put in the image, with the digests the SBOMs record.
#[derive(Debug, Clone)]
pub struct AddedFile {
    /// Absolute path in the image.
    pub path: String,
    /// SHA-256 of the content.
    pub sha256: String,
    /// SHA-1 of the content (SPDX 2.3 requires one per file).
    pub sha1: String,
}

/// Files Ingot or the profile added (agents, overlays, generated configuration).
pub fn added_files(tree: &crate::tree::Tree) -> Vec<AddedFile> {
    use sha2::Digest;
    tree.iter()
        .filter(|(_, e)| e.origin.starts_with("ingot:") || e.origin.is_empty())
        .filter_map(|(p, e)| match &e.kind {
            crate::tree::Kind::File(c) => c.read_all().ok().map(|d| AddedFile {
                path: format!("/{p}"),
                sha256: hex::encode(sha2::Sha256::digest(&d)),
                sha1: sha1::digest_hex(&d),
            }),
            _ => None,
        })
        .collect()
}

/// SPDX 2.3 JSON document.
pub fn spdx(
    image: &str,
    version: &str,
    suite: &str,
    epoch: i64,
    pkgs: &[Ready],
    files: &[AddedFile],
) -> Value {
    let mut packages = vec![json!({
        "SPDXID": "SPDXRef-Image", "name": image, "versionInfo": version, "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false, "primaryPackagePurpose": "OPERATING-SYSTEM", "supplier": "NOASSERTION",
        "licenseConcluded": "NOASSERTION", "licenseDeclared": "NOASSERTION", "copyrightText": "NOASSERTION",
    })];
    let mut rels = vec![
        json!({"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": "SPDXRef-Image"}),
    ];
    let mut extracted = std::collections::BTreeSet::new();
    for r in pkgs
        .iter()
        .filter(|r| r.locked.role == crate::packages::Role::Image)
    {
        let i = &r.locked.info;
        let id = format!("SPDXRef-Package-{}-{}", spdx_id(&i.name), spdx_id(&i.arch));
        let lic = spdx_license(&r.extracted.licenses);
        for l in lic.trim_matches(|c| c == '(' || c == ')').split(" AND ") {
            if let Some(s) = l.strip_prefix("LicenseRef-") {
                extracted.insert(s.to_string());
            }
        }
        packages.push(json!({
            "SPDXID": id, "name": i.name, "versionInfo": i.version, "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "supplier": if i.maintainer.is_empty() { "NOASSERTION".to_string() } else { format!("Organization: {}", i.maintainer) },
            "licenseConcluded": "NOASSERTION", "licenseDeclared": lic, "copyrightText": "NOASSERTION",
            "checksums": [{"algorithm": "SHA256", "checksumValue": i.sha256}],
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": purl(&i.name, &i.version, &i.arch, suite)}],
        }));
        rels.push(json!({"spdxElementId": "SPDXRef-Image", "relationshipType": "CONTAINS", "relatedSpdxElement": id}));
    }
    // Ingot's generated dpkg entries: in the image's dpkg database, so listed too, with Ingot
    // as supplier and no Debian package URL or .deb digest (there is no .deb).
    for r in pkgs
        .iter()
        .filter(|r| r.locked.role == crate::packages::Role::Generated)
    {
        let i = &r.locked.info;
        let id = format!("SPDXRef-Generated-{}", spdx_id(&i.name));
        packages.push(json!({
            "SPDXID": id, "name": i.name, "versionInfo": i.version, "downloadLocation": "NONE",
            "filesAnalyzed": false, "supplier": format!("Organization: {}", i.maintainer),
            "licenseConcluded": "NOASSERTION", "licenseDeclared": "NOASSERTION", "copyrightText": "NOASSERTION",
            "comment": "A dpkg database entry Ingot writes for what its build does in place of a Debian package (no .deb).",
        }));
        rels.push(json!({"spdxElementId": "SPDXRef-Image", "relationshipType": "CONTAINS", "relatedSpdxElement": id}));
    }
    let mut file_list = Vec::new();
    for (k, f) in files.iter().enumerate() {
        let id = format!("SPDXRef-File-{k}");
        file_list.push(json!({"SPDXID": id, "fileName": format!(".{}", f.path), "checksums": [{"algorithm": "SHA256", "checksumValue": f.sha256}, {"algorithm": "SHA1", "checksumValue": f.sha1}], "licenseConcluded": "NOASSERTION", "copyrightText": "NOASSERTION"}));
        // The image package is not file-analysed, so SPDX forbids it to CONTAIN files: the
        // document describes them directly instead.
        rels.push(json!({"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": id}));
    }
    let ns = format!(
        "https://spdx.org/spdxdocs/ingot/{image}-{version}-{}",
        &crate::base::identity::derived_guid(&format!("{image}-{version}"), "spdx").to_string()
    );
    json!({
        "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{image}-{version}"), "documentNamespace": ns,
        "creationInfo": {"created": rfc3339(epoch), "creators": [format!("Tool: ingot-{}", env!("CARGO_PKG_VERSION"))]},
        "packages": packages, "files": file_list, "relationships": rels,
        "hasExtractedLicensingInfos": extracted.iter().map(|l| json!({"licenseId": format!("LicenseRef-{}", spdx_id(l).replace('+', "-or-later")), "extractedText": format!("Debian copyright file licence name: {l}"), "name": l})).collect::<Vec<_>>(),
    })
}

/// SHA-1, only because SPDX 2.3 requires it on every file entry.
mod sha1 {
    /// SHA-1 (FIPS 180-4) of a byte string, hex encoded.
    pub fn digest_hex(data: &[u8]) -> String {
        let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
        let mut msg = data.to_vec();
        let bits = (data.len() as u64).wrapping_mul(8);
        msg.push(0x80);
        while msg.len() % 64 != 56 {
            msg.push(0);
        }
        msg.extend_from_slice(&bits.to_be_bytes());
        for chunk in msg.chunks(64) {
            let mut w = [0u32; 80];
            for i in 0..16 {
                w[i] = u32::from_be_bytes([
                    chunk[4 * i],
                    chunk[4 * i + 1],
                    chunk[4 * i + 2],
                    chunk[4 * i + 3],
                ]);
            }
            for i in 16..80 {
                w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
            }
            let (mut a, mut b, mut c, mut d, mut e) = (h[0], h[1], h[2], h[3], h[4]);
            for (i, wi) in w.iter().enumerate() {
                let (f, k) = match i {
                    0..=19 => ((b & c) | (!b & d), 0x5A827999),
                    20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                    40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                    _ => (b ^ c ^ d, 0xCA62C1D6),
                };
                let t = a
                    .rotate_left(5)
                    .wrapping_add(f)
                    .wrapping_add(e)
                    .wrapping_add(k)
                    .wrapping_add(*wi);
                e = d;
                d = c;
                c = b.rotate_left(30);
                b = a;
                a = t;
            }
            for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
                *x = x.wrapping_add(y);
            }
        }
        h.iter().map(|x| format!("{x:08x}")).collect()
    }

    #[test]
    fn known_vector() {
        assert_eq!(
            digest_hex(b"abc"),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }
}

/// CycloneDX 1.5 JSON document.
pub fn cyclonedx(
    image: &str,
    version: &str,
    suite: &str,
    epoch: i64,
    pkgs: &[Ready],
    files: &[AddedFile],
) -> Value {
    let mut comps = Vec::new();
    for r in pkgs
        .iter()
        .filter(|r| r.locked.role == crate::packages::Role::Image)
    {
        let i = &r.locked.info;
        let p = purl(&i.name, &i.version, &i.arch, suite);
        let mut c = json!({
            "type": "library", "bom-ref": p, "name": i.name, "version": i.version, "purl": p,
            "hashes": [{"alg": "SHA-256", "content": i.sha256}],
            "properties": [{"name": "dev.ingot:arch", "value": i.arch}, {"name": "dev.ingot:suite", "value": i.suite}],
        });
        if !i.maintainer.is_empty() {
            c["supplier"] = json!({"name": i.maintainer});
        }
        if !r.extracted.licenses.is_empty() {
            c["licenses"] = Value::Array(
                r.extracted
                    .licenses
                    .iter()
                    .map(|l| json!({"license": {"name": l}}))
                    .collect(),
            );
        }
        comps.push(c);
    }
    for r in pkgs
        .iter()
        .filter(|r| r.locked.role == crate::packages::Role::Generated)
    {
        let i = &r.locked.info;
        comps.push(json!({
            "type": "library", "bom-ref": format!("generated:{}", i.name), "name": i.name, "version": i.version,
            "supplier": {"name": i.maintainer},
            "description": "A dpkg database entry Ingot writes for what its build does in place of a Debian package (no .deb).",
            "properties": [{"name": "dev.ingot:generated", "value": "true"}],
        }));
    }
    for f in files {
        comps.push(json!({"type": "file", "bom-ref": format!("file:{}", f.path), "name": f.path, "hashes": [{"alg": "SHA-256", "content": f.sha256}, {"alg": "SHA-1", "content": f.sha1}]}));
    }
    json!({
        "bomFormat": "CycloneDX", "specVersion": "1.5",
        "serialNumber": format!("urn:uuid:{}", crate::base::identity::derived_guid(&format!("{image}-{version}"), "cyclonedx")),
        "version": 1,
        "metadata": {
            "timestamp": rfc3339(epoch),
            "tools": [{"vendor": "ingot", "name": "ingot", "version": env!("CARGO_PKG_VERSION")}],
            "component": {"type": "operating-system", "bom-ref": format!("image:{image}"), "name": image, "version": version},
        },
        "components": comps,
    })
}

/// DSSE pre-authentication encoding.
pub fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut v = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        body.len()
    )
    .into_bytes();
    v.extend_from_slice(body);
    v
}

/// in-toto Statement v1 with a SLSA Provenance v1 predicate.
pub fn provenance_statement(
    subjects: &[(String, String)],
    params: Value,
    deps: Vec<Value>,
    epoch: i64,
) -> Value {
    json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": subjects.iter().map(|(n, d)| json!({"name": n, "digest": {"sha256": d}})).collect::<Vec<_>>(),
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {"buildType": "https://ingot.dev/build/v1", "externalParameters": params, "resolvedDependencies": deps},
            "runDetails": {"builder": {"id": format!("https://ingot.dev/builder/ingot@{}", env!("CARGO_PKG_VERSION"))}, "metadata": {"startedOn": rfc3339(epoch)}},
        },
    })
}

/// Wrap a statement in a DSSE envelope signed with the key (unsigned when no key is given).
pub fn dsse(statement: &Value, key: Option<&minisign::SecretKey>) -> Value {
    let body = canonical(statement).into_bytes();
    let ty = "application/vnd.in-toto+json";
    let sigs: Vec<Value> = key
        .map(|k| vec![json!({"keyid": minisign::key_id_hex(&k.id), "sig": B64.encode(k.key.sign(&pae(ty, &body)).to_bytes())})])
        .unwrap_or_default();
    json!({"payloadType": ty, "payload": B64.encode(&body), "signatures": sigs})
}

/// The same envelope signed by `key` (its payload unchanged; earlier signatures by other keys
/// kept, one by this key replaced).
pub fn dsse_add_signature(envelope: &Value, key: &minisign::SecretKey) -> Result<Value> {
    let ty = envelope["payloadType"]
        .as_str()
        .context("DSSE: no payloadType")?;
    let body = B64
        .decode(envelope["payload"].as_str().context("DSSE: no payload")?)
        .context("DSSE: payload is not base64")?;
    let id = minisign::key_id_hex(&key.id);
    let mut sigs: Vec<Value> = envelope["signatures"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|s| s["keyid"].as_str() != Some(id.as_str()))
        .collect();
    sigs.push(json!({"keyid": id, "sig": B64.encode(key.key.sign(&pae(ty, &body)).to_bytes())}));
    Ok(json!({"payloadType": ty, "payload": envelope["payload"], "signatures": sigs}))
}

/// Why a DSSE envelope did not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DsseError {
    /// Not a JSON object of the DSSE shape.
    #[error("DSSE: not an envelope ({0})")]
    Shape(&'static str),
    /// The payload or a signature is not base64.
    #[error("DSSE: {0} is not base64")]
    Base64(&'static str),
    /// No signature by this key id verifies.
    #[error("provenance: no DSSE signature by key {0} verifies")]
    NoValidSignature(String),
}

/// Check a DSSE envelope's signature with a public key.
pub fn verify_dsse(envelope: &Value, key: &minisign::PublicKey) -> Result<(), DsseError> {
    use ed25519_dalek::Verifier;
    let ty = envelope["payloadType"]
        .as_str()
        .ok_or(DsseError::Shape("no payloadType"))?;
    let body = B64
        .decode(
            envelope["payload"]
                .as_str()
                .ok_or(DsseError::Shape("no payload"))?,
        )
        .map_err(|_| DsseError::Base64("the payload"))?;
    let sigs = envelope["signatures"]
        .as_array()
        .ok_or(DsseError::Shape("no signatures"))?;
    let id = minisign::key_id_hex(&key.id);
    for s in sigs {
        if s["keyid"].as_str() != Some(&id) {
            continue;
        }
        let raw = B64
            .decode(s["sig"].as_str().unwrap_or(""))
            .map_err(|_| DsseError::Base64("a signature"))?;
        let Ok(sig) = ed25519_dalek::Signature::from_slice(&raw) else {
            continue;
        };
        if key.key.verify(&pae(ty, &body), &sig).is_ok() {
            return Ok(());
        }
    }
    Err(DsseError::NoValidSignature(id))
}

/// Check the DSSE envelope on one line of a `.jsonl` provenance file.
pub fn verify_dsse_line(line: &str, key: &minisign::PublicKey) -> Result<()> {
    let env: Value =
        serde_json::from_str(line).context("provenance is not a JSON DSSE envelope")?;
    Ok(verify_dsse(&env, key)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_purls() {
        assert_eq!(
            purl("libstdc++6", "1:12.2.0-14", "amd64", "bookworm"),
            "pkg:deb/debian/libstdc%2B%2B6@1%3A12.2.0-14?arch=amd64&distro=bookworm"
        );
    }

    #[test]
    fn pae_format() {
        assert_eq!(pae("t", b"ab"), b"DSSEv1 1 t 2 ab");
    }

    #[test]
    fn each_dsse_failure_has_its_own_error() {
        let sk = minisign::SecretKey::generate();
        let pk = sk.public();
        let env = dsse(&json!({"_type": "x"}), Some(&sk));
        assert_eq!(verify_dsse(&env, &pk), Ok(()));
        assert_eq!(
            verify_dsse(&json!({}), &pk),
            Err(DsseError::Shape("no payloadType"))
        );
        let mut bad = env.clone();
        bad["payload"] = json!("!!");
        assert_eq!(
            verify_dsse(&bad, &pk),
            Err(DsseError::Base64("the payload"))
        );
        let other = minisign::SecretKey::generate().public();
        assert!(matches!(
            verify_dsse(&env, &other),
            Err(DsseError::NoValidSignature(_))
        ));
        let unsigned = dsse(&json!({"_type": "x"}), None);
        assert!(matches!(
            verify_dsse(&unsigned, &pk),
            Err(DsseError::NoValidSignature(_))
        ));
        let resigned = dsse_add_signature(&unsigned, &sk).unwrap();
        assert_eq!(verify_dsse(&resigned, &pk), Ok(()));
        assert_eq!(
            resigned, env,
            "signing later gives the envelope a signed build has"
        );
    }
}
