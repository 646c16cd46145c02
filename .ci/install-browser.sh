#!/usr/bin/env bash
# Installs the browser that tests/dev_browser.rs drives: Debian's chromium and chromium-driver
# (installed as /usr/bin/chromium and /usr/bin/chromedriver). Headless, no display needed.
# Idempotent: does nothing when both are there. Needs root (apt-get); CI runs as root.
set -euo pipefail

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

echo "install-browser: apt-get install ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
