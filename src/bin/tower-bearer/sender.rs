//! Sender-constrained tokens in the configuration: `[dpop]` (RFC 9449) and
//! `[client_certificate]` (RFC 8705 through the gateway's forwarded header).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::HeaderName;
use serde::Deserialize;
use tower_bearer::CertificateHeader;
use tower_bearer::dpop::{DEFAULT_REPLAY_ENTRIES, Dpop, DpopNonces, InMemoryReplayStore, WindowHistory};

/// `[dpop]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpopFile {
    /// `off`, `allowed` (default) or `required`.
    pub mode: Option<String>,
    /// The public origin clients see (`https://api.example`): `htu` is it plus the original path.
    pub origin: Option<String>,
    /// How far a proof's `iat` may be from now, either way.
    pub iat_window_secs: Option<u64>,
    /// Server nonces on, keyed by the secret in this environment variable (the same on every
    /// replica).
    pub nonce_secret_env: Option<String>,
    /// The same, with the secret in this file.
    pub nonce_secret_file: Option<std::path::PathBuf>,
    /// Live proofs the replay store holds.
    pub replay_entries: Option<usize>,
    /// Live proofs one proof key may hold in it.
    pub replay_entries_per_key: Option<usize>,
}

/// The bounds of `[dpop]`'s replay store (this process's record, with or without `[redis]`):
/// its entries, one key's share of them, and how long a proof is kept (its `iat` window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayBounds {
    pub entries: usize,
    pub per_key: usize,
    pub window: Duration,
}

impl ReplayBounds {
    /// The store the running configuration uses, so that a reload does not forget the proofs
    /// recorded (they could be replayed); a new one of these bounds when none is in use. With
    /// it, the history of the windows its proofs were recorded under (see [`WindowHistory`]).
    pub fn store(self) -> (Arc<InMemoryReplayStore>, WindowHistory) {
        IN_USE.store(self)
    }

    /// Gives the store in use these bounds, and its history this window. Called for the first
    /// configuration, then just before each reloaded one takes over, once nothing can refuse it:
    /// a reload refused after reading `[dpop]` changes nothing.
    pub fn apply(self) {
        IN_USE.apply(self);
    }
}

/// The process's replay store: the one every configuration, running or being read, shares.
static IN_USE: StoreInUse = StoreInUse(Mutex::new(None));

/// Made with the first configuration that has `[dpop]`, then kept for the life of the process,
/// also while a configuration without `[dpop]` (or with `mode = "off"`) runs: a reload that turns
/// DPoP off and on again within a proof's `iat` window must not forget the proofs recorded
/// before. Its memory stays within its bound meanwhile. With it, the windows its proofs were
/// recorded under: a reload widening `iat_window_secs` must not take again a proof the store
/// forgot when the narrower window ended.
struct StoreInUse(Mutex<Option<(Arc<InMemoryReplayStore>, WindowHistory)>>);

impl StoreInUse {
    fn store(&self, bounds: ReplayBounds) -> (Arc<InMemoryReplayStore>, WindowHistory) {
        let mut in_use = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (store, history) = in_use.get_or_insert_with(|| {
            // Its first window is installed when its configuration is applied: a reload that
            // brings the first `[dpop]` may yet be refused.
            (Arc::new(InMemoryReplayStore::new(bounds.entries).per_key(bounds.per_key)), WindowHistory::new())
        });
        (Arc::clone(store), history.clone())
    }

    fn apply(&self, bounds: ReplayBounds) {
        let in_use = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((store, history)) = in_use.as_ref() {
            store.resize(bounds.entries, bounds.per_key);
            history.install(bounds.window);
        }
    }
}

/// `[client_certificate]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCertificateFile {
    /// The header the gateway forwards the client certificate in.
    pub header: String,
    /// `escaped-pem` (nginx), `der-base64` (Caddy) or `envoy-xfcc`.
    pub format: String,
}

/// The checked `[dpop]` table, with its replay store's bounds; `Ok(None)` when absent or `off`.
/// Errors are `(key, message)`.
pub fn dpop(file: &DpopFile) -> Result<Option<(Dpop, ReplayBounds)>, (&'static str, String)> {
    let mode = file.mode.as_deref().unwrap_or("allowed");
    if mode == "off" {
        return Ok(None);
    }
    let entries = file.replay_entries.unwrap_or(DEFAULT_REPLAY_ENTRIES);
    if entries == 0 {
        return Err(("dpop.replay_entries", "must be at least 1".to_owned()));
    }
    let per_key = file.replay_entries_per_key.unwrap_or((entries / 10).max(1));
    if per_key == 0 {
        return Err(("dpop.replay_entries_per_key", "must be at least 1".to_owned()));
    }
    let window = match file.iat_window_secs {
        Some(0) => return Err(("dpop.iat_window_secs", "must be at least 1".to_owned())),
        Some(secs) => Duration::from_secs(secs),
        None => tower_bearer::dpop::defaults::IAT_WINDOW,
    };
    let bounds = ReplayBounds { entries, per_key, window };
    let origin = file
        .origin
        .as_deref()
        .ok_or(("dpop.origin", "the public origin is required (e.g. https://api.example)".to_owned()))?;
    let dpop = match mode {
        "allowed" => Dpop::allowed(origin),
        "required" => Dpop::required(origin),
        other => return Err(("dpop.mode", format!("`{other}`: expected off, allowed or required"))),
    }
    .map_err(|e| ("dpop.origin", e.to_string()))?;
    let dpop = dpop.iat_window(window);
    // Last, once nothing else in `[dpop]` can be refused.
    let shared = |dpop: Dpop| {
        let (store, history) = bounds.store();
        Ok(Some((dpop.replay_store(store).window_history(history), bounds)))
    };
    let (key, secret) = match (&file.nonce_secret_env, &file.nonce_secret_file) {
        (None, None) => return shared(dpop),
        (Some(var), None) => (
            "dpop.nonce_secret_env",
            std::env::var(var)
                .map_err(|_| ("dpop.nonce_secret_env", format!("environment variable `{var}` is not set")))?,
        ),
        (None, Some(path)) => (
            "dpop.nonce_secret_file",
            std::fs::read_to_string(path)
                .map_err(|e| ("dpop.nonce_secret_file", format!("cannot read {}: {e}", path.display())))?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
        ),
        _ => return Err(("dpop", "give at most one of nonce_secret_env and nonce_secret_file".to_owned())),
    };
    if secret.len() < 32 {
        return Err((key, "the nonce secret must hold at least 32 bytes".to_owned()));
    }
    let nonces = DpopNonces::new(secret.as_bytes(), Duration::from_secs(300));
    shared(dpop.nonces(nonces))
}

/// The checked `[client_certificate]` table.
pub fn client_certificate(
    file: &ClientCertificateFile,
) -> Result<(HeaderName, CertificateHeader), (&'static str, String)> {
    let name = HeaderName::try_from(file.header.as_str()).map_err(|_| {
        ("client_certificate.header", format!("`{}` is not a valid header name", file.header))
    })?;
    let format = match file.format.as_str() {
        "escaped-pem" => CertificateHeader::EscapedPem,
        "der-base64" => CertificateHeader::DerBase64,
        "envoy-xfcc" => CertificateHeader::EnvoyXfcc,
        other => {
            return Err((
                "client_certificate.format",
                format!("`{other}`: expected escaped-pem, der-base64 or envoy-xfcc"),
            ));
        }
    };
    Ok((name, format))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_bearer::dpop::{ReplayError, ReplayKey, ReplayStore};

    /// A reload keeps the proofs recorded, whatever its bounds: one seen before is still a
    /// replay. New bounds apply to the same store once applied (not when read); and a store no
    /// configuration holds (DPoP turned off by a reload) is kept for the next one.
    #[test]
    fn a_reload_keeps_the_replay_store() {
        // A registry of its own: the process's is shared with the tests that read configurations.
        let in_use = StoreInUse(Mutex::new(None));
        let sizes = ReplayBounds { entries: 12_345, per_key: 67, window: Duration::from_secs(60) };
        let (running, history) = in_use.store(sizes);
        let key = ReplayKey::from_bytes([9; 32]);
        let other = ReplayKey::from_bytes([8; 32]);
        assert_eq!(running.record(key, 100, 0), Ok(()));
        let (reloaded, _) = in_use.store(sizes);
        assert!(Arc::ptr_eq(&running, &reloaded));
        assert_eq!(reloaded.record(key, 100, 1), Err(ReplayError::Replayed));
        let one = ReplayBounds { entries: 1, per_key: 1, window: Duration::from_secs(60) };
        let (resized, _) = in_use.store(one);
        assert!(Arc::ptr_eq(&running, &resized));
        assert_eq!(resized.record(key, 100, 2), Err(ReplayError::Replayed));
        assert_eq!(resized.record(other, 100, 2), Ok(()), "read, not applied: the old bounds hold");
        in_use.apply(one);
        let third = ReplayKey::from_bytes([7; 32]);
        assert_eq!(resized.record(third, 100, 2), Err(ReplayError::Full), "applied: the new bound holds");
        drop((running, reloaded, resized, history));
        // `[dpop]` off: no configuration holds the store. On again, with other bounds:
        let (again, _) = in_use.store(sizes);
        assert_eq!(again.record(key, 100, 3), Err(ReplayError::Replayed), "off and on forgot the proofs");
    }
}
