//! The UEFI variable store each boot starts from: a copy of the firmware's template, primed once
//! per firmware and machine type by starting the firmware alone (no disk, no network).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::VmSpec;

/// The variable store every boot copies: the firmware's template after the firmware has
/// started once on this machine type with no disk and no network attached, so that it has
/// written its own settings (console, language, memory map hints) and holds no boot entry for
/// any image. Made once and kept beside the template; measured here under TCG, OVMF reaches
/// the boot loader about 1 s sooner from it. Falls back to the pristine template when the
/// firmware does not reach its shell.
fn vars_template(spec: &VmSpec, pristine: &Path) -> PathBuf {
    match primed_vars(spec, pristine) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("note: using the pristine UEFI variable store: {e:#}");
            pristine.to_path_buf()
        }
    }
}

/// This boot's private UEFI variable store at `dest`, which [`super::args`] hands to QEMU,
/// copied from [`vars_template`]. A BIOS keeps no state: nothing is written.
pub fn copy_vars(spec: &VmSpec, dest: &Path) -> Result<()> {
    if let Some(pristine) = &spec.vars {
        let template = vars_template(spec, pristine);
        std::fs::copy(&template, dest)
            .with_context(|| format!("copying UEFI variables {}", template.display()))?;
    }
    Ok(())
}

/// Text every boot of this machine configuration shares, naming the primed store.
fn machine_key(spec: &VmSpec) -> String {
    use sha2::{Digest, Sha256};
    let q = &spec.hw.qemu;
    let text = format!(
        "{}\n{}\n{}\n{}\n{:?}\n{}",
        spec.arch.qemu_binary(),
        q.machine,
        q.cpu,
        q.memory,
        spec.accel,
        q.extra_args.join(" ")
    );
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

fn primed_vars(spec: &VmSpec, pristine: &Path) -> Result<PathBuf> {
    let name = pristine
        .file_name()
        .context("variable store has no file name")?
        .to_string_lossy();
    let dest = pristine.with_file_name(format!("{name}.primed-{}", machine_key(spec)));
    if dest.exists() {
        return Ok(dest);
    }
    let tmp = dest.with_file_name(format!(
        ".{name}.primed.{}.{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _cleanup = crate::interrupt::TempGuard::new(tmp.clone());
    std::fs::copy(pristine, &tmp).with_context(|| format!("copying {}", pristine.display()))?;
    let mut a = super::args(spec, &tmp, false);
    // Firmware only: no disk, network or rng device, so no boot entry can be recorded.
    strip_devices(&mut a);
    let (mut child, _registered) = super::start_vm(spec, &a, Stdio::piped())?;
    let mut out = child.0.stdout.take().context("no stdout")?;
    let mut err = child.0.stderr.take().context("no stderr")?;
    // QEMU's own complaint, should it exit (memory it cannot have, a machine it lacks).
    let complaint = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut text);
        text
    });
    let (tx, rx) = mpsc::channel::<bool>();
    std::thread::spawn(move || {
        use std::io::Read;
        const MARK: &[u8] = b"startup.nsh";
        // The unread end of the previous chunk, so a mark split across reads is still seen.
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            // The UEFI shell's start-up countdown: boot manager work is over.
            if seen.windows(MARK.len()).any(|w| w == MARK) {
                let _ = tx.send(true);
                return;
            }
            seen.drain(..seen.len().saturating_sub(MARK.len() - 1));
        }
        let _ = tx.send(false);
    });
    let start = Instant::now();
    // Some(true): the shell was reached; Some(false): QEMU's output ended first; None: timeout.
    let reached = loop {
        if crate::interrupt::requested() {
            bail!("interrupted");
        }
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(r) => break Some(r),
            Err(mpsc::RecvTimeoutError::Timeout) if start.elapsed() < Duration::from_secs(60) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => break None,
            Err(mpsc::RecvTimeoutError::Disconnected) => break Some(false),
        }
    };
    drop(child);
    let complaint = complaint.join().unwrap_or_default();
    match reached {
        Some(true) => {}
        Some(false) => bail!(
            "QEMU exited before the firmware reached its shell{}",
            match complaint.trim() {
                "" => String::new(),
                c => format!(": {}", c.lines().last().unwrap_or(c)),
            }
        ),
        None => bail!("the firmware did not reach its shell without a disk within 60 s"),
    }
    std::fs::rename(&tmp, &dest).with_context(|| format!("writing {}", dest.display()))?;
    Ok(dest)
}

/// Remove the disk, network and rng devices (and their back ends) from an argument list.
fn strip_devices(a: &mut Vec<String>) {
    let mut out = Vec::with_capacity(a.len());
    let mut i = 0;
    while i < a.len() {
        let dev = matches!(a[i].as_str(), "-device" | "-netdev")
            || (a[i] == "-drive" && a.get(i + 1).is_some_and(|v| !v.starts_with("if=pflash")));
        if dev && i + 1 < a.len() {
            i += 2;
            continue;
        }
        out.push(a[i].clone());
        i += 1;
    }
    *a = out;
}

#[cfg(test)]
mod tests {
    #[test]
    fn priming_runs_the_firmware_without_devices() {
        let mut a: Vec<String> = [
            "-machine",
            "q35",
            "-drive",
            "if=pflash,format=raw,unit=0,file=code.fd",
            "-drive",
            "if=none,id=disk0,file=disk.raw",
            "-device",
            "virtio-blk-pci,drive=disk0",
            "-netdev",
            "user,id=net0",
            "-device",
            "virtio-net-pci,netdev=net0",
            "-serial",
            "stdio",
        ]
        .map(String::from)
        .to_vec();
        super::strip_devices(&mut a);
        assert_eq!(
            a,
            [
                "-machine",
                "q35",
                "-drive",
                "if=pflash,format=raw,unit=0,file=code.fd",
                "-serial",
                "stdio"
            ]
        );
    }
}
