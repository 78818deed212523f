//! The boot test as a library: boot image directories in QEMU a number of times each (in
//! parallel up to `jobs`), retry failed boots from the pristine image, judge each ready line
//! against the image's manifest, check that machine ids differ between boots, and return typed
//! results. The CLI only parses arguments, prints and writes the reports.

pub mod agent;
pub mod boot;
pub mod cloud;
pub mod console;
pub mod foreign;
pub mod matrix;
mod output;
pub mod report;
pub mod seed;
pub mod timeline;

pub use output::{check_outputs, distinct, log_dir, log_names, write_report};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::image_dir::{ImageDir, Manifest};
use crate::packages::{self, Source};
use crate::qemu::{self, VmSpec};
use console::{Failure, Ready};
use report::{BootCase, ImageResult, Report};

/// How long one boot may take before it fails when no timeout is given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a boot of the image `m` describes may take: `given`, else [`DEFAULT_TIMEOUT`] or,
/// when longer, its longest readiness probe's `probe_timeout` plus a minute for the boot
/// before the ready check starts. A slow agent then fails its probe and is named in the
/// ready line, rather than the boot being cut off with no line at all.
pub fn boot_timeout(given: Option<Duration>, m: Option<&Manifest>) -> Duration {
    timeout_for(given, m.and_then(Manifest::longest_probe))
}

/// [`boot_timeout`] for an image whose longest probe may take `probe` seconds.
fn timeout_for(given: Option<Duration>, probe: Option<u32>) -> Duration {
    let probe = probe.map_or(Duration::ZERO, |t| Duration::from_secs(u64::from(t) + 60));
    given.unwrap_or(DEFAULT_TIMEOUT.max(probe))
}

/// How to run a boot test.
#[derive(Debug, Clone)]
pub struct Options {
    /// Per-boot timeout; `None` for each image's own (see [`boot_timeout`]).
    pub timeout: Option<Duration>,
    /// Boots per image.
    pub boots: u32,
    /// Extra attempts for a failed boot.
    pub retries: u32,
    /// Images booting at once.
    pub jobs: usize,
    /// Where console logs go.
    pub log_dir: PathBuf,
    /// No progress output.
    pub quiet: bool,
    /// What the NoCloud seed of a cloud-init image holds besides the boot test's own login.
    pub seed: seed::SeedInput,
}

/// An SSH login into a foreign disk: after its ready pattern, or as its readiness.
#[derive(Debug, Clone, PartialEq)]
pub struct SshLogin {
    /// The account.
    pub user: String,
    /// A private key the image already trusts; without one, a NoCloud seed installs a
    /// throwaway key for `user` (the image must run cloud-init).
    pub key: Option<PathBuf>,
    /// Wait for cloud-init to report `done`.
    pub cloud_init: bool,
    /// Commands run over the login; each must exit 0.
    pub checks: Vec<String>,
}

/// The VM for an image directory: its hardware and firmware from the manifest (so a copied
/// directory boots without the project's files), the firmware fetched through `src`. The
/// caller has checked the QEMU binary (`qemu::require_binary`) before opening `src`, so that a
/// missing QEMU is named before anything is fetched or written.
pub fn vm_spec(image: &ImageDir, accel: Option<&str>, src: &Source) -> Result<VmSpec> {
    let hw = image.manifest.boot.hardware.clone();
    crate::qemu::serial_console(&hw)
        .map_err(|why| crate::base::BadInput(format!("{}: {why}", image.path.display())))?;
    let fw = &image.manifest.boot.firmware;
    let (code, vars) = packages::fetch_firmware(src, fw)
        .with_context(|| format!("firmware for {}", image.path.display()))?;
    // A hybrid disk boots under its BIOS too (every second boot).
    let bios = if hw.disk.bios {
        Some(foreign::seabios(src).with_context(|| format!("BIOS for {}", image.path.display()))?)
    } else {
        None
    };
    Ok(VmSpec {
        arch: hw.arch,
        accel: qemu::pick_accel(hw.arch, accel),
        hw,
        disk: image.disk(),
        disk_format: None,
        persistent: false,
        media: None,
        ssh_port: None,
        agent: None,
        code,
        vars,
        bios,
    })
}

/// What is wrong with a ready line, judged against the image's manifest: another image or
/// version, an agent whose probe failed, or a machine id that is not one.
pub fn judge_ready(r: &Ready, m: &Manifest) -> Option<String> {
    if r.image != m.image || r.version != m.version {
        Some(format!(
            "ready line reports {} {} but the manifest says \"{}\" \"{}\"",
            r.image, r.version, m.image, m.version
        ))
    } else if let Some((a, _)) = r.agents.iter().find(|(_, s)| s != "ok") {
        Some(format!("agent {a} failed its readiness probe"))
    } else if !r.failed.is_empty() {
        Some(format!(
            "service {} failed (the profile's `services` start it; its log is in the guest's journal)",
            r.failed.join(", ")
        ))
    } else if r.machine_id.len() != 32 {
        Some(format!(
            "machine id `{}` is not 32 hex digits",
            r.machine_id
        ))
    } else {
        None
    }
}

/// What a boot test boots: an Ingot image directory (ready means its INGOT-READY line, judged
/// against its manifest), or a disk another tool made (ready means a console line matching
/// the pattern).
#[derive(Debug, Clone)]
pub enum Target {
    /// An image directory.
    Image {
        /// The directory.
        dir: Box<ImageDir>,
        /// Commands run over the SSH login of a cloud-init image; each must exit 0.
        checks: Vec<String>,
    },
    /// A foreign disk file.
    Foreign {
        /// The file (never written: QEMU writes to a throwaway overlay).
        disk: PathBuf,
        /// The readiness pattern; without one, the SSH login is the readiness.
        ready: Option<regex::Regex>,
        /// The SSH login, when asked for.
        login: Option<SshLogin>,
    },
}

impl Target {
    /// An image directory, with no checks.
    pub fn image(dir: ImageDir) -> Self {
        Target::Image {
            dir: Box::new(dir),
            checks: Vec::new(),
        }
    }

    /// The directory or file.
    pub fn path(&self) -> &Path {
        match self {
            Target::Image { dir, .. } => &dir.path,
            Target::Foreign { disk, .. } => disk,
        }
    }

    /// What the boot waits for on the console.
    fn wait(&self) -> boot::Wait<'_> {
        match self {
            Target::Image { .. } => boot::Wait::IngotReady,
            Target::Foreign { ready: Some(p), .. } => boot::Wait::Pattern(p),
            Target::Foreign { ready: None, .. } => boot::Wait::Login,
        }
    }

    /// The foreign disk's login.
    fn login(&self) -> Option<&SshLogin> {
        match self {
            Target::Image { .. } => None,
            Target::Foreign { login, .. } => login.as_ref(),
        }
    }

    fn checks(&self) -> &[String] {
        match self {
            Target::Image { checks, .. } => checks,
            Target::Foreign { login, .. } => login.as_ref().map_or(&[], |l| &l.checks),
        }
    }

    /// What a cloud-init image needs at boot; for a foreign disk, what `--ssh` asks for: a
    /// seed unless the key is already in the image (or the user gave seed files anyway).
    fn cloud(&self, opts: &Options) -> cloud::Needs {
        match self {
            Target::Image { dir, .. } => cloud::Needs::of(&dir.manifest),
            Target::Foreign { login: None, .. } => cloud::Needs {
                seed: false,
                login: false,
                agent: false,
            },
            Target::Foreign { login: Some(l), .. } => cloud::Needs {
                seed: l.key.is_none()
                    || opts.seed.user_data.is_some()
                    || opts.seed.meta_data.is_some(),
                login: true,
                agent: false,
            },
        }
    }

    /// The image's manifest (a foreign disk has none).
    fn manifest(&self) -> Option<&Manifest> {
        match self {
            Target::Image { dir, .. } => Some(&dir.manifest),
            Target::Foreign { .. } => None,
        }
    }

    fn judge(&self, r: &Ready) -> Option<String> {
        match self {
            Target::Image { dir, .. } => judge_ready(r, &dir.manifest),
            Target::Foreign { .. } => None,
        }
    }
}

/// The result of a target that failed before its first boot (no seed, a disk a BIOS would
/// hang on): one failed boot, said once.
fn failed_before_boot(image: &Target, f: Failure, say: &(dyn Fn(String) + Sync)) -> ImageResult {
    let case = BootCase::new(1, 0.0, Some(f), None, None, Vec::new());
    say(format!(
        "{} boot 1: {}",
        image.path().display(),
        case.failure.clone().unwrap_or_default()
    ));
    ImageResult {
        image: image.path().to_path_buf(),
        boots: vec![case],
        machine_id_failure: None,
    }
}

/// Boot one target `opts.boots` times, retrying failed boots; `say` reports each result.
fn test_image(
    image: &Target,
    spec: &VmSpec,
    name: &str,
    opts: &Options,
    work: &Path,
    multi: &indicatif::MultiProgress,
    say: &(dyn Fn(String) + Sync),
) -> ImageResult {
    let live = crate::progress::live(opts.quiet);
    let dir = image.path().display();
    let mut cases = Vec::new();
    // A cloud-init image boots as a platform starts it: with a seed (and a login over SSH).
    let mut spec = spec.clone();
    let needs = image.cloud(opts);
    let foreign = image.login();
    let user = foreign.map_or(cloud::USER, |l| l.user.as_str());
    let made = if needs.seed {
        let image_name = match image {
            Target::Image { dir, .. } => dir.manifest.image.clone(),
            Target::Foreign { .. } => name.to_string(),
        };
        let seed_dir = work.join(format!("seed-{name}"));
        Some(
            std::fs::create_dir_all(&seed_dir)
                .map_err(anyhow::Error::from)
                .and_then(|()| seed::make_seed(&seed_dir, &opts.seed, &image_name, user)),
        )
    } else {
        foreign.and_then(|l| {
            l.key
                .as_deref()
                .map(|k| Ok(seed::with_key(k, user, l.cloud_init)))
        })
    };
    let seed = if let Some(made) = made {
        match made {
            Ok(mut s) => {
                spec.media = s.image.clone();
                if let Some(l) = foreign {
                    // A key the image already trusts wins over the seed's throwaway one.
                    if let Some(k) = &l.key {
                        s.key = k.clone();
                    }
                    s.cloud_init = l.cloud_init;
                }
                s.checks = image.checks().to_vec();
                Some(s)
            }
            Err(e) => {
                let f = Failure::Host {
                    message: format!("making the NoCloud seed: {e:#}"),
                };
                return failed_before_boot(image, f, say);
            }
        }
    } else {
        None
    };
    let login = seed.as_ref().filter(|_| needs.login);
    if needs.agent {
        // The longest name the boots below give a socket, checked before any boot.
        if let Err(e) = agent::socket_path(work, &agent::boot_socket_name(u32::MAX)) {
            let f = Failure::Host {
                message: format!("{e:#}"),
            };
            return failed_before_boot(image, f, say);
        }
    }
    if let Target::Foreign { .. } = image {
        // A disk a BIOS would hang on is named before any boot.
        let pre = match foreign::bios_preflight(&spec, work) {
            Ok(None) => None,
            Ok(Some(line)) => Some(Failure::BiosNothingBootable { line }),
            Err(e) => Some(Failure::Host {
                message: format!("{e:#}"),
            }),
        };
        if let Some(f) = pre {
            return failed_before_boot(image, f, say);
        }
    }
    // A hybrid disk boots under UEFI and under its BIOS in turn, at least once each.
    let hybrid = spec.under_bios();
    let boots = if hybrid.is_some() {
        opts.boots.max(2)
    } else {
        opts.boots
    };
    let uefi = spec.clone();
    let timeout = boot_timeout(opts.timeout, image.manifest());
    for n in 1..=boots {
        let firmware = hybrid.as_ref().map(|b| {
            let (name, s) = if n % 2 == 0 {
                ("bios", b)
            } else {
                ("uefi", &uefi)
            };
            spec.code = s.code.clone();
            spec.vars = s.vars.clone();
            name
        });
        // Failed attempts of this boot, kept when a retry follows.
        let mut earlier: Vec<BootCase> = Vec::new();
        let case = loop {
            let attempt = earlier.len() as u32 + 1;
            let log = opts.log_dir.join(match attempt {
                1 => format!("{name}.boot-{n}.console.log"),
                a => format!("{name}.boot-{n}.retry-{}.console.log", a - 1),
            });
            let pb = multi.add(crate::progress::spinner(
                &format!("{dir} boot {n}/{boots}"),
                live,
            ));
            if login.is_some() {
                spec.ssh_port = cloud::free_port().ok();
            }
            if needs.agent {
                // Its length was checked above, for the longest name.
                static BOOTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let k = BOOTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let sock = work.join(agent::boot_socket_name(k));
                let _ = std::fs::remove_file(&sock);
                spec.agent = Some(sock);
            }
            let out = boot::boot_once(&spec, timeout, &log, work, image.wait(), login);
            pb.finish_and_clear();
            let mut case = match out {
                Ok(o) => {
                    let cause = o.failure.clone().or_else(|| {
                        o.ready
                            .as_ref()
                            .and_then(|r| image.judge(r))
                            .map(|reason| Failure::Rejected { reason })
                    });
                    // systemd's account of the boot goes beside its console log.
                    if let Some(l) = o.login.as_ref().filter(|l| !l.analyze.is_empty()) {
                        let name = o.log.to_string_lossy().replace(".console.log", "");
                        let _ = std::fs::write(
                            format!("{name}.systemd-analyze.txt"),
                            format!("{}\n", l.analyze),
                        );
                    }
                    let mut c = BootCase::new(n, o.seconds, cause, o.ready, Some(o.log), o.tail);
                    c.login = o.login;
                    c.agent = o.agent;
                    c.firmware = firmware.map(str::to_string);
                    if let (boot::Wait::Pattern(p), Some(f)) = (image.wait(), c.failure.as_mut()) {
                        *f = f.replace(
                            "no INGOT-READY line",
                            &format!("no console line matching /{p}/"),
                        );
                    }
                    c
                }
                Err(e) => BootCase::new(
                    n,
                    0.0,
                    Some(Failure::Host {
                        message: format!("{e:#}"),
                    }),
                    None,
                    None,
                    Vec::new(),
                ),
            };
            let again = !case.ok && attempt <= opts.retries && !crate::interrupt::requested();
            let what = case.failure.clone().unwrap_or_else(|| "ready".into());
            let note = match (again, attempt) {
                (true, _) => format!(
                    " (attempt {attempt} of {}; booting again)",
                    opts.retries + 1
                ),
                (false, 1) => String::new(),
                (false, _) => format!(" (attempt {attempt} of {})", opts.retries + 1),
            };
            let login = case
                .login
                .as_ref()
                .map(|l| {
                    // A disk without cloud-init (or not asked about it) has no status to show.
                    let status = match l.cloud_init.as_str() {
                        "" => String::new(),
                        s => format!(", cloud-init {s}"),
                    };
                    format!(
                        "; logged in over SSH as {user} at {:.1}s (hostname {}{status})",
                        l.seconds, l.hostname
                    )
                })
                .unwrap_or_default();
            let agent = case
                .agent
                .as_ref()
                .map(|a| format!("; guest agent {} answered at {:.1}s", a.version, a.seconds))
                .unwrap_or_default();
            let degraded = case
                .ready
                .as_ref()
                .filter(|r| !r.degraded.is_empty())
                .map(|r| format!("; other failed units: {}", r.degraded.join(", ")))
                .unwrap_or_default();
            let login = login + &agent + &degraded;
            let under = firmware.map(|f| format!(" ({f})")).unwrap_or_default();
            say(format!(
                "{dir} boot {n}{under}: {what} in {:.1}s{login}{note}",
                case.seconds
            ));
            if again {
                earlier.push(case);
                continue;
            }
            case.flaky = case.ok && !earlier.is_empty();
            case.attempts = earlier;
            break case;
        };
        let failed = !case.ok;
        cases.push(case);
        if failed {
            break;
        }
    }
    let ids: Vec<&str> = cases
        .iter()
        .filter_map(|c| c.ready.as_ref().map(|r| r.machine_id.as_str()))
        .filter(|id| !id.is_empty())
        .collect();
    let machine_id_failure = ids.iter().enumerate().find_map(|(k, a)| {
        ids[..k].contains(a).then(|| {
            format!("two boots reported the same machine id {a}: identity was baked into the image")
        })
    });
    let keys: Vec<&str> = cases
        .iter()
        .filter_map(|c| c.login.as_ref().map(|l| l.host_key.as_str()))
        .collect();
    let host_key_failure = keys.iter().enumerate().find_map(|(k, a)| {
        keys[..k].contains(a).then(|| {
            format!("two boots presented the same SSH host key {a}: host keys were baked into the image")
        })
    });
    ImageResult {
        image: image.path().to_path_buf(),
        boots: cases,
        machine_id_failure: machine_id_failure.or(host_key_failure),
    }
}

/// Boot every image; progress goes to stderr (spinners on a terminal, lines otherwise).
pub fn run(images: &[(ImageDir, VmSpec)], opts: &Options) -> Result<Report> {
    let targets: Vec<(Target, VmSpec)> = images
        .iter()
        .map(|(i, s)| (Target::image(i.clone()), s.clone()))
        .collect();
    run_targets(&targets, opts)
}

/// Boot every target (image directories and foreign disks alike).
pub fn run_targets(images: &[(Target, VmSpec)], opts: &Options) -> Result<Report> {
    let paths: Vec<PathBuf> = images.iter().map(|(i, _)| i.path().to_path_buf()).collect();
    Ok(Report::new(run_named(images, &log_names(&paths), opts)?))
}

/// Boot every target, its console logs named after `names` (one per target, distinct); the
/// results in the targets' order.
pub fn run_named(
    images: &[(Target, VmSpec)],
    names: &[String],
    opts: &Options,
) -> Result<Vec<ImageResult>> {
    anyhow::ensure!(
        names.len() == images.len(),
        "{} log names for {} targets",
        names.len(),
        images.len()
    );
    // Per-boot scratch files (UEFI variable copies) live here, never in an image directory.
    let work = crate::base::fsx::scratch_dir("ingot-boot-test")?;
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    let live = crate::progress::live(opts.quiet);
    let multi = crate::progress::multi(live);
    let say = |line: String| {
        if live {
            let _ = multi.println(line);
        } else if !opts.quiet {
            eprintln!("{line}");
        }
    };
    std::thread::scope(|s| {
        for _ in 0..opts.jobs.max(1).min(images.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some((image, spec)) = images.get(i) else {
                    break;
                };
                let r = test_image(image, spec, &names[i], opts, work.path(), &multi, &say);
                if let Ok(mut g) = results.lock() {
                    g.push((i, r));
                }
            });
        }
    });
    let mut results = results
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a boot thread panicked"))?;
    results.sort_by_key(|(i, _)| *i);
    Ok(results.into_iter().map(|(_, r)| r).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_boot_waits_long_enough_for_the_images_slowest_probe_unless_told() {
        let s = Duration::from_secs;
        // No agents, or probes within the default: the default.
        assert_eq!(timeout_for(None, None), s(120));
        assert_eq!(timeout_for(None, Some(60)), s(120));
        // A probe that may take four minutes: the boot gets a minute more than that.
        assert_eq!(timeout_for(None, Some(240)), s(300));
        // What the user gives holds, shorter or longer.
        assert_eq!(timeout_for(Some(s(30)), Some(240)), s(30));
        assert_eq!(timeout_for(Some(s(900)), None), s(900));
    }
}
