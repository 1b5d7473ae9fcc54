//! `GET /containerLogs/{namespace}/{pod}/{container}`: a container's output from its CRI
//! log files, as the kubelet serves it.
//!
//! A CRI entry is `<RFC3339Nano> <stdout|stderr> <P|F> <content>`; `P` pieces of a stream
//! are joined until its `F`. Rotated files (`PATH.N` … `PATH.1`, oldest first) come before
//! the live `PATH`. `tailLines` keeps the last lines of what is already written; `follow`
//! then goes on with new entries, polling the live file: when it is replaced (rotation)
//! the old file is drained first, and the stream ends once the instance's `exit.json` has
//! appeared and the file is drained. The reading runs on a blocking thread and sends
//! chunks to the response body.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::debug;

use super::query::QueryPairs;
use super::status::{lookup_failure, status_response};
use super::SharedState;
use crate::container::EXIT_STATE_FILE;

/// How often a followed log file is checked for new entries.
const FOLLOW_POLL: Duration = Duration::from_millis(100);
/// Output is sent to the client in chunks of about this size.
const CHUNK: usize = 32 * 1024;

/// What a log request asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogOptions {
    /// Keep streaming new lines until the instance exits.
    pub follow: bool,
    /// Only the last N lines of what is written already.
    pub tail_lines: Option<usize>,
    /// Only lines logged at or after this time.
    pub since: Option<jiff::Timestamp>,
    /// Prefix each line with its RFC 3339 time.
    pub timestamps: bool,
    /// The instance before the current one.
    pub previous: bool,
    /// Stop after this many bytes.
    pub limit_bytes: Option<u64>,
}

impl LogOptions {
    /// Reads the kubelet's query parameters; `Err` says which one is wrong.
    pub fn from_query(query: &QueryPairs) -> Result<Self, String> {
        let number = |name: &str| -> Result<Option<i64>, String> {
            query
                .get(name)
                .map(|value| {
                    value
                        .parse::<i64>()
                        .map_err(|_| format!("{name}: {value:?} is not an integer"))
                })
                .transpose()
        };
        let since_seconds = number("sinceSeconds")?;
        let since_time = query.get("sinceTime");
        let since = match (since_seconds, since_time) {
            (Some(_), Some(_)) => {
                return Err("at most one of sinceTime or sinceSeconds may be specified".into())
            }
            (Some(seconds), None) => {
                if seconds < 1 {
                    return Err(format!("sinceSeconds: {seconds} must be greater than 0"));
                }
                let now = jiff::Timestamp::now();
                Some(
                    now.checked_sub(jiff::SignedDuration::from_secs(seconds))
                        .unwrap_or(jiff::Timestamp::MIN),
                )
            }
            (None, Some(time)) => Some(
                time.parse::<jiff::Timestamp>()
                    .map_err(|err| format!("sinceTime: {time:?} is not an RFC 3339 time: {err}"))?,
            ),
            (None, None) => None,
        };
        let tail_lines = match number("tailLines")? {
            Some(n) if n < 0 => return Err(format!("tailLines: {n} must not be negative")),
            Some(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            None => None,
        };
        let limit_bytes = match number("limitBytes")? {
            Some(n) if n < 1 => return Err(format!("limitBytes: {n} must be greater than 0")),
            Some(n) => Some(n.unsigned_abs()),
            None => None,
        };
        Ok(Self {
            follow: query.flag("follow")?,
            tail_lines,
            since,
            timestamps: query.flag("timestamps")?,
            previous: query.flag("previous")?,
            limit_bytes,
        })
    }
}

/// The route handler.
pub(super) async fn handle(
    State(state): State<SharedState>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let query = QueryPairs::parse(query.as_deref());
    let options = match LogOptions::from_query(&query) {
        Ok(options) => options,
        Err(message) => return status_response(StatusCode::BAD_REQUEST, "BadRequest", message),
    };
    let view = state.view.clone();
    let previous = options.previous;
    let lookup =
        tokio::task::spawn_blocking(move || view.container(&namespace, &pod, &container, previous))
            .await;
    let instance = match lookup {
        Ok(Ok(instance)) => instance,
        Ok(Err(err)) => return lookup_failure(&err),
        Err(err) => {
            return status_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                format!("container lookup failed: {err}"),
            )
        }
    };
    let (sender, receiver) = mpsc::channel::<Result<Bytes, io::Error>>(8);
    let log = instance.log.clone();
    let instance_dir = instance.instance_dir.clone();
    tokio::task::spawn_blocking(move || {
        let mut sink = ChannelSink { sender };
        if let Err(err) = copy_log(&log, &instance_dir, &options, &mut sink, FOLLOW_POLL) {
            debug!(log = %log.display(), %err, "log stream ended with an error");
            let _ = sink.sender.blocking_send(Err(err));
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(receiver));
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// Where log output goes.
pub(crate) trait LogSink {
    /// Sends a chunk; `false` when the reader has gone away.
    fn send(&mut self, chunk: Vec<u8>) -> bool;
    /// Whether the reader has gone away.
    fn is_closed(&self) -> bool;
}

struct ChannelSink {
    sender: mpsc::Sender<Result<Bytes, io::Error>>,
}

impl LogSink for ChannelSink {
    fn send(&mut self, chunk: Vec<u8>) -> bool {
        self.sender.blocking_send(Ok(Bytes::from(chunk))).is_ok()
    }

    fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

/// `PATH.<index>`, a rotated log file.
fn rotated_path(path: &Path, index: u32) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(format!(".{index}"));
    PathBuf::from(name)
}

/// The rotated files of `log`, oldest first.
fn rotated_files(log: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut index = 1;
    while rotated_path(log, index).exists() {
        files.push(rotated_path(log, index));
        index += 1;
    }
    files.reverse();
    files
}

/// Writes the log of one instance to `sink` as `options` ask; see the module docs.
pub(crate) fn copy_log(
    log: &Path,
    instance_dir: &Path,
    options: &LogOptions,
    sink: &mut dyn LogSink,
    poll: Duration,
) -> io::Result<()> {
    let mut emitter = Emitter::new(sink, options);
    for rotated in rotated_files(log) {
        match LineReader::open(&rotated) {
            Ok(mut reader) => reader.read_available(&mut emitter)?,
            // Rotated away while we listed: its lines are in the next file.
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        if emitter.stopped {
            return Ok(());
        }
    }
    let mut live = match LineReader::open(log) {
        Ok(mut reader) => {
            reader.read_available(&mut emitter)?;
            Some(reader)
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => None,
        Err(err) => return Err(err),
    };
    if !options.follow {
        // An unterminated last line counts as a line for the tail.
        emitter.flush_partial_lines();
        emitter.flush();
        return Ok(());
    }
    emitter.end_tail();
    let exit_file = instance_dir.join(EXIT_STATE_FILE);
    let mut exited = false;
    loop {
        if let Some(reader) = live.as_mut() {
            reader.read_available(&mut emitter)?;
        }
        if !emitter.flush() || emitter.stopped {
            return Ok(());
        }
        // Rotation: the path now names another file (or none yet).
        let current = match std::fs::metadata(log) {
            Ok(meta) => Some(meta.ino()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => None,
            Err(err) => return Err(err),
        };
        let replaced = match (&live, current) {
            (Some(reader), Some(ino)) => reader.ino != ino,
            (None, Some(_)) => true,
            _ => false,
        };
        if replaced {
            if let Some(reader) = live.as_mut() {
                reader.read_available(&mut emitter)?;
            }
            live = match LineReader::open(log) {
                Ok(reader) => Some(reader),
                Err(err) if err.kind() == io::ErrorKind::NotFound => None,
                Err(err) => return Err(err),
            };
            continue;
        }
        if exited {
            emitter.flush_partial_lines();
            emitter.flush();
            return Ok(());
        }
        if exit_file.exists() {
            // One more pass drains what was written before the exit.
            exited = true;
            continue;
        }
        if emitter.sink.is_closed() {
            return Ok(());
        }
        std::thread::sleep(poll);
    }
}

/// Reads whole lines from a file as they are appended.
struct LineReader {
    file: File,
    ino: u64,
    /// The start of a line whose newline has not been written yet.
    carry: Vec<u8>,
}

impl LineReader {
    fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        let ino = file.metadata()?.ino();
        Ok(Self {
            file,
            ino,
            carry: Vec::new(),
        })
    }

    /// Feeds every complete line available now to `emitter`.
    fn read_available(&mut self, emitter: &mut Emitter<'_>) -> io::Result<()> {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            if emitter.stopped {
                return Ok(());
            }
            let read = self.file.read(&mut buffer)?;
            if read == 0 {
                return Ok(());
            }
            let mut chunk = &buffer[..read];
            while let Some(newline) = chunk.iter().position(|&b| b == b'\n') {
                if self.carry.is_empty() {
                    emitter.entry(&chunk[..newline]);
                } else {
                    self.carry.extend_from_slice(&chunk[..newline]);
                    let line = std::mem::take(&mut self.carry);
                    emitter.entry(&line);
                }
                chunk = &chunk[newline + 1..];
            }
            self.carry.extend_from_slice(chunk);
        }
    }
}

/// One CRI log entry.
#[derive(Debug, PartialEq, Eq)]
struct Entry<'a> {
    time: &'a str,
    /// 0 for stdout, 1 for stderr.
    stream: usize,
    partial: bool,
    content: &'a [u8],
}

/// Parses `<time> <stream> <P|F> <content>`; `None` for anything else.
fn parse_entry(line: &[u8]) -> Option<Entry<'_>> {
    let mut parts = line.splitn(4, |&b| b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?;
    let stream = match parts.next()? {
        b"stdout" => 0,
        b"stderr" => 1,
        _ => return None,
    };
    let partial = match parts.next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    let content = parts.next().unwrap_or_default();
    Some(Entry {
        time,
        stream,
        partial,
        content,
    })
}

/// A joined log line: the time of its first piece and its bytes (with the newline when
/// the line is complete).
struct LogLine {
    time: String,
    content: Vec<u8>,
}

/// Pieces of an unfinished line of one stream.
#[derive(Default)]
struct Partial {
    time: String,
    content: Vec<u8>,
}

/// Turns entries into output: joins pieces, filters by time, keeps the tail, prefixes
/// times, enforces the byte limit and batches chunks.
struct Emitter<'s> {
    sink: &'s mut dyn LogSink,
    since: Option<jiff::Timestamp>,
    timestamps: bool,
    limit: Option<u64>,
    sent: u64,
    /// While reading what was written before the request: the last `tailLines` lines.
    tail: Option<(usize, VecDeque<LogLine>)>,
    partial: [Partial; 2],
    buffer: Vec<u8>,
    /// The limit was reached or the reader went away.
    stopped: bool,
}

impl<'s> Emitter<'s> {
    fn new(sink: &'s mut dyn LogSink, options: &LogOptions) -> Self {
        Self {
            sink,
            since: options.since,
            timestamps: options.timestamps,
            limit: options.limit_bytes,
            sent: 0,
            tail: options.tail_lines.map(|n| (n, VecDeque::new())),
            partial: [Partial::default(), Partial::default()],
            buffer: Vec::with_capacity(CHUNK),
            stopped: false,
        }
    }

    fn entry(&mut self, raw: &[u8]) {
        let Some(entry) = parse_entry(raw) else {
            debug!(line = %String::from_utf8_lossy(raw), "skipping a malformed CRI log line");
            return;
        };
        let partial = &mut self.partial[entry.stream];
        if partial.content.is_empty() && partial.time.is_empty() {
            partial.time = entry.time.to_string();
        }
        partial.content.extend_from_slice(entry.content);
        if entry.partial {
            return;
        }
        let mut pieces = std::mem::take(partial);
        pieces.content.push(b'\n');
        self.line(LogLine {
            time: pieces.time,
            content: pieces.content,
        });
    }

    /// Ends unfinished lines as they are (the container's output had no final newline).
    fn flush_partial_lines(&mut self) {
        for stream in 0..2 {
            let pieces = std::mem::take(&mut self.partial[stream]);
            if !pieces.time.is_empty() {
                self.line(LogLine {
                    time: pieces.time,
                    content: pieces.content,
                });
            }
        }
        self.end_tail();
    }

    fn line(&mut self, line: LogLine) {
        if let Some(since) = self.since {
            match line.time.parse::<jiff::Timestamp>() {
                Ok(time) if time < since => return,
                _ => {}
            }
        }
        match &mut self.tail {
            Some((keep, lines)) => {
                if *keep == 0 {
                    return;
                }
                if lines.len() == *keep {
                    lines.pop_front();
                }
                lines.push_back(line);
            }
            None => self.write(&line),
        }
    }

    /// Emits the kept tail; from now on lines go straight out.
    fn end_tail(&mut self) {
        if let Some((_, lines)) = self.tail.take() {
            for line in lines {
                self.write(&line);
            }
        }
    }

    fn write(&mut self, line: &LogLine) {
        if self.stopped {
            return;
        }
        let start = self.buffer.len();
        if self.timestamps {
            self.buffer.extend_from_slice(line.time.as_bytes());
            self.buffer.push(b' ');
        }
        self.buffer.extend_from_slice(&line.content);
        if let Some(limit) = self.limit {
            let added = (self.buffer.len() - start) as u64;
            if self.sent + added >= limit {
                let keep = (limit - self.sent) as usize;
                self.buffer.truncate(start + keep);
                self.sent = limit;
                self.flush();
                self.stopped = true;
                return;
            }
            self.sent += added;
        }
        if self.buffer.len() >= CHUNK {
            self.flush();
        }
    }

    /// Sends what is buffered; `false` when the reader has gone away.
    fn flush(&mut self) -> bool {
        if self.buffer.is_empty() {
            return !self.stopped;
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK));
        if !self.sink.send(chunk) {
            self.stopped = true;
        }
        !self.stopped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::Write;

    #[derive(Default)]
    struct VecSink {
        out: Vec<u8>,
    }

    impl LogSink for VecSink {
        fn send(&mut self, chunk: Vec<u8>) -> bool {
            self.out.extend_from_slice(&chunk);
            true
        }
        fn is_closed(&self) -> bool {
            false
        }
    }

    fn read(log: &Path, options: LogOptions) -> String {
        let mut sink = VecSink::default();
        copy_log(
            log,
            log.parent().expect("parent"),
            &options,
            &mut sink,
            Duration::from_millis(10),
        )
        .expect("copy");
        String::from_utf8(sink.out).expect("utf8")
    }

    const T1: &str = "2024-05-01T10:00:01.000000001Z";
    const T2: &str = "2024-05-01T10:00:02.000000002Z";
    const T3: &str = "2024-05-01T10:00:03.000000003Z";

    #[test]
    fn entries_parse_and_malformed_ones_do_not() {
        assert_eq!(
            parse_entry(format!("{T1} stderr P a b").as_bytes()),
            Some(Entry {
                time: T1,
                stream: 1,
                partial: true,
                content: b"a b"
            })
        );
        assert_eq!(
            parse_entry(format!("{T1} stdout F").as_bytes()).map(|e| e.content),
            Some(&b""[..])
        );
        assert_eq!(parse_entry(b"garbage"), None);
        assert_eq!(parse_entry(format!("{T1} stdin F x").as_bytes()), None);
    }

    #[test]
    fn joins_pieces_rotated_files_first_tail_since_timestamps_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("0.log");
        fs::write(rotated_path(&log, 2), format!("{T1} stdout F one\n")).expect("write");
        fs::write(
            rotated_path(&log, 1),
            format!("{T1} stdout P tw\n{T2} stderr F err\n"),
        )
        .expect("write");
        fs::write(
            &log,
            format!("{T2} stdout F o\n{T3} stdout F three\n{T3} stdout P no newline\n"),
        )
        .expect("write");
        assert_eq!(
            read(&log, LogOptions::default()),
            "one\nerr\ntwo\nthree\nno newline"
        );
        assert_eq!(
            read(
                &log,
                LogOptions {
                    tail_lines: Some(2),
                    ..Default::default()
                }
            ),
            "three\nno newline"
        );
        assert_eq!(
            read(
                &log,
                LogOptions {
                    since: Some(T2.parse().expect("time")),
                    timestamps: true,
                    ..Default::default()
                }
            ),
            format!("{T2} err\n{T3} three\n{T3} no newline")
        );
        assert_eq!(
            read(
                &log,
                LogOptions {
                    limit_bytes: Some(6),
                    ..Default::default()
                }
            ),
            "one\ner"
        );
        assert_eq!(
            read(
                &log,
                LogOptions {
                    tail_lines: Some(0),
                    ..Default::default()
                }
            ),
            ""
        );
    }

    #[test]
    fn follow_ends_when_exit_is_recorded_and_survives_rotation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("0.log");
        fs::write(&log, format!("{T1} stdout F first\n")).expect("write");
        let writer_log = log.clone();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let mut file = fs::OpenOptions::new()
                .append(true)
                .open(&writer_log)
                .expect("open");
            file.write_all(format!("{T2} stdout F second\n").as_bytes())
                .expect("append");
            std::thread::sleep(Duration::from_millis(50));
            fs::rename(&writer_log, rotated_path(&writer_log, 1)).expect("rotate");
            file.write_all(format!("{T2} stdout F third\n").as_bytes())
                .expect("append to rotated");
            std::thread::sleep(Duration::from_millis(50));
            fs::write(&writer_log, format!("{T3} stdout F fourth\n")).expect("new file");
            std::thread::sleep(Duration::from_millis(50));
            let parent = writer_log.parent().expect("parent");
            fs::write(parent.join(EXIT_STATE_FILE), "{}").expect("exit");
        });
        let out = read(
            &log,
            LogOptions {
                follow: true,
                ..Default::default()
            },
        );
        writer.join().expect("writer");
        assert_eq!(out, "first\nsecond\nthird\nfourth\n");
    }

    #[test]
    fn options_come_from_the_query() {
        let query = QueryPairs::parse(Some(
            "follow=true&tailLines=5&timestamps=1&previous=false&limitBytes=10&sinceTime=2024-05-01T10:00:00Z",
        ));
        let options = LogOptions::from_query(&query).expect("options");
        assert!(options.follow && options.timestamps && !options.previous);
        assert_eq!(options.tail_lines, Some(5));
        assert_eq!(options.limit_bytes, Some(10));
        assert_eq!(
            options.since,
            Some("2024-05-01T10:00:00Z".parse().expect("time"))
        );
        let both = QueryPairs::parse(Some("sinceSeconds=5&sinceTime=2024-05-01T10:00:00Z"));
        assert!(LogOptions::from_query(&both).is_err());
        let bad = QueryPairs::parse(Some("tailLines=x"));
        assert!(LogOptions::from_query(&bad)
            .expect_err("bad")
            .contains("tailLines"));
    }
}
