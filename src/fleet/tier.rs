//! The shared introspection tier: answers of the introspection endpoint in Redis, keyed and
//! sealed with the fleet key, so that one call serves the whole fleet and nobody who can write
//! to Redis can make up an answer.

use std::sync::Arc;

use crate::introspect::{SharedAnswer, SharedLookup, SharedTier};
use crate::mac;
use crate::time::Clock;

use super::client::{Client, unix_ms};

/// A [`SharedTier`] for [`IntrospectorBuilder::shared_tier`](crate::IntrospectorBuilder::shared_tier),
/// from [`Fleet::introspection_tier`](super::Fleet::introspection_tier).
///
/// Key: `PREFIX i:` + HMAC(fleet key, endpoint, SHA-256 of the token), never the token.
/// Value: HMAC(fleet key, key, value) + freshness (Unix ms) + the endpoint's body; a value
/// whose MAC does not verify (written by someone without the fleet key, or for another key) is
/// a miss. Its Redis lifetime is what remains of its freshness, at most `min(exp, max_ttl)`.
/// Any failure of Redis is a miss: the introspector then calls the endpoint.
#[derive(Clone)]
pub struct IntrospectionTier {
    pub(super) client: Arc<Client>,
    pub(super) clock: Clock,
}

impl std::fmt::Debug for IntrospectionTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntrospectionTier").field("prefix", &self.client.prefix).finish_non_exhaustive()
    }
}

const MAC_BYTES: usize = 32;

impl IntrospectionTier {
    fn redis_key(&self, endpoint: &str, token_hash: &[u8; 32]) -> String {
        let id =
            mac::hmac(&self.client.key, &[b"introspection key\0", endpoint.as_bytes(), b"\0", token_hash]);
        self.client.key("i", &id)
    }

    fn seal(&self, key: &str, fresh_until_ms: i64, body: &[u8]) -> Vec<u8> {
        let fresh = fresh_until_ms.to_be_bytes();
        let tag =
            mac::hmac(&self.client.key, &[b"introspection value\0", key.as_bytes(), b"\0", &fresh, body]);
        let mut value = Vec::with_capacity(MAC_BYTES + fresh.len() + body.len());
        value.extend_from_slice(&tag);
        value.extend_from_slice(&fresh);
        value.extend_from_slice(body);
        value
    }

    fn open(&self, key: &str, value: &[u8]) -> Option<SharedAnswer> {
        let (tag, rest) = value.split_at_checked(MAC_BYTES)?;
        let (fresh, body) = rest.split_at_checked(8)?;
        let expected =
            mac::hmac(&self.client.key, &[b"introspection value\0", key.as_bytes(), b"\0", fresh, body]);
        if !mac::equal(tag, &expected) {
            tracing::warn!(
                reason = "fleet_tier_bad_mac",
                "shared introspection answer not sealed with the fleet key"
            );
            return None;
        }
        let fresh_until_ms = i64::from_be_bytes(fresh.try_into().ok()?);
        (fresh_until_ms > unix_ms(&self.clock)).then(|| SharedAnswer { fresh_until_ms, body: body.to_vec() })
    }
}

impl SharedTier for IntrospectionTier {
    fn get(&self, endpoint: &str, token_hash: &[u8; 32]) -> SharedLookup {
        let key = self.redis_key(endpoint, token_hash);
        let this = self.clone();
        Box::pin(async move {
            let value: Option<Vec<u8>> = match this.client.run(redis::cmd("GET").arg(&key)).await {
                Ok(value) => value,
                Err(e) => {
                    tracing::debug!(error = %e, "shared introspection tier unavailable: a miss");
                    return None;
                }
            };
            this.open(&key, &value?)
        })
    }

    fn put(&self, endpoint: &str, token_hash: &[u8; 32], answer: SharedAnswer) {
        let left = answer.fresh_until_ms.saturating_sub(unix_ms(&self.clock));
        if left <= 0 {
            return;
        }
        let key = self.redis_key(endpoint, token_hash);
        let value = self.seal(&key, answer.fresh_until_ms, &answer.body);
        let client = self.client.clone();
        // The request has its answer already: sharing it must not delay it.
        self.client.runtime.spawn(async move {
            let mut set = redis::cmd("SET");
            set.arg(&key).arg(value).arg("PX").arg(left);
            if let Err(e) = client.run::<()>(&set).await {
                tracing::debug!(error = %e, "introspection answer not shared");
            }
        });
    }
}
