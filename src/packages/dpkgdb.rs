//! dpkg's database in the image (`/var/lib/dpkg`), as dpkg itself leaves it after installing
//! the packages: the status file, each package's file list and the control members dpkg keeps
//! (`info/PKG.md5sums`, `.conffiles`, maintainer scripts, `.triggers`, `.shlibs`, ...), the
//! hash of each configuration file as the package shipped it (the status file's `Conffiles`),
//! the trigger interests (`triggers/File` and one file per named trigger) and the database
//! format (`info/format`). With them, `dpkg --audit` and `dpkg --verify` read the image as they
//! read an installed system, a later `apt upgrade` on the machine tells a configuration file
//! someone edited from one they did not, runs the old version's `prerm` and `postrm`, and
//! installing a library or a man page on the machine runs the triggers of the packages that
//! asked for them (ldconfig, man-db). The diversions a package's `postinst` makes when it is
//! first configured are recorded as `dpkg-divert` records them (`diversions`).

use std::collections::BTreeMap;

use anyhow::Result;
use md5::{Digest, Md5};

use super::deb::InfoFile;
use crate::config::Arch;
use crate::tree::{Entry, Kind, Tree};

/// The database being written, one package at a time.
#[derive(Default)]
pub struct Db {
    status: String,
    /// (`PKG` or `PKG:ARCH`, member name, mode, text), the file list as member `list`.
    info: Vec<(String, String, u32, String)>,
    /// `triggers/File` lines.
    file_triggers: Vec<String>,
    /// Named trigger → its interested packages' lines.
    named: BTreeMap<String, Vec<String>>,
    /// The diversions of [`DIVERSIONS`] whose package and script the image holds.
    diversions: Vec<&'static Diversion>,
}

/// A diversion a package's `postinst` makes with `dpkg-divert --add` when it is first
/// configured. Ingot runs no maintainer script, and the scripts that divert also move and
/// link the diverted path (dash's removes `/bin/sh` and links it again), which a partial
/// evaluation must not half do; the diversion alone is recorded, while the script still holds
/// every line it is recognised by.
struct Diversion {
    package: &'static str,
    /// Lines of the `postinst` that make it (each must be there).
    lines: &'static [&'static str],
    /// The diverted path, and where another package's file of that name goes.
    from: &'static str,
    to: &'static str,
    /// A directory the script asks for before it diverts (relative to the root).
    only_with_dir: Option<&'static str>,
}

/// The diversions known. dash ships `/bin/sh` (and `sh.1.gz`) and claims them with a
/// diversion (`claim_binsh`), so that bash, or a local administrator, can take `/bin/sh` back;
/// without the record, dpkg would show `/bin/sh` as dash's plain file and dash's next upgrade
/// would take it for a new claim, delete `/bin/sh` and link it again.
const DIVERSIONS: &[Diversion] = &[
    Diversion {
        package: "dash",
        lines: &[
            "claim_binsh /bin/sh dash",
            "dpkg-divert --package dash --no-rename --divert $distrib --add $dfile",
        ],
        from: "/bin/sh",
        to: "/bin/sh.distrib",
        only_with_dir: None,
    },
    Diversion {
        package: "dash",
        lines: &[
            "if [ -d \"$DPKG_ROOT/usr/share/man/man1/\" ]; then",
            "claim_binsh /usr/share/man/man1/sh.1.gz dash.1.gz \\",
            "/usr/share/man/man1/sh.distrib.1.gz",
            "dpkg-divert --package dash --no-rename --divert $distrib --add $dfile",
        ],
        from: "/usr/share/man/man1/sh.1.gz",
        to: "/usr/share/man/man1/sh.distrib.1.gz",
        only_with_dir: Some("usr/share/man/man1"),
    },
];

impl Db {
    /// Record one package unpacked into `tree` (its files as it shipped them, before any
    /// maintainer script or assembly step changed one): `control` is its control file,
    /// `arch` its architecture, `listed` the paths it installed.
    pub fn add(
        &mut self,
        tree: &Tree,
        control: &str,
        members: &[InfoFile],
        name: &str,
        arch: &str,
        listed: &[String],
    ) {
        let multi_same = control.lines().any(|l| l.trim() == "Multi-Arch: same");
        // dpkg names a Multi-Arch: same package's files, and its trigger interests, with its
        // architecture.
        let key = if multi_same {
            format!("{name}:{arch}")
        } else {
            name.to_string()
        };
        let conffiles = members
            .iter()
            .find(|m| m.name == "conffiles")
            .map(|m| conffile_hashes(tree, &m.text))
            .unwrap_or_default();
        self.status.push_str(&stanza(control, &conffiles));
        self.status.push_str("\n\n");
        let mut list = String::from("/.\n");
        for p in listed {
            list.push_str(p.trim_end_matches('/'));
            list.push('\n');
        }
        self.info.push((key.clone(), "list".into(), 0o644, list));
        if !members.iter().any(|m| m.name == "md5sums") {
            // dpkg makes the file for a package that ships none (Ingot's generated ones).
            self.info
                .push((key.clone(), "md5sums".into(), 0o644, md5sums(tree, listed)));
        }
        if let Some(post) = members.iter().find(|m| m.name == "postinst") {
            let lines: Vec<&str> = post.text.lines().map(str::trim).collect();
            self.diversions.extend(
                DIVERSIONS
                    .iter()
                    .filter(|d| d.package == name && d.lines.iter().all(|l| lines.contains(l))),
            );
        }
        for m in members {
            if m.name == "triggers" {
                for (trigger, noawait) in interests(&m.text) {
                    let who = format!("{key}{}", if noawait { "/noawait" } else { "" });
                    if trigger.starts_with('/') {
                        self.file_triggers.push(format!("{trigger} {who}"));
                    } else {
                        self.named.entry(trigger).or_default().push(who);
                    }
                }
            }
            let mode = if m.mode & 0o111 != 0 { 0o755 } else { 0o644 };
            self.info
                .push((key.clone(), m.name.clone(), mode, m.text.clone()));
        }
    }

    /// Write the database into `tree`.
    pub fn write(self, tree: &mut Tree, arch: Arch) -> Result<()> {
        tree.insert("var/lib/dpkg/status", Entry::file(self.status, 0o644))?;
        tree.insert("var/lib/dpkg/available", Entry::file("", 0o644))?;
        tree.insert(
            "var/lib/dpkg/arch",
            Entry::file(format!("{}\n", arch.debian()), 0o644),
        )?;
        // Without it dpkg takes the database for the format before multiarch, looks for a
        // Multi-Arch: same package's files without the architecture in their names, and
        // reports every such package as needing to be reinstalled.
        tree.insert("var/lib/dpkg/info/format", Entry::file("1\n", 0o644))?;
        for (key, member, mode, text) in self.info {
            tree.insert(
                &format!("var/lib/dpkg/info/{key}.{member}"),
                Entry::file(text, mode),
            )?;
        }
        let mut file = String::new();
        for l in self.file_triggers {
            file.push_str(&l);
            file.push('\n');
        }
        tree.insert("var/lib/dpkg/triggers/File", Entry::file(file, 0o644))?;
        tree.insert("var/lib/dpkg/triggers/Unincorp", Entry::file("", 0o644))?;
        // Each diversion as three lines, as dpkg-divert writes them; the scripts run after
        // every package is unpacked, so a directory one asks for is looked for now.
        let diversions: String = self
            .diversions
            .iter()
            .filter(|d| {
                d.only_with_dir
                    .is_none_or(|p| matches!(tree.get(p).map(|e| &e.kind), Some(Kind::Dir)))
            })
            .map(|d| format!("{}\n{}\n{}\n", d.from, d.to, d.package))
            .collect();
        if !diversions.is_empty() {
            tree.insert("var/lib/dpkg/diversions", Entry::file(diversions, 0o644))?;
        }
        for (trigger, who) in self.named {
            let text: String = who.iter().map(|w| format!("{w}\n")).collect();
            tree.insert(
                &format!("var/lib/dpkg/triggers/{trigger}"),
                Entry::file(text, 0o644),
            )?;
        }
        Ok(())
    }
}

/// The status entry: the control file with `Status` after `Package` and, when the package has
/// configuration files, `Conffiles` before `Description`, where dpkg writes them.
fn stanza(control: &str, conffiles: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut status_done = false;
    let mut conffiles_done = conffiles.is_empty();
    let put_conffiles = |out: &mut String| {
        out.push_str("Conffiles:\n");
        for (p, h) in conffiles {
            out.push_str(&format!(" {p} {h}\n"));
        }
    };
    for line in control.trim_end().lines() {
        if !conffiles_done && line.starts_with("Description:") {
            put_conffiles(&mut out);
            conffiles_done = true;
        }
        out.push_str(line);
        out.push('\n');
        if !status_done && line.starts_with("Package:") {
            out.push_str("Status: install ok installed\n");
            status_done = true;
        }
    }
    if !conffiles_done {
        put_conffiles(&mut out);
    }
    out.truncate(out.trim_end().len());
    out
}

/// Each configuration file the `conffiles` member names, with the MD5 of the file as the
/// package installed it. A `remove-on-upgrade /etc/x` line (procps's old sysctl.conf in
/// Debian 13) names a file the package does not install, which dpkg records as
/// `newconffile remove-on-upgrade`; a file the package lacks has nothing to hash and is not
/// recorded.
fn conffile_hashes(tree: &Tree, conffiles: &str) -> Vec<(String, String)> {
    conffiles
        .lines()
        .map(str::trim)
        .filter_map(|l| {
            if let Some(p) = l.strip_prefix("remove-on-upgrade ") {
                let p = p.trim();
                return p
                    .starts_with('/')
                    .then(|| (p.to_string(), "newconffile remove-on-upgrade".to_string()));
            }
            if !l.starts_with('/') {
                return None;
            }
            let data = tree.read(l)?;
            Some((l.to_string(), hex::encode(Md5::digest(&data))))
        })
        .collect()
}

/// An `md5sums` member for the regular files among `listed`, as dpkg makes one.
fn md5sums(tree: &Tree, listed: &[String]) -> String {
    listed
        .iter()
        .filter(|p| matches!(tree.get(p).map(|e| &e.kind), Some(Kind::File(_))))
        .filter_map(|p| {
            let data = tree.read(p)?;
            Some(format!(
                "{}  {}\n",
                hex::encode(Md5::digest(&data)),
                p.trim_start_matches('/')
            ))
        })
        .collect()
}

/// The triggers a `triggers` member declares interest in, each with whether its activators
/// need not wait for it (`interest-noawait`).
fn interests(text: &str) -> Vec<(String, bool)> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter_map(|l| {
            let (directive, name) = l.split_once(char::is_whitespace)?;
            let noawait = match directive {
                "interest" | "interest-await" => false,
                "interest-noawait" => true,
                _ => return None,
            };
            Some((name.trim().to_string(), noawait))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, mode: u32, text: &str) -> InfoFile {
        InfoFile {
            name: name.into(),
            mode,
            text: text.into(),
        }
    }

    #[test]
    fn a_package_is_recorded_as_dpkg_records_it() {
        let mut t = Tree::new();
        t.insert("etc/app.conf", Entry::file("a = 1\n", 0o644))
            .unwrap();
        t.insert("usr/bin/app", Entry::file("bin", 0o755)).unwrap();
        let control = "Package: libapp1\nVersion: 1.0\nArchitecture: amd64\nMulti-Arch: same\nDescription: an app\n more text\nHomepage: https://example.com\n";
        let members = [
            member("conffiles", 0o644, "/etc/app.conf\nremove-on-upgrade /etc/old.conf\n/etc/gone.conf\n"),
            member("md5sums", 0o644, "d41d8cd98f00b204e9800998ecf8427e  usr/bin/app\n"),
            member("postinst", 0o755, "#!/bin/sh\nexit 0\n"),
            member(
                "triggers",
                0o644,
                "# interest in man pages\ninterest-noawait /usr/share/man\ninterest-await ldconfig\ninterest foo # note\nactivate-noawait ldconfig\n",
            ),
        ];
        let mut db = Db::default();
        db.add(
            &t,
            control,
            &members,
            "libapp1",
            "amd64",
            &["/etc/app.conf".into(), "/usr/bin/app".into()],
        );
        db.add(
            &t,
            "Package: tool\nVersion: 2\nArchitecture: all\nDescription: x\n",
            &[member("triggers", 0o644, "interest-noawait ldconfig\n")],
            "tool",
            "all",
            &[],
        );
        db.write(&mut t, Arch::X86_64).unwrap();
        let read = |p: &str| String::from_utf8(t.read(p).unwrap()).unwrap();
        assert_eq!(read("var/lib/dpkg/info/format"), "1\n");
        let status = read("var/lib/dpkg/status");
        let hash = hex::encode(Md5::digest(b"a = 1\n"));
        assert_eq!(
            status,
            format!("Package: libapp1\nStatus: install ok installed\nVersion: 1.0\nArchitecture: amd64\nMulti-Arch: same\nConffiles:\n /etc/app.conf {hash}\n /etc/old.conf newconffile remove-on-upgrade\nDescription: an app\n more text\nHomepage: https://example.com\n\nPackage: tool\nStatus: install ok installed\nVersion: 2\nArchitecture: all\nDescription: x\n\n")
        );
        assert_eq!(
            read("var/lib/dpkg/info/libapp1:amd64.list"),
            "/.\n/etc/app.conf\n/usr/bin/app\n"
        );
        assert_eq!(
            read("var/lib/dpkg/info/libapp1:amd64.postinst"),
            "#!/bin/sh\nexit 0\n"
        );
        assert_eq!(
            t.get("var/lib/dpkg/info/libapp1:amd64.postinst")
                .unwrap()
                .mode,
            0o755
        );
        assert_eq!(
            t.get("var/lib/dpkg/info/libapp1:amd64.md5sums")
                .unwrap()
                .mode,
            0o644
        );
        assert!(t.get("var/lib/dpkg/info/libapp1:amd64.control").is_none());
        assert!(t.get("var/lib/dpkg/info/tool.triggers").is_some());
        assert_eq!(
            read("var/lib/dpkg/triggers/File"),
            "/usr/share/man libapp1:amd64/noawait\n"
        );
        assert_eq!(
            read("var/lib/dpkg/triggers/ldconfig"),
            "libapp1:amd64\ntool/noawait\n"
        );
        assert_eq!(read("var/lib/dpkg/triggers/foo"), "libapp1:amd64\n");
        assert_eq!(read("var/lib/dpkg/triggers/Unincorp"), "");
        // A package without md5sums gets one, as dpkg makes it; one with files, theirs.
        assert_eq!(read("var/lib/dpkg/info/tool.md5sums"), "");
        let mut other = Db::default();
        other.add(
            &t,
            "Package: gen\nVersion: 1\n",
            &[],
            "gen",
            "all",
            &["/usr".into(), "/usr/bin/app".into(), "/etc/app.conf".into()],
        );
        other.write(&mut t, Arch::X86_64).unwrap();
        let read = |p: &str| String::from_utf8(t.read(p).unwrap()).unwrap();
        assert_eq!(
            read("var/lib/dpkg/info/gen.md5sums"),
            format!(
                "{}  usr/bin/app\n{hash}  etc/app.conf\n",
                hex::encode(Md5::digest(b"bin"))
            )
        );
    }

    #[test]
    fn a_control_file_without_description_gets_conffiles_at_its_end() {
        let c = [("/etc/x".to_string(), "00".to_string())];
        assert_eq!(
            stanza("Package: p\nVersion: 1\n", &c),
            "Package: p\nStatus: install ok installed\nVersion: 1\nConffiles:\n /etc/x 00"
        );
        assert_eq!(
            stanza("Package: p\nVersion: 1\n\n", &[]),
            "Package: p\nStatus: install ok installed\nVersion: 1"
        );
    }

    #[test]
    fn dashs_diversions_are_recorded_only_with_the_script_that_makes_them() {
        let post = "#!/bin/dash\nclaim_binsh() {\n\tdpkg-divert --package dash --no-rename --divert $distrib --add $dfile\n}\nclaim_binsh /bin/sh dash\nif [ -d \"$DPKG_ROOT/usr/share/man/man1/\" ]; then\n    claim_binsh /usr/share/man/man1/sh.1.gz dash.1.gz \\\n        /usr/share/man/man1/sh.distrib.1.gz\nfi\n";
        let written = |name: &str, text: &str, man: bool| {
            let mut t = Tree::new();
            if man {
                t.insert("usr/share/man/man1", Entry::dir(0o755)).unwrap();
            }
            let mut db = Db::default();
            db.add(
                &t,
                "Package: x\n",
                &[member("postinst", 0o755, text)],
                name,
                "amd64",
                &[],
            );
            db.write(&mut t, Arch::X86_64).unwrap();
            t.read("var/lib/dpkg/diversions")
                .map(|b| String::from_utf8(b).unwrap())
                .unwrap_or_default()
        };
        assert_eq!(
            written("dash", post, true),
            "/bin/sh\n/bin/sh.distrib\ndash\n/usr/share/man/man1/sh.1.gz\n/usr/share/man/man1/sh.distrib.1.gz\ndash\n"
        );
        // The man page's only where the script finds its directory.
        assert_eq!(
            written("dash", post, false),
            "/bin/sh\n/bin/sh.distrib\ndash\n"
        );
        // Another package, or a dash whose script no longer diverts: nothing.
        assert_eq!(written("bash", post, true), "");
        let no_divert = post.replace("--add $dfile", "--remove $dfile");
        assert_eq!(written("dash", &no_divert, true), "");
    }
}
