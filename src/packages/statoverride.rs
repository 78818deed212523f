//! The owner, group and mode a package's `postinst` gives files it ships, as Debian policy
//! 10.9.1 has it done: `dpkg-statoverride --update --add USER GROUP MODE PATH` (ssl-cert's
//! `/etc/ssl/private`, dbus's launch helper), or `chgrp`/`chown`/`chmod` inside an
//! `if ! dpkg-statoverride --list PATH` block (openssh-client's setgid `ssh-agent`), and the
//! same commands inside `if [ -d PATH ]` (cron's crontabs directory). Ingot
//! runs no maintainer scripts, so the assembly applies what this reads (see
//! `assemble::statoverride`). Only literal words count, and variables the script sets once to
//! a literal (`LAUNCHER=/usr/lib/...`); a path or mode a loop or a function's argument gives
//! is not guessed at.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What one script does to one file's owner, group and mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    /// The absolute path.
    pub path: String,
    /// The new owner (a name, or `#UID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The new group (a name, or `#GID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The new permission bits (setuid, setgid and sticky included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// Recorded in dpkg's database of overrides (`dpkg-statoverride --add`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recorded: bool,
    /// Applied to the file at configure time (`--update`, or the script's own chown/chmod);
    /// a recorded override without `--update` only takes effect at the next unpack.
    pub applied: bool,
}

/// The variables a script sets to one literal value and to nothing else.
fn variables(commands: &[Vec<String>]) -> BTreeMap<String, String> {
    let mut known: BTreeMap<String, Option<String>> = BTreeMap::new();
    let name_ok = |n: &str| {
        n.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let poison = |known: &mut BTreeMap<String, Option<String>>, n: &str| {
        known.insert(n.to_string(), None);
    };
    for w in commands {
        let Some(first) = w.first() else { continue };
        match first.as_str() {
            // Set by a loop, `read`, or inside a function: not one value.
            "for" => {
                if let Some(n) = w.get(1) {
                    poison(&mut known, n);
                }
            }
            "read" | "local" | "getopts" => {
                for a in &w[1..] {
                    let n = a.split_once('=').map_or(a.as_str(), |(n, _)| n);
                    poison(&mut known, n);
                }
            }
            _ => {}
        }
        // `NAME=value` alone (before a command it only sets that command's environment).
        let (assignment, alone) = match first.as_str() {
            "export" | "readonly" => (w.get(1), w.len() == 2),
            _ => (Some(first), w.len() == 1),
        };
        let Some((n, v)) = assignment.and_then(|a| a.split_once('=')) else {
            continue;
        };
        if !name_ok(n) {
            continue;
        }
        let value = (alone && super::accounts::literal(v)).then(|| v.to_string());
        match known.get(n) {
            Some(prev) if *prev != value => poison(&mut known, n),
            _ => {
                known.insert(n.to_string(), value);
            }
        }
    }
    known
        .into_iter()
        .filter_map(|(n, v)| Some((n, v?)))
        .collect()
}

/// `word` with `$NAME` and `${NAME}` replaced from `vars`; `None` when it is not then
/// literal.
fn expand(word: &str, vars: &BTreeMap<String, String>) -> Option<String> {
    let out = super::accounts::substitute(word, &|n| vars.get(n).cloned())?;
    super::accounts::literal(&out).then_some(out)
}

/// An absolute path that names one file.
fn path_ok(p: &str) -> bool {
    p.starts_with('/') && !p.contains("/../") && !p.ends_with("/..") && p.len() > 1
}

/// Octal permission bits (`2755`, `0640`).
fn mode(m: &str) -> Option<u32> {
    if m.is_empty() || m.len() > 5 || !m.chars().all(|c| c.is_digit(8)) {
        return None;
    }
    u32::from_str_radix(m, 8).ok().filter(|m| *m <= 0o7777)
}

/// A user or group as dpkg-statoverride and chown take it: a name, or `#ID`.
fn who(w: &str) -> Option<String> {
    let ok = match w.strip_prefix('#') {
        Some(id) => !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()),
        None => crate::config::account_name_error(w).is_none(),
    };
    ok.then(|| w.to_string())
}

/// The override `dpkg-statoverride [--update] --add USER GROUP MODE PATH` records.
fn added(
    u: Option<String>,
    g: Option<String>,
    m: Option<String>,
    p: Option<String>,
    update: bool,
) -> Option<Override> {
    Some(Override {
        owner: Some(who(&u?)?),
        group: Some(who(&g?)?),
        mode: Some(mode(&m?)?),
        path: p.filter(|p| path_ok(p))?,
        recorded: true,
        applied: update,
    })
}

/// The overrides `dpkg-statoverride --add` records among commands a script certainly runs
/// (see `super::script`: its variables expanded, where [`from_script`] takes only literal
/// words and variables set once).
pub fn from_commands(commands: &[Vec<String>]) -> Vec<Override> {
    let mut out: Vec<Override> = Vec::new();
    for c in commands {
        if c[0].rsplit('/').next() != Some("dpkg-statoverride") {
            continue;
        }
        let Some(i) = c.iter().position(|w| w == "--add") else {
            continue;
        };
        let at = |n: usize| c.get(i + n).cloned();
        let update = c.iter().any(|w| w == "--update");
        if let Some(o) = added(at(1), at(2), at(3), at(4), update) {
            out.retain(|x| x.path != o.path);
            out.push(o);
        }
    }
    out
}

/// The overrides one script makes, in its order.
pub fn from_script(script: &str) -> Vec<Override> {
    let commands = super::accounts::commands(script);
    let vars = variables(&commands);
    let mut out: Vec<Override> = Vec::new();
    // The path of the `if ! dpkg-statoverride --list PATH` block the script is in.
    let mut guard: Option<String> = None;
    for w in &commands {
        let Some(first) = w.first() else { continue };
        if matches!(
            first.as_str(),
            "fi" | "else" | "elif" | "}" | "done" | "esac"
        ) {
            guard = None;
        }
        // `then chmod ...` on the line of its `if`.
        let skip = w
            .iter()
            .take_while(|x| matches!(x.as_str(), "then" | "do" | "{"))
            .count();
        let w = &w[skip..];
        let w: Vec<Option<String>> = w.iter().map(|x| expand(x, &vars)).collect();
        let word = |i: usize| w.get(i).cloned().flatten();
        let tool = |t: &Option<String>| {
            t.as_deref()
                .map(|t| t.rsplit('/').next().unwrap_or(t).to_string())
        };
        // `if [ -d PATH ]` (or -e, -f; `test`): what follows changes PATH only where it is,
        // which is how the assembly applies it anyway (cron-daemon-common's crontabs).
        if let Some(at) = w
            .iter()
            .position(|t| matches!(t.as_deref(), Some("[" | "test")))
        {
            let is = matches!(word(at + 1).as_deref(), Some("-d" | "-e" | "-f"));
            let end = word(at + 3);
            if is && (end.is_none() || end.as_deref() == Some("]")) && w.len() <= at + 4 {
                guard = word(at + 2).filter(|p| path_ok(p));
            }
            continue;
        }
        if let Some(at) = w
            .iter()
            .position(|t| tool(t).as_deref() == Some("dpkg-statoverride"))
        {
            let args: Vec<Option<String>> = w[at + 1..].to_vec();
            let has = |o: &str| args.iter().any(|a| a.as_deref() == Some(o));
            let after = |o: &str| {
                args.iter()
                    .position(|a| a.as_deref() == Some(o))
                    .map(|i| i + at + 2)
            };
            if let Some(i) = after("--list") {
                guard = word(i).filter(|p| path_ok(p));
            } else if let Some(i) = after("--add") {
                let Some(o) = added(
                    word(i),
                    word(i + 1),
                    word(i + 2),
                    word(i + 3),
                    has("--update"),
                ) else {
                    continue;
                };
                out.retain(|x| x.path != o.path);
                out.push(o);
            }
            continue;
        }
        // chown/chgrp/chmod of the guarded path, without options.
        let Some(path) = guard.clone() else { continue };
        let Some(t) = w.first().and_then(tool) else {
            continue;
        };
        if w.len() != 3 || word(2).as_deref() != Some(path.as_str()) {
            continue;
        }
        let Some(arg) = word(1) else { continue };
        if arg.starts_with('-') {
            continue;
        }
        let (owner, group, m) = match t.as_str() {
            "chown" => {
                let (u, g) = match arg.split_once([':', '.']) {
                    Some((u, g)) => (u.to_string(), Some(g.to_string())),
                    None => (arg.clone(), None),
                };
                // `chown :GROUP` changes only the group.
                let u = match who(&u) {
                    Some(u) => Some(u),
                    None if u.is_empty() && g.is_some() => None,
                    None => continue,
                };
                let g = match g {
                    Some(g) => match who(&g) {
                        Some(g) => Some(g),
                        None => continue,
                    },
                    None => None,
                };
                (u, g, None)
            }
            "chgrp" => match who(&arg) {
                Some(g) => (None, Some(g), None),
                None => continue,
            },
            "chmod" => match mode(&arg) {
                Some(m) => (None, None, Some(m)),
                None => continue,
            },
            _ => continue,
        };
        // A recorded override of the same path wins, as dpkg-statoverride --list would then
        // have skipped the block.
        if out.iter().any(|o| o.path == path && o.recorded) {
            continue;
        }
        match out.iter_mut().find(|o| o.path == path) {
            Some(o) => {
                o.owner = owner.or(o.owner.take());
                o.group = group.or(o.group.take());
                o.mode = m.or(o.mode);
            }
            None => out.push(Override {
                path,
                owner,
                group,
                mode: m,
                recorded: false,
                applied: true,
            }),
        }
    }
    out
}

/// An override spelled out, for tests here and in the assembly.
#[cfg(test)]
pub(crate) fn ov(
    path: &str,
    o: Option<&str>,
    g: Option<&str>,
    m: Option<u32>,
    rec: bool,
    app: bool,
) -> Override {
    Override {
        path: path.into(),
        owner: o.map(Into::into),
        group: g.map(Into::into),
        mode: m,
        recorded: rec,
        applied: app,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_overrides_are_read_from_evaluated_commands() {
        let c = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
        assert_eq!(
            from_commands(&[
                c("dpkg-statoverride --list /etc/redis/redis.conf"),
                c("dpkg-statoverride --update --add redis redis 640 /etc/redis/redis.conf"),
                c("dpkg-statoverride --add root adm 9999 /etc/bad-mode"),
                c("dpkg-statoverride --add root adm 0640 relative"),
                c("dpkg-statoverride --quiet --add root crontab 2755 /usr/bin/crontab"),
            ]),
            [
                ov(
                    "/etc/redis/redis.conf",
                    Some("redis"),
                    Some("redis"),
                    Some(0o640),
                    true,
                    true
                ),
                ov(
                    "/usr/bin/crontab",
                    Some("root"),
                    Some("crontab"),
                    Some(0o2755),
                    true,
                    false
                ),
            ]
        );
    }

    #[test]
    fn the_forms_debian_postinsts_use_are_read() {
        // openssh-client: chgrp and chmod in a guarded block, inside a function.
        let ssh = "#!/bin/sh\nset -e\naction=\"$1\"\n\
            set_ssh_agent_permissions() {\n\
            \tif ! getent group _ssh >/dev/null; then\n\
            \t\taddgroup --system --quiet --force-badname _ssh\n\
            \tfi\n\
            \tif ! dpkg-statoverride --list /usr/bin/ssh-agent >/dev/null; then\n\
            \t\tchgrp _ssh /usr/bin/ssh-agent\n\
            \t\tchmod 2755 /usr/bin/ssh-agent\n\
            \tfi\n\
            }\n\
            chmod 600 /etc/elsewhere\n";
        // cron-daemon-common: chown and chmod of a directory where it is.
        let cron = "crondir=\"/var/spool/cron\"\n\
            getent group crontab > /dev/null 2>&1 || addgroup --system crontab\n\
            if [ -d $crondir/crontabs ] ; then\n\
            \tchown root:crontab $crondir/crontabs\n\tchmod 1730 $crondir/crontabs\n\
            \tcd $crondir/crontabs\n\tfor tab_name in *\n\tdo\n\
            \t\tchown \"$tab_owner:crontab\" \"$tab_name\"\n\tdone\nfi\n\
            [ -e /var/x ] && chmod 0750 /var/x\n\
            if [ ! -d /var/y ]; then chmod 0750 /var/y; fi\n";
        assert_eq!(
            from_script(cron),
            [
                ov(
                    "/var/spool/cron/crontabs",
                    Some("root"),
                    Some("crontab"),
                    Some(0o1730),
                    false,
                    true
                ),
                ov("/var/x", None, None, Some(0o750), false, true),
            ]
        );
        assert_eq!(
            from_script(ssh),
            [ov(
                "/usr/bin/ssh-agent",
                None,
                Some("_ssh"),
                Some(0o2755),
                false,
                true
            )]
        );
        // dbus: --add with --update, through variables set once.
        let dbus = "#!/bin/sh\nset -e\nMESSAGEUSER=messagebus\n\
            LAUNCHER=/usr/lib/dbus-1.0/dbus-daemon-launch-helper\n\
            if [ \"$1\" = configure ]; then\n\
            \tif ! dpkg-statoverride --list \"$LAUNCHER\" >/dev/null; then\n\
            \t\tdpkg-statoverride --update --add root \"$MESSAGEUSER\" 4754 \"${LAUNCHER}\"\n\
            \tfi\nfi\n";
        assert_eq!(
            from_script(dbus),
            [ov(
                "/usr/lib/dbus-1.0/dbus-daemon-launch-helper",
                Some("root"),
                Some("messagebus"),
                Some(0o4754),
                true,
                true
            )]
        );
        // ssl-cert: --add on its own line after `then` on the next; and without --update, a
        // record only.
        let ssl = "if ! dpkg-statoverride --list /etc/ssl/private >/dev/null 2>&1\nthen\n\
            \tdpkg-statoverride --update --add root ssl-cert 710 /etc/ssl/private\nfi\n\
            dpkg-statoverride --add root root 0600 /etc/later\n\
            if ! dpkg-statoverride --list /usr/bin/x; then chown root:staff /usr/bin/x; chmod 4755 /usr/bin/x; fi\n\
            if ! dpkg-statoverride --list /var/lib/y; then chown :adm /var/lib/y; fi\n";
        assert_eq!(
            from_script(ssl),
            [
                ov(
                    "/etc/ssl/private",
                    Some("root"),
                    Some("ssl-cert"),
                    Some(0o710),
                    true,
                    true
                ),
                ov(
                    "/etc/later",
                    Some("root"),
                    Some("root"),
                    Some(0o600),
                    true,
                    false
                ),
                ov(
                    "/usr/bin/x",
                    Some("root"),
                    Some("staff"),
                    Some(0o4755),
                    false,
                    true
                ),
                ov("/var/lib/y", None, Some("adm"), None, false, true),
            ]
        );
    }

    #[test]
    fn what_a_loop_a_function_or_a_second_value_gives_is_not_guessed() {
        let s = "set_perms() {\n USER=$1\n FILE=$4\n\
            if ! dpkg-statoverride --list \"$FILE\" > /dev/null 2>&1; then\n\
            chown \"$USER\" \"$FILE\"\n chmod \"$3\" \"$FILE\"\n fi\n}\n\
            set_perms root root 4755 /usr/lib/polkit-1/helper\n\
            for x in $maybesetuid; do\n\
            if ! dpkg-statoverride --list \"/usr/bin/$x\" >/dev/null; then\n\
            chown man \"/usr/bin/$x\"\n chmod 4755 \"/usr/bin/$x\"\n fi\ndone\n\
            P=/a\nP=/b\ndpkg-statoverride --update --add root root 4755 $P\n\
            Q=/c\nQ=/d true\ndpkg-statoverride --update --add root root 4755 $Q\n\
            dpkg-statoverride --update --add root root u+s /usr/bin/y\n\
            dpkg-statoverride --update --add root root 4755 relative/z\n\
            dpkg-statoverride --update --add 'bad name' root 4755 /usr/bin/z\n\
            if ! dpkg-statoverride --list /usr/bin/w; then chmod -R 4755 /usr/bin/w; chmod 4755 /usr/bin/v; fi\n";
        assert_eq!(from_script(s), []);
    }
}
