//! The steps of an OTA test as written on the command line: `BUNDLE:EXPECT`, what each
//! expects, where a power cut falls, and how bundles reach the device.

use std::path::PathBuf;

use serde::Serialize;

/// Where the power is cut during an install.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cut {
    /// While the root image is written to the slot.
    Slot,
    /// After the kernel and initramfs are on the ESP.
    Kernel,
    /// After the temporary boot entry is written.
    Entry,
}

impl Cut {
    /// The updater's console line that marks the point.
    pub(super) fn marker(self) -> &'static str {
        match self {
            Cut::Slot => "ingot-update: writing the root image to slot",
            Cut::Kernel => "ingot-update: kernel and initramfs in place",
            Cut::Entry => "ingot-update: temporary entry written",
        }
    }
}

/// What a step expects the device to do with its bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expect {
    /// Installs it, reboots, and reports ready on the bundle's version.
    Updated,
    /// Installs it, the new version fails every attempt, and the previous version comes back
    /// reporting the rollback.
    RolledBack,
    /// Refuses it before writing; the next boot is the same version.
    Rejected,
    /// Power is cut at the point; the previous version boots, and installing again succeeds.
    PowerCut(Cut),
}

/// One step: a bundle file and what should happen.
#[derive(Debug, Clone)]
pub struct Step {
    /// Any file: the device judges it.
    pub bundle: PathBuf,
    /// The expectation.
    pub expect: Expect,
    /// As written on the command line.
    pub text: String,
}

impl std::str::FromStr for Step {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (file, exp) = s.rsplit_once(':').ok_or_else(|| {
            format!("step `{s}` is not BUNDLE:EXPECT (EXPECT: updated, rolled-back, rejected, power-cut[@slot|@kernel|@entry])")
        })?;
        let expect = match exp {
            "updated" => Expect::Updated,
            "rolled-back" => Expect::RolledBack,
            "rejected" => Expect::Rejected,
            "power-cut" | "power-cut@slot" => Expect::PowerCut(Cut::Slot),
            "power-cut@kernel" => Expect::PowerCut(Cut::Kernel),
            "power-cut@entry" => Expect::PowerCut(Cut::Entry),
            other => {
                return Err(format!(
                    "step `{s}`: `{other}` is not updated, rolled-back, rejected or power-cut[@slot|@kernel|@entry]"
                ))
            }
        };
        if file.is_empty() {
            return Err(format!("step `{s}` names no bundle file"));
        }
        Ok(Step {
            bundle: PathBuf::from(file),
            expect,
            text: s.to_string(),
        })
    }
}

/// How bundles reach the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// A second read-only virtio disk holding the bundle.
    Disk,
    /// HTTP from 127.0.0.1 (the guest's 10.0.2.2); the disk holds the URL.
    Http,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_parse_and_bad_ones_say_why() {
        let s: Step = "/x/a:b/update.bundle:power-cut@kernel".parse().unwrap();
        assert_eq!(s.bundle, PathBuf::from("/x/a:b/update.bundle"));
        assert_eq!(s.expect, Expect::PowerCut(Cut::Kernel));
        assert_eq!(
            "b:power-cut".parse::<Step>().unwrap().expect,
            Expect::PowerCut(Cut::Slot)
        );
        assert_eq!(
            "b:rolled-back".parse::<Step>().unwrap().expect,
            Expect::RolledBack
        );
        let e = "b:installed".parse::<Step>().unwrap_err();
        assert!(e.contains("`installed`"), "{e}");
        assert!("nocolon".parse::<Step>().is_err());
        assert!(":updated".parse::<Step>().is_err());
    }
}
