//! What can go wrong while serving one request. Each kind knows its status,
//! which side is at fault and whether another attempt is safe;
//! `http::problem` turns it into the response.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, StatusCode};

use crate::http::normalize::PathError;

pub use crate::wire::BoxError;

/// Which side caused a failure: picks 4xx vs 5xx and, later, metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
    Gateway,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    BadPath(#[from] PathError),
    #[error("no route matches this request")]
    NoRoute,
    #[error("the method is not allowed on this path")]
    MethodNotAllowed { allow: HeaderValue },
    #[error("the request body is larger than {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    #[error("the request body could not be read")]
    BodyRead(#[source] BoxError),
    #[error("the request target is longer than {limit} bytes")]
    UriTooLong { limit: u64 },
    #[error("this request needs a valid Host header")]
    MissingHost,
    #[error("the request has too many header fields")]
    TooManyHeaders,
    #[error("`{0}` asks for another method than the request's: send that method itself")]
    MethodOverride(&'static str),
    #[error("`{0}` carries several values, and which route serves the request depends on it: send one")]
    AmbiguousHeader(http::HeaderName),
    #[error("the WebSocket handshake is not valid: {0}")]
    BadHandshake(&'static str),
    #[error("the cross-origin request is not allowed: {0}")]
    CorsRejected(&'static str),
    /// A reload changed the listener's `client_auth` and this connection's
    /// certificate (or its lack of one) does not pass the new settings.
    #[error(
        "the listener's client certificate settings changed since this connection was made, and its certificate \
         does not pass them: open a new connection"
    )]
    StaleClientAuth,
    #[error("{}", unreachable_detail(cause, *sent))]
    UpstreamUnreachable {
        upstream: Arc<str>,
        #[source]
        cause: BoxError,
        /// The upstream may have received (part of) the request.
        sent: bool,
    },
    #[error("the upstream service did not answer in time")]
    UpstreamTimeout {
        upstream: Arc<str>,
        /// The upstream may have received (part of) the request.
        sent: bool,
        /// No connection of the upstream's `max_connections` came free in
        /// time, or the time left after waiting for one ran out at the
        /// target: the gateway's own limit, not the target's doing (its
        /// health and the breaker do not count it).
        waited: bool,
    },
    #[error("the gateway could not build the upstream request")]
    Internal(#[source] BoxError),
    #[error("{}", rule.detail())]
    /// `retry_after`: when the rule is known to let requests through again
    /// (an open breaker's probe), sent as `Retry-After`.
    Refused { upstream: Arc<str>, rule: UpstreamRefusal, retry_after: Option<Duration> },
}

impl From<super::request_body::BodyError> for GatewayError {
    fn from(e: super::request_body::BodyError) -> Self {
        use super::request_body::BodyError;
        match e {
            BodyError::TooLarge(limit) => GatewayError::BodyTooLarge { limit },
            BodyError::Timeout => GatewayError::BodyTimeout,
            BodyError::Read(e) => GatewayError::BodyRead(e),
        }
    }
}

/// A target answered, with something that is no valid HTTP response (a
/// head that cannot be framed alone, a status over 599, a `101` nobody
/// asked for): reached, and not answered.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidResponse(pub std::borrow::Cow<'static, str>);

/// Whether an upstream failure, or one of its causes, is an answer that is
/// no valid HTTP response ([`InvalidResponse`], the own codec's refusals
/// of a response head, hyper's parse errors) rather than a connection
/// that failed.
pub fn invalid_response(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(e) = cause {
        if e.is::<InvalidResponse>() || e.is::<crate::wire::upstream_head::HeadError>() {
            return true;
        }
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            return h.is_parse() || h.is_parse_status() || h.is_parse_too_large();
        }
        cause = e.source();
    }
    false
}

/// The problem detail of an upstream that failed before answering: what
/// an operator looks for differs between a target that was not reached
/// and one that answered nonsense.
fn unreachable_detail(cause: &BoxError, sent: bool) -> &'static str {
    if invalid_response(cause.as_ref()) {
        "the upstream service sent an invalid response"
    } else if sent {
        // Reached: the connection or stream ended (closed, reset, a ping
        // unanswered) before an answer, as aggregate calls say it.
        "the upstream service broke off without an answer"
    } else {
        "the upstream service could not be reached"
    }
}

/// A request body cut short by its client leaving (kept as the cause when
/// the error's own chain is not).
#[derive(Debug, thiserror::Error)]
#[error("the client closed the connection in the middle of the request body")]
pub struct ClientLeft;

/// Whether an error of reading a request body, or one of its causes, says
/// the client went away: the connection's end before the body's (own
/// codec), a reset, or hyper's incomplete message.
pub fn client_gone(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(e) = cause {
        if e.is::<ClientLeft>()
            || e.downcast_ref::<crate::wire::decode::DecodeError>()
                == Some(&crate::wire::decode::DecodeError::Truncated)
        {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            return matches!(io.kind(), ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof);
        }
        if let Some(h) = e.downcast_ref::<hyper::Error>()
            && h.is_incomplete_message()
        {
            return true;
        }
        // An HTTP/2 client that reset its stream (`CANCEL`, or any code),
        // sent GOAWAY or closed its connection mid-body abandoned the
        // request: nothing it sent was wrong.
        if let Some(h) = e.downcast_ref::<h2::Error>()
            && (h.is_io() || (h.is_remote() && (h.is_reset() || h.is_go_away())))
        {
            return true;
        }
        cause = e.source();
    }
    false
}

impl GatewayError {
    /// A request body that broke off because the client went away (the
    /// connection ended or was reset mid-body), not one it sent wrong.
    pub fn client_left(&self) -> bool {
        matches!(self, GatewayError::BodyRead(source) if client_gone(source.as_ref()))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::BadPath(_)
            | GatewayError::BodyRead(_)
            | GatewayError::MissingHost
            | GatewayError::MethodOverride(_)
            | GatewayError::AmbiguousHeader(_)
            | GatewayError::BadHandshake(_) => StatusCode::BAD_REQUEST,
            GatewayError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            GatewayError::UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            GatewayError::TooManyHeaders => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            GatewayError::CorsRejected(_) => StatusCode::FORBIDDEN,
            // RFC 9110 §15.5.20: this connection cannot answer; clients
            // (browsers) send the request again on a new one.
            GatewayError::StaleClientAuth => StatusCode::MISDIRECTED_REQUEST,
            GatewayError::NoRoute => StatusCode::NOT_FOUND,
            GatewayError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::UpstreamUnreachable { .. } => StatusCode::BAD_GATEWAY,
            GatewayError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            GatewayError::Refused { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Whether another attempt (at another target) is safe whatever the
    /// method: the upstream never received any of this request.
    /// The upstream a failure is about.
    pub fn upstream(&self) -> Option<&str> {
        match self {
            GatewayError::UpstreamUnreachable { upstream, .. } | GatewayError::UpstreamTimeout { upstream, .. } => {
                Some(upstream)
            }
            _ => None,
        }
    }

    pub fn retryable(&self) -> bool {
        matches!(
            self,
            GatewayError::UpstreamUnreachable { sent: false, .. } | GatewayError::UpstreamTimeout { sent: false, .. }
        )
    }

    pub fn side(&self) -> Side {
        match self {
            GatewayError::UpstreamUnreachable { .. }
            | GatewayError::UpstreamTimeout { .. }
            | GatewayError::Refused { .. } => Side::Upstream,
            GatewayError::Internal(_) => Side::Gateway,
            _ => Side::Client,
        }
    }
}

/// Which of an upstream's rules (`limits`, `breaker`, `health`) refused a
/// request before it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamRefusal {
    /// `limits.max_requests` are in flight.
    MaxRequests,
    /// `limits.max_connections` are busy and `limits.max_pending` wait.
    MaxPending,
    /// The circuit breaker is open.
    BreakerOpen,
    /// No target is healthy and `all_unhealthy: fail`.
    NoHealthyTarget,
}

impl UpstreamRefusal {
    pub const ALL: [UpstreamRefusal; 4] = [
        UpstreamRefusal::MaxRequests,
        UpstreamRefusal::MaxPending,
        UpstreamRefusal::BreakerOpen,
        UpstreamRefusal::NoHealthyTarget,
    ];

    /// The metric label and the last part of the problem type.
    pub fn name(self) -> &'static str {
        match self {
            UpstreamRefusal::MaxRequests => "max_requests",
            UpstreamRefusal::MaxPending => "max_pending",
            UpstreamRefusal::BreakerOpen => "breaker_open",
            UpstreamRefusal::NoHealthyTarget => "no_healthy_target",
        }
    }

    /// The problem `type` of the 503.
    pub fn problem_type(self) -> &'static str {
        match self {
            UpstreamRefusal::MaxRequests => "urn:portcullis:problem:upstream-max-requests",
            UpstreamRefusal::MaxPending => "urn:portcullis:problem:upstream-max-pending",
            UpstreamRefusal::BreakerOpen => "urn:portcullis:problem:circuit-open",
            UpstreamRefusal::NoHealthyTarget => "urn:portcullis:problem:no-healthy-target",
        }
    }

    pub fn detail(self) -> &'static str {
        match self {
            UpstreamRefusal::MaxRequests => "the upstream service has as many requests in flight as it may take",
            UpstreamRefusal::MaxPending => "the upstream service has no connection free and too many requests waiting",
            UpstreamRefusal::BreakerOpen => "the upstream service is failing; requests are paused for a while",
            UpstreamRefusal::NoHealthyTarget => "no instance of the upstream service is healthy",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Marks an upstream failure that happened before the upstream received any
/// of the request: no connection, or a pooled connection found closed
/// before a byte was written. The upstream clients wrap such errors in it.
#[derive(Debug)]
pub struct NotSent(pub BoxError);

impl std::fmt::Display for NotSent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for NotSent {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}
