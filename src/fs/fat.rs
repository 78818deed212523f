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
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // Civil from days (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
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
    let fs = fatfs::FileSystem::new(storage, fatfs::FsOptions::new().time_provider(clock))?;
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
    fs.unmount()
}

#[cfg(test)]
mod tests {
    #[test]
    fn epoch_to_fat_date() {
        let t = super::fat_time(1_700_000_000); // 2023-11-14 22:13:20 UTC
        assert_eq!((t.date.year, t.date.month, t.date.day), (2023, 11, 14));
        assert_eq!((t.time.hour, t.time.min, t.time.sec), (22, 13, 20));
    }
}
