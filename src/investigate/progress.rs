//! A progress line on standard error while a long command reads a log.

/// A progress line on standard error while a long command reads a log: only when standard error is
/// a terminal, never on a pipe or in a file.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    /// Starts one labelled `what`, counting records when `counting` (nothing is shown when stderr
    /// is not a terminal).
    pub fn start(what: &str, counting: bool) -> Self {
        use std::io::IsTerminal;
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template(if counting {
                    "{spinner} {msg}: {human_pos} records ({per_sec}, {elapsed})"
                } else {
                    "{spinner} {msg} ({elapsed})"
                })
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            bar.set_message(what.to_string());
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        });
        Self { bar }
    }

    /// Counts one more record.
    pub fn tick(&self) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    /// Removes the line.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
