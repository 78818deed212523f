//! PAM's shared stacks. libpam-runtime's postinst runs `pam-auth-update`, which writes
//! `/etc/pam.d/common-{auth,account,password,session,session-noninteractive}` from the profiles
//! in `/usr/share/pam-configs`; every service's PAM file (`sshd`, `login`, `su`) includes them.
//! Ingot runs no maintainer scripts, so without this step no one could log in: sshd closes the
//! connection as soon as it asks PAM about the user. The stacks are built here the way
//! `pam-auth-update --package` builds them on a fresh install: the profiles that say
//! `Default: yes`, highest `Priority` first, each type's `Primary` modules chained with jumps
//! past a `pam_deny` fallback, then the `Additional` ones.

use anyhow::Result;

use super::put;
use crate::tree::Tree;

const PROFILES: &str = "usr/share/pam-configs";

/// One `pam-auth-update` profile, parsed.
#[derive(Debug, Default)]
struct Profile {
    name: String,
    priority: i64,
    default: bool,
    fields: Vec<(String, Vec<String>)>,
}

impl Profile {
    fn parse(file: &str, text: &str) -> Profile {
        let mut p = Profile {
            name: file.to_string(),
            ..Default::default()
        };
        let mut current: Option<(String, Vec<String>)> = None;
        for line in text.lines() {
            if line.starts_with([' ', '\t']) {
                if let Some((_, v)) = current.as_mut() {
                    let l = line.trim();
                    if !l.is_empty() {
                        v.push(l.to_string());
                    }
                }
                continue;
            }
            if let Some(done) = current.take() {
                p.fields.push(done);
            }
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let v = v.trim();
            match k {
                "Default" => p.default = v == "yes",
                "Priority" => p.priority = v.parse().unwrap_or(0),
                _ => {
                    let first = if v.is_empty() {
                        Vec::new()
                    } else {
                        vec![v.to_string()]
                    };
                    current = Some((k.to_string(), first));
                }
            }
        }
        if let Some(done) = current.take() {
            p.fields.push(done);
        }
        p
    }

    fn get(&self, key: &str) -> Option<&Vec<String>> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn value(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(|v| v.first()).map(String::as_str)
    }

    /// The lines for `ty` (`Auth`, `Account`, …): `-Initial` when the module opens the stack,
    /// the plain field otherwise, `-Final` when that is all the profile gives.
    fn lines(&self, ty: &str, first: bool) -> Vec<String> {
        let pick = |k: String| self.get(&k).filter(|v| !v.is_empty()).cloned();
        let plain = pick(ty.to_string());
        let initial = pick(format!("{ty}-Initial"));
        let chosen = if first {
            initial.or(plain)
        } else {
            plain.or(initial)
        };
        chosen
            .or_else(|| pick(format!("{ty}-Final")))
            .unwrap_or_default()
    }
}

/// Write the common stacks when the image has PAM's profiles but not the stacks.
pub(super) fn common_stacks(tree: &mut Tree) -> Result<()> {
    if tree.exists("etc/pam.d/common-auth") || !tree.exists(PROFILES) {
        return Ok(());
    }
    let mut profiles: Vec<Profile> = tree
        .children(PROFILES)
        .map(str::to_string)
        .collect::<Vec<_>>()
        .into_iter()
        .filter_map(|path| {
            let text = tree.read(&format!("/{path}"))?;
            let name = path.rsplit('/').next().unwrap_or(&path);
            Some(Profile::parse(name, &String::from_utf8_lossy(&text)))
        })
        .filter(|p| p.default)
        .collect();
    // pam-auth-update: descending priority, then by name.
    profiles.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.name.cmp(&b.name)));
    for (file, ty, interactive) in [
        ("common-auth", "Auth", true),
        ("common-account", "Account", true),
        ("common-password", "Password", true),
        ("common-session", "Session", true),
        ("common-session-noninteractive", "Session", false),
    ] {
        put(
            tree,
            &format!("etc/pam.d/{file}"),
            stack(&profiles, ty, interactive),
            0o644,
        )?;
    }
    Ok(())
}

/// One stack file's text.
fn stack(profiles: &[Profile], ty: &str, interactive: bool) -> String {
    let kind = ty.to_ascii_lowercase();
    let wanted = |p: &&Profile| {
        interactive || p.value("Session-Interactive-Only") != Some("yes") || ty != "Session"
    };
    let of_type = |t: &str| -> Vec<&Profile> {
        profiles
            .iter()
            .filter(wanted)
            .filter(|p| p.value(&format!("{ty}-Type")) == Some(t))
            .collect()
    };
    let primary: Vec<Vec<String>> = of_type("Primary")
        .iter()
        .enumerate()
        .map(|(i, p)| p.lines(ty, i == 0))
        .filter(|l| !l.is_empty())
        .collect();
    let additional: Vec<Vec<String>> = of_type("Additional")
        .iter()
        .map(|p| p.lines(ty, primary.is_empty()))
        .filter(|l| !l.is_empty())
        .collect();
    let mut out = format!(
        "# /etc/pam.d/{kind} stack, written by Ingot as pam-auth-update writes it from\n# /usr/share/pam-configs (Ingot runs no maintainer scripts).\n"
    );
    out.push_str("# here are the per-package modules (the \"Primary\" block)\n");
    let total: usize = primary.iter().map(Vec::len).sum();
    let mut seen = 0;
    if total == 0 {
        out.push_str(&format!("{kind}\t[default=1]\t\t\tpam_permit.so\n"));
    }
    for lines in &primary {
        for l in lines {
            seen += 1;
            // `success=end` jumps past the rest of the block and the pam_deny fallback.
            let l = l.replace("=end", &format!("={}", total - seen + 1));
            out.push_str(&format!("{kind}\t{l}\n"));
        }
    }
    out.push_str(&format!(
        "# here's the fallback if no module succeeds\n{kind}\trequisite\t\t\tpam_deny.so\n"
    ));
    out.push_str(&format!("# prime the stack with a positive return value if there isn't one already;\n# this avoids us returning an error just because nothing sets a success code\n# since the modules above will each just jump around\n{kind}\trequired\t\t\tpam_permit.so\n"));
    out.push_str("# and here are more per-package modules (the \"Additional\" block)\n");
    for l in additional.iter().flatten() {
        out.push_str(&format!("{kind}\t{l}\n"));
    }
    out.push_str("# end of pam-auth-update config\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Non-comment lines with runs of blanks made one space.
    fn rules(text: &str) -> Vec<String> {
        text.lines()
            .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    }

    const UNIX: &str = "Name: Unix authentication\nDefault: yes\nPriority: 256\nAuth-Type: Primary\nAuth:\n\t[success=end default=ignore]\tpam_unix.so nullok try_first_pass\nAuth-Initial:\n\t[success=end default=ignore]\tpam_unix.so nullok\nAccount-Type: Primary\nAccount:\n\t[success=end new_authtok_reqd=done default=ignore]\tpam_unix.so\nAccount-Initial:\n\t[success=end new_authtok_reqd=done default=ignore]\tpam_unix.so\nSession-Type: Additional\nSession:\n\trequired\tpam_unix.so\nSession-Initial:\n\trequired\tpam_unix.so\nPassword-Type: Primary\nPassword:\n\t[success=end default=ignore]\tpam_unix.so obscure use_authtok try_first_pass yescrypt\nPassword-Initial:\n\t[success=end default=ignore]\tpam_unix.so obscure yescrypt\n";
    const SYSTEMD: &str = "Name: Register user sessions in the systemd control group hierarchy\nDefault: yes\nPriority: 0\nSession-Interactive-Only: yes\nSession-Type: Additional\nSession:\n\toptional\tpam_systemd.so\n";
    const MKHOMEDIR: &str = "Name: Create home directory on login\nDefault: no\nPriority: 0\nSession-Type: Additional\nSession-Interactive-Only: yes\nSession:\n\toptional\t\t\tpam_mkhomedir.so\n";
    const CAP: &str = "Name: Inheritable Capabilities Management\nDefault: yes\nPriority: 0\nAuth-Type: Additional\nAuth-Final:\n\toptional\t\t\tpam_cap.so\n";

    #[test]
    fn the_stacks_are_what_pam_auth_update_writes_on_debian() {
        let mut t = Tree::new();
        for (n, text) in [
            ("unix", UNIX),
            ("systemd", SYSTEMD),
            ("mkhomedir", MKHOMEDIR),
            ("capability", CAP),
        ] {
            put(&mut t, &format!("{PROFILES}/{n}"), text, 0o644).unwrap();
        }
        common_stacks(&mut t).unwrap();
        let read = |f: &str| {
            rules(&String::from_utf8(t.read(&format!("/etc/pam.d/{f}")).unwrap()).unwrap())
        };
        // As pam-auth-update wrote them on a Debian 12 host with these four profiles.
        assert_eq!(
            read("common-auth"),
            [
                "auth [success=1 default=ignore] pam_unix.so nullok",
                "auth requisite pam_deny.so",
                "auth required pam_permit.so",
                "auth optional pam_cap.so",
            ]
        );
        assert_eq!(
            read("common-account"),
            [
                "account [success=1 new_authtok_reqd=done default=ignore] pam_unix.so",
                "account requisite pam_deny.so",
                "account required pam_permit.so",
            ]
        );
        assert_eq!(
            read("common-password"),
            [
                "password [success=1 default=ignore] pam_unix.so obscure yescrypt",
                "password requisite pam_deny.so",
                "password required pam_permit.so",
            ]
        );
        let session = [
            "session [default=1] pam_permit.so",
            "session requisite pam_deny.so",
            "session required pam_permit.so",
            "session required pam_unix.so",
        ];
        let mut interactive = session.to_vec();
        interactive.push("session optional pam_systemd.so");
        assert_eq!(read("common-session"), interactive);
        assert_eq!(read("common-session-noninteractive"), session);
    }

    #[test]
    fn stacks_already_there_are_left_alone() {
        let mut t = Tree::new();
        put(&mut t, &format!("{PROFILES}/unix"), UNIX, 0o644).unwrap();
        put(&mut t, "etc/pam.d/common-auth", "mine\n", 0o644).unwrap();
        common_stacks(&mut t).unwrap();
        assert_eq!(t.read("/etc/pam.d/common-auth").unwrap(), b"mine\n");
        assert!(!t.exists("etc/pam.d/common-account"));
    }
}
