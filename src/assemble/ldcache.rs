//! `/etc/ld.so.cache`, as libc-bin's `ldconfig` trigger writes it on an installed system. The
//! dynamic loader finds a library in the default directories without it, but only through
//! the cache in the directories `/etc/ld.so.conf` adds: `/usr/local/lib` (libc-bin's
//! `libc.conf`), and a vendor's `/opt/NAME/lib` that an agent's `ld.so.conf.d` file names.
//!
//! The format is glibc's "new" one (`glibc-ld.so.cache1.1`, the only one glibc 2.32 and later
//! write): a 48-byte header, one 24-byte entry per library name, then the strings the entries
//! point at (offsets from the start of the file). The entries are in descending order of
//! glibc's library-name comparison (digit runs compare as numbers), which the loader's binary
//! search relies on; entries of one name keep the order of their directories, and the loader
//! takes the first. As ldconfig does, every `lib*.so*` (and `ld-*.so*`) ELF shared object of
//! the image's machine is listed under its SONAME (and a `libfoo.so` link under its own name,
//! as ldconfig lists it), and a SONAME link a directory lacks is made. `glibc-hwcaps` subdirectories are not listed (Debian's packages ship none);
//! the loader then searches them itself.

use anyhow::Result;

use crate::config::Arch;
use crate::tree::{Entry, Kind, Tree};

/// `FLAG_ELF_LIBC6` with the architecture's flag (ldconfig's `FLAG_X8664_LIB64`,
/// `FLAG_AARCH64_LIB64`): the only flags each architecture's loader accepts.
fn flags(arch: Arch) -> i32 {
    match arch {
        Arch::X86_64 => 0x0303,
        Arch::Aarch64 => 0x0a03,
    }
}

fn machine(arch: Arch) -> u16 {
    match arch {
        Arch::X86_64 => 62,
        Arch::Aarch64 => 183,
    }
}

fn triplet(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "x86_64-linux-gnu",
        Arch::Aarch64 => "aarch64-linux-gnu",
    }
}

/// glibc's `_dl_cache_libcmp`: bytes compare as bytes, runs of digits as numbers, and a
/// digit sorts after anything else.
pub(crate) fn libcmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (mut i, mut j) = (0, 0);
    loop {
        match (a.get(i), b.get(j)) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let (mut v, mut w) = (0u64, 0u64);
                while let Some(d) = a.get(i).filter(|d| d.is_ascii_digit()) {
                    v = v.saturating_mul(10).saturating_add(u64::from(d - b'0'));
                    i += 1;
                }
                while let Some(d) = b.get(j).filter(|d| d.is_ascii_digit()) {
                    w = w.saturating_mul(10).saturating_add(u64::from(d - b'0'));
                    j += 1;
                }
                if v != w {
                    return v.cmp(&w);
                }
            }
            (Some(x), Some(_)) if x.is_ascii_digit() => return Ordering::Greater,
            (Some(_), Some(y)) if y.is_ascii_digit() => return Ordering::Less,
            (Some(x), Some(y)) if x != y => return x.cmp(y),
            _ => {
                i += 1;
                j += 1;
            }
        }
    }
}

/// The SONAME of an ELF shared object of `machine`: `Some(None)` for one without a SONAME,
/// `None` for anything else (another machine, not a shared object, not ELF).
fn soname(data: &[u8], machine: u16) -> Option<Option<String>> {
    if data.get(..4)? != b"\x7fELF" {
        return None;
    }
    let wide = match data.get(4)? {
        1 => false,
        2 => true,
        _ => return None,
    };
    let little = match data.get(5)? {
        1 => true,
        2 => false,
        _ => return None,
    };
    let uint = |at: usize, n: usize| -> Option<u64> {
        let b = data.get(at..at.checked_add(n)?)?;
        let mut v = 0u64;
        for k in 0..n {
            let byte = if little { b[n - 1 - k] } else { b[k] };
            v = (v << 8) | u64::from(byte);
        }
        Some(v)
    };
    let word = if wide { 8 } else { 4 };
    if uint(16, 2)? != 3 || uint(18, 2)? != u64::from(machine) {
        return None;
    }
    let (shoff, shentsize, shnum) = if wide {
        (uint(0x28, 8)?, uint(0x3a, 2)?, uint(0x3c, 2)?)
    } else {
        (uint(0x20, 4)?, uint(0x2e, 2)?, uint(0x30, 2)?)
    };
    let section = |k: u64| -> Option<(u64, u64, u64, u64)> {
        let at = usize::try_from(shoff.checked_add(k.checked_mul(shentsize)?)?).ok()?;
        // sh_type, sh_offset, sh_size, sh_link
        Some(if wide {
            (
                uint(at + 4, 4)?,
                uint(at + 0x18, 8)?,
                uint(at + 0x20, 8)?,
                uint(at + 0x28, 4)?,
            )
        } else {
            (
                uint(at + 4, 4)?,
                uint(at + 0x10, 4)?,
                uint(at + 0x14, 4)?,
                uint(at + 0x18, 4)?,
            )
        })
    };
    for k in 0..shnum {
        let (kind, off, size, link) = section(k)?;
        if kind != 6 {
            continue;
        }
        let (_, strtab, strsize, _) = section(link)?;
        let mut at = off;
        while at + 2 * word as u64 <= off + size {
            let tag = uint(usize::try_from(at).ok()?, word)?;
            let val = uint(usize::try_from(at).ok()? + word, word)?;
            if tag == 0 {
                break;
            }
            if tag == 14 && val < strsize {
                let start = usize::try_from(strtab.checked_add(val)?).ok()?;
                let end = start + data.get(start..)?.iter().position(|&c| c == 0)?;
                return Some(Some(
                    String::from_utf8_lossy(&data[start..end]).into_owned(),
                ));
            }
            at += 2 * word as u64;
        }
        return Some(None);
    }
    Some(None)
}

/// The directories ldconfig reads: `/etc/ld.so.conf` (with its `include`s, in order), then
/// the built-in ones; as written, the first of those that are one directory.
fn directories(tree: &Tree, arch: Arch) -> Vec<String> {
    fn conf(tree: &Tree, path: &str, out: &mut Vec<String>, depth: u32) {
        let Some(text) = tree.read(path) else {
            return;
        };
        for line in String::from_utf8_lossy(&text).lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if let Some(pattern) = line
                .strip_prefix("include")
                .filter(|r| r.starts_with(char::is_whitespace))
            {
                let pattern = pattern.trim();
                if depth > 8 {
                    continue;
                }
                let (dir, glob) = pattern.rsplit_once('/').unwrap_or((".", pattern));
                let (pre, post) = glob.split_once('*').unwrap_or((glob, ""));
                let Ok(at) = tree.resolve(dir) else { continue };
                let mut files: Vec<String> = tree
                    .children(&at)
                    .filter(|c| {
                        let name = c.rsplit('/').next().unwrap_or(c);
                        if glob.contains('*') {
                            name.len() >= pre.len() + post.len()
                                && name.starts_with(pre)
                                && name.ends_with(post)
                        } else {
                            name == glob
                        }
                    })
                    .map(str::to_string)
                    .collect();
                files.sort();
                for f in files {
                    conf(tree, &f, out, depth + 1);
                }
            } else if line.starts_with('/') && !line.starts_with("hwcap") {
                out.push(
                    line.split('=')
                        .next()
                        .unwrap_or(line)
                        .trim_end_matches('/')
                        .to_string(),
                );
            }
        }
    }
    let mut listed = Vec::new();
    conf(tree, "etc/ld.so.conf", &mut listed, 0);
    let t = triplet(arch);
    listed.extend([
        format!("/lib/{t}"),
        format!("/usr/lib/{t}"),
        "/lib".into(),
        "/usr/lib".into(),
    ]);
    let mut seen: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for d in listed {
        let Ok(real) = tree.resolve(&d) else { continue };
        if matches!(tree.get(&real).map(|e| &e.kind), Some(Kind::Dir)) && !seen.contains(&real) {
            seen.push(real);
            out.push(d);
        }
    }
    out
}

/// Write `/etc/ld.so.cache` for an image with glibc's `/etc/ld.so.conf`; the number of
/// entries.
pub(super) fn write(tree: &mut Tree, arch: Arch) -> Result<usize> {
    if tree.get("etc/ld.so.conf").is_none() {
        return Ok(0);
    }
    let mut entries: Vec<(String, String)> = Vec::new();
    let mut links: Vec<(String, String)> = Vec::new();
    for dir in directories(tree, arch) {
        let real = tree.resolve(&dir)?;
        let names: Vec<String> = tree
            .children(&real)
            .map(|c| c.rsplit('/').next().unwrap_or(c).to_string())
            .filter(|n| (n.starts_with("lib") || n.starts_with("ld-")) && n.contains(".so"))
            .collect();
        let mut here: Vec<(String, String)> = Vec::new();
        for name in names {
            let path = format!("{real}/{name}");
            let Ok(target) = tree.resolve(&path) else {
                continue;
            };
            let Some(Entry {
                kind: Kind::File(content),
                ..
            }) = tree.get(&target)
            else {
                continue;
            };
            let Ok(data) = content.read_all() else {
                continue;
            };
            let Some(so) = soname(&data, machine(arch)) else {
                continue;
            };
            let is_link = matches!(tree.get(&path).map(|e| &e.kind), Some(Kind::Symlink(_)));
            let so = so.unwrap_or_else(|| name.clone());
            // A link named as its SONAME, or a `.so` link whose name starts it (`libz.so` for
            // `libz.so.1`: the link the linker uses), is listed under its own name; anything
            // else under the SONAME (a link like `libpng.so` to `libpng16.so` adds nothing).
            let own =
                is_link && (name == so || (name.ends_with(".so") && so.starts_with(name.as_str())));
            let key = if own { name.clone() } else { so.clone() };
            if !own && key != name && tree.get(&format!("{real}/{key}")).is_none() {
                links.push((format!("{real}/{key}"), name.clone()));
            }
            if !here.iter().any(|(k, _)| *k == key) {
                here.push((key.clone(), format!("{dir}/{key}")));
            }
        }
        here.sort_by(|a, b| a.0.cmp(&b.0));
        entries.extend(here);
    }
    for (link, to) in links {
        if tree.get(&link).is_none() {
            tree.insert(&link, Entry::symlink(&to))?;
        }
    }
    // Descending; a stable sort keeps one name's entries in directory order.
    entries.sort_by(|a, b| libcmp(b.0.as_bytes(), a.0.as_bytes()));
    let n = entries.len();
    let header = 48;
    let strings_at = header + 24 * n;
    let mut strings: Vec<u8> = Vec::new();
    let mut table: Vec<u8> = Vec::with_capacity(24 * n);
    for (key, value) in &entries {
        let mut add = |s: &str| -> u32 {
            let at = strings_at + strings.len();
            strings.extend_from_slice(s.as_bytes());
            strings.push(0);
            at as u32
        };
        let (k, v) = (add(key), add(value));
        table.extend_from_slice(&flags(arch).to_le_bytes());
        table.extend_from_slice(&k.to_le_bytes());
        table.extend_from_slice(&v.to_le_bytes());
        table.extend_from_slice(&0u32.to_le_bytes());
        table.extend_from_slice(&0u64.to_le_bytes());
    }
    let mut out = Vec::with_capacity(strings_at + strings.len());
    out.extend_from_slice(b"glibc-ld.so.cache1.1");
    out.extend_from_slice(&(n as u32).to_le_bytes());
    out.extend_from_slice(&(strings.len() as u32).to_le_bytes());
    // Flags: little endian (both architectures); then padding, no extensions, unused.
    out.push(2);
    out.extend_from_slice(&[0u8; 3 + 16]);
    out.extend_from_slice(&table);
    out.extend_from_slice(&strings);
    tree.insert("etc/ld.so.cache", Entry::file(out, 0o644))?;
    Ok(n)
}

#[cfg(test)]
mod tests;
