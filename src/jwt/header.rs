//! The JOSE header of a token, read once per thread and header text rather than once per token.
//!
//! An issuer puts the same header on every token it signs with a key (`alg`, `kid`, `typ`), so
//! on the cache-miss path the header is nearly always one this thread has just read: a
//! comparison of its base64url text replaces a base64 decode, a JSON parse and an allocation.
//! What is remembered depends on the header bytes alone; every policy (the algorithm allowlist,
//! `typ`, `crit`) is still applied by the validator to each token.

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::Arc;

use jsonwebtoken::Algorithm;
use serde::Deserialize;

use crate::base64url;
use crate::error::InvalidToken;

/// The members of a JOSE header this crate reads, decoded.
pub(crate) struct Header {
    /// `None`: a name jsonwebtoken does not know (`none`, in any case, among them).
    pub(crate) alg: Option<Algorithm>,
    pub(crate) kid: Option<Arc<str>>,
    pub(crate) typ: Option<Box<str>>,
    /// Whether a `crit` member is present at all, whatever its value.
    pub(crate) crit: bool,
}

/// The header as it is in the JSON. `jku`, `x5u`, `jwk` and `x5c` are deliberately absent: keys
/// come from the configured key set only (RFC 8725 §3.10). Borrowed where there are no escapes.
#[derive(Deserialize)]
struct Json<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(borrow)]
    kid: Option<Cow<'a, str>>,
    #[serde(borrow)]
    typ: Option<Cow<'a, str>>,
    /// `Option<Vec<String>>` read `"crit": null` as absent and let such a token through;
    /// RFC 7515 §4.1.11 has no "null" form, and we understand no extension, so any `crit`
    /// member counts.
    #[serde(default, deserialize_with = "present")]
    crit: bool,
}

/// `true` for any JSON value, `null` included (the member is there).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

/// Decoded headers up to this size never touch the allocator; longer header texts are not
/// remembered either.
const ON_STACK: usize = 512;

/// Headers remembered per thread: an issuer's keys in a rotation, or a few issuers.
const REMEMBERED: usize = 4;

struct Recent {
    entries: [Option<(Box<str>, Arc<Header>)>; REMEMBERED],
    /// The entry the next new header replaces.
    next: usize,
}

thread_local! {
    static RECENT: RefCell<Recent> = const { RefCell::new(Recent { entries: [const { None }; REMEMBERED], next: 0 }) };
}

/// The header of base64url text `b64` (already checked to be base64url characters).
pub(crate) fn read(b64: &str) -> Result<Arc<Header>, InvalidToken> {
    if b64.len() > ON_STACK {
        return decode(b64).map(Arc::new);
    }
    let known = RECENT.with_borrow(|recent| {
        recent.entries.iter().flatten().find(|(text, _)| **text == *b64).map(|(_, header)| header.clone())
    });
    if let Some(header) = known {
        return Ok(header);
    }
    // Only headers that decode are remembered: garbage costs what it did before, and cannot
    // push anything out.
    let header = Arc::new(decode(b64)?);
    RECENT.with_borrow_mut(|recent| {
        let slot = recent.next;
        recent.entries[slot] = Some((b64.into(), header.clone()));
        recent.next = (slot + 1) % REMEMBERED;
    });
    Ok(header)
}

fn decode(b64: &str) -> Result<Header, InvalidToken> {
    // Headers are small: decoded on the stack, on the heap only when one is not.
    let mut stack = [0u8; ON_STACK];
    let heap;
    let json: &[u8] = if b64.len() / 4 * 3 + 2 <= ON_STACK {
        base64url::decode_into(b64, &mut stack).ok_or(InvalidToken::Malformed)?
    } else {
        heap = base64url::decode(b64).ok_or(InvalidToken::Malformed)?;
        &heap
    };
    // A struct also deserializes from a JSON array; a header must be an object.
    if json.first() != Some(&b'{') {
        return Err(InvalidToken::Malformed);
    }
    let header: Json<'_> = serde_json::from_slice(json).map_err(|_| InvalidToken::Malformed)?;
    let alg = match &*header.alg {
        // RFC 9864's fully-specified name for EdDSA over Ed25519 (the only curve we verify).
        "Ed25519" => Ok(Algorithm::EdDSA),
        name => name.parse::<Algorithm>(),
    };
    Ok(Header {
        alg: alg.ok(),
        kid: header.kid.map(|kid| Arc::from(&*kid)),
        typ: header.typ.map(|typ| typ.into()),
        crit: header.crit,
    })
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    fn b64(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    /// A remembered header answers only for the very same text: another `kid` or `alg` is read
    /// afresh, even after many others pushed it out, and what fails to decode is never kept.
    #[test]
    fn remembered_headers_answer_only_for_their_own_text() {
        let a = b64(r#"{"alg":"RS256","kid":"a","typ":"at+jwt"}"#);
        let b = b64(r#"{"alg":"ES256","kid":"b"}"#);
        let first = read(&a).unwrap();
        assert!(Arc::ptr_eq(&first, &read(&a).unwrap()), "the second read is the remembered one");
        let other = read(&b).unwrap();
        assert_eq!(
            (other.alg, other.kid.as_deref(), other.typ.as_deref()),
            (Some(Algorithm::ES256), Some("b"), None)
        );
        assert_eq!(
            (first.alg, first.kid.as_deref(), first.typ.as_deref()),
            (Some(Algorithm::RS256), Some("a"), Some("at+jwt"))
        );
        for i in 0..2 * REMEMBERED {
            read(&b64(&format!(r#"{{"alg":"RS256","kid":"k{i}"}}"#))).unwrap();
        }
        let again = read(&a).unwrap();
        assert!(!Arc::ptr_eq(&first, &again), "pushed out, then read afresh");
        assert_eq!(again.kid.as_deref(), Some("a"));
        for garbage in [b64("[1]"), b64(r#"{"kid":"no alg"}"#), "!!".to_owned()] {
            assert!(read(&garbage).is_err());
            assert!(read(&garbage).is_err(), "an error is not remembered as anything else");
        }
        let none = read(&b64(r#"{"alg":"none","crit":null}"#)).unwrap();
        assert_eq!((none.alg, none.crit), (None, true));
    }
}
