//! Parsing `WWW-Authenticate` header values, for clients (RFC 9110 §11.6.1, RFC 6750 §3).
//!
//! A resource server tells a client *why* a request was refused in its challenge; this module
//! reads it back so that the client can decide what to do next: refresh the access token
//! ([`BearerError::InvalidToken`]), ask the user for more scope
//! ([`BearerError::InsufficientScope`]), fix the request ([`BearerError::InvalidRequest`]) or
//! authenticate in the first place ([`BearerError::NoError`]).
//!
//! ```
//! use tower_bearer::challenge::{BearerError, Challenge};
//!
//! let header = r#"Basic realm="x", Bearer realm="api", error="invalid_token", error_description="the access token expired""#;
//! let all = Challenge::parse_all(header).unwrap();
//! assert_eq!(all.len(), 2);
//! let bearer = Challenge::find_bearer(header).unwrap().unwrap();
//! assert_eq!(bearer.param("realm"), Some("api"));
//! assert_eq!(bearer.bearer_error(), BearerError::InvalidToken);
//! ```
//!
//! The parser accepts exactly the RFC 9110 §11 grammar (with the list rule's empty elements and
//! optional whitespace) and never panics: anything else is a [`ParseError`].

use std::fmt;

use http::HeaderMap;

/// One challenge of a `WWW-Authenticate` (or `Proxy-Authenticate`) header value.
///
/// Produced by the parser only: the fields are public to read, and `#[non_exhaustive]` so that
/// more (say, the raw text) can be added without breaking code that reads them.
///
/// ```compile_fail
/// // Not constructible outside this crate: use `Challenge::parse`.
/// let c = tower_bearer::challenge::Challenge { scheme: "Bearer".into(), token68: None, params: vec![] };
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Challenge {
    /// The auth-scheme as sent (compare with [`Challenge::is_scheme`], which ignores case).
    pub scheme: String,
    /// The `token68` form (`Negotiate abc==`), when the challenge has one instead of params.
    pub token68: Option<String>,
    /// The auth-params in order, quoted-string values unescaped. Names are as sent (compare with
    /// [`Challenge::param`], which ignores case).
    pub params: Vec<(String, String)>,
}

/// Why a header value is not a valid list of challenges.
///
/// `#[non_exhaustive]`: more detail may be added later.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParseError {
    /// Byte offset where parsing stopped.
    pub position: usize,
    /// What was expected there.
    pub expected: &'static str,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed WWW-Authenticate value: expected {} at byte {}", self.expected, self.position)
    }
}

impl std::error::Error for ParseError {}

/// What a Bearer challenge's `error` auth-param says (RFC 6750 §3.1), and so what a client
/// should do next.
///
/// `#[non_exhaustive]`: error codes registered later (RFC 9470's `insufficient_user_authentication`,
/// say) may get variants of their own, so a `match` needs a `_` arm:
///
/// ```compile_fail
/// use tower_bearer::challenge::BearerError;
/// fn next_step(e: BearerError) -> &'static str {
///     match e {
///         BearerError::NoError => "authenticate",
///         BearerError::InvalidRequest => "fix the request",
///         BearerError::InvalidToken => "refresh",
///         BearerError::InsufficientScope { .. } => "ask for scope",
///         BearerError::Other(_) => "give up",
///     }
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BearerError {
    /// No `error`: the request carried no (usable) credentials; authenticate and send a token.
    /// (Not `None`, which would read like `Option::None`.)
    NoError,
    /// `invalid_request`: the request is malformed; retrying it as is will not help.
    InvalidRequest,
    /// `invalid_token`: expired, revoked or otherwise bad; refresh the token (or re-authenticate).
    InvalidToken,
    /// `insufficient_scope`: the token is fine but lacks scope; ask for a token with `scope`.
    InsufficientScope {
        /// The `scope` auth-param (space-separated scopes the resource needs), if sent.
        scope: Option<String>,
    },
    /// `invalid_dpop_proof` (RFC 9449 §7.1, under the `DPoP` scheme): make a new proof.
    InvalidDpopProof,
    /// `use_dpop_nonce` (RFC 9449 §8): retry with the nonce of the `DPoP-Nonce` header.
    UseDpopNonce,
    /// An error code this crate does not know (an extension).
    Other(String),
}

impl Challenge {
    /// Parses a header value holding one or more challenges separated by commas.
    ///
    /// An empty value (or one made only of commas and whitespace) is an error: it holds no
    /// challenge at all.
    pub fn parse_all(value: &str) -> Result<Vec<Challenge>, ParseError> {
        let mut p = Parser { s: value.as_bytes(), i: 0 };
        let mut out = Vec::new();
        loop {
            p.skip_list_separators();
            if p.at_end() {
                break;
            }
            out.push(p.challenge()?);
        }
        if out.is_empty() {
            return Err(ParseError { position: 0, expected: "a challenge" });
        }
        Ok(out)
    }

    /// Parses a header value that must hold exactly one challenge.
    pub fn parse(value: &str) -> Result<Challenge, ParseError> {
        let mut all = Self::parse_all(value)?;
        if all.len() != 1 {
            return Err(ParseError { position: 0, expected: "exactly one challenge" });
        }
        Ok(all.remove(0))
    }

    /// The first `Bearer` challenge of a header value, if any.
    pub fn find_bearer(value: &str) -> Result<Option<Challenge>, ParseError> {
        Ok(Self::parse_all(value)?.into_iter().find(|c| c.is_scheme("Bearer")))
    }

    /// The first `Bearer` challenge among all `WWW-Authenticate` headers of a response. A header
    /// that is not visible ASCII or does not parse is an error.
    pub fn find_bearer_in(headers: &HeaderMap) -> Result<Option<Challenge>, ParseError> {
        for value in headers.get_all(http::header::WWW_AUTHENTICATE) {
            let value = value.to_str().map_err(|_| ParseError { position: 0, expected: "visible ASCII" })?;
            if let Some(bearer) = Self::find_bearer(value)? {
                return Ok(Some(bearer));
            }
        }
        Ok(None)
    }

    /// Whether the scheme is `scheme`, ignoring ASCII case (RFC 9110 §11.1).
    pub fn is_scheme(&self, scheme: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
    }

    /// The first auth-param called `name` (ignoring ASCII case), unescaped.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The `realm` auth-param.
    pub fn realm(&self) -> Option<&str> {
        self.param("realm")
    }

    /// The RFC 6750 `error_description` auth-param.
    pub fn error_description(&self) -> Option<&str> {
        self.param("error_description")
    }

    /// Classifies the RFC 6750 `error` auth-param (meaningful for a `Bearer` challenge).
    pub fn bearer_error(&self) -> BearerError {
        match self.param("error") {
            None => BearerError::NoError,
            Some("invalid_request") => BearerError::InvalidRequest,
            Some("invalid_token") => BearerError::InvalidToken,
            Some("insufficient_scope") => {
                BearerError::InsufficientScope { scope: self.param("scope").map(str::to_owned) }
            }
            Some("invalid_dpop_proof") => BearerError::InvalidDpopProof,
            Some("use_dpop_nonce") => BearerError::UseDpopNonce,
            Some(other) => BearerError::Other(other.to_owned()),
        }
    }

    /// The first `DPoP` challenge (RFC 9449 §7.1) of a header value, if any.
    pub fn find_dpop(value: &str) -> Result<Option<Challenge>, ParseError> {
        Ok(Self::parse_all(value)?.into_iter().find(|c| c.is_scheme("DPoP")))
    }

    /// The `algs` auth-param of a `DPoP` challenge: the proof algorithms the server accepts.
    pub fn dpop_algs(&self) -> impl Iterator<Item = &str> {
        self.param("algs").unwrap_or_default().split(' ').filter(|a| !a.is_empty())
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 9110 §11.2 token68 characters (before the trailing `=`s).
fn is_token68_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

impl Parser<'_> {
    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn err<T>(&self, expected: &'static str) -> Result<T, ParseError> {
        Err(ParseError { position: self.i, expected })
    }

    /// OWS / BWS.
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    /// Commas and whitespace between list elements (empty elements are allowed, §5.6.1).
    fn skip_list_separators(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.i += 1;
        }
    }

    fn token(&mut self) -> Option<&str> {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        // tchars are ASCII, so this slice is valid UTF-8.
        (self.i > start).then(|| std::str::from_utf8(&self.s[start..self.i]).unwrap_or_default())
    }

    /// At a list element boundary: end of input or (after OWS) a comma.
    fn at_element_end(&mut self) -> bool {
        let save = self.i;
        self.skip_ws();
        let end = matches!(self.peek(), None | Some(b','));
        self.i = save;
        end
    }

    fn quoted_string(&mut self) -> Result<String, ParseError> {
        // Opening quote already checked by the caller.
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return self.err("closing '\"'"),
                Some(b'"') => {
                    self.i += 1;
                    break;
                }
                Some(b'\\') => {
                    self.i += 1;
                    match self.peek() {
                        Some(b) if b == b'\t' || b >= b' ' && b != 0x7f => {
                            out.push(b);
                            self.i += 1;
                        }
                        _ => return self.err("an escaped character"),
                    }
                }
                Some(b) if b == b'\t' || b >= b' ' && b != 0x7f => {
                    out.push(b);
                    self.i += 1;
                }
                Some(_) => return self.err("a quoted-string character"),
            }
        }
        // Only whole characters of a `str` were copied (an escape copies one byte, and the rest
        // of a multi-byte character follows as ordinary bytes), but stay total anyway.
        String::from_utf8(out).map_err(|_| ParseError { position: self.i, expected: "UTF-8" })
    }

    /// Tries `token BWS "=" BWS (token / quoted-string)` at the current position; on no match,
    /// restores the position and returns `None`.
    fn auth_param(&mut self) -> Result<Option<(String, String)>, ParseError> {
        let save = self.i;
        let Some(name) = self.token().map(str::to_owned) else {
            return Ok(None);
        };
        self.skip_ws();
        if self.peek() != Some(b'=') {
            self.i = save;
            return Ok(None);
        }
        self.i += 1;
        self.skip_ws();
        let value = match self.peek() {
            Some(b'"') => self.quoted_string()?,
            Some(b) if is_tchar(b) => self.token().unwrap_or_default().to_owned(),
            // `name=` followed by nothing: not an auth-param (maybe a token68 ending in `=`).
            _ => {
                self.i = save;
                return Ok(None);
            }
        };
        if !self.at_element_end() {
            return self.err("',' or the end after an auth-param");
        }
        Ok(Some((name, value)))
    }

    fn token68(&mut self) -> Option<String> {
        let save = self.i;
        let start = self.i;
        while self.peek().is_some_and(is_token68_char) {
            self.i += 1;
        }
        if self.i == start {
            return None;
        }
        while self.peek() == Some(b'=') {
            self.i += 1;
        }
        if !self.at_element_end() {
            self.i = save;
            return None;
        }
        Some(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn challenge(&mut self) -> Result<Challenge, ParseError> {
        let Some(scheme) = self.token().map(str::to_owned) else {
            return self.err("an auth-scheme");
        };
        let mut challenge = Challenge { scheme, token68: None, params: Vec::new() };
        if self.at_element_end() {
            return Ok(challenge);
        }
        if self.peek() != Some(b' ') {
            return self.err("a space after the auth-scheme");
        }
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
        // token68 or the first auth-param.
        if let Some(param) = self.auth_param()? {
            challenge.params.push(param);
        } else if let Some(token68) = self.token68() {
            challenge.token68 = Some(token68);
            return Ok(challenge);
        } else {
            return self.err("a token68 or an auth-param");
        }
        // More auth-params of this challenge, until an element that is a new challenge.
        loop {
            let save = self.i;
            self.skip_list_separators();
            if self.at_end() {
                return Ok(challenge);
            }
            match self.auth_param()? {
                Some(param) => challenge.params.push(param),
                None => {
                    // Not `name=value`: the next challenge starts here.
                    self.i = save;
                    return Ok(challenge);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{AuthError, ChallengeParams, InvalidDpopProof, InvalidRequest, InvalidToken};

    fn p(name: &str, value: &str) -> (String, String) {
        (name.to_owned(), value.to_owned())
    }

    #[test]
    fn single_bearer_challenge() {
        let c =
            Challenge::parse(r#"Bearer realm="api", error="invalid_token", error_description="x""#).unwrap();
        assert_eq!(c.scheme, "Bearer");
        assert_eq!(
            c.params,
            vec![p("realm", "api"), p("error", "invalid_token"), p("error_description", "x")]
        );
        assert_eq!(c.bearer_error(), BearerError::InvalidToken);
        assert_eq!(c.realm(), Some("api"));
        assert_eq!(c.error_description(), Some("x"));
    }

    #[test]
    fn bare_scheme_and_case_insensitivity() {
        let c = Challenge::parse("bEARER").unwrap();
        assert!(c.is_scheme("Bearer"));
        assert!(c.params.is_empty() && c.token68.is_none());
        assert_eq!(c.bearer_error(), BearerError::NoError);
        let c = Challenge::parse(r#"BEARER REALM="a", Error=invalid_request"#).unwrap();
        assert_eq!(c.param("realm"), Some("a"));
        assert_eq!(c.bearer_error(), BearerError::InvalidRequest);
    }

    #[test]
    fn several_challenges_in_one_value() {
        let all =
            Challenge::parse_all(r#"Basic realm="x", Bearer realm="y", error="invalid_token""#).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].scheme, "Basic");
        assert_eq!(all[0].params, vec![p("realm", "x")]);
        assert_eq!(all[1].params, vec![p("realm", "y"), p("error", "invalid_token")]);
        let bearer = Challenge::find_bearer(r#"Basic realm="x", Bearer realm="y""#).unwrap().unwrap();
        assert_eq!(bearer.realm(), Some("y"));
        assert_eq!(Challenge::find_bearer(r#"Basic realm="x""#).unwrap(), None);
        // Bare schemes and token68 in a list.
        let all = Challenge::parse_all("Negotiate, Bearer, NTLM abc+/==, Basic").unwrap();
        let schemes: Vec<_> = all.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(schemes, ["Negotiate", "Bearer", "NTLM", "Basic"]);
        assert_eq!(all[2].token68.as_deref(), Some("abc+/=="));
    }

    #[test]
    fn quoted_strings_tokens_and_whitespace() {
        let c = Challenge::parse(
            r#"Bearer  realm = "a \"b\" \\c" ,, scope="items:read"  ,error=insufficient_scope"#,
        )
        .unwrap();
        assert_eq!(c.realm(), Some(r#"a "b" \c"#));
        assert_eq!(c.bearer_error(), BearerError::InsufficientScope { scope: Some("items:read".into()) });
        let c = Challenge::parse(r#"Bearer error="something_new""#).unwrap();
        assert_eq!(c.bearer_error(), BearerError::Other("something_new".into()));
        let c = Challenge::parse(r#"Bearer realm="caf\é""#).unwrap();
        assert_eq!(c.realm(), Some("café"));
    }

    #[test]
    fn token68_forms() {
        let c = Challenge::parse("Negotiate YIIBzgYGKwYBBQUCoIIBwjCCAb6gMDAuBgkqhkiC9xIBAgIG==").unwrap();
        assert!(c.token68.as_deref().is_some_and(|t| t.ends_with("==")));
        let c = Challenge::parse("Custom abc=").unwrap();
        assert_eq!(c.token68.as_deref(), Some("abc="));
        assert!(c.params.is_empty());
    }

    #[test]
    fn malformed_values_are_errors() {
        for bad in [
            "",
            " , ,",
            "=",
            "Bearer realm=\"unterminated",
            "Bearer realm=\"x\" junk",
            "Bearer realm=\"x\\",
            "Bearer realm=\"a\u{1}b\"",
            "Bearer @",
            "Bearer a b",
            "\"quoted\"",
            "Bearer realm=\"x\", =y",
            "Bearer\trealm=\"x\"",
            // `:` is not a tchar: such values must be quoted.
            "Bearer scope=items:read",
            "Basic, Bearer realm=\"x\" Basic",
        ] {
            assert!(Challenge::parse_all(bad).is_err(), "{bad:?} should not parse");
        }
        assert!(Challenge::parse("Basic, Bearer").is_err(), "parse wants exactly one");
    }

    #[test]
    fn never_panics_on_arbitrary_input() {
        // Every short string over an alphabet of the grammar's interesting bytes.
        let alphabet = ['B', 'a', '=', '"', '\\', ',', ' ', '\t', '/', 'é', '\u{0}', '~'];
        let mut inputs = vec![String::new()];
        for _ in 0..5 {
            let mut next = Vec::new();
            for s in &inputs {
                for c in alphabet {
                    let mut t = s.clone();
                    t.push(c);
                    next.push(t);
                }
            }
            for s in &next {
                let _ = Challenge::parse_all(s);
                let _ = Challenge::find_bearer(s);
            }
            inputs = next;
        }
    }

    fn every_error() -> Vec<AuthError> {
        use InvalidRequest as R;
        use InvalidToken as T;
        let mut all = vec![
            AuthError::MissingToken,
            AuthError::InsufficientScope { required: "items:write".into() },
            AuthError::InsufficientScope { required: "a b:c".into() },
        ];
        all.extend(
            [
                R::MultipleAuthorizationHeaders,
                R::HeaderTooLarge,
                R::NonAsciiHeader,
                R::EmptyToken,
                R::MalformedToken,
                R::MultipleTokenSources,
                R::MissingDpopProof,
                R::BearerWithDpopProof,
            ]
            .map(AuthError::InvalidRequest),
        );
        all.extend(
            [
                InvalidDpopProof::Multiple,
                InvalidDpopProof::Malformed,
                InvalidDpopProof::Replayed,
                InvalidDpopProof::WrongUri,
            ]
            .map(AuthError::InvalidDpopProof),
        );
        all.push(AuthError::UseDpopNonce);
        all.extend(
            [
                T::Malformed,
                T::TooLarge,
                T::AlgorithmNotAllowed,
                T::UnsupportedCritical,
                T::WrongType,
                T::UnknownKey,
                T::AmbiguousKey,
                T::KeyAlgorithmMismatch,
                T::BadSignature,
                T::MissingExpiry,
                T::Expired,
                T::NotYetValid,
                T::IssuedInFuture,
                T::InvalidClaim,
                T::WrongIssuer,
                T::WrongAudience,
                T::Inactive,
                T::UnexpectedClaims,
            ]
            .map(AuthError::InvalidToken),
        );
        all
    }

    #[test]
    fn round_trips_every_rendered_challenge() {
        let settings = [
            ChallengeParams::new(),
            ChallengeParams::new().realm("api"),
            ChallengeParams::new().realm(r#"odd "realm", with \ and = signs"#),
            ChallengeParams::new()
                .resource_metadata("https://api.example/.well-known/oauth-protected-resource"),
            ChallengeParams::new().realm("api").resource_metadata("https://api.example/meta?x=1,2"),
        ];
        for err in every_error() {
            for params in &settings {
                let header = err.challenge(params).expect("a challenge");
                let text = header.to_str().unwrap();
                let c = Challenge::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
                let dpop_error = matches!(err, AuthError::InvalidDpopProof(_) | AuthError::UseDpopNonce);
                assert!(c.is_scheme(if dpop_error { "DPoP" } else { "Bearer" }), "{text}");
                assert_eq!(c.realm(), params.realm.as_deref(), "{text}");
                assert_eq!(c.param("resource_metadata"), params.resource_metadata.as_deref(), "{text}");
                assert_eq!(c.param("error"), err.error_code(), "{text}");
                let expected = match &err {
                    AuthError::MissingToken => BearerError::NoError,
                    AuthError::InvalidRequest(_) => BearerError::InvalidRequest,
                    AuthError::InvalidToken(_) => BearerError::InvalidToken,
                    AuthError::InsufficientScope { required } => {
                        BearerError::InsufficientScope { scope: Some(required.clone()) }
                    }
                    AuthError::InvalidDpopProof(_) => BearerError::InvalidDpopProof,
                    AuthError::UseDpopNonce => BearerError::UseDpopNonce,
                    _ => unreachable!(),
                };
                assert_eq!(c.bearer_error(), expected, "{text}");
                let description = err.error_code().map(|_| err.description());
                assert_eq!(c.error_description(), description, "{text}");
                // And as the second challenge of a list.
                let listed = format!("Basic realm=\"x\", {text}, Negotiate");
                let found =
                    if dpop_error { Challenge::find_dpop(&listed) } else { Challenge::find_bearer(&listed) };
                assert_eq!(found.unwrap().unwrap(), c, "{listed}");
            }
        }
    }
}
