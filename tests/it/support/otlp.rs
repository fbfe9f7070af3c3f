//! A real OTLP/HTTP trace receiver on loopback: decodes each
//! `ExportTraceServiceRequest` (protobuf) and keeps its spans.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::net::TcpListener;

pub struct Receiver {
    pub addr: std::net::SocketAddr,
    /// The spans of the export requests answered 2xx.
    pub spans: Arc<Mutex<Vec<Span>>>,
    /// The headers of each export request, as `name: value` lines.
    pub headers: Arc<Mutex<Vec<String>>>,
    /// How many export requests came.
    pub posts: Arc<Mutex<usize>>,
    /// How many connections were accepted (TLS handshakes tried).
    pub connections: Arc<Mutex<usize>>,
}

/// How the receiver answers an export request: a status and a `Retry-After`.
pub type Answer = (u16, Option<&'static str>);

impl Receiver {
    pub async fn start() -> Receiver {
        Receiver::answering(Vec::new()).await
    }

    /// A receiver that answers its first export requests with `answers`, in
    /// order (their spans are not kept unless the status is 2xx), then 200.
    pub async fn answering(answers: Vec<Answer>) -> Receiver {
        Receiver::serving(answers, 0, None).await
    }

    /// A receiver whose 200s say `rejected` spans of each batch were
    /// rejected (OTLP `partial_success`), over TLS with `tls` when given.
    pub async fn serving(answers: Vec<Answer>, rejected: i64, tls: Option<tokio_rustls::TlsAcceptor>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
        let headers: Arc<Mutex<Vec<String>>> = Arc::default();
        let posts: Arc<Mutex<usize>> = Arc::default();
        let answers = Arc::new(Mutex::new(std::collections::VecDeque::from(answers)));
        let connections: Arc<Mutex<usize>> = Arc::default();
        let (s, h, p, c) = (spans.clone(), headers.clone(), posts.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                *c.lock().unwrap() += 1;
                let (s, h, p, a) = (s.clone(), h.clone(), p.clone(), answers.clone());
                let tls = tls.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (s, h, p, a) = (s.clone(), h.clone(), p.clone(), a.clone());
                        async move {
                            assert_eq!(req.uri().path(), "/v1/traces");
                            for (k, v) in req.headers() {
                                h.lock().unwrap().push(format!("{k}: {}", v.to_str().unwrap_or("")));
                            }
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let export = ExportTraceServiceRequest::decode(body).expect("protobuf");
                            *p.lock().unwrap() += 1;
                            let (status, retry_after) = a.lock().unwrap().pop_front().unwrap_or((200, None));
                            let answer = if rejected > 0 {
                                let partial = ExportTracePartialSuccess {
                                    rejected_spans: rejected,
                                    error_message: "span too old".into(),
                                };
                                ExportTraceServiceResponse { partial_success: Some(partial) }.encode_to_vec()
                            } else {
                                Vec::new()
                            };
                            let mut resp = Response::new(Full::new(Bytes::from(answer)));
                            *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
                            if let Some(after) = retry_after {
                                resp.headers_mut().insert("retry-after", after.parse().unwrap());
                            }
                            if resp.status().is_success() {
                                for rs in export.resource_spans {
                                    for ss in rs.scope_spans {
                                        s.lock().unwrap().extend(ss.spans);
                                    }
                                }
                            }
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let server = auto::Builder::new(TokioExecutor::new());
                    match tls {
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(stream).await {
                                let _ = server.serve_connection(TokioIo::new(stream), svc).await;
                            }
                        }
                        None => {
                            let _ = server.serve_connection(TokioIo::new(stream), svc).await;
                        }
                    }
                });
            }
        });
        Receiver { addr, spans, headers, posts, connections }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The spans received, once there are at least `n` (or after 5 s).
    pub async fn wait_for(&self, n: usize) -> Vec<Span> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let now = self.spans.lock().unwrap().clone();
            if now.len() >= n || std::time::Instant::now() > deadline {
                return now;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }
}
