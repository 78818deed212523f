//! The alternatives a package registers in its `postinst` (`update-alternatives --install LINK
//! NAME PATH PRIORITY [--slave LINK NAME PATH]...`): `awk` for mawk, `pager` for less, `nawk`,
//! `rmt`, `editor`... Ingot runs no maintainer scripts, so the assembly makes the links and
//! dpkg's records of them from what this reads (only what a script writes out literally).

use serde::{Deserialize, Serialize};

/// A link of a group: the generic path, its name under `/etc/alternatives`, and the file it
/// leads to for this choice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// The generic path (`/usr/bin/awk`).
    pub link: String,
    /// The name (`awk`).
    pub name: String,
    /// The file of this choice (`/usr/bin/mawk`).
    pub path: String,
}

/// One choice a package adds to a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alternative {
    /// The master link.
    pub master: Link,
    /// Its priority (the highest present choice wins).
    pub priority: i64,
    /// Links that follow the master.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slaves: Vec<Link>,
}

/// Options of update-alternatives that take a value before the action.
const VALUED: &[&str] = &["--altdir", "--admindir", "--instdir", "--root", "--log"];

fn link(w: &[String]) -> Option<Link> {
    let [link, name, path] = w else {
        return None;
    };
    let ok = |p: &str| p.starts_with('/') && super::accounts::literal(p) && !p.contains("/../");
    (ok(link) && ok(path) && super::accounts::literal(name) && !name.contains('/')).then(|| Link {
        link: link.clone(),
        name: name.clone(),
        path: path.clone(),
    })
}

/// The choices one script adds.
pub fn from_script(script: &str) -> Vec<Alternative> {
    let mut out = Vec::new();
    for w in super::accounts::commands(script) {
        let Some(at) = w
            .iter()
            .position(|t| t.rsplit('/').next() == Some("update-alternatives"))
        else {
            continue;
        };
        let mut i = at + 1;
        while i < w.len() && w[i] != "--install" {
            i += if VALUED.contains(&w[i].as_str()) {
                2
            } else {
                1
            };
        }
        let Some(master) = w.get(i + 1..i + 4).and_then(link) else {
            continue;
        };
        let Some(Ok(priority)) = w.get(i + 4).map(|p| p.parse::<i64>()) else {
            continue;
        };
        let mut slaves = Vec::new();
        let mut j = i + 5;
        let mut whole = true;
        while w.get(j).map(String::as_str) == Some("--slave") {
            match w.get(j + 1..j + 4).and_then(link) {
                Some(s) => slaves.push(s),
                None => whole = false,
            }
            j += 4;
        }
        if whole {
            out.push(Alternative {
                master,
                priority,
                slaves,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_commands_are_read_with_their_slaves() {
        let script = "#!/bin/sh\nset -e\n\
            if [ \"$1\" = \"configure\" ]; then\n\
            \tupdate-alternatives --install /usr/bin/awk awk /usr/bin/mawk 5 \\\n\
            \t    --slave /usr/share/man/man1/awk.1.gz awk.1.gz /usr/share/man/man1/mawk.1.gz \\\n\
            \t    --slave /usr/bin/nawk nawk /usr/bin/mawk\n\
            fi\n\
            update-alternatives --quiet --install /usr/bin/pager pager \\\n  /usr/bin/less 77 --slave /usr/share/man/man1/pager.1.gz \\\n  pager.1.gz /usr/share/man/man1/less.1.gz\n\
            update-alternatives --install /usr/bin/x x \"$PATH_OF_X\" 10\n\
            update-alternatives --install /usr/bin/y y /usr/bin/y.real 10 --slave /usr/bin/z z $Z\n\
            update-alternatives --install /usr/bin/v v /usr/bin/v.real high\n\
            update-alternatives --remove awk /usr/bin/mawk\n";
        let got = from_script(script);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(
            (got[0].master.link.as_str(), got[0].master.name.as_str()),
            ("/usr/bin/awk", "awk")
        );
        assert_eq!(
            (got[0].master.path.as_str(), got[0].priority),
            ("/usr/bin/mawk", 5)
        );
        let slaves: Vec<&str> = got[0].slaves.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(slaves, ["awk.1.gz", "nawk"]);
        assert_eq!(got[1].master.path, "/usr/bin/less");
        assert_eq!(got[1].priority, 77);
        assert_eq!(got[1].slaves[0].link, "/usr/share/man/man1/pager.1.gz");
    }
}
