#!/usr/bin/env bash
# System packages the topology test needs: PostgreSQL server binaries (Debian).
set -uo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo -n"; fi
$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null \
  || echo "warning: could not install postgresql; the topology test will be skipped" >&2
exit 0
