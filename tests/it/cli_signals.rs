//! The binary's signal handling: SIGHUP reloads (a bad file is refused and
//! the old config keeps serving), SIGUSR1 reopens the access log, SIGTERM
//! drains and exits 0.

use std::time::Duration;

use crate::support::get;
use crate::support::process::spawn_gateway;

fn config(body: &str) -> String {
    format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\nroutes:\n  - {{ name: r, match: {{ path_prefix: / }}, static: {{ body: \"{body}\" }} }}\n"
    )
}

/// The process's exit status, waited for off the test's runtime.
async fn exit_status(mut gw: crate::support::process::Process) -> std::process::ExitStatus {
    tokio::task::spawn_blocking(move || {
        let s = gw.child.wait().unwrap();
        (s, gw)
    })
    .await
    .unwrap()
    .0
}

/// The gateway's first JSON log line holding `text`, once it is written.
async fn json_line(gw: &crate::support::process::Process, text: &str) -> serde_json::Value {
    for _ in 0..200 {
        let found = gw.log.lock().unwrap().iter().find(|l| l.contains(text)).cloned();
        if let Some(line) = found {
            return serde_json::from_str(&line).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no log line with `{text}`: {:#?}", gw.log.lock().unwrap());
}

/// Polls until the gateway answers `want` (a reload is asynchronous to us).
async fn until_body(url: &str, want: &str) -> bool {
    for _ in 0..200 {
        if get(url, &[]).await.text() == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn sighup_reloads_and_sigterm_exits_cleanly() {
    let (gw, addr) = spawn_gateway(&config("one"));
    let url = format!("http://{addr}/");
    assert_eq!(get(&url, &[]).await.text(), "one");

    std::fs::write(&gw.config, config("two")).unwrap();
    gw.signal("HUP");
    assert!(until_body(&url, "two").await, "SIGHUP did not load the new config");

    std::fs::write(&gw.config, "routes: [ { name: broken } ]\n").unwrap();
    gw.signal("HUP");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(get(&url, &[]).await.text(), "two", "a bad config must not replace the good one");

    gw.signal("TERM");
    let status = exit_status(gw).await;
    assert_eq!(status.code(), Some(0));
}

/// Lines of a file once it has at least `n` (or after 5 s).
async fn lines_of(path: &std::path::Path, n: usize) -> usize {
    for _ in 0..500 {
        let count = std::fs::read_to_string(path).map_or(0, |t| t.lines().count());
        if count >= n {
            return count;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

#[tokio::test]
async fn sigusr1_reopens_the_access_log_after_rotation() {
    let yaml = format!("access_log: {{ to: access.log }}\n{}", config("hi"));
    let (gw, addr) = spawn_gateway(&yaml);
    let dir = gw.config.parent().unwrap().to_path_buf();
    let url = format!("http://{addr}/");
    get(&url, &[]).await;
    assert_eq!(lines_of(&dir.join("access.log"), 1).await, 1);
    // What logrotate does: move the file, then signal.
    std::fs::rename(dir.join("access.log"), dir.join("access.log.1")).unwrap();
    gw.signal("USR1");
    // The reopen creates the file: lines logged from then on go to it.
    let reopened = std::time::Instant::now() + Duration::from_secs(5);
    while !dir.join("access.log").exists() {
        assert!(std::time::Instant::now() < reopened, "SIGUSR1 did not reopen the access log");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    get(&url, &[]).await;
    get(&url, &[]).await;
    assert_eq!(lines_of(&dir.join("access.log"), 2).await, 2, "new lines go to a new file at the same path");
    assert_eq!(lines_of(&dir.join("access.log.1"), 1).await, 1, "the rotated file keeps its line");
}

#[tokio::test]
async fn json_logs_keep_each_event_on_one_line() {
    let yaml = |body: &str| format!("log_format: json\n{}", config(body));
    let (gw, addr) = spawn_gateway(&yaml("one"));
    let url = format!("http://{addr}/");
    // A reload refused for three problems (one the reader stops at, two
    // the check finds past it, as `portcullis check` says them): each one
    // event, one JSON line.
    std::fs::write(
        &gw.config,
        "log_format: json\nshutdown_timeout: soon\nlisteners:\n  - { name: gw, bind: \"127.0.0.1:0\" }\nroutes:\n  - { name: a, match: { path_prefix: / }, upstream: nowhere }\n  - { name: b, match: { path_prefix: /b }, upstream: elsewhere }\n",
    )
    .unwrap();
    gw.signal("HUP");
    let mut lines = Vec::new();
    for _ in 0..200 {
        lines = gw.log.lock().unwrap().clone();
        if lines.iter().any(|l| l.contains("still serving the previous config")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(get(&url, &[]).await.text(), "one");
    let events: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object ({e}): {l}")))
        .collect();
    let problems: Vec<&str> = events
        .iter()
        .filter(|e| e["fields"]["message"] == "reload refused")
        .filter_map(|e| e["fields"]["problem"].as_str())
        .collect();
    assert_eq!(problems.len(), 3, "{lines:#?}");
    assert!(problems.iter().any(|p| p.contains("nowhere")) && problems.iter().any(|p| p.contains("elsewhere")));
    assert!(problems.iter().any(|p| p.contains("shutdown_timeout") && p.contains("`soon`")), "{problems:?}");
    assert!(events.iter().any(|e| e["level"] == "ERROR" && e["timestamp"].is_string()));
}

/// The gateway's line for a request that failed at the upstream names the
/// upstream and the target it tried (as NGINX's error log names
/// `upstream: "http://…"`), with the cause.
#[tokio::test]
async fn a_failed_request_is_logged_with_its_upstream_and_target() {
    let dead = crate::support::closed_port().await;
    let yaml = format!(
        "log_format: json\nlisteners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\n\
         upstreams:\n  orders: {{ targets: [ \"http://{dead}\" ] }}\n\
         routes:\n  - {{ name: a, match: {{ path_prefix: / }}, upstream: orders }}\n"
    );
    let (gw, addr) = spawn_gateway(&yaml);
    assert_eq!(get(&format!("http://{addr}/x"), &[]).await.status, 502);
    let line = json_line(&gw, "request failed").await;
    assert_eq!(line["fields"]["upstream"], "orders", "{line}");
    assert_eq!(line["fields"]["target"], dead.to_string(), "{line}");
    assert!(line["fields"]["cause"].as_str().is_some_and(|c| c.contains("refused")), "{line}");
}

/// An upstream whose own certificate is a CA certificate (`CA:TRUE`, the
/// `openssl req -x509` default), pinned in `tls.ca`: refused by TLS
/// verification (502), and the log line says why in words, not only
/// `CaUsedAsEndEntity`.
#[tokio::test]
async fn a_ca_certificate_as_the_upstreams_own_is_explained() {
    let up = crate::support::tls::TlsUpstream::self_signed_ca().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("pinned.pem");
    std::fs::write(&ca, &up.ca_pem).unwrap();
    let yaml = format!(
        "log_format: json\nlisteners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\n\
         upstreams:\n  pinned: {{ targets: [ \"https://{}\" ], tls: {{ ca: \"{}\" }} }}\n\
         routes:\n  - {{ name: a, match: {{ path_prefix: / }}, upstream: pinned }}\n",
        up.addr,
        ca.display()
    );
    let (gw, addr) = spawn_gateway(&yaml);
    assert_eq!(get(&format!("http://{addr}/x"), &[]).await.status, 502);
    let line = json_line(&gw, "request failed").await;
    let cause = line["fields"]["cause"].as_str().unwrap_or_default();
    assert!(cause.contains("CaUsedAsEndEntity") && cause.contains("basicConstraints=CA:FALSE"), "{line}");
}

/// `--watch` follows the file's content: a change that keeps the old
/// modification time (`cp -p`, `rsync -a`) is picked up too, once the file
/// has stayed the same for a poll (about 2 to 4 s).
#[tokio::test]
async fn watch_reloads_a_changed_file_even_with_its_old_mtime() {
    let (gw, addr) = crate::support::process::spawn_gateway_with(&config("one"), &["--watch"]);
    let url = format!("http://{addr}/");
    assert_eq!(get(&url, &[]).await.text(), "one");
    let mtime = std::fs::metadata(&gw.config).unwrap().modified().unwrap();
    std::fs::write(&gw.config, config("two")).unwrap();
    std::fs::File::options().write(true).open(&gw.config).unwrap().set_modified(mtime).unwrap();
    let mut applied = false;
    for _ in 0..100 {
        if get(&url, &[]).await.text() == "two" {
            applied = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(applied, "--watch did not reload a file whose content changed");
}

/// A reload that takes long (a large OpenAPI document is read and compiled
/// off the runtime's threads) does not hold SIGTERM: the gateway stops
/// at once instead of after the reload.
#[tokio::test]
async fn sigterm_during_a_long_reload_stops_at_once() {
    let (gw, addr) = spawn_gateway(&config("one"));
    assert_eq!(get(&format!("http://{addr}/"), &[]).await.text(), "one");
    let dir = gw.config.parent().unwrap().to_path_buf();
    // ~3.5 million YAML nodes: seconds of parsing, even optimized.
    let items = "  - 1\n".repeat(3_500_000);
    std::fs::write(
        dir.join("big.yaml"),
        format!("openapi: 3.0.3\ninfo: {{ title: t, version: '1' }}\npaths: {{}}\nx-items:\n{items}"),
    )
    .unwrap();
    let big = format!(
        "{}upstreams:\n  u: {{ targets: [ \"http://127.0.0.1:1\" ] }}\napis:\n  - {{ name: a, openapi: big.yaml, upstream: u }}\n",
        config("two")
    );
    std::fs::write(&gw.config, big).unwrap();
    gw.signal("HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = std::time::Instant::now();
    gw.signal("TERM");
    let status = exit_status(gw).await;
    assert_eq!(status.code(), Some(0));
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(3), "stopped {took:?} after SIGTERM: the reload held it");
}

/// SIGTERM drains: the request in flight is waited for (up to
/// `shutdown_timeout`, and `shutdown_delay` before). A second SIGTERM (or
/// Ctrl-C) stops at once, as a second Ctrl-C does in Caddy or Docker: a
/// long drain in a terminal used to hold until its timeout, whatever was
/// pressed.
#[tokio::test]
async fn a_second_sigterm_cuts_the_drain() {
    let up = crate::support::Upstream::start("svc").await;
    let yaml = format!(
        "shutdown_timeout: 60s\nshutdown_delay: 20s\nlisteners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\n\
         upstreams:\n  svc: {{ targets: [ \"{}\" ] }}\n\
         routes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: svc }}\n",
        up.url()
    );
    let (gw, addr) = spawn_gateway(&yaml);
    let hanging = tokio::spawn(async move { get(&format!("http://{addr}/hang"), &[]).await.status });
    for _ in 0..200 {
        if up.hits() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(up.hits(), 1, "the request is in flight");
    gw.signal("TERM");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(gw.log.lock().unwrap().iter().any(|l| l.contains("serving on until the delay ends")), "draining");
    let asked = std::time::Instant::now();
    gw.signal("TERM");
    let status = exit_status(gw).await;
    assert_eq!(status.code(), Some(0));
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(10), "stopped {took:?} after the second SIGTERM: the drain held it");
    hanging.abort();
}

/// A `RUST_LOG` that does not parse is said, not ignored in silence (the
/// debug lines asked for would never come, and nothing said why).
#[test]
fn an_unreadable_rust_log_is_said() {
    let config = "listeners: [ { name: gw, bind: \"127.0.0.1:0\" } ]\nroutes: [ { name: r, match: { path: / }, static: { status: 200 } } ]\n";
    // `warning` parses, as a target's name: every line was off, this one too.
    for value in ["garbage===", "warning", "portcullis=verbose", "wrn", "info,dbg"] {
        let (gw, _) = crate::support::process::spawn_gateway_after(&format!("export RUST_LOG='{value}'"), config);
        let lines = gw.log.lock().unwrap().clone();
        assert!(
            lines.iter().any(|l| l.contains("WARN") && l.contains("RUST_LOG cannot be read")),
            "{value}: {lines:?}"
        );
    }
    // A variable the config never names that is no UTF-8 stops nothing
    // (`std::env::vars` panicked on it).
    let (gw, _) = crate::support::process::spawn_gateway_after("export LANG_NOTE=\"$(printf 'caf\\351')\"", config);
    assert!(gw.log.lock().unwrap().iter().any(|l| l.contains("listening")));
    // One the config names is said to be no UTF-8, even with a default
    // (which stood in for it unsaid, as for a variable not set).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gw.yaml");
    std::fs::write(
        &file,
        "routes:\n  - name: r\n    match: { path: / }\n    static:\n      body: ${LANG_NOTE:-plain}\n",
    )
    .unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("LANG_NOTE=\"$(printf 'caf\\351')\" exec \"$0\" check -c {}", file.display()))
        .arg(env!("CARGO_BIN_EXE_portcullis"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && said.contains("`LANG_NOTE` is set, but not to UTF-8 text"), "{said}");
}
