#!/usr/bin/env bash
# Installs redis-server and redis-cli (Debian's redis-server and redis-tools) for the fleet tests
# (tests/fleet*.rs and tests/gateway_fleet.rs), which start their own servers on free loopback
# ports. Idempotent; the package's service is not started (see apt-install.sh).
set -euo pipefail
exec bash "$(dirname "$0")/apt-install.sh" redis-server=redis-server redis-cli=redis-tools
