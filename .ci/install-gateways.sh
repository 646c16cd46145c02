#!/usr/bin/env bash
# Installs the real gateways that tests/gateways_real.rs drives: nginx (with its auth_request
# module, part of Debian's nginx package) and Caddy, from the distribution's packages.
# Idempotent; the packages' services are not started (see apt-install.sh).
set -euo pipefail
exec bash "$(dirname "$0")/apt-install.sh" nginx=nginx caddy=caddy
