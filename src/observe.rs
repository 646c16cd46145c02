//! Counters through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`); without
//! the feature every function here is empty and compiles away. Labels are stable reason codes,
//! never tokens, key ids or URLs: their cardinality is fixed by this crate.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `tower_bearer_decisions_total` | counter | `outcome` (`authenticated`, `anonymous`, `rejected`, `throttled`, `unavailable`), `reason` |
//! | `tower_bearer_scope_rejections_total` | counter | `reason` (`insufficient_scope`, or `missing_token` on a route no bearer layer guards) |
//! | `tower_bearer_token_cache_total` | counter | `result` (`hit`, `miss`) |
//! | `tower_bearer_key_set_fetches_total` | counter | `result` (`ok`, `error`) |
//! | `tower_bearer_introspection_calls_total` | counter | `result` (`active`, `inactive`, `error`) |
//! | `tower_bearer_introspection_duration_seconds` | histogram | — |
//! | `tower_bearer_fleet_total` | counter | `event` (`error`, `timeout`, `circuit_open`, `replay_local_only`) |

#[cfg(feature = "metrics")]
mod enabled {
    use std::time::Duration;

    use crate::error::AuthError;

    pub(crate) fn authenticated() {
        metrics::counter!("tower_bearer_decisions_total", "outcome" => "authenticated", "reason" => "valid")
            .increment(1);
    }

    pub(crate) fn scope_rejected(err: &AuthError) {
        metrics::counter!("tower_bearer_scope_rejections_total", "reason" => err.reason()).increment(1);
    }

    pub(crate) fn anonymous() {
        metrics::counter!("tower_bearer_decisions_total", "outcome" => "anonymous", "reason" => "no_token")
            .increment(1);
    }

    pub(crate) fn rejected(err: &AuthError) {
        let outcome = match err {
            AuthError::Unavailable(_) => "unavailable",
            AuthError::Throttled(_) => "throttled",
            _ => "rejected",
        };
        metrics::counter!("tower_bearer_decisions_total", "outcome" => outcome, "reason" => err.reason())
            .increment(1);
    }

    pub(crate) fn token_cache(hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        metrics::counter!("tower_bearer_token_cache_total", "result" => result).increment(1);
    }

    pub(crate) fn key_set_fetch(ok: bool) {
        let result = if ok { "ok" } else { "error" };
        metrics::counter!("tower_bearer_key_set_fetches_total", "result" => result).increment(1);
    }

    pub(crate) fn introspection(result: &'static str, took: Duration) {
        metrics::counter!("tower_bearer_introspection_calls_total", "result" => result).increment(1);
        metrics::histogram!("tower_bearer_introspection_duration_seconds").record(took.as_secs_f64());
    }

    #[allow(dead_code)] // only the `redis` feature counts fleet events
    pub(crate) fn fleet(event: &'static str) {
        metrics::counter!("tower_bearer_fleet_total", "event" => event).increment(1);
    }
}

#[cfg(not(feature = "metrics"))]
mod enabled {
    use std::time::Duration;

    use crate::error::AuthError;

    #[inline(always)]
    pub(crate) fn authenticated() {}
    #[inline(always)]
    pub(crate) fn scope_rejected(_: &AuthError) {}
    #[inline(always)]
    pub(crate) fn anonymous() {}
    #[inline(always)]
    pub(crate) fn rejected(_: &AuthError) {}
    #[inline(always)]
    pub(crate) fn token_cache(_: bool) {}
    #[inline(always)]
    pub(crate) fn key_set_fetch(_: bool) {}
    #[inline(always)]
    pub(crate) fn introspection(_: &'static str, _: Duration) {}

    #[allow(dead_code)] // only the `redis` feature counts fleet events
    pub(crate) fn fleet(_: &'static str) {}
}

pub(crate) use enabled::*;
