#!/usr/bin/env bash
# Load benchmark of tower-bearer (issue 5, parts 4-6): wrk against the release build of
# examples/resource_server.rs and, side by side, the same routes behind jwt-authorizer and
# tower-oauth2-resource-server, and aliri_tower (benches/peers), and the floor (benches/peers too:
# the RS256 signature check alone, with a key parsed once: the least any server can do for a
# token it has never seen), then resident memory under floods of distinct
# valid and garbage tokens; and (issue 9) one route through gateways: an upstream alone, nginx in
# front of it, nginx + `tower-bearer auth` (auth_request), and `tower-bearer proxy`. Prints
# markdown tables on stdout; progress goes to stderr.
#
#   benches/load.sh                    # DURATION=5s, ROUNDS=3, ALTERNATE=10: about 45 minutes once built (35 with GATEWAY=0 MEMORY=0)
#   DURATION=3s ROUNDS=1 PEERS=0 benches/load.sh
#
# Throughput runs are repeated in ROUNDS rounds. All servers are up at once, and each round
# visits every one of them in turn (the order rotates from round to round): a server's `/health`,
# then its authenticated runs. A ratio is taken within a round (a run ÷ the same round's
# `/health`, or ÷ the floor's run of that round), and the tables give the median over the rounds:
# this 2-core VM's speed drifts by 10-25 % within minutes, and one run of each would measure the
# drift as much as the servers.
#
# Environment:
#   DURATION=5s      each measured wrk run (all runs: wrk -t1 -c$CONNECTIONS -d$DURATION --latency)
#   ROUNDS=3         rounds of the throughput runs, each visiting every server (medians reported);
#                    0 skips them (the alternated runs alone)
#   CONNECTIONS=32   wrk connections
#   WARMUP=1s        a wrk run with one token on each server before its measurements
#   USERS=10000      distinct tokens of the "many users" runs (round-robin)
#   NEW_TOKENS=100000  tokens of the never-seen runs of each server: each sent once, split over the
#                    rounds (a run ends after its share of requests); 0 skips them. Ours also
#                    runs as many on /hello: 2 × NEW_TOKENS are minted
#   ALTERNATE=10     cycles of issue 16's ratios measured in alternation (after the rounds; 0 skips
#                    them): every run of the ratios once, then again in reverse order
#   ALT_REQUESTS=20000  requests of each alternated run with known tokens (or none)
#   ALT_TOKENS=3000  never-seen tokens of each alternated never-seen run (2 × ALTERNATE × ALT_TOKENS
#                    for ours, each peer and the floor are minted besides NEW_TOKENS')
#   PEERS=1          0 skips the peers and the floor (and their build)
#   PEER_KINDS="jwt-authorizer tower-oauth2-resource-server aliri_tower"  the peers run ("": the
#                    floor alone)
#   MEMORY=1         0 skips the memory floods
#   MEMORY_TOKENS=100000  distinct tokens of each memory flood (valid ones sent once, the same
#                    sent twice each, garbage)
#   GATEWAY=1        0 skips the gateways (and the build of the tower-bearer binary)
#   PROXY_TLS=1      0 skips benches/proxy_tls.sh (the proxy over TLS and HTTP/2 against nginx
#                    with TLS; needs h2load and openssl)
#   GATEWAY_LOG=warn TOWER_BEARER_LOG of the auth service and the proxy (`info` logs one line a
#                    request, as by default; nginx runs its shipped config: access_log off)
#   DEV_PORT=        port of the development issuer (default: a free one)
#   RESULTS_TSV=     a path: every throughput run's row (each round's) is copied there at exit,
#                    the alternated runs' to the same path ending in .alternated.tsv
#
# Every server listens on 127.0.0.1 and wrk only ever targets 127.0.0.1. Every run has a fixed
# duration (the memory floods stop after their last response, or after 120 s at most).
# Everything this script starts is killed when it exits (trap EXIT). Needs cargo, curl, python3
# and wrk, and nginx for the gateways (both installed with apt-get when missing).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Relative to where the script was started, not to the repository it moves to.
[ -z "${RESULTS_TSV:-}" ] || RESULTS_TSV="$(realpath -m "$RESULTS_TSV")"
cd "$root"

DURATION="${DURATION:-5s}"
ROUNDS="${ROUNDS:-3}"
CONNECTIONS="${CONNECTIONS:-32}"
WARMUP="${WARMUP:-1s}"
USERS="${USERS:-10000}"
NEW_TOKENS="${NEW_TOKENS:-100000}"
ALTERNATE="${ALTERNATE:-10}"
ALT_REQUESTS="${ALT_REQUESTS:-20000}"
ALT_TOKENS="${ALT_TOKENS:-3000}"
PEERS="${PEERS:-1}"
MEMORY="${MEMORY:-1}"
MEMORY_TOKENS="${MEMORY_TOKENS:-100000}"
GATEWAY="${GATEWAY:-1}"
PEER_KINDS="${PEER_KINDS-jwt-authorizer tower-oauth2-resource-server aliri_tower}"
GATEWAY_LOG="${GATEWAY_LOG:-warn}"
AUDIENCE="tower-bearer-dev" # tower_bearer::dev::DEFAULT_AUDIENCE
WRK=(wrk -t1 -c"$CONNECTIONS" --latency)
EXAMPLE="$root/target/release/examples/resource_server"
PEER="$root/benches/peers/target/release/peers"
GW_BIN="$root/target/release/tower-bearer"

before_cleanup() {
    if [ -n "${RESULTS_TSV:-}" ] && [ -e "$work/results.tsv" ]; then
        cp "$work/results.tsv" "$RESULTS_TSV"
    fi
    if [ -n "${RESULTS_TSV:-}" ] && [ -e "$work/alt.tsv" ]; then
        cp "$work/alt.tsv" "${RESULTS_TSV%.tsv}.alternated.tsv"
    fi
}
# shellcheck source=benches/harness.sh
. "$root/benches/harness.sh"

# --- tools and builds --------------------------------------------------------------------------
command -v wrk >/dev/null || apt_install wrk
for tool in curl python3 cargo; do
    command -v "$tool" >/dev/null || die "$tool is needed"
done
find_nginx() { command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true; }
if [ "$GATEWAY" != 0 ]; then
    NGINX="$(find_nginx)"
    if [ -z "$NGINX" ]; then
        apt_install nginx
        NGINX="$(find_nginx)"
        [ -n "$NGINX" ] || die "nginx is needed (GATEWAY=0 skips the gateways)"
    fi
fi

log "cargo build --release --example resource_server --features axum,dev"
cargo build --release --example resource_server --features axum,dev >&2
if [ "$PEERS" != 0 ]; then
    log "cargo build --release --manifest-path benches/peers/Cargo.toml"
    cargo build --release --manifest-path benches/peers/Cargo.toml >&2
fi
if [ "$GATEWAY" != 0 ]; then
    log "cargo build --release --features gateway --bin tower-bearer"
    cargo build --release --features gateway --bin tower-bearer >&2
fi

# --- the wrk script: round-robin over a token file, results as one parseable line -------------
cat >"$work/load.lua" <<'LUA'
-- TOKENS: a file of tokens, one per line (none, or empty: no Authorization header).
-- LIMIT: send that many requests at most, then stop. requests/s is then timed here, from the
--   (CONNECTIONS + 1)-th request to the LIMIT-th: past the first CONNECTIONS, wrk sends a request
--   when a response came back, so that is LIMIT - CONNECTIONS - 1 responses. No `response`
--   callback: it would have wrk hand every response to Lua, a client cost runs without it do not
--   pay (and the wrk summary's duration would add the time load.sh takes to notice the end).
-- CHECK=1 (with LIMIT): count responses instead, `bad` those whose status is not EXPECT, and stop
--   after LIMIT of them (the memory floods: every status counted, speed secondary).
local tokens = os.getenv("TOKENS") or ""
local limit = tonumber(os.getenv("LIMIT") or "0") or 0
local check = os.getenv("CHECK") == "1"
local expect = tonumber(os.getenv("EXPECT") or "200")
local connections = tonumber(os.getenv("CONNECTIONS") or "1") or 1
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } load_timespec;
int clock_gettime(int clock, load_timespec *ts);
]]
local ts = ffi.new("load_timespec")
local function now_us()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1e6 + tonumber(ts.tv_nsec) / 1e3
end
local function finish()
  -- wrk runs for its whole duration whatever a thread does: tell load.sh, which sends SIGINT.
  io.open(os.getenv("MARKER"), "w"):close()
  wrk.thread:stop()
end
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

-- wrk calls `request` once before the run, in the first thread's state, to see what the script
-- sends (that one is never sent): hence -1, and the file's first token goes last.
sent, from_us, to_us = -1, 0, 0
-- `stop` ends the thread's loop after the current pass: a connection written to in that pass
-- still asks for a request. It gets one without a token (the same for every server), so that no
-- token of a timed run is sent twice. (The CHECK runs, the memory floods, may send a few of
-- their first tokens again after the last: their figures are memory, not speed.)
local spare = wrk.format("GET", "/health")
if limit > 0 and not check then
  function request()
    sent = sent + 1
    if sent > limit then
      return spare
    elseif sent == connections + 1 then
      from_us = now_us()
    elseif sent == limit then
      to_us = now_us()
      finish()
    end
    i = i % n + 1
    return reqs[i]
  end
else
  function request()
    i = i % n + 1
    return reqs[i]
  end
end

seen, bad = 0, 0
if limit > 0 and check then
  function response(status, headers, body)
    seen = seen + 1
    if status ~= expect then bad = bad + 1 end
    if seen == limit then finish() end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local s, b, from, to = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    s = s + t:get("seen")
    b = b + t:get("bad")
    from, to = t:get("from_us"), t:get("to_us")
  end
  local rps = summary.requests / (summary.duration / 1e6)
  local reached = 0
  if to > from and from > 0 then
    rps = (limit - connections - 1) / ((to - from) / 1e6)
    reached = 1
  elseif check and s >= limit then
    reached = 1
  end
  io.write(string.format("RESULT rps=%.1f p50_us=%d p99_us=%d requests=%d non2xx=%d sockerr=%d seen=%d bad=%d reached=%d\n",
    rps, latency:percentile(50), latency:percentile(99),
    summary.requests, e.status, e.connect + e.read + e.write + e.timeout, s, b, reached))
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
    # 300 s at most, or a second per 500 tokens the issuer signs first (about 1 ms a token a core).
    local tries=$((mint / 50 > 3000 ? mint / 50 : 3000))
    for ((i = 0; i < tries; i++)); do
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
# CPU time a process has used so far (user + system, all threads), in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
CLK_TCK="$(getconf CLK_TCK)"
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

# run_wrk DURATION URL TOKENS_FILE [LIMIT [EXPECT]]: prints the RESULT line. With LIMIT, the run
# ends (SIGINT: wrk prints its summary) once LIMIT requests were sent, or after DURATION; with
# EXPECT too, once LIMIT responses came back, those whose status is not EXPECT counted (`bad`).
run_wrk() {
    local marker="$work/wrk.limit-reached" wrk_pid i check=0
    rm -f "$marker"
    [ -z "${5:-}" ] || check=1
    TOKENS="$3" LIMIT="${4:-0}" CHECK="$check" EXPECT="${5:-200}" CONNECTIONS="$CONNECTIONS" MARKER="$marker" \
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
# checked ID LINE: a LIMIT run sent all its requests, and every answer was a success.
checked() {
    [ "$(field reached <<<"$2")" = 1 ] || die "$1: the run ended before its last request: $2"
    [ "$(field non2xx <<<"$2")" = 0 ] || die "$1: $(field non2xx <<<"$2") responses were not successes"
    [ "$(field sockerr <<<"$2")" = 0 ] || die "$1: $(field sockerr <<<"$2") socket errors"
}

# measure ID SERVER ROUTE TOKENS CACHE URL TOKENS_FILE [LIMIT]: one measured run, appended to
# results.tsv with the current $round and $base (the id of the `/health` run its ratio divides by:
# the same server process's, in the same round), and the CPU time the server process ($server_pid)
# spent a response. With LIMIT, the run ends after LIMIT responses (or 120 s) instead of DURATION.
#
# The CPU time is what one request costs the server itself, whatever the client costs meanwhile:
# requests/s on 2 cores shared with wrk carries both (the machine's speed moves either).
measure() {
    local id="$1" server="$2" route="$3" tokens="$4" cache="$5" target="$6" file="$7" limit="${8:-0}" line
    local cpu_before
    cpu_before="$(cpu_ticks "$server_pid")"
    if [ "$limit" != 0 ]; then
        log "measuring $id: $server $route, $tokens, cache $cache ($limit requests)"
        line="$(run_wrk 120s "$target" "$file" "$limit")"
        checked "$id" "$line"
    else
        log "measuring $id: $server $route, $tokens, cache $cache ($DURATION)"
        line="$(run_wrk "$DURATION" "$target" "$file")"
    fi
    local cpu_after cpu_us
    cpu_after="$(cpu_ticks "$server_pid")"
    cpu_us="$(awk -v t=$((cpu_after - cpu_before)) -v hz="$CLK_TCK" -v n="$(field requests <<<"$line")" \
        'BEGIN { printf "%.1f", t * 1e6 / hz / (n > 0 ? n : 1) }')"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$id" "$server" "$route" "$tokens" "$cache" \
        "$(field rps <<<"$line")" "$(field p99_us <<<"$line")" "$(field requests <<<"$line")" \
        "$(field non2xx <<<"$line")" "$(field sockerr <<<"$line")" "$round" "$base" "$cpu_us" \
        >>"$work/results.tsv"
}
round=1 base=health server_pid=
warm() { # URL TOKEN_FILE
    run_wrk "$WARMUP" "$1" "$2" >/dev/null
}
# Two unmeasured passes over the many-users tokens: a token cache admits a token on its second
# success, so the measured run then finds them all.
warm_users() { # URL
    warm "$1" "$work/users.txt"
    warm "$1" "$work/users.txt"
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
# The never-seen tokens come after the many-users ones: no server has seen them in any run. Twice
# NEW_TOKENS: ours runs them on /me and, with the other half, on /hello. Then the alternated
# runs' (ALT_TOKENS a run: ours, each peer and the floor, twice a cycle).
[ "$ROUNDS" -ge 0 ] || die "ROUNDS must be 0 or more"
per_round=0 round_tokens=0
if [ "$ROUNDS" -gt 0 ]; then
    per_round=$((NEW_TOKENS / ROUNDS)) round_tokens=$((2 * NEW_TOKENS))
fi
alt_servers=1
[ "$PEERS" = 0 ] || alt_servers=$((2 + $(wc -w <<<"$PEER_KINDS")))
alt_from=$((USERS + round_tokens))
alt_tokens=$((ALTERNATE * 2 * alt_servers * ALT_TOKENS))
if [ $((alt_from + alt_tokens)) -gt "$mint" ]; then
    mint=$((alt_from + alt_tokens))
fi
# A run is timed from its (CONNECTIONS + 1)-th request: it needs more than that.
for n in "$per_round" "$ALT_TOKENS" "$ALT_REQUESTS"; do
    [ "$n" = 0 ] || [ "$n" -gt $((2 * CONNECTIONS)) ] || die "runs of $n requests are too short for $CONNECTIONS connections"
done
if [ "$ALTERNATE" -gt 0 ] && { [ "$ALT_TOKENS" = 0 ] || [ "$ALT_REQUESTS" = 0 ]; }; then
    die "ALTERNATE needs ALT_TOKENS and ALT_REQUESTS (ALTERNATE=0 skips the alternated runs)"
fi
log "development issuer on $issuer, signing $mint RS256 tokens"
start issuer "$EXAMPLE" --quiet --listen 127.0.0.1:0 --dev-port "$DEV_PORT" \
    --write-tokens "$work/all-tokens.txt" --tokens "$mint"
issuer_pid=$pid
head -n 1 "$work/all-tokens.txt" >"$work/one.txt"
head -n "$USERS" "$work/all-tokens.txt" >"$work/users.txt"
# Never seen by any server when its run starts: after the many-users tokens, one slice a round
# (new-R.txt), then as many for ours' /hello runs (hello-R.txt).
for ((r = 1; per_round > 0 && r <= ROUNDS; r++)); do
    # sed, not tail | head: head leaving early would end tail with SIGPIPE, and pipefail the script.
    sed -n "$((USERS + 1 + (r - 1) * per_round)),$((USERS + r * per_round))p" "$work/all-tokens.txt" >"$work/new-$r.txt"
    from=$((USERS + NEW_TOKENS))
    sed -n "$((from + 1 + (r - 1) * per_round)),$((from + r * per_round))p" "$work/all-tokens.txt" >"$work/hello-$r.txt"
done
if [ "$alt_tokens" -gt 0 ]; then
    # alt-new.00000, alt-new.00001, ...: ALT_TOKENS each, one a never-seen alternated run.
    sed -n "$((alt_from + 1)),$((alt_from + alt_tokens))p" "$work/all-tokens.txt" |
        split -l "$ALT_TOKENS" -d -a 5 - "$work/alt-new."
fi
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
    for kind in $PEER_KINDS; do
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

fresh() { # ID SERVER CACHE URL [ROUTE SLICES]: this round's slice of the never-seen tokens
    local route="${5:-/me}" slices="${6:-new}"
    [ "$per_round" = 0 ] ||
        measure "$1" "$2" "$route" "never-seen ($per_round a round)" "$3" "$4$route" "$work/$slices-$round.txt" "$per_round"
}

# Every server is started first and stays up; then each round visits them all, one after the
# other, in an order that rotates from round to round. A round's runs of one server (its /health
# first) take a minute, the whole round a few: the machine's drift then moves every server's
# round alike, and a comparison across servers within a round (the floor's column) means
# something. The idle servers cost next to nothing meanwhile (no traffic; tower-oauth2-resource-server
# refetches its JWKS every minute).
declare -A srv_pid srv_url
up() { # KEY: the server `start` just started ($pid, $url) is checked, warmed and kept as KEY
    srv_pid[$1]=$pid srv_url[$1]=$url
    sanity "$url"
    warm "$url/me" "$work/one.txt"
}
ours ours-cache-on "$AUDIENCE" --token-cache on
up on
ours ours-cache-off "$AUDIENCE" --token-cache off
up off
# The many-users run again with a cache sized for them (twice the entries: admission is on the
# second success, and the cache's own admission policy keeps headroom).
ours ours-cache-sized "$AUDIENCE" --token-cache on --token-cache-entries $((USERS * 2))
up sized
order=(on off sized)
if [ "$PEERS" != 0 ]; then
    # The floor runs like a peer (it checks no audience: not in the refusal check above).
    for kind in $PEER_KINDS floor; do
        peer "$kind" "$kind" "$AUDIENCE"
        up "$kind"
        order+=("$kind")
    done
fi

visit() { # KEY: this round's runs on that server, its own /health first
    local url="${srv_url[$1]}"
    server_pid="${srv_pid[$1]}"
    case "$1" in
    on)
        # Its many-users run finds its cache warm each round (entries live 5 minutes at most).
        warm_users "$url/me"
        base=health
        measure health ours /health "no token" - "$url/health" "$work/none.txt"
        # The same bare route sent the one token's `Authorization` header (which /health ignores):
        # the request bytes of the authenticated runs, without the layer. The difference to the
        # run above is what a 1 KiB header costs the client, the kernel and the HTTP parser.
        measure health-token ours /health "1 token, ignored" - "$url/health" "$work/one.txt"
        fresh ours-new-on ours on "$url"
        # The same on /hello, whose answer (`hello <sub>`) is the peers' /me: /me answers the
        # principal as JSON, which a never-seen principal pays in full.
        fresh ours-new-hello-on ours on "$url" /hello hello
        measure ours-1-on ours /me "1 token" on "$url/me" "$work/one.txt"
        measure ours-10k-on ours /me "$USERS tokens" on "$url/me" "$work/users.txt"
        # /me answers the whole principal as JSON (about 450 bytes); /hello, behind the same
        # validator (optional authentication), answers `hello <sub>` like the peers' /me: the
        # handler's share.
        measure ours-hello-on ours /hello "1 token" on "$url/hello" "$work/one.txt"
        ;;
    off)
        base=health-off
        measure health-off ours /health "no token" - "$url/health" "$work/none.txt"
        fresh ours-new-off ours off "$url"
        measure ours-1-off ours /me "1 token" off "$url/me" "$work/one.txt"
        measure ours-10k-off ours /me "$USERS tokens" off "$url/me" "$work/users.txt"
        ;;
    sized)
        # Warmed each round: entries live 5 minutes at most, and a round can take longer.
        warm_users "$url/me"
        base=health-sized
        measure health-sized ours /health "no token" - "$url/health" "$work/none.txt"
        measure ours-10k-sized ours /me "$USERS tokens" "on, $((USERS * 2)) entries" "$url/me" "$work/users.txt"
        ;;
    *)
        base="$1-health"
        measure "$1-health" "$1" /health "no token" - "$url/health" "$work/none.txt"
        measure "$1-health-token" "$1" /health "1 token, ignored" - "$url/health" "$work/one.txt"
        fresh "$1-new" "$1" - "$url"
        measure "$1-1" "$1" /me "1 token" - "$url/me" "$work/one.txt"
        measure "$1-10k" "$1" /me "$USERS tokens" - "$url/me" "$work/users.txt"
        if [ "$1" = floor ]; then
            # The least a cache can do: the token's text looked up in a set, nothing else checked.
            # Warmed (unmeasured) like ours: its set then holds every token of these runs.
            warm "$url/remembered" "$work/users.txt"
            measure floor-remembered-1 floor /remembered "1 token" "a set of tokens" "$url/remembered" "$work/one.txt"
            measure floor-remembered-10k floor /remembered "$USERS tokens" "a set of tokens" "$url/remembered" "$work/users.txt"
        fi
        ;;
    esac
}
for ((round = 1; round <= ROUNDS; round++)); do
    for ((i = 0; i < ${#order[@]}; i++)); do
        visit "${order[$(((i + round - 1) % ${#order[@]}))]}"
    done
done

# --- issue 16's ratios, runs alternated --------------------------------------------------------
# A ratio of two runs minutes apart carries this VM's drift (10-25 % within minutes: runs P and
# Q of the README, on one build, moved more than the differences they were to show). Here each
# cycle runs every item below once in an order, then again in the reverse order: a drift that
# is linear over the cycle (about 20 s) cancels from every pair's sums, wherever the two sit in
# it. A ratio is (X + X') ÷ (Y + Y') of one cycle; the table gives the median over the cycles and
# their range. The order rotates from cycle to cycle. Every run is ALT_REQUESTS requests, or
# ALT_TOKENS never-seen tokens, each timed from its (CONNECTIONS + 1)-th request to its last by
# the client itself; a run takes well under a second.
: >"$work/alt.tsv"
if [ "$ALTERNATE" -gt 0 ]; then
    # ID SERVER ROUTE TOKENS (none: no header; one: the one token; users: the many-users tokens;
    # new: the next ALT_TOKENS never-seen ones)
    alt_items=(
        "health on /health none"
        "health-token on /health one"
        "hello on /hello one"
        "me on /me one"
        "new-hello on /hello new"
        "sized-health sized /health none"
        "sized-users sized /me users"
        "sized-users-hello sized /hello users"
    )
    if [ "$PEERS" != 0 ]; then
        for kind in $PEER_KINDS; do
            alt_items+=("$kind-health $kind /health none" "$kind-new $kind /me new")
        done
        alt_items+=("floor-health floor /health none" "floor-remembered floor /remembered one"
            "floor-remembered-users floor /remembered users" "floor-new floor /me new")
        warm "${srv_url[floor]}/remembered" "$work/users.txt"
    fi
    alt_next=0
    alt_run() { # CYCLE PASS ID SERVER ROUTE TOKENS
        local file limit="$ALT_REQUESTS" line before after spid="${srv_pid[$4]}"
        case "$6" in
        none) file="$work/none.txt" ;;
        one) file="$work/one.txt" ;;
        users) file="$work/users.txt" ;;
        new)
            file="$(printf '%s/alt-new.%05d' "$work" "$alt_next")"
            alt_next=$((alt_next + 1))
            limit="$ALT_TOKENS"
            ;;
        esac
        before="$(cpu_ticks "$spid")"
        line="$(run_wrk 120s "${srv_url[$4]}$5" "$file" "$limit")"
        after="$(cpu_ticks "$spid")"
        checked "$3" "$line"
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$(field rps <<<"$line")" \
            "$((after - before))" "$(field requests <<<"$line")" >>"$work/alt.tsv"
    }
    for ((cycle = 1; cycle <= ALTERNATE; cycle++)); do
        log "alternated runs: cycle $cycle of $ALTERNATE (${#alt_items[@]} items, forth and back)"
        # The cache sized for the many users is kept full (entries live 5 minutes at most).
        warm_users "${srv_url[sized]}/me"
        n=${#alt_items[@]}
        for ((i = 0; i < n; i++)); do
            # shellcheck disable=SC2086 # the item's four words
            alt_run "$cycle" 1 ${alt_items[$(((i + cycle - 1) % n))]}
        done
        for ((i = n - 1; i >= 0; i--)); do
            # shellcheck disable=SC2086
            alt_run "$cycle" 2 ${alt_items[$(((i + cycle - 1) % n))]}
        done
    done
fi
for key in "${order[@]}"; do
    stop "${srv_pid[$key]}"
done

# --- gateways (issue 9) ------------------------------------------------------------------------
# One route, `GET /items/1` with the one token (the same requests and wrk settings as above):
#   upstream alone               nginx `return 200` in its own nginx (one worker): costs almost nothing
#   nginx                        nginx -> upstream (a server block proxying to the template's `app`)
#   nginx + auth_request static  the shipped nginx.conf, its auth service replaced by the static
#                                upstream: the price of the auth_request hop itself
#   nginx + tower-bearer auth    the shipped nginx.conf -> `tower-bearer auth`, token cache warm
#   tower-bearer proxy           `tower-bearer proxy` -> upstream
# The nginx configuration is examples/gateways/nginx.conf with its ports substituted, as
# tests/gateways_real.rs does, plus the server block without auth. That template keeps its
# upstream connections open (`keepalive 32`, HTTP/1.1: the "keepalive" rows); the "new per
# request" rows take those lines out, so each request opens a loopback connection to the app and
# another to the auth service (nginx's default). The proxy mode's client always pools.
: >"$work/gateway.tsv"
if [ "$GATEWAY" != 0 ]; then
    free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
    # spawn NAME CMD...: CMD in the background, output in $work/NAME.{out,err}; sets $pid.
    spawn() {
        local name="$1"
        shift
        "$@" >"$work/$name.out" 2>"$work/$name.err" &
        pid=$!
        pids+=("$pid")
    }
    # ready PID WANT URL [TOKEN]: waits (30 s at most) until URL answers WANT.
    ready() {
        local i
        for ((i = 0; i < 300; i++)); do
            [ "$(status_of "$3" "${4:-}" || true)" = "$2" ] && return 0
            kill -0 "$1" 2>/dev/null || die "process $1 exited: $(cat "$work"/*.err | tail -n 20)"
            sleep 0.1
        done
        die "$3 did not answer $2"
    }
    # nginx_run NAME CONF_FILE: nginx in the foreground with its own prefix $work/NAME.
    nginx_run() {
        mkdir -p "$work/$1"
        spawn "$1" "$NGINX" -p "$work/$1" -c "$2" -g 'daemon off;'
    }
    # tower_bearer NAME MODE: `tower-bearer MODE` on a free port, keys loaded; sets $pid, $gw_addr.
    tower_bearer() {
        local i
        gw_addr=
        spawn "$1" env -u RUST_LOG TOWER_BEARER_LOG="$GATEWAY_LOG" "$GW_BIN" "$2" \
            --config "$work/tower-bearer.toml" --listen 127.0.0.1:0
        for ((i = 0; i < 300; i++)); do
            gw_addr="$(sed -n 's|^listening on \(127\.0\.0\.1:[0-9]*\)$|\1|p' "$work/$1.out")"
            [ -z "$gw_addr" ] || break
            kill -0 "$pid" 2>/dev/null || die "$1 exited: $(cat "$work/$1.err")"
            sleep 0.1
        done
        [ -n "$gw_addr" ] || die "$1 did not start"
        ready "$pid" 200 "http://$gw_addr/readyz"
    }
    gmeasure() { # ID URL
        local line
        warm "$2" "$work/one.txt"
        log "measuring gateway $1 ($DURATION)"
        line="$(run_wrk "$DURATION" "$2" "$work/one.txt")"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$(field rps <<<"$line")" "$(field p50_us <<<"$line")" \
            "$(field p99_us <<<"$line")" "$(field requests <<<"$line")" "$(field non2xx <<<"$line")" \
            "$(field sockerr <<<"$line")" >>"$work/gateway.tsv"
    }
    route=/items/1

    # The upstream: a second nginx, `return 200`, nothing else.
    up_port="$(free_port)"
    cat >"$work/nginx-upstream.conf" <<NGINX
worker_processes 1;
pid nginx.pid;
error_log stderr warn;
events {
    worker_connections 1024;
}
http {
    access_log off;
    client_body_temp_path client_body_temp;
    proxy_temp_path proxy_temp;
    fastcgi_temp_path fastcgi_temp;
    uwsgi_temp_path uwsgi_temp;
    scgi_temp_path scgi_temp;
    server {
        listen 127.0.0.1:$up_port;
        # The stand-in auth service: 200, empty body, as tower-bearer answers.
        location = /auth {
            return 200;
        }
        location / {
            default_type text/plain;
            return 200 "ok\n";
        }
    }
}
NGINX
    nginx_run nginx-upstream "$work/nginx-upstream.conf"
    upstream_pid=$pid
    ready "$upstream_pid" 200 "http://127.0.0.1:$up_port$route"

    # tower-bearer.toml: the development issuer, one rule for the measured route, the upstream.
    cat >"$work/tower-bearer.toml" <<TOML
listen = "127.0.0.1:0"
realm = "api"

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
TOML

    # front NAME AUTH_ADDR KEEPALIVE: nginx from the template (auth_request -> AUTH_ADDR, app ->
    # the upstream) plus a server block without auth; sets $pid, $front_url, $plain_url.
    front() {
        local front_port plain_port
        front_port="$(free_port)"
        plain_port="$(free_port)"
        python3 - "$root/examples/gateways/nginx.conf" "$work/$1.conf" "$front_port" "$plain_port" \
            "$2" "127.0.0.1:$up_port" "$3" <<'PY'
import sys
template, out, front, plain, auth, app, keepalive = sys.argv[1:]
text = open(template).read()
def sub(old, new):
    global text
    assert old in text, f"examples/gateways/nginx.conf no longer contains {old!r}"
    text = text.replace(old, new)
# The shipped template keeps upstream connections open; the "new per request" variant takes
# those lines out again.
http11 = 'proxy_http_version 1.1;\n            proxy_set_header Connection "";\n            '
if keepalive != "1":
    for line in ["        keepalive 32;\n", "            proxy_http_version 1.1;\n", '            proxy_set_header Connection "";\n']:
        sub(line, "")
    http11 = ""
sub("127.0.0.1:8080", f"127.0.0.1:{front}")
sub("127.0.0.1:9090", auth)
sub("127.0.0.1:3000", app)
plain_server = f"""
    # load.sh: the same upstream, no auth_request.
    server {{
        listen 127.0.0.1:{plain};

        location / {{
            proxy_set_header Host $host;
            {http11}proxy_pass http://app;
        }}
    }}
"""
end = text.rstrip().rfind("}")
text = text[:end] + plain_server + text[end:]
open(out, "w").write(text)
PY
        nginx_run "$1" "$work/$1.conf"
        front_url="http://127.0.0.1:$front_port" plain_url="http://127.0.0.1:$plain_port"
        ready "$pid" 200 "$plain_url$route"
    }

    tower_bearer gw-auth auth
    auth_pid=$pid auth_addr=$gw_addr
    gmeasure upstream "http://127.0.0.1:$up_port$route"
    for keepalive in 0 1; do
        suffix=""
        [ "$keepalive" = 0 ] || suffix="-keepalive"
        front "nginx-static$suffix" "127.0.0.1:$up_port" "$keepalive"
        expect_status 200 "$front_url$route"
        gmeasure "nginx-static$suffix" "$front_url$route"
        stop "$pid"
        front "nginx-auth$suffix" "$auth_addr" "$keepalive"
        nginx_pid=$pid
        expect_status 401 "$front_url$route"
        expect_status 401 "$front_url$route" "$token.x"
        expect_status 200 "$front_url$route" "$token"
        gmeasure "nginx$suffix" "$plain_url$route"
        gmeasure "nginx-auth$suffix" "$front_url$route"
        stop "$nginx_pid"
    done
    stop "$auth_pid"

    tower_bearer gw-proxy proxy
    proxy_pid=$pid
    expect_status 401 "http://$gw_addr$route"
    expect_status 200 "http://$gw_addr$route" "$token"
    gmeasure proxy "http://$gw_addr$route"
    stop "$proxy_pid"
    stop "$upstream_pid"
    "$NGINX" -v 2>"$work/nginx-version.txt" || true
fi

# --- the proxy as a TLS front, HTTP/1.1 and HTTP/2, against nginx with TLS (issue 19) ----------
# Its own script and table (benches/proxy_tls.sh); PROXY_TLS=0 skips it.
if [ "$GATEWAY" != 0 ] && [ "${PROXY_TLS:-1}" != 0 ]; then
    DURATION="$DURATION" CONNECTIONS="$CONNECTIONS" WARMUP="$WARMUP" GATEWAY_LOG="$GATEWAY_LOG" \
        bash "$root/benches/proxy_tls.sh"
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
    # The valid tokens, all of them, then all of them again: the cache admits a token on its
    # second success (the doorkeeper), so sent once they are verified and forgotten, sent twice
    # they are held. The two floods together show what a verified token costs and what a cached
    # one keeps.
    cat "$work/memory-valid.txt" "$work/memory-valid.txt" >"$work/memory-twice.txt"
    flood() { # KIND (valid, twice, garbage: tokens memory-KIND.txt) EXPECTED_STATUS
        ours "mem-$1" "$AUDIENCE" --token-cache on --token-cache-entries "$MEMORY_TOKENS"
        local server=$pid line before after requests
        requests="$(wc -l <"$work/memory-$1.txt")"
        expect_status 200 "$url/me" "$token" # keys fetched
        before="$(rss_kib "$server")"
        log "memory: $requests requests, $MEMORY_TOKENS distinct tokens ($1; RSS before: $before KiB)"
        line="$(run_wrk 120s "$url/me" "$work/memory-$1.txt" "$requests" "$2")"
        after="$(rss_kib "$server")"
        # Growth is divided by the distinct tokens: only right if every one was sent.
        [ "$(field seen <<<"$line")" -ge "$requests" ] ||
            die "memory flood $1: $(field seen <<<"$line") responses of $requests within 120 s"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$(field seen <<<"$line")" "$(field bad <<<"$line")" \
            "$before" "$after" "$(field rps <<<"$line")" "$2" "$MEMORY_TOKENS" >>"$work/memory.tsv"
        stop "$server"
    }
    flood valid 200
    flood twice 200
    flood garbage 401
fi

stop "$issuer_pid"

# --- report ------------------------------------------------------------------------------------
python3 - "$work/results.tsv" "$work/memory.tsv" "$DURATION" "$CONNECTIONS" "$USERS" "$ROUNDS" <<'PY'
import sys
from statistics import median
results, memory, duration, connections, users, rounds = sys.argv[1:7]
rows = [line.rstrip("\n").split("\t") for line in open(results) if line.strip()]
# id -> {round: rps}; id -> its row's description; id -> the id of its /health
per_round, about, base_of, errors, cpu_round = {}, {}, {}, {}, {}
for ident, server, route, tokens, cache, r_s, p99_us, requests, non2xx, sockerr, rnd, base, cpu_us in rows:
    per_round.setdefault(ident, {})[rnd] = float(r_s)
    cpu_round.setdefault(ident, {})[rnd] = float(cpu_us)
    about.setdefault(ident, (server, route, tokens, cache, []))[4].append(int(p99_us))
    base_of[ident] = base
    errors[ident] = errors.get(ident, 0) + int(non2xx) + int(sockerr)
rps = {ident: median(runs.values()) for ident, runs in per_round.items()}
cpu = {ident: median(runs.values()) for ident, runs in cpu_round.items()}

# Every comparison is made round by round, then the median is taken: runs of one server in one
# round are seconds apart, runs of two servers in one round minutes apart at most.
def by_round(a, b, compare):
    """compare(a, b, round) for every round both runs have (None dropped): the median, or None."""
    values = [compare(a, b, r) for r in per_round.get(a, {}) if r in per_round.get(b, {})]
    values = [v for v in values if v is not None]
    return median(values) if values else None

def rps_ratio(a, b, r):
    return per_round[a][r] / per_round[b][r]

def own_in(ident, r):
    """ident's requests/s ÷ its own server's /health in round r (None if that did not run)."""
    base = base_of.get(ident, "")
    return rps_ratio(ident, base, r) if r in per_round.get(base, {}) else None

def cpu_beyond_in(ident, r):
    """The server CPU a request of ident cost beyond one of its own /health in round r."""
    base = base_of.get(ident, "")
    return cpu_round[ident][r] - cpu_round[base][r] if r in cpu_round.get(base, {}) else None

def cpu_over(a, b, r):
    """The CPU a request of a costs beyond its own /health, over the same of b."""
    beyond_a, beyond_b = cpu_beyond_in(a, r), cpu_beyond_in(b, r)
    return beyond_a - beyond_b if beyond_a is not None and beyond_b is not None else None

def own(ident):
    """ident's requests/s ÷ its own server's /health: median of rounds."""
    return by_round(ident, base_of.get(ident, ""), lambda a, b, r: own_in(a, r))

def cpu_beyond(ident):
    """The server CPU a request of ident costs beyond one of its own /health: median of rounds."""
    return by_round(ident, base_of.get(ident, ""), lambda a, b, r: cpu_beyond_in(a, r))

def times(value):
    return f"{value:.2f}×" if value is not None else "n/a"

def spread(ident):
    runs = per_round[ident].values()
    return f"{min(runs):,.0f}–{max(runs):,.0f}" if len(runs) > 1 else ""

if rows:  # none with ROUNDS=0
    print(f"### Throughput (wrk -t1 -c{connections} -d{duration} --latency, loopback, 2 cores shared; "
          f"median of {rounds} rounds, each visiting every server in turn)\n")
    print("| server | route | tokens | token cache | requests/s (median) | range | p99 latency (median) | ÷ own /health (median of rounds) | server CPU µs a request (median) | errors |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|")
    for ident, (server, route, tokens, cache, p99s) in about.items():
        own_text = f"{own(ident):.2f}" if own(ident) is not None and route != "/health" else ""
        print(f"| {server} | {route} | {tokens} | {cache} | {rps[ident]:,.0f} | {spread(ident)} | "
              f"{median(p99s) / 1000:.2f} ms | {own_text} | {cpu[ident]:.1f} | {errors[ident]} |")

    def own_ratio(a, b, r):
        """a ÷ its own /health, over b ÷ its own /health: each server's drift within its visit cancels."""
        own_a, own_b = own_in(a, r), own_in(b, r)
        return own_a / own_b if own_a and own_b else None

    def ratio(a):
        """a ÷ its own /health."""
        return times(own(a))

    def within(a, b):
        """a ÷ b (runs of one server, or of two servers in the same round)."""
        return times(by_round(a, b, rps_ratio))

    def of_own(a, b):
        """a and b each ÷ its own /health, one ÷ the other."""
        return times(by_round(a, b, own_ratio))

    print("\n### Ratios (within a round, then the median over rounds)\n")
    print("| ratio | value | target |")
    print("|---|---:|---|")
    print(f"| ours: cached `/me` (1 token) ÷ `/health` | {ratio('ours-1-on')} | ≥ 0.95× |")
    print(f"| ours: cached `/hello` (1 token, short body like the peers' `/me`) ÷ `/health` | {ratio('ours-hello-on')} | ≥ 0.97× |")
    print(f"| ours: cached `/me` (1 token) ÷ `/health` sent the same header | {within('ours-1-on', 'health-token')} | |")
    print(f"| ours: cached `/hello` (1 token) ÷ `/health` sent the same header | {within('ours-hello-on', 'health-token')} | |")
    print(f"| ours: `/me` {users} tokens, cache sized for them ÷ `/health` | {ratio('ours-10k-sized')} | ≥ 0.90× |")
    print(f"| ours: `/me` {users} tokens, default cache ÷ `/health` | {ratio('ours-10k-on')} | |")
    print(f"| ours: `/me` cache off (1 token) ÷ `/health` | {ratio('ours-1-off')} | |")
    print(f"| ours: `/me` {users} tokens, cache off ÷ `/health` | {ratio('ours-10k-off')} | |")
    if "floor-remembered-1" in rps:
        print(f"| floor: `/remembered` (1 token: a set lookup, nothing checked) ÷ its `/health` | {ratio('floor-remembered-1')} | |")
        print(f"| floor: `/remembered` (1 token) ÷ its `/health` sent the same header | {within('floor-remembered-1', 'floor-health-token')} | |")
        print(f"| floor: `/remembered`, {users} tokens ÷ its `/health` | {ratio('floor-remembered-10k')} | |")
        print(f"| ours: cached `/hello` (1 token) ÷ own `/health`, ÷ the same of the floor's `/remembered` | {of_own('ours-hello-on', 'floor-remembered-1')} | |")
        print(f"| ours: cached `/me` (1 token) ÷ own `/health`, ÷ the same of the floor's `/remembered` | {of_own('ours-1-on', 'floor-remembered-1')} | |")
        print(f"| ours: `/me` {users} tokens, cache sized, ÷ own `/health`, ÷ the same of the floor's `/remembered` {users} tokens | {of_own('ours-10k-sized', 'floor-remembered-10k')} | |")
    peers = [ident[: -len("-health")] for ident in about if ident.endswith("-health") and not ident.startswith("health")]
    peers = [peer for peer in peers if peer != "floor"]
    for peer in peers:
        if f"{peer}-1" not in rps:
            continue
        print(f"| ours ÷ {peer}: `/health` (no auth, framework baseline) | {within('health', peer + '-health')} | |")
        print(f"| {peer}: its `/me` 1 token ÷ its `/health` sent the same header | {within(peer + '-1', peer + '-health-token')} | |")
        print(f"| ours ÷ {peer}: `/me` 1 token, ours cached | {within('ours-1-on', peer + '-1')} | ≥ 3× |")
        print(f"| ours ÷ {peer}: ours cached `/hello` ÷ its `/me`, 1 token (same body size) | {within('ours-hello-on', peer + '-1')} | |")
        print(f"| ours ÷ {peer}: `/me` 1 token, ours cache off | {within('ours-1-off', peer + '-1')} | ≥ 1.0× |")
        print(f"| ours ÷ {peer}: `/me` {users} tokens, ours cache on | {within('ours-10k-on', peer + '-10k')} | ≥ 3× |")
        print(f"| ours ÷ {peer}: `/me` {users} tokens, ours cache off (cold) | {within('ours-10k-off', peer + '-10k')} | ≥ 1.0× |")

    if "ours-new-on" in rps:
        print("\n### Never-seen tokens (each sent once; RS256-2048; a run ends after its round's last response)\n")
        print("| server | never-seen tokens ÷ bare (own `/health`, median of rounds) | that ÷ the floor's | requests/s (median) | range | ÷ the floor's requests/s | server CPU µs a request | beyond its own `/health` | that beyond the floor's |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        new = [("tower-bearer, token cache on (shipped default)", "ours-new-on"),
               ("tower-bearer, shipped default, `/hello` (the peers' answer: `hello <sub>`)", "ours-new-hello-on"),
               ("tower-bearer, `--token-cache off`", "ours-new-off")]
        new += [(peer, f"{peer}-new") for peer in peers]
        new += [("floor: the RS256 signature check alone (axum, key parsed once, nothing else)", "floor-new")]
        def show(value, fmt):
            return format(value, fmt) if value is not None else ""
        for label, ident in new:
            if ident in rps:
                of_floor = by_round(ident, "floor-new", own_ratio)
                rps_of_floor = by_round(ident, "floor-new", rps_ratio)
                over_floor = by_round(ident, "floor-new", cpu_over)
                print(f"| {label} | {own(ident):.2f} | {show(of_floor, '.2f')} | {rps[ident]:,.0f} | {spread(ident)} | "
                      f"{show(rps_of_floor, '.2f')} | {cpu[ident]:.1f} | {cpu_beyond(ident):+.1f} | {show(over_floor, '+.1f')} |")
        print("\nServer CPU a request: the server process's user + system time over the run ÷ its responses "
              "(/proc, in clock ticks: 10 ms on Linux). It leaves out the client's share of the 2 cores, which requests/s carry; "
              "it still moves with the machine's speed. The floor verifies the signature and answers a constant: "
              "what a server beyond it spends is its own validation, key selection, claims and handler. "
              "The floor's columns compare each server with the floor's run of the same round, then take the median over the rounds.")

mem = [line.rstrip("\n").split("\t") for line in open(memory) if line.strip()]
if mem:
    print("\n### Resident memory of ours (VmRSS; `--token-cache on --token-cache-entries N`)\n")
    print("| flood | responses | not the expected status | RSS before | RSS after | growth | growth ÷ distinct tokens | requests/s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for kind, seen, bad, before, after, r_s, expect, distinct in mem:
        before, after = int(before), int(after)
        what = {
            "valid": "distinct valid tokens, each sent once (verified; not cached: admission is on a second success)",
            "twice": "distinct valid tokens, all sent once, then all again (cached on the second)",
            "garbage": "distinct garbage tokens (rejected)",
        }[kind]
        print(f"| {what} | {int(seen):,} | {int(bad)} (expected {expect}) | {before / 1024:.1f} MiB | "
              f"{after / 1024:.1f} MiB | {(after - before) / 1024:+.1f} MiB | "
              f"{(after - before) * 1024 / int(distinct):+,.0f} B | {float(r_s):,.0f} |")
PY

[ ! -s "$work/alt.tsv" ] ||
    python3 - "$work/alt.tsv" "$CONNECTIONS" "$ALT_REQUESTS" "$ALT_TOKENS" "$USERS" "$CLK_TCK" <<'PY'
import random
import sys
from statistics import median
path, connections, alt_requests, alt_tokens, users, clk_tck = sys.argv[1:7]
rps, ticks, requests = {}, {}, {}  # id -> {cycle: summed requests/s of its two runs}; totals
for line in open(path):
    cycle, _pass, ident, r_s, cpu, n = line.rstrip("\n").split("\t")
    rps.setdefault(ident, {}).setdefault(cycle, 0.0)
    rps[ident][cycle] += float(r_s)
    ticks[ident] = ticks.get(ident, 0) + int(cpu)
    requests[ident] = requests.get(ident, 0) + int(n)
cycles = len(next(iter(rps.values())))


def interval(values):
    """A 95 % interval of the median (bootstrap: the median of as many cycles drawn again, with
    replacement, 4000 times; seeded, so a table is reproducible from its runs)."""
    draw = random.Random(16)
    medians = sorted(median(draw.choices(values, k=len(values))) for _ in range(4000))
    return medians[100], medians[3899]


def ratio(a, b):
    """(a + a') / (b + b') of each cycle: the median, its interval and the range, as three cells."""
    values = sorted(rps[a][c] / rps[b][c] for c in rps.get(a, {}) if c in rps.get(b, {}))
    if not values:
        return "n/a | | "
    low, high = interval(values)
    return f"{median(values):.2f} | {low:.2f}–{high:.2f} | {values[0]:.2f}–{values[-1]:.2f}"


def cpu_us(ident):
    return ticks[ident] * 1e6 / int(clk_tck) / requests[ident]


print(f"\n### Issue 16's ratios, runs alternated ({cycles} cycles; each run {int(alt_requests):,} requests, "
      f"or {int(alt_tokens):,} never-seen tokens; wrk -t1 -c{connections}, timed by the client)\n")
print("| ratio (requests/s) | median of cycles | its 95 % interval | range | target |")
print("|---|---:|---:|---:|---|")
print(f"| ours: cached `/hello` (1 token) ÷ `/health` | {ratio('hello', 'health')} | ≥ 0.97 |")
print(f"| ours: cached `/me` (1 token) ÷ `/health` | {ratio('me', 'health')} | ≥ 0.95 |")
print(f"| ours: `/health` sent the token's header (ignored) ÷ `/health` | {ratio('health-token', 'health')} | |")
print(f"| ours: cached `/hello` ÷ `/health` sent the same header | {ratio('hello', 'health-token')} | |")
print(f"| ours: cached `/me` ÷ `/health` sent the same header | {ratio('me', 'health-token')} | |")
print(f"| ours: `/hello`, {int(users):,} tokens round-robin, cache sized for them ÷ `/health` | {ratio('sized-users-hello', 'sized-health')} | ≥ 0.90 |")
print(f"| ours: `/me`, the same tokens ÷ `/health` | {ratio('sized-users', 'sized-health')} | |")
if "floor-remembered-users" in rps:
    print(f"| floor: `/remembered`, the same tokens ÷ its `/health` | {ratio('floor-remembered-users', 'floor-health')} | |")
if "floor-remembered" in rps:
    print(f"| floor: `/remembered` (1 token looked up in a set, nothing checked) ÷ its `/health` | {ratio('floor-remembered', 'floor-health')} | |")
print(f"| ours: never-seen RS256, `/hello`, shipped defaults ÷ `/health` | {ratio('new-hello', 'health')} | ≥ 0.40 |")
peers = [i[: -len("-new")] for i in rps if i.endswith("-new") and i != "floor-new"]
for peer in peers:
    print(f"| {peer}: never-seen ÷ its `/health` | {ratio(peer + '-new', peer + '-health')} | |")
if "floor-new" in rps:
    print(f"| floor (the signature check alone): never-seen ÷ its `/health` | {ratio('floor-new', 'floor-health')} | |")
for peer in peers:
    print(f"| ours ÷ {peer}: never-seen (ours `/hello`, its `/me`) | {ratio('new-hello', peer + '-new')} | > 1 |")
if "floor-new" in rps:
    print(f"| ours ÷ the floor: never-seen | {ratio('new-hello', 'floor-new')} | |")
print("\n| run | requests/s (median of cycles) | server CPU µs a request (all its runs) |")
print("|---|---:|---:|")
for ident in rps:
    print(f"| {ident} | {median(rps[ident].values()) / 2:,.0f} | {cpu_us(ident):.1f} |")
PY

[ -s "$work/gateway.tsv" ] || exit 0
python3 - "$work/gateway.tsv" "$DURATION" "$CONNECTIONS" "$(cat "$work/nginx-version.txt" 2>/dev/null)" "$GATEWAY_LOG" <<'PY'
import sys
path, duration, connections, nginx_version, log = sys.argv[1:6]
rows = {}
for line in open(path):
    if line.strip():
        ident, r_s, p50, p99, requests, non2xx, sockerr = line.rstrip("\n").split("\t")
        rows[ident] = dict(rps=float(r_s), p50=int(p50), p99=int(p99), errors=int(non2xx) + int(sockerr))
version = nginx_version.split("/")[-1].strip() or "?"
print(f"\n### Gateways: `GET /items/1`, one valid token (wrk -t1 -c{connections} -d{duration} --latency, "
      f"loopback, 2 cores shared; nginx {version}, TOWER_BEARER_LOG={log})\n")
print("| path | upstream connections | requests/s | p50 | p99 | ÷ nginx without auth | errors |")
print("|---|---|---:|---:|---:|---:|---:|")
labels = [
    ("upstream", "upstream alone (nginx `return 200`)", "", "nginx"),
    ("nginx", "nginx → upstream", "new per request", "nginx"),
    ("nginx-static", "nginx + auth_request → static 200 (the hop alone)", "new per request", "nginx"),
    ("nginx-auth", "nginx + auth_request → `tower-bearer auth` → upstream", "new per request", "nginx"),
    ("nginx-keepalive", "nginx → upstream", "keepalive (shipped config)", "nginx-keepalive"),
    ("nginx-static-keepalive", "nginx + auth_request → static 200 (the hop alone)", "keepalive (shipped config)", "nginx-keepalive"),
    ("nginx-auth-keepalive", "nginx + auth_request → `tower-bearer auth` → upstream", "keepalive (shipped config)", "nginx-keepalive"),
    ("proxy", "`tower-bearer proxy` → upstream", "pooled", "nginx"),
]
def ratio(a, b):
    return f"{rows[a]['rps'] / rows[b]['rps']:.2f}×" if a in rows and b in rows else "n/a"
for ident, label, conns, base in labels:
    if ident not in rows:
        continue
    r = rows[ident]
    print(f"| {label} | {conns} | {r['rps']:,.0f} | {r['p50'] / 1000:.2f} ms | {r['p99'] / 1000:.2f} ms | "
          f"{ratio(ident, base)} | {r['errors']} |")
print("\n| ratio (requests/s) | new connection per request | keepalive (shipped nginx.conf) |")
print("|---|---:|---:|")
print(f"| nginx + tower-bearer auth ÷ nginx | {ratio('nginx-auth', 'nginx')} | {ratio('nginx-auth-keepalive', 'nginx-keepalive')} |")
print(f"| nginx + static auth ÷ nginx (the extra round trip alone) | {ratio('nginx-static', 'nginx')} | {ratio('nginx-static-keepalive', 'nginx-keepalive')} |")
print(f"| nginx + tower-bearer auth ÷ nginx + static auth (our service beyond the round trip) | {ratio('nginx-auth', 'nginx-static')} | {ratio('nginx-auth-keepalive', 'nginx-static-keepalive')} |")
print(f"| tower-bearer proxy ÷ upstream alone | {ratio('proxy', 'upstream')} | |")
print(f"| tower-bearer proxy ÷ nginx (no auth) | {ratio('proxy', 'nginx')} | {ratio('proxy', 'nginx-keepalive')} |")
print(f"| tower-bearer proxy ÷ nginx + tower-bearer auth | {ratio('proxy', 'nginx-auth')} | {ratio('proxy', 'nginx-auth-keepalive')} |")
PY
