#!/usr/bin/env bash
# Runs the external test suites against the built binary (target/debug/toolgate, or $TOOLGATE_BIN,
# with the dashboard's files in target/site):
#   1. tests/thirdparty: the official MCP Python SDK as an agent, through the gateway (pytest);
#   2. end2end: the dashboard in Debian's Chromium (Playwright).
# Install their dependencies first with scripts/test-deps.sh. Exits non-zero if either fails;
# both run either way.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ ! -x target/pyenv/bin/python ] || [ ! -d end2end/node_modules/@playwright/test ]; then
  echo "test dependencies missing: run scripts/test-deps.sh first" >&2
  exit 2
fi

status=0
echo "== third-party MCP client suite (pytest) =="
target/pyenv/bin/python -m pytest tests/thirdparty || status=1

echo "== browser suite (Playwright, /usr/bin/chromium) =="
(cd end2end && npx --no-install playwright test) || status=1

if [ "$status" -ne 0 ]; then
  echo "external tests FAILED" >&2
fi
exit "$status"
