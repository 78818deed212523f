//! The file commands against a small image: what each does, and what is left alone.
use super::*;

fn words(s: &str) -> Vec<String> {
    s.split(' ').map(str::to_string).collect()
}

fn image() -> Tree {
    let mut t = Tree::new();
    t.insert(
        "etc/passwd",
        Entry::file(
            "root:x:0:0::/root:/bin/sh\nntpsec:x:105:107::/:/usr/sbin/nologin\n",
            0o644,
        ),
    )
    .unwrap();
    t.insert(
        "etc/group",
        Entry::file("root:x:0:\nadm:x:4:\nbind:x:106:\nntpsec:x:107:\n", 0o644),
    )
    .unwrap();
    t.mkdir_p("var/lib").unwrap();
    t.mkdir_p("var/log/apache2").unwrap();
    t.mkdir_p("etc/systemd/system").unwrap();
    t.mkdir_p("var/www/html").unwrap();
    t.insert(
        "usr/share/apache2/default-site/index.html",
        Entry::file("<html>", 0o640),
    )
    .unwrap();
    t.insert("usr/bin/tool", Entry::file("elf", 0o4755))
        .unwrap();
    t.insert("lib/modules/6.1/.fresh-install", Entry::file("", 0o644))
        .unwrap();
    t
}

fn meta(t: &Tree, p: &str) -> (u32, u32, u32) {
    let e = t.get(p).unwrap_or_else(|| panic!("no /{p}"));
    (e.mode, e.uid, e.gid)
}

#[test]
fn file_commands_do_to_the_tree_what_they_do_on_a_machine() {
    let mut t = image();
    let cmds: Vec<Vec<String>> = [
        "mkdir -p /var/lib/bind",
        "chown root:bind /var/lib/bind",
        "chmod 775 /var/lib/bind",
        "mkdir -pZ /etc/ssh",
        "touch /var/log/apache2/error.log /var/log/apache2/access.log",
        "chown root:adm /var/log/apache2/error.log",
        "chmod 0640 /var/log/apache2/error.log",
        "install -o ntpsec -g ntpsec -d /var/lib/ntpsec",
        "mkdir -p /etc/apparmor.d/local",
        "install --mode 644 /dev/null /etc/apparmor.d/local/x",
        "ln -sf /dev/null /etc/systemd/system/ntpsec.timer",
        "cp /usr/share/apache2/default-site/index.html /var/www/html/index.html",
        "chgrp adm /usr/bin/tool",
        "rm -f /lib/modules/6.1/.fresh-install",
        "mkdir -p /var/lib/initramfs-tools/old",
        "touch /var/lib/initramfs-tools/old/6.1",
        "rm -rf /var/lib/initramfs-tools",
        "touch /etc/x.dpkg-remove",
        "rm -v -f /etc/x.dpkg-remove /etc/not-there",
        "mkdir -p /var/log/zabbix-agent/old",
        "touch /var/log/zabbix-agent/old/a.log",
        "ln -s /etc/passwd /var/log/zabbix-agent/link",
        "chown ntpsec:ntpsec /var/log/zabbix-agent -R",
        "chmod -R 750 /var/log/zabbix-agent",
    ]
    .iter()
    .map(|c| words(c))
    .collect();
    apply(&mut t, "test", &cmds).unwrap();
    assert_eq!(meta(&t, "var/lib/bind"), (0o775, 0, 106));
    assert_eq!(meta(&t, "etc/ssh"), (0o755, 0, 0));
    assert_eq!(meta(&t, "var/log/apache2/error.log"), (0o640, 0, 4));
    assert_eq!(meta(&t, "var/log/apache2/access.log"), (0o644, 0, 0));
    assert_eq!(meta(&t, "var/lib/ntpsec"), (0o755, 105, 107));
    assert_eq!(meta(&t, "etc/apparmor.d/local/x"), (0o644, 0, 0));
    assert_eq!(
        t.get("etc/systemd/system/ntpsec.timer").unwrap().kind,
        Kind::Symlink("/dev/null".into())
    );
    assert_eq!(t.read("var/www/html/index.html").unwrap(), b"<html>");
    assert_eq!(meta(&t, "var/www/html/index.html"), (0o640, 0, 0));
    // chgrp takes setuid off, as on a machine.
    assert_eq!(meta(&t, "usr/bin/tool"), (0o755, 0, 4));
    assert!(t.get("lib/modules/6.1/.fresh-install").is_none());
    assert!(t.get("var/lib/initramfs-tools").is_none());
    assert!(t.get("var/lib/initramfs-tools/old/6.1").is_none());
    assert!(t.get("etc/x.dpkg-remove").is_none());
    assert!(t.get("var/lib").is_some());
    // -R, also after the operands as GNU's tools read it; links below are not followed.
    assert_eq!(meta(&t, "var/log/zabbix-agent"), (0o750, 105, 107));
    assert_eq!(meta(&t, "var/log/zabbix-agent/old"), (0o750, 105, 107));
    assert_eq!(
        meta(&t, "var/log/zabbix-agent/old/a.log"),
        (0o750, 105, 107)
    );
    assert_eq!(t.get("var/log/zabbix-agent/link").unwrap().uid, 105);
    assert_eq!(t.get("var/log/zabbix-agent/link").unwrap().mode, 0o777);
    assert_eq!(meta(&t, "etc/passwd"), (0o644, 0, 0));
}

#[test]
fn relative_paths_act_where_the_script_last_went() {
    let mut t = image();
    let cmds: Vec<Vec<String>> = [
        "cd /var",
        "mkdir -p -Z spool/postfix",
        "cd /var/spool/postfix",
        "mkdir private",
        "chown ntpsec:root private",
        "chmod 700 private",
        "touch private/x",
        // Where a `cd` led that may not have run: nothing relative is done.
        "cd",
        "mkdir lost",
        "cd /",
        "mkdir srv",
    ]
    .iter()
    .map(|c| words(c))
    .collect();
    apply(&mut t, "test", &cmds).unwrap();
    assert_eq!(meta(&t, "var/spool/postfix/private"), (0o700, 105, 0));
    assert!(t.get("var/spool/postfix/private/x").is_some());
    assert!(t.get("lost").is_none() && t.get("var/spool/postfix/lost").is_none());
    assert_eq!(meta(&t, "srv"), (0o755, 0, 0));
    // Without a cd, a script runs in /, as dpkg starts it.
    let mut t = image();
    apply(&mut t, "test", &[words("mkdir opt")]).unwrap();
    assert!(t.get("opt").is_some());
}

#[test]
fn written_text_makes_a_file_or_replaces_or_extends_one() {
    let mut t = image();
    let cmds: Vec<Vec<String>> = vec![
        vec![
            WRITE.into(),
            "/etc/aliases".into(),
            "postmaster: root\n".into(),
        ],
        vec![APPEND.into(), "/etc/aliases".into(), "root: ops\n".into()],
        vec![
            WRITE.into(),
            "/etc/passwd".into(),
            "root:x:0:0::/root:/bin/sh\n".into(),
        ],
        vec![WRITE.into(), "/dev/null".into(), "gone\n".into()],
        vec!["cd".into(), "/var/www".into()],
        vec![WRITE.into(), "index.html".into(), "<p>\n".into()],
    ];
    t.get_mut("etc/passwd").unwrap().mode = 0o600;
    apply(&mut t, "test", &cmds).unwrap();
    assert_eq!(
        t.read("etc/aliases").unwrap(),
        b"postmaster: root\nroot: ops\n"
    );
    assert_eq!(meta(&t, "etc/aliases"), (0o644, 0, 0));
    // Replaced, its mode kept.
    assert_eq!(
        t.read("etc/passwd").unwrap(),
        b"root:x:0:0::/root:/bin/sh\n"
    );
    assert_eq!(meta(&t, "etc/passwd").0, 0o600);
    assert_eq!(t.read("var/www/index.html").unwrap(), b"<p>\n");
    // Into a directory that is not there: left alone.
    let before = format!("{:?}", t.iter().collect::<Vec<_>>());
    apply(
        &mut t,
        "test",
        &[vec![WRITE.into(), "/etc/none/x".into(), "x".into()]],
    )
    .unwrap();
    assert_eq!(format!("{:?}", t.iter().collect::<Vec<_>>()), before);
}

#[test]
fn what_these_do_not_read_is_left_alone() {
    let mut t = image();
    let before = format!("{:?}", t.iter().collect::<Vec<_>>());
    let cmds: Vec<Vec<String>> = [
        // Relative to a directory not known, symbolic modes, unknown accounts, the
        // machine's runtime directories, a directory for rm, a parent that is missing.
        "cd",
        "chmod 700 active",
        "chown -R nobody-here /var/www",
        "chmod u+x /usr/bin/tool",
        "chown nobody-here /var/www",
        "mkdir /run/x",
        "touch /dev/x",
        "rm -f /var/www",
        "rm -rf /var",
        "rm -r /var/www /usr",
        "mkdir /var/none/x",
        "touch /var/none/file",
        "ln /usr/bin/tool /usr/bin/hard",
        "cp -r /usr/share /var/www",
        "install -m 0644 /usr/share/none /etc/none",
    ]
    .iter()
    .map(|c| words(c))
    .collect();
    apply(&mut t, "test", &cmds).unwrap();
    assert_eq!(format!("{:?}", t.iter().collect::<Vec<_>>()), before);
}

#[test]
fn symbolic_modes_change_the_bits_they_name() {
    let f = |m: &str, mode: u32, dir: bool| super::symbolic(m).map(|f| f(mode, dir));
    // bind9's postinst on its directories and key.
    assert_eq!(f("g+s", 0o755, true), Some(0o2755));
    assert_eq!(f("g+rwx", 0o755, true), Some(0o775));
    assert_eq!(f("g+r", 0o600, false), Some(0o640));
    assert_eq!(f("u=rw,go=r", 0o777, false), Some(0o644));
    assert_eq!(f("o-rwx", 0o755, false), Some(0o750));
    assert_eq!(f("a+X", 0o644, true), Some(0o755));
    assert_eq!(f("a+X", 0o644, false), Some(0o644));
    assert_eq!(f("a+X", 0o744, false), Some(0o755));
    // No ugoa: the umask (022) keeps write from group and others.
    assert_eq!(f("+w", 0o444, false), Some(0o644));
    assert_eq!(f("+x", 0o644, false), Some(0o755));
    assert_eq!(f("+t", 0o777, true), Some(0o1777));
    // `=` on a file clears the class's set-id bit; a directory keeps it.
    assert_eq!(f("g=rx", 0o2770, false), Some(0o750));
    assert_eq!(f("g=rx", 0o2770, true), Some(0o2750));
    for bad in ["g=u", "g", "u+q", "", "7z"] {
        assert!(super::symbolic(bad).is_none(), "{bad}");
    }
}

/// New files and directories take the script's umask (022 from dpkg, or what `umask` set):
/// libpam-modules makes /etc/security/opasswd under 066. A umask not understood makes the
/// commands after it not done; what goes under /run (a tmpfs at boot) is passed over, and
/// an empty directory goes with `rmdir` (base-files' /var/run before its link).
#[test]
fn umask_run_and_rmdir() {
    let mut t = image();
    t.mkdir_p("var/run").unwrap();
    let cmds: Vec<Vec<String>> = [
        "touch /var/lib/plain",
        "umask 066",
        "touch /var/lib/secret",
        "mkdir /var/lib/private-dir",
        "umask 022",
        "mkdir /run/lock",
        "chmod 1777 /run/lock",
        "rmdir /var/run",
        "ln -s /run /var/run",
        "rmdir /var/lib",
        "umask u=rwx",
        "touch /var/lib/unknown-mode",
    ]
    .iter()
    .map(|c| words(c))
    .collect();
    apply(&mut t, "p", &cmds).unwrap();
    assert_eq!(meta(&t, "var/lib/plain").0, 0o644);
    assert_eq!(meta(&t, "var/lib/secret").0, 0o600);
    assert_eq!(meta(&t, "var/lib/private-dir").0, 0o711);
    assert!(t.get("run/lock").is_none());
    assert_eq!(
        t.get("var/run").map(|e| e.kind.clone()),
        Some(Kind::Symlink("/run".into()))
    );
    // Not empty: left.
    assert!(t.get("var/lib").is_some());
    assert!(t.get("var/lib/unknown-mode").is_none());
}

#[test]
fn relative_links_point_from_the_links_directory() {
    let mut t = image();
    t.mkdir_p("etc/default").unwrap();
    t.mkdir_p("usr/lib/real").unwrap();
    // A directory reached through a link: resolved before the path is made, as `ln -r` does.
    t.insert("etc/alias", Entry::symlink("../usr/lib/real"))
        .unwrap();
    let cmds: Vec<Vec<String>> = [
        "ln -sfr /etc/locale.conf /etc/default/locale",
        "ln -s --relative /usr/bin/tool /etc/alias/tool",
        "ln -sr /etc/default /etc/default-again",
        "cd /var/lib",
        "ln -sr ../log/apache2 apache-logs",
    ]
    .iter()
    .map(|c| words(c))
    .collect();
    apply(&mut t, "p", &cmds).unwrap();
    let link = |p: &str| match t.get(p).map(|e| &e.kind) {
        Some(Kind::Symlink(s)) => s.clone(),
        other => panic!("/{p}: {other:?}"),
    };
    // What GNU ln -r makes of the same commands in a directory of the same shape.
    assert_eq!(link("etc/default/locale"), "../locale.conf");
    assert_eq!(link("usr/lib/real/tool"), "../../bin/tool");
    assert_eq!(link("etc/default-again"), "default");
    assert_eq!(link("var/lib/apache-logs"), "../log/apache2");
}

#[test]
fn relative_paths_are_what_gnu_ln_makes() {
    for (from, to, want) in [
        ("etc/default", "etc/locale.conf", "../locale.conf"),
        ("etc", "etc/x", "x"),
        ("", "usr/bin/tool", "usr/bin/tool"),
        ("a/b/c", "", "../../.."),
        ("a", "a", "."),
    ] {
        assert_eq!(link::relative_path(from, to), want, "{from} -> {to}");
    }
}
