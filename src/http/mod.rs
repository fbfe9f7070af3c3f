//! The gateway's HTTP semantics, shared by every protocol path and below
//! the engine: path normalization, forwarded headers, request ids, problem
//! responses, and fetching documents (JWKS, introspection). The HTTP/1.1
//! wire machinery is in `crate::wire`.

pub mod fetch;
pub mod forwarded;
pub mod normalize;
pub mod problem;
pub mod request_id;
