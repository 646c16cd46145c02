#!/usr/bin/env bash
# Installs redis-server and redis-cli (Debian's redis-server and redis-tools) for the fleet tests
# (tests/fleet.rs and the tests that drive several replicas), which start their own servers on
# free loopback ports. Idempotent: does nothing when both are on the PATH. Needs root (apt-get).
# The package's service is not started: the tests run redis-server as foreground processes.
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

echo "install-redis: apt-get install ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d 101: packages must not start their services (no systemd here, port 6379 is not ours).
policy="/usr/sbin/policy-rc.d"
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    created_policy=1
fi
cleanup() { if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
