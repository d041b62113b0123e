"""The built action zip, run the way the OpenWhisk Python runtime runs it (tests/ow_launcher.py), against the
local stack: a real backup, an application error, a small JSON result, a reused container."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import OUTPUTS, cos_params, couch_params, keys_in, load_docs
from tests.ow_launcher import OUTPUT_GUARD, ActionRuntime

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
# Results travel in the activation record; a backup's summary should stay far below the 1 MB limit.
RESULT_LIMIT = 4096


@pytest.fixture(scope="session")
def runtime_python() -> str:
    """A bare CPython 3.11, as in openwhisk/action-python-v3.11: it builds the zip's virtualenv and runs the action."""
    if sys.version_info[:2] == (3, 11):
        return getattr(sys, "_base_executable", None) or sys.executable  # the interpreter, not the test venv
    found = shutil.which("python3.11")
    if found is None:
        pytest.skip("CPython 3.11 (the runtime's version) is needed to build and run the action zip")
    return found


@pytest.fixture(scope="session")
def action_zip(tmp_path_factory: pytest.TempPathFactory, runtime_python: str) -> Path:
    """dist/action.zip as scripts/build-action.sh makes it (built once per session, into a temp dir)."""
    out = tmp_path_factory.mktemp("action-build") / "action.zip"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}", "PYTHON": runtime_python}
    build = subprocess.run([str(ROOT / "scripts" / "build-action.sh"), str(out)], env=env, capture_output=True,
                           text=True, timeout=600)
    assert build.returncode == 0, build.stderr
    assert "OpenWhisk limit 48 MiB" in build.stdout
    return out


def test_the_action_zip_builds_where_the_virtualenv_tool_is_not_installed(runtime_python: str, tmp_path: Path,
                                                                         action_zip: Path) -> None:
    """A fresh CI runner has Python 3.11 and nothing else (issue 16, point 6): the build installs the pinned
    virtualenv into a private venv itself. The repository is copied without its .venv, PATH holds no virtualenv."""
    probe = subprocess.run([runtime_python, "-m", "virtualenv", "--version"], capture_output=True)
    if probe.returncode == 0:
        pytest.skip(f"{runtime_python} has the virtualenv module: nothing to install")
    repo = tmp_path / "repo"
    for name in ("scripts", "backup"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("__main__.py", "requirements.txt", "requirements-dev.txt"):
        shutil.copy2(ROOT / name, repo / name)
    path = ":".join(p for p in os.environ.get("PATH", "").split(":")
                    if p and not (Path(p) / "virtualenv").exists())
    out = repo / "dist" / "action.zip"
    build = subprocess.run([str(repo / "scripts" / "build-action.sh"), str(out)], capture_output=True, text=True,
                           timeout=600, env={**os.environ, "PATH": path, "PYTHON": runtime_python})
    assert build.returncode == 0, build.stderr
    assert "installing virtualenv==" in build.stderr and (repo / "dist" / ".build-tools" / "bin" / "python").exists()
    with zipfile.ZipFile(out) as built, zipfile.ZipFile(action_zip) as usual:
        assert sorted(built.namelist()) == sorted(usual.namelist())  # the same package as a build with the tool


@pytest.fixture
def runtime(action_zip: Path, runtime_python: str, tmp_path: Path) -> Iterator[ActionRuntime]:
    with ActionRuntime(action_zip, tmp_path / "container", python=runtime_python) as container:
        yield container


def record(*texts: str) -> None:
    OUTPUTS.extend(texts)  # test_secrets scans everything the session printed


def stack_params(couch: Any, seaweed: Any, bucket: str, db: str) -> dict[str, str]:
    return {**couch_params(couch, db), **cos_params(seaweed, bucket)}


def test_the_zip_has_the_runtime_layout(action_zip: Path) -> None:
    with zipfile.ZipFile(action_zip) as zf:
        names = zf.namelist()
    roots = {name.split("/")[0] for name in names}
    assert roots == {"__main__.py", "backup", "virtualenv"}
    assert "virtualenv/bin/activate_this.py" in names
    assert "virtualenv/lib/python3.11/site-packages/ibmcloudant/__init__.py" in names
    assert "virtualenv/lib/python3.11/site-packages/ibm_boto3/__init__.py" in names
    # every module but the entry point has its bytecode beside it, and no other cache travels
    sources = {n for n in names if n.endswith(".py") and n != "__main__.py"}
    pycs = {n for n in names if n.endswith(".pyc")}
    expected = {f"{n.rsplit('/', 1)[0]}/__pycache__/{n.rsplit('/', 1)[1][:-3]}.cpython-311.pyc" for n in sources}
    assert pycs == expected and len(pycs) > 100
    assert "backup/__pycache__/backup.cpython-311.pyc" in pycs
    assert not [n for n in names if "__pycache__" in n and not n.endswith(".cpython-311.pyc")]
    with zipfile.ZipFile(action_zip) as zf:
        header = zf.read("backup/__pycache__/backup.cpython-311.pyc")[:8]
    assert header[:4] == importlib.util.MAGIC_NUMBER and int.from_bytes(header[4:8], "little") == 0b01  # unchecked hash
    assert not [n for n in names if "/site-packages/pip/" in n]
    assert action_zip.stat().st_size < 48 * 1024 * 1024


def test_the_runtime_interpreter_has_no_dependencies_of_its_own(runtime: ActionRuntime) -> None:
    # Otherwise a dependency missing from the zip could go unnoticed.
    probe = subprocess.run([runtime.python, "-c", "import ibmcloudant"], capture_output=True, env={})
    assert probe.returncode != 0


def test_a_backup_through_the_runtime(runtime: ActionRuntime, couch: Any, seaweed: Any, bucket: str, db_name: str,
                                      s3_client: Any) -> None:
    load_docs(couch, db_name, [{"_id": f"doc-{i:04d}", "n": i, "text": "é ü 日本"} for i in range(120)])
    act = runtime.run(stack_params(couch, seaweed, bucket, db_name))
    record(act.stdout, act.stderr, json.dumps(act.result))
    assert act.status == 200, act
    result = act.result
    assert "error" not in result, result
    assert result["ok"] is True and result["database"] == db_name and result["docs"] == 120
    assert len(json.dumps(result)) < RESULT_LIMIT
    assert result["key"] in keys_in(s3_client, bucket)
    # Logs are JSON lines on stdout, ended by the proxy's guard.
    assert act.stdout.endswith(OUTPUT_GUARD)
    events = [json.loads(line)["event"] for line in act.stdout.splitlines() if line.startswith("{")]
    assert "backup_started" in events and "backup_finished" in events
    for secret in (couch.admin[1], seaweed.secret_key):
        assert secret not in act.stdout + act.stderr + json.dumps(result)


def test_bad_parameters_are_an_application_error(runtime: ActionRuntime, seaweed: Any, bucket: str) -> None:
    act = runtime.run({"CLOUDANT_DB": "Not A Valid Name", **cos_params(seaweed, bucket)})
    record(act.stdout, act.stderr, json.dumps(act.result))
    assert act.status == 200  # a dict with "error" is an application error, not a crash
    assert act.result["kind"] == "config"
    assert "CLOUDANT_URL is missing" in act.result["error"] and "CLOUDANT_DB" in act.result["error"]
    assert len(json.dumps(act.result)) < RESULT_LIMIT
    assert seaweed.secret_key not in act.stdout + act.stderr + json.dumps(act.result)


def test_the_container_is_reused_across_activations(runtime: ActionRuntime, couch: Any, seaweed: Any, bucket: str,
                                                      db_name: str, s3_client: Any) -> None:
    load_docs(couch, db_name, [{"_id": f"d{i}"} for i in range(5)])
    other = db_name + "-b"
    load_docs(couch, other, [{"_id": f"e{i}"} for i in range(7)])
    pid = runtime.pid
    first = runtime.run(stack_params(couch, seaweed, bucket, db_name))
    bad = runtime.run({})
    second = runtime.run(stack_params(couch, seaweed, bucket, other))
    listed = runtime.run({**cos_params(seaweed, bucket), "OPERATION": "list"})
    for act in (first, bad, second, listed):
        record(act.stdout, act.stderr, json.dumps(act.result))
        assert act.status == 200, act
    assert runtime.pid == pid and runtime.proc is not None and runtime.proc.poll() is None
    assert first.result["docs"] == 5 and second.result["docs"] == 7
    assert bad.result["kind"] == "config"
    assert {first.result["key"], second.result["key"]} <= set(keys_in(s3_client, bucket))
    assert len(json.dumps(listed.result)) < RESULT_LIMIT


# ---- the emulator itself behaves like the runtime ------------------------------------------------------------

PROBE = '''
import os, sys
def main(args):
    if args.get("do") == "raise":
        raise ValueError("boom")
    if args.get("do") == "string":
        return "not a dict"
    if args.get("do") == "exit":
        sys.exit(3)
    return {"name": __name__, "args": args, "env": dict(os.environ), "sys_path0": sys.path[0]}
'''


@pytest.fixture
def probe(tmp_path: Path) -> Iterator[ActionRuntime]:
    zip_path = tmp_path / "probe.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.writestr("__main__.py", PROBE)
    with ActionRuntime(zip_path, tmp_path / "probe", action_name="/guest/probe") as container:
        yield container


def test_the_emulator_imports_main_and_passes_activation_facts_as_env(probe: ActionRuntime) -> None:
    act = probe.run({"CLOUDANT_DB": "db1"})
    assert act.status == 200
    assert act.result["name"] == "main__" and act.result["args"] == {"CLOUDANT_DB": "db1"}
    env = act.result["env"]
    assert env["__OW_ACTION_NAME"] == "/guest/probe" and env["__OW_ACTIVATION_ID"] == act.activation_id
    assert env["__OW_NAMESPACE"] == "guest" and env["__OW_API_HOST"].startswith("https://")
    assert env["__OW_DEADLINE"].isdigit() and len(env["__OW_DEADLINE"]) == 13  # epoch milliseconds, a string
    assert {k for k in env if not k.startswith("__OW_")} <= {"PATH", "HOME", "PYTHONIOENCODING", "LC_CTYPE"}


def test_the_emulator_maps_errors_like_the_runtime(probe: ActionRuntime) -> None:
    assert probe.run({"do": "raise"}).result == {"error": "boom"}
    assert probe.run({"do": "string"}).status == 502
    died = probe.run({"do": "exit"})
    assert died.status == 400 and died.result == {"error": "command exited"}
