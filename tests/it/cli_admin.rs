//! `portcullis reload` and `portcullis status` against the running binary,
//! through its admin API: the one who asked gets the outcome (the new
//! config's hash, or every problem and exit 1), and `POST /reload` is
//! guarded like the rest of the admin API.

use std::net::SocketAddr;
use std::process::{Command, Output};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use crate::support::process::spawn_gateway_admin;
use crate::support::{get, http1_client, send};

fn config(body: &str, admin: &str) -> String {
    format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\nadmin: {admin}\nroutes:\n  - {{ name: r, match: {{ path_prefix: / }}, static: {{ body: \"{body}\" }} }}\n"
    )
}

/// Runs the binary with `args` (and `env`) and waits for it.
async fn cli(args: Vec<String>, env: Vec<(&'static str, String)>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
        cmd.args(&args).env_remove("PORTCULLIS_ADMIN_TOKEN");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("portcullis runs")
    })
    .await
    .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn post(url: &str, headers: &[(&str, &str)]) -> crate::support::Reply {
    let mut req = Request::post(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(&http1_client(), req.body(Full::<Bytes>::default()).unwrap()).await
}

#[tokio::test]
async fn reload_answers_the_one_who_asked_and_status_prints_the_gateway() {
    let (gw, addr, admin) = spawn_gateway_admin(&config("one", "{ bind: \"127.0.0.1:0\" }"), &[]);
    let admin: SocketAddr = admin.expect("admin listening line");
    let url = format!("http://{addr}/");
    let admin_arg = || vec!["--admin".to_string(), admin.to_string()];
    assert_eq!(get(&url, &[]).await.text(), "one");

    let out = cli([vec!["status".to_string()], admin_arg()].concat(), vec![]).await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains(": serving") && stdout.contains("commit ") && stdout.contains("gw 127.0.0.1:"), "{stdout}");
    for probe in [vec!["health".to_string()], vec!["health".to_string(), "--ready".to_string()]] {
        let out = cli([probe.clone(), admin_arg()].concat(), vec![]).await;
        assert!(out.status.success(), "{probe:?}: {}", text(&out.stderr));
    }
    let out = cli([vec!["status".to_string(), "--json".to_string()], admin_arg()].concat(), vec![]).await;
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json prints the JSON");
    let before = status["config"]["hash"].as_str().unwrap().to_string();

    // A good file: live at once, and the hash printed is the running one.
    std::fs::write(&gw.config, config("two", "{ bind: \"127.0.0.1:0\" }")).unwrap();
    let out = cli([vec!["reload".to_string()], admin_arg()].concat(), vec![]).await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert_eq!(get(&url, &[]).await.text(), "two", "the reload is done when the command returns");
    let after =
        get(&format!("http://{admin}/status"), &[]).await.json()["config"]["hash"].as_str().unwrap().to_string();
    assert_ne!(before, after);
    assert!(stdout.contains(&format!("config {after} is live")), "{stdout}");
    // The new file's warnings are printed, as `check` prints them (they
    // were in the gateway's log only); the reload still succeeds.
    let warned =
        config("two", "{ bind: \"127.0.0.1:0\" }") + "upstreams:\n  spare: { targets: [ \"http://127.0.0.1:9\" ] }\n";
    std::fs::write(&gw.config, &warned).unwrap();
    let out = cli([vec!["reload".to_string()], admin_arg()].concat(), vec![]).await;
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.lines().any(|l| l.starts_with("warning: ") && l.contains("[unused-upstream]")), "{stderr}");
    std::fs::write(&gw.config, config("two", "{ bind: \"127.0.0.1:0\" }")).unwrap();
    let out = cli([vec!["reload".to_string()], admin_arg()].concat(), vec![]).await;
    assert!(out.status.success() && !text(&out.stderr).contains("warning"), "{}", text(&out.stderr));
    let after =
        get(&format!("http://{admin}/status"), &[]).await.json()["config"]["hash"].as_str().unwrap().to_string();

    // `--config` naming another file than the gateway's: refused before any
    // reload (it would print "reloaded" with that file never read).
    let other = gw.config.with_file_name("other.yaml");
    std::fs::write(&other, config("other", &format!("{{ bind: \"{admin}\" }}"))).unwrap();
    let out = cli(vec!["reload".into(), "--config".into(), other.display().to_string()], vec![]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("a reload reads the gateway's own file"), "{stderr}");
    let reloads = |s: serde_json::Value| s["config"]["reloads"].as_u64();
    assert_eq!(reloads(get(&format!("http://{admin}/status"), &[]).await.json()), Some(3), "nothing reloaded");
    // Its own file, by whatever path: reloaded.
    let own = vec!["reload".into(), "--config".into(), gw.config.display().to_string()];
    let out = cli([own, admin_arg()].concat(), vec![]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(reloads(get(&format!("http://{admin}/status"), &[]).await.json()), Some(4));

    // A file with two problems: both printed, exit 1, the old config serves.
    std::fs::write(
        &gw.config,
        "listeners:\n  - { name: gw, bind: \"127.0.0.1:0\" }\nadmin: { bind: \"127.0.0.1:0\" }\nroutes:\n  - { name: a, match: { path_prefix: / }, upstream: nowhere }\n  - { name: b, match: { path_prefix: /b }, upstream: elsewhere }\n",
    )
    .unwrap();
    let out = cli([vec!["reload".to_string()], admin_arg()].concat(), vec![]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("nowhere") && stderr.contains("elsewhere"), "every problem is printed: {stderr}");
    assert!(stderr.contains(&format!("still serving config {after}")), "{stderr}");
    assert_eq!(get(&url, &[]).await.text(), "two");

    // The admin API's own guards: POST only, and never from a web page.
    let reload = format!("http://{admin}/reload");
    assert_eq!(get(&reload, &[]).await.status, 405);
    assert_eq!(post(&reload, &[("origin", "https://evil.example")]).await.status, 403);
    let refused = post(&reload, &[]).await;
    assert_eq!(refused.status, 422);
    assert_eq!(refused.json()["errors"].as_array().map(Vec::len), Some(2), "{}", refused.text());

    // A variable set in the shell that asks, not in the gateway's environment: said so.
    std::fs::write(
        &gw.config,
        "listeners:\n  - { name: gw, bind: \"127.0.0.1:0\" }\nadmin: { bind: \"127.0.0.1:0\" }\nroutes:\n  - name: a\n    match: { path_prefix: / }\n    static:\n      body: ${PORTCULLIS_TEST_ONLY_IN_THE_SHELL}\n",
    )
    .unwrap();
    let out = cli(
        [vec!["reload".to_string()], admin_arg()].concat(),
        vec![("PORTCULLIS_TEST_ONLY_IN_THE_SHELL", "set-here".into())],
    )
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("in the running gateway's environment"), "{stderr}");
}

#[tokio::test]
async fn reload_takes_the_token_from_the_config_or_the_environment() {
    let admin_yaml = "{ bind: \"127.0.0.1:0\", token: s3cret-admin-token-0123 }";
    let (gw, _addr, admin) = spawn_gateway_admin(&config("one", admin_yaml), &[]);
    let admin = admin.expect("admin listening line").to_string();
    std::fs::write(&gw.config, config("two", admin_yaml)).unwrap();
    let config_arg = gw.config.display().to_string();

    // No token: refused, and told where a token comes from.
    let out = cli(vec!["reload".into(), "--admin".into(), admin.clone()], vec![]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("PORTCULLIS_ADMIN_TOKEN"), "{}", text(&out.stderr));

    // From the config file's `admin.token`…
    let out = cli(vec!["reload".into(), "--config".into(), config_arg, "--admin".into(), admin.clone()], vec![]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));

    // …or from the environment; a wrong one is refused.
    let out = cli(
        vec!["status".into(), "--admin".into(), admin.clone()],
        vec![("PORTCULLIS_ADMIN_TOKEN", "s3cret-admin-token-0123".into())],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out =
        cli(vec!["status".into(), "--admin".into(), admin], vec![("PORTCULLIS_ADMIN_TOKEN", "wrong".into())]).await;
    assert_eq!(out.status.code(), Some(1));
    // The hint speaks of the command given, not of a reload.
    assert!(!text(&out.stderr).contains("this reload"), "{}", text(&out.stderr));
}

#[tokio::test]
async fn reload_without_an_admin_api_says_what_to_add() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.yaml");
    std::fs::write(&path, "listeners:\n  - { name: gw, bind: \"127.0.0.1:0\" }\n").unwrap();
    let out = cli(vec!["reload".into(), "--config".into(), path.display().to_string()], vec![]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("admin:"), "{}", text(&out.stderr));
    // Nothing listens: the address is named.
    let closed = crate::support::closed_port().await.to_string();
    let out = cli(vec!["status".into(), "--admin".into(), closed.clone()], vec![]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains(&closed), "{}", text(&out.stderr));
}

/// The token goes only to a listener that says it is the admin API: an
/// address that answers something else (a public route, a moved
/// `admin.bind` not yet live) gets no token, and no success is claimed.
#[tokio::test]
async fn reload_sends_no_token_to_what_is_not_the_admin_api() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let heard = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap_or(0);
            heard.lock().unwrap().extend_from_slice(&buf[..n]);
            let body = r#"{"result":"reloaded","config":{"hash":"0"}}"#;
            let answer =
                format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
            let _ = s.write_all(answer.as_bytes()).await;
        }
    });
    let token = "s3cret-admin-token-0123";
    for command in ["reload", "status"] {
        let out = cli(
            vec![command.into(), "--admin".into(), addr.to_string()],
            vec![("PORTCULLIS_ADMIN_TOKEN", token.into())],
        )
        .await;
        assert_eq!(out.status.code(), Some(1), "{command}: {}", text(&out.stdout));
        assert!(text(&out.stderr).contains("not a Portcullis admin API"), "{}", text(&out.stderr));
    }
    let heard = text(&seen.lock().unwrap());
    assert!(heard.contains("GET /healthz") && !heard.contains(token), "{heard}");
}

/// With `--watch`, a reload asked for (`POST /reload`) takes the file as
/// it is: the watcher does not reload the same text again a poll later.
#[tokio::test]
async fn a_reload_asked_for_is_not_repeated_by_the_watcher() {
    let (gw, addr, admin) = spawn_gateway_admin(&config("one", "{ bind: \"127.0.0.1:0\" }"), &["--watch"]);
    let admin = admin.expect("admin listening");
    std::fs::write(&gw.config, config("two", "{ bind: \"127.0.0.1:0\" }")).unwrap();
    let reply = post(&format!("http://{admin}/reload"), &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(get(&format!("http://{addr}/"), &[]).await.text(), "two");
    // Two polls of the watcher (2 s each) and a margin.
    tokio::time::sleep(std::time::Duration::from_millis(4500)).await;
    let reloads = gw.log.lock().unwrap().iter().filter(|l| l.contains("config reloaded")).count();
    assert_eq!(reloads, 1, "{:#?}", gw.log.lock().unwrap());
}

/// A config path that became a FIFO is refused at once by `POST /reload`
/// (reading it would wait for a writer, and the loop that answers reloads
/// also answers SIGTERM).
#[tokio::test]
async fn a_reload_of_a_fifo_is_refused_at_once() {
    let (gw, addr, admin) = spawn_gateway_admin(&config("one", "{ bind: \"127.0.0.1:0\" }"), &[]);
    let admin = admin.expect("admin listening");
    std::fs::remove_file(&gw.config).unwrap();
    let made = Command::new("mkfifo").arg(&gw.config).status().expect("mkfifo runs");
    assert!(made.success());
    let reply = tokio::time::timeout(std::time::Duration::from_secs(10), post(&format!("http://{admin}/reload"), &[]))
        .await
        .expect("answered, not waiting on the FIFO");
    assert_eq!(reply.status, 422, "{}", reply.text());
    assert!(reply.text().contains("not a regular file"), "{}", reply.text());
    assert_eq!(get(&format!("http://{addr}/"), &[]).await.text(), "one");
}

/// The unit's environment file holds the token (`token: ${ADMIN_TOKEN}`),
/// the operator's shell does not: `--config` still says where to ask, and
/// PORTCULLIS_ADMIN_TOKEN gives the token (`health` needs none). Every
/// command failed on the unset variable.
#[tokio::test]
async fn a_token_variable_unset_in_the_shell_does_not_stop_the_commands() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let token = "a-token-only-the-unit-has-1234";
    // Block style: a `${NAME}` cannot stand inside `{ … }`.
    let yaml = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\nadmin:\n  bind: 127.0.0.1:{port}\n  \
         token: ${{PORTCULLIS_IT_UNIT_TOKEN}}\nroutes:\n  - {{ name: r, match: {{ path_prefix: / }}, static: {{ body: one }} }}\n"
    );
    let (gw, _) =
        crate::support::process::spawn_gateway_after(&format!("export PORTCULLIS_IT_UNIT_TOKEN={token}"), &yaml);
    let file = gw.config.display().to_string();
    let args = |cmd: &str| vec![cmd.to_string(), "--config".to_string(), file.clone()];

    let out = cli(args("status"), vec![("PORTCULLIS_ADMIN_TOKEN", token.to_string())]).await;
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains(": serving"), "{}", text(&out.stdout));
    let out = cli(args("health"), vec![]).await;
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    // Without any token: the gateway's 401, with what to do.
    let out = cli(args("status"), vec![]).await;
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("set PORTCULLIS_ADMIN_TOKEN"), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("`${PORTCULLIS_IT_UNIT_TOKEN}`, which is not set in this shell"),
        "{}",
        text(&out.stderr)
    );
}
