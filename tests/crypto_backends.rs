//! With `--all-features` both of jsonwebtoken's crypto backends (`aws_lc_rs` and `rust_crypto`)
//! are compiled in, and jsonwebtoken then refuses to pick one by itself (it panics at the first
//! verification). The crate installs a provider explicitly; these tests check that nothing
//! panics and that an application's own choice of provider is kept.
//!
//! jsonwebtoken's provider is process-wide and can be set once, so each scenario needs a fresh
//! process: the second test re-runs this test binary, filtered to itself.
#![cfg(all(feature = "dev", feature = "axum"))]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::TestApp;
use jsonwebtoken::crypto::{CryptoProvider, JwtVerifier};
use jsonwebtoken::{Algorithm as JwtAlgorithm, DecodingKey};
use tower_bearer::dev::DevIssuer;
use tower_bearer::{Algorithm, RequestView, Validator};

const ALGORITHMS: [Algorithm; 4] = [Algorithm::RS256, Algorithm::PS256, Algorithm::ES256, Algorithm::EdDSA];

/// Tokens of every default algorithm validate, over HTTP and in-process.
async fn validate_every_algorithm() {
    let dev = DevIssuer::start().await.unwrap();
    let app = TestApp::start(common::validator(&dev)).await;
    for alg in ALGORITHMS {
        let subject = format!("user-{alg:?}");
        let token = dev.token().alg(alg).subject(&subject).sign();
        let principal = app.get("/me", &token).await.assert_ok_json();
        assert_eq!(principal["subject"], subject.as_str());
        let principal = app.validator.validate(&token, &RequestView::detached()).resolve().await.unwrap();
        assert_eq!(principal.subject(), Some(subject.as_str()));
        // A forged signature is still refused (verification really ran).
        let (input, _) = token.rsplit_once('.').unwrap();
        let other = dev.token().alg(alg).subject("someone-else").sign();
        let forged = format!("{input}.{}", other.rsplit_once('.').unwrap().1);
        app.get("/me", &forged).await.assert_invalid_token();
    }
}

/// Nothing in this process installs a provider: the crate must, or (with both backends compiled
/// in, as under `--all-features`) the first verification panics.
#[tokio::test]
async fn tokens_validate_without_panicking_when_nobody_else_installs_a_provider() {
    validate_every_algorithm().await;
}

const CHILD_ENV: &str = "TOWER_BEARER_TEST_PROVIDER_CHILD";
static VERIFIERS_MADE: AtomicUsize = AtomicUsize::new(0);

fn counting_verifier(
    alg: &JwtAlgorithm,
    key: &DecodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn JwtVerifier>> {
    VERIFIERS_MADE.fetch_add(1, Ordering::SeqCst);
    (jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.verifier_factory)(alg, key)
}

/// An application that installs its own provider (here: the pure-Rust one, counting its use)
/// before building a validator keeps it, and tokens validate with it.
#[tokio::test]
async fn an_application_provider_installed_first_is_kept() {
    if std::env::var_os(CHILD_ENV).is_none() {
        // Parent: run this very test in a fresh process.
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "an_application_provider_installed_first_is_kept",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, "1")
            .output()
            .expect("run the test binary");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success() && stdout.contains("1 passed"), "child failed:\n{stdout}\n{stderr}");
        assert!(stdout.contains("child: provider kept"), "{stdout}");
        return;
    }

    let provider: &'static CryptoProvider = Box::leak(Box::new(CryptoProvider {
        verifier_factory: counting_verifier,
        ..jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.clone()
    }));
    provider.install_default().expect("nothing installed a provider before this point");
    validate_every_algorithm().await;
    assert!(
        VERIFIERS_MADE.load(Ordering::SeqCst) >= ALGORITHMS.len(),
        "the application's provider was not used"
    );
    println!("child: provider kept");
}
