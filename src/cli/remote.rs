//! `portcullis reload` and `portcullis status`: ask the running gateway
//! through its admin listener and print the answer.
//!
//! The admin address and token come from the config file (read loosely:
//! only `admin.bind` and `admin.token`, so that a file with a mistake
//! elsewhere, the very one being reloaded, still says where to ask), or
//! from `--admin` and `PORTCULLIS_ADMIN_TOKEN`. The token is never taken
//! as an argument: arguments show in `ps` and in shell history.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Where the admin API is, and the token it wants.
struct Admin {
    addr: String,
    token: Option<String>,
    /// The variable `admin.token` reads, unset in this shell (a unit's
    /// environment file holds it): said when the gateway wants a token.
    token_unset: Option<String>,
}

/// The admin address to connect to: `--admin`, else the config's
/// `admin.bind` (an unspecified address asked on loopback).
fn admin(config: Option<&Path>, flag: Option<&str>) -> Result<Admin, String> {
    let from_file = match config {
        Some(path) => Some(admin_block(path)?),
        None => None,
    };
    let token = std::env::var("PORTCULLIS_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .or_else(|| from_file.as_ref().and_then(|(_, token, _)| token.clone()));
    let addr = match (flag, &from_file) {
        (Some(addr), _) => addr.to_string(),
        (None, Some((Some(bind), ..))) => loopback(bind)?,
        (None, Some((None, ..))) => {
            return Err("the config file has no `admin:` block (or is empty), so it does not say where the running gateway's admin API is: the gateway was not asked (give --admin ADDR, or add `admin: { bind: 127.0.0.1:9901 }` to a gateway's config)".into());
        }
        (None, None) => return Err("give --config FILE (its `admin.bind` says where to ask) or --admin ADDR".into()),
    };
    let token_unset = from_file.and_then(|(_, _, unset)| unset);
    Ok(Admin { addr, token, token_unset })
}

/// `admin.bind`, `admin.token`, and the variable the token reads when it
/// is not set in this shell.
type AdminBlock = (Option<String>, Option<String>, Option<String>);

/// `admin.bind` and `admin.token` of a config file, read as the gateway
/// reads them (`${NAME}`, `${NAME:-default}`, `$$`, quoted text as
/// written), by the gateway's own reader rather than a copy of its rules
/// (a copy knew no defaults and no `$$`, and expanded quoted text).
/// Variables used elsewhere in the file need not be set in the shell that
/// asks: they stand in as some text (not empty: `${NAME:?why}` refuses that).
fn admin_block(path: &Path) -> Result<AdminBlock, String> {
    #[derive(serde::Deserialize)]
    struct Only {
        admin: Option<AdminFields>,
    }
    #[derive(serde::Deserialize)]
    struct AdminFields {
        bind: Option<Value>,
        token: Option<Value>,
    }
    let text = crate::config::read_text(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let not_yaml = |e: &dyn std::fmt::Display| {
        format!(
            "{} does not read as YAML ({e}), so it does not say where the admin API is: the gateway was not asked \
             (`portcullis check --config {}` shows the problems; --admin ADDR asks the gateway anyway)",
            path.display(),
            path.display()
        )
    };
    // As written (`${NAME}` unread): which variables the admin block uses.
    let raw: Value = serde_saphyr::from_str(&text).map_err(|e| not_yaml(&e))?;
    let written = |key: &str| raw.get("admin").and_then(|a| a.get(key)).map(Value::to_string).unwrap_or_default();
    let token_written = written("token");
    let elsewhere_in_admin = raw
        .get("admin")
        .and_then(Value::as_object)
        .map(|a| a.iter().filter(|(k, _)| *k != "token").map(|(_, v)| v.to_string()).collect::<String>())
        .unwrap_or_default();
    let mut vars = crate::config::environment();
    // A variable of `admin.token` alone, unset in this shell (a unit's
    // environment file holds it): the token is not known here, and
    // PORTCULLIS_ADMIN_TOKEN or no token at all (`health`) may do.
    let mut token_unknown: Option<String> = None;
    // One more pass for each unset variable outside the admin block.
    for _ in 0..=256 {
        let read = serde_saphyr::from_str_with_options::<Only>(&text, crate::config::reader_options(vars.clone()));
        let e = match read {
            Ok(Only { admin: None }) => return Ok((None, None, None)),
            Ok(Only { admin: Some(a) }) => {
                let text = |v: Option<Value>| match v {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s),
                    Some(other) => Some(other.to_string()),
                };
                let token = if token_unknown.is_some() { None } else { text(a.token) };
                return Ok((text(a.bind), token, token_unknown));
            }
            Err(e) => e.to_string(),
        };
        // Unset, or set empty where `${NAME:?why}` refuses an empty value.
        let missing = ["missing property `", "empty property `"]
            .iter()
            .find_map(|m| e.split_once(m))
            .and_then(|(_, rest)| rest.split_once('`'))
            .map(|(n, _)| n);
        match missing {
            Some(name)
                if !elsewhere_in_admin.contains(&format!("${{{name}"))
                    && vars.get(name).is_none_or(|v| v.as_str() != STAND_IN) =>
            {
                if token_written.contains(&format!("${{{name}")) {
                    token_unknown = Some(name.to_string());
                }
                vars.insert(name.to_string(), STAND_IN.to_string());
            }
            Some(name) => {
                return Err(format!("environment variable `{name}` (in the config's admin block) is not set"));
            }
            None => return Err(not_yaml(&e)),
        }
    }
    Err(not_yaml(&"too many unset environment variables"))
}

/// What a variable used outside the admin block reads as, when unset.
const STAND_IN: &str = "unset";

/// An address a client can connect to for a bind address: `0.0.0.0` and
/// `[::]` are asked on loopback.
fn loopback(bind: &str) -> Result<String, String> {
    let addr: std::net::SocketAddr =
        bind.parse().map_err(|_| format!("admin.bind `{bind}` is not an address like 127.0.0.1:9901"))?;
    if addr.port() == 0 {
        return Err(format!("admin.bind `{bind}` asks for any free port: give the bound address with --admin ADDR"));
    }
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    Ok(std::net::SocketAddr::new(ip, addr.port()).to_string())
}

/// One request to the admin API: its status and body. With a token, a
/// `/healthz` without it comes first: the token goes only to a listener
/// that marks its answers as the admin API's (`portcullis::ADMIN_MARK`).
async fn call(admin: &Admin, method: Method, path: &str) -> Result<(StatusCode, Value), String> {
    if admin.token.is_some() {
        let (status, marked, _) = exchange(admin, Method::GET, "/healthz", false).await?;
        if !marked || status != StatusCode::OK {
            return Err(not_admin(admin));
        }
    }
    let (status, marked, body) = exchange(admin, method, path, true).await?;
    if !marked {
        return Err(not_admin(admin));
    }
    Ok((status, body))
}

fn not_admin(admin: &Admin) -> String {
    format!(
        "what answers at {} is not a Portcullis admin API (the token was not sent): is `admin.bind` in the \
         file the running gateway's? (a change of it waits for a restart; give the live one with --admin ADDR)",
        admin.addr
    )
}

async fn exchange(admin: &Admin, method: Method, path: &str, token: bool) -> Result<(StatusCode, bool, Value), String> {
    let unreachable = |e: &dyn std::fmt::Display| format!("cannot reach the admin API at {}: {e}", admin.addr);
    let stream = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(&admin.addr))
        .await
        .map_err(|_| unreachable(&"no answer within 5 s"))?
        .map_err(|e| unreachable(&e))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| unreachable(&e))?;
    tokio::spawn(conn);
    let mut req = Request::builder().method(method).uri(path).header(header::HOST, &admin.addr);
    if let Some(token) = admin.token.as_ref().filter(|_| token) {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let req = req.body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
    // A reload compiles the config (JWKS and OpenAPI files included): up to the server's own 60 s.
    let resp = tokio::time::timeout(Duration::from_secs(65), sender.send_request(req))
        .await
        .map_err(|_| unreachable(&"no answer within 65 s"))?
        .map_err(|e| unreachable(&e))?;
    let status = resp.status();
    let marked = resp.headers().contains_key(portcullis::ADMIN_MARK);
    let body = resp.into_body().collect().await.map_err(|e| unreachable(&e))?.to_bytes();
    let value = serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()));
    Ok((status, marked, value))
}

/// Runs one async call on a small runtime of its own.
fn block_on<T>(f: impl std::future::Future<Output = T>) -> Result<T, String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    Ok(rt.block_on(f))
}

/// Finds the admin API and asks it once; a failure is printed, and its exit code returned.
fn ask(
    config: Option<&Path>,
    admin_flag: Option<&str>,
    method: Method,
    path: &str,
) -> Result<(Admin, StatusCode, Value), ExitCode> {
    let admin = admin(config, admin_flag).map_err(|e| fail(&e))?;
    match block_on(call(&admin, method, path)) {
        Ok(Ok((status, body))) => {
            if let (StatusCode::UNAUTHORIZED, None, Some(name)) = (status, &admin.token, &admin.token_unset) {
                eprintln!(
                    "note: admin.token reads `${{{name}}}`, which is not set in this shell: the gateway was asked \
                     without a token (set PORTCULLIS_ADMIN_TOKEN to the running one)"
                );
            }
            Ok((admin, status, body))
        }
        Ok(Err(e)) | Err(e) => Err(fail(&e)),
    }
}

/// Writes to stdout, ignoring a closed pipe (`portcullis status | head`
/// must not panic the way `println!` does).
pub fn say(text: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_fmt(text);
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

/// What an error answer says (a problem's `detail`, else the body).
/// `reloading`: the command is `reload` (a token changed in the file is
/// not the running one until the reload it would send).
fn detail(status: StatusCode, body: &Value, reloading: bool) -> String {
    let text = match body {
        Value::String(plain) => plain.trim().to_string(),
        _ => body.get("detail").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| body.to_string()),
    };
    match status {
        StatusCode::UNAUTHORIZED if reloading => format!(
            "{text} (set PORTCULLIS_ADMIN_TOKEN, or keep admin.token in the config file given with --config; \
             a token changed in the file takes effect with this reload: send the running one, \
             PORTCULLIS_ADMIN_TOKEN=<old token> portcullis reload --config FILE)"
        ),
        StatusCode::UNAUTHORIZED => format!(
            "{text} (set PORTCULLIS_ADMIN_TOKEN, or keep admin.token in the config file given with --config; \
             a token changed in the file since the gateway last loaded it is not the running one yet)"
        ),
        _ => format!("the admin API answered {status}: {text}"),
    }
}

/// `portcullis reload`: 0 when the new config is live, 1 otherwise (every
/// problem printed, one per line).
pub fn reload(config: Option<&Path>, admin_flag: Option<&str>) -> ExitCode {
    // A reload reads the file the gateway was started with: `--config`
    // naming another would print "reloaded" with that file never read.
    if let Some(given) = config {
        let serving = match ask(config, admin_flag, Method::GET, "/status") {
            Ok((_, StatusCode::OK, body)) => body.pointer("/config/file").and_then(Value::as_str).map(String::from),
            Ok(_) => None,
            Err(code) => return code,
        };
        let given_abs =
            std::fs::canonicalize(given).map_or_else(|_| given.display().to_string(), |p| p.display().to_string());
        if let Some(serving) = serving.filter(|s| *s != given_abs) {
            return fail(&format!(
                "the gateway serves {serving}, not {}: a reload reads the gateway's own file (copy the new config \
                 there, or restart the gateway with --config {})",
                given.display(),
                given.display()
            ));
        }
    }
    let (_, status, body) = match ask(config, admin_flag, Method::POST, "/reload") {
        Ok(answer) => answer,
        Err(code) => return code,
    };
    let hash = |b: &Value| b.pointer("/config/hash").and_then(Value::as_str).unwrap_or("?").to_string();
    match status {
        StatusCode::OK if body.get("result").and_then(Value::as_str) != Some("reloaded") => {
            fail(&format!("the admin API answered 200 without saying the config was reloaded: {body}"))
        }
        StatusCode::OK => {
            // What `check` would warn about in the new file, as it says it.
            let warnings = body.get("warnings").and_then(Value::as_array).cloned().unwrap_or_default();
            for w in &warnings {
                eprintln!("warning: {}", w.as_str().map_or_else(|| w.to_string(), str::to_string));
            }
            let reloads = body.pointer("/config/reloads").and_then(Value::as_u64).unwrap_or(0);
            say(format_args!("reloaded: config {} is live ({reloads} reload(s) since start)\n", hash(&body)));
            ExitCode::SUCCESS
        }
        StatusCode::UNPROCESSABLE_ENTITY => {
            let errors = body.get("errors").and_then(Value::as_array).cloned().unwrap_or_default();
            for e in &errors {
                eprintln!("error: {}", e.as_str().map_or_else(|| e.to_string(), str::to_string));
            }
            eprintln!("reload refused ({} problem(s)): still serving config {}", errors.len(), hash(&body));
            ExitCode::FAILURE
        }
        _ => fail(&detail(status, &body, true)),
    }
}

/// `portcullis health`: 0 when the admin API's `/healthz` (or, with
/// `ready`, `/readyz`) answers 200, else 1; for container health checks
/// and probes, where there is no curl.
pub fn health(config: Option<&Path>, admin_flag: Option<&str>, ready: bool) -> ExitCode {
    let path = if ready { "/readyz" } else { "/healthz" };
    match ask(config, admin_flag, Method::GET, path) {
        Ok((_, StatusCode::OK, body)) => {
            say(format_args!("{}\n", body.as_str().unwrap_or("ok").trim()));
            ExitCode::SUCCESS
        }
        Ok((_, status, body)) => fail(&detail(status, &body, false)),
        Err(code) => code,
    }
}

/// `portcullis status`: the running gateway's `/status`, as text (or the
/// JSON as it came with `--json`).
pub fn status(config: Option<&Path>, admin_flag: Option<&str>, json: bool) -> ExitCode {
    let (admin, status, body) = match ask(config, admin_flag, Method::GET, "/status") {
        Ok(answer) => answer,
        Err(code) => return code,
    };
    if status != StatusCode::OK {
        return fail(&detail(status, &body, false));
    }
    if json {
        say(format_args!("{}\n", serde_json::to_string_pretty(&body).unwrap_or_default()));
    } else {
        say(format_args!("{}", status_text(&body, &admin.addr)));
    }
    ExitCode::SUCCESS
}

/// `/status` for a terminal.
fn status_text(s: &Value, addr: &str) -> String {
    use std::fmt::Write as _;
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("?").to_string();
    let mut out = String::new();
    let state = if s.get("draining").and_then(Value::as_bool) == Some(true) { "draining" } else { "serving" };
    let _ =
        writeln!(out, "portcullis {} (commit {}) at {addr}: {state}", text(s.get("version")), text(s.get("commit")));
    let loaded_at = s.pointer("/config/loaded_at").and_then(Value::as_u64).unwrap_or(0);
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let _ = writeln!(
        out,
        "config {}, loaded {} s ago, {} reload(s)",
        text(s.pointer("/config/hash")),
        now.saturating_sub(loaded_at),
        s.pointer("/config/reloads").and_then(Value::as_u64).unwrap_or(0)
    );
    let _ = writeln!(out, "listeners:");
    for l in s.get("listeners").and_then(Value::as_array).into_iter().flatten() {
        let tls = if l.get("tls").and_then(Value::as_bool) == Some(true) { " tls" } else { "" };
        let _ = writeln!(out, "  {} {}{tls}", text(l.get("name")), text(l.get("address")));
    }
    let routes = s.get("routes").and_then(Value::as_array).map_or(0, Vec::len);
    let _ = writeln!(out, "routes: {routes}");
    let _ = writeln!(out, "upstreams:");
    for (name, u) in s.get("upstreams").and_then(Value::as_object).into_iter().flatten() {
        let breaker = u.get("breaker").and_then(Value::as_str).map(|b| format!(", breaker {b}")).unwrap_or_default();
        let _ =
            writeln!(out, "  {name}: {} in flight{breaker}", u.get("in_flight").and_then(Value::as_u64).unwrap_or(0));
        for t in u.get("targets").and_then(Value::as_array).into_iter().flatten() {
            let _ = writeln!(
                out,
                "    {} {} ({} in flight)",
                text(t.get("address")),
                text(t.get("state")),
                t.get("in_flight").and_then(Value::as_u64).unwrap_or(0)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_addresses_become_addresses_to_ask() {
        assert_eq!(loopback("0.0.0.0:9901").unwrap(), "127.0.0.1:9901");
        assert_eq!(loopback("[::]:9901").unwrap(), "[::1]:9901");
        assert_eq!(loopback("10.0.0.5:9901").unwrap(), "10.0.0.5:9901");
        assert!(loopback("127.0.0.1:0").unwrap_err().contains("--admin"));
        assert!(loopback("localhost").is_err());
    }

    #[test]
    fn the_admin_block_is_read_from_a_file_with_mistakes_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.yaml");
        // PATH is always set; the unknown key and the bad route are not our business here.
        std::fs::write(
            &path,
            "admin:\n  bind: \"0.0.0.0:9901\"\n  token: t-${PATH}\nroutes: [ { name: x, upstreem: y } ]\nbogus: 1\n",
        )
        .unwrap();
        let admin = admin(Some(&path), None).unwrap();
        assert_eq!(admin.addr, "127.0.0.1:9901");
        if std::env::var("PORTCULLIS_ADMIN_TOKEN").is_err() {
            assert_eq!(admin.token, Some(format!("t-{}", std::env::var("PATH").unwrap())));
        }
    }

    /// A plain-text answer (`/readyz`'s `draining`) is said as text, not as a JSON string.
    #[test]
    fn a_plain_answer_is_said_as_text() {
        let said = detail(StatusCode::SERVICE_UNAVAILABLE, &Value::String("draining\n".into()), false);
        assert_eq!(said, "the admin API answered 503 Service Unavailable: draining");
    }

    /// The admin block reads as the gateway reads it: defaults, `$$`,
    /// quoted text as written; variables elsewhere need not be set, those
    /// of the admin block must.
    #[test]
    fn the_admin_block_reads_as_the_gateway_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.yaml");
        let read = |text: &str| {
            std::fs::write(&path, text).unwrap();
            admin_block(&path)
        };
        let block = "admin:\n  bind: ${PORTCULLIS_SURELY_UNSET_BIND:-127.0.0.1:14141}\n  token: abcdefghijklmnop$$0123\n\
                     routes:\n  - name: x\n    secret: ${PORTCULLIS_SURELY_UNSET_ELSEWHERE}\n";
        let (bind, token, _) = read(block).unwrap();
        assert_eq!((bind.as_deref(), token.as_deref()), (Some("127.0.0.1:14141"), Some("abcdefghijklmnop$0123")));
        let quoted = "admin:\n  bind: 127.0.0.1:9901\n  token: \"${PATH}\"\n";
        assert_eq!(read(quoted).unwrap().1.as_deref(), Some("${PATH}"), "quoted text is taken as written");
        // `${NAME:?why}` elsewhere refuses an empty value: unset, it must not stop the reading.
        let why = "admin: { bind: \"127.0.0.1:9902\" }\nx: ${PORTCULLIS_SURELY_UNSET_ELSEWHERE:?set it}\n";
        assert_eq!(read(why).unwrap().0.as_deref(), Some("127.0.0.1:9902"));
        // A token this shell does not have (a unit's environment file holds
        // it): not known here, no error (PORTCULLIS_ADMIN_TOKEN may give it).
        let unset = "admin:\n  bind: 127.0.0.1:9901\n  token: ${PORTCULLIS_SURELY_UNSET_TOKEN}\n";
        let unset_name = Some("PORTCULLIS_SURELY_UNSET_TOKEN".to_string());
        assert_eq!(read(unset).unwrap(), (Some("127.0.0.1:9901".to_string()), None, unset_name));
        // The address must be known.
        let unset = "admin:\n  bind: ${PORTCULLIS_SURELY_UNSET_BIND}\n  token: abcdefghijklmnop\n";
        assert!(read(unset).unwrap_err().contains("`PORTCULLIS_SURELY_UNSET_BIND` (in the config's admin block)"));
    }
}
