//! What the image's packages' `postinst` certainly do on a first install, evaluated against
//! the tree being assembled (see `packages::script`): a file test or `command -v` is what the
//! image answers, `dpkg-statoverride --list` what the scripts record. Each package's commands
//! go, in dpkg's configure order (`packages::configure_order`), to the parts that stand in for
//! the tools they run: ucf, apache2's helpers, the plain file commands, `dpkg-statoverride
//! --add` and `adduser --system`. What makes a machine's identity (ssl-cert's snakeoil key) is
//! left to its first boot.

use std::collections::BTreeSet;

use anyhow::Result;

use super::{apache, commands, paths, statoverride, ucf, Postinst, Scripts};
use crate::packages::accounts::Account;
use crate::tree::Tree;

/// ssl-cert's self-signed certificate and its private key, which its postinst makes with
/// `make-ssl-cert generate-default-snakeoil`: a machine's own identity, so each machine makes
/// them at its first boot (`ingot-snakeoil.service`, written by `firstboot::units`) and
/// the image never holds them.
pub(super) const SNAKEOIL: [&str; 2] = [
    "/etc/ssl/certs/ssl-cert-snakeoil.pem",
    "/etc/ssl/private/ssl-cert-snakeoil.key",
];

/// bind9's rndc key, which its postinst makes with `rndc-confgen -a`: a shared secret of the
/// machine's own, made at its first boot (`ingot-bind9-rndc-key.service`) with the owner and
/// mode the script then gives it.
pub(super) const RNDC_KEY: &str = "/etc/bind/rndc.key";

/// The files `ran` makes that are left to the machine's first boot (`firstboot`), in an image
/// that makes them there. Scripts configured after it see them as there (dovecot links its
/// certificate to them, postfix turns TLS on); in one that does not (a busybox image), they
/// are not, and nothing links to files that never come.
fn first_boot_files(tree: &Tree, ran: &[Vec<String>], systemd: bool) -> Vec<&'static str> {
    let ran_tool = |tool: &str, arg: &str| {
        ran.iter()
            .any(|c| c.first().is_some_and(|t| t == tool) && c.iter().any(|a| a == arg))
    };
    let mut out = Vec::new();
    if super::firstboot::makes_snakeoil(tree, systemd)
        && ran_tool("make-ssl-cert", "generate-default-snakeoil")
    {
        out.extend(SNAKEOIL);
    }
    if super::firstboot::makes_rndc_key(tree, systemd) && ran_tool("rndc-confgen", "-a") {
        out.push(RNDC_KEY);
    }
    out
}

/// The commands without the operands that are files first boot makes: what a script does to
/// them (bind9 chowns its rndc key) the first-boot unit does, and a `chgrp` naming one of them
/// and a directory still changes the directory.
fn without_first_boot_files(ran: Vec<Vec<String>>, later: &BTreeSet<&str>) -> Vec<Vec<String>> {
    ran.into_iter()
        .filter_map(|c| {
            if !matches!(
                c.first().map(String::as_str),
                Some("chown" | "chgrp" | "chmod")
            ) {
                return Some(c);
            }
            let paths = c[1..].iter().filter(|a| a.starts_with('/')).count();
            let kept: Vec<String> = c
                .into_iter()
                .enumerate()
                .filter(|(i, a)| *i == 0 || !later.contains(a.as_str()))
                .map(|(_, a)| a)
                .collect();
            let left = kept[1..].iter().filter(|a| a.starts_with('/')).count();
            (left > 0 || paths == 0).then_some(kept)
        })
        .collect()
}

/// The commands `p` certainly runs, with the tree as it is now and the files first boot
/// will make (`later`).
fn evaluate(
    tree: &Tree,
    scripts: &Scripts,
    p: &Postinst,
    later: &BTreeSet<&str>,
) -> Vec<Vec<String>> {
    crate::packages::script::first_configure(&p.script, &p.debconf, &|path, op| {
        if later.contains(path) {
            // A regular, non-empty file, as the tool makes it, running as root.
            return match op {
                'e' | 'f' | 's' | 'r' | 'w' | 'R' => Some(true),
                'Q' => None,
                _ => Some(false),
            };
        }
        if op == 'o' {
            Some(
                scripts
                    .statoverrides
                    .iter()
                    .any(|o| o.recorded && o.path == path),
            )
        } else {
            paths::test(tree, path, op)
        }
    })
}

/// The system accounts to make: those the readers found, then those a script makes under a
/// name it takes from a variable (redis-tools' `adduser --system ... ${USER}`).
pub(super) fn accounts(tree: &Tree, scripts: &Scripts, systemd: bool) -> Vec<Account> {
    let mut out = scripts.accounts.clone();
    let mut later = BTreeSet::new();
    for p in &scripts.postinsts {
        let ran = evaluate(tree, scripts, p, &later);
        later.extend(first_boot_files(tree, &ran, systemd));
        for a in crate::packages::accounts::from_commands(ran) {
            if !out.iter().any(|b| b.name == a.name && b.user == a.user) {
                out.push(a);
            }
        }
    }
    out
}

/// Do what the scripts do once the accounts exist; the owners, groups and modes they set
/// (the readers' and `dpkg-statoverride --add` of a path named by a variable, redis-server's
/// `${CONFFILE}`) come last, after ucf has copied the files some of them are for (chrony's
/// keys). Returns the units the scripts enable with `deb-systemd-helper enable`, each with
/// its package: the image starts only what its profile names, so these are reported, not
/// enabled.
pub(super) fn apply(
    tree: &mut Tree,
    scripts: &Scripts,
    systemd: bool,
) -> Result<Vec<(String, String)>> {
    let mut overrides = scripts.statoverrides.clone();
    let mut enabled = Vec::new();
    let mut later = BTreeSet::new();
    for p in &scripts.postinsts {
        let ran = evaluate(tree, scripts, p, &later);
        later.extend(first_boot_files(tree, &ran, systemd));
        let ran = without_first_boot_files(ran, &later);
        for c in &ran {
            if c.first().is_some_and(|t| t == "deb-systemd-helper")
                && c.get(1).is_some_and(|a| a == "enable")
            {
                enabled.extend(c[2..].iter().map(|u| (p.package.clone(), u.clone())));
            }
        }
        ucf::apply(tree, &ucf::files(&ran))?;
        apache::apply(tree, &p.package, &ran)?;
        commands::apply(tree, &p.package, &ran)?;
        for o in crate::packages::statoverride::from_commands(&ran) {
            if !overrides.iter().any(|x| x.path == o.path) {
                overrides.push(o);
            }
        }
    }
    ucf::apply(tree, &ucf::through_a_temporary(tree))?;
    statoverride::apply(tree, &overrides)?;
    Ok(enabled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_script_does_to_a_first_boot_file_is_left_to_first_boot() {
        let c = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
        let later: BTreeSet<&str> = [RNDC_KEY].into_iter().collect();
        let ran = vec![
            c("chown bind /etc/bind/rndc.key"),
            c("chgrp bind /etc/bind/rndc.key /var/cache/bind"),
            c("chmod g+r /etc/bind/rndc.key"),
            c("chgrp bind /etc/bind"),
            c("cp /etc/bind/rndc.key /tmp/x"),
        ];
        let kept: Vec<String> = without_first_boot_files(ran, &later)
            .iter()
            .map(|c| c.join(" "))
            .collect();
        assert_eq!(
            kept,
            [
                "chgrp bind /var/cache/bind",
                "chgrp bind /etc/bind",
                // Not a command on the file's owner or mode: left to do (or not) as before.
                "cp /etc/bind/rndc.key /tmp/x"
            ]
        );
    }
}
