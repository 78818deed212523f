//! The command line offline: bad input exits 2 naming file, line and column; every subcommand's
//! help shows an example. Fast lane: no network, no QEMU.
#![allow(clippy::unwrap_used)]

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
    // The name becomes directory, repository and host names: no dash at either end.
    for name in ["-rf", "edge-", "Edge", "a_b"] {
        std::fs::write(
            &p,
            format!("[image]\nname = \"{name}\"\nversion = \"1.0.0\"\n[distribution]\nsuite = \"bookworm\"\n"),
        )
        .unwrap();
        let o = ingot(&["validate", p.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{name}: {err}");
        assert!(
            err.contains("typo.toml:2:") && err.contains("image.name"),
            "{name}: {err}"
        );
    }
    ok(
        &ingot(&[
            "validate",
            "profiles/edge-minimal.toml",
            "profiles/vm-base.toml",
            "hardware/qemu-x86_64.toml",
            "hardware/qemu-aarch64.toml",
            "hardware/qemu-x86_64-ab.toml",
            "hardware/qemu-aarch64-ab.toml",
            "tests/profiles/edge-v2.toml",
            "tests/profiles/edge-broken-probe.toml",
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

/// Write a profile with `extra` appended to a valid base; validate and build must both exit 2
/// naming the file and line and the offending value.
fn refused(dir: &std::path::Path, name: &str, extra: &str, line: usize, needle: &str) {
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(
        &p,
        format!("[image]\nname = \"x\"\nversion = \"1.0.0\"\n[distribution]\nsuite = \"bookworm\"\n{extra}"),
    )
    .unwrap();
    let out = dir.join("out");
    for cmd in [
        vec!["validate", p.to_str().unwrap()],
        vec!["build", p.to_str().unwrap(), "--out", out.to_str().unwrap()],
    ] {
        let o = ingot(&cmd);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{name} {cmd:?}: {err}");
        // Line 0: a rule over the whole profile, reported with the file only.
        let place = match line {
            0 => format!("{name}.toml: "),
            n => format!("{name}.toml:{n}:"),
        };
        assert!(
            err.contains(&place) && err.contains(needle),
            "{name}: {err}"
        );
    }
    assert!(!out.exists(), "{name}: --out was created for a bad profile");
}

#[test]
fn names_and_fields_that_would_inject_into_generated_files_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    refused(
        d,
        "colon",
        "[[users]]\nname = \"evil::0:0::/root:/bin/sh\"\n",
        7,
        "not a valid user or group name",
    );
    refused(
        d,
        "newline",
        "[[users]]\nname = \"a\\nroot\"\n",
        7,
        "not a valid user or group name",
    );
    refused(
        d,
        "group",
        "[[groups]]\nname = \"g:x:0:evil\"\n",
        7,
        "not a valid user or group name",
    );
    refused(
        d,
        "shell",
        "[[users]]\nname = \"a\"\nshell = \"/bin/sh\\n::respawn:/bin/sh\"\n",
        8,
        "control character",
    );
    refused(
        d,
        "home",
        "[[users]]\nname = \"a\"\ncomment = \"x:y\"\n",
        8,
        "field separator",
    );
    refused(
        d,
        "agent",
        "[[agent]]\nname = \"$(reboot)\"\nprobe = \"true\"\n",
        7,
        "agent name",
    );
    refused(
        d,
        "probe",
        "[[agent]]\nname = \"a\"\nprobe = \"true\\nreboot\"\n",
        8,
        "control character",
    );
    // Ids that are (uid_t)-1 in 16 or 32 bits, or negative as signed 32-bit numbers, are
    // refused at the line that sets them.
    refused(
        d,
        "owner",
        "[[files]]\npath = \"/etc/x\"\ncontent = \"x\"\nuid = 4000000000\n",
        9,
        "owner uid 4000000000 is in 2147483648-4294967294",
    );
    refused(
        d,
        "uid-signed",
        "[[users]]\nname = \"svc\"\nuid = 2147483648\n",
        8,
        "uid 2147483648 is in 2147483648-4294967294",
    );
    refused(
        d,
        "gid16",
        "[[groups]]\nname = \"g\"\ngid = 65535\n",
        8,
        "gid 65535 is the 16-bit (uid_t)-1",
    );
    // Package requests that are not Debian names (apt's NAME/SUITE form misread `../x`).
    refused(
        d,
        "package",
        "[packages]\ninclude = [\"busybox\", \"../x\"]\n",
        7,
        "`../x` is not a Debian package name",
    );
    refused(
        d,
        "multiarch",
        "[[agent]]\nname = \"a\"\npackages = [\"libc6:amd64\"]\nprobe = \"true\"\n",
        8,
        "names an architecture",
    );
    refused(
        d,
        "label-key",
        "[labels]\n\"owner team\" = \"x\"\n",
        7,
        "label key `owner team`",
    );
    // A second uid 0 is refused unless asked for.
    let p = d.join("root2.toml");
    std::fs::write(&p, "[image]\nname = \"x\"\nversion = \"1.0.0\"\n[distribution]\nsuite = \"bookworm\"\n[[users]]\nname = \"toor\"\nuid = 0\n").unwrap();
    let o = ingot(&["validate", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("second root account"));
    // The description is one line: it goes into the manifest, reports and the OVF
    // descriptor, where a control character is not even valid XML.
    let p = d.join("description.toml");
    std::fs::write(&p, "[image]\nname = \"x\"\nversion = \"1.0.0\"\ndescription = \"a\\u0001b\"\n[distribution]\nsuite = \"bookworm\"\n").unwrap();
    let o = ingot(&["validate", p.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("description.toml:4:") && err.contains("control character"),
        "{err}"
    );
    // A leading `_` is Debian's mark of a system account (SYS_NAME_REGEX), refused otherwise.
    refused(
        d,
        "underscore",
        "[[users]]\nname = \"_svc\"\n",
        7,
        "add system = true",
    );
    refused(
        d,
        "underscore-group",
        "[[groups]]\nname = \"_svc\"\ngid = 2000\n",
        7,
        "add system = true",
    );
    refused(
        d,
        "system-uid",
        "[[users]]\nname = \"_svc\"\nsystem = true\nuid = 1500\n",
        9,
        "a system account's uid is below 1000",
    );
    let p = d.join("system.toml");
    std::fs::write(&p, "[image]\nname = \"x\"\nversion = \"1.0.0\"\n[distribution]\nsuite = \"bookworm\"\n[[users]]\nname = \"_chrony\"\nsystem = true\n[[groups]]\nname = \"_g\"\ngid = 990\n").unwrap();
    ok(
        &ingot(&["validate", p.to_str().unwrap()]),
        "system accounts",
    );
    // Unit names become file names under the unit directories: a path is not one.
    for (name, top, agent, line) in [
        ("units", "services = [\"../../../etc/passwd\"]\n", "", 2),
        ("unit-nl", "services = [\"ssh.service\\nx\"]\n", "", 2),
        (
            "agent-unit",
            "",
            "[[agent]]\nname = \"a\"\nservice = \"../a.service\"\nprobe = \"true\"\n",
            9,
        ),
    ] {
        let p = d.join(format!("{name}.toml"));
        std::fs::write(&p, format!("init = \"systemd\"\n{top}[image]\nname = \"x\"\nversion = \"1.0.0\"\n[distribution]\nsuite = \"bookworm\"\n{agent}")).unwrap();
        let o = ingot(&["validate", p.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{name}: {err}");
        assert!(
            err.contains(&format!("{name}.toml:{line}:"))
                && err.contains("not a systemd unit name"),
            "{name}: {err}"
        );
    }
}

#[test]
fn accounts_and_files_given_twice_or_ambiguously_are_refused_at_their_line() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    // Each built before: passwd held both (or a shell no login can start), or a file was
    // silently the last one written.
    refused(
        d,
        "user2",
        "[[users]]\nname = \"ops\"\n[[users]]\nname = \"ops\"\n",
        7,
        "user `ops` is declared twice",
    );
    refused(
        d,
        "uid2",
        "[[users]]\nname = \"a\"\nuid = 1000\n[[users]]\nname = \"b\"\nuid = 1000\n",
        11,
        "uid 1000 is user `a`'s already",
    );
    refused(
        d,
        "relshell",
        "[[users]]\nname = \"a\"\nshell = \"bin/sh\"\n",
        8,
        "must be an absolute path",
    );
    refused(
        d,
        "rootuser",
        "[[users]]\nname = \"root\"\n",
        7,
        "user `root` is always in the image",
    );
    refused(
        d,
        "group2",
        "[[groups]]\nname = \"g\"\n[[groups]]\nname = \"g\"\n",
        7,
        "group `g` is declared twice",
    );
    refused(
        d,
        "gid2",
        "[[groups]]\nname = \"g\"\ngid = 1500\n[[groups]]\nname = \"k\"\ngid = 1500\n",
        11,
        "gid 1500 is group `g`'s already",
    );
    refused(
        d,
        "gid0",
        "[[groups]]\nname = \"wheel\"\ngid = 0\n",
        8,
        "gid 0 would be a second root group",
    );
    refused(
        d,
        "file2",
        "[[files]]\npath = \"/etc/motd\"\ncontent = \"a\"\n[[files]]\npath = \"/etc/motd\"\ncontent = \"b\"\n",
        7,
        "file `/etc/motd` is declared twice",
    );
    refused(
        d,
        "agentfile2",
        "[[files]]\npath = \"/etc/motd\"\ncontent = \"a\"\n[[agent]]\nname = \"x\"\nprobe = \"true\"\n[[agent.files]]\npath = \"/etc/motd\"\ncontent = \"b\"\n",
        7,
        "file `/etc/motd` is declared twice",
    );
    for (name, path) in [
        ("slash", "/"),
        ("dslash", "/etc//motd"),
        ("dot", "/etc/./motd"),
        ("trail", "/etc/motd/"),
    ] {
        refused(
            d,
            name,
            &format!("[[files]]\npath = \"{path}\"\ncontent = \"a\"\n"),
            7,
            "must name a file plainly",
        );
    }
}

#[test]
fn a_profile_replaces_the_file_its_parent_writes_at_the_same_path() {
    let t = tempfile::tempdir().unwrap();
    let head = "[image]\nname = \"x\"\nversion = \"1.0.0\"\n[distribution]\nsuite = \"bookworm\"\n";
    std::fs::write(
        t.path().join("base.toml"),
        format!("{head}[[files]]\npath = \"/etc/motd\"\ncontent = \"parent\"\n"),
    )
    .unwrap();
    let child = t.path().join("child.toml");
    std::fs::write(
        &child,
        "extends = \"base.toml\"\n[[files]]\npath = \"/etc/motd\"\ncontent = \"child\"\n",
    )
    .unwrap();
    let p = ingot::config::load_profile(&child).unwrap();
    let motd: Vec<_> = p.files.iter().filter(|f| f.path == "/etc/motd").collect();
    assert_eq!(motd.len(), 1, "{motd:?}");
    assert_eq!(motd[0].content.as_deref(), Some("child"));
}

#[test]
fn hardware_strings_that_reach_boot_config_are_checked() {
    let t = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(root().join("hardware/qemu-x86_64.toml")).unwrap();
    for (what, from, to) in [
        (
            "cmdline",
            "cmdline = \"quiet panic=-1\"",
            "cmdline = \"quiet\\nlinux /EFI/evil.efi\"",
        ),
        (
            "console",
            "console = \"ttyS0\"",
            "console = \"ttyS0\\n::respawn:/bin/sh\"",
        ),
    ] {
        assert!(base.contains(from));
        let p = t.path().join(format!("{what}.toml"));
        std::fs::write(&p, base.replace(from, to)).unwrap();
        let o = ingot(&["validate", p.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{what}: {err}");
        assert!(err.contains(&format!("{what}.toml:")), "{what}: {err}");
    }
}

#[test]
fn hardware_names_and_words_are_checked_where_they_are_written() {
    let t = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(root().join("hardware/qemu-x86_64.toml")).unwrap();
    // Each was accepted by validate: the name reaches the image's labels, the firmware name a
    // file path, the rest the resolver, the module tree, the GPT and QEMU's options.
    let extra = "\n[[disk.partitions]]\nname = \"root\"\ntype = \"linux\"\nsize = \"8MiB\"\n";
    let bad_type = "\n[[disk.partitions]]\nname = \"scratch\"\ntype = \"ntfs\"\nsize = \"8MiB\"\n";
    for (what, from, to, line) in [
        (
            "name",
            "name = \"qemu-x86_64\"",
            "name = \"../x\\nEVIL=1\"",
            2,
        ),
        (
            "firmware",
            "firmware = \"ovmf\"",
            "firmware = \"../../etc/x\"",
            9,
        ),
        (
            "kernel",
            "kernel_package = \"linux-image-cloud-amd64\"",
            "kernel_package = \"linux-image-cloud-amd64 evil\"",
            4,
        ),
        ("modules", "\"virtio_blk\"]", "\"../x\"]", 6),
        (
            "keep",
            "keep_module_dirs = [",
            "keep_module_dirs = [\"../../etc\", ",
            12,
        ),
        (
            "machine",
            "machine = \"q35\"",
            "machine = \"q35 -monitor stdio\"",
            23,
        ),
        ("partname", "smp = 2", &format!("smp = 2{extra}"), 34),
        ("parttype", "smp = 2", &format!("smp = 2{bad_type}"), 35),
    ] {
        assert!(base.contains(from), "{what}");
        let p = t.path().join(format!("{what}.toml"));
        std::fs::write(&p, base.replace(from, to)).unwrap();
        let o = ingot(&["validate", p.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{what}: {err}");
        let place = match line {
            0 => format!("{what}.toml: "),
            n => format!("{what}.toml:{n}:"),
        };
        assert!(
            err.contains(&place) && err.contains(" is not "),
            "{what}: {err}"
        );
    }
    // Inside hardware/, a bare file name still finds firmware/ beside it.
    let o = ingot_command()
        .current_dir(root().join("hardware"))
        .args(["validate", "qemu-x86_64.toml"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn two_hardware_profiles_of_one_arch_are_not_built_into_one_directory() {
    // Both make OUT/edge-minimal-1.0.0-x86_64: the second silently replaced the first.
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let o = ingot(&[
        "build",
        "profiles/edge-minimal.toml",
        "--hardware",
        "hardware/qemu-x86_64.toml",
        "--hardware",
        "hardware/qemu-x86_64-ab.toml",
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("are both x86_64") && err.contains("separate --out"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn keygen_never_overwrites_a_public_key() {
    let t = tempfile::tempdir().unwrap();
    let prefix = t.path().join("k");
    std::fs::write(t.path().join("k.pub"), "someone's trusted key\n").unwrap();
    let o = ingot(&["keygen", "--out", prefix.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("k.pub exists"));
    assert_eq!(
        std::fs::read_to_string(t.path().join("k.pub")).unwrap(),
        "someone's trusted key\n"
    );
    assert!(!t.path().join("k.key").exists());
    // Nor a secret key, even one that is a dangling link; and a prefix in no directory is
    // bad input too. Each leaves nothing behind.
    let other = t.path().join("o");
    std::os::unix::fs::symlink(t.path().join("nowhere"), t.path().join("o.key")).unwrap();
    let o = ingot(&["keygen", "--out", other.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("o.key exists"));
    let missing = t.path().join("no-such-dir").join("k");
    let o = ingot(&["keygen", "--out", missing.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("is not a directory"), "{err}");
    let mut left: Vec<String> = std::fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["k.pub", "o.key"]);
    // A fresh prefix gets both halves, the secret one readable by its owner alone.
    let fresh = t.path().join("fresh");
    assert!(ingot(&["keygen", "--out", fresh.to_str().unwrap()])
        .status
        .success());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(t.path().join("fresh.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let mode = std::fs::metadata(t.path().join("fresh.pub"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644);
}

#[test]
fn labels_ingot_derives_are_never_silently_overwritten() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    refused(
        d,
        "created",
        "[labels]\n\"org.opencontainers.image.created\" = \"1999-01-01T00:00:00Z\"\n",
        7,
        "Ingot derives this label",
    );
    refused(
        d,
        "version",
        "[labels]\n\"org.opencontainers.image.version\" = \"9.9.9\"\n",
        7,
        "org.opencontainers.image.version",
    );
    // The image's own version, and the profile's own namespace, are fine.
    let p = d.join("ok.toml");
    std::fs::write(&p, "[image]\nname = \"x\"\nversion = \"1.0.0\"\n[distribution]\nsuite = \"bookworm\"\n[labels]\n\"org.opencontainers.image.version\" = \"1.0.0\"\n\"org.opencontainers.image.title\" = \"Edge X\"\n\"dev.ingot.owner\" = \"edge\"\n").unwrap();
    ok(
        &ingot(&["validate", p.to_str().unwrap()]),
        "validate good labels",
    );
}

#[test]
fn host_files_come_only_from_the_profile_directory_and_only_regular_ones() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    std::fs::write(d.join("motd"), "hello\n").unwrap();
    std::os::unix::fs::symlink("/etc/shadow", d.join("shadow-link")).unwrap();
    std::fs::create_dir_all(d.join("overlay/etc")).unwrap();
    let file = |src: &str| format!("[[files]]\npath = \"/etc/x\"\nsource = \"{src}\"\n");
    refused(
        d,
        "abs",
        &file("/etc/passwd"),
        8,
        "outside the profile's directory",
    );
    refused(
        d,
        "up",
        &file("../../etc/passwd"),
        8,
        "outside the profile's directory",
    );
    refused(
        d,
        "link",
        &file("shadow-link"),
        8,
        "outside the profile's directory",
    );
    refused(
        d,
        "proc",
        "[[files]]\npath = \"/etc/x\"\nsource = \"/proc/self/environ\"\nallow_outside = true\n",
        8,
        "pseudo-filesystem",
    );
    refused(
        d,
        "dotdot",
        "[[files]]\npath = \"/etc/../x\"\ncontent = \"a\"\n",
        7,
        "must not contain `..`",
    );
    refused(
        d,
        "under-proc",
        "[[files]]\npath = \"/proc/x\"\ncontent = \"a\"\n",
        7,
        "pseudo-filesystem",
    );
    refused(
        d,
        "link-and-content",
        "[[files]]\npath = \"/etc/localtime\"\ncontent = \"a\"\nlink = \"/usr/share/zoneinfo/UTC\"\n",
        7,
        "exactly one of `content`, `source` or `link`",
    );
    refused(
        d,
        "link-mode",
        "[[files]]\npath = \"/etc/localtime\"\nlink = \"/usr/share/zoneinfo/UTC\"\nmode = \"0600\"\n",
        7,
        "a link has no mode",
    );
    refused(
        d,
        "link-empty",
        "[[files]]\npath = \"/etc/localtime\"\nlink = \"\"\n",
        8,
        "1 to 4095 bytes",
    );
    // Agent files get the same checks as files.
    let agent =
        |f: &str| format!("[[agent]]\nname = \"a\"\nprobe = \"true\"\n[[agent.files]]\n{f}");
    refused(
        d,
        "agent-rel",
        &agent("path = \"etc/x\"\ncontent = \"a\"\n"),
        10,
        "must be absolute",
    );
    refused(
        d,
        "agent-both",
        &agent("path = \"/etc/x\"\ncontent = \"a\"\nsource = \"motd\"\n"),
        10,
        "exactly one of",
    );
    refused(
        d,
        "agent-out",
        &agent("path = \"/etc/x\"\nsource = \"/etc/passwd\"\n"),
        11,
        "outside the profile's directory",
    );
    // A FIFO in an overlay is refused before any work, never read.
    let fifo = d.join("overlay/etc/pipe");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let p = d.join("fifo.toml");
    std::fs::write(&p, "overlays = [\"overlay\"]\n[image]\nname = \"x\"\nversion = \"1.0.0\"\n[distribution]\nsuite = \"bookworm\"\n").unwrap();
    let o = ingot(&["validate", p.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("fifo.toml:1:1:") && err.contains("a FIFO"),
        "{err}"
    );
    std::fs::remove_file(&fifo).unwrap();
    // What is allowed: a file beside the profile, a deliberate host path.
    let p = d.join("fine.toml");
    std::fs::write(&p, format!("overlays = [\"overlay\"]\n[image]\nname = \"x\"\nversion = \"1.0.0\"\n[distribution]\nsuite = \"bookworm\"\n{}[[files]]\npath = \"/etc/y\"\nsource = \"/etc/hostname\"\nallow_outside = true\n", file("motd"))).unwrap();
    ok(
        &ingot(&["validate", p.to_str().unwrap()]),
        "validate allowed sources",
    );
}

#[test]
fn whole_profile_rules_name_the_line_that_set_the_value() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    // The header `refused` writes takes lines 1-5; `[distribution]` is line 4.
    refused(
        d,
        "distro",
        "name = \"ubuntu\"\n",
        6,
        "distribution.name `ubuntu` is not supported",
    );
    refused(
        d,
        "tries",
        "[ota]\ntries = 0\n",
        7,
        "tries = 0 must be 1 to 10",
    );
    refused(
        d,
        "watchdog",
        "[ota]\ntries = 3\nwatchdog = 9999\n",
        8,
        "at most 3600 seconds",
    );
    refused(
        d,
        "twice",
        "[[agent]]\nname = \"probe\"\nprobe = \"true\"\n[[agent]]\nname = \"probe\"\nprobe = \"true\"\n",
        7,
        "agent `probe` is declared twice",
    );
    refused(
        d,
        "agent-name",
        "[[agent]]\nname = \"a b\"\nprobe = \"true\"\n",
        7,
        "may hold only letters, digits",
    );
}

#[test]
fn everything_checkable_is_checked_before_any_work() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let profile = |name: &str, image: &str, extra: &str| {
        let p = d.join(format!("{name}.toml"));
        std::fs::write(
            &p,
            format!("{extra}[image]\n{image}[distribution]\nsuite = \"bookworm\"\n"),
        )
        .unwrap();
        p
    };
    let exit2 = |args: &[&str], needle: &str| {
        let o = ingot(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    };
    let long = profile(
        "long",
        &format!("name = \"x\"\nversion = \"1.0.0-{}\"\n", "a".repeat(300)),
        "",
    );
    exit2(&["validate", long.to_str().unwrap()], "at most 64");
    let suite = d.join("suite.toml");
    std::fs::write(
        &suite,
        "[image]\nname = \"x\"\nversion = \"1.0.0\"\n[distribution]\nsuite = \"../..\"\n",
    )
    .unwrap();
    exit2(
        &["validate", suite.to_str().unwrap()],
        "distribution suite `../..`",
    );
    let svc = profile(
        "svc",
        "name = \"x\"\nversion = \"1.0.0\"\n",
        "services = [\"ssh.service\"]\n",
    );
    exit2(&["validate", svc.to_str().unwrap()], "busybox init");
    // A profile path that is not a regular file is refused, not read until memory runs out.
    exit2(&["validate", "/dev/zero"], "not a regular file");
    // Hardware: memory 0, smp 0, a 100 TiB disk.
    let base = std::fs::read_to_string(root().join("hardware/qemu-x86_64.toml")).unwrap();
    for (name, from, to, needle) in [
        ("mem", "memory = 1024", "memory = 0", "qemu.memory"),
        ("smp", "smp = 2", "smp = 0", "qemu.smp"),
        ("big", "size = \"auto\"", "size = \"100TiB\"", "larger than"),
    ] {
        assert!(base.contains(from), "{from}");
        let p = d.join(format!("{name}.toml"));
        let text = base.replacen(from, to, 1);
        std::fs::write(&p, &text).unwrap();
        // Named at the line that sets the value.
        let line = text.lines().position(|l| l.contains(to)).unwrap() + 1;
        exit2(
            &["validate", p.to_str().unwrap()],
            &format!("{name}.toml:{line}:"),
        );
        exit2(&["validate", p.to_str().unwrap()], needle);
    }
    // A BIOS boots only x86_64 disks with one root.
    for (file, needle) in [
        ("hardware/qemu-aarch64.toml", "this is aarch64"),
        ("hardware/qemu-x86_64-ab.toml", "with [ab] slots"),
    ] {
        let text = std::fs::read_to_string(root().join(file))
            .unwrap()
            .replacen("root_fs = \"ext4\"", "root_fs = \"ext4\"\nbios = true", 1);
        let line = text.lines().position(|l| l == "bios = true").unwrap() + 1;
        let p = d.join("bios.toml");
        std::fs::write(&p, &text).unwrap();
        exit2(
            &["validate", p.to_str().unwrap()],
            &format!("bios.toml:{line}:"),
        );
        exit2(&["validate", p.to_str().unwrap()], needle);
    }
    // SOURCE_DATE_EPOCH and the signing key are checked before the build starts.
    let good = root().join("profiles/edge-minimal.toml");
    let out = d.join("out");
    let o = ingot_env(
        &[
            "build",
            good.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &[("SOURCE_DATE_EPOCH", "-99999999999")],
    );
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("SOURCE_DATE_EPOCH"));
    let o = ingot(&[
        "build",
        good.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--key",
        "/nonexistent/key",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/key"));
    // What an A/B hardware profile asks of the build, for every hardware profile named before
    // the first is built: a key, and a version without build metadata (it names boot entries).
    let hw = |f: &str| root().join("hardware").join(f);
    let (x86, ab) = (hw("qemu-x86_64.toml"), hw("qemu-aarch64-ab.toml"));
    exit2(
        &[
            "build",
            good.to_str().unwrap(),
            "--hardware",
            x86.to_str().unwrap(),
            "--hardware",
            ab.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        "build it with --key",
    );
    let (key, _) = key_pair(d);
    let meta = profile(
        "meta",
        "name = \"x\"\nversion = \"1.0.0+b1\"\n",
        "init = \"busybox\"\n",
    );
    exit2(
        &[
            "build",
            meta.to_str().unwrap(),
            "--hardware",
            x86.to_str().unwrap(),
            "--hardware",
            ab.to_str().unwrap(),
            "--key",
            &key,
            "--out",
            out.to_str().unwrap(),
        ],
        "meta.toml:4:1: image.version: `1.0.0+b1` has build metadata",
    );
    // The hardware's firmware: a hardware profile copied away from `firmware/` names one that
    // is not there. It used to be found when the manifest was written, after the disk.
    let lone = d.join("lone");
    std::fs::create_dir_all(&lone).unwrap();
    let text = std::fs::read_to_string(&x86).unwrap();
    let line = text
        .lines()
        .position(|l| l.starts_with("firmware"))
        .unwrap()
        + 1;
    let moved = lone.join("x86.toml");
    std::fs::write(&moved, &text).unwrap();
    for args in [
        &["build", good.to_str().unwrap(), "--hardware"][..],
        &["fetch", good.to_str().unwrap(), "--hardware"][..],
    ] {
        let mut args = args.to_vec();
        args.extend([moved.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        if args[0] == "fetch" {
            args.truncate(args.len() - 2);
        }
        exit2(
            &args,
            &format!("x86.toml:{line}:1: firmware: no firmware `ovmf`"),
        );
    }
    assert!(
        !out.exists(),
        "--out was created before the inputs were checked"
    );
}

#[test]
fn every_failed_build_leaves_out_exactly_as_it_was() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let out = d.join("out");
    // A previous image, the user's own files, and names that look like Ingot's temporaries.
    let prev = out.join("edge-minimal-1.0.0-x86_64");
    std::fs::create_dir_all(&prev).unwrap();
    std::fs::write(prev.join("disk.raw"), "previous image").unwrap();
    std::fs::write(prev.join("manifest.json"), "{}").unwrap();
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    std::fs::create_dir_all(out.join(".notes.tmp-4242")).unwrap();
    std::fs::write(out.join(".backup.old-888888"), "mine too").unwrap();
    let before = tree_digests(&out);
    let good = root().join("profiles/edge-minimal.toml");
    let typo = d.join("typo.toml");
    std::fs::write(&typo, "[image]\nname = \"x\"\nversion = \"1.0.0\"\n[distribution]\nsuite = \"bookworm\"\n[packages]\nincldue = [\"a\"]\n").unwrap();
    let hw = |name: &str, from: &str, to: &str| {
        let src = std::fs::read_to_string(root().join("hardware").join(name)).unwrap();
        assert!(src.contains(from), "{from}");
        let p = d.join(format!("{name}-{}", to.len()));
        std::fs::write(&p, src.replacen(from, to, 1)).unwrap();
        p.display().to_string()
    };
    let smp0 = hw("qemu-x86_64.toml", "smp = 2", "smp = 0");
    let tiny_data = hw(
        "qemu-x86_64-ab.toml",
        "data_size = \"96MiB\"",
        "data_size = \"1MiB\"",
    );
    let key = d.join("k");
    ok(
        &ingot(&["keygen", "--out", key.to_str().unwrap()]),
        "keygen",
    );
    let empty_cache = d.join("cache");
    let (g, o, ab) = (
        good.to_str().unwrap(),
        out.to_str().unwrap(),
        "hardware/qemu-x86_64-ab.toml",
    );
    let k = format!("{}.key", key.display());
    // (arguments, environment, exit code, what the message names)
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, i32, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec!["build", typo.to_str().unwrap(), "--out", o],
            vec![],
            2,
            "incldue",
        ),
        (
            vec!["build", g, "--out", o],
            vec![("SOURCE_DATE_EPOCH", "x")],
            2,
            "SOURCE_DATE_EPOCH",
        ),
        (
            vec!["build", g, "--out", o, "--key", "/nonexistent/key"],
            vec![],
            2,
            "/nonexistent/key",
        ),
        (
            vec!["build", g, "--out", o, "--hardware", &smp0],
            vec![],
            2,
            "qemu.smp",
        ),
        // A mirror Ingot cannot fetch from: refused as given, not when the first index is
        // fetched (it was exit 1 after resolving began).
        (
            vec![
                "build",
                g,
                "--out",
                o,
                "--mirror",
                "ftp://deb.invalid/debian",
            ],
            vec![],
            2,
            "--mirror ftp://deb.invalid/debian: not a mirror Ingot can fetch from",
        ),
        (
            vec!["build", g, "--out", o],
            vec![("INGOT_MIRROR", "file://relative/debian")],
            2,
            "INGOT_MIRROR file://relative/debian: not a mirror",
        ),
        (
            vec!["build", g, "--out", o, "--hardware", ab],
            vec![],
            2,
            "--key",
        ),
        (
            vec![
                "build",
                g,
                "--out",
                o,
                "--hardware",
                &tiny_data,
                "--key",
                &k,
            ],
            vec![],
            2,
            "ab.data_size",
        ),
        // Fails after the staging directory exists: the mirror is not there.
        (
            vec![
                "build",
                g,
                "--out",
                o,
                "--mirror",
                "file:///nonexistent/debian",
                "--cache",
                empty_cache.to_str().unwrap(),
            ],
            vec![],
            1,
            "/nonexistent/debian",
        ),
    ];
    for (args, env, code, needle) in cases {
        let r = ingot_env(&args, &env);
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: wanted `{needle}` in {err}");
        assert_eq!(tree_digests(&out), before, "{args:?} changed --out");
    }
}

#[test]
fn counts_that_would_test_nothing_are_usage_errors() {
    // `boot-test --boots 0` of a UEFI-only image passed with no boot at all (a JUnit file of
    // zero tests); a zero timeout or job count can never do the work either.
    for args in [
        &["boot-test", "out/x", "--boots", "0"][..],
        &["boot-test", "out/x", "--timeout", "0"],
        &["boot-test", "out/x", "-j", "0"],
        &["ota-test", "out/x", "b.bundle:updated", "--timeout", "0"],
        &[
            "build",
            "profiles/edge-minimal.toml",
            "--jobs",
            "0",
            "--out",
            "/nonexistent/o",
        ],
        &["fetch", "profiles/edge-minimal.toml", "-j", "0"],
    ] {
        let o = ingot(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("invalid value '0'")
                && (err.contains("not in 1..") || err.contains("at least 1")),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn a_build_never_replaces_a_directory_of_the_users_own() {
    // OUT/edge-minimal-1.0.0-aarch64 holding a file of the user's was moved aside and deleted
    // when the build finished. Now refused before any work (before the x86_64 image of the
    // same run is built), and --out as a file is named.
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let mine = out.join("edge-minimal-1.0.0-aarch64");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("notes.txt"), "mine\n").unwrap();
    let cache = t.path().join("cache");
    let mirror = format!("file://{}/no-mirror", t.path().display());
    let build = |out: &std::path::Path| {
        ingot(&[
            "build",
            "profiles/edge-minimal.toml",
            "--hardware",
            "hardware/qemu-x86_64.toml",
            "--hardware",
            "hardware/qemu-aarch64.toml",
            "--out",
            out.to_str().unwrap(),
            "--cache",
            cache.to_str().unwrap(),
            "--mirror",
            &mirror,
        ])
    };
    let o = build(&out);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("edge-minimal-1.0.0-aarch64: holds `notes.txt`")
            && err.contains("move it away or give another --out"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(mine.join("notes.txt")).unwrap(),
        "mine\n"
    );
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
    let file = t.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let o = build(&file);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("a-file: exists and is not a directory"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
}

#[test]
fn a_pipe_given_as_an_input_file_is_refused_at_once() {
    // A matrix file, a lockfile or a key that is a FIFO (or /dev/zero) was read for ever.
    let t = tempfile::tempdir().unwrap();
    let fifo = t.path().join("fifo");
    assert!(tool("mkfifo", &[fifo.to_str().unwrap()]).0);
    let f = fifo.to_str().unwrap();
    let out = t.path().join("out");
    for args in [
        &["boot-test", "--matrix", f][..],
        &["audit", f],
        &[
            "build",
            "profiles/edge-minimal.toml",
            "--key",
            f,
            "--out",
            out.to_str().unwrap(),
        ],
        &["validate", f],
    ] {
        let mut child = ingot_command()
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("{args:?}: still reading the pipe after 30 s");
        }
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?}");
        assert!(err.contains("not a regular file"), "{args:?}: {err}");
    }
    assert!(!out.exists());
}

/// A key pair made by `ingot keygen` in `dir`: (secret key path, public key path).
fn key_pair(dir: &std::path::Path) -> (String, String) {
    let prefix = dir.join("k");
    assert!(ingot(&["keygen", "--out", prefix.to_str().unwrap()])
        .status
        .success());
    let path = |ext: &str| dir.join(format!("k.{ext}")).display().to_string();
    (path("key"), path("pub"))
}

#[test]
fn a_key_that_cannot_be_used_is_bad_input() {
    // A missing key, the other half of the pair, a directory or a device is bad input
    // (exit 2) like any other input file, named once; it exited 1, as a failed verification does.
    let t = tempfile::tempdir().unwrap();
    let (sk, pk) = key_pair(t.path());
    let (sk, pk) = (sk.as_str(), pk.as_str());
    let missing = t.path().join("nope.key");
    let missing = missing.to_str().unwrap();
    let dir = t.path().join("image");
    let dir = dir.to_str().unwrap();
    let here = t.path().to_str().unwrap();
    for (args, needle) in [
        (vec!["sign", dir, "--key", missing], "secret key: reading"),
        (
            vec!["sign", dir, "--key", pk],
            "not a minisign ed25519 secret key",
        ),
        (
            vec!["sign", dir, "--key", "/dev/null"],
            "not a regular file",
        ),
        (
            vec!["verify", dir, "--key", sk],
            "not a minisign ed25519 public key",
        ),
        (
            vec!["verify", dir, "--key", here],
            "not a regular file (a directory)",
        ),
        (
            vec![
                "build",
                "profiles/edge-minimal.toml",
                "--key",
                pk,
                "--out",
                here,
            ],
            "not a minisign ed25519 secret key",
        ),
    ] {
        let o = ingot(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        let named = args[3];
        assert_eq!(err.matches(named).count(), 1, "{args:?}: {err}");
    }
}

#[test]
fn a_path_that_is_not_an_image_directory_is_bad_input() {
    // Every command that reads an image directory: a missing path, a file, or a directory
    // without manifest.json is bad input (exit 2), said before anything else is read. It was
    // exit 1, as a failed verification or boot is.
    let t = tempfile::tempdir().unwrap();
    let (sk, pk) = key_pair(t.path());
    let (sk, pk) = (sk.as_str(), pk.as_str());
    let empty = t.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let missing = t.path().join("missing");
    for (given, why) in [
        (missing.to_str().unwrap(), "no such image directory"),
        (pk, "not an image directory (not a directory)"),
        (
            empty.to_str().unwrap(),
            "not an image directory (it holds no manifest.json)",
        ),
    ] {
        for args in [
            vec!["inspect", given],
            vec!["verify", given, "--key", pk],
            vec!["sign", given, "--key", sk],
            vec!["boot-test", given],
            vec!["report", given],
            vec!["diff", given, given],
            vec!["push", given, "127.0.0.1:9/x/y:1.0.0", "--key", pk],
        ] {
            let o = ingot(&args);
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
            assert!(err.contains(&format!("{given}: {why}")), "{args:?}: {err}");
        }
    }
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
}

#[test]
fn a_report_that_could_not_be_written_is_refused_before_any_boot() {
    // boot-test and ota-test write their reports when the run ends: a report path that is a
    // directory, or lies under a file, failed only then, after every boot. Now exit 2 at once,
    // before even the image is read (the image here does not exist, and is not named).
    let t = tempfile::tempdir().unwrap();
    let file = t.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let dir = t.path().display().to_string();
    let under = file.join("r.xml").display().to_string();
    let image = t.path().join("no-image").display().to_string();
    let filename = file.display().to_string();
    for (args, needle) in [
        (
            vec!["boot-test", &image, "--json", &dir],
            format!("--json {dir}: is a directory"),
        ),
        (
            vec!["boot-test", &image, "--junit", &under],
            format!("--junit {under}: {filename} is not a directory"),
        ),
        (
            vec!["boot-test", &image, "--html", &dir],
            format!("--html {dir}: is a directory"),
        ),
        (
            vec!["boot-test", &image, "--logs", &filename],
            format!("--logs {filename}: exists and is not a directory"),
        ),
        (
            vec!["ota-test", &image, "b.bundle:updated", "--json", &dir],
            format!("--json {dir}: is a directory"),
        ),
        (
            vec!["ota-test", &image, "b.bundle:updated", "--html", &under],
            format!("--html {under}: {filename} is not a directory"),
        ),
        // `ingot report --out` the same way (it was exit 1 when the page was written).
        (
            vec!["report", &image, "--out", &dir],
            format!("--out {dir}: is a directory"),
        ),
        (
            vec!["report", &image, "--out", &under],
            format!("--out {under}: {filename} is not a directory"),
        ),
    ] {
        let o = ingot(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(&needle), "{args:?}: {err}");
    }
    // A report's missing directories are still made when it is written; naming them is not
    // an error (the missing image is).
    let nested = t.path().join("a/b/r.json").display().to_string();
    let o = ingot(&["boot-test", &image, "--json", &nested]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("no such image directory"), "{err}");
    assert!(
        !t.path().join("a").exists(),
        "made a directory for a run that never ran"
    );
}

/// No --mirror, no INGOT_MIRROR and apt sources that name no mirror: a usage error (exit 2)
/// that says where to name one, before anything is written.
#[test]
fn a_host_that_names_no_mirror_is_told_where_to_name_one() {
    let t = tempfile::tempdir().unwrap();
    let apt = t.path().join("apt");
    std::fs::create_dir_all(apt.join("sources.list.d")).unwrap();
    let out = t.path().join("out");
    let lock = root().join("profiles/edge-minimal.lock");
    let lock_before = std::fs::read(&lock).ok();
    for args in [
        vec![
            "build",
            "profiles/edge-minimal.toml",
            "--out",
            out.to_str().unwrap(),
        ],
        vec!["lock", "profiles/edge-minimal.toml"],
    ] {
        let o = ingot_command()
            .args(&args)
            .env_remove("INGOT_MIRROR")
            .env("INGOT_APT_DIR", &apt)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("no Debian mirror") && err.contains("--mirror"),
            "{args:?}: {err}"
        );
    }
    assert!(!out.exists());
    assert_eq!(std::fs::read(&lock).ok(), lock_before);
}
