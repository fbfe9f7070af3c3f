//! A raw HTTP/2 target (the `h2` crate's server) for the cases a
//! well-behaved server library never produces: refused streams, trailers,
//! short bodies, content on bodiless answers.

use std::future::Future;
use std::net::SocketAddr;

use bytes::Bytes;
use h2::RecvStream;
use h2::server::SendResponse;

/// Serves h2c on a loopback port: `handle` gets each stream with its index
/// on its connection (0 for a connection's first), and runs as its own task.
pub async fn start<F, Fut>(handle: F) -> SocketAddr
where
    F: Fn(usize, http::Request<RecvStream>, SendResponse<Bytes>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let handle = handle.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(socket).await else { return };
                let mut index = 0;
                while let Some(Ok((req, respond))) = conn.accept().await {
                    tokio::spawn(handle(index, req, respond));
                    index += 1;
                }
            });
        }
    });
    addr
}
