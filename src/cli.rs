//! Command-line interface: one function per subcommand over the library's stages.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use serde_json::json;

use crate::config::{self, ConfigError};
use crate::packages::{self, Lockfile, Source};
use crate::trust::minisign;
use crate::{build, qemu};

/// Bake golden disk images from Debian packages: rootless, reproducible, signed, boot-tested.
#[derive(Debug, Parser)]
#[command(
    name = "ingot",
    version,
    after_help = "Example:\n  ingot build profiles/edge-minimal.toml --hardware hardware/qemu-x86_64.toml\n  ingot boot-test out/edge-minimal-1.0.0-x86_64"
)]
pub struct Cli {
    /// Print only errors.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Subcommand.
    #[command(subcommand)]
    pub command: Cmd,
}

/// Options shared by the commands that fetch packages.
#[derive(Debug, clap::Args, Clone)]
pub struct SourceOpts {
    /// Debian mirror (default: INGOT_MIRROR, then the host's apt sources); file:// works offline.
    #[arg(long, env = "INGOT_MIRROR")]
    pub mirror: Option<String>,
    /// OpenPGP keyring for InRelease (default: Debian's archive keyring).
    #[arg(long)]
    pub keyring: Option<PathBuf>,
    /// Package cache (default: INGOT_CACHE or $XDG_CACHE_HOME/ingot).
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Parallel downloads.
    #[arg(long, short, default_value_t = 4)]
    pub jobs: usize,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Build one image per hardware profile into OUT/<name>-<version>-<arch>/.
    #[command(
        after_help = "Example:\n  ingot build profiles/vm-base.toml --hardware hardware/qemu-x86_64.toml --hardware hardware/qemu-aarch64.toml --key ingot.key"
    )]
    Build {
        /// Image profile.
        profile: PathBuf,
        /// Hardware profile(s).
        #[arg(long = "hardware", default_value = "hardware/qemu-x86_64.toml")]
        hardware: Vec<PathBuf>,
        /// Output directory.
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// Sign with this secret key.
        #[arg(long)]
        key: Option<PathBuf>,
        /// Use PROFILE.lock exactly; fail if the profile changed since.
        #[arg(long)]
        locked: bool,
        /// Build twice and report the first difference.
        #[arg(long)]
        check_reproducible: bool,
        /// Print one JSON document on stdout (images, artifacts with SHA-256 and size, data
        /// bytes, seconds) instead of the image directories; logs stay on stderr.
        #[arg(long)]
        json: bool,
        /// Package source options.
        #[command(flatten)]
        source: SourceOpts,
    },
    /// Boot image directories in QEMU and check the INGOT-READY line.
    #[command(
        name = "boot-test",
        after_help = "Example:\n  ingot boot-test out/edge-minimal-1.0.0-x86_64 out/edge-minimal-1.0.0-aarch64 --junit report.xml"
    )]
    BootTest {
        /// Image directories.
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Seconds to wait for each boot.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        /// Boots per image (machine ids must differ).
        #[arg(long, default_value_t = 2)]
        boots: u32,
        /// Boot a failed boot again, up to N more times, from the pristine image. A boot that
        /// passes only on a retry counts as passed but is reported as flaky (JUnit
        /// `flakyFailure`, JSON `attempts`), with each failed attempt's console log kept.
        #[arg(long, default_value_t = 0)]
        retries: u32,
        /// JUnit XML report.
        #[arg(long)]
        junit: Option<PathBuf>,
        /// JSON report.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Directory for each boot's console log, IMAGE.boot-N.console.log (default: beside the
        /// --json or else the --junit report; without either, a new directory under the system's
        /// temporary directory, printed at the end). The image directories are never written.
        #[arg(long)]
        logs: Option<PathBuf>,
        /// Force `kvm` or `tcg`.
        #[arg(long)]
        accel: Option<String>,
        /// Package source options (firmware comes from the Debian archive); `--jobs` is also
        /// how many images boot at once.
        #[command(flatten)]
        source: SourceOpts,
    },
    /// Boot an image interactively on the serial console (Ctrl-A X quits).
    #[command(after_help = "Example:\n  ingot run out/edge-minimal-1.0.0-x86_64")]
    Run {
        /// Image directory.
        image: PathBuf,
        /// Force `kvm` or `tcg`.
        #[arg(long)]
        accel: Option<String>,
        /// Package source options.
        #[command(flatten)]
        source: SourceOpts,
    },
    /// Resolve and pin every package into PROFILE.lock.
    #[command(
        after_help = "Example:\n  ingot lock profiles/vm-base.toml --hardware hardware/qemu-x86_64.toml --hardware hardware/qemu-aarch64.toml"
    )]
    Lock {
        /// Image profile.
        profile: PathBuf,
        /// Hardware profile(s).
        #[arg(long = "hardware", default_value = "hardware/qemu-x86_64.toml")]
        hardware: Vec<PathBuf>,
        /// Package source options.
        #[command(flatten)]
        source: SourceOpts,
    },
    /// Fill the package cache for later offline builds.
    #[command(
        after_help = "Example:\n  ingot fetch profiles/edge-minimal.toml --hardware hardware/qemu-aarch64.toml"
    )]
    Fetch {
        /// Image profile.
        profile: PathBuf,
        /// Hardware profile(s).
        #[arg(long = "hardware", default_value = "hardware/qemu-x86_64.toml")]
        hardware: Vec<PathBuf>,
        /// Use PROFILE.lock.
        #[arg(long)]
        locked: bool,
        /// Package source options.
        #[command(flatten)]
        source: SourceOpts,
    },
    /// Make an ed25519 key pair (PREFIX.key mode 0600, PREFIX.pub).
    #[command(after_help = "Example:\n  ingot keygen --out release")]
    Keygen {
        /// Path prefix.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign an existing image directory's manifest.
    #[command(after_help = "Example:\n  ingot sign out/vm-base-1.0.0-x86_64 --key release.key")]
    Sign {
        /// Image directory.
        image: PathBuf,
        /// Secret key.
        #[arg(long)]
        key: PathBuf,
    },
    /// Check the signature and every digest of an image directory.
    #[command(after_help = "Example:\n  ingot verify out/vm-base-1.0.0-x86_64 --key release.pub")]
    Verify {
        /// Image directory.
        image: PathBuf,
        /// Public key.
        #[arg(long)]
        key: PathBuf,
    },
    /// Show an image's partitions, labels, identity state and biggest packages.
    #[command(after_help = "Example:\n  ingot inspect out/edge-minimal-1.0.0-x86_64")]
    Inspect {
        /// Image directory.
        image: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check profile, hardware and firmware files without building.
    #[command(
        after_help = "Example:\n  ingot validate profiles/*.toml hardware/*.toml firmware/*.toml"
    )]
    Validate {
        /// Files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// Exit code for an error: 2 for bad input, 130 after Ctrl-C, 1 otherwise.
pub fn exit_code(e: &anyhow::Error) -> i32 {
    if e.chain().any(|c| c.downcast_ref::<ConfigError>().is_some()) {
        2
    } else if e
        .chain()
        .any(|c| c.downcast_ref::<crate::interrupt::Interrupted>().is_some())
    {
        130
    } else {
        1
    }
}

fn source(o: &SourceOpts, suite: &str, quiet: bool) -> Result<Source> {
    use std::io::IsTerminal;
    Source::new(
        o.mirror.as_deref(),
        suite,
        o.keyring.as_deref(),
        o.cache.as_deref(),
        o.jobs,
        !quiet && std::io::stderr().is_terminal(),
    )
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let quiet = cli.quiet;
    match cli.command {
        Cmd::Validate { files } => {
            for f in &files {
                let kind = config::validate(f)?;
                if !quiet {
                    println!("{}: ok ({kind:?})", f.display());
                }
            }
            Ok(())
        }
        Cmd::Build {
            profile,
            hardware,
            out,
            key,
            locked,
            check_reproducible,
            json: as_json,
            source: so,
        } => {
            let p = config::load_profile(&profile)?;
            let hws = hardware
                .iter()
                .map(|h| config::load_hardware(h))
                .collect::<Result<Vec<_>, _>>()?;
            let src = source(&so, &p.distribution.suite, quiet)?;
            let mut report = Vec::new();
            for hw in &hws {
                let started = std::time::Instant::now();
                let opts = build::Options {
                    out: out.clone(),
                    locked,
                    key: key.clone(),
                    quiet,
                };
                let b = build::build(&p, hw, &src, &opts)?;
                if check_reproducible {
                    let again = out.join(".reproducibility");
                    let b2 = build::build(
                        &p,
                        hw,
                        &src,
                        &build::Options {
                            out: again.clone(),
                            ..opts.clone()
                        },
                    )?;
                    compare_dirs(&b, &b2)?;
                    let _ = std::fs::remove_dir_all(&again);
                    if !as_json {
                        println!("{}: reproducible (two builds byte-identical)", b.id);
                    }
                }
                if as_json {
                    report.push(build_summary(&b, check_reproducible, started.elapsed()));
                } else {
                    println!("{}", b.dir.display());
                }
            }
            if as_json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({ "images": report }))?
                );
            }
            Ok(())
        }
        Cmd::Lock {
            profile,
            hardware,
            source: so,
        } => {
            let p = config::load_profile(&profile)?;
            let src = source(&so, &p.distribution.suite, quiet)?;
            let mut lock = Lockfile {
                version: 1,
                target: Vec::new(),
            };
            for h in &hardware {
                let hw = config::load_hardware(h)?;
                let pb = build::spinner(
                    &format!("resolving {} for {}", p.image.name, hw.name),
                    build::live(quiet),
                );
                lock.target.push(packages::resolve_target(&src, &p, &hw)?);
                pb.finish_and_clear();
            }
            let path = packages::lock_path(&profile);
            packages::cache::write_atomic(&path, lock.to_toml()?.as_bytes())?;
            println!("{}", path.display());
            Ok(())
        }
        Cmd::Fetch {
            profile,
            hardware,
            locked,
            source: so,
        } => {
            let p = config::load_profile(&profile)?;
            let src = source(&so, &p.distribution.suite, quiet)?;
            for h in &hardware {
                let hw = config::load_hardware(h)?;
                let pb = build::spinner(
                    &format!("resolving {} for {}", p.image.name, hw.name),
                    build::live(quiet),
                );
                let set = packages::package_set(&src, &p, &hw, locked)?;
                pb.finish_and_clear();
                let ready = packages::fetch_all(&src, &set.package)?;
                let fw = config::firmware_for(&hw)?;
                packages::fetch_firmware(&src, &fw)?;
                println!(
                    "{}: {} packages cached in {}",
                    hw.name,
                    ready.len(),
                    src.cache.root().display()
                );
            }
            Ok(())
        }
        Cmd::Keygen { out } => {
            let sk = minisign::SecretKey::generate();
            let skp = PathBuf::from(format!("{}.key", out.display()));
            let pkp = PathBuf::from(format!("{}.pub", out.display()));
            if skp.exists() {
                bail!(
                    "{} exists; refusing to overwrite a secret key",
                    skp.display()
                );
            }
            {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&skp)?;
                f.write_all(sk.to_file().as_bytes())?;
            }
            std::fs::write(&pkp, sk.public().to_file())?;
            println!(
                "secret key: {} (mode 0600)\npublic key: {}\nkey id: {}",
                skp.display(),
                pkp.display(),
                minisign::key_id_hex(&sk.id)
            );
            Ok(())
        }
        Cmd::Sign { image, key } => {
            let sk = minisign::SecretKey::from_file(&key)?;
            let m: serde_json::Value = serde_json::from_slice(
                &std::fs::read(image.join("manifest.json"))
                    .with_context(|| format!("{}: no manifest.json", image.display()))?,
            )?;
            let tc = format!(
                "image={} version={} arch={} epoch={}",
                m["image"].as_str().unwrap_or(""),
                m["version"].as_str().unwrap_or(""),
                m["arch"].as_str().unwrap_or(""),
                m["source_date_epoch"]
            );
            let sig = sk.sign_file(&image.join("manifest.json"), &tc)?;
            packages::cache::write_atomic(&image.join("manifest.json.sig"), sig.as_bytes())?;
            println!("{}", image.join("manifest.json.sig").display());
            Ok(())
        }
        Cmd::Verify { image, key } => {
            let pk = minisign::PublicKey::from_file(&key)?;
            let pb = build::spinner(
                &format!("verifying {}", image.display()),
                build::live(quiet),
            );
            let checked = crate::trust::verify_dir(&image, &pk);
            pb.finish_and_clear();
            checked?;
            println!(
                "{}: signature and every artifact digest verified",
                image.display()
            );
            Ok(())
        }
        Cmd::Inspect { image, json } => inspect(&image, json),
        Cmd::BootTest {
            images,
            timeout,
            boots,
            retries,
            junit,
            json,
            logs,
            accel,
            source: so,
        } => {
            let jobs = so.jobs;
            boot_test(
                &images,
                Duration::from_secs(timeout),
                boots,
                retries,
                junit.as_deref(),
                json.as_deref(),
                logs.as_deref(),
                jobs,
                accel.as_deref(),
                &so,
                quiet,
            )
        }
        Cmd::Run {
            image,
            accel,
            source: so,
        } => {
            let spec = vm_spec(&image, accel.as_deref(), &so, quiet)?;
            let work = qemu::scratch_dir("ingot-run")?;
            let code = qemu::run_interactive(&spec, work.path())?;
            if code != 0 {
                bail!("QEMU exited with status {code}");
            }
            Ok(())
        }
    }
}

fn compare_dirs(first: &build::Built, second: &build::Built) -> Result<()> {
    let (a, b) = (&first.dir, &second.dir);
    for name in [
        "disk.raw",
        "disk.raw.zst",
        "disk.qcow2",
        "disk.vmdk",
        "disk.vhdx",
        "packages.lock",
        "sbom.spdx.json",
        "sbom.cdx.json",
        "provenance.intoto.jsonl",
        "manifest.json",
    ] {
        let (x, y) = (a.join(name), b.join(name));
        if !x.exists() {
            continue;
        }
        let (dx, dy) = (std::fs::read(&x)?, std::fs::read(&y)?);
        if dx != dy {
            let first_at = dx
                .iter()
                .zip(dy.iter())
                .position(|(p, q)| p != q)
                .unwrap_or(dx.len().min(dy.len()));
            let last = dx
                .iter()
                .zip(dy.iter())
                .rposition(|(p, q)| p != q)
                .unwrap_or(first_at);
            let what = explain_difference(name, &dx, &dy)
                .or_else(|| {
                    (name == "disk.raw").then(|| {
                        format!(
                            "the first differing byte is in {}",
                            first.describe(first_at as u64)
                        )
                    })
                })
                .map(|w| format!("; {w}"))
                .unwrap_or_default();
            bail!(
                "not reproducible: {name} differs in bytes {first_at}..={last} (sizes {} and {}){what}",
                dx.len(),
                dy.len()
            );
        }
    }
    Ok(())
}

/// Say where two versions of a non-disk artifact differ: the first JSON path for JSON files
/// (one document per line for `.jsonl`), the first line for the lockfile, and for the
/// compressed or converted disks the fact that disk.raw itself was identical (the files are
/// compared in that order).
fn explain_difference(name: &str, a: &[u8], b: &[u8]) -> Option<String> {
    if name == "disk.raw" {
        return None;
    }
    if name.starts_with("disk.") {
        return Some(format!(
            "disk.raw is identical, so {name}'s own encoding differs (compressor or qemu-img)"
        ));
    }
    let (ta, tb) = (std::str::from_utf8(a).ok()?, std::str::from_utf8(b).ok()?);
    if name.ends_with(".jsonl") {
        for (n, (la, lb)) in ta.lines().zip(tb.lines()).enumerate() {
            let va: serde_json::Value = serde_json::from_str(la).ok()?;
            let vb: serde_json::Value = serde_json::from_str(lb).ok()?;
            if let Some((path, x, y)) = json_difference(&va, &vb, "$".into()) {
                return Some(format!(
                    "line {}: {path} is {x} in one build and {y} in the other",
                    n + 1
                ));
            }
        }
    }
    if name.ends_with(".json") {
        let va: serde_json::Value = serde_json::from_str(ta).ok()?;
        let vb: serde_json::Value = serde_json::from_str(tb).ok()?;
        let (path, x, y) = json_difference(&va, &vb, "$".into())?;
        return Some(format!("{path} is {x} in one build and {y} in the other"));
    }
    let (n, (la, lb)) = ta
        .lines()
        .zip(tb.lines())
        .enumerate()
        .find(|(_, (x, y))| x != y)?;
    Some(format!("line {}: `{la}` against `{lb}`", n + 1))
}

/// The first JSON path where two values differ, with both values (shortened).
fn json_difference(
    a: &serde_json::Value,
    b: &serde_json::Value,
    path: String,
) -> Option<(String, String, String)> {
    use serde_json::Value;
    let short = |v: &Value| {
        let s = v.to_string();
        if s.len() > 80 {
            format!("{}…", s.chars().take(77).collect::<String>())
        } else {
            s
        }
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                match y.get(k) {
                    Some(w) => {
                        if let Some(d) = json_difference(v, w, format!("{path}.{k}")) {
                            return Some(d);
                        }
                    }
                    None => return Some((format!("{path}.{k}"), short(v), "absent".into())),
                }
            }
            y.iter()
                .find(|(k, _)| !x.contains_key(*k))
                .map(|(k, w)| (format!("{path}.{k}"), "absent".into(), short(w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                if let Some(d) = json_difference(v, w, format!("{path}[{i}]")) {
                    return Some(d);
                }
            }
            (x.len() != y.len()).then(|| {
                (
                    format!("{path}.length"),
                    x.len().to_string(),
                    y.len().to_string(),
                )
            })
        }
        _ => (a != b).then(|| (path, short(a), short(b))),
    }
}

fn manifest_of(image: &Path) -> Result<serde_json::Value> {
    Ok(serde_json::from_slice(
        &std::fs::read(image.join("manifest.json")).with_context(|| {
            format!(
                "{}: not an image directory (no manifest.json)",
                image.display()
            )
        })?,
    )?)
}

fn vm_spec(
    image: &Path,
    accel: Option<&str>,
    so: &SourceOpts,
    quiet: bool,
) -> Result<qemu::VmSpec> {
    let m = manifest_of(image)?;
    // The manifest carries the hardware and firmware settings, so an image directory boots
    // wherever it is copied, without the project's hardware/ and firmware/ directories.
    let hw: config::Hardware =
        serde_json::from_value(m["boot"]["hardware"].clone()).with_context(|| {
            format!(
                "{}: manifest.json has no usable boot.hardware (rebuild the image with this Ingot)",
                image.display()
            )
        })?;
    // Once per image, before the firmware is fetched or anything is written: a missing QEMU
    // binary is named with the Debian package that provides it.
    qemu::require_binary(hw.arch)?;
    let fw: config::Firmware =
        serde_json::from_value(m["boot"]["firmware"].clone()).with_context(|| {
            format!(
                "{}: manifest.json has no usable boot.firmware (rebuild the image with this Ingot)",
                image.display()
            )
        })?;
    let src = source(so, &fw.suite, quiet)?;
    let (code, vars) = packages::fetch_firmware(&src, &fw)?;
    Ok(qemu::VmSpec {
        arch: hw.arch,
        accel: qemu::pick_accel(hw.arch, accel),
        hw,
        disk: image.join("disk.raw"),
        code,
        vars,
    })
}

/// What is wrong with a ready line, judged against the image's manifest: another image or
/// version, an agent whose probe failed, or a machine id that is not one.
fn judge_ready(r: &qemu::Ready, m: &serde_json::Value) -> Option<String> {
    if Some(r.image.as_str()) != m["image"].as_str()
        || Some(r.version.as_str()) != m["version"].as_str()
    {
        Some(format!(
            "ready line reports {} {} but the manifest says {} {}",
            r.image, r.version, m["image"], m["version"]
        ))
    } else if let Some((a, _)) = r.agents.iter().find(|(_, s)| s != "ok") {
        Some(format!("agent {a} failed its readiness probe"))
    } else if r.machine_id.len() != 32 {
        Some(format!(
            "machine id `{}` is not 32 hex digits",
            r.machine_id
        ))
    } else {
        None
    }
}

#[allow(clippy::too_many_arguments)]
fn boot_test(
    images: &[PathBuf],
    timeout: Duration,
    boots: u32,
    retries: u32,
    junit: Option<&Path>,
    json_out: Option<&Path>,
    logs: Option<&Path>,
    jobs: usize,
    accel: Option<&str>,
    so: &SourceOpts,
    quiet: bool,
) -> Result<()> {
    let specs = images
        .iter()
        .map(|i| vm_spec(i, accel, so, quiet).map(|s| (i.clone(), s)))
        .collect::<Result<Vec<_>>>()?;
    let log_dir = boot_log_dir(logs, json_out, junit)?;
    let names = log_names(images);
    // Per-boot scratch files (UEFI variable copies) live here, never in an image directory.
    let work = qemu::scratch_dir("ingot-boot-test")?;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::new());
    // One spinner per running boot on a terminal; plain lines otherwise.
    let live = build::live(quiet);
    let multi = indicatif::MultiProgress::new();
    if !live {
        multi.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let say = |line: String| {
        if live {
            let _ = multi.println(line);
        } else if !quiet {
            eprintln!("{line}");
        }
    };
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1).min(specs.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some((dir, spec)) = specs.get(i) else { break };
                let m = manifest_of(dir).unwrap_or_default();
                let mut cases = Vec::new();
                for n in 1..=boots {
                    // Failed attempts of this boot, kept when a retry follows.
                    let mut earlier: Vec<serde_json::Value> = Vec::new();
                    let case = loop {
                        let attempt = earlier.len() as u32 + 1;
                        let log = log_dir.join(match attempt {
                            1 => format!("{}.boot-{n}.console.log", names[i]),
                            a => format!("{}.boot-{n}.retry-{}.console.log", names[i], a - 1),
                        });
                        let pb = multi.add(build::spinner(&format!("{} boot {n}/{boots}", dir.display()), live));
                        let out = qemu::boot_once(spec, timeout, &log, work.path());
                        pb.finish_and_clear();
                        let mut case = match out {
                            Ok(o) => {
                                let failure = o.failure.clone().or_else(|| o.ready.as_ref().and_then(|r| judge_ready(r, &m)));
                                json!({"boot": n, "ok": failure.is_none(), "seconds": o.seconds, "failure": failure, "ready": o.ready, "console_log": o.log, "tail": if failure.is_some() { o.tail.clone() } else { vec![] }})
                            }
                            Err(e) => json!({"boot": n, "ok": false, "seconds": 0.0, "failure": format!("{e:#}"), "tail": []}),
                        };
                        let passed = case["ok"].as_bool().unwrap_or(false);
                        let again = !passed && attempt <= retries && !crate::interrupt::requested();
                        let what = case["failure"].as_str().unwrap_or("ready").to_string();
                        let note = match (again, attempt) {
                            (true, _) => format!(" (attempt {attempt} of {}; booting again)", retries + 1),
                            (false, 1) => String::new(),
                            (false, _) => format!(" (attempt {attempt} of {})", retries + 1),
                        };
                        say(format!("{} boot {n}: {what} in {:.1}s{note}", dir.display(), case["seconds"].as_f64().unwrap_or(0.0)));
                        if again {
                            earlier.push(case);
                            continue;
                        }
                        case["flaky"] = json!(passed && !earlier.is_empty());
                        case["attempts"] = json!(earlier);
                        break case;
                    };
                    let fail_fast = !case["ok"].as_bool().unwrap_or(false);
                    cases.push(case);
                    if fail_fast {
                        break;
                    }
                }
                let ids: Vec<&str> = cases.iter().filter_map(|c| c["ready"]["machine_id"].as_str()).collect();
                let mut dup = None;
                for (k, a) in ids.iter().enumerate() {
                    if ids[..k].contains(a) {
                        dup = Some(format!("two boots reported the same machine id {a}: identity was baked into the image"));
                    }
                }
                if let Ok(mut g) = results.lock() {
                    g.push(json!({"image": dir, "boots": cases, "machine_id_failure": dup}));
                }
            });
        }
    });
    let mut results = results
        .into_inner()
        .map_err(|_| anyhow::anyhow!("boot thread panicked"))?;
    results.sort_by(|a, b| a["image"].to_string().cmp(&b["image"].to_string()));
    let failed = results.iter().any(|r| {
        !r["machine_id_failure"].is_null()
            || r["boots"]
                .as_array()
                .is_none_or(|b| b.iter().any(|c| !c["ok"].as_bool().unwrap_or(false)))
    });
    if let Some(p) = json_out {
        std::fs::write(
            p,
            serde_json::to_string_pretty(&json!({"passed": !failed, "images": results}))?,
        )?;
    }
    if let Some(p) = junit {
        std::fs::write(p, junit_xml(&results))?;
    }
    let mut flaky = 0;
    for r in &results {
        for c in r["boots"].as_array().into_iter().flatten() {
            let img = r["image"].as_str().unwrap_or("");
            let earlier = c["attempts"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            if c["flaky"].as_bool() == Some(true) {
                flaky += 1;
                eprintln!(
                    "FLAKY {img} boot {}: passed on attempt {} after:",
                    c["boot"],
                    earlier.len() + 1
                );
            } else if !earlier.is_empty() {
                eprintln!("FAIL {img} boot {}: every attempt failed:", c["boot"]);
            }
            for (k, a) in earlier.iter().enumerate() {
                eprintln!(
                    "  attempt {}: {} (console: {})",
                    k + 1,
                    a["failure"].as_str().unwrap_or(""),
                    a["console_log"].as_str().unwrap_or("none")
                );
            }
            if let Some(f) = c["failure"].as_str() {
                eprintln!(
                    "FAIL {} boot {}: {f}",
                    r["image"].as_str().unwrap_or(""),
                    c["boot"]
                );
                for l in c["tail"].as_array().into_iter().flatten() {
                    eprintln!("  | {}", l.as_str().unwrap_or(""));
                }
            }
        }
        if let Some(f) = r["machine_id_failure"].as_str() {
            eprintln!("FAIL {}: {f}", r["image"].as_str().unwrap_or(""));
        }
    }
    if logs.is_none() && json_out.is_none() && junit.is_none() && !quiet {
        eprintln!("console logs: {}", log_dir.display());
    }
    if failed {
        crate::interrupt::check()?;
        bail!("boot test failed");
    }
    println!(
        "boot test passed: {} image(s), {boots} boot(s) each{}",
        results.len(),
        match flaky {
            0 => String::new(),
            n => format!("; {n} boot(s) passed only on a retry (flaky)"),
        }
    );
    Ok(())
}

/// Where boot-test keeps console logs: `--logs`, else beside the JSON or JUnit report, else a
/// new directory under the system's temporary directory (kept: it is the only copy).
fn boot_log_dir(logs: Option<&Path>, json: Option<&Path>, junit: Option<&Path>) -> Result<PathBuf> {
    let dir = if let Some(l) = logs {
        l.to_path_buf()
    } else if let Some(report) = json.or(junit) {
        match report.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        }
    } else {
        qemu::scratch_dir("ingot-boot-logs")?.keep()
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating the log directory {}", dir.display()))?;
    Ok(dir)
}

/// One log-name stem per image: the directory's name (`edge-minimal-1.0.0-x86_64`), with `-2`,
/// `-3`… when two image directories share a name.
fn log_names(images: &[PathBuf]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for i in images {
        let base = i
            .canonicalize()
            .unwrap_or_else(|_| i.clone())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".into());
        let mut name = base.clone();
        let mut k = 2;
        while names.contains(&name) {
            name = format!("{base}-{k}");
            k += 1;
        }
        names.push(name);
    }
    names
}

fn xml_escape(s: &str) -> String {
    s.chars()
        .filter(|c| *c == '\n' || *c == '\t' || (*c >= ' ' && *c != '\u{7f}'))
        .collect::<String>()
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The console tail kept with a failed boot, one line per console line.
fn tail_text(c: &serde_json::Value) -> String {
    let tail: Vec<&str> = c["tail"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l.as_str())
        .collect();
    tail.join("\n")
}

/// JUnit XML: one testsuite, one testcase per image and boot.
pub fn junit_xml(results: &[serde_json::Value]) -> String {
    let mut cases = String::new();
    let (mut total, mut failures) = (0, 0);
    for r in results {
        let img = r["image"].as_str().unwrap_or("");
        for c in r["boots"].as_array().into_iter().flatten() {
            total += 1;
            let name = format!(
                "{} boot {}",
                Path::new(img)
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                c["boot"]
            );
            cases.push_str(&format!(
                "  <testcase classname=\"ingot.boot\" name=\"{}\" time=\"{:.3}\">\n",
                xml_escape(&name),
                c["seconds"].as_f64().unwrap_or(0.0)
            ));
            if let Some(f) = c["failure"].as_str() {
                failures += 1;
                cases.push_str(&format!(
                    "    <failure message=\"{}\">{}</failure>\n",
                    xml_escape(f),
                    xml_escape(&tail_text(c))
                ));
            }
            // Earlier failed attempts, in the form Maven Surefire writes for reruns, which CI
            // servers show as flaky: `flakyFailure` when the boot passed at last, `rerunFailure`
            // when it never did.
            let tag = if c["ok"].as_bool() == Some(true) {
                "flakyFailure"
            } else {
                "rerunFailure"
            };
            for a in c["attempts"].as_array().into_iter().flatten() {
                cases.push_str(&format!(
                    "    <{tag} message=\"{}\" type=\"boot\">\n      <stackTrace>{}</stackTrace>\n      <system-out>{}</system-out>\n    </{tag}>\n",
                    xml_escape(a["failure"].as_str().unwrap_or("")),
                    xml_escape(&tail_text(a)),
                    xml_escape(a["console_log"].as_str().unwrap_or(""))
                ));
            }
            cases.push_str(&format!(
                "    <system-out>{}</system-out>\n  </testcase>\n",
                xml_escape(c["console_log"].as_str().unwrap_or(""))
            ));
        }
        if let Some(f) = r["machine_id_failure"].as_str() {
            total += 1;
            failures += 1;
            cases.push_str(&format!("  <testcase classname=\"ingot.boot\" name=\"{} machine-id\">\n    <failure message=\"{}\"/>\n  </testcase>\n", xml_escape(img), xml_escape(f)));
        }
    }
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites tests=\"{total}\" failures=\"{failures}\">\n<testsuite name=\"ingot boot-test\" tests=\"{total}\" failures=\"{failures}\">\n{cases}</testsuite>\n</testsuites>\n")
}

/// One built image for `build --json`: what CI needs to pick the artifacts up.
fn build_summary(
    b: &build::Built,
    reproducible_checked: bool,
    took: std::time::Duration,
) -> serde_json::Value {
    let m = &b.manifest;
    json!({
        "dir": b.dir,
        "image": m["image"],
        "version": m["version"],
        "arch": m["arch"],
        "hardware": m["hardware"],
        "artifacts": m["artifacts"],
        "data_bytes": b.data_bytes,
        "signed": b.dir.join("manifest.json.sig").exists(),
        "reproducible_checked": reproducible_checked,
        "seconds": (took.as_secs_f64() * 100.0).round() / 100.0,
    })
}

fn inspect(image: &Path, as_json: bool) -> Result<()> {
    let m = manifest_of(image)?;
    // Bytes each package (or Ingot itself) contributes to the image, as the build recorded
    // them after sysprep and module pruning.
    let mut sizes: Vec<(u64, String)> = m["contents"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (v["bytes"].as_u64().unwrap_or(0), k.clone()))
        .collect();
    sizes.sort_by(|a, b| b.cmp(a));
    let identity =
        identity_from_disk(image).unwrap_or_else(|e| vec![("error".into(), format!("{e:#}"))]);
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"manifest": m, "identity": identity, "largest_packages": sizes.iter().take(15).collect::<Vec<_>>()})
            )?
        );
        return Ok(());
    }
    println!(
        "image     {} {} ({})",
        m["image"].as_str().unwrap_or(""),
        m["version"].as_str().unwrap_or(""),
        m["arch"].as_str().unwrap_or("")
    );
    println!("hardware  {}", m["hardware"]["name"].as_str().unwrap_or(""));
    println!(
        "disk      {} bytes, GUID {}",
        m["disk"]["size"],
        m["disk"]["guid"].as_str().unwrap_or("")
    );
    for p in m["disk"]["partitions"].as_array().into_iter().flatten() {
        println!(
            "  {:<8} type {} guid {} offset {} size {}",
            p["name"].as_str().unwrap_or(""),
            p["type"].as_str().unwrap_or(""),
            p["guid"].as_str().unwrap_or(""),
            p["offset"],
            p["size"]
        );
    }
    println!("labels");
    for (k, v) in m["labels"].as_object().into_iter().flatten() {
        println!("  {k} = {}", v.as_str().unwrap_or(""));
    }
    println!("identity-bearing files (checked after sysprep)");
    for (p, s) in &identity {
        println!("  {p:<40} {s}");
    }
    let total: u64 = sizes.iter().map(|(s, _)| s).sum();
    println!(
        "largest contributors (file bytes in the root filesystem; {} in all)",
        config::ByteSize(total)
    );
    for (s, n) in sizes.iter().take(15) {
        println!("  {:>10}  {n}", config::ByteSize(*s).to_string());
    }
    Ok(())
}

/// The identity-bearing files the build checked after sysprep, as recorded in the manifest.
fn identity_from_disk(image: &Path) -> Result<Vec<(String, String)>> {
    let m = manifest_of(image)?;
    let list = m["sysprep"]["identity"]
        .as_array()
        .context("manifest has no sysprep record")?;
    Ok(list
        .iter()
        .map(|x| {
            (
                x[0].as_str().unwrap_or("").to_string(),
                x[1].as_str().unwrap_or("").to_string(),
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::{boot_log_dir, explain_difference, junit_xml, log_names};
    use std::path::{Path, PathBuf};

    #[test]
    fn console_logs_go_beside_the_report_with_one_name_per_image() {
        let t = tempfile::tempdir().unwrap();
        let report = t.path().join("ci").join("report.xml");
        assert_eq!(
            boot_log_dir(None, None, Some(&report)).unwrap(),
            t.path().join("ci")
        );
        let json = t.path().join("j").join("r.json");
        assert_eq!(
            boot_log_dir(None, Some(&json), Some(&report)).unwrap(),
            t.path().join("j")
        );
        let logs = t.path().join("logs");
        assert_eq!(boot_log_dir(Some(&logs), Some(&json), None).unwrap(), logs);
        assert!(logs.is_dir());
        assert_eq!(
            boot_log_dir(None, Some(Path::new("r.json")), None).unwrap(),
            PathBuf::from(".")
        );
        let names = log_names(&[
            PathBuf::from("/nonexistent/a/edge-1.0-x86_64"),
            PathBuf::from("/nonexistent/b/edge-1.0-x86_64"),
            PathBuf::from("/nonexistent/b/edge-1.0-aarch64"),
        ]);
        assert_eq!(
            names,
            ["edge-1.0-x86_64", "edge-1.0-x86_64-2", "edge-1.0-aarch64"]
        );
    }

    #[test]
    fn differences_are_named_by_json_path_or_line() {
        let a = br#"{"packages":[{"name":"a","checksum":"11"},{"name":"b","checksum":"22"}]}"#;
        let b = br#"{"packages":[{"name":"a","checksum":"11"},{"name":"b","checksum":"23"}]}"#;
        assert_eq!(
            explain_difference("sbom.spdx.json", a, b).unwrap(),
            r#"$.packages[1].checksum is "22" in one build and "23" in the other"#
        );
        let a = b"{\"x\":1}\n{\"payload\":\"AA\"}\n";
        let b = b"{\"x\":1}\n{\"payload\":\"AB\",\"extra\":true}\n";
        assert_eq!(
            explain_difference("provenance.intoto.jsonl", a, b).unwrap(),
            r#"line 2: $.payload is "AA" in one build and "AB" in the other"#
        );
        assert_eq!(
            explain_difference("packages.lock", b"a = 1\nb = 2\n", b"a = 1\nb = 3\n").unwrap(),
            "line 2: `b = 2` against `b = 3`"
        );
        assert!(explain_difference("disk.raw.zst", b"\x28\xb5", b"\x28\xb6")
            .unwrap()
            .contains("disk.raw is identical"));
        assert_eq!(explain_difference("disk.raw", b"\0", b"\x01"), None);
    }

    #[test]
    fn junit_reports_reruns_the_way_ci_servers_read_them() {
        let attempt = |log: &str| {
            serde_json::json!({"boot": 1, "ok": false, "seconds": 120.0,
                "failure": "timeout: no INGOT-READY line within 120s",
                "tail": ["rcu: INFO: rcu_preempt detected stalls <on> CPUs"], "console_log": log})
        };
        let results = vec![
            serde_json::json!({"image": "/o/edge-1.0-x86_64", "machine_id_failure": null, "boots": [
                {"boot": 1, "ok": true, "seconds": 7.1, "failure": null, "tail": [], "flaky": true,
                 "console_log": "/l/edge.boot-1.retry-1.console.log",
                 "attempts": [attempt("/l/edge.boot-1.console.log")]},
                {"boot": 2, "ok": true, "seconds": 6.9, "failure": null, "tail": [], "flaky": false,
                 "console_log": "/l/edge.boot-2.console.log", "attempts": []}]}),
            serde_json::json!({"image": "/o/edge-1.0-aarch64", "machine_id_failure": null, "boots": [
                {"boot": 1, "ok": false, "seconds": 3.0, "failure": "Kernel panic", "tail": ["VFS"],
                 "console_log": "/l/a.boot-1.retry-1.console.log", "flaky": false,
                 "attempts": [attempt("/l/a.boot-1.console.log")]}]}),
        ];
        let xml = junit_xml(&results);
        // Three testcases; only the boot that failed every attempt counts as a failure.
        assert!(
            xml.contains("<testsuite name=\"ingot boot-test\" tests=\"3\" failures=\"1\">"),
            "{xml}"
        );
        let flaky = xml
            .find("<flakyFailure message=\"timeout: no INGOT-READY line within 120s\"")
            .expect("flakyFailure");
        assert!(xml[..flaky].contains("name=\"edge-1.0-x86_64 boot 1\""));
        assert!(xml.contains(
            "<stackTrace>rcu: INFO: rcu_preempt detected stalls &lt;on&gt; CPUs</stackTrace>"
        ));
        assert!(xml.contains("<system-out>/l/edge.boot-1.console.log</system-out>"));
        let failure = xml
            .find("<failure message=\"Kernel panic\">VFS</failure>")
            .expect("failure");
        let rerun = xml.find("<rerunFailure message=").expect("rerunFailure");
        assert!(failure < rerun && flaky < failure);
        assert_eq!(xml.matches("<testcase ").count(), 3);
        assert_eq!(xml.matches("</testcase>").count(), 3);
    }
}
