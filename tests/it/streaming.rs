//! Bodies stream through the real `portcullis` binary without buffering:
//! hundreds of MiB in each direction while the process's peak memory stays small.

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;

use crate::support::process::spawn_gateway;
use crate::support::{Upstream, http1_client};

const TOTAL: usize = 192 << 20;
/// Far below TOTAL: buffering even one direction's body would blow it.
const MAX_PEAK_RSS_KIB: u64 = 64 << 10;

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_with_flat_memory() {
    let up = Upstream::start("sink").await;
    let config = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\nupstreams:\n  sink: {{ targets: [ \"{}\" ] }}\nroutes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: sink, max_body_size: 1GiB }}\n",
        up.url()
    );
    let (gw, addr) = spawn_gateway(&config);
    let client = http1_client();

    // Upload: a streamed request body, counted by the upstream.
    let chunk = Bytes::from(vec![b'u'; 256 * 1024]);
    let frames = (0..TOTAL / chunk.len()).map(move |_| Ok::<_, std::convert::Infallible>(Frame::data(chunk.clone())));
    let body = StreamBody::new(futures_util::stream::iter(frames));
    let req = Request::post(format!("http://{addr}/count")).body(body).unwrap();
    let client_up = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let resp = client_up.request(req).await.expect("upload");
    let status = resp.status();
    let answer = resp.into_body().collect().await.unwrap().to_bytes();
    let doc: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
    assert_eq!(doc["received"], TOTAL, "upload answered {status}: {}", String::from_utf8_lossy(&answer));

    // Download: a streamed response body, counted here chunk by chunk.
    let req = Request::get(format!("http://{addr}/big?bytes={TOTAL}")).body(Default::default()).unwrap();
    let mut body = client.request(req).await.expect("download").into_body();
    let mut received = 0;
    while let Some(frame) = body.frame().await {
        received += frame.unwrap().into_data().map(|d| d.len()).unwrap_or(0);
    }
    assert_eq!(received, TOTAL);

    let peak = peak_rss_kib(gw.id());
    eprintln!("gateway peak RSS: {peak} KiB");
    assert!(peak < MAX_PEAK_RSS_KIB, "gateway peak RSS {peak} KiB after moving {} MiB each way", TOTAL >> 20);
}
