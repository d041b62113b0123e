#!/usr/bin/env bash
# Set up everything the demo and the tests need, on a fresh machine: a Python venv with the pinned
# packages (SDKs, pytest, SeaweedFS, moto) and the pinned Node tools (pouchdb-server, couchbackup).
# Idempotent and quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "setup: Python 3.11 or newer is needed as '$python' (set PYTHON=...)" >&2
  exit 1
fi
if ! command -v node >/dev/null || ! node -e 'process.exit(Number(process.versions.node.split(".")[0] < 20))' 2>/dev/null; then
  echo "setup: Node.js 20 or newer is needed (for pouchdb-server, the local CouchDB stand-in)" >&2
  exit 1
fi

stamp_of() { cat requirements.txt requirements-dev.txt package.json package-lock.json | "$python" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())'; }
stamp=$(stamp_of)
if [ -f .venv/.setup-stamp ] && [ "$(cat .venv/.setup-stamp)" = "$stamp" ] && [ -d node_modules/pouchdb-server ]; then
  exit 0
fi

echo "setup: installing Python packages into .venv" >&2
# A venv whose creation failed half-way (Debian/Ubuntu without python3-venv: no ensurepip) has a python but no pip,
# and would stay broken on every rerun: make it again.
if [ -x .venv/bin/python ] && ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  echo "setup: .venv has no working pip (a half-made venv?): creating it again" >&2
  rm -rf .venv
fi
if [ ! -x .venv/bin/python ] && ! "$python" -m venv .venv; then
  rm -rf .venv
  echo "setup: '$python -m venv .venv' failed; on Debian/Ubuntu install the venv module first" \
    "(sudo apt-get install python3-venv, or python3.X-venv for your version), then run this again" >&2
  exit 1
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt

echo "setup: installing Node tools into node_modules" >&2
# --ignore-scripts skips an unused sqlite3 native build; pouchdb-server's LevelDB prebuilds still work.
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error

echo "$stamp" > .venv/.setup-stamp
