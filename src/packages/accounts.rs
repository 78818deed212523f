//! The system accounts a package's maintainer scripts make (`adduser --system`, `addgroup
//! --system`, `useradd -r`, `groupadd -r`), read from its `preinst` and `postinst`. Ingot runs no
//! maintainer scripts, so the users and groups step makes these accounts itself, as Debian's
//! own would be made on an installed system: only what a script names literally (a name in a
//! variable is not guessed at), with the options that shape the account.

use serde::{Deserialize, Serialize};

/// The version of the control.tar readers (this one, `super::nss`, `super::alternatives`,
/// `super::statoverride`, `super::script` and the dpkg database members), recorded with
/// what they read into the extraction cache: a change to what either reads must raise it, so
/// that cached packages are read again.
pub const READER: u32 = 11;

/// One account a maintainer script makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The account's name.
    pub name: String,
    /// A user (else a group only).
    pub user: bool,
    /// For a user: also a group of the same name as its primary group (`--group`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub own_group: bool,
    /// For a user: the primary group named (`--ingroup`, `-g`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// For a user: its home (`--home`, `-d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<String>,
    /// For a user: its shell (`--shell`, `-s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    /// For a user: its GECOS field (`--gecos`, `--comment`, `-c`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gecos: Option<String>,
}

/// Options of the account tools that take a value, so that the value is not taken for the name.
const VALUED: &[&str] = &[
    "--home",
    "--shell",
    "--uid",
    "--gid",
    "--ingroup",
    "--gecos",
    "--comment",
    "--firstuid",
    "--lastuid",
    "--firstgid",
    "--lastgid",
    "--conf",
    "--home-dir",
    "--groups",
    "--key",
    "--password",
    "--expiredate",
    "--inactive",
    "--skel",
    "-d",
    "-s",
    "-u",
    "-g",
    "-G",
    "-c",
    "-k",
    "-K",
    "-e",
    "-f",
    "-p",
];

/// Split one shell command into words, honouring single and double quotes (no expansion).
fn words(cmd: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for c in cmd.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The words of a command without its redirections (`>/dev/null`, `2>&1`, `> file`).
fn without_redirections(words: Vec<String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut target_next = false;
    for w in words {
        if std::mem::take(&mut target_next) {
            continue;
        }
        let bare = w.trim_start_matches(|c: char| c.is_ascii_digit() || c == '&');
        if matches!(bare, ">" | ">>" | "<" | ">|") {
            target_next = true;
        } else if !w.contains(['>', '<']) {
            out.push(w);
        }
    }
    out
}

/// A word the script wrote out, not one a variable, a command or a glob supplies.
pub(super) fn literal(w: &str) -> bool {
    !w.is_empty() && !w.contains(['$', '`', '*', '?', '(', ')', '<', '>'])
}

/// `word` with each `$NAME` and `${NAME}` replaced by what `value` gives for NAME, and
/// `${NAME:-WORD}`, `${NAME-WORD}`, `${NAME:+WORD}` and `${NAME+WORD}` as the shell expands
/// them (a name `value` knows is set); `None` when it gives nothing for a name needed (no
/// other expansion is done).
pub(super) fn substitute(word: &str, value: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let mut out = String::new();
    let mut rest = word;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        match after.strip_prefix('{') {
            Some(b) => {
                // The matching brace: WORD may hold `${...}` of its own.
                let mut depth = 0usize;
                let end = b.char_indices().find_map(|(i, c)| match c {
                    '{' => {
                        depth += 1;
                        None
                    }
                    '}' if depth == 0 => Some(i),
                    '}' => {
                        depth -= 1;
                        None
                    }
                    _ => None,
                })?;
                out.push_str(&parameter(&b[..end], value)?);
                rest = &b[end + 1..];
            }
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                out.push_str(&value(&after[..end])?);
                rest = &after[end..];
            }
        }
    }
    out.push_str(rest);
    Some(out)
}

/// What `${inner}` expands to.
fn parameter(inner: &str, value: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let name_end = inner
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(inner.len());
    let (name, op) = inner.split_at(name_end);
    if op.is_empty() || name.is_empty() {
        return value(inner);
    }
    let (colon, op) = match op.strip_prefix(':') {
        Some(o) => (true, o),
        None => (false, op),
    };
    let (kind, word) = op.split_at(op.chars().next()?.len_utf8());
    // WORD's own double quotes only keep it one field; a single-quoted part is text.
    if word.contains('\'') {
        return None;
    }
    let word = word.replace('"', "");
    let word = word.as_str();
    let v = value(name)?;
    // With a colon, an empty value counts as unset.
    let set = !(colon && v.is_empty());
    match kind {
        "-" if set => Some(v),
        "-" => substitute(word, value),
        "+" if set => substitute(word, value),
        "+" => Some(String::new()),
        _ => None,
    }
}

/// The simple commands of a script as words: continued lines joined, comments, redirections
/// and the `&&`, `;` and `|` between commands dropped (no expansion).
pub(super) fn commands(script: &str) -> Vec<Vec<String>> {
    let joined = script.replace("\\\n", " ");
    let mut out = Vec::new();
    for line in joined.lines() {
        let line = line.split(" #").next().unwrap_or(line);
        for cmd in line.split("&&").flat_map(|c| c.split([';', '|'])) {
            out.push(without_redirections(words(cmd)));
        }
    }
    out
}

/// The accounts one script makes.
pub fn from_script(script: &str) -> Vec<Account> {
    from_commands(commands(script))
}

/// The accounts a list of commands makes (a script's, or the commands `super::script` finds
/// it certainly runs, their variables expanded).
pub fn from_commands(commands: impl IntoIterator<Item = Vec<String>>) -> Vec<Account> {
    let mut out: Vec<Account> = Vec::new();
    for w in commands {
        let Some(at) = w.iter().position(|t| {
            matches!(
                t.rsplit('/').next(),
                Some("adduser" | "addgroup" | "useradd" | "groupadd")
            )
        }) else {
            continue;
        };
        let tool = w[at].rsplit('/').next().unwrap_or_default().to_string();
        let args = &w[at + 1..];
        let shadow_tool = tool == "useradd" || tool == "groupadd";
        let system = args.iter().any(|a| {
            a == "--system"
                || (shadow_tool && (a == "-r" || a.starts_with("-r") && !a.starts_with("--")))
        });
        if !system {
            continue;
        }
        let value = |opt: &[&str]| {
            args.windows(2)
                .find(|p| opt.contains(&p[0].as_str()))
                .map(|p| p[1].clone())
                .or_else(|| {
                    args.iter().find_map(|a| {
                        let (k, v) = a.split_once('=')?;
                        opt.contains(&k).then(|| v.to_string())
                    })
                })
                .filter(|v| literal(v))
        };
        let home = value(&["--home", "--home-dir", "-d"]);
        let shell = value(&["--shell", "-s"]);
        let gecos = value(&["--gecos", "--comment", "-c"]);
        let group = value(&["--ingroup", "-g"]);
        // The name: the last word that is neither an option nor an option's value.
        let mut names = Vec::new();
        let mut skip = false;
        for a in args {
            if skip {
                skip = false;
            } else if a.starts_with('-') {
                skip = VALUED.contains(&a.as_str());
            } else {
                names.push(a.clone());
            }
        }
        // `adduser --system NAME` makes a user; `adduser --system --group NAME` a user and
        // its group; `addgroup --system NAME` (or `adduser --system --group` with no user
        // options, which is the same) and `groupadd -r NAME` a group.
        let Some(name) = names.first().filter(|n| names.len() == 1 && literal(n)) else {
            continue;
        };
        // `--force-badname` (adduser's older spelling of `--allow-bad-names`) lets a package
        // make a name outside NAME_REGEX, such as snmpd's `Debian-snmp`; what no passwd line
        // may hold is refused either way.
        let bad_names_allowed = args.iter().any(|a| {
            matches!(
                a.as_str(),
                "--force-badname" | "--allow-badname" | "--allow-bad-names"
            )
        });
        let refused = if bad_names_allowed {
            badname_error(name)
        } else {
            crate::config::account_name_error(name)
        };
        if refused.is_some() {
            continue;
        }
        let user = tool == "adduser" || tool == "useradd";
        let own_group = user
            && (args.iter().any(|a| a == "--group")
                || (tool == "useradd" && args.iter().any(|a| a == "-U" || a == "--user-group")));
        let acct = Account {
            name: name.clone(),
            user,
            own_group,
            group: group.filter(|_| user),
            home: home.filter(|_| user),
            shell: shell.filter(|_| user),
            gecos: gecos.filter(|_| user),
        };
        if !out
            .iter()
            .any(|a| a.name == acct.name && a.user == acct.user)
        {
            out.push(acct);
        }
    }
    out
}

/// What even adduser's `--allow-bad-names` refuses: an empty or over-long name, one that
/// starts with `-`, `+` or `~`, is all digits, or holds a `:`, `,`, `/`, a space or a
/// control character (each would break or mislead a passwd or group line).
fn badname_error(name: &str) -> Option<String> {
    let bad = name.is_empty()
        || name.len() > 32
        || name.starts_with(['-', '+', '~'])
        || name.chars().all(|c| c.is_ascii_digit())
        || name
            .chars()
            .any(|c| matches!(c, ':' | ',' | '/') || c.is_whitespace() || c.is_control());
    bad.then(|| format!("`{}` cannot be a user or group name", name.escape_debug()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_from_debian_maintainer_scripts() {
        // chrony's, openssh-server's, prometheus-node-exporter's, openssh-client's and udev's
        // forms (bookworm), and what must not count.
        let script = r#"#!/bin/sh
set -e
if ! getent passwd _chrony > /dev/null; then
        adduser --force-badname \
                --system \
                --quiet \
                --group \
                --home /var/lib/chrony \
                --no-create-home _chrony
fi
adduser --quiet --system --no-create-home --home /run/sshd --shell /usr/sbin/nologin sshd
    adduser --quiet --system --home /var/lib/prometheus --no-create-home \
        --group --gecos "Prometheus daemon" prometheus || true
                addgroup --system --quiet --force-badname _ssh
    addgroup --quiet --system input
useradd -r -g daemon -d /var/lib/x -s /bin/false xsvc
groupadd --system grp1
adduser --system "$USER"
adduser ops sudo
addgroup somebody
adduser --system --home /srv/r redir >/dev/null 2>&1
addgroup --system redir2 > /dev/null && echo made
"#;
        let got = from_script(script);
        let summary: Vec<String> = got
            .iter()
            .map(|a| {
                format!(
                    "{}:{}:{}:{:?}:{:?}:{:?}:{:?}",
                    a.name,
                    if a.user { "u" } else { "g" },
                    a.own_group,
                    a.group,
                    a.home,
                    a.shell,
                    a.gecos
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                "_chrony:u:true:None:Some(\"/var/lib/chrony\"):None:None",
                "sshd:u:false:None:Some(\"/run/sshd\"):Some(\"/usr/sbin/nologin\"):None",
                "prometheus:u:true:None:Some(\"/var/lib/prometheus\"):None:Some(\"Prometheus daemon\")",
                "_ssh:g:false:None:None:None:None",
                "input:g:false:None:None:None:None",
                "xsvc:u:false:Some(\"daemon\"):Some(\"/var/lib/x\"):Some(\"/bin/false\"):None",
                "grp1:g:false:None:None:None:None",
                "redir:u:false:None:Some(\"/srv/r\"):None:None",
                "redir2:g:false:None:None:None:None",
            ]
        );
    }

    #[test]
    fn a_name_outside_the_usual_pattern_counts_only_with_force_badname() {
        // snmpd's postinst (bookworm), its variables expanded.
        let w = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
        let got = from_commands([
            w("adduser --quiet --system --group --home /var/lib/snmp --disabled-password --disabled-login --shell /bin/false --force-badname Debian-snmp"),
            w("adduser --system --group Capital"),
            w("adduser --system --force-badname -lead"),
            w("adduser --system --allow-bad-names 1234"),
        ]);
        let names: Vec<(&str, bool, bool)> = got
            .iter()
            .map(|a| (a.name.as_str(), a.user, a.own_group))
            .collect();
        assert_eq!(names, [("Debian-snmp", true, true)]);
        assert_eq!(got[0].home.as_deref(), Some("/var/lib/snmp"));
        assert_eq!(got[0].shell.as_deref(), Some("/bin/false"));
        for bad in ["a:b", "a b", "a,b", "a/b", "+x", "~x", "", "x\n"] {
            assert!(badname_error(bad).is_some(), "{bad:?}");
        }
    }
}
