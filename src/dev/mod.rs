//! A development issuer and authorization server (feature `dev`): generates signing keys,
//! serves them as a JWKS on 127.0.0.1 over real HTTP, mints access tokens with whatever claims a
//! test or a demo needs, and runs the OAuth 2.0 flow end to end.
//!
//! **Not for production.** Keys, codes and tokens live in memory and die with the process; the
//! server binds to 127.0.0.1 unless told otherwise; consent is automatic for a configured
//! development user, or given on a sign-in page in [interactive](DevIssuerBuilder::interactive)
//! mode.
//! Within those limits it follows the standards, so that clients and resource servers tested
//! against it behave with real authorization servers too:
//!
//! | endpoint | what |
//! |---|---|
//! | `GET /authorize` | authorization code grant (RFC 6749 §4.1), PKCE `S256` required (RFC 7636), `resource` (RFC 8707), `iss` in the response (RFC 9207) |
//! | `POST /token` | `authorization_code`, `refresh_token` (rotated; reuse revokes the family, RFC 9700 §4.14.2), `client_credentials`; `client_secret_basic`, `client_secret_post`, public clients |
//! | `GET /jwks.json` | the public keys |
//! | `GET /.well-known/oauth-authorization-server`, `/.well-known/openid-configuration` | metadata (RFC 8414) |
//! | `POST /introspect` | RFC 7662 (authenticate as [`RESOURCE_CLIENT_ID`]) |
//! | `POST /revoke` | RFC 7009; a refresh token revokes its whole family |
//! | `POST /authorize/decision` | the sign-in page's answer, in [interactive](DevIssuerBuilder::interactive) mode |
//! | `GET`/`POST /debug` | the token debugger: header, claims, signature check against this server's keys, expiry |
//!
//! Clients registered by default: [`DEV_CLIENT_ID`] (confidential) and [`DEV_PUBLIC_CLIENT_ID`]
//! (public), both with the redirect URI [`DEV_REDIRECT_URI`]; more with
//! [`DevIssuerBuilder::client`]. Access tokens are RFC 9068 JWTs (`typ: at+jwt`), or opaque with
//! [`DevIssuerBuilder::opaque_access_tokens`]. Codes and refresh tokens are 256 random bits,
//! stored as their SHA-256 only.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::time::Duration;
//! use tower_bearer::{Algorithm, dev::DevIssuer};
//!
//! let issuer = DevIssuer::start().await?;
//! let token = issuer
//!     .token()
//!     .subject("alice")
//!     .scope("items:read")
//!     .alg(Algorithm::ES256)
//!     .expires_in(Duration::from_secs(60))
//!     .sign();
//! println!("JWKS at {}, token {token}", issuer.jwks_url());
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

mod authorize;
mod clients;
mod consent;
mod debugger;
mod endpoints;
mod html;
mod keys;
mod mint;
mod pkce;
mod redirect;
mod store;
mod token;
mod token_error;
mod users;

pub use clients::{DEV_CLIENT_ID, DEV_CLIENT_SECRET, DEV_PUBLIC_CLIENT_ID, DEV_REDIRECT_URI, DevClient};
use endpoints::{introspect, jwks, metadata, revoke};
pub use keys::alg_name;
use keys::{DevKey, b64};
use mint::Kid;
pub use mint::{OpaqueTokenBuilder, TokenBuilder};
pub use pkce::{Pkce, s256};
pub use users::DevUser;

use aws_lc_rs::rand::SystemRandom;
use axum::Router;
use axum::routing::{get, post};
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;

/// The audience dev tokens carry unless told otherwise.
pub const DEFAULT_AUDIENCE: &str = "tower-bearer-dev";
/// The client id the resource server uses at the introspection endpoint.
pub const RESOURCE_CLIENT_ID: &str = "dev-resource-server";
/// Its secret (`client_secret_basic` or `client_secret_post`).
pub const RESOURCE_CLIENT_SECRET: &str = "dev-resource-server-secret";
/// A bearer token the resource server may authenticate with instead.
pub const RESOURCE_BEARER: &str = "dev-resource-server-bearer";
/// The scopes the authorization server knows unless told otherwise.
pub const DEFAULT_SCOPES: [&str; 2] = ["items:read", "items:write"];

struct Shared {
    issuer: String,
    /// Every key that can sign; the last key of an algorithm signs new tokens.
    keys: RwLock<Vec<Arc<DevKey>>>,
    /// Kids withdrawn from the JWKS (they still sign, for rotation tests).
    retired: RwLock<Vec<String>>,
    jwks_fetches: AtomicUsize,
    jwks_failing: AtomicBool,
    jwks_max_age: u64,
    pin_alg: bool,
    /// Opaque tokens by value, with their claims.
    opaque: RwLock<HashMap<String, OpaqueGrant>>,
    introspection_calls: AtomicUsize,
    introspection_failing: AtomicBool,
    /// How the last introspection call authenticated.
    last_introspection_auth: RwLock<Option<&'static str>>,
    /// The authorization server part.
    auth: AuthServer,
    /// DPoP proofs at the token endpoint (RFC 9449 §5): `htu` is this issuer's `/token`.
    dpop: crate::dpop::Dpop,
}

/// Settings and state of the authorization server endpoints.
struct AuthServer {
    clients: Vec<DevClient>,
    scopes: Vec<String>,
    user: String,
    /// Interactive mode: `GET /authorize` shows the sign-in page.
    interactive: bool,
    users: Vec<DevUser>,
    /// The `aud` of tokens issued without `resource`, and the only `resource` values accepted
    /// when configured.
    audiences: Option<Vec<String>>,
    access_ttl: Duration,
    refresh_ttl: Duration,
    code_ttl: Duration,
    opaque_access_tokens: bool,
    clock: crate::Clock,
    consent_denied: AtomicBool,
    store: Mutex<store::Store>,
}

impl AuthServer {
    /// The `aud` of a token requested without `resource`.
    fn default_audience(&self) -> &str {
        self.audiences.as_ref().and_then(|a| a.first()).map_or(DEFAULT_AUDIENCE, String::as_str)
    }

    /// Whether `resource` names one of the configured audiences (any, when none are).
    fn resource_allowed(&self, resource: &str) -> bool {
        self.audiences.as_ref().is_none_or(|a| a.iter().any(|x| x == resource))
    }

    /// The claims of the user `subject` (none for a typed subject or a client).
    fn user_claims(&self, subject: &str) -> Option<&Map<String, Value>> {
        self.users.iter().find(|u| u.subject == subject).map(|u| &u.claims)
    }
}

impl Shared {
    /// A token builder with the default claims (see [`DevIssuer::token`]).
    fn token(&self) -> TokenBuilder<'_> {
        // The configured clock, like everything else the server dates (`DevIssuerBuilder::clock`).
        let now = self.auth.clock.unix_now();
        let mut claims = Map::new();
        claims.insert("iss".into(), self.issuer.clone().into());
        claims.insert("sub".into(), "alice".into());
        claims.insert("aud".into(), DEFAULT_AUDIENCE.into());
        claims.insert("client_id".into(), "dev-client".into());
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), now.saturating_add(300).into());
        claims.insert("jti".into(), random_id().into());
        let mut header = Map::new();
        header.insert("typ".into(), "at+jwt".into());
        TokenBuilder { issuer: self, claims, header, alg: None, kid: Kid::Auto }
    }

    fn find_key(&self, pred: impl Fn(&DevKey) -> bool) -> Option<Arc<DevKey>> {
        read(&self.keys).iter().rev().find(|k| pred(k)).cloned()
    }
}

struct OpaqueGrant {
    claims: Map<String, Value>,
    revoked: bool,
}

/// Settings for [`DevIssuer`].
#[derive(Debug, Clone)]
pub struct DevIssuerBuilder {
    algorithms: Vec<Algorithm>,
    pin_alg: bool,
    jwks_max_age: u64,
    port: u16,
    ip: IpAddr,
    issuer_url: Option<String>,
    clients: Vec<DevClient>,
    scopes: Vec<String>,
    user: String,
    interactive: bool,
    users: Vec<DevUser>,
    audiences: Option<Vec<String>>,
    access_ttl: Duration,
    refresh_ttl: Duration,
    code_ttl: Duration,
    opaque_access_tokens: bool,
    clock: crate::Clock,
    store_capacity: usize,
}

impl Default for DevIssuerBuilder {
    fn default() -> Self {
        DevIssuerBuilder {
            algorithms: vec![Algorithm::RS256, Algorithm::PS256, Algorithm::ES256, Algorithm::EdDSA],
            pin_alg: true,
            jwks_max_age: 300,
            port: 0,
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            issuer_url: None,
            clients: clients::default_clients(),
            scopes: DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
            user: "alice".into(),
            interactive: false,
            users: Vec::new(),
            audiences: None,
            access_ttl: Duration::from_secs(300),
            refresh_ttl: Duration::from_secs(24 * 3600),
            code_ttl: Duration::from_secs(60),
            opaque_access_tokens: false,
            clock: crate::Clock::system(),
            store_capacity: store::DEFAULT_CAPACITY,
        }
    }
}

impl DevIssuerBuilder {
    /// One key is generated per algorithm (default RS256, PS256, ES256, EdDSA). At least one:
    /// [`start`](Self::start) refuses an empty list.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }
    /// Whether JWKs carry `alg` (default true; many real issuers omit it).
    pub fn pin_alg(mut self, pin: bool) -> Self {
        self.pin_alg = pin;
        self
    }
    /// `Cache-Control: max-age` of the JWKS response (default 300).
    pub fn jwks_max_age(mut self, secs: u64) -> Self {
        self.jwks_max_age = secs;
        self
    }
    /// Port on 127.0.0.1 (default 0: any free port).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// The address to listen on (default `127.0.0.1`, with [`port`](Self::port)). Anything but
    /// a loopback address exposes a server that signs in anyone who asks: development only.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.ip = addr.ip();
        self.port = addr.port();
        self
    }

    /// The issuer identifier, and the base of every endpoint URL in the metadata (default
    /// `http://ADDR`, the address listened on). For a server reached under another name than
    /// its listening address (`0.0.0.0`, a container, a tunnel). A trailing `/` is dropped.
    pub fn issuer_url(mut self, url: impl Into<String>) -> Self {
        self.issuer_url = Some(url.into().trim_end_matches('/').to_owned());
        self
    }

    /// Interactive mode (default false): `GET /authorize` shows a sign-in and consent page
    /// where a person picks or types a user, sees the client and the requested scopes, and
    /// approves (some or all of the scopes) or denies. Off, every valid request is approved at
    /// once by the [`user`](Self::user), as tests without a browser need.
    pub fn interactive(mut self, interactive: bool) -> Self {
        self.interactive = interactive;
        self
    }

    /// The users offered on the sign-in page, with the claims their tokens carry (default
    /// none: the page only has a field to type a subject).
    pub fn users(mut self, users: impl IntoIterator<Item = DevUser>) -> Self {
        self.users = users.into_iter().collect();
        self
    }

    /// The audiences of the server: the first is the `aud` of tokens requested without
    /// `resource` (default [`DEFAULT_AUDIENCE`]), and a `resource` (RFC 8707) must be one of
    /// them (default: any absolute URI).
    pub fn audiences<S: Into<String>>(mut self, audiences: impl IntoIterator<Item = S>) -> Self {
        let audiences: Vec<String> = audiences.into_iter().map(Into::into).collect();
        self.audiences = (!audiences.is_empty()).then_some(audiences);
        self
    }

    /// Replaces every registered client, the default ones included.
    pub fn clients(mut self, clients: impl IntoIterator<Item = DevClient>) -> Self {
        self.clients = clients.into_iter().collect();
        self
    }

    /// Registers another client (the default ones stay registered).
    pub fn client(mut self, client: DevClient) -> Self {
        self.clients.retain(|c| c.id != client.id);
        self.clients.push(client);
        self
    }
    /// The scopes the authorization server knows (default [`DEFAULT_SCOPES`]).
    pub fn scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }
    /// The development user who approves every authorization request (`sub` of the tokens;
    /// default "alice").
    pub fn user(mut self, subject: impl Into<String>) -> Self {
        self.user = subject.into();
        self
    }
    /// Lifetime of access tokens from the token endpoint (default 5 minutes; whole seconds).
    pub fn access_token_ttl(mut self, ttl: Duration) -> Self {
        self.access_ttl = ttl;
        self
    }
    /// Lifetime of refresh tokens (default one day).
    pub fn refresh_token_ttl(mut self, ttl: Duration) -> Self {
        self.refresh_ttl = ttl;
        self
    }
    /// Lifetime of authorization codes (default 60 s; zero makes every code expired at once).
    pub fn code_ttl(mut self, ttl: Duration) -> Self {
        self.code_ttl = ttl;
        self
    }
    /// Whether the token endpoint issues opaque access tokens (checked by introspection)
    /// instead of RFC 9068 JWTs (default false).
    pub fn opaque_access_tokens(mut self, opaque: bool) -> Self {
        self.opaque_access_tokens = opaque;
        self
    }

    /// Where the authorization server's "now" comes from (default: the system clock): `iat`
    /// and `exp` of the tokens it issues, expiry of codes and refresh tokens, and introspection.
    /// Share one [`Clock`](crate::Clock) with a resource server to test expiry without sleeping.
    pub fn clock(mut self, clock: crate::Clock) -> Self {
        self.clock = clock;
        self
    }

    /// How many authorization codes, refresh tokens and access tokens (of each) the server
    /// remembers at once (default 100 000). Expired ones are forgotten as room is needed; when
    /// all are live, `GET /authorize` answers `error=temporarily_unavailable` and `POST /token`
    /// `503` until some expire.
    pub fn store_capacity(mut self, capacity: usize) -> Self {
        self.store_capacity = capacity;
        self
    }

    /// Generates the keys and starts serving.
    ///
    /// An empty [`algorithms`](Self::algorithms) list is an
    /// [`InvalidInput`](std::io::ErrorKind::InvalidInput) error.
    pub async fn start(self) -> std::io::Result<DevIssuer> {
        // Refused here rather than left to `TokenBuilder::sign` to panic on, later and with the
        // store lock held (issue() signs under it).
        if self.algorithms.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the dev issuer needs at least one algorithm",
            ));
        }
        let listener = tokio::net::TcpListener::bind((self.ip, self.port)).await?;
        let addr = listener.local_addr()?;
        let issuer = self.issuer_url.clone().unwrap_or_else(|| format!("http://{addr}"));
        let keys = self
            .algorithms
            .iter()
            .map(|&alg| {
                Arc::new(DevKey::generate(alg, format!("{}-1", alg_name(alg).to_lowercase()), self.pin_alg))
            })
            .collect();
        let dpop = crate::dpop::Dpop::allowed(&issuer)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?
            .clock(self.clock.clone());
        let shared = Arc::new(Shared {
            dpop,
            issuer,
            keys: RwLock::new(keys),
            retired: RwLock::new(Vec::new()),
            jwks_fetches: AtomicUsize::new(0),
            jwks_failing: AtomicBool::new(false),
            jwks_max_age: self.jwks_max_age,
            pin_alg: self.pin_alg,
            opaque: RwLock::new(HashMap::new()),
            introspection_calls: AtomicUsize::new(0),
            introspection_failing: AtomicBool::new(false),
            last_introspection_auth: RwLock::new(None),
            auth: AuthServer {
                clients: self.clients,
                scopes: self.scopes,
                user: self.user,
                interactive: self.interactive,
                users: self.users,
                audiences: self.audiences,
                access_ttl: self.access_ttl,
                refresh_ttl: self.refresh_ttl,
                code_ttl: self.code_ttl,
                opaque_access_tokens: self.opaque_access_tokens,
                clock: self.clock,
                consent_denied: AtomicBool::new(false),
                store: Mutex::new(store::Store::new(self.store_capacity)),
            },
        });
        let app = Router::new()
            .route("/jwks.json", get(jwks))
            .route("/.well-known/openid-configuration", get(metadata))
            .route("/.well-known/oauth-authorization-server", get(metadata))
            .route("/introspect", post(introspect))
            .route("/revoke", post(revoke))
            .route("/authorize", get(authorize::authorize))
            .route("/authorize/decision", post(consent::decide))
            .route("/debug", get(debugger::show).post(debugger::inspect))
            .route("/token", post(token::token))
            .with_state(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(DevIssuer { shared, addr, stop: Some(stop) })
    }
}

/// A development issuer serving its JWKS on 127.0.0.1. Stops serving when dropped.
pub struct DevIssuer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl std::fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIssuer").field("issuer", &self.shared.issuer).finish_non_exhaustive()
    }
}

impl Drop for DevIssuer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl DevIssuer {
    /// Starts with the default settings (RS256, PS256, ES256 and EdDSA keys).
    pub async fn start() -> std::io::Result<DevIssuer> {
        DevIssuerBuilder::default().start().await
    }

    /// Settings.
    pub fn builder() -> DevIssuerBuilder {
        DevIssuerBuilder::default()
    }

    /// The issuer identifier (`iss`), `http://127.0.0.1:PORT` unless
    /// [`issuer_url`](DevIssuerBuilder::issuer_url) says otherwise.
    pub fn issuer(&self) -> &str {
        &self.shared.issuer
    }

    /// Where the JWKS is served.
    pub fn jwks_url(&self) -> String {
        format!("{}/jwks.json", self.shared.issuer)
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many times the JWKS was requested.
    pub fn jwks_fetches(&self) -> usize {
        self.shared.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Makes the JWKS endpoint answer `500` (true) or serve keys again (false).
    pub fn set_jwks_failing(&self, failing: bool) {
        self.shared.jwks_failing.store(failing, Ordering::SeqCst);
    }

    /// Stops serving (the port is closed: fetches fail with "connection refused").
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// The RFC 7662 introspection endpoint (authenticate as [`RESOURCE_CLIENT_ID`]).
    pub fn introspection_url(&self) -> String {
        format!("{}/introspect", self.shared.issuer)
    }

    /// The RFC 7009 revocation endpoint.
    pub fn revocation_url(&self) -> String {
        format!("{}/revoke", self.shared.issuer)
    }

    /// How many introspection calls were received.
    pub fn introspection_calls(&self) -> usize {
        self.shared.introspection_calls.load(Ordering::SeqCst)
    }

    /// How the last introspection call authenticated: `client_secret_basic`,
    /// `client_secret_post` or `bearer`.
    pub fn last_introspection_auth(&self) -> Option<&'static str> {
        *read(&self.shared.last_introspection_auth)
    }

    /// Makes the introspection endpoint answer `500` (true) or work again (false).
    pub fn set_introspection_failing(&self, failing: bool) {
        self.shared.introspection_failing.store(failing, Ordering::SeqCst);
    }

    /// Starts an opaque token (same default claims as [`Self::token`]); introspection tells its
    /// claims until it expires or is revoked.
    pub fn opaque_token(&self) -> OpaqueTokenBuilder<'_> {
        OpaqueTokenBuilder { jwt: self.token() }
    }

    /// The authorization endpoint (RFC 6749 §3.1).
    pub fn authorization_url(&self) -> String {
        format!("{}/authorize", self.shared.issuer)
    }

    /// The token endpoint (RFC 6749 §3.2).
    pub fn token_url(&self) -> String {
        format!("{}/token", self.shared.issuer)
    }

    /// The RFC 8414 metadata document.
    pub fn metadata_url(&self) -> String {
        format!("{}/.well-known/oauth-authorization-server", self.shared.issuer)
    }

    /// Makes the development user deny (true) or approve (false, the default) every
    /// authorization request: denied requests are redirected with `error=access_denied`. In
    /// [interactive](DevIssuerBuilder::interactive) mode the person on the sign-in page decides
    /// instead.
    pub fn set_consent_denied(&self, denied: bool) {
        self.shared.auth.consent_denied.store(denied, Ordering::SeqCst);
    }

    /// Revokes a token as the revocation endpoint would: an opaque token minted by
    /// [`Self::opaque_token`], an access token from the token endpoint, or a refresh token (and
    /// with it its whole family).
    pub fn revoke(&self, token: &str) {
        if lock(&self.shared.auth.store).revoke(token, None) {
            return;
        }
        if let Some(grant) = write(&self.shared.opaque).get_mut(token) {
            grant.revoked = true;
        }
    }

    /// Adds a new key for `alg`, published at once; new tokens for `alg` are signed with it.
    /// Returns its `kid`.
    pub fn rotate(&self, alg: Algorithm) -> String {
        let mut keys = write(&self.shared.keys);
        let n = keys.iter().filter(|k| k.alg == alg).count() + 1;
        let kid = format!("{}-{n}", alg_name(alg).to_lowercase());
        keys.push(Arc::new(DevKey::generate(alg, kid.clone(), self.shared.pin_alg)));
        kid
    }

    /// Withdraws a key from the JWKS. It can still sign, so tests can present tokens of a key
    /// the resource server should stop trusting.
    pub fn retire(&self, kid: &str) {
        write(&self.shared.retired).push(kid.to_owned());
    }

    /// The JWK Set as currently published.
    pub fn jwks_json(&self) -> String {
        let keys: Vec<Value> = read(&self.shared.keys).iter().map(|k| k.jwk.clone()).collect();
        json!({ "keys": keys }).to_string()
    }

    /// Starts a token with default claims: `iss` this issuer, `sub` "alice", `aud`
    /// [`DEFAULT_AUDIENCE`], `client_id` "dev-client", `iat` now (by the
    /// [`clock`](DevIssuerBuilder::clock)), `exp` in 5 minutes, `typ`
    /// `at+jwt`, signed RS256 with the newest RS256 key (or the first key).
    pub fn token(&self) -> TokenBuilder<'_> {
        self.shared.token()
    }

    /// Signs arbitrary header and payload bytes (no checks at all) with the key `kid`, for tests
    /// that need malformed-but-signed tokens. The header is used verbatim: put `alg` in it.
    pub fn sign_raw(&self, kid: &str, alg: Algorithm, header: &[u8], payload: &[u8]) -> String {
        let key = self.shared.find_key(|k| k.kid == kid).expect("no such kid");
        let input = format!("{}.{}", b64(header), b64(payload));
        let signature = key.sign(alg, input.as_bytes());
        format!("{input}.{}", b64(&signature))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

fn random_id() -> String {
    use aws_lc_rs::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    SystemRandom::new().fill(&mut bytes).expect("random bytes");
    b64(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    /// Review fix: a panic while a lock was held poisoned it, and every later `.expect("lock")`
    /// panicked too. Locks now ignore poisoning.
    #[tokio::test]
    async fn a_panic_under_a_lock_does_not_break_the_server() {
        let dev = DevIssuer::builder().algorithms([Algorithm::ES256]).start().await.expect("start");
        let shared = &dev.shared;
        std::thread::scope(|s| {
            let _ = s
                .spawn(|| {
                    let _store = shared.auth.store.lock();
                    let _keys = shared.keys.write();
                    let _opaque = shared.opaque.write();
                    panic!("with the locks held");
                })
                .join();
        });
        assert!(shared.auth.store.is_poisoned() && shared.keys.is_poisoned() && shared.opaque.is_poisoned());
        // Direct calls and the HTTP endpoints all still work.
        assert_eq!(dev.token().sign().split('.').count(), 3);
        dev.rotate(Algorithm::ES256);
        let opaque = dev.opaque_token().issue();
        dev.revoke(&opaque);
        let http = reqwest::Client::builder().no_proxy().build().expect("client");
        let response = http
            .post(format!("{}/token", dev.issuer()))
            .basic_auth(DEV_CLIENT_ID, Some(DEV_CLIENT_SECRET))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .expect("token request");
        assert_eq!(response.status(), StatusCode::OK);
        let jwks = http.get(dev.jwks_url()).send().await.expect("jwks");
        assert_eq!(jwks.status(), StatusCode::OK);
    }
}
