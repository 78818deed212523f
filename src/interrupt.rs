//! Ctrl-C and SIGTERM: the first signal asks every stage to stop at its next check (downloads
//! between chunks, the disk writer between files, boot tests within half a second), so temporary
//! directories are removed and QEMU children killed by the normal unwinding path. A second
//! signal removes the registered temporary paths, kills registered children and exits at once.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static TEMP_PATHS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// The command was interrupted by a signal (exit status 130).
#[derive(Debug, thiserror::Error)]
#[error(
    "interrupted by a signal; temporary files were removed and existing images left as they were"
)]
pub struct Interrupted;

/// Install the handler once, at start-up.
pub fn install() {
    let _ = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            emergency_exit();
        }
        eprintln!("interrupted: stopping (a second Ctrl-C quits at once)");
    });
}

fn emergency_exit() -> ! {
    if let Ok(pids) = CHILDREN.lock() {
        for pid in pids.iter() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
    if let Ok(paths) = TEMP_PATHS.lock() {
        for p in paths.iter() {
            let _ = std::fs::remove_dir_all(p).or_else(|_| std::fs::remove_file(p));
        }
    }
    std::process::exit(130);
}

/// Has a signal arrived?
pub fn requested() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// Fail with [`Interrupted`] once a signal has arrived.
pub fn check() -> Result<(), Interrupted> {
    if requested() {
        Err(Interrupted)
    } else {
        Ok(())
    }
}

/// A temporary path removed on an emergency exit; unregistered when dropped.
pub struct TempGuard(PathBuf);

impl TempGuard {
    /// Register `path`.
    pub fn new(path: PathBuf) -> Self {
        if let Ok(mut v) = TEMP_PATHS.lock() {
            v.push(path.clone());
        }
        TempGuard(path)
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Ok(mut v) = TEMP_PATHS.lock() {
            v.retain(|p| *p != self.0);
        }
    }
}

/// A child process killed on an emergency exit; unregistered when dropped.
pub struct ChildGuard(u32);

impl ChildGuard {
    /// Register the child with this process id.
    pub fn new(pid: u32) -> Self {
        if let Ok(mut v) = CHILDREN.lock() {
            v.push(pid);
        }
        ChildGuard(pid)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(mut v) = CHILDREN.lock() {
            v.retain(|p| *p != self.0);
        }
    }
}
