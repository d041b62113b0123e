#!/usr/bin/env bash
# Set everything up, then run the whole test suite against real local servers the tests start.
# Extra arguments go to pytest (e.g. `scripts/test.sh -m "not integration"`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
