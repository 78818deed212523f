//! System assembly: the work maintainer scripts would do, done declaratively on the tree —
//! users, services, networking, alternatives, CA bundle, os-release, labels, agents, the
//! check-in agent. The boot chain (kernel, initramfs, systemd-boot) is `crate::boot`.

mod alternatives;
mod apache;
mod certs;
mod commands;
mod defaults;
mod files;
mod firstboot;
mod idle;
mod init;
mod ldcache;
mod left_off;
pub mod ota;
mod pam;
mod paths;
mod postinst;
pub mod python;
mod statoverride;
mod tmpfiles;
mod ucf;
mod unit_accounts;
pub mod users;

use files::{install_file, overlay};
pub use firstboot::reserve as first_boot_reserve;
pub use init::enable_unit;
use init::{busybox_init, ready_script, systemd_setup};

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde_json::json;

use crate::config::{Hardware, InitSystem, Profile};
use crate::tree::{Entry, Kind, Tree};
use crate::trust::minisign::PublicKey;

pub use crate::base::identity::Identity;

/// Labels: the profile's plus generated ones.
pub fn labels(
    profile: &Profile,
    hw: &Hardware,
    id: &Identity,
    profile_digest: &str,
) -> BTreeMap<String, String> {
    let mut l = profile.labels.clone();
    let gen = [
        ("org.opencontainers.image.title", id.name.clone()),
        ("org.opencontainers.image.version", id.version.clone()),
        (
            "org.opencontainers.image.created",
            crate::base::identity::rfc3339(id.epoch),
        ),
        ("dev.ingot.image.id", id.id()),
        (
            "dev.ingot.builder.version",
            env!("CARGO_PKG_VERSION").to_string(),
        ),
        (
            "dev.ingot.profile.digest",
            format!("sha256:{profile_digest}"),
        ),
        ("dev.ingot.hardware", hw.name.clone()),
        ("dev.ingot.arch", id.arch.clone()),
    ];
    for (k, v) in gen {
        // A profile's own title wins; the labels Ingot derives from the build were refused
        // when the profile was read, unless they agree (the version), so nothing is
        // overwritten silently.
        if k == "org.opencontainers.image.title" && l.contains_key(k) {
            continue;
        }
        l.insert(k.to_string(), v);
    }
    l
}

fn put(tree: &mut Tree, path: &str, data: impl Into<Vec<u8>>, mode: u32) -> Result<()> {
    tree.insert(path, Entry::file(data, mode))
        .with_context(|| format!("writing /{path}"))?;
    Ok(())
}

fn put_entry(tree: &mut Tree, path: &str, entry: Entry) -> Result<()> {
    tree.insert(path, entry)
        .with_context(|| format!("writing /{}", path.trim_start_matches('/')))?;
    Ok(())
}

/// What the maintainer scripts of the image's packages would add, in package order.
#[derive(Debug, Default)]
pub struct Scripts {
    /// The system accounts they make.
    pub accounts: Vec<crate::packages::accounts::Account>,
    /// The NSS services they add to `/etc/nsswitch.conf`.
    pub nss: Vec<crate::packages::nss::NssEntry>,
    /// The alternatives they register.
    pub alternatives: Vec<crate::packages::alternatives::Alternative>,
    /// The owners, groups and modes they set.
    pub statoverrides: Vec<crate::packages::statoverride::Override>,
    /// Their `postinst`, in package order.
    pub postinsts: Vec<Postinst>,
}

/// A package's `postinst`, evaluated against the image being assembled (see
/// `packages::script`).
#[derive(Debug)]
pub struct Postinst {
    /// The package's name.
    pub package: String,
    /// The script.
    pub script: String,
    /// The defaults of the package's debconf templates.
    pub debconf: BTreeMap<String, String>,
}

/// Assemble the system in place: everything except the boot chain and sysprep. An A/B image
/// (hardware `[ab]`) also gets the updater, trusting `update_key`. `scripts` is what the
/// packages' maintainer scripts would have added.
pub fn system(
    tree: &mut Tree,
    profile: &Profile,
    hw: &Hardware,
    id: &Identity,
    labels: &BTreeMap<String, String>,
    update_key: Option<&PublicKey>,
    scripts: &Scripts,
) -> Result<()> {
    for d in [
        "proc", "sys", "dev", "run", "tmp", "root", "home", "etc", "var/tmp", "var/log", "mnt",
        "srv", "opt", "boot/efi",
    ] {
        tree.mkdir_p(d)?;
    }
    for (d, m) in [("tmp", 0o1777), ("var/tmp", 0o1777), ("root", 0o700)] {
        if let Some(e) = tree.get_mut(d) {
            e.mode = m;
        }
    }
    // What the image cannot boot without, all named in one error.
    let mut lacks: Vec<String> = Vec::new();
    if !tree.exists("bin/sh") {
        match ["usr/bin/dash", "usr/bin/bash", "usr/bin/busybox"]
            .into_iter()
            .find(|p| tree.exists(p))
        {
            Some(sh) => {
                tree.insert(
                    "usr/bin/sh",
                    Entry::symlink(sh.rsplit('/').next().unwrap_or(sh)),
                )?;
            }
            None => lacks.push("no shell (dash, bash or busybox): set `essential = true` under [packages] (Debian's required set brings dash) or include a shell package".into()),
        }
    }
    // systemd waits for device units (the serial console's getty, the root's fsck) that only
    // udev makes appear: without it every boot stalls 90 s per device and then fails them.
    // Debian's systemd does not depend on it. `exclude = ["udev"]` says it is meant.
    if profile.init == InitSystem::Systemd
        && !tree.exists("usr/lib/systemd/systemd-udevd")
        && !tree.exists("lib/systemd/systemd-udevd")
        && !profile.packages.exclude.iter().any(|p| p == "udev")
    {
        lacks.push("no udev, which a systemd image needs (without it systemd waits 90 s for each device, the serial console's among them, and then fails what needs it): add \"udev\" to [packages] include, or exclude = [\"udev\"] if that is meant".into());
    }
    // The ready check (and nearly every unit) runs these; busybox images have them as applets.
    if profile.init == InitSystem::Systemd {
        let missing: Vec<&str> = ["cat", "cut", "mkdir", "rm", "sleep"]
            .into_iter()
            .filter(|t| !tree.exists(&format!("usr/bin/{t}")) && !tree.exists(&format!("bin/{t}")))
            .collect();
        if !missing.is_empty() {
            lacks.push(format!(
                "no `{}` (coreutils), which Ingot's ready check and most units run: set `essential = true` under [packages] or include coreutils",
                missing.join("`, `")
            ));
        }
    }
    if !lacks.is_empty() {
        // The profile's package list is what to change: bad input, at its `include` line.
        return Err(crate::config::rule_at(
            &profile.files(),
            Some("[packages]"),
            "include",
            format!("the image has {}", lacks.join("; and ")),
        )
        .into());
    }
    // Debian's ldconfig trigger would write ld.so.cache; the loader works without it.
    let systemd = profile.init == InitSystem::Systemd;
    let accounts = postinst::accounts(tree, scripts, systemd);
    users::apply(tree, profile, &accounts, id.epoch / 86400)?;
    let applied = users::fragments(tree);
    alternatives::apply(tree, &scripts.alternatives)?;
    let enabled_by_packages = postinst::apply(tree, scripts, systemd)?;
    defaults::apply(tree, &scripts.nss)?;
    python::runtime_defaults(tree)?;
    // os-release with the image identity.
    let base = tree
        .read("/usr/lib/os-release")
        .or_else(|| tree.read("/etc/os-release"))
        .unwrap_or_default();
    let mut os = String::from_utf8_lossy(&base)
        .lines()
        .filter(|l| !l.starts_with("IMAGE_ID=") && !l.starts_with("IMAGE_VERSION="))
        .collect::<Vec<_>>()
        .join("\n");
    os.push_str(&format!(
        "\nIMAGE_ID={}\nIMAGE_VERSION={}\n",
        id.name, id.version
    ));
    if tree.get("etc/os-release").is_some() {
        tree.remove("etc/os-release");
    }
    put(tree, "usr/lib/os-release", os, 0o644)?;
    tree.insert("etc/os-release", Entry::symlink("../usr/lib/os-release"))?;
    put(tree, "etc/hostname", "", 0o644)?;
    put(
        tree,
        "etc/hosts",
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        0o644,
    )?;
    put(
        tree,
        "etc/fstab",
        "# Root is found by PARTUUID on the kernel command line; written by ingot.\n",
        0o644,
    )?;
    // Labels and agents.
    let image_json = serde_json::to_string_pretty(&json!({
        "image": id.name, "version": id.version, "arch": id.arch, "hardware": hw.name,
        "labels": labels, "agents": profile.agents.iter().map(|a| json!({"name": a.name, "probe": a.probe})).collect::<Vec<_>>(),
    }))?;
    put(tree, "usr/lib/ingot/image.json", image_json + "\n", 0o644)?;
    let files = profile.files();
    for a in &profile.agents {
        for f in &a.files {
            install_file(tree, f, &format!("agent {}", a.name), &files)?;
        }
    }
    for f in &profile.files {
        install_file(tree, f, "files", &files)?;
    }
    for o in &profile.overlays {
        overlay(tree, o)?;
    }
    // After the profile's files: a library or ld.so.conf.d file of its own is listed too.
    ldcache::write(tree, hw.arch)?;
    let hashed_store = certs::trust_store(tree)?;
    let ab = hw.ab.is_some();
    if ab {
        let key = update_key.with_context(|| {
            format!(
                "{}: an A/B image carries the key its updates are signed with: build it with --key",
                hw.path.display()
            )
        })?;
        ota::install(tree, profile, hw, id, key)?;
    }
    let mut agents = profile.agents.clone();
    agents.sort_by(|a, b| a.name.cmp(&b.name));
    put(
        tree,
        "usr/lib/ingot/ready",
        ready_script(
            id,
            &agents,
            ab,
            (profile.init == InitSystem::Systemd).then_some(&profile.services[..]),
        ),
        0o755,
    )?;
    pam::common_stacks(tree)?;
    match profile.init {
        InitSystem::Busybox => busybox_init(tree, profile, &hw.console, ab)?,
        InitSystem::Systemd => {
            let cmdline = format!("{} {}", hw.cmdline, profile.kernel.cmdline);
            // Users are current when every fragment is one `users::apply` read, unchanged.
            let now = users::fragments(tree);
            let users_current =
                now == applied && now.iter().all(|(p, _)| p.starts_with("usr/lib/"));
            systemd_setup(tree, profile, &cmdline, ab, users_current, hashed_store)?;
            left_off::report(tree, profile, &enabled_by_packages);
        }
    }
    Ok(())
}

/// The directories under `/usr/share` an image without documentation leaves empty but for
/// copyright files: documentation, man pages, info pages, translations, lintian overrides.
const DOC_DIRS: [&str; 5] = ["doc", "man", "info", "locale", "lintian"];

/// Where an image without documentation tells dpkg so: packages installed on the machine later
/// leave out what [`strip_docs`] dropped (as Debian's slim container images do).
const NO_DOCS: &str = "etc/dpkg/dpkg.cfg.d/ingot-no-docs";

/// dpkg's path filters for [`DOC_DIRS`], copyright files included again after the excludes
/// (dpkg applies them in order).
fn no_docs_filters() -> String {
    let mut s = String::from(
        "# Written by Ingot: this image was built without documentation, man pages and locales\n\
         # (the profile's [sysprep] keep_docs = false); packages installed later leave them out\n\
         # too. Copyright files stay. Delete this file to have dpkg install them again.\n",
    );
    for d in DOC_DIRS {
        s.push_str(&format!("path-exclude=/usr/share/{d}/*\n"));
    }
    s.push_str("path-include=/usr/share/*/copyright\n");
    s
}

/// Drop documentation, man pages and locales (copyright files stay: licences must ship). An
/// image with dpkg gets path filters that keep later installs the same. Returns the bytes freed.
pub fn strip_docs(tree: &mut Tree) -> Result<u64> {
    let doomed: Vec<String> = tree
        .iter()
        .filter(|(p, e)| {
            p.strip_prefix("usr/share/")
                .and_then(|rest| rest.split_once('/'))
                .is_some_and(|(dir, _)| DOC_DIRS.contains(&dir))
                && !p.ends_with("/copyright")
                && !matches!(e.kind, Kind::Dir)
        })
        .map(|(p, _)| p.clone())
        .collect();
    let mut freed = 0;
    for p in doomed {
        if let Some(Entry {
            kind: Kind::File(c),
            ..
        }) = tree.get(&p)
        {
            freed += c.len();
        }
        tree.remove(&p);
    }
    if tree.get("usr/bin/dpkg").is_some() {
        tree.insert(NO_DOCS, Entry::file(no_docs_filters(), 0o644))?;
    }
    Ok(freed)
}

#[cfg(test)]
mod tests;
