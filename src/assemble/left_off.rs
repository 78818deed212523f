//! The units a package's postinst enables on a Debian install (`deb-systemd-helper enable`)
//! that the image leaves off: a systemd image starts what its profile names (`services`,
//! agents) and Ingot's own units, nothing more. For the packages the profile asks for by name,
//! the build says which of their units that leaves off, so a user who added `apparmor` or
//! `fail2ban` is not left to find out on a machine that it never started. Only services are
//! named: a socket, timer or path unit a package enables is a way of starting one, and those
//! Ingot leaves off are deliberate (cloud-init's hotplug socket, whose udev hook would start
//! a Python process for each network device at boot; apt's and fstrim's timers).

use std::collections::BTreeSet;

use super::init::{template_of, unit_file};
use crate::config::Profile;
use crate::tree::{Kind, Tree};

/// Whether `unit` starts at boot in `tree`: linked from a `.wants`/`.requires` directory of
/// /etc or /usr/lib.
fn enabled(tree: &Tree, unit: &str) -> bool {
    tree.iter().any(|(path, e)| {
        let Some((dir, name)) = path.rsplit_once('/') else {
            return false;
        };
        name == unit
            && matches!(e.kind, Kind::Symlink(_))
            && (dir.ends_with(".wants") || dir.ends_with(".requires"))
            && (dir.starts_with("etc/systemd/system/")
                || dir.starts_with("usr/lib/systemd/system/")
                || dir.starts_with("lib/systemd/system/"))
    })
}

/// Masked on purpose (`/etc/systemd/system/UNIT -> /dev/null`): Ingot masks units that would
/// start only to find nothing to do.
fn masked(tree: &Tree, unit: &str) -> bool {
    matches!(
        tree.get(&format!("etc/systemd/system/{unit}")).map(|e| &e.kind),
        Some(Kind::Symlink(t)) if t == "/dev/null"
    )
}

/// Whether the image has a unit file of that name (a template's instance: its template's).
fn has_unit_file(tree: &Tree, unit: &str) -> bool {
    let file = template_of(unit).unwrap_or_else(|| unit.to_string());
    unit_file(tree, &file).is_some()
}

/// `(unit, package)` for each unit a package `asked` for by name enables on a Debian install
/// and the image does not start.
fn left_off(
    tree: &Tree,
    asked: &BTreeSet<&str>,
    by_packages: &[(String, String)],
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = by_packages
        .iter()
        .filter(|(package, unit)| {
            asked.contains(package.as_str())
                && unit.ends_with(".service")
                && has_unit_file(tree, unit)
                && !enabled(tree, unit)
                && !masked(tree, unit)
        })
        .map(|(package, unit)| (unit.clone(), package.clone()))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A unit the profile starts (`key`: `services`, or an agent's `service`) that the image has
/// no file for: bad input at the line that names it, with the nearest unit the image has.
pub(super) fn missing(
    tree: &Tree,
    profile: &Profile,
    key: &str,
    unit: &str,
) -> Option<anyhow::Error> {
    if has_unit_file(tree, unit) {
        return None;
    }
    let nearest = super::init::UNIT_FILE_DIRS
        .iter()
        .flat_map(|d| tree.children(d))
        .filter_map(|p| p.rsplit_once('/').map(|(_, n)| n))
        .map(|n| (strsim::jaro_winkler(unit, n), n))
        .filter(|(s, _)| *s > 0.9)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, n)| format!("; did you mean `{n}`?"))
        .unwrap_or_default();
    let field = if key == "services" {
        key
    } else {
        "agent.service"
    };
    let message = format!("{field}: `{unit}` has no unit file in the image{nearest}");
    let files = profile.files();
    let located = if key == "services" {
        crate::config::rule_at_item(&files, key, |i| i == unit, message.clone())
    } else {
        None
    };
    Some(
        located
            .unwrap_or_else(|| crate::config::rule_at_value(&files, key, unit, message))
            .into(),
    )
}

/// Print [`left_off`] as one build note (nothing when every such unit starts).
pub(super) fn report(tree: &Tree, profile: &Profile, by_packages: &[(String, String)]) {
    let asked: BTreeSet<&str> = profile
        .packages
        .include
        .iter()
        .chain(profile.agents.iter().flat_map(|a| a.packages.iter()))
        .map(String::as_str)
        .collect();
    let off = left_off(tree, &asked, by_packages);
    if off.is_empty() {
        return;
    }
    let list: Vec<String> = off.iter().map(|(u, p)| format!("{u} ({p})")).collect();
    eprintln!(
        "note: {}: services Debian's install of these packages enables, which this image does not start: {}; an image starts only its `services`, its agents' and Ingot's own units (add one to `services` to start it)",
        profile.path.display(),
        list.join(", ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Entry;

    #[test]
    fn units_of_asked_packages_that_nothing_starts_are_named() {
        let mut tree = Tree::new();
        for u in [
            "apparmor.service",
            "ssh.service",
            "apt-daily.timer",
            "fstrim.timer",
            "unbound-resolvconf.service",
            "getty@.service",
            "apparmor.socket",
        ] {
            tree.insert(
                &format!("usr/lib/systemd/system/{u}"),
                Entry::file("[Install]\nWantedBy=multi-user.target\n", 0o644),
            )
            .unwrap();
        }
        tree.insert(
            "etc/systemd/system/multi-user.target.wants/ssh.service",
            Entry::symlink("/usr/lib/systemd/system/ssh.service"),
        )
        .unwrap();
        tree.insert(
            "etc/systemd/system/unbound-resolvconf.service",
            Entry::symlink("/dev/null"),
        )
        .unwrap();
        let asked: BTreeSet<&str> = [
            "apparmor",
            "openssh-server",
            "util-linux",
            "systemd",
            "unbound",
        ]
        .into_iter()
        .collect();
        let by = |p: &str, u: &str| (p.to_string(), u.to_string());
        let enabled = [
            by("apparmor", "apparmor.service"),
            // Started: enabled by the profile.
            by("openssh-server", "ssh.service"),
            // Not asked for by name: a dependency's timers are the image's policy.
            by("apt", "apt-daily.timer"),
            // A timer: a way of starting a service, not one.
            by("util-linux", "fstrim.timer"),
            // Masked on purpose.
            by("unbound", "unbound-resolvconf.service"),
            // No unit file in the image.
            by("systemd", "systemd-gone.service"),
            by("systemd", "getty@tty1.service"),
            // A socket: a way of starting a service, not one.
            by("apparmor", "apparmor.socket"),
        ];
        assert_eq!(
            left_off(&tree, &asked, &enabled),
            [
                ("apparmor.service".to_string(), "apparmor".to_string()),
                ("getty@tty1.service".to_string(), "systemd".to_string()),
            ]
        );
    }
}
