//! The fuzz targets' entry points in the fast lane, for toolchains without cargo-fuzz: every
//! seed of fuzz/corpus/<target>/, then a fixed number of deterministic mutations of each (bit
//! flips, truncations, duplicated and zeroed runs). A panic, or a target taking seconds on one
//! input, fails the test. Also VMDK and VHDX seeds made with qemu-img, when it is installed.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

/// Mutations per seed.
const ROUNDS: u64 = 300;
/// What one input may take at most.
const PER_INPUT: Duration = Duration::from_secs(5);

/// xorshift64*: deterministic, so a failure replays the same way.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut d = seed.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(5) {
            0 if !d.is_empty() => {
                let i = rng.below(d.len());
                d[i] ^= 1 << rng.below(8);
            }
            1 => d.truncate(rng.below(d.len() + 1)),
            2 if !d.is_empty() => {
                let a = rng.below(d.len());
                let b = (a + rng.below(64)).min(d.len());
                let run = d[a..b].to_vec();
                d.splice(a..a, run);
            }
            3 if !d.is_empty() => {
                let a = rng.below(d.len());
                let b = (a + rng.below(16)).min(d.len());
                d[a..b].fill(if rng.below(2) == 0 { 0 } else { 0xff });
            }
            _ if !d.is_empty() => {
                let i = rng.below(d.len());
                d[i] = b"0123456789:\n =[]\"-+"[rng.below(19)];
            }
            _ => d.push(rng.next() as u8),
        }
    }
    d
}

fn replay(target: &str, name: &str, seed: &[u8]) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ seed.len() as u64 ^ target.len() as u64);
    for round in 0..=ROUNDS {
        let input = if round == 0 {
            seed.to_vec()
        } else {
            mutate(seed, &mut rng)
        };
        let start = Instant::now();
        assert!(
            ingot::fuzzing::run(target, &input),
            "unknown target {target}"
        );
        assert!(
            start.elapsed() < PER_INPUT,
            "{target}: {name} round {round} took {:?}",
            start.elapsed()
        );
    }
}

#[test]
fn every_target_has_a_fuzz_binary_and_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for t in ingot::fuzzing::TARGETS {
        assert!(
            root.join("fuzz_targets").join(format!("{t}.rs")).is_file(),
            "fuzz/fuzz_targets/{t}.rs"
        );
        let seeds = std::fs::read_dir(root.join("corpus").join(t))
            .unwrap_or_else(|e| panic!("fuzz/corpus/{t}: {e}"))
            .count();
        assert!(seeds > 0, "fuzz/corpus/{t} has no seed");
    }
    assert!(!ingot::fuzzing::run("no-such-target", b""));
}

#[test]
fn corpus_and_mutations_replay_without_panics() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for t in ingot::fuzzing::TARGETS {
        let mut seeds: Vec<_> = std::fs::read_dir(root.join(t))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        seeds.sort();
        for s in seeds {
            let data = std::fs::read(&s).unwrap();
            replay(t, &s.display().to_string(), &data);
        }
    }
}

#[test]
fn converted_disk_headers_made_by_qemu_img_replay() {
    let t = tempfile::tempdir().unwrap();
    for fmt in ["vmdk", "vhdx"] {
        let p = t.path().join(format!("seed.{fmt}"));
        let made = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", fmt])
            .arg(&p)
            .arg("1M")
            .status();
        if !made.is_ok_and(|s| s.success()) {
            eprintln!("qemu-img not installed: {fmt} seed skipped");
            continue;
        }
        let data = std::fs::read(&p).unwrap();
        // The real header pins cleanly…
        let mut pinned = data.clone();
        ingot::disk::pin_bytes(&mut pinned, fmt, "seed-1.0.0-x86_64")
            .unwrap_or_else(|e| panic!("{fmt}: {e:#}"));
        assert_ne!(pinned, data, "{fmt}: nothing was pinned");
        // …and mutations of it never panic.
        replay("disk_headers", fmt, &data[..data.len().min(4 << 20)]);
    }
}
