//! Host tools run to completion, with errors that say what to install or what went wrong.

use std::process::{Command, Output};

use anyhow::{bail, Context, Result};

/// Run `cmd` to its end; its output when it exits 0. When it cannot be started, the error
/// names the Debian `package` that provides it; when it exits otherwise, the error is
/// `failed`, a colon, and what it printed on stderr.
pub fn run(cmd: &mut Command, package: &str, failed: &str) -> Result<Output> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd
        .output()
        .with_context(|| format!("running {program} (install the Debian package {package})"))?;
    if !out.status.success() {
        bail!("{failed}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_carry_stderr_and_missing_tools_their_package() {
        let out = run(
            Command::new("sh").args(["-c", "echo out; echo ok >&2"]),
            "dash",
            "sh failed",
        )
        .unwrap();
        assert_eq!(out.stdout, b"out\n");
        let e = run(
            Command::new("sh").args(["-c", "echo '  no such disk ' >&2; exit 3"]),
            "dash",
            "disk.img: sh",
        )
        .unwrap_err();
        assert_eq!(format!("{e:#}"), "disk.img: sh: no such disk");
        let e = run(
            &mut Command::new("/nonexistent/ingot-no-such-tool"),
            "ingot-tools",
            "x",
        )
        .unwrap_err();
        assert!(
            format!("{e:#}").starts_with(
                "running /nonexistent/ingot-no-such-tool (install the Debian package ingot-tools): "
            ),
            "{e:#}"
        );
    }
}
