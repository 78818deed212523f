//! Python byte code: what `py3compile` does in the postinst of every Python package, which Ingot
//! does not run. Without it every Python process of a booted image (cloud-init runs four) compiles
//! each module it imports from source, every boot. The build host's interpreter of the image's
//! Python version compiles the standard library and `dist-packages` at build time: byte code is
//! the same on every arch, and hash-checked `.pyc` files (PEP 552) do not depend on file times,
//! so two builds give the same bytes.

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::tree::{Entry, Kind, Tree};

/// Python versions (`3.11`) whose interpreter the tree holds (`/usr/bin/python3.11`).
fn versions(tree: &Tree) -> Vec<String> {
    let mut v: Vec<String> = tree
        .iter()
        .filter(|(_, e)| matches!(e.kind, Kind::File(_)))
        .filter_map(|(p, _)| p.strip_prefix("usr/bin/python"))
        .filter(|v| {
            v.split_once('.').is_some_and(|(a, b)| {
                a == "3" && !b.is_empty() && b.bytes().all(|c| c.is_ascii_digit())
            })
        })
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

/// The build host's interpreter for `version`: Debian's `/usr/bin/python3.N`, else `python3.N`
/// on PATH, checked to say that version.
fn host_interpreter(version: &str) -> Result<String> {
    let candidates = [
        format!("/usr/bin/python{version}"),
        format!("python{version}"),
    ];
    for c in &candidates {
        let said = std::process::Command::new(c)
            .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
            .output();
        if let Ok(o) = said {
            if o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == version {
                return Ok(c.clone());
            }
        }
    }
    bail!(
        "the image holds Python {version}, whose byte code Ingot compiles at build time (py3compile's work), but the build host has no python{version}: install the Debian package python{version}-minimal, or set [packages] byte_compile = false"
    )
}

/// Is `path` a source file `version`'s byte compilation covers?
fn in_scope(path: &str, version: &str) -> bool {
    let stdlib = format!("usr/lib/python{version}/");
    (path.starts_with(&stdlib) || path.starts_with("usr/lib/python3/dist-packages/"))
        && path.ends_with(".py")
        && !path.contains("/__pycache__/")
}

/// Compile every module of every Python in the tree; the number of `.pyc` files added.
pub fn byte_compile(tree: &mut Tree) -> Result<usize> {
    let mut added = 0;
    for version in versions(tree) {
        let sources: Vec<String> = tree
            .iter()
            .filter(|(p, e)| in_scope(p, &version) && matches!(e.kind, Kind::File(_)))
            .map(|(p, _)| p.clone())
            .collect();
        if sources.is_empty() {
            continue;
        }
        let python = host_interpreter(&version)?;
        let scratch = crate::base::fsx::scratch_dir("ingot-pyc")?;
        let root = scratch.path().canonicalize()?;
        for p in &sources {
            tree.copy_out(p, &root.join(p))?;
        }
        added += compile(tree, &python, &version, &root)?;
    }
    Ok(added)
}

/// Run compileall over the copies under `root` and put each `.pyc` beside its source in the
/// tree, owned by the source's package.
fn compile(tree: &mut Tree, python: &str, version: &str, root: &Path) -> Result<usize> {
    let strip = root.to_string_lossy().into_owned();
    let mut dirs = Vec::new();
    for d in [
        format!("usr/lib/python{version}"),
        "usr/lib/python3/dist-packages".into(),
    ] {
        if root.join(&d).is_dir() {
            dirs.push(root.join(d));
        }
    }
    let out = std::process::Command::new(python)
        .args(["-E", "-s", "-m", "compileall", "-q", "-j", "0"])
        .args([
            "--invalidation-mode",
            "checked-hash",
            "-s",
            &strip,
            "-p",
            "/",
        ])
        .args(&dirs)
        .env("LC_ALL", "C.UTF-8")
        .env_remove("PYTHONPYCACHEPREFIX")
        .output()
        .with_context(|| format!("running {python} -m compileall"))?;
    // 1: some file did not compile (as py3compile, it then has no byte code); more: no run.
    if !matches!(out.status.code(), Some(0 | 1)) {
        bail!(
            "{python} -m compileall failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let tag = format!(".cpython-{}.pyc", version.replace('.', ""));
    let mut made = Vec::new();
    for d in &dirs {
        collect(d, &tag, &mut made)?;
    }
    made.sort();
    let mut n = 0;
    for pyc in made {
        let rel = pyc
            .strip_prefix(root)
            .context("a .pyc outside the scratch directory")?
            .to_string_lossy()
            .into_owned();
        // dir/__pycache__/name.cpython-311.pyc belongs to dir/name.py.
        let (dir, file) = rel
            .rsplit_once("/__pycache__/")
            .context("a .pyc outside __pycache__")?;
        let source = format!("{dir}/{}.py", file.trim_end_matches(&tag));
        let Some(origin) = tree.get(&source).map(|e| e.origin.clone()) else {
            continue;
        };
        tree.mkdir_p(&format!("{dir}/__pycache__"))?;
        let data = std::fs::read(&pyc).with_context(|| format!("reading {}", pyc.display()))?;
        let mut e = Entry::file(data, 0o644);
        e.origin = origin;
        tree.insert(&rel, e)?;
        n += 1;
    }
    Ok(n)
}

fn collect(dir: &Path, tag: &str, out: &mut Vec<std::path::PathBuf>) -> Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let p = e.path();
        if e.file_type()?.is_dir() {
            collect(&p, tag, out)?;
        } else if p.to_string_lossy().ends_with(tag)
            && p.parent().and_then(Path::file_name) == Some("__pycache__".as_ref())
        {
            out.push(p);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stdlib_and_dist_packages_are_in_scope_and_nothing_else() {
        assert!(in_scope("usr/lib/python3.11/json/decoder.py", "3.11"));
        assert!(in_scope(
            "usr/lib/python3/dist-packages/cloudinit/util.py",
            "3.11"
        ));
        assert!(!in_scope("usr/lib/python3.12/json/decoder.py", "3.11"));
        assert!(!in_scope("usr/share/doc/x.py", "3.11"));
        assert!(!in_scope("usr/lib/python3.11/__pycache__/os.py", "3.11"));
        let mut t = Tree::new();
        t.insert("usr/bin/python3.11", Entry::file("elf", 0o755))
            .unwrap();
        t.insert("usr/bin/python3", Entry::symlink("python3.11"))
            .unwrap();
        t.insert("usr/bin/python3.11-config", Entry::file("sh", 0o755))
            .unwrap();
        assert_eq!(versions(&t), ["3.11"]);
    }
}
