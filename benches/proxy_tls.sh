#!/usr/bin/env bash
# Load benchmark of `tower-bearer proxy` as a TLS front (issue 19): the proxy with a TLS listener
# checking a bearer token, against nginx with TLS and no authentication in front of the same
# upstream, over HTTP/1.1 (wrk) and HTTP/2 (h2load). Prints a markdown table on stdout; progress
# goes to stderr. Called by benches/load.sh (PROXY_TLS=0 skips it there); runs alone too.
#
#   benches/proxy_tls.sh               # DURATION=10s: about a minute once built
#
# Environment:
#   DURATION=10s      each measured run
#   CONNECTIONS=32    client connections (h2load: STREAMS concurrent streams on each)
#   STREAMS=10        h2load -m
#   WARMUP=1s         a run before each measurement
#   GATEWAY_LOG=warn  TOWER_BEARER_LOG of the proxy
#
# Both fronts use the same ECDSA P-256 certificate (openssl, made at run time) and keep their
# upstream connections open (nginx `keepalive 32`; the proxy's client pools). nginx runs
# `worker_processes auto`, the proxy tokio's default multi-threaded runtime. Every server
# listens on 127.0.0.1; everything started here is killed on exit. Needs cargo, curl, python3,
# openssl, wrk, h2load (nghttp2-client) and nginx (apt-get installs the last three if missing).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-32}"
STREAMS="${STREAMS:-10}"
WARMUP="${WARMUP:-1s}"
GATEWAY_LOG="${GATEWAY_LOG:-warn}"
AUDIENCE="tower-bearer-dev" # tower_bearer::dev::DEFAULT_AUDIENCE
GW_BIN="$root/target/release/tower-bearer"
EXAMPLE="$root/target/release/examples/resource_server"
route=/items/1

# shellcheck source=benches/harness.sh
. "$root/benches/harness.sh"

command -v wrk >/dev/null || apt_install wrk
command -v h2load >/dev/null || apt_install nghttp2-client
NGINX="$(command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true)"
[ -n "$NGINX" ] || { apt_install nginx && NGINX=/usr/sbin/nginx; }
for tool in curl python3 cargo openssl; do
    command -v "$tool" >/dev/null || die "$tool is needed"
done

log "cargo build --release --features gateway,dev --bin tower-bearer --example resource_server"
cargo build --release --features gateway,dev --bin tower-bearer --example resource_server >&2

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
spawn() { # NAME CMD...: in the background, output in $work/NAME.{out,err}; sets $pid
    local name="$1"
    shift
    env -u RUST_LOG "$@" >"$work/$name.out" 2>"$work/$name.err" &
    pid=$!
    pids+=("$pid")
}
stop() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
status_of() { # URL [TOKEN]
    curl -sk -o /dev/null -w '%{http_code}' ${2:+-H "Authorization: Bearer $2"} "$1" || true
}
ready() { # PID WANT URL [TOKEN]: waits (30 s at most) until URL answers WANT
    local i
    for ((i = 0; i < 300; i++)); do
        [ "$(status_of "$3" "${4:-}")" = "$2" ] && return 0
        kill -0 "$1" 2>/dev/null || die "process $1 exited: $(tail -n 20 "$work"/*.err)"
        sleep 0.1
    done
    die "$3 did not answer $2"
}
wait_line() { # PID FILE SED_EXPR: waits for a line of FILE matching SED_EXPR; prints the capture
    local i got
    for ((i = 0; i < 3000; i++)); do
        got="$(sed -n "$3" "$2" 2>/dev/null | head -n 1)"
        [ -n "$got" ] && { echo "$got"; return 0; }
        kill -0 "$1" 2>/dev/null || die "process $1 exited: $(tail -n 20 "$work"/*.err)"
        sleep 0.1
    done
    die "no line matching $3 in $2"
}

# --- certificate, issuer, token ---------------------------------------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null || die "openssl could not make a certificate"
dev_port="$(free_port)"
issuer="http://127.0.0.1:$dev_port"
spawn issuer "$EXAMPLE" --quiet --listen 127.0.0.1:0 --dev-port "$dev_port" \
    --write-tokens "$work/tokens.txt" --tokens 1
wait_line "$pid" "$work/issuer.out" 's|^listening on \(http://.*\)|\1|p' >/dev/null
token="$(head -n 1 "$work/tokens.txt")"

# --- upstream: nginx `return 200` -------------------------------------------------------------
nginx_conf() { # NAME BODY: an nginx configuration file with its own prefix
    mkdir -p "$work/$1"
    cat >"$work/$1.conf" <<NGINX
worker_processes $([ "$1" = upstream ] && echo 1 || echo auto);
pid nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path client_body_temp;
    proxy_temp_path proxy_temp;
    fastcgi_temp_path fastcgi_temp;
    uwsgi_temp_path uwsgi_temp;
    scgi_temp_path scgi_temp;
$2
}
NGINX
}
up_port="$(free_port)"
nginx_conf upstream "    server { listen 127.0.0.1:$up_port; location / { default_type text/plain; return 200 \"ok\\n\"; } }"
spawn upstream "$NGINX" -p "$work/upstream" -c "$work/upstream.conf" -g 'daemon off;'
ready "$pid" 200 "http://127.0.0.1:$up_port$route"

# --- the two TLS fronts ------------------------------------------------------------------------
nginx_port="$(free_port)"
nginx_conf front "    upstream app { server 127.0.0.1:$up_port; keepalive 32; }
    server {
        listen 127.0.0.1:$nginx_port ssl http2;
        ssl_certificate $work/cert.pem;
        ssl_certificate_key $work/key.pem;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }"
spawn front "$NGINX" -p "$work/front" -c "$work/front.conf" -g 'daemon off;'
ready "$pid" 200 "https://127.0.0.1:$nginx_port$route"

cat >"$work/tower-bearer.toml" <<TOML
[[issuers]]
issuer = "$issuer"
audience = "$AUDIENCE"
jwks_url = "$issuer/jwks.json"
algorithms = ["RS256"]

[[routes]]
method = "GET"
path = "/items/**"
access = { all = ["items:read"] }

[upstream]
url = "http://127.0.0.1:$up_port"

[tls]
cert_file = "$work/cert.pem"
key_file = "$work/key.pem"
TOML
spawn proxy env TOWER_BEARER_LOG="$GATEWAY_LOG" "$GW_BIN" proxy --config "$work/tower-bearer.toml" --listen 127.0.0.1:0
proxy_pid=$pid
proxy_addr="$(wait_line "$pid" "$work/proxy.out" 's|^listening on \(127\.0\.0\.1:[0-9]*\)$|\1|p')"
ready "$proxy_pid" 200 "https://$proxy_addr/readyz"
[ "$(status_of "https://$proxy_addr$route")" = 401 ] || die "the proxy let a request without a token through"
[ "$(status_of "https://$proxy_addr$route" "$token")" = 200 ] || die "the proxy refused the token"

# --- load ----------------------------------------------------------------------------------------
cat >"$work/wrk.lua" <<'LUA'
local token = os.getenv("TOKEN")
wrk.headers["Authorization"] = "Bearer " .. token
function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT rps=%.0f p50_us=%d p99_us=%d requests=%d non2xx=%d errors=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50), latency:percentile(99),
    summary.requests, summary.errors.status, errors))
end
LUA
secs() { sed 's/s$//' <<<"$1"; }
h1() { # URL DURATION
    TOKEN="$token" wrk -t1 -c"$CONNECTIONS" -d"$2" --latency -s "$work/wrk.lua" "$1" 2>&1 | grep '^RESULT ' ||
        die "wrk failed on $1"
}
h2() { # URL DURATION: h2load, latencies from its per-request log
    rm -f "$work/h2.log"
    h2load -t1 -c"$CONNECTIONS" -m"$STREAMS" -D"$(secs "$2")" -H "authorization: Bearer $token" \
        --log-file="$work/h2.log" "$1" >"$work/h2load.out" 2>&1 || die "h2load failed: $(cat "$work/h2load.out")"
    grep -qi 'application protocol: h2' "$work/h2load.out" || die "h2load did not negotiate h2: $(cat "$work/h2load.out")"
    python3 - "$work/h2.log" "$(secs "$2")" <<'PY'
import sys
rows = [line.split("\t") for line in open(sys.argv[1]) if line.strip()]
lat = sorted(int(r[2]) for r in rows)
non2xx = sum(1 for r in rows if not r[1].startswith("2"))
pct = lambda p: lat[min(len(lat) - 1, int(len(lat) * p / 100))] if lat else 0
print(f"RESULT rps={len(rows) / float(sys.argv[2]):.0f} p50_us={pct(50)} p99_us={pct(99)} "
      f"requests={len(rows)} non2xx={non2xx} errors=0")
PY
}
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }
: >"$work/results.tsv"
for proto in h1 h2; do
    for front in nginx proxy; do
        if [ "$front" = nginx ]; then url="https://127.0.0.1:$nginx_port$route"; else url="https://$proxy_addr$route"; fi
        "$proto" "$url" "$WARMUP" >/dev/null
        log "measuring $front over $proto ($DURATION)"
        line="$("$proto" "$url" "$DURATION")"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$front" "$proto" "$(field rps <<<"$line")" "$(field p50_us <<<"$line")" \
            "$(field p99_us <<<"$line")" "$(field non2xx <<<"$line")" "$(field errors <<<"$line")" >>"$work/results.tsv"
    done
done

python3 - "$work/results.tsv" "$DURATION" "$CONNECTIONS" "$STREAMS" "$("$NGINX" -v 2>&1)" <<'PY'
import sys
path, duration, conns, streams, nginx = sys.argv[1:6]
rows = [l.rstrip("\n").split("\t") for l in open(path) if l.strip()]
by = {(r[0], r[1]): r for r in rows}
ms = lambda us: f"{int(us) / 1000:.2f} ms"
print(f"\nTLS fronts, `GET /items/1` with one valid RS256 token ({duration} a run, {conns} connections; "
      f"HTTP/2: h2load, {streams} streams a connection; loopback, 2 cores shared; {nginx.split(':')[-1].strip()})\n")
print("| protocol | front | requests/s | p50 | p99 | ÷ nginx requests/s | p99 ÷ nginx p99 | non-2xx | errors |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
names = {"nginx": "nginx TLS → upstream (no auth)", "proxy": "`tower-bearer proxy` TLS, token checked → upstream"}
for proto, label in (("h1", "HTTP/1.1 (wrk)"), ("h2", "HTTP/2 (h2load)")):
    base = by.get(("nginx", proto))
    for front in ("nginx", "proxy"):
        r = by.get((front, proto))
        if not r:
            continue
        ratio = f"{float(r[2]) / float(base[2]):.2f}" if base and float(base[2]) else "?"
        p99 = f"{int(r[4]) / int(base[4]):.2f}" if base and int(base[4]) else "?"
        print(f"| {label} | {names[front]} | {float(r[2]):.0f} | {ms(r[3])} | {ms(r[4])} | {ratio} | {p99} | {r[5]} | {r[6]} |")
PY
