//! The container log in docker's json-file format: one JSON object a line,
//! `{"log":"text\n","stream":"stdout","time":"2024-01-02T03:04:05.123456789Z"}`.
//!
//! With docker's json-file rotation (`--log-opt max-size=`, `max-file=`): when the next record
//! would take `log.json` past `max-size`, it is renamed `log.json.1` (the older ones shift up,
//! the one past `max-file` is deleted) and a new `log.json` starts. Records are never split
//! across files, and readers follow the renames by file identity, so none is read twice or
//! skipped while it is still kept.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub log: String,
    pub stream: Stream,
    pub time: String,
}

impl Record {
    pub fn time(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.time)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// Longest record before a line is cut (docker cuts at 16 KiB too).
const MAX_RECORD: usize = 16 * 1024;

/// Turns a stream's bytes into records, a line each; a partial line waits for its end.
#[derive(Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Feeds bytes; returns the complete lines (each with its `\n`).
    pub fn feed(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        self.pending.extend_from_slice(data);
        let mut lines = Vec::new();
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            lines.push(self.pending.drain(..=end).collect());
        }
        while self.pending.len() >= MAX_RECORD {
            lines.push(self.pending.drain(..MAX_RECORD).collect());
        }
        lines
    }

    /// What is left at end of stream.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }
}

/// Default `max-size`: 20 MiB, as docker's `local` log driver.
pub const DEFAULT_MAX_SIZE: u64 = 20 << 20;
/// Default `max-file`: 5 files (so at most 100 MiB a container), as docker's `local` driver.
pub const DEFAULT_MAX_FILE: u32 = 5;

/// docker's json-file `--log-opt`s, fixed at create.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogOptions {
    /// Size in bytes past which `log.json` is rotated; 0 never rotates (`max-size=-1`).
    pub max_size: u64,
    /// Files kept, the current one included (at least 1).
    pub max_file: u32,
}

impl Default for LogOptions {
    /// Also what containers created before log rotation existed get.
    fn default() -> Self {
        LogOptions {
            max_size: DEFAULT_MAX_SIZE,
            max_file: DEFAULT_MAX_FILE,
        }
    }
}

/// A `--log-opt` nook does not accept.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LogOptError {
    #[error("invalid --log-opt {0:?}: expected KEY=VALUE")]
    Syntax(String),
    #[error("unknown log opt {0:?} for the json-file log driver (known: max-size, max-file)")]
    Unknown(String),
    #[error(
        "invalid --log-opt max-size={0:?}: expected a positive size like 10m, or -1 for no limit"
    )]
    Size(String),
    #[error("invalid --log-opt max-file={0:?}: expected a positive number of files")]
    Files(String),
}

impl LogOptions {
    /// Parses `KEY=VALUE` options; unset ones keep nook's defaults.
    pub fn parse(opts: &[String]) -> Result<LogOptions, LogOptError> {
        let mut out = LogOptions::default();
        for opt in opts {
            let (key, value) = opt
                .split_once('=')
                .ok_or_else(|| LogOptError::Syntax(opt.clone()))?;
            match key {
                "max-size" => {
                    out.max_size =
                        parse_size(value).ok_or_else(|| LogOptError::Size(value.into()))?
                }
                "max-file" => {
                    out.max_file = value
                        .parse()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or_else(|| LogOptError::Files(value.into()))?
                }
                _ => return Err(LogOptError::Unknown(key.into())),
            }
        }
        Ok(out)
    }
}

/// `max-size`: a size in docker's units (the limit flags' parser), or `-1` for no limit (0).
fn parse_size(s: &str) -> Option<u64> {
    if s == "-1" {
        return Some(0);
    }
    crate::isolation::limits::parse_size("--log-opt max-size", s)
        .ok()
        .filter(|&b| b > 0)
}

/// The `n`th rotated file of the log at `path` (`log.json.1` is the newest).
pub fn rotated_path(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Appends records to a container's log file, rotating it per its [`LogOptions`].
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    options: LogOptions,
    dropped: u64,
    last_error: Option<String>,
}

fn open_append(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

impl LogWriter {
    pub fn open(path: &Path, options: LogOptions) -> io::Result<LogWriter> {
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            path: path.to_path_buf(),
            file,
            size,
            options,
            dropped: 0,
            last_error: None,
        })
    }

    /// Appends one record. A record that cannot be written (a full disk) is counted in
    /// [`LogWriter::dropped`] and leaves no part of itself in the file.
    pub fn write(&mut self, stream: Stream, line: &[u8]) -> io::Result<()> {
        let record = Record {
            log: String::from_utf8_lossy(line).into_owned(),
            stream,
            time: Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true),
        };
        let mut json = serde_json::to_vec(&record)?;
        json.push(b'\n');
        let len = json.len() as u64;
        if self.options.max_size > 0 && self.size > 0 && self.size + len > self.options.max_size {
            // A failed rotation keeps writing to the current file: no line is lost for it.
            if let Err(e) = self.rotate() {
                self.last_error = Some(format!("cannot rotate {}: {e}", self.path.display()));
            }
        }
        // One write a record: concurrent readers never see half a line.
        match self.file.write_all(&json) {
            Ok(()) => {
                self.size += len;
                Ok(())
            }
            Err(e) => {
                // Cut what part of it got written, so the next record starts a line.
                let _ = self.file.set_len(self.size);
                self.dropped += 1;
                self.last_error = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// Shifts `log.json.N` up (dropping the one past `max_file`), moves `log.json` to
    /// `log.json.1` and starts a new one. With `max_file` 1 the old log is deleted.
    fn rotate(&mut self) -> io::Result<()> {
        let keep = self.options.max_file.max(1);
        let ignore_missing = |r: io::Result<()>| match r {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        };
        if keep == 1 {
            ignore_missing(std::fs::remove_file(&self.path))?;
        } else {
            ignore_missing(std::fs::remove_file(rotated_path(&self.path, keep - 1)))?;
            for n in (1..keep - 1).rev() {
                ignore_missing(std::fs::rename(
                    rotated_path(&self.path, n),
                    rotated_path(&self.path, n + 1),
                ))?;
            }
            std::fs::rename(&self.path, rotated_path(&self.path, 1))?;
        }
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }

    /// Records that could not be written.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Why the last record could not be written (or the log not rotated).
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }
}

/// A file's identity: it survives renames.
type FileId = (u64, u64);

/// An open log file and how far it has been read (up to the end of its last whole line).
struct Cursor {
    file: File,
    id: FileId,
    offset: u64,
}

impl Cursor {
    fn new(file: File) -> io::Result<Cursor> {
        let meta = file.metadata()?;
        Ok(Cursor {
            file,
            id: (meta.dev(), meta.ino()),
            offset: 0,
        })
    }

    /// The whole records written since the last read.
    fn read_more(&mut self) -> io::Result<Vec<Record>> {
        use std::io::{Seek, SeekFrom};
        self.file.seek(SeekFrom::Start(self.offset))?;
        let mut reader = BufReader::new(&self.file);
        let mut records = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            let n = reader.read_line(&mut line)?;
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            self.offset += n as u64;
            if let Ok(record) = serde_json::from_str(&line) {
                records.push(record);
            }
        }
        Ok(records)
    }
}

fn identity(path: &Path) -> io::Result<Option<FileId>> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some((m.dev(), m.ino()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The log's files, oldest first, each opened once. They are opened newest first, so a
/// rotation meanwhile (which renames towards older names) only shows a file again, which its
/// identity drops, and never hides one between two that are kept.
fn open_files(path: &Path) -> io::Result<Vec<Cursor>> {
    let highest = highest_rotation(path)?;
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for n in 0..=highest {
        let p = if n == 0 {
            path.to_path_buf()
        } else {
            rotated_path(path, n)
        };
        match File::open(&p) {
            Ok(f) => {
                let cursor = Cursor::new(f)?;
                if seen.insert(cursor.id) {
                    out.push(cursor);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    out.reverse();
    Ok(out)
}

/// The largest N of the `log.json.N` files there are (0 if none).
fn highest_rotation(path: &Path) -> io::Result<u32> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(0);
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut highest = 0;
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(n) = name.strip_prefix(&prefix).and_then(|n| n.parse().ok()) {
            highest = highest.max(n);
        }
    }
    Ok(highest)
}

/// Reads a log and its rotated files in order, then follows it across rotations.
pub struct LogReader {
    path: PathBuf,
    current: Option<Cursor>,
}

impl LogReader {
    /// Every record kept (rotated files first), and a reader that continues after them.
    pub fn read_all(path: &Path) -> io::Result<(Vec<Record>, LogReader)> {
        let mut records = Vec::new();
        let mut files = open_files(path)?;
        for cursor in &mut files {
            records.extend(cursor.read_more()?);
        }
        let reader = LogReader {
            path: path.to_path_buf(),
            current: files.pop(),
        };
        Ok((records, reader))
    }

    /// The records written since the last call, across any rotations meanwhile (records of
    /// files deleted by rotation before they were read are gone, as with docker).
    pub fn poll(&mut self) -> io::Result<Vec<Record>> {
        let mut out = Vec::new();
        loop {
            let Some(cursor) = self.current.as_mut() else {
                match File::open(&self.path) {
                    Ok(f) => {
                        self.current = Some(Cursor::new(f)?);
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
                    Err(e) => return Err(e),
                }
            };
            // Checked before reading: once renamed away, a file gets no more records, so
            // reading it after the check gets all of them.
            let live = identity(&self.path)? == Some(cursor.id);
            out.extend(cursor.read_more()?);
            if live {
                return Ok(out);
            }
            let id = cursor.id;
            let files = open_files(&self.path)?;
            let next = match files.iter().position(|c| c.id == id) {
                Some(i) => i + 1,
                // Deleted by rotation: every file left is newer.
                None => 0,
            };
            match files.into_iter().nth(next) {
                Some(c) => self.current = Some(c),
                // The new log.json is not there yet.
                None => return Ok(out),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_and_partial_lines_wait() {
        let mut s = LineSplitter::default();
        assert_eq!(s.feed(b"a\nb"), vec![b"a\n".to_vec()]);
        assert_eq!(s.feed(b"c\n\n"), vec![b"bc\n".to_vec(), b"\n".to_vec()]);
        assert_eq!(s.feed(b"tail"), Vec::<Vec<u8>>::new());
        assert_eq!(s.finish(), Some(b"tail".to_vec()));
        assert_eq!(s.finish(), None);
        let long = vec![b'x'; MAX_RECORD + 5];
        assert_eq!(s.feed(&long).len(), 1);
    }

    #[test]
    fn records_are_dockers_json_file_lines_and_read_back_incrementally() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.json");
        let mut w = LogWriter::open(&path, LogOptions::default()).unwrap();
        w.write(Stream::Stdout, b"out\n").unwrap();
        w.write(Stream::Stderr, b"err\n").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["log"], "out\n");
        assert_eq!(first["stream"], "stdout");
        assert!(first["time"].as_str().unwrap().ends_with('Z'));
        let (records, mut reader) = LogReader::read_all(&path).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].stream, Stream::Stderr);
        assert!(records[0].time().is_some());
        w.write(Stream::Stdout, b"more\n").unwrap();
        let more = reader.poll().unwrap();
        assert_eq!(more.len(), 1);
        assert_eq!(more[0].log, "more\n");
        assert!(reader.poll().unwrap().is_empty());
    }

    fn numbered(records: &[Record]) -> Vec<u32> {
        records
            .iter()
            .map(|r| r.log.trim_end().parse().unwrap())
            .collect()
    }

    fn size_of_records(n: u64) -> u64 {
        // One record of "NNNN\n" is about 80 bytes; `n` of them.
        n * 80
    }

    #[test]
    fn rotation_keeps_max_file_files_of_whole_records_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.json");
        let options = LogOptions {
            max_size: size_of_records(10),
            max_file: 3,
        };
        let mut w = LogWriter::open(&path, options).unwrap();
        for i in 0..1000u32 {
            w.write(Stream::Stdout, format!("{i}\n").as_bytes())
                .unwrap();
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["log.json", "log.json.1", "log.json.2"]);
        for name in &names {
            let p = dir.path().join(name);
            let text = std::fs::read_to_string(&p).unwrap();
            assert!(std::fs::metadata(&p).unwrap().len() <= options.max_size);
            // Every line a whole record.
            for line in text.lines() {
                serde_json::from_str::<Record>(line).unwrap();
            }
        }
        let (records, _) = LogReader::read_all(&path).unwrap();
        let got = numbered(&records);
        assert_eq!(*got.last().unwrap(), 999);
        assert!(got.len() > 20, "{got:?}");
        assert!(
            got.windows(2).all(|w| w[1] == w[0] + 1),
            "in order, none missing: {got:?}"
        );
        // Reopened (a restart), it keeps rotating from the current size.
        let mut w = LogWriter::open(&path, options).unwrap();
        w.write(Stream::Stdout, b"1000\n").unwrap();
        let (records, _) = LogReader::read_all(&path).unwrap();
        assert_eq!(*numbered(&records).last().unwrap(), 1000);
    }

    #[test]
    fn a_follower_reads_every_line_across_rotations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.json");
        let options = LogOptions {
            max_size: size_of_records(10),
            max_file: 4,
        };
        let mut w = LogWriter::open(&path, options).unwrap();
        let (first, mut reader) = LogReader::read_all(&path).unwrap();
        let mut seen = numbered(&first);
        let mut next = 0u32;
        // Bursts of up to two rotations between polls; max_file 4 keeps them all.
        for burst in [1u32, 7, 10, 19, 3, 25, 0, 11] {
            for _ in 0..burst {
                w.write(Stream::Stdout, format!("{next}\n").as_bytes())
                    .unwrap();
                next += 1;
            }
            seen.extend(numbered(&reader.poll().unwrap()));
        }
        assert_eq!(seen, (0..next).collect::<Vec<_>>());
    }

    #[test]
    fn max_file_one_truncates_and_a_follower_still_gets_every_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.json");
        let options = LogOptions {
            max_size: size_of_records(5),
            max_file: 1,
        };
        let mut w = LogWriter::open(&path, options).unwrap();
        let (_, mut reader) = LogReader::read_all(&path).unwrap();
        let mut seen = Vec::new();
        for i in 0..40u32 {
            w.write(Stream::Stdout, format!("{i}\n").as_bytes())
                .unwrap();
            if i % 3 == 0 {
                seen.extend(numbered(&reader.poll().unwrap()));
            }
        }
        seen.extend(numbered(&reader.poll().unwrap()));
        assert_eq!(seen, (0..40).collect::<Vec<_>>());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(std::fs::metadata(&path).unwrap().len() <= options.max_size);
    }

    #[test]
    fn log_opts_follow_docker_json_file() {
        let parse = |opts: &[&str]| {
            LogOptions::parse(&opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(parse(&[]).unwrap(), LogOptions::default());
        assert_eq!(
            parse(&["max-size=10m", "max-file=3"]).unwrap(),
            LogOptions {
                max_size: 10 << 20,
                max_file: 3
            }
        );
        assert_eq!(parse(&["max-size=100k"]).unwrap().max_size, 100 << 10);
        assert_eq!(parse(&["max-size=1GiB"]).unwrap().max_size, 1 << 30);
        assert_eq!(parse(&["max-size=2048"]).unwrap().max_size, 2048);
        assert_eq!(parse(&["max-size=-1"]).unwrap().max_size, 0);
        assert_eq!(
            parse(&["max-size=lots"]),
            Err(LogOptError::Size("lots".into()))
        );
        assert_eq!(parse(&["max-size=0"]), Err(LogOptError::Size("0".into())));
        assert_eq!(parse(&["max-file=0"]), Err(LogOptError::Files("0".into())));
        assert_eq!(
            parse(&["mode=non-blocking"]),
            Err(LogOptError::Unknown("mode".into()))
        );
        assert_eq!(
            parse(&["max-size"]),
            Err(LogOptError::Syntax("max-size".into()))
        );
    }
}
