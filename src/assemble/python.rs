//! Python byte code: what `py3compile` does in the postinst of every Python package, which Ingot
//! does not run. Without it every Python process of a booted image (cloud-init runs four) compiles
//! each module it imports from source, every boot. The build host's interpreter of the image's
//! Python version compiles the standard library and `dist-packages` at build time: byte code is
//! the same on every arch. The `.pyc` files are timestamp-checked, as py3compile leaves them:
//! each records the modification time and size its source has in the image (its package's time,
//! stamped as the build stamps every file), so the guest's interpreter checks it with the `stat`
//! it makes anyway, where a hash-checked one (PEP 552) would read and hash every source at every
//! import; and since those times come from the packages and the build's epoch, two builds give
//! the same bytes.

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

/// What the Python runtime packages' maintainer scripts make on a first install: for each
/// interpreter `python3.N`, the marker `/var/lib/python/python3.N_installed` its `preinst`
/// leaves and the empty `/usr/local/lib/python3.N/dist-packages` its `postinst` makes for the
/// machine's own modules (setgid `staff` where `/etc/staff-group-for-usr-local` asks for it, as
/// base-files does for `/usr/local`). python3's `/etc/python3/debian_config` comes from its
/// postinst's here-document (`assemble::postinst`).
pub(super) fn runtime_defaults(tree: &mut Tree) -> Result<()> {
    let staff = tree
        .exists("etc/staff-group-for-usr-local")
        .then(|| super::defaults::group_id(tree, "staff"))
        .flatten();
    let (mode, gid) = staff.map_or((0o755, 0), |g| (0o2755, g));
    for v in versions(tree) {
        let marker = format!("var/lib/python/python{v}_installed");
        if tree.get(&marker).is_none() {
            tree.insert(&marker, Entry::file(Vec::new(), 0o644))?;
        }
        let lib = format!("usr/local/lib/python{v}");
        for d in [lib.clone(), format!("{lib}/dist-packages")] {
            if tree.get(&d).is_none() {
                let mut e = Entry::dir(mode);
                e.gid = gid;
                tree.insert(&d, e)?;
            }
        }
    }
    Ok(())
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

/// The interpreter compileall runs under.
enum Interpreter {
    /// The build host's `python3.N`.
    Host(String),
    /// The image's own `python3.N`, run by the image's dynamic loader with the image's C
    /// library and standard library (copied out under the scratch directory `home`'s `usr`):
    /// a Debian 13 image built on a Debian 12 host, which has no python3.13. Only when the
    /// image is of the host's arch.
    Image {
        loader: std::path::PathBuf,
        libs: std::path::PathBuf,
        python: std::path::PathBuf,
        home: std::path::PathBuf,
    },
}

/// The image's interpreter for `version`, copied out under `root` with what it loads, when
/// the image is of the build host's arch (`None` otherwise: no emulation).
fn image_interpreter(tree: &Tree, version: &str, root: &Path) -> Option<Result<Interpreter>> {
    let (triplet, loader) = match std::env::consts::ARCH {
        "x86_64" => ("x86_64-linux-gnu", "usr/lib64/ld-linux-x86-64.so.2"),
        "aarch64" => ("aarch64-linux-gnu", "usr/lib/ld-linux-aarch64.so.1"),
        _ => return None,
    };
    let libc = format!("usr/lib/{triplet}/libc.so.6");
    if !tree.exists(loader) || !tree.exists(&libc) {
        return None;
    }
    Some((|| {
        let lib = format!("usr/lib/{triplet}");
        // What python3.N-minimal links (libc6, zlib1g, libexpat1) and its compiled modules.
        let wanted = [
            "libc.so.",
            "libm.so.",
            "libz.so.",
            "libexpat.so.",
            "libpthread.so.",
            "libdl.so.",
            "librt.so.",
            "libutil.so.",
        ];
        let dynload = format!("usr/lib/python{version}/lib-dynload/");
        let files: Vec<String> = tree
            .iter()
            .filter(|(p, e)| {
                !matches!(e.kind, Kind::Dir)
                    && (p.strip_prefix(&format!("{lib}/")).is_some_and(|n| {
                        !n.contains('/') && wanted.iter().any(|w| n.starts_with(w))
                    }) || p.starts_with(&dynload))
            })
            .map(|(p, _)| p.clone())
            .collect();
        for p in files.iter().map(String::as_str).chain([loader]) {
            tree.copy_out(p, &root.join(p))?;
        }
        let python = format!("usr/bin/python{version}");
        tree.copy_out(&python, &root.join(&python))?;
        let loader = root.join(loader);
        std::fs::set_permissions(&loader, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .with_context(|| format!("making {} executable", loader.display()))?;
        Ok(Interpreter::Image {
            loader,
            libs: root.join(lib),
            python: root.join(python),
            home: root.join("usr"),
        })
    })())
}

/// Is `path` a source file `version`'s byte compilation covers?
fn in_scope(path: &str, version: &str) -> bool {
    let stdlib = format!("usr/lib/python{version}/");
    (path.starts_with(&stdlib) || path.starts_with("usr/lib/python3/dist-packages/"))
        && path.ends_with(".py")
        && !path.contains("/__pycache__/")
}

/// Compile every module of every Python in the tree, for an image whose times are stamped at
/// `epoch`; the number of `.pyc` files added.
pub fn byte_compile(tree: &mut Tree, epoch: i64) -> Result<usize> {
    let mut added = 0;
    for version in versions(tree) {
        // A link to a file counts as that file, as the interpreter's `stat` follows it
        // (sitecustomize.py and _sysconfigdata point into /etc and the arch's directory).
        let file = |p: &str| {
            let at = tree.resolve(p).ok()?;
            tree.get(&at).filter(|e| matches!(e.kind, Kind::File(_)))
        };
        let sources: Vec<String> = tree
            .iter()
            .filter(|(p, e)| {
                in_scope(p, &version)
                    && match e.kind {
                        Kind::File(_) => true,
                        Kind::Symlink(_) => file(p).is_some(),
                        _ => false,
                    }
            })
            .map(|(p, _)| p.clone())
            .collect();
        if sources.is_empty() {
            continue;
        }
        let host = host_interpreter(&version);
        let scratch = crate::base::fsx::scratch_dir("ingot-pyc")?;
        let root = scratch.path().canonicalize()?;
        let python = match host {
            Ok(p) => Interpreter::Host(p),
            Err(e) => match image_interpreter(tree, &version, &root) {
                Some(i) => i?,
                None => return Err(e),
            },
        };
        for p in &sources {
            let to = root.join(p);
            tree.copy_out(p, &to)?;
            // The time the source will have in the image is the one its .pyc records.
            let mtime = file(p).map_or(0, |e| crate::tree::stamped(e.mtime, epoch));
            set_mtime(&to, mtime)?;
        }
        added += compile(tree, &python, &version, &root)?;
    }
    Ok(added)
}

/// Give the file at `path` the modification time `secs` (seconds since 1970).
fn set_mtime(path: &Path, secs: i64) -> Result<()> {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
    let off = Duration::from_secs(secs.unsigned_abs());
    let t = if secs >= 0 {
        UNIX_EPOCH.checked_add(off)
    } else {
        UNIX_EPOCH.checked_sub(off)
    };
    let t: SystemTime = t.context("a file time out of range")?;
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(t))
        .with_context(|| format!("setting the time of {}", path.display()))
}

/// Run compileall over the copies under `root` and put each `.pyc` beside its source in the
/// tree, owned by the source's package.
fn compile(tree: &mut Tree, python: &Interpreter, version: &str, root: &Path) -> Result<usize> {
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
    let mut cmd;
    let python = match python {
        Interpreter::Host(p) => {
            cmd = std::process::Command::new(p);
            cmd.args(["-E", "-s", "-m", "compileall", "-q", "-j", "0"])
                .env("LC_ALL", "C.UTF-8")
                .env_remove("PYTHONPYCACHEPREFIX")
                // Would make py_compile's default hash-checked; the mode is given anyway.
                .env_remove("SOURCE_DATE_EPOCH");
            p.clone()
        }
        Interpreter::Image {
            loader,
            libs,
            python,
            home,
        } => {
            // Its standard library is the copy being compiled: PYTHONHOME says where (so no
            // -E, and nothing else from the environment), -B keeps its own imports from
            // writing byte code there. One process: worker processes would be started as
            // the interpreter alone, without the image's loader.
            cmd = std::process::Command::new(loader);
            cmd.arg("--library-path")
                .arg(libs)
                .arg(python)
                .args(["-B", "-s", "-m", "compileall", "-q", "-j", "1"])
                .env_clear()
                .env("LC_ALL", "C.UTF-8")
                .env("PYTHONHOME", home);
            format!("the image's python{version}")
        }
    };
    let out = cmd
        .args(["--invalidation-mode", "timestamp", "-s", &strip, "-p", "/"])
        .args(&dirs)
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

    #[test]
    fn a_python_runtime_gets_what_its_scripts_make_on_a_first_install() {
        let mut t = Tree::new();
        t.insert("usr/bin/python3.11", Entry::file("elf", 0o755))
            .unwrap();
        t.insert("usr/share/python3/debian_defaults", Entry::file("", 0o644))
            .unwrap();
        runtime_defaults(&mut t).unwrap();
        let dir = t.get("usr/local/lib/python3.11/dist-packages").unwrap();
        assert_eq!((dir.mode, dir.gid), (0o755, 0));
        assert!(t.get("var/lib/python/python3.11_installed").is_some());
        // Where /usr/local is the staff group's, so is the machine's Python directory.
        let mut t = Tree::new();
        t.insert("usr/bin/python3.11", Entry::file("elf", 0o755))
            .unwrap();
        t.insert("etc/staff-group-for-usr-local", Entry::file("", 0o644))
            .unwrap();
        t.insert("etc/group", Entry::file("root:x:0:\nstaff:x:50:\n", 0o644))
            .unwrap();
        t.insert("usr/share/python3/debian_defaults", Entry::file("", 0o644))
            .unwrap();
        runtime_defaults(&mut t).unwrap();
        let dir = t.get("usr/local/lib/python3.11").unwrap();
        assert_eq!((dir.mode, dir.gid), (0o2755, 50));
    }

    /// The `.pyc` header of `path` in `t`: (flags, recorded source time, recorded size).
    fn header(t: &Tree, path: &str) -> (u32, u32, u32) {
        let b = t.read(path).unwrap();
        let word = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        (word(4), word(8), word(12))
    }

    /// Needs the build host's python3.11 (Debian's python3.11-minimal, which .ci/host-deps
    /// installs), as a build of a Python image does.
    #[test]
    fn byte_code_records_the_time_and_size_its_source_has_in_the_image() {
        let epoch = 1_700_000_000;
        let mut t = Tree::new();
        t.insert("usr/bin/python3.11", Entry::file("elf", 0o755))
            .unwrap();
        let mut old = Entry::file("X = 1\n", 0o644);
        old.mtime = 1_600_000_000;
        old.origin = "pkg-a".into();
        t.insert("usr/lib/python3/dist-packages/a/old.py", old)
            .unwrap();
        // Newer than the epoch, and made by Ingot (time zero): both get the epoch.
        let mut new = Entry::file("Y = [1, 2]\n", 0o644);
        new.mtime = 1_800_000_000;
        t.insert("usr/lib/python3.11/new.py", new).unwrap();
        t.insert("usr/lib/python3.11/made.py", Entry::file("Z = 3\n", 0o644))
            .unwrap();
        // A link to a file elsewhere (python3.11's sitecustomize.py): compiled where it is
        // imported from, recording the time and size of the file it leads to.
        let mut site = Entry::file("import os\n", 0o644);
        site.mtime = 1_650_000_000;
        t.insert("etc/python3.11/sitecustomize.py", site).unwrap();
        t.insert(
            "usr/lib/python3.11/sitecustomize.py",
            Entry::symlink("/etc/python3.11/sitecustomize.py"),
        )
        .unwrap();
        // A link that leads nowhere is passed over.
        t.insert(
            "usr/lib/python3.11/dangling.py",
            Entry::symlink("/etc/python3.11/none.py"),
        )
        .unwrap();
        assert_eq!(byte_compile(&mut t, epoch).unwrap(), 4);
        let pyc = |dir: &str, m: &str| format!("{dir}/__pycache__/{m}.cpython-311.pyc");
        let a = pyc("usr/lib/python3/dist-packages/a", "old");
        assert_eq!(header(&t, &a), (0, 1_600_000_000, 6));
        assert_eq!(t.get(&a).unwrap().origin.as_ref(), "pkg-a");
        assert_eq!(
            header(&t, &pyc("usr/lib/python3.11", "new")),
            (0, epoch as u32, 11)
        );
        assert_eq!(
            header(&t, &pyc("usr/lib/python3.11", "made")),
            (0, epoch as u32, 6)
        );
        assert_eq!(
            header(&t, &pyc("usr/lib/python3.11", "sitecustomize")),
            (0, 1_650_000_000, 10)
        );
        assert!(t.get("etc/python3.11/__pycache__").is_none());
    }
}
