"""The measured clients, each run as its own process under ``/usr/bin/time`` (wall time, peak RSS of that
process only), with the result checked afterwards (untimed): a run that finished with fewer documents than
the database holds counts as failed, not as fast.

    raw          curl GET _all_docs?include_docs=true to /dev/null (no Accept-Encoding: plain JSON)
    raw-gzip     the same with --compressed (what SDK clients get: pouchdb-server gzips for them)
    backup       python -m backup backup              -> SeaweedFS S3
    couchbackup  couchbackup --mode shallow           -> a local file
    couchbackup-full  couchbackup --mode full         -> a local file (via the compat proxy)
    restore      python -m backup restore             <- S3, into a new db (via the compat proxy)
    couchrestore couchrestore < the same backup file   (via the compat proxy)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.stack import Routes, Stack, code_dir, python_env
from devstack import REPO_ROOT

TIME = "/usr/bin/time"
NODE_BIN = REPO_ROOT / "node_modules" / ".bin"

BACKUP_CLIENTS = ("raw", "raw-gzip", "backup", "couchbackup", "couchbackup-full")
RESTORE_CLIENTS = ("restore", "couchrestore")
CLIENTS = BACKUP_CLIENTS + RESTORE_CLIENTS
# Which upstream each client talks to (see bench.stack): couchbackup's full mode and couchrestore need the
# compat proxy; our restore goes the same way so that the two restores are compared on the same path.
UPSTREAM = {"raw": "couch", "raw-gzip": "couch", "backup": "couch", "couchbackup": "couch",
            "couchbackup-full": "compat", "restore": "compat", "couchrestore": "compat"}


@dataclass
class Run:
    client: str
    condition: str
    rep: int
    status: str = "ok"  # ok | failed | incomplete | timeout
    seconds: float | None = None  # wall time of the client process
    peak_rss_kib: int | None = None  # max resident set size of the client process (GNU time %M)
    exit_code: int | None = None
    docs: int | None = None
    bytes: int | None = None  # bytes the client produced (backup file / response) or read (restore file)
    too_many_requests: int | None = None  # 429s the netproxy served during this run
    detail: str = ""
    load_average: float | None = None  # the machine's 1-minute load average when the run started
    cpu_seconds: float | None = None  # user + system CPU of the client process
    server_cpu_seconds: float | None = None  # CPU pouchdb-server used during the run (is the server the limit?)
    proxy_cpu_seconds: float | None = None  # CPU of this process (the compat proxy) + the netproxies during the run
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Context:
    """What every client needs in one condition."""

    stack: Stack
    routes: Routes
    condition: str
    db: str
    docs: int
    workdir: Path
    timeout: float
    params: dict[str, str]  # tuning parameters for our CLI (empty: the defaults users get)
    restore_key: str | None = None
    restore_file: Path | None = None

    def url(self, client: str) -> str:
        return getattr(self.routes, UPSTREAM[client])


def _node_env() -> dict[str, str]:
    """The environment for curl and the Node tools: no proxies, and none of couchbackup's COUCH_*/CLOUDANT_*
    settings (they would change its defaults: buffer size, parallelism, mode...)."""
    env = {k: v for k, v in os.environ.items()
           if not k.lower().endswith("_proxy") and not k.startswith(("COUCH_", "CLOUDANT_", "COS_"))}
    env["NO_PROXY"] = "127.0.0.1,localhost"
    return env


def timed(cmd: list[str], run: Run, ctx: Context, env: dict[str, str], *, stdin: Path | None = None,
          stdout: Path | None = None, cwd: Path = REPO_ROOT) -> Path:
    """Run cmd under /usr/bin/time; fill run.seconds/peak_rss_kib/exit_code/status. Returns the stderr path."""
    tag = f"{run.condition}-{run.client}-{run.rep}"
    time_file = ctx.workdir / f"time-{tag}.txt"
    err_path = ctx.workdir / f"stderr-{tag}.txt"
    out_path = stdout or ctx.workdir / f"stdout-{tag}.txt"
    with (open(stdin or os.devnull, "rb") as fin, open(out_path, "wb") as fout, open(err_path, "wb") as ferr):
        started = time.monotonic()
        proc = subprocess.Popen([TIME, "-f", "%e %M %x %U %S", "-o", str(time_file), *cmd], cwd=cwd, env=env,
                                stdin=fin, stdout=fout, stderr=ferr, start_new_session=True)
        try:
            proc.wait(timeout=ctx.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the client and /usr/bin/time: a group we started
            proc.wait()
            run.status, run.detail = "timeout", f"killed after {ctx.timeout:.0f} s"
        wall = time.monotonic() - started
    # GNU time may write "Command exited with non-zero status N" first; the format line is the last one
    lines = time_file.read_text().splitlines() if time_file.exists() else []
    fields = lines[-1].split() if lines else []
    if len(fields) == 5 and run.status != "timeout":
        run.peak_rss_kib, run.exit_code = int(fields[1]), int(fields[2])
        run.cpu_seconds = round(float(fields[3]) + float(fields[4]), 2)
    run.seconds = round(wall, 3)
    if run.status == "ok" and run.exit_code != 0:
        run.status = "failed"
        run.detail = f"exit {run.exit_code}: {tail(err_path)}"
    return err_path


_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int | None) -> float:
    """User + system CPU seconds a running process has used so far (0.0 if it cannot be read)."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14 and 15 of stat)
    except (OSError, IndexError, ValueError):
        return 0.0


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def tail(path: Path, chars: int = 400) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return ""
    return text[-chars:].replace("\n", " | ")


def count_docs(path: Path) -> tuple[int, int]:
    """(documents, lines) in a couchbackup-format file (array lines; the metadata line is not counted)."""
    docs = lines = 0
    with open(path, "rb") as fh:
        for raw in fh:
            if not raw.strip():
                continue
            value = json.loads(raw)
            if isinstance(value, list):
                docs += len(value)
                lines += 1
    return docs, lines


def _expect_docs(run: Run, got: int | None, expected: int) -> None:
    run.docs = got
    if run.status == "ok" and got != expected:
        run.status = "incomplete"
        run.detail = f"{got} documents instead of {expected}"


# -- the clients


def raw(ctx: Context, run: Run, compressed: bool = False) -> None:
    url = f"{ctx.url(run.client)}/{ctx.db}/_all_docs?include_docs=true"
    cmd = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", *(["--compressed"] if compressed else []), url]
    out = ctx.workdir / f"curl-{run.condition}-{run.client}-{run.rep}.txt"
    timed(cmd, run, ctx, _node_env(), stdout=out)
    fields = out.read_text().split()
    if run.status == "ok":
        if not fields or fields[0] != "200":
            run.status, run.detail = "failed", f"HTTP {fields[0] if fields else '?'}"
        run.bytes = int(fields[1]) if len(fields) > 1 else None
        run.docs = ctx.docs  # one response holding every row (its rows are not counted: it goes to /dev/null)
        if compressed:
            run.extra["bytes_are"] = "gzip on the wire"


def _our_env(ctx: Context, cloudant_url: str) -> dict[str, str]:
    s3 = ctx.stack.s3
    env = python_env()
    env.update(CLOUDANT_URL=cloudant_url, COS_ENDPOINT=s3.endpoint, COS_BUCKET=ctx.stack.bucket,
               COS_ACCESS_KEY_ID=s3.access_key, COS_SECRET_ACCESS_KEY=s3.secret_key)
    env.update(ctx.params)
    return env


def _last_json(path: Path) -> dict[str, Any]:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    try:
        value = json.loads(lines[-1]) if lines else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def backup(ctx: Context, run: Run, keep: bool = False) -> None:
    out = ctx.workdir / f"stdout-{run.condition}-backup-{run.rep}.json"
    timed([sys.executable, "-m", "backup", "backup", "--db", ctx.db], run, ctx, _our_env(ctx, ctx.url(run.client)), stdout=out,
          cwd=code_dir())
    result = _last_json(out)
    if result.get("key"):
        run.extra.update(key=result["key"], internal_seconds=result.get("seconds"), parts=result.get("parts"))
        if not keep:
            ctx.stack.delete_object(result["key"])
    if run.status == "ok" and not result.get("ok"):
        run.status, run.detail = "failed", f"no ok result: {tail(out)}"
    run.bytes = result.get("bytes")
    _expect_docs(run, result.get("docs"), ctx.docs)


def couchbackup(ctx: Context, run: Run, mode: str = "shallow") -> None:
    out = ctx.workdir / f"couchbackup-{run.condition}-{mode}-{run.rep}.txt"
    cmd = [str(NODE_BIN / "couchbackup"), "--url", ctx.url(run.client), "--db", ctx.db, "--mode", mode, "--output", str(out)]
    if mode == "full":
        log = ctx.workdir / f"couchbackup-{run.condition}-{mode}-{run.rep}.log"
        cmd += ["--log", str(log)]
    timed(cmd, run, ctx, _node_env())
    if out.exists():
        run.bytes = out.stat().st_size
        try:
            docs, lines = count_docs(out)
        except ValueError as exc:
            docs, lines = None, None
            run.detail = (run.detail + f"; unreadable output: {exc}").strip("; ")
        run.extra["lines"] = lines
        out.unlink()
        _expect_docs(run, docs, ctx.docs)
    elif run.status == "ok":
        run.status, run.detail = "failed", "no output file"
    if mode == "full":
        (ctx.workdir / f"couchbackup-{run.condition}-{mode}-{run.rep}.log").unlink(missing_ok=True)


def _target(run: Run) -> str:
    return f"bench_{run.client.replace('-', '_')}_{run.condition}_{run.rep}"


def _check_restored(ctx: Context, run: Run, target: str) -> None:
    info = ctx.stack.db_info(target) or {}
    _expect_docs(run, info.get("doc_count"), ctx.docs)
    ctx.stack.delete_db(target)


def restore(ctx: Context, run: Run) -> None:
    assert ctx.restore_key is not None and ctx.restore_file is not None
    target = _target(run)
    ctx.stack.delete_db(target)
    out = ctx.workdir / f"stdout-{run.condition}-restore-{run.rep}.json"
    cmd = [sys.executable, "-m", "backup", "restore", "--key", ctx.restore_key, "--db", target, "--create-target"]
    timed(cmd, run, ctx, _our_env(ctx, ctx.url(run.client)), stdout=out, cwd=code_dir())
    result = _last_json(out)
    if run.status == "ok" and not result.get("ok"):
        run.status, run.detail = "failed", f"no ok result: {tail(out)}"
    run.bytes = ctx.restore_file.stat().st_size
    _check_restored(ctx, run, target)


def couchrestore(ctx: Context, run: Run) -> None:
    assert ctx.restore_file is not None
    target = _target(run)
    ctx.stack.delete_db(target)
    ctx.stack.create_db(target)  # couchrestore never creates its target
    cmd = [str(NODE_BIN / "couchrestore"), "--url", ctx.url(run.client), "--db", target]
    timed(cmd, run, ctx, _node_env(), stdin=ctx.restore_file)
    run.bytes = ctx.restore_file.stat().st_size
    _check_restored(ctx, run, target)


RUNNERS: dict[str, Callable[[Context, Run], None]] = {
    "raw": raw,
    "raw-gzip": lambda ctx, run: raw(ctx, run, compressed=True),
    "backup": backup,
    "couchbackup": couchbackup,
    "couchbackup-full": lambda ctx, run: couchbackup(ctx, run, mode="full"),
    "restore": restore,
    "couchrestore": couchrestore,
}


def measure(ctx: Context, client: str, rep: int) -> Run:
    run = Run(client=client, condition=ctx.condition, rep=rep, load_average=load_average())
    ctx.routes.reset()
    proxy_pids = [p.proc.pid for p in ctx.routes.proxies.values() if p.proc is not None]
    server_before, proxy_before = process_cpu(ctx.stack.couch.pid), _own_cpu() + sum(map(process_cpu, proxy_pids))
    try:
        RUNNERS[client](ctx, run)
    except Exception as exc:  # noqa: BLE001 - one broken run is reported in the table, the benchmark goes on
        run.status, run.detail = "failed", f"benchmark error: {type(exc).__name__}: {exc}"
    # (includes the untimed checks after the client exited: a restore's doc count, a backup file's count)
    run.server_cpu_seconds = round(process_cpu(ctx.stack.couch.pid) - server_before, 2)
    run.proxy_cpu_seconds = round(_own_cpu() + sum(map(process_cpu, proxy_pids)) - proxy_before, 2)
    if ctx.routes.proxies:
        try:
            run.too_many_requests = ctx.routes.too_many_requests()
            run.extra["netproxy"] = ctx.routes.stats()
        except Exception as exc:  # noqa: BLE001 - the counters are extra information
            run.detail = (run.detail + f"; netproxy stats unavailable: {exc}").strip("; ")
    return run
