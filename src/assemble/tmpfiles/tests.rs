//! tmpfiles.d lines against a small image.

use super::*;

fn image() -> Tree {
    let mut t = Tree::new();
    t.insert(
        "etc/passwd",
        Entry::file(
            "root:x:0:0::/root:/bin/sh\nzabbix:x:105:107::/:/usr/sbin/nologin\n",
            0o644,
        ),
    )
    .unwrap();
    t.insert(
        "etc/group",
        Entry::file("root:x:0:\nzabbix:x:107:\nsystemd-journal:x:101:\n", 0o644),
    )
    .unwrap();
    t.mkdir_p("etc/default").unwrap();
    t.mkdir_p("var/lib/systemd").unwrap();
    t.mkdir_p("var/log/journal").unwrap();
    t.mkdir_p("var/lib/zabbix/db").unwrap();
    t.insert("var/lib/zabbix/db/x", Entry::file("x", 0o644))
        .unwrap();
    // Shipped 0755 by the package, 0700 by its tmpfiles line.
    t.insert("etc/credstore", Entry::dir(0o755)).unwrap();
    t.insert("etc/vconsole.conf", Entry::file("x", 0o644))
        .unwrap();
    t.insert(
        "usr/lib/tmpfiles.d/systemd.conf",
        Entry::file(
            "# comment\n\
             d /etc/credstore 0700 root root\n\
             d$ /var/lib/systemd/network 0755 zabbix zabbix -\n\
             z /var/log/journal 2755 root systemd-journal - -\n\
             z /var/log/journal/%m 2755 root systemd-journal - -\n\
             Z /var/lib/zabbix 0750 zabbix zabbix -\n\
             a+ /var/log/journal - - - - group:adm:r-x\n\
             L+ /etc/default/locale - - - - ../locale.conf\n\
             L /etc/vconsole.conf - - - - default/keyboard\n\
             d /run/zabbix 0755 zabbix zabbix -\n\
             D /tmp/.X11-unix 1777 root root 10d\n\
             d- /root :0700 root :root -\n\
             f^ /etc/hosts - - - - network.hosts\n\
             r! /forcefsck\n\
             d /var/lib/private 0700 root root -\n\
             d /var/lib/nouser 0750 nobody root -\n",
            0o644,
        ),
    )
    .unwrap();
    // An administrator's file of the same name replaces the package's.
    t.insert(
        "usr/lib/tmpfiles.d/zabbix.conf",
        Entry::file("d /var/log/zabbix 0755 root root -\n", 0o644),
    )
    .unwrap();
    t.insert(
        "etc/tmpfiles.d/zabbix.conf",
        Entry::file("d /var/log/zabbix-agent 0750 zabbix zabbix -\n", 0o644),
    )
    .unwrap();
    t
}

fn words(s: &str) -> Vec<String> {
    s.split(' ').map(str::to_string).collect()
}

#[test]
fn create_does_what_the_named_files_say_of_persistent_paths() {
    let mut t = image();
    assert!(run(&mut t, &words("--create systemd.conf zabbix.conf")).unwrap());
    let meta = |p: &str| {
        let e = t.get(p).unwrap_or_else(|| panic!("no /{p}"));
        (e.mode, e.uid, e.gid)
    };
    assert_eq!(meta("etc/credstore"), (0o700, 0, 0));
    assert_eq!(meta("var/lib/systemd/network"), (0o755, 105, 107));
    assert_eq!(meta("var/log/journal"), (0o2755, 0, 101));
    assert_eq!(meta("var/lib/private"), (0o700, 0, 0));
    // `Z`: the directory and all below it.
    for p in ["var/lib/zabbix", "var/lib/zabbix/db", "var/lib/zabbix/db/x"] {
        assert_eq!(meta(p), (0o750, 105, 107), "/{p}");
    }
    // `:0700`: the mode of one made here (provision.conf's /root).
    assert_eq!(meta("root"), (0o700, 0, 0));
    assert_eq!(meta("var/log/zabbix-agent"), (0o750, 105, 107));
    assert!(t.get("var/log/zabbix").is_none());
    assert_eq!(
        t.get("etc/default/locale").map(|e| e.kind.clone()),
        Some(Kind::Symlink("../locale.conf".into()))
    );
    // `L` without `+` leaves what is there.
    assert!(matches!(
        t.get("etc/vconsole.conf").map(|e| &e.kind),
        Some(Kind::File(_))
    ));
    // Runtime file systems, boot-only and credential lines, specifiers, ACLs, and an
    // account the image lacks: nothing.
    for p in ["run/zabbix", "tmp/.X11-unix", "etc/hosts", "var/lib/nouser"] {
        assert!(t.get(p).is_none(), "/{p}");
    }
}

#[test]
fn other_invocations_are_not_done() {
    let mut t = image();
    for args in [
        "--create",
        "--remove systemd.conf",
        "--create --prefix=/var systemd.conf",
        "--create missing.conf",
        "--create ../x.conf",
    ] {
        assert!(!run(&mut t, &words(args)).unwrap(), "{args}");
    }
    assert_eq!(t.get("etc/credstore").unwrap().mode, 0o755);
    assert!(run(&mut t, &words("--root= --create systemd.conf")).unwrap());
}
