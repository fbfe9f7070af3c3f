//! The only place that writes RFC 9457 `application/problem+json` bodies:
//! every error the gateway answers itself goes through here. Details say
//! what happened from the client's point of view, never internals.

use http::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};

use super::Answer;
use super::error::{GatewayError, Side};

const PROBLEM_JSON: HeaderValue = HeaderValue::from_static("application/problem+json");

/// A problem response with `status`, a client-safe `detail` and the request id.
pub fn problem(status: StatusCode, detail: &str, request_id: &HeaderValue) -> Answer {
    with_members(status, detail, request_id, [])
}

/// A problem response with extension members (RFC 9457 §3.2), such as a
/// validation answer's `errors`.
pub fn with_members<const N: usize>(
    status: StatusCode,
    detail: &str,
    request_id: &HeaderValue,
    members: [(&str, serde_json::Value); N],
) -> Answer {
    let mut body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
        "request_id": request_id.to_str().unwrap_or_default(),
    });
    for (name, value) in members {
        body[name] = value;
    }
    let mut resp = Response::new(body.to_string().into());
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, PROBLEM_JSON);
    resp
}

/// The response for a failed request. Upstream and gateway faults are logged
/// here with their cause; the client only sees the summary.
/// `target`: the address the last try went to, when one did (NGINX's error
/// log names `upstream: "http://10.0.0.1:80/…"`).
pub fn from_error(err: &GatewayError, request_id: &HeaderValue, target: Option<&str>) -> Answer {
    // Refusals (limits, breaker) are counted and in the access log: a log
    // line each would flood the log exactly when the upstream is down.
    if err.side() != Side::Client && !matches!(err, GatewayError::Refused { .. }) {
        // The whole chain (`client error (Connect): invalid peer
        // certificate: UnknownIssuer`, not its first link only, which told
        // a certificate problem from a refused port no better than the
        // status); a timeout has none, and no empty `cause=""`.
        let mut chain = Vec::new();
        let mut next = std::error::Error::source(err);
        while let Some(e) = next {
            let text = e.to_string();
            // Links that repeat their source's words add nothing.
            if !chain.last().is_some_and(|last: &String| last.contains(&text)) {
                chain.push(text);
            }
            next = e.source();
        }
        let mut cause = (!chain.is_empty()).then(|| chain.join(": "));
        // The verifier's word for the `openssl req -x509` default, in ours.
        if let Some(c) = cause.as_mut()
            && c.contains("CaUsedAsEndEntity")
        {
            c.push_str(
                " (the upstream's own certificate is a CA certificate, `CA:TRUE`, which TLS verification refuses \
                 as a server's: re-issue it with `basicConstraints=CA:FALSE`, or sign it with the CA in `tls.ca`)",
            );
        }
        tracing::warn!(
            request_id = request_id.to_str().unwrap_or_default(),
            upstream = err.upstream(),
            target,
            error = %err,
            cause = cause.as_deref(),
            retryable = err.retryable(),
            "request failed"
        );
    }
    let mut resp = match err {
        // Which rule refused: a problem type of its own.
        GatewayError::Refused { rule, .. } => with_members(
            err.status(),
            rule.detail(),
            request_id,
            [("type", serde_json::Value::from(rule.problem_type()))],
        ),
        _ => problem(err.status(), &err.to_string(), request_id),
    };
    match err {
        GatewayError::MethodNotAllowed { allow } => {
            resp.headers_mut().insert(ALLOW, allow.clone());
        }
        // A refused preflight varies as a granted one does (a cache must
        // not serve it to an origin that would be granted).
        GatewayError::CorsRejected(_) => {
            resp.headers_mut().insert(
                http::header::VARY,
                HeaderValue::from_static("Origin, Access-Control-Request-Method, Access-Control-Request-Headers"),
            );
        }
        // Whole seconds, rounded up: a client that waits that long finds the probe's place.
        GatewayError::Refused { retry_after: Some(after), .. } => {
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            resp.headers_mut().insert(http::header::RETRY_AFTER, secs.max(1).into());
        }
        _ => {}
    }
    resp
}
