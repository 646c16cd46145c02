//! Time: where "now" comes from ([`Clock`]), the `exp`/`nbf`/`iat` checks every token kind shares,
//! and lifetimes that cannot overflow.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::InvalidToken;

/// Where "now" comes from for `exp`/`nbf`/`iat` checks. The system clock by default; tests and
/// simulations can supply their own.
#[derive(Clone)]
pub struct Clock(Option<Arc<dyn Fn() -> SystemTime + Send + Sync>>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock(None)
    }
    /// A clock that asks `now` for the time.
    pub fn from_fn(now: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        Clock(Some(Arc::new(now)))
    }
    /// The current time.
    pub fn now(&self) -> SystemTime {
        match &self.0 {
            None => SystemTime::now(),
            Some(f) => f(),
        }
    }
    /// The current time in whole seconds since the Unix epoch (negative before 1970).
    pub fn unix_now(&self) -> i64 {
        match self.now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "Clock(custom)" } else { "Clock(system)" })
    }
}

/// The longest any cache here keeps anything: lifetimes from input (`exp`, `max-age`) or from
/// configuration are clamped to it, so that no time arithmetic can overflow (and moka, which
/// refuses lifetimes over 1 000 years, is never handed one).
pub(crate) const LONGEST_LIFETIME: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `now + after`, with `after` clamped to [`LONGEST_LIFETIME`]; `now` itself when even that
/// does not fit (a clock at the end of time: nothing is then kept).
pub(crate) fn later(now: SystemTime, after: Duration) -> SystemTime {
    now.checked_add(after.min(LONGEST_LIFETIME)).unwrap_or(now)
}

/// Time-based claim checks shared by every token kind.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TimeWindow {
    pub(crate) leeway: i64,
    /// JWT access tokens must carry `exp` (RFC 9068); introspection responses may omit it.
    pub(crate) require_exp: bool,
}

impl TimeWindow {
    pub(crate) fn check(
        &self,
        now: i64,
        exp: Option<i64>,
        nbf: Option<i64>,
        iat: Option<i64>,
    ) -> Result<(), InvalidToken> {
        match exp {
            None if self.require_exp => return Err(InvalidToken::MissingExpiry),
            Some(exp) if now >= exp.saturating_add(self.leeway) => {
                return Err(InvalidToken::Expired);
            }
            _ => {}
        }
        if nbf.is_some_and(|nbf| nbf > now.saturating_add(self.leeway)) {
            return Err(InvalidToken::NotYetValid);
        }
        if iat.is_some_and(|iat| iat > now.saturating_add(self.leeway)) {
            return Err(InvalidToken::IssuedInFuture);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_window_edges() {
        let w = TimeWindow { leeway: 0, require_exp: true };
        assert_eq!(w.check(100, None, None, None), Err(InvalidToken::MissingExpiry));
        assert_eq!(w.check(100, Some(100), None, None), Err(InvalidToken::Expired));
        assert_eq!(w.check(99, Some(100), None, None), Ok(()));
        assert_eq!(w.check(99, Some(200), Some(100), None), Err(InvalidToken::NotYetValid));
        assert_eq!(w.check(99, Some(200), None, Some(100)), Err(InvalidToken::IssuedInFuture));
        let lenient = TimeWindow { leeway: 5, require_exp: true };
        let optional = TimeWindow { leeway: 0, require_exp: false };
        assert_eq!(optional.check(100, None, None, None), Ok(()));
        assert_eq!(lenient.check(104, Some(100), Some(109), Some(109)), Ok(()));
        assert_eq!(lenient.check(105, Some(100), None, None), Err(InvalidToken::Expired));
        assert_eq!(w.check(0, Some(i64::MAX), Some(i64::MIN), None), Ok(()));
    }
}
