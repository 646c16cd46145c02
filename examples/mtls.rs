//! Certificate-bound tokens (RFC 8705) over HTTPS: an axum API served by rustls, asking for an
//! optional client certificate and handing it to the layer.
//!
//! ```text
//! cargo run --example mtls --features axum,dev [-- --listen 127.0.0.1:3443] [--check]
//! ```
//!
//! It makes everything at run time: a development issuer, a server certificate for `localhost`
//! and two client certificates (alice, mallory) with rcgen, written to a temporary directory,
//! and a token bound to alice's certificate (`cnf["x5t#S256"]`). Then it prints curl commands
//! and serves: alice's certificate gets `200`, mallory's or none `401 invalid_token`; an
//! unbound token needs no certificate. `--check` runs those requests itself with reqwest and
//! exits with status 1 if any answer is not the expected one.

#[path = "support/tls.rs"]
mod tls;

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use tower_bearer::dev::{DEFAULT_AUDIENCE, DevIssuer};
use tower_bearer::{BearerLayer, ClientCertificate, JwtValidator, Principal};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A self-signed certificate and its key, DER and PEM.
struct Made {
    der: CertificateDer<'static>,
    key: KeyPair,
    pem: String,
}

fn self_signed(name: &str, usage: ExtendedKeyUsagePurpose) -> Result<Made, Error> {
    let mut params = CertificateParams::new(vec![name.to_owned()])?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(Made { der: cert.der().clone(), pem: cert.pem(), key })
}

fn write(dir: &Path, name: &str, text: &str) -> Result<PathBuf, Error> {
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut listen = "127.0.0.1:3443".to_owned();
    let mut check = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().ok_or("--listen needs ADDR")?,
            "--check" => check = true,
            other => return Err(format!("usage: mtls [--listen ADDR] [--check], not {other}").into()),
        }
    }

    let dev = DevIssuer::start().await?;
    let validator = JwtValidator::builder()
        .issuer(dev.issuer())
        .audience(DEFAULT_AUDIENCE)
        .jwks_url(dev.jwks_url())
        .build()?;
    let app = Router::new()
        .route("/me", get(|p: Principal| async move { Json(p) }))
        .layer(BearerLayer::new(validator).realm("mtls example"));

    let server = self_signed("localhost", ExtendedKeyUsagePurpose::ServerAuth)?;
    let alice = self_signed("alice", ExtendedKeyUsagePurpose::ClientAuth)?;
    let mallory = self_signed("mallory", ExtendedKeyUsagePurpose::ClientAuth)?;
    // A fresh directory of its own (a random name: nobody can plant files in it first), removed
    // on the way out, errors included.
    let temp = tempfile::Builder::new().prefix("tower-bearer-mtls-").tempdir()?;
    let dir = temp.path();
    let server_pem = write(dir, "server.pem", &server.pem)?;
    let identity = |who: &Made, name: &str| -> Result<(PathBuf, PathBuf), Error> {
        Ok((
            write(dir, &format!("{name}.pem"), &who.pem)?,
            write(dir, &format!("{name}.key"), &who.key.serialize_pem())?,
        ))
    };
    let (alice_cert, alice_key) = identity(&alice, "alice")?;
    let (mallory_cert, mallory_key) = identity(&mallory, "mallory")?;

    let thumbprint = ClientCertificate::from_der(alice.der.to_vec()).thumbprint_sha256();
    let hour = Duration::from_secs(3600);
    let bound =
        dev.token().subject("alice").claim("cnf", json!({ "x5t#S256": thumbprint })).expires_in(hour).sign();
    let unbound = dev.token().subject("anyone").expires_in(hour).sign();

    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server.key.serialize_der()));
    let config = tls::server_config(vec![server.der.clone()], key)?;
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let addr = listener.local_addr()?;
    let base = format!("https://localhost:{}", addr.port());
    let serving = tokio::spawn(tls::serve(listener, config, app));

    if check {
        let client = |who: Option<&Made>| -> Result<reqwest::Client, Error> {
            let mut builder = reqwest::Client::builder()
                .no_proxy()
                .resolve("localhost", addr)
                .tls_certs_only([reqwest::Certificate::from_pem(server.pem.as_bytes())?]);
            if let Some(who) = who {
                let pem = format!("{}{}", who.pem, who.key.serialize_pem());
                builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes())?);
            }
            Ok(builder.build()?)
        };
        let mut failed = false;
        for (what, who, token, want) in [
            ("bound token, alice's certificate", Some(&alice), &bound, 200),
            ("bound token, mallory's certificate", Some(&mallory), &bound, 401),
            ("bound token, no certificate", None, &bound, 401),
            ("unbound token, no certificate", None, &unbound, 200),
        ] {
            let status = client(who)?.get(format!("{base}/me")).bearer_auth(token).send().await?.status();
            let ok = status.as_u16() == want;
            failed |= !ok;
            println!("{} {what}: {status}", if ok { "ok  " } else { "FAIL" });
        }
        // `exit` runs no destructors.
        temp.close()?;
        std::process::exit(i32::from(failed));
    }

    let curl =
        format!("curl --cacert {} --resolve localhost:{}:{}", server_pem.display(), addr.port(), addr.ip());
    println!("serving {base} (certificates in {})\n", dir.display());
    println!(
        "# 200, the token is bound to alice's certificate:\n{curl} --cert {} --key {} -H 'Authorization: Bearer {bound}' {base}/me\n",
        alice_cert.display(),
        alice_key.display()
    );
    println!(
        "# 401 invalid_token, another certificate:\n{curl} --cert {} --key {} -H 'Authorization: Bearer {bound}' {base}/me\n",
        mallory_cert.display(),
        mallory_key.display()
    );
    println!("# 401 invalid_token, no certificate:\n{curl} -H 'Authorization: Bearer {bound}' {base}/me\n");
    println!(
        "# 200, an unbound token needs no certificate:\n{curl} -H 'Authorization: Bearer {unbound}' {base}/me\n"
    );
    tokio::select! {
        _ = serving => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    temp.close()?;
    Ok(())
}
