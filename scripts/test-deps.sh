#!/usr/bin/env bash
# Installs what the external test suites need (scripts/test-external.sh runs them):
#   - Debian's Chromium at /usr/bin/chromium (Playwright drives it; no browser is ever downloaded),
#   - end2end/node_modules from end2end/package-lock.json (@playwright/test, server-everything),
#   - a Python venv at target/pyenv with tests/thirdparty/requirements.txt (the MCP Python SDK).
# Idempotent, and quick when everything is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[test-deps] %s\n' "$*"; }
sha() { sha256sum "$@" | sha256sum | cut -d' ' -f1; }

# 1. Chromium, from Debian's packages, only when missing.
if [ -x /usr/bin/chromium ]; then
  log "chromium present: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
else
  log "installing Debian's chromium"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y chromium
fi

# 2. Node packages, from the lockfile; skipped when node_modules matches it.
# Playwright does not download browsers on install; the variable makes sure of it.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
npm_stamp=end2end/node_modules/.toolgate-deps.sha256
npm_want="$(sha end2end/package.json end2end/package-lock.json) node-$(node --version)"
if [ -f "$npm_stamp" ] && [ "$(cat "$npm_stamp")" = "$npm_want" ]; then
  log "end2end/node_modules up to date"
else
  log "npm ci in end2end/"
  (cd end2end && npm ci --no-audit --no-fund)
  printf '%s\n' "$npm_want" > "$npm_stamp"
fi

# 3. The Python venv; rebuilt from scratch when the requirements (or the python) change.
venv=target/pyenv
py_stamp="$venv/.toolgate-deps.sha256"
py_want="$(sha tests/thirdparty/requirements.txt) $(python3 --version 2>&1)"
if [ -x "$venv/bin/python" ] && [ -f "$py_stamp" ] && [ "$(cat "$py_stamp")" = "$py_want" ] \
    && "$venv/bin/python" -c 'import mcp, pytest, httpx2' 2>/dev/null; then
  log "$venv up to date"
else
  log "creating $venv"
  rm -rf "$venv"
  mkdir -p target
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --disable-pip-version-check -q -r tests/thirdparty/requirements.txt
  printf '%s\n' "$py_want" > "$py_stamp"
fi
log "done"
