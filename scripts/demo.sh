#!/usr/bin/env bash
# Set everything up, start the embedded local stack (pouchdb-server as CouchDB, SeaweedFS as COS),
# load a small sample database, back it up, verify the object and print the result.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m devstack.demo "$@"
