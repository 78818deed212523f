//! The registry subcommands (`push`, `pull`, `promote`, `revoke`, `history`, `retention`,
//! `matrix`) and the `--attach` option of the test commands: parsing and printing over
//! `crate::registry`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;

use crate::image_dir::ImageDir;
use crate::registry::evidence::Kind;
use crate::registry::{self, promote, pull, push, retention, BadInput, Client, Reference};
use crate::trust::minisign::{PublicKey, SecretKey};

/// How to reach the registry.
#[derive(Debug, clap::Args, Clone)]
pub struct RegistryOpts {
    /// Allow plain HTTP to a registry that is not on loopback (loopback always uses HTTP).
    #[arg(long)]
    pub insecure: bool,
    /// PEM file of CA certificates to trust besides the built-in roots (a private registry's
    /// CA); the registry is then always reached over HTTPS, loopback included.
    #[arg(long, env = "INGOT_REGISTRY_CA")]
    pub ca_file: Option<PathBuf>,
}

/// `--attach` for boot-test and ota-test.
#[derive(Debug, clap::Args, Clone)]
pub struct AttachOpts {
    /// After the test, attach its signed report to each tested image in this repository
    /// (REGISTRY/REPOSITORY; the image must have been pushed there).
    #[arg(long, value_name = "REPO")]
    pub attach: Option<String>,
    /// Secret key that signs the attached report.
    #[arg(long, requires = "attach")]
    pub key: Option<PathBuf>,
    /// Registry options.
    #[command(flatten)]
    pub registry: RegistryOpts,
}

/// A checked `--attach`: repository client and key, ready before the test runs.
pub struct Attach {
    client: Client,
    key: SecretKey,
}

impl AttachOpts {
    /// Check the reference and read the key before any test runs.
    pub fn prepare(&self) -> Result<Option<Attach>> {
        let Some(r) = &self.attach else {
            return Ok(None);
        };
        let mut reference = Reference::parse(r)?;
        reference.tag = None;
        reference.digest = None;
        let key_path = self.key.as_ref().ok_or_else(|| {
            BadInput("--attach signs the report: give --key KEY (a secret key)".into())
        })?;
        let key = SecretKey::from_file(key_path)?;
        let client = Client::new(&reference, &options(&self.registry), true)?;
        Ok(Some(Attach { client, key }))
    }
}

impl Attach {
    /// Attach one report per image directory.
    pub fn reports(
        &self,
        kind: Kind,
        per_image: &[(PathBuf, bool, serde_json::Value)],
        quiet: bool,
    ) -> Result<()> {
        for (path, passed, report) in per_image {
            let dir = ImageDir::open(path)?;
            let (digest, rec) = promote::attach_report(
                &self.client,
                &dir,
                kind,
                *passed,
                report.clone(),
                &self.key,
            )?;
            crate::progress::log(
                quiet,
                &format!(
                    "attached {} {} {rec} to {}@{digest}",
                    if *passed { "passing" } else { "failed" },
                    kind.name(),
                    self.client.reference
                ),
            );
        }
        Ok(())
    }
}

fn options(o: &RegistryOpts) -> registry::Options {
    registry::Options {
        insecure: o.insecure,
        ca_file: o.ca_file.clone(),
    }
}

/// Registry subcommands.
#[derive(Debug, Subcommand)]
pub enum RegistryCmd {
    /// Push verified image directories of one version as an OCI index under REF's tag.
    #[command(
        after_help = "Version tags are write-once: pushing other content under an existing version tag fails.\nINGOT_REGISTRY_CHUNK sets the upload chunk size (default 32MiB); an interrupted push resumes.\n\nExample:\n  ingot push out/edge-minimal-1.2.0-x86_64 out/edge-minimal-1.2.0-aarch64 localhost:5000/golden/edge-minimal:1.2.0 --key release.pub"
    )]
    Push {
        /// Image directories, then the reference REGISTRY/REPOSITORY:VERSION.
        #[arg(required = true, num_args = 2.., value_name = "DIR... REF")]
        args: Vec<String>,
        /// Public key the directories' signatures must verify with.
        #[arg(long)]
        key: Option<PathBuf>,
        /// Push directories without a signature (their digests are still checked).
        #[arg(long)]
        allow_unsigned: bool,
        /// Push blobs and image manifests by digest only, no index and no tag (CI fan-out:
        /// each runner pushes its image, then one push of all directories tags the version).
        #[arg(long)]
        no_index: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        /// Registry options.
        #[command(flatten)]
        registry: RegistryOpts,
    },
    /// Pull one image of a version (or a pinned digest) into DIR, verified.
    #[command(
        after_help = "Example:\n  ingot pull localhost:5000/golden/edge-minimal:1.2.0 out/edge --key release.pub --arch aarch64\n  ingot pull localhost:5000/golden/edge-minimal@sha256:<hex> out/edge --key release.pub"
    )]
    Pull {
        /// REGISTRY/REPOSITORY:TAG or @sha256:DIGEST.
        reference: String,
        /// Directory to write: new, empty, or an image directory to replace (only by a complete,
        /// verified image; a directory holding other files is refused).
        dir: PathBuf,
        /// Public key the image must be signed with.
        #[arg(long)]
        key: PathBuf,
        /// Architecture to pick from a multi-arch version (x86_64, aarch64).
        #[arg(long)]
        arch: Option<String>,
        /// Hardware profile name to pick.
        #[arg(long)]
        hardware: Option<String>,
        /// Pull a revoked digest anyway (the reason is printed).
        #[arg(long)]
        allow_revoked: bool,
        /// Registry options.
        #[command(flatten)]
        registry: RegistryOpts,
    },
    /// Move a channel tag to REF, on a verified signature and signed passing test reports.
    #[command(
        after_help = "Needs a signed passing boot-test report for every image (and an OTA-test report for A/B\nimages), attached with `--attach`; refuses revoked digests.\n\nExample:\n  ingot promote localhost:5000/golden/edge-minimal:1.2.0 golden-stable --key release.pub --sign-key release.key --previous-to golden-legacy"
    )]
    Promote {
        /// REGISTRY/REPOSITORY:VERSION (or @sha256:DIGEST).
        reference: String,
        /// The channel tag, for example golden-stable.
        channel: String,
        /// Public key for the image signature and the evidence.
        #[arg(long)]
        key: PathBuf,
        /// Secret key that signs the promotion record.
        #[arg(long)]
        sign_key: PathBuf,
        /// Move the channel's previous holder to this channel first (e.g. golden-legacy).
        #[arg(long)]
        previous_to: Option<String>,
        /// Extra gate: `size<=SIZE` (bytes of every layer of an image) or `audit`.
        #[arg(long = "require")]
        require: Vec<String>,
        /// Who promotes (default: $USER@hostname).
        #[arg(long)]
        by: Option<String>,
        /// Promote a revoked digest anyway.
        #[arg(long)]
        allow_revoked: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        /// Registry options.
        #[command(flatten)]
        registry: RegistryOpts,
        /// The Debian archive `--require audit` asks.
        #[command(flatten)]
        archive: super::SourceOpts,
    },
    /// Attach a signed revocation: pull and promote refuse the digest from then on.
    #[command(
        after_help = "Example:\n  ingot revoke localhost:5000/golden/edge-minimal:1.2.0 --reason \"CVE-2026-0001 in openssl\" --key release.key"
    )]
    Revoke {
        /// REGISTRY/REPOSITORY:TAG or @sha256:DIGEST.
        reference: String,
        /// Why (printed by pull and promote).
        #[arg(long)]
        reason: String,
        /// Secret key that signs the revocation.
        #[arg(long)]
        key: PathBuf,
        /// Who revokes (default: $USER@hostname).
        #[arg(long)]
        by: Option<String>,
        /// Registry options.
        #[command(flatten)]
        registry: RegistryOpts,
    },
    /// Print a channel's promotions from their signed records, oldest first.
    #[command(
        after_help = "Example:\n  ingot history localhost:5000/golden/edge-minimal:golden-stable --key release.pub"
    )]
    History {
        /// REGISTRY/REPOSITORY:CHANNEL.
        reference: String,
        /// Public key the records must verify with (unverified records are marked).
        #[arg(long)]
        key: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Registry options.
        #[command(flatten)]
        registry: RegistryOpts,
    },
    /// Delete old versions by policy: keep the newest N per image and architecture and
    /// everything a channel names.
    #[command(
        after_help = "Deletion is by digest, with the evidence attached to it. Blobs are freed by the registry's\ngarbage collection (`docker-registry garbage-collect`).\n\nExample:\n  ingot retention localhost:5000/golden/edge-minimal --keep 3 --older-than 30 --dry-run"
    )]
    Retention {
        /// REGISTRY/REPOSITORY.
        repository: String,
        /// Versions kept per image and architecture.
        #[arg(long)]
        keep: usize,
        /// Only versions built more than DAYS days ago may be deleted.
        #[arg(long, value_name = "DAYS")]
        older_than: Option<u64>,
        /// Print the decisions, delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Registry options.
        #[command(flatten)]
        registry: RegistryOpts,
    },
    /// Print the build matrix (one entry per profile and hardware) in the `include:` shape CI
    /// systems read, so a pipeline fans builds out over runners.
    #[command(
        after_help = "Example:\n  ingot matrix profiles/edge-minimal.toml profiles/vm-base.toml --hardware hardware/qemu-x86_64.toml --hardware hardware/qemu-aarch64.toml"
    )]
    Matrix {
        /// Image profiles.
        #[arg(required = true)]
        profiles: Vec<PathBuf>,
        /// Hardware profiles; the default is read from the working directory, else from
        /// beside each profile's directory.
        #[arg(long = "hardware", default_value = "hardware/qemu-x86_64.toml")]
        hardware: Vec<PathBuf>,
    },
}

/// Read a public key file.
pub(super) fn public_key(p: &Path) -> Result<PublicKey> {
    PublicKey::from_file(p)
}

/// The package set of a signed image in a registry, read from its manifest and lockfile
/// layers only (nothing else is downloaded).
pub(super) fn audit_subject(
    reference: &str,
    key: &Path,
    arch: Option<&str>,
    hardware: Option<&str>,
    ro: &RegistryOpts,
) -> Result<crate::audit::Subject> {
    let reference = Reference::parse(reference)?;
    let key = public_key(key)?;
    let client = Client::new(&reference, &options(ro), false)?;
    let res = pull::resolve(&client)?;
    let d = match &res.index {
        Some(i) => pull::select(i, arch, hardware, &reference.to_string())?,
        None => res.descriptor(),
    };
    let man = promote::verify_signed(&client, &d.digest, &key)?;
    let (m, _) = pull::image_manifest(&client, &d.digest)?;
    let lock = registry::evidence::small_layer(&client, &m, &d.digest, crate::image_dir::LOCKFILE)?;
    let origin = PathBuf::from(format!(
        "{reference}@{}/{}",
        d.digest,
        crate::image_dir::LOCKFILE
    ));
    crate::audit::Subject::from_parts(&man, &lock, hardware, &origin)
}

/// Run a registry subcommand.
pub fn run(cmd: RegistryCmd, quiet: bool) -> Result<()> {
    match cmd {
        RegistryCmd::Push {
            args,
            key,
            allow_unsigned,
            no_index,
            json,
            registry: ro,
        } => {
            let (refs, dirs) = args.split_last().context("push DIR... REF")?;
            let reference = Reference::parse(refs)?;
            let key = key.as_deref().map(public_key).transpose()?;
            let dirs: Vec<PathBuf> = dirs.iter().map(PathBuf::from).collect();
            let opts = push::PushOptions {
                key: key.as_ref(),
                allow_unsigned,
                quiet,
                no_index,
            };
            let images = push::open_dirs(&dirs, &opts)?;
            let client = Client::new(&reference, &options(&ro), true)?;
            let done = push::push(&client, &images, &opts)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&done)?);
            } else {
                for (id, d) in &done.images {
                    crate::progress::log(quiet, &format!("{id}: {d}"));
                }
                crate::progress::log(
                    quiet,
                    &format!(
                        "{} blob(s) uploaded ({} bytes), {} already there, {} mounted{}",
                        done.uploaded,
                        done.uploaded_bytes,
                        done.skipped,
                        done.mounted,
                        if done.unchanged {
                            "; the tag already named this index"
                        } else {
                            ""
                        }
                    ),
                );
                if !done.digest.is_empty() {
                    println!("{}@{}", done.reference, done.digest);
                }
            }
            Ok(())
        }
        RegistryCmd::Pull {
            reference,
            dir,
            key,
            arch,
            hardware,
            allow_revoked,
            registry: ro,
        } => {
            let reference = Reference::parse(&reference)?;
            let key = public_key(&key)?;
            let client = Client::new(&reference, &options(&ro), false)?;
            let digest = pull::pull(
                &client,
                &dir,
                &pull::PullOptions {
                    key: &key,
                    arch: arch.as_deref(),
                    hardware: hardware.as_deref(),
                    allow_revoked,
                    quiet,
                },
            )?;
            // `REPO:TAG@DIGEST` names the image; a pinned index gets its image's digest beside it.
            let what = match reference.digest.as_deref() {
                Some(d) if d == digest => reference.to_string(),
                Some(_) => format!("{reference} (image {digest})"),
                None => format!("{reference}@{digest}"),
            };
            println!("{} ← {what} (verified)", dir.display());
            Ok(())
        }
        RegistryCmd::Promote {
            reference,
            channel,
            key,
            sign_key,
            previous_to,
            require,
            by,
            allow_revoked,
            json,
            registry: ro,
            archive,
        } => {
            let reference = Reference::parse(&reference)?;
            promote::check_channel(&channel)?;
            let gates = require
                .iter()
                .map(|g| promote::Gate::parse(g))
                .collect::<Result<Vec<_>, _>>()?;
            let key = public_key(&key)?;
            let sign = SecretKey::from_file(&sign_key)?;
            let client = Client::new(&reference, &options(&ro), true)?;
            let archive = if gates.contains(&promote::Gate::Audit) {
                Some(super::source(&archive, "", quiet)?)
            } else {
                None
            };
            let p = promote::promote(
                &client,
                &channel,
                &promote::PromoteOptions {
                    key: &key,
                    sign: &sign,
                    previous_to: previous_to.as_deref(),
                    gates: &gates,
                    by: by.as_deref(),
                    allow_revoked,
                    archive: archive.as_ref(),
                },
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&p)?);
            } else if p.record.is_none() {
                println!("{channel} already names {}", p.digest);
            } else {
                if let (Some(prev), Some(to)) = (&p.previous, &p.previous_to) {
                    println!("{to} → {prev} (was {channel})");
                }
                println!(
                    "{channel} → {} (evidence: {}; record {})",
                    p.digest,
                    p.evidence.join(", "),
                    p.record.as_deref().unwrap_or("")
                );
            }
            Ok(())
        }
        RegistryCmd::Revoke {
            reference,
            reason,
            key,
            by,
            registry: ro,
        } => {
            let reference = Reference::parse(&reference)?;
            let key = SecretKey::from_file(&key)?;
            let client = Client::new(&reference, &options(&ro), true)?;
            let (d, rec) = promote::revoke(&client, &reason, &key, by.as_deref())?;
            println!("revoked {d} (record {rec})");
            Ok(())
        }
        RegistryCmd::History {
            reference,
            key,
            json,
            registry: ro,
        } => {
            let reference = Reference::parse(&reference)?;
            let key = key.as_deref().map(public_key).transpose()?;
            let client = Client::new(&reference, &options(&ro), false)?;
            let (h, state) = promote::history(&client, key.as_ref())?;
            if let promote::ChannelState::NoTag(channels) = &state {
                anyhow::bail!(
                    "{reference}: no such channel in the repository and no promotion to it recorded; its channels: {}",
                    if channels.is_empty() { "none".to_string() } else { channels.join(", ") }
                );
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&h)?);
            } else if h.is_empty() {
                println!(
                    "{reference}: no promotions recorded (the tag was made without `ingot promote`, or its records went with the versions retention deleted)"
                );
            }
            for e in h.iter().filter(|_| !json) {
                println!(
                    "{}  {}  {} → {} ({}){}  by {}{}  {}",
                    e.created,
                    reference.tag.as_deref().unwrap_or(""),
                    e.previous.as_deref().map_or("(none)", short),
                    short(&e.digest),
                    e.version.as_deref().unwrap_or("?"),
                    e.previous_to
                        .as_deref()
                        .map(|t| format!(", previous to {t}"))
                        .unwrap_or_default(),
                    e.by,
                    if e.verified {
                        ""
                    } else {
                        " [signature NOT verified]"
                    },
                    match &e.moved_by {
                        Some(c) => format!("moved here by the promotion to {c}"),
                        None => format!("evidence {}", e.evidence.len()),
                    }
                );
            }
            // An auditor reads the records to learn what the channel serves: a tag moved by
            // hand (or by anyone who can push) is not what they say, and must not pass.
            if let promote::ChannelState::Moved { now, recorded } = state {
                anyhow::bail!(
                    "{reference}: the tag names {now}, but {}: it was moved outside `ingot promote`",
                    match recorded {
                        Some(r) => format!("its last {}promotion record put {r} there", if key.is_some() { "verified " } else { "" }),
                        None => format!("no {}promotion record ever put anything there", if key.is_some() { "verified " } else { "" }),
                    }
                );
            }
            Ok(())
        }
        RegistryCmd::Retention {
            repository,
            keep,
            older_than,
            dry_run,
            json,
            registry: ro,
        } => {
            let reference = Reference::parse_repository(&repository)?;
            let client = Client::new(&reference, &options(&ro), !dry_run)?;
            let d = retention::retention(
                &client,
                &retention::RetentionOptions {
                    keep,
                    older_than_days: older_than,
                    dry_run,
                },
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&d)?);
                return Ok(());
            }
            if d.is_empty() {
                // Said, so that a misspelt repository is not mistaken for a tidy one.
                eprintln!("{reference}: no versions to keep or delete (the repository has no version tags)");
            }
            for x in &d {
                println!(
                    "{}{} {} {}: {}{}",
                    if dry_run { "would " } else { "" },
                    if x.keep { "keep" } else { "delete" },
                    x.tag,
                    short(&x.digest),
                    x.why,
                    if x.referrers_deleted > 0 {
                        format!(" (and {} attached record(s))", x.referrers_deleted)
                    } else {
                        String::new()
                    }
                );
            }
            Ok(())
        }
        RegistryCmd::Matrix { profiles, hardware } => super::matrix::matrix(&profiles, &hardware),
    }
}

fn short(d: &str) -> &str {
    &d[..d.len().min(19)]
}
