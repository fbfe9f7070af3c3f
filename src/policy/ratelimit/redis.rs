//! The shared store: GCRA and quota counters in Redis, so that every
//! gateway instance draws from one budget. Each check is one Lua script
//! (atomic, using Redis' clock so instances need not agree on time) over a
//! multiplexed, auto-reconnecting connection, bounded by a timeout: a Redis
//! outage costs at most that timeout, then the limit's failure policy applies.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::gcra::{Decision, Gcra};

/// Returns {allowed, excess_us_before, retry_us, reset_us}. A stored value
/// that is no number (another program's, or corrupt) is no counter; one
/// later than this limit could have set (`now + span`, `tolerance +
/// interval` or the most of the limits sharing its name: a slower limit
/// before a reload, or corrupt) is cut to that and stored so
/// (as `Gcra::check`): one client's bad counter is neither an outage of
/// the store for everyone nor a lockout without end.
const GCRA_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local span = tonumber(ARGV[3])
local stored = redis.pcall('GET', KEYS[1])
local tat = nil
if type(stored) == 'string' then tat = tonumber(stored) end
if tat == nil or tat ~= tat or tat < now then tat = now end
local latest = now + span
local cut = false
if tat > latest then tat = latest; cut = true end
local excess = tat - now
if excess > tolerance then
  if cut then
    redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.ceil(excess / 1000) + 1000)
  end
  return {0, excess, excess - tolerance, excess}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return {1, excess, 0, new_tat - now}
";

/// Returns {allowed, used}; a refused request is not counted. A stored
/// value `INCR` cannot count: a number at or past the limit (`inf`,
/// `1e300`, past the integers) is a spent quota, anything else (no
/// number, a negative count) starts the window's count again; a counter
/// without an expiry gets the window's. The expiry is relative (the time
/// left in the window, by the instance's clock), as Kong sets it: an
/// absolute end from an instance whose clock is behind Redis's was already
/// past, and Redis deleted the counter at each count (the quota stopped
/// counting).
const QUOTA_SCRIPT: &str = r"
local limit = tonumber(ARGV[1])
local c = redis.pcall('INCR', KEYS[1])
if type(c) ~= 'number' then
  local stored = redis.pcall('GET', KEYS[1])
  local n = nil
  if type(stored) == 'string' then n = tonumber(stored) end
  if n ~= nil and n == n and n >= limit then
    if redis.call('TTL', KEYS[1]) == -1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
    return {0, limit}
  end
  redis.call('SET', KEYS[1], '1')
  c = 1
elseif c < 1 then
  redis.call('SET', KEYS[1], '1')
  c = 1
end
if c == 1 or redis.call('TTL', KEYS[1]) == -1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if c > limit then
  redis.call('DECR', KEYS[1])
  return {0, c - 1}
end
return {1, c}
";

pub struct RedisStore {
    client: redis::Client,
    prefix: String,
    timeout: Duration,
    conn: Mutex<Option<ConnectionManager>>,
    /// Do not hammer a dead Redis with connection attempts.
    last_attempt: std::sync::Mutex<Option<Instant>>,
    gcra: redis::Script,
    quota: redis::Script,
    /// After a failure, Redis is skipped for a second (requests go straight
    /// to the failure policy instead of each waiting for a timeout); with
    /// what failed, said again while skipping.
    skip_until: std::sync::Mutex<Option<(Instant, String)>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl RedisStore {
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<RedisStore, String> {
        let shown = crate::http::url_in_message(url);
        if url.get(..9).is_some_and(|s| s.eq_ignore_ascii_case("rediss://")) {
            return Err(format!(
                "`{shown}`: TLS to Redis (`rediss://`) is not supported yet: use `redis://` on a private network, \
                 or a local TLS tunnel (stunnel, a sidecar) to the server"
            ));
        }
        // The library's words ("did not parse - InvalidClientConfig") say nothing a user can act on.
        let client = redis::Client::open(url)
            .map_err(|_| format!("`{shown}` is not a Redis URL: write `redis://[[user]:password@]host[:port][/db]`"))?;
        Ok(RedisStore {
            client,
            prefix: prefix.to_string(),
            timeout,
            conn: Mutex::new(None),
            last_attempt: std::sync::Mutex::new(None),
            gcra: redis::Script::new(GCRA_SCRIPT),
            quota: redis::Script::new(QUOTA_SCRIPT),
            skip_until: std::sync::Mutex::new(None),
        })
    }

    /// What failed within the last second, if anything did.
    fn skipping(&self) -> Option<String> {
        let skip = self.skip_until.lock().unwrap_or_else(|e| e.into_inner());
        skip.as_ref().filter(|(until, _)| Instant::now() < *until).map(|(_, why)| why.clone())
    }

    fn failed(&self, e: String) -> String {
        *self.skip_until.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now() + Duration::from_secs(1), e.clone()));
        e
    }

    async fn connection(&self) -> Result<ConnectionManager, String> {
        if let Some(why) = self.skipping() {
            return Err(format!("Redis failed within the last second ({why}); not retrying yet"));
        }
        let mut conn = self.conn.lock().await;
        if let Some(c) = conn.as_ref() {
            return Ok(c.clone());
        }
        {
            let mut last = self.last_attempt.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
                return Err("Redis unreachable (retrying in a moment)".into());
            }
            *last = Some(Instant::now());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            // No retry inside the connect: the manager's backoff (~100-150 ms)
            // held each request that found Redis down, where a refused
            // connection fails at once; `invoke` resends a call once itself.
            .set_number_of_retries(0);
        let c = tokio::time::timeout(self.timeout * 2, ConnectionManager::new_with_config(self.client.clone(), config))
            .await
            .map_err(|_| self.failed("Redis connect timed out".to_string()))?
            .map_err(|e| self.failed(format!("Redis connect failed: {e}")))?;
        *conn = Some(c.clone());
        Ok(c)
    }

    /// Every instance must name a counter the same way, and clients must not
    /// be able to aim collisions: a SHA-256 of the identity (first 128 bits).
    fn full_key(&self, kind: &str, id: &[u8]) -> String {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, id);
        let hex: String = d.as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!("{}{kind}:{hex}", self.prefix)
    }

    /// Runs a script within the timeout. A connection Redis (or a NAT, a
    /// load balancer, Redis' own `timeout`) closed while it was idle fails
    /// the first call on it; that call is sent once more on the connection
    /// the manager makes next, instead of counting as Redis being down
    /// (which skipped it for a second on every instance, after every idle
    /// close or failover). The script had not run: its bytes never reached
    /// a live connection.
    async fn invoke<T: redis::FromRedisValue>(&self, invocation: &redis::ScriptInvocation<'_>) -> Result<T, String> {
        let mut conn = self.connection().await?;
        let attempt = async {
            match invocation.invoke_async(&mut conn).await {
                Err(e) if e.is_connection_dropped() => {
                    tracing::debug!(error = %e, "Redis connection was closed; sending again on a new one");
                    invocation.invoke_async(&mut conn).await
                }
                other => other,
            }
        };
        let outcome = match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(e)) if !e.is_io_error() => return Err(self.failed(e.to_string())),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("Redis did not answer within {:?}", self.timeout),
        };
        // A connection that failed or hung is let go: the next try after
        // the pause connects anew, and fails at once (with the reason:
        // "connection refused") when Redis is down, instead of waiting out
        // the timeout on a connection that reconnects behind its back.
        *self.conn.lock().await = None;
        Err(self.failed(outcome))
    }

    pub async fn check(&self, key: &[u8], gcra: &Gcra) -> Result<Decision, String> {
        let us = |ns: u64| (ns / 1000).max(1);
        // The step to the nearest microsecond (cut down, 10.5 µs was 10: a
        // rate 5% looser than set), and the burst as that many steps: the
        // tolerance cut on its own (10,526 µs for 1,000 steps of 10) let
        // 1,052 requests through where 1,000 were set.
        let step_us = (gcra.interval + 500) / 1000;
        let step_us = step_us.max(1);
        let burst = gcra.tolerance / gcra.interval.max(1);
        let tolerance = step_us.saturating_mul(burst);
        let span = us(gcra.span).max(tolerance + step_us);
        let mut invocation = self.gcra.key(self.full_key("gcra", key));
        invocation.arg(step_us).arg(tolerance).arg(span);
        let (allowed, excess, retry, reset): (i64, i64, i64, i64) = self.invoke(&invocation).await?;
        // The script's answers are never past `span`; any other (a Redis
        // that is not what it seems, a changed script) is the store
        // failing, its `on_store_error` applies, and no arithmetic on it
        // overflows.
        let (tolerance_us, most) = (tolerance as i64, span as i64);
        let step = step_us as i64;
        let consistent = match allowed {
            // Admitted within the burst, nothing to wait, one step more to drain.
            1 => excess <= tolerance_us && retry == 0 && reset == excess + step,
            // Refused past the burst, waiting for what is past it.
            0 => excess > tolerance_us && retry == excess - tolerance_us && reset == excess,
            _ => false,
        };
        if !consistent || [excess, retry, reset].iter().any(|v| !(0..=most).contains(v)) {
            return Err(format!("Redis answered a counter out of range: {allowed} {excess} {retry} {reset}"));
        }
        let ns = |us: i64| (us as u64).saturating_mul(1000);
        let delay = ns(excess).saturating_sub(gcra.free_excess);
        // Counted as Redis counts: in whole microseconds.
        let interval = step_us * 1000;
        let capacity = tolerance * 1000 / interval + 1;
        let used = ns(reset).div_ceil(interval);
        Ok(Decision {
            allowed: allowed == 1,
            retry_after: ns(retry),
            delay: if allowed == 1 { delay } else { 0 },
            remaining: if allowed == 1 { capacity.saturating_sub(used) } else { 0 },
            reset: ns(reset),
        })
    }

    /// Counts a request in the quota window `window` (a number that names
    /// it), which ends in `left` seconds.
    pub async fn quota(&self, key: &[u8], window: u64, left: u64, limit: u64) -> Result<(bool, u64), String> {
        let mut invocation = self.quota.key(self.full_key(&format!("quota:{window}"), key));
        invocation.arg(limit).arg(left.max(1));
        let (allowed, used): (i64, i64) = self.invoke(&invocation).await?;
        if !matches!(allowed, 0 | 1) || used < 0 {
            return Err(format!("Redis answered a quota count out of range: {allowed} {used}"));
        }
        Ok((allowed == 1, (used as u64).min(limit)))
    }
}
