//! `tower-bearer dev`, the program: started as a child process, configured by a TOML file (or
//! its defaults), driven by a real OAuth 2.0 client library (the `oauth2` crate: code + PKCE,
//! refresh, client credentials) with the sign-in form answered over HTTP as a browser would,
//! and fed bad input (unknown client, wrong redirect URI, missing or `plain` PKCE, a replayed
//! code, tampered and forged consent forms) that must end in RFC 6749 errors with nothing issued.
#![cfg(all(feature = "dev", feature = "gateway"))]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};

use http::{StatusCode, header};
use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge, RedirectUrl, Scope,
    TokenResponse, TokenUrl,
};
use serde_json::Value;
use tower_bearer::BearerLayer;
use tower_bearer::JwtValidator;

/// The running program, killed when the test ends.
struct Server {
    child: Child,
    base: String,
    banner: String,
    /// Kept open: the program must not get EPIPE on a later print.
    _stdout: Option<BufReader<ChildStdout>>,
    /// The directory of its configuration file, if any: removed after the server is killed.
    _config: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `tower-bearer dev --listen 127.0.0.1:0 [extra]` and reads its banner up to the
/// `listening on` line.
fn start(extra: &[&str]) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_tower-bearer"))
        .args(["dev", "--listen", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start tower-bearer dev");
    // Owned by `Server` at once: killed and waited for however the start goes.
    let mut server =
        Server { child, base: String::new(), banner: String::new(), _stdout: None, _config: None };
    let mut stdout = BufReader::new(server.child.stdout.take().expect("stdout"));
    loop {
        let mut line = String::new();
        if stdout.read_line(&mut line).expect("read stdout") == 0 {
            panic!("tower-bearer dev exited before listening:\n{}", server.banner);
        }
        server.banner.push_str(&line);
        if let Some(addr) = line.trim().strip_prefix("listening on ") {
            server.base = format!("http://{addr}");
            server._stdout = Some(stdout);
            return server;
        }
    }
}

const CONFIG: &str = r#"
scopes = ["items:read", "items:write", "admin"]
audiences = ["tower-bearer-dev", "https://api.example.com"]
access_token_ttl_secs = 120

[[clients]]
id = "web"
secret = "web-secret"
redirect_uris = ["http://127.0.0.1:9/callback"]
scopes = ["items:read", "items:write"]

[[clients]]
id = "spa"
redirect_uris = ["http://127.0.0.1:9/spa"]

[[clients]]
id = "worker"
secret = "worker-secret"
grant_types = ["client_credentials"]
token_format = "opaque"

[[users]]
subject = "alice"
claims = { name = "Alice Liddell", email = "alice@example.com" }

[[users]]
subject = "bob"
"#;

fn configured() -> Server {
    let dir = tempfile::Builder::new().prefix("tb-dev-server-").tempdir().expect("temp dir");
    let path = dir.path().join("dev.toml");
    std::fs::write(&path, CONFIG).expect("write dev.toml");
    let mut server = start(&["-c", path.to_str().expect("utf-8 path")]);
    server._config = Some(dir);
    server
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(common::HANG_GUARD)
        .build()
        .expect("client")
}

/// The value of the hidden or radio input `name` on the sign-in page.
fn input(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).unwrap_or_else(|| panic!("no {name} field in:\n{page}")) + marker.len();
    let end = page[start..].find('"').expect("closing quote") + start;
    page[start..end].replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// A sign-in page: its fields and its cookie.
struct Page {
    status: StatusCode,
    headers: http::HeaderMap,
    body: String,
}

impl Page {
    async fn open(http: &reqwest::Client, url: &str) -> Page {
        let response = http.get(url).send().await.expect("GET /authorize");
        let (status, headers) = (response.status(), response.headers().clone());
        Page { status, headers, body: response.text().await.expect("page") }
    }

    fn cookie(&self) -> String {
        let set = self.headers.get(header::SET_COOKIE).expect("Set-Cookie").to_str().expect("ascii");
        set.split(';').next().expect("cookie pair").to_owned()
    }

    /// The form as the page would send it, with `decision`, plus `changes` (a field replaced, or
    /// added when absent; an empty value removes it).
    fn form(&self, decision: &str, changes: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut form: Vec<(String, String)> = ["request", "csrf", "client_id", "redirect_uri"]
            .iter()
            .map(|n| ((*n).to_owned(), input(&self.body, n)))
            .collect();
        form.push(("user".into(), input(&self.body, "user")));
        let mut rest = self.body.as_str();
        while let Some(at) = rest.find("name=\"scope\" value=\"") {
            rest = &rest[at + 20..];
            form.push(("scope".into(), rest[..rest.find('"').expect("quote")].to_owned()));
        }
        form.push(("decision".into(), decision.into()));
        for (name, value) in changes {
            form.retain(|(n, _)| n != name);
            if !value.is_empty() {
                form.push(((*name).to_owned(), (*value).to_owned()));
            }
        }
        form
    }

    async fn submit(
        &self,
        http: &reqwest::Client,
        base: &str,
        form: &[(String, String)],
        cookie: bool,
    ) -> reqwest::Response {
        let mut request = http.post(format!("{base}/authorize/decision")).form(form);
        if cookie {
            request = request.header(header::COOKIE, self.cookie());
        }
        request.send().await.expect("POST /authorize/decision")
    }
}

fn location(response: &reqwest::Response) -> Option<HashMap<String, String>> {
    let location = response.headers().get(header::LOCATION)?.to_str().ok()?;
    let url = reqwest::Url::parse(location).ok()?;
    Some(url.query_pairs().into_owned().collect())
}

/// The `oauth2` crate's HTTP calls, made with this crate's reqwest (no redirects followed).
async fn send(
    http: reqwest::Client,
    request: oauth2::HttpRequest,
) -> Result<oauth2::HttpResponse, reqwest::Error> {
    let response = http.execute(reqwest::Request::try_from(request)?).await?;
    let mut answer = http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        answer = answer.header(name, value);
    }
    Ok(answer.body(response.bytes().await?.to_vec()).expect("response"))
}

#[tokio::test]
async fn the_oauth2_crate_runs_code_pkce_refresh_and_client_credentials() {
    let server = configured();
    let base = &server.base;
    let http = http();
    let oauth_http = |request| send(http.clone(), request);

    // An API that trusts the server through discovery, as examples/resource_server.rs does.
    let validator = JwtValidator::from_issuer(base.as_str())
        .expect("discovery")
        .audience("tower-bearer-dev")
        .build()
        .expect("validator");
    let api = common::serve(common::routes().layer(BearerLayer::new(validator).realm(common::REALM))).await;

    let client = BasicClient::new(ClientId::new("web".into()))
        .set_client_secret(ClientSecret::new("web-secret".into()))
        .set_auth_uri(AuthUrl::new(format!("{base}/authorize")).expect("auth URL"))
        .set_token_uri(TokenUrl::new(format!("{base}/token")).expect("token URL"))
        .set_redirect_uri(RedirectUrl::new("http://127.0.0.1:9/callback".into()).expect("redirect"));
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state) = client
        .authorize_url(CsrfToken::new_random)
        .add_scope(Scope::new("items:read".into()))
        .add_scope(Scope::new("items:write".into()))
        .set_pkce_challenge(challenge)
        .url();
    // The person: the sign-in page, alice, both scopes approved.
    let page = Page::open(&http, url.as_str()).await;
    assert_eq!(page.status, StatusCode::OK);
    let answer = page.submit(&http, base, &page.form("approve", &[]), true).await;
    assert_eq!(answer.status(), StatusCode::FOUND);
    let query = location(&answer).expect("redirect to the client");
    assert_eq!(query.get("state"), Some(state.secret()), "{query:?}");
    let code = query.get("code").expect("code").clone();

    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier)
        .request_async(&oauth_http)
        .await
        .expect("code exchange by the oauth2 crate");
    let access = tokens.access_token().secret().clone();
    let scopes: Vec<String> = tokens.scopes().expect("scope").iter().map(|s| s.to_string()).collect();
    assert_eq!(scopes, ["items:read", "items:write"]);
    assert_eq!(tokens.expires_in().map(|d| d.as_secs()), Some(120));
    let me: Value = http
        .get(format!("{api}/me"))
        .bearer_auth(&access)
        .send()
        .await
        .expect("API")
        .bytes()
        .await
        .map(|b| serde_json::from_slice::<Value>(&b).expect("JSON"))
        .expect("body");
    assert_eq!(me["subject"], "alice", "{me}");

    // Refresh: rotated, narrowed on request.
    let refresh = tokens.refresh_token().expect("refresh token").clone();
    let refreshed = client
        .exchange_refresh_token(&refresh)
        .add_scope(Scope::new("items:read".into()))
        .request_async(&oauth_http)
        .await
        .expect("refresh by the oauth2 crate");
    assert_ne!(refreshed.access_token().secret(), &access);
    assert_ne!(refreshed.refresh_token().expect("rotated").secret(), refresh.secret());
    let status = http
        .get(format!("{api}/items"))
        .bearer_auth(refreshed.access_token().secret())
        .send()
        .await
        .expect("API")
        .status();
    assert_eq!(status, StatusCode::OK);
    // The old refresh token is spent: reuse is refused (and revokes the family).
    let reuse = client.exchange_refresh_token(&refresh).request_async(&oauth_http).await;
    assert!(
        matches!(reuse, Err(oauth2::RequestTokenError::ServerResponse(ref e)) if e.error().as_ref() == "invalid_grant"),
        "{reuse:?}"
    );

    // Client credentials: the worker's tokens are opaque (its own token_format).
    let worker = BasicClient::new(ClientId::new("worker".into()))
        .set_client_secret(ClientSecret::new("worker-secret".into()))
        .set_token_uri(TokenUrl::new(format!("{base}/token")).expect("token URL"));
    let machine = worker
        .exchange_client_credentials()
        .add_scope(Scope::new("admin".into()))
        .request_async(&oauth_http)
        .await
        .expect("client credentials by the oauth2 crate");
    assert_eq!(machine.access_token().secret().split('.').count(), 1, "opaque");
    assert!(machine.refresh_token().is_none());
    let introspection: Value = http
        .post(format!("{base}/introspect"))
        .basic_auth("dev-resource-server", Some("dev-resource-server-secret"))
        .form(&[("token", machine.access_token().secret())])
        .send()
        .await
        .expect("introspection")
        .bytes()
        .await
        .map(|b| serde_json::from_slice::<Value>(&b).expect("JSON"))
        .expect("body");
    assert_eq!(
        (introspection["active"].as_bool(), introspection["sub"].as_str()),
        (Some(true), Some("worker"))
    );
}

#[tokio::test]
async fn defaults_are_printed_with_ready_commands() {
    let server = start(&[]);
    let banner = &server.banner;
    for expected in [
        "NOT FOR PRODUCTION",
        "dev-public-client",
        "dev-client",
        "alice, bob",
        "curl -s -u",
        "code_verifier=",
        "resource_server",
    ] {
        assert!(banner.contains(expected), "`{expected}` missing from:\n{banner}");
    }
    // The printed client-credentials command works as printed.
    let http = http();
    let response = http
        .post(format!("{}/token", server.base))
        .basic_auth("dev-client", Some("dev-client-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token");
    assert_eq!(response.status(), StatusCode::OK);
    // The printed browser link opens the sign-in page (its PKCE pair is in the banner).
    let link = banner.lines().map(str::trim).find(|l| l.contains("/authorize?")).expect("authorize link");
    let page = Page::open(&http, link).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Alice Liddell"), "{}", page.body);
}

fn authorize_url(base: &str, client: &str, redirect: &str, extra: &[(&str, &str)]) -> String {
    let pkce = tower_bearer::dev::Pkce::new();
    let mut pairs = vec![
        ("response_type", "code"),
        ("client_id", client),
        ("redirect_uri", redirect),
        ("code_challenge", pkce.challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("state", "st"),
    ];
    for (name, value) in extra {
        pairs.retain(|(n, _)| n != name);
        if !value.is_empty() {
            pairs.push((name, value));
        }
    }
    let query = form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
    format!("{base}/authorize?{query}")
}

#[tokio::test]
async fn bad_input_gets_rfc_6749_errors_and_nothing_is_issued() {
    let server = configured();
    let base = &server.base;
    let http = http();
    const CB: &str = "http://127.0.0.1:9/spa";

    // Unknown client, wrong redirect URI: an error page here, never a redirect.
    for url in [
        authorize_url(base, "nobody", CB, &[]),
        authorize_url(base, "spa", "http://127.0.0.1:9/elsewhere", &[]),
        authorize_url(base, "spa", "http://evil.example/spa", &[]),
    ] {
        let page = Page::open(&http, &url).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{url}");
        assert!(page.headers.get(header::LOCATION).is_none());
        assert!(page.body.contains("Nothing was sent to the client"), "{}", page.body);
    }

    // Missing or plain PKCE: redirected with invalid_request, no code, no page.
    for extra in [
        &[("code_challenge", ""), ("code_challenge_method", "")][..],
        &[("code_challenge_method", "plain")][..],
        &[("code_challenge_method", "")][..],
    ] {
        let response = http.get(authorize_url(base, "spa", CB, extra)).send().await.expect("authorize");
        assert_eq!(response.status(), StatusCode::FOUND, "{extra:?}");
        let query = location(&response).expect("redirect");
        assert_eq!(query.get("error").map(String::as_str), Some("invalid_request"), "{query:?}");
        assert!(!query.contains_key("code"));
    }

    // The page: CSP, no framing, and everything echoed escaped.
    let hostile = "urn:x:<script>alert(1)</script>\"'";
    let bad_audience = Page::open(&http, &authorize_url(base, "spa", CB, &[("resource", hostile)])).await;
    assert_eq!(bad_audience.status, StatusCode::FOUND, "not an audience: invalid_target");
    let page = Page::open(&http, &authorize_url(base, "spa", CB, &[("scope", "items:read admin")])).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.headers.get(header::X_FRAME_OPTIONS).map(|v| v.as_bytes()), Some(b"DENY".as_slice()));
    let csp = page.headers.get(header::CONTENT_SECURITY_POLICY).expect("CSP").to_str().expect("ascii");
    assert!(csp.starts_with("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"), "{csp}");
    assert!(page.cookie().starts_with("tb_csrf_"));
    let set_cookie = page.headers.get(header::SET_COOKIE).expect("cookie").to_str().expect("ascii");
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"), "{set_cookie}");

    // Tampered forms: each refused, and the page is used up by the first answer.
    type Case<'a> = (&'a [(&'a str, &'a str)], bool, StatusCode);
    let tampered: [Case<'_>; 5] = [
        (&[("client_id", "web")], true, StatusCode::BAD_REQUEST),
        (&[("redirect_uri", "http://evil.example/spa")], true, StatusCode::BAD_REQUEST),
        (&[("csrf", "forged")], true, StatusCode::FORBIDDEN),
        (&[], false, StatusCode::FORBIDDEN),
        (&[("request", "unknown-request")], true, StatusCode::BAD_REQUEST),
    ];
    for (changes, cookie, status) in tampered {
        let page = Page::open(&http, &authorize_url(base, "spa", CB, &[("scope", "items:read")])).await;
        let answer = page.submit(&http, base, &page.form("approve", changes), cookie).await;
        assert_eq!(answer.status(), status, "{changes:?} cookie {cookie}");
        assert!(location(&answer).is_none(), "no redirect for a tampered form: {changes:?}");
        if !changes.iter().any(|(n, _)| *n == "request") {
            // The genuine form no longer works either: nothing is issued for this request.
            let retry = page.submit(&http, base, &page.form("approve", &[]), true).await;
            assert_eq!(retry.status(), StatusCode::BAD_REQUEST, "{changes:?}");
            assert!(retry.text().await.expect("page").contains("already answered"));
        }
    }
    // A scope that was not requested: invalid_scope to the client, no code.
    let page = Page::open(&http, &authorize_url(base, "spa", CB, &[("scope", "items:read")])).await;
    let answer = page.submit(&http, base, &page.form("approve", &[("scope", "admin")]), true).await;
    let query = location(&answer).expect("redirect");
    assert_eq!(query.get("error").map(String::as_str), Some("invalid_scope"), "{query:?}");
    assert!(!query.contains_key("code"));
    // Deny: access_denied with the state.
    let page = Page::open(&http, &authorize_url(base, "spa", CB, &[])).await;
    let query = location(&page.submit(&http, base, &page.form("deny", &[]), true).await).expect("redirect");
    assert_eq!(
        (query.get("error").map(String::as_str), query.get("state").map(String::as_str)),
        (Some("access_denied"), Some("st"))
    );

    // A replayed code: the second exchange is invalid_grant.
    let pkce = tower_bearer::dev::Pkce::new();
    let url = authorize_url(base, "spa", CB, &[("code_challenge", pkce.challenge.as_str())]);
    let page = Page::open(&http, &url).await;
    let query =
        location(&page.submit(&http, base, &page.form("approve", &[]), true).await).expect("redirect");
    let code = query.get("code").expect("code");
    let exchange = || {
        http.post(format!("{base}/token"))
            .form(&[
                ("grant_type", "authorization_code"),
                ("client_id", "spa"),
                ("code", code.as_str()),
                ("redirect_uri", CB),
                ("code_verifier", pkce.verifier.as_str()),
            ])
            .send()
    };
    assert_eq!(exchange().await.expect("exchange").status(), StatusCode::OK);
    let replay = exchange().await.expect("replay");
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    let body: Value = serde_json::from_slice(&replay.bytes().await.expect("body")).expect("JSON");
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn the_token_debugger_checks_signatures_and_escapes() {
    let server = configured();
    let base = &server.base;
    let http = http();
    let token: Value = http
        .post(format!("{base}/token"))
        .basic_auth("web", Some("web-secret"))
        .form(&[("grant_type", "client_credentials"), ("scope", "items:read")])
        .send()
        .await
        .expect("token")
        .bytes()
        .await
        .map(|b| serde_json::from_slice::<Value>(&b).expect("JSON"))
        .expect("body");
    let jwt = token["access_token"].as_str().expect("JWT");
    let inspect = |token: String| {
        let http = http.clone();
        async move {
            let response =
                http.post(format!("{base}/debug")).form(&[("token", token)]).send().await.expect("debug");
            assert_eq!(response.status(), StatusCode::OK);
            assert!(response.headers().get(header::CONTENT_SECURITY_POLICY).is_some());
            response.text().await.expect("page")
        }
    };
    let page = inspect(jwt.to_owned()).await;
    assert!(page.contains("valid: signed by this server&#39;s key"), "{page}");
    assert!(
        page.contains("more seconds") && page.contains("&quot;client_id&quot;: &quot;web&quot;"),
        "{page}"
    );
    // A flipped signature byte fails the check.
    let mut forged = jwt.to_owned();
    let last = if forged.ends_with('A') { 'B' } else { 'A' };
    forged.pop();
    forged.push(last);
    let page = inspect(forged).await;
    assert!(page.contains("class=\"bad\"") && !page.contains("valid: signed"), "{page}");
    // Markup in the pasted text is shown, not run.
    let page = inspect("<script>alert(1)</script>".into()).await;
    assert!(page.contains("&lt;script&gt;") && !page.contains("<script>"), "{page}");
}

/// The one request value the sign-in page shows that the client does not register: `resource`
/// (any absolute URI when no audiences are configured). Shown as text, never as markup. (The
/// library in-process: the program always has a fixed set of clients.)
#[tokio::test]
async fn request_text_on_the_sign_in_page_is_escaped() {
    let dev = tower_bearer::dev::DevIssuer::builder()
        .algorithms([tower_bearer::Algorithm::ES256])
        .interactive(true)
        .start()
        .await
        .expect("dev server");
    let hostile = "urn:x:\"><script>alert(1)</script><img/src='x'>";
    let url = authorize_url(
        dev.issuer(),
        "dev-public-client",
        "http://127.0.0.1/callback",
        &[("resource", hostile)],
    );
    let page = Page::open(&http(), &url).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(!page.body.contains("<script>") && !page.body.contains("<img"), "{}", page.body);
    assert!(
        page.body.contains("&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;img/src=&#39;x&#39;&gt;"),
        "{}",
        page.body
    );
    // With no users configured, the subject field offers the development user.
    assert!(page.body.contains("name=\"subject\" value=\"alice\""), "{}", page.body);
}

/// Reached under another name than its listening address: the issuer and every endpoint of the
/// metadata use that name.
#[tokio::test]
async fn the_issuer_url_can_be_set() {
    let dev = tower_bearer::dev::DevIssuer::builder()
        .algorithms([tower_bearer::Algorithm::ES256])
        .issuer_url("http://auth.localhost:8000/")
        .start()
        .await
        .expect("dev server");
    assert_eq!(dev.issuer(), "http://auth.localhost:8000");
    let response = http()
        .get(format!("http://{}/.well-known/oauth-authorization-server", dev.addr()))
        .send()
        .await
        .expect("metadata");
    let metadata: Value = serde_json::from_slice(&response.bytes().await.expect("body")).expect("JSON");
    assert_eq!(metadata["issuer"], "http://auth.localhost:8000");
    assert_eq!(metadata["token_endpoint"], "http://auth.localhost:8000/token");
}
