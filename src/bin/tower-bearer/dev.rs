//! `tower-bearer dev`: the development authorization server of the library
//! ([`tower_bearer::dev`]) as a program, for frontends, mobile apps, Postman and test suites,
//! with the sign-in and consent page on. Clients, users and audiences come from a TOML file,
//! or a ready-made set when there is none.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};
use tower_bearer::dev::{
    DEFAULT_AUDIENCE, DEV_CLIENT_ID, DEV_CLIENT_SECRET, DEV_PUBLIC_CLIENT_ID, DEV_REDIRECT_URI, DevClient,
    DevIssuer, DevIssuerBuilder, DevUser, Pkce,
};

/// Where the development server listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8000";

/// Redirect URIs of the default clients: the library's, a local frontend's, and Postman's.
const DEFAULT_REDIRECTS: [&str; 4] = [
    DEV_REDIRECT_URI,
    "http://localhost:3000/callback",
    "http://127.0.0.1:3000/callback",
    "https://oauth.pstmn.io/v1/callback",
];

/// The dev server's file (`-c dev.toml`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DevFile {
    listen: Option<String>,
    /// The issuer identifier and base URL, when clients reach the server under another name
    /// than `http://LISTEN` (default).
    issuer: Option<String>,
    /// The scopes the server knows.
    scopes: Option<Vec<String>>,
    /// The first is the default `aud`; `resource` must be one of them.
    audiences: Option<Vec<String>>,
    /// `jwt` (default) or `opaque`.
    token_format: Option<String>,
    access_token_ttl_secs: Option<u64>,
    refresh_token_ttl_secs: Option<u64>,
    #[serde(default)]
    clients: Vec<ClientFile>,
    #[serde(default)]
    users: Vec<UserFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientFile {
    id: String,
    /// Absent: a public client (PKCE only).
    secret: Option<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    scopes: Option<Vec<String>>,
    grant_types: Option<Vec<String>>,
    token_format: Option<String>,
    access_token_ttl_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserFile {
    subject: String,
    #[serde(default)]
    claims: Map<String, Value>,
}

fn opaque(format: Option<&str>, what: &str) -> Result<Option<bool>, String> {
    match format {
        None => Ok(None),
        Some("jwt") => Ok(Some(false)),
        Some("opaque") => Ok(Some(true)),
        Some(other) => Err(format!("{what}token_format: `{other}`: expected jwt or opaque")),
    }
}

/// What the server runs with, and what to print about it.
struct Setup {
    builder: DevIssuerBuilder,
    listen: SocketAddr,
    clients: Vec<(String, Option<String>, Vec<String>)>,
    users: Vec<String>,
    /// The `aud` of tokens requested without `resource`.
    audience: String,
}

fn default_setup(listen: SocketAddr) -> Setup {
    let redirects = |mut client: DevClient| {
        for uri in DEFAULT_REDIRECTS {
            client = client.redirect_uri(uri);
        }
        client
    };
    let users = vec![
        DevUser::new("alice").claim("name", "Alice Liddell").claim("email", "alice@example.com"),
        DevUser::new("bob").claim("name", "Bob Builder").claim("email", "bob@example.com"),
    ];
    let redirect_list: Vec<String> = DEFAULT_REDIRECTS.iter().map(|s| (*s).to_owned()).collect();
    Setup {
        builder: DevIssuer::builder()
            .clients([
                redirects(DevClient::public(DEV_PUBLIC_CLIENT_ID)),
                redirects(DevClient::confidential(DEV_CLIENT_ID, DEV_CLIENT_SECRET)),
            ])
            .users(users),
        listen,
        clients: vec![
            (DEV_PUBLIC_CLIENT_ID.to_owned(), None, redirect_list.clone()),
            (DEV_CLIENT_ID.to_owned(), Some(DEV_CLIENT_SECRET.to_owned()), redirect_list),
        ],
        users: vec!["alice".into(), "bob".into()],
        audience: DEFAULT_AUDIENCE.into(),
    }
}

fn file_setup(path: &Path, listen: Option<SocketAddr>) -> Result<Setup, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: DevFile = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let listen = match (listen, &file.listen) {
        (Some(addr), _) => addr,
        (None, Some(text)) => text.parse().map_err(|e| format!("listen: `{text}`: not host:port ({e})"))?,
        (None, None) => DEFAULT_LISTEN.parse().map_err(|e| format!("{e}"))?,
    };
    let mut builder = DevIssuer::builder();
    if let Some(issuer) = &file.issuer {
        builder = builder.issuer_url(issuer);
    }
    let audience = file.audiences.as_ref().and_then(|a| a.first()).map_or(DEFAULT_AUDIENCE, String::as_str);
    let audience = audience.to_owned();
    if let Some(scopes) = file.scopes {
        builder = builder.scopes(scopes);
    }
    if let Some(audiences) = file.audiences {
        builder = builder.audiences(audiences);
    }
    if let Some(opaque) = opaque(file.token_format.as_deref(), "")? {
        builder = builder.opaque_access_tokens(opaque);
    }
    if let Some(secs) = file.access_token_ttl_secs {
        builder = builder.access_token_ttl(Duration::from_secs(secs));
    }
    if let Some(secs) = file.refresh_token_ttl_secs {
        builder = builder.refresh_token_ttl(Duration::from_secs(secs));
    }
    if file.clients.is_empty() {
        return Err("no [[clients]]: register at least one".into());
    }
    let mut clients = Vec::new();
    let mut summary = Vec::new();
    for (i, c) in file.clients.into_iter().enumerate() {
        let what = format!("clients[{i}] ({}): ", c.id);
        if c.id.is_empty() {
            return Err(format!("{what}id must not be empty"));
        }
        let mut client = match &c.secret {
            Some(secret) => DevClient::confidential(&c.id, secret),
            None => DevClient::public(&c.id),
        };
        for uri in &c.redirect_uris {
            client = client.redirect_uri(uri);
        }
        if let Some(scopes) = c.scopes {
            client = client.scopes(scopes);
        }
        if let Some(grants) = c.grant_types {
            client = client.grant_types(grants);
        }
        if let Some(opaque) = opaque(c.token_format.as_deref(), &what)? {
            client = client.opaque_access_tokens(opaque);
        }
        if let Some(secs) = c.access_token_ttl_secs {
            client = client.access_token_ttl(Duration::from_secs(secs));
        }
        clients.push(client);
        summary.push((c.id, c.secret, c.redirect_uris));
    }
    let users: Vec<String> = file.users.iter().map(|u| u.subject.clone()).collect();
    let dev_users = file.users.into_iter().map(|u| {
        u.claims.into_iter().fold(DevUser::new(u.subject), |user, (name, value)| user.claim(name, value))
    });
    builder = builder.clients(clients).users(dev_users);
    Ok(Setup { builder, listen, clients: summary, users, audience })
}

fn banner(dev: &DevIssuer, setup: &Setup) -> String {
    let iss = dev.issuer();
    let mut out = String::new();
    let line = "=".repeat(78);
    out.push_str(&format!(
        "{line}\n  tower-bearer dev: a DEVELOPMENT authorization server. NOT FOR PRODUCTION.\n  \
         Anyone who can reach it signs in as anyone; keys and tokens live in memory.\n{line}\n"
    ));
    if !dev.addr().ip().is_loopback() {
        out.push_str(&format!(
            "  WARNING: listening on {}, not a loopback address: other machines can get tokens.\n",
            dev.addr()
        ));
    }
    out.push_str(&format!(
        "issuer        {iss}\nmetadata      {}\njwks          {}\nsign-in       {}\ntoken         {}\n\
         introspection {} (as dev-resource-server / dev-resource-server-secret)\ndebugger      {iss}/debug\n\n",
        dev.metadata_url(),
        dev.jwks_url(),
        dev.authorization_url(),
        dev.token_url(),
        dev.introspection_url(),
    ));
    out.push_str("clients:\n");
    for (id, secret, redirects) in &setup.clients {
        match secret {
            Some(secret) => out.push_str(&format!("  {id}  (confidential, secret {secret})\n")),
            None => out.push_str(&format!("  {id}  (public: PKCE S256)\n")),
        }
        for uri in redirects {
            out.push_str(&format!("      redirect_uri {uri}\n"));
        }
    }
    if setup.users.is_empty() {
        out.push_str("users: none configured: type a subject on the sign-in page\n");
    } else {
        out.push_str(&format!("users: {}\n", setup.users.join(", ")));
    }
    out.push_str("\nTry it:\n");
    if let Some((id, Some(secret), _)) = setup.clients.iter().find(|(_, s, _)| s.is_some()) {
        out.push_str(&format!(
            "  # client credentials\n  curl -s -u '{id}:{secret}' -d grant_type=client_credentials {}\n",
            dev.token_url()
        ));
    }
    if let Some((id, secret, redirects)) = setup.clients.iter().find(|(_, _, r)| !r.is_empty()) {
        let pkce = Pkce::new();
        let redirect = &redirects[0];
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("response_type", "code"),
                ("client_id", id.as_str()),
                ("redirect_uri", redirect.as_str()),
                ("code_challenge", pkce.challenge.as_str()),
                ("code_challenge_method", "S256"),
                ("state", "demo"),
            ])
            .finish();
        let auth = match secret {
            Some(secret) => format!("-u '{id}:{secret}'"),
            None => format!("-d client_id={id}"),
        };
        out.push_str(&format!(
            "  # authorization code + PKCE: open this in a browser, sign in, copy `code` from the\n  \
             # address you are sent back to, then exchange it:\n  {}?{query}\n  \
             curl -s {auth} -d grant_type=authorization_code -d code=PASTE_CODE \\\n    \
             --data-urlencode 'redirect_uri={redirect}' -d code_verifier={} {}\n",
            dev.authorization_url(),
            pkce.verifier,
            dev.token_url(),
        ));
    }
    out.push_str(&format!(
        "  # an API that trusts this server\n  cargo run --example resource_server --features axum,dev -- --issuer {iss} --audience {}\n",
        setup.audience
    ));
    out
}

/// Runs `tower-bearer dev` until Ctrl-C or SIGTERM.
pub fn run(config: Option<&Path>, listen: Option<&str>) -> ExitCode {
    let listen = match listen.map(str::parse::<SocketAddr>).transpose() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("tower-bearer: --listen: not host:port ({e})");
            return ExitCode::from(2);
        }
    };
    let setup = match config {
        Some(path) => file_setup(path, listen),
        None => Ok(default_setup(listen.unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("default address")))),
    };
    let setup = match setup {
        Ok(setup) => setup,
        Err(e) => {
            eprintln!("tower-bearer: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(runtime) = crate::runtime() else { return ExitCode::FAILURE };
    runtime.block_on(async move {
        let builder = setup.builder.clone().listen(setup.listen).interactive(true);
        let dev = match builder.start().await {
            Ok(dev) => dev,
            Err(e) => {
                eprintln!("tower-bearer: cannot start the development server on {}: {e}", setup.listen);
                return ExitCode::FAILURE;
            }
        };
        print!("{}", banner(&dev, &setup));
        // One line for scripts and tests that started us with port 0.
        println!("listening on {}", dev.addr());
        crate::server::shutdown_signal().await;
        drop(dev);
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_errors_are_reported() {
        let dir = tempfile::Builder::new().prefix("tb-dev-").tempdir().expect("dir");
        let path = dir.path().join("dev.toml");
        std::fs::write(&path, "[[clients]]\nid = \"x\"\ntoken_format = \"xml\"\n").expect("write");
        assert!(file_setup(&path, None).err().is_some_and(|e| e.contains("expected jwt or opaque")));
        std::fs::write(&path, "bogus = 1\n").expect("write");
        assert!(file_setup(&path, None).is_err());
        std::fs::write(&path, "scopes = [\"a\"]\n").expect("write");
        assert!(file_setup(&path, None).err().is_some_and(|e| e.contains("no [[clients]]")));
        std::fs::write(
            &path,
            "[[clients]]\nid = \"spa\"\nredirect_uris = [\"http://localhost:5173/cb\"]\n\
             [[users]]\nsubject = \"ann\"\nclaims = { email = \"ann@example.com\", groups = [\"a\"] }\n",
        )
        .expect("write");
        let setup = file_setup(&path, None).expect("valid file");
        assert_eq!(setup.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(setup.users, ["ann"]);
        // The README's example file is a valid one.
        let readme = include_str!("../../../README.md");
        let (_, after) = readme.split_once("-c dev.toml`:\n\n```toml\n").expect("the README's dev.toml");
        let (example, _) = after.split_once("```").expect("end of block");
        std::fs::write(&path, example).expect("write");
        let setup = file_setup(&path, None).expect("the README's dev.toml");
        assert_eq!(setup.clients.len(), 2);
        assert_eq!(setup.audience, "tower-bearer-dev");
    }
}
