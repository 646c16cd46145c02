//! State shared by the replicas of a fleet, in Redis or Valkey (feature `redis`): a second
//! introspection tier, a revocation deny-list and a DPoP replay store.
//!
//! ```no_run
//! use tower_bearer::{BearerLayer, Introspector};
//! use tower_bearer::dpop::Dpop;
//! use tower_bearer::fleet::Fleet;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let fleet = Fleet::builder("redis://127.0.0.1:6379")
//!     .key(std::env::var("FLEET_KEY")?.as_bytes())
//!     .build()?;
//! let introspector = Introspector::builder("https://as.example/introspect")
//!     .client_secret_basic("my-api", "s3cret")
//!     .shared_tier(fleet.introspection_tier())
//!     .build()?;
//! let layer = BearerLayer::new(introspector)
//!     .revocations(fleet.deny_list())
//!     .dpop(Dpop::allowed("https://api.example")?.replay_store(fleet.replay_store()));
//! # Ok(()) }
//! ```
//!
//! Every call to Redis has a deadline ([`FleetBuilder::deadline`], 50 ms by default) and goes
//! through a circuit breaker; a heartbeat `PING` notices a server that hangs. What happens when
//! Redis is slow or gone depends on the state:
//!
//! | state | Redis unavailable |
//! |---|---|
//! | introspection tier | a miss: the in-process cache, then the endpoint (within `max_in_flight`) |
//! | deny-list | the local copy, for at most [`max_staleness`](FleetBuilder::max_staleness) after it was last confirmed, then `503` |
//! | DPoP replay | recorded in this replica only ([`ReplayPolicy::LocalFallback`]), or `503` ([`ReplayPolicy::Strict`]) |

mod client;
mod deny;
mod replay;
mod tier;

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sha2::{Digest, Sha256};

use crate::config::ConfigError;
use crate::dpop::InMemoryReplayStore;
use crate::time::Clock;

pub use client::{FleetError, FleetStats};
pub use deny::{DenyList, Revocation};
pub use replay::{ReplayPolicy, SharedReplayStore};
pub use tier::IntrospectionTier;

use client::{Breaker, Client, Cluster, Connection, unix_ms};

/// Defaults of [`FleetBuilder`].
pub mod defaults {
    use std::time::Duration;
    /// Longest a request waits on one Redis call.
    pub const DEADLINE: Duration = Duration::from_millis(50);
    /// Longest a connection attempt may take.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
    /// Consecutive failures that open the circuit breaker.
    pub const BREAKER_FAILURES: u32 = 3;
    /// How long an open breaker skips Redis before one probe.
    pub const BREAKER_COOL_DOWN: Duration = Duration::from_millis(500);
    /// Interval of the heartbeat `PING`s (commands and the deny-list subscription).
    pub const HEARTBEAT: Duration = Duration::from_millis(250);
    /// Longest the deny-list's local copy is trusted after it was last confirmed current.
    pub const MAX_STALENESS: Duration = Duration::from_secs(2);
    /// Prefix of every key and channel.
    pub const PREFIX: &str = "tower-bearer:";
}

/// A handle on the fleet's shared state in Redis. Cheap to clone; background tasks (heartbeat,
/// deny-list subscription) end when the last clone is dropped.
#[derive(Clone)]
pub struct Fleet {
    inner: Arc<Inner>,
}

struct Inner {
    client: Arc<Client>,
    clock: Clock,
    heartbeat: Duration,
    max_staleness: Duration,
    replay_policy: ReplayPolicy,
    deny_list: OnceLock<DenyList>,
    local_replay: Arc<InMemoryReplayStore>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("prefix", &self.inner.client.prefix)
            .field("deadline", &self.inner.client.deadline)
            .field("replay_policy", &self.inner.replay_policy)
            .finish_non_exhaustive()
    }
}

/// Builder for [`Fleet`].
pub struct FleetBuilder {
    urls: Vec<String>,
    cluster: bool,
    key: Option<[u8; 32]>,
    prefix: String,
    deadline: Duration,
    connect_timeout: Duration,
    breaker_failures: u32,
    breaker_cool_down: Duration,
    heartbeat: Duration,
    max_staleness: Duration,
    replay_policy: ReplayPolicy,
    clock: Clock,
}

impl std::fmt::Debug for FleetBuilder {
    // The URLs may carry a password, the key is secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetBuilder")
            .field("nodes", &self.urls.len())
            .field("cluster", &self.cluster)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

/// Shortest fleet key accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 16;

impl Fleet {
    /// A fleet on one Redis server: `redis://[user:password@]host:port[/db]`, or `rediss://`
    /// for TLS.
    pub fn builder(url: impl Into<String>) -> FleetBuilder {
        FleetBuilder::new(vec![url.into()], false)
    }

    /// A fleet on a Redis Cluster, found from any of `urls`.
    pub fn cluster<S: Into<String>>(urls: impl IntoIterator<Item = S>) -> FleetBuilder {
        FleetBuilder::new(urls.into_iter().map(Into::into).collect(), true)
    }

    /// The shared introspection tier, for
    /// [`IntrospectorBuilder::shared_tier`](crate::IntrospectorBuilder::shared_tier).
    pub fn introspection_tier(&self) -> IntrospectionTier {
        IntrospectionTier { client: self.inner.client.clone(), clock: self.inner.clock.clone() }
    }

    /// The revocation deny-list, for [`BearerLayer::revocations`](crate::BearerLayer::revocations).
    /// The first call starts its subscription (in the runtime the fleet was built in); until
    /// the list is first loaded, requests get `503`.
    pub fn deny_list(&self) -> DenyList {
        self.inner
            .deny_list
            .get_or_init(|| {
                let list = DenyList::new(self.inner.clock.clone(), self.inner.max_staleness);
                self.inner.client.runtime.spawn(deny::keep_current(
                    Arc::downgrade(&self.inner.client),
                    list.clone(),
                    self.inner.heartbeat,
                ));
                list
            })
            .clone()
    }

    /// The shared DPoP replay store, for
    /// [`Dpop::replay_store`](crate::dpop::Dpop::replay_store).
    pub fn replay_store(&self) -> SharedReplayStore {
        SharedReplayStore {
            client: self.inner.client.clone(),
            local: self.inner.local_replay.clone(),
            policy: self.inner.replay_policy,
        }
    }

    /// Revokes what `revocation` names for `lifetime` (make it at least the longest lifetime of
    /// the tokens concerned), on every replica. Written to Redis and announced; this replica's
    /// deny-list (if started) has it at once. Fails if Redis cannot be written within a second.
    pub async fn revoke(&self, revocation: Revocation, lifetime: Duration) -> Result<(), FleetError> {
        let lifetime_ms = i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX);
        let until_ms = unix_ms(&self.inner.clock).saturating_add(lifetime_ms);
        deny::revoke(&self.inner.client, &revocation, until_ms, Duration::from_secs(1)).await?;
        if let Some(list) = self.inner.deny_list.get() {
            list.add(revocation, until_ms);
        }
        Ok(())
    }

    /// Revokes one token by its `jti`; see [`revoke`](Self::revoke).
    pub async fn revoke_jti(&self, jti: impl Into<String>, lifetime: Duration) -> Result<(), FleetError> {
        self.revoke(Revocation::Jti(jti.into()), lifetime).await
    }

    /// Revokes every token of a subject; see [`revoke`](Self::revoke).
    pub async fn revoke_subject(&self, sub: impl Into<String>, lifetime: Duration) -> Result<(), FleetError> {
        self.revoke(Revocation::Subject(sub.into()), lifetime).await
    }

    /// Revokes every token of a client; see [`revoke`](Self::revoke).
    pub async fn revoke_client_id(
        &self,
        client_id: impl Into<String>,
        lifetime: Duration,
    ) -> Result<(), FleetError> {
        self.revoke(Revocation::ClientId(client_id.into()), lifetime).await
    }

    /// One `PING`, through the deadline and the breaker.
    pub async fn ping(&self) -> Result<(), FleetError> {
        self.inner.client.run::<redis::Value>(&redis::cmd("PING")).await.map(drop)
    }

    /// Counters of this fleet handle.
    pub fn stats(&self) -> FleetStats {
        self.inner.client.stats()
    }
}

impl FleetBuilder {
    fn new(urls: Vec<String>, cluster: bool) -> Self {
        FleetBuilder {
            urls,
            cluster,
            key: None,
            prefix: defaults::PREFIX.to_owned(),
            deadline: defaults::DEADLINE,
            connect_timeout: defaults::CONNECT_TIMEOUT,
            breaker_failures: defaults::BREAKER_FAILURES,
            breaker_cool_down: defaults::BREAKER_COOL_DOWN,
            heartbeat: defaults::HEARTBEAT,
            max_staleness: defaults::MAX_STALENESS,
            replay_policy: ReplayPolicy::default(),
            clock: Clock::system(),
        }
    }

    /// The fleet key (required, at least [`MIN_KEY_BYTES`]; the same on every replica): keys
    /// and shared introspection answers are MACed with it, so that whoever can write to Redis
    /// without it cannot make up a principal.
    pub fn key(mut self, secret: &[u8]) -> Self {
        self.key = (secret.len() >= MIN_KEY_BYTES).then(|| Sha256::digest(secret).into());
        self
    }

    /// Prefix of every key and channel (default `tower-bearer:`): fleets sharing one Redis
    /// need different ones.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Longest a request waits on one Redis call (default 50 ms).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Longest a connection attempt may take (default 500 ms). Requests never wait for it
    /// longer than [`deadline`](Self::deadline).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Consecutive failures that open the circuit breaker (default 3), and how long it stays
    /// open before one probe (default 500 ms).
    pub fn circuit_breaker(mut self, failures: u32, cool_down: Duration) -> Self {
        self.breaker_failures = failures;
        self.breaker_cool_down = cool_down;
        self
    }

    /// Interval of the heartbeat `PING`s (default 250 ms); must be shorter than
    /// [`max_staleness`](Self::max_staleness).
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.heartbeat = interval;
        self
    }

    /// Longest the deny-list's local copy is served after it was last confirmed current
    /// (default 2 s): when Redis is gone, a revocation made before the outage is enforced
    /// within this bound or requests get `503`.
    pub fn max_staleness(mut self, bound: Duration) -> Self {
        self.max_staleness = bound;
        self
    }

    /// What the DPoP replay store does when Redis cannot be asked (default
    /// [`ReplayPolicy::LocalFallback`]).
    pub fn replay_policy(mut self, policy: ReplayPolicy) -> Self {
        self.replay_policy = policy;
        self
    }

    /// Where "now" comes from for freshness and revocation ends (default: the system clock).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Builds the handle. Connects lazily: a Redis that is down at start is a Redis that is
    /// down, handled by the policies. Must be called within a tokio runtime.
    pub fn build(self) -> Result<Fleet, ConfigError> {
        let key = self.key.ok_or(ConfigError::Missing("fleet key (at least 16 bytes)"))?;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Err(ConfigError::Invalid("fleet: build it within a tokio runtime"));
        };
        if self.heartbeat.is_zero() || self.heartbeat >= self.max_staleness {
            return Err(ConfigError::Invalid("fleet heartbeat must be shorter than max_staleness"));
        }
        if self.deadline.is_zero() {
            return Err(ConfigError::Invalid("fleet deadline must not be zero"));
        }
        let first = self.urls.first().ok_or(ConfigError::Missing("redis url"))?;
        let invalid =
            |e: redis::RedisError| ConfigError::InvalidUrl { what: "redis url", reason: e.to_string() };
        let pubsub = redis::Client::open(first.as_str()).map_err(invalid)?;
        // Each call is bounded by our own deadline; the client's response timeout only catches
        // what outlives the longest of them (a reload).
        let response_timeout = self.deadline.saturating_mul(20).max(Duration::from_secs(1));
        let connect: client::Connect = if self.cluster {
            let cluster = redis::cluster::ClusterClient::builder(self.urls.iter().map(String::as_str))
                .connection_timeout(self.connect_timeout)
                .response_timeout(response_timeout)
                .retries(1)
                .build()
                .map_err(invalid)?;
            Box::new(move || {
                Some(Connection::Cluster(Box::new(Cluster {
                    client: cluster.clone(),
                    connection: tokio::sync::OnceCell::new(),
                })))
            })
        } else {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(self.connect_timeout))
                .set_response_timeout(Some(response_timeout))
                .set_number_of_retries(2)
                .set_max_delay(self.heartbeat);
            let single = pubsub.clone();
            Box::new(move || {
                ConnectionManager::new_lazy_with_config(single.clone(), config.clone())
                    .ok()
                    .map(Connection::Single)
            })
        };
        let client = Arc::new(
            Client::new(
                connect,
                pubsub,
                Breaker::new(self.breaker_failures, self.breaker_cool_down),
                self.deadline,
                self.connect_timeout,
                key,
                self.prefix,
            )
            .ok_or(ConfigError::Invalid("redis: cannot set up the connection"))?,
        );
        runtime.spawn(heartbeat(Arc::downgrade(&client), self.heartbeat));
        Ok(Fleet {
            inner: Arc::new(Inner {
                client,
                clock: self.clock,
                heartbeat: self.heartbeat,
                max_staleness: self.max_staleness,
                replay_policy: self.replay_policy,
                deny_list: OnceLock::new(),
                local_replay: Arc::new(InMemoryReplayStore::default()),
            }),
        })
    }
}

/// `PING`s on the command connection: a hung server trips the breaker even when no request
/// needs Redis, and an open breaker is probed without waiting for one.
async fn heartbeat(client: Weak<Client>, interval: Duration) {
    let mut beat = tokio::time::interval(interval);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        beat.tick().await;
        let Some(client) = client.upgrade() else { return };
        let _ = client.run::<redis::Value>(&redis::cmd("PING")).await;
    }
}
