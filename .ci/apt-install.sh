#!/usr/bin/env bash
# apt-install.sh COMMAND=PACKAGE...: installs, from Debian's packages, each PACKAGE whose COMMAND
# is not on the PATH; does nothing when all are there. Packages must not start their services
# (policy-rc.d 101: no systemd here, and their default ports are not ours): the tests run every
# server as a foreground process on loopback ports with their own configuration. Needs root.
set -euo pipefail

missing=()
for pair in "$@"; do
    command -v "${pair%%=*}" >/dev/null 2>&1 || missing+=("${pair#*=}")
done
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

echo "apt-install: apt-get install ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
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
