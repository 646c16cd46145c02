#!/usr/bin/env bash
# Instructions a request, counted by callgrind: ours, the peers and the floor (benches/peers) on
# the routes of benches/load.sh, each server run under `valgrind --tool=callgrind`.
#
#   benches/instructions.sh                        # ours and the floor: about 2 minutes once built
#   PEER_KINDS="aliri_tower" benches/instructions.sh   # and peers (read "The signature check" below)
#
# Why, beside load.sh: requests/s and CPU time on this shared 2-core VM move by 10-25 % from
# minute to minute, more than the differences that decide a close call. An instruction count is
# the same from run to run (within about 2 %), so it shows what a change did to the
# work a request costs. It is not time: it leaves out cache misses, waits and the kernel, which
# load.sh measures. Read the two together.
#
# Each server answers, over one keep-alive connection, one request at a time:
#   - `/health` without a token (REQUESTS requests): the cost of a request before any check;
#   - the same token again (REQUESTS, after WARM unmeasured ones): the cache-hit path;
#   - tokens never seen before (NEW_TOKENS, each sent once): the full check, signature included.
# Every answer must be 200. Counts are between `callgrind_control --zero` and `--dump`: the
# server's user-space instructions, all threads, nothing of the client.
#
# The signature check is in the never-seen counts, and under valgrind aws-lc-rs takes its generic
# code path (valgrind hides some CPU features), so those counts are not a CPU's. Ours and the floor
# check RS256 with the same aws-lc-rs call (a key parsed once): their difference is ours' work
# beyond the signature. The peers use other crypto (see benches/peers/Cargo.toml).
#
# Environment:
#   REQUESTS=2000 WARM=50 NEW_TOKENS=300
#   PEER_KINDS=""    any of: jwt-authorizer tower-oauth2-resource-server aliri_tower
# Needs cargo, python3 and valgrind (installed with apt-get when missing). Every server listens
# on 127.0.0.1; everything started here is killed at exit.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
REQUESTS="${REQUESTS:-2000}"
WARM="${WARM:-50}"
NEW_TOKENS="${NEW_TOKENS:-300}"
PEER_KINDS="${PEER_KINDS-}"
AUDIENCE="tower-bearer-dev" # tower_bearer::dev::DEFAULT_AUDIENCE
EXAMPLE="$root/target/release/examples/resource_server"
PEER="$root/benches/peers/target/release/peers"

# shellcheck source=benches/harness.sh
. "$root/benches/harness.sh"

command -v valgrind >/dev/null || apt_install valgrind
for tool in python3 cargo callgrind_control; do
    command -v "$tool" >/dev/null || die "$tool is needed"
done
log "cargo build --release --example resource_server --features axum,dev"
cargo build --release --example resource_server --features axum,dev >&2
log "cargo build --release --manifest-path benches/peers/Cargo.toml"
cargo build --release --manifest-path benches/peers/Cargo.toml >&2

# The client: COUNT requests over one connection, one at a time, with no token ("-"), the one
# token of a one-line file again and again, or each token of a longer file once.
cat >"$work/client.py" <<'PY'
import http.client, sys
url, path, tokens, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
host, port = url.removeprefix("http://").split(":")
lines = [l.strip() for l in open(tokens) if l.strip()] if tokens != "-" else []
if len(lines) > 1 and len(lines) < count:
    sys.exit(f"{tokens}: {len(lines)} tokens for {count} requests")
conn = http.client.HTTPConnection(host, int(port), timeout=120)
bad = 0
for i in range(count):
    token = lines[i] if len(lines) > 1 else (lines[0] if lines else None)
    conn.request("GET", path, headers={"Authorization": "Bearer " + token} if token else {})
    response = conn.getresponse()
    response.read()
    bad += response.status != 200
if bad:
    sys.exit(f"{bad} of {count} answers were not 200")
PY

# start NAME CMD...: starts CMD under callgrind, waits for its "listening on http://..." line
# (valgrind starts slowly: up to 300 s); sets $url and $pid (valgrind's pid is the program's).
start() {
    local name="$1" i
    shift
    : >"$work/$name.out"
    valgrind --tool=callgrind --callgrind-out-file="$work/$name.cg" "$@" >>"$work/$name.out" 2>"$work/$name.err" &
    pid=$!
    pids+=("$pid")
    for ((i = 0; i < 3000; i++)); do
        url="$(sed -n 's|^listening on \(http://127\.0\.0\.1:[0-9]*\).*|\1|p' "$work/$name.out" || true)"
        [ -z "$url" ] || return 0
        kill -0 "$pid" 2>/dev/null || die "$name exited: $(tail -n 5 "$work/$name.err")"
        sleep 0.1
    done
    die "$name did not start"
}

# count SERVER ROUTE TOKENS N: instructions a request of N requests to ROUTE ("-": no token).
count() {
    local server="$1" route="$2" tokens="$3" n="$4" dump i
    callgrind_control --zero "$pid" >/dev/null 2>&1
    python3 "$work/client.py" "$url" "$route" "$tokens" "$n" || die "$server $route: $?"
    callgrind_control --dump="$server" "$pid" >/dev/null 2>&1
    # The dump is written by the server's next basic block: wait for its file.
    for ((i = 0; i < 100; i++)); do
        dump="$(ls -t "$work/$server.cg".* 2>/dev/null | head -n 1 || true)"
        [ -n "$dump" ] && grep -q '^totals:\|^summary:' "$dump" && break
        sleep 0.1
    done
    [ -n "$dump" ] || die "no callgrind dump from $server"
    awk -v n="$n" '/^(totals|summary):/ { printf "%d\n", $2 / n; exit }' "$dump"
    cp "$dump" "/tmp/cg/$server-$(echo "$route" | tr -d /)-$(basename "$tokens")"; rm -f "$dump"
}

# The issuer: our example in development mode (not under valgrind), writing the tokens.
servers=(ours floor)
for kind in $PEER_KINDS; do servers+=("$kind"); done
# A slice of NEW_TOKENS for each run of never-seen tokens: ours runs two (/hello and /me).
mint=$((NEW_TOKENS * (${#servers[@]} + 1) + 1))
log "development issuer, signing $mint RS256 tokens"
: >"$work/issuer.out"
"$EXAMPLE" --quiet --listen 127.0.0.1:0 --dev-port 0 --write-tokens "$work/tokens.txt" --tokens "$mint" \
    >"$work/issuer.out" 2>"$work/issuer.err" &
pids+=("$!")
for ((i = 0; i < 3000; i++)); do
    issuer="$(sed -n 's|^development issuer: \(http://127\.0\.0\.1:[0-9]*\).*|\1|p' "$work/issuer.out" || true)"
    [ -n "$issuer" ] && grep -q '^listening on' "$work/issuer.out" && break
    sleep 0.1
done
[ -n "$issuer" ] || die "the issuer did not start: $(cat "$work/issuer.err")"
head -n 1 "$work/tokens.txt" >"$work/one.txt"

# measure SERVER SAME_ROUTE NEW_ROUTE: sets $health, $same and $new, instructions a request of
# each run. Each call takes the next slice of never-seen tokens.
slice=0
measure() {
    local server="$1" same_route="$2" new_route="$3"
    slice=$((slice + 1))
    sed -n "$((2 + (slice - 1) * NEW_TOKENS)),$((1 + slice * NEW_TOKENS))p" "$work/tokens.txt" >"$work/new-$slice.txt"
    python3 "$work/client.py" "$url" "$same_route" "$work/one.txt" "$WARM" || die "$server: warming failed"
    python3 "$work/client.py" "$url" /health - "$WARM" || die "$server: warming failed"
    log "$server: /health, the same token on $same_route, $NEW_TOKENS never-seen tokens on $new_route"
    health="$(count "$server" /health - "$REQUESTS")"
    same="$(count "$server" "$same_route" "$work/one.txt" "$REQUESTS")"
    new="$(count "$server" "$new_route" "$work/new-$slice.txt" "$NEW_TOKENS")"
}
row() { # LABEL HEALTH SAME NEW
    printf '| %s | %d | %d | %+d | %d | %+d | %+d |\n' "$1" "$2" "$3" $(($3 - $2)) "$4" $(($4 - $2)) \
        $(($4 - $2 - floor_gap))
}

# The floor first: the last column of every row is its never-seen count beyond its /health, less
# the floor's.
start floor "$PEER" floor --issuer "$issuer" --audience "$AUDIENCE" --listen 127.0.0.1:0
measure floor /remembered /me
floor_gap=$((new - health))
kill "$pid" 2>/dev/null || true

printf '| instructions a request | /health | same token | beyond /health | never-seen | beyond /health | never-seen, beyond the floor |\n'
printf '|---|---:|---:|---:|---:|---:|---:|\n'
row "floor (/remembered; /me)" "$health" "$same" "$new"
start ours "$EXAMPLE" --quiet --listen 127.0.0.1:0 --issuer "$issuer" --audience "$AUDIENCE" \
    --jwks-url "$issuer/jwks.json"
for route in /hello /me; do
    measure ours "$route" "$route"
    row "tower-bearer $route" "$health" "$same" "$new"
done
kill "$pid" 2>/dev/null || true
for kind in $PEER_KINDS; do
    start "$kind" "$PEER" "$kind" --issuer "$issuer" --audience "$AUDIENCE" --listen 127.0.0.1:0
    measure "$kind" /me /me
    row "$kind" "$health" "$same" "$new"
    kill "$pid" 2>/dev/null || true
done
