#!/usr/bin/env bash
# Installs the browser that tests/dev_browser.rs drives: Debian's chromium and chromium-driver
# (installed as /usr/bin/chromium and /usr/bin/chromedriver). Headless, no display needed.
# Idempotent (see apt-install.sh).
set -euo pipefail
exec bash "$(dirname "$0")/apt-install.sh" chromium=chromium chromedriver=chromium-driver
