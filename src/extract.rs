//! Finding the bearer token in a request (RFC 6750 §2.1), with strict syntax and a size bound.

use http::{HeaderMap, header::AUTHORIZATION};

use crate::error::{AuthError, InvalidRequest};

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
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(AuthError::MissingToken);
    };
    if values.next().is_some() {
        return Err(InvalidRequest::MultipleAuthorizationHeaders.into());
    }
    parse_credentials(value.as_bytes(), max_bytes)
}

/// Parses `credentials = "Bearer" 1*SP b64token` from raw header bytes.
fn parse_credentials(value: &[u8], max_bytes: usize) -> Result<&str, AuthError> {
    if value.len() > max_bytes {
        return Err(InvalidRequest::HeaderTooLarge.into());
    }
    // Split off the scheme first: a request for another scheme (Basic, DPoP, …) carries no
    // bearer credentials, whatever the rest of its header looks like.
    let scheme_end = value.iter().position(|&b| b == b' ').unwrap_or(value.len());
    let (scheme, rest) = value.split_at(scheme_end);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(AuthError::MissingToken);
    }
    let token = trim_spaces(rest);
    if token.is_empty() {
        return Err(InvalidRequest::EmptyToken.into());
    }
    if !token.iter().all(|b| b.is_ascii_graphic()) {
        return Err(if token.is_ascii() {
            InvalidRequest::MalformedToken
        } else {
            InvalidRequest::NonAsciiHeader
        }
        .into());
    }
    if !is_b64token(token) {
        return Err(InvalidRequest::MalformedToken.into());
    }
    // `is_b64token` admits ASCII only, so this cannot fail.
    std::str::from_utf8(token).map_err(|_| InvalidRequest::NonAsciiHeader.into())
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
    body_len > 0
        && token[..body_len].iter().all(|&b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn parse(v: &[u8]) -> Result<&str, AuthError> {
        parse_credentials(v, DEFAULT_MAX_HEADER_BYTES)
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
        assert_eq!(
            bad("Bearer caf\u{e9}".as_bytes()),
            InvalidRequest::NonAsciiHeader
        );
        let huge = [b"Bearer ".as_slice(), &[b'a'; 9000]].concat();
        assert_eq!(bad(&huge), InvalidRequest::HeaderTooLarge);
    }

    #[test]
    fn several_headers_are_rejected() {
        let mut headers = HeaderMap::new();
        headers.append(AUTHORIZATION, HeaderValue::from_static("Bearer a"));
        headers.append(AUTHORIZATION, HeaderValue::from_static("Bearer b"));
        assert_eq!(
            bearer_token(&headers, 100),
            Err(InvalidRequest::MultipleAuthorizationHeaders.into())
        );
        assert_eq!(
            bearer_token(&HeaderMap::new(), 100),
            Err(AuthError::MissingToken)
        );
    }
}
