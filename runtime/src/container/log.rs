//! Container output in the CRI log format, with size-based rotation.
//!
//! Each entry is `<RFC3339Nano UTC> <stdout|stderr> <F|P> <content>\n`, the format the
//! kubelet reads: `F` ends a line, `P` is a piece of a longer one. Lines longer than
//! [`MAX_ENTRY_CONTENT`] are cut into `P` pieces; an unterminated last line is flushed
//! as `P` at EOF. When writing an entry would take the file past its maximum size, the
//! file is rotated: `PATH` becomes `PATH.1`, `PATH.1` becomes `PATH.2` and so on up to
//! `PATH.<max_files-1>`; the oldest is dropped.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::state::now_rfc3339_nanos;
use super::ContainerError;

/// Largest content of one log entry (the kubelet's and containerd's 16 KiB).
pub const MAX_ENTRY_CONTENT: usize = 16 * 1024;

/// Which output stream of the container an entry comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The container's stdout.
    Stdout,
    /// The container's stderr.
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

/// Writes container output to a CRI log file, rotating it by size.
pub struct CriLogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
    max_files: u32,
    /// Bytes of an unfinished line, per stream.
    pending: [Vec<u8>; 2],
    /// Reused buffer for one formatted entry, so each entry is one `write`.
    entry: Vec<u8>,
}

impl CriLogWriter {
    /// Opens (appending to) the log file at `path`.
    pub fn open(path: &Path, max_size: u64, max_files: u32) -> Result<Self, ContainerError> {
        let file = open_append(path)?;
        let size = file
            .metadata()
            .map_err(|err| ContainerError::io(format!("stat log file {}", path.display()), err))?
            .len();
        Ok(Self {
            path: path.to_path_buf(),
            file,
            size,
            max_size,
            max_files: max_files.max(1),
            pending: [Vec::new(), Vec::new()],
            entry: Vec::with_capacity(MAX_ENTRY_CONTENT + 64),
        })
    }

    /// Adds bytes read from `stream`: complete lines become `F` entries, and an unfinished
    /// line is kept until its end arrives or it reaches [`MAX_ENTRY_CONTENT`].
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> Result<(), ContainerError> {
        let timestamp = now_rfc3339_nanos();
        let mut pending = std::mem::take(&mut self.pending[stream.index()]);
        let mut rest = data;
        let result = loop {
            if rest.is_empty() {
                break Ok(());
            }
            let room = MAX_ENTRY_CONTENT - pending.len();
            let window = &rest[..rest.len().min(room)];
            if let Some(newline) = window.iter().position(|&b| b == b'\n') {
                pending.extend_from_slice(&window[..newline]);
                rest = &rest[newline + 1..];
                if let Err(err) = self.write_entry(&timestamp, stream, 'F', &pending) {
                    break Err(err);
                }
                pending.clear();
            } else {
                pending.extend_from_slice(window);
                rest = &rest[window.len()..];
                if pending.len() == MAX_ENTRY_CONTENT {
                    if let Err(err) = self.write_entry(&timestamp, stream, 'P', &pending) {
                        break Err(err);
                    }
                    pending.clear();
                }
            }
        };
        self.pending[stream.index()] = pending;
        result
    }

    /// Flushes an unterminated last line of `stream` as a `P` entry (at EOF).
    pub fn finish(&mut self, stream: Stream) -> Result<(), ContainerError> {
        let pending = std::mem::take(&mut self.pending[stream.index()]);
        if pending.is_empty() {
            return Ok(());
        }
        self.write_entry(&now_rfc3339_nanos(), stream, 'P', &pending)
    }

    fn write_entry(
        &mut self,
        timestamp: &str,
        stream: Stream,
        tag: char,
        content: &[u8],
    ) -> Result<(), ContainerError> {
        self.entry.clear();
        self.entry.extend_from_slice(timestamp.as_bytes());
        self.entry.push(b' ');
        self.entry.extend_from_slice(stream.name().as_bytes());
        self.entry.push(b' ');
        self.entry.push(tag as u8);
        self.entry.push(b' ');
        self.entry.extend_from_slice(content);
        self.entry.push(b'\n');
        let len = self.entry.len() as u64;
        if self.size > 0 && self.size + len > self.max_size {
            self.rotate()?;
        }
        self.file.write_all(&self.entry).map_err(|err| {
            ContainerError::io(format!("write log file {}", self.path.display()), err)
        })?;
        self.size += len;
        Ok(())
    }

    /// Shifts `PATH.N` up by one (dropping the oldest), renames `PATH` to `PATH.1` and
    /// starts a new `PATH`. With `max_files == 1` the file is simply started again.
    fn rotate(&mut self) -> Result<(), ContainerError> {
        for index in (1..self.max_files.saturating_sub(1)).rev() {
            let from = rotated_path(&self.path, index);
            let to = rotated_path(&self.path, index + 1);
            match fs::rename(&from, &to) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => {
                    return Err(ContainerError::io(
                        format!("rotate {} to {}", from.display(), to.display()),
                        err,
                    ))
                }
            }
        }
        if self.max_files > 1 {
            let first = rotated_path(&self.path, 1);
            fs::rename(&self.path, &first).map_err(|err| {
                ContainerError::io(
                    format!("rotate {} to {}", self.path.display(), first.display()),
                    err,
                )
            })?;
        } else {
            fs::remove_file(&self.path).map_err(|err| {
                ContainerError::io(format!("remove full log file {}", self.path.display()), err)
            })?;
        }
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// `PATH.<index>`.
pub(crate) fn rotated_path(path: &Path, index: u32) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(format!(".{index}"));
    PathBuf::from(name)
}

fn open_append(path: &Path) -> Result<File, ContainerError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|err| ContainerError::io(format!("open log file {}", path.display()), err))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses a log file into (stream, tag, content) triples, checking the timestamps.
    fn entries(path: &Path) -> Vec<(String, String, String)> {
        let text = fs::read_to_string(path).expect("read log");
        text.lines()
            .map(|line| {
                let mut parts = line.splitn(4, ' ');
                let time = parts.next().expect("time");
                assert!(time.parse::<jiff::Timestamp>().is_ok(), "bad time {time}");
                let stream = parts.next().expect("stream").to_string();
                let tag = parts.next().expect("tag").to_string();
                let content = parts.next().unwrap_or("").to_string();
                (stream, tag, content)
            })
            .collect()
    }

    fn triple(stream: &str, tag: &str, content: &str) -> (String, String, String) {
        (stream.into(), tag.into(), content.into())
    }

    #[test]
    fn lines_are_joined_across_reads_and_streams_kept_apart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.log");
        let mut log = CriLogWriter::open(&path, 1 << 20, 3).expect("open");
        log.write(Stream::Stdout, b"hel").expect("write");
        log.write(Stream::Stderr, b"oops\n").expect("write");
        log.write(Stream::Stdout, b"lo\n\nworld").expect("write");
        log.finish(Stream::Stdout).expect("finish");
        log.finish(Stream::Stderr).expect("finish");
        assert_eq!(
            entries(&path),
            vec![
                triple("stderr", "F", "oops"),
                triple("stdout", "F", "hello"),
                triple("stdout", "F", ""),
                triple("stdout", "P", "world"),
            ]
        );
    }

    #[test]
    fn long_lines_are_cut_into_partial_pieces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.log");
        let mut log = CriLogWriter::open(&path, 1 << 20, 3).expect("open");
        let mut line = vec![b'a'; MAX_ENTRY_CONTENT * 2 + 10];
        line.push(b'\n');
        log.write(Stream::Stdout, &line).expect("write");
        let got = entries(&path);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].1, "P");
        assert_eq!(got[0].2.len(), MAX_ENTRY_CONTENT);
        assert_eq!(got[1].1, "P");
        assert_eq!(got[2], triple("stdout", "F", &"a".repeat(10)));
    }

    #[test]
    fn rotation_keeps_max_files_and_drops_the_oldest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.log");
        // Each entry is about 50 bytes, so every second entry rotates.
        let mut log = CriLogWriter::open(&path, 100, 3).expect("open");
        for n in 0..7 {
            log.write(Stream::Stdout, format!("line {n}\n").as_bytes())
                .expect("write");
        }
        assert_eq!(entries(&path), vec![triple("stdout", "F", "line 6")]);
        assert_eq!(
            entries(&rotated_path(&path, 1)),
            vec![
                triple("stdout", "F", "line 4"),
                triple("stdout", "F", "line 5")
            ]
        );
        assert_eq!(
            entries(&rotated_path(&path, 2)),
            vec![
                triple("stdout", "F", "line 2"),
                triple("stdout", "F", "line 3")
            ]
        );
        assert!(!rotated_path(&path, 3).exists());
    }

    #[test]
    fn one_file_means_start_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.log");
        let mut log = CriLogWriter::open(&path, 60, 1).expect("open");
        log.write(Stream::Stdout, b"first\nsecond\n")
            .expect("write");
        assert_eq!(entries(&path), vec![triple("stdout", "F", "second")]);
        assert!(!rotated_path(&path, 1).exists());
    }
}
