//! The TOML configuration file as written: parsed with serde (`deny_unknown_fields`
//! everywhere), with the spans that errors point at. Checking it is [`crate::config`]'s job.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use toml::Spanned;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// `host:port` to listen on.
    pub listen: Option<Spanned<String>>,
    /// The `realm` of every challenge.
    pub realm: Option<String>,
    /// Match route patterns without regard to ASCII case.
    #[serde(default)]
    pub case_insensitive_paths: bool,
    /// Accept `;parameters` in request path segments (refused with `400` by default: servlet
    /// containers strip them before routing, so rules would judge another path).
    #[serde(default)]
    pub allow_path_parameters: bool,
    /// After SIGTERM, how long requests in flight may take before the process exits anyway.
    pub shutdown_grace_secs: Option<u64>,
    #[serde(default)]
    pub issuers: Vec<IssuerFile>,
    #[serde(default)]
    pub routes: Vec<RouteFile>,
    #[serde(default)]
    pub headers: HeadersFile,
    #[serde(default)]
    pub cache: CacheFile,
    #[serde(default)]
    pub auth: AuthFile,
    pub upstream: Option<UpstreamFile>,
    pub dpop: Option<crate::sender::DpopFile>,
    pub client_certificate: Option<crate::sender::ClientCertificateFile>,
    /// Named upstreams that route rules may send to (`upstream = "api"`).
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamFile>,
    /// A TLS listener (certificate and key in PEM files).
    pub tls: Option<TlsFile>,
    #[serde(default)]
    pub listener: ListenerFile,
    #[serde(default)]
    pub forwarded: ForwardedFile,
    /// Fleet state shared through Redis.
    pub redis: Option<crate::fleet::RedisFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerFile {
    pub issuer: Spanned<String>,
    pub audience: Spanned<String>,
    pub jwks_url: Option<Spanned<String>>,
    pub algorithms: Option<Vec<Spanned<String>>>,
    pub introspection: Option<IntrospectionFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionFile {
    pub endpoint: Option<Spanned<String>>,
    pub client_id: String,
    pub client_secret_env: Option<String>,
    pub client_secret_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    pub method: Option<Spanned<String>>,
    pub path: Spanned<String>,
    pub access: AccessFile,
    /// The named upstream this route goes to (proxy mode); the `[upstream]` table otherwise.
    pub upstream: Option<Spanned<String>>,
}

/// `access = "public" | "authenticated" | { all = [..] } | { any = [..] }`.
#[derive(Debug)]
pub enum AccessFile {
    Public,
    Authenticated,
    All(Vec<String>),
    Any(Vec<String>),
}

impl<'de> Deserialize<'de> for AccessFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        const EXPECTED: &str =
            r#""public", "authenticated", { all = ["scope", ...] } or { any = ["scope", ...] }"#;
        impl<'de> Visitor<'de> for V {
            type Value = AccessFile;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<AccessFile, E> {
                match v {
                    "public" => Ok(AccessFile::Public),
                    "authenticated" => Ok(AccessFile::Authenticated),
                    other => Err(E::custom(format!("unknown access `{other}`, expected {EXPECTED}"))),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AccessFile, A::Error> {
                let Some(key) = map.next_key::<String>()? else {
                    return Err(de::Error::custom(format!("empty access table, expected {EXPECTED}")));
                };
                let scopes: Vec<String> = map.next_value()?;
                if map.next_key::<String>()?.is_some() {
                    return Err(de::Error::custom("access: give either `all` or `any`, not both"));
                }
                if scopes.is_empty() || scopes.iter().any(|s| s.is_empty() || s.contains(' ')) {
                    return Err(de::Error::custom(
                        "access: the scope list must not be empty, nor hold empty scopes or spaces",
                    ));
                }
                match key.as_str() {
                    "all" => Ok(AccessFile::All(scopes)),
                    "any" => Ok(AccessFile::Any(scopes)),
                    other => {
                        Err(de::Error::custom(format!("unknown access key `{other}`, expected {EXPECTED}")))
                    }
                }
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeadersFile {
    pub subject: String,
    pub client_id: String,
    pub scopes: String,
    /// Claim name → header name.
    pub claims: BTreeMap<String, String>,
}

impl Default for HeadersFile {
    fn default() -> Self {
        HeadersFile {
            subject: "X-Auth-Subject".into(),
            client_id: "X-Auth-Client-Id".into(),
            scopes: "X-Auth-Scopes".into(),
            claims: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheFile {
    /// Entries of each issuer's verified-token cache (0 switches it off).
    pub token_cache_entries: Option<u64>,
    /// How long a cached verification may vouch for a token, at most.
    pub token_cache_ttl_secs: Option<u64>,
    /// Entries of the introspection cache.
    pub introspection_entries: Option<u64>,
    /// Longest time an active introspection result is reused.
    pub introspection_ttl_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthFile {
    /// Envoy ext_authz (HTTP): the original path arrives appended to this prefix.
    pub path_prefix: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamFile {
    pub url: Spanned<String>,
    pub connect_timeout_secs: Option<u64>,
    /// Longest wait for the upstream's response headers once the request body was sent, and
    /// for the upstream to take the next piece of it while it is being sent.
    pub timeout_secs: Option<u64>,
    /// Longest wait for the next piece of a body, either way (0: none).
    pub idle_timeout_secs: Option<u64>,
    /// PEM file of the CA(s) to trust for an `https://` upstream instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// HTTP/2 to the upstream: prior knowledge (`h2c`) for `http://`, offered by ALPN for `https://`.
    #[serde(default)]
    pub http2: bool,
    /// With `http2`: a PING on a connection that received nothing from the upstream for so many
    /// seconds (idle ones in the pool included); one not answered within as long closes the
    /// connection. None by default (0: none).
    pub http2_keep_alive_secs: Option<u64>,
    /// Idle connections kept per upstream host.
    pub pool_max_idle: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Asks clients for a certificate signed by these CAs (PEM).
    pub client_ca_file: Option<PathBuf>,
    /// With `client_ca_file`: refuse clients without a certificate (default: optional).
    #[serde(default)]
    pub require_client_cert: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerFile {
    /// A client must have sent its whole header block within this time (slowloris).
    pub header_read_timeout_secs: Option<u64>,
    /// Largest request header block accepted.
    pub max_header_bytes: Option<usize>,
    /// HTTP/2: a PING this often; a client that does not answer within as long is disconnected
    /// (0: never).
    pub http2_keep_alive_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardedFile {
    /// `x-forwarded` (default: X-Forwarded-For/-Proto/-Host) or `forwarded` (RFC 7239).
    pub style: Option<Spanned<String>>,
    /// Peers (IP addresses or CIDR blocks) whose forwarding headers are extended, not replaced.
    #[serde(default)]
    pub trusted_proxies: Vec<Spanned<String>>,
}
