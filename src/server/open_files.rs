//! The process's open-file limit (`RLIMIT_NOFILE`).
//!
//! Every client connection, upstream connection, certificate read and log
//! file takes a descriptor. A shell's default soft limit (1,024 on most
//! distributions, with a hard limit of 524,288 or more) would cut the
//! listeners' `max_connections` (10,000 by default) short: accepts and
//! upstream connects fail with EMFILE long before it. At start the soft
//! limit is raised to the hard one, as Go's runtime does for every program,
//! and a config whose listeners and upstreams may hold more connections
//! than the limit allows (every upstream request may hold a connection of
//! its own: `limits.max_requests`, 1,024 by default) is warned about, as
//! NGINX warns when `worker_connections` exceed it. Raising the hard limit
//! is the service manager's (`LimitNOFILE=`).

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

use crate::config::Config;

/// Where the kernel stops an unlimited hard limit (`fs.nr_open`'s default).
const NR_OPEN_DEFAULT: u64 = 1 << 20;

/// Raises the soft open-file limit to the hard one and logs what it did;
/// warns when the listeners' connection limits add up to more.
pub fn raise(config: &Config) {
    let limit = getrlimit(Resource::Nofile);
    let target = limit.maximum.unwrap_or(NR_OPEN_DEFAULT);
    let mut now = limit.current;
    if limit.current.is_some_and(|soft| soft < target) {
        let raised = Rlimit { current: Some(target), maximum: limit.maximum };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => {
                now = Some(target);
                tracing::info!(from = limit.current, to = target, "open-file limit raised to the hard limit");
            }
            Err(e) => tracing::warn!(error = %e, soft = limit.current, "cannot raise the open-file limit"),
        }
    }
    if let Some(open_files) = now {
        let connections = listener_connections(config);
        let upstream = upstream_requests(config);
        if connections.saturating_add(upstream) > open_files {
            tracing::warn!(
                open_files,
                connections,
                upstream_requests = upstream,
                "the listeners' limits.max_connections and the upstreams' limits.max_requests add up to more than \
                 the open-file limit: connections will be refused (accept and connect fail) before their limits; \
                 raise LimitNOFILE= or `ulimit -Hn`, or lower max_connections or max_requests"
            );
        }
    }
}

/// Requests the upstreams may have in flight at once, all together (each
/// may hold an upstream connection of its own).
fn upstream_requests(config: &Config) -> u64 {
    config.upstreams.values().map(|u| u.limits.effective_max_requests() as u64).fold(0, u64::saturating_add)
}

/// Client connections the listeners may hold at once, all together.
fn listener_connections(config: &Config) -> u64 {
    config.listeners.iter().map(|l| l.limits.max_connections as u64).fold(0, u64::saturating_add)
}
