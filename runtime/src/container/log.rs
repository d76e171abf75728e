//! The container log in docker's json-file format: one JSON object a line,
//! `{"log":"text\n","stream":"stdout","time":"2024-01-02T03:04:05.123456789Z"}`.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

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

/// Appends records to a container's log file.
pub struct LogWriter {
    file: File,
}

impl LogWriter {
    pub fn open(path: &Path) -> io::Result<LogWriter> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(LogWriter { file })
    }

    pub fn write(&mut self, stream: Stream, line: &[u8]) -> io::Result<()> {
        let record = Record {
            log: String::from_utf8_lossy(line).into_owned(),
            stream,
            time: Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true),
        };
        let mut json = serde_json::to_vec(&record)?;
        json.push(b'\n');
        // One write a record: concurrent readers never see half a line.
        self.file.write_all(&json)
    }
}

/// Reads the records from `offset` on; returns them and the offset after the last whole line.
pub fn read_from(path: &Path, offset: u64) -> io::Result<(Vec<Record>, u64)> {
    use std::io::{Seek, SeekFrom};
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(e),
    };
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = BufReader::new(file);
    let mut records = Vec::new();
    let mut pos = offset;
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        pos += n as u64;
        if let Ok(record) = serde_json::from_str(&line) {
            records.push(record);
        }
    }
    Ok((records, pos))
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
        let mut w = LogWriter::open(&path).unwrap();
        w.write(Stream::Stdout, b"out\n").unwrap();
        w.write(Stream::Stderr, b"err\n").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["log"], "out\n");
        assert_eq!(first["stream"], "stdout");
        assert!(first["time"].as_str().unwrap().ends_with('Z'));
        let (records, end) = read_from(&path, 0).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].stream, Stream::Stderr);
        assert!(records[0].time().is_some());
        w.write(Stream::Stdout, b"more\n").unwrap();
        let (more, _) = read_from(&path, end).unwrap();
        assert_eq!(more.len(), 1);
        assert_eq!(more[0].log, "more\n");
    }
}
