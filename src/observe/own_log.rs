//! Where the gateway's own log lines (`tracing`: start, reloads, failed
//! requests) go: stdout, never written from a thread that serves requests
//! once the gateway serves.
//!
//! A write to stdout blocks while nobody reads it (a pipe whose reader
//! stalled, a terminal on hold): written from a worker, one failed request's
//! warning would stop every request and the admin API with it. So, once
//! [`detach`] is called (the listeners are open), a line is handed to a
//! writer thread through a bounded queue and dropped when the queue is full;
//! the writer says how many were dropped before its next line. Before that,
//! at start-up, lines are written directly (nothing is served yet, and the
//! process stays single-threaded until a line is logged while it serves: a
//! second thread makes every system call dearer, see `access_log`).

use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

/// Lines queued for the writer at most (a few hundred KiB).
const QUEUE: usize = 2048;

static DETACHED: AtomicBool = AtomicBool::new(false);
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// The writer's queue, made with the writer on the first queued line
/// (`None` if the thread could not be started: lines are written directly).
static QUEUE_TX: OnceLock<Option<SyncSender<Message>>> = OnceLock::new();

enum Message {
    Line(Vec<u8>),
    /// Answered once every line before it is written.
    Flush(SyncSender<()>),
}

/// From now on, lines go through the writer thread.
pub fn detach() {
    DETACHED.store(true, Ordering::Relaxed);
}

/// Waits up to `wait` for the queued lines to be written (at exit).
pub fn flush(wait: Duration) {
    let Some(Some(tx)) = QUEUE_TX.get() else { return };
    let (done, written) = sync_channel(1);
    if tx.try_send(Message::Flush(done)).is_ok() {
        let _ = written.recv_timeout(wait);
    }
}

fn queue() -> Option<&'static SyncSender<Message>> {
    QUEUE_TX
        .get_or_init(|| {
            let (tx, rx) = sync_channel(QUEUE);
            std::thread::Builder::new().name("own-log".into()).spawn(move || write_lines(rx)).ok().map(|_| tx)
        })
        .as_ref()
}

fn write_lines(rx: Receiver<Message>) {
    let out = std::io::stdout();
    for message in rx {
        match message {
            Message::Line(line) => {
                let mut out = out.lock();
                let dropped = DROPPED.swap(0, Ordering::Relaxed);
                if dropped > 0 {
                    let _ =
                        writeln!(out, "portcullis: {dropped} log line(s) dropped: stdout did not take them in time");
                }
                let _ = out.write_all(&line);
            }
            Message::Flush(done) => {
                let _ = out.lock().flush();
                let _ = done.send(());
            }
        }
    }
}

/// An event's text (the formatter writes each whole, its line end last)
/// with every other line break and control byte escaped (`\n`, `\x1b`):
/// fields carry what clients wrote (a query name, a JSON member's name in a
/// validation report), and a line break among them began a line of the
/// client's choosing, timestamp and level included ("an event never spans
/// lines"); an escape sequence would reach the operator's terminal.
fn one_line(buf: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let body = buf.strip_suffix(b"\n").unwrap_or(buf);
    // C0 and DEL, C1 (NEL, CSI: two bytes in UTF-8), and the Unicode line
    // and paragraph separators, which some readers split lines at too.
    let odd = |c: char| (c.is_control() && c != '\t') || c == '\u{2028}' || c == '\u{2029}';
    let text = String::from_utf8_lossy(body);
    if !text.chars().any(odd) {
        return buf.into();
    }
    let mut out = String::with_capacity(buf.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_ascii() && odd(c) => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if odd(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    let mut out = out.into_bytes();
    out.extend_from_slice(&buf[body.len()..]);
    out.into()
}

/// The `tracing` writer of the gateway's own log.
#[derive(Debug, Clone, Copy, Default)]
pub struct OwnLog;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for OwnLog {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        if DETACHED.load(Ordering::Relaxed) {
            LineWriter::Queued(Vec::new())
        } else {
            LineWriter::Direct(std::io::stdout())
        }
    }
}

/// One event's text: written through, or collected and queued when dropped.
pub enum LineWriter {
    Direct(std::io::Stdout),
    Queued(Vec<u8>),
}

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = one_line(buf);
        match self {
            LineWriter::Direct(out) => out.write_all(&text)?,
            LineWriter::Queued(line) => line.extend_from_slice(&text),
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            LineWriter::Direct(out) => out.flush(),
            LineWriter::Queued(_) => Ok(()),
        }
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let LineWriter::Queued(line) = self else { return };
        if line.is_empty() {
            return;
        }
        let line = std::mem::take(line);
        match queue() {
            Some(tx) => {
                if let Err(TrySendError::Full(_)) = tx.try_send(Message::Line(line)) {
                    DROPPED.fetch_add(1, Ordering::Relaxed);
                }
            }
            // No writer thread: as before detaching.
            None => {
                let _ = std::io::stdout().write_all(&line);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn an_event_is_one_line_whatever_its_fields_hold() {
        assert_eq!(&*one_line(b"plain text\tand a tab\n"), b"plain text\tand a tab\n");
        let forged = b"INFO pointer=/x\n2026-01-01T00:00:00Z ERROR portcullis: FORGED\r\x1b[2J\n";
        assert_eq!(&*one_line(forged), b"INFO pointer=/x\\n2026-01-01T00:00:00Z ERROR portcullis: FORGED\\r\\x1b[2J\n");
        // Past ASCII: NEL, CSI, and the line and paragraph separators.
        let unicode = "x\u{2028}a\u{85}b\u{9b}[2Jc\u{2029}é\n";
        assert_eq!(&*one_line(unicode.as_bytes()), "x\\u{2028}a\\u{85}b\\u{9b}[2Jc\\u{2029}é\n".as_bytes());
    }
}
