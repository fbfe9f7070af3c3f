//! HTTP plumbing shared by the engine: path normalization, forwarded
//! headers, hop-by-hop handling, request ids and problem responses.

pub mod admit;
pub mod decode;
pub mod edits;
pub mod fetch;
pub mod field;
pub mod forwarded;
pub mod hop_by_hop;
pub mod names;
pub mod normalize;
pub mod problem;
pub mod raw_headers;
pub mod recycle;
pub mod remove;
pub mod request_id;
pub mod timer;
pub mod write_queue;
