//! What each machine makes at its first boot that a package's `postinst` makes on Debian by
//! running tools Ingot does not run at build time: ssl-cert's snakeoil certificate and key (a
//! machine's own identity), PostgreSQL's `main` cluster (postgresql-common's
//! `pg_createcluster`, which runs `initdb`; the cluster's system identifier is the machine's own
//! too), MariaDB's system tables (`mariadb-install-db`), bind9's rndc key (`rndc-confgen
//! -a`, a secret of the machine's own) and postfix's alias database (`newaliases`). A systemd
//! image gets one unit per
//! task, each running the package's own tool once and finding its result there on every later
//! boot. A busybox image gets none (and its scripts' later tests do not see the files as made).

use anyhow::Result;

use super::init::enable_unit;
use super::put;
use crate::tree::Tree;

/// Whether the snakeoil pair is made at first boot, so that scripts configured after ssl-cert
/// may take it as there (`postinst::SNAKEOIL`).
pub(super) fn makes_snakeoil(tree: &Tree, systemd: bool) -> bool {
    systemd && tree.exists("usr/sbin/make-ssl-cert")
}

/// Whether bind9's rndc key is made at first boot (`postinst::RNDC_KEY`).
pub(super) fn makes_rndc_key(tree: &Tree, systemd: bool) -> bool {
    systemd && tree.exists("usr/sbin/rndc-confgen") && tree.exists("usr/sbin/named")
}

/// The PostgreSQL major versions whose server the image holds, oldest first.
fn postgresql_versions(tree: &Tree) -> Vec<String> {
    let mut v: Vec<String> = tree
        .children("usr/lib/postgresql")
        .filter_map(|p| p.rsplit('/').next())
        .filter(|ver| !ver.is_empty() && ver.chars().all(|c| c.is_ascii_digit()))
        .filter(|ver| tree.exists(&format!("usr/lib/postgresql/{ver}/bin/initdb")))
        .map(str::to_string)
        .collect();
    v.sort_by_key(|s| s.parse::<u32>().unwrap_or(u32::MAX));
    v.dedup();
    v
}

/// Whether postgresql-common's `createcluster.conf` turns the main cluster off
/// (`create_main_cluster = false`; its reader takes off, no, 0 and false, in any case).
fn main_cluster_off(tree: &Tree) -> bool {
    let text = tree
        .read("etc/postgresql-common/createcluster.conf")
        .unwrap_or_default();
    String::from_utf8_lossy(&text).lines().any(|l| {
        let l = l.split('#').next().unwrap_or("");
        l.split_once('=').is_some_and(|(k, v)| {
            k.trim() == "create_main_cluster"
                && matches!(
                    v.trim()
                        .trim_matches(['\'', '"'])
                        .to_ascii_lowercase()
                        .as_str(),
                    "off" | "no" | "0" | "false"
                )
        })
    })
}

/// Write and enable the first-boot units the image's packages call for (systemd images).
pub(super) fn units(tree: &mut Tree) -> Result<()> {
    // ssl-cert: before basic.target, which every service that uses the pair (dovecot,
    // postfix, a TLS site, PostgreSQL's ssl) comes after. After cloud-init's local stage,
    // which names the machine.
    if makes_snakeoil(tree, true) {
        add(
            tree,
            "ingot-snakeoil.service",
            "[Unit]\nDescription=Create this machine's snakeoil TLS certificate and key (ssl-cert)\nDefaultDependencies=no\nAfter=local-fs.target systemd-tmpfiles-setup.service cloud-init-local.service\nBefore=basic.target shutdown.target\nConflicts=shutdown.target\nConditionFileNotEmpty=|!/etc/ssl/certs/ssl-cert-snakeoil.pem\nConditionFileNotEmpty=|!/etc/ssl/private/ssl-cert-snakeoil.key\n\n[Service]\nType=oneshot\nEnvironment=DEBIAN_FRONTEND=noninteractive\nExecStart=/usr/sbin/make-ssl-cert generate-default-snakeoil --force-overwrite\n\n[Install]\nWantedBy=basic.target\n".into(),
        )?;
    }
    // What the database units make is synced before they end: the unit does not run again
    // once its result is there, and a power cut in the half minute before the kernel writes
    // it back left the cluster's start.conf and pg_ctl.conf empty (so it never started).
    // postgresql-NN's postinst (postgresql-common's `configure_version`) makes the `main`
    // cluster on a first install, unless createcluster.conf says not to, and starts it. Here:
    // on a machine that has no cluster of that version yet (no /etc/postgresql/NN and no
    // /var/lib/postgresql/NN, so a cluster the administrator dropped is not made again),
    // in the system locale (C.UTF-8 when none is set), started at once when the image starts
    // postgresql.service (whose generator starts it on every later boot).
    if tree.exists("usr/bin/pg_createcluster") && !main_cluster_off(tree) {
        for v in postgresql_versions(tree) {
            add(
                tree,
                &format!("ingot-postgresql-{v}-main.service"),
                format!("[Unit]\nDescription=Create this machine's PostgreSQL {v} cluster main (postgresql-{v}'s postinst)\nAfter=local-fs.target systemd-tmpfiles-setup.service ingot-snakeoil.service\nBefore=postgresql.service postgresql@{v}-main.service\nConditionPathExists=!/etc/postgresql/{v}\nConditionPathExists=!/var/lib/postgresql/{v}\n\n[Service]\nType=oneshot\nEnvironment=LANG=C.UTF-8\nEnvironmentFile=-/etc/default/locale\nExecStart=/usr/bin/pg_createcluster -u postgres {v} main\nExecStartPost=/bin/sync -f /etc/postgresql/{v} /var/lib/postgresql/{v}\nExecStartPost=/bin/sh -c 'if systemctl -q is-enabled postgresql.service; then systemctl --no-block start postgresql@{v}-main.service; fi'\n\n[Install]\nWantedBy=multi-user.target\n"),
            )?;
        }
    }
    // bind9's postinst makes the rndc key named and rndc share when neither rndc.key nor
    // rndc.conf is there, and makes it bind's, readable by the group. Here it is written
    // beside its place and renamed into it only once whole and owned, so a power cut never
    // leaves a key named cannot read (the unit would not run again). (`$$`: systemd's `$`.)
    if makes_rndc_key(tree, true) {
        add(
            tree,
            "ingot-bind9-rndc-key.service",
            "[Unit]\nDescription=Create this machine's rndc key (bind9's postinst)\nAfter=local-fs.target systemd-tmpfiles-setup.service\nBefore=named.service\nConditionFileNotEmpty=!/etc/bind/rndc.key\nConditionFileNotEmpty=!/etc/bind/rndc.conf\n\n[Service]\nType=oneshot\nExecStart=/bin/sh -c 'k=/etc/bind/rndc.key; rm -f $$k.new && rndc-confgen -a -c $$k.new && chown bind:bind $$k.new && chmod g+r $$k.new && sync -f $$k.new && mv -f $$k.new $$k && sync -f $$k'\n\n[Install]\nWantedBy=multi-user.target\n".into(),
        )?;
    }
    // postfix's postinst runs newaliases once it has written /etc/aliases: without the
    // alias database its local delivery defers every message (root's mail from cron and
    // unattended-upgrades among them). The database is made beside its place from a copy of
    // the aliases and renamed in once synced, so a power cut leaves none rather than half of
    // one (the unit would not run again).
    if tree.exists("usr/sbin/postalias") && tree.exists("etc/aliases") {
        add(
            tree,
            "ingot-postfix-aliases.service",
            "[Unit]\nDescription=Build this machine's mail alias database (postfix's postinst: newaliases)\nAfter=local-fs.target systemd-tmpfiles-setup.service\nBefore=postfix.service postfix@-.service\nConditionPathExists=/etc/aliases\nConditionPathExists=!/etc/aliases.db\n\n[Service]\nType=oneshot\nExecStart=/bin/sh -c 'n=/etc/aliases.ingot-new; rm -f $$n $$n.db && cp /etc/aliases $$n && /usr/sbin/postalias hash:$$n && sync -f $$n.db && mv -f $$n.db /etc/aliases.db && rm -f $$n && sync -f /etc/aliases.db'\n\n[Install]\nWantedBy=multi-user.target\n".into(),
        )?;
    }
    // mariadb-server's postinst runs `mysql_install_db` (as it does on every configure: the
    // tool leaves a data directory that has its system tables alone).
    let install_db = ["usr/bin/mariadb-install-db", "usr/bin/mysql_install_db"]
        .into_iter()
        .find(|p| tree.exists(p));
    if let Some(tool) = install_db {
        if tree.exists("usr/sbin/mariadbd") {
            add(
                tree,
                "ingot-mariadb-install-db.service",
                format!("[Unit]\nDescription=Create this machine's MariaDB system tables (mariadb-server's postinst)\nAfter=local-fs.target systemd-tmpfiles-setup.service\nBefore=mariadb.service\nConditionPathExists=!/var/lib/mysql/mysql\n\n[Service]\nType=oneshot\nEnvironment=TMPDIR=\nExecStart=/{tool} --rpm --cross-bootstrap --user=mysql --disable-log-bin --skip-test-db\nExecStartPost=/bin/sync -f /var/lib/mysql\n\n[Install]\nWantedBy=multi-user.target\n"),
            )?;
        }
    }
    Ok(())
}

/// The room the data first boot makes needs, which the tree does not show: an image whose
/// disk is sized to its tree (`size = "auto"`) gets it on top of its usual headroom. A fresh
/// PostgreSQL 15 cluster took 39 MB (16 MB of it its first WAL segment); MariaDB 10.11's
/// system tables and InnoDB files 110 MB (96 MiB of redo log, a 12 MiB system tablespace).
pub fn reserve(tree: &Tree) -> u64 {
    tree.children("usr/lib/systemd/system")
        .filter_map(|p| {
            let unit = p.strip_prefix("usr/lib/systemd/system/ingot-")?;
            if unit == "mariadb-install-db.service" {
                Some(160 << 20)
            } else if unit.starts_with("postgresql-") && unit.ends_with("-main.service") {
                Some(64 << 20)
            } else {
                None
            }
        })
        .sum()
}

fn add(tree: &mut Tree, unit: &str, text: String) -> Result<()> {
    put(tree, &format!("usr/lib/systemd/system/{unit}"), text, 0o644)?;
    enable_unit(tree, unit, "ingot")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Entry;

    fn file(t: &mut Tree, p: &str, text: &str) {
        t.insert(p, Entry::file(text, 0o755)).unwrap();
    }

    #[test]
    fn each_server_gets_the_unit_its_postinst_calls_for() {
        let mut t = Tree::new();
        units(&mut t).unwrap();
        assert!(!t.exists("usr/lib/systemd/system/ingot-snakeoil.service"));
        file(&mut t, "usr/sbin/make-ssl-cert", "");
        file(&mut t, "usr/bin/pg_createcluster", "");
        for v in ["15", "9", "x1"] {
            file(&mut t, &format!("usr/lib/postgresql/{v}/bin/initdb"), "");
        }
        file(&mut t, "usr/bin/mariadb-install-db", "");
        file(&mut t, "usr/sbin/mariadbd", "");
        file(&mut t, "usr/sbin/rndc-confgen", "");
        file(&mut t, "usr/sbin/named", "");
        file(&mut t, "usr/sbin/postalias", "");
        units(&mut t).unwrap();
        // postfix without /etc/aliases (its postinst writes it): nothing to build.
        assert!(!t.exists("usr/lib/systemd/system/ingot-postfix-aliases.service"));
        file(&mut t, "etc/aliases", "postmaster: root\n");
        units(&mut t).unwrap();
        let unit = |n: &str| {
            String::from_utf8(
                t.read(&format!("usr/lib/systemd/system/{n}"))
                    .unwrap_or_else(|| panic!("{n} missing")),
            )
            .unwrap()
        };
        assert!(unit("ingot-snakeoil.service").contains("generate-default-snakeoil"));
        assert_eq!(postgresql_versions(&t), ["9", "15"]);
        let pg = unit("ingot-postgresql-15-main.service");
        assert!(pg.contains("ExecStart=/usr/bin/pg_createcluster -u postgres 15 main\n"));
        assert!(pg.contains("ConditionPathExists=!/etc/postgresql/15\n"));
        assert!(pg.contains("start postgresql@15-main.service"));
        assert!(
            pg.contains("ExecStartPost=/bin/sync -f /etc/postgresql/15 /var/lib/postgresql/15\n")
        );
        assert!(unit("ingot-postgresql-9-main.service").contains(" 9 main\n"));
        assert!(t
            .read("usr/lib/systemd/system/ingot-postgresql-x1-main.service")
            .is_none());
        assert!(unit("ingot-mariadb-install-db.service").contains(
            "ExecStart=/usr/bin/mariadb-install-db --rpm --cross-bootstrap --user=mysql"
        ));
        // The rndc key: written beside its place, owned and readable by bind, then renamed
        // (`$$`: a literal `$` for the shell, not a variable systemd fills in).
        let rndc = unit("ingot-bind9-rndc-key.service");
        assert!(rndc.contains("rndc-confgen -a -c $$k.new && chown bind:bind $$k.new && chmod g+r $$k.new && sync -f $$k.new && mv -f $$k.new $$k"));
        assert!(rndc.contains("ConditionFileNotEmpty=!/etc/bind/rndc.key\nConditionFileNotEmpty=!/etc/bind/rndc.conf\n"));
        assert!(rndc.contains("Before=named.service\n"));
        assert!(makes_rndc_key(&t, true) && !makes_rndc_key(&t, false));
        // The alias database: built from a copy, renamed in once synced, before postfix.
        let aliases = unit("ingot-postfix-aliases.service");
        assert!(aliases.contains("cp /etc/aliases $$n && /usr/sbin/postalias hash:$$n && sync -f $$n.db && mv -f $$n.db /etc/aliases.db"));
        assert!(aliases.contains("ConditionPathExists=!/etc/aliases.db\n"));
        assert!(aliases.contains("Before=postfix.service postfix@-.service\n"));
        // Enabled, as the image's other units are.
        assert!(
            t.exists("etc/systemd/system/multi-user.target.wants/ingot-postgresql-15-main.service")
        );
        assert!(t.exists("etc/systemd/system/basic.target.wants/ingot-snakeoil.service"));
        // Room for two clusters and MariaDB's files.
        assert_eq!(reserve(&t), (2 * 64 + 160) << 20);
        // createcluster.conf can turn the main cluster off.
        let mut off = Tree::new();
        file(&mut off, "usr/bin/pg_createcluster", "");
        file(&mut off, "usr/lib/postgresql/15/bin/initdb", "");
        file(
            &mut off,
            "etc/postgresql-common/createcluster.conf",
            "# create_main_cluster = true\ncreate_main_cluster = Off # not on this machine\n",
        );
        units(&mut off).unwrap();
        assert!(off
            .read("usr/lib/systemd/system/ingot-postgresql-15-main.service")
            .is_none());
    }

    /// dovecot-core links its certificate to ssl-cert's snakeoil pair when the pair is there:
    /// in a systemd image the first boot makes it, so the links are made; a busybox image
    /// never gets it, so no link points at nothing.
    #[test]
    fn scripts_see_the_snakeoil_pair_only_where_first_boot_makes_it() {
        use crate::assemble::{Postinst, Scripts};
        let script = |s: &str| Postinst {
            package: "p".into(),
            script: s.into(),
            debconf: Default::default(),
        };
        let scripts = Scripts {
            accounts: vec![],
            nss: vec![],
            alternatives: vec![],
            statoverrides: vec![],
            postinsts: vec![
                script("#!/bin/sh\nmake-ssl-cert generate-default-snakeoil\n"),
                script("#!/bin/sh\nif [ -f /etc/ssl/certs/ssl-cert-snakeoil.pem ]; then\n  ln -s /etc/ssl/certs/ssl-cert-snakeoil.pem /etc/dovecot/private/dovecot.pem\nfi\n"),
            ],
        };
        for systemd in [true, false] {
            let mut t = Tree::new();
            file(&mut t, "usr/sbin/make-ssl-cert", "");
            t.insert("etc/dovecot/private", Entry::dir(0o700)).unwrap();
            crate::assemble::postinst::apply(&mut t, &scripts, systemd).unwrap();
            assert_eq!(
                t.get("etc/dovecot/private/dovecot.pem").is_some(),
                systemd,
                "systemd={systemd}"
            );
        }
    }
}
