//! Init: busybox init (inittab, rcS starting the agents, DHCP) or systemd (units enabled
//! the way `systemctl enable` would, networkd, first-boot units), and the check-in script that
//! prints the INGOT-READY line. Every value written into a script is checked (names) or
//! quoted (`shell_quote`).

use anyhow::{bail, Context, Result};

use super::put;
use crate::base::identity::Identity;
use crate::config::{Agent, Profile};
use crate::tree::{Entry, Tree};

/// Makes the SSH host keys of the types it is given that are missing, each renamed into place
/// only when ssh-keygen has written it whole (runs on the device: `device/`).
const SSH_HOSTKEYS: &str = include_str!("../../device/ingot-ssh-hostkeys");

/// Enable a systemd unit from its `[Install]` section (WantedBy/RequiredBy/Alias/Also).
pub fn enable_unit(tree: &mut Tree, unit: &str, origin: &str) -> Result<()> {
    enable_unit_once(tree, unit, origin, &mut Vec::new())
}

/// `enable_unit`, remembering the units already seen so that `Also=` cycles end.
pub(super) fn enable_unit_once(
    tree: &mut Tree,
    unit: &str,
    origin: &str,
    seen: &mut Vec<String>,
) -> Result<()> {
    if seen.iter().any(|u| u == unit) {
        return Ok(());
    }
    seen.push(unit.to_string());
    // An instance (`serial-getty@ttyS1.service`) is enabled from its template's file, as
    // systemctl does: the links carry the instance's name and point at the template.
    let file = template_of(unit).unwrap_or_else(|| unit.to_string());
    let (path, text) = unit_file(tree, &file)
        .with_context(|| format!("{origin}: service `{unit}` has no unit file in the image"))?;
    // A template named alone is enabled for its DefaultInstance=.
    let mut unit = unit.to_string();
    if let Some((prefix, suffix)) = unit.split_once("@.") {
        let instance = install_values(&text, "DefaultInstance").into_iter().next();
        let instance = instance.with_context(|| {
            format!("{origin}: `{unit}` is a template without DefaultInstance=; name an instance, like {prefix}@NAME.{suffix}")
        })?;
        unit = format!("{prefix}@{instance}.{suffix}");
    }
    let unit = unit.as_str();
    let mut any = false;
    for (k, target) in install_entries(&text) {
        match k.as_str() {
            "WantedBy" | "RequiredBy" => {
                let kind = if k == "WantedBy" { "wants" } else { "requires" };
                tree.insert(
                    &format!("etc/systemd/system/{target}.{kind}/{unit}"),
                    Entry::symlink(&format!("/{path}")),
                )?;
                any = true;
            }
            "Alias" => {
                // A template's alias, for an instance, names that instance.
                let target = match (unit.split_once('@'), target.split_once("@.")) {
                    (Some((_, rest)), Some((p, sfx))) => match rest.rsplit_once('.') {
                        Some((inst, _)) => format!("{p}@{inst}.{sfx}"),
                        None => target.clone(),
                    },
                    _ => target.clone(),
                };
                tree.insert(
                    &format!("etc/systemd/system/{target}"),
                    Entry::symlink(&format!("/{path}")),
                )?;
                any = true;
            }
            "Also" => enable_unit_once(tree, &target, origin, seen)?,
            _ => {}
        }
    }
    if !any {
        bail!("{origin}: unit `{unit}` has no [Install] section to enable it by");
    }
    Ok(())
}

/// Where unit files are, the administrator's first.
pub(super) const UNIT_FILE_DIRS: [&str; 2] = ["etc/systemd/system", "usr/lib/systemd/system"];

/// The template an instance's name comes from (`a@b.service` → `a@.service`); `None` for a
/// name that is not an instance.
pub(super) fn template_of(unit: &str) -> Option<String> {
    let (prefix, rest) = unit.split_once('@')?;
    let (instance, suffix) = rest.rsplit_once('.')?;
    (!instance.is_empty()).then(|| format!("{prefix}@.{suffix}"))
}

/// The file of a unit (by its file name) from the first directory that has it: its path and
/// text.
pub(super) fn unit_file(tree: &Tree, name: &str) -> Option<(String, String)> {
    UNIT_FILE_DIRS.iter().find_map(|d| {
        let p = format!("{d}/{name}");
        tree.read(&p)
            .map(|t| (p, String::from_utf8_lossy(&t).into_owned()))
    })
}

/// The settings of a unit's `[Install]` section in order, one (key, word) per word of a value.
fn install_entries(text: &str) -> Vec<(String, String)> {
    let mut in_install = false;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_install = line == "[Install]";
        } else if let Some((k, v)) = line.split_once('=').filter(|_| in_install) {
            out.extend(
                v.split_whitespace()
                    .map(|w| (k.trim().to_string(), w.to_string())),
            );
        }
    }
    out
}

/// The values of one key of a unit's `[Install]` section, words split.
fn install_values(text: &str, key: &str) -> Vec<String> {
    install_entries(text)
        .into_iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v)
        .collect()
}

pub(super) fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The check-in agent: waits for every agent's probe (all at once, so the slowest decides) and
/// prints the one `INGOT-READY` line, agents in the order given (assemble passes them sorted by name).
/// On an A/B disk (`ab`), the ready check also decides the boot: `ingot-update boot-result`
/// blesses a boot whose agents are all ready (and adds `slot=` and, after a fallback,
/// `rollback=1` to the line), or reboots one that is not while its entry has tries left.
///
/// A systemd image (`units` given: the profile's `services`) also reports the units that had
/// failed when the check began (the units it is ordered after have ended by then):
/// `failed=` those the profile starts (a boot test fails on them, and on an A/B disk they make
/// the boot bad like a failed probe), `degraded=` any other (reported only). Both are left out
/// when empty. A unit of the profile's that systemd restarted (`NRestarts`) counts as failed:
/// a service that crashes and is restarted in a loop is not always `failed` when listed.
pub(super) fn ready_script(
    id: &Identity,
    agents: &[Agent],
    ab: bool,
    units: Option<&[String]>,
) -> String {
    let mut s = String::from(
        "#!/bin/sh\n# Ingot check-in agent: waits for each agent's readiness probe, then prints one line\n# to the console for boot tests and fleet tooling.\nPATH=/usr/sbin:/usr/bin:/sbin:/bin\nread -r start _ < /proc/uptime\n# now: the uptime in hundredths of a second, without a subshell.\nnow() { read -r u _ < /proc/uptime; now=$((${u%.*} * 100 + 1${u#*.} - 100)); }\nprobe() {\n  # For t seconds of the machine's clock, the probe's own run time included (one poll can\n  # take a second on an emulated machine): twenty polls a second for the first half second\n  # (most agents are up by then), then four: every poll starts processes, and on a slow\n  # machine a tighter loop takes the CPU the agent still starting needs. A systemd unit the\n  # agent names that has failed (a restarting one has not) ends the wait: asked once a\n  # second after the first half second, each question costing a systemctl run.\n  t=$1 unit=$3\n  now; end=$((now + t * 100))\n  i=0\n  while :; do\n    if sh -c \"$2\" >/dev/null 2>&1; then read -r u _ < /proc/uptime; echo \"ok $u\"; return; fi\n    if [ -n \"$unit\" ] && [ \"$i\" -ge 10 ] && [ $((i % 4)) = 2 ] && systemctl is-failed --quiet \"$unit\" 2>/dev/null; then break; fi\n    now; [ \"$now\" -lt \"$end\" ] || break\n    if [ \"$i\" -lt 10 ]; then p=0.05; else p=0.25; fi\n    sleep \"$p\" 2>/dev/null || sleep 1\n    i=$((i + 1))\n  done\n  echo fail\n}\nd=${INGOT_READY_DIR:-/run/ingot-ready}\nrm -rf \"$d\"; mkdir -p \"$d\"\n",
    );
    for (n, a) in agents.iter().enumerate() {
        s.push_str(&format!(
            "probe {} {}{} > \"$d/{n}\" &\n",
            a.probe_timeout,
            shell_quote(&a.probe),
            // Only a systemd image's service is a unit (a busybox image's is a command).
            match (&a.service, units) {
                (Some(u), Some(_)) => format!(" {}", shell_quote(u)),
                _ => String::new(),
            }
        ));
    }
    if units.is_some() {
        // Listed while the probes run (its CPU is spent while they mostly sleep): the units the
        // ready check comes after (multi-user.target and what it waits for) have ended by now.
        s.push_str("systemctl list-units --state=failed --plain --no-legend --no-pager > \"$d/units\" 2>/dev/null &\n");
    }
    let wanted_units = units.filter(|w| !w.is_empty());
    if let Some(wanted) = wanted_units {
        // How often systemd restarted each of the profile's units: one that crashes and is
        // restarted (Restart=) can be between two starts when listed, and not `failed`.
        let quoted: Vec<String> = wanted.iter().map(|u| shell_quote(u)).collect();
        s.push_str(&format!(
            "systemctl show -p Id -p NRestarts --no-pager {} > \"$d/restarts\" 2>/dev/null &\n",
            quoted.join(" ")
        ));
    }
    s.push_str("wait\nagents=\"\"\nprobes=\"\"\n");
    for (n, a) in agents.iter().enumerate() {
        s.push_str(&format!(
            "read -r r t < \"$d/{n}\"; agents=\"$agents${{agents:+,}}{0}:${{r:-fail}}\"; [ -n \"$t\" ] && probes=\"$probes${{probes:+,}}{0}:$t\"\n",
            a.name
        ));
    }
    let mut units_out = "";
    if let Some(wanted) = units {
        // One systemctl call (above): on an emulated machine each costs tens of milliseconds.
        let list: Vec<String> = wanted.iter().map(|u| format!(",{u},")).collect();
        s.push_str(&format!(
            "# Failed units: the profile's own ({}), and the rest.\nwanted={}\nfailed=\"\"; degraded=\"\"\nwhile read -r u _; do\n  case $wanted in\n    *\",$u,\"*) failed=\"$failed${{failed:+,}}$u\" ;;\n    *) degraded=\"$degraded${{degraded:+,}}$u\" ;;\n  esac\ndone < \"$d/units\"\n",
            if wanted.is_empty() { "none".to_string() } else { wanted.join(" ") },
            shell_quote(&list.concat()),
        ));
        if wanted_units.is_some() {
            s.push_str("# ... and those of its own that systemd had to restart (a block per unit).\nid=\"\"; n=\"\"\nrestarted() {\n  if [ -n \"$id\" ] && [ \"${n:-0}\" != 0 ]; then\n    case \",$failed,\" in *\",$id,\"*) ;; *) failed=\"$failed${failed:+,}$id\" ;; esac\n  fi\n  id=\"\"; n=\"\"\n}\nwhile read -r l; do\n  case $l in\n    Id=*) id=${l#Id=} ;;\n    NRestarts=*) n=${l#NRestarts=} ;;\n    \"\") restarted ;;\n  esac\ndone < \"$d/restarts\"\nrestarted\n");
        }
        units_out = "${failed:+ failed=$failed}${degraded:+ degraded=$degraded}";
    }
    s.push_str("rm -rf \"$d\"\n");
    let mut ota = "";
    if ab {
        s.push_str("case \"$agents\" in *:fail*) verdict=fail ;; *) verdict=ok ;; esac\n");
        if units.is_some() {
            s.push_str("[ -z \"$failed\" ] || verdict=fail\n");
        }
        s.push_str("# Blesses a good boot; reboots a bad one that has tries left (then nothing below runs).\nota=$(/usr/sbin/ingot-update boot-result \"$verdict\" 2>/dev/console) || ota=\"\"\n");
        ota = " $ota";
    }
    s.push_str(&format!(
        "mid=$(cat /etc/machine-id 2>/dev/null)\nread -r up _ < /proc/uptime\necho \"INGOT-READY image={} version={} machine-id=$mid agents=$agents{ota} uptime=$up start=$start probes=$probes{units_out}\" > \"${{INGOT_CONSOLE:-/dev/console}}\"\n",
        id.name, id.version
    ));
    s
}

pub(super) const BUSYBOX_APPLETS: &[&str] = &[
    "sh", "ash", "cat", "chmod", "chown", "cp", "cut", "date", "dd", "df", "dmesg", "echo", "env",
    "false", "grep", "head", "hostname", "ifconfig", "ip", "kill", "ln", "ls", "mkdir", "mknod",
    "mount", "mv", "ps", "pwd", "rm", "rmdir", "sed", "sleep", "sort", "sync", "tail", "tar",
    "test", "[", "touch", "tr", "true", "umount", "uname", "vi", "wc", "wget", "which", "awk",
    "find", "xargs", "less", "more", "uptime", "free", "top", "id", "stat", "printf", "seq", "tee",
    "udhcpc", "nc",
];
pub(super) const BUSYBOX_SBIN: &[&str] = &[
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

/// busybox init: inittab, rcS starting the DHCP client, agents and the ready check. On an A/B
/// disk (`ab`) the root stays read-only: `ingot-update boot-setup` mounts `/data` and starts
/// the watchdog instead of the remount, and after the ready check `ingot-update auto` looks for
/// an update on an extra disk.
pub(super) fn busybox_init(
    tree: &mut Tree,
    profile: &Profile,
    console: &str,
    ab: bool,
) -> Result<()> {
    let bb = ["usr/bin/busybox", "bin/busybox"]
        .into_iter()
        .find(|p| tree.exists(p))
        .context("busybox init needs busybox (or busybox-static) in the package list")?;
    let target = format!("/{}", tree.resolve(bb)?);
    let extra: (&[&str], &[&str]) = if ab {
        (super::ota::OTA_APPLETS, super::ota::OTA_SBIN)
    } else {
        (&[], &[])
    };
    for a in BUSYBOX_APPLETS.iter().chain(extra.0) {
        let p = format!("usr/bin/{a}");
        if !tree.exists(&p) {
            tree.insert(&p, Entry::symlink(&target))?;
        }
    }
    for a in BUSYBOX_SBIN.iter().chain(extra.1) {
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
        "#!/bin/sh\n# Written by ingot: bring the system up, start the agents, check in.\nPATH=/usr/sbin:/usr/bin:/sbin:/bin\nmount -t proc proc /proc\nmount -t sysfs sysfs /sys\nmount -t devtmpfs devtmpfs /dev 2>/dev/null\nmkdir -p /dev/pts /run /tmp\nmount -t devpts devpts /dev/pts\nmount -t tmpfs -o mode=0755 tmpfs /run\n# /var/lock leads here (base-files makes it a link).\nmkdir -m 1777 /run/lock\nmount -t tmpfs -o mode=1777 tmpfs /tmp\n",
    );
    if ab {
        rcs.push_str("# A/B slot: the root stays read-only; /data, the machine id and the watchdog.\n/usr/sbin/ingot-update boot-setup\n");
    } else {
        rcs.push_str("mount -o remount,rw /\n");
    }
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
    if ab {
        rcs.push_str("( /usr/lib/ingot/ready; /usr/sbin/ingot-update auto ) </dev/null >/dev/console 2>&1 &\n");
    } else {
        rcs.push_str("/usr/lib/ingot/ready &\n");
    }
    put(tree, "etc/init.d/rcS", rcs, 0o755)?;
    tree.insert("sbin/init", Entry::symlink(&target))
        .map(|_| ())?;
    Ok(())
}

/// busybox `udhcpc` calls this with the lease in its environment (`ip`, `mask` as a prefix
/// length, `router`, `dns`, `domain`).
pub(super) const UDHCPC_HOOK: &str = r#"#!/bin/sh
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
pub(super) fn resolv_conf_link(tree: &mut Tree, target: &str) -> Result<()> {
    if tree.get("etc/resolv.conf").is_none() {
        tree.insert("etc/resolv.conf", Entry::symlink(target))?;
    }
    Ok(())
}

/// systemd images: DHCP on every Ethernet interface through systemd-networkd, names through
/// systemd-resolved when the profile installs it.
/// With `hashed_store` (Ingot made `/etc/ssl/certs` with its hash links), systemd-resolved
/// finds DNS-over-TLS issuers there instead of parsing the bundle at every start.
pub(super) fn systemd_network(
    tree: &mut Tree,
    profile: &Profile,
    hashed_store: bool,
) -> Result<()> {
    if !profile.network.dhcp {
        return Ok(());
    }
    if !tree.exists("usr/lib/systemd/systemd-networkd") {
        return Err(crate::config::rule_at(
            &profile.files(),
            Some("[network]"),
            "dhcp",
            "[network] dhcp needs systemd-networkd (from the `systemd` package) in the image; set `dhcp = false` to configure the network yourself",
        )
        .into());
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
        if hashed_store {
            // resolved 252 sets up DNS-over-TLS at start whether a server uses it or not, and
            // OpenSSL then parses all of ca-certificates.crt (0.6-0.9 s of CPU in a vm-base
            // TCG boot, while sysinit.target waits for resolved). With no bundle file it looks
            // an issuer up in /etc/ssl/certs by subject hash when it verifies a server.
            put(
                tree,
                "usr/lib/systemd/system/systemd-resolved.service.d/ingot-trust-store.conf",
                "# Written by ingot: certificates from /etc/ssl/certs/HASH.N, read when needed.\n[Service]\nEnvironment=SSL_CERT_FILE=/dev/null\n",
                0o644,
            )?;
        }
    }
    Ok(())
}

/// The note a systemd image without e2fsprogs gets: its root file system is ext4, for which
/// it then has no e2fsck (systemd-fsck's tool when the root is mounted read-only, and the
/// administrator's), and which cloud-init's resizefs cannot grow. Debian 12 pulled e2fsprogs
/// in at priority `required`; Debian 13 lowered it to `important`.
pub(super) fn no_fsck_note(tree: &Tree, profile: &Profile) -> Option<String> {
    if tree.exists("usr/sbin/e2fsck") || tree.exists("sbin/e2fsck") {
        return None;
    }
    let grow = if tree.exists("usr/bin/cloud-init") {
        ", nor cloud-init grow it to the disk"
    } else {
        ""
    };
    Some(format!(
        "note: {}: the image has no e2fsprogs: no e2fsck for its ext4 root{grow} (nothing here depends on it, and Debian 13 no longer has it at priority required; add it to [packages] include)",
        profile.path.display()
    ))
}

/// systemd: units enabled the way `systemctl enable` would, the ready check, first-boot units.
/// On an A/B disk (`ab`) the ready check is ordered before `boot-complete.target` and decides
/// the boot (blessing it, or rebooting while the entry has tries left), then `ingot-update
/// auto` looks for an update; `ingot-ota-setup.service` starts the watchdog.
pub(super) fn systemd_setup(
    tree: &mut Tree,
    profile: &Profile,
    cmdline: &str,
    ab: bool,
    users_current: bool,
    hashed_store: bool,
) -> Result<()> {
    if !tree.exists("usr/lib/systemd/systemd") {
        return Err(crate::config::rule_at(
            &profile.files(),
            None,
            "init",
            "init = \"systemd\" needs the `systemd` package in the package list",
        )
        .into());
    }
    if !tree.exists("sbin/init") {
        tree.insert("sbin/init", Entry::symlink("/usr/lib/systemd/systemd"))?;
    }
    if let Some(n) = no_fsck_note(tree, profile) {
        eprintln!("{n}");
    }
    let (before, auto) = if ab {
        (
            "Before=boot-complete.target\n",
            "ExecStart=-/bin/sh -c '/usr/sbin/ingot-update auto </dev/null >/dev/console 2>&1'\n",
        )
    } else {
        ("", "")
    };
    put(
        tree,
        "usr/lib/systemd/system/ingot-ready.service",
        format!("[Unit]\nDescription=Ingot check-in: report agents ready on the console\nAfter=multi-user.target\n{before}\n[Service]\nType=oneshot\nExecStart=/usr/lib/ingot/ready\n{auto}StandardOutput=null\nRemainAfterExit=yes\n\n[Install]\nWantedBy=multi-user.target\n"),
        0o644,
    )?;
    if ab {
        put(
            tree,
            "usr/lib/systemd/system/ingot-ota-setup.service",
            "[Unit]\nDescription=Ingot A/B: data partition, machine id and watchdog\nAfter=local-fs.target\n\n[Service]\nType=oneshot\nExecStart=/usr/sbin/ingot-update boot-setup\nStandardError=journal+console\nRemainAfterExit=yes\n\n[Install]\nWantedBy=multi-user.target\n",
            0o644,
        )?;
        enable_unit(tree, "ingot-ota-setup.service", "ingot")?;
    }
    // ssh host keys are made at first boot, never baked in (Debian's ssh.service does not).
    // Ed25519 and ECDSA keys take milliseconds and come before sshd starts; the RSA key
    // (3072 bits: about 9 s of a TCG guest's first boot, on its critical path when it came
    // first) follows once the ready line is out (made while the last units and the agents'
    // probes started, it still took their CPU: x86_64 TCG runs every vCPU on one host
    // thread), and sshd then reloads to offer it too. A key file is renamed
    // into place only when whole, so a power cut leaves no empty key that would stop either.
    // Both come after cloud-init's network stage (`cloud-init.service` up to cloud-init 24.2,
    // Debian 12's; `cloud-init-network.service` from 24.3, Debian 13's), which makes the keys
    // itself where it runs (its ssh module deletes and remakes them): they then only fill in
    // what it left out, and never write a key while it deletes them.
    // When it left nothing out, the unit's conditions skip it without starting a shell: run
    // anyway, it held sshd back by 0.4-0.7 s of a TCG guest's path to ready (vm-cloud).
    if tree.exists("usr/sbin/sshd") {
        put(tree, "usr/lib/ingot/ssh-hostkeys", SSH_HOSTKEYS, 0o755)?;
        let types = ["ed25519", "ecdsa"];
        let missing: String = types
            .iter()
            .flat_map(|t| {
                let k = format!("/etc/ssh/ssh_host_{t}_key");
                [
                    format!("ConditionFileNotEmpty=|!{k}\n"),
                    format!("ConditionFileNotEmpty=|!{k}.pub\n"),
                ]
            })
            .collect();
        put(
            tree,
            "usr/lib/systemd/system/ingot-ssh-hostkeys.service",
            format!("[Unit]\nDescription=Create SSH host keys for this machine (Ed25519, ECDSA)\nAfter=cloud-init.service cloud-init-network.service\nBefore=ssh.service\n{missing}\n[Service]\nType=oneshot\nExecStart=/usr/lib/ingot/ssh-hostkeys {}\n\n[Install]\nWantedBy=multi-user.target ssh.service\n", types.join(" ")),
            0o644,
        )?;
        // No default dependencies: multi-user.target does not wait for the RSA key (which
        // waits for the ready line); sshd serves the other two meanwhile.
        put(
            tree,
            "usr/lib/systemd/system/ingot-ssh-hostkey-rsa.service",
            "[Unit]\nDescription=Create this machine's RSA SSH host key, then reload sshd\nDefaultDependencies=no\nAfter=ssh.service sysinit.target cloud-init.service cloud-init-network.service ingot-ready.service\nConflicts=shutdown.target\nBefore=shutdown.target\nConditionPathExists=!/etc/ssh/ssh_host_rsa_key\n\n[Service]\nType=oneshot\nExecStart=/usr/lib/ingot/ssh-hostkeys rsa\nExecStartPost=-/bin/systemctl try-reload-or-restart ssh.service\n\n[Install]\nWantedBy=multi-user.target\n",
            0o644,
        )?;
        enable_unit(tree, "ingot-ssh-hostkeys.service", "ingot")?;
        enable_unit(tree, "ingot-ssh-hostkey-rsa.service", "ingot")?;
        // Debian 13's openssh-server has its own first-boot `ssh-keygen -A`, which cloud-init
        // 25's network stage wants: it made the RSA key before sshd started (3.7 s of a TCG
        // vm-cloud's path to ready). Host keys are the units' above; a profile that names it
        // in `services` keeps it.
        if unit_file(tree, "sshd-keygen.service").is_some()
            && !profile.services.iter().any(|s| s == "sshd-keygen.service")
        {
            tree.insert(
                "etc/systemd/system/sshd-keygen.service",
                Entry::symlink("/dev/null"),
            )?;
        }
    }
    // What each machine makes at its first boot (snakeoil, database clusters).
    super::firstboot::units(tree)?;
    enable_unit(tree, "ingot-ready.service", "ingot")?;
    // On its first boot (an empty machine id) systemd applies the preset policy, and
    // Debian's enables every unit a package installs: timers (apt-daily, e2scrub_all,
    // fstrim, dpkg-db-backup), e2scrub_reap, getty@tty1, systemd-pstore, systemd-sysext.
    // What starts is the profile's decision (`services`, agents, and the units Ingot itself
    // enables above and below), so the first boot enables nothing more. The first-boot preset
    // only ever enables, so the units enabled here stay enabled.
    put(
        tree,
        "etc/systemd/system-preset/00-ingot.preset",
        "# Written by ingot: the image profile decides which units start (its `services`, its
# agents' services, and the units Ingot enables); the first boot enables nothing more.
disable *
",
        0o644,
    )?;
    // A golden image must never stop at an interactive first-boot prompt.
    tree.insert(
        "etc/systemd/system/systemd-firstboot.service",
        Entry::symlink("/dev/null"),
    )?;
    super::idle::mask_idle_generators(tree, cmdline)?;
    if users_current {
        super::idle::updated_stamps(tree)?;
    }
    // kmod's binary indexes (modules.dep.bin and the rest) are made at build time
    // (`boot::kmod::binary_indexes`), so nothing indexes modules at first boot.
    systemd_network(tree, profile, hashed_store)?;
    for s in &profile.services {
        if let Some(e) = super::left_off::missing(tree, profile, "services", s) {
            return Err(e);
        }
        enable_unit(tree, s, &profile.path.display().to_string())?;
    }
    for a in &profile.agents {
        if let Some(s) = &a.service {
            if let Some(e) = super::left_off::missing(tree, profile, "service", s) {
                return Err(e);
            }
            enable_unit(tree, s, &format!("agent {}", a.name))?;
        }
    }
    let started: Vec<(String, String)> = profile
        .services
        .iter()
        .map(|s| (s.clone(), profile.path.display().to_string()))
        .chain(profile.agents.iter().filter_map(|a| {
            let s = a.service.as_ref()?;
            Some((s.clone(), format!("agent {}", a.name)))
        }))
        .collect();
    super::unit_accounts::check(tree, &started)?;
    super::idle::mask_idle_units(tree, cmdline, &profile.services)?;
    tree.insert(
        "etc/systemd/system/default.target",
        Entry::symlink("/usr/lib/systemd/system/multi-user.target"),
    )?;
    Ok(())
}
