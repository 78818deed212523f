//! The resolver's unit tests: small indexes written inline, one rule of apt's per test.
use super::*;

fn idx(text: &str) -> Index {
    let mut i = Index::default();
    i.add(text, "test", "amd64").unwrap();
    i.finish();
    i
}

fn pkg(name: &str, version: &str, extra: &str) -> String {
    format!(
        "Package: {name}\nVersion: {version}\nArchitecture: amd64\nFilename: pool/{name}.deb\nSize: 1\nSHA256: {}\n{extra}\n",
        "0".repeat(64)
    )
}

fn names(v: &[PackageInfo]) -> Vec<String> {
    v.iter()
        .map(|p| format!("{}={}", p.name, p.version))
        .collect()
}

#[test]
fn alternatives_provides_versions() {
    let i = idx(&[
        pkg(
            "app",
            "1.0",
            "Depends: libc (>= 2.0), awk, mail-transport-agent | exim",
        ),
        pkg("libc", "2.1", ""),
        pkg("libc", "1.9", ""),
        pkg("mawk", "1.3", "Provides: awk\nPriority: required"),
        pkg("gawk", "5", "Provides: awk"),
        pkg("exim", "4", ""),
        pkg("unused", "1", ""),
    ]
    .join("\n"));
    let r = resolve(
        &i,
        &Request {
            include: vec!["app".into()],
            ..Default::default()
        },
    )
    .unwrap();
    // awk: mawk (Priority: required) before gawk, as apt chooses, not by name.
    assert_eq!(names(&r), ["app=1.0", "exim=4", "libc=2.1", "mawk=1.3"]);
    // With the essential set, mawk is chosen first and satisfies awk.
    let r = resolve(
        &i,
        &Request {
            include: vec!["app".into()],
            essential: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(names(&r).contains(&"mawk=1.3".to_string()));
    assert!(!names(&r).contains(&"gawk=5".to_string()));
}

/// apt installs a purely virtual name asked for by the user only when one package provides
/// it ("Note, selecting"); with several it names them and refuses, even when one of them is
/// asked for beside it. A dependency on the same name still picks a provider.
#[test]
fn a_virtual_name_asked_for_needs_a_single_provider() {
    let i = idx(&[
        pkg("mawk", "1.3", "Provides: awk\nPriority: required"),
        pkg("gawk", "5", "Provides: awk"),
        pkg("vim-tiny", "9", "Provides: editor"),
        pkg("needs-awk", "1", "Depends: awk"),
    ]
    .join("\n"));
    for asked in [&["awk"][..], &["mawk", "awk"]] {
        let e = resolve(&i, &req(asked)).unwrap_err();
        assert_eq!(
            e,
            ResolveError::Virtual {
                name: "awk".into(),
                needed_by: "the profile".into(),
                providers: vec!["gawk".into(), "mawk".into()],
            },
            "{asked:?}"
        );
        assert!(
            e.to_string().contains(
                "`awk` (needed by the profile) is a virtual package provided by gawk, mawk"
            ),
            "{e}"
        );
    }
    let r = resolve(&i, &req(&["editor"])).unwrap();
    assert_eq!(names(&r), ["vim-tiny=9"]);
    let r = resolve(&i, &req(&["needs-awk"])).unwrap();
    assert_eq!(names(&r), ["mawk=1.3", "needs-awk=1"]);
    // Excluding all providers but one leaves that one.
    let mut one = req(&["awk"]);
    one.exclude = vec!["mawk".into()];
    assert_eq!(names(&resolve(&i, &one).unwrap()), ["gawk=5"]);
}

fn req(include: &[&str]) -> Request {
    Request {
        include: include.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

#[test]
fn conflicts_through_provides_fail_naming_both_packages_and_the_clause() {
    let i = idx(&[
        pkg(
            "chrony",
            "4.3",
            "Conflicts: time-daemon\nProvides: time-daemon",
        ),
        pkg(
            "systemd-timesyncd",
            "252",
            "Conflicts: time-daemon\nProvides: time-daemon",
        ),
    ]
    .join("\n"));
    // Each provides and conflicts with time-daemon: alone, each is fine.
    assert_eq!(
        names(&resolve(&i, &req(&["chrony"])).unwrap()),
        ["chrony=4.3"]
    );
    let e = resolve(&i, &req(&["chrony", "systemd-timesyncd"])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the profile needs `systemd-timesyncd`, but systemd-timesyncd 252 cannot be installed with chrony 4.3: systemd-timesyncd 252 Conflicts: time-daemon"
    );
    // The profile's own request, as its list writes it: what the build's error points at.
    assert_eq!(e.profile_request(), Some("systemd-timesyncd"));
    // Declared the other way round: the chosen package's clause is named.
    let i = idx(&[
        pkg("a", "1", "Breaks: b (<< 2)"),
        pkg("b", "1", ""),
        pkg("c", "1", "Depends: b"),
    ]
    .join("\n"));
    let e = resolve(&i, &req(&["a", "c"])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "c 1 needs `b`, but b 1 cannot be installed with a 1: a 1 Breaks: b (<< 2)"
    );
    // A Breaks on an older version does not touch the candidate.
    let i = idx(&[pkg("a", "1", "Breaks: b (<< 1)"), pkg("b", "1", "")].join("\n"));
    assert_eq!(
        names(&resolve(&i, &req(&["a", "b"])).unwrap()),
        ["a=1", "b=1"]
    );
}

#[test]
fn an_alternative_that_would_conflict_is_passed_over_for_the_next() {
    let i = idx(&[
        pkg("mta-user", "1", "Depends: exim4 | postfix"),
        pkg(
            "exim4",
            "4",
            "Conflicts: mail-transport-agent\nProvides: mail-transport-agent",
        ),
        pkg(
            "postfix",
            "3",
            "Conflicts: mail-transport-agent\nProvides: mail-transport-agent",
        ),
        pkg(
            "ssmtp",
            "2",
            "Conflicts: mail-transport-agent\nProvides: mail-transport-agent",
        ),
        pkg("want-mta", "1", "Depends: mail-transport-agent"),
    ]
    .join("\n"));
    // postfix first; exim4 would conflict with it, so the dependency takes... postfix itself.
    let r = resolve(&i, &req(&["postfix", "mta-user"])).unwrap();
    assert_eq!(names(&r), ["mta-user=1", "postfix=3"]);
    // Both asked for by name: the second fails, like apt (exim4-daemon-light + postfix).
    let e = resolve(&i, &req(&["exim4", "postfix"])).unwrap_err();
    assert!(matches!(e, ResolveError::Conflict { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("postfix 3 cannot be installed with exim4 4"),
        "{e}"
    );
    // A virtual package with a provider already chosen adds nothing.
    let r = resolve(&i, &req(&["ssmtp", "want-mta"])).unwrap();
    assert_eq!(names(&r), ["ssmtp=2", "want-mta=1"]);
}

#[test]
fn recommends_nothing_satisfies_are_skipped_and_noted() {
    let i = idx(&[
        pkg(
            "daemon",
            "1",
            "Depends: base\nRecommends: driver-vbox, bad, helper | other",
        ),
        pkg("base", "1", "Conflicts: bad, helper"),
        pkg("helper", "1", ""),
        pkg("bad", "1", ""),
        pkg("other", "1", ""),
    ]
    .join("\n"));
    let mut r = req(&["daemon"]);
    r.recommends = true;
    let got = resolve_noting(&i, &r).unwrap();
    // driver-vbox does not exist and bad conflicts with base: both skipped, not fatal;
    // helper would conflict too, so the next alternative is taken.
    assert_eq!(names(&got.packages), ["base=1", "daemon=1", "other=1"]);
    assert_eq!(
        got.skipped,
        [
            "daemon 1 recommends `driver-vbox`: skipped, nothing satisfies it",
            "daemon 1 recommends `bad`: skipped, nothing satisfies it (bad 1 cannot be installed with base 1)",
        ]
    );
    // As a hard dependency the same clause is an error naming the conflict.
    let i = idx(&[
        pkg("x", "1", "Depends: base, bad"),
        pkg("base", "1", "Conflicts: bad"),
        pkg("bad", "1", ""),
    ]
    .join("\n"));
    let e = resolve(&i, &req(&["x"])).unwrap_err();
    assert!(e.to_string().contains("base 1 Conflicts: bad"), "{e}");
}

#[test]
fn version_too_old_is_explained() {
    let i = idx(&[
        pkg("app", "1", "Depends: libc (>= 3)"),
        pkg("libc", "2.1", ""),
    ]
    .join("\n"));
    let e = resolve(
        &i,
        &Request {
            include: vec!["app".into()],
            ..Default::default()
        },
    )
    .unwrap_err();
    let s = e.to_string();
    assert!(
        s.contains("app 1 needs `libc (>= 3)`") && s.contains("the index has libc 2.1"),
        "{s}"
    );
}

#[test]
fn unknown_names_get_suggestions() {
    let i = idx(&[
        pkg("openssh-server", "1", ""),
        pkg("openssh-client", "1", ""),
    ]
    .join("\n"));
    let e = resolve(
        &i,
        &Request {
            include: vec!["openssh-sever".into()],
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("did you mean `openssh-server`"),
        "{e}"
    );
}

#[test]
fn pinned_version() {
    let i = idx(&[pkg("libc", "2.1", ""), pkg("libc", "1.9", "")].join("\n"));
    let r = resolve(
        &i,
        &Request {
            include: vec!["libc=1.9".into()],
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(names(&r), ["libc=1.9"]);
}

#[test]
fn a_not_automatic_suite_is_used_only_when_asked_for_as_apt_does() {
    let mut i = Index::default();
    i.add(
        &[pkg("kernel", "6.1", ""), pkg("logsave", "1.47.0", "")].join("\n"),
        "bookworm",
        "amd64",
    )
    .unwrap();
    i.add(
        &[
            pkg("kernel", "6.12", ""),
            pkg("logsave", "1.47.2", ""),
            pkg("only-bpo", "2.0", ""),
        ]
        .join("\n"),
        "bookworm-backports",
        "amd64",
    )
    .unwrap();
    i.not_automatic.insert("bookworm-backports".into());
    i.finish();
    let r = |inc: &[&str]| {
        names(
            &resolve(
                &i,
                &Request {
                    include: inc.iter().map(|s| s.to_string()).collect(),
                    ..Default::default()
                },
            )
            .unwrap(),
        )
    };
    assert_eq!(r(&["kernel", "logsave"]), ["kernel=6.1", "logsave=1.47.0"]);
    assert_eq!(
        r(&["kernel", "logsave/bookworm-backports"]),
        ["kernel=6.1", "logsave=1.47.2"]
    );
    // A package only the backports suite has is its candidate.
    assert_eq!(r(&["only-bpo"]), ["only-bpo=2.0"]);
    let e = resolve(
        &i,
        &Request {
            include: vec!["kernel/sid".into()],
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("suite sid has no kernel"), "{e}");
}

#[test]
fn a_preinstalled_provider_satisfies_the_kernel_and_left_out_helpers_are_noted() {
    let i = idx(&[
        pkg(
            "linux-image-6.1.0-9-amd64",
            "6.1.1",
            "Depends: kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120) | linux-initramfs-tool\nProvides: wireguard-modules (= 1.0.0)",
        ),
        pkg("linux-image-amd64", "6.1.1", "Depends: linux-image-6.1.0-9-amd64 (= 6.1.1)"),
        pkg("kmod", "30", "Depends: libc"),
        pkg("linux-base", "4.9", ""),
        pkg("initramfs-tools", "0.142", "Depends: udev"),
        pkg("udev", "252", ""),
        pkg("libc", "2.36", ""),
        pkg("ingot-initramfs", "1", "Provides: linux-initramfs-tool"),
        pkg("wireguard", "1.0", "Depends: wireguard-modules (>= 0.0.20171001) | wireguard-dkms"),
        pkg("wireguard-dkms", "1.0", ""),
        pkg("kmod-user", "1", "Depends: kmod"),
    ]
    .join("\n"));
    let mut r = req(&["linux-image-amd64", "wireguard"]);
    r.preinstalled = vec!["ingot-initramfs".into()];
    // Real dependencies: kmod and linux-base installed; initramfs-tools not, the generated
    // entry provides linux-initramfs-tool; the kernel's Provides satisfy wireguard.
    let got = resolve_noting(&i, &r).unwrap();
    assert_eq!(
        names(&got.packages),
        [
            "ingot-initramfs=1",
            "kmod=30",
            "libc=2.36",
            "linux-base=4.9",
            "linux-image-6.1.0-9-amd64=6.1.1",
            "linux-image-amd64=6.1.1",
            "wireguard=1.0"
        ]
    );
    // Left out: only the kernel's own clauses on them, each noted; another package's
    // dependency on kmod still installs it.
    r.left_out = vec![LeftOut {
        owner_prefix: "linux-image-".into(),
        deps: vec!["kmod".into(), "linux-base".into()],
        why: "no dpkg".into(),
    }];
    let got = resolve_noting(&i, &r).unwrap();
    assert!(!names(&got.packages).iter().any(|n| n.starts_with("kmod")));
    assert_eq!(got.skipped.len(), 2, "{:?}", got.skipped);
    assert!(got.skipped[0]
        .contains("linux-image-6.1.0-9-amd64 6.1.1 depends on `kmod`: left out, no dpkg"));
    r.include.push("kmod-user".into());
    let got = resolve_noting(&i, &r).unwrap();
    assert!(names(&got.packages).contains(&"kmod=30".to_string()));
}

#[test]
fn dependencies_are_settled_depth_first_as_apt_does() {
    // postgresql-15 recommends sysstat (`systemd | cron`) after it depends on
    // postgresql-common, whose logrotate brings cron. Settled depth first, as apt's
    // MarkInstall does, cron is in the set before sysstat's clause is looked at, so systemd
    // is not installed; taken level by level, sysstat's clause came first and chose systemd.
    let i = idx(&[
        pkg("postgresql", "15", "Depends: postgresql-15"),
        pkg(
            "postgresql-15",
            "15.1",
            "Depends: postgresql-common\nRecommends: sysstat",
        ),
        pkg("postgresql-common", "248", "Recommends: logrotate"),
        pkg("logrotate", "3.21", "Depends: cron | systemd-sysv"),
        pkg("sysstat", "12.6", "Recommends: systemd | cron"),
        pkg("cron", "3.0", ""),
        pkg("systemd", "252", ""),
    ]
    .join("\n"));
    let mut r = req(&["postgresql"]);
    r.recommends = true;
    assert_eq!(
        names(&resolve(&i, &r).unwrap()),
        [
            "cron=3.0",
            "logrotate=3.21",
            "postgresql=15",
            "postgresql-15=15.1",
            "postgresql-common=248",
            "sysstat=12.6"
        ]
    );
    // A virtual package a chosen package provides is met by it, even though a real package
    // of that name exists (libruby provides ruby-json; hiera depends on ruby-json after ruby).
    let i = idx(&[
        pkg("hiera", "3", "Depends: ruby, ruby-json"),
        pkg("ruby", "3.1", "Depends: libruby"),
        pkg("libruby", "3.1", "Provides: ruby-json (= 2.6.1)"),
        pkg("ruby-json", "2.6.3", ""),
    ]
    .join("\n"));
    assert_eq!(
        names(&resolve(&i, &req(&["hiera"])).unwrap()),
        ["hiera=3", "libruby=3.1", "ruby=3.1"]
    );
}

#[test]
fn a_package_that_conflicts_with_a_generated_entry_replaces_it_with_a_note() {
    // flash-kernel needs initramfs-tools, which conflicts with every other
    // linux-initramfs-tool: apt removes the installed entry; so does the resolver.
    let i = idx(&[
        pkg(
            "linux-image-arm64",
            "6.1",
            "Depends: initramfs-tools | linux-initramfs-tool",
        ),
        pkg(
            "flash-kernel",
            "3.107",
            "Depends: initramfs-tools (>= 0.92f)",
        ),
        pkg(
            "initramfs-tools",
            "0.142",
            "Conflicts: linux-initramfs-tool\nProvides: linux-initramfs-tool",
        ),
        pkg("ingot-initramfs", "1", "Provides: linux-initramfs-tool"),
    ]
    .join("\n"));
    let mut r = req(&["flash-kernel", "linux-image-arm64"]);
    r.preinstalled = vec!["ingot-initramfs".into()];
    let got = resolve_noting(&i, &r).unwrap();
    assert_eq!(
        names(&got.packages),
        [
            "flash-kernel=3.107",
            "initramfs-tools=0.142",
            "linux-image-arm64=6.1"
        ]
    );
    assert_eq!(got.skipped.len(), 1, "{:?}", got.skipped);
    assert!(
        got.skipped[0].starts_with("ingot-initramfs 1 left out: initramfs-tools 0.142"),
        "{}",
        got.skipped[0]
    );
    // Without it, the generated entry stays and meets the kernel's clause.
    r.include = vec!["linux-image-arm64".into()];
    let got = resolve_noting(&i, &r).unwrap();
    assert_eq!(
        names(&got.packages),
        ["ingot-initramfs=1", "linux-image-arm64=6.1"]
    );
    // A package the profile asked for is never displaced that way.
    let i = idx(&[pkg("a", "1", "Conflicts: b"), pkg("b", "1", "")].join("\n"));
    assert!(resolve(&i, &req(&["b", "a"])).is_err());
}

#[test]
fn a_failure_names_the_profiles_request_only_when_the_profile_made_it() {
    let i = idx(&[pkg("a", "1", "Depends: gone"), pkg("b", "2", "")].join("\n"));
    let asked = |list: &[&str]| resolve(&i, &req(list)).unwrap_err();
    assert_eq!(asked(&["nope"]).profile_request(), Some("nope"));
    // A pinned version the index lacks: the name, without its version.
    assert_eq!(asked(&["b=9"]).profile_request(), Some("b"));
    assert_eq!(asked(&["b/elsewhere"]).profile_request(), Some("b"));
    // A dependency's failure is not the profile's line.
    let e = asked(&["a"]);
    assert!(e.to_string().contains("gone"), "{e}");
    assert_eq!(e.profile_request(), None);
}
