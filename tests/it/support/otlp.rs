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
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::net::TcpListener;

pub struct Receiver {
    pub addr: std::net::SocketAddr,
    pub spans: Arc<Mutex<Vec<Span>>>,
    /// The headers of each export request, as `name: value` lines.
    pub headers: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
        let headers: Arc<Mutex<Vec<String>>> = Arc::default();
        let (s, h) = (spans.clone(), headers.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (s, h) = (s.clone(), h.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (s, h) = (s.clone(), h.clone());
                        async move {
                            assert_eq!(req.uri().path(), "/v1/traces");
                            for (k, v) in req.headers() {
                                h.lock().unwrap().push(format!("{k}: {}", v.to_str().unwrap_or("")));
                            }
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let export = ExportTraceServiceRequest::decode(body).expect("protobuf");
                            for rs in export.resource_spans {
                                for ss in rs.scope_spans {
                                    s.lock().unwrap().extend(ss.spans);
                                }
                            }
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        Receiver { addr, spans, headers }
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
