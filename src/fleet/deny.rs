//! The revocation deny-list: in Redis a sorted set (member `kind:value`, score its end in Unix
//! ms) and a channel announcing each addition; in every replica a local copy, read on every
//! request without a round trip, kept current by the channel and reloaded whole on every
//! (re)subscription.
//!
//! The copy is trusted only while the subscription is known to be alive: a `PING` on the
//! subscribed connection every heartbeat confirms it (a reply comes after every message
//! published before it). Past `max_staleness` since the last confirmation, requests get `503`.

use std::collections::HashMap;
use std::fmt;
use std::future::{Future, poll_fn};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures_util::Stream;

use crate::error::{AuthError, InvalidToken, Unavailable};
use crate::principal::Principal;
use crate::revocation::Revocations;
use crate::time::Clock;

use super::client::{Client, FleetError, unix_ms};

/// What a revocation names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Revocation {
    /// One token, by its `jti` claim.
    Jti(String),
    /// Every token of a subject (`sub`).
    Subject(String),
    /// Every token of a client (`client_id`, or `azp`).
    ClientId(String),
}

impl Revocation {
    fn member(&self) -> String {
        match self {
            Revocation::Jti(v) => format!("jti:{v}"),
            Revocation::Subject(v) => format!("sub:{v}"),
            Revocation::ClientId(v) => format!("cid:{v}"),
        }
    }

    fn from_member(member: &str) -> Option<Self> {
        let (kind, value) = member.split_once(':')?;
        Some(match kind {
            "jti" => Revocation::Jti(value.to_owned()),
            "sub" => Revocation::Subject(value.to_owned()),
            "cid" => Revocation::ClientId(value.to_owned()),
            _ => return None,
        })
    }
}

/// The local copy: each revoked name with its end (Unix ms).
#[derive(Debug, Default, Clone)]
struct Denied {
    jti: HashMap<String, i64>,
    sub: HashMap<String, i64>,
    cid: HashMap<String, i64>,
}

impl Denied {
    fn insert(&mut self, revocation: Revocation, until_ms: i64) {
        let (map, value) = match revocation {
            Revocation::Jti(v) => (&mut self.jti, v),
            Revocation::Subject(v) => (&mut self.sub, v),
            Revocation::ClientId(v) => (&mut self.cid, v),
        };
        let end = map.entry(value).or_insert(until_ms);
        *end = (*end).max(until_ms);
    }

    fn prune(&mut self, now_ms: i64) {
        for map in [&mut self.jti, &mut self.sub, &mut self.cid] {
            map.retain(|_, until| *until > now_ms);
        }
    }

    fn len(&self) -> usize {
        self.jti.len() + self.sub.len() + self.cid.len()
    }
}

/// The fleet's deny-list as the layer consults it
/// ([`BearerLayer::revocations`](crate::BearerLayer::revocations)), from
/// [`Fleet::deny_list`](super::Fleet::deny_list).
///
/// A token is refused (`401 invalid_token`, reason `revoked`) when its `jti`, `sub` or
/// `client_id` is on the list. While Redis is healthy a revocation reaches every replica as fast
/// as pub/sub delivers it; when Redis cannot be reached the local copy is served for at most
/// `max_staleness` after it was last confirmed, then every request gets `503`
/// ([`Unavailable::Revocations`]) until the subscription is back and the list reloaded.
#[derive(Clone)]
pub struct DenyList {
    inner: Arc<Local>,
}

struct Local {
    denied: ArcSwap<Denied>,
    clock: Clock,
    started: Instant,
    /// Milliseconds since `started` until which the copy is trusted; 0 before the first load.
    trusted_until: AtomicU64,
    max_staleness: Duration,
}

impl fmt::Debug for DenyList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DenyList")
            .field("entries", &self.inner.denied.load().len())
            .field("current", &self.is_current())
            .finish()
    }
}

impl DenyList {
    pub(super) fn new(clock: Clock, max_staleness: Duration) -> Self {
        DenyList {
            inner: Arc::new(Local {
                denied: ArcSwap::from_pointee(Denied::default()),
                clock,
                started: Instant::now(),
                trusted_until: AtomicU64::new(0),
                max_staleness,
            }),
        }
    }

    /// Whether the local copy is confirmed current (within `max_staleness`): requests are
    /// answered from it; otherwise they get `503`.
    pub fn is_current(&self) -> bool {
        self.inner.elapsed_ms() < self.inner.trusted_until.load(Ordering::Acquire)
    }

    /// Revocations in the local copy now (expired ones not yet dropped included).
    pub fn len(&self) -> usize {
        self.inner.denied.load().len()
    }

    /// Whether the local copy is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `revocation` is in effect in the local copy.
    pub fn contains(&self, revocation: &Revocation) -> bool {
        let denied = self.inner.denied.load();
        let (map, value) = match revocation {
            Revocation::Jti(v) => (&denied.jti, v),
            Revocation::Subject(v) => (&denied.sub, v),
            Revocation::ClientId(v) => (&denied.cid, v),
        };
        map.get(value).is_some_and(|until| *until > unix_ms(&self.inner.clock))
    }

    pub(super) fn add(&self, revocation: Revocation, until_ms: i64) {
        self.inner.denied.rcu(|denied| {
            let mut denied = Denied::clone(denied);
            denied.insert(revocation.clone(), until_ms);
            denied
        });
    }

    fn replace(&self, mut denied: Denied) {
        denied.prune(unix_ms(&self.inner.clock));
        self.inner.denied.store(Arc::new(denied));
    }

    fn confirm(&self) {
        let local = &self.inner;
        let staleness = u64::try_from(local.max_staleness.as_millis()).unwrap_or(u64::MAX);
        local.trusted_until.store(local.elapsed_ms().saturating_add(staleness).max(1), Ordering::Release);
    }
}

impl Local {
    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

impl Revocations for DenyList {
    fn check(&self, principal: &Principal) -> Result<(), AuthError> {
        if !self.is_current() {
            return Err(Unavailable::Revocations.into());
        }
        let denied = self.inner.denied.load();
        if denied.len() == 0 {
            return Ok(());
        }
        let now = unix_ms(&self.inner.clock);
        let hit = |map: &HashMap<String, i64>, value: Option<&str>| {
            value.and_then(|v| map.get(v)).is_some_and(|until| *until > now)
        };
        // The `jti` is read from the raw claims only when some `jti` is revoked.
        let jti = (!denied.jti.is_empty()).then(|| principal.claim("jti")).flatten();
        if hit(&denied.sub, principal.subject())
            || hit(&denied.cid, principal.client_id())
            || hit(&denied.jti, jti.as_ref().and_then(|v| v.as_str()))
        {
            return Err(InvalidToken::Revoked.into());
        }
        Ok(())
    }
}

/// Adds `revocation` until `until_ms` (Unix ms) in Redis and announces it to every replica.
pub(super) async fn revoke(
    client: &Client,
    revocation: &Revocation,
    until_ms: i64,
    deadline: Duration,
) -> Result<(), FleetError> {
    let member = revocation.member();
    let set = client.key("deny", b"");
    // GT: a second, shorter revocation never shortens the first.
    let mut add = redis::cmd("ZADD");
    add.arg(&set).arg("GT").arg(until_ms).arg(&member);
    client.run_within::<i64>(&add, deadline).await?;
    let mut publish = redis::cmd("PUBLISH");
    publish.arg(channel(client)).arg(format!("{until_ms} {member}"));
    client.run_within::<i64>(&publish, deadline).await?;
    Ok(())
}

fn channel(client: &Client) -> String {
    client.key("deny-events", b"")
}

/// Keeps `list` current for as long as the fleet lives: subscribe, reload, apply messages,
/// confirm by heartbeat; on any failure, start over.
pub(super) async fn keep_current(client: Weak<Client>, list: DenyList, heartbeat: Duration) {
    loop {
        let Some(strong) = client.upgrade() else { return };
        if let Err(e) = subscription(&strong, &list, heartbeat).await {
            static LOST: crate::throttle::Throttle = crate::throttle::Throttle::new();
            if let Some(repeated) = LOST.admit() {
                tracing::warn!(reason = "revocations_subscription_lost", error = %e, repeated, "revocation deny-list subscription lost");
            }
        }
        drop(strong);
        tokio::time::sleep(heartbeat).await;
    }
}

/// One subscription, until it fails.
async fn subscription(client: &Client, list: &DenyList, heartbeat: Duration) -> Result<(), FleetError> {
    let pubsub = bounded(client.connect_timeout, client.pubsub.get_async_pubsub()).await?;
    let (mut sink, mut stream) = pubsub.split();
    bounded(client.connect_timeout, sink.subscribe(channel(client))).await?;
    // Subscribed first, then reloaded: nothing announced in between is missed.
    reload(client, list).await?;
    list.confirm();
    let mut beat = tokio::time::interval(heartbeat);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = poll_fn(|cx| std::pin::Pin::new(&mut stream).poll_next(cx)) => {
                let Some(message) = message else {
                    return Err(FleetError::Redis(redis::RedisError::from((redis::ErrorKind::Io, "subscription closed"))));
                };
                let payload: Vec<u8> = message.get_payload_bytes().to_vec();
                apply(list, &payload);
            }
            _ = beat.tick() => {
                bounded(client.deadline, sink.ping::<redis::Value>()).await?;
                list.confirm();
            }
        }
    }
}

/// A call on the subscription's own connection, within `deadline`.
async fn bounded<T>(
    deadline: Duration,
    call: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, FleetError> {
    match tokio::time::timeout(deadline, call).await {
        Ok(result) => result.map_err(FleetError::Redis),
        Err(_) => Err(FleetError::Timeout),
    }
}

/// One announcement: `<until_ms> <kind>:<value>`.
fn apply(list: &DenyList, payload: &[u8]) {
    let Ok(text) = std::str::from_utf8(payload) else { return };
    let Some((until, member)) = text.split_once(' ') else { return };
    let (Ok(until), Some(revocation)) = (until.parse::<i64>(), Revocation::from_member(member)) else {
        tracing::debug!("unreadable revocation announcement ignored");
        return;
    };
    list.add(revocation, until);
}

/// The whole list, replacing the local copy.
async fn reload(client: &Client, list: &DenyList) -> Result<(), FleetError> {
    let now = unix_ms(&list.inner.clock);
    let set = client.key("deny", b"");
    // Expired entries are dropped from Redis too, so the set stays the size of what is live.
    let mut trim = redis::cmd("ZREMRANGEBYSCORE");
    trim.arg(&set).arg("-inf").arg(now);
    client.run::<i64>(&trim).await?;
    let mut range = redis::cmd("ZRANGE");
    range.arg(&set).arg(now).arg("+inf").arg("BYSCORE").arg("WITHSCORES");
    // A large list may take longer than one lookup's deadline.
    let entries: Vec<(String, f64)> = client.run_within(&range, client.deadline.saturating_mul(20)).await?;
    let mut denied = Denied::default();
    for (member, until) in entries {
        if let Some(revocation) = Revocation::from_member(&member) {
            denied.insert(revocation, until as i64);
        }
    }
    // What this replica knows and Redis lost (a restart without persistence, `FLUSHALL`) is
    // written back: a revocation lives as long as one replica remembers it.
    let mut lost = Denied::default();
    let local = list.inner.denied.load();
    for (mine, theirs, lost) in [
        (&local.jti, &denied.jti, &mut lost.jti),
        (&local.sub, &denied.sub, &mut lost.sub),
        (&local.cid, &denied.cid, &mut lost.cid),
    ] {
        for (value, until) in mine.iter() {
            if *until > now && theirs.get(value).is_none_or(|t| t < until) {
                lost.insert(value.clone(), *until);
            }
        }
    }
    if lost.len() > 0 {
        let mut add = redis::cmd("ZADD");
        add.arg(&set).arg("GT");
        for (prefix, map) in [("jti", &lost.jti), ("sub", &lost.sub), ("cid", &lost.cid)] {
            for (value, until) in map {
                add.arg(*until).arg(format!("{prefix}:{value}"));
            }
        }
        client.run_within::<i64>(&add, client.deadline.saturating_mul(20)).await?;
        tracing::info!(restored = lost.len(), "revocations lost by Redis written back");
        for (map, mine) in
            [(&mut denied.jti, lost.jti), (&mut denied.sub, lost.sub), (&mut denied.cid, lost.cid)]
        {
            map.extend(mine);
        }
    }
    list.replace(denied);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_round_trip_and_announcements_apply() {
        for r in
            [Revocation::Jti("a:b".into()), Revocation::Subject("s".into()), Revocation::ClientId("c".into())]
        {
            assert_eq!(Revocation::from_member(&r.member()), Some(r));
        }
        assert_eq!(Revocation::from_member("xyz:1"), None);
        let list = DenyList::new(Clock::system(), Duration::from_secs(1));
        let far = i64::MAX / 2;
        apply(&list, format!("{far} sub:alice").as_bytes());
        apply(&list, b"garbage");
        apply(&list, b"12 nope:x");
        assert!(list.contains(&Revocation::Subject("alice".into())));
        assert_eq!(list.len(), 1);
        // Not yet confirmed current: requests get 503, never a pass.
        let p = Principal::builder(crate::principal::TokenKind::Opaque).subject("bob").build();
        assert_eq!(list.check(&p), Err(Unavailable::Revocations.into()));
        list.confirm();
        assert_eq!(list.check(&p), Ok(()));
        let alice = Principal::builder(crate::principal::TokenKind::Opaque).subject("alice").build();
        assert_eq!(list.check(&alice), Err(InvalidToken::Revoked.into()));
    }
}
