//! How a profile's `extends` chain is merged into one [`Profile`]: from the root ancestor down
//! to the child, a child file winning over its ancestors key by key, and the rules over the
//! merged profile, each pointing at the file and line that set the value.

use std::path::{Path, PathBuf};

use super::checks::{check_file, host_source, overlay_dir};
use super::profile::{Profile, ProfileFile, DERIVED_LABELS};
use super::values::{checked, InitSystem};
use super::{rule, ConfigError};

pub(super) fn merge_chain(
    path: &Path,
    chain: Vec<(PathBuf, ProfileFile)>,
) -> Result<Profile, ConfigError> {
    let sources: Vec<PathBuf> = chain.iter().map(|(p, _)| p.clone()).collect();
    // Rules over the merged profile point at the file and line that set the value.
    let chain_files: Vec<&Path> = sources.iter().map(PathBuf::as_path).collect();
    let at = |after: Option<&str>, key: &str, message: String| {
        super::rule_at(&chain_files, after, key, message)
    };
    let mut acc = ProfileFile::default();
    let mut files = Vec::new();
    let mut overlays = Vec::new();
    // Apply from the root ancestor down to the child; later files win.
    for (p, f) in chain.into_iter().rev() {
        let dir = p.parent().unwrap_or(Path::new(".")).to_path_buf();
        acc.image = f.image.or(acc.image);
        acc.distribution = f.distribution.or(acc.distribution);
        acc.packages = match (acc.packages.take(), f.packages) {
            (Some(mut a), Some(b)) => {
                a.include.extend(b.include);
                a.exclude.extend(b.exclude);
                // A child that says nothing keeps its parent's choice.
                a.essential = b.essential.or(a.essential);
                a.recommends = b.recommends.or(a.recommends);
                a.byte_compile = b.byte_compile.or(a.byte_compile);
                Some(a)
            }
            (a, b) => b.or(a),
        };
        acc.init = f.init.or(acc.init);
        acc.users.extend(f.users);
        acc.groups.extend(f.groups);
        // A path written twice in one file is a mistake (which one would the image get?); a
        // profile that extends another replaces its ancestor's file at the same path.
        let mut here = std::collections::BTreeSet::new();
        let mut once = |spec: &super::checks::FileSpec| {
            if here.insert(spec.path.clone()) {
                Ok(())
            } else {
                Err(super::rule_at_value(
                    &[p.as_path()],
                    "path",
                    &spec.path,
                    format!(
                        "file `{}` is declared twice in this profile (first here)",
                        spec.path
                    ),
                ))
            }
        };
        for mut spec in f.files {
            check_file(&p, &spec)?;
            once(&spec)?;
            if let Some(src) = spec.source.clone() {
                spec.source = Some(host_source(&p, &dir, &spec, &src)?);
            }
            files.retain(|s: &super::checks::FileSpec| s.path != spec.path);
            files.push(spec);
        }
        let mut agents = f.agent;
        for a in &mut agents {
            for spec in &mut a.files {
                check_file(&p, spec)?;
                once(spec)?;
                if let Some(src) = spec.source.clone() {
                    spec.source = Some(host_source(&p, &dir, spec, &src)?);
                }
            }
        }
        for o in &f.overlays {
            overlays.push(overlay_dir(&p, &dir, o)?);
        }
        acc.services.extend(f.services);
        acc.labels.extend(f.labels);
        acc.agent.extend(agents);
        acc.kernel = f.kernel.or(acc.kernel);
        acc.network = f.network.or(acc.network);
        acc.sysprep = f.sysprep.or(acc.sysprep);
        acc.output = f.output.or(acc.output);
        acc.ota = f.ota.or(acc.ota);
    }
    let image = acc
        .image
        .ok_or_else(|| rule(path, "missing table `[image]` (name, version)"))?;
    // It names directories, OCI repositories and the default host name, where a leading or
    // trailing dash is not allowed (and a leading one reads as an option).
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !image.name.bytes().all(|b| alnum(&b) || b == b'-')
        || !image.name.as_bytes().first().is_some_and(alnum)
        || !image.name.as_bytes().last().is_some_and(alnum)
    {
        return Err(at(
            Some("[image]"),
            "name",
            format!(
                "image.name `{}` must be lowercase letters, digits and dashes, starting and ending with a letter or digit",
                image.name
            ),
        ));
    }
    let distribution = acc.distribution.ok_or_else(|| {
        rule(
            path,
            "missing table `[distribution]` (suite = \"bookworm\"); the mirror is never set in a profile",
        )
    })?;
    if distribution.name != "debian" {
        return Err(at(
            Some("[distribution]"),
            "name",
            format!(
                "distribution.name `{}` is not supported (expected \"debian\")",
                distribution.name
            ),
        ));
    }
    let suite_ok = |x: &str| {
        !x.is_empty()
            && x.len() <= 64
            && x.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    for sname in std::iter::once(&distribution.suite).chain(&distribution.extra_suites) {
        if !suite_ok(sname) {
            return Err(at(
                Some("[distribution]"),
                if *sname == distribution.suite {
                    "suite"
                } else {
                    "extra_suites"
                },
                format!(
                    "distribution suite `{}` must be lowercase letters, digits and dashes (like bookworm-security)",
                    sname.escape_debug()
                ),
            ));
        }
    }
    for c in &distribution.components {
        if !suite_ok(c) {
            return Err(at(
                Some("[distribution]"),
                "components",
                format!(
                    "distribution component `{}` is not a component name",
                    c.escape_debug()
                ),
            ));
        }
    }
    if image.name.len() > 64 {
        return Err(at(
            Some("[image]"),
            "name",
            "image.name is longer than 64 characters".into(),
        ));
    }
    for (k, v) in &acc.labels {
        let key_ok = !k.is_empty() && !k.contains(|c: char| c.is_whitespace() || c == '=');
        if !key_ok {
            return Err(at(
                Some("[labels]"),
                k,
                format!(
                    "label key `{}` must be non-empty without spaces or `=` (like dev.ingot.owner); it becomes an OCI annotation key",
                    k.escape_debug()
                ),
            ));
        }
        if let Some(e) = checked::field_error(k, false).or_else(|| checked::field_error(v, false)) {
            return Err(at(
                Some("[labels]"),
                k,
                format!("label `{}`: {e}", k.escape_debug()),
            ));
        }
        let derived = DERIVED_LABELS.contains(&k.as_str())
            || k == "org.opencontainers.image.version" && *v != image.version.0;
        if derived {
            return Err(at(
                Some("[labels]"),
                k,
                format!(
                    "[labels] `{k}` = `{v}`: Ingot derives this label from the build (image version, SOURCE_DATE_EPOCH, builder); remove it from the profile"
                ),
            ));
        }
    }
    let mut user_names = std::collections::BTreeSet::new();
    let mut uids = std::collections::BTreeMap::new();
    for u in &acc.users {
        let after = format!("\"{}\"", u.name);
        if u.name == "root" || !user_names.insert(u.name.as_str()) {
            let why = if u.name == "root" {
                "user `root` is always in the image; give root's settings by files, or choose another name".to_string()
            } else {
                format!("user `{}` is declared twice (first here)", u.name)
            };
            return Err(super::rule_at_value(&chain_files, "name", &u.name, why));
        }
        if !u.login_shell().starts_with('/') {
            return Err(at(
                Some(&after),
                "shell",
                format!(
                    "user `{}`: shell `{}` must be an absolute path (like /bin/sh)",
                    u.name,
                    u.login_shell()
                ),
            ));
        }
        if u.system && u.uid.is_some_and(|id| id >= 1000) {
            return Err(at(
                Some(&after),
                "uid",
                format!(
                    "user `{}`: a system account's uid is below 1000, not {}",
                    u.name,
                    u.uid.unwrap_or_default()
                ),
            ));
        }
        if u.name.starts_with('_') && !u.is_system() {
            return Err(super::rule_at_value(
                &chain_files,
                "name",
                &u.name,
                format!(
                    "user `{}`: a name that begins with `_` is for system accounts (Debian's SYS_NAME_REGEX); add system = true",
                    u.name
                ),
            ));
        }
        if let Some(other) = u.uid.and_then(|id| uids.insert(id, u.name.as_str())) {
            return Err(at(
                Some(&after),
                "uid",
                format!(
                    "user `{}`: uid {} is user `{other}`'s already; two accounts would share files and processes",
                    u.name,
                    u.uid.unwrap_or_default()
                ),
            ));
        }
        match u.uid {
            Some(0) if !u.allow_uid0 => {
                return Err(at(
                    Some(&after),
                    "uid",
                    format!(
                        "user `{}`: uid 0 would be a second root account; set allow_uid0 = true if that is meant",
                        u.name
                    ),
                ))
            }
            Some(id) => {
                if let Some(e) = checked::id_error(id) {
                    return Err(at(Some(&after), "uid", format!("user `{}`: uid {e}", u.name)));
                }
            }
            None => {}
        }
    }
    let mut group_names = std::collections::BTreeSet::new();
    let mut gids = std::collections::BTreeMap::new();
    for g in &acc.groups {
        let after = format!("\"{}\"", g.name);
        if g.name == "root" || !group_names.insert(g.name.as_str()) {
            let why = if g.name == "root" {
                "group `root` is always in the image; list it in a user's `groups` to add the user to it".to_string()
            } else {
                format!("group `{}` is declared twice (first here)", g.name)
            };
            return Err(super::rule_at_value(&chain_files, "name", &g.name, why));
        }
        let system = g.system || g.gid.is_some_and(|id| id < 1000);
        if g.name.starts_with('_') && !system {
            return Err(super::rule_at_value(
                &chain_files,
                "name",
                &g.name,
                format!(
                    "group `{}`: a name that begins with `_` is for system groups (Debian's SYS_NAME_REGEX); add system = true",
                    g.name
                ),
            ));
        }
        let Some(gid) = g.gid else { continue };
        if g.system && gid >= 1000 {
            return Err(at(
                Some(&after),
                "gid",
                format!(
                    "group `{}`: a system group's gid is below 1000, not {gid}",
                    g.name
                ),
            ));
        }
        let why = match (gid, checked::id_error(gid), gids.insert(gid, g.name.as_str())) {
            (0, _, _) => Some(format!(
                "group `{}`: gid 0 would be a second root group (members could read and write what only root's group may); list `root` in a user's `groups` if that is meant",
                g.name
            )),
            (_, Some(e), _) => Some(format!("group `{}`: gid {e}", g.name)),
            (_, None, Some(other)) => Some(format!(
                "group `{}`: gid {gid} is group `{other}`'s already",
                g.name
            )),
            _ => None,
        };
        if let Some(why) = why {
            return Err(at(Some(&after), "gid", why));
        }
    }
    if let Some(o) = &acc.ota {
        if !(1..=10).contains(&o.tries) || o.watchdog > 3600 {
            let key = if (1..=10).contains(&o.tries) {
                "watchdog"
            } else {
                "tries"
            };
            return Err(at(
                Some("[ota]"),
                key,
                format!(
                    "[ota] tries = {} must be 1 to 10 and watchdog = {} at most 3600 seconds",
                    o.tries, o.watchdog
                ),
            ));
        }
    }
    let mut names = std::collections::BTreeSet::new();
    for a in &acc.agent {
        if !names.insert(a.name.clone()) {
            return Err(super::rule_at_value(
                &chain_files,
                "name",
                &a.name,
                format!("agent `{}` is declared twice (first here)", a.name),
            ));
        }
        let systemd = acc.init == Some(InitSystem::Systemd);
        if let Some(e) = a
            .service
            .as_deref()
            .filter(|_| systemd)
            .and_then(super::values::checked::unit_name_error)
        {
            return Err(super::rule_at_value(
                &chain_files,
                "service",
                a.service.as_deref().unwrap_or_default(),
                format!("agent `{}`: service {e}", a.name),
            ));
        }
        if a.name.is_empty() || a.name.contains([' ', ',', ':', '=']) {
            return Err(super::rule_at_value(
                &chain_files,
                "name",
                &a.name,
                format!(
                    "agent name `{}` may not be empty or contain spaces, `,`, `:` or `=`",
                    a.name
                ),
            ));
        }
    }
    if acc.init.unwrap_or(InitSystem::Busybox) == InitSystem::Busybox && !acc.services.is_empty() {
        return Err(at(
            None,
            "services",
            format!(
                "`services` ({}) names systemd units, but this image uses busybox init; start programs as agents' `service` instead",
                acc.services.join(", ")
            ),
        ));
    }
    Ok(Profile {
        path: path.to_path_buf(),
        sources,
        image,
        distribution,
        packages: acc.packages.unwrap_or_default(),
        init: acc.init.unwrap_or(InitSystem::Busybox),
        users: acc.users,
        groups: acc.groups,
        files,
        overlays,
        services: acc.services,
        labels: acc.labels,
        agents: acc.agent,
        kernel: acc.kernel.unwrap_or_default(),
        network: acc.network.unwrap_or_default(),
        sysprep: acc.sysprep.unwrap_or_default(),
        output: acc.output.unwrap_or_default(),
        ota: acc.ota.unwrap_or_default(),
    })
}
