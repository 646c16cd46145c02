//! The connection to Redis every shared state goes through: each call bounded by a deadline,
//! and a circuit breaker so that a Redis that is gone costs nothing but a skipped lookup.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue};

/// Why a call to Redis gave no answer. The request that needed it falls back by the policy of
/// its kind of state; it is never taken for a replay or a revocation.
#[derive(Debug)]
#[non_exhaustive]
pub enum FleetError {
    /// No answer within the deadline.
    Timeout,
    /// The circuit breaker is open after consecutive failures: Redis was not asked.
    CircuitOpen,
    /// Redis answered with an error, or the connection failed.
    Redis(redis::RedisError),
}

impl fmt::Display for FleetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FleetError::Timeout => f.write_str("redis did not answer within the deadline"),
            FleetError::CircuitOpen => f.write_str("redis circuit breaker open"),
            FleetError::Redis(e) => write!(f, "redis error: {e}"),
        }
    }
}

impl std::error::Error for FleetError {}

/// Counters of a [`Fleet`](super::Fleet).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FleetStats {
    /// Calls made to Redis (heartbeats included).
    pub calls: u64,
    /// Calls that failed or timed out.
    pub failures: u64,
    /// Calls skipped because the circuit breaker was open.
    pub skipped: u64,
    /// DPoP proofs recorded only locally because Redis could not be asked.
    pub replay_local_only: u64,
    /// Whether the circuit breaker is open now.
    pub circuit_open: bool,
}

/// The two shapes of deployment.
pub(super) enum Connection {
    Single(ConnectionManager),
    /// Connected on first use (and again after a failed attempt).
    Cluster(Box<Cluster>),
}

pub(super) struct Cluster {
    pub(super) client: ClusterClient,
    pub(super) connection: tokio::sync::OnceCell<ClusterConnection>,
}

impl Connection {
    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> redis::RedisResult<T> {
        match self {
            Connection::Single(manager) => cmd.query_async(&mut manager.clone()).await,
            Connection::Cluster(cluster) => {
                let Cluster { client, connection } = &**cluster;
                let connection = connection.get_or_try_init(|| client.get_async_connection()).await?;
                cmd.query_async(&mut connection.clone()).await
            }
        }
    }
}

/// After `threshold` consecutive failures, Redis is skipped for `cool_down`; then one call per
/// cool-down probes it until one succeeds. A probe re-arms the cool-down as it starts, so a
/// probe whose request is dropped midway cannot leave the breaker stuck.
pub(super) struct Breaker {
    threshold: u32,
    cool_down: Duration,
    started: Instant,
    failures: AtomicU32,
    /// Milliseconds since `started` until which calls are skipped; 0 when closed.
    open_until: AtomicU64,
}

impl Breaker {
    pub(super) fn new(threshold: u32, cool_down: Duration) -> Self {
        Breaker {
            threshold: threshold.max(1),
            cool_down,
            started: Instant::now(),
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX).max(1)
    }

    /// Whether a call may go out now.
    fn admit(&self) -> bool {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        // Cooled down: exactly one caller wins the probe, and the next waits another cool-down.
        let now = self.now_ms();
        now >= until
            && self
                .open_until
                .compare_exchange(
                    until,
                    now.saturating_add(self.cool_down_ms()),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    fn cool_down_ms(&self) -> u64 {
        u64::try_from(self.cool_down.as_millis()).unwrap_or(u64::MAX).max(1)
    }

    fn succeeded(&self) {
        self.failures.store(0, Ordering::Relaxed);
        self.open_until.store(0, Ordering::Release);
    }

    /// Counts a failure; the consecutive failures so far.
    fn failed(&self) -> u32 {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        if failures >= self.threshold {
            self.open_until.store(self.now_ms().saturating_add(self.cool_down_ms()), Ordering::Release);
        }
        failures
    }

    pub(super) fn is_open(&self) -> bool {
        self.open_until.load(Ordering::Acquire) != 0
    }
}

/// Consecutive timeouts after which the connection is replaced: a connection to a server that
/// vanished without a word (a partition, a host gone) never errors, it only times out.
const RENEW_AFTER_TIMEOUTS: u32 = 8;

/// Makes a new connection (same settings).
pub(super) type Connect = Box<dyn Fn() -> Option<Connection> + Send + Sync>;

/// The client of the shared state: connection, deadline, breaker, fleet key, key prefix.
pub(super) struct Client {
    connection: arc_swap::ArcSwap<Connection>,
    connect: Connect,
    /// For the deny-list's subscription (pub/sub needs a connection of its own).
    pub(super) pubsub: redis::Client,
    pub(super) breaker: Breaker,
    pub(super) deadline: Duration,
    pub(super) connect_timeout: Duration,
    pub(super) key: [u8; 32],
    pub(super) prefix: String,
    /// Where background work runs (the runtime `build` was called in), whichever thread asks.
    pub(super) runtime: tokio::runtime::Handle,
    calls: AtomicU64,
    failures: AtomicU64,
    skipped: AtomicU64,
    pub(super) replay_local_only: AtomicU64,
}

impl Client {
    /// `None` outside a tokio runtime, or if the first connection cannot even be set up.
    pub(super) fn new(
        connect: Connect,
        pubsub: redis::Client,
        breaker: Breaker,
        deadline: Duration,
        connect_timeout: Duration,
        key: [u8; 32],
        prefix: String,
    ) -> Option<Self> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let connection = Arc::new(connect()?);
        Some(Client {
            connection: arc_swap::ArcSwap::new(connection),
            connect,
            pubsub,
            breaker,
            deadline,
            connect_timeout,
            key,
            prefix,
            runtime,
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            replay_local_only: AtomicU64::new(0),
        })
    }

    /// One command, within the deadline, unless the breaker is open.
    pub(super) async fn run<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, FleetError> {
        self.run_within(cmd, self.deadline).await
    }

    /// One command within `deadline` (the administrative calls allow themselves more).
    pub(super) async fn run_within<T: FromRedisValue>(
        &self,
        cmd: &Cmd,
        deadline: Duration,
    ) -> Result<T, FleetError> {
        if !self.breaker.admit() {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            crate::observe::fleet("circuit_open");
            return Err(FleetError::CircuitOpen);
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        let connection = self.connection.load_full();
        let result = match tokio::time::timeout(deadline, connection.query(cmd)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(FleetError::Redis(e)),
            Err(_) => Err(FleetError::Timeout),
        };
        match &result {
            Ok(_) => self.breaker.succeeded(),
            // An error *answer* (e.g. OOM under maxmemory) comes from a live server: the call
            // failed, but Redis is there; only silence and broken connections trip the breaker.
            Err(FleetError::Redis(e))
                if !(e.is_io_error() || e.is_connection_refusal() || e.is_timeout()) =>
            {
                self.failures.fetch_add(1, Ordering::Relaxed);
                crate::observe::fleet("error");
                self.breaker.succeeded();
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                let timeout = matches!(e, FleetError::Timeout);
                crate::observe::fleet(if timeout { "timeout" } else { "error" });
                let failures = self.breaker.failed();
                if timeout
                    && failures.is_multiple_of(RENEW_AFTER_TIMEOUTS)
                    && let Some(fresh) = (self.connect)()
                {
                    tracing::info!(failures, "redis connection replaced after consecutive timeouts");
                    self.connection.store(Arc::new(fresh));
                }
            }
        }
        result
    }

    pub(super) fn stats(&self) -> FleetStats {
        FleetStats {
            calls: self.calls.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            replay_local_only: self.replay_local_only.load(Ordering::Relaxed),
            circuit_open: self.breaker.is_open(),
        }
    }

    /// A key under this fleet's prefix.
    pub(super) fn key(&self, kind: &str, id: &[u8]) -> String {
        let mut key = String::with_capacity(self.prefix.len() + kind.len() + 1 + id.len() * 2);
        key.push_str(&self.prefix);
        key.push_str(kind);
        key.push(':');
        for b in id {
            key.push(char::from(HEX[usize::from(b >> 4)]));
            key.push(char::from(HEX[usize::from(b & 15)]));
        }
        key
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Milliseconds since the Unix epoch by `clock`.
pub(super) fn unix_ms(clock: &crate::time::Clock) -> i64 {
    let since = clock.now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_cools_down_and_probes_once() {
        let breaker = Breaker::new(2, Duration::from_secs(3600));
        assert!(breaker.admit());
        breaker.failed();
        assert!(!breaker.is_open());
        breaker.failed();
        assert!(breaker.is_open());
        assert!(!breaker.admit(), "open during the cool-down");
        // The cool-down is over (moved to the past rather than waited for): one probe, not two.
        breaker.open_until.store(1, Ordering::Release);
        assert!(breaker.admit());
        assert!(!breaker.admit());
        breaker.succeeded();
        assert!(breaker.admit() && breaker.admit());
    }
}
