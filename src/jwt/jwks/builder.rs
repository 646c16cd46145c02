//! [`KeySetBuilder`]: a remote key set's settings, each with a safe default.

use std::sync::Arc;
use std::time::Duration;

use crate::config::ConfigError;
use crate::discovery::Discovery;
use crate::outbound::{HttpClient, http_url};

use super::*;

/// Builder for a remote [`KeySet`]. Every setting has a safe default ([`defaults`]).
#[derive(Debug)]
pub struct KeySetBuilder {
    pub(super) url: Source,
    pub(super) background: bool,
    pub(super) config: KeySetConfig,
    pub(super) timeout: Duration,
    pub(super) connect_timeout: Option<Duration>,
    pub(super) client: Option<HttpClient>,
}

impl KeySetBuilder {
    /// Freshness when the JWKS response carries no `Cache-Control: max-age`.
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.config.default_ttl = ttl;
        self
    }
    /// Clamp for `Cache-Control: max-age`: never refresh more often than `min`, never keep a set
    /// longer than `max`.
    pub fn ttl_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.config.min_ttl = min;
        self.config.max_ttl = max;
        self
    }
    /// Least time between two refetches caused by unknown `kid`s (default 30 s). This is what
    /// stops a flood of made-up `kid`s from becoming a flood of fetches.
    pub fn refetch_cooldown(mut self, cooldown: Duration) -> Self {
        self.config.cooldown = cooldown;
        self
    }
    /// Least time between two fetch attempts while no key set was ever loaded (default 1 s).
    pub fn retry_unavailable(mut self, interval: Duration) -> Self {
        self.config.retry_unavailable = interval;
        self
    }
    /// Timeout of the whole fetch, body included (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self.config.timeout = timeout;
        self
    }
    /// Connect timeout (default 2 s). Setting it gives this key set a client of its own
    /// instead of the shared one.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }
    /// Largest JWKS body accepted (default 512 KiB).
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.config.max_body_bytes = bytes;
        self
    }
    /// Fetches with this client (proxies, private roots) instead of the shared one. The
    /// per-request timeout of this builder is still set on every fetch.
    pub fn http_client(mut self, client: HttpClient) -> Self {
        self.client = Some(client);
        self
    }

    /// Refreshes the set in a background task instead of on the request path: the first load
    /// starts at once (retried with exponential back-off while it fails, from
    /// [`Self::retry_unavailable`] up to [`Self::refetch_cooldown`]), and each later refresh
    /// happens at 90 % of the set's lifetime, so no request waits for a routine refresh. The task
    /// ends when the last clone of the key set is dropped. Needs a tokio runtime at
    /// [`Self::build`]; without one, refreshes stay request-driven.
    pub fn background_refresh(mut self, on: bool) -> Self {
        self.background = on;
        self
    }

    /// Builds the key set. Nothing is fetched yet (unless [`Self::background_refresh`] is on).
    pub fn build(self) -> Result<KeySet, ConfigError> {
        let url = match self.url {
            Source::Url(url) => Location::Fixed(http_url("jwks_uri", &url)?),
            Source::Discovery(discovery) => Location::Discovered(discovery),
        };
        if self.config.min_ttl > self.config.max_ttl {
            return Err(ConfigError::Invalid("key set ttl_bounds: min is above max"));
        }
        let client = match self.client {
            Some(c) => c,
            None => HttpClient::shared_or_with(self.connect_timeout)?,
        };
        let mut config = self.config;
        config.default_ttl = config.default_ttl.clamp(config.min_ttl, config.max_ttl);
        let remote = Remote { url, client, config };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) if self.background => {
                let (stop, stopped) = tokio::sync::oneshot::channel();
                let set = KeySet::new(Some(remote), empty_keys(), Some(stop));
                runtime.spawn(background_refresh(Arc::downgrade(&set.inner), stopped));
                Ok(set)
            }
            Ok(_) => Ok(KeySet::new(Some(remote), empty_keys(), None)),
            Err(_) => {
                if self.background {
                    tracing::warn!("no tokio runtime at KeySet::build: background refresh is off");
                }
                Ok(KeySet::new(Some(remote), empty_keys(), None))
            }
        }
    }
}

/// What a builder fetches from.
#[derive(Debug)]
pub(super) enum Source {
    Url(String),
    Discovery(Discovery),
}
