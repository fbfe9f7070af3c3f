//! A connection pool for plain HTTP/1.1 targets whose connections are
//! driven inline: the request's own task polls the connection while it
//! waits for the response head, and the response body polls it while it
//! streams. hyper-util's pooled client instead runs every connection as a
//! separate task, so each request crosses tasks twice (and goes through a
//! pool checkout with futures of its own): measurable on the hot path
//! (see BENCHMARKS.md). HTTPS, HTTP/2 and upgrades keep using that client.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::proxy::RequestBody;

type Conn = http1::Connection<TokioIo<TcpStream>, RequestBody>;

/// One open connection: the sender and the future that drives it.
pub struct Pooled {
    sender: http1::SendRequest<RequestBody>,
    conn: Pin<Box<Conn>>,
    /// The connection future finished (closed): it must not be polled again.
    closed: bool,
    pool: Arc<H1Pool>,
}

impl std::fmt::Debug for Pooled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pooled").field("closed", &self.closed).finish_non_exhaustive()
    }
}

impl Pooled {
    /// Drives the connection (reads, writes) for whoever is waiting on it.
    pub fn poll_conn(&mut self, cx: &mut Context<'_>) {
        if !self.closed && self.conn.as_mut().poll(cx).is_ready() {
            self.closed = true;
        }
    }

    /// The response is fully read: the connection can serve another request.
    pub fn release(self) {
        if !self.closed {
            let pool = self.pool.clone();
            pool.put(self);
        }
    }
}

pub struct H1Pool {
    authority: String,
    idle: Mutex<Vec<(Pooled, Instant)>>,
    max_idle: usize,
    idle_timeout: Duration,
    connect_timeout: Duration,
}

impl std::fmt::Debug for H1Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H1Pool").field("authority", &self.authority).finish_non_exhaustive()
    }
}

/// Polls `f` once with a waker that does nothing (for a liveness probe).
fn poll_once<T>(f: impl FnOnce(&mut Context<'_>) -> T) -> T {
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    f(&mut cx)
}

impl H1Pool {
    pub fn new(authority: String, max_idle: usize, idle_timeout: Duration, connect_timeout: Duration) -> Arc<H1Pool> {
        Arc::new(H1Pool { authority, idle: Mutex::new(Vec::new()), max_idle, idle_timeout, connect_timeout })
    }

    fn put(&self, pooled: Pooled) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.max_idle {
            idle.push((pooled, Instant::now()));
        }
    }

    /// A pooled connection that is still open and ready, most recent first.
    fn checkout(&self) -> Option<Pooled> {
        loop {
            let (mut pooled, since) = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()?;
            if since.elapsed() > self.idle_timeout {
                continue;
            }
            // Let the connection notice a close from the other side, then ask
            // whether it can take a request now.
            // The dispatcher may need a few turns to finish the previous
            // exchange (e.g. the last chunk of a chunked body) and ask for more.
            let ready = poll_once(|cx| {
                (0..4).any(|_| {
                    pooled.poll_conn(cx);
                    !pooled.closed && matches!(pooled.sender.poll_ready(cx), Poll::Ready(Ok(())))
                })
            });
            if ready {
                return Some(pooled);
            }
        }
    }

    async fn connect(self: &Arc<Self>) -> Result<Pooled, BoxError> {
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.authority))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        Ok(Pooled { sender, conn: Box::pin(conn), closed: false, pool: self.clone() })
    }

    /// Sends `req` on a pooled or new connection. A request that a reused
    /// connection could not even start sending (it was closed meanwhile) is
    /// retried once on a fresh connection.
    pub async fn send(
        self: &Arc<Self>,
        mut req: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, Pooled), BoxError> {
        for _ in 0..2 {
            let (mut pooled, reused) = match self.checkout() {
                Some(p) => (p, true),
                None => (self.connect().await?, false),
            };
            let result = {
                let Pooled { sender, conn, closed, .. } = &mut pooled;
                let mut sending = std::pin::pin!(sender.try_send_request(req));
                std::future::poll_fn(|cx| {
                    if !*closed && conn.as_mut().poll(cx).is_ready() {
                        *closed = true;
                    }
                    sending.as_mut().poll(cx)
                })
                .await
            };
            match result {
                Ok(resp) => return Ok((resp, pooled)),
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(Box::new(e.into_error())),
                },
            }
        }
        Err("the upstream closed the connection before the request could be sent".into())
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
