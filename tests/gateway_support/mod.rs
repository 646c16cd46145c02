//! Shared by `tests/gateway.rs` and `tests/gateways_real.rs`: the `tower-bearer` binary as a
//! child process, an echo upstream, a raw HTTP/1.1 client (reqwest would normalise the paths
//! whose handling is under test), and the configuration the tests run with.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use axum::Json;
use std::convert::Infallible;

use axum::body::Body;
use axum::extract::Request;
use axum::response::IntoResponse;
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tower_bearer::dev::{DEFAULT_AUDIENCE, DevIssuer};

use crate::common::HANG_GUARD;

/// A fresh directory under the system temp dir, removed with everything in it when the guard is
/// dropped: keep it as long as a process uses it (a [`Process`] can hold it, see
/// [`Process::keeping`]), so that test runs leave nothing behind in `/tmp`.
pub fn temp_dir(tag: &str) -> TempDir {
    tempfile::Builder::new().prefix(&format!("tower-bearer-{tag}-")).tempdir().expect("create a temp dir")
}

/// A file in a temp dir of its own: both are removed when this is dropped.
pub struct TempFile {
    path: PathBuf,
    _dir: TempDir,
}

impl TempFile {
    /// Writes `contents` to `name` in a fresh temp dir tagged `tag`.
    pub fn write(tag: &str, name: &str, contents: impl AsRef<[u8]>) -> TempFile {
        let dir = temp_dir(tag);
        let path = dir.path().join(name);
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        TempFile { path, _dir: dir }
    }
}

impl std::ops::Deref for TempFile {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for TempFile {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<std::ffi::OsStr> for TempFile {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.path.as_os_str()
    }
}

/// The tests' configuration: realm `test`, the dev issuer, these rules, and `extra` appended.
pub fn config(issuer: &str, jwks_url: &str, extra: &str) -> String {
    format!(
        r#"
realm = "test"

[[issuers]]
issuer = "{issuer}"
audience = "{DEFAULT_AUDIENCE}"
jwks_url = "{jwks_url}"
algorithms = ["ES256"]

[[routes]]
path = "/public/**"
access = "public"

[[routes]]
method = "GET"
path = "/items/**"
access = {{ all = ["items:read"] }}

[[routes]]
path = "/admin/**"
access = {{ any = ["admin"] }}

[[routes]]
method = "*"
path = "/me"
access = "authenticated"

[[routes]]
method = "POST"
path = "/upload"
access = "authenticated"

[[routes]]
method = "GET"
path = "/slow"
access = "public"

[headers.claims]
tenant = "X-Auth-Tenant"
{extra}
"#,
        issuer = issuer,
    )
}

/// [`config`] for `dev`.
pub fn dev_config(dev: &DevIssuer, extra: &str) -> String {
    config(dev.issuer(), &dev.jwks_url(), extra)
}

/// Path of the built binary.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_tower-bearer")
}

/// Writes `text` to a fresh `tower-bearer.toml`.
pub fn write_config(text: &str) -> TempFile {
    TempFile::write("config", "tower-bearer.toml", text)
}

/// Runs the binary to completion: `(status, stdout, stderr)`.
pub fn run(args: &[&str]) -> (ExitStatus, String, String) {
    let out = Command::new(binary()).args(args).stdin(Stdio::null()).output().expect("run tower-bearer");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A child process killed on drop; its stderr is kept and printed if the test fails.
pub struct Process {
    pub name: &'static str,
    pub child: Child,
    pub stderr: Arc<Mutex<String>>,
    /// Its work directory, removed after the process is stopped (fields drop after `drop`).
    dir: Option<TempDir>,
}

impl Process {
    /// Spawns `command` with stderr collected (stdout handled by the caller or null).
    pub fn spawn(name: &'static str, mut command: Command) -> Process {
        // Children must not hold the test's stdout: an orphan would keep `cargo test | …` open.
        command.stdin(Stdio::null()).stderr(Stdio::piped());
        if !matches!(name, "tower-bearer") {
            command.stdout(Stdio::null());
        }
        let mut child = command.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let mut pipe = child.stderr.take().expect("piped stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Process { name, child, stderr, dir: None }
    }

    /// Keeps `dir` until the process is stopped, then removes it.
    pub fn keeping(mut self, dir: TempDir) -> Process {
        self.dir = Some(dir);
        self
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = kill_term(self.child.id()).expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Sends SIGHUP (reload).
    pub fn hangup(&self) {
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -HUP {}", self.child.id()))
            .stdin(Stdio::null())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -HUP failed");
    }

    /// Waits for the process to exit (bounded by the hang guard).
    pub fn wait(&mut self) -> ExitStatus {
        for _ in 0..(HANG_GUARD.as_millis() / 10) {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("{} did not exit", self.name);
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // SIGTERM first: nginx's master then stops its workers (SIGKILL would orphan them).
        if let Ok(None) = self.child.try_wait() {
            let _ = kill_term(self.child.id());
        }
        for _ in 0..500 {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- {} stderr ---\n{}\n--- end ---", self.name, self.stderr());
        }
    }
}

/// `kill -TERM pid` through the shell's builtin (no procps needed).
fn kill_term(pid: u32) -> std::io::Result<ExitStatus> {
    Command::new("sh").arg("-c").arg(format!("kill -TERM {pid} 2>/dev/null")).stdin(Stdio::null()).status()
}

/// The `tower-bearer` binary, running.
pub struct Gateway {
    pub process: Process,
    pub addr: SocketAddr,
    /// The configuration file it was started with (removed after the process is stopped).
    pub config: TempFile,
}

impl Gateway {
    /// Starts `tower-bearer <mode>` with `config` on a free loopback port.
    pub fn start(mode: &str, config: &str) -> Gateway {
        Self::start_with(mode, config, &[])
    }

    /// [`Gateway::start`], then waits until its `/readyz` answers `200` (key sets loaded,
    /// upstreams reachable).
    pub async fn ready(mode: &str, config: &str) -> Gateway {
        let gateway = Self::start(mode, config);
        wait_for_ok(&gateway.url("/readyz")).await;
        gateway
    }

    /// [`Gateway::start`] with more arguments.
    pub fn start_with(mode: &str, config: &str, args: &[&str]) -> Gateway {
        let path = write_config(config);
        let mut command = Command::new(binary());
        command
            .arg(mode)
            .arg("--config")
            .arg(&path)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .args(args)
            .env("TOWER_BEARER_LOG", "debug")
            .stdout(Stdio::piped());
        let mut process = Process::spawn("tower-bearer", command);
        let stdout = process.child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = tx.send(reader.read_line(&mut line).map(|_| line));
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let line = match rx.recv_timeout(HANG_GUARD) {
            Ok(Ok(line)) if !line.is_empty() => line,
            other => panic!("tower-bearer did not start ({other:?}): {}", process.stderr()),
        };
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .expect("a socket address");
        Gateway { process, addr, config: path }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Writes `config` over its file, sends `SIGHUP`, and waits until it says it reloaded (once
    /// more than before) and answers `/readyz` again.
    pub async fn reload(&self, config: &str) {
        const RELOADED: &str = "configuration reloaded";
        let before = self.process.stderr().matches(RELOADED).count();
        std::fs::write(&self.config, config).unwrap();
        self.process.hangup();
        crate::common::guarded(async {
            while self.process.stderr().matches(RELOADED).count() == before {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        wait_for_ok(&self.url("/readyz")).await;
    }
}

/// Waits until the process's stderr contains `needle`; returns all of it.
pub async fn wait_for_log(process: &Process, needle: &str) -> String {
    crate::common::guarded(async {
        loop {
            let text = process.stderr();
            if text.contains(needle) {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// Polls `GET url` until it answers `200` (bounded by the hang guard).
pub async fn wait_for_ok(url: &str) {
    let client = crate::common::client();
    crate::common::guarded(async {
        loop {
            if let Ok(res) = client.get(url).send().await
                && res.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// Waits until something accepts TCP connections on `addr`.
pub async fn wait_for_port(addr: SocketAddr) {
    crate::common::guarded(async {
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// A free loopback port (bound, then released: good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// What the echo upstream saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: BTreeMap<String, Vec<String>>,
    pub body_len: usize,
    pub body_sha256: String,
}

/// An upstream on loopback that answers every request with a JSON description of it, and
/// holds `GET /slow` until released (`POST /public/stream`: see the handler).
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub slow_entered: Arc<Notify>,
    pub slow_release: Arc<Notify>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let slow_entered = Arc::new(Notify::new());
        let slow_release = Arc::new(Notify::new());
        let (s, e, r) = (seen.clone(), slow_entered.clone(), slow_release.clone());
        let router = axum::Router::new().fallback(move |req: Request| {
            let (seen, entered, release) = (s.clone(), e.clone(), r.clone());
            async move {
                let (parts, mut body) = req.into_parts();
                if parts.uri.path() == "/public/stream" {
                    // Answers after the first chunk of the request body, and sends the second
                    // chunk of its answer only when released: both directions must stream.
                    let first = body.frame().await.expect("a first frame").expect("body frame");
                    assert!(first.is_data());
                    entered.notify_one();
                    let stream = futures_util::stream::unfold(0u8, move |step| {
                        let release = release.clone();
                        async move {
                            match step {
                                0 => Some((Ok::<_, Infallible>(Bytes::from_static(b"hello ")), 1)),
                                1 => {
                                    release.notified().await;
                                    Some((Ok(Bytes::from_static(b"world")), 2))
                                }
                                _ => None,
                            }
                        }
                    });
                    return axum::response::Response::new(Body::from_stream(stream));
                }
                if parts.uri.path() == "/slow" {
                    entered.notify_one();
                    release.notified().await;
                }
                let bytes = axum::body::to_bytes(body, usize::MAX).await.expect("read the body");
                let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for (name, value) in &parts.headers {
                    headers
                        .entry(name.as_str().to_owned())
                        .or_default()
                        .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
                }
                let record = Seen {
                    method: parts.method.to_string(),
                    uri: parts.uri.to_string(),
                    headers: headers.clone(),
                    body_len: bytes.len(),
                    body_sha256: hex(&Sha256::digest(&bytes)),
                };
                seen.lock().unwrap().push(record.clone());
                let mut res = Json(json!({
                    "method": record.method,
                    "uri": record.uri,
                    "headers": headers,
                    "body_len": record.body_len,
                    "body_sha256": record.body_sha256,
                }))
                .into_response();
                res.headers_mut().insert("x-upstream", "yes".parse().unwrap());
                // Hop-by-hop: the proxy must not pass it on.
                res.headers_mut().insert("keep-alive", "timeout=5".parse().unwrap());
                res
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, router).await.expect("serve the upstream") });
        Upstream { addr, seen, slow_entered, slow_release }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A response read off the wire.
#[derive(Debug, Clone)]
pub struct Raw {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Raw {
    /// Every value of header `name` (case-insensitive).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }

    /// The one value of `name`; panics when there are several.
    #[track_caller]
    pub fn header(&self, name: &str) -> Option<&str> {
        let all = self.all(name);
        assert!(all.len() <= 1, "several {name} headers in {self:?}");
        all.first().copied()
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    /// The headers the echo upstream reports having received.
    pub fn upstream_header(&self, name: &str) -> Option<String> {
        let json = self.json();
        let values = json["headers"][name.to_ascii_lowercase()].as_array()?;
        assert_eq!(values.len(), 1, "{name} reached the upstream several times: {json}");
        values[0].as_str().map(str::to_owned)
    }

    /// Asserts an RFC 6750 challenge with realm `test` and this `error` (none for `None`), and
    /// `Cache-Control: no-store`; returns the parsed challenge.
    #[track_caller]
    pub fn assert_challenge(&self, status: u16, error: Option<&str>) -> crate::common::Challenge {
        assert_eq!(self.status, status, "{self:?}");
        let challenges = self.all("www-authenticate");
        assert_eq!(challenges.len(), 1, "exactly one challenge expected: {self:?}");
        let challenge = crate::common::Challenge::parse(challenges[0]);
        assert_eq!(challenge.get("realm"), Some("test"), "{self:?}");
        assert_eq!(challenge.get("error"), error, "{self:?}");
        if error.is_none() {
            assert_eq!(challenge.get("error_description"), None);
        }
        assert_eq!(self.header("cache-control"), Some("no-store"), "{self:?}");
        assert_eq!(self.body, "", "a challenge comes with an empty body, as from the layer: {self:?}");
        challenge
    }

    /// Asserts the `503` the layer gives when keys cannot be had.
    #[track_caller]
    pub fn assert_unavailable(&self) {
        assert_eq!(self.status, 503, "{self:?}");
        assert!(self.all("www-authenticate").is_empty(), "a 503 blames no token: {self:?}");
        assert_eq!(self.header("retry-after"), Some("5"), "{self:?}");
        assert_eq!(self.body, "authorization is temporarily unavailable\n", "{self:?}");
    }
}

/// Sends one HTTP/1.1 request with exactly this request target (no normalisation) and reads the
/// whole response (`Connection: close`; chunked bodies are decoded).
pub async fn raw_request(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)]) -> Raw {
    crate::common::guarded(async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut request = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("Content-Length: 0\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).await.expect("read");
        parse_response(&bytes)
    })
    .await
}

/// `GET target` with `Authorization: Bearer token` (if any) and the extra headers.
pub async fn raw_get(addr: SocketAddr, target: &str, token: Option<&str>, extra: &[(&str, &str)]) -> Raw {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = extra.to_vec();
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    raw_request(addr, "GET", target, &headers).await
}

fn parse_response(bytes: &[u8]) -> Raw {
    let split = bytes.windows(4).position(|w| w == b"\r\n\r\n").expect("end of headers");
    let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
    let mut body = bytes[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line.split(' ').nth(1).expect("status").parse().expect("numeric status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").expect("chunk size line");
            let size_text = String::from_utf8_lossy(&rest[..line_end]);
            let size =
                usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).expect("chunk size");
            rest = &rest[line_end + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
        body = out;
    }
    Raw { status, headers, body: String::from_utf8_lossy(&body).into_owned() }
}

/// Where the test tools live when they are not on the PATH.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

pub fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}
