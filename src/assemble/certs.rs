//! The trust store Debian's update-ca-certificates makes in `/etc/ssl/certs` (Ingot runs no
//! maintainer scripts): the bundle `ca-certificates.crt`, a `NAME.pem` link to each certificate
//! and the `HASH.N` links `openssl rehash` adds, by which OpenSSL finds an issuer in the
//! directory without reading the bundle.

use anyhow::{bail, Context, Result};
use base64::Engine;
use sha1::{Digest, Sha1};

use super::put;
use crate::tree::{Entry, Kind, Tree};

const SHARE: &str = "usr/share/ca-certificates/";
/// Certificates a profile adds for its site (update-ca-certificates trusts them too).
const LOCAL: &str = "usr/local/share/ca-certificates/";
const BUNDLE: &str = "etc/ssl/certs/ca-certificates.crt";

/// Write the bundle, `/etc/ca-certificates.conf` and the links, after the profile's files so
/// that certificates it adds are trusted too. False when there is nothing to trust or the
/// profile brings its own bundle (then left as it is).
pub(super) fn trust_store(tree: &mut Tree) -> Result<bool> {
    if tree.get("usr/share/ca-certificates").is_none() || tree.get(BUNDLE).is_some() {
        return Ok(false);
    }
    let crts = |dir: &str| -> Vec<String> {
        let mut v: Vec<String> = tree
            .iter()
            .filter(|(p, e)| {
                p.starts_with(dir) && p.ends_with(".crt") && matches!(e.kind, Kind::File(_))
            })
            .map(|(p, _)| p.clone())
            .collect();
        v.sort();
        v
    };
    // The shipped certificates (listed in the conf), then the local ones, as
    // update-ca-certificates bundles them.
    let certs = [crts(SHARE), crts(LOCAL)].concat();
    let mut bundle = Vec::new();
    let mut conf = String::from("# Written by ingot: every certificate shipped is trusted.\n");
    // (link name, subject hash), sorted below into the order `openssl rehash` numbers equal
    // hashes in: by file name.
    let mut pems: Vec<(String, String)> = Vec::new();
    for c in &certs {
        let mut data = tree.read(c).unwrap_or_default();
        let hash = subject_hash_pem(&data).with_context(|| format!("/{c}"))?;
        if !data.ends_with(b"\n") {
            data.push(b'\n');
        }
        bundle.extend(data);
        if let Some(name) = c.strip_prefix(SHARE) {
            conf.push_str(name);
            conf.push('\n');
        }
        let pem = format!("{}.pem", pem_name(c));
        tree.insert(
            &format!("etc/ssl/certs/{pem}"),
            Entry::symlink(&format!("/{c}")),
        )?;
        pems.push((pem, format!("{hash:08x}")));
    }
    pems.sort();
    let mut taken: Vec<String> = Vec::new();
    for (pem, hash) in &pems {
        let n = taken.iter().filter(|h| *h == hash).count();
        taken.push(hash.clone());
        tree.insert(&format!("etc/ssl/certs/{hash}.{n}"), Entry::symlink(pem))?;
    }
    put(tree, BUNDLE, bundle, 0o644)?;
    put(tree, "etc/ca-certificates.conf", conf, 0o644)?;
    Ok(true)
}

/// update-ca-certificates' name for a certificate's link: its file name without `.crt`, with
/// spaces and commas made `_` and parentheses `=`.
fn pem_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    base.strip_suffix(".crt")
        .unwrap_or(base)
        .chars()
        .map(|c| match c {
            ' ' | ',' => '_',
            '(' | ')' => '=',
            c => c,
        })
        .collect()
}

/// OpenSSL's subject name hash (`openssl x509 -subject_hash`) of the first certificate in a PEM
/// file.
fn subject_hash_pem(pem: &[u8]) -> Result<u32> {
    let text = String::from_utf8_lossy(pem);
    let body = text
        .split("-----BEGIN CERTIFICATE-----")
        .nth(1)
        .and_then(|r| r.split("-----END CERTIFICATE-----").next())
        .context("no PEM certificate")?;
    let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .context("the PEM certificate is not base64")?;
    subject_hash(&der)
}

/// The hash of the subject of a DER certificate: the first four bytes, little-endian, of the
/// SHA-1 of the name's canonical encoding (OpenSSL's `X509_NAME_hash_ex`).
fn subject_hash(der: &[u8]) -> Result<u32> {
    let (cert, _) = tlv(der, 0x30)?;
    let (mut tbs, _) = tlv(cert, 0x30)?;
    if tbs.first() == Some(&0xa0) {
        tbs = tlv(tbs, 0xa0)?.1; // version
    }
    // serialNumber, signature, issuer, validity, then the subject.
    for tag in [0x02, 0x30, 0x30, 0x30] {
        tbs = tlv(tbs, tag)?.1;
    }
    let (subject, _) = tlv(tbs, 0x30)?;
    let d = Sha1::digest(canonical_name(subject)?);
    Ok(u32::from_le_bytes([d[0], d[1], d[2], d[3]]))
}

/// The canonical form OpenSSL hashes (`x509_name_canon`): each relative name re-encoded as a
/// DER SET of its attributes, with text values made UTF-8, trimmed, inner whitespace runs
/// collapsed to one space and ASCII lowercased; the SETs concatenated without the outer
/// SEQUENCE.
fn canonical_name(mut rdns: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    while !rdns.is_empty() {
        let (mut set, rest) = tlv(rdns, 0x31)?;
        rdns = rest;
        let mut atvs = Vec::new();
        while !set.is_empty() {
            let (atv, rest) = tlv(set, 0x30)?;
            set = rest;
            let (oid, value) = tlv(atv, 0x06)?;
            let tag = *value.first().context("attribute without a value")?;
            let (content, end) = tlv(value, tag)?;
            if !end.is_empty() {
                bail!("attribute with more than a value");
            }
            let mut body = encode(0x06, oid);
            match canonical_text(tag, content) {
                Some(t) => body.extend(encode(0x0c, &t)),
                None => body.extend_from_slice(value),
            }
            atvs.push(encode(0x30, &body));
        }
        // DER orders a SET OF by the members' encodings.
        atvs.sort();
        out.extend(encode(0x31, &atvs.concat()));
    }
    Ok(out)
}

/// A text value in canonical form, or None for a type OpenSSL leaves as it is.
fn canonical_text(tag: u8, content: &[u8]) -> Option<Vec<u8>> {
    let utf8: String = match tag {
        0x0c => String::from_utf8_lossy(content).into_owned(),
        // PrintableString, T61String, IA5String, VisibleString: a byte per character.
        0x13 | 0x14 | 0x16 | 0x1a => content.iter().map(|&b| b as char).collect(),
        0x1e => char::decode_utf16(
            content
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]])),
        )
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect(),
        0x1c => content
            .chunks_exact(4)
            .map(|c| {
                char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                    .unwrap_or(char::REPLACEMENT_CHARACTER)
            })
            .collect(),
        _ => return None,
    };
    // OpenSSL's isspace: space, \t, \n, \v, \f, \r.
    let space = |b: u8| b == b' ' || (0x09..=0x0d).contains(&b);
    let bytes = utf8.as_bytes();
    let start = bytes.iter().position(|&b| !space(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| !space(b))
        .map_or(start, |i| i + 1);
    let mut out = Vec::with_capacity(end - start);
    let mut i = start;
    while i < end {
        let b = bytes[i];
        if space(b) {
            out.push(b' ');
            while i < end && space(bytes[i]) {
                i += 1;
            }
        } else {
            out.push(b.to_ascii_lowercase());
            i += 1;
        }
    }
    Some(out)
}

/// One DER element of `tag` at the start of `data`: its content and what follows it.
fn tlv(data: &[u8], tag: u8) -> Result<(&[u8], &[u8])> {
    match data.first() {
        Some(&t) if t == tag => {}
        Some(&t) => bail!("DER: expected tag {tag:#04x}, found {t:#04x}"),
        None => bail!("DER: expected tag {tag:#04x}, found the end"),
    }
    let first = *data.get(1).context("DER: cut in a length")?;
    let (len, head) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            bail!("DER: unsupported length form {first:#04x}");
        }
        let bytes = data.get(2..2 + n).context("DER: cut in a length")?;
        (
            bytes.iter().fold(0usize, |a, &b| (a << 8) | b as usize),
            2 + n,
        )
    };
    let end = head
        .checked_add(len)
        .filter(|&e| e <= data.len())
        .context("DER: an element runs past its end")?;
    Ok((&data[head..end], &data[end..]))
}

fn encode(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    let n = content.len();
    if n < 0x80 {
        v.push(n as u8);
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        v.push(0x80 | bytes.len() as u8);
        v.extend(bytes);
    }
    v.extend_from_slice(content);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_trimmed_collapsed_and_lowercased_like_openssl() {
        let c = |tag, s: &[u8]| canonical_text(tag, s).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(
            c(0x13, b"  Example \t CA  Root\r\n").as_deref(),
            Some("example ca root")
        );
        // Latin-1 bytes become UTF-8 and keep their case; only ASCII is lowercased.
        assert_eq!(c(0x14, b"F\xd5 CA").as_deref(), Some("f\u{d5} ca"));
        // BMPString and UniversalString are big-endian UCS.
        assert_eq!(
            c(0x1e, &[0, b'A', 0, b' ', 0, b' ', 0, b'B']).as_deref(),
            Some("a b")
        );
        assert_eq!(c(0x1c, &[0, 0, 0, b'Z']).as_deref(), Some("z"));
        assert_eq!(c(0x0c, b"   ").as_deref(), Some(""));
        // NumericString and others are hashed as they are.
        assert_eq!(c(0x12, b"123"), None);
    }

    #[test]
    fn names_sort_set_members_and_keep_other_types() {
        // One RDN with two attributes given out of DER order, and a NumericString.
        let atv = |oid: u8, tag: u8, v: &[u8]| {
            encode(
                0x30,
                &[encode(0x06, &[0x55, 4, oid]), encode(tag, v)].concat(),
            )
        };
        let set = encode(0x31, &[atv(10, 0x13, b"ZZ"), atv(3, 0x13, b"Aa")].concat());
        let num = encode(0x31, &atv(5, 0x12, b"42"));
        let canon = canonical_name(&[set, num].concat()).unwrap();
        let want = [
            encode(0x31, &[atv(3, 0x0c, b"aa"), atv(10, 0x0c, b"zz")].concat()),
            encode(0x31, &atv(5, 0x12, b"42")),
        ]
        .concat();
        assert_eq!(canon, want);
    }

    #[test]
    fn bad_der_is_an_error_not_a_panic() {
        for d in [
            &b""[..],
            b"\x30",
            b"\x30\x85\x01",
            b"\x30\x05\x30\x10",
            b"\x31\x00",
        ] {
            assert!(subject_hash(d).is_err(), "{d:?}");
        }
        assert!(subject_hash_pem(b"no certificate here").is_err());
    }

    /// A PEM "certificate" with just the fields the hash reads, for subject `cn`.
    fn pem(cn: &[u8]) -> Vec<u8> {
        let name = encode(
            0x30,
            &encode(
                0x31,
                &encode(
                    0x30,
                    &[encode(0x06, &[0x55, 4, 3]), encode(0x13, cn)].concat(),
                ),
            ),
        );
        let tbs = [
            encode(0xa0, &encode(0x02, &[2])),
            encode(0x02, &[1]),
            encode(0x30, &[]),
            encode(0x30, &[]),
            encode(0x30, &[]),
            name,
        ]
        .concat();
        let der = encode(0x30, &encode(0x30, &tbs));
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----").into_bytes()
    }

    #[test]
    fn store_links_every_certificate_numbers_equal_hashes_and_keeps_a_profile_bundle() {
        let mut t = Tree::new();
        for (p, cn) in [
            (
                "usr/share/ca-certificates/mozilla/B Root (2).crt",
                &b"Same CA"[..],
            ),
            ("usr/share/ca-certificates/mozilla/A_Root.crt", b"same  ca"),
            ("usr/local/share/ca-certificates/corp.crt", b"Corp CA"),
        ] {
            t.insert(p, Entry::file(pem(cn), 0o644)).unwrap();
        }
        assert!(trust_store(&mut t).unwrap());
        let same = format!("{:08x}", subject_hash_pem(&pem(b"SAME CA")).unwrap());
        let corp = format!("{:08x}", subject_hash_pem(&pem(b"Corp CA")).unwrap());
        let link = |p: &str| match t.get(&format!("etc/ssl/certs/{p}")).map(|e| &e.kind) {
            Some(Kind::Symlink(s)) => s.to_string(),
            other => panic!("{p}: {other:?}"),
        };
        // Case and inner spaces do not change the hash; numbered by link name.
        assert_eq!(link(&format!("{same}.0")), "A_Root.pem");
        assert_eq!(link(&format!("{same}.1")), "B_Root_=2=.pem");
        assert_eq!(link(&format!("{corp}.0")), "corp.pem");
        assert_eq!(
            link("corp.pem"),
            "/usr/local/share/ca-certificates/corp.crt"
        );
        let bundle = String::from_utf8(t.read(BUNDLE).unwrap()).unwrap();
        assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 3);
        let conf = String::from_utf8(t.read("etc/ca-certificates.conf").unwrap()).unwrap();
        assert!(
            conf.contains("mozilla/A_Root.crt\n") && !conf.contains("corp"),
            "{conf}"
        );
        // A bundle the profile ships is its own: nothing is rewritten or linked.
        let mut own = Tree::new();
        own.insert(
            "usr/share/ca-certificates/mozilla/A_Root.crt",
            Entry::file(pem(b"x"), 0o644),
        )
        .unwrap();
        own.insert(BUNDLE, Entry::file("mine\n", 0o644)).unwrap();
        assert!(!trust_store(&mut own).unwrap());
        assert_eq!(own.read(BUNDLE).unwrap(), b"mine\n");
        assert!(own.get("etc/ssl/certs/A_Root.pem").is_none());
        // A certificate that does not parse names its file.
        let mut bad = Tree::new();
        bad.insert(
            "usr/share/ca-certificates/x/bad.crt",
            Entry::file("junk", 0o644),
        )
        .unwrap();
        let e = format!("{:#}", trust_store(&mut bad).unwrap_err());
        assert!(e.contains("/usr/share/ca-certificates/x/bad.crt"), "{e}");
    }

    #[test]
    fn links_are_named_as_update_ca_certificates_names_them() {
        assert_eq!(
            pem_name("usr/share/ca-certificates/mozilla/Foo Bar (Root), CA.crt"),
            "Foo_Bar_=Root=__CA"
        );
    }
}
