#!/usr/bin/env bash
# Profile one backup with py-spy (see bench/profile.py): writes bench/results/profile-<stamp>.{svg,txt,md}
# and prints the summary, e.g.  bench/profile.sh --docs 100000
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt
exec .venv/bin/python -m bench.profile "$@"
