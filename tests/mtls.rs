//! Certificate-bound tokens (RFC 8705): a token with `cnf["x5t#S256"]` passes only with that
//! client certificate, from a real TLS connection (rustls, certificates made by rcgen at run
//! time, reqwest presenting an identity) or from a trusted gateway header. Real HTTPS on
//! 127.0.0.1, nothing mocked.
#![cfg(all(feature = "dev", feature = "axum"))]

mod common;
#[allow(dead_code)]
#[path = "../examples/support/tls.rs"]
mod tls_support;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderName, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair,
};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use serde_json::json;
use tower_bearer::dev::DevIssuer;
use tower_bearer::{Algorithm, BearerLayer, CertificateHeader, ClientCertificate, JwtValidator};

/// A test CA and what it signed: the server's certificate and two client certificates.
struct Pki {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    server: (CertificateDer<'static>, KeyPair),
    alice: Identity,
    mallory: Identity,
}

struct Identity {
    der: Vec<u8>,
    pem: String,
}

impl Identity {
    fn thumbprint(&self) -> String {
        ClientCertificate::from_der(self.der.clone()).thumbprint_sha256()
    }

    fn reqwest(&self) -> reqwest::Identity {
        reqwest::Identity::from_pem(self.pem.as_bytes()).expect("client identity")
    }
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.distinguished_name.push(DnType::CommonName, "tower-bearer test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let issue = |names: Vec<String>, usage: ExtendedKeyUsagePurpose, issuer: &Issuer<'_, KeyPair>| {
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, issuer).unwrap();
        (cert, key)
    };
    let client = |cn: &str| {
        let (cert, key) = issue(vec![format!("{cn}.client.test")], ExtendedKeyUsagePurpose::ClientAuth, &ca);
        Identity { der: cert.der().to_vec(), pem: format!("{}{}", cert.pem(), key.serialize_pem()) }
    };
    let (server, server_key) = issue(vec!["localhost".into()], ExtendedKeyUsagePurpose::ServerAuth, &ca);
    Pki {
        ca_pem: ca.pem(),
        ca_der: ca.der().clone(),
        server: (server.der().clone(), server_key),
        alice: client("alice"),
        mallory: client("mallory"),
    }
}

/// Serves `app` over HTTPS on 127.0.0.1, asking for an optional client certificate and putting
/// it in every request's extensions, as a user's server would.
async fn serve_tls(app: Router, pki: &Pki) -> SocketAddr {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca_der.clone()).unwrap();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.server.1.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![pki.server.0.clone()], key)
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // The examples' accept loop: what a user's server does, tested here with a CA-checked verifier.
    tokio::spawn(tls_support::serve(listener, config, app));
    addr
}

/// An HTTPS client trusting the test CA, presenting `identity` if any.
fn tls_client(pki: &Pki, addr: SocketAddr, identity: Option<&Identity>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .resolve("localhost", addr)
        .tls_certs_only([reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap()]);
    if let Some(identity) = identity {
        builder = builder.identity(identity.reqwest());
    }
    builder.build().unwrap()
}

async fn get(client: &reqwest::Client, addr: SocketAddr, token: &str) -> Reply {
    send(client.get(format!("https://localhost:{}/me", addr.port())).bearer_auth(token)).await
}

#[tokio::test]
async fn certificate_bound_jwts_pass_only_with_their_certificate_over_tls() {
    let pki = pki();
    let dev = dev_issuer([Algorithm::ES256]).await;
    let addr = serve_tls(app(validator(&dev)), &pki).await;
    let alice = tls_client(&pki, addr, Some(&pki.alice));
    let mallory = tls_client(&pki, addr, Some(&pki.mallory));
    let anonymous = tls_client(&pki, addr, None);

    let bound =
        dev.token().alg(Algorithm::ES256).claim("cnf", json!({ "x5t#S256": pki.alice.thumbprint() })).sign();
    let unbound = dev.token().alg(Algorithm::ES256).sign();
    // Twice each: the second time the token comes from the verified-token cache, and the
    // binding is checked all the same.
    for _ in 0..2 {
        let reply = get(&alice, addr, &bound).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert_eq!(reply.json()["claims"]["cnf"]["x5t#S256"], pki.alice.thumbprint(), "{reply:?}");
        get(&mallory, addr, &bound).await.assert_invalid_token();
        get(&anonymous, addr, &bound).await.assert_invalid_token();
        // Unbound tokens need no certificate, and do not mind one.
        for client in [&anonymous, &alice, &mallory] {
            assert_eq!(get(client, addr, &unbound).await.status, StatusCode::OK);
        }
    }
    // A thumbprint that differs by case only is another thumbprint.
    let upper = dev
        .token()
        .alg(Algorithm::ES256)
        .claim("cnf", json!({ "x5t#S256": pki.alice.thumbprint().to_ascii_uppercase() }))
        .sign();
    get(&alice, addr, &upper).await.assert_invalid_token();
}

#[tokio::test]
async fn certificate_bound_introspection_answers_pass_only_with_their_certificate() {
    let pki = pki();
    let dev = dev_issuer([Algorithm::ES256]).await;
    let introspector = introspector(&dev);
    let addr = serve_tls(routes().layer(BearerLayer::new(introspector).realm(REALM)), &pki).await;
    let alice = tls_client(&pki, addr, Some(&pki.alice));
    let mallory = tls_client(&pki, addr, Some(&pki.mallory));
    let anonymous = tls_client(&pki, addr, None);
    // The first request of each token waits for introspection, the later ones hit the cache.
    let for_mallory = dev.opaque_token().claim("cnf", json!({ "x5t#S256": pki.alice.thumbprint() })).issue();
    let for_nobody = dev.opaque_token().claim("cnf", json!({ "x5t#S256": pki.alice.thumbprint() })).issue();
    let for_alice = dev.opaque_token().claim("cnf", json!({ "x5t#S256": pki.alice.thumbprint() })).issue();
    for _ in 0..2 {
        get(&mallory, addr, &for_mallory).await.assert_invalid_token();
        get(&anonymous, addr, &for_nobody).await.assert_invalid_token();
        assert_eq!(get(&alice, addr, &for_alice).await.status, StatusCode::OK);
    }
    assert_eq!(get(&alice, addr, &for_mallory).await.status, StatusCode::OK);
}

/// Our layer for `dev`'s tokens, trusting a gateway's DER base64 certificate in header `name`.
fn trusting_header(dev: &DevIssuer, name: &HeaderName) -> BearerLayer<JwtValidator> {
    BearerLayer::new(validator(dev))
        .realm(REALM)
        .trust_client_certificate_header(name.clone(), CertificateHeader::DerBase64)
}

/// A gateway in front: plain HTTP from it, the certificate in a header.
#[tokio::test]
async fn a_trusted_gateway_header_carries_the_certificate() {
    let pki = pki();
    let dev = dev_issuer([Algorithm::ES256]).await;
    let name = HeaderName::from_static("x-client-cert");
    let layer = trusting_header(&dev, &name);
    let app =
        TestApp { base: serve(routes().layer(layer)).await, client: client(), validator: validator(&dev) };
    let untrusting = TestApp {
        base: serve(self::app(validator(&dev))).await,
        client: client(),
        validator: validator(&dev),
    };

    let bound =
        dev.token().alg(Algorithm::ES256).claim("cnf", json!({ "x5t#S256": pki.alice.thumbprint() })).sign();
    let unbound = dev.token().alg(Algorithm::ES256).sign();
    let alice = STANDARD.encode(&pki.alice.der);
    let mallory = STANDARD.encode(&pki.mallory.der);
    let with = |app: &TestApp, token: &str, certs: &[&str]| {
        let mut request = app.request(reqwest::Method::GET, "/me").bearer_auth(token);
        for cert in certs {
            request = request.header(&name, *cert);
        }
        send(request)
    };
    for _ in 0..2 {
        assert_eq!(with(&app, &bound, &[&alice]).await.status, StatusCode::OK);
        with(&app, &bound, &[&mallory]).await.assert_invalid_token();
        with(&app, &bound, &[]).await.assert_invalid_token();
        // What a gateway sends when the client had no certificate.
        with(&app, &bound, &[""]).await.assert_invalid_token();
        with(&app, &bound, &[&alice, &alice]).await.assert_invalid_request();
        with(&app, &bound, &[&mallory, &alice]).await.assert_invalid_request();
        with(&app, &bound, &["MIIB!"]).await.assert_invalid_request();
        assert_eq!(with(&app, &unbound, &[]).await.status, StatusCode::OK);
        assert_eq!(with(&app, &unbound, &[&mallory]).await.status, StatusCode::OK);
        // Without the opt-in, the header is nobody's word.
        with(&untrusting, &bound, &[&alice]).await.assert_invalid_token();
    }
}

/// A certificate from the connection and one from the header: refused, whichever matches.
#[tokio::test]
async fn a_header_certificate_never_overrides_the_connection_one() {
    let pki = pki();
    let dev = dev_issuer([Algorithm::ES256]).await;
    let name = HeaderName::from_static("x-client-cert");
    let layer = trusting_header(&dev, &name);
    let addr = serve_tls(routes().layer(layer), &pki).await;
    let mallory = tls_client(&pki, addr, Some(&pki.mallory));
    let anonymous = tls_client(&pki, addr, None);
    let bound =
        dev.token().alg(Algorithm::ES256).claim("cnf", json!({ "x5t#S256": pki.alice.thumbprint() })).sign();
    let url = format!("https://localhost:{}/me", addr.port());
    let alice_header = STANDARD.encode(&pki.alice.der);
    send(mallory.get(&url).bearer_auth(&bound).header(&name, &alice_header)).await.assert_invalid_request();
    // Control: the same header on a connection without a certificate is the gateway's word.
    let reply = send(anonymous.get(&url).bearer_auth(&bound).header(&name, &alice_header)).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
}
