//! The DPoP replay store shared by a fleet: `SET key 1 NX PX ttl`, so that a proof accepted by
//! one replica is a replay on every other.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::dpop::{InMemoryReplayStore, Recording, ReplayError, ReplayKey, ReplayStore};

use super::client::{Client, FleetError};

/// What a [`SharedReplayStore`] does when Redis cannot be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReplayPolicy {
    /// Record the proof in this replica only (counted in
    /// [`FleetStats::replay_local_only`](super::FleetStats::replay_local_only) and the
    /// `replay_local_only` fleet metric): replays to the same replica are still caught, replays
    /// to another one are not while Redis is away. The default.
    #[default]
    LocalFallback,
    /// Refuse the proof with `503` ([`Unavailable::ReplayStore`](crate::Unavailable::ReplayStore)).
    Strict,
}

/// A [`ReplayStore`] in Redis, from [`Fleet::replay_store`](super::Fleet::replay_store). Every
/// proof is recorded in this replica as well, so that a replay to the same replica is caught
/// whatever Redis does. A Redis failure is never taken for a replay.
#[derive(Clone)]
pub struct SharedReplayStore {
    pub(super) client: Arc<Client>,
    pub(super) local: Arc<InMemoryReplayStore>,
    pub(super) policy: ReplayPolicy,
}

impl std::fmt::Debug for SharedReplayStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedReplayStore").field("policy", &self.policy).finish_non_exhaustive()
    }
}

impl ReplayStore for SharedReplayStore {
    /// This replica's record only (the layer calls [`begin`](ReplayStore::begin)).
    fn record(&self, key: ReplayKey, expires_at: i64, now: i64) -> Result<(), ReplayError> {
        self.local.record(key, expires_at, now)
    }

    fn begin(&self, key: ReplayKey, expires_at: i64, now: i64) -> Recording {
        // Seen here already: no need to ask Redis.
        if let Err(err) = self.local.record(key, expires_at, now) {
            return Recording::Done(Err(err));
        }
        let this = self.clone();
        Recording::Pending(Box::pin(async move {
            let ttl_ms = expires_at.saturating_sub(now).max(1).saturating_mul(1000);
            let mut set = redis::cmd("SET");
            set.arg(this.client.key("dpop", key.as_bytes())).arg(1).arg("NX").arg("PX").arg(ttl_ms);
            match this.client.run::<Option<String>>(&set).await {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err(ReplayError::Replayed),
                Err(e) => this.unavailable(&e),
            }
        }))
    }
}

impl SharedReplayStore {
    /// Records proofs in this replica in `store` (default: an [`InMemoryReplayStore`] of the
    /// default size and share per key, one per [`Fleet`](super::Fleet)). Every proof passes
    /// through it before Redis is asked, so its share per key holds on every replica.
    pub fn local_store(mut self, store: impl Into<Arc<InMemoryReplayStore>>) -> Self {
        self.local = store.into();
        self
    }

    fn unavailable(&self, err: &FleetError) -> Result<(), ReplayError> {
        static DOWN: crate::throttle::Throttle = crate::throttle::Throttle::new();
        let strict = self.policy == ReplayPolicy::Strict;
        if let Some(repeated) = DOWN.admit() {
            tracing::warn!(reason = "dpop_replay_store_unavailable", error = %err, strict, repeated, "shared DPoP replay store unavailable");
        }
        if strict {
            return Err(ReplayError::Unavailable);
        }
        // Recorded locally already.
        self.client.replay_local_only.fetch_add(1, Ordering::Relaxed);
        crate::observe::fleet("replay_local_only");
        Ok(())
    }
}
