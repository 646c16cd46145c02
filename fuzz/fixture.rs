//! A fixed key set (P-256 and Ed25519, made by the dev issuer) and tokens it signed, valid until
//! 2100, shared by the validation targets.

/// The JWK Set.
pub const JWKS: &str = r#"{"keys":[{"alg":"ES256","crv":"P-256","kid":"es256-1","kty":"EC","use":"sig","x":"RGJCjSTtv7RdnkVHlznI_yo2oIPWrXo_Ls1p3l7nWBo","y":"-6dmBfdRE7cHfCRrGosb8BC9mdtI246PFw5AIZkxoT4"},{"alg":"EdDSA","crv":"Ed25519","kid":"eddsa-1","kty":"OKP","use":"sig","x":"yRlYiIClt6Q4C5oe6lVAV3Nl6MXqF0RNxJ5XJ_Abe30"}]}"#;

/// Valid tokens: ES256 and EdDSA, `iss` [`ISSUER`], `aud` [`AUDIENCE`], `exp` 2100-01-01.
pub const TOKENS: [&str; 2] = [
    "eyJhbGciOiJFUzI1NiIsImtpZCI6ImVzMjU2LTEiLCJ0eXAiOiJhdCtqd3QifQ.eyJhdWQiOiJodHRwczovL2FwaS5leGFtcGxlIiwiY2xpZW50X2lkIjoiZGV2LWNsaWVudCIsImV4cCI6NDEwMjQ0NDgwMCwiaWF0IjoxNzAwMDAwMDAwLCJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIiwic2NvcGUiOiJpdGVtczpyZWFkIiwic3ViIjoiYWxpY2UifQ.Uq4O-EFdjLG0_NNKFfEefdGY0_Pv1Y9Yv-MCG3OKO38f-t5n5BJ4wFX4ODFvoRXHx2r0p9_vAKgpVKbAm24KZw",
    "eyJhbGciOiJFZERTQSIsImtpZCI6ImVkZHNhLTEiLCJ0eXAiOiJhdCtqd3QifQ.eyJhdWQiOiJodHRwczovL2FwaS5leGFtcGxlIiwiY2xpZW50X2lkIjoiZGV2LWNsaWVudCIsImV4cCI6NDEwMjQ0NDgwMCwiaWF0IjoxNzAwMDAwMDAwLCJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIiwic2NvcGUiOiJpdGVtczpyZWFkIiwic3ViIjoiYWxpY2UifQ.OZcHQx9wr7Wlo2Bu8JazKeZNP_FRF0tzepvzi2IZKjFo0RvXkPAfea-UvlPmal_pOZhyKvU3qUAsEcH6dAhEDw",
];

pub const ISSUER: &str = "https://issuer.example";
pub const AUDIENCE: &str = "https://api.example";

use std::sync::OnceLock;

use tower_bearer::{AuthError, JwtValidator, KeySet, Principal, RequestView, Validator};

/// A validator over the fixed key set (static: validation never fetches).
pub fn validator() -> &'static JwtValidator {
    static VALIDATOR: OnceLock<JwtValidator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let keys = KeySet::from_jwks(JWKS).expect("the fixed JWKS parses");
        JwtValidator::builder().issuer(ISSUER).audience(AUDIENCE).key_set(keys).build().expect("validator")
    })
}

/// Validates `token`, driving a pending validation (unknown `kid`) to its end on a small runtime.
pub fn validate(token: &str) -> Result<Principal, AuthError> {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let runtime =
        RUNTIME.get_or_init(|| tokio::runtime::Builder::new_current_thread().build().expect("runtime"));
    runtime.block_on(validator().validate(token, &RequestView::detached()).resolve())
}

/// The one property of every validation target: only the fixture's own tokens pass, and every
/// refusal is a `401 invalid_token` (a static key set is never "unavailable").
pub fn check(token: &str) {
    match validate(token) {
        Ok(principal) => {
            assert!(TOKENS.contains(&token), "a token that is not ours was accepted: {principal:?}");
        }
        Err(err) => {
            assert!(matches!(err, AuthError::InvalidToken(_)), "unexpected error {err:?}");
            assert_eq!(err.status(), 401);
            assert!(!TOKENS.contains(&token), "our own token was refused: {err:?}");
        }
    }
}
