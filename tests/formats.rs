//! The disk formats clouds and hypervisors import: an Azure fixed VHD, a Compute Engine
//! tarball and an OVA (OVF 2.0, stream-optimized VMDK, SHA-256 manifest), beside qcow2 and
//! VMDK. Each is checked with tools that are not Ingot's (qemu-img, Python's tarfile and XML
//! parser, sha256 of the members), reproduces byte for byte, is listed and signed in the
//! manifest, and every format QEMU reads boots to INGOT-READY.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::*;

const PROFILE: &str = "[output]\nformats = [\"qcow2\", \"vmdk\", \"vhd\", \"gce\", \"ova\"]\n";

fn profile(dir: &Path) -> String {
    let p = dir.join("cloud-formats.toml");
    std::fs::write(
        &p,
        format!(
            "extends = \"{}\"\n{PROFILE}",
            root().join("profiles/edge-minimal.toml").display()
        ),
    )
    .unwrap();
    p.display().to_string()
}

/// Python over the artifacts: what an importer would check first.
const CHECK: &str = r##"
import hashlib, struct, sys, tarfile, xml.etree.ElementTree as ET
d = sys.argv[1]
raw = open(d + "/disk.raw", "rb").read()

# Azure: a fixed VHD is the raw disk plus a 512-byte footer whose checksum holds.
vhd = open(d + "/disk.vhd", "rb").read()
assert vhd[:len(raw)] == raw, "vhd data differs from disk.raw"
f = vhd[len(raw):]
assert len(f) == 512 and f[:8] == b"conectix", "no VHD footer"
assert struct.unpack(">I", f[60:64])[0] == 2, "not a fixed VHD"
assert struct.unpack(">Q", f[48:56])[0] == len(raw), "footer current size"
assert len(raw) % (1 << 20) == 0, "virtual size is not whole MiB"
s = sum(f[:64]) + sum(f[68:])
assert struct.unpack(">I", f[64:68])[0] == (~s) & 0xffffffff, "footer checksum"

# Compute Engine: disk.raw alone, GNU tar, gzip'd.
t = tarfile.open(d + "/disk.tar.gz", "r:gz")
names = t.getnames()
assert names == ["disk.raw"], names
m = t.getmember("disk.raw")
assert m.size == len(raw)
assert t.extractfile(m).read() == raw, "tarball disk.raw differs"
# A sparse member (old GNU, type S): the data and its map, never the disk's zeros.
assert m.type == tarfile.GNUTYPE_SPARSE and m.issparse(), m.type
assert sum(n for _, n in m.sparse) < len(raw), "every byte stored"
import gzip
first = gzip.open(d + "/disk.tar.gz").read(512)
assert first[257:265] == b"ustar  \0", ("not GNU tar", first[257:265])

# OVA: OVF first, then the disk, then the manifest; POSIX ustar; digests match.
o = tarfile.open(d + "/disk.ova", "r:")
members = o.getmembers()
names = [x.name for x in members]
assert len(names) == 3 and names[0].endswith(".ovf") and names[1].endswith(".vmdk") and names[2].endswith(".mf"), names
first = open(d + "/disk.ova", "rb").read(512)
assert first[257:263] == b"ustar\0", ("not POSIX ustar", first[257:263])
data = {x.name: o.extractfile(x).read() for x in members}
mf = {}
for line in data[names[2]].decode().splitlines():
    k, v = line.split("= ")
    assert k.startswith("SHA256(") and k.endswith(")"), line
    mf[k[7:-1]] = v
assert set(mf) == {names[0], names[1]}, mf
for n, v in mf.items():
    assert hashlib.sha256(data[n]).hexdigest() == v, n
ns = {"ovf": "http://schemas.dmtf.org/ovf/envelope/2",
      "rasd": "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"}
root = ET.fromstring(data[names[0]])
assert root.tag == "{%s}Envelope" % ns["ovf"], root.tag
A = lambda a: "{%s}%s" % (ns["ovf"], a)
files = root.findall("ovf:References/ovf:File", ns)
assert len(files) == 1 and files[0].get(A("href")) == names[1], files
assert int(files[0].get(A("size"))) == len(data[names[1]])
disk = root.find("ovf:DiskSection/ovf:Disk", ns)
assert disk.get(A("fileRef")) == files[0].get(A("id"))
assert int(disk.get(A("capacity"))) == len(raw)
assert disk.get(A("format")).endswith("#streamOptimized")
vs = root.find("ovf:VirtualSystem", ns)
assert vs is not None and vs.find("ovf:Info", ns) is not None
hw = vs.find("ovf:VirtualHardwareSection", ns)
types = [i.find("rasd:ResourceType", ns).text for i in hw.findall("ovf:Item", ns)]
assert sorted(types) == ["10", "17", "20", "3", "4"], types
d17 = [i for i in hw.findall("ovf:Item", ns) if i.find("rasd:ResourceType", ns).text == "17"][0]
assert d17.find("rasd:HostResource", ns).text == "ovf:/disk/" + disk.get(A("diskId"))
open(sys.argv[2], "wb").write(data[names[1]])
print("ok", names)
"##;

#[test]
#[cfg_attr(not(ingot_e2e), ignore = "end-to-end lane: set INGOT_E2E=1")]
fn cloud_formats_pass_their_importers_checks_reproduce_and_boot() {
    let t = tempfile::tempdir().unwrap();
    let p = profile(t.path());
    let keyp = t.path().join("k");
    ok(
        &ingot(&["keygen", "--out", keyp.to_str().unwrap()]),
        "keygen",
    );
    let key = format!("{}.key", keyp.display());
    let pubk = format!("{}.pub", keyp.display());
    let hw = ["hardware/qemu-x86_64.toml"];
    let a = build(&p, &hw, &t.path().join("a"), &["--key", &key]);
    let b = build(
        &p,
        &hw,
        &t.path().join("b"),
        &["--key", &key, "--jobs", "1"],
    );
    same_bytes(&a, &b);
    let dir = &a[0];
    // Listed and signed: verify checks every digest under the signature.
    let m = manifest(dir);
    for f in [
        "disk.qcow2",
        "disk.vmdk",
        "disk.vhd",
        "disk.tar.gz",
        "disk.ova",
    ] {
        let want = hex_sha256(&std::fs::read(dir.join(f)).unwrap());
        assert_eq!(
            m["artifacts"][f]["sha256"].as_str(),
            Some(want.as_str()),
            "{f} in manifest.json"
        );
    }
    ok(
        &ingot(&["verify", dir.to_str().unwrap(), "--key", &pubk]),
        "verify",
    );

    let inner = t.path().join("ova-disk1.vmdk");
    let (good, out) = tool(
        "python3",
        &["-c", CHECK, dir.to_str().unwrap(), inner.to_str().unwrap()],
    );
    assert!(good, "{out}");
    // GNU tar, as Compute Engine's import uses it, gives back disk.raw itself.
    let x = t.path().join("gnu-tar");
    std::fs::create_dir(&x).unwrap();
    let (good, out) = tool(
        "tar",
        &[
            "-xzf",
            dir.join("disk.tar.gz").to_str().unwrap(),
            "-C",
            x.to_str().unwrap(),
        ],
    );
    assert!(good, "{out}");
    let names: Vec<_> = std::fs::read_dir(&x)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["disk.raw"]);
    assert!(
        std::fs::read(x.join("disk.raw")).unwrap() == std::fs::read(dir.join("disk.raw")).unwrap(),
        "GNU tar extracts another disk.raw"
    );
    std::fs::remove_dir_all(&x).unwrap();

    // qemu-img reads each as the format it claims, at the raw disk's size.
    let raw_size = std::fs::metadata(dir.join("disk.raw")).unwrap().len();
    for (file, fmt) in [
        (dir.join("disk.qcow2"), "qcow2"),
        (dir.join("disk.vmdk"), "vmdk"),
        (dir.join("disk.vhd"), "vpc"),
        (inner.clone(), "vmdk"),
    ] {
        let (good, info) = tool(
            "qemu-img",
            &["info", "--output=json", "-f", fmt, file.to_str().unwrap()],
        );
        assert!(good, "{info}");
        let v: serde_json::Value = serde_json::from_str(&info).unwrap();
        assert_eq!(v["virtual-size"].as_u64(), Some(raw_size), "{file:?}");
        if fmt != "vpc" {
            let (good, out) = tool("qemu-img", &["check", "-f", fmt, file.to_str().unwrap()]);
            assert!(good && out.contains("No errors"), "{file:?}: {out}");
        }
        if file == inner {
            assert_eq!(
                v["format-specific"]["data"]["create-type"].as_str(),
                Some("streamOptimized"),
                "{info}"
            );
        }
    }

    // Every format QEMU can read boots: a shipped format is a format seen booting.
    let mut args = vec!["boot-test".to_string()];
    // The format of each comes from qemu-img info, as for any foreign disk.
    for f in [
        dir.join("disk.qcow2"),
        dir.join("disk.vmdk"),
        dir.join("disk.vhd"),
        inner.clone(),
    ] {
        args.extend(["--disk".into(), f.display().to_string()]);
    }
    let before: Vec<String> = [&dir.join("disk.vhd"), &inner]
        .iter()
        .map(|f| hex_sha256(&std::fs::read(f).unwrap()))
        .collect();
    let json = t.path().join("boots.json");
    args.extend(
        [
            "--arch",
            "x86_64",
            "--ready",
            r"INGOT-READY .*image=edge-minimal",
            "--timeout",
            "120",
            "--json",
            json.to_str().unwrap(),
        ]
        .map(String::from),
    );
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&ingot(&a), "boot-test of the converted disks");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let text = v.to_string();
    for f in ["disk.qcow2", "disk.vmdk", "disk.vhd", "ova-disk1.vmdk"] {
        assert!(text.contains(f), "{f} not in the boot report: {text}");
    }
    let after: Vec<String> = [&dir.join("disk.vhd"), &inner]
        .iter()
        .map(|f| hex_sha256(&std::fs::read(f).unwrap()))
        .collect();
    assert_eq!(before, after, "a boot wrote to a shipped disk");
}
