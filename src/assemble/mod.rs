//! System assembly: the work maintainer scripts would do, done declaratively on the tree —
//! users, services, networking, alternatives, CA bundle, os-release, labels, agents, the
//! check-in agent. The boot chain (kernel, initramfs, systemd-boot) is `crate::boot`.

mod files;
mod init;
pub mod ota;
mod pam;
pub mod python;
pub mod users;

use files::{install_file, overlay};
pub use init::enable_unit;
use init::{busybox_init, ready_script, systemd_setup};

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde_json::json;

use crate::config::{Hardware, InitSystem, Profile};
use crate::tree::{Entry, Kind, Tree};
use crate::trust::minisign::PublicKey;

pub use crate::base::identity::Identity;

/// Labels: the profile's plus generated ones.
pub fn labels(
    profile: &Profile,
    hw: &Hardware,
    id: &Identity,
    profile_digest: &str,
) -> BTreeMap<String, String> {
    let mut l = profile.labels.clone();
    let gen = [
        ("org.opencontainers.image.title", id.name.clone()),
        ("org.opencontainers.image.version", id.version.clone()),
        (
            "org.opencontainers.image.created",
            crate::base::identity::rfc3339(id.epoch),
        ),
        ("dev.ingot.image.id", id.id()),
        (
            "dev.ingot.builder.version",
            env!("CARGO_PKG_VERSION").to_string(),
        ),
        (
            "dev.ingot.profile.digest",
            format!("sha256:{profile_digest}"),
        ),
        ("dev.ingot.hardware", hw.name.clone()),
        ("dev.ingot.arch", id.arch.clone()),
    ];
    for (k, v) in gen {
        // A profile's own title wins; the labels Ingot derives from the build were refused
        // when the profile was read, unless they agree (the version), so nothing is
        // overwritten silently.
        if k == "org.opencontainers.image.title" && l.contains_key(k) {
            continue;
        }
        l.insert(k.to_string(), v);
    }
    l
}

fn put(tree: &mut Tree, path: &str, data: impl Into<Vec<u8>>, mode: u32) -> Result<()> {
    tree.insert(path, Entry::file(data, mode))
        .with_context(|| format!("writing /{path}"))?;
    Ok(())
}

/// Alternatives the packages would register: (link, candidates in priority order).
const ALTERNATIVES: &[(&str, &[&str])] = &[
    (
        "usr/bin/awk",
        &["/usr/bin/mawk", "/usr/bin/gawk", "/usr/bin/original-awk"],
    ),
    ("usr/bin/which", &["/usr/bin/which.debianutils"]),
    ("usr/bin/pager", &["/usr/bin/less", "/usr/bin/more"]),
    (
        "usr/bin/editor",
        &["/usr/bin/nano", "/usr/bin/vim.basic", "/usr/bin/vim.tiny"],
    ),
    (
        "usr/bin/nc",
        &["/usr/bin/nc.openbsd", "/usr/bin/nc.traditional"],
    ),
];

fn alternatives(tree: &mut Tree) -> Result<()> {
    for (link, cands) in ALTERNATIVES {
        if tree.get(link).is_some() {
            continue;
        }
        if let Some(c) = cands.iter().find(|c| tree.exists(c)) {
            let name = link.rsplit('/').next().unwrap_or(link);
            tree.insert(&format!("etc/alternatives/{name}"), Entry::symlink(c))?;
            tree.insert(link, Entry::symlink(&format!("/etc/alternatives/{name}")))?;
        }
    }
    Ok(())
}

fn ca_bundle(tree: &mut Tree) -> Result<()> {
    if tree.get("usr/share/ca-certificates").is_none() {
        return Ok(());
    }
    let mut certs: Vec<String> = tree
        .iter()
        .filter(|(p, e)| {
            p.starts_with("usr/share/ca-certificates/")
                && p.ends_with(".crt")
                && matches!(e.kind, Kind::File(_))
        })
        .map(|(p, _)| p.clone())
        .collect();
    certs.sort();
    let mut bundle = Vec::new();
    let mut conf = String::from("# Written by ingot: every certificate shipped is trusted.\n");
    for c in &certs {
        let mut data = tree.read(c).unwrap_or_default();
        if !data.ends_with(b"\n") {
            data.push(b'\n');
        }
        bundle.extend(data);
        conf.push_str(c.trim_start_matches("usr/share/ca-certificates/"));
        conf.push('\n');
    }
    put(tree, "etc/ssl/certs/ca-certificates.crt", bundle, 0o644)?;
    put(tree, "etc/ca-certificates.conf", conf, 0o644)
}

/// Assemble the system in place: everything except the boot chain and sysprep. An A/B image
/// (hardware `[ab]`) also gets the updater, trusting `update_key`.
pub fn system(
    tree: &mut Tree,
    profile: &Profile,
    hw: &Hardware,
    id: &Identity,
    labels: &BTreeMap<String, String>,
    update_key: Option<&PublicKey>,
) -> Result<()> {
    for d in [
        "proc", "sys", "dev", "run", "tmp", "root", "home", "etc", "var/tmp", "var/log", "mnt",
        "srv", "opt", "boot/efi",
    ] {
        tree.mkdir_p(d)?;
    }
    for (d, m) in [("tmp", 0o1777), ("var/tmp", 0o1777), ("root", 0o700)] {
        if let Some(e) = tree.get_mut(d) {
            e.mode = m;
        }
    }
    if !tree.exists("bin/sh") {
        let sh = ["usr/bin/dash", "usr/bin/bash", "usr/bin/busybox"]
            .into_iter()
            .find(|p| tree.exists(p))
            .context("no shell in the image (dash, bash or busybox)")?;
        tree.insert(
            "usr/bin/sh",
            Entry::symlink(sh.rsplit('/').next().unwrap_or(sh)),
        )?;
    }
    // Debian's ldconfig trigger would write ld.so.cache; the loader works without it.
    users::apply(tree, profile, id.epoch / 86400)?;
    let applied = users::fragments(tree);
    alternatives(tree)?;
    ca_bundle(tree)?;
    // os-release with the image identity.
    let base = tree
        .read("/usr/lib/os-release")
        .or_else(|| tree.read("/etc/os-release"))
        .unwrap_or_default();
    let mut os = String::from_utf8_lossy(&base)
        .lines()
        .filter(|l| !l.starts_with("IMAGE_ID=") && !l.starts_with("IMAGE_VERSION="))
        .collect::<Vec<_>>()
        .join("\n");
    os.push_str(&format!(
        "\nIMAGE_ID={}\nIMAGE_VERSION={}\n",
        id.name, id.version
    ));
    if tree.get("etc/os-release").is_some() {
        tree.remove("etc/os-release");
    }
    put(tree, "usr/lib/os-release", os, 0o644)?;
    tree.insert("etc/os-release", Entry::symlink("../usr/lib/os-release"))?;
    put(tree, "etc/hostname", "", 0o644)?;
    put(
        tree,
        "etc/hosts",
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        0o644,
    )?;
    put(
        tree,
        "etc/fstab",
        "# Root is found by PARTUUID on the kernel command line; written by ingot.\n",
        0o644,
    )?;
    // Labels and agents.
    let image_json = serde_json::to_string_pretty(&json!({
        "image": id.name, "version": id.version, "arch": id.arch, "hardware": hw.name,
        "labels": labels, "agents": profile.agents.iter().map(|a| json!({"name": a.name, "probe": a.probe})).collect::<Vec<_>>(),
    }))?;
    put(tree, "usr/lib/ingot/image.json", image_json + "\n", 0o644)?;
    for a in &profile.agents {
        for f in &a.files {
            install_file(tree, f, &format!("agent {}", a.name))?;
        }
    }
    for f in &profile.files {
        install_file(tree, f, &profile.path.display().to_string())?;
    }
    for o in &profile.overlays {
        overlay(tree, o)?;
    }
    let ab = hw.ab.is_some();
    if ab {
        let key = update_key.with_context(|| {
            format!(
                "{}: an A/B image carries the key its updates are signed with: build it with --key",
                hw.path.display()
            )
        })?;
        ota::install(tree, profile, hw, id, key)?;
    }
    let mut agents = profile.agents.clone();
    agents.sort_by(|a, b| a.name.cmp(&b.name));
    put(
        tree,
        "usr/lib/ingot/ready",
        ready_script(id, &agents, ab),
        0o755,
    )?;
    pam::common_stacks(tree)?;
    match profile.init {
        InitSystem::Busybox => busybox_init(tree, profile, &hw.console, ab)?,
        InitSystem::Systemd => {
            let cmdline = format!("{} {}", hw.cmdline, profile.kernel.cmdline);
            // Users are current when every fragment is one `users::apply` read, unchanged.
            let now = users::fragments(tree);
            let users_current =
                now == applied && now.iter().all(|(p, _)| p.starts_with("usr/lib/"));
            systemd_setup(tree, profile, &cmdline, ab, users_current)?
        }
    }
    Ok(())
}

/// Drop documentation, man pages and locales (copyright files stay: licences must ship).
pub fn strip_docs(tree: &mut Tree) -> u64 {
    let doomed: Vec<String> = tree
        .iter()
        .filter(|(p, e)| {
            (p.starts_with("usr/share/man/")
                || p.starts_with("usr/share/info/")
                || p.starts_with("usr/share/locale/")
                || p.starts_with("usr/share/doc/")
                || p.starts_with("usr/share/lintian/"))
                && !p.ends_with("/copyright")
                && !matches!(e.kind, Kind::Dir)
        })
        .map(|(p, _)| p.clone())
        .collect();
    let mut freed = 0;
    for p in doomed {
        if let Some(Entry {
            kind: Kind::File(c),
            ..
        }) = tree.get(&p)
        {
            freed += c.len();
        }
        tree.remove(&p);
    }
    freed
}

#[cfg(test)]
mod tests {
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
        let s = ready_script(&id, &agents, false);
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
    fn updated_stamps_only_when_every_sysusers_fragment_was_applied() {
        let hw = crate::config::load_hardware(std::path::Path::new("hardware/qemu-x86_64.toml"))
            .unwrap();
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
        system(&mut t, &base(""), &hw, &id, &labels, None).unwrap();
        assert!(t.exists("etc/.updated") && t.exists("var/.updated"));
        let passwd = String::from_utf8(t.read("etc/passwd").unwrap()).unwrap();
        assert!(passwd.contains("daemon:x:1:"), "{passwd}");
        // A fragment the profile adds after the users were made: sysusers must run at boot.
        for path in [
            "/etc/sysusers.d/extra.conf",
            "/usr/lib/sysusers.d/extra.conf",
        ] {
            let mut t = tree();
            let p = base(&format!(
                "[[files]]\npath = \"{path}\"\ncontent = \"u late - \\\"late\\\"\"\n"
            ));
            system(&mut t, &p, &hw, &id, &labels, None).unwrap();
            assert!(t.exists(&path[1..]), "{path}");
            assert!(
                !t.exists("etc/.updated") && !t.exists("var/.updated"),
                "{path}"
            );
        }
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
        init::mask_idle_generators(&mut t, "quiet panic=-1").unwrap();
        assert_eq!(masked(&t), &gens[..6]);

        // Each input keeps its generator: a crypttab, a resume= word, an rc.local, an init
        // script without a native unit.
        let mut t = base();
        t.insert("etc/crypttab", Entry::file("", 0o644)).unwrap();
        t.insert("etc/rc.local", Entry::file("", 0o755)).unwrap();
        t.insert("etc/init.d/legacy", Entry::file("", 0o755))
            .unwrap();
        init::mask_idle_generators(&mut t, "quiet resume=/dev/vda3 rd.luks.uuid=x").unwrap();
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
        init::mask_idle_generators(&mut t, "quiet").unwrap();
        assert!(!masked(&t).contains(&"systemd-rc-local-generator"));
        // A dm-verity root hash on the command line keeps the veritysetup generator.
        let mut t = base();
        init::mask_idle_generators(&mut t, "quiet roothash=ab12").unwrap();
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
        init::mask_idle_units(&mut t, "quiet panic=-1", &[]).unwrap();
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
        init::mask_idle_units(&mut t, "quiet ip=dhcp", &[]).unwrap();
        assert!(masked(&t).is_empty(), "{:?}", masked(&t));
        let mut t = base();
        init::mask_idle_units(
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
        init::mask_idle_units(&mut t, "quiet", &[]).unwrap();
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
}
