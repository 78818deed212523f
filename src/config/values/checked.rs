//! Checks for strings that end up inside generated files (passwd, group, shadow, shell
//! scripts, inittab, boot loader entries). Used with `#[serde(deserialize_with)]`, so a bad
//! value is reported with its file, line and column like any other TOML error.

use serde::{Deserialize, Deserializer};

/// Longest login or group name Debian's `adduser` accepts.
pub const MAX_NAME: usize = 32;

/// Why a uid or gid is refused, if it is: (uid_t)-1 and its 16-bit form, and the range
/// that is negative as a signed 32-bit number.
pub fn id_error(id: u32) -> Option<String> {
    match id {
        u32::MAX => Some("4294967295 is (uid_t)-1, not an id".into()),
        65535 => Some("65535 is the 16-bit (uid_t)-1, which many tools treat as no id".into()),
        2_147_483_648.. => Some(format!(
            "{id} is in 2147483648-4294967294, which is negative as a signed 32-bit id in many tools (systemd keeps the range unused); use an id below 2147483648"
        )),
        _ => None,
    }
}

/// Why an account name is refused, if it is (Debian adduser's `SYS_NAME_REGEX`,
/// `^[a-z_][-a-z0-9_]*\$?$`, and its length limit; the profile's rules allow the leading
/// `_` of `NAME_REGEX`'s superset only for system accounts).
pub fn account_name_error(n: &str) -> Option<String> {
    let mut chars = n.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let body = n.strip_suffix('$').unwrap_or(n);
    let rest_ok = body
        .chars()
        .skip(1)
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if n.is_empty() || !first_ok || !rest_ok {
        Some(format!(
            "`{}` is not a valid user or group name (Debian's adduser accepts ^[a-z][-a-z0-9_]*$?, as in `edge-agent`, and a leading `_` for system accounts)",
            n.escape_debug()
        ))
    } else if n.len() > MAX_NAME {
        Some(format!(
            "`{n}` is {} characters long; user and group names have at most {MAX_NAME}",
            n.len()
        ))
    } else {
        None
    }
}

/// A user or group name.
pub fn account_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    match account_name_error(&s) {
        Some(e) => Err(serde::de::Error::custom(e)),
        None => Ok(s),
    }
}

/// A list of user or group names.
pub fn account_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    if let Some(e) = v.iter().find_map(|s| account_name_error(s)) {
        return Err(serde::de::Error::custom(e));
    }
    Ok(v)
}

/// Why a value may not stand in one field of a line-based file, if it may not: control
/// characters (a newline starts a new entry) and, where `colon` is set, `:` (the passwd
/// field separator).
pub fn field_error(s: &str, colon: bool) -> Option<String> {
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Some(format!(
            "`{}` contains the control character {:?}; this value is written into a line of a generated file",
            s.escape_debug(),
            c
        ));
    }
    if colon && s.contains(':') {
        return Some(format!(
            "`{s}` contains `:`, the field separator of passwd, group and shadow"
        ));
    }
    None
}

/// A passwd field (home, shell, GECOS): no control characters, no `:`.
pub fn passwd_field<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    match field_error(&s, true) {
        Some(e) => Err(serde::de::Error::custom(e)),
        None => Ok(s),
    }
}

/// Optional [`passwd_field`].
pub fn passwd_field_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    match s.as_deref().and_then(|s| field_error(s, true)) {
        Some(e) => Err(serde::de::Error::custom(e)),
        None => Ok(s),
    }
}

/// One line of a generated file: no control characters.
pub fn one_line<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    match field_error(&s, false) {
        Some(e) => Err(serde::de::Error::custom(e)),
        None => Ok(s),
    }
}

/// Optional [`one_line`].
pub fn one_line_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    match s.as_deref().and_then(|s| field_error(s, false)) {
        Some(e) => Err(serde::de::Error::custom(e)),
        None => Ok(s),
    }
}

/// Why extra kernel arguments may not stand, if they may not: one line, and none of the
/// arguments Ingot writes itself (the root partition, its mode, the A/B and watchdog
/// settings), which a second copy would silently override or contradict.
pub fn kernel_args_error(s: &str) -> Option<String> {
    if let Some(e) = field_error(s, false) {
        return Some(e);
    }
    s.split_whitespace()
        .find(|a| {
            matches!(*a, "ro" | "rw") || a.starts_with("root=") || a.starts_with("ingot.")
        })
        .map(|a| {
            format!(
                "`{a}` is set by Ingot itself (root=, ro/rw and ingot.* follow the disk layout); leave it out"
            )
        })
}

/// Extra kernel command-line arguments (see [`kernel_args_error`]).
pub fn kernel_args<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    match kernel_args_error(&s) {
        Some(e) => Err(serde::de::Error::custom(e)),
        None => Ok(s),
    }
}

/// Lines of a generated file, one each.
pub fn one_line_each<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    if let Some(e) = v.iter().find_map(|s| field_error(s, false)) {
        return Err(serde::de::Error::custom(e));
    }
    Ok(v)
}

/// An agent name: it appears in the ready line and in generated scripts, so letters,
/// digits, `.`, `_` and `-` only, at most 64 characters.
pub fn agent_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(s)
    } else {
        Err(serde::de::Error::custom(format!(
            "agent name `{}` may hold only letters, digits, `.`, `_` and `-` (at most 64)",
            s.escape_debug()
        )))
    }
}

/// The unit types systemd knows, by the suffix of a unit's name.
const UNIT_SUFFIXES: [&str; 11] = [
    "service",
    "socket",
    "target",
    "timer",
    "path",
    "mount",
    "automount",
    "swap",
    "slice",
    "scope",
    "device",
];

/// Why a name is not a systemd unit name, if it is not: letters, digits and `:-_.\\`,
/// at most one `@` (a template or its instance), a known type suffix, at most 255
/// characters. Such a name is also a plain file name, which is how Ingot looks it up.
pub fn unit_name_error(n: &str) -> Option<String> {
    let body = n
        .rsplit_once('.')
        .and_then(|(stem, suffix)| UNIT_SUFFIXES.contains(&suffix).then_some(stem));
    let ok = n.len() <= 255
        && body.is_some_and(|stem| {
            let (prefix, instance) = stem.split_once('@').unwrap_or((stem, ""));
            let chars_ok = |t: &str| {
                t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.' | '\\'))
            };
            !prefix.is_empty() && chars_ok(prefix) && chars_ok(instance)
        });
    (!ok).then(|| {
        format!(
            "`{}` is not a systemd unit name (letters, digits, `:-_.\\`, at most one `@`, and a type such as `.service` or `.timer`)",
            n.escape_debug()
        )
    })
}

/// A list of systemd unit names (see [`unit_name_error`]).
pub fn unit_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    if let Some(e) = v.iter().find_map(|s| unit_name_error(s)) {
        return Err(serde::de::Error::custom(e));
    }
    Ok(v)
}

/// A plain word of a configuration file (a name that reaches file names and options):
/// 1-64 ASCII letters, digits, `.`, `_`, `-` and the `more` characters, starting with a letter
/// or digit.
pub fn is_word(s: &str, more: &[char]) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') || more.contains(&c))
}

/// Why a package request is refused, if it is: `NAME`, `NAME=VERSION` or apt's
/// `NAME/SUITE` (`constraint` false: `NAME` only). NAME as Debian policy 5.6.1 has it
/// (lowercase letters, digits, `+`, `-`, `.`; at least two, starting with a letter or digit),
/// VERSION as 5.6.12 (starting with a digit; letters, digits, `.+~-:`).
pub fn package_spec_error(s: &str, constraint: bool) -> Option<String> {
    let name_ok = |n: &str| {
        n.len() >= 2
            && n.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && n.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.')
            })
    };
    let version_ok = |v: &str| {
        v.starts_with(|c: char| c.is_ascii_digit())
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '~' | '-' | ':'))
    };
    let suite_ok = |x: &str| {
        !x.is_empty()
            && x.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    let e = |why: &str| Some(format!("`{}` {why}", s.escape_debug()));
    if s.contains(':') && !s.contains('=') {
        return e("names an architecture; an image has one architecture, its hardware's, so give the package name alone");
    }
    let (name, rest) = match (s.split_once('='), s.split_once('/')) {
        (Some((n, v)), _) if constraint => (n, Some(version_ok(v))),
        (None, Some((n, suite))) if constraint => (n, Some(suite_ok(suite))),
        _ => (s, None),
    };
    if !name_ok(name) {
        let forms = if constraint {
            " (or NAME=VERSION, or NAME/SUITE)"
        } else {
            ""
        };
        return e(&format!(
            "is not a Debian package name{forms}: lowercase letters, digits, `+`, `-` and `.`, at least two, starting with a letter or digit"
        ));
    }
    match rest {
        Some(false) if s.contains('=') => {
            e("has a version that is not a Debian version (it starts with a digit; letters, digits and `.+~-:`)")
        }
        Some(false) => e("names a suite that is not a suite name (like bookworm-backports)"),
        _ => None,
    }
}

/// Package requests (see [`package_spec_error`]).
pub fn package_specs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    if let Some(e) = v.iter().find_map(|s| package_spec_error(s, true)) {
        return Err(serde::de::Error::custom(e));
    }
    Ok(v)
}

/// Package names (see [`package_spec_error`]).
pub fn package_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    if let Some(e) = v.iter().find_map(|s| package_spec_error(s, false)) {
        return Err(serde::de::Error::custom(e));
    }
    Ok(v)
}

/// A console device name as the kernel's `console=` takes it: `ttyS0`, `ttyAMA0`,
/// `hvc0`, optionally with `,115200n8` options.
pub fn console<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    let (dev, opts) = s.split_once(',').unwrap_or((&s, ""));
    let ok = !dev.is_empty()
        && dev.len() <= 32
        && dev.chars().all(|c| c.is_ascii_alphanumeric())
        && opts.chars().all(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(s)
    } else {
        Err(serde::de::Error::custom(format!(
            "console `{}` is not a device name such as ttyS0 or ttyAMA0,115200",
            s.escape_debug()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_adduser_and_fields_refuse_separators() {
        for good in ["edge", "edge-agent", "a_b9", "machine$", "x", "_chrony"] {
            assert_eq!(account_name_error(good), None, "{good}");
        }
        for bad in [
            "",
            "Evil",
            "9x",
            "evil::0:0::/root:/bin/sh",
            "a\nb",
            "a b",
            "-x",
        ] {
            assert!(account_name_error(bad).is_some(), "{bad:?}");
        }
        assert!(account_name_error(&"a".repeat(33)).is_some());
        assert!(field_error("/bin/sh\n::respawn:/bin/sh", false).is_some());
        assert!(field_error("/home/a:b", true).is_some());
        assert_eq!(field_error("/home/a:b", false), None);
        assert_eq!(field_error("quiet panic=-1", false), None);
    }

    #[test]
    fn unit_names_are_what_systemd_accepts() {
        for good in [
            "ssh.service",
            "getty@ttyS0.service",
            "getty@.service",
            "dev-vda2.device",
            "system-serial\\x2dgetty.slice",
            "cloud-init.target",
        ] {
            assert_eq!(unit_name_error(good), None, "{good}");
        }
        for bad in [
            "",
            "ssh",
            ".service",
            "@x.service",
            "a@b@c.service",
            "../../../etc/passwd",
            "x/y.service",
            "ssh.service\nfoo",
            "a b.service",
            "ssh.conf",
        ] {
            assert!(unit_name_error(bad).is_some(), "{bad:?}");
        }
        assert!(unit_name_error(&format!("{}.service", "a".repeat(250))).is_some());
    }

    #[test]
    fn extra_kernel_arguments_leave_what_ingot_writes_alone() {
        for good in [
            "",
            "quiet",
            "init=/sbin/my-init loglevel=3",
            "rootwait=5",
            "ingot",
        ] {
            assert_eq!(kernel_args_error(good), None, "{good:?}");
        }
        for bad in [
            "ro",
            "quiet rw",
            "root=/dev/vda2",
            "root=PARTUUID=0",
            "ingot.slot=b",
            "ingot.watchdog=0",
            "quiet\ninit=/bin/sh",
        ] {
            assert!(kernel_args_error(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn package_requests() {
        for ok in [
            "busybox",
            "g++",
            "libstdc++6",
            "0ad",
            "nginx=1.22.1-9",
            "systemd=252.38-1~deb12u1",
            "dpkg=1:1.21.22",
            "linux-image-amd64/bookworm-backports",
        ] {
            assert_eq!(package_spec_error(ok, true), None, "{ok}");
        }
        for (bad, why) in [
            ("../x", "not a Debian package name"),
            ("a", "not a Debian package name"),
            ("Busybox", "not a Debian package name"),
            ("foo bar", "not a Debian package name"),
            ("-x", "not a Debian package name"),
            ("libc6:amd64", "architecture"),
            ("busybox=abc", "not a Debian version"),
            ("busybox=", "not a Debian version"),
            ("busybox/", "not a suite name"),
            ("busybox/../../x", "not a suite name"),
        ] {
            let e = package_spec_error(bad, true).unwrap_or_default();
            assert!(e.contains(why), "{bad}: {e}");
        }
        // `exclude` takes names only.
        assert!(package_spec_error("busybox=1.0", false).is_some());
        assert_eq!(package_spec_error("busybox", false), None);
    }
}
