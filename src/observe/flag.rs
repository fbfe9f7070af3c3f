//! The response flag: one short code for why a request did not get an
//! upstream's answer (Envoy's most useful access-log field), in the access
//! log and nowhere a client sees it.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flag {
    /// The upstream answered (whatever its status).
    #[default]
    None,
    /// No route matched (404, 405).
    NoRoute,
    /// The upstream could not be reached.
    UpstreamConnectFailure,
    /// The upstream did not answer in time.
    UpstreamTimeout,
    /// The upstream closed or broke the exchange after the request was sent.
    UpstreamClosed,
    /// A rate limit, quota or concurrency limit refused it.
    RateLimited,
    /// Authentication refused it.
    Unauthenticated,
    /// Authorization (scopes, claims, groups, IP lists, CORS) refused it.
    Forbidden,
    /// The request itself was invalid (path, size, head, body).
    InvalidInput,
    /// The client went away before the response was complete.
    ClientClosed,
    /// The gateway answered itself (a built-in responder, a redirect).
    LocalResponse,
    /// The upstream's `limits` refused it (Envoy's `UO`).
    UpstreamOverflow,
    /// The upstream's circuit breaker was open.
    BreakerOpen,
    /// No target was healthy and `all_unhealthy: fail` (Envoy's `UH`).
    NoHealthyUpstream,
    /// A WebSocket tunnel closed for carrying nothing either way for the
    /// upstream's `timeouts.read` (Envoy's `SI`, stream idle timeout).
    StreamIdle,
}

impl Flag {
    /// The gateway refused the request (or could not reach an upstream)
    /// and answered itself for that reason.
    pub fn is_refusal(self) -> bool {
        !matches!(self, Flag::None | Flag::ClientClosed | Flag::LocalResponse | Flag::StreamIdle)
    }

    pub fn code(self) -> &'static str {
        match self {
            Flag::None => "-",
            Flag::NoRoute => "NR",
            Flag::UpstreamConnectFailure => "UF",
            Flag::UpstreamTimeout => "UT",
            Flag::UpstreamClosed => "UC",
            Flag::RateLimited => "RL",
            Flag::Unauthenticated => "UA",
            Flag::Forbidden => "UZ",
            Flag::InvalidInput => "IV",
            Flag::ClientClosed => "DC",
            Flag::LocalResponse => "LR",
            Flag::UpstreamOverflow => "UO",
            Flag::BreakerOpen => "BO",
            Flag::NoHealthyUpstream => "UH",
            Flag::StreamIdle => "SI",
        }
    }
}
