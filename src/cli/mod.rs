//! Command-line interface: the clap definitions and one function per subcommand
//! (`commands`, `inspect`) over the library's stages. Parsing and printing only.

mod audit;
mod boot;
mod commands;
mod inspect;
mod matrix;
mod ota;
mod registry;
mod report;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::config::ConfigError;
use crate::packages::Source;

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
    /// Parallel downloads (default 4); for boot-test, also how many images boot at once
    /// (default: one per host core, as each emulated guest keeps a core busy).
    #[arg(long, short, value_parser = at_least_one)]
    pub jobs: Option<usize>,
}

/// Parallel downloads when `--jobs` is not given.
const DOWNLOAD_JOBS: usize = 4;

/// Subcommands.
// Parsed once per run: boot-test's many flags make its variant large, which costs nothing here.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Build one image per hardware profile into OUT/<name>-<version>-<arch>/.
    #[command(
        after_help = "Example:\n  ingot build profiles/vm-base.toml --hardware hardware/qemu-x86_64.toml --hardware hardware/qemu-aarch64.toml --key ingot.key"
    )]
    Build {
        /// Image profile.
        profile: PathBuf,
        /// Hardware profile(s); the default is read from the working directory, else from
        /// beside the profile's directory.
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
        /// Also write update-from-<version>.bundle, a delta bundle from this earlier image
        /// directory of the same image and hardware (A/B only; repeat for more bases or
        /// for each hardware).
        #[arg(long, value_name = "OLD_DIR")]
        delta_from: Vec<PathBuf>,
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
        #[arg(required_unless_present_any = ["disks", "matrix"])]
        images: Vec<PathBuf>,
        /// Seconds to wait for each boot [default: 120, or an image's longest readiness
        /// probe timeout plus 60 when that is longer].
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        timeout: Option<u64>,
        /// Boots per image (machine ids must differ). A hybrid x86_64 image boots under UEFI
        /// and SeaBIOS in turn, at least once each.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
        boots: u32,
        /// Boot a failed boot again, up to N more times, from the pristine image. A boot that
        /// passes only on a retry counts as passed but is reported as flaky (JUnit
        /// `flakyFailure`, JSON `attempts`), with each failed attempt's console log kept.
        #[arg(long, default_value_t = 0)]
        retries: u32,
        /// Reports and console logs.
        #[command(flatten)]
        out: report::TestOutputs,
        /// Force `kvm` or `tcg`.
        #[arg(long)]
        accel: Option<String>,
        /// Package source options (firmware comes from the Debian archive); `--jobs` is also
        /// how many images boot at once (default: the host's cores).
        #[command(flatten)]
        source: SourceOpts,
        /// Attach the signed report to the tested images in a registry.
        #[command(flatten)]
        attach: registry::AttachOpts,
        /// Disks Ingot did not build.
        #[command(flatten)]
        foreign: boot::ForeignOpts,
        /// The NoCloud seed of cloud-init images.
        #[command(flatten)]
        seed: boot::SeedOpts,
    },
    /// Prove OTA updates in QEMU: boot an A/B image, then give the device each bundle in turn.
    #[command(
        name = "ota-test",
        after_help = "STEP is BUNDLE:EXPECT, EXPECT one of updated, rolled-back, rejected, power-cut (the power is cut\nwhile the slot is written), power-cut@kernel (after the kernel copy), power-cut@entry (after the\ntemporary boot entry). Steps run in order on one device whose disk and UEFI variables persist.\n\nExample:\n  ingot ota-test out/edge-minimal-1.0.0-x86_64 out/edge-minimal-2.0.0-x86_64/update.bundle:updated \\\n    out/edge-minimal-3.0.0-x86_64/update.bundle:rolled-back --junit ota.xml"
    )]
    OtaTest {
        /// The image the device starts with (built for hardware with an [ab] table).
        base: PathBuf,
        /// BUNDLE:EXPECT steps, in order.
        #[arg(required = true)]
        steps: Vec<crate::ota::harness::Step>,
        /// Seconds one boot may take to report ready; an install gets four times as long
        /// [default: 120, or the image's longest readiness probe timeout plus 60 when that is
        /// longer].
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        timeout: Option<u64>,
        /// How bundles reach the device: a second read-only disk, or HTTP from 127.0.0.1.
        #[arg(long, value_enum, default_value = "disk")]
        via: crate::ota::harness::Via,
        /// Reports and console logs.
        #[command(flatten)]
        out: report::TestOutputs,
        /// Keep the device's disk at the end (qcow2 over the image's disk.raw).
        #[arg(long)]
        keep_disk: Option<PathBuf>,
        /// Force `kvm` or `tcg`.
        #[arg(long)]
        accel: Option<String>,
        /// Package source options (firmware comes from the Debian archive).
        #[command(flatten)]
        source: SourceOpts,
        /// Attach the signed report to the base image in a registry.
        #[command(flatten)]
        attach: registry::AttachOpts,
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
        /// The NoCloud seed of a cloud-init image (as for boot-test).
        #[command(flatten)]
        seed: boot::SeedOpts,
        /// Start a hybrid x86_64 image under SeaBIOS instead of UEFI.
        #[arg(long)]
        bios: bool,
    },
    /// Resolve and pin every package into PROFILE.lock.
    #[command(
        after_help = "Example:\n  ingot lock profiles/vm-base.toml --hardware hardware/qemu-x86_64.toml --hardware hardware/qemu-aarch64.toml"
    )]
    Lock {
        /// Image profile.
        profile: PathBuf,
        /// Hardware profile(s); the default is read from the working directory, else from
        /// beside the profile's directory.
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
        /// Hardware profile(s); the default is read from the working directory, else from
        /// beside the profile's directory.
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
        /// Fail when the directory holds files the signed manifest does not list (they are
        /// reported either way).
        #[arg(long)]
        strict: bool,
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
    /// List the image's packages that lack a newer version its suites (and the security
    /// suite) publish, with the CVE ids, urgencies and dates of the missed changelog entries.
    #[command(
        after_help = "Exit status: 0 when the gate passes (or none is given), 1 when it fails, 2 when the archive\ncannot be reached or the input is wrong.\n\nExample:\n  ingot audit out/vm-base-1.0.0-x86_64 --fail-on security --max-age 7 --cyclonedx vex.json"
    )]
    Audit(audit::AuditArgs),
    /// What changed between two image directories: packages (with the CVE ids upgrades fix),
    /// labels, kernel, partitions, agents, sizes.
    #[command(
        after_help = "Example:\n  ingot diff out/edge-minimal-1.0.0-x86_64 out/edge-minimal-1.1.0-x86_64 --markdown"
    )]
    Diff(audit::DiffArgs),
    /// One self-contained HTML page for image directories and their test reports: identity,
    /// size map, partitions, packages, boot timelines, OTA steps, audit and diff.
    #[command(
        after_help = "Example:\n  ingot report out/vm-base-1.0.0-x86_64 --boot-test boot.json --key release.pub --out vm-base.html"
    )]
    Report(report::ReportArgs),
    /// Registry commands.
    #[command(flatten)]
    Registry(registry::RegistryCmd),
}

/// `--jobs`: a count of parallel downloads or guests, so at least one (0 was taken as 1
/// without a word).
fn at_least_one(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// Exit code for an error: 2 for bad input or an archive an audit could not reach, 130 after
/// Ctrl-C, 1 otherwise (a failed audit gate among them).
pub fn exit_code(e: &anyhow::Error) -> i32 {
    if e.chain().any(|c| {
        c.downcast_ref::<ConfigError>().is_some()
            || c.downcast_ref::<crate::base::BadInput>().is_some()
            || c.downcast_ref::<crate::audit::Unreachable>().is_some()
    }) {
        2
    } else if e.chain().any(|c| {
        c.downcast_ref::<crate::interrupt::Interrupted>().is_some()
            || c.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .is_some_and(|inner| inner.is::<crate::interrupt::Interrupted>())
    }) {
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
        o.jobs.unwrap_or(DOWNLOAD_JOBS),
        !quiet && std::io::stderr().is_terminal(),
    )
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let quiet = cli.quiet;
    match cli.command {
        Cmd::Validate { files } => commands::validate(&files, quiet),
        Cmd::Build {
            profile,
            hardware,
            out,
            key,
            locked,
            check_reproducible,
            delta_from,
            json,
            source: so,
        } => commands::build(
            &profile,
            &hardware,
            commands::BuildFlags {
                out,
                key,
                locked,
                check_reproducible,
                delta_from,
                json,
            },
            &so,
            quiet,
        ),
        Cmd::Lock {
            profile,
            hardware,
            source: so,
        } => commands::lock(&profile, &hardware, &so, quiet),
        Cmd::Fetch {
            profile,
            hardware,
            locked,
            source: so,
        } => commands::fetch(&profile, &hardware, locked, &so, quiet),
        Cmd::Keygen { out } => commands::keygen(&out),
        Cmd::Sign { image, key } => commands::sign(&image, &key),
        Cmd::Verify { image, key, strict } => commands::verify(&image, &key, strict, quiet),
        Cmd::Inspect { image, json } => inspect::inspect(&image, json),
        Cmd::BootTest {
            images,
            timeout,
            boots,
            retries,
            out,
            accel,
            source: so,
            attach,
            foreign,
            seed,
        } => boot::boot_test(
            &images,
            boot::BootFlags {
                foreign,
                seed,
                timeout,
                boots,
                retries,
                out,
                accel,
                attach,
            },
            &so,
            quiet,
        ),
        Cmd::OtaTest {
            base,
            steps,
            timeout,
            via,
            out,
            keep_disk,
            accel,
            source: so,
            attach,
        } => ota::ota_test(
            &base,
            &steps,
            ota::OtaFlags {
                timeout,
                via,
                out,
                keep_disk,
                accel,
                attach,
            },
            &so,
            quiet,
        ),
        Cmd::Run {
            image,
            accel,
            source: so,
            seed,
            bios,
        } => boot::run_interactive(&image, accel.as_deref(), &so, &seed, bios, quiet),
        Cmd::Audit(a) => audit::audit(&a, quiet),
        Cmd::Diff(a) => audit::diff(&a, quiet),
        Cmd::Report(a) => report::report(&a),
        Cmd::Registry(c) => registry::run(c, quiet),
    }
}
