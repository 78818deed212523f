//! The assembly stage on small hand-made trees: the /etc/.updated stamps and the profile's
//! files, masked generators and units, and units enabled from their `[Install]` sections.
//! The ready script's tests are in `tests/ready.rs`.

use super::*;
use crate::config::Agent;

mod ready;

#[test]
fn updated_stamps_only_when_every_sysusers_fragment_was_applied() {
    let hw =
        crate::config::load_hardware(std::path::Path::new("hardware/qemu-x86_64.toml")).unwrap();
    let id = Identity {
        name: "stamps".into(),
        version: "1.0.0".into(),
        arch: "x86_64".into(),
        epoch: 1_700_000_000,
    };
    let base = |extra: &str| {
        let text = format!(
            "init = \"systemd\"\n[image]\nname = \"stamps\"\nversion = \"1.0.0\"\n\
             [distribution]\nsuite = \"bookworm\"\n[network]\ndhcp = false\n{extra}"
        );
        crate::config::profile_from_str(std::path::Path::new("stamps.toml"), &text).unwrap()
    };
    let tree = || {
        let mut t = Tree::new();
        for (p, data) in [
            ("usr/lib/systemd/systemd", ""),
            ("usr/bin/dash", ""),
            ("usr/bin/cat", ""),
            ("usr/bin/cut", ""),
            ("usr/bin/mkdir", ""),
            ("usr/bin/rm", ""),
            ("usr/bin/sleep", ""),
            ("usr/lib/systemd/systemd-udevd", ""),
            (
                "usr/lib/sysusers.d/basic.conf",
                "g tty 5 -\nu daemon 1 \"daemon\" /usr/sbin\n",
            ),
        ] {
            t.insert(p, Entry::file(data, 0o755)).unwrap();
        }
        t
    };
    let labels = BTreeMap::new();
    // Every fragment came from the packages and was applied: both stamps, and the users.
    let mut t = tree();
    system(
        &mut t,
        &base(""),
        &hw,
        &id,
        &labels,
        None,
        &Scripts::default(),
    )
    .unwrap();
    assert!(t.exists("etc/.updated") && t.exists("var/.updated"));
    let passwd = String::from_utf8(t.read("etc/passwd").unwrap()).unwrap();
    assert!(passwd.contains("daemon:x:1:"), "{passwd}");
    // The build's error for the base tree without `gone`.
    let refusal = |gone: &[&str]| {
        let mut t = tree();
        for f in gone {
            t.remove(f);
        }
        let e = system(
            &mut t,
            &base(""),
            &hw,
            &id,
            &labels,
            None,
            &Scripts::default(),
        )
        .unwrap_err();
        // What to change is the profile's package list: bad input.
        assert_eq!(crate::cli::exit_code(&e), 2, "{e:#}");
        format!("{e:#}")
    };
    // Without udev the build stops and says what to add, unless the profile excludes it.
    let e = refusal(&["usr/lib/systemd/systemd-udevd"]);
    assert!(
        e.contains("stamps.toml: the image has no udev, which a systemd image needs"),
        "{e}"
    );
    let mut no_udev = tree();
    no_udev.remove("usr/lib/systemd/systemd-udevd");
    system(
        &mut no_udev,
        &base("[packages]\nexclude = [\"udev\"]\n"),
        &hw,
        &id,
        &labels,
        None,
        &Scripts::default(),
    )
    .unwrap();
    // Without coreutils, which the ready check runs, the build stops and says what to add.
    let e = refusal(&["usr/bin/sleep"]);
    assert!(
        e.contains("stamps.toml: the image has no `sleep` (coreutils)"),
        "{e}"
    );
    // A unit the profile starts that the image has no file for: bad input at its item, with
    // the nearest unit the image has.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("units.toml");
    let text = "init = \"systemd\"\nservices = [\n  \"nginxx.service\",\n]\n[image]\nname = \"stamps\"\nversion = \"1.0.0\"\n[distribution]\nsuite = \"bookworm\"\n[network]\ndhcp = false\n";
    std::fs::write(&file, text).unwrap();
    let units = crate::config::profile_from_str(&file, text).unwrap();
    let mut t = tree();
    t.insert(
        "usr/lib/systemd/system/nginx.service",
        Entry::file("[Service]\nExecStart=/bin/true\n", 0o644),
    )
    .unwrap();
    let e = system(&mut t, &units, &hw, &id, &labels, None, &Scripts::default()).unwrap_err();
    assert_eq!(crate::cli::exit_code(&e), 2, "{e:#}");
    assert_eq!(
        e.to_string(),
        format!(
            "{}:3:3: services: `nginxx.service` has no unit file in the image; did you mean `nginx.service`?",
            file.display()
        )
    );
    // Everything missing is named at once, not one per build.
    let e = refusal(&[
        "usr/bin/sleep",
        "usr/bin/cat",
        "usr/lib/systemd/systemd-udevd",
    ]);
    assert!(
        e.contains("no udev, which a systemd image needs")
            && e.contains("; and no `cat`, `sleep` (coreutils)"),
        "{e}"
    );
    // A fragment the profile adds after the users were made: sysusers must run at boot.
    for path in [
        "/etc/sysusers.d/extra.conf",
        "/usr/lib/sysusers.d/extra.conf",
    ] {
        let mut t = tree();
        let p = base(&format!(
            "[[files]]\npath = \"{path}\"\ncontent = \"u late - \\\"late\\\"\"\n"
        ));
        system(&mut t, &p, &hw, &id, &labels, None, &Scripts::default()).unwrap();
        assert!(t.exists(&path[1..]), "{path}");
        assert!(
            !t.exists("etc/.updated") && !t.exists("var/.updated"),
            "{path}"
        );
    }
    // A link the profile asks for replaces what the packages put there, owner and all.
    let mut t = tree();
    t.insert("etc/localtime", Entry::file("tz", 0o644)).unwrap();
    let p = base(
        "[[files]]\npath = \"/etc/localtime\"\nlink = \"/usr/share/zoneinfo/Europe/Berlin\"\ngid = 7\n",
    );
    system(&mut t, &p, &hw, &id, &labels, None, &Scripts::default()).unwrap();
    let e = t.get("etc/localtime").unwrap();
    assert_eq!(
        e.kind,
        crate::tree::Kind::Symlink("/usr/share/zoneinfo/Europe/Berlin".into())
    );
    assert_eq!((e.uid, e.gid), (0, 7));
}

#[test]
fn generators_without_input_are_masked() {
    let gens = [
        "systemd-cryptsetup-generator",
        "systemd-veritysetup-generator",
        "systemd-integritysetup-generator",
        "systemd-hibernate-resume-generator",
        "systemd-rc-local-generator",
        "systemd-sysv-generator",
        "systemd-getty-generator",
    ];
    let base = || {
        let mut t = Tree::new();
        for g in gens {
            t.insert(
                &format!("usr/lib/systemd/system-generators/{g}"),
                Entry::file("", 0o755),
            )
            .unwrap();
        }
        t.insert("etc/init.d/ssh", Entry::file("", 0o755)).unwrap();
        t.insert("lib/systemd/system/ssh.service", Entry::file("", 0o644))
            .unwrap();
        // Masked by a link to /dev/null, which the tree does not hold.
        t.insert("etc/init.d/hwclock.sh", Entry::file("", 0o755))
            .unwrap();
        t.insert(
            "lib/systemd/system/hwclock.service",
            Entry::symlink("/dev/null"),
        )
        .unwrap();
        t
    };
    let masked = |t: &Tree| -> Vec<&str> {
        gens.iter()
            .copied()
            .filter(|g| {
                matches!(
                    t.get(&format!("etc/systemd/system-generators/{g}")),
                    Some(e) if matches!(&e.kind, crate::tree::Kind::Symlink(l) if l == "/dev/null")
                )
            })
            .collect()
    };
    let mut t = base();
    idle::mask_idle_generators(&mut t, "quiet panic=-1").unwrap();
    assert_eq!(masked(&t), &gens[..6]);

    // Each input keeps its generator: a crypttab, a resume= word, an rc.local, an init
    // script without a native unit.
    let mut t = base();
    t.insert("etc/crypttab", Entry::file("", 0o644)).unwrap();
    t.insert("etc/rc.local", Entry::file("", 0o755)).unwrap();
    t.insert("etc/init.d/legacy", Entry::file("", 0o755))
        .unwrap();
    idle::mask_idle_generators(&mut t, "quiet resume=/dev/vda3 rd.luks.uuid=x").unwrap();
    assert_eq!(
        masked(&t),
        [
            "systemd-veritysetup-generator",
            "systemd-integritysetup-generator"
        ]
    );
    // A profile's own entry at the mask's path is left as it is.
    let mut t = base();
    t.insert(
        "etc/systemd/system-generators/systemd-rc-local-generator",
        Entry::symlink("/usr/local/lib/my-generator"),
    )
    .unwrap();
    idle::mask_idle_generators(&mut t, "quiet").unwrap();
    assert!(!masked(&t).contains(&"systemd-rc-local-generator"));
    // A dm-verity root hash on the command line keeps the veritysetup generator.
    let mut t = base();
    idle::mask_idle_generators(&mut t, "quiet roothash=ab12").unwrap();
    assert!(!masked(&t).contains(&"systemd-veritysetup-generator"));
}

#[test]
fn units_with_nothing_to_do_are_masked() {
    let base = || {
        let mut t = Tree::new();
        for u in [
            "systemd-network-generator.service",
            "systemd-repart.service",
            "modprobe@.service",
        ] {
            t.insert(
                &format!("usr/lib/systemd/system/{u}"),
                Entry::file("[Unit]\n", 0o644),
            )
            .unwrap();
        }
        t.insert("boot/vmlinuz-6.1.0-1-amd64", Entry::file("", 0o644))
            .unwrap();
        let k = "usr/lib/modules/6.1.0-1-amd64";
        // loop as a file, efi_pstore built in, dm_mod as dm-mod.ko (names match across `-`
        // and `_`); drm pruned away.
        t.insert(
            &format!("{k}/modules.dep"),
            Entry::file(
                "kernel/drivers/block/loop.ko.xz:\nkernel/drivers/md/dm-mod.ko.xz: kernel/drivers/md/dm-bufio.ko.xz\nkernel/drivers/md/dm-bufio.ko.xz:\n",
                0o644,
            ),
        )
        .unwrap();
        t.insert(
            &format!("{k}/modules.builtin"),
            Entry::file("kernel/drivers/firmware/efi/efi-pstore.ko\n", 0o644),
        )
        .unwrap();
        t.insert(
            &format!("{k}/modules.alias"),
            Entry::file("alias devname:mapper/control dm_mod\n", 0o644),
        )
        .unwrap();
        t
    };
    let masked = |t: &Tree| -> Vec<String> {
        t.children("etc/systemd/system")
            .filter(|p| {
                matches!(t.get(p), Some(e) if matches!(&e.kind, crate::tree::Kind::Symlink(l) if l == "/dev/null"))
            })
            .map(|p| p.rsplit('/').next().unwrap().to_string())
            .collect()
    };
    let mut t = base();
    idle::mask_idle_units(&mut t, "quiet panic=-1", &[]).unwrap();
    assert_eq!(
        masked(&t),
        [
            "modprobe@drm.service",
            "systemd-network-generator.service",
            "systemd-repart.service"
        ]
    );
    // A network option, a repart.d definition, a drm module, a profile's own choice:
    // each keeps its unit.
    let mut t = base();
    t.insert("etc/repart.d/50-root.conf", Entry::file("", 0o644))
        .unwrap();
    t.insert(
        "usr/lib/modules/6.1.0-1-amd64/modules.dep",
        Entry::file(
            "kernel/drivers/gpu/drm/drm.ko.xz:\nkernel/drivers/block/loop.ko.xz:\nkernel/drivers/md/dm-mod.ko.xz:\n",
            0o644,
        ),
    )
    .unwrap();
    idle::mask_idle_units(&mut t, "quiet ip=dhcp", &[]).unwrap();
    assert!(masked(&t).is_empty(), "{:?}", masked(&t));
    let mut t = base();
    idle::mask_idle_units(
        &mut t,
        "quiet ifname=lan0:52:54:00:12:34:56",
        &["systemd-repart.service".to_string()],
    )
    .unwrap();
    assert_eq!(masked(&t), ["modprobe@drm.service"]);
    // Without a module index nothing is known about modules, so no modprobe@ is masked;
    // nor is a unit the image does not ship.
    let mut t = Tree::new();
    t.insert(
        "usr/lib/systemd/system/modprobe@.service",
        Entry::file("", 0o644),
    )
    .unwrap();
    idle::mask_idle_units(&mut t, "quiet", &[]).unwrap();
    assert!(masked(&t).is_empty());
}

#[test]
fn units_enabled_from_install_section() {
    let mut t = Tree::new();
    t.insert(
        "usr/lib/systemd/system/a.service",
        Entry::file(
            "[Unit]\n[Install]\nWantedBy=multi-user.target\nAlias=b.service\n",
            0o644,
        ),
    )
    .unwrap();
    enable_unit(&mut t, "a.service", "p").unwrap();
    assert!(t
        .get("etc/systemd/system/multi-user.target.wants/a.service")
        .is_some());
    assert!(t.get("etc/systemd/system/b.service").is_some());
    t.insert(
        "usr/lib/systemd/system/s.service",
        Entry::file("[Unit]\n", 0o644),
    )
    .unwrap();
    assert!(enable_unit(&mut t, "s.service", "p").is_err());
    assert!(enable_unit(&mut t, "missing.service", "p")
        .unwrap_err()
        .to_string()
        .contains("no unit file"));
}

#[test]
fn instances_are_enabled_from_their_template() {
    let mut t = Tree::new();
    for (u, text) in [
        (
            "serial-getty@.service",
            "[Install]\nWantedBy=getty.target\nAlias=console@.service\n",
        ),
        (
            "getty@.service",
            "[Install]\nWantedBy=getty.target\nDefaultInstance=tty1\n",
        ),
        ("w@.service", "[Install]\nWantedBy=multi-user.target\n"),
    ] {
        t.insert(
            &format!("usr/lib/systemd/system/{u}"),
            Entry::file(text, 0o644),
        )
        .unwrap();
    }
    let link = |t: &Tree, p: &str| match t.get(p).map(|e| &e.kind) {
        Some(crate::tree::Kind::Symlink(to)) => Some(to.clone()),
        _ => None,
    };
    enable_unit(&mut t, "serial-getty@ttyS1.service", "p").unwrap();
    assert_eq!(
        link(
            &t,
            "etc/systemd/system/getty.target.wants/serial-getty@ttyS1.service"
        )
        .as_deref(),
        Some("/usr/lib/systemd/system/serial-getty@.service")
    );
    assert!(link(&t, "etc/systemd/system/console@ttyS1.service").is_some());
    // A template named alone: its DefaultInstance=, or an error saying to name one.
    enable_unit(&mut t, "getty@.service", "p").unwrap();
    assert!(link(
        &t,
        "etc/systemd/system/getty.target.wants/getty@tty1.service"
    )
    .is_some());
    let e = enable_unit(&mut t, "w@.service", "p")
        .unwrap_err()
        .to_string();
    assert!(e.contains("template without DefaultInstance"), "{e}");
    assert!(enable_unit(&mut t, "nope@x.service", "p")
        .unwrap_err()
        .to_string()
        .contains("no unit file"));
}

#[test]
fn also_cycles_end() {
    let mut t = Tree::new();
    for (u, other) in [("x.service", "x.socket"), ("x.socket", "x.service")] {
        t.insert(
            &format!("usr/lib/systemd/system/{u}"),
            Entry::file(
                format!("[Install]\nWantedBy=multi-user.target\nAlso={other}\n"),
                0o644,
            ),
        )
        .unwrap();
    }
    enable_unit(&mut t, "x.service", "p").unwrap();
    for u in ["x.service", "x.socket"] {
        assert!(t
            .get(&format!("etc/systemd/system/multi-user.target.wants/{u}"))
            .is_some());
    }
}

#[test]
fn stripped_docs_stay_out_of_later_installs_on_an_image_with_dpkg() {
    let tree = |dpkg: bool| {
        let mut t = Tree::new();
        for p in [
            "usr/share/doc/p/copyright",
            "usr/share/doc/p/changelog.Debian.gz",
            "usr/share/man/man1/p.1.gz",
            "usr/share/locale/de/LC_MESSAGES/p.mo",
            "usr/bin/p",
        ] {
            t.insert(p, Entry::file("x", 0o644)).unwrap();
        }
        if dpkg {
            t.insert("usr/bin/dpkg", Entry::file("", 0o755)).unwrap();
        }
        t
    };
    let mut t = tree(true);
    assert_eq!(strip_docs(&mut t).unwrap(), 3);
    assert!(t.get("usr/share/doc/p/copyright").is_some() && t.get("usr/bin/p").is_some());
    assert!(t.get("usr/share/man/man1/p.1.gz").is_none());
    let filters = String::from_utf8(t.read(NO_DOCS).unwrap()).unwrap();
    // Every directory the strip empties is excluded, and copyright files are included again
    // after the excludes (dpkg applies the filters in order).
    assert!(t.get("usr/share/locale/de/LC_MESSAGES/p.mo").is_none());
    for d in ["doc", "man", "info", "locale", "lintian"] {
        assert!(
            filters.contains(&format!("\npath-exclude=/usr/share/{d}/*\n")),
            "{filters}"
        );
    }
    assert!(filters.ends_with("path-include=/usr/share/*/copyright\n"));
    // Without dpkg (a busybox image) there is nothing to tell.
    let mut t = tree(false);
    strip_docs(&mut t).unwrap();
    assert!(t.get(NO_DOCS).is_none());
}

#[test]
fn a_systemd_image_without_e2fsprogs_gets_a_note() {
    let profile = crate::config::profile_from_str(
        std::path::Path::new("p.toml"),
        "[image]\nname = \"p\"\nversion = \"1.0.0\"\n[distribution]\nsuite = \"trixie\"\n",
    )
    .unwrap();
    let mut t = Tree::new();
    let n = super::init::no_fsck_note(&t, &profile).unwrap();
    assert!(
        n.starts_with("note: p.toml: the image has no e2fsprogs"),
        "{n}"
    );
    assert!(!n.contains("cloud-init"), "{n}");
    t.insert(
        "usr/bin/cloud-init",
        Entry::file("#!/usr/bin/python3\n", 0o755),
    )
    .unwrap();
    let n = super::init::no_fsck_note(&t, &profile).unwrap();
    assert!(n.contains("nor cloud-init grow it"), "{n}");
    // Debian 12's e2fsprogs, /sbin through usrmerge's link, and Debian 13's.
    t.insert("sbin", Entry::symlink("usr/sbin")).unwrap();
    t.insert("usr/sbin/e2fsck", Entry::file("", 0o755)).unwrap();
    assert_eq!(super::init::no_fsck_note(&t, &profile), None);
}
