//! Users and groups, done declaratively: `base-passwd`'s masters, `sysusers.d` fragments that
//! packages ship, then the profile's users and groups. Writes passwd, group, shadow and gshadow.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};

use crate::config::Profile;
use crate::tree::{Entry, Tree};

#[derive(Debug, Clone)]
struct PwEnt {
    name: String,
    uid: u32,
    gid: u32,
    gecos: String,
    home: String,
    shell: String,
}

#[derive(Debug, Clone)]
struct GrEnt {
    name: String,
    gid: u32,
    members: Vec<String>,
}

#[derive(Default)]
struct Db {
    users: Vec<PwEnt>,
    groups: Vec<GrEnt>,
    /// Accounts a sysusers.d `u!` line made: fully locked (expired), as systemd-sysusers
    /// writes them.
    locked: BTreeSet<String>,
    /// Accounts a sysusers.d line made (the profile may give them their numbers).
    from_sysusers: BTreeSet<String>,
    /// Numbers the profile gives its users and groups: never chosen for another account, so
    /// a package's account made first cannot take one.
    reserved: BTreeSet<u32>,
}

impl Db {
    fn group_id(&self, name: &str) -> Option<u32> {
        self.groups.iter().find(|g| g.name == name).map(|g| g.gid)
    }
    fn free_id(&self, lo: u32, hi: u32, user: bool) -> Option<u32> {
        (lo..hi).rev().find(|id| {
            !self.reserved.contains(id)
                && !self.groups.iter().any(|g| g.gid == *id)
                && (!user || !self.users.iter().any(|u| u.uid == *id))
        })
    }
    fn add_group(&mut self, name: &str, gid: Option<u32>, system: bool) -> u32 {
        if let Some(g) = self.group_id(name) {
            return g;
        }
        let gid = gid
            .or_else(|| {
                if system {
                    self.free_id(100, 1000, false)
                } else {
                    (1000..60000).find(|i| {
                        !self.reserved.contains(i) && !self.groups.iter().any(|g| g.gid == *i)
                    })
                }
            })
            .unwrap_or(65534);
        self.groups.push(GrEnt {
            name: name.to_string(),
            gid,
            members: Vec::new(),
        });
        gid
    }
}

fn parse_master(text: &str) -> (Vec<PwEnt>, Vec<GrEnt>) {
    let mut users = Vec::new();
    let mut groups = Vec::new();
    for l in text.lines() {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() == 7 {
            users.push(PwEnt {
                name: f[0].into(),
                uid: f[2].parse().unwrap_or(0),
                gid: f[3].parse().unwrap_or(0),
                gecos: f[4].into(),
                home: f[5].into(),
                shell: f[6].into(),
            });
        } else if f.len() == 4 {
            groups.push(GrEnt {
                name: f[0].into(),
                gid: f[2].parse().unwrap_or(0),
                members: f[3]
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
            });
        }
    }
    (users, groups)
}

/// Every sysusers.d fragment in the image, with its bytes: what `systemd-sysusers` would read
/// at boot. [`apply`] reads those in `/usr/lib/sysusers.d`; comparing this list before and
/// after the profile's files and overlays tells whether the build left any unapplied.
pub(super) fn fragments(tree: &Tree) -> Vec<(String, Vec<u8>)> {
    ["etc", "usr/local/lib", "usr/lib"]
        .iter()
        .flat_map(|d| {
            tree.children(&format!("{d}/sysusers.d"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .map(|p| {
            let bytes = tree.read(&p).unwrap_or_default();
            (p, bytes)
        })
        .collect()
}

/// Split a sysusers.d line into fields, honouring double quotes.
fn fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// `addgroup --system` in udev's postinst (Debian 12), in its order.
const UDEV_POSTINST_GROUPS: &[&str] = &["input", "sgx", "kvm", "render"];

/// Write the account databases into the tree. `days` is the build date in days since the epoch
/// (shadow's last-change field).
pub fn apply(
    tree: &mut Tree,
    profile: &Profile,
    accounts: &[crate::packages::accounts::Account],
    days: i64,
) -> Result<()> {
    let mut db = Db::default();
    if let (Some(p), Some(g)) = (
        tree.read("/usr/share/base-passwd/passwd.master"),
        tree.read("/usr/share/base-passwd/group.master"),
    ) {
        db.users = parse_master(&String::from_utf8_lossy(&p)).0;
        db.groups = parse_master(&String::from_utf8_lossy(&g)).1;
    } else {
        db.users.push(PwEnt {
            name: "root".into(),
            uid: 0,
            gid: 0,
            gecos: "root".into(),
            home: "/root".into(),
            shell: "/bin/sh".into(),
        });
        db.groups.push(GrEnt {
            name: "root".into(),
            gid: 0,
            members: vec![],
        });
    }
    // The profile's numbers, also for accounts a package's sysusers.d line makes (where the
    // line leaves the number to the tool): a template pins the ids that files on a data
    // partition keep across image versions, whoever makes the account.
    let pinned_uid = |name: &str| {
        profile
            .users
            .iter()
            .find(|u| u.name == name)
            .and_then(|u| u.uid)
    };
    let pinned_gid = |name: &str| {
        profile
            .groups
            .iter()
            .find(|g| g.name == name)
            .and_then(|g| g.gid)
    };
    db.reserved = (profile.users.iter().filter_map(|u| u.uid))
        .chain(profile.groups.iter().filter_map(|g| g.gid))
        .collect();
    // sysusers.d fragments, in file-name order (the order systemd-sysusers uses).
    let frags: Vec<String> = tree
        .children("usr/lib/sysusers.d")
        .map(str::to_string)
        .collect();
    for f in frags {
        let text = String::from_utf8_lossy(&tree.read(&f).unwrap_or_default()).into_owned();
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let w = fields(line);
            let get = |i: usize| w.get(i).map(String::as_str).filter(|s| *s != "-");
            // `u!` (systemd 257, Debian 13) is `u` for an account that is also locked.
            let kind = w.first().map(String::as_str);
            match kind {
                Some("g") => {
                    if let Some(name) = get(1) {
                        let gid = get(2).and_then(|s| s.parse().ok());
                        db.add_group(name, gid.or_else(|| pinned_gid(name)), true);
                    }
                }
                Some("u" | "u!") => {
                    let Some(name) = get(1) else { continue };
                    if db.users.iter().any(|u| u.name == name) {
                        continue;
                    }
                    let idspec = get(2).unwrap_or("");
                    let (uid_s, gid_s) = idspec.split_once(':').unwrap_or((idspec, ""));
                    let uid = uid_s
                        .parse()
                        .ok()
                        .or_else(|| pinned_uid(name))
                        .or_else(|| db.free_id(100, 1000, true))
                        .unwrap_or(65534);
                    let gid = match gid_s.parse().ok() {
                        Some(g) => g,
                        None => db.add_group(
                            if gid_s.is_empty() { name } else { gid_s },
                            Some(uid).filter(|u| db.groups.iter().all(|g| g.gid != *u)),
                            true,
                        ),
                    };
                    if kind == Some("u!") {
                        db.locked.insert(name.to_string());
                    }
                    db.from_sysusers.insert(name.to_string());
                    db.users.push(PwEnt {
                        name: name.into(),
                        uid,
                        gid,
                        gecos: get(3).unwrap_or("").into(),
                        home: get(4).unwrap_or("/").into(),
                        shell: get(5).unwrap_or("/usr/sbin/nologin").into(),
                    });
                }
                Some("m") => {
                    if let (Some(u), Some(g)) = (get(1), get(2)) {
                        db.add_group(g, None, true);
                        if let Some(gr) = db.groups.iter_mut().find(|x| x.name == g) {
                            if !gr.members.iter().any(|m| m == u) {
                                gr.members.push(u.into());
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }
    // The groups udev's rules give device nodes to, which its postinst adds (Ingot runs no
    // maintainer scripts). Without them udevd ignores those GROUP= settings ("Unknown group
    // 'kvm', ignoring" at every boot) and /dev/kvm, input devices and render nodes stay root's.
    if tree.exists("usr/lib/udev/rules.d/50-udev-default.rules") {
        for g in UDEV_POSTINST_GROUPS {
            db.add_group(g, None, true);
        }
    }
    // A clash with the image's own accounts: bad input, at the entry that names the account.
    let files = profile.files();
    let at_name = |name: &str, message: String| -> anyhow::Error {
        crate::config::rule_at_value(&files, "name", name, message).into()
    };
    for g in &profile.groups {
        match (db.group_id(&g.name), g.gid) {
            // The image's group of that name already: the profile asks for it, fine, unless it
            // asks for another number than the one files and packages were given.
            (Some(have), Some(want)) if have != want => {
                return Err(at_name(
                    &g.name,
                    format!(
                        "group `{}` already exists in the image with gid {have} (from base-passwd or sysusers.d), not {want}; leave its gid out",
                        g.name
                    ),
                ))
            }
            (Some(_), _) => {}
            (None, gid) => {
                if let Some(other) = gid.and_then(|id| db.groups.iter().find(|x| x.gid == id)) {
                    return Err(at_name(
                        &g.name,
                        format!(
                            "group `{}`: gid {} is taken in the image by group `{}` (from base-passwd or sysusers.d)",
                            g.name, other.gid, other.name
                        ),
                    ));
                }
                db.add_group(&g.name, gid, g.system || gid.is_some_and(|x| x < 1000));
            }
        }
    }
    for u in &profile.users {
        if let Some(have) = db.users.iter().position(|x| x.name == u.name) {
            adopt(&mut db, have, u).map_err(|m| at_name(&u.name, m))?;
            continue;
        }
        // (A second uid 0 is refused by the profile's rules unless it says allow_uid0.)
        let claimed = u.uid.filter(|id| *id != 0);
        if let Some(other) = claimed.and_then(|id| db.users.iter().find(|x| x.uid == id)) {
            return Err(at_name(
                &u.name,
                format!(
                    "user `{}`: uid {} is taken in the image by `{}` (from base-passwd or sysusers.d)",
                    u.name, other.uid, other.name
                ),
            ));
        }
        let system = u.is_system();
        let uid = match u.uid {
            Some(id) => id,
            // As adduser --system and systemd-sysusers choose: the highest free id below 1000
            // that is free as a gid too, so the account's own group can share the number.
            None if system => db.free_id(100, 1000, true).with_context(|| {
                format!(
                    "{}: user `{}`: no free system uid left in 100-999",
                    profile.path.display(),
                    u.name
                )
            })?,
            None => (1000..60000)
                .find(|i| !db.users.iter().any(|x| x.uid == *i))
                .unwrap_or(65534),
        };
        let gid = db.add_group(
            &u.name,
            Some(uid).filter(|id| db.groups.iter().all(|g| g.gid != *id)),
            system,
        );
        let home = if system {
            "/nonexistent".to_string()
        } else {
            format!("/home/{}", u.name)
        };
        for g in &u.groups {
            db.add_group(g, None, true);
            if let Some(gr) = db.groups.iter_mut().find(|x| x.name == *g) {
                gr.members.push(u.name.clone());
            }
        }
        db.users.push(PwEnt {
            name: u.name.clone(),
            uid,
            gid,
            gecos: u.comment.clone(),
            home: home.clone(),
            shell: u.login_shell().to_string(),
        });
        if !system {
            let mut d = Entry::dir(0o750);
            d.uid = uid;
            d.gid = gid;
            tree.insert(home.trim_start_matches('/'), d)?;
            if !u.ssh_authorized_keys.is_empty() {
                let mut sd = Entry::dir(0o700);
                sd.uid = uid;
                sd.gid = gid;
                tree.insert(&format!("{}/.ssh", home.trim_start_matches('/')), sd)?;
                let mut f = Entry::file(u.ssh_authorized_keys.join("\n") + "\n", 0o600);
                f.uid = uid;
                f.gid = gid;
                tree.insert(
                    &format!("{}/.ssh/authorized_keys", home.trim_start_matches('/')),
                    f,
                )?;
            }
        }
    }
    // What the packages' maintainer scripts make with `adduser --system` and the like, after
    // the profile's own accounts (which may give one a fixed id): as adduser --system makes
    // them, with what each script says of the account's group, home, shell and GECOS.
    for a in accounts {
        if !a.user {
            db.add_group(&a.name, None, true);
            continue;
        }
        if db.users.iter().any(|x| x.name == a.name) {
            continue;
        }
        let uid = db.free_id(100, 1000, true).with_context(|| {
            format!(
                "user `{}` (a package's maintainer script makes it): no free system uid left in 100-999",
                a.name
            )
        })?;
        let gid = match (&a.group, a.own_group) {
            (Some(g), _) => db.add_group(g, None, true),
            (None, true) => db.add_group(
                &a.name,
                Some(uid).filter(|id| db.groups.iter().all(|g| g.gid != *id)),
                true,
            ),
            (None, false) => db.group_id("nogroup").unwrap_or(65534),
        };
        db.users.push(PwEnt {
            name: a.name.clone(),
            uid,
            gid,
            gecos: a.gecos.clone().unwrap_or_default(),
            home: a.home.clone().unwrap_or_else(|| "/nonexistent".into()),
            shell: a
                .shell
                .clone()
                .unwrap_or_else(|| "/usr/sbin/nologin".into()),
        });
    }
    let mut passwd = String::new();
    let mut shadow = String::new();
    for u in &db.users {
        passwd.push_str(&format!(
            "{}:x:{}:{}:{}:{}:{}\n",
            u.name, u.uid, u.gid, u.gecos, u.home, u.shell
        ));
        // `*` for system accounts, `!` (locked) for people: no password is ever baked in.
        let lock = if u.uid == 0 || u.uid >= 1000 && u.uid < 65534 {
            "!"
        } else {
            "*"
        };
        // A locked account expires on day 1 (1970-01-02), which PAM refuses whatever the
        // password or key.
        let expire = if db.locked.contains(&u.name) { "1" } else { "" };
        shadow.push_str(&format!("{}:{lock}:{days}:0:99999:7::{expire}:\n", u.name));
    }
    let mut group = String::new();
    let mut gshadow = String::new();
    let mut groups = db.groups.clone();
    groups.sort_by_key(|g| g.gid);
    let mut seen = BTreeMap::new();
    for g in &groups {
        if seen.insert(g.name.clone(), ()).is_some() {
            continue;
        }
        group.push_str(&format!("{}:x:{}:{}\n", g.name, g.gid, g.members.join(",")));
        gshadow.push_str(&format!("{}:*::{}\n", g.name, g.members.join(",")));
    }
    let shadow_gid = db.group_id("shadow").unwrap_or(0);
    tree.insert("etc/passwd", Entry::file(passwd, 0o644))?;
    tree.insert("etc/group", Entry::file(group, 0o644))?;
    for (p, text) in [("etc/shadow", shadow), ("etc/gshadow", gshadow)] {
        let mut e = Entry::file(text, 0o640);
        e.gid = shadow_gid;
        tree.insert(p, e)?;
    }
    Ok(())
}

/// The profile's entry for an account that exists before it: one a package's sysusers.d line
/// made (as Debian 13's openssh-server makes `sshd`). The package's line stands (home, locked
/// or not); the profile may say what it says of the account a maintainer script makes: its
/// uid (given to it already when the line leaves the number to the tool), a shell, a comment
/// and supplementary groups. Anything else is a clash the build refuses.
fn adopt(db: &mut Db, at: usize, u: &crate::config::User) -> Result<(), String> {
    let have = db.users[at].clone();
    if !db.from_sysusers.contains(&have.name) {
        return Err(format!(
            "user `{}` already exists in the image (from base-passwd)",
            u.name
        ));
    }
    if !u.is_system() {
        return Err(format!(
            "user `{}` is a system account a package makes (sysusers.d); a person's account needs another name, or `system = true` to give this one its uid, shell or groups",
            u.name
        ));
    }
    if let Some(want) = u.uid.filter(|w| *w != have.uid) {
        return Err(format!(
            "user `{}`: a package's sysusers.d line gives it uid {}, not {want}; leave its uid out",
            u.name, have.uid
        ));
    }
    let e = &mut db.users[at];
    if let Some(shell) = &u.shell {
        e.shell = shell.clone();
    }
    if !u.comment.is_empty() {
        e.gecos = u.comment.clone();
    }
    for g in &u.groups {
        db.add_group(g, None, true);
        if let Some(gr) = db.groups.iter_mut().find(|x| x.name == *g) {
            if !gr.members.contains(&u.name) {
                gr.members.push(u.name.clone());
            }
        }
    }
    Ok(())
}

mod members;
pub(super) use members::{add_member, membership};

#[cfg(test)]
mod tests;
