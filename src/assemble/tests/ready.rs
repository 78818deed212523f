//! The check-in script: its agents and probes, the failed units it names, and shellcheck.

use super::*;

fn identity(name: &str) -> Identity {
    Identity {
        name: name.into(),
        version: "1.0.0".into(),
        arch: "x86_64".into(),
        epoch: 0,
    }
}

/// An executable `systemctl` in `bin` whose body is `script` (sh).
fn fake_systemctl(bin: &std::path::Path, script: &str) {
    let fake = bin.join("systemctl");
    std::fs::write(&fake, format!("#!/bin/sh\n{script}")).unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

/// Run the ready script `s` in `dir` with `bin` first on the PATH it sets itself; its status,
/// standard error and console line.
fn run_ready(s: &str, bin: &std::path::Path, dir: &std::path::Path) -> (bool, String, String) {
    let s = s.replacen(
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin\n",
        &format!("PATH={}:/usr/bin:/bin\n", bin.display()),
        1,
    );
    let script = dir.join("ready");
    std::fs::write(&script, &s).unwrap();
    let console = dir.join("console");
    let out = std::process::Command::new("sh")
        .arg(&script)
        .env("INGOT_READY_DIR", dir.join("probes"))
        .env("INGOT_CONSOLE", &console)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        std::fs::read_to_string(&console).unwrap_or_default(),
    )
}

#[test]
fn ready_script_lists_agents_and_quotes_probes() {
    let id = identity("edge");
    let t = tempfile::tempdir().unwrap();
    let flag = t.path().join("late flag");
    let agent = |name: &str, probe: String, timeout: u32| Agent {
        name: name.into(),
        packages: vec![],
        files: vec![],
        service: None,
        probe,
        probe_timeout: timeout,
    };
    // The order given, not name order; a probe with quotes in it; one that passes late,
    // one that never does.
    let agents = [
        agent("zeta", format!("test -e '{}'", flag.display()), 5),
        agent("never", "false".into(), 1),
        agent("alpha", "true".into(), 5),
    ];
    let s = ready_script(&id, &agents, false, None);
    assert!(s.contains("probe 5 'test -e '\\''"), "{s}");
    let script = t.path().join("ready");
    std::fs::write(&script, &s).unwrap();
    let console = t.path().join("console");
    let mut child = std::process::Command::new("sh")
        .arg(&script)
        .env("INGOT_READY_DIR", t.path().join("probes"))
        .env("INGOT_CONSOLE", &console)
        .spawn()
        .unwrap();
    // Late enough for the slower polls that follow the first half second.
    std::thread::sleep(std::time::Duration::from_millis(800));
    std::fs::write(&flag, "").unwrap();
    assert!(child.wait().unwrap().success());
    let line = std::fs::read_to_string(&console).unwrap();
    assert!(
        line.starts_with("INGOT-READY image=edge version=1.0.0 machine-id=")
            && line.contains(" agents=zeta:ok,never:fail,alpha:ok uptime="),
        "{line}"
    );
    assert!(
        !t.path().join("probes").exists(),
        "probe results left behind"
    );
}

#[test]
fn ready_line_of_a_systemd_image_names_its_failed_units() {
    let id = identity("vm");
    let t = tempfile::tempdir().unwrap();
    // A systemctl that reports these units failed, as `list-units --plain --no-legend` does.
    let bin = t.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let run_restarts = |failed_units: &str, restarts: &str, services: &[String], ab: bool| {
        fake_systemctl(
            &bin,
            &format!(
                "case $1 in\n  show) printf '%s' '{restarts}' ;;\n  *) printf '%s' '{failed_units}' ;;\nesac\n"
            ),
        );
        let s = ready_script(&id, &[], ab, Some(services));
        let (ok, err, line) = run_ready(&s, &bin, t.path());
        assert!(ok, "{err}");
        (s, line)
    };
    let run = |failed_units: &str, services: &[String], ab: bool| {
        run_restarts(failed_units, "", services, ab)
    };
    let services = ["chrony.service".to_string(), "nginx.service".to_string()];
    let (_, line) = run(
        "nginx.service loaded failed failed A web server\nsystemd-x\\x2dy.service loaded failed failed X\nchrony.service loaded failed failed NTP\n",
        &services,
        false,
    );
    assert!(
        line.trim_end()
            .ends_with(" failed=nginx.service,chrony.service degraded=systemd-x\\x2dy.service"),
        "{line}"
    );
    let r = crate::boottest::console::parse_ready(&line).unwrap();
    assert_eq!(r.failed, ["nginx.service", "chrony.service"]);
    assert_eq!(r.degraded, ["systemd-x\\x2dy.service"]);
    // Nothing failed: neither field. A unit whose name merely contains a wanted one is not it.
    let (_, line) = run("", &services, false);
    assert!(
        !line.contains("failed=") && !line.contains("degraded="),
        "{line}"
    );
    let (_, line) = run("x-nginx.service loaded failed failed X\n", &services, false);
    assert!(
        line.trim_end().ends_with(" degraded=x-nginx.service"),
        "{line}"
    );
    // A service of the profile's that systemd restarted counts as failed though it is not
    // listed failed (memcached without its account, between two starts); one listed failed
    // too is named once; restarts of other units and a missing count do not count.
    let (_, line) = run_restarts(
        "nginx.service loaded failed failed A web server\n",
        "NRestarts=3\nId=chrony.service\n\nId=nginx.service\nNRestarts=1\n\nNRestarts=0\nId=x.service\n",
        &services,
        false,
    );
    assert!(
        line.trim_end()
            .ends_with(" failed=nginx.service,chrony.service"),
        "{line}"
    );
    let (_, line) = run_restarts(
        "",
        "Id=chrony.service\nNRestarts=0\n\nId=nginx.service\n",
        &services,
        false,
    );
    assert!(!line.contains("failed="), "{line}");
    // On an A/B disk a failed service makes the boot bad, like a failed probe.
    let (s, _) = run("", &services, true);
    assert!(s.contains("[ -z \"$failed\" ] || verdict=fail\n"), "{s}");
}

/// A probe's timeout is seconds of the machine's clock, the probe's own run time included: one
/// that takes a second to fail must not stretch a 2 s wait to the 16 polls the loop makes (the
/// polls used to be counted, so a 120 s timeout of a slow probe waited over 6 minutes). A systemd
/// unit the agent names that has failed ends its wait early; a busybox image's service (a
/// command) is never given to systemctl.
#[test]
fn probe_timeouts_are_wall_clock_and_a_failed_unit_ends_the_wait() {
    use std::time::{Duration, Instant};
    let id = identity("vm");
    let t = tempfile::tempdir().unwrap();
    let bin = t.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let calls = t.path().join("calls");
    // systemctl: `is-failed` answers yes for db.service only and records what it was asked.
    fake_systemctl(
        &bin,
        &format!(
            "case $1 in\n  is-failed) echo \"$*\" >> '{}'; [ \"$3\" = db.service ] ;;\n  *) : ;;\nesac\n",
            calls.display()
        ),
    );
    let agent = |name: &str, service: Option<&str>, probe: &str, timeout: u32| Agent {
        name: name.into(),
        packages: vec![],
        files: vec![],
        service: service.map(Into::into),
        probe: probe.into(),
        probe_timeout: timeout,
    };
    let run = |agents: &[Agent], units: Option<&[String]>| {
        let s = ready_script(&id, agents, false, units);
        let started = Instant::now();
        let (ok, err, line) = run_ready(&s, &bin, t.path());
        assert!(ok, "{err}");
        (started.elapsed(), line)
    };
    // A slow failing probe, 2 s allowed: done after about 3 s (the last poll may begin just
    // before the end), not after 16 one-second polls.
    let (took, line) = run(&[agent("slow", None, "sleep 1; false", 2)], None);
    assert!(line.contains(" agents=slow:fail "), "{line}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(8),
        "a 2 s probe timeout took {took:?}"
    );
    // A failed unit ends a 60 s wait within about a second; a unit that has not failed, and a
    // busybox image's command, leave the probe to its own result.
    let units = ["db.service".to_string()];
    let (took, line) = run(
        &[
            agent("db", Some("db.service"), "false", 60),
            agent("web", Some("web.service"), "true", 60),
        ],
        Some(&units),
    );
    assert!(line.contains(" agents=db:fail,web:ok "), "{line}");
    assert!(took < Duration::from_secs(20), "failed unit: took {took:?}");
    let asked = std::fs::read_to_string(&calls).unwrap();
    assert!(
        asked.lines().all(|l| l == "is-failed --quiet db.service"),
        "{asked}"
    );
    std::fs::remove_file(&calls).unwrap();
    let (took, line) = run(&[agent("cmd", Some("db.service"), "false", 2)], None);
    assert!(line.contains(" agents=cmd:fail "), "{line}");
    assert!(took >= Duration::from_secs(2), "busybox: took {took:?}");
    assert!(
        !calls.exists(),
        "a busybox image's service went to systemctl"
    );
}

/// The ready check runs on every device: each form of it passes shellcheck like the updater.
#[test]
fn ready_scripts_pass_shellcheck() {
    let id = identity("vm");
    let agents = [Agent {
        name: "a".into(),
        packages: vec![],
        files: vec![],
        service: Some("a.service".into()),
        probe: "test -e '/run/a b'".into(),
        probe_timeout: 5,
    }];
    let services = ["ssh.service".to_string()];
    let t = tempfile::tempdir().unwrap();
    for (n, (ab, units)) in [
        (false, None),
        (true, None),
        (false, Some(&services[..])),
        (true, Some(&services[..])),
        (false, Some(&[][..])),
    ]
    .into_iter()
    .enumerate()
    {
        let p = t.path().join(format!("ready-{n}"));
        std::fs::write(&p, ready_script(&id, &agents, ab, units)).unwrap();
        let o = std::process::Command::new("shellcheck")
            .args(["-s", "sh", "-S", "style"])
            .arg(&p)
            .output()
            .expect("shellcheck (Debian package shellcheck; .ci/host-deps installs it)");
        assert!(
            o.status.success(),
            "ab={ab} units={units:?}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
}
