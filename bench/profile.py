"""python -m bench.profile: one backup of a freshly loaded database under py-spy, and where its time goes.

Starts the same stack as the benchmark (pouchdb-server in memory, SeaweedFS), loads N documents, then runs
`python -m backup backup` twice under `py-spy record` (plain loopback, default parameters):

1. `--format flamegraph` -> bench/results/profile-<stamp>.svg (open it in a browser)
2. `--format raw --threads` -> bench/results/profile-<stamp>.txt (collapsed stacks), summarised into
   bench/results/profile-<stamp>.md and stdout: per thread how busy it was, the top functions by own
   ("self") samples and by inclusive samples, and the CPU pouchdb-server used meanwhile.

Samples are of non-idle threads only (py-spy's default): time spent waiting on a socket or a lock is
not in them; a thread's share of the wall time says whether it is busy or waiting.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import report
from bench.clients import process_cpu
from bench.stack import Stack, code_dir, python_env, snapshot_code
from devstack import REPO_ROOT

RESULTS = REPO_ROOT / "bench" / "results"
DB = "bench"
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def py_spy() -> str:
    found = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if found is None:
        raise SystemExit("py-spy is not installed: .venv/bin/pip install -r bench/requirements.txt")
    return found


def _short(frame: str) -> str:
    """'func (path/to/file.py:123)' -> 'func (file.py)': samples of one function add up across lines."""
    m = _FRAME.match(frame)
    if not m:
        return frame
    path = m["file"]
    for marker in ("site-packages/", "/lib/python3", "code/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    if path.startswith(".") and "/" in path:
        path = path.split("/", 1)[1]
    return f"{m['func']} ({path})"


def summarise(raw_path: Path, seconds: float, rate: int, top: int = 20) -> dict[str, Any]:
    """Per-thread sample counts and the top functions (self and inclusive) from py-spy's raw output."""
    threads: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    own_by_thread: dict[str, Counter[str]] = defaultdict(Counter)
    names: dict[str, str] = {}  # thread id -> name (py-spy shows none while `threading` is still being imported)
    stacks: list[tuple[str, list[str], int]] = []
    total = imports = 0
    for line in raw_path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        m = re.match(r"^thread \((?P<tid>[^)]*)\)(?:: (?P<name>[^;]*))?(?:;(?P<rest>.*))?$", stack)
        if not m or not count_text.isdigit():
            continue
        if m["name"]:
            names[m["tid"]] = m["name"]
        stacks.append((m["tid"], (m["rest"] or "").split(";"), int(count_text)))
    for tid, frames, count in stacks:
        thread = names.get(tid, f"thread {tid}")
        calls = [_short(f) for f in frames if f] or ["(no python frame)"]
        total += count
        imports += count if any(c.startswith("_find_and_load ") for c in calls) else 0
        threads[thread] += count
        own[calls[-1]] += count
        own_by_thread[thread][calls[-1]] += count
        for call in set(calls):
            inclusive[call] += count
    possible = max(seconds * rate, 1)
    return {
        "samples": total,
        "import_samples": imports,  # start-up: importing modules (ibm_boto3, ibmcloudant, ...)
        "wall_seconds": round(seconds, 2),
        "rate": rate,
        "threads": {name: {"samples": n, "busy_share_of_wall": round(n / possible, 2)} for name, n in threads.most_common()},
        "top_self": [{"function": f, "samples": n, "share": round(n / max(total, 1), 3)} for f, n in own.most_common(top)],
        "top_inclusive": [{"function": f, "samples": n, "share": round(n / max(total, 1), 3)}
                          for f, n in inclusive.most_common(top)],
        "top_self_by_thread": {t: [{"function": f, "samples": n} for f, n in c.most_common(8)] for t, c in own_by_thread.items()},
    }


def markdown(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [
        f"### Profile of one backup of {meta['docs']:,} docs ({meta['stamp']})",
        "",
        f"Machine: {report.machine_line(meta['machine'])}",
        "",
        f"Without the profiler: {meta['plain_seconds']:.2f} s wall ({meta['docs'] / meta['plain_seconds']:,.0f} docs/s), "
        f"our process {meta['client_cpu_s']:.2f} s CPU (user+sys, all threads), peak RSS {meta['peak_rss_mib']:.0f} MiB, "
        f"pouchdb-server {meta['server_cpu_s']:.2f} s CPU meanwhile.",
        "",
        f"Under py-spy: {meta['backup_seconds']:.2f} s wall ({meta['docs_per_s']:,.0f} docs/s), {summary['samples']} "
        f"samples at {summary['rate']} Hz of non-idle threads; {summary['import_samples']} of them "
        f"({summary['import_samples'] / max(summary['samples'], 1):.0%}) importing modules at start-up.",
        "",
        "| thread | samples | busy share of wall |",
        "|---|---|---|",
        *[f"| {t} | {v['samples']} | {v['busy_share_of_wall']:.0%} |" for t, v in summary["threads"].items()],
        "",
        "Top functions by own samples (where the CPU is spent):",
        "",
        "| function | samples | share |",
        "|---|---|---|",
        *[f"| `{r['function']}` | {r['samples']} | {r['share']:.1%} |" for r in summary["top_self"]],
        "",
        "Top functions by inclusive samples (what they and their callees cost):",
        "",
        "| function | samples | share |",
        "|---|---|---|",
        *[f"| `{r['function']}` | {r['samples']} | {r['share']:.1%} |" for r in summary["top_inclusive"]],
        "",
    ]
    for thread, rows in summary["top_self_by_thread"].items():
        lines += [f"Thread `{thread}`, top own samples: " + "; ".join(f"`{r['function']}` {r['samples']}" for r in rows), ""]
    return "\n".join(lines)


def _backup_cmd() -> list[str]:
    return [sys.executable, "-m", "backup", "backup", "--db", DB]


def _env(stack: Stack) -> dict[str, str]:
    env = python_env()
    env.update(CLOUDANT_URL=stack.couch.url, COS_ENDPOINT=stack.s3.endpoint, COS_BUCKET=stack.bucket,
               COS_ACCESS_KEY_ID=stack.s3.access_key, COS_SECRET_ACCESS_KEY=stack.s3.secret_key)
    return env


def _run(cmd: list[str], env: dict[str, str], log: Path, stack: Stack) -> tuple[float, float]:
    """Run one command to completion; (wall seconds, pouchdb-server CPU seconds meanwhile). Fails loudly."""
    before = process_cpu(stack.couch.pid)
    started = time.monotonic()
    with open(log, "wb") as out:
        result = subprocess.run(cmd, cwd=code_dir(), env=env, stdout=out, stderr=subprocess.STDOUT, timeout=1800)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed ({result.returncode}); see {log}:\n{log.read_text()[-2000:]}")
    return seconds, process_cpu(stack.couch.pid) - before


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/profile.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=100_000, help="documents to load (default 100000)")
    parser.add_argument("--mixed", action="store_true", help="make every 100th document ~100 KB")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second (default 200)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    ns = parser.parse_args(argv)
    spy = py_spy()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    ns.results.mkdir(parents=True, exist_ok=True)
    svg, raw, md = (ns.results / f"profile-{stamp}.{ext}" for ext in ("svg", "txt", "md"))
    workdir = Path(tempfile.mkdtemp(prefix="cloudant-cos-profile-"))
    machine = report.machine()
    machine["code"] = snapshot_code(workdir)
    stack = Stack(workdir, in_memory=True)
    try:
        stack.start()
        print(f"loading {ns.docs:,} documents ...", file=sys.stderr, flush=True)
        stack.load(DB, ns.docs, ns.mixed)
        env = _env(stack)
        # one run without the profiler: warm-up, and the speed and CPU split the profile is compared with
        timed = ["/usr/bin/time", "-f", "%e %U %S %M", "-o", str(workdir / "time.txt")]
        plain_seconds, server_cpu = _run([*timed, *_backup_cmd()], env, workdir / "plain.log", stack)
        _run([spy, "record", "--rate", str(ns.rate), "--nonblocking", "--format", "flamegraph", "-o", str(svg), "--",
              *_backup_cmd()], env, workdir / "svg.log", stack)
        seconds, _ = _run([spy, "record", "--rate", str(ns.rate), "--nonblocking", "--threads", "--format", "raw",
                           "-o", str(raw), "--", *_backup_cmd()], env, workdir / "raw.log", stack)
    finally:
        stack.stop()
    fields = (workdir / "time.txt").read_text().splitlines()[-1].split()
    summary = summarise(raw, seconds, ns.rate)
    meta = {"docs": ns.docs, "stamp": stamp, "machine": machine, "backup_seconds": seconds,
            "docs_per_s": ns.docs / seconds, "plain_seconds": plain_seconds,
            "client_cpu_s": float(fields[1]) + float(fields[2]), "peak_rss_mib": int(fields[3]) / 1024,
            "server_cpu_s": server_cpu}
    text = markdown(summary, meta)
    md.write_text(text)
    shutil.rmtree(workdir, ignore_errors=True)
    print(text)
    print(f"flame graph: {svg}\ncollapsed stacks: {raw}\nsummary: {md}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
