//! What apache2's `a2enmod`, `a2enconf` and `a2ensite` do when a package's postinst calls them
//! on a first install (apache2's own enables the event MPM, its default modules and
//! configuration snippets and the default site; a module package enables its module): the
//! link in `/etc/apache2/*-enabled` to the file in `*-available`, a module's `.conf` beside
//! its `.load`, the modules a module's `# Depends:` line names first, nothing where a module
//! its `# Conflicts:` line names is on, and the helpers' state markers in `/var/lib/apache2`
//! (`enabled_by_maint` for `-m`, else `enabled_by_admin`), so that `a2dismod` and a later
//! upgrade on the machine treat each as the helper would. The commands come from the
//! evaluated script (see `packages::script`).

use anyhow::{Context, Result};

use crate::tree::{Entry, Kind, Tree};

const CONF: &str = "etc/apache2";
const STATE: &str = "var/lib/apache2";

/// What a helper enables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Obj {
    Module,
    Conf,
    Site,
}

impl Obj {
    /// `mods`, `conf`, `sites`: the `*-available` and `*-enabled` directories.
    fn dir(self) -> &'static str {
        match self {
            Obj::Module => "mods",
            Obj::Conf => "conf",
            Obj::Site => "sites",
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Obj::Module => ".load",
            Obj::Conf | Obj::Site => ".conf",
        }
    }

    /// The directory of its markers under `/var/lib/apache2`.
    fn state(self) -> &'static str {
        match self {
            Obj::Module => "module",
            Obj::Conf => "conf",
            Obj::Site => "site",
        }
    }

    fn available(self, name: &str) -> String {
        format!("{CONF}/{}-available/{name}{}", self.dir(), self.suffix())
    }

    fn enabled(self, name: &str) -> String {
        format!("{CONF}/{}-enabled/{name}{}", self.dir(), self.suffix())
    }
}

pub(super) fn apply(tree: &mut Tree, package: &str, commands: &[Vec<String>]) -> Result<()> {
    for c in commands {
        let tool = c[0].rsplit('/').next().unwrap_or_default();
        let obj = match tool {
            "a2enmod" => Obj::Module,
            "a2enconf" => Obj::Conf,
            "a2ensite" => Obj::Site,
            _ => continue,
        };
        // The helpers are apache2's: a script that calls them without it would fail.
        if !tree.exists(&format!("usr/sbin/{tool}")) {
            continue;
        }
        let mut maint = false;
        let mut names = Vec::new();
        let mut plain = true;
        for w in &c[1..] {
            match w.as_str() {
                "-m" | "--maintmode" => maint = true,
                "-q" | "--quiet" | "-f" | "--force" => {}
                // --purge and the like: not an enable.
                o if o.starts_with('-') => plain = false,
                n => names.push(n.strip_suffix(obj.suffix()).unwrap_or(n).to_string()),
            }
        }
        if !plain {
            continue;
        }
        for n in names {
            if !enable(tree, obj, &n, maint, 0)? {
                eprintln!(
                    "warning: {package}'s postinst runs {tool} {n}, which apache2's helper would refuse (no such file, or a dependency or conflict); left off"
                );
            }
        }
    }
    Ok(())
}

/// A name the helpers take: one file name in their directories.
fn name_ok(n: &str) -> bool {
    !n.is_empty()
        && !n.starts_with('.')
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+@".contains(c))
}

/// The words of the `# KEY:` line among the comments that start `file`.
fn header(tree: &Tree, file: &str, key: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(&tree.read(file).unwrap_or_default()).into_owned();
    for line in text.lines() {
        if let Some(rest) = line
            .strip_prefix("# ")
            .and_then(|l| l.strip_prefix(key))
            .and_then(|l| l.strip_prefix(':'))
        {
            return rest.split_whitespace().map(str::to_string).collect();
        }
        let t = line.trim();
        if !(t.is_empty() || t.starts_with('#')) {
            break;
        }
    }
    Vec::new()
}

fn is_file(tree: &Tree, path: &str) -> bool {
    tree.resolve(path)
        .ok()
        .and_then(|p| tree.get(&p))
        .is_some_and(|e| matches!(e.kind, Kind::File(_)))
}

/// Link `link` to `target` (relative, as the helpers make it) unless something is there.
fn link(tree: &mut Tree, link: &str, target: &str) -> Result<()> {
    if tree.get(link).is_none() {
        tree.insert(link, Entry::symlink(target))
            .with_context(|| format!("linking /{link}"))?;
    }
    Ok(())
}

/// Enable `name` as the helper would; whether it is enabled afterwards.
fn enable(tree: &mut Tree, obj: Obj, name: &str, maint: bool, depth: u32) -> Result<bool> {
    let available = obj.available(name);
    if depth > 16 || !name_ok(name) || !is_file(tree, &available) {
        return Ok(false);
    }
    let depends = header(tree, &available, "Depends");
    match obj {
        Obj::Module => {
            for d in &depends {
                if !enable(tree, Obj::Module, d, maint, depth + 1)? {
                    return Ok(false);
                }
            }
            let conflicts = header(tree, &available, "Conflicts");
            if conflicts
                .iter()
                .any(|c| tree.get(&Obj::Module.enabled(c)).is_some())
            {
                return Ok(false);
            }
        }
        // A configuration or site only checks that its modules are on.
        Obj::Conf | Obj::Site => {
            if depends
                .iter()
                .any(|d| tree.get(&Obj::Module.enabled(d)).is_none())
            {
                return Ok(false);
            }
        }
    }
    let relative = format!("../{}-available/{name}", obj.dir());
    // A module's configuration goes in with it (and is added if only it was missing).
    if obj == Obj::Module && is_file(tree, &format!("{CONF}/mods-available/{name}.conf")) {
        link(
            tree,
            &format!("{CONF}/mods-enabled/{name}.conf"),
            &format!("{relative}.conf"),
        )?;
    }
    let enabled = obj.enabled(name);
    if tree.get(&enabled).is_some() {
        return Ok(true);
    }
    link(tree, &enabled, &format!("{relative}{}", obj.suffix()))?;
    let by = if maint { "maint" } else { "admin" };
    let marker = format!("{STATE}/{}/enabled_by_{by}/{name}", obj.state());
    tree.insert(&marker, Entry::file(Vec::new(), 0o644))
        .with_context(|| format!("writing /{marker}"))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(t: &mut Tree, p: &str, text: &str) {
        t.insert(p, Entry::file(text, 0o644)).unwrap();
    }

    fn target(t: &Tree, p: &str) -> String {
        match &t.get(p).unwrap_or_else(|| panic!("no /{p}")).kind {
            Kind::Symlink(s) => s.clone(),
            k => panic!("/{p} is {k:?}"),
        }
    }

    fn words(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_string).collect()
    }

    fn apache() -> Tree {
        let mut t = Tree::new();
        for h in ["a2enmod", "a2enconf", "a2ensite"] {
            t.insert(&format!("usr/sbin/{h}"), Entry::file("perl", 0o755))
                .unwrap();
        }
        let m = "etc/apache2/mods-available";
        file(
            &mut t,
            &format!("{m}/mpm_event.load"),
            "# Conflicts: mpm_worker mpm_prefork\nLoadModule mpm_event_module x\n",
        );
        file(&mut t, &format!("{m}/mpm_event.conf"), "<IfModule>\n");
        file(
            &mut t,
            &format!("{m}/mpm_prefork.load"),
            "# Conflicts: mpm_event mpm_worker\nLoadModule x\n",
        );
        file(
            &mut t,
            &format!("{m}/authn_core.load"),
            "LoadModule authn_core_module x\n",
        );
        file(
            &mut t,
            &format!("{m}/authn_file.load"),
            "# Depends: authn_core\nLoadModule authn_file_module x\n",
        );
        file(
            &mut t,
            &format!("{m}/proxy.load"),
            "LoadModule proxy_module x\n",
        );
        file(
            &mut t,
            &format!("{m}/late.load"),
            "LoadModule late x\n# Depends: proxy\n",
        );
        file(
            &mut t,
            "etc/apache2/conf-available/charset.conf",
            "AddDefaultCharset UTF-8\n",
        );
        file(
            &mut t,
            "etc/apache2/conf-available/needs-proxy.conf",
            "# Depends: proxy\nX\n",
        );
        file(
            &mut t,
            "etc/apache2/sites-available/000-default.conf",
            "<VirtualHost *:80>\n",
        );
        t
    }

    #[test]
    fn modules_confs_and_sites_are_linked_with_what_they_need_and_marked() {
        let mut t = apache();
        apply(
            &mut t,
            "apache2",
            &[
                words("a2enmod -m -q mpm_event"),
                words("a2enmod -m -q authn_file"),
                // Its Depends line comes after a directive: not read, as the helper.
                words("a2enmod -m -q late"),
                words("a2enconf -m -q charset.conf"),
                words("a2ensite -q 000-default"),
                // A conflict, a missing module, a configuration whose module is off, a name
                // that leaves the directory, a purge: nothing.
                words("a2enmod -m -q mpm_prefork"),
                words("a2enmod -m -q nonexistent"),
                words("a2enconf -m -q needs-proxy"),
                words("a2ensite ../../shadow"),
                words("a2enmod --purge -m proxy"),
            ],
        )
        .unwrap();
        let e = "etc/apache2";
        assert_eq!(
            target(&t, &format!("{e}/mods-enabled/mpm_event.load")),
            "../mods-available/mpm_event.load"
        );
        assert_eq!(
            target(&t, &format!("{e}/mods-enabled/mpm_event.conf")),
            "../mods-available/mpm_event.conf"
        );
        assert_eq!(
            target(&t, &format!("{e}/mods-enabled/authn_core.load")),
            "../mods-available/authn_core.load"
        );
        assert_eq!(
            target(&t, &format!("{e}/mods-enabled/authn_file.load")),
            "../mods-available/authn_file.load"
        );
        assert_eq!(
            target(&t, &format!("{e}/mods-enabled/late.load")),
            "../mods-available/late.load"
        );
        assert_eq!(
            target(&t, &format!("{e}/conf-enabled/charset.conf")),
            "../conf-available/charset.conf"
        );
        assert_eq!(
            target(&t, &format!("{e}/sites-enabled/000-default.conf")),
            "../sites-available/000-default.conf"
        );
        for gone in [
            "mods-enabled/mpm_prefork.load",
            "mods-enabled/nonexistent.load",
            "mods-enabled/proxy.load",
            "conf-enabled/needs-proxy.conf",
        ] {
            assert!(t.get(&format!("{e}/{gone}")).is_none(), "{gone}");
        }
        for m in [
            "module/enabled_by_maint/mpm_event",
            "module/enabled_by_maint/authn_core",
            "conf/enabled_by_maint/charset",
            "site/enabled_by_admin/000-default",
        ] {
            assert!(t.get(&format!("var/lib/apache2/{m}")).is_some(), "{m}");
        }
        assert!(t
            .get("var/lib/apache2/module/enabled_by_maint/mpm_prefork")
            .is_none());
        // Without apache2's helpers in the image, nothing.
        let mut t = apache();
        t.remove("usr/sbin/a2enmod");
        apply(&mut t, "apache2", &[words("a2enmod -m -q mpm_event")]).unwrap();
        assert!(t.get("etc/apache2/mods-enabled/mpm_event.load").is_none());
    }
}
