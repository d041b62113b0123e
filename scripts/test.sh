#!/usr/bin/env bash
# Set everything up, then run the whole test suite against real local servers the tests start.
# Extra arguments go to pytest (e.g. `scripts/test.sh -m "not integration"`; `-n 0` runs it in one process).
# The tests run in parallel, one worker per core (at most 4), each module's tests in one worker (their
# module-scoped fixtures are made once).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m pytest --numprocesses auto --maxprocesses 4 --dist loadfile "$@"
