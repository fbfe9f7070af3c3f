//! The HTTP/1.1 wire: the gateway's own codec, its security boundary.
//! Everything here reads or writes bytes on a connection (or decides what
//! may cross one): head parsing and admission, chunked decoding, header
//! names and lines, hop-by-hop rules, the upstream request's header edits,
//! buffer recycling, write queues and timers. Nothing here knows about
//! routes, policies or plans.

pub mod admit;
pub mod body_reader;
pub mod decode;
pub mod edits;
pub mod field;
pub mod field_edits;
pub mod hop_by_hop;
pub mod hsts;
pub mod limit_fields;
pub mod names;
pub mod raw_headers;
pub mod recycle;
pub mod remove;
pub mod request_head;
pub mod response_head;
pub mod settable;
pub mod timer;
pub mod transport;
pub mod upstream_head;
pub mod write_queue;

/// The error type of every body stream: whatever failed, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
