//! Progress on stderr: a spinner with the elapsed time per stage on a terminal, plain lines
//! otherwise, nothing with `--quiet`. Only the CLI and long-running stages draw; no stage's
//! result depends on it.

use anyhow::Result;

/// One line on stderr unless quiet.
pub fn log(quiet: bool, msg: &str) {
    if !quiet {
        eprintln!("{msg}");
    }
}

/// Whether progress is drawn: stderr is a terminal and `--quiet` was not given.
pub fn live(quiet: bool) -> bool {
    use std::io::IsTerminal;
    !quiet && std::io::stderr().is_terminal()
}

/// A set of bars drawn together, hidden unless `live`. (A hidden bar added to a visible set
/// takes the set's target: every byte counted would then ask whether stderr is a terminal,
/// 38 000 failed `ioctl`s in one `ingot pull` of vm-base, counted with `strace -c`.)
pub fn multi(live: bool) -> indicatif::MultiProgress {
    if live {
        indicatif::MultiProgress::new()
    } else {
        indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden())
    }
}

/// A byte-count bar for one file going up or down, labelled with its name (hidden unless
/// `live`).
pub fn transfer(name: &str, total: u64, live: bool) -> indicatif::ProgressBar {
    if !live {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(total);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix:>16} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb.set_prefix(name.to_string());
    pb
}

/// A spinner with the elapsed time, drawn only when `live` (hidden otherwise).
pub fn spinner(msg: &str, live: bool) -> indicatif::ProgressBar {
    if !live {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    pb.set_message(msg.to_string());
    pb.enable_steady_tick(std::time::Duration::from_millis(120));
    pb
}

/// A build's stages on stderr: a spinner with the elapsed time on a terminal (kept as a
/// line with its duration when the stage ends), one plain line per stage otherwise.
pub struct Stages {
    quiet: bool,
    current: Option<(indicatif::ProgressBar, String, std::time::Instant)>,
}

impl Stages {
    /// Stages for one build.
    pub fn new(quiet: bool) -> Self {
        Stages {
            quiet,
            current: None,
        }
    }

    /// Start a stage: stop here if Ctrl-C arrived, otherwise say what comes next.
    pub fn next(&mut self, msg: &str) -> Result<()> {
        crate::interrupt::check()?;
        self.end();
        if live(self.quiet) {
            let pb = spinner(msg, true);
            self.current = Some((pb, msg.to_string(), std::time::Instant::now()));
        } else {
            log(self.quiet, msg);
        }
        Ok(())
    }

    /// A stage that draws its own progress bars: say it, without a spinner.
    pub fn next_plain(&mut self, msg: &str) -> Result<()> {
        crate::interrupt::check()?;
        self.end();
        log(self.quiet, msg);
        Ok(())
    }

    /// A byte-count bar for the current stage (hidden when quiet or not on a terminal).
    pub fn bytes(&self, total: u64) -> indicatif::ProgressBar {
        if !live(self.quiet) {
            return indicatif::ProgressBar::hidden();
        }
        let pb = indicatif::ProgressBar::new(total);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix:>10} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        pb
    }

    /// End the current stage, keeping its line with the duration.
    pub fn end(&mut self) {
        if let Some((pb, msg, began)) = self.current.take() {
            if let Ok(style) = indicatif::ProgressStyle::with_template("  {msg}") {
                pb.set_style(style);
            }
            pb.finish_with_message(format!("{msg} ({:.1}s)", began.elapsed().as_secs_f64()));
        }
    }
}

impl Drop for Stages {
    fn drop(&mut self) {
        if let Some((pb, _, _)) = self.current.take() {
            pb.finish_and_clear();
        }
    }
}
