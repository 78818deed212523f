//! The evaluator against the forms Debian's postinst scripts use (chrony, unattended-upgrades,
//! apache2, redis-tools, dh_apparmor), and what it must leave out.

use super::*;

mod conditions;

/// The commands of `script` that start with one of `tools`, as single strings.
fn ran(script: &str, defaults: &BTreeMap<String, String>, tools: &[&str]) -> Vec<String> {
    // An image with ucf and apache's helpers, that cannot say what else it has.
    let helpers = |p: &str, op: char| match op {
        'c' => Some(matches!(
            p,
            "ucf" | "ucfr" | "a2enmod" | "a2enconf" | "a2ensite"
        )),
        _ => None,
    };
    ran_in(script, defaults, &helpers, tools)
}

/// [`ran`] in an image that answers path questions with `paths`.
fn ran_in(
    script: &str,
    defaults: &BTreeMap<String, String>,
    paths: Paths,
    tools: &[&str],
) -> Vec<String> {
    first_configure(script, defaults, paths)
        .into_iter()
        .filter(|c| tools.contains(&c[0].as_str()))
        .map(|c| c.join(" "))
        .collect()
}

#[test]
fn the_lexer_keeps_quotes_substitutions_and_operators_apart() {
    let t = lex("a \"b c\" 'd;e' $(x \"y\") ${z} \"$q\" $r $s/t 2>/dev/null;; f&&g||h|i # c\n(j)");
    let w = |s: &str| Tok::Word(s.into());
    assert_eq!(
        t,
        [
            w("a"),
            w("b c"),
            w("d;e"),
            w("$(x \"y\")"),
            // A lone unquoted expansion is marked for field splitting; a quoted one, or
            // one with more in its word, is not.
            w("\u{2}${z}"),
            w("$q"),
            w("\u{2}$r"),
            w("$s/t"),
            Tok::Op(">"),
            w("/dev/null"),
            Tok::Op(";;"),
            w("f"),
            Tok::Op("&&"),
            w("g"),
            Tok::Op("||"),
            w("h"),
            Tok::Op("|"),
            w("i"),
            Tok::Nl,
            Tok::Op("("),
            w("j"),
            Tok::Op(")"),
        ]
    );
}

#[test]
fn here_documents_are_data() {
    let script = "cat > /etc/x <<-EOF\n\trm -f /etc/passwd\n\tEOF\ntouch /a\n\
        grep -q x <<'END' && touch /b\nrm -f /etc/shadow\nEND\ntouch /c\n";
    assert_eq!(
        ran(script, &BTreeMap::new(), &["rm", "touch"]),
        ["touch /a", "touch /c"]
    );
}

#[test]
fn the_configure_arm_runs_and_conditions_it_cannot_decide_are_left_out() {
    // As chrony's postinst: ucf behind `command -v ucf`, statoverrides behind another
    // command's output, a migration only for upgrades, other arms.
    let script = r#"#!/bin/sh
set -e
case "$1" in
configure)
    adduser --system --group --home /var/lib/chrony --no-create-home _chrony
    if command -v ucf >/dev/null
    then
        ucf --three-way /usr/share/chrony/chrony.conf /etc/chrony/chrony.conf
        if [ -x "$(command -v ucfr)" ]; then
            ucfr chrony /etc/chrony/chrony.conf
        fi
    fi
    if ! chronyd -p | grep -q "^user"; then
        dpkg-statoverride --update --add _chrony _chrony 0750 /var/lib/chrony
    fi
    if [ -n "$2" ] && dpkg --compare-versions "$2" lt 4.0~pre4-1; then
        ucf /usr/share/chrony/old /etc/chrony/old
    fi
;;
abort-upgrade|abort-remove|abort-deconfigure)
    ucf /usr/share/chrony/abort /etc/chrony/abort
;;
*)
    echo "postinst called with unknown argument \`$1'" >&2
    exit 1
;;
esac
exit 0
ucf /after/exit /etc/never
"#;
    assert_eq!(
        ran(
            script,
            &BTreeMap::new(),
            &["adduser", "ucf", "ucfr", "dpkg-statoverride", "echo"]
        ),
        [
            "adduser --system --group --home /var/lib/chrony --no-create-home _chrony",
            "ucf --three-way /usr/share/chrony/chrony.conf /etc/chrony/chrony.conf",
            "ucfr chrony /etc/chrony/chrony.conf",
        ]
    );
}

#[test]
fn a_debconf_answer_picks_the_branch_and_variables_follow_the_script() {
    // As unattended-upgrades' postinst: the file to install depends on a debconf
    // boolean; the same variables name another file further down.
    let script = r#"#!/bin/sh
set -e
. /usr/share/debconf/confmodule
case "$1" in
configure)
    db_get unattended-upgrades/enable_auto_updates || true
	CONFIG="/etc/apt/apt.conf.d/20auto-upgrades"
    if [ "${RET}" = "true" ]; then
	    NEWFILE="/usr/share/unattended-upgrades/20auto-upgrades"
	    ucf --three-way --debconf-ok "$NEWFILE" "$CONFIG"
    elif [ "${RET}" = "false" ] && [ -e "$CONFIG" ]; then
	    NEWFILE="/usr/share/unattended-upgrades/20auto-upgrades-disabled"
	    ucf --three-way --debconf-ok "$NEWFILE" "$CONFIG"
    fi
	CONFIG="/etc/apt/apt.conf.d/50unattended-upgrades"
	NEWFILE="/usr/share/unattended-upgrades/50unattended-upgrades"
    if dpkg --compare-versions "$2" lt "1.8~" \
	        && [ -e $CONFIG.ucftmp ]; then
	    mv $CONFIG.ucftmp $CONFIG
	fi
	ucf --three-way --debconf-ok "$NEWFILE" "$CONFIG"
    ;;
esac
"#;
    let templates = "Template: unattended-upgrades/enable_auto_updates\nType: boolean\n\
        Default: true\nDescription: Automatically?\n Long text.\n\n\
        Template: other/x\nType: string\n";
    let defaults = template_defaults(templates);
    assert_eq!(
        defaults.get("unattended-upgrades/enable_auto_updates"),
        Some(&"true".to_string())
    );
    let first = "ucf --three-way --debconf-ok /usr/share/unattended-upgrades/20auto-upgrades /etc/apt/apt.conf.d/20auto-upgrades";
    let second = "ucf --three-way --debconf-ok /usr/share/unattended-upgrades/50unattended-upgrades /etc/apt/apt.conf.d/50unattended-upgrades";
    assert_eq!(ran(script, &defaults, &["ucf", "mv"]), [first, second]);
    // Answered false, the disabled file would go in only over an existing one: unknown.
    let off: BTreeMap<String, String> = [(
        "unattended-upgrades/enable_auto_updates".to_string(),
        "false".to_string(),
    )]
    .into();
    assert_eq!(ran(script, &off, &["ucf"]), [second]);
    // Without the template the answer is not known, and neither is the first file.
    assert_eq!(ran(script, &BTreeMap::new(), &["ucf"]), [second]);
}

#[test]
fn functions_run_with_their_arguments_and_loops_over_known_words_unroll() {
    // As apache2's postinst: helpers called with "$@", a fresh-install test returning a
    // status, loops over module names, a loop left early.
    let script = r#"#!/bin/sh
set -e
is_fresh_install()
{
	if [ -z "$2" ] ; then
		return 0
	fi
	return 1
}
enable_default_modules()
{
	if is_fresh_install $@; then
		for module in authz_host auth_basic \
				alias dir ; do
			a2enmod -m -q $module
		done
	fi
}
has_index() {
	[ -e /var/www/html/index.html ] && return 0
	return 1
}
site() {
	local name="$1" copy=true
	if $copy; then
		a2ensite -q "$name"
	fi
}
case "$1" in
	configure)
		enable_default_modules $@
		if has_index; then a2enconf never; fi
		if ! is_fresh_install $@; then a2enmod upgrade-only; fi
		site 000-default
		for conf in charset security; do
			a2enconf -m -q $conf
			if [ "$conf" = charset ]; then break; fi
		done
		for f in $(ls /x); do a2enconf unknown-$f; done
		while true; do a2enconf in-a-while; break; done
	;;
esac
"#;
    assert_eq!(
        ran(
            script,
            &BTreeMap::new(),
            &["a2enmod", "a2ensite", "a2enconf"]
        ),
        [
            "a2enmod -m -q authz_host",
            "a2enmod -m -q auth_basic",
            "a2enmod -m -q alias",
            "a2enmod -m -q dir",
            "a2ensite -q 000-default",
            "a2enconf -m -q charset",
        ]
    );
}

#[test]
fn what_a_script_does_not_certainly_run_is_left_out() {
    let script = r#"
tmp=$(mktemp)
ucf --debconf-ok $tmp /etc/from-a-temp-file
if [ -d /etc/x ]; then ucf /usr/share/x /etc/x/conf; fi
[ -e /etc/y ] && ucf /usr/share/y /etc/y
true && ucf /usr/share/z /etc/z
false || ucf /usr/share/w /etc/w
if [ "$1" = "configure" ]; then ucf /usr/share/v /etc/v; else ucf /usr/share/nv /etc/nv; fi
( ucf /usr/share/sub /etc/sub )
X=/usr/share/one
X=/usr/share/two
ucf $X /etc/two
Y=/usr/share/y1
if [ -e /etc/q ]; then Y=/usr/share/y2; fi
ucf $Y /etc/maybe
f() { return 0; }
g() { ucf /usr/share/g /etc/g; }
if [ -e /etc/r ]; then return 0; fi
ucf /usr/share/after-a-maybe-return /etc/m
"#;
    assert_eq!(
        ran(script, &BTreeMap::new(), &["ucf"]),
        [
            "ucf /usr/share/z /etc/z",
            "ucf /usr/share/w /etc/w",
            "ucf /usr/share/v /etc/v",
            "ucf /usr/share/sub /etc/sub",
            "ucf /usr/share/two /etc/two",
        ]
    );
}

#[test]
fn cd_is_passed_on_with_its_directory_or_as_not_known() {
    // postfix's form (bookworm): a function called with relative paths after `cd ${CHROOT}`.
    let script = r#"#!/bin/sh
CHROOT=/var/spool/postfix
makedir() {
    if [ ! -d "$1" ]; then
	mkdir -Z "$1"
    fi
    chown $2 "$1"
    chmod $3 "$1"
}
cd ${CHROOT}
makedir public postfix:root 755
makedir private root:root 700
if [ -e /etc/q ]; then cd /elsewhere; fi
chmod 700 maybe-elsewhere
cd /etc/postfix
( cd sasl && chmod 600 x )
cd $UNSET
cd relative
"#;
    // The image has /var/spool/postfix/public: a relative test is asked about it there.
    let paths = |p: &str, op: char| match op {
        'd' => Some(p == "/var/spool/postfix/public"),
        _ => None,
    };
    assert_eq!(
        ran_in(
            script,
            &BTreeMap::new(),
            &paths,
            &["cd", "mkdir", "chown", "chmod"]
        ),
        [
            "cd /var/spool/postfix",
            "chown postfix:root public",
            "chmod 755 public",
            "mkdir -Z private",
            "chown root:root private",
            "chmod 700 private",
            "cd",
            "chmod 700 maybe-elsewhere",
            "cd /etc/postfix",
            // `cd sasl`: relative; its `&&` makes the chmod uncertain; the subshell's end.
            "cd",
            "cd",
            "cd",
            "cd",
        ]
    );
}

#[test]
fn here_documents_and_echo_into_a_file_are_reported_with_their_text() {
    // postfix's /etc/aliases and postgresql-common's root.crt (bookworm), and what must not
    // count.
    let script = r#"#!/bin/sh
if [ ! -f /etc/aliases ]; then
    cat << EOF > /etc/aliases
# See man 5 aliases for format
postmaster:    root
EOF
fi
SSL_ROOT=/etc/postgresql-common/root.crt
if ! [ -e "$SSL_ROOT" ]; then
    cat > "$SSL_ROOT" <<EOF
dummy for $SSL_ROOT
EOF
fi
cat > /etc/q <<'EOF'
kept $AS_IS
EOF
echo "root:	admin" >> /etc/aliases
echo -n x > /etc/n
echo 'a\tb' > /etc/escaped
cat <<EOF > /etc/unknown
$(hostname)
EOF
cat <<EOF > /etc/unset
$NOT_SET
EOF
sed s/a/b/ /etc/x > /etc/y
echo made 2> /etc/stderr-only
if [ -e /etc/maybe ]; then echo no > /etc/maybe-not; fi
echo 'protocols = $protocols imap' > /usr/share/dovecot/protocols.d/imapd.protocol
echo "cost \$5 $NOT_SET" > /etc/never
echo cost \$5 > /etc/escaped-dollar
dc=/etc/mysql/debian.cnf
echo "[client]"      >>$dc
echo 'a (b)?' \* > /etc/literal
echo [x] > /etc/a-pattern
echo *.conf > /etc/another
"#;
    let nothing = |_: &str, op: char| match op {
        'e' | 'f' => Some(false),
        _ => None,
    };
    let got: Vec<Vec<String>> = first_configure(script, &BTreeMap::new(), &nothing)
        .into_iter()
        .filter(|c| c[0] == WRITE || c[0] == APPEND)
        .collect();
    let w = |t: &str, f: &str, x: &str| vec![t.to_string(), f.to_string(), x.to_string()];
    assert_eq!(
        got,
        [
            w(
                WRITE,
                "/etc/aliases",
                "# See man 5 aliases for format\npostmaster:    root\n"
            ),
            w(
                WRITE,
                "/etc/postgresql-common/root.crt",
                "dummy for /etc/postgresql-common/root.crt\n"
            ),
            w(WRITE, "/etc/q", "kept $AS_IS\n"),
            w(APPEND, "/etc/aliases", "root:\tadmin\n"),
            // dovecot-imapd's: a quoted `$` is text.
            w(
                WRITE,
                "/usr/share/dovecot/protocols.d/imapd.protocol",
                "protocols = $protocols imap\n"
            ),
            w(WRITE, "/etc/escaped-dollar", "cost $5\n"),
            // mariadb-server's section headers (bookworm): quoted, `[` is text; unquoted,
            // a pattern the image's files would decide.
            w(APPEND, "/etc/mysql/debian.cnf", "[client]\n"),
            w(WRITE, "/etc/literal", "a (b)? *\n"),
        ]
    );
}

#[test]
fn debhelpers_service_start_does_not_end_the_script() {
    // dh_installinit's snippet, then what postfix does after it (bookworm).
    let script = r#"#!/bin/sh
if [ "$1" = "configure" ] || [ "$1" = "abort-upgrade" ]; then
	if [ -z "${DPKG_ROOT:-}" ] && [ -x "/etc/init.d/postfix" ]; then
		invoke-rc.d --skip-systemd-native postfix start || exit 1
	fi
fi
deb-systemd-invoke start x.service >/dev/null || true
ln -s /usr/share/postfix/makedefs.out /etc/postfix/makedefs.out
invoke-rc.d --disclose-deny y start || exit 1
ln -s /never /etc/after-a-maybe-exit
"#;
    assert_eq!(
        ran(script, &BTreeMap::new(), &["ln"]),
        ["ln -s /usr/share/postfix/makedefs.out /etc/postfix/makedefs.out"]
    );
}

#[test]
fn debhelpers_enable_runs_on_a_first_install_and_the_upgrade_paths_do_not() {
    // dh_installsystemd's snippet (unbound, bookworm), and openssh-server's socket, which it
    // enables only where an earlier version had installed it.
    let script = r#"#!/bin/sh
if [ "$1" = "configure" ] || [ "$1" = "abort-upgrade" ] ; then
	deb-systemd-helper unmask 'unbound.service' >/dev/null || true
	if deb-systemd-helper --quiet was-enabled 'unbound.service'; then
		deb-systemd-helper enable 'unbound.service' >/dev/null || true
	else
		deb-systemd-helper update-state 'unbound.service' >/dev/null || true
	fi
	if deb-systemd-helper debian-installed 'ssh.socket'; then
		deb-systemd-helper enable 'ssh.socket' >/dev/null || true
	fi
fi
"#;
    assert_eq!(
        ran(script, &BTreeMap::new(), &["deb-systemd-helper"]),
        [
            "deb-systemd-helper unmask unbound.service",
            "deb-systemd-helper --quiet was-enabled unbound.service",
            "deb-systemd-helper enable unbound.service",
            "deb-systemd-helper debian-installed ssh.socket"
        ]
    );
}

#[test]
fn a_here_document_in_a_function_with_its_tabs_stripped() {
    // python3's postinst (bookworm): `<<-` strips the leading tabs of each line.
    let script = "#!/bin/sh\nnew_config_file()\n{\n    cat > /etc/python3/debian_config <<-EOF\n\t[DEFAULT]\n\t# how to byte-compile (comma separated: standard, optimize)\n\tbyte-compile = standard\n\tEOF\n}\ncase \"$1\" in\n    configure)\n\t[ -d /etc/python3 ] || mkdir /etc/python3\n\t[ -f /etc/python3/debian_config ] || new_config_file\n    ;;\nesac\n";
    let paths = |p: &str, _: char| Some(p == "/etc/python3");
    let got: Vec<Vec<String>> = first_configure(script, &BTreeMap::new(), &paths)
        .into_iter()
        .filter(|c| c[0] == WRITE)
        .collect();
    assert_eq!(
        got,
        [vec![
            WRITE.to_string(),
            "/etc/python3/debian_config".to_string(),
            "[DEFAULT]\n# how to byte-compile (comma separated: standard, optimize)\nbyte-compile = standard\n".to_string()
        ]]
    );
    // Already there: not written again.
    let there = |_: &str, _: char| Some(true);
    assert!(first_configure(script, &BTreeMap::new(), &there)
        .iter()
        .all(|c| c[0] != WRITE));
}

#[test]
fn an_unquoted_variable_splits_into_words_and_a_quoted_one_does_not() {
    // As dovecot-core's postinst: a list in a variable, continued over lines inside double
    // quotes, walked with `for` over the unquoted variable.
    let script = "if [ \"$1\" = configure ]; then\n  FILES=\"a.conf \\\n    conf.d/b.conf\"\n  for f in $FILES ; do\n    ucf --three-way \"/usr/share/x/$f\" \"/etc/x/$f\"\n  done\n  for g in \"$FILES\"; do touch \"/q/$g\"; done\n  EMPTY=\"\"\n  for h in $EMPTY; do touch /never; done\n  touch $FILES\nfi\n";
    assert_eq!(
        ran(script, &BTreeMap::new(), &["ucf", "touch"]),
        [
            "ucf --three-way /usr/share/x/a.conf /etc/x/a.conf",
            "ucf --three-way /usr/share/x/conf.d/b.conf /etc/x/conf.d/b.conf",
            "touch /q/a.conf     conf.d/b.conf",
            "touch a.conf conf.d/b.conf",
        ]
    );
}
