#!/usr/bin/env bash
# Installs the real gateways that tests/gateways_real.rs drives: nginx (with its auth_request
# module, part of Debian's nginx package) and Caddy, from the distribution's packages.
# Idempotent: does nothing when both are on the PATH. Needs root (apt-get); CI runs as root.
# The packages' services are not started: the tests run both as foreground processes on
# loopback ports with their own configuration.
set -euo pipefail

missing=()
command -v nginx >/dev/null 2>&1 || missing+=(nginx)
command -v caddy >/dev/null 2>&1 || missing+=(caddy)
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

echo "install-gateways: apt-get install ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d 101: packages must not start their services (no systemd here, and port 80 is not ours).
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
