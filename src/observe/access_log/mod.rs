//! The access log: one line per request, formatted and written by a thread
//! of its own, so a slow disk or a full pipe never holds a request. The
//! queue between them is bounded (`buffer` lines); when it is full, the
//! line is dropped and counted (`portcullis_access_log_dropped_total`).

pub mod record;
pub mod redact;
mod time;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, SyncSender, TryRecvError, TrySendError};
use std::time::Duration;

use crate::config::{AccessLogConfig, AccessLogFormat};

use super::metrics::Counter;
pub use record::{Record, Try};
pub use redact::Redact;

/// How often the writer looks for lines.
const TICK: Duration = Duration::from_millis(20);

enum Message {
    Line(Box<Record>),
    /// Write everything queued before this, then answer.
    Flush(SyncSender<()>),
}

/// A running access log.
pub struct AccessLog {
    pub config: AccessLogConfig,
    queue: SyncSender<Message>,
    dropped: Arc<Counter>,
    reopen: Arc<AtomicBool>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog").field("config", &self.config).finish_non_exhaustive()
    }
}

enum Sink {
    Stdout,
    File(std::io::BufWriter<std::fs::File>),
}

fn open(to: &str) -> std::io::Result<Sink> {
    if to == "stdout" {
        return Ok(Sink::Stdout);
    }
    let file = std::fs::OpenOptions::new().create(true).append(true).open(to)?;
    Ok(Sink::File(std::io::BufWriter::with_capacity(64 * 1024, file)))
}

impl AccessLog {
    /// Opens the destination and starts the writer. `dropped` counts lines
    /// the writer could not keep up with.
    pub fn start(config: &AccessLogConfig, dropped: Arc<Counter>) -> std::io::Result<AccessLog> {
        let sink = open(&config.to)?;
        let (queue, lines) = mpsc::sync_channel(config.buffer.max(1));
        let reopen = Arc::new(AtomicBool::new(false));
        let writer = Writer { to: config.to.clone(), format: config.format, sink, reopen: reopen.clone() };
        std::thread::Builder::new().name("access-log".into()).spawn(move || writer.run(lines))?;
        Ok(AccessLog { config: config.clone(), queue, dropped, reopen })
    }

    /// Queues one line; never waits.
    pub fn log(&self, record: Box<Record>) {
        match self.queue.try_send(Message::Line(record)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }

    /// Reopens a file destination before the next line (after logrotate moved it).
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Relaxed);
    }

    /// Waits (up to `wait`) until every line queued so far is written.
    pub fn flush(&self, wait: Duration) {
        let (done, answer) = mpsc::sync_channel(1);
        if self.queue.send(Message::Flush(done)).is_ok() {
            let _ = answer.recv_timeout(wait);
        }
    }
}

struct Writer {
    to: String,
    format: AccessLogFormat,
    sink: Sink,
    reopen: Arc<AtomicBool>,
}

impl Writer {
    /// Wakes every `TICK` and writes what queued up meanwhile in one
    /// write: a line never wakes the writer (a wake-up per line cost the
    /// request's thread a context switch under load).
    fn run(mut self, lines: mpsc::Receiver<Message>) {
        let mut text = String::with_capacity(64 * 1024);
        let mut clock = record::DateCache::default();
        loop {
            std::thread::sleep(TICK);
            let first = match lines.try_recv() {
                Ok(m) => Some(m),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => break,
            };
            if self.reopen.swap(false, Ordering::Relaxed) {
                self.write(&mut text);
                match open(&self.to) {
                    Ok(sink) => self.sink = sink,
                    Err(e) => {
                        tracing::error!(to = %self.to, error = %e, "access log: cannot reopen; keeping the old file")
                    }
                }
            }
            let mut waiting = Vec::new();
            // What is queued now goes out in one write.
            for m in first.into_iter().chain(std::iter::from_fn(|| lines.try_recv().ok())) {
                match m {
                    Message::Line(r) => {
                        match self.format {
                            AccessLogFormat::Ecs => r.write_ecs(&mut text, &mut clock),
                            AccessLogFormat::Combined => r.write_combined(&mut text),
                        }
                        if text.len() >= 60 * 1024 {
                            self.write(&mut text);
                        }
                    }
                    Message::Flush(done) => waiting.push(done),
                }
            }
            self.write(&mut text);
            for done in waiting {
                let _ = done.send(());
            }
        }
        self.write(&mut text);
    }

    fn write(&mut self, text: &mut String) {
        if text.is_empty() {
            return;
        }
        let result = match &mut self.sink {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(text.as_bytes()).and_then(|_| out.flush())
            }
            Sink::File(f) => f.write_all(text.as_bytes()).and_then(|_| f.flush()),
        };
        if let Err(e) = result {
            tracing::warn!(to = %self.to, error = %e, "access log: write failed");
        }
        text.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Box<Record> {
        Box::new(Record {
            time: std::time::UNIX_EPOCH,
            duration_ns: 0,
            method: http::Method::GET,
            version: http::Version::HTTP_11,
            text: "/".into(),
            path_len: 1,
            query_len: None,
            user_agent_len: None,
            referrer_len: None,
            request_id: http::HeaderValue::from_static("id"),
            trace_id: None,
            client_ip: std::net::Ipv4Addr::LOCALHOST.into(),
            source_ip: std::net::Ipv4Addr::LOCALHOST.into(),
            tls_version: None,
            status: 200,
            request_bytes: 0,
            response_bytes: 0,
            route: None,
            upstream: None,
            tries: Default::default(),
            consumer: None,
            auth_provider: None,
            auth_outcome: None,
            rate_limit: None,
            validation: None,
            flag: crate::observe::Flag::None,
        })
    }

    #[test]
    fn a_full_queue_drops_and_counts_never_waits() {
        // A queue of two that nothing drains: the third line on is dropped.
        let (queue, lines) = mpsc::sync_channel(2);
        let dropped = Arc::new(Counter::default());
        let config = AccessLogConfig { buffer: 2, ..Default::default() };
        let log = AccessLog { config, queue, dropped: dropped.clone(), reopen: Arc::default() };
        for _ in 0..5 {
            log.log(record());
        }
        assert_eq!(dropped.get(), 3);
        assert_eq!(lines.try_iter().count(), 2);
    }

    #[test]
    fn lines_reach_the_file_and_a_reopen_starts_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let config = AccessLogConfig { to: path.display().to_string(), ..Default::default() };
        let log = AccessLog::start(&config, Arc::default()).unwrap();
        log.log(record());
        log.flush(Duration::from_secs(2));
        std::fs::rename(&path, dir.path().join("access.log.1")).unwrap();
        log.reopen();
        log.log(record());
        log.flush(Duration::from_secs(2));
        let lines = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap().lines().count();
        assert_eq!((lines("access.log.1"), lines("access.log")), (1, 1));
    }
}
