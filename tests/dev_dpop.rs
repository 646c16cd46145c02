//! DPoP at the development server's token endpoint (RFC 9449 §5): a token request with a proof
//! (made here with a P-256 key) gets a DPoP-bound token (`token_type: DPoP`, `cnf.jkt`), which a
//! `BearerLayer` with DPoP allowed then refuses as a bearer token and accepts with a proof.
#![cfg(all(feature = "dev", feature = "axum"))]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, KeyPair as _};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tower_bearer::dev::{
    DEV_CLIENT_ID, DEV_CLIENT_SECRET, DEV_PUBLIC_CLIENT_ID, DEV_REDIRECT_URI, DevClient, DevIssuer, Pkce,
};
use tower_bearer::dpop::Dpop;
use tower_bearer::{Algorithm, BearerLayer};

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("time").as_secs() as i64
}

static JTI: AtomicU64 = AtomicU64::new(0);

/// A client's P-256 proof key.
struct Key(EcdsaKeyPair);

impl Key {
    fn new() -> Key {
        Key(EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_FIXED_SIGNING).expect("P-256 key"))
    }
    fn jwk(&self) -> Value {
        let (x, y) = self.0.public_key().as_ref()[1..].split_at(32);
        json!({"crv": "P-256", "kty": "EC", "x": b64(x), "y": b64(y)})
    }
    /// RFC 7638 thumbprint, from the canonical members.
    fn jkt(&self) -> String {
        let jwk = self.jwk();
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["x"].as_str().expect("x"),
            jwk["y"].as_str().expect("y")
        );
        b64(&Sha256::digest(canonical.as_bytes()))
    }
    /// A proof for `method url`, with `ath` when a token is presented.
    fn proof(&self, method: &str, url: &str, token: Option<&str>) -> String {
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk()});
        let mut claims = json!({
            "jti": format!("jti-{}", JTI.fetch_add(1, Ordering::Relaxed)),
            "htm": method,
            "htu": url,
            "iat": now(),
        });
        if let Some(token) = token {
            claims["ath"] = b64(&Sha256::digest(token.as_bytes())).into();
        }
        let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        let signature = self.0.sign(&SystemRandom::new(), input.as_bytes()).expect("sign");
        format!("{input}.{}", b64(signature.as_ref()))
    }
}

fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON")
}

async fn post(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("request");
    let status = response.status();
    (status, serde_json::from_slice(&response.bytes().await.expect("body")).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_proof_at_the_token_endpoint_binds_the_token_to_the_key() {
    let dev = DevIssuer::builder()
        .algorithms([Algorithm::ES256])
        .client(DevClient::confidential("opaque-worker", "s").opaque_access_tokens(true))
        .start()
        .await
        .expect("dev server");
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let key = Key::new();
    let token_url = dev.token_url();
    let client_credentials = |proof: Option<String>| {
        let mut request = http
            .post(&token_url)
            .basic_auth(DEV_CLIENT_ID, Some(DEV_CLIENT_SECRET))
            .form(&[("grant_type", "client_credentials"), ("scope", "items:read")]);
        if let Some(proof) = proof {
            request = request.header("DPoP", proof);
        }
        request
    };

    // The metadata says so (RFC 9449 §5.1).
    let (_, metadata) = post(http.get(dev.metadata_url())).await;
    let algs = metadata["dpop_signing_alg_values_supported"].as_array().expect("DPoP algorithms");
    assert!(algs.iter().any(|a| a == "ES256"), "{metadata}");

    // Without a proof: a bearer token, as before.
    let (status, body) = post(client_credentials(None)).await;
    assert_eq!((status, body["token_type"].as_str()), (StatusCode::OK, Some("Bearer")));
    let bearer = body["access_token"].as_str().expect("token").to_owned();
    assert!(claims(&bearer).get("cnf").is_none());

    // With one: a DPoP token bound to the key.
    let proof = key.proof("POST", &token_url, None);
    let (status, body) = post(client_credentials(Some(proof.clone()))).await;
    assert_eq!((status, body["token_type"].as_str()), (StatusCode::OK, Some("DPoP")), "{body}");
    let bound = body["access_token"].as_str().expect("token").to_owned();
    assert_eq!(claims(&bound)["cnf"]["jkt"], key.jkt());

    // The same proof again, or one for another URL or method: invalid_dpop_proof, nothing issued.
    for proof in [
        proof,
        key.proof("POST", &format!("{}/other", dev.issuer()), None),
        key.proof("GET", &token_url, None),
        "not.a.proof".to_owned(),
    ] {
        let (status, body) = post(client_credentials(Some(proof))).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_dpop_proof")),
            "{body}"
        );
        assert!(body.get("access_token").is_none());
    }

    // An API with DPoP allowed: the bound token is refused as a bearer token, accepted with a proof.
    let validator = common::validator(&dev);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let api = format!("http://{}", listener.local_addr().expect("addr"));
    let dpop = Dpop::allowed(&api).expect("DPoP policy");
    let app = common::routes().layer(BearerLayer::new(validator).realm(common::REALM).dpop(dpop));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    let items = format!("{api}/items");
    let as_bearer = http.get(&items).bearer_auth(&bound).send().await.expect("API");
    assert_eq!(as_bearer.status(), StatusCode::UNAUTHORIZED);
    let as_dpop = http
        .get(&items)
        .header("Authorization", format!("DPoP {bound}"))
        .header("DPoP", key.proof("GET", &items, Some(&bound)))
        .send()
        .await
        .expect("API");
    assert_eq!(as_dpop.status(), StatusCode::OK);
    // Another key's proof does not make the token usable.
    let thief = http
        .get(&items)
        .header("Authorization", format!("DPoP {bound}"))
        .header("DPoP", Key::new().proof("GET", &items, Some(&bound)))
        .send()
        .await
        .expect("API");
    assert_eq!(thief.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(http.get(&items).bearer_auth(&bearer).send().await.expect("API").status(), StatusCode::OK);

    // Opaque tokens: introspection tells the binding.
    let (status, body) = post(
        http.post(&token_url)
            .basic_auth("opaque-worker", Some("s"))
            .header("DPoP", key.proof("POST", &token_url, None))
            .form(&[("grant_type", "client_credentials")]),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let opaque = body["access_token"].as_str().expect("token");
    let (_, introspection) = post(
        http.post(dev.introspection_url())
            .basic_auth(
                tower_bearer::dev::RESOURCE_CLIENT_ID,
                Some(tower_bearer::dev::RESOURCE_CLIENT_SECRET),
            )
            .form(&[("token", opaque)]),
    )
    .await;
    assert_eq!(introspection["active"], true);
    assert_eq!(introspection["token_type"], "DPoP");
    assert_eq!(introspection["cnf"]["jkt"], key.jkt());
}

#[tokio::test]
async fn a_public_clients_refresh_token_is_bound_to_its_key() {
    let dev = DevIssuer::builder().algorithms([Algorithm::ES256]).start().await.expect("dev server");
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let (key, token_url) = (Key::new(), dev.token_url());
    let pkce = Pkce::new();
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("response_type", "code"),
            ("client_id", DEV_PUBLIC_CLIENT_ID),
            ("redirect_uri", DEV_REDIRECT_URI),
            ("code_challenge", pkce.challenge.as_str()),
            ("code_challenge_method", "S256"),
        ])
        .finish();
    let redirect = http.get(format!("{}?{query}", dev.authorization_url())).send().await.expect("authorize");
    let location = redirect.headers().get("location").expect("redirect").to_str().expect("ascii").to_owned();
    let code = reqwest::Url::parse(&location)
        .expect("URL")
        .query_pairs()
        .find(|(n, _)| n == "code")
        .expect("code")
        .1
        .into_owned();
    let (status, body) =
        post(http.post(&token_url).header("DPoP", key.proof("POST", &token_url, None)).form(&[
            ("grant_type", "authorization_code"),
            ("client_id", DEV_PUBLIC_CLIENT_ID),
            ("code", code.as_str()),
            ("redirect_uri", DEV_REDIRECT_URI),
            ("code_verifier", pkce.verifier.as_str()),
        ]))
        .await;
    assert_eq!((status, body["token_type"].as_str()), (StatusCode::OK, Some("DPoP")), "{body}");
    let refresh = body["refresh_token"].as_str().expect("refresh token").to_owned();
    let refresh_with = |proof: Option<String>| {
        let mut request = http.post(&token_url).form(&[
            ("grant_type", "refresh_token"),
            ("client_id", DEV_PUBLIC_CLIENT_ID),
            ("refresh_token", refresh.as_str()),
        ]);
        if let Some(proof) = proof {
            request = request.header("DPoP", proof);
        }
        request
    };
    // Without a proof, or with another key's: refused (and the token is not spent).
    for proof in [None, Some(Key::new().proof("POST", &token_url, None))] {
        let (status, body) = post(refresh_with(proof)).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_dpop_proof")),
            "{body}"
        );
    }
    let (status, body) = post(refresh_with(Some(key.proof("POST", &token_url, None)))).await;
    assert_eq!((status, body["token_type"].as_str()), (StatusCode::OK, Some("DPoP")), "{body}");
    assert_eq!(claims(body["access_token"].as_str().expect("token"))["cnf"]["jkt"], key.jkt());
}
