#!/usr/bin/env bash
# The backup/restore benchmark on the local stack, in one command (see bench/README.md), e.g.
#   bench/run.sh                          # 100k docs, plain + latency + ratelimit, 3 runs each
#   bench/run.sh --docs 2000 --repeat 1   # smoke run, ~1-2 minutes
# Prints a markdown table; writes bench/results/<timestamp>.json and bench/results/latest.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
for tool in /usr/bin/time curl; do
  if ! command -v "$tool" >/dev/null; then
    echo "bench: $tool is needed (apt-get install time curl)" >&2
    exit 1
  fi
done
exec .venv/bin/python -m bench "$@"
