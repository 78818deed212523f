//! `boot-test` and `run`: the flags, the image directories, foreign disks and matrix cells
//! turned into VMs, the boot test run, and its reports printed and written.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};

use super::{source, SourceOpts};
use crate::base::fsx;
use crate::boottest::{self, report::Report};
use crate::image_dir::ImageDir;

/// Flags of `boot-test`.
pub struct BootFlags {
    /// Seconds per boot (else each image's own: `boottest::boot_timeout`).
    pub timeout: Option<u64>,
    /// Boots per image.
    pub boots: u32,
    /// Extra attempts.
    pub retries: u32,
    /// Reports and console logs.
    pub out: super::report::TestOutputs,
    /// Forced accelerator.
    pub accel: Option<String>,
    /// Where to attach the signed reports.
    pub attach: super::registry::AttachOpts,
    /// Foreign disks.
    pub foreign: ForeignOpts,
    /// The NoCloud seed.
    pub seed: SeedOpts,
}

/// What the NoCloud seed of a cloud-init image holds. Without these a seed of the boot test's
/// own is attached (an instance id, the hostname `ingot-IMAGE`); either way the seed adds an
/// account `ingot-test` with a throwaway SSH key, and the test logs in with it.
#[derive(Debug, Clone, clap::Args)]
pub struct SeedOpts {
    /// cloud-init user-data for the seed (the test's own account is merged in after it).
    #[arg(long, value_name = "FILE")]
    pub user_data: Option<PathBuf>,
    /// NoCloud meta-data for the seed (`instance-id`, `local-hostname`).
    #[arg(long, value_name = "FILE")]
    pub meta_data: Option<PathBuf>,
    /// Network configuration for the seed.
    #[arg(long, value_name = "FILE")]
    pub network_config: Option<PathBuf>,
    /// A shell command to run over SSH after the login (repeatable); the boot fails, naming
    /// it, unless it exits 0.
    #[arg(long = "check", value_name = "CMD")]
    pub checks: Vec<String>,
}

impl SeedOpts {
    /// The seed's inputs, for the library.
    fn input(&self) -> boottest::seed::SeedInput {
        boottest::seed::SeedInput {
            user_data: self.user_data.clone(),
            meta_data: self.meta_data.clone(),
            network_config: self.network_config.clone(),
        }
    }

    /// A seed is only read by cloud-init: given for an image without it, the user's seed
    /// would be ignored while the boot passes, so it is refused (exit 2).
    fn only_for_cloud_init(&self, dir: &ImageDir) -> Result<()> {
        let given = [
            ("--user-data", &self.user_data),
            ("--meta-data", &self.meta_data),
            ("--network-config", &self.network_config),
        ];
        match given.iter().find(|(_, p)| p.is_some()) {
            Some((flag, _)) if !boottest::cloud::Needs::of(&dir.manifest).seed => {
                Err(crate::base::BadInput(format!(
                    "{flag}: {} has no cloud-init to read a NoCloud seed; the seed would be ignored",
                    dir.path.display()
                ))
                .into())
            }
            _ => Ok(()),
        }
    }
}

/// Disks another tool made, for `boot-test --disk`.
#[derive(Debug, Clone, clap::Args)]
pub struct ForeignOpts {
    /// A disk image Ingot did not build (raw, qcow2, vmdk, vhd, vhdx); repeatable. It is
    /// never written: QEMU writes to a throwaway overlay.
    #[arg(long = "disk", value_name = "FILE", requires = "arch")]
    pub disks: Vec<PathBuf>,
    /// The foreign disks' architecture (x86_64 or aarch64).
    #[arg(long, value_parser = ["x86_64", "aarch64"])]
    pub arch: Option<String>,
    /// The foreign disks' format (default: what `qemu-img info` says).
    #[arg(long, value_parser = ["raw", "qcow2", "vmdk", "vhd", "vhdx"])]
    pub format: Option<String>,
    /// Log in to the foreign disks over SSH as USER (through a port QEMU forwards from
    /// 127.0.0.1): after the --ready line, or without --ready as the readiness itself. A
    /// NoCloud seed installs a throwaway key for USER (the disk must run cloud-init), or
    /// --ssh-key names a key the disk trusts. --check runs over this login.
    #[arg(long, value_name = "USER", requires = "disks")]
    pub ssh: Option<String>,
    /// A private key the foreign disk already trusts for the --ssh user: no seed is made
    /// (unless --user-data or --meta-data are given).
    #[arg(long, value_name = "FILE", requires = "ssh")]
    pub ssh_key: Option<PathBuf>,
    /// With --ssh: wait for `cloud-init status --wait` to report done, and require the host key
    /// the guest presents to be one cloud-init printed on the console.
    #[arg(long, requires = "ssh")]
    pub cloud_init: bool,
    /// The firmware the foreign disks boot with: UEFI (OVMF/AAVMF) or, on x86_64, BIOS
    /// (SeaBIOS), both from the Debian archive.
    #[arg(long, value_parser = ["uefi", "bios"], default_value = "uefi", requires = "disks")]
    pub firmware: String,
    /// Regular expression a console line of a foreign disk's boot must match to count as
    /// ready (a login prompt, a service's banner). Give it, --ssh, or both.
    #[arg(long, value_name = "REGEX", requires = "disks")]
    pub ready: Option<String>,
    /// A TOML file of cells (image directories and disks × arch × firmware × readiness ×
    /// checks) to boot as one
    /// run, with one JUnit file and one JSON summary; see the README.
    #[arg(long, value_name = "FILE", conflicts_with = "disks")]
    pub matrix: Option<PathBuf>,
}

/// `boot-test DIR...`.
pub fn boot_test(images: &[PathBuf], f: BootFlags, so: &SourceOpts, quiet: bool) -> Result<()> {
    f.out.check()?;
    if !f.foreign.disks.is_empty() && f.attach.attach.is_some() {
        return Err(crate::base::BadInput(
            "--attach: only Ingot image directories carry a signed manifest to attach reports to; drop it for --disk".into(),
        )
        .into());
    }
    for (flag, p) in [
        ("--user-data", &f.seed.user_data),
        ("--meta-data", &f.seed.meta_data),
        ("--network-config", &f.seed.network_config),
    ] {
        if let Some(p) = p.as_ref().filter(|p| !p.is_file()) {
            return Err(crate::base::BadInput(format!(
                "{flag} {}: not a readable file",
                p.display()
            ))
            .into());
        }
    }
    // Read now, so a user-data that does not unpack stops the run before any boot.
    boottest::seed::check_inputs(&f.seed.input())
        .map_err(|e| crate::base::BadInput(format!("{e:#}")))?;
    let attach = f.attach.prepare()?;
    let mut specs = Vec::new();
    let mut dirs = Vec::new();
    // An image directory's checks run over the login its cloud-init and OpenSSH give it.
    let image_target = |dir: ImageDir, checks: Vec<String>| -> Result<boottest::Target> {
        if !checks.is_empty() && !boottest::cloud::Needs::of(&dir.manifest).login {
            return Err(crate::base::BadInput(format!(
                "--check runs over the SSH login the boot test makes through cloud-init, but {} has no cloud-init and OpenSSH",
                dir.path.display()
            ))
            .into());
        }
        Ok(boottest::Target::Image {
            dir: Box::new(dir),
            checks,
        })
    };
    for i in images {
        let dir = ImageDir::open(i)?;
        f.seed.only_for_cloud_init(&dir)?;
        crate::qemu::require_binary(dir.manifest.boot.hardware.arch)?;
        let src = source(so, &dir.manifest.boot.firmware.suite, quiet)?;
        let spec = boottest::vm_spec(&dir, f.accel.as_deref(), &src)?;
        dirs.push(dir.clone());
        specs.push((image_target(dir, f.seed.checks.clone())?, spec));
    }
    if !f.seed.checks.is_empty() {
        if f.foreign.matrix.is_some() && images.is_empty() {
            return Err(crate::base::BadInput(
                "--check: a matrix's cells name their own `checks`; --check is for the image directories and disks on the command line".into(),
            )
            .into());
        }
        if !f.foreign.disks.is_empty() && f.foreign.ssh.is_none() {
            return Err(crate::base::BadInput(
                "--check runs over an SSH login: give --ssh USER (and --ssh-key FILE when the disk does not run cloud-init)".into(),
            )
            .into());
        }
    }
    if !f.foreign.disks.is_empty() && f.foreign.ready.is_none() && f.foreign.ssh.is_none() {
        return Err(crate::base::BadInput(
            "--disk: say when the disk is ready with --ready REGEX (a console line), --ssh USER (a login), or both".into(),
        )
        .into());
    }
    if let Some(u) = f
        .foreign
        .ssh
        .as_ref()
        .filter(|u| !boottest::cloud::valid_user(u))
    {
        return Err(crate::base::BadInput(format!(
            "--ssh {u}: not a user name (lowercase letters, digits, `_`, `-`)"
        ))
        .into());
    }
    if let Some(k) = f.foreign.ssh_key.as_ref().filter(|k| !k.is_file()) {
        return Err(crate::base::BadInput(format!(
            "--ssh-key {}: not a readable file",
            k.display()
        ))
        .into());
    }
    let matrix = f
        .foreign
        .matrix
        .as_deref()
        .map(boottest::matrix::load)
        .transpose()?;
    let scratch = crate::base::fsx::scratch_dir("ingot-foreign")?;
    // Log names: the command line's targets by their file names, the cells by theirs.
    let mut names = boottest::log_names(
        &specs
            .iter()
            .map(|(t, _)| t.path().to_path_buf())
            .collect::<Vec<_>>(),
    );
    for c in matrix.iter().flat_map(|m| &m.cells) {
        match &c.what {
            boottest::matrix::What::Image { dir, checks } => {
                let dir = ImageDir::open(dir)?;
                crate::qemu::require_binary(dir.manifest.boot.hardware.arch)?;
                let src = source(so, &dir.manifest.boot.firmware.suite, quiet)?;
                let spec = boottest::vm_spec(&dir, f.accel.as_deref(), &src)?;
                dirs.push(dir.clone());
                let t = image_target(dir, checks.clone())
                    .map_err(|e| anyhow::anyhow!("matrix cell `{}`: {e:#}", c.name))?;
                specs.push((t, spec));
            }
            boottest::matrix::What::Disk {
                disk,
                arch,
                format,
                firmware,
                ready,
                login,
            } => {
                crate::qemu::require_binary(*arch)?;
                let src = source(so, "", quiet)?;
                let spec = boottest::foreign::vm_spec(
                    disk,
                    *arch,
                    *firmware,
                    format.as_deref(),
                    f.accel.as_deref(),
                    &src,
                    scratch.path(),
                )?;
                let ready = ready
                    .as_deref()
                    .map(regex::Regex::new)
                    .transpose()
                    .map_err(|e| crate::base::BadInput(format!("ready: {e}")))?;
                specs.push((
                    boottest::Target::Foreign {
                        disk: disk.clone(),
                        ready,
                        login: login.clone(),
                    },
                    spec,
                ));
            }
        }
        names.push(c.name.clone());
    }
    let names = boottest::distinct(names);
    if let Some(arch) = &f.foreign.arch {
        let arch: crate::config::Arch = match arch.as_str() {
            "aarch64" => crate::config::Arch::Aarch64,
            _ => crate::config::Arch::X86_64,
        };
        let pattern = f
            .foreign
            .ready
            .as_deref()
            .map(|r| {
                regex::Regex::new(r).map_err(|e| crate::base::BadInput(format!("--ready {r}: {e}")))
            })
            .transpose()?;
        let firmware = boottest::foreign::Firmware::parse(&f.foreign.firmware, arch)?;
        crate::qemu::require_binary(arch)?;
        let src = source(so, "", quiet)?;
        for d in &f.foreign.disks {
            let spec = boottest::foreign::vm_spec(
                d,
                arch,
                firmware,
                f.foreign.format.as_deref(),
                f.accel.as_deref(),
                &src,
                scratch.path(),
            )?;
            specs.push((
                boottest::Target::Foreign {
                    disk: d.clone(),
                    ready: pattern.clone(),
                    login: f.foreign.ssh.clone().map(|user| boottest::SshLogin {
                        user,
                        key: f.foreign.ssh_key.clone(),
                        cloud_init: f.foreign.cloud_init,
                        checks: f.seed.checks.clone(),
                    }),
                },
                spec,
            ));
        }
    }
    let log_dir = f.out.log_dir()?;
    let opts = boottest::Options {
        timeout: f.timeout.map(Duration::from_secs),
        boots: matrix.as_ref().and_then(|m| m.boots).unwrap_or(f.boots),
        retries: f.retries,
        jobs: so.jobs.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        }),
        log_dir: log_dir.clone(),
        quiet,
        seed: f.seed.input(),
    };
    let (report, json) = if let Some(m) = &matrix {
        // Each cell's result is named after the cell (JUnit testcases, summary), in the
        // file's order; the command line's image directories keep their paths. (--disk
        // conflicts with --matrix: the cells are the last targets.)
        let all = boottest::run_named(&specs, &names, &opts)?;
        let first = specs.len() - m.cells.len();
        let mut cells = Vec::new();
        let mut named = Vec::new();
        for (k, mut r) in all.into_iter().enumerate() {
            if let Some(c) = k.checked_sub(first).and_then(|j| m.cells.get(j)) {
                cells.push(boottest::matrix::summarize(&c.name, &r));
                r.image = PathBuf::from(&c.name);
            }
            named.push(r);
        }
        let report = Report::new(named);
        for c in &cells {
            println!(
                "{:<30} {:<6} {}",
                c.name,
                if c.passed { "ready" } else { "FAILED" },
                match (c.time_to_ready, &c.failure) {
                    (_, Some(f)) => f.clone(),
                    (Some(t), None) => format!("{t:.1} s to ready (median)"),
                    (None, None) => String::new(),
                }
            );
        }
        let v = serde_json::json!({"passed": report.passed, "cells": cells, "report": report});
        (report, serde_json::to_string_pretty(&v)?)
    } else {
        let report = boottest::run_targets(&specs, &opts)?;
        let json = serde_json::to_string_pretty(&report)?;
        (report, json)
    };
    f.out
        .write(&json, &boottest::report::junit_xml(&report.images), || {
            Ok(crate::report::Inputs {
                images: dirs.clone(),
                boot_reports: vec![("this run".into(), report.clone())],
                ..Default::default()
            })
        })?;
    print_failures(&report);
    if let Some(a) = &attach {
        let per: Vec<_> = report
            .images
            .iter()
            .map(|r| {
                let one = Report::new(vec![r.clone()]);
                (
                    r.image.clone(),
                    one.passed,
                    serde_json::to_value(&one).unwrap_or_default(),
                )
            })
            .collect();
        a.reports(crate::registry::evidence::Kind::BootReport, &per, quiet)?;
    }
    f.out.announce(&log_dir, quiet);
    if !report.passed {
        crate::interrupt::check()?;
        bail!("boot test failed");
    }
    println!(
        "boot test passed: {} image(s), {} boot(s) each{}",
        report.images.len(),
        f.boots,
        match report.flaky() {
            0 => String::new(),
            n => format!("; {n} boot(s) passed only on a retry (flaky)"),
        }
    );
    Ok(())
}

/// FLAKY and FAIL lines, with each failed boot's console tail.
fn print_failures(report: &Report) {
    for r in &report.images {
        let img = r.image.display();
        for c in &r.boots {
            if c.flaky {
                eprintln!(
                    "FLAKY {img} boot {}: passed on attempt {} after:",
                    c.boot,
                    c.attempts.len() + 1
                );
            } else if !c.attempts.is_empty() {
                eprintln!("FAIL {img} boot {}: every attempt failed:", c.boot);
            }
            for (k, a) in c.attempts.iter().enumerate() {
                eprintln!(
                    "  attempt {}: {} (console: {})",
                    k + 1,
                    a.failure.as_deref().unwrap_or(""),
                    a.console_log
                        .as_deref()
                        .map_or("none".to_string(), |p| p.display().to_string())
                );
            }
            if let Some(f) = &c.failure {
                eprintln!("FAIL {img} boot {}: {f}", c.boot);
                for l in &c.tail {
                    eprintln!("  | {l}");
                }
            }
        }
        if let Some(f) = &r.machine_id_failure {
            eprintln!("FAIL {img}: {f}");
        }
    }
}

/// `run DIR`: an interactive boot.
pub fn run_interactive(
    image: &Path,
    accel: Option<&str>,
    so: &SourceOpts,
    seed: &SeedOpts,
    bios: bool,
    quiet: bool,
) -> Result<()> {
    if !seed.checks.is_empty() {
        return Err(crate::base::BadInput(
            "--check is for boot-test; in `run` you are at the console yourself".into(),
        )
        .into());
    }
    boottest::seed::check_inputs(&seed.input())
        .map_err(|e| crate::base::BadInput(format!("{e:#}")))?;
    let dir = ImageDir::open(image)?;
    seed.only_for_cloud_init(&dir)?;
    crate::qemu::require_binary(dir.manifest.boot.hardware.arch)?;
    let src = source(so, &dir.manifest.boot.firmware.suite, quiet)?;
    let mut spec = boottest::vm_spec(&dir, accel, &src)?;
    if bios {
        spec = spec.under_bios().ok_or_else(|| {
            crate::base::BadInput(format!(
                "--bios: {} is not a hybrid disk (its hardware profile has no disk.bios = true)",
                image.display()
            ))
        })?;
    }
    let work = fsx::scratch_dir("ingot-run")?;
    // A cloud-init image starts as a platform would start it: with a NoCloud seed, and SSH
    // forwarded from a free loopback port for the seed's throwaway key.
    let needs = boottest::cloud::Needs::of(&dir.manifest);
    if needs.seed {
        let s = boottest::seed::make_seed(
            work.path(),
            &seed.input(),
            &dir.manifest.image,
            boottest::cloud::USER,
        )?;
        spec.media = s.image.clone();
        if needs.login {
            let port = boottest::cloud::free_port()?;
            spec.ssh_port = Some(port);
            eprintln!(
                "log in once cloud-init is done: ssh -i {} -p {port} -o UserKnownHostsFile=/dev/null {}@127.0.0.1",
                s.key.display(),
                boottest::cloud::USER
            );
        }
    }
    if needs.agent {
        let sock = boottest::agent::socket_path(work.path(), "qga.sock")?;
        eprintln!(
            "QEMU guest agent: socat - UNIX-CONNECT:{} (then {{\"execute\":\"guest-info\"}})",
            sock.display()
        );
        spec.agent = Some(sock);
    }
    let code = crate::qemu::run_interactive(&spec, work.path())?;
    if code != 0 {
        bail!("QEMU exited with status {code}");
    }
    Ok(())
}
