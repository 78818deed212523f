//! The users and groups step on hand-made trees.

use crate::tree::{Entry, Tree};

/// The fields of `name`'s line in a passwd- or group-like text.
fn entry(text: &str, name: &str) -> Vec<String> {
    let l = text.lines().find(|l| l.starts_with(&format!("{name}:")));
    l.unwrap_or_else(|| panic!("no {name} in {text}"))
        .split(':')
        .map(String::from)
        .collect()
}

#[test]
fn udev_images_get_the_groups_its_postinst_adds() {
    let profile = crate::config::profile_from_str(
        std::path::Path::new("p.toml"),
        "[image]\nname = \"p\"\nversion = \"1.0.0\"\n[distribution]\nsuite = \"bookworm\"\n",
    )
    .unwrap();
    let groups = |udev: bool| {
        let mut t = Tree::new();
        if udev {
            t.insert(
                "usr/lib/udev/rules.d/50-udev-default.rules",
                Entry::file("KERNEL==\"kvm\", GROUP=\"kvm\", MODE=\"0660\"\n", 0o644),
            )
            .unwrap();
        }
        super::apply(&mut t, &profile, &[], 0).unwrap();
        let g = String::from_utf8(t.read("etc/group").unwrap()).unwrap();
        g.lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .filter(|f| super::UDEV_POSTINST_GROUPS.contains(&f[0]))
            .map(|f| (f[0].to_string(), f[2].parse::<u32>().unwrap()))
            .collect::<Vec<_>>()
    };
    let with = groups(true);
    assert_eq!(with.len(), 4, "{with:?}");
    assert!(
        with.iter().all(|(_, gid)| (100..1000).contains(gid)),
        "{with:?}"
    );
    assert!(groups(false).is_empty());
}

#[test]
fn system_accounts_are_made_as_adduser_system_makes_them() {
    let profile = crate::config::profile_from_str(
        std::path::Path::new("p.toml"),
        "[image]\nname = \"p\"\nversion = \"1.0.0\"\n[distribution]\nsuite = \"bookworm\"\n[[users]]\nname = \"_chrony\"\nsystem = true\n[[users]]\nname = \"ops\"\n[[groups]]\nname = \"_sock\"\nsystem = true\n",
    )
    .unwrap();
    let mut t = Tree::new();
    super::apply(&mut t, &profile, &[], 0).unwrap();
    let passwd = String::from_utf8(t.read("etc/passwd").unwrap()).unwrap();
    let group = String::from_utf8(t.read("etc/group").unwrap()).unwrap();
    let shadow = String::from_utf8(t.read("etc/shadow").unwrap()).unwrap();
    let chrony = entry(&passwd, "_chrony");
    let uid: u32 = chrony[2].parse().unwrap();
    assert!((100..1000).contains(&uid), "{passwd}");
    assert_eq!(
        chrony[3], chrony[2],
        "its own group shares the number: {passwd}"
    );
    assert_eq!(
        (chrony[5].as_str(), chrony[6].as_str()),
        ("/nonexistent", "/usr/sbin/nologin")
    );
    assert_eq!(entry(&shadow, "_chrony")[1], "*");
    assert!(t.get("nonexistent").is_none());
    // A person: from 1000, a home, the default shell.
    let ops = entry(&passwd, "ops");
    assert_eq!(
        (ops[2].as_str(), ops[5].as_str(), ops[6].as_str()),
        ("1000", "/home/ops", "/bin/sh")
    );
    let sock: u32 = entry(&group, "_sock")[2].parse().unwrap();
    assert!((100..1000).contains(&sock), "{group}");
}

#[test]
fn accounts_maintainer_scripts_make_are_made_after_the_profiles() {
    use crate::packages::accounts::from_script;
    let profile = crate::config::profile_from_str(
        std::path::Path::new("p.toml"),
        "[image]\nname = \"p\"\nversion = \"1.0.0\"\n[distribution]\nsuite = \"bookworm\"\n[[users]]\nname = \"sshd\"\nuid = 101\n",
    )
    .unwrap();
    let accounts = from_script(
        "adduser --quiet --system --no-create-home --home /run/sshd --shell /usr/sbin/nologin sshd\n\
         adduser --system --group --home /var/lib/chrony _chrony\n\
         addgroup --system _ssh\n\
         adduser --system --ingroup daemon --gecos 'X daemon' xd\n",
    );
    let mut t = Tree::new();
    super::apply(&mut t, &profile, &accounts, 0).unwrap();
    let passwd = String::from_utf8(t.read("etc/passwd").unwrap()).unwrap();
    let group = String::from_utf8(t.read("etc/group").unwrap()).unwrap();
    // The profile's sshd stands; the script's is not made again.
    assert_eq!(entry(&passwd, "sshd")[2], "101");
    assert_eq!(
        passwd.matches("\nsshd:").count() + usize::from(passwd.starts_with("sshd:")),
        1
    );
    let chrony = entry(&passwd, "_chrony");
    let uid: u32 = chrony[2].parse().unwrap();
    assert!((100..1000).contains(&uid), "{passwd}");
    assert_eq!(
        entry(&group, "_chrony")[2],
        chrony[3],
        "its own group: {group}"
    );
    assert_eq!(chrony[5], "/var/lib/chrony");
    assert_eq!(chrony[6], "/usr/sbin/nologin");
    let ssh: u32 = entry(&group, "_ssh")[2].parse().unwrap();
    assert!((100..1000).contains(&ssh), "{group}");
    assert!(
        passwd.lines().all(|l| !l.starts_with("_ssh:")),
        "a group only"
    );
    let xd = entry(&passwd, "xd");
    assert_eq!(entry(&group, "daemon")[2], xd[3]);
    assert_eq!(xd[4], "X daemon");
    assert_eq!(xd[5], "/nonexistent");
}

#[test]
fn ids_the_image_already_gives_are_not_given_twice() {
    let build = |accounts: &str| {
        let profile = crate::config::profile_from_str(
            std::path::Path::new("p.toml"),
            &format!("[image]\nname = \"p\"\nversion = \"1.0.0\"\n[distribution]\nsuite = \"bookworm\"\n{accounts}"),
        )
        .unwrap();
        let mut t = Tree::new();
        for (f, text) in [
            ("passwd.master", "root:*:0:0:root:/root:/bin/bash\nnobody:*:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"),
            ("group.master", "root:*:0:\nusers:*:100:\nnogroup:*:65534:\n"),
        ] {
            t.insert(&format!("usr/share/base-passwd/{f}"), Entry::file(text, 0o644))
                .unwrap();
        }
        super::apply(&mut t, &profile, &[], 0)
            .map(|()| String::from_utf8(t.read("etc/group").unwrap()).unwrap())
            .map_err(|e| {
                // A clash with the image's accounts is the profile's to change: bad input.
                assert_eq!(crate::cli::exit_code(&e), 2, "{e:#}");
                e.to_string()
            })
    };
    let e = build("[[users]]\nname = \"a\"\nuid = 65534\n").unwrap_err();
    assert!(
        e.contains("uid 65534 is taken in the image by `nobody`"),
        "{e}"
    );
    let e = build("[[groups]]\nname = \"g\"\ngid = 100\n").unwrap_err();
    assert!(
        e.contains("gid 100 is taken in the image by group `users`"),
        "{e}"
    );
    let e = build("[[groups]]\nname = \"users\"\ngid = 2000\n").unwrap_err();
    assert!(
        e.contains("already exists in the image with gid 100"),
        "{e}"
    );
    // Naming the image's own group, or giving its own number, is no conflict.
    let g =
        build("[[groups]]\nname = \"users\"\ngid = 100\n[[groups]]\nname = \"g\"\ngid = 2000\n")
            .unwrap();
    assert!(
        g.contains("users:x:100:\n") && g.contains("g:x:2000:\n"),
        "{g}"
    );
    // The one second root account a profile may ask for.
    build("[[users]]\nname = \"toor\"\nuid = 0\nallow_uid0 = true\n").unwrap();
}

#[test]
fn sysusers_fields() {
    assert_eq!(
        super::fields("u systemd-network 998 \"systemd Network Management\" -"),
        vec![
            "u",
            "systemd-network",
            "998",
            "systemd Network Management",
            "-"
        ]
    );
}

#[test]
fn adduser_user_group_adds_a_member_as_adduser_does() {
    let words = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
    let m = |tool: &str, args: &str| super::membership(tool, &words(args));
    assert_eq!(
        m("adduser", "--quiet postgres ssl-cert"),
        Some(("postgres".into(), vec!["ssl-cert".into()]))
    );
    assert_eq!(
        m("usermod", "-a -G video,render gdm"),
        Some(("gdm".into(), vec!["video".into(), "render".into()]))
    );
    assert_eq!(
        m("usermod", "-aG kvm libvirt-qemu"),
        Some(("libvirt-qemu".into(), vec!["kvm".into()]))
    );
    // Making an account, replacing the group list, or any other option is not this.
    for (tool, args) in [
        ("adduser", "--system --group postgres"),
        ("adduser", "postgres"),
        ("adduser", "--home /x postgres ssl-cert"),
        ("usermod", "-G video gdm"),
        ("usermod", "-a -G video -s /bin/sh gdm"),
    ] {
        assert_eq!(m(tool, args), None, "{tool} {args}");
    }

    let mut t = Tree::new();
    t.insert(
        "etc/passwd",
        Entry::file("postgres:x:105:110::/var/lib/postgresql:/bin/bash\n", 0o644),
    )
    .unwrap();
    t.insert(
        "etc/group",
        Entry::file("ssl-cert:x:109:\npostgres:x:110:\nvideo:x:44:gdm\n", 0o644),
    )
    .unwrap();
    let mut gshadow = Entry::file("ssl-cert:*::\npostgres:*::\nvideo:*::gdm\n", 0o640);
    gshadow.gid = 42;
    t.insert("etc/gshadow", gshadow).unwrap();
    let g = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let add =
        |t: &mut Tree, user: &str, groups: &[&str]| super::add_member(t, user, &g(groups)).unwrap();
    let read = |t: &Tree, p: &str| String::from_utf8(t.read(p).unwrap()).unwrap();
    assert!(add(&mut t, "postgres", &["ssl-cert", "video"]));
    // Its own primary group: already a member, nothing written.
    assert!(add(&mut t, "postgres", &["postgres", "ssl-cert"]));
    assert_eq!(
        read(&t, "etc/group"),
        "ssl-cert:x:109:postgres\npostgres:x:110:\nvideo:x:44:gdm,postgres\n"
    );
    assert_eq!(
        read(&t, "etc/gshadow"),
        "ssl-cert:*::postgres\npostgres:*::\nvideo:*::gdm,postgres\n"
    );
    let e = t.get("etc/gshadow").unwrap();
    assert_eq!((e.mode, e.gid), (0o640, 42));
    // A user or group the image lacks: adduser fails, nothing changes.
    let before = read(&t, "etc/group");
    assert!(!add(&mut t, "nobody", &["video"]));
    assert!(!add(&mut t, "postgres", &["video", "no-such-group"]));
    assert_eq!(read(&t, "etc/group"), before);
    assert_eq!(entry(&before, "video")[3], "gdm,postgres");
}

#[test]
fn locked_sysusers_accounts_are_made_and_locked() {
    // Debian 13's systemd makes its service accounts with `u!`: made like `u`, and expired.
    let profile = crate::config::profile_from_str(
        std::path::Path::new("p.toml"),
        "[image]\nname = \"p\"\nversion = \"1.0.0\"\n[distribution]\nsuite = \"trixie\"\n",
    )
    .unwrap();
    let mut t = Tree::new();
    t.insert(
        "usr/lib/sysusers.d/systemd-network.conf",
        Entry::file(
            "u! systemd-network - \"systemd Network Management\"\nu sshd -:nogroup \"sshd user\" /run/sshd\ng nogroup 65534\n",
            0o644,
        ),
    )
    .unwrap();
    super::apply(&mut t, &profile, &[], 0).unwrap();
    let passwd = String::from_utf8(t.read("etc/passwd").unwrap()).unwrap();
    let shadow = String::from_utf8(t.read("etc/shadow").unwrap()).unwrap();
    let net = entry(&passwd, "systemd-network");
    assert_eq!(net[4], "systemd Network Management");
    assert!(
        (100..1000).contains(&net[2].parse::<u32>().unwrap()),
        "{net:?}"
    );
    assert_eq!(entry(&shadow, "systemd-network")[7], "1", "{shadow}");
    // A plain `u` account is not expired.
    assert_eq!(entry(&passwd, "sshd")[5], "/run/sshd");
    assert_eq!(entry(&shadow, "sshd")[7], "", "{shadow}");
}

#[test]
fn a_profile_pins_the_ids_of_accounts_sysusers_d_makes() {
    let build = |accounts: &str| {
        let profile = crate::config::profile_from_str(
            std::path::Path::new("p.toml"),
            &format!("[image]\nname = \"p\"\nversion = \"1.0.0\"\n[distribution]\nsuite = \"trixie\"\n{accounts}"),
        )
        .unwrap();
        let mut t = Tree::new();
        // Debian 13's openssh-server, and systemd's own accounts, one of which is made
        // before sshd's and would take the highest free number.
        for (p, text) in [
            (
                "share/base-passwd/passwd.master",
                "root:*:0:0:root:/root:/bin/sh\ndaemon:*:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n",
            ),
            ("share/base-passwd/group.master", "root:*:0:\ndaemon:*:1:\n"),
            (
                "lib/sysusers.d/basic.conf",
                "g users 100\nu! systemd-network - \"systemd Network Management\"\n",
            ),
            (
                "lib/sysusers.d/openssh-server.conf",
                "u! sshd - \"sshd user\" /run/sshd\n",
            ),
            ("lib/sysusers.d/x.conf", "g _ssh -\nu svc 990 \"fixed\"\n"),
        ] {
            t.insert(&format!("usr/{p}"), Entry::file(text, 0o644))
                .unwrap();
        }
        super::apply(&mut t, &profile, &[], 0)
            .map(|()| {
                let r = |p: &str| String::from_utf8(t.read(p).unwrap()).unwrap();
                (r("etc/passwd"), r("etc/group"), r("etc/shadow"))
            })
            .map_err(|e| e.to_string())
    };
    // Without pins: numbers from 999 down, systemd-network first.
    let (passwd, ..) = build("").unwrap();
    assert_eq!(entry(&passwd, "systemd-network")[2], "999");
    assert_eq!(entry(&passwd, "sshd")[2], "998");
    // A bookworm profile's sshd entry (uid 999 pinned, its shell) still builds on trixie: the
    // package's account with the profile's number, the package's home, still locked; nothing
    // else takes 999.
    let (passwd, group, shadow) = build(
        "[[users]]\nname = \"sshd\"\nuid = 999\nshell = \"/usr/sbin/nologin\"\ngroups = [\"_ssh\"]\n[[groups]]\nname = \"_ssh\"\ngid = 500\n",
    )
    .unwrap();
    let sshd = entry(&passwd, "sshd");
    assert_eq!(
        (sshd[2].as_str(), sshd[4].as_str(), sshd[5].as_str()),
        ("999", "sshd user", "/run/sshd"),
        "{passwd}"
    );
    assert_eq!(entry(&group, "sshd")[2], "999", "{group}");
    assert_eq!(entry(&shadow, "sshd")[7], "1", "still locked: {shadow}");
    assert_eq!(entry(&passwd, "systemd-network")[2], "998", "{passwd}");
    assert_eq!(entry(&group, "_ssh")[2..], ["500", "sshd"], "{group}");
    assert_eq!(
        passwd.lines().filter(|l| l.starts_with("sshd:")).count(),
        1,
        "{passwd}"
    );
    // A number the package's line fixes, a person's account of that name, and a base-passwd
    // account stay refused.
    let e = build("[[users]]\nname = \"svc\"\nuid = 991\n").unwrap_err();
    assert!(
        e.contains("gives it uid 990, not 991; leave its uid out"),
        "{e}"
    );
    build("[[users]]\nname = \"svc\"\nuid = 990\n").unwrap();
    let e = build("[[users]]\nname = \"sshd\"\n").unwrap_err();
    assert!(e.contains("a system account a package makes"), "{e}");
    build("[[users]]\nname = \"sshd\"\nsystem = true\n").unwrap();
    let e = build("[[users]]\nname = \"daemon\"\nsystem = true\n").unwrap_err();
    assert!(
        e.contains("user `daemon` already exists in the image (from base-passwd)"),
        "{e}"
    );
}
