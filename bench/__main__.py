"""python -m bench: the backup/restore benchmark on the local stack (see bench/README.md).

Loads N documents into a local pouchdb-server, then runs every client several times in each network
condition and reports the median: docs/s, MB/s, peak RSS of the client process, and the ratios to
couchbackup (couchrestore for restores) and to the raw single-request read.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backup.config import TUNABLES
from bench import report
from bench.clients import CLIENTS, RESTORE_CLIENTS, Context, Run, measure
from bench.clients import backup as run_backup
from bench.clients import raw as run_raw
from bench.stack import CONDITIONS, Routes, Stack, snapshot_code
from devstack import REPO_ROOT

RESULTS = REPO_ROOT / "bench" / "results"
README = REPO_ROOT / "bench" / "README.md"
README_START, README_END = "<!-- bench:latest:start -->", "<!-- bench:latest:end -->"
DB = "bench"
# Above this many documents the default is pouchdb-server on disk: in memory it holds ~5.6 KB per
# ~300 B document (~560 MB per 100k), and a restore target needs as much again.
IN_MEMORY_MAX_DOCS = 250_000
# Integer knobs, plus the flags that change how the backup reads.
FLAG_NAMES = {"CLOUDANT_GZIP"}
TUNABLE_NAMES = {t.name for t in TUNABLES} | FLAG_NAMES


def _csv(choices: tuple[str, ...] | list[str]) -> Any:
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        unknown = [item for item in items if item not in choices]
        if unknown or not items:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)} (got {text!r})")
        return items

    return parse


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench/run.sh", description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, default=100_000, help="documents to load (~300 B each; default 100000)")
    p.add_argument("--mixed", action="store_true", help="make every 100th document ~100 KB")
    p.add_argument("--repeat", type=int, default=3, help="runs of each client per condition (default 3); median reported")
    p.add_argument("--conditions", type=_csv(tuple(CONDITIONS)), default=list(CONDITIONS),
                   help=f"comma-separated, from {','.join(CONDITIONS)} (default all)")
    p.add_argument("--only", type=_csv(CLIENTS), default=list(CLIENTS), help=f"clients, from {','.join(CLIENTS)} (default all)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--in-memory", dest="in_memory", action="store_true", default=None,
                      help=f"pouchdb-server in memory (default up to {IN_MEMORY_MAX_DOCS:,} docs)")
    mode.add_argument("--on-disk", dest="in_memory", action="store_false", help="pouchdb-server on disk (LevelDB)")
    p.add_argument("--timeout", type=float, default=300, help="seconds one client run may take before it is killed (default 300)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a tuning parameter for our backup/restore, e.g. PAGE_SIZE=5000 (default: none, what users get)")
    p.add_argument("--workdir", type=Path, help="where servers keep data and clients write files (default: a new temp dir)")
    p.add_argument("--keep-workdir", action="store_true", help="do not delete the work dir at the end")
    p.add_argument("--results", type=Path, default=RESULTS, help="where the JSON and markdown go (default bench/results)")
    p.add_argument("--readme", action="store_true", help="also put the table into bench/README.md")
    return p


def _params(items: list[str]) -> dict[str, str]:
    params = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in TUNABLE_NAMES:
            raise SystemExit(f"--param needs NAME=VALUE with NAME one of {', '.join(sorted(TUNABLE_NAMES))}; got {item!r}")
        params[name] = value
    return params


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _progress(run: Run, repeat: int, docs: int) -> str:
    line = f"[{run.condition} {run.rep}/{repeat}] {run.client:<16} {run.status:<10}"
    if run.seconds is not None:
        line += f" {run.seconds:8.2f} s"
        if run.status == "ok" and run.seconds:
            line += f" {docs / run.seconds:10,.0f} docs/s"
    if run.peak_rss_kib:
        line += f" {run.peak_rss_kib / 1024:6.0f} MiB"
    if run.too_many_requests:
        line += f"  429s: {run.too_many_requests}"
    if run.detail:
        line += f"  ({run.detail[:300]})"
    return line


def _setup_restore_source(stack: Stack, ctx: Context) -> dict[str, Any]:
    """One untimed backup whose object both restores read (couchrestore from a downloaded copy)."""
    run = Run(client="backup", condition="setup", rep=0)
    run_backup(ctx, run, keep=True)
    if run.status != "ok":
        raise SystemExit(f"the setup backup for the restores failed: {run.detail}")
    key = run.extra["key"]
    ctx.restore_key = key
    ctx.restore_file = ctx.workdir / "restore-source.txt"
    size = stack.download(key, ctx.restore_file)
    return {"key": key, "bytes": size, "seconds": run.seconds}


def _load_line(runs: list[dict[str, Any]]) -> str:
    loads = [r["load_average"] for r in runs if r.get("load_average") is not None]
    if not loads:
        return "Load average: not measured."
    return (f"Load average (1 min) when the runs started: {min(loads):.2f}-{max(loads):.2f} "
            f"(the benchmark itself keeps ~1-2 busy; more means other work shared the {os.cpu_count()} cores).")


def _write_readme(markdown: str) -> None:
    text = README.read_text()
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        say(f"--readme: markers {README_START} ... {README_END} not found in {README}; left unchanged")
        return
    README.write_text(text[: start + len(README_START)] + "\n" + markdown.strip() + "\n" + text[end:])


def run(ns: argparse.Namespace) -> int:
    if ns.docs < 1 or ns.repeat < 1 or ns.timeout <= 0:
        raise SystemExit("--docs and --repeat must be at least 1, --timeout above 0")
    params = _params(ns.param)
    in_memory = ns.in_memory if ns.in_memory is not None else ns.docs <= IN_MEMORY_MAX_DOCS
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    machine = report.machine()
    say(f"machine: {report.machine_line(machine)}")
    workdir = ns.workdir or Path(tempfile.mkdtemp(prefix="cloudant-cos-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    machine["code"] = snapshot_code(workdir)
    knobs = {t.name: t.default for t in TUNABLES} | {k: (v if k in FLAG_NAMES else int(v)) for k, v in params.items()}
    settings = {
        "docs": ns.docs, "mixed": ns.mixed, "repeat": ns.repeat, "conditions": ns.conditions, "clients": ns.only,
        "pouchdb": "in-memory" if in_memory else "on-disk", "timeout_s": ns.timeout, "our_parameters": knobs,
        "our_parameters_changed": params,
        "condition_descriptions": {name: CONDITIONS[name].description for name in ns.conditions},
    }  # fmt: skip
    say(f"settings: {json.dumps(settings)}")
    runs: list[Run] = []
    setup: dict[str, Any] = {}
    stack = Stack(workdir, in_memory)
    try:
        say(f"starting pouchdb-server ({settings['pouchdb']}), SeaweedFS and the compat proxy in {workdir}")
        stack.start()
        say(f"loading {ns.docs:,} documents{' (mixed sizes)' if ns.mixed else ''} ...")
        load = stack.load(DB, ns.docs, ns.mixed)
        say(f"loaded in {load['seconds']} s ({ns.docs / load['seconds']:,.0f} docs/s)")
        plain = Routes(stack.couch.url, stack.compat.url)
        base = Context(stack, plain, "setup", DB, ns.docs, workdir, ns.timeout, params)
        warm = Run(client="raw", condition="setup", rep=0)
        run_raw(base, warm)  # warm the server up (and learn the raw size) before anything is timed
        setup.update(load=load, warm_up_read=warm.to_json())
        if set(ns.only) & set(RESTORE_CLIENTS):
            setup["restore_source"] = _setup_restore_source(stack, base)
            say(f"restore source: {setup['restore_source']}")
        for name in ns.conditions:
            routes = stack.routes(CONDITIONS[name])
            ctx = Context(stack, routes, name, DB, ns.docs, workdir, ns.timeout, params, base.restore_key, base.restore_file)
            timed_out: set[str] = set()
            try:
                for rep in range(1, ns.repeat + 1):
                    for client in ns.only:
                        if client in timed_out:
                            continue  # once over the time limit, again would only burn the time limit again
                        run = measure(ctx, client, rep)
                        runs.append(run)
                        say(_progress(run, ns.repeat, ns.docs))
                        if run.status == "timeout":
                            timed_out.add(client)
            finally:
                routes.stop()
    except KeyboardInterrupt:
        say("interrupted: reporting what was measured")
    finally:
        stack.stop()
        if not ns.keep_workdir and ns.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    run_dicts = [r.to_json() for r in runs]
    rows = report.summarise(run_dicts, ns.docs, ns.timeout)
    goals = report.targets(rows)
    finished = datetime.now(UTC)
    md = "\n".join([
        f"### {ns.docs:,} docs{' (mixed sizes)' if ns.mixed else ''}, pouchdb-server {settings['pouchdb']}, "
        f"median of {ns.repeat}, {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {report.machine_line(machine)}",
        "",
        f"Our parameters: {', '.join(f'{k}={v}' for k, v in knobs.items())}"
        + (f" (changed: {', '.join(params)})" if params else " (defaults)")
        + f"; backup/ snapshot {machine['code']['backup_sha256']}",
        "",
        _load_line(run_dicts),
        "",
        report.table(rows, ns.timeout),
        "",
        report.targets_table(goals),
        "",
    ])  # fmt: skip
    ns.results.mkdir(parents=True, exist_ok=True)
    result = {"started": started.isoformat(), "finished": finished.isoformat(), "machine": machine,
              "settings": settings, "setup": setup, "rows": rows, "targets": goals, "runs": run_dicts}
    (ns.results / f"{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
    (ns.results / f"{stamp}.md").write_text(md)
    (ns.results / "latest.md").write_text(md)
    if ns.readme:
        _write_readme(md)
    print(md)
    say(f"results: {ns.results / (stamp + '.json')}, {ns.results / 'latest.md'} ({(finished - started).total_seconds():.0f} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    code = run(_parser().parse_args(argv))
    say(f"total {time.monotonic() - started:.0f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
