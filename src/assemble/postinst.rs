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

/// The files `ran` makes that are left to the machine's first boot (`firstboot`), in an image
/// that makes them there. Scripts configured after it see them as there (dovecot links its
/// certificate to them, postfix turns TLS on); in one that does not (a busybox image), they
/// are not, and nothing links to files that never come.
fn first_boot_files(tree: &Tree, ran: &[Vec<String>], systemd: bool) -> &'static [&'static str] {
    let snakeoil = super::firstboot::makes_snakeoil(tree, systemd)
        && ran.iter().any(|c| {
            c.first().is_some_and(|t| t == "make-ssl-cert")
                && c.iter().any(|a| a == "generate-default-snakeoil")
        });
    if snakeoil {
        &SNAKEOIL
    } else {
        &[]
    }
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
            // A regular, non-empty file, as the tool makes it.
            return Some(matches!(op, 'e' | 'f' | 's' | 'r' | 'w'));
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
/// keys).
pub(super) fn apply(tree: &mut Tree, scripts: &Scripts, systemd: bool) -> Result<()> {
    let mut overrides = scripts.statoverrides.clone();
    let mut later = BTreeSet::new();
    for p in &scripts.postinsts {
        let ran = evaluate(tree, scripts, p, &later);
        later.extend(first_boot_files(tree, &ran, systemd));
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
    statoverride::apply(tree, &overrides)
}
