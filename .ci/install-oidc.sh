#!/usr/bin/env bash
# Installs the Node dependencies of tests/oidc (panva/oidc-provider, pinned by its
# package-lock.json) for tests/independent_issuer.rs. Idempotent: does nothing when
# tests/oidc/node_modules already holds oidc-provider (a half-finished install is redone:
# `npm ci` starts from an empty node_modules). Needs node and npm on the PATH.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$root/tests/oidc"

if [ -f "$dir/node_modules/oidc-provider/package.json" ]; then
    exit 0
fi

# The machine image ships Node.js and npm; should a machine lack them, Debian's packages are the
# fallback (root only, as in CI).
if ! command -v npm >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "install-oidc: apt-get install nodejs npm" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
fi

echo "install-oidc: npm ci --prefix tests/oidc" >&2
npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >/dev/null
