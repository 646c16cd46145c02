//! The verified identity behind a request: [`Principal`] (who, for which client, with which
//! scopes, until when), built by validators and read by scope guards and handlers. It sits below
//! both validation and scope policy, so data flows one way.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::AuthError;

/// The scopes a token grants, from its `scope` (space-delimited) and `scp` (array or string)
/// claims, or from an introspection response.
///
/// Each scope once, in the order granted.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Scopes {
    /// The scopes joined by single spaces: one allocation however many there are (a scope
    /// token never contains a space, RFC 6749 §3.3).
    joined: String,
}

impl Scopes {
    /// Scopes from a space-delimited string (RFC 6749 §3.3).
    pub fn from_space_delimited(s: &str) -> Self {
        Self::from_items([s])
    }

    /// Scopes from items that are each a scope or space-delimited scopes.
    pub(crate) fn from_items<'a>(items: impl IntoIterator<Item = &'a str> + Clone) -> Self {
        let mut scopes = Scopes::default();
        scopes.extend(items);
        scopes
    }

    /// Adds each scope of `more` (items as in [`from_items`](Self::from_items)) not there yet.
    pub(crate) fn extend<'a>(&mut self, more: impl IntoIterator<Item = &'a str> + Clone) {
        // Sized for every item once: one allocation, never grown.
        let room = more.clone().into_iter().map(|item| item.len() + 1).sum::<usize>();
        let mut joined = String::with_capacity(self.joined.len() + room);
        joined.push_str(&self.joined);
        for scope in more.into_iter().flat_map(|item| item.split(' ')) {
            if scope.is_empty() || joined.split(' ').any(|s| s == scope) {
                continue;
            }
            if !joined.is_empty() {
                joined.push(' ');
            }
            joined.push_str(scope);
        }
        self.joined = joined;
    }

    /// Whether `scope` was granted (exact, case-sensitive match).
    pub fn contains(&self, scope: &str) -> bool {
        self.iter().any(|s| s == scope)
    }

    /// The scopes, in the order the token listed them.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.joined.split(' ').filter(|s| !s.is_empty())
    }

    /// How many scopes.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether no scope was granted.
    pub fn is_empty(&self) -> bool {
        self.joined.is_empty()
    }
}

impl Serialize for Scopes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.joined)
    }
}

/// Which kind of token a [`Principal`] was built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TokenKind {
    /// A JWT whose signature and claims were checked locally.
    Jwt,
    /// An opaque token vouched for by an introspection endpoint.
    Opaque,
}

/// The verified identity behind a request: who, for which client, with which scopes, until when.
///
/// Cheap to clone (one reference count). Found in the request extensions after
/// [`BearerLayer`](crate::BearerLayer) let a request through, and as an axum extractor with the
/// `axum` feature.
#[derive(Clone)]
pub struct Principal(Arc<PrincipalData>);

#[derive(Clone)]
pub(crate) struct PrincipalData {
    pub(crate) kind: TokenKind,
    pub(crate) subject: Option<Text>,
    pub(crate) client_id: Option<Text>,
    pub(crate) issuer: Option<Text>,
    pub(crate) audience: Vec<String>,
    pub(crate) scopes: Scopes,
    pub(crate) expires_at: Option<i64>,
    pub(crate) issued_at: Option<i64>,
    /// The `cnf` claim: what binds the token to its sender.
    pub(crate) cnf: Confirmation,
    /// The verified claims object, verbatim.
    pub(crate) claims: ClaimsJson,
    /// [`Principal::json`]: written on first use and kept, so that a principal served from the
    /// token cache to a route that answers it (a `/me`, a userinfo route) is copied out rather
    /// than serialized field by field again on every request.
    pub(crate) json: OnceLock<Box<str>>,
}

impl PrincipalData {
    fn text<'a>(&'a self, text: &'a Option<Text>) -> Option<&'a str> {
        match text.as_ref()? {
            // Always in range: made by `Text::within` from this very text.
            Text::InClaims { start, end } => self.claims.text().get(*start as usize..*end as usize),
            Text::Own(own) => Some(own),
        }
    }
}

impl Serialize for PrincipalData {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.serialize_members(s, true)
    }
}

impl PrincipalData {
    /// The members as [`Principal`] serializes them; `claims` last, when `with_claims`.
    fn serialize_members<S: serde::Serializer>(&self, s: S, with_claims: bool) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = s.serialize_struct("Principal", 8 + usize::from(with_claims))?;
        out.serialize_field("kind", &self.kind)?;
        out.serialize_field("subject", &self.text(&self.subject))?;
        out.serialize_field("client_id", &self.text(&self.client_id))?;
        out.serialize_field("issuer", &self.text(&self.issuer))?;
        out.serialize_field("audience", &self.audience)?;
        out.serialize_field("scopes", &self.scopes)?;
        out.serialize_field("expires_at", &self.expires_at)?;
        out.serialize_field("issued_at", &self.issued_at)?;
        if with_claims {
            out.serialize_field("claims", &self.claims)?;
        }
        out.end()
    }

    /// The compact JSON of [`Principal::json`]: every member but `claims` by serde_json, then the
    /// claims' text, which is a JSON object already (checked when it was made).
    fn compact_json(&self) -> Box<str> {
        struct Head<'a>(&'a PrincipalData);
        impl Serialize for Head<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.0.serialize_members(s, false)
            }
        }
        // Cannot fail (no map with non-string keys); the serialization's own error text would
        // not be JSON, so fall back to that path should it ever.
        let Ok(mut json) = serde_json::to_string(&Head(self)) else {
            return serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned()).into_boxed_str();
        };
        // `{"kind":…,"issued_at":…}`: the claims go before the closing brace.
        json.pop();
        json.push_str(",\"claims\":");
        json.push_str(self.claims.text());
        json.push('}');
        json.into_boxed_str()
    }
}

/// A string member of a principal (`sub`, `client_id`, `iss`).
#[derive(Clone)]
pub(crate) enum Text {
    /// Where it is in the principal's claims text: a JWT's claim without escapes, read in place
    /// rather than copied (three allocations fewer on every newly verified token).
    InClaims { start: u32, end: u32 },
    /// Its own copy: unescaped, or from an introspection answer or a builder.
    Own(Box<str>),
}

impl Text {
    /// `value`, a slice of `claims`, as its range there (as its own copy should it not be one).
    pub(crate) fn within(claims: &str, value: &str) -> Text {
        let start = (value.as_ptr() as usize).wrapping_sub(claims.as_ptr() as usize);
        match (u32::try_from(start), u32::try_from(start + value.len())) {
            (Ok(start), Ok(end)) if end as usize <= claims.len() => Text::InClaims { start, end },
            _ => Text::Own(value.into()),
        }
    }
}

/// A principal's claims: a JSON object's text, verbatim.
///
/// Serializing a principal copies the object into the output as a `RawValue` instead of parsing
/// it into values. A JWT's claims are checked as JSON once, by the pass that reads the registered
/// claims, and kept as text ([`ClaimsJson::checked`]): their `RawValue` is made on the first
/// serialization and kept, so a principal never serialized (most) costs one JSON pass instead of
/// two, and one served from the token cache again and again is checked a second time once.
/// ([`Principal::json`] needs neither: it copies the text.)
#[derive(Clone)]
pub(crate) enum ClaimsJson {
    Raw(Box<RawValue>),
    Checked { text: Box<str>, raw: OnceLock<Box<RawValue>> },
}

impl ClaimsJson {
    /// `text`, which a pass over the whole of it has just accepted as JSON, so `RawValue` accepts
    /// it too: serde_json's (the same scanner skips what that pass did not read), or the JWT
    /// claims scanner's, whose tests hold it to serde_json on every text it answers for.
    /// Without whitespace around the object, as a `RawValue` holds it: [`Principal::json`]
    /// copies this text where serialization writes the `RawValue`, and the two must agree.
    pub(crate) fn checked(text: String) -> Self {
        debug_assert!(text.starts_with('{') && text.ends_with('}'), "claims text with whitespace around it");
        ClaimsJson::Checked { text: text.into_boxed_str(), raw: OnceLock::new() }
    }

    pub(crate) fn text(&self) -> &str {
        match self {
            ClaimsJson::Raw(raw) => raw.get(),
            ClaimsJson::Checked { text, .. } => text,
        }
    }

    fn raw(&self) -> &RawValue {
        match self {
            ClaimsJson::Raw(raw) => raw,
            ClaimsJson::Checked { text, raw } => raw.get_or_init(|| {
                // Cannot fail for checked text; `{}` rather than a panic if it ever did.
                RawValue::from_string(text.to_string()).unwrap_or_else(|_| empty_raw_object())
            }),
        }
    }
}

impl Serialize for ClaimsJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.raw().serialize(s)
    }
}

fn empty_raw_object() -> Box<RawValue> {
    RawValue::from_string("{}".to_owned()).expect("valid JSON")
}

/// `{}`.
fn empty_object() -> ClaimsJson {
    ClaimsJson::Raw(empty_raw_object())
}

/// Builds a [`Principal`] for a [`Validator`](crate::Validator) of your own. Every field but the kind is optional.
///
/// ```
/// use tower_bearer::{Principal, TokenKind};
///
/// let principal = Principal::builder(TokenKind::Opaque)
///     .subject("service-a")
///     .client_id("billing")
///     .scopes(["items:read", "items:write"])
///     .expires_at_unix(4_102_444_800)
///     .claims(serde_json::json!({ "tenant": "acme" }))
///     .build();
/// assert!(principal.scopes().contains("items:write"));
/// assert_eq!(principal.claim("tenant"), Some(serde_json::json!("acme")));
/// ```
pub struct PrincipalBuilder {
    data: PrincipalData,
}

impl fmt::Debug for PrincipalBuilder {
    // Like `Principal`'s: the claims stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrincipalBuilder")
            .field("kind", &self.data.kind)
            .field("subject", &self.data.text(&self.data.subject))
            .field("client_id", &self.data.text(&self.data.client_id))
            .finish_non_exhaustive()
    }
}

impl PrincipalBuilder {
    /// Who the token stands for (`sub`).
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.data.subject = Some(Text::Own(subject.into().into()));
        self
    }
    /// The client the token was issued to (`client_id`).
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.data.client_id = Some(Text::Own(client_id.into().into()));
        self
    }
    /// Who issued the token (`iss`).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.data.issuer = Some(Text::Own(issuer.into().into()));
        self
    }
    /// The audiences the token is meant for (`aud`).
    pub fn audience<S: Into<String>>(mut self, audience: impl IntoIterator<Item = S>) -> Self {
        self.data.audience = audience.into_iter().map(Into::into).collect();
        self
    }
    /// The granted scopes (duplicates are dropped); [`RequireScope`](crate::RequireScope) checks
    /// them.
    pub fn scopes<'a>(mut self, scopes: impl IntoIterator<Item = &'a str>) -> Self {
        let scopes: Vec<&str> = scopes.into_iter().collect();
        self.data.scopes = Scopes::from_items(scopes.iter().copied());
        self
    }
    /// When the token expires, in seconds since the Unix epoch (`exp`).
    pub fn expires_at_unix(mut self, exp: i64) -> Self {
        self.data.expires_at = Some(exp);
        self
    }
    /// When the token was issued, in seconds since the Unix epoch (`iat`).
    pub fn issued_at_unix(mut self, iat: i64) -> Self {
        self.data.issued_at = Some(iat);
        self
    }
    /// What binds the token to its sender (its `cnf`); a bound token is refused as a bearer
    /// token, whatever the validator.
    pub fn confirmation(mut self, cnf: Confirmation) -> Self {
        self.data.cnf = cnf;
        self
    }
    /// The claims handlers read with [`Principal::claims`] and [`Principal::claim`]; anything
    /// but a JSON object counts as no claims (`{}`).
    pub fn claims(mut self, claims: serde_json::Value) -> Self {
        self.data.claims = match claims {
            serde_json::Value::Object(_) => {
                serde_json::value::to_raw_value(&claims).map_or_else(|_| empty_object(), ClaimsJson::Raw)
            }
            _ => empty_object(),
        };
        self
    }
    /// The principal.
    pub fn build(self) -> Principal {
        Principal::new(self.data)
    }
}

impl Principal {
    pub(crate) fn new(data: PrincipalData) -> Self {
        Principal(Arc::new(data))
    }

    /// An equal principal in an allocation of its own: its clones count references on a cache
    /// line of their own, not on this one's (see the token cache's per-thread copies).
    pub(crate) fn detached(&self) -> Principal {
        Principal::new(PrincipalData::clone(&self.0))
    }

    /// Starts a principal of `kind`, for a [`Validator`](crate::Validator) of your own.
    pub fn builder(kind: TokenKind) -> PrincipalBuilder {
        PrincipalBuilder {
            data: PrincipalData {
                kind,
                subject: None,
                client_id: None,
                issuer: None,
                audience: Vec::new(),
                scopes: Scopes::default(),
                expires_at: None,
                issued_at: None,
                cnf: Confirmation::None,
                claims: empty_object(),
                json: OnceLock::new(),
            },
        }
    }

    /// The kind of token.
    pub fn kind(&self) -> TokenKind {
        self.0.kind
    }
    /// The `sub` claim.
    pub fn subject(&self) -> Option<&str> {
        self.0.text(&self.0.subject)
    }
    /// The `client_id` claim (RFC 9068 / RFC 7662), falling back to `azp`.
    pub fn client_id(&self) -> Option<&str> {
        self.0.text(&self.0.client_id)
    }
    /// The `iss` claim.
    pub fn issuer(&self) -> Option<&str> {
        self.0.text(&self.0.issuer)
    }
    /// The `aud` claim, as a list.
    pub fn audience(&self) -> &[String] {
        &self.0.audience
    }
    /// The granted scopes (`scope` and `scp`).
    pub fn scopes(&self) -> &Scopes {
        &self.0.scopes
    }
    /// The `exp` claim, in seconds since the Unix epoch.
    pub fn expires_at_unix(&self) -> Option<i64> {
        self.0.expires_at
    }
    /// The `exp` claim as a [`SystemTime`].
    pub fn expires_at(&self) -> Option<SystemTime> {
        let secs = u64::try_from(self.0.expires_at?).ok()?;
        UNIX_EPOCH.checked_add(Duration::from_secs(secs))
    }
    /// The `iat` claim, in seconds since the Unix epoch.
    pub fn issued_at_unix(&self) -> Option<i64> {
        self.0.issued_at
    }
    /// What binds the token to its sender (the `cnf` claim), checked by
    /// [`BearerLayer`](crate::BearerLayer) on every request.
    pub fn confirmation(&self) -> &Confirmation {
        &self.0.cnf
    }
    /// The principal as compact JSON, the text `serde_json::to_string(&principal)` gives
    /// (`kind`, `subject`, `client_id`, `issuer`, `audience`, `scopes`, `expires_at`,
    /// `issued_at`, and the verified `claims` object). Written on the first call and kept with
    /// the principal, so that a route answering a cached token's principal (a `/me`, a userinfo
    /// route) copies it instead of serializing it again. With the `axum` feature a principal is
    /// also a response: this JSON, as `application/json`.
    ///
    /// ```
    /// use tower_bearer::{Principal, TokenKind};
    ///
    /// let principal = Principal::builder(TokenKind::Opaque).subject("service-a").build();
    /// assert_eq!(principal.json(), serde_json::to_string(&principal).unwrap());
    /// assert!(principal.json().starts_with(r#"{"kind":"opaque","subject":"service-a","#));
    /// ```
    pub fn json(&self) -> &str {
        self.0.json.get_or_init(|| self.0.compact_json())
    }
    /// Every claim, as the raw JSON object that was verified.
    pub fn raw_claims(&self) -> &str {
        self.0.claims.text()
    }
    /// Reads the verified claims as your own type.
    ///
    /// ```
    /// # fn demo(principal: &tower_bearer::Principal) -> Result<(), serde_json::Error> {
    /// #[derive(serde::Deserialize)]
    /// struct MyClaims { tenant: String }
    /// let claims: MyClaims = principal.claims()?;
    /// println!("tenant {}", claims.tenant);
    /// # Ok(()) }
    /// ```
    pub fn claims<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.0.claims.text())
    }
    /// One claim by name, parsed on demand.
    pub fn claim(&self, name: &str) -> Option<serde_json::Value> {
        let mut map: serde_json::Map<String, serde_json::Value> = self.claims().ok()?;
        map.remove(name)
    }
    /// Requires every scope in `needed`; a `403 insufficient_scope` error otherwise.
    pub fn require_scopes<'a>(
        &self,
        needed: impl IntoIterator<Item = &'a str> + Clone,
    ) -> Result<(), AuthError> {
        if needed.clone().into_iter().all(|s| self.0.scopes.contains(s)) {
            Ok(())
        } else {
            Err(AuthError::InsufficientScope { required: join(needed) })
        }
    }
}

pub(crate) fn join<'a>(scopes: impl IntoIterator<Item = &'a str>) -> String {
    scopes.into_iter().collect::<Vec<_>>().join(" ")
}

impl fmt::Debug for Principal {
    // Claims can hold personal data; Debug shows what is needed to follow a request in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("kind", &self.0.kind)
            .field("subject", &self.subject())
            .field("client_id", &self.client_id())
            .field("issuer", &self.issuer())
            .field("scopes", &self.0.scopes)
            .field("expires_at", &self.0.expires_at)
            .finish_non_exhaustive()
    }
}

impl Serialize for Principal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// The confirmation (`cnf`) a token carries: what its sender must prove to use it.
///
/// A token with any `cnf` is *bound*: it is never accepted as a plain bearer token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Confirmation {
    /// No `cnf`: a bearer token.
    #[default]
    None,
    /// `cnf.jkt` (RFC 9449 §6): the RFC 7638 SHA-256 thumbprint of the DPoP key, base64url.
    Jkt(String),
    /// `cnf["x5t#S256"]` (RFC 8705 §3.1): the SHA-256 thumbprint of the client certificate.
    /// The request must come with that certificate ([`ClientCertificate`](crate::ClientCertificate)).
    X5tS256(String),
    /// Any other `cnf` (another member, several members, not an object): refused, since this
    /// crate cannot check what it asks for.
    Other,
}

impl Confirmation {
    /// Whether the token is bound to a key or certificate.
    pub fn is_bound(&self) -> bool {
        !matches!(self, Confirmation::None)
    }

    fn from_value(cnf: Value) -> Self {
        let Value::Object(mut members) = cnf else { return Confirmation::Other };
        if members.len() != 1 {
            return Confirmation::Other;
        }
        match (members.remove("jkt"), members.remove("x5t#S256")) {
            (Some(Value::String(jkt)), None) => Confirmation::Jkt(jkt),
            (None, Some(Value::String(x5t))) => Confirmation::X5tS256(x5t),
            _ => Confirmation::Other,
        }
    }
}

/// `deserialize_with` for a `cnf` claim (absent is `#[serde(default)]`; `null` is bound, and
/// refused as [`Confirmation::Other`]).
pub(crate) fn cnf_claim<'de, D: Deserializer<'de>>(d: D) -> Result<Confirmation, D::Error> {
    Value::deserialize(d).map(Confirmation::from_value)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn checked_claims_serialize_verbatim_every_time() {
        let text = r#"{"sub":"u","n":[1, 2.50],"s":"\u00e9"}"#;
        let mut principal = Principal::builder(TokenKind::Jwt).subject("u").build();
        Arc::get_mut(&mut principal.0).unwrap().claims = ClaimsJson::checked(text.to_owned());
        assert_eq!(principal.raw_claims(), text);
        let ClaimsJson::Checked { raw, .. } = &principal.0.claims else { unreachable!() };
        assert!(raw.get().is_none(), "no RawValue before a serialization");
        let first = serde_json::to_string(&principal).unwrap();
        assert!(first.contains(&format!(r#""claims":{text}"#)), "{first}");
        assert!(raw.get().is_some(), "made by the first serialization, and kept");
        assert_eq!(serde_json::to_string(&principal).unwrap(), first);
        assert_eq!(principal.claim("s"), Some(json!("é")));
    }

    /// `json()` is the serialization's text, byte for byte, for principals of every origin (JWT
    /// claims read in place, a builder's, an introspection answer's `RawValue`), made once and
    /// kept (a detached copy keeps it too); and pretty printing still goes member by member.
    #[test]
    fn json_is_the_compact_serialization_made_once() {
        let claims = r#"{"sub":"alice","aud":["a","b"],"n":[1, 2.50],"s":"\u00e9 \"q\""}"#;
        let mut jwt = Principal::builder(TokenKind::Jwt).audience(["a", "b"]).scopes(["x", "y"]).build();
        let data = Arc::get_mut(&mut jwt.0).unwrap();
        data.claims = ClaimsJson::checked(claims.to_owned());
        data.subject = Some(Text::within(claims, &claims[8..13]));
        data.expires_at = Some(2_000_000_000);
        let built = Principal::builder(TokenKind::Opaque)
            .subject("svc \"a\"")
            .client_id("c")
            .issuer("https://i")
            .claims(json!({"k": [true, null], "é": "\n"}))
            .build();
        let raw: Box<RawValue> = serde_json::from_str(r#"{"active":true,"sub":"u"}"#).unwrap();
        let mut introspected = Principal::builder(TokenKind::Opaque).build();
        Arc::get_mut(&mut introspected.0).unwrap().claims = ClaimsJson::Raw(raw);
        for principal in [&jwt, &built, &introspected] {
            assert!(principal.0.json.get().is_none());
            let json = principal.json();
            assert_eq!(json, serde_json::to_string(principal).unwrap());
            assert!(std::ptr::eq(json, principal.json()), "kept");
            assert_eq!(principal.detached().0.json.get().map(|j| &**j), Some(json));
            let pretty = serde_json::to_string_pretty(principal).unwrap();
            assert!(pretty.contains("\n  \"subject\": "), "{pretty}");
        }
        assert_eq!(
            jwt.json(),
            format!(
                r#"{{"kind":"jwt","subject":"alice","client_id":null,"issuer":null,"audience":["a","b"],"scopes":["x","y"],"expires_at":2000000000,"issued_at":null,"claims":{claims}}}"#
            )
        );
    }

    /// Ranges resolve in the claims text; what is not a slice of it is copied.
    #[test]
    fn texts_in_claims_and_own() {
        let claims = r#"{"sub":"alice","iss":"https://i"}"#;
        let sub = Text::within(claims, &claims[8..13]);
        assert!(matches!(sub, Text::InClaims { start: 8, end: 13 }));
        let elsewhere = String::from("alice");
        assert!(matches!(Text::within(claims, &elsewhere), Text::Own(ref s) if &**s == "alice"));
        let mut principal = Principal::builder(TokenKind::Jwt).issuer("https://own").build();
        let data = Arc::get_mut(&mut principal.0).unwrap();
        data.claims = ClaimsJson::checked(claims.to_owned());
        data.subject = Some(sub);
        assert_eq!((principal.subject(), principal.issuer()), (Some("alice"), Some("https://own")));
        let json: Value = serde_json::to_value(&principal).unwrap();
        assert_eq!(
            (&json["subject"], &json["issuer"], &json["client_id"]),
            (&json!("alice"), &json!("https://own"), &Value::Null)
        );
    }

    #[test]
    fn reads_cnf() {
        let c = |v: Value| Confirmation::from_value(v);
        assert_eq!(c(json!({"jkt": "abc"})), Confirmation::Jkt("abc".into()));
        assert_eq!(c(json!({"x5t#S256": "abc"})), Confirmation::X5tS256("abc".into()));
        assert_eq!(c(json!({"jkt": "a", "x5t#S256": "b"})), Confirmation::Other);
        assert_eq!(c(json!({"jwk": {}})), Confirmation::Other);
        assert_eq!(c(json!({"jkt": 1})), Confirmation::Other);
        assert_eq!(c(json!({})), Confirmation::Other);
        assert_eq!(c(json!("abc")), Confirmation::Other);
        assert_eq!(c(Value::Null), Confirmation::Other);
    }
}
