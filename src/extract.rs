//! Finding the bearer token in a request (RFC 6750 §2.1), with strict syntax and a size bound.

use std::borrow::Cow;

use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, Request};

use crate::error::{AuthError, InvalidRequest, Scheme};
use crate::principal::Principal;

/// The default bound on the `Authorization` header, in bytes.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 8 * 1024;

/// Extracts the bearer token from the `Authorization` header.
///
/// * no header, or a scheme other than `Bearer` → [`AuthError::MissingToken`] (a `401` with no
///   error code: the client simply did not authenticate);
/// * several `Authorization` headers, a header over `max_bytes`, bytes outside visible ASCII,
///   an empty token or one that is not a `b64token` → [`AuthError::InvalidRequest`].
///
/// ```
/// use http::HeaderMap;
/// use tower_bearer::extract::bearer_token;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("authorization", "bearer abc.def-ghi".parse().unwrap());
/// assert_eq!(bearer_token(&headers, 8192).unwrap(), "abc.def-ghi");
/// ```
pub fn bearer_token(headers: &HeaderMap, max_bytes: usize) -> Result<&str, AuthError> {
    let (token, _) = header_credentials(headers, max_bytes, false)?;
    checked_token(token)
}

/// The token of the `Authorization` header, its syntax not checked yet, and its scheme:
/// `Bearer`, or `DPoP` (RFC 9449 §7.1) when `dpop` is accepted.
fn header_credentials(
    headers: &HeaderMap,
    max_bytes: usize,
    dpop: bool,
) -> Result<(&[u8], Scheme), AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(AuthError::MissingToken);
    };
    if values.next().is_some() {
        return Err(InvalidRequest::MultipleAuthorizationHeaders.into());
    }
    split_credentials(value.as_bytes(), max_bytes, dpop)
}

/// A validator's memory of verified tokens ([`Validator::remembered`]), asked with a bearer
/// token's bytes before their syntax is checked.
///
/// [`Validator::remembered`]: crate::Validator::remembered
pub(crate) type Remembered<'r> = &'r dyn Fn(&[u8]) -> Option<Principal>;

/// What the credentials of a request came to.
pub(crate) enum Found<'a> {
    /// The one token of the request (a `b64token`), where it was, and its scheme.
    Token(Cow<'a, str>, TokenSource, Scheme),
    /// The `Authorization: Bearer` token, which [`Remembered`] knew: the request can carry no
    /// other token, and this one passed every check when it was first validated.
    Remembered(Principal),
}

/// Where a request may carry its token. The `Authorization` header is always read; the others
/// are opt-in. A request that uses more than one gets `400 invalid_request` (RFC 6750 §2: one
/// method per request).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenSources {
    pub(crate) cookie: Option<String>,
    pub(crate) query: bool,
}

impl TokenSources {
    /// Only the `Authorization` header (the default).
    pub fn header_only() -> Self {
        Self::default()
    }
    /// Also reads the cookie `name`.
    ///
    /// Browsers attach cookies to cross-site requests: a cookie-authenticated API is open to
    /// CSRF unless the cookie is `SameSite=Strict`/`Lax` or the API checks a CSRF token.
    pub fn cookie(mut self, name: impl Into<String>) -> Self {
        self.cookie = Some(name.into());
        self
    }
    /// Also reads the `access_token` URI query parameter (RFC 6750 §2.3). Discouraged by the
    /// RFC: URIs end up in logs and histories. Responses then get `Cache-Control: private`.
    pub fn query(mut self) -> Self {
        self.query = true;
        self
    }
}

/// Where the token was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenSource {
    /// `Authorization: Bearer`.
    Header,
    /// A cookie.
    Cookie,
    /// The `access_token` query parameter.
    Query,
    /// The `access_token` form body parameter.
    Form,
}

/// A form-body token found by [`FormTokenLayer`](crate::form::FormTokenLayer), for the bearer
/// layer to pick up.
#[derive(Debug, Clone)]
pub(crate) struct FormToken(pub(crate) String);

/// Finds the one token of a request among the enabled `sources`.
pub fn find_token<'a, B>(
    req: &'a Request<B>,
    sources: &TokenSources,
    max_bytes: usize,
) -> Result<(Cow<'a, str>, TokenSource), AuthError> {
    match find_credentials(req, sources, max_bytes, false, None)? {
        Found::Token(token, source, _) => Ok((token, source)),
        // Not asked, so never found.
        Found::Remembered(_) => Err(AuthError::MissingToken),
    }
}

/// [`find_token`], and the scheme of a header token (`DPoP` only when `dpop` is accepted).
/// `remembered` is asked for the header's bearer token when the request can carry no other
/// token (no other source is enabled and no form token was found).
pub(crate) fn find_credentials<'a, B>(
    req: &'a Request<B>,
    sources: &TokenSources,
    max_bytes: usize,
    dpop: bool,
    remembered: Option<Remembered<'_>>,
) -> Result<Found<'a>, AuthError> {
    let header_only = sources.cookie.is_none() && !sources.query;
    let remembered = remembered.filter(|_| header_only && req.extensions().get::<FormToken>().is_none());
    let mut scheme = Scheme::Bearer;
    let mut found: Option<(Cow<'a, str>, TokenSource)> = None;
    let mut add = |token: Cow<'a, str>, source| {
        if found.is_some() {
            return Err(AuthError::InvalidRequest(InvalidRequest::MultipleTokenSources));
        }
        found = Some((token, source));
        Ok(())
    };
    match header_credentials(req.headers(), max_bytes, dpop) {
        Ok((token, used)) => {
            if used == Scheme::Bearer
                && let Some(principal) = remembered.and_then(|remembered| remembered(token))
            {
                return Ok(Found::Remembered(principal));
            }
            scheme = used;
            add(Cow::Borrowed(checked_token(token)?), TokenSource::Header)?
        }
        Err(AuthError::MissingToken) => {}
        Err(err) => return Err(err),
    }
    if let Some(name) = &sources.cookie
        && let Some(token) = cookie_token(req.headers(), name, max_bytes)?
    {
        add(Cow::Borrowed(token), TokenSource::Cookie)?;
    }
    if sources.query
        && let Some(token) = query_token(req.uri().query(), max_bytes)?
    {
        add(Cow::Owned(token), TokenSource::Query)?;
    }
    if let Some(FormToken(token)) = req.extensions().get::<FormToken>() {
        check_token(token.as_bytes(), max_bytes)?;
        add(Cow::Borrowed(token.as_str()), TokenSource::Form)?;
    }
    found.map(|(token, source)| Found::Token(token, source, scheme)).ok_or(AuthError::MissingToken)
}

/// Checks a token from a source other than the header: size bound and `b64token` syntax.
pub(crate) fn check_token(token: &[u8], max_bytes: usize) -> Result<(), AuthError> {
    if token.len() > max_bytes {
        return Err(InvalidRequest::HeaderTooLarge.into());
    }
    if token.is_empty() {
        return Err(InvalidRequest::EmptyToken.into());
    }
    if !is_b64token(token) {
        return Err(InvalidRequest::MalformedToken.into());
    }
    Ok(())
}

fn cookie_token<'a>(
    headers: &'a HeaderMap,
    name: &str,
    max_bytes: usize,
) -> Result<Option<&'a str>, AuthError> {
    let mut found = None;
    for header in headers.get_all(COOKIE) {
        // RFC 6265 §4.2.1: `name=value` pairs separated by `; `.
        for pair in header.as_bytes().split(|&b| b == b';') {
            let pair = trim_spaces(pair);
            let Some(eq) = pair.iter().position(|&b| b == b'=') else { continue };
            if &pair[..eq] != name.as_bytes() {
                continue;
            }
            if found.is_some() {
                // Two cookies of that name: which one the client meant is anybody's guess.
                return Err(InvalidRequest::MultipleTokenSources.into());
            }
            let mut value = &pair[eq + 1..];
            if let [b'"', inner @ .., b'"'] = value {
                value = inner;
            }
            check_token(value, max_bytes)?;
            found = Some(std::str::from_utf8(value).map_err(|_| InvalidRequest::NonAsciiHeader)?);
        }
    }
    Ok(found)
}

fn query_token(query: Option<&str>, max_bytes: usize) -> Result<Option<String>, AuthError> {
    let Some(query) = query else { return Ok(None) };
    let mut found = None;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key == "access_token" {
            if found.is_some() {
                return Err(InvalidRequest::MultipleTokenSources.into());
            }
            check_token(value.as_bytes(), max_bytes)?;
            found = Some(value.into_owned());
        }
    }
    Ok(found)
}

/// `token` as text, if it is a `b64token`.
fn checked_token(token: &[u8]) -> Result<&str, AuthError> {
    if !is_b64token(token) {
        return Err(if token.is_ascii() {
            InvalidRequest::MalformedToken
        } else {
            InvalidRequest::NonAsciiHeader
        }
        .into());
    }
    // `is_b64token` admits ASCII only, so this cannot fail.
    std::str::from_utf8(token).map_err(|_| AuthError::from(InvalidRequest::NonAsciiHeader))
}

/// Splits `credentials` into the scheme and the (non-empty) token, whose syntax is not checked.
fn split_credentials(value: &[u8], max_bytes: usize, dpop: bool) -> Result<(&[u8], Scheme), AuthError> {
    if value.len() > max_bytes {
        return Err(InvalidRequest::HeaderTooLarge.into());
    }
    // Split off the scheme first: a request for another scheme (Basic, DPoP, …) carries no
    // bearer credentials, whatever the rest of its header looks like.
    let scheme_end = value.iter().position(|&b| b == b' ').unwrap_or(value.len());
    let (scheme, rest) = value.split_at(scheme_end);
    let scheme = if scheme.eq_ignore_ascii_case(b"bearer") {
        Scheme::Bearer
    } else if dpop && scheme.eq_ignore_ascii_case(b"dpop") {
        Scheme::Dpop
    } else {
        return Err(AuthError::MissingToken);
    };
    let token = trim_spaces(rest);
    if token.is_empty() {
        return Err(InvalidRequest::EmptyToken.into());
    }
    Ok((token, scheme))
}

/// Strips the `1*SP` separator (and any trailing spaces a proxy may leave).
fn trim_spaces(mut bytes: &[u8]) -> &[u8] {
    while let [b' ', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' '] = bytes {
        bytes = rest;
    }
    bytes
}

/// `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`
pub(crate) fn is_b64token(token: &[u8]) -> bool {
    let body_len = token.len() - token.iter().rev().take_while(|&&b| b == b'=').count();
    body_len > 0 && all_b64token_chars(&token[..body_len])
}

/// The header check runs on every request over the whole token (about 1 KiB for RS256), so it
/// is written to vectorize: fixed-size chunks folded with `&` (no early exit inside a chunk),
/// and a character test made of as few comparisons as the set allows, joined by `|`.
fn all_b64token_chars(bytes: &[u8]) -> bool {
    #[inline(always)]
    fn ok(b: u8) -> bool {
        let lower = b | 0x20; // folds A-Z onto a-z (and maps nothing else into a-z)
        (lower.wrapping_sub(b'a') < 26)
            // '-', '.', '/' and the digits are one run: 0x2D to 0x39.
            | (b.wrapping_sub(b'-') < 13)
            | (b == b'_')
            | (b == b'~')
            | (b == b'+')
    }
    let mut chunks = bytes.chunks_exact(32);
    for chunk in &mut chunks {
        if !chunk.iter().fold(true, |all, &b| all & ok(b)) {
            return false;
        }
    }
    chunks.remainder().iter().all(|&b| ok(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `credentials = "Bearer" 1*SP b64token` (or `"DPoP"` when `dpop`) from raw header
    /// bytes: what the header path does, split check and syntax check together.
    fn parse_credentials(value: &[u8], max_bytes: usize, dpop: bool) -> Result<(&str, Scheme), AuthError> {
        let (token, scheme) = split_credentials(value, max_bytes, dpop)?;
        Ok((checked_token(token)?, scheme))
    }
    use http::HeaderValue;

    fn parse(v: &[u8]) -> Result<&str, AuthError> {
        parse_credentials(v, DEFAULT_MAX_HEADER_BYTES, false).map(|(t, _)| t)
    }

    #[test]
    fn dpop_scheme_only_when_accepted() {
        fn dpop(v: &[u8]) -> Result<(&str, Scheme), AuthError> {
            parse_credentials(v, DEFAULT_MAX_HEADER_BYTES, true)
        }
        assert_eq!(dpop(b"DPoP abc").unwrap(), ("abc", Scheme::Dpop));
        assert_eq!(dpop(b"dpop abc").unwrap(), ("abc", Scheme::Dpop));
        assert_eq!(dpop(b"Bearer abc").unwrap(), ("abc", Scheme::Bearer));
        assert_eq!(dpop(b"DPoP"), Err(InvalidRequest::EmptyToken.into()));
        assert_eq!(parse(b"DPoP abc"), Err(AuthError::MissingToken));
    }

    #[test]
    fn b64token_characters_exactly() {
        for b in 0..=255u8 {
            let expected = b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
            // Alone, and at every position of a chunked run, so both loops are checked.
            assert_eq!(all_b64token_chars(&[b]), expected, "byte {b:#04x}");
            for at in [0, 31, 32, 40, 63, 64, 70] {
                let mut run = vec![b'a'; 71];
                run[at] = b;
                assert_eq!(all_b64token_chars(&run), expected, "byte {b:#04x} at {at}");
            }
        }
        assert!(is_b64token(b"abc=="));
        assert!(!is_b64token(b"=="));
        assert!(!is_b64token(b"a=b"));
    }

    #[test]
    fn scheme_is_case_insensitive() {
        assert_eq!(parse(b"Bearer abc").unwrap(), "abc");
        assert_eq!(parse(b"BEARER abc").unwrap(), "abc");
        assert_eq!(parse(b"bEaReR   abc==").unwrap(), "abc==");
    }

    #[test]
    fn other_schemes_are_missing_credentials() {
        assert_eq!(parse(b"Basic dXNlcjpwYXNz"), Err(AuthError::MissingToken));
        assert_eq!(parse(b"Bearerabc"), Err(AuthError::MissingToken));
        assert_eq!(parse(b"DPoP abc"), Err(AuthError::MissingToken));
    }

    #[test]
    fn malformed_tokens_are_invalid_requests() {
        let bad = |v: &[u8]| match parse(v) {
            Err(AuthError::InvalidRequest(r)) => r,
            other => panic!("{:?} gave {other:?}", String::from_utf8_lossy(v)),
        };
        assert_eq!(bad(b"Bearer"), InvalidRequest::EmptyToken);
        assert_eq!(bad(b"Bearer    "), InvalidRequest::EmptyToken);
        assert_eq!(bad(b"Bearer a b"), InvalidRequest::MalformedToken);
        assert_eq!(bad(b"Bearer a,b"), InvalidRequest::MalformedToken);
        assert_eq!(bad(b"Bearer ==="), InvalidRequest::MalformedToken);
        assert_eq!(bad(b"Bearer a=b"), InvalidRequest::MalformedToken);
        assert_eq!(bad(b"Bearer a\tb"), InvalidRequest::MalformedToken);
        assert_eq!(bad("Bearer caf\u{e9}".as_bytes()), InvalidRequest::NonAsciiHeader);
        let huge = [b"Bearer ".as_slice(), &[b'a'; 9000]].concat();
        assert_eq!(bad(&huge), InvalidRequest::HeaderTooLarge);
    }

    #[test]
    fn sources() {
        let sources = TokenSources::header_only().cookie("at").query();
        let req = |uri: &str, headers: &[(&str, &str)]| {
            let mut b = Request::builder().uri(uri);
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            b.body(()).unwrap()
        };
        let r = req("/?access_token=abc%2B", &[]);
        assert_eq!(find_token(&r, &sources, 100).unwrap(), (Cow::Borrowed("abc+"), TokenSource::Query));
        let r = req("/", &[("cookie", "x=1; at=\"tok\"; y=2")]);
        assert_eq!(find_token(&r, &sources, 100).unwrap().0, "tok");
        let r = req("/?access_token=a", &[("authorization", "Bearer b")]);
        assert_eq!(
            find_token(&r, &sources, 100).unwrap_err(),
            AuthError::InvalidRequest(InvalidRequest::MultipleTokenSources)
        );
        let r = req("/?access_token=a&access_token=b", &[]);
        assert!(find_token(&r, &sources, 100).is_err());
        let r = req("/?access_token=a", &[]);
        assert_eq!(find_token(&r, &TokenSources::header_only(), 100), Err(AuthError::MissingToken));
        let r = req("/", &[("cookie", "at=a b")]);
        assert_eq!(find_token(&r, &sources, 100), Err(InvalidRequest::MalformedToken.into()));
    }

    #[test]
    fn several_headers_are_rejected() {
        let mut headers = HeaderMap::new();
        headers.append(AUTHORIZATION, HeaderValue::from_static("Bearer a"));
        headers.append(AUTHORIZATION, HeaderValue::from_static("Bearer b"));
        assert_eq!(bearer_token(&headers, 100), Err(InvalidRequest::MultipleAuthorizationHeaders.into()));
        assert_eq!(bearer_token(&HeaderMap::new(), 100), Err(AuthError::MissingToken));
    }
}
