//! The defaults of the essential packages' maintainer scripts, checked against what those
//! scripts make (debianutils' own `update-shells`, run on the build host, is the oracle for
//! `/etc/shells`).

use super::*;

fn file(t: &mut Tree, path: &str, text: &str) {
    t.insert(path, Entry::file(text, 0o644)).unwrap();
}

fn text(t: &Tree, path: &str) -> String {
    String::from_utf8(t.read(path).unwrap_or_else(|| panic!("no /{path}"))).unwrap()
}

fn link(t: &Tree, path: &str) -> String {
    match &t.get(path).unwrap_or_else(|| panic!("no /{path}")).kind {
        Kind::Symlink(s) => s.clone(),
        k => panic!("/{path} is {k:?}, not a link"),
    }
}

fn merged_usr() -> Tree {
    let mut t = Tree::new();
    t.mkdir_p("usr/bin").unwrap();
    t.insert("bin", Entry::symlink("usr/bin")).unwrap();
    t
}

#[test]
fn base_files_defaults_are_copied_and_var_run_becomes_a_link_into_run() {
    let mut t = merged_usr();
    file(
        &mut t,
        "usr/share/base-files/profile",
        "# profile\nPATH=/usr/bin\n",
    );
    file(
        &mut t,
        "usr/share/base-files/dot.profile",
        "# root profile\n",
    );
    file(&mut t, "usr/share/base-files/dot.bashrc", "# root bashrc\n");
    file(&mut t, "usr/share/base-files/motd", "packaged motd\n");
    file(
        &mut t,
        "usr/share/readline/inputrc",
        "set bell-style none\n",
    );
    file(&mut t, "etc/services", "ssh 22/tcp\n");
    file(&mut t, "etc/protocols", "ip 0 IP\n");
    t.insert("usr/bin/kmod", Entry::file("", 0o755)).unwrap();
    t.insert(
        "usr/lib/x86_64-linux-gnu/libwrap.so.0",
        Entry::file("", 0o644),
    )
    .unwrap();
    t.insert("usr/sbin/update-ca-certificates", Entry::file("", 0o755))
        .unwrap();
    file(&mut t, "etc/motd", "the profile's own motd\n");
    file(&mut t, "etc/group", "root:x:0:\nmail:x:8:\n");
    file(&mut t, "etc/dpkg/origins/debian", "Vendor: Debian\n");
    t.mkdir_p("var/lock").unwrap();
    file(&mut t, "var/run/pkg/left.pid", "1\n");
    apply(&mut t, &[]).unwrap();

    assert_eq!(text(&t, "etc/profile"), "# profile\nPATH=/usr/bin\n");
    assert_eq!(text(&t, "root/.profile"), "# root profile\n");
    assert_eq!(text(&t, "root/.bashrc"), "# root bashrc\n");
    assert_eq!(text(&t, "etc/inputrc"), "set bell-style none\n");
    assert_eq!(
        text(&t, "etc/networks"),
        "default\t\t0.0.0.0\nloopback\t127.0.0.0\nlink-local\t169.254.0.0\n\n"
    );
    assert_eq!(
        text(&t, "etc/motd"),
        "the profile's own motd\n",
        "an existing file stays"
    );
    assert_eq!(link(&t, "var/run"), "/run");
    assert_eq!(link(&t, "var/lock"), "/run/lock");
    assert_eq!(
        text(&t, "run/pkg/left.pid"),
        "1\n",
        "what was below /var/run moved"
    );
    assert!(t.get("var/run/pkg").is_none() && t.get("run/lock").is_some());
    let mail = t.get("var/mail").unwrap();
    assert_eq!((mail.mode, mail.gid), (0o2775, 8));
    assert_eq!(link(&t, "var/spool/mail"), "../mail");
    for d in [
        "usr/local/bin",
        "usr/local/lib",
        "usr/local/share/man",
        "etc/opt",
        "media",
    ] {
        assert_eq!(t.get(d).map(|e| &e.kind), Some(&Kind::Dir), "{d}");
    }
    assert_eq!(link(&t, "usr/local/man"), "share/man");
    assert!(text(&t, "etc/modules").starts_with("# /etc/modules: "));
    assert!(text(&t, "etc/hosts.deny").starts_with("# /etc/hosts.deny: "));
    assert!(text(&t, "etc/hosts.allow").starts_with("# /etc/hosts.allow: "));
    let own_cas = t.get("usr/local/share/ca-certificates").unwrap();
    assert_eq!((&own_cas.kind, own_cas.mode), (&Kind::Dir, 0o755));
    assert_eq!(link(&t, "etc/dpkg/origins/default"), "debian");

    // Without base-files in the tree (a busybox image), none of it.
    let mut t = merged_usr();
    t.mkdir_p("var/run").unwrap();
    apply(&mut t, &[]).unwrap();
    assert!(t.get("etc/profile").is_none() && t.get("usr/local").is_none());
    assert_eq!(t.get("var/run").map(|e| &e.kind), Some(&Kind::Dir));
}

const NSSWITCH: &str = "# /etc/nsswitch.conf\n\npasswd:         files\ngroup:          files\n\
    shadow:         files\ngshadow:        files\n\nhosts:          files dns\n\
    networks:       files\n\nprotocols:      db files\nnetgroup:       nis\n";

fn nss(script_lines: &[&str]) -> Vec<NssEntry> {
    crate::packages::nss::from_script(&script_lines.join("\n"))
}

#[test]
fn nsswitch_conf_gets_the_services_the_nss_packages_add() {
    let mut t = Tree::new();
    file(&mut t, "usr/share/libc-bin/nsswitch.conf", NSSWITCH);
    let entries = nss(&[
        "# Installing passwd/systemd from libnss-systemd in position last",
        "# Installing group/systemd from libnss-systemd in position last",
        "# Installing shadow/systemd from libnss-systemd in position last",
        "# Installing gshadow/systemd from libnss-systemd in position last",
        "# Installing hosts/myhostname from libnss-myhostname in position after=files",
        "# Installing hosts/resolve[!UNAVAIL=return] from libnss-resolve in position before=dns",
        // Already there, or nothing to place it by: no change.
        "# Installing hosts/dns from x in position first",
        "# Installing networks/y from x in position before=dns",
    ]);
    apply(&mut t, &entries).unwrap();
    // What Debian's own postinsts make of the same file (bookworm, these three packages).
    let want =
        "# /etc/nsswitch.conf\n\npasswd:         files systemd\ngroup:          files systemd\n\
        shadow:         files systemd\ngshadow:        files systemd\n\n\
        hosts:          files myhostname resolve [!UNAVAIL=return] dns\n\
        networks:       files\n\nprotocols:      db files\nnetgroup:       nis\n";
    assert_eq!(text(&t, "etc/nsswitch.conf"), want);

    // A file already there (libc-bin's postinst copied it, or a package ships one) is not
    // replaced by the default; the services are added to it, as the NSS packages' postinsts
    // edit whichever file there is.
    let mut t = Tree::new();
    file(&mut t, "usr/share/libc-bin/nsswitch.conf", NSSWITCH);
    file(&mut t, "etc/nsswitch.conf", "hosts: files\n");
    apply(&mut t, &entries).unwrap();
    assert_eq!(
        text(&t, "etc/nsswitch.conf"),
        "hosts: dns files myhostname\n"
    );
}

#[test]
fn nss_services_go_first_and_keep_actions_and_comments() {
    let e = |line: &str| nss(&[line]).remove(0);
    let first = e("# Installing hosts/mdns4_minimal[NOTFOUND=return] from m in position first");
    assert_eq!(
        add_service("hosts:\tfiles [SUCCESS=return] dns # keep", &first).unwrap(),
        "hosts:\tmdns4_minimal [NOTFOUND=return] files [SUCCESS=return] dns # keep"
    );
    let after = e("# Installing hosts/x from m in position after=files");
    assert_eq!(
        add_service("hosts: files [SUCCESS=return] dns", &after).unwrap(),
        "hosts: files [SUCCESS=return] x dns"
    );
    let last = e("# Installing hosts/x from m in position last");
    assert_eq!(
        add_service("hostsx: files", &last),
        None,
        "another database"
    );
    assert_eq!(add_service("hosts: files x", &last), None, "already listed");
}

const TEMPLATE: &str = "# /etc/shells: valid login shells\n/bin/sh\n";
const PACKAGED: &[(&str, &str)] = &[
    ("bash", "/bin/bash\n/bin/rbash\n"),
    ("dash", "/bin/dash\n"),
    // As zsh lists itself: both paths, so the real path comes twice.
    ("zsh", "/bin/zsh\n/usr/bin/zsh\n"),
    (
        "odd",
        "# a comment\n\n/usr/local/bin/fish # trailing comment\n",
    ),
];

#[test]
fn etc_shells_is_what_update_shells_writes() {
    let mut t = merged_usr();
    file(&mut t, "usr/share/debianutils/shells", TEMPLATE);
    // The image's update-shells is the host's: which one decides how a shell listed twice
    // is taken.
    file(
        &mut t,
        "usr/sbin/update-shells",
        &std::fs::read_to_string("/usr/sbin/update-shells").unwrap(),
    );
    for (name, list) in PACKAGED {
        file(
            &mut t,
            &format!("usr/share/debianutils/shells.d/{name}"),
            list,
        );
    }
    apply(&mut t, &[]).unwrap();

    // The same files on disk, and debianutils' own script (Essential on every Debian host).
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::create_dir_all(r.join("usr/bin")).unwrap();
    std::fs::create_dir_all(r.join("etc")).unwrap();
    std::fs::create_dir_all(r.join("var/lib")).unwrap();
    std::os::unix::fs::symlink("usr/bin", r.join("bin")).unwrap();
    std::fs::create_dir_all(r.join("usr/share/debianutils/shells.d")).unwrap();
    std::fs::write(r.join("usr/share/debianutils/shells"), TEMPLATE).unwrap();
    for (name, list) in PACKAGED {
        std::fs::write(r.join("usr/share/debianutils/shells.d").join(name), list).unwrap();
    }
    let out = std::process::Command::new("update-shells")
        .arg("--root")
        .arg(r)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .expect("running update-shells (debianutils)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |p: &str| std::fs::read_to_string(r.join(p)).unwrap();
    assert_eq!(text(&t, "etc/shells"), read("etc/shells"));
    assert_eq!(
        text(&t, "var/lib/shells.state"),
        read("var/lib/shells.state")
    );
    assert!(text(&t, "etc/shells").contains("\n/usr/bin/bash\n"));
}

/// Debian 13's update-shells (debianutils 5.23) takes a shell listed twice once; its shells.d
/// lists name both paths of each shell.
#[test]
fn debian_13_update_shells_lists_each_shell_once() {
    let mut t = merged_usr();
    file(&mut t, "usr/share/debianutils/shells", TEMPLATE);
    file(
        &mut t,
        "usr/sbin/update-shells",
        "\t\tif ! hashset_contains \"$PKG_SHELLS\" \"$line\"; then\n",
    );
    file(
        &mut t,
        "usr/share/debianutils/shells.d/bash",
        "/bin/bash\n/usr/bin/bash\n",
    );
    apply(&mut t, &[]).unwrap();
    assert_eq!(
        text(&t, "etc/shells"),
        "# /etc/shells: valid login shells\n/bin/sh\n/usr/bin/sh\n/bin/bash\n/usr/bin/bash\n"
    );
    assert_eq!(
        text(&t, "var/lib/shells.state"),
        "/bin/sh\n/usr/bin/sh\n/bin/bash\n/usr/bin/bash\n"
    );
}

#[test]
fn pam_and_tzdata_defaults() {
    let mut t = Tree::new();
    file(&mut t, "etc/security/pam_env.conf", "");
    file(&mut t, "usr/share/zoneinfo/Etc/UTC", "TZif");
    apply(&mut t, &[]).unwrap();
    assert_eq!(t.get("etc/environment").unwrap().mode, 0o644);
    assert_eq!(t.get("etc/security/opasswd").unwrap().mode, 0o600);
    assert_eq!(link(&t, "etc/localtime"), "/usr/share/zoneinfo/Etc/UTC");
    assert_eq!(text(&t, "etc/timezone"), "Etc/UTC\n");

    let mut t = Tree::new();
    apply(&mut t, &[]).unwrap();
    assert!(t.get("etc/environment").is_none() && t.get("etc/localtime").is_none());
}

#[test]
fn people_get_subordinate_ids_as_useradd_gives_them() {
    let mut t = Tree::new();
    file(
        &mut t,
        "etc/login.defs",
        "# login.defs\nUID_MIN\t\t\t 1000\nUID_MAX\t\t\t60000\nSUB_UID_MIN\t\t   100000\nSUB_UID_COUNT\t\t    65536\nSUB_GID_COUNT 0\n",
    );
    file(
        &mut t,
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\nsshd:x:101:65534::/run/sshd:/usr/sbin/nologin\n\
         ops:x:1000:1000:Operations:/home/ops:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
         dev:x:1001:1001::/home/dev:/bin/sh\n",
    );
    apply(&mut t, &[]).unwrap();
    assert_eq!(
        text(&t, "etc/subuid"),
        "ops:100000:65536\ndev:165536:65536\n"
    );
    assert_eq!(text(&t, "etc/subgid"), "", "SUB_GID_COUNT 0 gives none");
    assert_eq!(t.get("etc/subuid").unwrap().mode, 0o644);
}

#[test]
fn each_apparmor_profile_gets_the_local_include_it_names() {
    let mut t = merged_usr();
    file(
        &mut t,
        "etc/apparmor.d/usr.sbin.chronyd",
        "profile chronyd {\n  # Site-specific additions.\n  #include <local/usr.sbin.chronyd>\n}\n",
    );
    file(
        &mut t,
        "etc/apparmor.d/nginx",
        "abi <abi/3.0>,\ninclude <tunables/global>\nprofile nginx {\n  include if exists <local/nginx>\n}\n",
    );
    // The administrator's own additions stay; names that leave the directory are not made.
    file(&mut t, "etc/apparmor.d/local/kept", "deny /x r,\n");
    file(
        &mut t,
        "etc/apparmor.d/other",
        "#include <local/kept>\n#include <local/../escape>\n#include <abstractions/base>\n",
    );
    apply(&mut t, &[]).unwrap();
    for name in ["usr.sbin.chronyd", "nginx"] {
        let e = t.get(&format!("etc/apparmor.d/local/{name}")).unwrap();
        assert_eq!(e.mode, 0o644);
        assert_eq!(text(&t, &format!("etc/apparmor.d/local/{name}")), "");
    }
    assert_eq!(text(&t, "etc/apparmor.d/local/kept"), "deny /x r,\n");
    assert!(!t.exists("etc/apparmor.d/escape") && !t.exists("etc/apparmor.d/local/base"));
}
