"""The shell command as a person and as a script use it, against the real local servers: human text and a progress
bar on a terminal (a pseudo-terminal), JSON otherwise; options before or after the subcommand; messages that name
the flag to type; the installed `cloudant-cos-backup` command working from any directory."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import cos_params, couch_params, live_docs, load_docs

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent
# The variables the command reads, and nothing of ours from the test runner's environment.
BASE_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDANT_", "COS_", "NOTIFY_"))}


def _env(params: dict[str, str]) -> dict[str, str]:
    return {**BASE_ENV, **params}


def _pty() -> tuple[int, int]:
    """A pseudo-terminal 120 columns wide (a fresh one has 0 columns, which no terminal user has)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    return master, slave


def on_terminal(argv: list[str], env: dict[str, str], stdout_tty: bool = True,
                timeout: float = 120) -> tuple[int, str, str]:
    """Run the command with stdout and stderr on pseudo-terminals (stdout a pipe when not `stdout_tty`); its exit
    code and what each showed."""
    out_master, out_slave = _pty() if stdout_tty else os.pipe()
    err_master, err_slave = _pty()
    proc = subprocess.Popen([sys.executable, "-m", "backup", *argv], stdin=subprocess.DEVNULL, stdout=out_slave,
                            stderr=err_slave, env=env, cwd=ROOT)
    os.close(out_slave)
    os.close(err_slave)
    seen = {out_master: b"", err_master: b""}
    open_fds = set(seen)
    ends = time.monotonic() + timeout
    while open_fds and time.monotonic() < ends:
        ready, _, _ = select.select(list(open_fds), [], [], 1.0)
        for fd in ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the terminal's other end is closed
                chunk = b""
            if chunk:
                seen[fd] += chunk
            else:
                open_fds.discard(fd)
    code = proc.wait(timeout=max(1.0, ends - time.monotonic()))
    for fd in seen:
        os.close(fd)
    return code, seen[out_master].decode(), seen[err_master].decode()


@pytest.fixture
def stack(couch, seaweed, bucket, db_name) -> dict[str, Any]:
    load_docs(couch, db_name, [{"_id": f"doc-{i:05d}", "n": i} for i in range(3000)])
    return {"params": {**couch_params(couch, db_name), **cos_params(seaweed, bucket)}, "db": db_name}


def test_on_a_terminal_a_backup_draws_a_progress_bar_and_the_list_prints_as_a_table(stack, couch) -> None:
    env, db = _env(stack["params"]), stack["db"]
    code, out, err = on_terminal(["backup", "--db", db], env)
    assert code == 0, (out, err)
    assert re.search(rf"backup {re.escape(db)}: +100%\|", err), err  # the bar, at its end
    assert "docs/s" in err and "3.00k/3.00k" in err, err
    assert not re.search(r'^\{"ts"', err, re.M), "no JSON log lines on a terminal"
    # gzip by default: the stored size, then the plain one
    assert re.match(rf"backed up {re.escape(db)}: 3,000 docs, [\d.]+ KiB \(gzip of [\d.]+ KiB\) in [\d.]+ s "
                    rf"\(full, complete\)\r?\n  {re.escape(db)}_\S+Z_backup\.txt\.gz(\s|$)", out), out

    code, out, err = on_terminal(["list", "--db", db], env)
    assert code == 0, (out, err)
    header, row, *rest = out.splitlines()
    assert header.split() == ["TIME", "DATABASE", "KIND", "DOCS", "SIZE", "COMPLETE"], out
    assert row.split()[1:] == [db, "full", "3,000", *row.split()[4:6], "yes"] and row.split()[5] == "KiB", out
    assert rest[-1].startswith("1 backups in "), out

    target = f"{db}-restored"
    code, out, err = on_terminal(["restore", "--key", "latest", "--source-db", db, "--db", target,
                                  "--create-target"], env)
    assert code == 0, (out, err)
    assert re.search(rf"restore {re.escape(target)}: +100%\|", err), err
    assert f"into {target}: it holds 3,000 docs" in out, out
    assert len(live_docs(couch, target)) == 3000


def test_json_on_a_terminal_and_any_stdout_that_is_not_one_print_the_json_result(stack) -> None:
    env, db = _env(stack["params"]), stack["db"]
    code, out, err = on_terminal(["backup", "--db", db, "--json"], env)
    assert code == 0 and json.loads(out)["docs"] == 3000, (out, err)
    assert "%|" not in err and '"event": "backup_finished"' in err  # JSON log lines, no bar
    code, out, err = on_terminal(["list", "--db", db], env, stdout_tty=False)
    assert code == 0 and json.loads(out)["backups"][0]["docs"] == 3000, (out, err)


def test_an_error_on_a_terminal_is_one_line_on_stderr_that_names_the_flag(stack) -> None:
    code, out, err = on_terminal(["restore", "--db", "somewhere"], _env(stack["params"]))
    assert code == 2 and out == "", (out, err)
    assert err.strip().startswith("error: invalid parameters: COS_KEY (--key) is missing"), err


@pytest.mark.parametrize("where", ["before", "after"])
def test_options_work_before_or_after_the_subcommand(stack, where: str) -> None:
    options = ["--quiet", "--json", "--param", "LIST_LIMIT=1", "--param", "PAGE_SIZE=100"]
    argv = [*options, "list", "--db", stack["db"]] if where == "before" else ["list", "--db", stack["db"], *options]
    run = subprocess.run([sys.executable, "-m", "backup", *argv], env=_env(stack["params"]), cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["operation"] == "list" and run.stderr == ""  # --quiet: no info lines


def test_a_missing_value_names_the_flag_and_how_to_give_a_parameter_without_one(stack) -> None:
    env = {k: v for k, v in _env(stack["params"]).items() if k != "COS_BUCKET"}
    run = subprocess.run([sys.executable, "-m", "backup", "verify", "--json"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    error = json.loads(run.stdout)["error"]
    assert "COS_KEY (--key) is missing" in error, error
    assert "COS_BUCKET is missing (export COS_BUCKET=... or --param COS_BUCKET=...)" in error, error


def test_the_installed_command_runs_from_any_directory(stack, tmp_path: Path) -> None:
    """`pip install .` from a copy of the repository (the build leaves nothing in the checkout), without reaching
    an index: the dependencies are this venv's, the console script is the package's."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "requirements.txt"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "backup", source / "backup", ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "installed"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(source)], check=True, timeout=300)
    command = target / "bin" / "cloudant-cos-backup"
    assert command.exists()
    metadata = (next(target.glob("cloudant_cos_backup-*.dist-info")) / "METADATA").read_text()
    pins = [line for line in (ROOT / "requirements.txt").read_text().splitlines() if line and not line.startswith("#")]
    assert [line.removeprefix("Requires-Dist: ") for line in metadata.splitlines()
            if line.startswith("Requires-Dist:")] == pins  # the action's exact pins

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**_env(stack["params"]), "PYTHONPATH": str(target)}
    run = subprocess.run([str(command), "backup", "--db", stack["db"], "--quiet"], env=env, cwd=elsewhere,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["ok"] and result["docs"] == 3000
    assert json.loads(subprocess.run([str(command), "list", "--db", stack["db"]], env=env, cwd=elsewhere,
                                     capture_output=True, text=True, timeout=60).stdout)["count"] == 1
    assert list(elsewhere.iterdir()) == []
