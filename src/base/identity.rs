//! Image identity: `name-version-arch`, GUIDs derived from it, and the build epoch written as
//! dates. Every id in an image derives from these, never from a clock or randomness.

use sha2::{Digest, Sha256};

/// The identity of one image: what its directory is named after and what its ids derive from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Image name.
    pub name: String,
    /// Image version.
    pub version: String,
    /// Architecture name.
    pub arch: String,
    /// `SOURCE_DATE_EPOCH`.
    pub epoch: i64,
}

impl Identity {
    /// `name-version-arch`, the output directory name and the seed of every derived id.
    pub fn id(&self) -> String {
        format!("{}-{}-{}", self.name, self.version, self.arch)
    }

    /// `name-arch`: the seed of ids every version of an image shares (A/B slot and data
    /// partition GUIDs), so each version agrees on which partition is which.
    pub fn stable(&self) -> String {
        format!("{}-{}", self.name, self.arch)
    }
}

/// A GUID derived from an identity string and a purpose, shaped as an RFC 4122 v8 UUID.
pub fn derived_guid(identity: &str, purpose: &str) -> uuid::Uuid {
    let h = Sha256::digest(format!("ingot:{identity}:{purpose}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = (b[6] & 0x0F) | 0x80;
    b[8] = (b[8] & 0x3F) | 0x80;
    uuid::Uuid::from_bytes(b)
}

/// UTC calendar date and time of seconds since the epoch (proleptic Gregorian):
/// (year, month, day, seconds into the day).
pub fn civil(secs: i64) -> (i64, i64, i64, i64) {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d, rem)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (the inverse of [`civil`]'s date part).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds since the epoch now (0 on a clock before 1970).
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// RFC 3339 UTC time of seconds since the epoch.
pub fn rfc3339(secs: i64) -> String {
    let (y, m, d, rem) = civil(secs);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_and_guids_are_stable() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        for secs in [0i64, 951_782_400, 1_700_000_000, -86_400 * 400] {
            let (y, m, d, rem) = civil(secs);
            assert_eq!(days_from_civil(y, m, d) * 86_400 + rem, secs);
        }
        assert_eq!(
            derived_guid("a-1.0.0-x86_64", "root"),
            derived_guid("a-1.0.0-x86_64", "root")
        );
        assert_ne!(
            derived_guid("a-1.0.0-x86_64", "root"),
            derived_guid("a-1.0.1-x86_64", "root")
        );
        assert_eq!(derived_guid("x", "y").get_version_num(), 8);
    }
}
