//! `cargo bench --bench pipeline`: figures for the issue notes (a benchmark, not a test).
//!
//! 1. Warm resolve + fetch + unpack of `profiles/vm-base.toml` (x86_64), best of five runs after
//!    one run that fills the caches, and the process's peak RSS.
//! 2. The ext4 writer on that tree: MB/s of image data written and synced, against `dd` of the
//!    same byte count and `mke2fs -d` populating the same tree from a directory.
//! 3. That filesystem in a 4 GiB sparse disk: disk.raw.zst's compression and the SHA-256 of the
//!    whole file, against the `zstd` and `sha256sum` commands on the same file.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use ingot::config::{load_hardware, load_profile};
use ingot::fs::ext4;
use ingot::packages::{self, Source};
use ingot::tree::{Kind, Tree};

fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0)
        >> 10
}

fn secs(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

/// Write the tree to a host directory (for `mke2fs -d`; owners are not kept).
fn materialise(t: &Tree, dir: &Path) {
    for (p, e) in t.iter() {
        let dest = dir.join(p);
        match &e.kind {
            Kind::Dir => std::fs::create_dir_all(&dest).unwrap(),
            Kind::File(_) => {
                std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
                std::fs::write(&dest, t.read(p).unwrap_or_default()).unwrap();
            }
            Kind::Symlink(target) => {
                std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
                let _ = std::os::unix::fs::symlink(target, &dest);
            }
            Kind::HardLink(to) => {
                std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
                let _ = std::fs::hard_link(dir.join(to), &dest);
            }
            _ => {}
        }
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let profile = load_profile(&root.join("profiles/vm-base.toml")).unwrap();
    let hw = load_hardware(&root.join("hardware/qemu-x86_64.toml")).unwrap();
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let src = Source::new(None, &profile.distribution.suite, None, None, jobs, false).unwrap();

    let run = || {
        let set = packages::resolve_target(&src, &profile, &hw).unwrap();
        let ready = packages::fetch_all(&src, &set.package).unwrap();
        (
            set.package.len(),
            packages::unpack_image(&ready, hw.arch).unwrap(),
        )
    };
    let (n, _) = run(); // fills the download, index and extraction caches
    let mut best = f64::MAX;
    let mut resolve_best = f64::MAX;
    let mut tree = Tree::new();
    for _ in 0..5 {
        resolve_best = resolve_best.min(secs(|| {
            packages::resolve_target(&src, &profile, &hw).unwrap();
        }));
        best = best.min(secs(|| tree = run().1));
    }
    let bytes: u64 = tree.content_bytes();
    println!(
        "vm-base x86_64: {n} packages, {} files, {} MiB of content",
        tree.iter().count(),
        bytes >> 20
    );
    println!("  warm resolve only:          {resolve_best:.2} s (best of 5)");
    println!("  warm resolve+fetch+unpack:  {best:.2} s (best of 5)");
    println!("  peak RSS so far:            {} MiB", peak_rss_mib());

    let dir = tempfile::tempdir_in(root.join("target")).unwrap();
    let img = dir.path().join("root.ext4");
    let params = ext4::Params {
        size: None,
        uuid: [7; 16],
        hash_seed: [9; 16],
        time: 0,
        label: "root".into(),
    };
    let mut plan = None;
    let plan_s = secs(|| plan = Some(ext4::plan(&tree, &params).unwrap()));
    let plan = plan.unwrap();
    let size = plan.size_bytes();
    // Best of three for the writer and for dd alike: the disk is shared and noisy.
    let write_s = (0..3)
        .map(|_| {
            let _ = std::fs::remove_file(&img);
            secs(|| {
                let f = std::fs::File::create(&img).unwrap();
                f.set_len(size).unwrap();
                plan.write(&mut ext4::FileAt { file: &f, base: 0 }).unwrap();
                f.sync_all().unwrap();
            })
        })
        .fold(f64::MAX, f64::min);
    let used = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&img).unwrap().blocks() * 512
    };
    let mb = used as f64 / 1e6;
    println!(
        "ext4 writer: {} MiB filesystem, {:.0} MB of data: plan {plan_s:.2} s, write+fsync {write_s:.2} s = {:.0} MB/s (best of 3)",
        size >> 20,
        mb,
        mb / write_s
    );
    std::fs::remove_file(&img).unwrap();
    let dd = dir.path().join("dd.bin");
    let dd_s = (0..3)
        .map(|_| {
            let _ = std::fs::remove_file(&dd);
            secs(|| {
                let st = Command::new("dd")
                    .args(["if=/dev/zero", "bs=1M", "conv=fsync", "status=none"])
                    .arg(format!("of={}", dd.display()))
                    .arg(format!("count={}", used >> 20))
                    .status()
                    .unwrap();
                assert!(st.success());
            })
        })
        .fold(f64::MAX, f64::min);
    std::fs::remove_file(&dd).unwrap();
    println!(
        "dd of the same byte count:   {dd_s:.2} s = {:.0} MB/s (best of 3; writer/dd = {:.2}x)",
        mb / dd_s,
        write_s / dd_s
    );
    let src_dir = dir.path().join("tree");
    materialise(&tree, &src_dir);
    let mk = dir.path().join("mke2fs.ext4");
    let mk_s = secs(|| {
        let st = Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-d"])
            .arg(&src_dir)
            .arg(&mk)
            .arg(format!("{}k", size >> 10))
            .status()
            .expect("mke2fs (e2fsprogs)");
        assert!(st.success());
        std::fs::File::open(&mk).unwrap().sync_all().unwrap();
    });
    println!(
        "mke2fs -d of the same tree:  {mk_s:.2} s (writer is {:.1}x faster)",
        mk_s / write_s
    );
    sparse_disk(&mk, dir.path());
    println!("peak RSS at the end:          {} MiB", peak_rss_mib());
}

/// A fixed-size disk is mostly holes: the filesystem at its start, then 4 GiB of nothing.
/// disk.raw.zst and the digests read it whole; compared with the zstd and sha256sum commands
/// on the same file (best of two each, alternating, so both see the same page cache).
fn sparse_disk(fs_image: &Path, dir: &Path) {
    let raw = dir.join("sparse.raw");
    std::fs::copy(fs_image, &raw).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&raw).unwrap();
    f.set_len(4 << 30).unwrap();
    drop(f);
    let zst = dir.join("sparse.raw.zst");
    let (mut ours, mut theirs, mut hash, mut sum) = (f64::MAX, f64::MAX, f64::MAX, f64::MAX);
    for _ in 0..2 {
        ours = ours.min(secs(|| {
            ingot::disk::compress_zstd(&raw, &zst, 9, &|_| {}).unwrap();
        }));
        theirs = theirs.min(secs(|| {
            let st = Command::new("zstd")
                .args(["-q", "-f", "-9", "-T4", "-o"])
                .arg(&zst)
                .arg(&raw)
                .status()
                .expect("zstd");
            assert!(st.success());
        }));
        hash = hash.min(secs(|| {
            ingot::base::fsx::sha256_file(&raw).unwrap();
        }));
        sum = sum.min(secs(|| {
            let o = Command::new("sha256sum").arg(&raw).output().unwrap();
            assert!(o.status.success());
        }));
    }
    println!(
        "4 GiB sparse disk, zstd -9:   {ours:.2} s; zstd -9 -T4 command {theirs:.2} s ({:.2}x)",
        ours / theirs
    );
    println!(
        "4 GiB sparse disk, SHA-256:   {hash:.2} s; sha256sum {sum:.2} s ({:.2}x)",
        hash / sum
    );
}
