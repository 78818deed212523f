//! Where a boot's time went: firmware, boot loader, kernel, initramfs, init, each agent's probe,
//! the check-in. Worked out from the console log boot-test writes (host seconds since QEMU
//! started on every line) and the guest's own uptimes: the ready line's `uptime`, `start` and
//! `probes`, and the initramfs's `initramfs-uptime=A..B` line. The kernel's start is the ready
//! line's host time less its guest uptime. Pure: tested on recorded logs.

use serde::{Deserialize, Serialize};

use super::console::Ready;

/// One phase of a boot, in host seconds since QEMU started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    /// `firmware`, `boot loader`, `kernel`, `initramfs`, `init`, `agent NAME`, `check-in`.
    pub name: String,
    /// Start.
    pub start: f64,
    /// End.
    pub end: f64,
}

impl Phase {
    /// Its length.
    pub fn seconds(&self) -> f64 {
        self.end - self.start
    }
}

fn stamped(raw: &str) -> Option<(f64, &str)> {
    let (t, rest) = raw.strip_prefix('[')?.split_once("] ")?;
    Some((t.trim().parse().ok()?, rest))
}

fn num(s: &str) -> Option<f64> {
    s.trim()
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v >= 0.0)
}

/// The phases of a boot that reached `ready` at host time `ready_at`, from its console log.
/// Phases the log does not show are left out (a foreign firmware prints no `BdsDxe` line); an
/// empty list means the ready line carried no uptime.
pub fn phases(log: &str, ready: &Ready, ready_at: f64) -> Vec<Phase> {
    let Some(up) = num(&ready.uptime) else {
        return Vec::new();
    };
    let kernel = (ready_at - up).max(0.0);
    let mut loader = None;
    let mut initramfs = None;
    for raw in log.lines() {
        let Some((t, line)) = stamped(raw) else {
            continue;
        };
        if loader.is_none() && line.contains("BdsDxe: starting") {
            loader = Some(t.min(kernel));
        }
        if let Some(i) = line.find("initramfs-uptime=") {
            let v = line[i + 17..].split_whitespace().next().unwrap_or("");
            if let Some((a, b)) = v.split_once("..") {
                if let (Some(a), Some(b)) = (num(a), num(b)) {
                    initramfs = Some((kernel + a, kernel + b));
                }
            }
        }
    }
    let mut out = Vec::new();
    let mut push = |name: &str, start: f64, end: f64| {
        if end >= start {
            out.push(Phase {
                name: name.into(),
                start,
                end,
            });
        }
    };
    match loader {
        Some(l) => {
            push("firmware", 0.0, l);
            push("boot loader", l, kernel);
        }
        None => push("firmware and boot loader", 0.0, kernel),
    }
    let mut at = kernel;
    if let Some((a, b)) = initramfs {
        push("kernel", kernel, a);
        push("initramfs", a, b);
        at = b;
    }
    let start = ready.start.as_deref().and_then(num).map(|s| kernel + s);
    if let Some(s) = start {
        push(
            if initramfs.is_some() {
                "init"
            } else {
                "kernel and init"
            },
            at,
            s,
        );
        at = s;
        let mut last = s;
        for (name, t) in &ready.probes {
            if let Some(t) = num(t) {
                push(&format!("agent {name}"), s, kernel + t);
                last = last.max(kernel + t);
            }
        }
        at = at.max(last);
    }
    let last = if start.is_some() {
        "check-in"
    } else if initramfs.is_some() {
        "init"
    } else {
        "kernel and init"
    };
    push(last, at, ready_at.max(at));
    out
}

/// The longest phase, in words: `init took 14.2 s of 21.0 s`.
pub fn slowest(phases: &[Phase]) -> Option<String> {
    let total = phases.iter().map(|p| p.end).fold(0.0, f64::max);
    phases
        .iter()
        .max_by(|a, b| a.seconds().total_cmp(&b.seconds()))
        .map(|p| format!("{} took {:.1} s of {:.1} s", p.name, p.seconds(), total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boottest::console::parse_ready;

    const LOG: &str = "[   2.155] BdsDxe: loading Boot0002 \"UEFI Misc Device\"\n[   2.157] BdsDxe: starting Boot0002 \"UEFI Misc Device\"\n[   3.900] ingot-initramfs: starting /sbin/init initramfs-uptime=0.80..1.10\n[   6.671] INGOT-READY image=e version=1 machine-id=0123 agents=heartbeat:ok,network:ok uptime=3.79 start=2.50 probes=heartbeat:3.60,network:3.70\n";

    #[test]
    fn phases_follow_each_other_and_end_at_the_ready_line() {
        let line = LOG.lines().last().unwrap();
        let r = parse_ready(line).unwrap();
        let p = phases(LOG, &r, 6.671);
        let names: Vec<&str> = p.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "firmware",
                "boot loader",
                "kernel",
                "initramfs",
                "init",
                "agent heartbeat",
                "agent network",
                "check-in"
            ]
        );
        let k = 6.671 - 3.79;
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(p[0].end, 2.157) && close(p[1].end, k));
        assert!(close(p[3].start, k + 0.8) && close(p[3].end, k + 1.1));
        assert!(close(p[4].end, k + 2.5) && close(p[6].end, k + 3.7));
        assert!(close(p[7].end, 6.671));
        assert_eq!(slowest(&p).unwrap(), "firmware took 2.2 s of 6.7 s");
    }

    #[test]
    fn a_log_without_markers_still_gives_what_it_can() {
        let r =
            parse_ready("INGOT-READY image=e version=1 machine-id=0 agents= uptime=4.0").unwrap();
        let p = phases("[ 9.0] INGOT-READY ...\n", &r, 9.0);
        let names: Vec<&str> = p.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["firmware and boot loader", "kernel and init"]);
        let r = parse_ready("INGOT-READY image=e version=1 uptime=nan").unwrap();
        assert!(phases("", &r, 1.0).is_empty());
    }
}
