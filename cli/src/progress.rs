//! What a running backup shows: a progress bar on a terminal, a plain line
//! every few seconds otherwise. Fed from the plugin's status variables.

use crate::info::human_bytes;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// One reading of the server's progress.
#[derive(Debug, Default, Clone)]
pub struct Reading {
    pub state: String,
    pub copied: u64,
    pub total: u64,
    pub rate: u64,
    /// (files done, files in all), from the processlist State.
    pub files: Option<(u64, u64)>,
}

impl Reading {
    fn eta(&self) -> String {
        if self.rate == 0 || self.total <= self.copied {
            return "-".into();
        }
        format!("{}s", (self.total - self.copied) / self.rate)
    }

    fn files_text(&self) -> String {
        self.files
            .map_or(String::new(), |(a, b)| format!("{a}/{b} files"))
    }
}

pub enum Progress {
    Bar(ProgressBar),
    Lines { last: Option<(Instant, String)> },
}

impl Progress {
    pub fn new() -> Progress {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "[{elapsed_precise}] {bar:20} {bytes}/{total_bytes} {wide_msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(250));
            Progress::Bar(bar)
        } else {
            Progress::Lines { last: None }
        }
    }

    pub fn update(&mut self, r: &Reading) {
        match self {
            Progress::Bar(b) => {
                b.set_length(r.total.max(r.copied));
                b.set_position(r.copied);
                b.set_message(format!(
                    "{}/s ETA {} {} {}",
                    human_bytes(r.rate),
                    r.eta(),
                    r.files_text(),
                    r.state
                ));
            }
            Progress::Lines { last } => {
                // A line per state, and every 5 s; none before the backup starts.
                let quiet = last
                    .as_ref()
                    .is_some_and(|(t, s)| *s == r.state && t.elapsed() < Duration::from_secs(5));
                if quiet || r.state == "idle" || r.state.is_empty() {
                    return;
                }
                *last = Some((Instant::now(), r.state.clone()));
                let pct = (r.copied * 100).checked_div(r.total).unwrap_or(0);
                eprintln!(
                    "tokubackup: {}: {} of {} ({pct}%), {}/s, ETA {}, {}",
                    r.state,
                    human_bytes(r.copied),
                    human_bytes(r.total),
                    human_bytes(r.rate),
                    r.eta(),
                    r.files_text()
                );
            }
        }
    }

    pub fn note(&self, msg: &str) {
        match self {
            Progress::Bar(b) => b.println(msg),
            Progress::Lines { .. } => eprintln!("{msg}"),
        }
    }

    pub fn finish(&self) {
        if let Progress::Bar(b) = self {
            b.finish_and_clear();
        }
    }
}

/// "N of M files" in the processlist State text (which the plugin puts
/// within the 64 characters information_schema shows).
pub fn files_in(state: &str) -> Option<(u64, u64)> {
    let i = state.find(" files")?;
    let words: Vec<&str> = state[..i].rsplit(' ').take(3).collect();
    match words.as_slice() {
        [m, "of", n] => Some((n.parse().ok()?, m.parse().ok()?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn files_from_the_state_text() {
        let s = "tokudb backup about 47% done: 6 of 206 files, 153525229 of 327925502 bytes copied (47%)";
        assert_eq!(super::files_in(s), Some((6, 206)));
        assert_eq!(super::files_in("copying"), None);
    }
}
