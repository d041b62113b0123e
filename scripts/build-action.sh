#!/usr/bin/env bash
# Build the OpenWhisk action package: a zip with __main__.py, backup/ and virtualenv/ at its root, for the
# python:3.11 runtime (openwhisk/action-python-v3.11). The runtime activates virtualenv/bin/activate_this.py
# before it imports __main__.py, so the pinned dependencies in requirements.txt travel inside the zip.
#
# Usage: scripts/build-action.sh [OUTPUT_ZIP]          (default: dist/action.zip)
# Env:   PYTHON  interpreter for the virtualenv (default python3.11). It must be CPython 3.11 on Linux x86_64,
#                like the runtime image; elsewhere build inside that image (docs/deploy.md shows the command).
#
# Every module travels with its bytecode (unchecked-hash .pyc, compiled by this CPython 3.11): a cold activation
# would otherwise compile the SDKs first (~0.4 s more on every nightly run). The zip has sorted entries and fixed
# timestamps (two builds are byte-identical), and never holds a root requirements.txt (the runtime would
# pip-install it on every cold start) or a root `exec` (mistaken for a binary).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$root/dist/action.zip}
python=${PYTHON:-python3.11}

die() {
  printf 'build-action: %s\n' "$*" >&2
  exit 1
}

command -v "$python" >/dev/null 2>&1 || die "$python not found: install CPython 3.11 or set PYTHON"
"$python" - <<'EOF' || die "build on Linux x86_64 with CPython 3.11 (the runtime's), or inside the runtime image"
import platform
import sys

found = f"{platform.python_implementation()} {platform.python_version()} on {sys.platform} {platform.machine()}"
if sys.version_info[:2] != (3, 11) or sys.platform != "linux" or platform.machine() != "x86_64":
    sys.exit(f"build-action: the virtualenv must match python:3.11 on linux x86_64; this is {found}")
EOF

# The virtualenv tool (python -m venv lacks the activate_this.py the runtime needs): the interpreter's, the one on
# PATH, the repository's .venv (scripts/setup.sh), or else installed here, at its pinned version, into a private
# venv kept beside the output (dist/.build-tools), so a fresh CI runner needs nothing but Python 3.11.
if "$python" -m virtualenv --version >/dev/null 2>&1; then
  virtualenv=("$python" -m virtualenv)
elif command -v virtualenv >/dev/null 2>&1; then
  virtualenv=(virtualenv --python "$python")
elif [ -x "$root/.venv/bin/python" ] && "$root/.venv/bin/python" -m virtualenv --version >/dev/null 2>&1; then
  virtualenv=("$root/.venv/bin/python" -m virtualenv --python "$python")
else
  tools=$(dirname "$out")/.build-tools
  pin=$(grep -E '^virtualenv==' "$root/requirements-dev.txt" || true)
  [ -n "$pin" ] || die "no virtualenv pin in requirements-dev.txt"
  if ! "$tools/bin/python" -m virtualenv --version >/dev/null 2>&1; then
    printf 'build-action: installing %s into %s (the virtualenv tool is not installed)\n' "$pin" "$tools" >&2
    rm -rf "$tools"
    "$python" -m venv "$tools" \
      || die "$python -m venv failed (Debian/Ubuntu: apt-get install python3.11-venv), or pip install virtualenv"
    "$tools/bin/python" -m pip install --quiet --disable-pip-version-check "$pin" \
      || die "installing $pin failed (is the package index reachable?), or pip install virtualenv"
  fi
  virtualenv=("$tools/bin/python" -m virtualenv --python "$python")
fi

# A fixed build directory: pip writes its path into RECORD files, so a fixed one keeps the zip reproducible.
work=$(dirname "$out")/.build-action
rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT

# Only the python activator: the runtime needs bin/activate_this.py and nothing else from bin/.
"${virtualenv[@]}" --quiet --no-setuptools --no-vcs-ignore --no-periodic-update --activators python \
  "$work/virtualenv"
"$work/virtualenv/bin/python" -m pip install --quiet --disable-pip-version-check --no-compile \
  --requirement "$root/requirements.txt"

"$python" - "$root" "$work/virtualenv" "$out" <<'EOF'
"""Zip the action: sorted, fixed timestamps, with bytecode but without stale caches, tests, pip itself or build-host paths."""
import os
import py_compile
import sys
import tempfile
import zipfile

root, venv, out = sys.argv[1:4]
SITE = "lib/python3.11/site-packages"
# OpenWhisk's limit on an action's code.
LIMIT = 48 * 1024 * 1024
SKIP_DIRS = {"__pycache__"}
# A package's own test suite is never imported at run time.
SKIP_PACKAGE_DIRS = {"tests", "test"}
# zstandard ships two backends of ~12 MB each; it imports the C one (backend_c) on CPython, never the cffi one.
SKIP_FILES = ("zstandard/_cffi.", "zstandard/backend_cffi.py")


def files(base, arc_base, top_level_skip=()):
    for dirpath, dirnames, filenames in os.walk(base):
        rel = os.path.relpath(dirpath, base)
        depth = 0 if rel == "." else rel.count(os.sep) + 1
        dirnames[:] = [
            d for d in dirnames
            if d not in SKIP_DIRS and not (depth >= 1 and d in SKIP_PACKAGE_DIRS)
            and not (depth == 0 and d.split("-")[0] in top_level_skip)
        ]
        for name in filenames:
            if name.endswith((".pyc", ".pyo")):
                continue
            path = os.path.join(dirpath, name)
            arc = os.path.normpath(os.path.join(arc_base, os.path.relpath(path, base)))
            if any(skip in arc for skip in SKIP_FILES):
                continue
            yield path, arc


entries = [(os.path.join(root, "__main__.py"), "__main__.py")]
entries += files(os.path.join(root, "backup"), "backup")
entries.append((os.path.join(venv, "bin", "activate_this.py"), "virtualenv/bin/activate_this.py"))
# pip only installed the packages; the runtime never runs it.
entries += files(os.path.join(venv, SITE), f"virtualenv/{SITE}", top_level_skip=("pip",))


def bytecode(path, arc):
    """The .pyc an import of `arc` looks for, compiled now. Unchecked-hash: valid whatever the files' mtimes after
    unzipping (the zip's are fixed), and never recompiled at run time."""
    head, name = os.path.split(arc)
    pyc_arc = os.path.join(head, "__pycache__", f"{name[:-3]}.{sys.implementation.cache_tag}.pyc")
    with tempfile.TemporaryDirectory() as tmp:
        cfile = os.path.join(tmp, "module.pyc")
        py_compile.compile(path, cfile=cfile, dfile=arc, doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
        with open(cfile, "rb") as f:
            return pyc_arc, f.read()


sources = [(path, arc) for path, arc in entries if arc.endswith(".py") and arc != "__main__.py"]
compiled = dict(bytecode(path, arc) for path, arc in sources)
entries += [(None, arc) for arc in compiled]
entries.sort(key=lambda entry: entry[1])

names = [arc for _, arc in entries]
assert "__main__.py" in names and "virtualenv/bin/activate_this.py" in names, names[:5]
assert "requirements.txt" not in names and "exec" not in names

tmp = out + ".tmp"
with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
    for path, arc in entries:
        info = zipfile.ZipInfo(arc, date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        if path is None:
            data = compiled[arc]
        else:
            with open(path, "rb") as f:
                data = f.read()
        zf.writestr(info, data, compresslevel=9)
os.replace(tmp, out)

size = os.path.getsize(out)
print(f"{out}: {size / 1024 / 1024:.1f} MiB ({size} bytes, {len(entries)} files, {len(compiled)} of them bytecode; "
      "OpenWhisk limit 48 MiB)")
if size > LIMIT:
    sys.exit(f"build-action: {out} is over the 48 MiB code limit")
EOF
