//! A person in a real browser: headless Chromium, driven through chromedriver (WebDriver), runs
//! the authorization code flow with PKCE through the development server's sign-in page
//! (approve, narrowed scopes, deny), and the token it gets is then used at a `BearerLayer` API.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/install-browser.sh`). Outside CI, a
//! machine without chromedriver skips with a loud message; under CI (`CI` set) it fails.
//!
//! `TOWER_BEARER_SCREENSHOTS=docs/screenshots` saves the pages as PNGs (for the README).
#![cfg(all(feature = "dev", feature = "axum"))]

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::FutureExt;
use http::StatusCode;
use serde_json::{Value, json};
use tower_bearer::dev::{DevClient, DevIssuer, DevUser, Pkce};
use tower_bearer::{Algorithm, BearerLayer};

/// chromedriver, killed when the test ends (pass or fail); then its temp dir (Chromium's
/// profile and scoped dirs, which it would otherwise leave in `/tmp`) is removed.
struct Driver {
    child: Child,
    _temp: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_chromedriver() -> Option<PathBuf> {
    let mut candidates =
        vec![PathBuf::from("/usr/bin/chromedriver"), PathBuf::from("/usr/lib/chromium/chromedriver")];
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|dir| dir.join("chromedriver")));
    }
    candidates.into_iter().find(|p| p.is_file())
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("address").port()
}

/// Starts chromedriver and a headless Chromium session; `None` (after a loud message) when
/// chromedriver is missing outside CI.
async fn browser() -> Option<(Driver, Client)> {
    let Some(chromedriver) = find_chromedriver() else {
        if std::env::var_os("CI").is_some() {
            panic!("chromedriver not found under CI: .ci/install-browser.sh must install chromium-driver");
        }
        eprintln!(
            "\n*** SKIPPED tests/dev_browser.rs: chromedriver not found (apt-get install chromium \
             chromium-driver, or run .ci/install-browser.sh) ***\n"
        );
        return None;
    };
    let port = free_port();
    let temp = tempfile::Builder::new().prefix("tb-chromium-").tempdir().expect("temp dir");
    let child = Command::new(&chromedriver)
        .arg(format!("--port={port}"))
        // Chromium (started by chromedriver, with its environment) makes its dirs under TMPDIR.
        .env("TMPDIR", temp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", chromedriver.display()));
    let driver = Driver { child, _temp: temp };
    let url = format!("http://127.0.0.1:{port}");
    let http = common::client();
    // Wait until chromedriver answers (bounded: a hang guard, not an assertion on time).
    let mut ready = false;
    for _ in 0..300 {
        if http.get(format!("{url}/status")).send().await.is_ok_and(|r| r.status().is_success()) {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "chromedriver did not start");
    let mut caps = serde_json::Map::new();
    let mut args = vec!["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=820,760"];
    args.push("--disable-dev-shm-usage");
    let mut options = json!({ "args": args });
    if Path::new("/usr/bin/chromium").is_file() {
        options["binary"] = "/usr/bin/chromium".into();
    }
    caps.insert("goog:chromeOptions".into(), options);
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client =
        ClientBuilder::new(connector).capabilities(caps).connect(&url).await.expect("WebDriver session");
    Some((driver, client))
}

/// Saves a screenshot of the current page when `TOWER_BEARER_SCREENSHOTS` names a directory.
/// The text of the element `id`, once the page shows it (bounded by the hang guard).
async fn element_text(browser: &Client, id: &str) -> String {
    let element = browser.wait().at_most(common::HANG_GUARD).for_element(Locator::Id(id)).await;
    element.unwrap_or_else(|e| panic!("#{id}: {e}")).text().await.expect("text")
}

async fn screenshot(browser: &Client, name: &str) {
    if let Some(dir) = std::env::var_os("TOWER_BEARER_SCREENSHOTS") {
        let png = browser.screenshot().await.expect("screenshot");
        std::fs::create_dir_all(&dir).expect("screenshot directory");
        std::fs::write(Path::new(&dir).join(format!("{name}.png")), png).expect("write screenshot");
    }
}

struct Setup {
    dev: DevIssuer,
    api: String,
    callback: String,
    http: reqwest::Client,
}

const CLIENT: &str = "spa-<demo>";

impl Setup {
    async fn start() -> Setup {
        // Where the browser lands after the decision: a page of its own, so the URL with the
        // code is the browser's current URL.
        let callback = common::serve(axum::Router::new().route(
            "/callback",
            axum::routing::get(|| async { axum::response::Html("<p>back at the application</p>") }),
        ))
        .await;
        let callback = format!("{callback}/callback");
        let dev = DevIssuer::builder()
            .algorithms([Algorithm::ES256])
            .interactive(true)
            .users([
                DevUser::new("alice").claim("name", "Alice Liddell").claim("email", "alice@example.com"),
                DevUser::new("bob").claim("name", "Bob Builder").claim("email", "bob@example.com"),
            ])
            .client(DevClient::public(CLIENT).redirect_uri(&callback))
            .start()
            .await
            .expect("start the dev authorization server");
        let validator = common::validator(&dev);
        let api =
            common::serve(common::routes().layer(BearerLayer::new(validator).realm(common::REALM))).await;
        Setup { dev, api, callback, http: common::client() }
    }

    fn authorize_url(&self, pkce: &Pkce, scope: &str, state: &str) -> String {
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("response_type", "code"),
                ("client_id", CLIENT),
                ("redirect_uri", self.callback.as_str()),
                ("code_challenge", pkce.challenge.as_str()),
                ("code_challenge_method", "S256"),
                ("scope", scope),
                ("state", state),
            ])
            .finish();
        format!("{}?{query}", self.dev.authorization_url())
    }

    /// The query of the browser's current URL, which must be the client's callback.
    async fn callback_query(&self, browser: &Client) -> HashMap<String, String> {
        // A click returns before the navigation it starts ends: wait for the URL to change
        // (bounded by the hang guard; nothing is asserted about the time it takes).
        let start = std::time::Instant::now();
        let mut url = browser.current_url().await.expect("current URL");
        while !url.as_str().starts_with(&self.callback) && start.elapsed() < common::HANG_GUARD {
            tokio::time::sleep(Duration::from_millis(50)).await;
            url = browser.current_url().await.expect("current URL");
        }
        assert!(url.as_str().starts_with(&self.callback), "the browser went back to the client: {url}");
        url.query_pairs().into_owned().collect()
    }

    async fn exchange(&self, code: &str, pkce: &Pkce) -> Value {
        let response = self
            .http
            .post(self.dev.token_url())
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", self.callback.as_str()),
                ("code_verifier", pkce.verifier.as_str()),
                ("client_id", CLIENT),
            ])
            .send()
            .await
            .expect("token request");
        assert_eq!(response.status(), StatusCode::OK);
        serde_json::from_slice(&response.bytes().await.expect("body")).expect("token JSON")
    }

    async fn call(&self, method: reqwest::Method, token: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .request(method, format!("{}/items", self.api))
            .bearer_auth(token)
            .send()
            .await
            .expect("API call");
        let status = response.status();
        (status, serde_json::from_slice(&response.bytes().await.expect("body")).unwrap_or(Value::Null))
    }
}

fn claims(jwt: &str) -> Value {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).expect("base64url");
    serde_json::from_slice(&bytes).expect("claims JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_in_a_browser_and_the_token_calls_the_api() {
    let Some((_driver, browser)) = browser().await else { return };
    let setup = Setup::start().await;
    // Close the browser session whatever happens, then report.
    let result = std::panic::AssertUnwindSafe(run(&setup, &browser)).catch_unwind().await;
    let _ = browser.close().await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

async fn run(setup: &Setup, browser: &Client) {
    // 1. Approve every requested scope, as bob (picked from the list).
    let pkce = Pkce::new();
    browser
        .goto(&setup.authorize_url(&pkce, "items:read items:write", "s-1"))
        .await
        .expect("open /authorize");
    let page = browser.source().await.expect("page source");
    // The client id is echoed escaped, never as markup.
    assert!(page.contains("spa-&lt;demo&gt;") && !page.contains("spa-<demo>"), "{page}");
    assert!(page.contains("items:write") && page.contains("Alice Liddell"), "{page}");
    screenshot(browser, "sign-in").await;
    browser
        .find(Locator::Css("input[name=user][value=bob]"))
        .await
        .expect("bob")
        .click()
        .await
        .expect("pick bob");
    browser.find(Locator::Id("approve")).await.expect("approve button").click().await.expect("approve");
    let answer = setup.callback_query(browser).await;
    assert_eq!(answer.get("state").map(String::as_str), Some("s-1"), "{answer:?}");
    assert_eq!(answer.get("iss").map(String::as_str), Some(setup.dev.issuer()), "{answer:?}");
    let code = answer.get("code").unwrap_or_else(|| panic!("no code: {answer:?}"));
    let tokens = setup.exchange(code, &pkce).await;
    let access = tokens["access_token"].as_str().expect("access token");
    assert_eq!(tokens["scope"], "items:read items:write");
    let token_claims = claims(access);
    assert_eq!(token_claims["sub"], "bob");
    assert_eq!(token_claims["email"], "bob@example.com", "the user's claims are in the token");
    let (status, body) = setup.call(reqwest::Method::GET, access).await;
    assert_eq!((status, body["for"].as_str()), (StatusCode::OK, Some("bob")));
    assert_eq!(setup.call(reqwest::Method::POST, access).await.0, StatusCode::CREATED);
    // The token debugger, next to the API: paste the token, see it verified.
    browser.goto(&format!("{}/debug", setup.dev.issuer())).await.expect("open /debug");
    browser.find(Locator::Id("token")).await.expect("token field").send_keys(access).await.expect("paste");
    browser.find(Locator::Id("inspect")).await.expect("inspect button").click().await.expect("inspect");
    // The click submits a form: wait for the page it loads (bounded by the hang guard).
    let signature = element_text(browser, "signature").await;
    assert!(signature.starts_with("valid: signed by this server's key es256-1"), "{signature}");
    let shown = element_text(browser, "claims").await;
    assert!(shown.contains("\"sub\": \"bob\""), "{shown}");
    screenshot(browser, "token-debugger").await;

    // 2. Narrowed: items:write unticked, and a typed subject.
    let pkce = Pkce::new();
    browser
        .goto(&setup.authorize_url(&pkce, "items:read items:write", "s-2"))
        .await
        .expect("open /authorize");
    browser
        .find(Locator::Css("input[name=scope][value='items:write']"))
        .await
        .expect("items:write checkbox")
        .click()
        .await
        .expect("untick items:write");
    browser
        .find(Locator::Css("input[name=subject]"))
        .await
        .expect("subject field")
        .send_keys("carol")
        .await
        .expect("type");
    browser.find(Locator::Id("approve")).await.expect("approve button").click().await.expect("approve");
    let answer = setup.callback_query(browser).await;
    let code = answer.get("code").unwrap_or_else(|| panic!("no code: {answer:?}"));
    let tokens = setup.exchange(code, &pkce).await;
    let access = tokens["access_token"].as_str().expect("access token");
    assert_eq!(tokens["scope"], "items:read", "only the ticked scope is granted");
    assert_eq!(claims(access)["sub"], "carol");
    assert_eq!(setup.call(reqwest::Method::GET, access).await.0, StatusCode::OK);
    assert_eq!(
        setup.call(reqwest::Method::POST, access).await.0,
        StatusCode::FORBIDDEN,
        "items:write was not granted: insufficient_scope"
    );

    // 3. Deny: the client gets access_denied (RFC 6749 §4.1.2.1), with its state, and no code.
    let pkce = Pkce::new();
    browser.goto(&setup.authorize_url(&pkce, "items:read", "s-3")).await.expect("open /authorize");
    browser.find(Locator::Id("deny")).await.expect("deny button").click().await.expect("deny");
    let answer = setup.callback_query(browser).await;
    assert_eq!(answer.get("error").map(String::as_str), Some("access_denied"), "{answer:?}");
    assert_eq!(answer.get("state").map(String::as_str), Some("s-3"));
    assert!(!answer.contains_key("code"));

    // 4. An unknown client: an error page on the server, never a redirect.
    let bad = setup.authorize_url(&Pkce::new(), "items:read", "s-4").replace("spa-%3Cdemo%3E", "nobody");
    browser.goto(&bad).await.expect("open /authorize");
    let page = browser.source().await.expect("page");
    assert!(page.contains("unknown client_id"), "{page}");
    assert!(browser.current_url().await.expect("url").as_str().starts_with(setup.dev.issuer()));
    screenshot(browser, "error").await;
}
