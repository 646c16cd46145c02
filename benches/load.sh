#!/usr/bin/env bash
# Load benchmark of tower-bearer (issue 5, parts 4-6): wrk against the release build of
# examples/resource_server.rs and, side by side, the same routes behind jwt-authorizer and
# tower-oauth2-resource-server (benches/peers), then resident memory under floods of distinct
# valid and garbage tokens. Prints markdown tables on stdout; progress goes to stderr.
#
#   benches/load.sh                    # DURATION=10s: 3 to 4 minutes once built
#   DURATION=5s PEERS=0 benches/load.sh
#
# Environment:
#   DURATION=10s     each measured wrk run (all runs: wrk -t1 -c$CONNECTIONS -d$DURATION --latency)
#   CONNECTIONS=32   wrk connections
#   WARMUP=1s        a wrk run with one token on each server before its measurements
#   USERS=10000      distinct tokens of the "many users" runs (round-robin)
#   PEERS=1          0 skips the peers (and their build)
#   MEMORY=1         0 skips the memory floods
#   MEMORY_TOKENS=100000  distinct tokens of each memory flood (valid, then garbage)
#   DEV_PORT=        port of the development issuer (default: a free one)
#
# Every server listens on 127.0.0.1 and wrk only ever targets 127.0.0.1. Every run has a fixed
# duration (the memory floods stop after MEMORY_TOKENS responses, or after 120 s at most).
# Everything this script starts is killed when it exits (trap EXIT). Needs cargo, curl, python3
# and wrk (installed with apt-get when missing).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-32}"
WARMUP="${WARMUP:-1s}"
USERS="${USERS:-10000}"
PEERS="${PEERS:-1}"
MEMORY="${MEMORY:-1}"
MEMORY_TOKENS="${MEMORY_TOKENS:-100000}"
AUDIENCE="tower-bearer-dev" # tower_bearer::dev::DEFAULT_AUDIENCE
WRK=(wrk -t1 -c"$CONNECTIONS" --latency)
EXAMPLE="$root/target/release/examples/resource_server"
PEER="$root/benches/peers/target/release/peers"

log() { echo "load.sh: $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

work="$(mktemp -d /tmp/tower-bearer-load.XXXXXX)"
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools and builds --------------------------------------------------------------------------
if ! command -v wrk >/dev/null; then
    log "installing wrk"
    apt-get install -y wrk >&2 || { apt-get update >&2 && apt-get install -y wrk >&2; }
fi
for tool in curl python3 cargo; do
    command -v "$tool" >/dev/null || die "$tool is needed"
done

log "cargo build --release --example resource_server --features axum,dev"
cargo build --release --example resource_server --features axum,dev >&2
if [ "$PEERS" != 0 ]; then
    log "cargo build --release --manifest-path benches/peers/Cargo.toml"
    cargo build --release --manifest-path benches/peers/Cargo.toml >&2
fi

# --- the wrk script: round-robin over a token file, results as one parseable line -------------
cat >"$work/load.lua" <<'LUA'
-- TOKENS: a file of tokens, one per line (none, or empty: no Authorization header).
-- LIMIT: stop after that many responses, counting those whose status is not EXPECT.
local tokens = os.getenv("TOKENS") or ""
local limit = tonumber(os.getenv("LIMIT") or "0") or 0
local expect = tonumber(os.getenv("EXPECT") or "200")
local threads = {}
function setup(thread) table.insert(threads, thread) end

-- Requests are formatted once, up front: the client's cost is the same for one token or many.
local reqs, n, i = {}, 0, 0
function init(args)
  if tokens ~= "" then
    for line in io.lines(tokens) do
      if #line > 0 then
        n = n + 1
        reqs[n] = wrk.format("GET", wrk.path, { ["Authorization"] = "Bearer " .. line })
      end
    end
  end
  if n == 0 then
    n = 1
    reqs[1] = wrk.format("GET", wrk.path)
  end
end
function request()
  i = i % n + 1
  return reqs[i]
end

seen, bad = 0, 0
if limit > 0 then
  function response(status, headers, body)
    seen = seen + 1
    if status ~= expect then bad = bad + 1 end
    if seen == limit then
      -- wrk runs for its whole duration whatever a thread does: tell load.sh, which sends SIGINT.
      io.open(os.getenv("MARKER"), "w"):close()
      wrk.thread:stop()
    end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local s, b = 0, 0
  for _, t in ipairs(threads) do
    s = s + t:get("seen")
    b = b + t:get("bad")
  end
  io.write(string.format("RESULT rps=%.1f p50_us=%d p99_us=%d requests=%d non2xx=%d sockerr=%d seen=%d bad=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50), latency:percentile(99),
    summary.requests, e.status, e.connect + e.read + e.write + e.timeout, s, b))
end
LUA

# --- processes ---------------------------------------------------------------------------------
# start NAME CMD...: starts CMD in the background (RUST_LOG unset: --quiet's `warn` applies),
# waits for its "listening on http://127.0.0.1:PORT" line; sets $url and $pid.
start() {
    local name="$1"
    shift
    : >"$work/$name.out"
    env -u RUST_LOG "$@" >>"$work/$name.out" 2>"$work/$name.err" &
    pid=$!
    pids+=("$pid")
    local i
    for ((i = 0; i < 3000; i++)); do # 300 s at most (100k RSA signatures on a busy machine)
        url="$(sed -n 's|^listening on \(http://127\.0\.0\.1:[0-9]*\).*|\1|p' "$work/$name.out" || true)"
        if [ -n "$url" ]; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || die "$name exited: $(cat "$work/$name.err")"
        sleep 0.1
    done
    die "$name did not start"
}
stop() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
status_of() { # URL [TOKEN]
    if [ -n "${2:-}" ]; then
        curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $2" "$1"
    else
        curl -s -o /dev/null -w '%{http_code}' "$1"
    fi
}
expect_status() { # WANT URL [TOKEN]
    local got
    got="$(status_of "$2" "${3:-}")"
    [ "$got" = "$1" ] || die "$2 answered $got, expected $1"
}

# run_wrk DURATION URL TOKENS_FILE [LIMIT EXPECT]: prints the RESULT line. With LIMIT, the run
# ends (SIGINT: wrk prints its summary) once LIMIT responses came back, or after DURATION.
run_wrk() {
    local marker="$work/wrk.limit-reached" wrk_pid i
    rm -f "$marker"
    TOKENS="$3" LIMIT="${4:-0}" EXPECT="${5:-200}" MARKER="$marker" \
        "${WRK[@]}" -d"$1" -s "$work/load.lua" "$2" >"$work/wrk.out" 2>&1 &
    wrk_pid=$!
    pids+=("$wrk_pid")
    if [ "${4:-0}" != 0 ]; then
        while kill -0 "$wrk_pid" 2>/dev/null; do
            if [ -e "$marker" ]; then
                kill -INT "$wrk_pid" 2>/dev/null || true
                break
            fi
            sleep 0.05
        done
    fi
    wait "$wrk_pid" || die "wrk failed: $(cat "$work/wrk.out")"
    grep '^RESULT ' "$work/wrk.out" || die "no result from wrk: $(cat "$work/wrk.out")"
}
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }

# measure ID SERVER ROUTE TOKENS CACHE URL TOKENS_FILE: one measured run, appended to results.tsv.
measure() {
    local id="$1" server="$2" route="$3" tokens="$4" cache="$5" target="$6" file="$7" line
    log "measuring $id: $server $route, $tokens, cache $cache ($DURATION)"
    line="$(run_wrk "$DURATION" "$target" "$file")"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$id" "$server" "$route" "$tokens" "$cache" \
        "$(field rps <<<"$line")" "$(field p99_us <<<"$line")" "$(field requests <<<"$line")" \
        "$(field non2xx <<<"$line")" "$(field sockerr <<<"$line")" >>"$work/results.tsv"
}
warm() { # URL TOKEN_FILE
    run_wrk "$WARMUP" "$1" "$2" >/dev/null
}

# --- the issuer: our example in development mode, on a fixed port, writing the tokens ----------
if [ -z "${DEV_PORT:-}" ]; then
    DEV_PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
fi
issuer="http://127.0.0.1:$DEV_PORT"
mint=$USERS
if [ "$MEMORY" != 0 ] && [ "$MEMORY_TOKENS" -gt "$mint" ]; then
    mint=$MEMORY_TOKENS
fi
log "development issuer on $issuer, signing $mint RS256 tokens"
start issuer "$EXAMPLE" --quiet --listen 127.0.0.1:0 --dev-port "$DEV_PORT" \
    --write-tokens "$work/all-tokens.txt" --tokens "$mint"
issuer_pid=$pid
head -n 1 "$work/all-tokens.txt" >"$work/one.txt"
head -n "$USERS" "$work/all-tokens.txt" >"$work/users.txt"
token="$(cat "$work/one.txt")"
last="$(tail -n 1 "$work/users.txt")"
: >"$work/none.txt" # no Authorization header (/health)

# Ours, as a plain resource server of that issuer (no embedded issuer, no introspection): the
# same configuration as the peers get.
ours() { # NAME AUDIENCE FLAGS...
    local name="$1" audience="$2"
    shift 2
    start "$name" "$EXAMPLE" --quiet --listen 127.0.0.1:0 --issuer "$issuer" --audience "$audience" \
        --jwks-url "$issuer/jwks.json" "$@"
}
peer() { # NAME KIND AUDIENCE
    start "$1" "$PEER" "$2" --issuer "$issuer" --audience "$3" --listen 127.0.0.1:0
}

# Audience validation is on everywhere: a server expecting another audience refuses our tokens.
log "checking that every server refuses a token for another audience"
ours ours-wrong-aud not-this-api
expect_status 401 "$url/me" "$token"
stop "$pid"
if [ "$PEERS" != 0 ]; then
    for kind in jwt-authorizer tower-oauth2-resource-server; do
        peer "$kind-wrong-aud" "$kind" not-this-api
        expect_status 401 "$url/me" "$token"
        stop "$pid"
    done
fi

# --- throughput --------------------------------------------------------------------------------
: >"$work/results.tsv"
sanity() { # URL
    expect_status 200 "$1/health"
    expect_status 401 "$1/me"
    expect_status 200 "$1/me" "$token"
    expect_status 200 "$1/me" "$last"
    expect_status 401 "$1/me" "$token.x"
}

ours ours-cache-on "$AUDIENCE" --token-cache on
on_pid=$pid on_url=$url
sanity "$url"
warm "$url/me" "$work/one.txt"
measure health ours /health "no token" - "$url/health" "$work/none.txt"
measure ours-1-on ours /me "1 token" on "$url/me" "$work/one.txt"
measure ours-10k-on ours /me "$USERS tokens" on "$url/me" "$work/users.txt"
# /me answers the whole principal as JSON (about 450 bytes); /hello, behind the same validator
# (optional authentication), answers `hello <sub>` like the peers' /me: the handler's share.
measure ours-hello-on ours /hello "1 token" on "$url/hello" "$work/one.txt"
stop "$on_pid"

ours ours-cache-off "$AUDIENCE" --token-cache off
off_pid=$pid
sanity "$url"
warm "$url/me" "$work/one.txt"
measure ours-1-off ours /me "1 token" off "$url/me" "$work/one.txt"
measure ours-10k-off ours /me "$USERS tokens" off "$url/me" "$work/users.txt"
stop "$off_pid"

if [ "$PEERS" != 0 ]; then
    for kind in jwt-authorizer tower-oauth2-resource-server; do
        peer "$kind" "$kind" "$AUDIENCE"
        peer_pid=$pid
        sanity "$url"
        warm "$url/me" "$work/one.txt"
        measure "$kind-health" "$kind" /health "no token" - "$url/health" "$work/none.txt"
        measure "$kind-1" "$kind" /me "1 token" - "$url/me" "$work/one.txt"
        measure "$kind-10k" "$kind" /me "$USERS tokens" - "$url/me" "$work/users.txt"
        stop "$peer_pid"
    done
fi

# --- memory ------------------------------------------------------------------------------------
: >"$work/memory.tsv"
if [ "$MEMORY" != 0 ]; then
    head -n "$MEMORY_TOKENS" "$work/all-tokens.txt" >"$work/memory-valid.txt"
    # Garbage, token-shaped: three base64url segments. Even lines carry a real header (known
    # kid, RS256) so they reach the signature check; odd lines have a random header.
    python3 - "$work/one.txt" "$MEMORY_TOKENS" >"$work/memory-garbage.txt" <<'PY'
import base64, os, sys
header = open(sys.argv[1]).read().split(".")[0]
b64 = lambda n: base64.urlsafe_b64encode(os.urandom(n)).rstrip(b"=").decode()
for i in range(int(sys.argv[2])):
    print(f"{header if i % 2 == 0 else b64(27)}.{b64(240)}.{b64(256)}")
PY
    flood() { # KIND (valid: tokens memory-valid.txt, garbage: memory-garbage.txt) EXPECTED_STATUS
        ours "mem-$1" "$AUDIENCE" --token-cache on --token-cache-entries "$MEMORY_TOKENS"
        local server=$pid line before after
        expect_status 200 "$url/me" "$token" # keys fetched, one entry cached
        before="$(rss_kib "$server")"
        log "memory: $MEMORY_TOKENS distinct $1 tokens (RSS before: $before KiB)"
        line="$(run_wrk 120s "$url/me" "$work/memory-$1.txt" "$MEMORY_TOKENS" "$2")"
        after="$(rss_kib "$server")"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$(field seen <<<"$line")" "$(field bad <<<"$line")" \
            "$before" "$after" "$(field rps <<<"$line")" "$2" >>"$work/memory.tsv"
        stop "$server"
    }
    flood valid 200
    flood garbage 401
fi

stop "$issuer_pid"

# --- report ------------------------------------------------------------------------------------
python3 - "$work/results.tsv" "$work/memory.tsv" "$DURATION" "$CONNECTIONS" "$USERS" <<'PY'
import sys
results, memory, duration, connections, users = sys.argv[1:6]
rows = [line.rstrip("\n").split("\t") for line in open(results) if line.strip()]
by_id = {r[0]: r for r in rows}
rps = {r[0]: float(r[5]) for r in rows}

print(f"### Throughput (wrk -t1 -c{connections} -d{duration} --latency, loopback, 2 cores shared)\n")
print("| server | route | tokens | token cache | requests/s | p99 latency | ÷ own /health | errors |")
print("|---|---|---|---|---:|---:|---:|---:|")
for r in rows:
    ident, server, route, tokens, cache, r_s, p99_us, requests, non2xx, sockerr = r
    health = "health" if server == "ours" else f"{server}-health"
    ratio = f"{rps[ident] / rps[health]:.2f}" if health in rps and route != "/health" else ""
    errors = int(non2xx) + int(sockerr)
    print(f"| {server} | {route} | {tokens} | {cache} | {float(r_s):,.0f} | {int(p99_us) / 1000:.2f} ms | {ratio} | {errors} |")

def ratio(a, b):
    return f"{rps[a] / rps[b]:.2f}×" if a in rps and b in rps else "n/a"

print("\n### Ratios\n")
print("| ratio | value | target |")
print("|---|---:|---|")
print(f"| ours: cached `/me` (1 token) ÷ `/health` | {ratio('ours-1-on', 'health')} | ≥ 0.90× |")
print(f"| ours: cached `/hello` (1 token, short body like the peers' `/me`) ÷ `/health` | {ratio('ours-hello-on', 'health')} | |")
print(f"| ours: `/me` cache off (1 token) ÷ `/health` | {ratio('ours-1-off', 'health')} | |")
print(f"| ours: `/me` {users} tokens, cache on ÷ `/health` | {ratio('ours-10k-on', 'health')} | |")
print(f"| ours: `/me` {users} tokens, cache off ÷ `/health` | {ratio('ours-10k-off', 'health')} | |")
for peer in ("jwt-authorizer", "tower-oauth2-resource-server"):
    if f"{peer}-1" not in rps:
        continue
    print(f"| ours ÷ {peer}: `/health` (no auth, framework baseline) | {ratio('health', peer + '-health')} | |")
    print(f"| ours ÷ {peer}: `/me` 1 token, ours cached | {ratio('ours-1-on', peer + '-1')} | ≥ 3× |")
    print(f"| ours ÷ {peer}: ours cached `/hello` ÷ its `/me`, 1 token (same body size) | {ratio('ours-hello-on', peer + '-1')} | |")
    print(f"| ours ÷ {peer}: `/me` 1 token, ours cache off | {ratio('ours-1-off', peer + '-1')} | ≥ 1.0× |")
    print(f"| ours ÷ {peer}: `/me` {users} tokens, ours cache on | {ratio('ours-10k-on', peer + '-10k')} | ≥ 3× |")
    print(f"| ours ÷ {peer}: `/me` {users} tokens, ours cache off (cold) | {ratio('ours-10k-off', peer + '-10k')} | ≥ 1.0× |")

mem = [line.rstrip("\n").split("\t") for line in open(memory) if line.strip()]
if mem:
    print("\n### Resident memory of ours (VmRSS; `--token-cache on --token-cache-entries N`)\n")
    print("| flood | responses | not the expected status | RSS before | RSS after | growth | requests/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for kind, seen, bad, before, after, r_s, expect in mem:
        before, after = int(before), int(after)
        what = "distinct valid tokens (cached)" if kind == "valid" else "distinct garbage tokens (rejected)"
        print(f"| {what} | {int(seen):,} | {int(bad)} (expected {expect}) | {before / 1024:.1f} MiB | "
              f"{after / 1024:.1f} MiB | {(after - before) / 1024:+.1f} MiB | {float(r_s):,.0f} |")
PY
