//! The command line offline: bad input exits 2 naming file, line and column; every subcommand's
//! help shows an example. Fast lane: no network, no QEMU.

mod common;

use common::*;

#[test]
fn bad_input_exits_2_naming_file_line_column() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("typo.toml");
    std::fs::write(&p, "[image]\nname = \"x\"\nversion = \"1.0.0\"\n[distribution]\nsuite = \"bookworm\"\n[packages]\nincldue = [\"a\"]\n").unwrap();
    for cmd in [
        vec!["validate", p.to_str().unwrap()],
        vec![
            "build",
            p.to_str().unwrap(),
            "--out",
            t.path().to_str().unwrap(),
        ],
    ] {
        let o = ingot(&cmd);
        assert_eq!(o.status.code(), Some(2), "{cmd:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("typo.toml:7:1") && err.contains("incldue") && err.contains("include"),
            "{err}"
        );
    }
    std::fs::write(
        &p,
        "[image]\nname = \"x\"\nversion = \"1.0\"\n[distribution]\nsuite = \"bookworm\"\n",
    )
    .unwrap();
    let o = ingot(&["validate", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("typo.toml:3:11"));
    ok(
        &ingot(&[
            "validate",
            "profiles/edge-minimal.toml",
            "profiles/vm-base.toml",
            "hardware/qemu-x86_64.toml",
            "hardware/qemu-aarch64.toml",
            "firmware/ovmf.toml",
            "firmware/aavmf.toml",
        ]),
        "validate shipped files",
    );
    for sub in [
        "build",
        "boot-test",
        "run",
        "lock",
        "fetch",
        "keygen",
        "sign",
        "verify",
        "inspect",
        "validate",
    ] {
        let text = ok(&ingot(&[sub, "--help"]), sub);
        assert!(text.contains("Example:"), "{sub} --help shows no example");
    }
}
