#!/usr/bin/env bash
# System packages the topology test needs: PostgreSQL server binaries (Debian). The test runs its own
# server (initdb into a temp dir, a free loopback port), so no cluster is created or started here.
set -uo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo -n"; fi
install() { DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
# As the official postgres image does: postgresql-common first, then switch off the "main" cluster
# its post-install would otherwise create (and may start on port 5432), then the server.
$SUDO apt-get update -qq \
  && install postgresql-common \
  && $SUDO sed -ri 's/#?(create_main_cluster) .*$/\1 = false/' /etc/postgresql-common/createcluster.conf \
  && install postgresql \
  || echo "warning: could not install postgresql; the topology test will be skipped" >&2
exit 0
