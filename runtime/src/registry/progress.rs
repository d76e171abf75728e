//! What a transfer shows: one progress bar per blob (size, bytes done, rate) when stderr is a
//! terminal, one line per event otherwise (`<id>: Pull complete`, as docker prints when piped),
//! or nothing (`-q`).

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::image::digest::Digest;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Bars,
    Lines,
    Quiet,
}

impl Mode {
    /// Bars on a terminal, lines otherwise, nothing with `quiet`.
    pub fn auto(quiet: bool) -> Mode {
        if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Lines
        }
    }
}

/// The progress display of one transfer; shared by its worker threads.
pub struct Progress {
    mode: Mode,
    multi: Option<MultiProgress>,
    out: Mutex<Box<dyn Write + Send>>,
}

impl Progress {
    /// Event lines go to `out` (stdout for `pull`, stderr for the pull `run` implies).
    pub fn new(mode: Mode, out: Box<dyn Write + Send>) -> Progress {
        let multi = (mode == Mode::Bars)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8)));
        Progress {
            mode,
            multi,
            out: Mutex::new(out),
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Prints a line (not in quiet mode), above the bars if there are any.
    pub fn line(&self, text: &str) {
        match (&self.mode, &self.multi) {
            (Mode::Quiet, _) => {}
            (Mode::Bars, Some(m)) => {
                let _ = m.println(text);
            }
            _ => {
                let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
                let _ = writeln!(out, "{text}");
                let _ = out.flush();
            }
        }
    }

    /// A task for one blob of `total` bytes, shown by the digest's short id.
    pub fn task(&self, digest: &Digest, total: u64) -> Task<'_> {
        let id = digest.short().to_string();
        let bar = self.multi.as_ref().map(|m| {
            let bar = m.add(ProgressBar::new(total));
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix}: {msg:<18} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12}",
                )
                .expect("the template is valid")
                .progress_chars("=> "),
            );
            bar.set_prefix(id.clone());
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        Task {
            progress: self,
            id,
            bar,
        }
    }
}

/// The progress of one blob.
pub struct Task<'a> {
    progress: &'a Progress,
    id: String,
    bar: Option<ProgressBar>,
}

impl Task<'_> {
    /// A new state of the blob (`Waiting`, `Downloading`, `Verifying Checksum` ...).
    pub fn status(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(message.to_string()),
            None => self.progress.line(&format!("{}: {message}", self.id)),
        }
    }

    /// Bytes moved so far.
    pub fn set_position(&self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        }
    }

    pub fn inc(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    /// The final state; the bar stays on screen with it.
    pub fn finish(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.finish_with_message(message.to_string()),
            None => self.progress.line(&format!("{}: {message}", self.id)),
        }
    }

    /// Gives up the bar without a final state (an error follows).
    pub fn abandon(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.abandon_with_message(message.to_string()),
            None => self.progress.line(&format!("{}: {message}", self.id)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_mode_prints_one_line_per_event_and_quiet_nothing() {
        let sink = Sink::default();
        let p = Progress::new(Mode::Lines, Box::new(sink.clone()));
        let d = Digest::of(b"x");
        let t = p.task(&d, 10);
        t.status("Pulling fs layer");
        t.inc(5);
        t.finish("Pull complete");
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            format!("{0}: Pulling fs layer\n{0}: Pull complete\n", d.short())
        );
        let sink = Sink::default();
        let p = Progress::new(Mode::Quiet, Box::new(sink.clone()));
        p.task(&d, 1).finish("done");
        p.line("x");
        assert!(sink.0.lock().unwrap().is_empty());
    }
}
