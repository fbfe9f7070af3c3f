//! The access log: one line per request. The request's own thread formats
//! its line into a buffer of its shard (one per thread, as the metrics'
//! cells: the lock is practically never contended), and a writer thread
//! collects the buffers every `TICK` and writes them in one go, so a slow
//! disk or a full pipe never holds a request, and a line costs no
//! allocation, no channel and no wake-up. A shard holds at most its share
//! of `buffer` lines; beyond, lines are dropped and counted
//! (`portcullis_access_log_dropped_total`).
//!
//! One exception: a gateway on a current-thread runtime (one worker,
//! `PORTCULLIS_WORKER_THREADS=1`) that logs to a regular file collects and
//! writes on that worker's thread, from a task every `TICK`, as an NGINX
//! worker writes its log. A second thread would make the process multi-threaded,
//! and that alone made every request dearer: glibc takes its cancellation
//! path around each system call and the kernel refcounts each file
//! descriptor it looks up once the file table is shared (an idle thread
//! added +1.2% CPU per request to the plain proxy, paired bench). The
//! write to the page cache costs ~0.26 µs a line (perf, bench: ~0.13 ms
//! for a 20 ms batch at 25,000 requests/s); stdout (a pipe can stall for
//! as long as its reader) keeps the writer thread.

pub mod line;
pub mod record;
pub mod redact;
mod time;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::config::{AccessLogConfig, AccessLogFormat};

use super::metrics::{Counter, cells};
pub use record::{LogName, Record, Try};
pub use redact::Redact;

/// How often the writer collects lines.
const TICK: Duration = Duration::from_millis(20);

/// The bytes a shard may hold per line of its share of `buffer` (its
/// lines are cut to a few KB each, but a stalled destination must not
/// hold `buffer` of the longest): past them, lines are dropped too.
const BYTES_PER_LINE: usize = 2048;

/// The largest buffer the writer hands back to a shard.
const SPARE_KEPT: usize = 4 << 20;

/// One thread's lines since the last collection.
#[derive(Default)]
struct Shard {
    text: Vec<u8>,
    lines: usize,
    clock: record::DateCache,
}

struct Inner {
    format: AccessLogFormat,
    shards: Box<[cells::Padded<Mutex<Shard>>]>,
    /// Lines one shard may hold between collections.
    per_shard: usize,
    dropped: Arc<Counter>,
    writer: Mutex<Writer>,
    to: String,
    reopen: AtomicBool,
    stopped: AtomicBool,
}

/// A running access log (the writer stops when it is dropped, after a last collection).
pub struct AccessLog {
    pub config: AccessLogConfig,
    inner: Arc<Inner>,
    /// Written by a task of the (current-thread) runtime, not a thread of its own.
    in_loop: bool,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.inner.stopped.store(true, Ordering::Relaxed);
    }
}

enum Sink {
    Stdout,
    File(std::fs::File),
}

/// The writer's side: where lines go, and the buffer a shard gets back when
/// the writer takes its lines (emptied, its capacity kept: a shard that
/// started each tick from an empty buffer regrew it by doubling, copying
/// its lines about twice, and the freed buffer cost page faults anew).
struct Writer {
    sink: Sink,
    spare: Vec<u8>,
    /// Lines a failed write lost since the last warning, and when that was
    /// (a full disk failed every collection: a warning each 20 ms).
    lost: u64,
    warned: Option<tokio::time::Instant>,
}

fn open(to: &str) -> std::io::Result<Sink> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    if to == "stdout" {
        return Ok(Sink::Stdout);
    }
    // A FIFO's `open` waits for a reader: with none, the start (or a
    // reload, on the thread that also takes the signals) hung for ever.
    // Opened without waiting, it fails at once with no reader; then its
    // writes wait as a pipe's do (on the writer thread, never a request).
    if std::fs::metadata(to).is_ok_and(|m| m.file_type().is_fifo()) {
        use rustix::fs::OFlags;
        let file =
            std::fs::OpenOptions::new().append(true).custom_flags(OFlags::NONBLOCK.bits() as i32).open(to).map_err(
                |e| match e.raw_os_error() == Some(rustix::io::Errno::NXIO.raw_os_error()) {
                    true => std::io::Error::other(format!("`{to}` is a FIFO that no process reads")),
                    false => e,
                },
            )?;
        rustix::fs::fcntl_setfl(&file, rustix::fs::fcntl_getfl(&file)? - OFlags::NONBLOCK)?;
        return Ok(Sink::File(file));
    }
    Ok(Sink::File(std::fs::OpenOptions::new().create(true).append(true).open(to)?))
}

/// How often a failing write is said in the gateway's own log (NGINX: once a minute).
const WARN_EVERY: Duration = Duration::from_secs(60);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl AccessLog {
    /// Opens the destination and starts the writer. `dropped` counts lines
    /// the writer could not keep up with.
    pub fn start(config: &AccessLogConfig, dropped: Arc<Counter>) -> std::io::Result<AccessLog> {
        let sink = open(&config.to)?;
        let in_loop = match (&sink, tokio::runtime::Handle::try_current()) {
            (Sink::File(f), Ok(rt)) => {
                rt.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread && f.metadata()?.is_file()
            }
            _ => false,
        };
        let mut log = AccessLog::unstarted(config, dropped, sink);
        log.in_loop = in_loop;
        let inner = log.inner.clone();
        if in_loop {
            tokio::spawn(async move { inner.run_in_loop().await });
        } else {
            std::thread::Builder::new().name("access-log".into()).spawn(move || inner.run())?;
        }
        Ok(log)
    }

    fn unstarted(config: &AccessLogConfig, dropped: Arc<Counter>, sink: Sink) -> AccessLog {
        let shards: Box<[cells::Padded<Mutex<Shard>>]> = cells::cells();
        // A share per thread that works (there are a few more shards than
        // the machine's threads: metrics give the main thread and a spare
        // one each; sharing by shard would shrink every worker's share).
        let workers = std::thread::available_parallelism().map_or(4, |n| n.get());
        let per_shard = (config.buffer / workers).max(64).min(config.buffer.max(1));
        let inner = Inner {
            format: config.format,
            shards,
            per_shard,
            dropped,
            writer: Mutex::new(Writer { sink, spare: Vec::new(), lost: 0, warned: None }),
            to: config.to.clone(),
            reopen: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        };
        AccessLog { config: config.clone(), inner: Arc::new(inner), in_loop: false }
    }

    /// Formats one line into this thread's shard; never waits on the writer.
    pub fn log(&self, record: &Record) {
        let inner = &self.inner;
        let mut shard = lock(&inner.shards[cells::shard()].0);
        if shard.lines >= inner.per_shard || shard.text.len() >= inner.per_shard * BYTES_PER_LINE {
            drop(shard);
            inner.dropped.inc();
            return;
        }
        let Shard { text, lines, clock } = &mut *shard;
        match inner.format {
            AccessLogFormat::Ecs => record.write_ecs(text, clock),
            AccessLogFormat::Combined => record.write_combined(text),
        }
        *lines += 1;
    }

    /// Reopens a file destination at the next collection (after logrotate moved it).
    pub fn reopen(&self) {
        self.inner.reopen.store(true, Ordering::Relaxed);
    }

    /// Writes every line logged so far, now (`wait` is unused: a kept signature).
    pub fn flush(&self, _wait: Duration) {
        self.inner.collect();
    }

    /// [`AccessLog::flush`] off the runtime, waited for at most `wait`: a
    /// destination that takes nothing (a stdout pipe nobody reads) must
    /// not hold the stop for ever; the lines it did not take are lost.
    pub async fn flush_within(self: Arc<Self>, wait: Duration) {
        let write = tokio::task::spawn_blocking(move || self.flush(wait));
        let _ = tokio::time::timeout(wait, write).await;
    }
}

impl Inner {
    fn run(&self) {
        while !self.stopped.load(Ordering::Relaxed) {
            std::thread::sleep(TICK);
            self.collect();
        }
        self.collect();
    }

    /// `run` as a task of a current-thread runtime (see the module's note).
    async fn run_in_loop(&self) {
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !self.stopped.load(Ordering::Relaxed) {
            ticks.tick().await;
            self.collect();
        }
        self.collect();
    }

    /// Takes every shard's lines and writes them in one write.
    fn collect(&self) {
        let mut writer = lock(&self.writer);
        let Writer { sink, spare, lost, warned } = &mut *writer;
        if self.reopen.swap(false, Ordering::Relaxed) {
            match open(&self.to) {
                Ok(s) => *sink = s,
                Err(e) => tracing::error!(to = %self.to, error = %e, "access log: cannot reopen; keeping the old file"),
            }
        }
        let mut out = std::mem::take(spare);
        let mut taken = false;
        let mut lines = 0;
        for shard in self.shards.iter() {
            let mut s = lock(&shard.0);
            lines += s.lines;
            if s.lines > 0 {
                if !taken {
                    // Take the shard's buffer whole and give it the spare.
                    std::mem::swap(&mut out, &mut s.text);
                    taken = true;
                } else {
                    out.extend_from_slice(&s.text);
                    s.text.clear();
                }
                s.lines = 0;
            }
        }
        if taken {
            let result = match sink {
                Sink::Stdout => {
                    let mut o = std::io::stdout().lock();
                    o.write_all(&out).and_then(|_| o.flush())
                }
                Sink::File(f) => f.write_all(&out),
            };
            if let Err(e) = result {
                // Lost lines are counted as dropped ones are; said once a minute.
                self.dropped.add(lines as u64);
                *lost += lines as u64;
                if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                    tracing::warn!(to = %self.to, error = %e, lines = *lost, "access log: write failed, lines lost");
                    (*warned, *lost) = (Some(tokio::time::Instant::now()), 0);
                }
            }
        }
        out.clear();
        // After a burst, the big buffer goes back to the allocator.
        if out.capacity() <= SPARE_KEPT {
            *spare = out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
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
            upstream_ns: None,
            relayed_from_ns: None,
            consumer: None,
            auth_provider: None,
            auth_outcome: None,
            auth_reason: None,
            rate_limit: None,
            validation: None,
            flag: crate::observe::Flag::None,
        }
    }

    #[test]
    fn a_full_shard_drops_and_counts_never_waits() {
        // Nothing collects: past its share of the buffer, a thread's lines are dropped.
        let dropped = Arc::new(Counter::default());
        let config = AccessLogConfig { buffer: 64, ..Default::default() };
        let log = AccessLog::unstarted(&config, dropped.clone(), Sink::Stdout);
        for _ in 0..100 {
            log.log(&record());
        }
        assert_eq!(dropped.get(), 36);
        let shard = lock(&log.inner.shards[cells::shard()].0);
        assert_eq!((shard.lines, shard.text.split(|&b| b == b'\n').count() - 1), (64, 64));
    }

    #[test]
    fn lines_come_out_whole_across_collections() {
        // Buffers change hands at each collection (a shard gets the
        // writer's spare): each line comes out whole, once, in order.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let config = AccessLogConfig { to: path.display().to_string(), ..Default::default() };
        let log = AccessLog::start(&config, Arc::default()).unwrap();
        let paths = [format!("/{}", "long".repeat(600)), "/".into(), "/b".into(), "/c".into()];
        for (i, p) in paths.iter().enumerate() {
            let mut r = record();
            r.text = p.clone().into_bytes();
            r.path_len = p.len() as u32;
            log.log(&r);
            if i != 2 {
                log.flush(Duration::from_secs(2));
            }
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let logged: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["url"]["path"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(logged, paths);
    }

    #[test]
    fn one_worker_writes_its_file_log_itself() {
        // On a current-thread runtime, a task of the runtime collects and
        // writes (no second thread): at each tick, and once more when the
        // log is dropped. Elsewhere (several workers, stdout) a thread does.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let config = AccessLogConfig { to: path.display().to_string(), ..Default::default() };
        let lines = || std::fs::read_to_string(&path).unwrap_or_default().lines().count();
        let one = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        one.block_on(async {
            let log = AccessLog::start(&config, Arc::default()).unwrap();
            assert!(log.in_loop);
            log.log(&record());
            tokio::time::sleep(TICK * 2).await;
            assert_eq!(lines(), 1);
            log.log(&record());
            log.log(&record());
            drop(log);
            tokio::time::sleep(TICK * 2).await;
            assert_eq!(lines(), 3);
        });
        let several = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
        several.block_on(async { assert!(!AccessLog::start(&config, Arc::default()).unwrap().in_loop) });
        let stdout = AccessLogConfig::default();
        assert_eq!(stdout.to, "stdout");
        one.block_on(async { assert!(!AccessLog::start(&stdout, Arc::default()).unwrap().in_loop) });
    }

    #[test]
    fn lines_reach_the_file_and_a_reopen_starts_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let config = AccessLogConfig { to: path.display().to_string(), ..Default::default() };
        let log = AccessLog::start(&config, Arc::default()).unwrap();
        log.log(&record());
        log.flush(Duration::from_secs(2));
        std::fs::rename(&path, dir.path().join("access.log.1")).unwrap();
        log.reopen();
        log.log(&record());
        log.flush(Duration::from_secs(2));
        let lines = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap().lines().count();
        assert_eq!((lines("access.log.1"), lines("access.log")), (1, 1));
    }
}
