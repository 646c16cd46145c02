//! The clients registered with the development authorization server, and how they authenticate
//! at the token endpoint (RFC 6749 §2.3: `client_secret_basic`, `client_secret_post`, or a
//! public client naming itself with `client_id`).

use aws_lc_rs::constant_time::verify_slices_are_equal;
use axum::http::{HeaderMap, header};
use base64::Engine;

use super::token_error::TokenError;

/// The confidential client registered by default (`client_secret_basic` or `client_secret_post`;
/// grants `authorization_code`, `refresh_token` and `client_credentials`).
pub const DEV_CLIENT_ID: &str = "dev-client";
/// The secret of [`DEV_CLIENT_ID`].
pub const DEV_CLIENT_SECRET: &str = "dev-client-secret";
/// The public client registered by default (no secret: PKCE only; grants `authorization_code`
/// and `refresh_token`).
pub const DEV_PUBLIC_CLIENT_ID: &str = "dev-public-client";
/// The redirect URI both default clients are registered with. Nothing listens there: a client
/// reads the code from the `Location` header of the `302`.
pub const DEV_REDIRECT_URI: &str = "http://127.0.0.1/callback";

/// A client registration (RFC 6749 §2) of the development authorization server.
#[derive(Clone)]
pub struct DevClient {
    pub(crate) id: String,
    pub(crate) secret: Option<String>,
    pub(crate) redirect_uris: Vec<String>,
    pub(crate) grant_types: Vec<String>,
    /// Scopes the client may be granted; `None`: every scope of the server.
    pub(crate) scope: Option<Vec<String>>,
    /// Overrides the server's access token lifetime.
    pub(crate) access_ttl: Option<std::time::Duration>,
    /// Overrides the server's access token format (true: opaque).
    pub(crate) opaque: Option<bool>,
}

impl std::fmt::Debug for DevClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret stays out of logs.
        f.debug_struct("DevClient")
            .field("id", &self.id)
            .field("confidential", &self.secret.is_some())
            .field("redirect_uris", &self.redirect_uris)
            .field("grant_types", &self.grant_types)
            .field("scope", &self.scope)
            .field("access_ttl", &self.access_ttl)
            .field("opaque", &self.opaque)
            .finish()
    }
}

impl DevClient {
    /// A confidential client (authenticates with `client_secret_basic` or `client_secret_post`),
    /// allowed `authorization_code`, `refresh_token` and `client_credentials`.
    pub fn confidential(id: impl Into<String>, secret: impl Into<String>) -> Self {
        DevClient {
            id: id.into(),
            secret: Some(secret.into()),
            redirect_uris: Vec::new(),
            grant_types: ["authorization_code", "refresh_token", "client_credentials"]
                .map(String::from)
                .into(),
            scope: None,
            access_ttl: None,
            opaque: None,
        }
    }

    /// A public client (no secret; PKCE protects its codes), allowed `authorization_code` and
    /// `refresh_token`.
    pub fn public(id: impl Into<String>) -> Self {
        DevClient {
            id: id.into(),
            secret: None,
            redirect_uris: Vec::new(),
            grant_types: ["authorization_code", "refresh_token"].map(String::from).into(),
            scope: None,
            access_ttl: None,
            opaque: None,
        }
    }

    /// Registers a redirect URI (compared exactly, character for character).
    pub fn redirect_uri(mut self, uri: impl Into<String>) -> Self {
        self.redirect_uris.push(uri.into());
        self
    }

    /// Replaces the grant types the client may use (`authorization_code`, `refresh_token`,
    /// `client_credentials`). Refresh tokens are issued only to clients with `refresh_token`.
    pub fn grant_types<S: Into<String>>(mut self, grants: impl IntoIterator<Item = S>) -> Self {
        self.grant_types = grants.into_iter().map(Into::into).collect();
        self
    }

    /// Restricts the scopes the client may be granted (default: every scope of the server).
    pub fn scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scope = Some(scopes.into_iter().map(Into::into).collect());
        self
    }

    /// This client's access tokens live `ttl` (default: the server's
    /// [`access_token_ttl`](super::DevIssuerBuilder::access_token_ttl)).
    pub fn access_token_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.access_ttl = Some(ttl);
        self
    }

    /// This client's access tokens are opaque (true) or JWTs (false) (default: the server's
    /// [`opaque_access_tokens`](super::DevIssuerBuilder::opaque_access_tokens)).
    pub fn opaque_access_tokens(mut self, opaque: bool) -> Self {
        self.opaque = Some(opaque);
        self
    }

    pub(crate) fn allows_grant(&self, grant: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant)
    }

    pub(crate) fn is_public(&self) -> bool {
        self.secret.is_none()
    }

    /// Whether every scope of `requested` may be granted to this client.
    pub(crate) fn allows_scopes(&self, server_scopes: &[String], requested: &[String]) -> bool {
        let allowed = self.scope.as_deref().unwrap_or(server_scopes);
        requested.iter().all(|s| allowed.contains(s) && server_scopes.contains(s))
    }

    /// The scopes granted when a request names none.
    pub(crate) fn default_scopes(&self, server_scopes: &[String]) -> Vec<String> {
        self.scope.clone().unwrap_or_else(|| server_scopes.to_vec())
    }

    fn secret_matches(&self, presented: &str) -> bool {
        self.secret
            .as_deref()
            .is_some_and(|s| verify_slices_are_equal(s.as_bytes(), presented.as_bytes()).is_ok())
    }
}

/// The default registrations: [`DEV_CLIENT_ID`] and [`DEV_PUBLIC_CLIENT_ID`].
pub(crate) fn default_clients() -> Vec<DevClient> {
    vec![
        DevClient::confidential(DEV_CLIENT_ID, DEV_CLIENT_SECRET).redirect_uri(DEV_REDIRECT_URI),
        DevClient::public(DEV_PUBLIC_CLIENT_ID).redirect_uri(DEV_REDIRECT_URI),
    ]
}

/// How a token request authenticated its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthMethod {
    Basic,
    Post,
    /// A public client, identified by `client_id` only.
    None,
}

/// Decodes one half of an RFC 6749 §2.3.1 Basic credential (application/x-www-form-urlencoded:
/// `+` is a space, `%XX` a byte). The whole string is decoded: parsing it as a form (as this
/// once did) stops at a literal `&`, so `secret&anything` authenticated as `secret`. A `%` not
/// followed by two hex digits stays as is (as in the WHATWG form decoder); bytes that are not
/// UTF-8 are refused.
pub(crate) fn form_decode(s: &str) -> Option<String> {
    let hex = |b: u8| char::from(b).to_digit(16);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i + 1..i + 3) {
            Some(&[hi, lo]) if bytes[i] == b'%' => hex(hi).zip(hex(lo)),
            _ => None,
        };
        match (bytes[i], escaped) {
            (_, Some((hi, lo))) => {
                // Two hex digits: at most 0xff.
                out.push((hi * 16 + lo) as u8);
                i += 2;
            }
            (b'+', None) => out.push(b' '),
            (b, None) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Authenticates the client of a token request; returns it and how it authenticated.
pub(crate) fn authenticate<'c>(
    clients: &'c [DevClient],
    headers: &HeaderMap,
    form: &[(String, String)],
) -> Result<(&'c DevClient, AuthMethod), TokenError> {
    let get = |name: &str| form.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or_default());
    let basic = authorization.and_then(|v| {
        let (scheme, rest) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("basic").then_some(rest.trim())
    });
    if let Some(credentials) = basic {
        if get("client_secret").is_some() {
            return Err(TokenError::invalid_request("more than one client authentication method"));
        }
        let failed = || TokenError::invalid_client(true);
        let decoded = base64::engine::general_purpose::STANDARD.decode(credentials).map_err(|_| failed())?;
        let decoded = String::from_utf8(decoded).map_err(|_| failed())?;
        let (id, secret) = decoded.split_once(':').ok_or_else(failed)?;
        let (id, secret) = (form_decode(id).ok_or_else(failed)?, form_decode(secret).ok_or_else(failed)?);
        if get("client_id").is_some_and(|body_id| body_id != id) {
            return Err(TokenError::invalid_request("client_id differs from the authenticated client"));
        }
        let client = clients.iter().find(|c| c.id == id).ok_or_else(failed)?;
        return if client.secret_matches(&secret) { Ok((client, AuthMethod::Basic)) } else { Err(failed()) };
    }
    if authorization.is_some() {
        return Err(TokenError::invalid_client(false));
    }
    let Some(id) = get("client_id") else {
        return Err(TokenError::invalid_client(false));
    };
    let client = clients.iter().find(|c| c.id == id).ok_or_else(|| TokenError::invalid_client(false))?;
    match get("client_secret") {
        Some(secret) if client.secret_matches(secret) => Ok((client, AuthMethod::Post)),
        Some(_) => Err(TokenError::invalid_client(false)),
        // A confidential client must authenticate.
        None if client.is_public() => Ok((client, AuthMethod::None)),
        None => Err(TokenError::invalid_client(false)),
    }
}

#[cfg(test)]
mod tests {
    use super::form_decode;

    #[test]
    fn basic_credentials_decode_whole() {
        // A literal `&` or `=` is data, not a separator: nothing is cut off.
        assert_eq!(form_decode("secret&junk").as_deref(), Some("secret&junk"));
        assert_eq!(form_decode("a=b").as_deref(), Some("a=b"));
        assert_eq!(form_decode("s%26cret+x%2By").as_deref(), Some("s&cret x+y"));
        assert_eq!(form_decode("%C3%A9").as_deref(), Some("é"));
        // Malformed escapes stay as they are; non-UTF-8 is refused.
        assert_eq!(form_decode("100%").as_deref(), Some("100%"));
        assert_eq!(form_decode("%zz%4").as_deref(), Some("%zz%4"));
        assert_eq!(form_decode("%ff"), None);
    }
}
