//! The cache against glibc's own tools: the build host's `ldconfig` reads it back (`-p -C`)
//! and, run over the same files on disk, writes the entries it holds in the same order.

use super::*;
use std::cmp::Ordering;

#[test]
fn library_names_compare_as_glibc_compares_them() {
    let cmp = |a: &str, b: &str| libcmp(a.as_bytes(), b.as_bytes());
    assert_eq!(cmp("libz.so.1", "libz.so.10"), Ordering::Less);
    assert_eq!(
        cmp("libz.so.9", "libz.so.10"),
        Ordering::Less,
        "numbers, not text"
    );
    assert_eq!(cmp("libc.so.6", "libcrypt.so.1"), Ordering::Less);
    assert_eq!(
        cmp("lib2x.so", "libax.so"),
        Ordering::Greater,
        "a digit after a letter"
    );
    assert_eq!(cmp("libz.so", "libz.so.1"), Ordering::Less);
    assert_eq!(cmp("libz.so.1", "libz.so.1"), Ordering::Equal);
}

#[test]
fn what_is_not_a_shared_object_of_the_machine_has_no_soname() {
    assert_eq!(soname(b"not an ELF file at all", 62), None);
    assert_eq!(soname(b"\x7fELF\x02\x01", 62), None, "cut short");
    let libz = std::fs::read("/usr/lib/x86_64-linux-gnu/libz.so.1").ok();
    if cfg!(target_arch = "x86_64") {
        let libz = libz.expect("the build host's libz (zlib1g, Essential)");
        assert_eq!(soname(&libz, 62), Some(Some("libz.so.1".into())));
        assert_eq!(soname(&libz, 183), None, "another machine");
        let mut exec = libz.clone();
        exec[16] = 2;
        assert_eq!(soname(&exec, 62), None, "an executable");
    }
}

/// Host libraries (an x86_64 Debian host: zlib1g, libzstd1 and liblzma5 are Essential's
/// dependencies) laid out as an image would hold them, one in a vendor directory only
/// `ld.so.conf.d` names, one without its SONAME link.
#[cfg(target_arch = "x86_64")]
#[test]
fn the_cache_holds_what_the_hosts_ldconfig_makes_of_the_same_files() {
    let host = std::path::Path::new("/usr/lib/x86_64-linux-gnu");
    let real = |prefix: &str| -> String {
        let mut names: Vec<String> = std::fs::read_dir(host)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(prefix) && n.len() > prefix.len())
            .filter(|n| {
                !std::fs::symlink_metadata(host.join(n))
                    .unwrap()
                    .is_symlink()
            })
            .collect();
        names.sort();
        names
            .pop()
            .unwrap_or_else(|| panic!("no {prefix}* on the host"))
    };
    let (z, zstd, lzma) = (
        real("libz.so.1."),
        real("libzstd.so.1."),
        real("liblzma.so.5."),
    );
    let files: Vec<(String, Option<String>, &str)> = vec![
        // (path in the image, link target or none, host file for a file)
        ("etc/ld.so.conf".into(), None, ""),
        ("usr/lib/x86_64-linux-gnu/".to_string() + &z, None, "z"),
        (
            "usr/lib/x86_64-linux-gnu/libz.so.1".into(),
            Some(z.clone()),
            "",
        ),
        (
            "usr/lib/x86_64-linux-gnu/libz.so".into(),
            Some("libz.so.1".into()),
            "",
        ),
        ("usr/lib/x86_64-linux-gnu/libnot.so.1".into(), None, "text"),
        ("usr/local/lib/".to_string() + &zstd, None, "zstd"),
        ("opt/vendor/lib/liblzma.so.5".into(), None, "lzma"),
        (
            "opt/vendor/lib/liblzma.so".into(),
            Some("liblzma.so.5".into()),
            "",
        ),
    ];
    let conf_d = [
        (
            "libc.conf",
            "# libc default configuration\n/usr/local/lib\n",
        ),
        (
            "x86_64-linux-gnu.conf",
            "/usr/local/lib/x86_64-linux-gnu\n/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n",
        ),
        ("zz-vendor.conf", "/opt/vendor/lib\n"),
    ];
    let source = |what: &str| -> Vec<u8> {
        match what {
            "z" => std::fs::read(host.join(&z)).unwrap(),
            "zstd" => std::fs::read(host.join(&zstd)).unwrap(),
            "lzma" => std::fs::read(host.join(&lzma)).unwrap(),
            "text" => b"not a library\n".to_vec(),
            _ => b"include /etc/ld.so.conf.d/*.conf\n".to_vec(),
        }
    };
    let mut t = Tree::new();
    t.mkdir_p("usr/lib").unwrap();
    t.insert("lib", Entry::symlink("usr/lib")).unwrap();
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    std::fs::create_dir_all(r.join("usr/lib")).unwrap();
    std::os::unix::fs::symlink("usr/lib", r.join("lib")).unwrap();
    for (path, link, what) in &files {
        let p = r.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        match link {
            Some(to) => {
                t.insert(path, Entry::symlink(to)).unwrap();
                std::os::unix::fs::symlink(to, &p).unwrap();
            }
            None => {
                t.insert(path, Entry::file(source(what), 0o644)).unwrap();
                std::fs::write(&p, source(what)).unwrap();
            }
        }
    }
    for (name, text) in conf_d {
        t.insert(
            &format!("etc/ld.so.conf.d/{name}"),
            Entry::file(text, 0o644),
        )
        .unwrap();
    }
    assert_eq!(write(&mut t, Arch::X86_64).unwrap(), 5);
    // The SONAME link the vendor directory lacked, as ldconfig makes it.
    assert_eq!(
        t.get("usr/local/lib/libzstd.so.1").map(|e| &e.kind),
        Some(&Kind::Symlink(zstd.clone()))
    );
    let ours = d.path().join("ours.cache");
    std::fs::write(&ours, t.read("etc/ld.so.cache").unwrap()).unwrap();
    let listing = |cache: &std::path::Path| -> Vec<String> {
        let o = std::process::Command::new("ldconfig")
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .arg("-p")
            .arg("-C")
            .arg(cache)
            .output()
            .expect("running the host's ldconfig (libc-bin)");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .filter(|l| l.starts_with('\t'))
            .map(|l| l.trim().to_string())
            .collect()
    };
    let got = listing(&ours);
    assert_eq!(
        got,
        [
            "libzstd.so.1 (libc6,x86-64) => /usr/local/lib/libzstd.so.1",
            "libz.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libz.so.1",
            "libz.so (libc6,x86-64) => /lib/x86_64-linux-gnu/libz.so",
            "liblzma.so.5 (libc6,x86-64) => /opt/vendor/lib/liblzma.so.5",
            "liblzma.so (libc6,x86-64) => /opt/vendor/lib/liblzma.so",
        ]
    );
    // The host's ldconfig over the same directories on disk (it adds its own built-in ones,
    // the host's libraries, which are left out here), without touching the host's cache.
    let conf = r.join("host.conf");
    std::fs::write(
        &conf,
        [
            "usr/local/lib",
            "lib/x86_64-linux-gnu",
            "usr/lib/x86_64-linux-gnu",
            "opt/vendor/lib",
        ]
        .iter()
        .map(|p| format!("{}\n", r.join(p).display()))
        .collect::<String>(),
    )
    .unwrap();
    let theirs = r.join("theirs.cache");
    let o = std::process::Command::new("ldconfig")
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .args(["-i", "-f"])
        .arg(&conf)
        .arg("-C")
        .arg(&theirs)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let prefix = r.display().to_string();
    let theirs: Vec<String> = listing(&theirs)
        .into_iter()
        .filter(|l| l.contains(&prefix))
        .map(|l| l.replace(&prefix, ""))
        .collect();
    assert_eq!(got, theirs);
}
