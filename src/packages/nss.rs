//! The Name Service Switch services a package adds to `/etc/nsswitch.conf` when dpkg configures
//! it. Debian's NSS modules (libnss-systemd, libnss-resolve, libnss-myhostname, ...) do it in
//! a `postinst` that debhelper's `dh_installnss` writes, and that names each service it adds in
//! a comment of a fixed form:
//!
//! `# Installing hosts/resolve[!UNAVAIL=return] from libnss-resolve in position before=dns`
//!
//! Ingot runs no maintainer scripts: it reads those comments, and the assembly adds the
//! services to the file the same way (see `assemble::defaults`).

use serde::{Deserialize, Serialize};

/// Where a service goes in its database's line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    /// First on the line.
    First,
    /// Last on the line (before a comment).
    Last,
    /// Before this service (nothing is added when the line does not name it).
    Before(String),
    /// After this service (nothing is added when the line does not name it).
    After(String),
}

/// One service a package's postinst adds to one database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NssEntry {
    /// The database (`hosts`, `passwd`, ...).
    pub db: String,
    /// The service (`resolve`).
    pub service: String,
    /// Its action, brackets included (`[!UNAVAIL=return]`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Where it goes.
    pub position: Position,
}

fn plain(word: &str) -> bool {
    !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// The services one script adds, in the order it adds them.
pub fn from_script(script: &str) -> Vec<NssEntry> {
    let mut out = Vec::new();
    for line in script.lines() {
        let Some(rest) = line.trim_start().strip_prefix("# Installing ") else {
            continue;
        };
        let w: Vec<&str> = rest.split_whitespace().collect();
        let [what, "from", _package, "in", "position", position] = w[..] else {
            continue;
        };
        let Some((db, service)) = what.split_once('/') else {
            continue;
        };
        let (service, action) = match service.split_once('[') {
            Some((s, a)) if a.ends_with(']') && !a.contains(['[', '\n']) => {
                (s, Some(format!("[{a}")))
            }
            Some(_) => continue,
            None => (service, None),
        };
        let position = match position.split_once('=') {
            None if position == "first" => Position::First,
            None if position == "last" => Position::Last,
            Some(("before", s)) if plain(s) => Position::Before(s.to_string()),
            Some(("after", s)) if plain(s) => Position::After(s.to_string()),
            _ => continue,
        };
        if plain(db) && plain(service) {
            out.push(NssEntry {
                db: db.to_string(),
                service: service.to_string(),
                action,
                position,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_comments_dh_installnss_writes_are_read() {
        let script = "#!/bin/sh\nset -e\n# Automatically added by dh_installnss/1.7\n\
            if [ \"$1\" = \"configure\" ] ; then\n\
            \t# Installing hosts/resolve[!UNAVAIL=return] from libnss-resolve in position before=dns\n\
            \tsed -E -i /etc/nsswitch.conf -e 's/x/y/'\n\
            \t# Installing passwd/systemd from libnss-systemd in position last\n\
            \t# Installing hosts/myhostname from libnss-myhostname in position after=files\n\
            \t# Installing hosts/mdns4_minimal from x in position first\n\
            fi\n\
            # Installing hosts/$(reboot) from evil in position last\n\
            # Installing hosts/a[b from evil in position last\n\
            # Installing hosts/b from evil in position before=$x\n\
            # Installing hosts/c from evil in position somewhere\n";
        let got = from_script(script);
        let want = [
            (
                "hosts",
                "resolve",
                Some("[!UNAVAIL=return]"),
                Position::Before("dns".into()),
            ),
            ("passwd", "systemd", None, Position::Last),
            ("hosts", "myhostname", None, Position::After("files".into())),
            ("hosts", "mdns4_minimal", None, Position::First),
        ];
        assert_eq!(got.len(), want.len(), "{got:?}");
        for (g, (db, s, a, p)) in got.iter().zip(want) {
            assert_eq!(
                (
                    g.db.as_str(),
                    g.service.as_str(),
                    g.action.as_deref(),
                    &g.position
                ),
                (db, s, a, &p)
            );
        }
    }
}
