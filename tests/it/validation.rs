//! Input validation seen from outside: a route's `validate` refuses what
//! breaks its schemas with 400 and every problem listed (`in`, `pointer`,
//! `detail`), 415 for a media type, 413 for size; what passes reaches the
//! upstream byte for byte; the upstream never sees a refused request.

use std::path::Path;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::{Value, json};

use crate::support::recorder::Recorder;
use crate::support::{Reply, http1_client, load, raw, send};
use portcullis::{Gateway, Handle};

const ORDER_SCHEMA: &str = r##"{
  "type": "object",
  "required": ["customer", "items"],
  "additionalProperties": false,
  "properties": {
    "customer": { "$ref": "#/$defs/customer" },
    "items": { "type": "array", "minItems": 1, "maxItems": 50, "items": { "$ref": "#/$defs/item" } },
    "note": { "type": "string", "maxLength": 200 },
    "delivery": { "type": "string", "format": "date" }
  },
  "$defs": {
    "customer": {
      "type": "object",
      "required": ["email"],
      "properties": { "email": { "type": "string", "format": "email" }, "phone": { "type": "string", "format": "e164" } }
    },
    "item": {
      "type": "object",
      "required": ["sku", "qty"],
      "properties": { "sku": { "type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$" }, "qty": { "type": "integer", "minimum": 1, "format": "int32" } }
    }
  }
}"##;

struct Setup {
    gw: Handle,
    up: Recorder,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let up = Recorder::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("order.json"), ORDER_SCHEMA).unwrap();
    let yaml = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\nadmin: {{ bind: \"127.0.0.1:0\" }}\n\
         formats: {{ e164: \"^\\\\+[1-9][0-9]{{7,14}}$\" }}\n\
         upstreams:\n  orders: {{ targets: [\"{}\"] }}\n\
         routes:\n\
         \x20 - name: orders\n\
         \x20   match: {{ path: /orders, methods: [POST] }}\n\
         \x20   upstream: orders\n\
         \x20   max_body_size: 64KiB\n\
         \x20   validate:\n\
         \x20     content_types: [ application/json, application/x-www-form-urlencoded ]\n\
         \x20     body: {{ schema_file: order.json }}\n\
         \x20     query: {{ page: {{ type: integer, minimum: 1 }}, sort: {{ enum: [asc, desc] }} }}\n\
         \x20     headers: {{ X-Tenant: {{ type: string, format: uuid, required: true }} }}\n\
         \x20     json_limits: {{ max_depth: 8 }}\n\
         \x20 - name: dry\n\
         \x20   match: {{ path: /dry, methods: [POST] }}\n\
         \x20   upstream: orders\n\
         \x20   validate:\n\
         \x20     mode: report\n\
         \x20     body: {{ schema_file: order.json }}\n\
         \x20     query: {{ page: {{ type: integer, minimum: 1 }} }}\n\
         \x20 - name: search\n\
         \x20   match: {{ path: /search, methods: [GET] }}\n\
         \x20   upstream: orders\n\
         \x20   validate:\n\
         \x20     query: {{ q: {{ type: string, minLength: 2, required: true }}, ids: {{ type: array, items: {{ type: integer }} }} }}\n",
        up.url()
    );
    let gw = Gateway::start(&load(&yaml, dir.path())).await.expect("starts");
    Setup { gw, up, _dir: dir }
}

const TENANT: &str = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";

async fn post(s: &Setup, path: &str, content_type: &str, body: &str, tenant: Option<&str>) -> Reply {
    let mut req =
        Request::post(format!("http://{}{path}", s.gw.addr("gw").unwrap())).header("content-type", content_type);
    if let Some(t) = tenant {
        req = req.header("x-tenant", t);
    }
    send(&http1_client(), req.body(Full::new(Bytes::from(body.to_string()))).unwrap()).await
}

fn valid_order() -> Value {
    json!({ "customer": { "email": "ada@example.com", "phone": "+4930123456" }, "items": [ { "sku": "ABC-1234", "qty": 2 } ], "delivery": "2026-12-24" })
}

/// The `errors` entries of a 400 as (in, pointer) pairs.
fn errors(r: &Reply) -> Vec<(String, String)> {
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    r.json()["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| (e["in"].as_str().unwrap().to_string(), e["pointer"].as_str().unwrap().to_string()))
        .collect()
}

#[tokio::test]
async fn a_valid_request_reaches_the_upstream_unchanged() {
    let s = setup().await;
    let body = serde_json::to_string_pretty(&valid_order()).unwrap();
    let r = post(&s, "/orders?page=2&sort=asc", "application/json; charset=utf-8", &body, Some(TENANT)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let got = &s.up.requests()[0];
    assert_eq!(got.body, body.as_bytes(), "the body goes on byte for byte");
    assert_eq!(got.target, "/orders?page=2&sort=asc");
    assert!(got.framed_by_one_line());

    // A chunked body is read whole, checked, and sent on with its length.
    let addr = s.gw.addr("gw").unwrap();
    let compact = valid_order().to_string();
    let chunked = format!(
        "POST /orders HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nX-Tenant: {TENANT}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{compact}\r\n0\r\n\r\n",
        compact.len()
    );
    assert!(raw(addr, &chunked).await.starts_with("HTTP/1.1 200"));
    let got = &s.up.requests()[1];
    assert_eq!(
        (got.body.as_slice(), got.header("content-length")),
        (compact.as_bytes(), Some(compact.len().to_string().as_str()))
    );

    // A form body is read as its properties' types.
    let form = post(&s, "/orders", "application/x-www-form-urlencoded", "customer=x", Some(TENANT)).await;
    assert_eq!(errors(&form), vec![("body".into(), "".into()), ("body".into(), "/customer".into())]);
}

#[tokio::test]
async fn each_violation_is_listed_where_it_is_and_never_reaches_the_upstream() {
    let s = setup().await;
    let mut bad = valid_order();
    bad["customer"]["email"] = json!("not-an-email");
    bad["customer"]["phone"] = json!("0049-30");
    bad["items"][0]["qty"] = json!(0);
    bad["items"][0]["sku"] = json!("abc");
    bad["items"].as_array_mut().unwrap().push(json!({ "sku": "XYZ-0001", "qty": 4294967296_i64 }));
    bad["delivery"] = json!("tomorrow");
    bad["extra"] = json!(true);
    let r = post(&s, "/orders?page=0&sort=up", "application/json", &bad.to_string(), Some("nope")).await;
    let mut got = errors(&r);
    got.sort();
    let mut want: Vec<(String, String)> = [
        ("body", ""),
        ("body", "/customer/email"),
        ("body", "/customer/phone"),
        ("body", "/delivery"),
        ("body", "/items/0/qty"),
        ("body", "/items/0/sku"),
        ("body", "/items/1/qty"),
        ("header", "X-Tenant"),
        ("query", "page"),
        ("query", "sort"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    want.sort();
    assert_eq!(got, want, "{}", r.text());
    assert!(!r.text().contains("not-an-email"), "the input is not echoed back");

    // Missing required things.
    let r = post(&s, "/orders", "application/json", "{}", None).await;
    let got = errors(&r);
    assert!(
        got.contains(&("header".into(), "X-Tenant".into())) && got.contains(&("body".into(), "".into())),
        "{got:?}"
    );
    let r = post(&s, "/orders", "application/json", "", Some(TENANT)).await;
    assert_eq!(r.json()["errors"][0]["detail"], "a request body is required");

    // Malformed and hostile JSON: refused before parsing, with where.
    let r = post(&s, "/orders", "application/json", r#"{"customer": {"email": "a@b.c"}, "items": [1,]}"#, Some(TENANT))
        .await;
    assert_eq!(errors(&r), vec![("body".into(), "/items/1".into())]);
    let deep = format!("{{\"note\": {}1{}}}", "[".repeat(9), "]".repeat(9));
    let r = post(&s, "/orders", "application/json", &deep, Some(TENANT)).await;
    assert!(r.json()["errors"][0]["detail"].as_str().unwrap().contains("8 levels"), "{}", r.text());
    let r = post(&s, "/orders", "application/json", r#"{"note": "a", "note": "b"}"#, Some(TENANT)).await;
    assert_eq!(r.json()["errors"][0]["detail"], "a duplicate member name");

    // Media type and size.
    assert_eq!(post(&s, "/orders", "text/plain", "hello", Some(TENANT)).await.status, 415);
    // A compressed body is not one the gateway reads: 415, with what it takes
    // (RFC 9110 §15.5.16), whether it would have passed or not.
    for coding in ["gzip", "br", "identity, gzip"] {
        let req = Request::post(format!("http://{}/orders", s.gw.addr("gw").unwrap()))
            .header("content-type", "application/json")
            .header("content-encoding", coding)
            .header("x-tenant", TENANT)
            .body(Full::new(Bytes::from(valid_order().to_string())))
            .unwrap();
        let r = send(&http1_client(), req).await;
        assert_eq!(r.status, 415, "{coding}: {}", r.text());
        assert_eq!(r.header("accept-encoding"), Some("identity"), "{coding}");
    }
    // Checked as UTF-8, a body must be UTF-8 for the service too: another
    // charset could read to it as other text (RFC 8259 §8.1).
    for charset in ["utf-16", "\"ISO-8859-1\"", "latin1; charset=utf-8"] {
        let media = format!("application/json; charset={charset}");
        let r = post(&s, "/orders", &media, &valid_order().to_string(), Some(TENANT)).await;
        assert_eq!(r.status, 415, "{media}: {}", r.text());
    }
    let big = format!("{{\"note\": \"{}\"}}", "x".repeat(70 << 10));
    assert_eq!(post(&s, "/orders", "application/json", &big, Some(TENANT)).await.status, 413);

    assert_eq!(s.up.count(), 0, "no refused request reached the upstream");
    for media in ["application/json; charset=UTF-8", "application/json;charset=\"utf-8\"", "application/json; v=1"] {
        let r = post(&s, "/orders", media, &valid_order().to_string(), Some(TENANT)).await;
        assert_eq!(r.status, 200, "{media}: {}", r.text());
    }
    // Codings are case-insensitive (RFC 9110 §8.4.1): `IDENTITY` is no coding.
    let req = Request::post(format!("http://{}/orders", s.gw.addr("gw").unwrap()))
        .header("content-type", "application/json")
        .header("content-encoding", "IDENTITY")
        .header("x-tenant", TENANT)
        .body(Full::new(Bytes::from(valid_order().to_string())))
        .unwrap();
    let r = send(&http1_client(), req).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// A client waiting for `100 Continue` is refused on what its head says
/// (a type the route does not take, a compressed body, a bad header or
/// query value) before it uploads: it got a 100, sent its body, then the
/// 415 or 400. A valid head gets its 100.
#[tokio::test]
async fn a_head_refused_alone_gets_no_100_continue() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = setup().await;
    let addr = s.gw.addr("gw").unwrap();
    let first_line = async |head: String| {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        conn.write_all(head.as_bytes()).await.unwrap();
        let mut got = [0u8; 12];
        conn.read_exact(&mut got).await.unwrap();
        String::from_utf8_lossy(&got).into_owned()
    };
    let head = |query: &str, extra: &str| {
        format!("POST /orders{query} HTTP/1.1\r\nHost: x\r\nContent-Length: 53\r\nExpect: 100-continue\r\n{extra}\r\n")
    };
    let json = "Content-Type: application/json\r\n";
    let tenant = format!("X-Tenant: {TENANT}\r\n");
    for (case, query, extra, status) in [
        ("type", "", format!("Content-Type: text/plain\r\n{tenant}"), "415"),
        ("coding", "", format!("{json}Content-Encoding: gzip\r\n{tenant}"), "415"),
        ("header", "", format!("{json}X-Tenant: bad\r\n"), "400"),
        ("query", "?page=0", format!("{json}{tenant}"), "400"),
    ] {
        assert_eq!(first_line(head(query, &extra)).await, format!("HTTP/1.1 {status}"), "{case}");
    }
    assert_eq!(first_line(head("", &format!("{json}{tenant}"))).await, "HTTP/1.1 100", "a valid head");
    // A chunked upload: its `Transfer-Encoding` is gone from the head by
    // then, the body's framing says one comes.
    let chunked = head("", &format!("Content-Type: text/plain\r\n{tenant}"))
        .replace("Content-Length: 53", "Transfer-Encoding: chunked");
    assert_eq!(first_line(chunked).await, "HTTP/1.1 415", "chunked");
    // A body sent with the head (no wait for the 100): every problem listed.
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = r#"{"customer": 5}"#;
    let with_body = head("", &format!("{json}X-Tenant: bad\r\nConnection: close\r\n"))
        .replace("Content-Length: 53", &format!("Content-Length: {}", body.len()))
        + body;
    conn.write_all(with_body.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), conn.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 400") && answer.contains("\"body\"") && answer.contains("\"header\""),
        "{answer}"
    );
    // The body a client sends anyway, after the refusal, is never read as
    // a request (smuggling suite's rule): discarded as the body, or the
    // connection closed.
    for late in [false, true] {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        let smuggled = "GET /search?q=smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
        let head = head("", &format!("Content-Type: text/plain\r\n{tenant}"))
            .replace("Content-Length: 53", &format!("Content-Length: {}", smuggled.len()));
        conn.write_all(head.as_bytes()).await.unwrap();
        if late {
            let mut status = [0u8; 12];
            conn.read_exact(&mut status).await.unwrap();
            assert_eq!(&status, b"HTTP/1.1 415");
        }
        let _ = conn.write_all(smuggled.as_bytes()).await;
        let mut all = Vec::new();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), conn.read_to_end(&mut all)).await;
        let all = String::from_utf8_lossy(&all);
        assert_eq!(all.matches("HTTP/1.1 ").count(), usize::from(!late), "late {late}: {all}");
    }
    assert_eq!(s.up.count(), 0);
}

#[tokio::test]
async fn answers_list_at_most_twenty_problems() {
    let s = setup().await;
    let items: Vec<Value> = (0..50).map(|_| json!({ "sku": "bad", "qty": -1 })).collect();
    let r = post(
        &s,
        "/orders",
        "application/json",
        &json!({ "customer": { "email": "a@b.co" }, "items": items }).to_string(),
        Some(TENANT),
    )
    .await;
    let body = r.json();
    assert_eq!(body["errors"].as_array().unwrap().len(), 20);
    assert!(r.body.len() < 12 << 10);
    assert_eq!(s.up.count(), 0);
    // A body of more than 4,096 values gets its first problem only: the
    // schema library lists every error before the first is read (a 10 MB
    // body of failing values took gigabytes).
    let items: Vec<Value> = (0..1000).map(|_| json!({ "sku": "bad", "qty": -1 })).collect();
    let body = json!({ "customer": { "email": "a@b.co" }, "items": items }).to_string();
    let r = post(&s, "/orders", "application/json", &body, Some(TENANT)).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let errors = r.json()["errors"].as_array().unwrap().clone();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(s.up.count(), 0);
}

/// HTTP/2 requests meet the same checks as HTTP/1.1 ones.
#[tokio::test]
async fn http2_requests_are_validated_the_same_way() {
    let s = setup().await;
    let client = crate::support::h2c_client();
    let url = format!("http://{}/orders", s.gw.addr("gw").unwrap());
    let req = |body: String| {
        Request::post(&url)
            .header("content-type", "application/json")
            .header("x-tenant", TENANT)
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    let ok = send(&client, req(valid_order().to_string())).await;
    assert_eq!((ok.status.as_u16(), ok.version), (200, http::Version::HTTP_2), "{}", ok.text());
    let bad = send(&client, req(json!({ "customer": {}, "items": [] }).to_string())).await;
    assert_eq!(errors(&bad), vec![("body".into(), "/customer".into()), ("body".into(), "/items".into())]);
    assert_eq!(s.up.count(), 1);
}

/// `mode: report` is a dry run: what `enforce` would refuse goes on to the
/// upstream unchanged, and is counted (and logged) where it would have failed.
#[tokio::test]
async fn report_mode_lets_everything_through_and_counts_what_it_would_refuse() {
    let s = setup().await;
    let bad = r#"{"customer": {"email": "not an email"}, "items": []}"#;
    for (query, content_type, body) in [
        ("?page=0", "application/json", bad),
        ("", "text/plain", "hello"),
        ("?page=abc", "application/json", "{\"customer\": "),
    ] {
        let r = post(&s, &format!("/dry{query}"), content_type, body, None).await;
        assert_eq!(r.status, 200, "{query} {content_type}: {}", r.text());
        let got = s.up.requests().pop().unwrap();
        assert_eq!((got.target.as_str(), got.body.as_slice()), (format!("/dry{query}").as_str(), body.as_bytes()));
    }
    assert_eq!(s.up.count(), 3);
    let metrics = crate::support::get(&format!("http://{}/metrics", s.gw.admin_addr().unwrap()), &[]).await.text();
    assert!(metrics.contains("portcullis_validation_failures_total{route=\"dry\",in=\"body\"} 3"), "{metrics}");
    assert!(metrics.contains("portcullis_validation_failures_total{route=\"dry\",in=\"query\"} 2"), "{metrics}");
    // Enforced, a 415 is counted as the refusal it is, as a 400 is.
    let r = post(&s, "/orders", "text/plain", "hello", Some(TENANT)).await;
    assert_eq!(r.status, 415, "{}", r.text());
    let metrics = crate::support::get(&format!("http://{}/metrics", s.gw.admin_addr().unwrap()), &[]).await.text();
    assert!(metrics.contains("portcullis_validation_failures_total{route=\"orders\",in=\"body\"} 1"), "{metrics}");
}

#[tokio::test]
async fn query_only_routes_validate_without_reading_a_body() {
    let s = setup().await;
    let url = |q: &str| format!("http://{}/search{q}", s.gw.addr("gw").unwrap());
    assert_eq!(crate::support::get(&url("?q=ab&ids=1&ids=2"), &[]).await.status, 200);
    let r = crate::support::get(&url("?q=a&ids=1&ids=x"), &[]).await;
    assert_eq!(errors(&r), vec![("query".into(), "ids/1".into()), ("query".into(), "q".into())]);
    assert_eq!(s.up.count(), 1);
    let metrics = crate::support::get(&format!("http://{}/metrics", s.gw.admin_addr().unwrap()), &[]).await.text();
    assert!(metrics.contains("portcullis_validation_failures_total{route=\"search\",in=\"query\"} 1"), "{metrics}");
}

#[tokio::test]
async fn check_names_the_file_and_what_is_wrong_with_a_schema() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("broken.json"),
        r#"{ "type": "object", "properties": { "a": { "type": "nonsense" } } }"#,
    )
    .unwrap();
    let yaml = "listeners:\n  - { name: gw, bind: \"127.0.0.1:0\" }\nroutes:\n\
                \x20 - { name: r, match: { path: /r }, static: { status: 200 }, validate: { body: { schema_file: broken.json } } }\n\
                \x20 - { name: s, match: { path: /s }, static: { status: 200 }, validate: { body: { schema_file: missing.json } } }\n\
                \x20 - { name: t, match: { path: /t }, static: { status: 200 }, validate: { query: { n: { type: integer, required: 1 } } } }\n\
                \x20 - { name: u, match: { path: \"/u/{id}\" }, static: { status: 200 }, validate: { path: { idd: { type: integer } } } }\n";
    let errors = portcullis::check(&load(yaml, dir.path())).unwrap_err().to_string();
    assert!(errors.contains("routes[0].validate.body") && errors.contains("nonsense"), "{errors}");
    assert!(errors.contains("routes[1].validate.body.schema_file") && errors.contains("missing.json"), "{errors}");
    assert!(errors.contains("routes[2].validate.query.n"), "{errors}");
    // A checked path parameter the path does not have (it would refuse
    // every request as missing it).
    assert!(errors.contains("routes[3].validate.path.idd") && errors.contains("its parameters: id"), "{errors}");
    let _ = Path::new(".");
}

/// `examples/openapi.yaml` with its ports, upstreams and key made real.
async fn openapi_example() -> (Handle, Recorder, Recorder) {
    let (pets, catalog) = (Recorder::start().await, Recorder::start().await);
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let text = std::fs::read_to_string(examples.join("openapi.yaml"))
        .unwrap()
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("http://127.0.0.1:9001", &pets.url())
        .replace("http://127.0.0.1:9002", &catalog.url())
        .replace("79d2f4f8cc180e79faf905bc34a1db9eea0bb2b9ab67b156411c106f8c1a80e5", &portcullis::hash_key("k-shop"));
    let gw = Gateway::start(&load(&text, &examples)).await.expect("the example starts");
    (gw, pets, catalog)
}

/// An api in `validate: { request: report }`: its operations' checks run
/// as a dry run (counted, logged, let through); its security still holds.
#[tokio::test]
async fn an_api_in_report_mode_lets_invalid_input_through_but_not_the_unauthenticated() {
    let pets = Recorder::start().await;
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let text = std::fs::read_to_string(examples.join("openapi.yaml"))
        .unwrap()
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("http://127.0.0.1:9001", &pets.url())
        .replace("    upstream: pets\n", "    upstream: pets\n    validate: { request: report }\n")
        .replace("79d2f4f8cc180e79faf905bc34a1db9eea0bb2b9ab67b156411c106f8c1a80e5", &portcullis::hash_key("k-shop"));
    assert!(text.contains("request: report"));
    let gw = Gateway::start(&load(&text, &examples)).await.expect("starts");
    assert_eq!(call(&gw, "GET", "/v1/pets?limit=1000", &[("x-tenant", "nope")], "").await.status, 200);
    assert_eq!(call(&gw, "GET", "/v1/pets/seven", &[], "").await.status, 200);
    let key = [("content-type", "application/json"), ("x-api-key", "k-shop")];
    assert_eq!(call(&gw, "POST", "/v1/pets", &key, r#"{"name":""}"#).await.status, 200);
    assert_eq!(call(&gw, "POST", "/v1/pets", &key[..1], r#"{"name":"Rex"}"#).await.status, 401);
    assert_eq!(pets.count(), 3);
}

async fn call(gw: &Handle, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut req = Request::builder().method(method).uri(format!("http://{}{path}", gw.addrs()[0].1));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(&http1_client(), req.body(Full::new(Bytes::from(body.to_string()))).unwrap()).await
}

/// Header and cookie parameters are checked whatever bytes their field
/// holds: one byte past ASCII (`\xff`, a Latin-1 `\xe9`) made the value
/// (or every cookie of the field) go by unchecked, and a second copy of a
/// single header uncounted.
#[tokio::test]
async fn parameters_in_fields_with_bytes_past_ascii_are_still_checked() {
    let (gw, _pets, _catalog) = openapi_example().await;
    let raw = |fields: &[(&str, &[u8])]| {
        let mut req = Request::builder().uri(format!("http://{}/v1/pets", gw.addrs()[0].1));
        for (k, v) in fields {
            req = req.header(*k, http::HeaderValue::from_bytes(v).unwrap());
        }
        req.body(Full::new(Bytes::new())).unwrap()
    };
    let client = http1_client();
    let tenant: &[u8] = b"123e4567-e89b-12d3-a456-426614174000";
    assert_eq!(send(&client, raw(&[("x-tenant", tenant)])).await.status, 200);
    let r = send(&client, raw(&[("x-tenant", b"' OR 1=1 --\xff")])).await;
    assert_eq!(errors(&r), vec![("header".into(), "X-Tenant".into())], "{}", r.text());
    let r = send(&client, raw(&[("x-tenant", tenant), ("x-tenant", b"nope\xff")])).await;
    assert_eq!(errors(&r), vec![("header".into(), "X-Tenant".into())], "{}", r.text());
    let r = send(&client, raw(&[("cookie", b"page_size=1000; x=\xe9")])).await;
    assert_eq!(errors(&r), vec![("cookie".into(), "page_size".into())], "{}", r.text());
    assert_eq!(send(&client, raw(&[("cookie", b"page_size=10; x=\xe9")])).await.status, 200);
}

#[tokio::test]
async fn an_openapi_document_routes_validates_and_authenticates() {
    let (gw, pets, catalog) = openapi_example().await;
    let json = [("content-type", "application/json")];
    let key = [("content-type", "application/json"), ("x-api-key", "k-shop")];

    // Parameters, as the document declares them (base path /v1 from servers[0].url).
    assert_eq!(call(&gw, "GET", "/v1/pets?limit=10&tags=a&tags=b", &[], "").await.status, 200);
    let r = call(&gw, "GET", "/v1/pets?limit=1000", &[("x-tenant", "nope")], "").await;
    assert_eq!(errors(&r), vec![("query".into(), "limit".into()), ("header".into(), "X-Tenant".into())]);
    // `;` separates parameters for some servers (Rack before 3, Go before
    // 1.17): `tags=x;limit=1000` is also `limit=1000` there, checked as such.
    let r = call(&gw, "GET", "/v1/pets?tags=x;limit=1000", &[], "").await;
    assert_eq!(errors(&r), vec![("query".into(), "limit".into())], "{}", r.text());
    assert_eq!(call(&gw, "GET", "/v1/pets?tags=x;y&limit=5", &[], "").await.status, 200);
    // A single value given twice is refused: a service reading the last would see the unchecked one.
    let r = call(&gw, "GET", "/v1/pets?limit=1&limit=1000", &[], "").await;
    assert_eq!(errors(&r), vec![("query".into(), "limit".into())]);
    assert!(r.text().contains("given 2 times where one value is expected"), "{}", r.text());
    let r = call(&gw, "GET", "/v1/pets", &[("cookie", "page_size=2; page_size=500")], "").await;
    assert_eq!(errors(&r), vec![("cookie".into(), "page_size".into())]);
    assert_eq!(call(&gw, "GET", "/v1/pets/7", &[], "").await.status, 200);
    assert_eq!(errors(&call(&gw, "GET", "/v1/pets/seven", &[], "").await), vec![("path".into(), "petId".into())]);
    // showPet's security is optional (`{}` among its requirements): a key, when sent, must be valid.
    assert_eq!(call(&gw, "GET", "/v1/pets/7", &[("x-api-key", "k-shop")], "").await.status, 200);
    assert_eq!(call(&gw, "GET", "/v1/pets/7", &[("x-api-key", "wrong")], "").await.status, 401);
    // Cookies (form style): read as their types, arrays comma-separated; other cookies ignored.
    let cookies = [("cookie", "session=s3cret; page_size=20; prefs=compact,dark")];
    assert_eq!(call(&gw, "GET", "/v1/pets", &cookies, "").await.status, 200);
    let r = call(&gw, "GET", "/v1/pets", &[("cookie", "session=s3cret; page_size=500; prefs=compact,loud")], "").await;
    assert_eq!(errors(&r), vec![("cookie".into(), "page_size".into()), ("cookie".into(), "prefs/1".into())]);
    // `,` separates cookies for older parsers (RFC 2109): a cookie after one is checked too.
    let r = call(&gw, "GET", "/v1/pets", &[("cookie", "session=s3cret; x=1,page_size=500")], "").await;
    assert_eq!(errors(&r), vec![("cookie".into(), "page_size".into())]);
    assert!(!r.text().contains("s3cret") && !r.text().contains("loud"), "{}", r.text());
    // Other spellings PHP (`.`, space, brackets, a NUL) or ASP.NET (case) read as a declared cookie.
    for (cookie, name) in [
        ("page.size=500; page_size=1", "page.size"),
        ("page_size=1; page%20size=500", "page%20size"),
        ("page_size[]=500", "page_size[]"),
        ("PAGE_SIZE=500", "PAGE_SIZE"),
        ("page_size%00=500", "page_size%00"),
        ("page%5Fsize=500", "page%5Fsize"),
    ] {
        let r = call(&gw, "GET", "/v1/pets", &[("cookie", &format!("session=s3cret; {cookie}"))], "").await;
        assert_eq!(errors(&r), vec![("cookie".into(), name.into())], "{cookie}: {}", r.text());
    }

    // Security from the document: createPet and deletePet need the API key.
    assert_eq!(call(&gw, "POST", "/v1/pets", &json, r#"{"name":"Rex"}"#).await.status, 401);
    assert_eq!(call(&gw, "DELETE", "/v1/pets/7", &[], "").await.status, 401);
    assert_eq!(call(&gw, "DELETE", "/v1/pets/7", &[("x-api-key", "k-shop")], "").await.status, 200);

    // Bodies: 3.0's nullable and boolean exclusiveMinimum, a sibling file's schema, a recursive
    // schema; `id` is required but readOnly (required in responses only), also in the children.
    let ok = r#"{"name":"Rex","tag":null,"age":0.5,"owner":{"email":"ada@example.com"},"children":[{"name":"Pup"}]}"#;
    assert_eq!(call(&gw, "POST", "/v1/pets", &key, ok).await.status, 200);
    let bad = r#"{"name":"","age":0,"owner":{"email":"nope"},"children":[{"name":"Pup","x":1}],"extra":1}"#;
    let mut got = errors(&call(&gw, "POST", "/v1/pets", &key, bad).await);
    got.sort();
    let want: Vec<(String, String)> = ["", "/age", "/children/0", "/name", "/owner/email"]
        .iter()
        .map(|p| ("body".to_string(), p.to_string()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(
        call(&gw, "POST", "/v1/pets", &[("content-type", "text/plain"), ("x-api-key", "k-shop")], "x").await.status,
        415
    );
    // Unexpected members are named when short; a long name is not echoed back.
    let r = call(&gw, "POST", "/v1/pets", &key, r#"{"name":"Rex","colour":"red"}"#).await;
    assert_eq!(r.json()["errors"][0]["detail"], "a member the schema does not allow: `colour`");
    let long = "k".repeat(3000);
    let r = call(&gw, "POST", "/v1/pets", &key, &format!(r#"{{"name":"Rex","{long}":1}}"#)).await;
    assert_eq!(r.status, 400);
    assert!(!r.text().contains(&long[..100]) && r.text().len() < 1000, "{}", r.text());
    // The sibling file's own references: its component and its plain pointer.
    let owner =
        r#"{"name":"Rex","owner":{"email":"ada@example.com","phone":"+4930123456","address":{"city":"Berlin"}}}"#;
    assert_eq!(call(&gw, "POST", "/v1/pets", &key, owner).await.status, 200);
    let owner = r#"{"name":"Rex","owner":{"email":"ada@example.com","phone":"030 123","address":{"city":""}}}"#;
    let mut got = errors(&call(&gw, "POST", "/v1/pets", &key, owner).await);
    got.sort();
    assert_eq!(got, vec![("body".into(), "/owner/address/city".into()), ("body".into(), "/owner/phone".into())]);
    // `oneOf`: either form passes; a value of neither (or a half-made record) is refused where it is.
    for chip in [r#""985112004321234""#, r#"{"registry":"avid","id":"A1"}"#] {
        let body = format!(r#"{{"name":"Rex","microchip":{chip}}}"#);
        assert_eq!(call(&gw, "POST", "/v1/pets", &key, &body).await.status, 200, "{chip}");
    }
    for chip in ["42", r#""12345""#, r#"{"registry":"avid"}"#, r#"{"registry":"acme","id":"A1"}"#] {
        let body = format!(r#"{{"name":"Rex","microchip":{chip}}}"#);
        let r = call(&gw, "POST", "/v1/pets", &key, &body).await;
        assert_eq!(errors(&r), vec![("body".to_string(), "/microchip".to_string())], "{chip}");
    }

    // The contract, served: the document as JSON and a reference page.
    let spec = call(&gw, "GET", "/v1/docs/openapi.json", &[], "").await;
    assert_eq!((spec.status.as_u16(), spec.header("content-type")), (200, Some("application/json")));
    assert_eq!(spec.json()["paths"]["/pets"]["get"]["operationId"], "listPets");
    assert_eq!(spec.json()["servers"], json!([ { "url": "/v1" } ]), "where the gateway serves it");
    // A `$ref` into a sibling file resolves inside the served document.
    let served = spec.json();
    let owner = served["components"]["schemas"]["NewPet"]["properties"]["owner"]["$ref"].as_str().unwrap().to_string();
    assert_eq!(owner, "#/x-portcullis-bundled/owner.yaml/Owner");
    assert!(served.pointer(owner.trim_start_matches('#')).is_some_and(Value::is_object), "{owner} resolves");
    assert!(!spec.text().contains("/work/") && !spec.text().contains("examples/specs"), "no server paths");
    let phone = served.pointer("/x-portcullis-bundled/owner.yaml/Owner/properties/phone/$ref").and_then(Value::as_str);
    assert_eq!(phone, Some("#/x-portcullis-bundled/owner.yaml/components/schemas/Phone"), "the file's own refs too");
    let page = call(&gw, "GET", "/v1/docs", &[], "").await;
    assert_eq!((page.status.as_u16(), page.header("content-type")), (200, Some("text/html; charset=utf-8")));
    for seen in [
        "<code>GET /v1/pets</code> listPets",
        "<code>POST /v1/pets</code> createPet",
        "Authentication: api_key",
        "NewPet",
    ] {
        assert!(page.text().contains(seen), "{seen} not in\n{}", page.text());
    }
    assert_eq!(call(&gw, "HEAD", "/v1/docs", &[], "").await.status, 200);

    // A contract served to some callers only.
    assert_eq!(call(&gw, "GET", "/catalog-docs", &[], "").await.status, 401);
    assert_eq!(call(&gw, "GET", "/catalog-docs/openapi.json", &[], "").await.status, 401);
    let docs = call(&gw, "GET", "/catalog-docs/openapi.json", &[("x-api-key", "k-shop")], "").await;
    assert_eq!(docs.status, 200);
    assert!(docs.json()["openapi"].as_str().unwrap().starts_with("3.1"));

    // Strict: what the document does not declare is not served.
    assert_eq!(call(&gw, "GET", "/v1/owners", &[], "").await.status, 404);
    assert_eq!(call(&gw, "PATCH", "/v1/pets", &json, "{}").await.status, 405);
    assert_eq!(pets.count(), 10, "only the valid, authenticated requests reached the upstream");

    // 3.1: type lists and numeric exclusiveMinimum; `strict: false` passes the rest.
    let put = |body: &'static str| call(&gw, "PUT", "/catalog/items/ABC-1234", &json, body);
    assert_eq!(put(r#"{"price": 2.5, "note": null}"#).await.status, 200);
    assert_eq!(errors(&put(r#"{"price": 0}"#).await), vec![("body".into(), "/price".into())]);
    assert_eq!(
        errors(&call(&gw, "PUT", "/catalog/items/abc", &json, r#"{"price": 1}"#).await),
        vec![("path".into(), "sku".into())]
    );
    // deepObject queries and label-style path segments.
    assert_eq!(call(&gw, "GET", "/catalog/items?filter[color]=red&filter[max_price]=9.5", &[], "").await.status, 200);
    let r = call(&gw, "GET", "/catalog/items?filter[color]=pink&filter[max_price]=0", &[], "").await;
    assert_eq!(errors(&r), vec![("query".into(), "filter/color".into()), ("query".into(), "filter/max_price".into())]);
    // Not members: a service's query parser may read them as the parameter itself.
    // ASP.NET's own nesting of a deepObject member.
    let r = call(&gw, "GET", "/catalog/items?filter.color=pink", &[], "").await;
    assert_eq!(errors(&r), vec![("query".into(), "filter.color".into())], "{}", r.text());
    for stray in ["filter=pink", "filter[color=pink", "filter[color]=red&filter=x", "filter[]=pink"] {
        let r = call(&gw, "GET", &format!("/catalog/items?{stray}"), &[], "").await;
        assert_eq!(errors(&r), vec![("query".into(), "filter".into())], "{stray}");
    }
    // A deepObject array (Stripe's `expand`): `expand[]` or `expand[0]` items.
    assert_eq!(call(&gw, "GET", "/catalog/items?expand[]=price&expand[1]=stock", &[], "").await.status, 200);
    let r = call(&gw, "GET", "/catalog/items?expand[0]=secret", &[], "").await;
    assert_eq!(errors(&r), vec![("query".into(), "expand/0".into())]);
    let r = call(&gw, "GET", "/catalog/items?expand=price", &[], "").await;
    assert_eq!(errors(&r), vec![("query".into(), "expand".into())]);
    let r = call(&gw, "GET", "/catalog/shelves/.1.2", &[], "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = call(&gw, "GET", "/catalog/shelves/.1.x", &[], "").await;
    assert_eq!(errors(&r), vec![("path".into(), "ids/1".into())]);
    // Matrix style: a `;` segment passes where the operation reads it as
    // its matrix parameter, and only there (the label route refuses it).
    let r = call(&gw, "GET", "/catalog/bins/;bin=3", &[], "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(errors(&call(&gw, "GET", "/catalog/bins/;bin=0", &[], "").await), vec![("path".into(), "bin".into())]);
    assert_eq!(call(&gw, "GET", "/catalog/shelves/;ids=1", &[], "").await.status, 400);
    assert_eq!(call(&gw, "GET", "/catalog/anything/else", &[], "").await.status, 200);
    assert_eq!(catalog.count(), 6);
}

#[tokio::test]
async fn check_reports_broken_documents_and_unmapped_security() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write(
        "remote.yaml",
        "openapi: 3.0.0\ninfo: { title: t, version: '1' }\npaths:\n  /a:\n    get:\n      parameters: [ { $ref: 'https://example.com/p.yaml#/P' } ]\n      responses: {}\n",
    );
    write(
        "secure.yaml",
        "openapi: 3.1.0\ninfo: { title: t, version: '1' }\npaths:\n  /a:\n    get:\n      operationId: getA\n      security: [ { oauth: [read] } ]\n      responses: {}\n\
         \x20 /b:\n    get:\n      operationId: getB\n      security: [ { ghost: [] } ]\n      responses: {}\n\
         components:\n  securitySchemes:\n    oauth: { type: oauth2, flows: {} }\n",
    );
    write("old.yaml", "swagger: '2.0'\npaths: {}\n");
    // A component naming a sibling file that is not there: said once, as the missing file.
    write(
        "lost.yaml",
        "openapi: 3.0.3\ninfo: { title: t, version: '1' }\npaths: {}\n\
         components: { schemas: { Pet: { properties: { owner: { $ref: 'owner.yaml#/Owner' } } } } }\n",
    );
    write("xver.yaml", "openapi: 3.0.x\ninfo: { title: t, version: '1' }\npaths: {}\n");
    write(
        "plain.yaml",
        "openapi: 3.0.3\ninfo: { title: t, version: '1' }\npaths:\n  /b:\n    get: { responses: {} }\n",
    );
    // Not clashes: a parameter's segment (a literal outranks it), a POST only.
    write(
        "fine.yaml",
        "openapi: 3.0.3\ninfo: { title: t, version: '1' }\npaths:\n  /{id}:\n    get: { responses: {} }\n\
         \x20 /docs:\n    post: { responses: {} }\n",
    );
    write("num.yaml", "openapi: 2.0\ninfo: { title: t, version: '1' }\npaths: {}\n");
    // A reference out of the document's folder (the served document would
    // bundle the file whole).
    std::fs::create_dir(dir.path().join("api")).unwrap();
    write("secret.yaml", "X: { type: integer }\ndb_password: hunter2\n");
    write(
        "api/out.yaml",
        "openapi: 3.0.3\ninfo: { title: t, version: '1' }\npaths:\n  /a:\n    post:\n\
         \x20     requestBody: { content: { application/json: { schema: { $ref: '../secret.yaml#/X' } } } }\n\
         \x20     responses: {}\n",
    );
    // Whatever names it (an example, an extension): a served document would carry it.
    write(
        "api/example.yaml",
        "openapi: 3.0.3\ninfo: { title: t, version: '1' }\npaths: {}\n\
         components: { examples: { leak: { $ref: '../secret.yaml' } } }\n",
    );
    write(
        "twice.yaml",
        "openapi: 3.0.3\ninfo: { title: t, version: '1' }\npaths:\n  /a:\n    get: { operationId: same, responses: {} }\n\
         \x20 /b:\n    post: { operationId: same, responses: {} }\n",
    );
    write(
        "broken.yaml",
        "openapi: 3.0.3\ninfo: { title: t, version: '1' }\npaths:\n  /pets/{id}:\n    get:\n      operationId: getPet\n\
         \x20     parameters: [ { name: id, in: path, required: true, schema: { type: integr } } ]\n\
         \x20     responses: {}\n    post:\n      requestBody: { content: { application/json: { schema: { $ref: '#/components/schemas/Pet' } } } }\n\
         \x20     responses: {}\ncomponents:\n  schemas:\n    Pet: { type: object, properties: { age: { minimum: x } } }\n",
    );
    // One parameter twice in a list (the last would have won: its integer check was lost).
    write(
        "dup.yaml",
        "openapi: 3.0.3\ninfo: { title: t, version: '1' }\npaths:\n  /x/{id}:\n    parameters:\n\
         \x20     - { name: X-Tenant, in: header, schema: { type: string } }\n\
         \x20     - { name: x-tenant, in: header, schema: { type: integer } }\n\
         \x20   post:\n      operationId: postX\n      parameters:\n\
         \x20       - { name: id, in: path, required: true, schema: { type: integer } }\n\
         \x20       - { name: id, in: path, required: true, schema: { type: string } }\n\
         \x20     responses: {}\n\
         \x20 /z:\n    parameters:\n\
         \x20     - { name: X-Tenant, in: header, schema: { type: string } }\n\
         \x20     - { name: x-tenant, in: header, schema: { type: integer } }\n\
         \x20   get: { operationId: getZ, responses: {} }\n\
         \x20 /y/{id}:\n    get:\n      operationId: getY\n      parameters:\n\
         \x20       - { name: id, in: path, required: true, schema: { type: integer } }\n\
         \x20       - { name: id, in: query, schema: { type: string } }\n\
         \x20     responses: {}\n",
    );
    let yaml = "listeners:\n  - { name: gw, bind: \"127.0.0.1:0\" }\nupstreams:\n  u: { targets: [\"http://127.0.0.1:1\"] }\napis:\n\
                \x20 - { name: remote, openapi: remote.yaml, upstream: u }\n\
                \x20 - { name: secure, openapi: secure.yaml, upstream: u, base_path: /s, operations: { nope: {} } }\n\
                \x20 - { name: old, openapi: old.yaml, upstream: u }\n\
                \x20 - { name: gone, openapi: missing.yaml, upstream: u }\n\
                \x20 - { name: broken, openapi: broken.yaml, upstream: u, base_path: /b }\n\
                \x20 - { name: twice, openapi: twice.yaml, upstream: u, base_path: /t }\n\
                \x20 - { name: out, openapi: api/out.yaml, upstream: u, base_path: /o }\n\
                \x20 - { name: example, openapi: api/example.yaml, upstream: u, base_path: /e, docs: /e/docs }\n\
                \x20 - { name: dup, openapi: dup.yaml, upstream: u, base_path: /d }\n\
                \x20 - { name: xver, openapi: xver.yaml, upstream: u, base_path: /x }\n\
                \x20 - { name: num, openapi: num.yaml, upstream: u, base_path: /n }\n\
                \x20 - { name: lost, openapi: lost.yaml, upstream: u, base_path: /l }\n\
                \x20 - { name: shadowed, openapi: plain.yaml, upstream: u, base_path: /h, docs: /h/b }\n\
                \x20 - { name: fine, openapi: fine.yaml, upstream: u, base_path: /f, docs: /f/docs }\n";
    let errors = portcullis::check(&load(yaml, dir.path())).unwrap_err().to_string();
    for expected in [
        "apis[0].openapi",
        "remote references are refused",
        "apis[1].operations.getA",
        "`oauth` is not mapped",
        "apis[1].operations.getB",
        "`ghost` is not declared in the document's `components.securitySchemes`",
        "apis[1].operations.nope",
        "no operation `nope`",
        "apis[2].openapi",
        "is a Swagger 2.0 document",
        "apis[3].openapi",
        "missing.yaml",
        // A broken schema: the document, the JSON pointer inside it, and the reason; a
        // component's fault once, where the component is.
        "apis[4].operations.getPet: `broken.yaml` at `/paths/~1pets~1{id}/get/parameters/0/schema/type`: \"integr\"",
        "apis[4].openapi: `broken.yaml` at `/components/schemas/Pet/properties/age/minimum`: \"x\" is not of type \"number\"",
        "apis[5].openapi: `twice.yaml`: operationId `same` is given to `GET /a` and `POST /b`",
        "`$ref: ../secret.yaml#/X` names a file outside the document's folder",
        "`$ref: ../secret.yaml` names a file outside the document's folder",
        "operations.postX: `dup.yaml` at `/paths/~1x~1{id}/post/parameters/1`: a parameter declared twice",
        "operations.getZ: `dup.yaml` at `/paths/~1z/parameters/1`: a parameter declared twice",
        "xver.yaml`: `openapi: 3.0.x` is not 3.0.x or 3.1.x",
        "num.yaml`: `openapi: 2.0` is not 3.0.x or 3.1.x",
        // A docs page at an operation's path: that operation would take its requests.
        "apis[12].docs: `/h/b` is the path of the document's `/b`",
    ] {
        assert!(errors.contains(expected), "{expected} not in:\n{errors}");
    }
    assert!(!errors.contains("apis[13]"), "{errors}");
    assert_eq!(errors.matches("/components/schemas/Pet").count(), 1, "{errors}");
    assert!(
        errors.contains("apis[11].openapi: components.schemas.Pet: cannot read `")
            && errors.contains("owner.yaml`: No such file"),
        "{errors}"
    );
    assert!(!errors.contains("read on its own"), "a missing file is not a schema's own fault:\n{errors}");
    assert!(!errors.contains("duplicate route name"), "{errors}");
    // One name in two places is two parameters.
    assert!(!errors.contains("getY"), "{errors}");
}

/// Documents written for other tools: a 3.1 `jsonSchemaDialect` of draft 4
/// (boolean bounds), a pattern written for JavaScript without the `u` flag
/// (literal braces), draft 4's boolean bounds left in a 3.1 schema, names
/// and values YAML 1.1 read as booleans, a document of webhooks only
/// (3.1 makes `paths` optional) and a schema resource with its own `$id`.
#[tokio::test]
async fn documents_in_other_dialects_are_read_as_their_authors_meant() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write(
        "draft4.yaml",
        r#"
openapi: 3.1.0
info: { title: t, version: "1" }
jsonSchemaDialect: "http://json-schema.org/draft-04/schema#"
paths:
  /n:
    get:
      parameters:
        - { name: n, in: query, required: true, schema: { type: number, minimum: 10, exclusiveMinimum: true } }
      responses: { "200": { description: ok } }
"#,
    );
    write(
        "js.yaml",
        r##"
openapi: 3.1.0
info: { title: t, version: "1" }
paths:
  /g:
    get:
      parameters:
        - { name: guid, in: query, required: true, schema: { type: string, pattern: "^{[0-9a-f]{4}}$" } }
        - { name: m, in: query, schema: { $ref: "#/components/schemas/Small" } }
        - { name: on, in: query, schema: { enum: [yes, no] } }
      responses: { "200": { description: ok } }
components:
  schemas:
    Small: { type: integer, maximum: 5, exclusiveMaximum: true }
"##,
    );
    write(
        "resource.yaml",
        r##"
openapi: 3.1.0
info: { title: t, version: "1" }
paths:
  /r:
    post:
      requestBody:
        content: { application/json: { schema: { $ref: "#/components/schemas/Order" } } }
      responses: { "200": { description: ok } }
  /pets:
    post:
      requestBody:
        content:
          application/json:
            schema:
              oneOf: [ { $ref: "#/components/schemas/Cat" }, { $ref: "#/components/schemas/Dog" } ]
              discriminator: { propertyName: pet_type, mapping: { kitty: "#/components/schemas/Cat" } }
      responses: { "200": { description: ok } }
  /form-pets:
    post:
      requestBody:
        content:
          application/x-www-form-urlencoded:
            schema:
              oneOf: [ { $ref: "#/components/schemas/Cat" }, { $ref: "#/components/schemas/Dog" } ]
              discriminator: { propertyName: pet_type }
      responses: { "200": { description: ok } }
components:
  schemas:
    Cat: { type: object, properties: { pet_type: { type: string }, hunts: { type: boolean } } }
    Dog: { type: object, properties: { pet_type: { type: string }, barks: { type: boolean } } }
    Order:
      $id: "https://example.com/schemas/order"
      type: object
      required: [line]
      properties: { line: { $ref: "#/$defs/line" } }
      $defs:
        line: { type: object, required: [sku], properties: { sku: { type: string } } }
"##,
    );
    write(
        "hooks.yaml",
        "openapi: 3.1.0\ninfo: { title: t, version: '1' }\nwebhooks:\n  ping: { post: { responses: { '200': { description: ok } } } }\n",
    );
    let up = Recorder::start().await;
    let yaml = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\nupstreams:\n  u: {{ targets: [ \"{}\" ] }}\napis:\n\
         \x20 - {{ name: d4, openapi: draft4.yaml, upstream: u, base_path: /d4 }}\n\
         \x20 - {{ name: js, openapi: js.yaml, upstream: u, base_path: /js }}\n\
         \x20 - {{ name: hooks, openapi: hooks.yaml, upstream: u, base_path: /hooks }}\n\
         \x20 - {{ name: res, openapi: resource.yaml, upstream: u, base_path: /res }}\n",
        up.url()
    );
    let gw = Gateway::start(&load(&yaml, dir.path())).await.expect("starts");
    let status = async |path: &str| call(&gw, "GET", path, &[], "").await.status.as_u16();
    assert_eq!((status("/d4/n?n=10.5").await, status("/d4/n?n=10").await), (200, 400));
    assert_eq!((status("/js/g?guid={beef}").await, status("/js/g?guid=beef").await), (200, 400));
    assert_eq!((status("/js/g?guid={beef}&m=4").await, status("/js/g?guid={beef}&m=5").await), (200, 400));
    // YAML 1.2, as OpenAPI asks: `n`, `on`, `yes` and `no` are strings, not YAML 1.1's booleans.
    assert_eq!((status("/js/g?guid={beef}&on=yes").await, status("/js/g?guid={beef}&on=true").await), (200, 400));
    assert_eq!(status("/hooks/ping").await, 404, "webhooks are the API's calls out, not routes");
    // A schema with its own `$id` resolves `#/$defs/…` in its own `$defs`.
    let post = async |body: &str| {
        call(&gw, "POST", "/res/r", &[("content-type", "application/json")], body).await.status.as_u16()
    };
    assert_eq!((post(r#"{"line":{"sku":"a"}}"#).await, post(r#"{"line":{}}"#).await), (200, 400));
    // A discriminator picks the one schema (a Cat is also a valid Dog: plain `oneOf` refuses it).
    let pet = async |body: &str| {
        call(&gw, "POST", "/res/pets", &[("content-type", "application/json")], body).await.status.as_u16()
    };
    assert_eq!(pet(r#"{"pet_type":"kitty","hunts":true}"#).await, 200);
    assert_eq!(pet(r#"{"pet_type":"Dog","barks":true}"#).await, 200);
    assert_eq!(pet(r#"{"pet_type":"Dog","barks":"loud"}"#).await, 400);
    assert_eq!(pet(r#"{"pet_type":"Bird"}"#).await, 400, "a value naming no listed schema");
    // A form's fields are read by the type each subtype declares (they were all text: 400).
    let form = async |body: &str| {
        let form = [("content-type", "application/x-www-form-urlencoded")];
        call(&gw, "POST", "/res/form-pets", &form, body).await.status.as_u16()
    };
    assert_eq!(form("pet_type=Cat&hunts=true").await, 200);
    assert_eq!(form("pet_type=Dog&barks=false").await, 200);
    assert_eq!(form("pet_type=Dog&barks=loud").await, 400);
    assert_eq!(up.count(), 9);
}

/// Component names that a URI fragment must percent-encode (`Sea Bird`
/// is `#/components/schemas/Sea%20Bird`, RFC 6901 §6): found, and read
/// as their names (a discriminator's value is the decoded name).
#[tokio::test]
async fn references_to_percent_encoded_component_names_resolve() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("birds.yaml"),
        r##"
openapi: 3.0.3
info: { title: t, version: "1" }
paths:
  /birds:
    post:
      parameters:
        - { name: n, in: query, schema: { $ref: "#/components/schemas/Count%7B%7D" } }
      requestBody:
        content:
          application/json:
            schema:
              oneOf: [ { $ref: "#/components/schemas/Sea%20Bird" }, { $ref: "#/components/schemas/Owl" } ]
              discriminator: { propertyName: kind }
      responses: { "200": { description: ok } }
  /mapped:
    post:
      requestBody:
        content:
          application/json:
            schema:
              oneOf: [ { $ref: "#/components/schemas/Sea%20Bird" }, { $ref: "#/components/schemas/Owl" } ]
              discriminator: { propertyName: kind, mapping: { sea: "Sea Bird", owl: "#/components/schemas/%4Fwl" } }
      responses: { "200": { description: ok } }
components:
  schemas:
    Count{}: { type: integer, maximum: 5 }
    Sea Bird: { type: object, required: [kind, wingspan], properties: { kind: { type: string }, wingspan: { type: number } } }
    Owl: { type: object, required: [kind], properties: { kind: { type: string }, hoots: { type: boolean } } }
"##,
    )
    .unwrap();
    let up = Recorder::start().await;
    let yaml = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\nupstreams:\n  u: {{ targets: [ \"{}\" ] }}\napis:\n\
         \x20 - {{ name: b, openapi: birds.yaml, upstream: u }}\n",
        up.url()
    );
    let gw = Gateway::start(&load(&yaml, dir.path())).await.expect("starts");
    let post = async |path: &str, body: &str| {
        call(&gw, "POST", path, &[("content-type", "application/json")], body).await.status.as_u16()
    };
    assert_eq!(post("/birds", r#"{"kind":"Sea Bird","wingspan":2}"#).await, 200);
    assert_eq!(post("/birds", r#"{"kind":"Sea Bird"}"#).await, 400, "the Sea Bird schema checks it");
    assert_eq!(post("/birds", r#"{"kind":"Owl","hoots":true}"#).await, 200);
    assert_eq!(post("/birds", r#"{"kind":"Sea%20Bird","wingspan":2}"#).await, 400, "the name, not its URI spelling");
    assert_eq!(
        (post("/birds?n=5", r#"{"kind":"Owl"}"#).await, post("/birds?n=6", r#"{"kind":"Owl"}"#).await),
        (200, 400)
    );
    assert_eq!(up.count(), 3);
    // A mapping names a schema by its name (`Sea Bird`) or by a reference
    // spelled another way (`%4Fwl` is `Owl`): those schemas are mapped, so
    // their names are no values of their own.
    assert_eq!(post("/mapped", r#"{"kind":"sea","wingspan":2}"#).await, 200);
    assert_eq!(post("/mapped", r#"{"kind":"sea"}"#).await, 400);
    assert_eq!(post("/mapped", r#"{"kind":"owl"}"#).await, 200);
    assert_eq!(post("/mapped", r#"{"kind":"Owl"}"#).await, 400);
    assert_eq!(post("/mapped", r#"{"kind":"Sea Bird","wingspan":2}"#).await, 400);
}

/// Object-valued parameters in every style of OpenAPI's style table, the
/// header parameters OpenAPI says to ignore, and body media types written
/// with parameters or as `*/*`.
#[tokio::test]
async fn object_parameters_in_every_style_and_media_types_as_written() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("styles.yaml"),
        r##"
openapi: 3.0.3
info: { title: t, version: "1" }
paths:
  /simple/{color}/{exploded}:
    get:
      parameters:
        - { name: color, in: path, required: true, schema: { $ref: "#/components/schemas/Color" } }
        - { name: exploded, in: path, required: true, explode: true, schema: { $ref: "#/components/schemas/Color" } }
        - { name: X-Color, in: header, schema: { $ref: "#/components/schemas/Color" } }
        - { name: Authorization, in: header, required: true, schema: { type: string, enum: [never] } }
        - { name: Accept, in: header, required: true, schema: { enum: [application/xml] } }
      responses: { "200": { description: ok } }
  /label/{color}/matrix/{m}/{me}:
    get:
      parameters:
        - { name: color, in: path, required: true, style: label, schema: { $ref: "#/components/schemas/Color" } }
        - { name: m, in: path, required: true, style: matrix, schema: { $ref: "#/components/schemas/Color" } }
        - { name: me, in: path, required: true, style: matrix, explode: true, schema: { $ref: "#/components/schemas/Color" } }
      responses: { "200": { description: ok } }
  /query:
    get:
      parameters:
        - { name: runs, in: query, explode: false, schema: { $ref: "#/components/schemas/Color" } }
        - { name: pipes, in: query, style: pipeDelimited, schema: { $ref: "#/components/schemas/Color" } }
        - { name: spread, in: query, required: true, schema: { $ref: "#/components/schemas/Color" } }
        - { name: c, in: cookie, explode: false, schema: { $ref: "#/components/schemas/Color" } }
        - { name: filter, in: query, content: { application/json: { schema: { type: object, required: [a] } } } }
      responses: { "200": { description: ok } }
  "/files/{name}.json":
    get:
      parameters: [ { name: name, in: path, required: true, schema: { type: string, maxLength: 3 } } ]
      responses: { "200": { description: ok } }
  "/compare/{base}...{head}/{team-name}":
    get:
      parameters:
        - { name: base, in: path, required: true, schema: { type: string, pattern: "^[a-z]+$" } }
        - { name: head, in: path, required: true, schema: { type: string } }
        - { name: team-name, in: path, required: true, schema: { type: string, minLength: 2 } }
      responses: { "200": { description: ok } }
  "/items/{id}:cancel":
    post:
      parameters: [ { name: id, in: path, required: true, schema: { type: integer } } ]
      responses: { "200": { description: ok } }
  /bodies:
    post:
      requestBody:
        required: true
        content:
          "application/json; charset=utf-8": { schema: { type: object, required: [a] } }
      responses: { "200": { description: ok } }
    put:
      requestBody: { content: { "*/*": {} } }
      responses: { "200": { description: ok } }
components:
  schemas:
    Color:
      type: object
      additionalProperties: false
      properties: { R: { type: integer, maximum: 255 }, G: { type: integer, maximum: 255 } }
"##,
    )
    .unwrap();
    let up = Recorder::start().await;
    let yaml = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\nupstreams:\n  u: {{ targets: [ \"{}\" ] }}\n\
         apis:\n  - {{ name: s, openapi: styles.yaml, upstream: u, base_path: /s }}\n",
        up.url()
    );
    let gw = Gateway::start(&load(&yaml, dir.path())).await.expect("starts");
    let get = async |path: &str, headers: &[(&str, &str)]| {
        let r = call(&gw, "GET", path, headers, "").await;
        (r.status.as_u16(), if r.status == 400 { errors(&r) } else { Vec::new() })
    };
    let none: Vec<(String, String)> = Vec::new();
    // simple (`R,100,G,200`, exploded `R=100,G=200`), and in a header; Authorization and
    // Accept parameters are ignored, as OpenAPI says.
    assert_eq!(get("/s/simple/R,100,G,200/R=1,G=2", &[("x-color", "R,3")]).await, (200, none.clone()));
    let (status, errs) = get("/s/simple/R,300/R=1,B=2", &[("x-color", "R")]).await;
    assert_eq!(status, 400);
    assert_eq!(
        errs,
        [("path", "color/R"), ("path", "exploded"), ("header", "X-Color")]
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .to_vec()
    );
    // label (`.R,100,G,200`), matrix (`;m=R,100` and, exploded, `;R=100;G=200`).
    assert_eq!(get("/s/label/.R,100,G,200/matrix/;m=R,1/;R=1;G=2", &[]).await, (200, none.clone()));
    assert_eq!(get("/s/label/.R,999/matrix/;m=R,1/;R=1;G=2", &[]).await.0, 400);
    assert_eq!(get("/s/label/.R,1/matrix/;m=R,1/;R=1;G=256", &[]).await.0, 400);
    // Query: form runs, pipes, form exploded (each member its own parameter); a cookie.
    let ok = "/s/query?runs=R,1,G,2&pipes=R|3&R=4&G=5";
    assert_eq!(get(ok, &[("cookie", "c=R,6")]).await, (200, none.clone()));
    let (status, errs) = get("/s/query?runs=R,1,G,900&pipes=R|x&G=256", &[("cookie", "c=G,300")]).await;
    assert_eq!(status, 400);
    let mut pointers: Vec<String> = errs.into_iter().map(|(place, at)| format!("{place}:{at}")).collect();
    pointers.sort();
    assert_eq!(pointers, ["cookie:c/G", "query:pipes/R", "query:runs/G", "query:spread/G"]);
    assert_eq!(get("/s/query?runs=R,1", &[]).await.1, [("query".to_string(), "spread".to_string())]);
    // A member given twice (parameter pollution), in one value or as two parameters.
    assert_eq!(get("/s/query?R=1&R=2", &[]).await.1, [("query".to_string(), "spread/R".to_string())]);
    assert_eq!(get("/s/query?R=1&runs=G,1,G,2", &[]).await.1, [("query".to_string(), "runs/G".to_string())]);
    // `content` in place of a schema: the value is a JSON text, checked by the media type's schema.
    assert_eq!(get("/s/query?R=1&filter=%7B%22a%22%3A1%7D", &[]).await.0, 200);
    for bad in ["zzz", "%7B%7D"] {
        let (status, errs) = get(&format!("/s/query?R=1&filter={bad}"), &[]).await;
        assert_eq!((status, errs), (400, vec![("query".to_string(), "filter".to_string())]), "{bad}");
    }
    // A parameter inside a segment (`{name}.json`, Google-style `{id}:cancel`).
    assert_eq!(get("/s/files/abc.json", &[]).await.0, 200);
    assert_eq!(get("/s/files/abcd.json", &[]).await.1, [("path".to_string(), "name".to_string())]);
    assert_eq!(get("/s/files/abc.xml", &[]).await.0, 404);
    assert_eq!(call(&gw, "POST", "/s/items/7:cancel", &[], "").await.status, 200);
    // Two parameters in one segment, with text between them (GitHub's `{base}...{head}`).
    assert_eq!(get("/s/compare/main...dev/ab", &[]).await.0, 200);
    assert_eq!(get("/s/compare/Main...dev/ab", &[]).await.1, [("path".to_string(), "base".to_string())]);
    assert_eq!(get("/s/compare/main...dev/a", &[]).await.1, [("path".to_string(), "team-name".to_string())]);
    assert_eq!(call(&gw, "POST", "/s/items/seven:cancel", &[], "").await.status, 400);
    // A media type key with parameters matches the type; `*/*` takes any.
    let body = async |method: &str, ct: &str, text: &str| {
        call(&gw, method, "/s/bodies", &[("content-type", ct)], text).await.status
    };
    assert_eq!(body("POST", "application/json", r#"{"a":1}"#).await, 200);
    assert_eq!(body("POST", "application/json; charset=utf-8", r#"{"a":1}"#).await, 200);
    assert_eq!(body("POST", "application/json", "{}").await, 400);
    assert_eq!(body("POST", "text/plain", "{}").await, 415);
    assert_eq!(body("PUT", "image/png", "\u{89}PNG").await, 200);
    assert_eq!(up.count(), 10, "only the passing requests reached the upstream");
}

/// `validate: { response: report }`: upstream answers that the document
/// does not declare are counted (and logged) and still sent unchanged.
#[tokio::test]
async fn response_report_mode_counts_undeclared_answers_and_sends_them_unchanged() {
    use crate::support::flaky::{Flaky, Mode};
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("spec.yaml"),
        r##"
openapi: 3.0.3
info: { title: t, version: "1" }
servers: [ { url: /api } ]
paths:
  /pets/{id}:
    get:
      operationId: showPet
      parameters: [ { name: id, in: path, required: true, schema: { type: integer } } ]
      responses:
        "200":
          description: a pet
          content: { application/json: { schema: { $ref: "#/components/schemas/Pet" } } }
        "4XX": { description: problem, content: { application/problem+json: {} } }
components:
  schemas:
    Pet:
      type: object
      required: [ id, name, password ]
      properties:
        id: { type: integer }
        name: { type: string }
        tag: { type: string, nullable: true }
        password: { type: string, writeOnly: true }
"##,
    )
    .unwrap();
    let up = Flaky::start("pets").await;
    let yaml = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\nadmin: {{ bind: \"127.0.0.1:0\" }}\n\
         upstreams:\n  pets: {{ targets: [ \"{}\" ] }}\n\
         apis:\n  - name: shop\n    openapi: spec.yaml\n    upstream: pets\n    validate: {{ request: off, response: report }}\n",
        up.url()
    );
    let gw = Gateway::start(&load(&yaml, dir.path())).await.expect("starts");
    let url = format!("http://{}/api/pets/1", gw.addr("gw").unwrap());
    let metrics_url = format!("http://{}/metrics", gw.admin_addr().unwrap());
    let failures = async || {
        let text = crate::support::get(&metrics_url, &[]).await.text();
        text.lines()
            .find(|l| l.starts_with("portcullis_validation_failures_total{route=\"shop.showPet\",in=\"response\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u32>().ok())
            .unwrap_or(0)
    };
    // Declared and valid (a 3.0 `nullable` honoured; `password` is required but writeOnly,
    // so required in requests only): nothing counted.
    up.set(Mode::Json(r#"{"id":1,"name":"Rex","tag":null}"#));
    let r = crate::support::get(&url, &[]).await;
    assert_eq!(r.text(), r#"{"id":1,"name":"Rex","tag":null}"#);
    // The body breaks the schema: sent as it is, and counted once its end has passed.
    up.set(Mode::Json(r#"{"id":"one"}"#));
    let r = crate::support::get(&url, &[]).await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, r#"{"id":"one"}"#));
    // An undeclared status (500 matches neither 200 nor 4XX) and an undeclared media type.
    up.set(Mode::Status(500));
    assert_eq!(crate::support::get(&url, &[]).await.status, 500);
    up.set(Mode::Status(404));
    assert_eq!(crate::support::get(&url, &[]).await.status, 404, "application/json where problem+json is declared");
    let mut seen = 0;
    for _ in 0..50 {
        seen = failures().await;
        if seen >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(seen, 3, "the invalid body, the 500 and the 404's media type");
}

/// A recursive schema whose every level takes a chain of `$ref`s and
/// `allOf`s, against documents as deep as the limits allow: the check
/// recursed on the worker's stack and a 3 KB body (or a 1 KB upstream
/// answer, in report mode) aborted the whole gateway. Checks of deep
/// documents get the stack they need: the answers are the usual ones.
#[tokio::test]
async fn deep_documents_against_recursive_schemas_are_answered_not_fatal() {
    use crate::support::flaky::{Flaky, Mode};
    let dir = tempfile::tempdir().unwrap();
    let chain = "{ $ref: \"#/$defs/n\", $defs: { n: { $ref: \"#/$defs/m\" }, m: { allOf: [ { $ref: \"#/$defs/o\" } ] }, \
                 o: { allOf: [ { $ref: \"#/$defs/p\" } ] }, p: { allOf: [ { $ref: \"#/$defs/q\" } ] }, \
                 q: { allOf: [ { $ref: \"#/$defs/u\" } ] }, \
                 u: { type: object, properties: { c: { $ref: \"#/$defs/n\" }, v: { type: integer, maximum: 5 } } } } }";
    // 80 hops on each level: the stack a level takes grows with them.
    let hops: Vec<String> =
        (0..40).map(|i| format!("h{i}: {{ allOf: [ {{ $ref: \"#/$defs/h{}\" }} ] }}", i + 1)).collect();
    let long = format!(
        "{{ $ref: \"#/$defs/h0\", $defs: {{ {}, h40: {{ type: object, properties: {{ c: {{ $ref: \"#/$defs/h0\" }}, \
         v: {{ type: integer, maximum: 5 }} }} }} }} }}",
        hops.join(", ")
    );
    // The same by `$anchor` names (its hops were not counted: a 128-byte body overflowed).
    let anchored = long.replace("\"#/$defs/h", "\"#h");
    let anchored =
        (0..=40).fold(anchored, |a, i| a.replace(&format!("h{i}: {{ "), &format!("h{i}: {{ $anchor: h{i}, ")));
    std::fs::write(
        dir.path().join("spec.yaml"),
        "openapi: 3.1.0\ninfo: { title: t, version: '1' }\npaths:\n  /tree:\n    get:\n      operationId: tree\n      \
         responses: { '200': { description: a tree, content: { application/json: { schema: { $ref: '#/components/schemas/N' } } } } }\n\
         components:\n  schemas:\n    N: { allOf: [ { $ref: '#/components/schemas/M' } ] }\n    M: { allOf: [ { $ref: '#/components/schemas/O' } ] }\n    \
         O: { allOf: [ { $ref: '#/components/schemas/U' } ] }\n    \
         U: { type: object, properties: { c: { $ref: '#/components/schemas/N' }, v: { type: integer, maximum: 5 } } }\n",
    )
    .unwrap();
    let up = Recorder::start().await;
    let answers = Flaky::start("trees").await;
    let yaml = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\nadmin: {{ bind: \"127.0.0.1:0\" }}\n\
         upstreams:\n  up: {{ targets: [\"{}\"] }}\n  trees: {{ targets: [\"{}\"] }}\nroutes:\n\
         \x20 - name: deep\n    match: {{ path: /deep }}\n    upstream: up\n\
         \x20   validate: {{ body: {{ schema: {chain} }}, json_limits: {{ max_depth: 512 }} }}\n\
         \x20 - name: long\n    match: {{ path: /long }}\n    upstream: up\n\
         \x20   validate: {{ body: {{ schema: {long} }} }}\n\
         \x20 - name: anchored\n    match: {{ path: /anchored }}\n    upstream: up\n\
         \x20   validate: {{ body: {{ schema: {anchored} }} }}\n\
         apis:\n  - {{ name: t, openapi: spec.yaml, upstream: trees, validate: {{ request: off, response: report }} }}\n",
        up.url(),
        answers.url()
    );
    let gw = Gateway::start(&load(&yaml, dir.path())).await.expect("starts");
    let addr = gw.addr("gw").unwrap();
    let nested = |depth: usize, leaf: &str| format!("{}{leaf}{}", "{\"c\":".repeat(depth - 1), "}".repeat(depth - 1));
    let post = async |body: String| {
        let req = Request::post(format!("http://{addr}/deep")).header("content-type", "application/json");
        send(&http1_client(), req.body(Full::new(Bytes::from(body))).unwrap()).await
    };
    let failing = post(nested(512, "{\"v\":9}")).await;
    let found = errors(&failing);
    assert!(found.len() == 1 && found[0].0 == "body" && found[0].1.starts_with("/c/c/c/c"), "{found:?}");
    assert_eq!(post(nested(512, "{\"v\":1}")).await.status, 200);
    assert_eq!(up.count(), 1, "the valid body went on");
    let long = async |body: String| {
        let req = Request::post(format!("http://{addr}/long")).header("content-type", "application/json");
        send(&http1_client(), req.body(Full::new(Bytes::from(body))).unwrap()).await
    };
    assert_eq!(long(nested(64, "{\"v\":9}")).await.status, 400);
    assert_eq!(long(nested(64, "{\"v\":1}")).await.status, 200);
    let req = Request::post(format!("http://{addr}/anchored")).header("content-type", "application/json");
    let answer = send(&http1_client(), req.body(Full::new(Bytes::from(nested(64, "{\"v\":9}")))).unwrap()).await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    // An answer as deep as a response is read (128 levels), in report mode.
    answers.set(Mode::Json(Box::leak(nested(127, "{\"v\":9}").into_boxed_str())));
    let r = crate::support::get(&format!("http://{addr}/tree"), &[]).await;
    assert_eq!(r.status, 200);
    let metrics = format!("http://{}/metrics", gw.admin_addr().unwrap());
    let counted = "portcullis_validation_failures_total{route=\"t.tree\",in=\"response\"} 1";
    let mut text = String::new();
    for _ in 0..50 {
        text = crate::support::get(&metrics, &[]).await.text();
        if text.contains(counted) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(text.contains(counted), "{text}");
}

/// Each JSON threat limit, through the gateway: a body exactly at the limit
/// passes, one step over is refused (400, `in: body`), and the upstream
/// never sees the refused ones.
#[tokio::test]
async fn each_threat_limit_trips_exactly_at_its_boundary() {
    let up = Recorder::start().await;
    let yaml = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\nupstreams:\n  up: {{ targets: [\"{}\"] }}\nroutes:\n\
         \x20 - name: limited\n    match: {{ path: /limited }}\n    upstream: up\n\
         \x20   validate: {{ body: {{ schema: {{}} }}, json_limits: {{ max_depth: 3, max_entries: 3, max_array: 3, max_string: 8, max_number_length: 4 }} }}\n",
        up.url()
    );
    let gw = Gateway::start(&load(&yaml, Path::new("."))).await.expect("starts");
    let post = async |body: &str| {
        let req = Request::post(format!("http://{}/limited", gw.addr("gw").unwrap()))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        send(&http1_client(), req).await
    };
    let cases = [
        ("depth", "[[[1]]]", "[[[[1]]]]"),
        ("entries", r#"{"a":1,"b":2,"c":3}"#, r#"{"a":1,"b":2,"c":3,"d":4}"#),
        ("array", "[1,2,3]", "[1,2,3,4]"),
        ("string", r#""12345678""#, r#""123456789""#),
        // As written: an escape counts its two bytes.
        ("escaped string", r#""123456\n""#, r#""1234567\n""#),
        ("key", r#"{"12345678":1}"#, r#"{"123456789":1}"#),
        ("number", "1234", "12345"),
        ("decimal", "-1.5", "-1.55"),
    ];
    for (limit, at, over) in cases {
        assert_eq!(post(at).await.status, 200, "{limit} at the limit: {at}");
        let r = post(over).await;
        let got = errors(&r);
        assert_eq!(got.len(), 1, "{limit} over the limit: {over}: {got:?}");
        assert_eq!(got[0].0, "body", "{limit}");
    }
    assert_eq!(up.count(), cases.len(), "only the bodies within the limits were sent on");
}

/// OpenAPI security requirements: a list is alternatives (OR), the schemes
/// of one requirement must all pass (AND). One credential per request
/// cannot be two: an AND of two providers is refused, never weakened to
/// "either"; alternatives with one scope each ask for one of the scopes.
#[tokio::test]
async fn security_requirements_keep_their_and_and_their_or() {
    let dir = tempfile::tempdir().unwrap();
    let doc = |paths: &str| {
        format!(
            "openapi: 3.0.3\ninfo: {{ title: t, version: '1' }}\npaths:\n{paths}components:\n  securitySchemes:\n    \
             k1: {{ type: apiKey, in: header, name: X-K1 }}\n    k2: {{ type: apiKey, in: query, name: k2 }}\n    \
             o: {{ type: oauth2, flows: {{}} }}\n"
        )
    };
    std::fs::write(
        dir.path().join("and.yaml"),
        doc("  /both:\n    get: { operationId: both, security: [ { k1: [], k2: [] } ], responses: {} }\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("or.yaml"),
        doc("  /either:\n    get: { operationId: either, security: [ { o: [read] }, { o: [admin] } ], responses: {} }\n"),
    )
    .unwrap();
    let up = Recorder::start().await;
    let key = |k: &str| portcullis::hash_key(k);
    let head = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\nupstreams:\n  u: {{ targets: [\"{}\"] }}\n\
         auth:\n  p1: {{ api_key: {{ header: X-K1 }} }}\n  p2: {{ api_key: {{ query: k2 }} }}\n\
         consumers:\n  - {{ id: reader, scopes: [read], api_keys: [ {{ sha256: \"{}\" }} ] }}\n  \
         - {{ id: nobody, api_keys: [ {{ sha256: \"{}\" }} ] }}\n",
        up.url(),
        key("reader-key"),
        key("nobody-key")
    );
    let and =
        format!("{head}apis:\n  - {{ name: a, openapi: and.yaml, upstream: u, security: {{ k1: p1, k2: p2 }} }}\n");
    let errors = portcullis::check(&load(&and, dir.path())).unwrap_err().to_string();
    assert!(errors.contains("apis[0].operations.both") && errors.contains("must all pass"), "{errors}");

    // A scope that is not one word (RFC 6749 §3.3) is refused where the document says it.
    std::fs::write(
        dir.path().join("words.yaml"),
        doc("  /x:\n    get: { operationId: x, security: [ { o: [read, 'Domain Admins'] } ], responses: {} }\n  \
             /y:\n    get: { operationId: y, responses: {} }\nsecurity: [ { o: [] }, { o: [ok, 'a\"b'] } ]\n"),
    )
    .unwrap();
    let words = format!("{head}apis:\n  - {{ name: w, openapi: words.yaml, upstream: u, security: {{ o: p1 }} }}\n");
    let errors = portcullis::check(&load(&words, dir.path())).unwrap_err().to_string();
    for expected in [
        "apis[0].operations.x: `words.yaml` at `/paths/~1x/get/security/0/o/1`: `Domain Admins` holds a space",
        "apis[0].operations.y: `words.yaml` at `/security/1/o/1`: `a\\\"b` is not a scope",
    ] {
        assert!(errors.contains(expected), "{expected} not in:\n{errors}");
    }
    assert!(!errors.contains("authorize"), "{errors}");
    // `security` of another shape is refused, never read as none (it made operations public).
    std::fs::write(
        dir.path().join("shapes.yaml"),
        doc("  /a:\n    get: { operationId: a, security: { o: [read] }, responses: {} }\n  \
             /b:\n    get: { operationId: b, security: [ o ], responses: {} }\n  \
             /c:\n    get: { operationId: c, security: [ { o: [read, 2024] } ], responses: {} }\n  \
             /d:\n    get: { operationId: d, security: [ { o: read } ], responses: {} }\n  \
             /e:\n    get: { operationId: e, security: [ { o: [read] } ], responses: {} }\n  \
             /h:\n    get: { operationId: h, Security: [ { o: [read] } ], responses: {} }\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("top.yaml"),
        doc("  /f:\n    get: { operationId: f, responses: {} }\n  \
             /g:\n    security: [ { o: [] } ]\n    get: { operationId: g, security: [ { o: [] } ], responses: {} }\n\
             security: { o: [] }\n"),
    )
    .unwrap();
    let shapes = format!(
        "{head}apis:\n  - {{ name: s, openapi: shapes.yaml, upstream: u, security: {{ o: p1 }} }}\n  \
         - {{ name: t, openapi: top.yaml, upstream: u, base_path: /t, security: {{ o: p1 }} }}\n"
    );
    let errors = portcullis::check(&load(&shapes, dir.path())).unwrap_err().to_string();
    for expected in [
        "apis[0].operations.a: `shapes.yaml` at `/paths/~1a/get/security`: `security` is a list of requirements",
        "apis[0].operations.b: `shapes.yaml` at `/paths/~1b/get/security/0`: a security requirement is a map",
        "apis[0].operations.c: `shapes.yaml` at `/paths/~1c/get/security/0/o/1`: a scope is a string",
        "apis[0].operations.d: `shapes.yaml` at `/paths/~1d/get/security/0/o`: a scheme's scopes are a list",
        "apis[1].operations.f: `top.yaml` at `/security`: `security` is a list of requirements",
        // On a path item, where OpenAPI reads it nowhere: the operations were public.
        "apis[1].openapi: `top.yaml` at `/paths/~1g/security`: `security` belongs on each operation",
        // Misspelt by case: read as nothing, the operation was public.
        "apis[0].operations.h: `shapes.yaml` at `/paths/~1h/get`: `Security` is not an OpenAPI field, `security` is",
    ] {
        assert!(errors.contains(expected), "{expected} not in:\n{errors}");
    }
    assert!(!errors.contains("operations.e"), "{errors}");
    // Fields misspelt by case anywhere they were read as nothing: the
    // document's `Security` (every operation public), a media type's or a
    // parameter's `Schema` (unchecked).
    std::fs::write(
        dir.path().join("cased-top.yaml"),
        doc("  /t:\n    get: { operationId: t, responses: {} }\nSecurity: [ { o: [] } ]\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("cased-parts.yaml"),
        doc("  /m:\n    post: { operationId: m, requestBody: { content: { application/json: { Schema: { type: object } } } }, responses: {} }\n  \
             /q:\n    get: { operationId: q, parameters: [ { name: n, in: query, Schema: { type: integer } } ], responses: {} }\n  \
             /p:\n    Parameters: [ { name: n, in: query, schema: { type: integer } } ]\n    get: { operationId: p, responses: {} }\n"),
    )
    .unwrap();
    let cased = format!(
        "{head}apis:\n  - {{ name: c, openapi: cased-top.yaml, upstream: u, security: {{ o: p1 }} }}\n  \
         - {{ name: d, openapi: cased-parts.yaml, upstream: u, base_path: /d, security: {{ o: p1 }} }}\n"
    );
    let errors = portcullis::check(&load(&cased, dir.path())).unwrap_err().to_string();
    for expected in [
        "`cased-top.yaml` at ``: `Security` is not an OpenAPI field, `security` is",
        "`cased-parts.yaml` at `/paths/~1m/post/requestBody/content/application~1json`: `Schema` is not an OpenAPI field",
        "`cased-parts.yaml` at `/paths/~1q/get/parameters/0`: `Schema` is not an OpenAPI field",
        "`cased-parts.yaml` at `/paths/~1p`: `Parameters` is not an OpenAPI field",
    ] {
        assert!(errors.contains(expected), "{expected} not in:\n{errors}");
    }

    let or = format!("{head}apis:\n  - {{ name: o, openapi: or.yaml, upstream: u, security: {{ o: p1 }} }}\n");
    let gw = Gateway::start(&load(&or, dir.path())).await.unwrap();
    let url = format!("http://{}/either", gw.addr("gw").unwrap());
    assert_eq!(crate::support::get(&url, &[("x-k1", "reader-key")]).await.status, 200, "read is one of read, admin");
    assert_eq!(crate::support::get(&url, &[("x-k1", "nobody-key")]).await.status, 403);
}

/// A request body is checked against one schema: the first JSON media
/// type's (else the form's, else a range's such as `application/*`). A
/// JSON type the document gives another schema is refused (415), never
/// checked against the wrong schema; a range's schema applies to JSON bodies.
#[tokio::test]
async fn a_body_is_checked_against_its_own_media_types_schema_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bodies.yaml"),
        "openapi: 3.0.3\ninfo: { title: t, version: '1' }\npaths:\n  /dup:\n    post:\n      requestBody:\n        content:\n          \
         application/json: { schema: { type: object, required: [a] } }\n          \
         application/vnd.x+json: { schema: { type: object, required: [b] } }\n      responses: {}\n  \
         /range:\n    patch:\n      requestBody: { content: { 'application/*': { schema: { type: object, required: [a], \
         properties: { a: { type: integer } } } } } }\n      responses: {}\n  \
         /orders:\n    post:\n      requestBody:\n        required: true\n        content:\n          \
         application/json: { schema: { $ref: '#/components/schemas/Order' } }\n          \
         text/json: { schema: { $ref: '#/components/schemas/Order' } }\n          \
         application/*+json: { schema: { $ref: '#/components/schemas/Order' } }\n      responses: {}\n  \
         /texts:\n    put:\n      requestBody: { content: { text/json: { schema: { $ref: '#/components/schemas/Order' } } } }\n      \
         responses: {}\n  \
         /any-text:\n    put:\n      requestBody: { content: { 'text/*': { schema: { $ref: '#/components/schemas/Order' } } } }\n      \
         responses: {}\n  \
         /any:\n    put:\n      requestBody: { content: { '*/*': { schema: { $ref: '#/components/schemas/Order' } } } }\n      \
         responses: {}\n  \
         /upload:\n    put:\n      requestBody: { content: { '*/*': { schema: { type: string, format: binary } } } }\n      \
         responses: {}\n\
         components:\n  schemas:\n    Order: { type: object, additionalProperties: false, required: [qty], \
         properties: { qty: { type: integer, minimum: 1 } } }\n",
    )
    .unwrap();
    let up = Recorder::start().await;
    let yaml = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\nupstreams:\n  u: {{ targets: [\"{}\"] }}\n\
         apis:\n  - {{ name: b, openapi: bodies.yaml, upstream: u }}\n",
        up.url()
    );
    let gw = Gateway::start(&load(&yaml, dir.path())).await.unwrap();
    let send_body = |method: &'static str, path: &'static str, ct: &'static str, body: &'static str| {
        let url = format!("http://{}{path}", gw.addr("gw").unwrap());
        async move {
            let req = Request::builder()
                .method(method)
                .uri(url)
                .header("content-type", ct)
                .body(Full::new(Bytes::from(body)))
                .unwrap();
            send(&http1_client(), req).await.status.as_u16()
        }
    };
    assert_eq!(send_body("POST", "/dup", "application/json", r#"{"a":1}"#).await, 200);
    assert_eq!(send_body("POST", "/dup", "application/json", r#"{"b":1}"#).await, 400);
    assert_eq!(send_body("POST", "/dup", "application/vnd.x+json", r#"{"a":1}"#).await, 415, "not the wrong schema");
    assert_eq!(send_body("PATCH", "/range", "application/json", r#"{"a":"x"}"#).await, 400, "the range's schema");
    assert_eq!(send_body("PATCH", "/range", "application/json", r#"{"a":1}"#).await, 200);
    // `text/json` is JSON (ASP.NET Core reads it so; Swashbuckle lists it beside
    // `application/json`): checked, under its own name, a `text/*` range or alone.
    let bad = r#"{"qty":-5,"isAdmin":true}"#;
    for (method, path, ct) in [
        ("POST", "/orders", "text/json"),
        ("POST", "/orders", "Text/JSON; charset=utf-8"),
        ("POST", "/orders", "application/json"),
        ("PUT", "/texts", "text/json"),
        ("PUT", "/any-text", "text/json"),
    ] {
        assert_eq!(send_body(method, path, ct, bad).await, 400, "{method} {path} as {ct}");
        assert_eq!(send_body(method, path, ct, r#"{"qty":2}"#).await, 200, "{method} {path} as {ct}");
    }
    assert_eq!(send_body("PUT", "/texts", "text/json", "not json").await, 400);
    // Under a range, a body sent without a type or under a name the gateway
    // does not read is read as JSON when it looks like a document (FastAPI
    // parses a body without a type as JSON, Rails `application/jsonrequest`,
    // and a type with a byte beyond ASCII in a parameter is still its type).
    let send_typed = |ct: Option<&'static [u8]>, body: &'static str| {
        let url = format!("http://{}/any", gw.addr("gw").unwrap());
        async move {
            let mut req = Request::builder().method("PUT").uri(url);
            if let Some(ct) = ct {
                req = req.header("content-type", http::HeaderValue::from_bytes(ct).unwrap());
            }
            send(&http1_client(), req.body(Full::new(Bytes::from(body))).unwrap()).await.status.as_u16()
        }
    };
    for ct in
        [None, Some(&b"application/jsonrequest"[..]), Some(b"application/json5"), Some(b"application/json; x=\xE9")]
    {
        let status = send_typed(ct, bad).await;
        assert!(status == 400 || status == 415, "{:?}: {status}", ct.map(String::from_utf8_lossy));
        if ct != Some(b"application/json; x=\xE9") {
            assert_eq!(send_typed(ct, r#"{"qty":2}"#).await, 200, "{:?}", ct.map(String::from_utf8_lossy));
        }
    }
    // Not a JSON document: a text body passes, as declared, also one that
    // starts as a document would (a log line) but is none.
    assert_eq!(send_typed(Some(b"text/plain"), "qty=-5").await, 200);
    assert_eq!(send_typed(Some(b"text/plain"), "[INFO] started {x}").await, 200);
    // An upload of any file (`type: string, format: binary`): bytes, never
    // read as JSON, whatever their type says.
    for ct in ["application/octet-stream", "application/json", "text/plain"] {
        assert_eq!(send_body("PUT", "/upload", ct, r#"{"a":1}"#).await, 200, "{ct}");
    }
    // Read as Python's `json.loads` reads bytes: a UTF-8 byte-order mark
    // skipped, UTF-16 and UTF-32 decoded; without a type, each is checked.
    let encodings = |text: &str| -> Vec<Vec<u8>> {
        let utf16 = |big: bool| -> Vec<u8> {
            text.encode_utf16().flat_map(|u| if big { u.to_be_bytes() } else { u.to_le_bytes() }).collect()
        };
        let utf32 = |big: bool| -> Vec<u8> {
            text.chars()
                .flat_map(|c| if big { u32::from(c).to_be_bytes() } else { u32::from(c).to_le_bytes() })
                .collect()
        };
        let mut marked_le = vec![0xFF, 0xFE];
        marked_le.extend(utf16(false));
        let mut marked_32 = vec![0xFF, 0xFE, 0, 0];
        marked_32.extend(utf32(false));
        vec![
            [&[0xEF, 0xBB, 0xBF][..], text.as_bytes()].concat(),
            utf16(true),
            marked_le,
            utf32(true),
            utf32(false),
            marked_32,
        ]
    };
    for (body, status) in
        encodings(bad).into_iter().map(|b| (b, 400)).chain(encodings(r#"{"qty":2}"#).into_iter().map(|b| (b, 200)))
    {
        let url = format!("http://{}/any", gw.addr("gw").unwrap());
        let req = Request::builder().method("PUT").uri(url).body(Full::new(Bytes::from(body.clone()))).unwrap();
        assert_eq!(send(&http1_client(), req).await.status.as_u16(), status, "{body:02X?}");
    }
    // No JSON, but Python's reader takes it (FastAPI reads `qty` as nan or
    // inf): checked, and refused, not passed unread as text.
    for body in [r#"{"qty":NaN}"#, r#"{"qty": -Infinity}"#, r#"[{"qty":Infinity}]"#, r#"{"qty":2,"n":"\udc00"}"#] {
        assert_eq!(send_typed(None, body).await, 400, "{body}");
    }
    assert_eq!(send_typed(None, "[WARN] qty NaN").await, 200, "a log line is no document, even to Python");
    // A raw lone surrogate in UTF-16 or UTF-32: Python reads it (`surrogatepass`), so it is checked.
    let lone = |wide: usize| -> Vec<u8> {
        let mut body = Vec::new();
        for c in "{\"qty\":-5,\"b\":\"".chars().map(u32::from).chain([0xD800]).chain("\"}".chars().map(u32::from)) {
            body.extend_from_slice(&c.to_le_bytes()[..wide]);
        }
        body
    };
    for body in [lone(2), lone(4)] {
        let url = format!("http://{}/any", gw.addr("gw").unwrap());
        let req = Request::builder().method("PUT").uri(url).body(Full::new(Bytes::from(body.clone()))).unwrap();
        assert_eq!(send(&http1_client(), req).await.status.as_u16(), 400, "{body:02X?}");
    }
}

/// A recursive polymorphic schema (an OpenAPI `Pet` whose `children` are
/// `Pet`s, `oneOf` two kinds): a small, deep, failing body is refused at
/// once. Listing its errors would multiply through every level (a 331-byte
/// body took the gateway past 5 GB); past a budget it gets one problem.
#[tokio::test]
async fn a_deep_body_under_recursive_alternatives_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tree.yaml"),
        r##"
openapi: 3.0.3
info: { title: T, version: "1" }
paths:
  /pets:
    post:
      requestBody:
        required: true
        content: { application/json: { schema: { $ref: "#/components/schemas/Pet" } } }
      responses: { "200": { description: ok } }
components:
  schemas:
    Pet: { oneOf: [ { $ref: "#/components/schemas/Cat" }, { $ref: "#/components/schemas/Dog" } ] }
    PetBase:
      type: object
      properties:
        name: { type: string }
        children: { type: array, items: { $ref: "#/components/schemas/Pet" } }
    Cat: { allOf: [ { $ref: "#/components/schemas/PetBase" }, { type: object, properties: { purrs: { type: boolean } } } ] }
    Dog: { allOf: [ { $ref: "#/components/schemas/PetBase" }, { type: object, properties: { barks: { type: boolean } } } ] }
"##,
    )
    .unwrap();
    let up = Recorder::start().await;
    let yaml = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\nupstreams:\n  u: {{ targets: [ \"{}\" ] }}\n\
         apis:\n  - {{ name: t, openapi: tree.yaml, upstream: u }}\n",
        up.url()
    );
    let gw = Gateway::start(&load(&yaml, dir.path())).await.expect("starts");
    let nested =
        |levels: usize, leaf: &str| format!("{}{leaf}{}", "{\"children\":[".repeat(levels), "]}".repeat(levels));
    let post = async |body: String| call(&gw, "POST", "/pets", &[("content-type", "application/json")], &body).await;
    // Shallow: the problem is said where it is.
    let shallow = post(nested(1, r#"{"name":1}"#)).await;
    assert_eq!(shallow.status, 400);
    assert_eq!(shallow.json()["errors"][0]["pointer"], "", "oneOf fails at the root: {}", shallow.text());
    assert!(shallow.json()["errors"][0]["detail"].as_str().unwrap().contains("oneOf"), "{}", shallow.text());
    // 16 levels, 251 bytes: one problem (the full list would take seconds
    // and hundreds of MB; 21 levels took more than 5 GB).
    let deep = post(nested(16, r#"{"name":1}"#)).await;
    assert_eq!(deep.status, 400);
    assert!(deep.json()["errors"][0]["detail"].as_str().unwrap().contains("nested too deeply"), "{}", deep.text());
    assert_eq!(up.count(), 0);
}

/// A problem whose pointer repeats a long name the client wrote is still
/// listed (cut, ending in `…`), never an empty `errors`.
#[tokio::test]
async fn a_problem_about_a_long_name_is_listed_cut() {
    let s = setup().await;
    let name = "k".repeat(9_000);
    let body = format!(r#"{{"{name}":1,"{name}":2}}"#);
    let r = post(&s, "/orders", "application/json", &body, Some(TENANT)).await;
    let got = errors(&r);
    assert!(!got.is_empty(), "{}", r.text());
    let long = got.iter().find(|(_, p)| p.contains("kkk")).expect("the duplicate key's problem");
    assert!(long.1.ends_with('…') && long.1.len() <= 203, "{}", long.1.len());
    assert!(r.text().len() < 9_000, "{} bytes", r.text().len());
    assert_eq!(s.up.count(), 0);
}

/// A `$ref` in a file under the document's folder is read from that
/// file's folder (JSON Reference: relative to the referring document), so
/// `sub/pet.yaml` may name `../common.yaml`, still inside the folder.
#[tokio::test]
async fn references_in_a_sub_folder_resolve_from_their_own_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("specs/sub")).unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write("specs/common.yaml", "Tag: { type: string, maxLength: 5 }\n");
    write("specs/sub/pet.yaml", "Pet:\n  type: object\n  properties:\n    tag: { $ref: \"../common.yaml#/Tag\" }\n");
    write(
        "specs/api.yaml",
        "openapi: 3.0.3\ninfo: { title: t, version: '1' }\npaths:\n  /pets:\n    post:\n\
         \x20     requestBody: { content: { application/json: { schema: { $ref: \"./sub/pet.yaml#/Pet\" } } } }\n\
         \x20     responses: { '201': { description: ok } }\n",
    );
    let up = Recorder::start().await;
    let yaml = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\nupstreams:\n  u: {{ targets: [ \"{}\" ] }}\n\
         apis:\n  - {{ name: a, openapi: specs/api.yaml, upstream: u, docs: /docs }}\n",
        up.url()
    );
    let gw = Gateway::start(&load(&yaml, dir.path())).await.expect("starts");
    let post = async |body: &str| {
        call(&gw, "POST", "/pets", &[("content-type", "application/json")], body).await.status.as_u16()
    };
    assert_eq!((post(r#"{"tag":"short"}"#).await, post(r#"{"tag":"too long"}"#).await), (200, 400));
    let served = call(&gw, "GET", "/docs/openapi.json", &[], "").await.json();
    assert!(served["x-portcullis-bundled"]["common.yaml"]["Tag"].is_object(), "{served}");
    // A file in a sub-folder is bundled under its path; the reference to it
    // is a JSON Pointer that resolves (`/` escaped as `~1` in the pointer only).
    let pet_ref = served.pointer("/paths/~1pets/post/requestBody/content/application~1json/schema/$ref");
    assert_eq!(pet_ref.and_then(Value::as_str), Some("#/x-portcullis-bundled/sub~1pet.yaml/Pet"));
    let resolved = served.pointer("/x-portcullis-bundled/sub~1pet.yaml/Pet/type");
    assert_eq!(resolved.and_then(Value::as_str), Some("object"), "{served}");
}

/// An operation's header parameter overrides the path item's of the same
/// name in any case (header names are case-insensitive, OpenAPI's override
/// is by name and place): both were enforced, refusing what the operation
/// allows.
#[tokio::test]
async fn an_operations_header_parameter_overrides_the_paths_in_any_case() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("api.yaml"),
        "openapi: 3.0.3\ninfo: { title: t, version: '1' }\npaths:\n  /a:\n\
         \x20   parameters:\n\
         \x20     - { name: X-Tenant, in: header, required: true, schema: { type: string, format: uuid } }\n\
         \x20   post:\n\
         \x20     parameters:\n\
         \x20       - { name: x-tenant, in: header, required: false, schema: { type: string } }\n\
         \x20     responses: { '200': { description: ok } }\n\
         \x20   get:\n\
         \x20     responses: { '200': { description: ok } }\n",
    )
    .unwrap();
    let up = Recorder::start().await;
    let yaml = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\nupstreams:\n  u: {{ targets: [ \"{}\" ] }}\n\
         apis:\n  - {{ name: a, openapi: api.yaml, upstream: u }}\n",
        up.url()
    );
    let gw = Gateway::start(&load(&yaml, dir.path())).await.expect("starts");
    assert_eq!(call(&gw, "POST", "/a", &[], "").await.status, 200);
    assert_eq!(call(&gw, "POST", "/a", &[("x-tenant", "acme")], "").await.status, 200);
    // The path's own, where the operation does not override it.
    assert_eq!(call(&gw, "GET", "/a", &[], "").await.status, 400);
    assert_eq!(call(&gw, "GET", "/a", &[("x-tenant", "acme")], "").await.status, 400);
}

/// Another spelling of a declared query parameter that frameworks read as
/// it (case for ASP.NET, brackets for PHP, Rails and `qs`) is refused: the
/// service would act on a value nobody checked.
#[tokio::test]
async fn spellings_a_framework_reads_as_a_declared_parameter_are_refused() {
    let s = setup().await;
    let status = async |q: &str| call(&s.gw, "GET", &format!("/search?{q}"), &[], "").await;
    assert_eq!(status("q=ab&ids=1&ids=2").await.status, 200);
    // A declared array sent as `ids[]` only (jQuery, axios, PHP forms): its values, checked.
    assert_eq!(status("q=ab&ids[]=1&ids[]=2").await.status, 200);
    assert_eq!(errors(&status("q=ab&ids[]=1&ids[]=x").await), vec![("query".to_string(), "ids/1".to_string())]);
    // PHP ends a name at a NUL: `q%00=x` is its `q`, overwriting the checked one.
    for (q, pointer) in [
        ("q=ab&Q=x", "Q"),
        ("q=ab&q[]=x", "q[]"),
        ("q=ab&q[0]=x", "q[0]"),
        ("q=ab&ids=1&ids[]=x", "ids[]"),
        ("q=ab&q%00=x", "q\0"),
        ("q=ab&q%00junk=x", "q\0junk"),
        ("q=ab&other%01=x", "other\u{1}"),
    ] {
        let r = status(q).await;
        assert_eq!(errors(&r), vec![("query".to_string(), pointer.to_string())], "{q}: {}", r.text());
    }
    assert_eq!(s.up.count(), 2);
}

/// Names the route declares itself are their own parameters: `page[size]`
/// beside `page`, `ID` beside `id`.
#[tokio::test]
async fn declared_spellings_are_their_own_parameters() {
    let up = Recorder::start().await;
    let yaml = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\nupstreams:\n  u: {{ targets: [ \"{}\" ] }}\n\
         routes:\n  - name: q\n    match: {{ path: /q }}\n    upstream: u\n    validate:\n      query:\n        \
         page: {{ type: integer }}\n        \"page[size]\": {{ type: integer }}\n        id: {{ type: integer }}\n        \
         ID: {{ type: string }}\n        \"ids[]\": {{ type: array, items: {{ type: integer }} }}\n        \
         coords: {{ type: object, properties: {{ lat: {{ type: number }} }} }}\n",
        up.url()
    );
    let gw = Gateway::start(&load(&yaml, Path::new("."))).await.expect("starts");
    let status = async |q: &str| call(&gw, "GET", &format!("/q?{q}"), &[], "").await.status.as_u16();
    assert_eq!(status("page[size]=10").await, 200);
    assert_eq!(status("page=1&page[size]=10&id=1&ID=x&ids[]=1&ids[]=2&lat=1.5").await, 200);
    assert_eq!(status("page=1&page[0]=2").await, 400, "an undeclared spelling is still refused");
    // `ids[]` declared: `ids[0]` and `ids` are read as it; an object's member in another case too.
    for q in ["ids[]=1&ids[0]=2", "ids[]=1&ids=2", "lat=1&LAT=2"] {
        assert_eq!(status(q).await, 400, "{q}");
    }
    // The object's own name with a member (ASP.NET binds `coords.lat`
    // first, Rails and PHP `coords[lat]`): another spelling of `lat`.
    for q in ["coords.lat=100", "coords[lat]=100", "lat=1&COORDS.lat=2"] {
        assert_eq!(status(q).await, 400, "{q}");
    }
}

/// A reference out of the folder from a referenced file names that file:
/// the operator sees where to look.
#[tokio::test]
async fn a_reference_out_of_the_folder_names_the_file_that_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("specs/sub")).unwrap();
    std::fs::write(dir.path().join("secret.yaml"), "X: { type: string }\n").unwrap();
    std::fs::write(dir.path().join("specs/sub/pet.yaml"), "Pet: { $ref: \"../../secret.yaml#/X\" }\n").unwrap();
    std::fs::write(
        dir.path().join("specs/api.yaml"),
        "openapi: 3.0.3\ninfo: { title: t, version: '1' }\npaths: {}\ncomponents: { schemas: { P: { $ref: 'sub/pet.yaml#/Pet' } } }\n",
    )
    .unwrap();
    let yaml = "listeners:\n  - { name: gw, bind: \"127.0.0.1:0\" }\nupstreams:\n  u: { targets: [\"http://127.0.0.1:1\"] }\n\
                apis:\n  - { name: a, openapi: specs/api.yaml, upstream: u, docs: /docs }\n";
    let errors = portcullis::check(&load(yaml, dir.path())).unwrap_err().to_string();
    assert!(errors.contains("`$ref: ../../secret.yaml#/X` (in `sub/pet.yaml`) names a file outside"), "{errors}");
}

/// A symbolic link inside the document's folder to a file outside it is
/// outside: the served document would carry the file.
#[tokio::test]
async fn a_link_out_of_the_document_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("specs")).unwrap();
    std::fs::create_dir_all(dir.path().join("outside")).unwrap();
    std::fs::write(dir.path().join("outside/secret.yaml"), "db_password: hunter2\n").unwrap();
    std::os::unix::fs::symlink("../outside", dir.path().join("specs/lnk")).unwrap();
    std::fs::write(
        dir.path().join("specs/api.yaml"),
        "openapi: 3.0.3\ninfo: { title: t, version: '1' }\npaths: {}\nx-extra: { $ref: 'lnk/secret.yaml' }\n",
    )
    .unwrap();
    let yaml = "listeners:\n  - { name: gw, bind: \"127.0.0.1:0\" }\nupstreams:\n  u: { targets: [\"http://127.0.0.1:1\"] }\n\
                apis:\n  - { name: a, openapi: specs/api.yaml, upstream: u, docs: /docs }\n";
    let errors = portcullis::check(&load(yaml, dir.path())).unwrap_err().to_string();
    assert!(errors.contains("`$ref: lnk/secret.yaml` names a file outside the document's folder"), "{errors}");
}

/// A form body whose schema is a `$ref` (as OpenAPI documents write
/// `$ref: '#/components/schemas/Pet'`) is read by the properties it leads
/// to; another spelling of a declared field that frameworks read as it
/// (`role[]`, `ROLE`, PHP's `ro.le` for `ro_le`) is refused as it is in a
/// query: PHP's `$_POST['role']` would be the unchecked `['admin']`.
#[tokio::test]
async fn form_bodies_follow_refs_and_refuse_other_spellings_of_a_field() {
    let up = Recorder::start().await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\n\
         upstreams:\n  pets: {{ targets: [\"{}\"] }}\n\
         routes:\n\
         \x20 - name: pets\n\
         \x20   match: {{ path: /pets, methods: [POST] }}\n\
         \x20   upstream: pets\n\
         \x20   validate:\n\
         \x20     content_types: [ application/x-www-form-urlencoded ]\n\
         \x20     body:\n\
         \x20       schema:\n\
         \x20         $ref: \"#/$defs/Pet\"\n\
         \x20         $defs:\n\
         \x20           Pet: {{ allOf: [ {{ $ref: \"#/$defs/Named\" }}, {{ properties: {{ id: {{ $ref: \"#/$defs/Id\" }}, photoUrls: {{ type: array, items: {{ $ref: \"#/$defs/Url\" }} }}, role: {{ enum: [user] }}, ro_le: {{ enum: [x] }}, owner: {{ type: object, properties: {{ email: {{ type: string, maxLength: 10 }} }}, additionalProperties: false }} }} }} ] }}\n\
         \x20           Named: {{ required: [name], properties: {{ name: {{ type: string }} }} }}\n\
         \x20           Id: {{ type: integer, minimum: 1 }}\n\
         \x20           Url: {{ type: string, maxLength: 10 }}\n",
        up.url()
    );
    let gw = Gateway::start(&load(&yaml, dir.path())).await.expect("starts");
    let s = Setup { gw, up, _dir: dir };
    let form = "application/x-www-form-urlencoded";
    let ok = post(&s, "/pets", form, "name=doggie&photoUrls=a&photoUrls=b&id=5&role=user", None).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let bad = post(&s, "/pets", form, "name=doggie&id=0&photoUrls=aaaaaaaaaaa", None).await;
    assert_eq!(errors(&bad), vec![("body".into(), "/id".into()), ("body".into(), "/photoUrls/0".into())]);
    // A declared array sent as `photoUrls[]` only (PHP, Rails, `qs`): its values, checked.
    let ok = post(&s, "/pets", form, "name=doggie&photoUrls[]=a&photoUrls%5B%5D=b", None).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let bad = post(&s, "/pets", form, "name=doggie&photoUrls[]=aaaaaaaaaaa", None).await;
    assert_eq!(errors(&bad), vec![("body".into(), "/photoUrls/0".into())]);
    // Nested fields (Rails' `form_for`, PHP, `qs`): the declared object they build, checked.
    let ok = post(&s, "/pets", form, "name=doggie&owner%5Bemail%5D=a%40b.c&photoUrls[0]=x", None).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let bad = post(&s, "/pets", form, "name=doggie&owner[email]=aaaaaaaaaaaaaaa", None).await;
    assert_eq!(errors(&bad), vec![("body".into(), "/owner/email".into())]);
    // PHP ends a field's name at a NUL: `role%00` is its `role`.
    let bad = post(&s, "/pets", form, "name=doggie&role=user&role%00=admin", None).await;
    assert_eq!(errors(&bad), vec![("body".into(), "/role\0".into())], "{}", bad.text());
    let bad = post(&s, "/pets", form, "name=doggie&owner[role]=admin", None).await;
    assert_eq!(bad.status, 400, "a member the object does not allow: {}", bad.text());
    // Sent plain beside its members: the service keeps one, so both are refused.
    let mixed = post(&s, "/pets", form, "name=d&owner=x&owner[email]=a", None).await;
    assert!(errors(&mixed).contains(&("body".into(), "/owner[email]".into())), "{}", mixed.text());
    for (body, pointer) in [
        ("name=d&role=user&role[]=admin", "/role[]"),
        ("name=d&role=user&role%5B0%5D=admin", "/role[0]"),
        ("name=d&role=user&ROLE=admin", "/ROLE"),
        ("name=d&ro.le=admin", "/ro.le"),
        ("name=d&id=5&id[x]=1", "/id[x]"),
        ("name=d&photoUrls=a&photoUrls[]=b", "/photoUrls[]"),
    ] {
        let r = post(&s, "/pets", form, body, None).await;
        assert_eq!(errors(&r), vec![("body".into(), pointer.into())], "{body}");
        assert!(r.json()["errors"][0]["detail"].as_str().unwrap().contains("by some frameworks"), "{}", r.text());
    }
    assert_eq!(s.up.requests().len(), 3, "only the valid forms reached the upstream");
}

/// A content type listed with parameters matched no request (requests are
/// matched by their type alone): refused, with the type to write.
#[test]
fn content_types_are_listed_without_parameters() {
    let yaml = "listeners:\n  - { name: gw, bind: \"127.0.0.1:0\" }\n\
                routes:\n  - { name: r, match: { path: /r }, static: { status: 200 }, validate: { content_types: [ \"application/json; charset=utf-8\" ], body: { schema: { type: object } } } }\n";
    let errors = portcullis::check(&load(yaml, Path::new("."))).unwrap_err().to_string();
    assert!(
        errors.contains("routes[0].validate.content_types[0]: `application/json; charset=utf-8`: list the media type without parameters (`application/json`)"),
        "{errors}"
    );
}

/// A pattern that backtracks (look-around, a back-reference) may take
/// 10,000 steps a value: a body of more strings than a route checks so is
/// refused before any is matched (10,000 of them took seconds of CPU and
/// stalled every other request). A body of a few is checked as usual.
#[tokio::test]
async fn a_body_of_too_many_strings_for_a_backtracking_pattern_is_refused_at_once() {
    let up = Recorder::start().await;
    let yaml = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\nupstreams:\n  u: {{ targets: [ \"{}\" ] }}\n\
         routes:\n  - name: r\n    match: {{ path: /r }}\n    upstream: u\n    validate:\n      body:\n        schema:\n          \
         type: object\n          properties:\n            arr: {{ type: array, items: {{ type: string, pattern: \"^(?=.*[0-9])[a-z0-9]+$\" }} }}\n",
        up.url()
    );
    let gw = Gateway::start(&load(&yaml, Path::new("."))).await.expect("starts");
    let json = [("content-type", "application/json")];
    let body = |n: usize| serde_json::json!({ "arr": vec!["abc1"; n] }).to_string();
    let r = call(&gw, "POST", "/r", &json, &body(10)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = call(&gw, "POST", "/r", &json, &serde_json::json!({ "arr": ["abc"] }).to_string()).await;
    assert_eq!(errors(&r), vec![("body".to_string(), "/arr/0".to_string())], "checked as usual");
    let r = call(&gw, "POST", "/r", &json, &body(2000)).await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("holds more than 1024 strings"), "{}", r.text());
    // Escaped quotes inside a string are no strings of their own.
    let quoted = serde_json::json!({ "arr": ["abc1"], "note": "\"".repeat(2100) }).to_string();
    let r = call(&gw, "POST", "/r", &json, &quoted).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.count(), 2);
}

/// A body read whole to be checked must come within the upstream's
/// `timeouts.request` in all, as a streamed upload must: one trickled a
/// byte per pause (each under `body_read_timeout`) held its share of
/// `max_buffered` for as long as the client liked.
#[tokio::test]
async fn a_trickled_body_is_cut_at_the_upstreams_request_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rec = Recorder::start().await;
    let gw = crate::support::gateway(&format!(
        "upstreams:\n  svc: {{ targets: [ \"{}\" ], timeouts: {{ request: 1s }} }}\n\
         routes:\n  - {{ name: v, match: {{ path: /v }}, upstream: svc, validate: {{ body: {{ schema: {{ type: object }} }} }} }}\n",
        rec.url()
    ))
    .await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"POST /v HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // A byte every 200 ms, for up to 10 s: the answer comes while it trickles.
    while started.elapsed() < std::time::Duration::from_secs(10) {
        match tokio::time::timeout(std::time::Duration::from_millis(200), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) if answer.is_empty() => {
                if s.write_all(b" ").await.is_err() {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(rec.count(), 0);
}

/// An object that must be empty (`additionalProperties: false` and no
/// `properties`): the members sent are named, in a JSON body and a form,
/// not "False schema does not allow value".
#[tokio::test]
async fn members_of_an_object_that_must_be_empty_are_named() {
    let yaml = "listeners:\n  - { name: gw, bind: \"127.0.0.1:0\" }\n\
                routes:\n  - { name: r, match: { path: /r }, static: { status: 200 }, validate: { body: { schema: \
                { type: object, properties: { opts: { type: object, additionalProperties: false } } } } } }\n";
    let gw = Gateway::start(&load(yaml, Path::new("."))).await.expect("starts");
    let json = [("content-type", "application/json")];
    let r = call(&gw, "POST", "/r", &json, r#"{"opts":{"debug":true,"admin":1}}"#).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["errors"][0]["pointer"], "/opts", "{}", r.text());
    assert_eq!(r.json()["errors"][0]["detail"], "members the schema does not allow: `admin`, `debug`");
    assert_eq!(call(&gw, "POST", "/r", &json, r#"{"opts":{}}"#).await.status, 200);
}

/// A JSON member named as a declared property in another case is what Go's
/// `encoding/json` and ASP.NET Core bind as it (the last one read wins):
/// `{"count":1,"COUNT":99}` passed `maximum: 10` and the service read 99.
#[tokio::test]
async fn a_json_member_in_another_case_than_declared_is_refused() {
    let up = Recorder::start().await;
    let yaml = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\nupstreams:\n  u: {{ targets: [ \"{}\" ] }}\n\
         routes:\n  - name: r\n    match: {{ path: /r }}\n    upstream: u\n    validate:\n      body:\n        schema:\n          \
         type: object\n          properties:\n            count: {{ type: integer, maximum: 10 }}\n            \
         lines: {{ type: array, items: {{ type: object, properties: {{ sku: {{ type: string }} }} }} }}\n            \
         labels: {{ type: object, additionalProperties: {{ type: string }} }}\n",
        up.url()
    );
    let gw = Gateway::start(&load(&yaml, Path::new("."))).await.expect("starts");
    let json = [("content-type", "application/json")];
    for (body, pointer) in [
        (r#"{"count":1,"COUNT":99}"#, "/COUNT"),
        (r#"{"Count":99}"#, "/Count"),
        (r#"{"count":1,"lines":[{"sku":"a"},{"Sku":"b"}]}"#, "/lines/1/Sku"),
    ] {
        let r = call(&gw, "POST", "/r", &json, body).await;
        assert_eq!(errors(&r), vec![("body".to_string(), pointer.to_string())], "{body}: {}", r.text());
        assert!(r.text().contains("ignore case"), "{}", r.text());
    }
    // The members a map takes freely, and the declared spellings, pass (the shortcut's way too).
    for body in [r#"{"count":1,"labels":{"Count":"x"}}"#, r#"{"count":10,"lines":[{"sku":"a"}]}"#] {
        assert_eq!(call(&gw, "POST", "/r", &json, body).await.status, 200, "{body}");
    }
    assert_eq!(up.count(), 2);
}
