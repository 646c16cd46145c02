//! The claim policy of JWT access tokens: which `iss`, `aud` and `typ` are accepted, and how
//! the registered claims are read.

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::error::InvalidToken;
use crate::principal::Scopes;
use crate::time::TimeWindow;

/// Which `typ` header values are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TypPolicy {
    /// `at+jwt`, `application/at+jwt`, `JWT`, or no `typ` at all (the default: many issuers
    /// still send `JWT`). ID tokens are told apart by their `nonce`, `at_hash` or `c_hash`; one
    /// with none of them (a code-flow ID token needs no `nonce`) whose `aud` is accepted passes,
    /// which matters when the audience accepted is a client id: then use [`Strict`](Self::Strict).
    #[default]
    Lenient,
    /// RFC 9068 strict: `at+jwt` or `application/at+jwt` only. Rejects ID tokens (and anything
    /// else) presented as access tokens.
    Strict,
}

impl TypPolicy {
    pub(crate) fn check(self, typ: Option<&str>) -> Result<(), InvalidToken> {
        // RFC 7515 §4.1.9: media types are case-insensitive and `application/` may be omitted.
        let typ = typ
            .map(|t| t.get(..12).filter(|p| p.eq_ignore_ascii_case("application/")).map_or(t, |_| &t[12..]));
        let ok = match (self, typ) {
            (_, Some(t)) if t.eq_ignore_ascii_case("at+jwt") => true,
            (TypPolicy::Lenient, None) => true,
            (TypPolicy::Lenient, Some(t)) => t.eq_ignore_ascii_case("jwt"),
            (TypPolicy::Strict, _) => false,
        };
        if ok { Ok(()) } else { Err(InvalidToken::WrongType) }
    }
}

/// Which audiences are accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AudiencePolicy {
    /// The token's `aud` must contain one of these.
    OneOf(Vec<String>),
    /// Explicitly switched off.
    Unchecked,
}

/// The checks run on every token's claims.
#[derive(Debug, Clone)]
pub(crate) struct ClaimPolicy {
    pub(crate) issuer: Option<String>,
    pub(crate) audience: AudiencePolicy,
    pub(crate) window: TimeWindow,
}

impl ClaimPolicy {
    pub(crate) fn check(&self, claims: &RegisteredClaims, now: i64) -> Result<(), InvalidToken> {
        self.window.check(now, claims.exp, claims.nbf, claims.iat)?;
        if let Some(issuer) = &self.issuer
            && claims.iss.as_deref() != Some(issuer.as_str())
        {
            return Err(InvalidToken::WrongIssuer);
        }
        if let AudiencePolicy::OneOf(accepted) = &self.audience {
            let aud = claims.aud.as_ref().map(OneOrMany::as_slice).unwrap_or_default();
            if !aud.iter().any(|a| accepted.iter().any(|ok| *ok == **a)) {
                return Err(InvalidToken::WrongAudience);
            }
        }
        Ok(())
    }
}

/// The registered claims this crate reads. Unknown claims are skipped here and kept verbatim in
/// the principal. Deserializing a struct also rejects duplicate members of these names.
///
/// Strings are borrowed from the JSON text where they have no escapes (nearly always): a
/// token's principal then points into its claims text instead of copying each of them.
#[derive(Debug, Deserialize)]
pub(crate) struct RegisteredClaims<'a> {
    #[serde(borrow)]
    pub(crate) iss: Option<Str<'a>>,
    #[serde(borrow)]
    pub(crate) sub: Option<Str<'a>>,
    #[serde(borrow)]
    pub(crate) aud: Option<OneOrMany<'a>>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub(crate) exp: Option<i64>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub(crate) nbf: Option<i64>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub(crate) iat: Option<i64>,
    #[serde(borrow)]
    pub(crate) client_id: Option<Str<'a>>,
    #[serde(borrow)]
    pub(crate) azp: Option<Str<'a>>,
    #[serde(borrow)]
    pub(crate) scope: Option<OneOrMany<'a>>,
    #[serde(borrow)]
    pub(crate) scp: Option<OneOrMany<'a>>,
    /// RFC 7800 confirmation: a token with one is bound to its sender.
    #[serde(default, deserialize_with = "crate::principal::cnf_claim")]
    pub(crate) cnf: crate::principal::Confirmation,
    /// Claims only OpenID Connect ID tokens carry (OIDC Core §2, §3.1.3.6, §3.3.2.11): their
    /// presence marks a token that is not an access token, whatever its `typ` says.
    pub(crate) nonce: Option<serde::de::IgnoredAny>,
    pub(crate) at_hash: Option<serde::de::IgnoredAny>,
    pub(crate) c_hash: Option<serde::de::IgnoredAny>,
}

impl RegisteredClaims<'_> {
    /// Whether the claims are an ID token's (RFC 8725 §3.11: an ID token must never pass as an
    /// access token, and with [`TypPolicy::Lenient`] its `typ: JWT` would not say so).
    pub(crate) fn is_id_token(&self) -> bool {
        self.nonce.is_some() || self.at_hash.is_some() || self.c_hash.is_some()
    }

    pub(crate) fn scopes(&self) -> Scopes {
        let items = [&self.scope, &self.scp].into_iter().flatten().flat_map(OneOrMany::as_slice);
        Scopes::from_items(items.map(|item| &**item))
    }
}

/// A JSON string: borrowed from the text when it has no escapes, owned when it had to be
/// unescaped. (`Option<Cow<str>>` with `#[serde(borrow)]` would always copy: serde borrows a
/// `Cow` only as the field's own type.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Str<'a>(pub(crate) Cow<'a, str>);

impl Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<Str<'_>> for String {
    fn from(s: Str<'_>) -> String {
        s.0.into_owned()
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(Strings).and_then(|one| match one {
            OneOrMany::One(s) => Ok(s),
            OneOrMany::Many(_) => Err(de::Error::invalid_type(de::Unexpected::Seq, &"a string")),
        })
    }
}

/// A claim that may be a string or an array of strings (`aud`, `scp`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OneOrMany<'a> {
    One(Str<'a>),
    Many(Vec<Str<'a>>),
}

/// Reads a string (borrowed where the text allows) or, through `deserialize_any`, an array of
/// strings.
struct Strings;

impl<'de> Visitor<'de> for Strings {
    type Value = OneOrMany<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or an array of strings")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(OneOrMany::One(Str(Cow::Borrowed(v))))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(OneOrMany::One(Str(Cow::Owned(v.to_owned()))))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(OneOrMany::One(Str(Cow::Owned(v))))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut many = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(16));
        while let Some(item) = seq.next_element::<Str<'de>>()? {
            many.push(item);
        }
        Ok(OneOrMany::Many(many))
    }
}

/// By hand rather than `#[serde(untagged)]`: untagged buffers each value into serde's generic
/// `Content` first (an extra allocation and pass per claim, on every cache miss), where the
/// JSON type already says which variant it is. Any other type is a data error, as before.
impl<'de: 'a, 'a> Deserialize<'de> for OneOrMany<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Strings)
    }
}

impl<'a> OneOrMany<'a> {
    pub(crate) fn as_slice(&self) -> &[Str<'a>] {
        match self {
            OneOrMany::One(one) => std::slice::from_ref(one),
            OneOrMany::Many(many) => many,
        }
    }

    pub(crate) fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one.into()],
            OneOrMany::Many(many) => many.into_iter().map(Into::into).collect(),
        }
    }
}

/// RFC 7519 NumericDate: a JSON number of seconds, possibly fractional. Fractions are truncated
/// towards the past, values beyond `i64` saturate, and anything else (strings, NaN) is an error.
fn numeric_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    struct NumericDate;
    impl Visitor<'_> for NumericDate {
        type Value = Option<i64>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a NumericDate")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(i64::try_from(v).unwrap_or(i64::MAX)))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            if v.is_finite() {
                // `as` saturates at the bounds of i64.
                Ok(Some(v.floor() as i64))
            } else {
                Err(E::custom("NumericDate is not finite"))
            }
        }
    }
    d.deserialize_any(NumericDate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(json: &str) -> Result<RegisteredClaims<'_>, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn numeric_dates() {
        assert_eq!(claims(r#"{"exp":10}"#).unwrap().exp, Some(10));
        assert_eq!(claims(r#"{"exp":10.9}"#).unwrap().exp, Some(10));
        assert_eq!(claims(r#"{"exp":-1.5}"#).unwrap().exp, Some(-2));
        assert_eq!(claims(r#"{"exp":1e300}"#).unwrap().exp, Some(i64::MAX));
        assert_eq!(claims(r#"{"exp":18446744073709551615}"#).unwrap().exp, Some(i64::MAX));
        assert!(claims(r#"{"exp":"10"}"#).is_err());
        assert!(claims(r#"{"exp":null}"#).is_err());
        assert!(claims(r#"{"exp":1,"exp":2}"#).is_err(), "duplicate members are rejected");
    }

    /// A principal keeps the claims text this pass accepted as JSON without a second check: so
    /// whatever it accepts, `RawValue` must accept too (its serialization relies on it).
    #[test]
    fn what_the_claims_pass_accepts_is_json() {
        let base = r#"{"iss":"https://i","sub":"u\u00e9","aud":["a","b"],"exp":1e3,"scope":"x y","jti":"j","ext":{"n":[1,-2.5e-3,true,false,null,"\ud83d\ude00"]},"cnf":{"jkt":"k"}}"#;
        let tricky = [
            r#"{"ext":"\ud800"}"#,
            r#"{"ext":"\udc00x"}"#,
            "{\"ext\":\"a\u{1}b\"}",
            r#"{"ext":"\x"}"#,
            r#"{"ext":01}"#,
            r#"{"ext":1.}"#,
            r#"{"ext":-}"#,
            r#"{"ext":1e}"#,
            r#"{"ext":1e400}"#,
            r#"{"ext":NaN}"#,
            r#"{"ext":tru}"#,
            r#"{"ext":[1,]}"#,
            r#"{"ext":1,}"#,
            r#"{"ext":1} x"#,
            r#"{"ext":1,"ext":2}"#,
            r#"{"ext":{"a":1,"a":2}}"#,
        ];
        let deep = format!(r#"{{"ext":{}1{}}}"#, "[".repeat(130), "]".repeat(130));
        let mut texts: Vec<String> =
            tricky.iter().map(|t| t.to_string()).chain([deep, base.to_owned()]).collect();
        // The valid claims with each character replaced by each of a few troublemakers.
        for (i, _) in base.char_indices() {
            for bad in ["\"", "\\", ",", "}", "]", "{", "[", ":", "0", "-", "e", " ", "\u{7f}", "\u{0}"] {
                texts.push(format!("{}{}{}", &base[..i], bad, &base[i + 1..]));
            }
        }
        let (mut accepted, mut refused) = (0, 0);
        for text in &texts {
            if claims(text).is_ok() {
                accepted += 1;
                assert!(serde_json::value::RawValue::from_string(text.clone()).is_ok(), "{text}");
            } else {
                refused += 1;
            }
        }
        assert!(accepted > 100 && refused > 1000, "{accepted} accepted, {refused} refused");
    }

    #[test]
    fn scopes_from_both_claims() {
        let c = claims(r#"{"scope":"a b","scp":["b","c"]}"#).unwrap();
        assert_eq!(c.scopes().iter().collect::<Vec<_>>(), ["a", "b", "c"]);
        let c = claims(r#"{"scp":"x y","aud":"api"}"#).unwrap();
        assert_eq!(c.scopes().iter().collect::<Vec<_>>(), ["x", "y"]);
        assert_eq!(c.aud.unwrap().into_vec(), ["api"]);
    }

    #[test]
    fn typ_policy() {
        use TypPolicy::*;
        for ok in [None, Some("JWT"), Some("jwt"), Some("at+jwt"), Some("application/AT+JWT")] {
            assert_eq!(Lenient.check(ok), Ok(()), "{ok:?}");
        }
        for bad in [Some("id+jwt"), Some("dpop+jwt"), Some("application/jwt+x"), Some("")] {
            assert_eq!(Lenient.check(bad), Err(InvalidToken::WrongType), "{bad:?}");
        }
        assert_eq!(Strict.check(Some("at+jwt")), Ok(()));
        assert_eq!(Strict.check(Some("application/at+jwt")), Ok(()));
        for bad in [None, Some("JWT"), Some("id+jwt")] {
            assert_eq!(Strict.check(bad), Err(InvalidToken::WrongType), "{bad:?}");
        }
    }
}
