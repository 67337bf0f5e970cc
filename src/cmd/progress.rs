//! The one progress bar of every long command (`split`, `merge`, `convert`,
//! `sign`, `verify`, `digest`, `scan`): drawn on stderr only when stderr is a
//! terminal, without colour when `NO_COLOR` is set (and not empty), and
//! cleared when done so that it never mixes with the output.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar, or nothing when stderr is not a terminal.
pub struct Bar(Option<ProgressBar>);

fn color() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

impl Bar {
    /// A bar counting bytes; its length comes with [`Bar::set_total`] or
    /// [`Bar::update`].
    pub fn bytes(label: &str) -> Bar {
        Self::with(
            label,
            "{msg} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
            "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
    }

    /// A bar counting files, with a running count of findings as its message.
    pub fn files(label: &str, len: u64) -> Bar {
        let bar = Self::with(
            label,
            "{prefix} [{bar:30.cyan/blue}] {pos}/{len} files, {msg} findings ({elapsed})",
            "{prefix} [{bar:30}] {pos}/{len} files, {msg} findings ({elapsed})",
        );
        if let Some(pb) = &bar.0 {
            pb.set_prefix(label.to_owned());
            pb.set_message("0");
            pb.set_length(len);
            pb.set_draw_target(ProgressDrawTarget::stderr());
        }
        bar
    }

    /// No bar at all (e.g. when `--json` output goes to a terminal too).
    pub fn hidden() -> Bar {
        Bar(None)
    }

    fn with(label: &str, colored: &str, plain: &str) -> Bar {
        if !std::io::stderr().is_terminal() {
            return Bar(None);
        }
        // Hidden until the length is known, so that no empty bar flashes.
        let pb = ProgressBar::hidden();
        let template = if color() { colored } else { plain };
        if let Ok(style) = ProgressStyle::with_template(template) {
            pb.set_style(style.progress_chars("=> "));
        }
        pb.set_message(label.to_owned());
        Bar(Some(pb))
    }

    /// Sets the total and starts drawing.
    pub fn set_total(&self, total: u64) {
        if let Some(pb) = &self.0 {
            pb.set_length(total);
            pb.set_draw_target(ProgressDrawTarget::stderr());
        }
    }

    /// Adds `n` to the position.
    pub fn inc(&self, n: u64) {
        if let Some(pb) = &self.0 {
            pb.inc(n);
        }
    }

    /// Sets the position and the total, as a `(done, total)` callback does.
    pub fn update(&self, done: u64, total: u64) {
        if let Some(pb) = &self.0 {
            if pb.length() != Some(total) {
                self.set_total(total);
            }
            pb.set_position(done);
        }
    }

    /// Replaces the label (e.g. "converting" then "verifying").
    pub fn set_message(&self, msg: &str) {
        if let Some(pb) = &self.0 {
            pb.set_message(msg.to_owned());
        }
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        if let Some(pb) = &self.0 {
            pb.finish_and_clear();
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.finish();
    }
}

impl tensorseal_sign::manifest::Progress for Bar {
    fn listed(&self, _files: usize, bytes: u64) {
        self.set_total(bytes);
    }
    fn hashed(&self, bytes: u64) {
        self.inc(bytes);
    }
}
