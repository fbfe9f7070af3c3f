//! Integration tests: the real gateway in front of real servers on loopback.
// They drive real processes in real time (tokens signed now, Redis keys
// that expire): the wall clock and `std::time::Instant` are theirs to read.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

mod admin_page;
mod aggregate;
mod auth;
mod balancing;
mod buffer_budget;
mod check_cli;
mod cli_admin;
mod cli_open_files;
mod cli_signals;
mod cli_stdout;
mod deploy;
mod edge_h2;
mod edge_headers;
mod edge_limits;
mod edge_reload;
mod edge_tls;
mod forwarding;
mod layers;
mod normalization;
mod observe;
mod proxying;
mod ratelimit;
mod resilience;
mod routing;
mod smuggling;
mod streaming;
mod upstream_h1;
mod validation;
mod websocket;
