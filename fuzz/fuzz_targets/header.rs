//! `tower_bearer::extract::bearer_token` over arbitrary bytes as `Authorization` header values
//! (split at `\n`, which no header value may hold, into several headers).
#![no_main]

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tower_bearer::extract::bearer_token;

const MAX: usize = 1024;

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for part in data.split(|&b| b == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(part) {
            headers.append(AUTHORIZATION, value);
        }
    }
    match bearer_token(&headers, MAX) {
        Ok(token) => {
            assert_eq!(headers.len(), 1, "a token out of several headers");
            let raw = headers[AUTHORIZATION].as_bytes();
            assert!(raw.len() <= MAX);
            assert!(raw.len() > 7 && raw[..6].eq_ignore_ascii_case(b"bearer") && raw[6] == b' ');
            assert!(!token.is_empty());
            let body = token.trim_end_matches('=');
            assert!(!body.is_empty(), "a token of padding only");
            assert!(
                body.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)),
                "not a b64token: {token:?}"
            );
            // The token is the header's value after the scheme and spaces, trailing spaces aside.
            let rest = std::str::from_utf8(&raw[6..]).unwrap();
            assert_eq!(rest.trim_matches(' '), token);
        }
        Err(err) => {
            assert!(matches!(err.status().as_u16(), 400 | 401), "{err:?}");
            let _ = (err.reason(), err.description(), err.challenge(&Default::default()));
        }
    }
});
