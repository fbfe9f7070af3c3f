//! Wall-clock time as policies read it: the expiry of tokens and API keys
//! and the calendar windows of quotas. The system clock in the gateway; a
//! hand-set one in tests, so that expiry is tested without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Default)]
pub struct WallClock(Option<Arc<AtomicU64>>);

impl WallClock {
    /// The system clock.
    pub fn system() -> WallClock {
        WallClock(None)
    }

    /// A clock that reads `unix_secs` until moved (`advance`).
    #[cfg(test)]
    pub fn fixed(unix_secs: u64) -> WallClock {
        WallClock(Some(Arc::new(AtomicU64::new(unix_secs))))
    }

    #[cfg(test)]
    pub fn advance(&self, secs: u64) {
        if let Some(t) = &self.0 {
            t.fetch_add(secs, Ordering::Relaxed);
        }
    }

    /// Seconds since the Unix epoch.
    pub fn unix_secs(&self) -> u64 {
        match &self.0 {
            None => system_now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs(),
            Some(t) => t.load(Ordering::Relaxed),
        }
    }

    pub fn now(&self) -> SystemTime {
        match &self.0 {
            None => system_now(),
            Some(t) => UNIX_EPOCH + Duration::from_secs(t.load(Ordering::Relaxed)),
        }
    }
}

// The one place policies read the system's wall clock.
#[allow(clippy::disallowed_methods)]
fn system_now() -> SystemTime {
    SystemTime::now()
}
