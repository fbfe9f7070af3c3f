//! The gateway's HTTP semantics, shared by every protocol path and below
//! the engine: path normalization, forwarded headers, request ids, problem
//! responses, and fetching documents (JWKS, introspection). The HTTP/1.1
//! wire machinery is in `crate::wire`.

pub mod client_body;
pub mod conn;
pub mod error;
pub mod fetch;
pub mod forwarded;
pub mod normalize;
pub mod problem;
pub mod request_body;
pub mod request_id;

/// A response the gateway makes itself (a problem, a preflight answer, a
/// responder's reply): complete bytes. The engine wraps it into its body type.
pub type Answer = ::http::Response<bytes::Bytes>;
