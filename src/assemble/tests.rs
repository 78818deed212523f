//! The assembly stage on small hand-made trees: the ready script, the /etc/.updated stamps,
//! masked generators and units, and units enabled from their `[Install]` sections.

use super::*;
use crate::config::Agent;

#[test]
fn ready_script_lists_agents_and_quotes_probes() {
    let id = Identity {
        name: "edge".into(),
        version: "1.0.0".into(),
        arch: "x86_64".into(),
        epoch: 0,
    };
    let t = tempfile::tempdir().unwrap();
    let flag = t.path().join("late flag");
    let agent = |name: &str, probe: String, timeout: u32| Agent {
        name: name.into(),
        packages: vec![],
        files: vec![],
        service: None,
        probe,
        probe_timeout: timeout,
    };
    // The order given, not name order; a probe with quotes in it; one that passes late,
    // one that never does.
    let agents = [
        agent("zeta", format!("test -e '{}'", flag.display()), 5),
        agent("never", "false".into(), 1),
        agent("alpha", "true".into(), 5),
    ];
    let s = ready_script(&id, &agents, false, None);
    assert!(s.contains("probe 5 'test -e '\\''"), "{s}");
    let script = t.path().join("ready");
    std::fs::write(&script, &s).unwrap();
    let console = t.path().join("console");
    let mut child = std::process::Command::new("sh")
        .arg(&script)
        .env("INGOT_READY_DIR", t.path().join("probes"))
        .env("INGOT_CONSOLE", &console)
        .spawn()
        .unwrap();
    // Late enough for the slower polls that follow the first half second.
    std::thread::sleep(std::time::Duration::from_millis(800));
    std::fs::write(&flag, "").unwrap();
    assert!(child.wait().unwrap().success());
    let line = std::fs::read_to_string(&console).unwrap();
    assert!(
        line.starts_with("INGOT-READY image=edge version=1.0.0 machine-id=")
            && line.contains(" agents=zeta:ok,never:fail,alpha:ok uptime="),
        "{line}"
    );
    assert!(
        !t.path().join("probes").exists(),
        "probe results left behind"
    );
}

#[test]
fn ready_line_of_a_systemd_image_names_its_failed_units() {
    let id = Identity {
        name: "vm".into(),
        version: "1.0.0".into(),
        arch: "x86_64".into(),
        epoch: 0,
    };
    let t = tempfile::tempdir().unwrap();
    // A systemctl that reports these units failed, as `list-units --plain --no-legend` does.
    let bin = t.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let run_restarts = |failed_units: &str, restarts: &str, services: &[String], ab: bool| {
        let fake = bin.join("systemctl");
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh
case $1 in
  show) printf '%s' '{restarts}' ;;
  *) printf '%s' '{failed_units}' ;;
esac
"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let s = ready_script(&id, &[], ab, Some(services));
        // The script sets its own PATH; the test puts the fake first.
        let s = s.replacen(
            "PATH=/usr/sbin:/usr/bin:/sbin:/bin\n",
            &format!("PATH={}:/usr/bin:/bin\n", bin.display()),
            1,
        );
        let script = t.path().join("ready");
        std::fs::write(&script, &s).unwrap();
        let console = t.path().join("console");
        let out = std::process::Command::new("sh")
            .arg(&script)
            .env("INGOT_READY_DIR", t.path().join("probes"))
            .env("INGOT_CONSOLE", &console)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (s, std::fs::read_to_string(&console).unwrap())
    };
    let run = |failed_units: &str, services: &[String], ab: bool| {
        run_restarts(failed_units, "", services, ab)
    };
    let services = ["chrony.service".to_string(), "nginx.service".to_string()];
    let (_, line) = run(
        "nginx.service loaded failed failed A web server\nsystemd-x\\x2dy.service loaded failed failed X\nchrony.service loaded failed failed NTP\n",
        &services,
        false,
    );
    assert!(
        line.trim_end()
            .ends_with(" failed=nginx.service,chrony.service degraded=systemd-x\\x2dy.service"),
        "{line}"
    );
    let r = crate::boottest::console::parse_ready(&line).unwrap();
    assert_eq!(r.failed, ["nginx.service", "chrony.service"]);
    assert_eq!(r.degraded, ["systemd-x\\x2dy.service"]);
    // Nothing failed: neither field. A unit whose name merely contains a wanted one is not it.
    let (_, line) = run("", &services, false);
    assert!(
        !line.contains("failed=") && !line.contains("degraded="),
        "{line}"
    );
    let (_, line) = run("x-nginx.service loaded failed failed X\n", &services, false);
    assert!(
        line.trim_end().ends_with(" degraded=x-nginx.service"),
        "{line}"
    );
    // A service of the profile's that systemd restarted counts as failed though it is not
    // listed failed (memcached without its account, between two starts); one listed failed
    // too is named once; restarts of other units and a missing count do not count.
    let (_, line) = run_restarts(
        "nginx.service loaded failed failed A web server\n",
        "NRestarts=3\nId=chrony.service\n\nId=nginx.service\nNRestarts=1\n\nNRestarts=0\nId=x.service\n",
        &services,
        false,
    );
    assert!(
        line.trim_end()
            .ends_with(" failed=nginx.service,chrony.service"),
        "{line}"
    );
    let (_, line) = run_restarts(
        "",
        "Id=chrony.service\nNRestarts=0\n\nId=nginx.service\n",
        &services,
        false,
    );
    assert!(!line.contains("failed="), "{line}");
    // On an A/B disk a failed service makes the boot bad, like a failed probe.
    let (s, _) = run("", &services, true);
    assert!(s.contains("[ -z \"$failed\" ] || verdict=fail\n"), "{s}");
}

/// The ready check runs on every device: each form of it passes shellcheck like the updater.
#[test]
fn ready_scripts_pass_shellcheck() {
    let id = Identity {
        name: "vm".into(),
        version: "1.0.0".into(),
        arch: "x86_64".into(),
        epoch: 0,
    };
    let agents = [Agent {
        name: "a".into(),
        packages: vec![],
        files: vec![],
        service: None,
        probe: "test -e '/run/a b'".into(),
        probe_timeout: 5,
    }];
    let services = ["ssh.service".to_string()];
    let t = tempfile::tempdir().unwrap();
    for (n, (ab, units)) in [
        (false, None),
        (true, None),
        (false, Some(&services[..])),
        (true, Some(&services[..])),
        (false, Some(&[][..])),
    ]
    .into_iter()
    .enumerate()
    {
        let p = t.path().join(format!("ready-{n}"));
        std::fs::write(&p, ready_script(&id, &agents, ab, units)).unwrap();
        let o = std::process::Command::new("shellcheck")
            .args(["-s", "sh", "-S", "style"])
            .arg(&p)
            .output()
            .expect("shellcheck (Debian package shellcheck; .ci/host-deps installs it)");
        assert!(
            o.status.success(),
            "ab={ab} units={units:?}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
}

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
    // Without udev the build stops and says what to add, unless the profile excludes it.
    let mut no_udev = tree();
    no_udev.remove("usr/lib/systemd/systemd-udevd");
    let e = system(
        &mut no_udev,
        &base(""),
        &hw,
        &id,
        &labels,
        None,
        &Scripts::default(),
    )
    .unwrap_err();
    assert!(
        format!("{e:#}").contains("stamps.toml: a systemd image needs udev"),
        "{e:#}"
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
    let mut bare = tree();
    bare.remove("usr/bin/sleep");
    let e = system(
        &mut bare,
        &base(""),
        &hw,
        &id,
        &labels,
        None,
        &Scripts::default(),
    )
    .unwrap_err();
    assert!(
        format!("{e:#}").contains("stamps.toml: the image has no `sleep` (coreutils)"),
        "{e:#}"
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
