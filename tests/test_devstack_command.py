"""`python -m devstack`: the local stack a newcomer starts to try the README's commands by hand, run as a
real subprocess: it prints export lines that work with `python -m backup`, and leaves no server behind."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import ibm_boto3
import pytest
import requests

from devstack import REPO_ROOT, free_port

pytestmark = pytest.mark.integration

STARTUP_TIMEOUT = 90.0  # SeaweedFS alone may take up to 60 s on a loaded machine (its ready_timeout)
EXPORTED = {"CLOUDANT_URL", "CLOUDANT_USERNAME", "CLOUDANT_PASSWORD", "COS_ENDPOINT", "COS_BUCKET",
            "COS_ACCESS_KEY_ID", "COS_SECRET_ACCESS_KEY"}  # fmt: skip


class Devstack:
    """`python -m devstack ARGS` in its own session, stdout and stderr in files."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.out, self.err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "devstack", *args], cwd=REPO_ROOT,
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)

    def stdout(self) -> str:
        return self.out.read_text()

    def stderr(self) -> str:
        return self.err.read_text()

    def wait_for(self, ready: Callable[[], bool], what: str, timeout: float = STARTUP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            assert self.proc.poll() is None, f"devstack exited ({self.proc.returncode}) before {what}:\n{self.stderr()}"
            assert time.monotonic() < deadline, f"no {what} after {timeout:.0f} s:\n{self.stderr()}"
            time.sleep(0.1)

    def wait_until_serving(self) -> dict[str, str]:
        self.wait_for(lambda: "Ctrl-C" in self.stdout(), "'Press Ctrl-C' line")
        return exports(self.stdout())

    def exit_code(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout=timeout)

    def close(self) -> None:
        """Whatever the test did: stop it (SIGTERM, then SIGKILL: its servers die with it by PDEATHSIG)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Devstack]]:
    started: list[Devstack] = []

    def _start(*args: str) -> Devstack:
        started.append(Devstack(tmp_path, *args))
        return started[-1]

    yield _start
    for stack in started:
        stack.close()


def exports(text: str) -> dict[str, str]:
    """NAME -> value of each `export NAME=VALUE` line (VALUE shell-quoted)."""
    found = {}
    for line in text.splitlines():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            (found[name],) = shlex.split(value)
    return found


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, process group) of a live process, or None once it is gone (or a zombie)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else (int(fields[1]), int(fields[2]))


def _processes() -> dict[int, tuple[int, int]]:
    stats = {int(entry.name): _stat(int(entry.name)) for entry in Path("/proc").iterdir() if entry.name.isdigit()}
    return {pid: stat for pid, stat in stats.items() if stat is not None}


def children(pid: int) -> set[int]:
    return {child for child, (ppid, _) in _processes().items() if ppid == pid}


def in_groups(groups: set[int]) -> set[int]:
    return {pid for pid, (_, pgid) in _processes().items() if pgid in groups}


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def port(url: str) -> int:
    return urlsplit(url).port or 80


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def couch_get(env: dict[str, str], path: str) -> requests.Response:
    with requests.Session() as http:
        http.trust_env = False
        return http.get(env["CLOUDANT_URL"] + path, auth=(env["CLOUDANT_USERNAME"], env["CLOUDANT_PASSWORD"]),
                        timeout=30)


def test_help_exits_0_and_names_every_option() -> None:
    done = subprocess.run([sys.executable, "-m", "devstack", "--help"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for option in ("--dir", "--port-couch", "--port-s3", "--no-sample", "--env-file"):
        assert option in done.stdout


def test_the_printed_exports_run_a_real_backup_and_ctrl_c_stops_every_server(start, tmp_path: Path) -> None:
    env_file = tmp_path / "devstack.env"
    stack = start("--env-file", str(env_file))
    env = stack.wait_until_serving()
    assert set(env) == EXPORTED and env["COS_BUCKET"] == "backups"
    assert exports(env_file.read_text()) == env and env_file.stat().st_mode & 0o077 == 0
    for command in ("python -m backup backup --db animals", "verify --key latest --db animals", "drill --db animals",
                    "restore --key latest --source-db animals --db animals-restored --create-target"):
        assert command in stack.stdout()
    servers = children(stack.proc.pid)
    assert len(servers) == 2, [cmdline(pid) for pid in servers]  # weed and pouchdb-server
    workdir = Path(re.search(r" in (\S+) \.\.\.", stack.stderr()).group(1))
    assert workdir.is_dir()

    done = subprocess.run([sys.executable, "-m", "backup", "backup", "--db", "animals"], cwd=REPO_ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["ok"] is True and result["docs"] > 0
    assert result["docs"] == couch_get(env, "/animals").json()["doc_count"]  # the sample database, all of it
    s3 = ibm_boto3.client("s3", endpoint_url=env["COS_ENDPOINT"], aws_access_key_id=env["COS_ACCESS_KEY_ID"],
                          aws_secret_access_key=env["COS_SECRET_ACCESS_KEY"], region_name="us-east-1")
    assert s3.head_object(Bucket="backups", Key=result["key"])["ContentLength"] > 0  # really in the bucket

    os.kill(stack.proc.pid, signal.SIGINT)
    assert stack.exit_code() == 0, stack.stderr()
    assert "stopped" in stack.stderr().splitlines()[-1]
    assert refused(port(env["CLOUDANT_URL"])) and refused(port(env["COS_ENDPOINT"]))
    assert not in_groups({stack.proc.pid, *servers})  # its own group and each server's: nothing left
    assert not workdir.exists()  # the temporary data directory went with it


def test_a_server_that_dies_stops_the_other_and_exits_non_zero(start, tmp_path: Path) -> None:
    couch_port, data = free_port(), tmp_path / "data"
    stack = start("--dir", str(data), "--port-couch", str(couch_port), "--no-sample")
    env = stack.wait_until_serving()
    assert port(env["CLOUDANT_URL"]) == couch_port
    assert couch_get(env, "/animals").status_code == 404  # --no-sample
    servers = children(stack.proc.pid)
    (pouch,) = [pid for pid in servers if "pouchdb-server" in cmdline(pid)]

    os.kill(pouch, signal.SIGKILL)
    assert stack.exit_code() == 1, stack.stderr()
    assert "PouchServer" in stack.stderr() and "died" in stack.stderr()
    assert refused(couch_port) and refused(port(env["COS_ENDPOINT"]))
    assert not in_groups({stack.proc.pid, *servers})
    assert (data / "couch" / "data").is_dir() and (data / "seaweed" / "data").is_dir()  # --dir is kept
