"""Run an action zip the way the OpenWhisk Python runtime does, without Docker: for tests.

Emulates apache/openwhisk-runtime-python (core/python3ActionLoop: `bin/compile`, `lib/launcher.py`) behind
the Go action-loop proxy (openwhisk-runtime-go: `executor.go`), as used by openwhisk/action-python-v3.11:

/init (`ActionRuntime.start`)
  - the zip is extracted into a fresh directory; a root file named `exec` would be taken for a ready
    binary, so it is refused here;
  - compile renames `__main__.py` to `main__.py` (the action is *imported*: its `__name__` is "main__")
    and writes the launcher beside it as `exec__.py`; this very file is that launcher;
  - the process starts as `cd DIR; python exec__.py` with fd 3 as its answer pipe and an environment
    holding only PATH, HOME, PYTHONIOENCODING=UTF-8, __OW_API_HOST and __OW_WAIT_FOR_ACK: nothing of the
    test's own environment (no proxies, no credentials) reaches the action;
  - the proxy waits for the launcher's ack, `{"ok": true}` on fd 3.
the launcher (`launch`, run as `exec__.py`)
  - activates `virtualenv/` with its `bin/activate_this.py` (and exits if a virtualenv lacks that file),
    then imports `main` from `main__`;
  - per activation: reads one JSON line from stdin, exports every key except "value" as the env var
    `__OW_<KEY>` (all strings, e.g. __OW_DEADLINE in epoch milliseconds), calls `main(value)`, turns an
    Exception into `{"error": str(e)}` (traceback to stderr), flushes stdout/stderr, writes
    `json.dumps(result)` as one line to fd 3. A BaseException, or a result json cannot serialise, kills it.
/run (`ActionRuntime.run`)
  - one process serves every activation of the container (it is reused);
  - after each activation the proxy appends XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX to stdout and stderr;
  - it answers 200 with the result line, 502 when that is not a JSON object or array, 400
    {"error": "command exited"} when the process died.
Only the standard library is used here: the launcher side runs on the bare interpreter.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
import traceback
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OUTPUT_GUARD = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX\n"


# ---- the launcher: runs inside the "container" as exec__.py -------------------------------------------------


def launch() -> None:
    venv = os.path.abspath("./virtualenv")
    if os.path.isdir(venv):
        activate = os.path.join(venv, "bin", "activate_this.py")
        if not os.path.exists(activate):
            sys.stderr.write("Invalid virtualenv. Zip file does not include /virtualenv/bin/activate_this.py\n")
            sys.exit(1)
        with open(activate) as f:
            exec(compile(f.read(), activate, "exec"), {"__file__": activate})

    from main__ import main  # the action's __main__.py, renamed by compile

    out = os.fdopen(3, "wb")
    if os.environ.get("__OW_WAIT_FOR_ACK", ""):
        out.write(json.dumps({"ok": True}).encode() + b"\n")
        out.flush()
    while line := sys.stdin.readline():
        message = json.loads(line)
        payload = {}
        for key, value in message.items():
            if key == "value":
                payload = value
            else:
                os.environ[f"__OW_{key.upper()}"] = value
        try:
            result = main(payload)
        except Exception as exc:  # noqa: BLE001 - exactly what the runtime does: the error becomes the result
            print(traceback.format_exc(), file=sys.stderr)
            result = {"error": str(exc)}
        out.write(json.dumps(result, ensure_ascii=False).encode("utf-8") + b"\n")
        sys.stdout.flush()
        sys.stderr.flush()
        out.flush()


# ---- the proxy: the test side -------------------------------------------------------------------------------


@dataclass
class Activation:
    status: int  # what the proxy's /run answers: 200, 502 (not a JSON object/array) or 400 (process died)
    result: Any  # the parsed result line (for 400: {"error": "command exited"})
    stdout: str  # this activation's logs, each ending with the proxy's guard line
    stderr: str
    activation_id: str


class ActionRuntime:
    """One action container: `start()` is /init, `run(params)` is /run; use as a context manager."""

    def __init__(self, zip_path: Path, workdir: Path, *, python: str | None = None,
                 action_name: str = "/guest/cron/backup", api_host: str = "https://openwhisk.invalid",
                 timeout_ms: int = 300_000) -> None:
        self.zip_path = Path(zip_path)
        self.workdir = Path(workdir)
        self.action_dir = self.workdir / "action"
        # The runtime's interpreter has no ibmcloudant/ibm_boto3: the bare base interpreter, not a test venv.
        self.python = python or getattr(sys, "_base_executable", None) or sys.executable
        self.action_name = action_name
        self.api_host = api_host
        self.timeout_ms = timeout_ms
        self.proc: subprocess.Popen[bytes] | None = None
        self._answers = -1
        self._buffer = b""
        self._logs: dict[str, Path] = {}
        self._offsets = {"stdout": 0, "stderr": 0}

    # /init
    def start(self, wait: float = 60.0) -> ActionRuntime:
        if self.action_dir.exists():
            shutil.rmtree(self.action_dir)
        self.action_dir.mkdir(parents=True)
        with zipfile.ZipFile(self.zip_path) as zf:
            zf.extractall(self.action_dir)
        if (self.action_dir / "exec").exists():
            raise RuntimeError("the zip has a root file named exec: the proxy would run it as a precompiled binary")
        main = self.action_dir / "__main__.py"
        if not main.exists():
            raise RuntimeError("the zip has no __main__.py at its root")
        main.rename(self.action_dir / "main__.py")
        shutil.copyfile(__file__, self.action_dir / "exec__.py")

        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.workdir),
            "PYTHONIOENCODING": "UTF-8",
            "__OW_API_HOST": self.api_host,
            "__OW_WAIT_FOR_ACK": "1",
        }
        for name in ("stdout", "stderr"):
            self._logs[name] = self.workdir / f"{name}.log"
            self._logs[name].write_bytes(b"")
        read_end, write_end = os.pipe()

        def answer_on_fd3() -> None:  # the Go proxy passes the pipe as the child's first extra file: fd 3
            os.dup2(write_end, 3)

        with open(self._logs["stdout"], "ab") as out, open(self._logs["stderr"], "ab") as err:
            # preexec_fn only dup2s (the proxy's ExtraFiles); close_fds=False keeps that fd 3 open across exec.
            self.proc = subprocess.Popen(
                [self.python, "exec__.py"], cwd=self.action_dir, env=env, stdin=subprocess.PIPE,
                stdout=out, stderr=err, preexec_fn=answer_on_fd3, close_fds=False, start_new_session=True,
            )
        os.close(write_end)
        self._answers = read_end
        ack = self._read_answer(wait)
        if ack is None or json.loads(ack) != {"ok": True}:
            self.close()
            raise RuntimeError(f"the action did not initialise: {ack!r}\n{self._new_logs('stderr')}")
        self._new_logs("stdout")
        self._new_logs("stderr")
        return self

    # /run
    def run(self, params: dict[str, Any], wait: float = 120.0) -> Activation:
        assert self.proc is not None and self.proc.stdin is not None, "start() first"
        activation_id = uuid.uuid4().hex
        message = {
            "value": params,
            "namespace": self.action_name.split("/")[1],
            "action_name": self.action_name,
            "action_version": "0.0.1",
            "activation_id": activation_id,
            "transaction_id": uuid.uuid4().hex,
            "deadline": str(int(time.time() * 1000) + self.timeout_ms),
        }
        answer = None
        try:
            self.proc.stdin.write(json.dumps(message).encode() + b"\n")
            self.proc.stdin.flush()
            answer = self._read_answer(wait)
        except BrokenPipeError:
            pass
        for name in ("stdout", "stderr"):
            with open(self._logs[name], "a") as f:
                f.write(OUTPUT_GUARD)
        stdout, stderr = self._new_logs("stdout"), self._new_logs("stderr")
        if answer is None:
            return Activation(400, {"error": "command exited"}, stdout, stderr, activation_id)
        try:
            result = json.loads(answer)
        except json.JSONDecodeError:
            result = answer.decode("utf-8", "replace")
        status = 200 if isinstance(result, (dict, list)) else 502
        return Activation(status, result, stdout, stderr, activation_id)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def close(self) -> None:
        if self.proc is not None:
            if self.proc.stdin:
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            self.proc = None
        if self._answers >= 0:
            os.close(self._answers)
            self._answers = -1

    def __enter__(self) -> ActionRuntime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read_answer(self, wait: float) -> bytes | None:
        """One line from fd 3, or None when the process closed it (it died)."""
        deadline = time.monotonic() + wait
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no answer from the action within {wait} s\n{self._logs_tail()}")
            ready, _, _ = select.select([self._answers], [], [], remaining)
            if ready:
                chunk = os.read(self._answers, 65536)
                if not chunk:
                    return None
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def _new_logs(self, name: str) -> str:
        data = self._logs[name].read_bytes()
        text = data[self._offsets[name]:].decode("utf-8", "replace")
        self._offsets[name] = len(data)
        return text

    def _logs_tail(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-2000:] for p in self._logs.values())


if __name__ == "__main__":
    launch()
