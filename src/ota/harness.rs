//! `ingot ota-test`: boot an A/B image in QEMU, then hand the device each update bundle in turn
//! and check what it does with it: installs it and comes up on the new version, falls back to
//! the previous version after the new one fails every attempt, refuses it before writing, or
//! survives a power cut mid-install. The disk is a qcow2 overlay over the image's disk.raw and
//! the UEFI variables one store, both kept for the whole run, so the device lives through its
//! reboots as a real one would; the image directory is never written.
//!
//! Bundles reach the device on a second, read-only virtio disk (the device's `ingot-update auto`
//! finds it after a good boot), or with `--via http` from a server on 127.0.0.1 that the guest
//! reaches as 10.0.2.2 (the disk then holds only a pointer line). The device judges every
//! bundle itself: the harness only reads a bundle's manifest, when it can, to know which
//! version to expect.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::boottest::boot::console_lines;
use crate::boottest::console::{Console, Ready, Seen};
use crate::image_dir::ImageDir;
use crate::ota::bundle::Bundle;
use crate::qemu::{self, VmSpec};

/// Where the power is cut during an install.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cut {
    /// While the root image is written to the slot.
    Slot,
    /// After the kernel and initramfs are on the ESP.
    Kernel,
    /// After the temporary boot entry is written.
    Entry,
}

impl Cut {
    /// The updater's console line that marks the point.
    fn marker(self) -> &'static str {
        match self {
            Cut::Slot => "ingot-update: writing the root image to slot",
            Cut::Kernel => "ingot-update: kernel and initramfs in place",
            Cut::Entry => "ingot-update: temporary entry written",
        }
    }
}

/// What a step expects the device to do with its bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expect {
    /// Installs it, reboots, and reports ready on the bundle's version.
    Updated,
    /// Installs it, the new version fails every attempt, and the previous version comes back
    /// reporting the rollback.
    RolledBack,
    /// Refuses it before writing; the next boot is the same version.
    Rejected,
    /// Power is cut at the point; the previous version boots, and installing again succeeds.
    PowerCut(Cut),
}

/// One step: a bundle file and what should happen.
#[derive(Debug, Clone)]
pub struct Step {
    /// Any file: the device judges it.
    pub bundle: PathBuf,
    /// The expectation.
    pub expect: Expect,
    /// As written on the command line.
    pub text: String,
}

impl std::str::FromStr for Step {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (file, exp) = s.rsplit_once(':').ok_or_else(|| {
            format!("step `{s}` is not BUNDLE:EXPECT (EXPECT: updated, rolled-back, rejected, power-cut[@slot|@kernel|@entry])")
        })?;
        let expect = match exp {
            "updated" => Expect::Updated,
            "rolled-back" => Expect::RolledBack,
            "rejected" => Expect::Rejected,
            "power-cut" | "power-cut@slot" => Expect::PowerCut(Cut::Slot),
            "power-cut@kernel" => Expect::PowerCut(Cut::Kernel),
            "power-cut@entry" => Expect::PowerCut(Cut::Entry),
            other => {
                return Err(format!(
                    "step `{s}`: `{other}` is not updated, rolled-back, rejected or power-cut[@slot|@kernel|@entry]"
                ))
            }
        };
        if file.is_empty() {
            return Err(format!("step `{s}` names no bundle file"));
        }
        Ok(Step {
            bundle: PathBuf::from(file),
            expect,
            text: s.to_string(),
        })
    }
}

/// How bundles reach the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// A second read-only virtio disk holding the bundle.
    Disk,
    /// HTTP from 127.0.0.1 (the guest's 10.0.2.2); the disk holds the URL.
    Http,
}

/// How to run an OTA test.
#[derive(Debug, Clone)]
pub struct Options {
    /// Longest one boot may take to report ready.
    pub timeout: Duration,
    /// How bundles reach the device.
    pub via: Via,
    /// Where console logs go.
    pub log_dir: PathBuf,
    /// Keep the device's disk (qcow2 over the image's disk.raw) here at the end.
    pub keep_disk: Option<PathBuf>,
    /// No progress lines.
    pub quiet: bool,
}

/// How one QEMU run ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "end", rename_all = "kebab-case")]
pub enum End {
    /// Reported ready (the harness then stopped it).
    Ready,
    /// The guest rebooted or powered off (QEMU runs with `-no-reboot`).
    Exited,
    /// The updater refused the bundle: its line.
    Rejected {
        /// The device's console line.
        line: String,
    },
    /// The updater failed after it began writing: its line.
    Failed {
        /// The device's console line.
        line: String,
    },
    /// The harness cut the power at the marker.
    Cut {
        /// The updater had already passed the next step when the power went (the cut came
        /// late; the test still holds, but did not hit the window it aimed at).
        late: bool,
    },
    /// Nothing decisive within the timeout: the guest or the emulator hung.
    Hang {
        /// What the console showed last, or the stall the kernel reported.
        detail: String,
    },
    /// Ctrl-C.
    Interrupted,
}

/// One QEMU run.
#[derive(Debug, Clone, Serialize)]
pub struct BootRun {
    /// Console log.
    pub log: PathBuf,
    /// With the update media attached.
    pub media: bool,
    /// The ready line, when one came.
    pub ready: Option<Ready>,
    /// Seconds from QEMU start to the ready line.
    pub ready_seconds: Option<f64>,
    /// How it ended.
    #[serde(flatten)]
    pub end: End,
    /// Seconds the install took on the device (update source found to installed), if one ran.
    pub install_seconds: Option<f64>,
    /// Seconds QEMU ran.
    pub seconds: f64,
}

/// What one step came to.
#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    /// The step as given.
    pub step: String,
    /// What was expected.
    pub expect: Expect,
    /// Did the device do it.
    pub passed: bool,
    /// Why not, or what the device said.
    pub message: String,
    /// Version running before the step.
    pub from_version: String,
    /// Version running after it.
    pub to_version: Option<String>,
    /// The version the bundle's manifest names, when the harness could read it.
    pub bundle_version: Option<String>,
    /// Install time on the device.
    pub install_seconds: Option<f64>,
    /// Reboot after the install to ready on the new version.
    pub reboot_to_ready_seconds: Option<f64>,
    /// From the reboot after a broken install to ready on the previous version.
    pub rollback_seconds: Option<f64>,
    /// Boots of the new version that failed before the fallback.
    pub failed_attempts: u32,
    /// Every QEMU run of the step.
    pub boots: Vec<BootRun>,
    /// Seconds the step took.
    pub seconds: f64,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Base image directory.
    pub image: PathBuf,
    /// Image name.
    pub name: String,
    /// Architecture.
    pub arch: String,
    /// Version the base image runs.
    pub base_version: String,
    /// How bundles reached the device.
    pub via: Via,
    /// The machine id the device made at its first boot (kept on the data partition: every
    /// later boot must report the same one).
    pub machine_id: Option<String>,
    /// The first boot.
    pub first_boot: Option<BootRun>,
    /// Each step.
    pub steps: Vec<StepResult>,
    /// Why the run stopped early, if it did.
    pub error: Option<String>,
    /// Seconds the run took.
    pub seconds: f64,
}

impl Report {
    /// Every step passed and nothing stopped the run.
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.steps.iter().all(|s| s.passed)
    }

    /// JUnit XML: one testcase per step (and one for the first boot).
    pub fn junit_xml(&self) -> String {
        use crate::boottest::report::xml_escape as esc;
        let mut cases = String::new();
        let mut failures = 0;
        let mut case = |name: &str, secs: f64, failure: Option<&str>, out: &str| {
            cases.push_str(&format!(
                "    <testcase classname=\"ota-test.{}\" name=\"{}\" time=\"{secs:.3}\">\n",
                esc(&self.name),
                esc(name)
            ));
            if let Some(f) = failure {
                failures += 1;
                cases.push_str(&format!("      <failure message=\"{}\"/>\n", esc(f)));
            }
            cases.push_str(&format!(
                "      <system-out>{}</system-out>\n    </testcase>\n",
                esc(out)
            ));
        };
        let logs = |b: &[BootRun]| {
            b.iter()
                .map(|r| r.log.display().to_string())
                .collect::<Vec<_>>()
                .join("\n")
        };
        if let Some(b) = &self.first_boot {
            let fail = b
                .ready
                .is_none()
                .then(|| format!("first boot: {:?}", b.end));
            case(
                "first boot",
                b.seconds,
                fail.as_deref(),
                &logs(std::slice::from_ref(b)),
            );
        }
        for (i, s) in self.steps.iter().enumerate() {
            case(
                &format!("step {}: {}", i + 1, s.step),
                s.seconds,
                (!s.passed).then_some(s.message.as_str()),
                &format!("{}\n{}", s.message, logs(&s.boots)),
            );
        }
        if let Some(e) = &self.error {
            case("run", 0.0, Some(e), "");
        }
        let tests = self.steps.len()
            + usize::from(self.first_boot.is_some())
            + usize::from(self.error.is_some());
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n  <testsuite name=\"ota-test {}\" tests=\"{tests}\" failures=\"{failures}\" time=\"{:.3}\">\n{cases}  </testsuite>\n</testsuites>\n",
            esc(&self.name),
            self.seconds
        )
    }
}

/// What the harness waits for in one run.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Until {
    /// The ready line (then the VM is stopped).
    Ready,
    /// After the ready line: the updater's verdict, a reboot, or the cut marker.
    Install(Option<Cut>),
}

/// The line the updater prints when an install is complete (before it reboots).
const INSTALLED: &str = "ingot-update: installed ";
/// The line `ingot-update auto` prints when an install from a source it found did not happen.
const AUTO_DONE: &str = "ingot-update: auto: no update installed";
/// The line it prints when it starts on a source it found.
const FOUND: &str = "ingot-update: found an update source";

struct Device<'a> {
    spec: VmSpec,
    vars: PathBuf,
    opts: &'a Options,
    runs: usize,
    say: &'a dyn Fn(String),
}

impl Device<'_> {
    /// One QEMU run on the device's disk, `media` attached or not.
    fn boot(&mut self, media: Option<&Path>, until: Until) -> Result<BootRun> {
        self.runs += 1;
        let log = self
            .opts
            .log_dir
            .join(format!("ota-{:02}.console.log", self.runs));
        let mut spec = self.spec.clone();
        spec.media = media.map(Path::to_path_buf);
        let timeout = match until {
            // An install reads the bundle three times and writes a slot, under emulation.
            Until::Install(_) => self.opts.timeout * 4,
            Until::Ready => self.opts.timeout,
        };
        let start = Instant::now();
        let (mut child, _registered) =
            qemu::start_vm(&spec, &qemu::args(&spec, &self.vars, false), Stdio::piped())?;
        let rx = console_lines(&mut child)?;
        let mut console = Console::new(spec.arch);
        let mut all: Vec<String> = Vec::new();
        let (mut ready, mut ready_at) = (None, None);
        let (mut found_at, mut installed_at) = (None, None);
        let mut cut_at: Option<Instant> = None;
        let (mut verdict, mut verdict_at): (Option<End>, Option<Instant>) = (None, None);
        let mut last_line = String::new();
        let end = loop {
            if crate::interrupt::requested() {
                break End::Interrupted;
            }
            if verdict_at.is_some_and(|t| t.elapsed() > Duration::from_secs(20)) {
                if let Some(v) = verdict.take() {
                    break v;
                }
            }
            if let Some(t) = cut_at {
                // Into the slot write by a little; right at the marker for the later points,
                // whose next step takes the guest only milliseconds.
                let delay = match until {
                    Until::Install(Some(Cut::Slot)) => Duration::from_millis(300),
                    _ => Duration::ZERO,
                };
                if t.elapsed() >= delay {
                    let late = all.iter().any(|l| {
                        l.contains("ingot-update: checking slot")
                            || l.contains("ingot-update: copying linux")
                            || l.contains("ingot-update: installed")
                    });
                    let late = late && matches!(until, Until::Install(Some(Cut::Slot)));
                    break End::Cut { late };
                }
            }
            let Some(left) = timeout.checked_sub(start.elapsed()) else {
                let f = console.timeout(timeout.as_secs());
                let detail = match f {
                    crate::boottest::console::Failure::Timeout { stall: Some(s), .. } => {
                        format!("the guest kernel reported a stall: {s}")
                    }
                    _ => format!("last console line: `{}`", last_line.trim()),
                };
                break End::Hang {
                    detail: format!("nothing decisive within {}s; {detail}", timeout.as_secs()),
                };
            };
            match rx.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(Some(line)) => {
                    let at = start.elapsed().as_secs_f64();
                    all.push(format!("[{at:8.3}] {line}"));
                    if !line.trim().is_empty() {
                        last_line = line.clone();
                    }
                    if let Seen::Ready(r) = console.feed(&line, at) {
                        ready = Some(r);
                        ready_at = Some(at);
                        if until == Until::Ready {
                            break End::Ready;
                        }
                        continue;
                    }
                    if line.contains(FOUND) {
                        found_at = Some(at);
                    }
                    if line.contains(INSTALLED) {
                        installed_at = Some(at);
                    }
                    if let Until::Install(cut) = until {
                        // The updater cleans up (and unmounts the ESP) after its verdict, then
                        // says it is done: stop only then, as a user would, not mid-cleanup.
                        if line.contains(AUTO_DONE) {
                            if let Some(v) = verdict.take() {
                                break v;
                            }
                        }
                        if let Some(p) = line.find("ingot-update: rejected:") {
                            verdict.get_or_insert(End::Rejected {
                                line: line[p..].trim().to_string(),
                            });
                            verdict_at.get_or_insert_with(Instant::now);
                        }
                        if let Some(p) = line.find("ingot-update: failed:") {
                            verdict.get_or_insert(End::Failed {
                                line: line[p..].trim().to_string(),
                            });
                            verdict_at.get_or_insert_with(Instant::now);
                        }
                        if let Some(c) = cut {
                            if cut_at.is_none() && line.contains(c.marker()) {
                                cut_at = Some(Instant::now());
                                if c != Cut::Slot {
                                    break End::Cut { late: false };
                                }
                            }
                        }
                    }
                }
                Ok(None) => break End::Exited,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break End::Exited,
            }
        };
        // Kill at once: for a power cut this is the cut itself.
        drop(child);
        let seconds = start.elapsed().as_secs_f64();
        std::fs::write(&log, all.join("\n") + "\n")
            .with_context(|| format!("writing {}", log.display()))?;
        let run = BootRun {
            log,
            media: media.is_some(),
            ready,
            ready_seconds: ready_at,
            end,
            install_seconds: match (found_at, installed_at) {
                (Some(a), Some(b)) => Some(b - a),
                _ => None,
            },
            seconds,
        };
        (self.say)(format!(
            "  boot {}{}: {} in {:.1}s{}",
            self.runs,
            if run.media { " (update media)" } else { "" },
            describe(&run),
            run.seconds,
            run.ready
                .as_ref()
                .map(|r| format!(
                    " [version {} slot {}{}]",
                    r.version,
                    r.slot.as_deref().unwrap_or("?"),
                    if r.rollback { " rollback" } else { "" }
                ))
                .unwrap_or_default()
        ));
        Ok(run)
    }
}

fn describe(r: &BootRun) -> String {
    match &r.end {
        End::Ready => "ready".into(),
        End::Exited if r.install_seconds.is_some() => "installed, rebooted".into(),
        End::Exited => "rebooted".into(),
        End::Rejected { line } | End::Failed { line } => line.clone(),
        End::Cut { late: false } => "power cut".into(),
        End::Cut { late: true } => "power cut (late)".into(),
        End::Hang { detail } => format!("hang: {detail}"),
        End::Interrupted => "interrupted".into(),
    }
}

fn agents_ok(r: &Ready) -> bool {
    !r.agents.is_empty() && r.agents.iter().all(|(_, s)| s == "ok")
}

/// A tiny HTTP/1.0 server on 127.0.0.1 serving one file (whichever the current step names)
/// for any GET, until dropped. Bounded: one request at a time, a header of at most 16 KiB,
/// 30 s per connection.
struct Server {
    port: u16,
    file: Arc<Mutex<PathBuf>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start() -> Result<Self> {
        let l = TcpListener::bind("127.0.0.1:0").context("binding a port on 127.0.0.1")?;
        l.set_nonblocking(true)?;
        let port = l.local_addr()?.port();
        let file = Arc::new(Mutex::new(PathBuf::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (f2, s2) = (file.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s2.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((c, _)) => {
                        let path = f2.lock().map(|p| p.clone()).unwrap_or_default();
                        let _ = serve(c, &path);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        });
        Ok(Server {
            port,
            file,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(c: TcpStream, path: &Path) -> Result<()> {
    c.set_nonblocking(false)?;
    c.set_read_timeout(Some(Duration::from_secs(30)))?;
    c.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut r = BufReader::new(c.try_clone()?);
    let mut seen = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        seen += line.len();
        if seen > 16 << 10 {
            bail!("request header too long");
        }
    }
    let mut c = c;
    match std::fs::File::open(path) {
        Ok(mut f) => {
            let len = f.metadata()?.len();
            write!(
                c,
                "HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
            )?;
            std::io::copy(&mut f, &mut c)?;
        }
        Err(_) => write!(c, "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n")?,
    }
    c.flush()?;
    Ok(())
}

/// The media disk for `--via http`: one line naming the URL, padded to a sector multiple.
fn pointer_media(path: &Path, port: u16) -> Result<()> {
    let mut text = format!("INGOT-UPDATE-URL http://10.0.2.2:{port}/update.bundle\n").into_bytes();
    text.resize(4096, 0);
    crate::base::fsx::write(path, text)
}

/// The media disk for `--via disk`: a copy of the bundle padded to whole sectors (QEMU
/// attaches a raw file whose size is not a sector multiple with a warning and rounds down).
fn bundle_media(bundle: &Path, path: &Path) -> Result<()> {
    let mut data =
        std::fs::read(bundle).with_context(|| format!("reading {}", bundle.display()))?;
    let len = data.len().div_ceil(512).max(1) * 512;
    data.resize(len, 0);
    crate::base::fsx::write(path, data)
}

/// Run the steps against the image in `base`.
pub fn run(base: &ImageDir, spec: VmSpec, steps: &[Step], opts: &Options) -> Result<Report> {
    let start = Instant::now();
    let live = crate::progress::live(opts.quiet);
    let say = |s: String| {
        if !opts.quiet || live {
            eprintln!("{s}");
        }
    };
    let work = crate::base::fsx::scratch_dir("ingot-ota-test")?;
    let overlay = work.path().join("device.qcow2");
    let raw = base
        .disk()
        .canonicalize()
        .with_context(|| format!("{}: no disk.raw", base.path.display()))?;
    let out = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(&raw)
        .arg(&overlay)
        .output()
        .context("running qemu-img (Debian package qemu-utils)")?;
    if !out.status.success() {
        bail!(
            "qemu-img create failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let vars = work.path().join("vars.fd");
    let template = qemu::vars_template(&spec);
    std::fs::copy(&template, &vars)
        .with_context(|| format!("copying UEFI variables {}", template.display()))?;
    std::fs::create_dir_all(&opts.log_dir)
        .with_context(|| format!("creating {}", opts.log_dir.display()))?;
    let server = match opts.via {
        Via::Http => Some(Server::start()?),
        Via::Disk => None,
    };
    let media = work.path().join("media.img");
    let mut dev = Device {
        spec: VmSpec {
            disk: overlay.clone(),
            persistent: true,
            media: None,
            ..spec
        },
        vars,
        opts,
        runs: 0,
        say: &say,
    };
    let m = &base.manifest;
    let mut report = Report {
        image: base.path.clone(),
        name: m.image.clone(),
        arch: m.arch.clone(),
        base_version: m.version.clone(),
        via: opts.via,
        machine_id: None,
        first_boot: None,
        steps: Vec::new(),
        error: None,
        seconds: 0.0,
    };
    say(format!("{}: first boot", base.path.display()));
    let first = dev.boot(None, Until::Ready)?;
    let mut current = match &first.ready {
        Some(r) if r.version == m.version && agents_ok(r) && r.slot.is_some() => r.clone(),
        Some(r) if r.slot.is_none() => {
            report.error = Some(format!(
                "{} is not an A/B image (its ready line names no slot): build it for hardware with an [ab] table",
                base.path.display()
            ));
            report.first_boot = Some(first);
            report.seconds = start.elapsed().as_secs_f64();
            return Ok(report);
        }
        _ => {
            report.error = Some(format!(
                "the first boot did not come up ready: {}",
                describe(&first)
            ));
            report.first_boot = Some(first);
            report.seconds = start.elapsed().as_secs_f64();
            return Ok(report);
        }
    };
    report.machine_id = Some(current.machine_id.clone());
    report.first_boot = Some(first);
    for (i, step) in steps.iter().enumerate() {
        if crate::interrupt::requested() {
            report.error = Some("interrupted".into());
            break;
        }
        say(format!("step {}: {}", i + 1, step.text));
        let t = Instant::now();
        match opts.via {
            Via::Disk => bundle_media(&step.bundle, &media)?,
            Via::Http => {
                let s = server.as_ref().context("no HTTP server")?;
                if let Ok(mut f) = s.file.lock() {
                    *f = step.bundle.clone();
                }
                pointer_media(&media, s.port)?;
            }
        }
        let mut r = run_step(&mut dev, step, &current, &media)?;
        // Every boot after the first must report the machine id the device made then: it
        // lives on the data partition, which updates and rollbacks leave alone.
        if let (Some(mid), Some(rd)) = (
            &report.machine_id,
            r.boots.iter().rev().find_map(|b| b.ready.as_ref()),
        ) {
            if &rd.machine_id != mid && r.passed {
                r.passed = false;
                r.message = format!(
                    "the machine id changed from {mid} to {}: the data partition did not survive",
                    rd.machine_id
                );
            }
        }
        r.seconds = t.elapsed().as_secs_f64();
        say(format!(
            "step {}: {} — {}",
            i + 1,
            if r.passed { "ok" } else { "FAILED" },
            r.message
        ));
        if let Some(last) = r.boots.iter().rev().find_map(|b| b.ready.clone()) {
            current = last;
        }
        let stop = r.boots.iter().any(|b| matches!(b.end, End::Interrupted));
        report.steps.push(r);
        if stop {
            report.error = Some("interrupted".into());
            break;
        }
    }
    drop(server);
    if let Some(k) = &opts.keep_disk {
        crate::base::fsx::rename(&overlay, k)
            .or_else(|_| {
                std::fs::copy(&overlay, k)
                    .map(|_| ())
                    .map_err(anyhow::Error::from)
            })
            .with_context(|| format!("keeping the device disk as {}", k.display()))?;
    }
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

fn run_step(
    dev: &mut Device<'_>,
    step: &Step,
    current: &Ready,
    media: &Path,
) -> Result<StepResult> {
    let bundle_version = Bundle::read(&step.bundle).ok().map(|b| b.manifest.version);
    let mut r = StepResult {
        step: step.text.clone(),
        expect: step.expect,
        passed: false,
        message: String::new(),
        from_version: current.version.clone(),
        to_version: None,
        bundle_version: bundle_version.clone(),
        install_seconds: None,
        reboot_to_ready_seconds: None,
        rollback_seconds: None,
        failed_attempts: 0,
        boots: Vec::new(),
        seconds: 0.0,
    };
    let cut = match step.expect {
        Expect::PowerCut(c) => Some(c),
        _ => None,
    };
    let install = dev.boot(Some(media), Until::Install(cut))?;
    r.install_seconds = install.install_seconds;
    let end = install.end.clone();
    let ready_before = install.ready.clone();
    r.boots.push(install);
    if let Some(rd) = &ready_before {
        if rd.version != current.version {
            r.message = format!(
                "the device came up on {} with the update media attached, expected {}",
                rd.version, current.version
            );
            return Ok(r);
        }
    }
    match (step.expect, &end) {
        (_, End::Hang { detail }) => {
            r.message = format!("hang, not an update result: {detail}");
            return Ok(r);
        }
        (_, End::Interrupted) => {
            r.message = "interrupted".into();
            return Ok(r);
        }
        (Expect::Rejected, End::Rejected { line }) => {
            r.message = line.clone();
            let check = dev.boot(None, Until::Ready)?;
            let v = check.ready.as_ref().map(|x| x.version.clone());
            r.to_version = v.clone();
            r.passed = v.as_deref() == Some(current.version.as_str())
                && check.ready.as_ref().is_some_and(agents_ok);
            if !r.passed {
                r.message = format!("{line}; but the next boot was {}", describe(&check));
            }
            r.boots.push(check);
            return Ok(r);
        }
        (Expect::Rejected, other) => {
            r.message = format!(
                "expected the device to refuse the bundle; it {}",
                end_words(other)
            );
            return Ok(r);
        }
        (_, End::Rejected { line }) | (_, End::Failed { line }) => {
            r.message = format!("the device refused or failed the install: {line}");
            return Ok(r);
        }
        (Expect::PowerCut(_), End::Cut { late }) => {
            let check = dev.boot(None, Until::Ready)?;
            let came = check.ready.clone();
            r.boots.push(check);
            match &came {
                Some(x) if x.version == current.version && agents_ok(x) => {}
                // The guest finished the boot entry in the instant between its marker line
                // and the kill: it boots the new version, which is a good outcome, but this
                // run did not test the point it aimed at, and says so.
                Some(x)
                    if bundle_version.as_deref() == Some(x.version.as_str()) && agents_ok(x) =>
                {
                    r.to_version = Some(x.version.clone());
                    r.passed = true;
                    r.message = format!(
                        "the cut came after the boot entry was complete: the device came up on {} (the point was not hit; run again to test it)",
                        x.version
                    );
                    return Ok(r);
                }
                _ => {
                    r.message = format!(
                        "after the power cut the device did not come up on {}: {}",
                        current.version,
                        describe(r.boots.last().context("no boot")?)
                    );
                    return Ok(r);
                }
            }
            // Install the same bundle again: it must now succeed.
            let again = dev.boot(Some(media), Until::Install(None))?;
            let again_end = again.end.clone();
            r.install_seconds = again.install_seconds.or(r.install_seconds);
            r.boots.push(again);
            if again_end != End::Exited {
                r.message = format!(
                    "after the power cut, installing again did not complete: it {}",
                    end_words(&again_end)
                );
                return Ok(r);
            }
            let note = if *late {
                " (the cut came after the slot was written)"
            } else {
                ""
            };
            return finish_update(dev, &mut r, bundle_version.as_deref(), current, note);
        }
        (Expect::PowerCut(_), other) => {
            r.message = format!(
                "the updater never reached the cut point; it {}",
                end_words(other)
            );
            return Ok(r);
        }
        (_, End::Exited) => {}
        (_, other) => {
            r.message = format!("expected an install and a reboot; it {}", end_words(other));
            return Ok(r);
        }
    }
    match step.expect {
        Expect::Updated => finish_update(dev, &mut r, bundle_version.as_deref(), current, ""),
        Expect::RolledBack => {
            let mut secs = 0.0;
            // tries (at most 10) failed boots, then the fallback.
            for _ in 0..12 {
                let b = dev.boot(None, Until::Ready)?;
                secs += b.seconds;
                let ready = b.ready.clone();
                let end = b.end.clone();
                r.boots.push(b);
                match (&ready, &end) {
                    (Some(x), _) if agents_ok(x) => {
                        r.to_version = Some(x.version.clone());
                        r.rollback_seconds = Some(secs);
                        r.passed = x.version == current.version && x.rollback;
                        r.message = if r.passed {
                            format!(
                                "{} failed {} boot(s); back on {} with the rollback flag after {secs:.1}s",
                                bundle_version.as_deref().unwrap_or("the new version"),
                                r.failed_attempts,
                                x.version
                            )
                        } else if x.version != current.version {
                            format!(
                                "the device came up on {}, expected a rollback to {}",
                                x.version, current.version
                            )
                        } else {
                            "back on the previous version, but its ready line has no rollback flag"
                                .into()
                        };
                        return Ok(r);
                    }
                    (_, End::Exited) => r.failed_attempts += 1,
                    (_, End::Hang { detail }) => {
                        r.message = format!("hang, not a failed attempt: {detail}");
                        return Ok(r);
                    }
                    _ => {
                        r.message = format!(
                            "unexpected boot: {}",
                            describe(r.boots.last().context("no boot")?)
                        );
                        return Ok(r);
                    }
                }
            }
            r.message = format!("no good boot after {} failed attempts", r.failed_attempts);
            Ok(r)
        }
        _ => Ok(r),
    }
}

fn end_words(e: &End) -> String {
    match e {
        End::Ready => "stayed up without acting on the media".into(),
        End::Exited => "installed it and rebooted".into(),
        End::Rejected { line } => format!("refused it: {line}"),
        End::Failed { line } => format!("failed: {line}"),
        End::Cut { .. } => "was cut".into(),
        End::Hang { detail } => format!("hung: {detail}"),
        End::Interrupted => "was interrupted".into(),
    }
}

/// After an install that rebooted: the next boot must be the bundle's version, ready.
fn finish_update(
    dev: &mut Device<'_>,
    r: &mut StepResult,
    want: Option<&str>,
    current: &Ready,
    note: &str,
) -> Result<StepResult> {
    let b = dev.boot(None, Until::Ready)?;
    let ready = b.ready.clone();
    r.reboot_to_ready_seconds = b.ready_seconds;
    let desc = describe(&b);
    r.boots.push(b);
    match ready {
        Some(x) if agents_ok(&x) => {
            r.to_version = Some(x.version.clone());
            let slot_changed = x.slot != current.slot;
            r.passed = want.is_none_or(|w| w == x.version)
                && x.version != current.version
                && slot_changed
                && !x.rollback;
            r.message = if r.passed {
                format!(
                    "{} → {} on slot {}{note}",
                    current.version,
                    x.version,
                    x.slot.as_deref().unwrap_or("?")
                )
            } else {
                format!(
                    "after the install the device came up on {} slot {} (rollback {}), expected {} on the other slot",
                    x.version,
                    x.slot.as_deref().unwrap_or("?"),
                    x.rollback,
                    want.unwrap_or("a new version")
                )
            };
        }
        _ => r.message = format!("the new version did not come up ready: {desc}"),
    }
    Ok(r.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_parse_and_bad_ones_say_why() {
        let s: Step = "/x/a:b/update.bundle:power-cut@kernel".parse().unwrap();
        assert_eq!(s.bundle, PathBuf::from("/x/a:b/update.bundle"));
        assert_eq!(s.expect, Expect::PowerCut(Cut::Kernel));
        assert_eq!(
            "b:power-cut".parse::<Step>().unwrap().expect,
            Expect::PowerCut(Cut::Slot)
        );
        assert_eq!(
            "b:rolled-back".parse::<Step>().unwrap().expect,
            Expect::RolledBack
        );
        let e = "b:installed".parse::<Step>().unwrap_err();
        assert!(e.contains("`installed`"), "{e}");
        assert!("nocolon".parse::<Step>().is_err());
        assert!(":updated".parse::<Step>().is_err());
    }

    #[test]
    fn the_http_server_serves_the_current_file_and_stops() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("b");
        std::fs::write(&f, b"bundle bytes").unwrap();
        let s = Server::start().unwrap();
        *s.file.lock().unwrap() = f.clone();
        let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        c.write_all(b"GET /update.bundle HTTP/1.0\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut got = String::new();
        std::io::Read::read_to_string(&mut c, &mut got).unwrap();
        assert!(
            got.starts_with("HTTP/1.0 200 OK\r\n") && got.contains("Content-Length: 12\r\n"),
            "{got}"
        );
        assert!(got.ends_with("\r\n\r\nbundle bytes"), "{got}");
        drop(s);
    }
}
