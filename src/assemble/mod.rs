//! System assembly: the work maintainer scripts would do, done declaratively on the tree —
//! users, services, networking, alternatives, CA bundle, os-release, labels, agents, the
//! check-in agent. The boot chain (kernel, initramfs, systemd-boot) is `crate::boot`.

pub mod users;

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::config::{Agent, Hardware, InitSystem, Profile};
use crate::tree::{Content, Entry, Kind, Tree};

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

/// Enable a systemd unit from its `[Install]` section (WantedBy/RequiredBy/Alias/Also).
pub fn enable_unit(tree: &mut Tree, unit: &str, origin: &str) -> Result<()> {
    enable_unit_once(tree, unit, origin, &mut Vec::new())
}

/// `enable_unit`, remembering the units already seen so that `Also=` cycles end.
fn enable_unit_once(
    tree: &mut Tree,
    unit: &str,
    origin: &str,
    seen: &mut Vec<String>,
) -> Result<()> {
    if seen.iter().any(|u| u == unit) {
        return Ok(());
    }
    seen.push(unit.to_string());
    let dirs = ["etc/systemd/system", "usr/lib/systemd/system"];
    let (path, text) = dirs
        .iter()
        .find_map(|d| {
            let p = format!("{d}/{unit}");
            tree.read(&p)
                .map(|t| (p, String::from_utf8_lossy(&t).into_owned()))
        })
        .with_context(|| format!("{origin}: service `{unit}` has no unit file in the image"))?;
    let mut in_install = false;
    let mut any = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_install = line == "[Install]";
            continue;
        }
        if !in_install {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        for target in v.split_whitespace() {
            match k.trim() {
                "WantedBy" | "RequiredBy" => {
                    let kind = if k.trim() == "WantedBy" {
                        "wants"
                    } else {
                        "requires"
                    };
                    tree.insert(
                        &format!("etc/systemd/system/{target}.{kind}/{unit}"),
                        Entry::symlink(&format!("/{path}")),
                    )?;
                    any = true;
                }
                "Alias" => {
                    tree.insert(
                        &format!("etc/systemd/system/{target}"),
                        Entry::symlink(&format!("/{path}")),
                    )?;
                    any = true;
                }
                "Also" => enable_unit_once(tree, target, origin, seen)?,
                _ => {}
            }
        }
    }
    if !any {
        bail!("{origin}: unit `{unit}` has no [Install] section to enable it by");
    }
    Ok(())
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The check-in agent: waits for every agent's probe (all at once, so the slowest decides) and
/// prints the one `INGOT-READY` line, agents in the order given (assemble passes them sorted by name).
fn ready_script(id: &Identity, agents: &[Agent]) -> String {
    let mut s = String::from(
        "#!/bin/sh\n# Ingot check-in agent: waits for each agent's readiness probe, then prints one line\n# to the console for boot tests and fleet tooling.\nPATH=/usr/sbin:/usr/bin:/sbin:/bin\nprobe() {\n  # Poll twenty times a second (agents usually come up within a fraction of one) for t seconds.\n  t=$1; shift\n  i=0\n  while [ \"$i\" -lt \"$((t * 20))\" ]; do\n    if sh -c \"$1\" >/dev/null 2>&1; then echo ok; return; fi\n    sleep 0.05 2>/dev/null || { sleep 1; i=$((i + 19)); }\n    i=$((i + 1))\n  done\n  echo fail\n}\nd=${INGOT_READY_DIR:-/run/ingot-ready}\nrm -rf \"$d\"; mkdir -p \"$d\"\n",
    );
    for (n, a) in agents.iter().enumerate() {
        s.push_str(&format!(
            "probe {} {} > \"$d/{n}\" &\n",
            a.probe_timeout,
            shell_quote(&a.probe)
        ));
    }
    s.push_str("wait\nagents=\"\"\n");
    for (n, a) in agents.iter().enumerate() {
        s.push_str(&format!(
            "read -r r < \"$d/{n}\"; agents=\"$agents${{agents:+,}}{}:${{r:-fail}}\"\n",
            a.name
        ));
    }
    s.push_str(&format!(
        "rm -rf \"$d\"\nmid=$(cat /etc/machine-id 2>/dev/null)\nread -r up _ < /proc/uptime\necho \"INGOT-READY image={} version={} machine-id=$mid agents=$agents uptime=$up\" > \"${{INGOT_CONSOLE:-/dev/console}}\"\n",
        id.name, id.version
    ));
    s
}

const BUSYBOX_APPLETS: &[&str] = &[
    "sh", "ash", "cat", "chmod", "chown", "cp", "cut", "date", "dd", "df", "dmesg", "echo", "env",
    "false", "grep", "head", "hostname", "ifconfig", "ip", "kill", "ln", "ls", "mkdir", "mknod",
    "mount", "mv", "ps", "pwd", "rm", "rmdir", "sed", "sleep", "sort", "sync", "tail", "tar",
    "test", "[", "touch", "tr", "true", "umount", "uname", "vi", "wc", "wget", "which", "awk",
    "find", "xargs", "less", "more", "uptime", "free", "top", "id", "stat", "printf", "seq", "tee",
    "udhcpc", "nc",
];
const BUSYBOX_SBIN: &[&str] = &[
    "init",
    "halt",
    "poweroff",
    "reboot",
    "getty",
    "insmod",
    "modprobe",
    "lsmod",
    "rmmod",
    "syslogd",
    "klogd",
    "switch_root",
    "mdev",
    "ifup",
    "ifdown",
    "route",
];

fn busybox_init(tree: &mut Tree, profile: &Profile, console: &str) -> Result<()> {
    let bb = ["usr/bin/busybox", "bin/busybox"]
        .into_iter()
        .find(|p| tree.exists(p))
        .context("busybox init needs busybox (or busybox-static) in the package list")?;
    let target = format!("/{}", tree.resolve(bb)?);
    for a in BUSYBOX_APPLETS {
        let p = format!("usr/bin/{a}");
        if !tree.exists(&p) {
            tree.insert(&p, Entry::symlink(&target))?;
        }
    }
    for a in BUSYBOX_SBIN {
        let p = format!("usr/sbin/{a}");
        if !tree.exists(&p) {
            tree.insert(&p, Entry::symlink(&target))?;
        }
    }
    put(
        tree,
        "etc/inittab",
        format!(
            "# Written by ingot for busybox init.\n::sysinit:/etc/init.d/rcS\n{console}::respawn:/usr/sbin/getty -L 115200 {console} vt100\n::ctrlaltdel:/usr/sbin/reboot\n::shutdown:/bin/umount -a -r\n"
        ),
        0o644,
    )?;
    let mut rcs = String::from(
        "#!/bin/sh\n# Written by ingot: bring the system up, start the agents, check in.\nPATH=/usr/sbin:/usr/bin:/sbin:/bin\nmount -t proc proc /proc\nmount -t sysfs sysfs /sys\nmount -t devtmpfs devtmpfs /dev 2>/dev/null\nmkdir -p /dev/pts /run /tmp\nmount -t devpts devpts /dev/pts\nmount -t tmpfs -o mode=0755 tmpfs /run\nmount -t tmpfs -o mode=1777 tmpfs /tmp\nmount -o remount,rw /\n",
    );
    // Drivers and the DHCP client start first: the lease is what a boot usually waits for
    // last, so asking for it early shortens time-to-ready.
    if let Some(mods) = profile.kernel.modules.as_ref().filter(|m| !m.is_empty()) {
        rcs.push_str(&format!(
            "# Modules the profile's [kernel] table names.\nfor m in {}; do modprobe \"$m\" || echo \"ingot: modprobe $m failed\" >/dev/console; done\n",
            mods.iter().map(|m| shell_quote(m)).collect::<Vec<_>>().join(" ")
        ));
    }
    if profile.network.dhcp {
        put(tree, "usr/lib/ingot/udhcpc", UDHCPC_HOOK, 0o755)?;
        resolv_conf_link(tree, "../run/resolv.conf")?;
        rcs.push_str("# [network] dhcp: a lease for every Ethernet interface, renewed in the background.\nfor n in /sys/class/net/*; do\n  read -r ty < \"$n/type\" 2>/dev/null; [ \"$ty\" = 1 ] || continue\n  i=${n##*/}\n  ip link set \"$i\" up\n  udhcpc -f -S -i \"$i\" -s /usr/lib/ingot/udhcpc >/dev/null 2>&1 </dev/null &\ndone\n");
    }
    rcs.push_str("# First boot: a fresh machine id (the image ships an empty one).\nif [ ! -s /etc/machine-id ]; then tr -d '-' < /proc/sys/kernel/random/uuid > /etc/machine-id; fi\nhostname \"$(cat /etc/hostname 2>/dev/null || true)\" 2>/dev/null\n[ -s /etc/hostname ] || hostname localhost\nip link set lo up 2>/dev/null\nfor s in /etc/rc.d/S*; do [ -x \"$s\" ] && \"$s\" start; done\n");
    for a in &profile.agents {
        if let Some(cmd) = &a.service {
            rcs.push_str(&format!(
                "# agent {}\n( {} ) >/dev/null 2>&1 </dev/null &\n",
                a.name, cmd
            ));
        }
    }
    rcs.push_str("/usr/lib/ingot/ready &\n");
    put(tree, "etc/init.d/rcS", rcs, 0o755)?;
    tree.insert("sbin/init", Entry::symlink(&target))
        .map(|_| ())?;
    Ok(())
}

/// busybox `udhcpc` calls this with the lease in its environment (`ip`, `mask` as a prefix
/// length, `router`, `dns`, `domain`).
const UDHCPC_HOOK: &str = r#"#!/bin/sh
# Written by ingot: apply a DHCP lease from busybox udhcpc with busybox ip.
case "$1" in
  deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    ;;
  bound|renew)
    if ! ip -4 addr show dev "$interface" | grep -q "inet $ip/${mask:-24} "; then
      ip -4 addr flush dev "$interface"
      ip -4 addr add "$ip/${mask:-24}" ${broadcast:+broadcast "$broadcast"} dev "$interface"
    fi
    if [ -n "$router" ]; then
      while ip -4 route del default dev "$interface" 2>/dev/null; do :; done
      set -- $router
      ip -4 route add default via "$1" dev "$interface"
    fi
    {
      [ -n "$domain" ] && echo "search $domain"
      for d in $dns; do echo "nameserver $d"; done
    } > /run/resolv.conf.$$ && mv /run/resolv.conf.$$ /run/resolv.conf
    ;;
esac
exit 0
"#;

/// Point `/etc/resolv.conf` at the file the network setup writes at run time, unless the
/// packages or the profile put one there.
fn resolv_conf_link(tree: &mut Tree, target: &str) -> Result<()> {
    if tree.get("etc/resolv.conf").is_none() {
        tree.insert("etc/resolv.conf", Entry::symlink(target))?;
    }
    Ok(())
}

/// systemd images: DHCP on every Ethernet interface through systemd-networkd, names through
/// systemd-resolved when the profile installs it.
fn systemd_network(tree: &mut Tree, profile: &Profile) -> Result<()> {
    if !profile.network.dhcp {
        return Ok(());
    }
    if !tree.exists("usr/lib/systemd/systemd-networkd") {
        bail!(
            "{}: [network] dhcp needs systemd-networkd (from the `systemd` package) in the image; set `dhcp = false` to configure the network yourself",
            profile.path.display()
        );
    }
    put(
        tree,
        "etc/systemd/network/80-ingot-dhcp.network",
        "# Written by ingot ([network] dhcp = true): every Ethernet interface asks for a lease.\n[Match]\nType=ether\n\n[Network]\nDHCP=yes\n",
        0o644,
    )?;
    enable_unit(tree, "systemd-networkd.service", "[network] dhcp")?;
    if tree.exists("usr/lib/systemd/systemd-resolved") {
        enable_unit(tree, "systemd-resolved.service", "[network] dhcp")?;
        resolv_conf_link(tree, "../run/systemd/resolve/stub-resolv.conf")?;
    }
    Ok(())
}

fn systemd_setup(tree: &mut Tree, profile: &Profile) -> Result<()> {
    if !tree.exists("usr/lib/systemd/systemd") {
        bail!(
            "{}: init = \"systemd\" needs the `systemd` package in the package list",
            profile.path.display()
        );
    }
    if !tree.exists("sbin/init") {
        tree.insert("sbin/init", Entry::symlink("/usr/lib/systemd/systemd"))?;
    }
    put(
        tree,
        "usr/lib/systemd/system/ingot-ready.service",
        "[Unit]\nDescription=Ingot check-in: report agents ready on the console\nAfter=multi-user.target\n\n[Service]\nType=oneshot\nExecStart=/usr/lib/ingot/ready\nStandardOutput=null\nRemainAfterExit=yes\n\n[Install]\nWantedBy=multi-user.target\n",
        0o644,
    )?;
    // openssh-server's postinst installs the default sshd_config from /usr/share/openssh.
    if !tree.exists("etc/ssh/sshd_config") {
        if let Some(c) = tree.read("/usr/share/openssh/sshd_config") {
            put(tree, "etc/ssh/sshd_config", c, 0o644)?;
        }
    }
    // ssh host keys are made at first boot, never baked in (Debian's ssh.service does not).
    if tree.exists("usr/sbin/sshd") {
        put(
            tree,
            "usr/lib/systemd/system/ingot-ssh-hostkeys.service",
            "[Unit]\nDescription=Create SSH host keys for this machine\nBefore=ssh.service\nConditionPathExists=!/etc/ssh/ssh_host_ed25519_key\n\n[Service]\nType=oneshot\nExecStart=/usr/bin/ssh-keygen -A\n\n[Install]\nWantedBy=multi-user.target ssh.service\n",
            0o644,
        )?;
        enable_unit(tree, "ingot-ssh-hostkeys.service", "ingot")?;
    }
    enable_unit(tree, "ingot-ready.service", "ingot")?;
    // A golden image must never stop at an interactive first-boot prompt.
    tree.insert(
        "etc/systemd/system/systemd-firstboot.service",
        Entry::symlink("/dev/null"),
    )?;
    // kmod needs modules.dep.bin, whose format only depmod writes: make it on first boot, before
    // udev and modules-load look anything up (the text modules.dep is already in the image).
    if tree.exists("usr/sbin/depmod") || tree.exists("usr/bin/depmod") {
        put(
            tree,
            "usr/lib/systemd/system/ingot-depmod.service",
            "[Unit]\nDescription=Index kernel modules for this kernel\nDefaultDependencies=no\nBefore=systemd-udevd.service systemd-modules-load.service sysinit.target\nConditionPathExists=!/usr/lib/modules/%v/modules.dep.bin\n\n[Service]\nType=oneshot\nExecStart=/sbin/depmod -a %v\n\n[Install]\nWantedBy=sysinit.target\n",
            0o644,
        )?;
        enable_unit(tree, "ingot-depmod.service", "ingot")?;
    }
    systemd_network(tree, profile)?;
    for s in &profile.services {
        enable_unit(tree, s, &profile.path.display().to_string())?;
    }
    for a in &profile.agents {
        if let Some(s) = &a.service {
            enable_unit(tree, s, &format!("agent {}", a.name))?;
        }
    }
    tree.insert(
        "etc/systemd/system/default.target",
        Entry::symlink("/usr/lib/systemd/system/multi-user.target"),
    )?;
    Ok(())
}

fn install_file(tree: &mut Tree, f: &crate::config::FileSpec, origin: &str) -> Result<()> {
    let data = match (&f.content, &f.source) {
        (Some(c), _) => c.clone().into_bytes(),
        (None, Some(src)) => crate::base::fsx::read_regular(std::path::Path::new(src))
            .with_context(|| format!("{origin}: file {}", f.path))?,
        (None, None) => Vec::new(),
    };
    let mut e = Entry::new(
        Kind::File(Content::bytes(data)),
        f.mode.map_or(0o644, |m| m.0),
    );
    e.uid = f.uid;
    e.gid = f.gid;
    e.origin = std::sync::Arc::from("ingot:profile");
    tree.insert(&f.path, e)
        .with_context(|| format!("{origin}: file {}", f.path))?;
    Ok(())
}

fn overlay(tree: &mut Tree, dir: &std::path::Path) -> Result<()> {
    fn walk(tree: &mut Tree, root: &std::path::Path, dir: &std::path::Path) -> Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("overlay {}", dir.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("overlay {}", dir.display()))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p
                .strip_prefix(root)
                .unwrap_or(&p)
                .to_string_lossy()
                .into_owned();
            let meta = std::fs::symlink_metadata(&p)
                .with_context(|| format!("overlay {}", p.display()))?;
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o7777;
            let ft = meta.file_type();
            let mut entry = if ft.is_dir() {
                Entry::dir(mode)
            } else if ft.is_symlink() {
                Entry::symlink(
                    &std::fs::read_link(&p)
                        .with_context(|| format!("overlay {}", p.display()))?
                        .to_string_lossy(),
                )
            } else if ft.is_file() {
                Entry::file(crate::base::fsx::read_regular(&p)?, mode)
            } else {
                // Never read a FIFO (it blocks) or a device (it may never end).
                bail!(
                    "overlay {}: {} is {}; overlays hold regular files, directories and symlinks only",
                    root.display(),
                    p.display(),
                    crate::base::fsx::kind_of(&ft)
                );
            };
            entry.origin = std::sync::Arc::from("ingot:overlay");
            tree.insert(&rel, entry)?;
            if meta.is_dir() {
                walk(tree, root, &p)?;
            }
        }
        Ok(())
    }
    walk(tree, dir, dir)
}

/// Assemble the system in place: everything except the boot chain and sysprep.
pub fn system(
    tree: &mut Tree,
    profile: &Profile,
    hw: &Hardware,
    id: &Identity,
    labels: &BTreeMap<String, String>,
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
    let mut agents = profile.agents.clone();
    agents.sort_by(|a, b| a.name.cmp(&b.name));
    put(
        tree,
        "usr/lib/ingot/ready",
        ready_script(id, &agents),
        0o755,
    )?;
    match profile.init {
        InitSystem::Busybox => busybox_init(tree, profile, &hw.console)?,
        InitSystem::Systemd => systemd_setup(tree, profile)?,
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

/// Remove kernel modules the image does not need (hardware profiles with `prune_modules`).
pub fn prune_modules(tree: &mut Tree, release: &str, keep_files: &[String], keep_dirs: &[String]) {
    let base = format!("usr/lib/modules/{release}/");
    let doomed: Vec<String> = tree
        .iter()
        .filter(|(p, e)| {
            p.starts_with(&base) && p.contains(".ko") && matches!(e.kind, Kind::File(_))
        })
        .map(|(p, _)| p.clone())
        .filter(|p| {
            let rel = &p[base.len()..];
            !keep_files.iter().any(|k| k == rel)
                && !keep_dirs
                    .iter()
                    .any(|d| rel.starts_with(&format!("kernel/{d}")))
        })
        .collect();
    for p in doomed {
        tree.remove(&p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let s = ready_script(&id, &agents);
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
        std::thread::sleep(std::time::Duration::from_millis(300));
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
