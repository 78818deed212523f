//! File helpers every stage uses: a temporary name beside a file, atomic writes, one streaming
//! SHA-256 reader, and scratch directories under the system's temporary directory. Every error
//! names the path.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique temporary name beside `path` (same directory, so a rename is atomic).
pub fn temp_beside(path: &Path) -> PathBuf {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

/// A reader that hashes (SHA-256) and counts everything read through it.
pub struct HashingReader<R> {
    inner: R,
    hash: Sha256,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wrap a reader.
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hash: Sha256::new(),
            bytes: 0,
        }
    }

    /// Read to the end, discarding the bytes; then `finish`.
    pub fn drain(mut self) -> io::Result<(String, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(self.finish())
    }

    /// Hex SHA-256 and byte count of what was read so far.
    pub fn finish(self) -> (String, u64) {
        (hex::encode(self.hash.finalize()), self.bytes)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// SHA-256 (hex) of bytes in memory.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// SHA-256 (hex) and size of a file, streamed. Only a regular file (a symlink is followed to
/// one) is read: a FIFO would block the open and a device never end, neither answering
/// Ctrl-C. Opened without blocking and checked on the open descriptor, so it cannot be
/// swapped between a check and the read; a signal stops the hashing between blocks.
pub fn sha256_file(path: &Path) -> io::Result<(String, u64)> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other(format!(
            "{} is not a regular file ({})",
            path.display(),
            kind_of(&meta.file_type())
        )));
    }
    let mut hr = HashingReader::new(super::sparse::SparseReader::new(f)?);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        if crate::interrupt::requested() {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                crate::interrupt::Interrupted,
            ));
        }
        if hr.read(&mut buf)? == 0 {
            return Ok(hr.finish());
        }
    }
}

/// SHA-256 and size of a file, with the path in the error.
pub fn sha256_path(path: &Path) -> Result<(String, u64)> {
    sha256_file(path).with_context(|| format!("hashing {}", path.display()))
}

/// Write a file atomically: temporary name in the same directory, sync, then rename. A
/// device or pipe (`--json /dev/stdout`) is written as it is: it cannot be replaced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
        return write(path, bytes);
    }
    let tmp = temp_beside(path);
    let res = (|| -> io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res.with_context(|| format!("writing {}", path.display()))
}

/// `fs::write` with the path in the error.
pub fn write(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// `fs::read` with the path in the error.
/// Like [`sha256_file`], only a regular file is read (a FIFO or a device would hang it).
pub fn read(path: &Path) -> Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let what = || format!("reading {}", path.display());
    let mut f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .with_context(what)?;
    let meta = f.metadata().with_context(what)?;
    if !meta.is_file() {
        anyhow::bail!(
            "{} is not a regular file ({})",
            path.display(),
            kind_of(&meta.file_type())
        );
    }
    let mut out = Vec::with_capacity(meta.len() as usize);
    f.read_to_end(&mut out).with_context(what)?;
    Ok(out)
}

/// [`read`] as UTF-8 text: a user's file (profile, key, lockfile, report, seed input) that
/// is a FIFO or a device is refused at once instead of being read for ever.
pub fn read_to_string(path: &Path) -> Result<String> {
    String::from_utf8(read(path)?)
        .map_err(|_| anyhow::anyhow!("{}: not UTF-8 text", path.display()))
}

/// `fs::rename` with both paths in the error.
pub fn rename(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to).with_context(|| format!("renaming {} to {}", from.display(), to.display()))
}

/// Read a host file that must be a regular file: opened without following a final symlink and
/// without blocking (so a FIFO cannot hang the build), then checked on the open descriptor, so
/// it cannot be swapped for a device or a pipe between a check and the read.
pub fn read_regular(path: &Path) -> Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let meta = f
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?;
    if !meta.is_file() {
        anyhow::bail!(
            "{} is not a regular file ({}); only regular files, directories and symlinks are copied",
            path.display(),
            kind_of(&meta.file_type())
        );
    }
    let mut out = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    f.read_to_end(&mut out)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(out)
}

/// A tar header for a regular file `name` of `size` bytes: mode 0644, owned by root, dated
/// `mtime` (the build's epoch), so an archive's bytes depend on its contents only. `h` is the
/// format's empty header (`new_ustar`, `new_gnu`).
pub fn tar_file_header(
    mut h: tar::Header,
    name: &str,
    size: u64,
    mtime: i64,
) -> io::Result<tar::Header> {
    h.set_path(name)?;
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(u64::try_from(mtime).unwrap_or(0));
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    Ok(h)
}

/// What a file type is, in words.
pub fn kind_of(t: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_symlink() {
        "a symlink"
    } else if t.is_dir() {
        "a directory"
    } else {
        "a regular file"
    }
}

/// A new directory under the system's temporary directory, removed when dropped (`keep` it
/// to hand it to the user).
pub fn scratch_dir(prefix: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("{prefix}-"))
        .tempdir()
        .context("creating a directory under the system's temporary directory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_write_to_a_pipe_or_device_writes_into_it() {
        // `report --out /dev/null` run as root renamed a regular file over /dev/null.
        let d = scratch_dir("ingot-fsx").unwrap();
        let fifo = d.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(&fifo).unwrap())
        };
        write_atomic(&fifo, b"page").unwrap();
        // Checked before waiting for the reader, which a replaced pipe would leave waiting.
        use std::os::unix::fs::FileTypeExt;
        assert!(fs::metadata(&fifo).unwrap().file_type().is_fifo());
        assert_eq!(reader.join().unwrap(), b"page");
        assert_eq!(
            fs::read_dir(d.path()).unwrap().count(),
            1,
            "a temporary file was left"
        );
    }

    #[test]
    fn hashing_reader_and_atomic_write() {
        let d = scratch_dir("ingot-fsx").unwrap();
        let p = d.path().join("f");
        write_atomic(&p, b"abc").unwrap();
        assert_eq!(
            sha256_file(&p).unwrap(),
            (
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".to_string(),
                3
            )
        );
        let names: Vec<_> = fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file is left");
        let fifo = d.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            let e = read_regular(&fifo).unwrap_err();
            assert!(format!("{e:#}").contains("a FIFO"), "{e:#}");
        }
        std::os::unix::fs::symlink(&p, d.path().join("link")).unwrap();
        assert!(
            read_regular(&d.path().join("link")).is_err(),
            "a symlink was followed"
        );
        assert_eq!(read_regular(&p).unwrap(), b"abc");
        let e = write_atomic(&d.path().join("no/such/dir/f"), b"x").unwrap_err();
        assert!(format!("{e:#}").contains("no/such/dir/f"), "{e:#}");
    }
}
