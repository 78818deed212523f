//! The configuration files the packages' postinst would install with ucf rather than ship
//! as conffiles (chrony's `/etc/chrony/chrony.conf`, unattended-upgrades'
//! `/etc/apt/apt.conf.d/50unattended-upgrades`): `ucf [--three-way] NEW DEST` copies the new
//! version the package ships under `/usr/share` into place on a first install, and `ucfr
//! PACKAGE DEST` registers it. From the commands a first configure certainly runs (see
//! `packages::script`), each new version is copied into place as ucf does, and ucf's own
//! records are written the way ucf and ucfr write them (`/var/lib/ucf/hashfile` with each
//! file's MD5, `registry` with the package it belongs to, and a copy of the new version in
//! `cache` for `--three-way` or a file under 25600 bytes), so that on the machine an upgrade of the package sees the file as
//! unchanged and replaces it.

use anyhow::Result;
use md5::{Digest, Md5};

use crate::tree::{Entry, Kind, Tree};

/// The size from which ucf caches a new version only when asked (`--three-way`).
const UNCACHED_SIZE: usize = 25600;

/// One file a script installs with ucf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct UcfFile {
    /// The new version the package ships (an absolute path).
    pub source: String,
    /// Where ucf puts it.
    pub dest: String,
    /// `--three-way`: ucf also keeps a copy of the new version in its cache for later merges.
    pub three_way: bool,
    /// The package `ucfr` registers it to (none when the script does not register it).
    pub registered: Option<String>,
}

/// An absolute path that names one file.
fn path_ok(p: &str) -> bool {
    p.starts_with('/') && !p.split('/').any(|c| c == "..") && p.len() > 1
}

/// The files `ucf` installs among `commands`, with the package `ucfr` registers each to.
pub(super) fn files(commands: &[Vec<String>]) -> Vec<UcfFile> {
    let mut out: Vec<UcfFile> = Vec::new();
    for c in commands {
        match c[0].rsplit('/').next() {
            Some("ucf") => {
                let mut three_way = false;
                let mut plain = Vec::new();
                let mut it = c[1..].iter();
                let mut install = true;
                while let Some(w) = it.next() {
                    match w.as_str() {
                        "--three-way" | "-3" => three_way = true,
                        "--debconf-ok" | "--verbose" | "-v" => {}
                        "--sum-file" => {
                            it.next();
                        }
                        // --purge, --no-action, another state directory...: not an install.
                        o if o.starts_with('-') => install = false,
                        _ => plain.push(w.clone()),
                    }
                }
                if let (true, [source, dest]) = (install, plain.as_slice()) {
                    if path_ok(source) && path_ok(dest) {
                        out.retain(|u| &u.dest != dest);
                        out.push(UcfFile {
                            source: source.clone(),
                            dest: dest.clone(),
                            three_way,
                            registered: None,
                        });
                    }
                }
            }
            Some("ucfr") => {
                if let [_, pkg, dest] = c.as_slice() {
                    if let Some(u) = out.iter_mut().find(|u| &u.dest == dest) {
                        u.registered = Some(pkg.clone());
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Where ucf keeps its state.
const STATE: &str = "var/lib/ucf";

/// Files a postinst writes to a temporary file before it hands them to ucf, which
/// `packages::ucf` does not follow.
struct Temporary {
    package: &'static str,
    /// What it ships, and where ucf puts it.
    source: &'static str,
    dest: &'static str,
    /// `ucf --three-way`.
    three_way: bool,
    /// The script's edit for debconf's default answer, as (line start, the line it makes):
    /// the file is taken only when every line so starting already is that line, so that the
    /// copy is what the script writes.
    unchanged: Option<(&'static str, &'static str)>,
}

/// On a first install with debconf's default answers each is what the package ships:
/// openssh-server edits its copy only for other answers, postgresql-common's sed sets
/// `ssl = on`, for the default answer, in a template that says so already, samba-common's
/// the workgroup its template already names.
const THROUGH_A_TEMPORARY: &[Temporary] = &[
    Temporary {
        package: "openssh-server",
        source: "/usr/share/openssh/sshd_config",
        dest: "/etc/ssh/sshd_config",
        three_way: true,
        unchanged: None,
    },
    Temporary {
        package: "postgresql-common",
        source: "/usr/share/postgresql-common/createcluster.conf",
        dest: "/etc/postgresql-common/createcluster.conf",
        three_way: false,
        unchanged: Some(("ssl =", "ssl = on")),
    },
    // samba-common copies its template to /run/samba/upgrades, sets the workgroup debconf
    // answers (WORKGROUP by default) and drops the DHCP include (off by default), then
    // hands the copy to ucf.
    Temporary {
        package: "samba-common",
        source: "/usr/share/samba/smb.conf",
        dest: "/etc/samba/smb.conf",
        three_way: true,
        unchanged: Some(("   workgroup", "   workgroup = WORKGROUP")),
    },
];

/// The files of [`THROUGH_A_TEMPORARY`] whose package the image has.
pub(super) fn through_a_temporary(tree: &Tree) -> Vec<UcfFile> {
    THROUGH_A_TEMPORARY
        .iter()
        .filter(|t| {
            let Some(data) = tree.read(t.source) else {
                return false;
            };
            t.unchanged.is_none_or(|(start, line)| {
                String::from_utf8_lossy(&data)
                    .lines()
                    .filter(|l| l.starts_with(start))
                    .all(|l| l == line)
            })
        })
        .map(|t| UcfFile {
            source: t.source.to_string(),
            dest: t.dest.to_string(),
            three_way: t.three_way,
            registered: Some(t.package.to_string()),
        })
        .collect()
}

pub(super) fn apply(tree: &mut Tree, files: &[UcfFile]) -> Result<()> {
    // Without ucf the scripts would not run it (they ask `command -v ucf`, or depend on it).
    if files.is_empty() || !(tree.exists("usr/bin/ucf") || tree.exists("bin/ucf")) {
        return Ok(());
    }
    let text = |p: &str| String::from_utf8_lossy(&tree.read(p).unwrap_or_default()).into_owned();
    let (mut hashes, mut registry) = (text("var/lib/ucf/hashfile"), text("var/lib/ucf/registry"));
    let mut installed = 0;
    for u in files {
        let (Ok(dest), Ok(source)) = (tree.resolve(&u.dest), tree.resolve(&u.source)) else {
            continue;
        };
        // ucf keeps a file that is already there; a first install has none, unless another
        // package or the profile put it there.
        if tree.get(&dest).is_some() {
            continue;
        }
        let Some(new) = tree.get(&source).cloned() else {
            continue;
        };
        let Kind::File(content) = &new.kind else {
            continue;
        };
        let parent = dest.rsplit_once('/').map_or("", |(d, _)| d);
        if !matches!(tree.get(parent).map(|e| &e.kind), Some(Kind::Dir)) {
            eprintln!(
                "warning: a maintainer script installs {} with ucf, but the image has no directory /{parent}; left out",
                u.dest
            );
            continue;
        }
        let data = content.read_all()?;
        // `cp -p`: the new version's mode, owner and time.
        let copy = |tree: &mut Tree, at: &str| -> Result<()> {
            let mut e = Entry::file(data.clone(), new.mode);
            e.uid = new.uid;
            e.gid = new.gid;
            e.mtime = new.mtime;
            super::put_entry(tree, at, e)
        };
        copy(tree, &dest)?;
        // ucf's replace_md5sum keeps the new version in its cache for `--three-way`, and
        // for any file under 25600 bytes.
        if u.three_way || data.len() < UNCACHED_SIZE {
            copy(tree, &format!("{STATE}/cache/{}", u.dest.replace('/', ":")))?;
        }
        hashes.push_str(&format!(
            "{}  {}\n",
            hex::encode(Md5::digest(&data)),
            u.dest
        ));
        if let Some(pkg) = &u.registered {
            registry.push_str(&format!("{pkg} \t {}\n", u.dest));
        }
        installed += 1;
    }
    if installed > 0 {
        super::put(tree, "var/lib/ucf/hashfile", hashes, 0o644)?;
        if !registry.is_empty() {
            super::put(tree, "var/lib/ucf/registry", registry, 0o644)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(source: &str, dest: &str, three_way: bool, pkg: Option<&str>) -> UcfFile {
        UcfFile {
            source: source.into(),
            dest: dest.into(),
            three_way,
            registered: pkg.map(Into::into),
        }
    }

    #[test]
    fn ucf_commands_name_the_files_and_ucfr_their_package() {
        let c = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
        let commands = [
            c("ucf --three-way /usr/share/c/c.conf /etc/c/c.conf"),
            c("ucfr c /etc/c/c.conf"),
            c("ucf --debconf-ok --sum-file /usr/share/s.md5 /usr/share/s /etc/s"),
            c("ucf --purge /etc/purged"),
            c("ucf /usr/share/a /etc/a /etc/too-many"),
            c("ucf relative /etc/relative"),
            c("ucf /usr/share/../etc/shadow /etc/x"),
            c("ucfr other /etc/not-installed"),
        ];
        assert_eq!(
            files(&commands),
            [
                file("/usr/share/c/c.conf", "/etc/c/c.conf", true, Some("c")),
                file("/usr/share/s", "/etc/s", false, None),
            ]
        );
    }

    #[test]
    fn new_versions_are_copied_and_recorded_as_ucf_does() {
        let mut t = Tree::new();
        t.insert("usr/bin/ucf", Entry::file("#!/bin/sh", 0o755))
            .unwrap();
        t.mkdir_p("var/lib/ucf").unwrap();
        t.mkdir_p("etc/chrony").unwrap();
        let mut keys = Entry::file("1 MD5 secret\n", 0o640);
        keys.mtime = 1_700_000_000;
        t.insert("usr/share/chrony/chrony.keys", keys).unwrap();
        t.insert(
            "usr/share/chrony/chrony.conf",
            Entry::file("pool x\n", 0o644),
        )
        .unwrap();
        t.insert("usr/share/u/20auto", Entry::file("on\n", 0o644))
            .unwrap();
        t.insert(
            "usr/share/u/big",
            Entry::file(vec![b'#'; UNCACHED_SIZE], 0o644),
        )
        .unwrap();
        t.insert("etc/kept", Entry::file("mine\n", 0o600)).unwrap();
        t.insert(
            "usr/share/openssh/sshd_config",
            Entry::file("Port 22\n", 0o644),
        )
        .unwrap();
        t.mkdir_p("etc/ssh").unwrap();
        t.insert("usr/share/u/kept", Entry::file("theirs\n", 0o644))
            .unwrap();
        apply(
            &mut t,
            &[
                file(
                    "/usr/share/chrony/chrony.conf",
                    "/etc/chrony/chrony.conf",
                    true,
                    Some("chrony"),
                ),
                file(
                    "/usr/share/chrony/chrony.keys",
                    "/etc/chrony/chrony.keys",
                    true,
                    Some("chrony"),
                ),
                // Not registered; small, so cached without --three-way too.
                file("/usr/share/u/20auto", "/etc/20auto", false, None),
                // 25600 bytes without --three-way: not cached.
                file("/usr/share/u/big", "/etc/big", false, None),
                // Already there: kept as it is, and not recorded.
                file("/usr/share/u/kept", "/etc/kept", false, Some("u")),
                // No such directory, or no such new version: nothing.
                file("/usr/share/u/20auto", "/etc/nodir/x", false, Some("u")),
                file("/usr/share/u/none", "/etc/none", false, Some("u")),
            ],
        )
        .unwrap();
        let ssh = through_a_temporary(&t);
        apply(&mut t, &ssh).unwrap();
        let keys = t.get("etc/chrony/chrony.keys").unwrap();
        assert_eq!((keys.mode, keys.mtime), (0o640, 1_700_000_000));
        assert_eq!(t.read("etc/chrony/chrony.keys").unwrap(), b"1 MD5 secret\n");
        assert_eq!(
            t.read("var/lib/ucf/cache/:etc:chrony:chrony.keys").unwrap(),
            b"1 MD5 secret\n"
        );
        assert_eq!(
            t.get("var/lib/ucf/cache/:etc:chrony:chrony.keys")
                .unwrap()
                .mode,
            0o640
        );
        assert_eq!(t.read("etc/20auto").unwrap(), b"on\n");
        assert_eq!(t.read("var/lib/ucf/cache/:etc:20auto").unwrap(), b"on\n");
        assert!(t.exists("etc/big") && !t.exists("var/lib/ucf/cache/:etc:big"));
        assert_eq!(t.read("etc/kept").unwrap(), b"mine\n");
        assert!(!t.exists("etc/nodir/x") && !t.exists("etc/none"));
        // md5sum's own output for "pool x\n", "1 MD5 secret\n" and "on\n" (and, from
        // `head -c 25600 /dev/zero | tr '\0' '#' | md5sum`, the big one).
        assert_eq!(
            String::from_utf8(t.read("var/lib/ucf/hashfile").unwrap()).unwrap(),
            format!(
                "{}  /etc/chrony/chrony.conf\n{}  /etc/chrony/chrony.keys\n{}  /etc/20auto\n20456c9470dc11e48a6996dd74aa92fc  /etc/big\n{}  /etc/ssh/sshd_config\n",
                hex::encode(Md5::digest(b"pool x\n")),
                hex::encode(Md5::digest(b"1 MD5 secret\n")),
                hex::encode(Md5::digest(b"on\n")),
                hex::encode(Md5::digest(b"Port 22\n")),
            )
        );
        assert_eq!(
            hex::encode(Md5::digest(b"on\n")),
            "1f681635c89df401ef18598ffe3a0694"
        );
        assert_eq!(
            String::from_utf8(t.read("var/lib/ucf/registry").unwrap()).unwrap(),
            "chrony \t /etc/chrony/chrony.conf\nchrony \t /etc/chrony/chrony.keys\n\
             openssh-server \t /etc/ssh/sshd_config\n"
        );
        // openssh-server's, which its script writes through a temporary file first.
        assert_eq!(t.read("etc/ssh/sshd_config").unwrap(), b"Port 22\n");
        assert!(t.exists("var/lib/ucf/cache/:etc:ssh:sshd_config"));
    }

    #[test]
    fn without_ucf_in_the_image_nothing_is_installed() {
        let mut t = Tree::new();
        t.insert("usr/share/c/conf", Entry::file("x", 0o644))
            .unwrap();
        t.mkdir_p("etc").unwrap();
        apply(
            &mut t,
            &[file("/usr/share/c/conf", "/etc/conf", true, Some("c"))],
        )
        .unwrap();
        assert!(!t.exists("etc/conf") && !t.exists("var/lib/ucf/hashfile"));
    }

    #[test]
    fn a_file_a_script_edits_in_a_temporary_is_taken_only_when_the_edit_changes_nothing() {
        // What is taken from an image whose only file is `path` holding `text`.
        let taken = |path: &str, text: String| {
            let mut t = Tree::new();
            t.insert(path, Entry::file(text, 0o644)).unwrap();
            through_a_temporary(&t)
                .into_iter()
                .map(|u| (u.dest, u.three_way, u.registered))
                .collect::<Vec<_>>()
        };
        let template = |ssl: &str| {
            taken(
                "usr/share/postgresql-common/createcluster.conf",
                format!("# ssl\n{ssl}\ncreate_main_cluster = true\n"),
            )
        };
        assert_eq!(
            template("ssl = on"),
            [(
                "/etc/postgresql-common/createcluster.conf".to_string(),
                false,
                Some("postgresql-common".to_string())
            )]
        );
        // The script's sed would make this `ssl = on`: not what the package ships.
        assert!(template("ssl = off").is_empty());
        let samba = |workgroup: &str| {
            taken(
                "usr/share/samba/smb.conf",
                format!("[global]\n{workgroup}\n   server string = %h\n"),
            )
        };
        assert_eq!(
            samba("   workgroup = WORKGROUP"),
            [(
                "/etc/samba/smb.conf".to_string(),
                true,
                Some("samba-common".to_string())
            )]
        );
        assert!(samba("   workgroup = OTHER").is_empty());
    }
}
