//! The runtime's log, as runc writes it: `--log FILE` (stderr with `--debug` without one),
//! `--log-format text|json`; an error goes to stderr as a bare sentence and into the log too,
//! where podman (through conmon) and containerd read the last `"level":"error"` line back.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

/// `--log-format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Where and how the runtime logs.
pub struct Log {
    file: Option<File>,
    format: LogFormat,
    debug: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warning",
            Level::Error => "error",
        }
    }
}

impl Log {
    /// Opens `file` for appending; a file that cannot be opened leaves the log on stderr.
    pub fn open(file: Option<&Path>, format: LogFormat, debug: bool) -> Log {
        let file = file.and_then(|p| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| eprintln!("cannot open the log file {}: {e}", p.display()))
                .ok()
        });
        Log {
            file,
            format,
            debug,
        }
    }

    /// One entry of the log.
    pub fn line(format: LogFormat, level: Level, msg: &str, time: &str) -> String {
        match format {
            LogFormat::Json => serde_json::json!({
                "level": level.name(),
                "msg": msg,
                "time": time,
            })
            .to_string(),
            LogFormat::Text => format!("time={time:?} level={} msg={msg:?}", level.name()),
        }
    }

    pub fn log(&self, level: Level, msg: &str) {
        if level == Level::Debug && !self.debug {
            return;
        }
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let line = Log::line(self.format, level, msg, &time);
        match &self.file {
            Some(f) => {
                let mut f: &File = f;
                let _ = writeln!(f, "{line}");
            }
            // Without a log file, stderr is often the container's own (conmon gives the
            // runtime the container's stdio): only --debug puts more than errors there.
            None if self.debug && level != Level::Error => eprintln!("{line}"),
            // An error reaches stderr once, as a sentence (below).
            None => {}
        }
    }

    pub fn debug(&self, msg: &str) {
        self.log(Level::Debug, msg);
    }

    pub fn warn(&self, msg: &str) {
        self.log(Level::Warn, msg);
    }

    /// The error that ends the command: in the log, and on stderr.
    pub fn error(&self, msg: &str) {
        self.log(Level::Error, msg);
        eprintln!("{msg}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_logrus_shaped() {
        let json = Log::line(LogFormat::Json, Level::Error, "no \"x\"", "T");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "no \"x\"");
        assert_eq!(v["time"], "T");
        let text = Log::line(LogFormat::Text, Level::Warn, "a b", "T");
        assert_eq!(text, "time=\"T\" level=warning msg=\"a b\"");
    }
}
