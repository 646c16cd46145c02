//! `[redis]`: the fleet's shared state (shared introspection answers, revocations, DPoP replay).
//! Needs the binary to be built with the `redis` feature; without it a `[redis]` table is a
//! configuration error.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

/// `[redis]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisFile {
    /// `redis://` or `rediss://` URL of one server (user and password allowed: ACL users).
    pub url: Option<Spanned<String>>,
    /// URLs of Redis Cluster nodes, instead of `url`.
    pub cluster: Option<Vec<String>>,
    /// The fleet key: from this environment variable...
    pub key_env: Option<String>,
    /// ...or this file.
    pub key_file: Option<PathBuf>,
    /// Prefix of every key and channel (default `tower-bearer:`).
    pub prefix: Option<String>,
    /// Longest a request waits on one Redis call (default 50).
    pub deadline_ms: Option<u64>,
    /// Longest a connection attempt may take (default 500).
    pub connect_timeout_ms: Option<u64>,
    /// Interval of the heartbeat PINGs (default 250).
    pub heartbeat_ms: Option<u64>,
    /// Shared introspection answers (default true).
    pub shared_introspection: Option<bool>,
    /// Revocations checked on every request (default true).
    pub revocations: Option<bool>,
    /// Longest the local copy of the deny-list is served unconfirmed, then 503 (default 2000).
    pub max_staleness_ms: Option<u64>,
    /// DPoP replay store policy when Redis is down: "local" (default) or "strict" (503).
    pub replay: Option<String>,
}

/// `[redis]`, checked.
pub struct RedisConfig {
    pub urls: Vec<String>,
    pub cluster: bool,
    pub key: Vec<u8>,
    pub prefix: Option<String>,
    pub deadline: Option<Duration>,
    pub connect_timeout: Option<Duration>,
    pub heartbeat: Option<Duration>,
    pub max_staleness: Option<Duration>,
    pub shared_introspection: bool,
    pub revocations: bool,
    pub strict_replay: bool,
}

impl std::fmt::Debug for RedisConfig {
    // URLs may hold a password; the key is secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("nodes", &self.urls.len())
            .field("cluster", &self.cluster)
            .field("shared_introspection", &self.shared_introspection)
            .field("revocations", &self.revocations)
            .field("strict_replay", &self.strict_replay)
            .finish_non_exhaustive()
    }
}

impl RedisConfig {
    /// One line for `check-config`, without secrets.
    pub fn summary(&self) -> String {
        let hosts: Vec<String> = self.urls.iter().map(|u| without_password(u)).collect();
        format!(
            "redis {} ({}; shared introspection {}, revocations {}, replay {})",
            hosts.join(", "),
            if self.cluster { "cluster" } else { "single server" },
            on(self.shared_introspection),
            on(self.revocations),
            if self.strict_replay { "strict" } else { "local fallback" },
        )
    }
}

fn on(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

pub fn without_password(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://…@{}", &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// Checks `[redis]`; `nowhere(key, message)` words an error.
pub fn check<E>(file: &RedisFile, nowhere: impl Fn(&str, String) -> E) -> Result<RedisConfig, E> {
    if !cfg!(feature = "redis") {
        return Err(nowhere("redis", "this tower-bearer was built without the `redis` feature".into()));
    }
    let (urls, cluster) = match (&file.url, &file.cluster) {
        (Some(url), None) => (vec![url.get_ref().clone()], false),
        (None, Some(nodes)) if !nodes.is_empty() => (nodes.clone(), true),
        _ => {
            return Err(nowhere(
                "redis",
                "give exactly one of `url` and `cluster` (a non-empty list)".into(),
            ));
        }
    };
    for url in &urls {
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(nowhere(
                "redis.url",
                format!("`{}`: need redis:// or rediss://", without_password(url)),
            ));
        }
    }
    let key = match (&file.key_env, &file.key_file) {
        (Some(var), None) => std::env::var(var)
            .map_err(|_| nowhere("redis.key_env", format!("environment variable `{var}` is not set")))?
            .into_bytes(),
        (None, Some(path)) => {
            let mut key = std::fs::read(path)
                .map_err(|e| nowhere("redis.key_file", format!("cannot read {}: {e}", path.display())))?;
            while key.last().is_some_and(|b| matches!(b, b'\r' | b'\n')) {
                key.pop();
            }
            key
        }
        _ => return Err(nowhere("redis", "give exactly one of key_env and key_file (the fleet key)".into())),
    };
    if key.len() < 16 {
        return Err(nowhere("redis", "the fleet key must be at least 16 bytes".into()));
    }
    let ms = |v: Option<u64>, name: &str| -> Result<Option<Duration>, E> {
        match v {
            Some(0) => Err(nowhere(name, "must be more than 0".into())),
            v => Ok(v.map(Duration::from_millis)),
        }
    };
    let deadline = ms(file.deadline_ms, "redis.deadline_ms")?;
    let heartbeat = ms(file.heartbeat_ms, "redis.heartbeat_ms")?;
    let max_staleness = ms(file.max_staleness_ms, "redis.max_staleness_ms")?;
    let strict_replay = match file.replay.as_deref() {
        None | Some("local") => false,
        Some("strict") => true,
        Some(other) => {
            return Err(nowhere("redis.replay", format!("`{other}`: expected \"local\" or \"strict\"")));
        }
    };
    if heartbeat.unwrap_or(Duration::from_millis(250)) >= max_staleness.unwrap_or(Duration::from_secs(2)) {
        return Err(nowhere("redis.heartbeat_ms", "must be shorter than max_staleness_ms".into()));
    }
    Ok(RedisConfig {
        urls,
        cluster,
        key,
        prefix: file.prefix.clone(),
        deadline,
        connect_timeout: ms(file.connect_timeout_ms, "redis.connect_timeout_ms")?,
        heartbeat,
        max_staleness,
        shared_introspection: file.shared_introspection.unwrap_or(true),
        revocations: file.revocations.unwrap_or(true),
        strict_replay,
    })
}

#[cfg(feature = "redis")]
mod enabled {
    use std::sync::OnceLock;

    use tower_bearer::fleet::{Fleet, ReplayPolicy};

    use super::RedisConfig;

    /// The process's fleet handle, once `[redis]` was configured and connected.
    static FLEET: OnceLock<Fleet> = OnceLock::new();

    /// Builds the fleet handle of `config` (within the runtime).
    pub fn build(config: &RedisConfig) -> Result<Fleet, String> {
        let mut builder = if config.cluster {
            Fleet::cluster(config.urls.iter().cloned())
        } else {
            Fleet::builder(config.urls[0].clone())
        }
        .key(&config.key);
        if let Some(prefix) = &config.prefix {
            builder = builder.prefix(prefix.clone());
        }
        if let Some(d) = config.deadline {
            builder = builder.deadline(d);
        }
        if let Some(d) = config.connect_timeout {
            builder = builder.connect_timeout(d);
        }
        if let Some(d) = config.heartbeat {
            builder = builder.heartbeat(d);
        }
        if let Some(d) = config.max_staleness {
            builder = builder.max_staleness(d);
        }
        if config.strict_replay {
            builder = builder.replay_policy(ReplayPolicy::Strict);
        }
        builder.build().map_err(|e| format!("redis: {e}"))
    }

    /// Builds and installs the process's fleet handle.
    pub fn install(config: &RedisConfig) -> Result<(), String> {
        let fleet = build(config)?;
        let _ = FLEET.set(fleet);
        Ok(())
    }

    /// The shared introspection tier, if configured.
    pub fn introspection_tier() -> Option<tower_bearer::fleet::IntrospectionTier> {
        FLEET.get().map(Fleet::introspection_tier)
    }

    /// The deny-list, if configured.
    pub fn deny_list() -> Option<tower_bearer::fleet::DenyList> {
        FLEET.get().map(Fleet::deny_list)
    }

    /// The shared DPoP replay store, if configured (for the gateway's DPoP policy).
    pub fn replay_store() -> Option<tower_bearer::fleet::SharedReplayStore> {
        FLEET.get().map(Fleet::replay_store)
    }
}

#[cfg(feature = "redis")]
pub use enabled::*;

/// `[redis]` is refused at check time without the feature: nothing to install.
#[cfg(not(feature = "redis"))]
pub fn install(_: &RedisConfig) -> Result<(), String> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_toml(text: &str) -> Result<RedisConfig, String> {
        let file: RedisFile = toml::from_str(text).map_err(|e| e.to_string())?;
        check(&file, |key, message| format!("{key}: {message}"))
    }

    #[test]
    fn redis_table() {
        let dir = tempfile::Builder::new().prefix("tb-fleet-key-").tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, "sixteen bytes at least\n").unwrap();
        let good = format!(
            "url = \"rediss://user:pw@r.example:6380\"\nkey_file = \"{}\"\nreplay = \"strict\"",
            key.display()
        );
        if !cfg!(feature = "redis") {
            assert!(check_toml(&good).unwrap_err().contains("without the `redis` feature"));
            return;
        }
        let config = check_toml(&good).unwrap();
        assert!(config.strict_replay && !config.cluster && config.key == b"sixteen bytes at least");
        assert!(!config.summary().contains("pw"), "{}", config.summary());
        let key_line = format!("key_file = \"{}\"", key.display());
        for (text, error) in [
            (format!("url = \"http://x\"\n{key_line}"), "redis.url"),
            (key_line.clone(), "exactly one of `url` and `cluster`"),
            ("url = \"redis://x\"".to_owned(), "key_env and key_file"),
            (format!("url = \"redis://x\"\n{key_line}\nreplay = \"maybe\""), "redis.replay"),
            (format!("url = \"redis://x\"\n{key_line}\nheartbeat_ms = 5000"), "shorter than max_staleness"),
            (format!("url = \"redis://x\"\n{key_line}\ndeadline_ms = 0"), "redis.deadline_ms"),
            ("url = \"redis://x\"\nkey_env = \"TB_SURELY_UNSET_VARIABLE\"".to_owned(), "is not set"),
        ] {
            let err = check_toml(&text).unwrap_err();
            assert!(err.contains(error), "{text}: {err}");
        }
        assert!(check_toml("bogus = 1").is_err(), "unknown keys are refused");
    }
}
