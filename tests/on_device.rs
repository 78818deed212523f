//! apt and dpkg on a booted image: the machine installs, upgrades and removes packages from a
//! repository the test serves on the host's loopback (the guest's 10.0.2.2), the way an
//! administrator or unattended-upgrades would, with the dpkg database Ingot wrote. A package
//! list, file list, conffile hash, maintainer script or trigger interest that the database
//! lacks or gets wrong shows up here as a dpkg error, a warning, a prompt on a conffile that
//! nobody changed, or a file left behind or removed.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::serve::DirServer;
use common::*;
use ingot::packages::cache::Cache;
use ingot::packages::{Locked, Lockfile};

/// A locked package's .deb, copied into `dir` from the package cache the builds filled (where
/// it is kept only while its digest matches).
fn copy_deb(p: &Locked, dir: &Path) -> PathBuf {
    let i = &p.info;
    let cached = Cache::open(None)
        .unwrap()
        .lookup(&i.sha256, i.size)
        .unwrap_or_else(|| panic!("{} {}: not in the package cache", i.name, i.version));
    let to = dir.join(format!(
        "{}_{}_{}.deb",
        i.name,
        i.version.replace(':', "%3a"),
        i.arch
    ));
    std::fs::copy(cached, &to).unwrap();
    to
}

fn run(cmd: &mut Command, what: &str) -> String {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn packages(lock: &Path) -> Vec<Locked> {
    Lockfile::load(lock).unwrap().target.remove(0).package
}

/// The same package with its version raised and one line added to a conffile: what a
/// stable or security update of it looks like to dpkg.
fn newer(deb: &Path, conffile: &str, line: &str, repo: &Path) -> String {
    let x = repo.join("unpacked");
    run(
        Command::new("dpkg-deb").arg("-R").arg(deb).arg(&x),
        "dpkg-deb -R",
    );
    let control = x.join("DEBIAN/control");
    let text = std::fs::read_to_string(&control).unwrap();
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .unwrap()
        .to_string();
    let raised = format!("{version}+ingot1");
    std::fs::write(
        &control,
        text.replace(
            &format!("Version: {version}\n"),
            &format!("Version: {raised}\n"),
        ),
    )
    .unwrap();
    let conf = x.join(conffile.trim_start_matches('/'));
    let mut c = std::fs::read_to_string(&conf).unwrap();
    c.push_str(line);
    c.push('\n');
    std::fs::write(&conf, c).unwrap();
    let out = repo.join("raised.deb");
    run(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-b"])
            .arg(&x)
            .arg(&out),
        "dpkg-deb -b",
    );
    std::fs::remove_dir_all(&x).unwrap();
    raised
}

/// What the machine does, once; later polls of the probe read its exit status. The log goes
/// to the console between two marker lines.
const ON_DEVICE: &str = r#"#!/bin/sh
r=/run/ingot-on-device
if [ -e $r.rc ]; then exit "$(cat $r.rc)"; fi
(
  set -ex
  export DEBIAN_FRONTEND=noninteractive
  src=/etc/apt/sources.list.d/ingot-test.list
  echo "deb [trusted=yes] http://10.0.2.2:@PORT@/ ./" > $src
  apt() { apt-get -q -y -o Dir::Etc::sourcelist=$src -o Dir::Etc::sourceparts=- "$@"; }
  apt update
  # A new program with its libraries: dependencies met by the image's status file, the
  # libraries found by the ldconfig trigger libc-bin's interest (in the image) runs.
  apt install @NEW@
  echo '{"a":[1,2]}' | jq -c .a | grep -qx '\[1,2\]'
  ldconfig -p | grep -q 'libjq\.so\.1 '
  # The image was built without documentation: so is what is installed later.
  test -e /usr/share/doc/jq/copyright
  test ! -e /usr/share/man/man1/jq.1.gz
  test ! -e /usr/share/doc/jq/README
  # An update of a package the image holds: its conffile, unchanged on this machine, is
  # replaced without a question; its maintainer scripts restart the service.
  apt install @UP@
  [ "$(dpkg-query -W -f '${Version}' @UP@)" = "@UPVER@" ]
  grep -qx '@LINE@' @CONF@
  systemctl is-active -q @UP@.service
  # Removal keeps the conffiles the status file lists; purge removes them.
  apt remove @GONE@
  [ "$(dpkg-query -W -f '${Status}' @GONE@)" = "deinstall ok config-files" ]
  test -e @GONECONF@
  test ! -e @GONEBIN@
  apt purge @GONE@
  test ! -e @GONECONF@
  apt-get check -q
  test -z "$(dpkg --audit)"
  [ "$(dpkg-divert --listpackage /bin/sh)" = dash ]
) > $r.log 2>&1
echo $? > $r.rc
{ echo ON-DEVICE-BEGIN; cat $r.log; echo ON-DEVICE-END; } > /dev/console
exit "$(cat $r.rc)"
"#;

#[test]
#[cfg_attr(not(ingot_e2e), ignore = "end-to-end lane: set INGOT_E2E=1")]
fn a_booted_image_installs_upgrades_and_removes_packages_with_apt() {
    let t = tempfile::tempdir().unwrap();
    let repo = t.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    let server = DirServer::start(&repo);
    let vm_base = root().join("profiles/vm-base.toml");

    // The packages a vm-base with jq would add: resolved and fetched by ingot, not built.
    let with_jq = t.path().join("with-jq.toml");
    std::fs::write(
        &with_jq,
        format!(
            "extends = \"{}\"\n[image]\nname = \"with-jq\"\nversion = \"1.0.0\"\n[packages]\ninclude = [\"jq\"]\n",
            vm_base.display()
        ),
    )
    .unwrap();
    let hw = "hardware/qemu-x86_64.toml";
    ok(
        &ingot(&["lock", "-q", with_jq.to_str().unwrap(), "--hardware", hw]),
        "lock",
    );
    ok(
        &ingot(&[
            "fetch",
            "-q",
            with_jq.to_str().unwrap(),
            "--hardware",
            hw,
            "--locked",
        ]),
        "fetch",
    );

    let with_jq_set = packages(&with_jq.with_extension("lock"));
    let profile = t.path().join("vm-on-device.toml");
    let up = "prometheus-node-exporter";
    let conf = "/etc/default/prometheus-node-exporter";
    let line = "# raised by the on-device apt test";
    // The version the rebuilt package will have (the image's, resolved the same way).
    let up_from = &with_jq_set.iter().find(|p| p.info.name == up).unwrap().info;
    let up_version = format!("{}+ingot1", up_from.version);
    let script = ON_DEVICE
        .replace("@PORT@", &server.port.to_string())
        .replace("@NEW@", "jq")
        .replace("@UP@", up)
        .replace("@UPVER@", &up_version)
        .replace("@LINE@", line)
        .replace("@CONF@", conf)
        .replace("@GONE@", "iproute2")
        .replace("@GONECONF@", "/etc/iproute2/rt_tables")
        .replace("@GONEBIN@", "/bin/ip");
    std::fs::write(
        &profile,
        format!(
            "extends = \"{}\"\n[image]\nname = \"vm-on-device\"\nversion = \"1.0.0\"\n[[files]]\npath = \"/usr/local/lib/on-device\"\ncontent = '''\n{script}'''\n[[agent]]\nname = \"on-device\"\nprobe = \"sh /usr/local/lib/on-device\"\nprobe_timeout = 240\n",
            vm_base.display()
        ),
    )
    .unwrap();
    let dir = build_x86_64(profile.to_str().unwrap(), &t.path().join("out"));
    let image = packages(&dir.join("packages.lock"));
    let held = |n: &str| image.iter().any(|p| p.info.name == n);
    assert!(held(up) && held("iproute2") && held("libc-bin") && !held("jq"));

    let added: Vec<Locked> = with_jq_set
        .into_iter()
        .filter(|p| !held(&p.info.name))
        .collect();
    assert!(added.iter().any(|p| p.info.name == "jq"), "{added:?}");
    for p in &added {
        copy_deb(p, &repo);
    }
    let old = copy_deb(image.iter().find(|p| p.info.name == up).unwrap(), t.path());
    assert_eq!(newer(&old, conf, line, &repo), up_version);
    let index = run(
        Command::new("dpkg-scanpackages")
            .args(["-m", "."])
            .current_dir(&repo),
        "dpkg-scanpackages",
    );
    std::fs::write(repo.join("Packages"), &index).unwrap();
    std::fs::write(
        repo.join("Release"),
        format!(
            "Origin: ingot-test\nLabel: ingot-test\nDate: Thu, 01 Jan 2026 00:00:00 UTC\nSHA256:\n {} {} Packages\n",
            hex_sha256(index.as_bytes()),
            index.len()
        ),
    )
    .unwrap();

    let logs = t.path().join("logs");
    let _place = guests(1);
    let o = ingot(&[
        "boot-test",
        dir.to_str().unwrap(),
        "--boots=1",
        &format!("--logs={}", logs.display()),
    ]);
    let console: String = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
        .collect();
    let log = console
        .split_once("ON-DEVICE-BEGIN")
        .and_then(|(_, rest)| rest.split_once("ON-DEVICE-END"))
        .map(|(l, _)| l.to_string())
        .unwrap_or_else(|| panic!("no on-device log on the console:\n{console}"));
    ok(&o, &format!("boot-test (on-device log:\n{log})"));
    // dpkg says when it finds its database short of something (a missing file list, a
    // conffile it cannot account for); apt when the machine lacks its download user.
    for bad in [
        "dpkg: warning",
        "W: No sandbox user",
        "Configuration file '",
    ] {
        assert!(!log.contains(bad), "`{bad}` in:\n{log}");
    }
    for step in [
        "Setting up jq",
        "Setting up prometheus-node-exporter",
        "Purging configuration files for iproute2",
    ] {
        assert!(log.contains(step), "`{step}` missing from:\n{log}");
    }
    let served = server.served();
    for p in &added {
        assert!(
            served
                .iter()
                .any(|s| s.starts_with(&format!("./{}_", p.info.name))
                    || s.starts_with(&format!("{}_", p.info.name))),
            "{} not fetched by the guest: {served:?}",
            p.info.name
        );
    }
    assert!(
        served.iter().any(|s| s.ends_with("raised.deb")),
        "{served:?}"
    );
}
