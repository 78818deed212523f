//! Conditions the evaluator decides: file tests and `command -v` the image answers, account
//! lookups, what the script's own earlier commands made, and an account's id against 0.

use super::*;

#[test]
fn file_tests_and_command_lookups_are_what_the_image_answers() {
    let script = r#"
if [ ! -L /etc/a2/sites-enabled/000.conf -a ! -f /etc/a2/sites-enabled/000.conf ]; then
a2ensite -q 000
fi
if [ -d /etc/present ] || [ -e /etc/absent ]; then a2enconf dir-or-absent; fi
if [ -e /etc/absent -o -x /usr/bin/tool ]; then a2enconf executable; fi
if command -v update-binfmts >/dev/null; then update-binfmts --import x; fi
if [ -x "$(command -v ucf)" ]; then ucf /usr/share/u /etc/u; fi
[ -e relative ] && a2enconf relative
LOCAL_APP_PROFILE="/etc/apparmor.d/local/usr.sbin.x"
test -e "$LOCAL_APP_PROFILE" || {
mkdir -p `dirname "$LOCAL_APP_PROFILE"`
install --mode 644 /dev/null "$LOCAL_APP_PROFILE"
touch /tmp/$(basename $LOCAL_APP_PROFILE) $(dirname /x)
}
Setup_dir () {
	DIR="${1}"
	mkdir -p ${DIR}
	if ! dpkg-statoverride --list ${DIR} >/dev/null 2>&1
	then
		chown redis ${DIR}
	fi
}
Setup_dir /var/lib/redis
Setup_dir /var/lib/overridden
"#;
    let image = |p: &str, op: char| -> Known {
        Some(match (op, p) {
            ('L' | 'f' | 'e', "/etc/a2/sites-enabled/000.conf") => false,
            ('d', "/etc/present") => true,
            ('e', "/etc/absent") => false,
            ('x', "/usr/bin/tool") => true,
            ('c', "ucf") => true,
            ('c', _) => false,
            ('o', p) => p == "/var/lib/overridden",
            ('e', "/etc/apparmor.d/local/usr.sbin.x") => false,
            _ => return None,
        })
    };
    assert_eq!(
        ran_in(
            script,
            &BTreeMap::new(),
            &image,
            &[
                "a2ensite",
                "a2enconf",
                "update-binfmts",
                "ucf",
                "mkdir",
                "chown",
                "install",
                "touch"
            ]
        ),
        [
            "a2ensite -q 000",
            "a2enconf dir-or-absent",
            "a2enconf executable",
            "ucf /usr/share/u /etc/u",
            "mkdir -p /etc/apparmor.d/local",
            "install --mode 644 /dev/null /etc/apparmor.d/local/usr.sbin.x",
            "mkdir -p /var/lib/redis",
            "chown redis /var/lib/redis",
            "mkdir -p /var/lib/overridden",
        ]
    );
    // Where the image cannot say, nothing behind a file test runs.
    assert!(ran_in(
        script,
        &BTreeMap::new(),
        &|_, _| None,
        &["a2ensite", "a2enconf"]
    )
    .is_empty());
}

#[test]
fn account_lookups_are_what_the_image_answers() {
    // memcached's form (bookworm): the account is made only when getent does not find it.
    let script = r#"#!/bin/sh
GROUP="memcache"
USER="memcache"
if ! getent group $GROUP >/dev/null ; then
        addgroup --system $GROUP >/dev/null
fi
if ! getent passwd $USER >/dev/null ; then
        adduser --system --ingroup $GROUP --home /nonexistent $USER >/dev/null
fi
if id -u root >/dev/null 2>&1; then echo ok > /etc/root-there; fi
if getent hosts x; then echo no > /etc/unknown; fi
"#;
    let before = |name: &str, op: char| match op {
        'u' | 'g' => Some(name == "root"),
        _ => None,
    };
    assert_eq!(
        ran_in(
            script,
            &BTreeMap::new(),
            &before,
            &["addgroup", "adduser", WRITE]
        ),
        [
            "addgroup --system memcache",
            "adduser --system --ingroup memcache --home /nonexistent memcache",
            "ingot:write /etc/root-there ok\n",
        ]
    );
    // Once made, not made again.
    let after = |_: &str, op: char| matches!(op, 'u' | 'g').then_some(true);
    assert!(ran_in(script, &BTreeMap::new(), &after, &["addgroup", "adduser"]).is_empty());
}

#[test]
fn a_test_sees_what_the_scripts_own_earlier_commands_made() {
    // As dovecot-core's postinst: each file ucf just installed, unless it is dovecot.conf or
    // under conf.d/ (told by `cut`), gets a mode and a group. The image knows none of them.
    // The condition goes on over a line after `&&`.
    let script = "FILES=\"dovecot.conf sql.conf.ext conf.d/10-auth.conf\"\nfor f in $FILES; do\n  ucf --three-way \"/usr/share/dovecot/$f\" \"/etc/dovecot/$f\"\n  if [ \"$f\" != \"dovecot.conf\" ] && [ -f \"/etc/dovecot/$f\" ] &&\n      [ \"$(echo \"$f\" | cut -b -7)\" != \"conf.d/\" ]; then\n    chmod 0640 \"/etc/dovecot/$f\"\n  fi\ndone\n[ -f /etc/never ] && touch /a\nmkdir -p -m 0755 /var/lib/x\n[ -d /var/lib/x ] && touch /b\n[ -d /0755 ] && touch /c\ntouch /etc/t\nrm -f /etc/t\n[ -e /etc/t ] || touch /d\n";
    let unknown = |_: &str, op: char| (op == 'c').then_some(true);
    assert_eq!(
        ran_in(script, &BTreeMap::new(), &unknown, &["chmod", "touch"]),
        [
            "chmod 0640 /etc/dovecot/sql.conf.ext",
            "touch /b",
            "touch /etc/t",
            "touch /d"
        ]
    );
}

#[test]
fn an_accounts_id_compared_with_zero_is_what_the_image_says() {
    // postgresql-common's checks (bookworm): the account was just made, so not root, and
    // the script goes on to what follows them.
    let script = r#"#!/bin/sh
if [ "`id -u postgres`" -eq 0 ]; then
    echo "must not be uid 0" >&2
    exit 1
fi
if [ "$(id -g postgres)" -eq 0 ]; then exit 1; fi
mkdir -p /var/lib/postgresql
if [ 0 -ne "`id -u root`" ]; then touch /never; fi
if [ 3 -eq 3 ] && [ 2 -ne 02 ]; then touch /never-either; fi
if [ "`id -u nobody-here`" -eq 0 ]; then exit 1; fi
touch /after-an-unknown-exit
"#;
    let image = |p: &str, op: char| match (p, op) {
        ("postgres", 'U' | 'G') | ("root", 'G') => Some(false),
        ("root", 'U') => Some(true),
        _ => None,
    };
    assert_eq!(
        ran_in(script, &BTreeMap::new(), &image, &["mkdir", "touch"]),
        ["mkdir -p /var/lib/postgresql"]
    );
}

#[test]
fn group_membership_through_id_and_grep_is_what_the_image_says() {
    // postgresql-common's (bookworm) on a first install: postgres is in its own group, not
    // yet in ssl-cert.
    let script = r#"#!/bin/sh
quiet="--quiet"
if ! id -Gn postgres | grep -qw postgres; then
    adduser $quiet postgres postgres
fi
if [ -z "$2" ]; then
    if getent group ssl-cert >/dev/null; then
        if ! id -Gn postgres 2> /dev/null | grep -qw ssl-cert; then
            adduser $quiet postgres ssl-cert
        fi
    fi
fi
if id -Gn postgres | grep -q ssl-cert; then adduser one two; fi
if id -Gn postgres | sort | grep -qw x; then adduser three four; fi
id -Gn postgres | grep -qw ssl-cert || adduser --quiet postgres ssl-cert-again
"#;
    let asked = std::cell::RefCell::new(Vec::new());
    let image = |p: &str, op: char| {
        asked.borrow_mut().push(format!("{op} {p}"));
        match (op, p) {
            ('g', "ssl-cert") => Some(true),
            ('m', "postgres postgres") => Some(true),
            ('m', "postgres ssl-cert") => Some(false),
            _ => None,
        }
    };
    assert_eq!(
        ran_in(script, &BTreeMap::new(), &image, &["adduser"]),
        [
            "adduser --quiet postgres ssl-cert",
            "adduser --quiet postgres ssl-cert-again"
        ]
    );
    // grep without -w, and a pipeline of three, are not asked about.
    assert!(!asked
        .borrow()
        .iter()
        .any(|a| a.contains("two") || a.ends_with(" x")));
}

#[test]
fn a_pipeline_runs_nothing_and_a_loop_after_it_keeps_the_frames_whole() {
    let script = r#"#!/bin/sh
if [ -n "$2" ]; then
    ls /etc | while read f; do touch /in-loop; done
    touch /in-upgrade
fi
touch /a && ls | touch /piped
touch /after
find /x | if true; then touch /in-piped-if; fi
touch /after-piped-if
"#;
    assert_eq!(
        ran_in(script, &BTreeMap::new(), &|_, _| None, &["touch"]),
        ["touch /a", "touch /after"]
    );
}

#[test]
fn su_testing_who_owns_a_path_is_what_the_image_says() {
    // postgresql-common (bookworm) makes postgres's home its own when it is not.
    let script = r#"#!/bin/sh
mkdir -p /var/lib/postgresql
su -s /bin/sh postgres -c "test -O /var/lib/postgresql &&
        test -G /var/lib/postgresql" || \
    chown postgres:postgres /var/lib/postgresql
su -s /bin/sh postgres -c "test -O /srv/owned && test -G /srv/owned" || chown postgres /srv/owned
su -s /bin/sh postgres -c "test -O /srv/\$X" || chown postgres /srv/variable
su -s /usr/sbin/nologin postgres -c "test -O /srv/x" || chown postgres /srv/shell
mkdir /srv/made
su root -c "test -O /srv/made" || chown root /srv/made
su postgres -c "[ -G /srv/made ]" || chown postgres /srv/made
"#;
    // What the script made itself and the image lacks is root's.
    let image = |p: &str, op: char| match (op, p) {
        ('e', "/srv/made") => Some(false),
        ('U', "root") => Some(true),
        ('G', "postgres") => Some(false),
        ('O' | 'E', "postgres /var/lib/postgresql") => Some(false),
        ('O' | 'E', "postgres /srv/owned") => Some(true),
        ('O' | 'E', _) => Some(false),
        _ => None,
    };
    assert_eq!(
        ran_in(script, &BTreeMap::new(), &image, &["chown"]),
        [
            "chown postgres:postgres /var/lib/postgresql",
            "chown postgres /srv/made"
        ]
    );
}

#[test]
fn the_owner_of_a_file_the_script_made_is_root() {
    // bind9's (bookworm): the key rndc-confgen just made is root's, so the block runs.
    let script = r#"#!/bin/sh
if [ ! -s /etc/bind/rndc.key ] && [ ! -s /etc/bind/rndc.conf ]; then
    rndc-confgen -a
fi
uid=$(ls -ln /etc/bind/rndc.key | awk '{print $3}')
if [ "$uid" = "0" ]; then
    chown bind /etc/bind/rndc.key
    chgrp bind /etc/bind
    chmod g+s /etc/bind
fi
other=$(ls -ln /etc/other | awk '{print $3}')
if [ "$other" = "0" ]; then chgrp bind /etc/other; fi
shipped=$(ls -ln /etc/shipped | awk '{print $4}')
if [ "$shipped" = "0" ]; then chgrp bind /etc/shipped; fi
"#;
    let image = |p: &str, op: char| match (op, p) {
        ('s', _) => Some(false),
        // Not root's; and root's group.
        ('R', "/etc/other") => Some(false),
        ('Q', "/etc/shipped") => Some(true),
        _ => None,
    };
    assert_eq!(
        ran_in(
            script,
            &BTreeMap::new(),
            &image,
            &["rndc-confgen", "chown", "chgrp", "chmod"]
        ),
        [
            "rndc-confgen -a",
            "chown bind /etc/bind/rndc.key",
            "chgrp bind /etc/bind",
            "chmod g+s /etc/bind",
            "chgrp bind /etc/shipped"
        ]
    );
}

/// dpkg gives a maintainer script `DPKG_ROOT` (empty for the running system), and Debian's
/// scripts write their paths with it, often as `${DPKG_ROOT:-}`: libwtmpdb0's (Debian 13)
/// links the login database into /var/log. Parameter expansion with a default or an
/// alternative works on any variable the script set; an unknown one stays unknown.
#[test]
fn dpkg_root_and_parameter_expansion() {
    let script = r#"
lib_log="${DPKG_ROOT:-}/var/lib/wtmpdb/wtmp.db"
if [ "$1" = "configure" ]; then
  if [ ! -f "$lib_log" ]; then
    mkdir -p "$(dirname "$lib_log")"
    ln -sf ../../log/wtmp.db "$lib_log"
  fi
fi
systemd-tmpfiles ${DPKG_ROOT:+--root="$DPKG_ROOT"} --create passwd.conf
R=/r
systemd-tmpfiles ${R:+--root="$R"} --create x.conf
touch "$DPKG_ROOT/etc/subuid"
touch "${MISSING-/etc/default}/a" "${lib_log+/etc/set}" "${EMPTY:-/etc/${NAME:-dflt}}" ${EMPTY:+/x}
touch "${UNKNOWN_TO_US:-/x}"
"#;
    let image = |_: &str, op: char| -> Known { Some(op == 'c') };
    let script = script.replace(
        "touch \"${MISSING",
        "MISSING=\nEMPTY=\nNAME=\ntouch \"${MISSING",
    );
    assert_eq!(
        ran_in(
            &script,
            &BTreeMap::new(),
            &image,
            &["mkdir", "ln", "systemd-tmpfiles", "touch"]
        ),
        [
            "mkdir -p /var/lib/wtmpdb",
            "ln -sf ../../log/wtmp.db /var/lib/wtmpdb/wtmp.db",
            "systemd-tmpfiles --create passwd.conf",
            "systemd-tmpfiles --root=/r --create x.conf",
            "touch /etc/subuid",
            "touch /a /etc/set /etc/dflt",
        ]
    );
}
