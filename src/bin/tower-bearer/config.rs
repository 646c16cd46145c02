//! The checked configuration: the file ([`crate::file`]) is checked as a whole and turned into
//! what the server runs with. Every error names the key and, where the file has one, its line and column.

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use http::{HeaderName, Method};
use toml::Spanned;
use tower_bearer::RequireScope;

use crate::file::{AccessFile, File};
use crate::rules::{Access, Pattern, Rule, Rules};

/// Where the auth service and the proxy listen unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9090";

/// A configuration error, already worded for the operator.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything checked and ready to use.
#[derive(Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub realm: Option<String>,
    pub shutdown_grace: Duration,
    pub issuers: Vec<Issuer>,
    pub rules: Rules,
    pub headers: IdentityHeaders,
    pub token_cache: Option<(u64, Duration)>,
    pub introspection_entries: Option<u64>,
    pub introspection_ttl: Option<Duration>,
    pub path_prefix: Option<String>,
    pub upstream: Option<Upstream>,
    /// `[dpop]`, unless absent or off.
    pub dpop: Option<(tower_bearer::dpop::Dpop, crate::sender::ReplayBounds)>,
    /// `[client_certificate]`: the gateway's forwarded-certificate header.
    pub client_certificate: Option<(HeaderName, tower_bearer::CertificateHeader)>,
    /// Named upstreams (`[upstreams.NAME]`).
    pub upstreams: Vec<Upstream>,
    pub tls: Option<crate::tls::TlsFiles>,
    pub header_read_timeout: Duration,
    /// HTTP/2 PING interval, and how long an answer may take (`None`: no pings).
    pub http2_keep_alive: Option<Duration>,
    pub max_header_bytes: usize,
    pub forwarding: crate::forwarded::Forwarding,
    pub redis: Option<crate::fleet::RedisConfig>,
}

#[derive(Debug)]
pub struct Issuer {
    pub issuer: String,
    pub audience: String,
    pub jwks_url: Option<String>,
    pub algorithms: Option<Vec<tower_bearer::Algorithm>>,
    pub introspection: Option<Introspection>,
}

pub struct Introspection {
    pub endpoint: Option<String>,
    pub client_id: String,
    pub client_secret: String,
}

impl fmt::Debug for Introspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Introspection")
            .field("endpoint", &self.endpoint)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    pub subject: HeaderName,
    pub client_id: HeaderName,
    pub scopes: HeaderName,
    pub claims: Vec<(String, HeaderName)>,
}

impl IdentityHeaders {
    /// Every header name we set, to be removed from what clients send.
    pub fn all(&self) -> impl Iterator<Item = &HeaderName> {
        [&self.subject, &self.client_id, &self.scopes].into_iter().chain(self.claims.iter().map(|(_, h)| h))
    }
}

#[derive(Debug, Clone)]
pub struct Upstream {
    /// `None` for the `[upstream]` table.
    pub name: Option<String>,
    pub url: http::Uri,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    /// Longest silence of a request or response body (`None`: no bound).
    pub idle_timeout: Option<Duration>,
    /// PEM file of the CAs trusted for an `https://` upstream (system roots otherwise).
    pub ca_file: Option<std::path::PathBuf>,
    pub http2: bool,
    /// With `http2`: how often each connection is pinged (`None`: never).
    pub http2_keep_alive: Option<Duration>,
    pub pool_max_idle: usize,
}

/// `n` seconds, at most a year: timers add their duration to "now", and a larger value would
/// overflow there (in our code or hyper's) on every request.
fn secs(n: u64) -> Duration {
    Duration::from_secs(n.min(365 * 24 * 3600))
}

/// Reads and checks `path`. `env` looks up environment variables (secrets).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("{}: cannot read the configuration: {e}", path.display())))?;
    parse(&text, &path.display().to_string())
}

/// Parses and checks a configuration; `origin` names the file in messages.
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let file: File = toml::from_str(text).map_err(|e| ConfigError(format!("{origin}: {e}")))?;
    Checker { text, origin }.check(file)
}

struct Checker<'a> {
    text: &'a str,
    origin: &'a str,
}

impl Checker<'_> {
    /// `origin:line:column: key: message`.
    fn at(&self, span: Range<usize>, key: &str, message: impl fmt::Display) -> ConfigError {
        let before = &self.text[..span.start.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rfind('\n').map_or(before.len(), |nl| before.len() - nl - 1) + 1;
        ConfigError(format!("{}:{line}:{column}: {key}: {message}", self.origin))
    }

    fn nowhere(&self, key: &str, message: impl fmt::Display) -> ConfigError {
        ConfigError(format!("{}: {key}: {message}", self.origin))
    }

    fn url(&self, value: &Spanned<String>, key: &str) -> Result<String, ConfigError> {
        let url = reqwest::Url::parse(value.get_ref())
            .map_err(|e| self.at(value.span(), key, format!("invalid URL `{}`: {e}", value.get_ref())))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(self.at(
                value.span(),
                key,
                format!("invalid URL `{}`: need http(s)://host", value.get_ref()),
            ));
        }
        Ok(value.get_ref().clone())
    }

    fn upstream(&self, u: &crate::file::UpstreamFile, name: Option<&str>) -> Result<Upstream, ConfigError> {
        let key = |k: &str| match name {
            Some(n) => format!("upstreams.{n}.{k}"),
            None => format!("upstream.{k}"),
        };
        let url = self.url(&u.url, &key("url"))?;
        let uri: http::Uri =
            url.parse().map_err(|e| self.at(u.url.span(), &key("url"), format!("invalid URL: {e}")))?;
        if uri.query().is_some() {
            return Err(self.at(u.url.span(), &key("url"), "must not have a query"));
        }
        if u.http2_keep_alive_secs.is_some() && !u.http2 {
            return Err(self.nowhere(&key("http2_keep_alive_secs"), "only with http2 = true"));
        }
        if let Some(ca) = &u.ca_file {
            if uri.scheme_str() != Some("https") {
                return Err(self.nowhere(&key("ca_file"), "only for an https:// upstream"));
            }
            crate::tls::read_certs(ca).map_err(|e| self.nowhere(&key("ca_file"), e))?;
        }
        Ok(Upstream {
            name: name.map(str::to_owned),
            url: uri,
            connect_timeout: secs(u.connect_timeout_secs.unwrap_or(5).max(1)),
            timeout: secs(u.timeout_secs.unwrap_or(60).max(1)),
            // 0: long-lived streams (server-sent events, gRPC streams) may be silent at will.
            idle_timeout: Some(u.idle_timeout_secs.unwrap_or(60)).filter(|&s| s > 0).map(secs),
            ca_file: u.ca_file.clone(),
            http2: u.http2,
            // Off unless asked for: gRPC servers (grpc-go, grpc-java) answer pings more often
            // than every 5 minutes, or on a connection without a call, with GOAWAY
            // `too_many_pings` by default, which would cut quiet streams.
            http2_keep_alive: u.http2_keep_alive_secs.filter(|&s| s > 0).map(secs),
            pool_max_idle: u.pool_max_idle.unwrap_or(32),
        })
    }

    fn header(&self, value: &str, key: &str) -> Result<HeaderName, ConfigError> {
        let name = HeaderName::from_str(value)
            .map_err(|_| self.nowhere(key, format!("`{value}` is not a valid header name")))?;
        if is_reserved(&name) {
            return Err(self.nowhere(key, format!("`{value}` is a header the gateway must not overwrite")));
        }
        Ok(name)
    }

    fn check(&self, file: File) -> Result<Config, ConfigError> {
        let listen = match &file.listen {
            Some(l) => l.get_ref().parse().map_err(|e| {
                self.at(l.span(), "listen", format!("`{}` is not host:port ({e})", l.get_ref()))
            })?,
            None => DEFAULT_LISTEN.parse().expect("default listen address"),
        };
        if file.issuers.is_empty() {
            return Err(self.nowhere("issuers", "at least one [[issuers]] table is required"));
        }
        let mut issuers = Vec::new();
        for (i, f) in file.issuers.iter().enumerate() {
            let key = |k: &str| format!("issuers[{i}].{k}");
            let issuer = self.url(&f.issuer, &key("issuer"))?;
            if let Some(prev) = issuers.iter().position(|p: &Issuer| p.issuer == issuer) {
                return Err(self.at(
                    f.issuer.span(),
                    &key("issuer"),
                    format!("same issuer as issuers[{prev}]"),
                ));
            }
            if f.audience.get_ref().is_empty() {
                return Err(self.at(f.audience.span(), &key("audience"), "must not be empty"));
            }
            let jwks_url = f.jwks_url.as_ref().map(|u| self.url(u, &key("jwks_url"))).transpose()?;
            let algorithms = match &f.algorithms {
                None => None,
                Some(list) if list.is_empty() => {
                    return Err(
                        self.nowhere(&key("algorithms"), "must not be empty (omit it for the default)")
                    );
                }
                Some(list) => Some(
                    list.iter()
                        .map(|a| {
                            let alg = tower_bearer::Algorithm::from_str(a.get_ref()).map_err(|_| {
                                self.at(
                                    a.span(),
                                    &key("algorithms"),
                                    format!("unknown algorithm `{}`", a.get_ref()),
                                )
                            })?;
                            if a.get_ref().starts_with("HS") {
                                return Err(self.at(
                                    a.span(),
                                    &key("algorithms"),
                                    "HMAC algorithms need a shared secret and are not supported here",
                                ));
                            }
                            Ok(alg)
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
            };
            let introspection = match &f.introspection {
                None => None,
                Some(intro) => {
                    let endpoint = intro
                        .endpoint
                        .as_ref()
                        .map(|u| self.url(u, &key("introspection.endpoint")))
                        .transpose()?;
                    let client_secret = match (&intro.client_secret_env, &intro.client_secret_file) {
                        (Some(var), None) => std::env::var(var).map_err(|_| {
                            self.nowhere(
                                &key("introspection.client_secret_env"),
                                format!("environment variable `{var}` is not set"),
                            )
                        })?,
                        (None, Some(path)) => std::fs::read_to_string(path)
                            .map_err(|e| {
                                self.nowhere(
                                    &key("introspection.client_secret_file"),
                                    format!("cannot read {}: {e}", path.display()),
                                )
                            })?
                            .trim_end_matches(['\r', '\n'])
                            .to_owned(),
                        _ => {
                            return Err(self.nowhere(
                                &key("introspection"),
                                "give exactly one of client_secret_env and client_secret_file",
                            ));
                        }
                    };
                    if client_secret.is_empty() {
                        return Err(self.nowhere(&key("introspection"), "the client secret is empty"));
                    }
                    Some(Introspection { endpoint, client_id: intro.client_id.clone(), client_secret })
                }
            };
            issuers.push(Issuer {
                issuer,
                audience: f.audience.get_ref().clone(),
                jwks_url,
                algorithms,
                introspection,
            });
        }
        if issuers.len() > 1 && issuers.iter().any(|i| i.introspection.is_some()) {
            return Err(self.nowhere("issuers", "introspection is supported with a single issuer only"));
        }

        if file.routes.is_empty() {
            return Err(self.nowhere(
                "routes",
                "at least one [[routes]] table is required (unmatched requests are denied)",
            ));
        }
        let mut rules: Vec<Rule> = Vec::new();
        for (i, r) in file.routes.iter().enumerate() {
            let key = |k: &str| format!("routes[{i}].{k}");
            let method = match &r.method {
                None => None,
                Some(m) if m.get_ref() == "*" => None,
                Some(m) => {
                    let upper = m.get_ref().to_ascii_uppercase();
                    let ok = !upper.is_empty() && upper.bytes().all(|b| b.is_ascii_uppercase());
                    if !ok {
                        return Err(self.at(
                            m.span(),
                            &key("method"),
                            format!("`{}` is not a method", m.get_ref()),
                        ));
                    }
                    Some(Method::from_bytes(upper.as_bytes()).expect("letters are a valid method"))
                }
            };
            let pattern = Pattern::parse(r.path.get_ref(), file.case_insensitive_paths)
                .map_err(|e| self.at(r.path.span(), &key("path"), e))?;
            if let Some(dup) = rules.iter().find(|d| d.method == method && d.pattern == pattern) {
                return Err(self.at(
                    r.path.span(),
                    &key("path"),
                    format!(
                        "duplicate route: routes[{}] already has this method and path `{}`",
                        dup.index, dup.path
                    ),
                ));
            }
            let access = match &r.access {
                AccessFile::Public => Access::Public,
                AccessFile::Authenticated => Access::Authenticated,
                AccessFile::All(s) => {
                    Access::Scopes(RequireScope::all(s.iter().cloned()), format!("all of {}", s.join(", ")))
                }
                AccessFile::Any(s) => {
                    Access::Scopes(RequireScope::any(s.iter().cloned()), format!("any of {}", s.join(", ")))
                }
            };
            let upstream = match &r.upstream {
                None => None,
                Some(name) if file.upstreams.contains_key(name.get_ref()) => Some(name.get_ref().clone()),
                Some(name) => {
                    return Err(self.at(
                        name.span(),
                        &key("upstream"),
                        format!("no [upstreams.{}] table", name.get_ref()),
                    ));
                }
            };
            rules.push(Rule { method, pattern, access, path: r.path.get_ref().clone(), index: i, upstream });
        }

        let h = &file.headers;
        let mut claims = Vec::new();
        for (claim, header) in &h.claims {
            claims.push((claim.clone(), self.header(header, &format!("headers.claims.{claim}"))?));
        }
        let headers = IdentityHeaders {
            subject: self.header(&h.subject, "headers.subject")?,
            client_id: self.header(&h.client_id, "headers.client_id")?,
            scopes: self.header(&h.scopes, "headers.scopes")?,
            claims,
        };
        let mut seen: Vec<&HeaderName> = Vec::new();
        for name in headers.all() {
            if seen.contains(&name) {
                return Err(self.nowhere("headers", format!("`{name}` is used for two identity headers")));
            }
            seen.push(name);
        }

        let token_cache = match file.cache.token_cache_entries {
            Some(0) => None,
            entries => Some((
                entries.unwrap_or(tower_bearer::jwt_defaults::TOKEN_CACHE_ENTRIES),
                file.cache.token_cache_ttl_secs.map_or(tower_bearer::jwt_defaults::TOKEN_CACHE_TTL, secs),
            )),
        };

        let path_prefix = match &file.auth.path_prefix {
            None => None,
            Some(p) => {
                let v = p.get_ref();
                if !v.starts_with('/') || v.len() < 2 || v.ends_with('/') || v.contains(['?', '#', '%']) {
                    return Err(self.at(
                        p.span(),
                        "auth.path_prefix",
                        format!("`{v}` must look like `/ext_authz`: starts with `/`, no trailing `/`"),
                    ));
                }
                if matches!(v.as_str(), "/healthz" | "/readyz") {
                    return Err(self.at(p.span(), "auth.path_prefix", "clashes with the health endpoints"));
                }
                Some(v.clone())
            }
        };

        let upstream = file.upstream.as_ref().map(|u| self.upstream(u, None)).transpose()?;
        let upstreams = file
            .upstreams
            .iter()
            .map(|(name, u)| self.upstream(u, Some(name)))
            .collect::<Result<Vec<_>, _>>()?;
        let tls = match &file.tls {
            None => None,
            Some(t) => {
                let files = crate::tls::TlsFiles {
                    cert: t.cert_file.clone(),
                    key: t.key_file.clone(),
                    client_ca: t.client_ca_file.clone(),
                    require_client_cert: t.require_client_cert,
                };
                if files.client_ca.is_none() && files.require_client_cert {
                    return Err(self.nowhere("tls.require_client_cert", "needs tls.client_ca_file"));
                }
                files.server_config().map_err(|e| self.nowhere("tls", e))?;
                Some(files)
            }
        };
        let forwarding = crate::forwarded::Forwarding::from_file(&file.forwarded)
            .map_err(|(span, key, e)| self.at(span, key, e))?;
        let max_header_bytes = file.listener.max_header_bytes.unwrap_or(16 * 1024);
        if max_header_bytes < 8192 {
            return Err(self.nowhere("listener.max_header_bytes", "must be at least 8192"));
        }

        let dpop = match &file.dpop {
            None => None,
            Some(d) => crate::sender::dpop(d).map_err(|(key, e)| self.nowhere(key, e))?,
        };
        let client_certificate = match &file.client_certificate {
            None => None,
            Some(c) => Some(crate::sender::client_certificate(c).map_err(|(key, e)| self.nowhere(key, e))?),
        };

        Ok(Config {
            listen,
            realm: file.realm,
            shutdown_grace: secs(file.shutdown_grace_secs.unwrap_or(30)),
            issuers,
            rules: Rules {
                rules: rules.into_iter().map(std::sync::Arc::new).collect(),
                case_insensitive: file.case_insensitive_paths,
                allow_path_parameters: file.allow_path_parameters,
            },
            headers,
            token_cache,
            introspection_entries: file.cache.introspection_entries,
            introspection_ttl: file.cache.introspection_ttl_secs.map(secs),
            path_prefix,
            upstream,
            dpop,
            client_certificate,
            upstreams,
            tls,
            header_read_timeout: secs(file.listener.header_read_timeout_secs.unwrap_or(10).max(1)),
            // A peer gone without a word (a NAT that forgot it, a crashed client) holds its
            // connection and streams until a ping goes unanswered.
            http2_keep_alive: Some(file.listener.http2_keep_alive_secs.unwrap_or(20))
                .filter(|&s| s > 0)
                .map(secs),
            max_header_bytes,
            forwarding,
            redis: file
                .redis
                .as_ref()
                .map(|r| crate::fleet::check(r, |k, m| self.nowhere(k, m)))
                .transpose()?,
        })
    }
}

/// Headers that identity headers must never be named after.
fn is_reserved(name: &HeaderName) -> bool {
    use http::header::*;
    [
        AUTHORIZATION,
        HOST,
        CONTENT_LENGTH,
        CONTENT_TYPE,
        TRANSFER_ENCODING,
        CONNECTION,
        COOKIE,
        WWW_AUTHENTICATE,
    ]
    .contains(name)
        || crate::hop_by_hop::is_hop_by_hop(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
listen = "127.0.0.1:0"
[[issuers]]
issuer = "https://as.example"
audience = "api"
jwks_url = "https://as.example/jwks"

[[routes]]
path = "/public/**"
access = "public"

[[routes]]
method = "GET"
path = "/items"
access = { all = ["items:read"] }
"#;

    fn err(text: &str) -> String {
        parse(text, "t.toml").expect_err("should fail").0
    }

    #[test]
    fn good_config() {
        let config = parse(GOOD, "t.toml").unwrap();
        assert_eq!(config.rules.rules.len(), 2);
        assert_eq!(config.headers.subject, "x-auth-subject");
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = err(&GOOD.replace("audience = \"api\"", "audience = \"api\"\naudiences = \"x\""));
        assert!(e.contains("audiences") && e.contains("line 6"), "{e}");
    }

    #[test]
    fn duplicate_route() {
        let e =
            err(&format!("{GOOD}\n[[routes]]\nmethod = \"get\"\npath = \"/items\"\naccess = \"public\"\n"));
        assert!(
            e.contains("duplicate route") && e.contains("routes[2].path") && e.contains("t.toml:19:"),
            "{e}"
        );
    }

    #[test]
    fn bad_url_and_missing_audience() {
        let e = err(&GOOD.replace("https://as.example/jwks", "not a url"));
        assert!(e.contains("issuers[0].jwks_url") && e.contains("t.toml:6:"), "{e}");
        let e = err(&GOOD.replace("audience = \"api\"", ""));
        assert!(e.contains("missing field `audience`"), "{e}");
    }

    #[test]
    fn access_forms() {
        let e = err(&GOOD.replace("access = \"public\"", "access = \"open\""));
        assert!(e.contains("unknown access `open`"), "{e}");
        let e = err(&GOOD.replace("{ all = [\"items:read\"] }", "{ all = [] }"));
        assert!(e.contains("must not be empty"), "{e}");
        let e = err(&GOOD.replace("{ all = [\"items:read\"] }", "{ some = [\"a\"] }"));
        assert!(e.contains("unknown access key `some`"), "{e}");
    }

    #[test]
    fn several_issuers() {
        let second = "[[issuers]]\nissuer = \"https://as2.example\"\naudience = \"api\"\n\n[[routes]]";
        let config = parse(&GOOD.replacen("[[routes]]", second, 1), "t.toml").unwrap();
        assert_eq!(config.issuers.len(), 2);
        assert_eq!(config.issuers[1].jwks_url, None, "discovery");
        let same = second.replace("as2.example", "as.example");
        let e = err(&GOOD.replacen("[[routes]]", &same, 1));
        assert!(e.contains("issuers[1].issuer") && e.contains("same issuer as issuers[0]"), "{e}");
    }

    #[test]
    fn reserved_identity_headers() {
        let e = err(&format!("{GOOD}\n[headers]\nsubject = \"Authorization\"\n"));
        assert!(e.contains("headers.subject"), "{e}");
    }

    #[test]
    fn dpop_and_client_certificate() {
        let config = parse(&format!("{GOOD}\n[dpop]\norigin = \"https://api.example\"\n"), "t.toml").unwrap();
        let sizes =
            |config: &Config| config.dpop.as_ref().map(|(_, bounds)| (bounds.entries, bounds.per_key));
        assert_eq!(sizes(&config), Some((100_000, 10_000)));
        let sized = "[dpop]\norigin = \"https://a\"\nreplay_entries = 50\n";
        assert_eq!(sizes(&parse(&format!("{GOOD}\n{sized}"), "t.toml").unwrap()), Some((50, 5)));
        let shared = format!("{GOOD}\n{sized}replay_entries_per_key = 50\n");
        assert_eq!(sizes(&parse(&shared, "t.toml").unwrap()), Some((50, 50)));
        assert!(
            err(&format!("{GOOD}\n{sized}replay_entries_per_key = 0\n"))
                .contains("dpop.replay_entries_per_key")
        );
        assert!(
            err(&format!("{GOOD}\n[dpop]\norigin = \"https://a\"\nreplay_entries = 0\n"))
                .contains("dpop.replay_entries")
        );
        let off = parse(&format!("{GOOD}\n[dpop]\nmode = \"off\"\n"), "t.toml").unwrap();
        assert!(off.dpop.is_none());
        assert!(err(&format!("{GOOD}\n[dpop]\nmode = \"allowed\"\n")).contains("dpop.origin"));
        assert!(
            err(&format!("{GOOD}\n[dpop]\nmode = \"maybe\"\norigin = \"https://a\"\n")).contains("dpop.mode")
        );
        assert!(err(&format!("{GOOD}\n[dpop]\norigin = \"ftp://a\"\n")).contains("dpop.origin"));
        let e = err(&format!(
            "{GOOD}\n[dpop]\norigin = \"https://a\"\nnonce_secret_env = \"TOWER_BEARER_NO_SUCH_VAR\"\n"
        ));
        assert!(e.contains("dpop.nonce_secret_env"), "{e}");
        let cert = parse(
            &format!("{GOOD}\n[client_certificate]\nheader = \"X-Client-Cert\"\nformat = \"der-base64\"\n"),
            "t.toml",
        )
        .unwrap();
        assert_eq!(
            cert.client_certificate,
            Some((HeaderName::from_static("x-client-cert"), tower_bearer::CertificateHeader::DerBase64))
        );
        let e = err(&format!("{GOOD}\n[client_certificate]\nheader = \"X-Client-Cert\"\nformat = \"pem\"\n"));
        assert!(e.contains("client_certificate.format"), "{e}");
    }
}
