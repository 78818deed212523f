//! FAT writer for the EFI system partition, through the `fatfs` crate. The volume id and every
//! timestamp come from the image identity and `SOURCE_DATE_EPOCH`, so the bytes are reproducible.

use std::io::{self, Read, Seek, Write};

use crate::tree::{Kind, Tree};

/// Clock that always answers the build time.
#[derive(Debug)]
struct FixedTime(fatfs::DateTime);

impl fatfs::TimeProvider for FixedTime {
    fn get_current_date(&self) -> fatfs::Date {
        self.0.date
    }
    fn get_current_date_time(&self) -> fatfs::DateTime {
        self.0
    }
}

/// Convert seconds since the epoch to a FAT date-time (clamped to FAT's 1980..2107 range).
pub fn fat_time(secs: i64) -> fatfs::DateTime {
    let secs = secs.clamp(315_532_800, 4_354_819_199);
    let (year, month, day, rem) = crate::base::identity::civil(secs);
    fatfs::DateTime {
        date: fatfs::Date {
            year: year as u16,
            month: month as u16,
            day: day as u16,
        },
        time: fatfs::Time {
            hour: (rem / 3600) as u16,
            min: (rem % 3600 / 60) as u16,
            sec: (rem % 60) as u16,
            millis: 0,
        },
    }
}

/// Format `storage` as FAT (FAT16 or FAT32 chosen by size) and copy the tree into it.
pub fn write<S: Read + Write + Seek>(
    mut storage: S,
    tree: &Tree,
    volume_id: u32,
    label: &str,
    time: i64,
) -> io::Result<()> {
    let mut lbl = [b' '; 11];
    for (d, s) in lbl.iter_mut().zip(label.to_ascii_uppercase().bytes()) {
        *d = s;
    }
    fatfs::format_volume(
        &mut storage,
        fatfs::FormatVolumeOptions::new()
            .volume_id(volume_id)
            .volume_label(lbl),
    )?;
    storage.seek(io::SeekFrom::Start(0))?;
    // fatfs wants a 'static clock; one small allocation per ESP written.
    let clock: &'static FixedTime = Box::leak(Box::new(FixedTime(fat_time(time))));
    let fs = fatfs::FileSystem::new(&mut storage, fatfs::FsOptions::new().time_provider(clock))?;
    {
        let root = fs.root_dir();
        for (path, e) in tree.iter() {
            if path.is_empty() {
                continue;
            }
            match &e.kind {
                Kind::Dir => {
                    root.create_dir(path)?;
                }
                Kind::File(c) => {
                    let mut f = root.create_file(path)?;
                    f.truncate()?;
                    io::copy(&mut c.reader()?, &mut f)?;
                    f.flush()?;
                }
                other => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                        "ESP entry /{path}: FAT holds only files and directories, not {other:?}"
                    ),
                    ))
                }
            }
        }
    }
    fs.unmount()?;
    fix_dot_entries(&mut storage)
}

/// fatfs 0.3 writes a long-name entry in front of each directory's `.` and `..` entries, while
/// FAT requires `.` and `..` in the first two slots (fsck.vfat rejects the directory; firmware
/// tolerates it). Move them back into slots 0 and 1 and mark the two slots they leave deleted.
fn fix_dot_entries<S: Read + Write + Seek>(storage: &mut S) -> io::Result<()> {
    let len = storage.seek(io::SeekFrom::End(0))?;
    let mut slots = [0u8; 128];
    let mut off = 0u64;
    while off + 128 <= len {
        storage.seek(io::SeekFrom::Start(off))?;
        storage.read_exact(&mut slots)?;
        let lfn = |i: usize| slots[32 * i + 11] == 0x0F;
        let short = |i: usize, name: &[u8; 11]| {
            &slots[32 * i..32 * i + 11] == name && slots[32 * i + 11] & 0x10 != 0
        };
        if lfn(0) && short(1, b".          ") && lfn(2) && short(3, b"..         ") {
            let mut fixed = [0u8; 128];
            fixed[0..32].copy_from_slice(&slots[32..64]);
            fixed[32..64].copy_from_slice(&slots[96..128]);
            fixed[64] = 0xE5;
            fixed[96] = 0xE5;
            storage.seek(io::SeekFrom::Start(off))?;
            storage.write_all(&fixed)?;
        }
        off += 512;
    }
    Ok(())
}
