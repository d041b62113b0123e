"""python -m bench: the backup/restore benchmark on the local stack (see bench/README.md).

Loads N documents into a local pouchdb-server, then runs every client several times in each network
condition and reports the median: docs/s, MB/s, peak RSS of the client process, bytes stored, and the ratios
to couchbackup (couchrestore for restores) and to the raw single-request read. With --codecs (and --encrypt),
our backup runs once per codec in every repetition, a row each.
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

from backup.compression import CODECS, DEFAULT_CODEC
from backup.config import TUNABLES
from bench import report
from bench.clients import CLIENTS, RESTORE_CLIENTS, Attachments, Context, Run, measure, plain_copy, scan_restore_source, variant_name
from bench.clients import backup as run_backup
from bench.clients import raw as run_raw
from bench.data import ATTACHMENT_NAME, MB
from bench.stack import CONDITIONS, Routes, Stack, snapshot_code
from devstack import REPO_ROOT

RESULTS = REPO_ROOT / "bench" / "results"
README = REPO_ROOT / "bench" / "README.md"
README_START, README_END = "<!-- bench:latest:start -->", "<!-- bench:latest:end -->"
DB = "bench"
# Above this many documents the default is pouchdb-server on disk: in memory it holds ~5.6 KB per
# ~300 B document (~560 MB per 100k), and a restore target needs as much again.
IN_MEMORY_MAX_DOCS = 250_000
DEFAULT_DOCS = 100_000
# --attachments-mb: this many documents with one attachment each unless --attachment-docs says otherwise. They load on
# disk unless --in-memory (in memory, 20 x 20 MB fits, ~1.1 GB for the source and one restore target; more may not).
DEFAULT_ATTACHMENT_DOCS = 20
# Integer knobs, plus the flags that change how the backup reads, and what it stores (COMPRESSION_LEVEL is a knob).
FLAG_NAMES = {"CLOUDANT_GZIP", "ATTACHMENTS"}
TEXT_NAMES = {"COMPRESSION", "ENCRYPT_TO"}
TUNABLE_NAMES = {t.name for t in TUNABLES} | FLAG_NAMES | TEXT_NAMES


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
    p.add_argument("--docs", type=int, default=None,
                   help=f"documents to load (~300 B each; default {DEFAULT_DOCS}, or 0 with --attachments-mb)")
    p.add_argument("--mixed", action="store_true", help="make every 100th document ~100 KB")
    p.add_argument("--attachments-mb", type=float, metavar="N",
                   help="also load documents with one binary attachment of N MB (10^6 bytes, random) each: instead of "
                        "the usual documents unless --docs is given too; pouchdb-server on disk unless --in-memory")
    p.add_argument("--attachment-docs", type=int, metavar="K",
                   help=f"how many documents with an attachment (default {DEFAULT_ATTACHMENT_DOCS}; needs --attachments-mb)")
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
                   help="a tuning parameter for our backup/restore, e.g. PAGE_SIZE=5000, COMPRESSION=zstd, "
                        "COMPRESSION_LEVEL=3, ENCRYPT_TO=age1... (default: none, what users get)")
    p.add_argument("--codecs", type=_csv(CODECS), default=None, metavar="LIST",
                   help=f"run our backup once per codec in each repetition, a row each: 'backup (gzip)', ... (from "
                        f"{','.join(CODECS)}; default: one 'backup' row with the default codec, {DEFAULT_CODEC})")
    p.add_argument("--encrypt", action="store_true",
                   help="also a row per codec with ENCRYPT_TO (a key made for the run): 'backup (gzip+age)', ...")
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
        if name == "COMPRESSION" and value not in CODECS:
            raise SystemExit(f"--param COMPRESSION must be one of {', '.join(CODECS)}; got {value!r}")
        params[name] = value
    return params


def _variants(ns: argparse.Namespace, params: dict[str, str]) -> tuple[dict[str, dict[str, str]], str | None]:
    """--codecs / --encrypt: the rows of our backup ("backup (zstd)" -> its parameters) and the public key made for
    --encrypt. None of them: no variants, the one "backup" row runs with --param as given."""
    if ns.codecs is None and not ns.encrypt:
        return {}, None
    if "backup" not in ns.only:
        raise SystemExit("--codecs and --encrypt are rows of our backup: --only must name backup")
    if ns.codecs is not None and "COMPRESSION" in params:
        raise SystemExit("--codecs and --param COMPRESSION: give one of them")
    if ns.encrypt and "ENCRYPT_TO" in params:
        raise SystemExit("--encrypt and --param ENCRYPT_TO: give one of them")
    public = None
    if ns.encrypt:
        from pyrage import x25519  # only here: the key is made for this run and dropped with it

        public = str(x25519.Identity.generate().to_public())  # the secret is never needed: nothing restores these
    variants: dict[str, dict[str, str]] = {}
    for codec in ns.codecs or [params.get("COMPRESSION", DEFAULT_CODEC)]:
        base = {"COMPRESSION": codec}
        if codec == "none" and params.get("COMPRESSION_LEVEL", "0") != "0":
            base["COMPRESSION_LEVEL"] = "0"  # (our backup refuses a level with none)
        variants[variant_name(codec, False)] = base
        if public is not None:
            variants[variant_name(codec, True)] = base | {"ENCRYPT_TO": public}
    return variants, public


def _clients(only: list[str], variants: dict[str, dict[str, str]]) -> list[str]:
    """--only in its order, "backup" replaced by its variants' rows when there are any."""
    return [name for client in only for name in (list(variants) if client == "backup" and variants else [client])]


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _progress(run: Run, repeat: int, docs: int) -> str:
    line = f"[{run.condition} {run.rep}/{repeat}] {run.client:<18} {run.status:<10}"
    if run.seconds is not None:
        line += f" {run.seconds:8.2f} s"
        if run.status == "ok" and run.seconds:
            line += f" {docs / run.seconds:10,.0f} docs/s"
    if run.peak_rss_kib:
        line += f" {run.peak_rss_kib / 1024:6.0f} MiB"
    if run.plain_bytes and run.bytes is not None:
        line += f"  stored {run.bytes / MB:,.2f} MB of {run.plain_bytes / MB:,.2f} MB"
    if run.too_many_requests:
        line += f"  429s: {run.too_many_requests}"
    if run.detail:
        line += f"  ({run.detail[:300]})"
    return line


def _setup_restore_source(stack: Stack, ctx: Context) -> dict[str, Any]:
    """One untimed backup whose object both restores read (couchrestore from a downloaded, decompressed copy). With
    the codec of --param COMPRESSION (else the default), never encrypted: --param ENCRYPT_TO is left out of it."""
    run = Run(client="backup", condition="setup", rep=0)
    result = run_backup(ctx, run, keep=True, extra={"ENCRYPT_TO": ""} if "ENCRYPT_TO" in ctx.params else {})  # empty: unset
    if run.status != "ok":
        raise SystemExit(f"the setup backup for the restores failed: {run.detail}")
    if result.get("encrypted"):
        raise SystemExit("the setup backup for the restores is encrypted: it must not be (nothing here holds its key)")
    key = run.extra["key"]
    compression = run.extra["compression"] if "compression" in result else "none"  # before compression: plain text
    ctx.restore_key = key
    ctx.restore_file = ctx.workdir / "restore-source.txt"
    stored = ctx.workdir / "restore-source.stored"
    size = stack.download(key, stored)
    plain = plain_copy(stored, compression, ctx.restore_file)
    stored.unlink()
    if run.plain_bytes is not None and plain != run.plain_bytes:
        raise SystemExit(f"the setup backup decompresses to {plain} bytes, its result says {run.plain_bytes}")
    source: dict[str, Any] = {"key": key, "bytes": size, "plain_bytes": plain, "compression": compression,
                              "seconds": run.seconds}
    if ctx.attachments is not None:
        source["attachments"] = scan_restore_source(ctx.attachments, ctx.restore_file)
    return source


def _mb(count: int) -> str:
    return f"{count / MB:,.1f}".removesuffix(".0") + " MB"


def _attachments_heading(att: Attachments, docs: int, mixed: bool) -> str:
    """E.g. "20 docs with one 20 MB attachment each (400 MB of attachments)": the table's size and count."""
    what = f"{att.docs:,} docs with one {_mb(att.bytes_each)} attachment each ({_mb(att.total_bytes)} of attachments)"
    return f"{docs:,} docs{' (mixed sizes)' if mixed else ''} + {what}" if docs else what


def _attachments_lines(att: Attachments, runs: list[dict[str, Any]], setup: dict[str, Any]) -> list[str]:
    """What the backups held of the attachments, and the restores' byte checks: so that a table of backups of stubs
    (backup/ without attachment support) cannot pass for one of attachments."""
    lines = [f"Attachments: `{att.docs}` x `{att.bytes_each:,}` random bytes (`{ATTACHMENT_NAME}`, "
             "application/octet-stream), loaded with `_bulk_docs` and base64 data."]
    backups = [r for r in runs if r["client"] in ("backup", "couchbackup", "couchbackup-full") and "attachments_inline" in r["extra"]]
    for client in dict.fromkeys(r["client"] for r in backups):
        mine = [r["extra"]["attachments_inline"] for r in backups if r["client"] == client]
        if client == "backup":  # a flag, from the object's size
            held, made = sum(bool(v) for v in mine), len(mine)
            if held == 0:
                lines.append(f"- `backup`: **the object held stubs only** in {made} of {made} runs (smaller than half the "
                             "attachments' bytes).")
            else:
                lines.append(f"- `backup`: the object held the attachments in {held} of {made} runs"
                             + ("." if held == made else "; stubs only in the others."))
        else:
            lines.append(f"- `{client}`: {', '.join(str(v) for v in mine)} of {att.docs} attachments inline per run.")
    source = setup.get("restore_source", {}).get("attachments")
    if source is not None:
        checks = [r["extra"].get("attachment_check", "") for r in runs if r["client"] in RESTORE_CLIENTS]
        if att.source_check == "equal":
            equal = sum(c == "equal" for c in checks)
            lines.append(f"- Restores read the setup backup, which holds {source['attachments_inline']} of {att.docs} "
                         f"attachments inline; `{att.check_id}`'s restored bytes equal the source's in {equal} of "
                         f"{len(checks)} runs.")
        elif not source["attachments_inline"]:
            lines.append(f"- Restores read the setup backup, which holds 0 of {att.docs} attachments inline "
                         f"({source['attachment_stubs']} stubs: backup/ without attachment support, or ATTACHMENTS=false): "
                         "**the restores wrote the documents without their attachments**; no restored attachment was checked.")
        else:
            lines.append(f"- Restores read the setup backup, which holds {source['attachments_inline']} of {att.docs} "
                         f"attachments inline ({source['attachment_stubs']} stubs), but **not the source's bytes of "
                         f"`{att.check_id}`** ({att.source_check}); no restored attachment was checked.")
    return lines


def _variants_line(variants: dict[str, dict[str, str]], setup: dict[str, Any]) -> str:
    """What the per-codec rows of our backup ran with, and what the restores read."""
    rows = "; ".join(f"`{name}`: " + ", ".join(f"{k}={'(a key made for this run)' if k == 'ENCRYPT_TO' else v}"
                                               for k, v in params.items()) for name, params in variants.items())
    line = (f"Our backup, a row per codec, run in turn in every repetition: {rows}. Stored MB: the object "
            "(compressed, encrypted); plain MB: its couchbackup text, which MB/s counts.")
    source = setup.get("restore_source")
    if source:
        line += (f" The restores read the setup backup ({source['compression']}, not encrypted: "
                 f"{source['bytes'] / MB:,.2f} MB stored, {source['plain_bytes'] / MB:,.2f} MB plain).")
    return line


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


def _attachments(ns: argparse.Namespace) -> Attachments | None:
    if ns.attachments_mb is None:
        if ns.attachment_docs is not None:
            raise SystemExit("--attachment-docs needs --attachments-mb")
        return None
    count = DEFAULT_ATTACHMENT_DOCS if ns.attachment_docs is None else ns.attachment_docs
    size = round(ns.attachments_mb * MB)
    if count < 1 or size < 1:
        raise SystemExit("--attachments-mb must be above 0 and --attachment-docs at least 1")
    return Attachments(count, size)


def run(ns: argparse.Namespace) -> int:
    att = _attachments(ns)
    if ns.docs is None:
        ns.docs = 0 if att is not None else DEFAULT_DOCS
    if ns.docs < (0 if att is not None else 1) or ns.repeat < 1 or ns.timeout <= 0:
        raise SystemExit("--docs and --repeat must be at least 1 (--docs 0 with --attachments-mb), --timeout above 0")
    params = _params(ns.param)
    total = ns.docs + (att.docs if att is not None else 0)  # what every backup and restore must hold
    in_memory = ns.in_memory if ns.in_memory is not None else (att is None and ns.docs <= IN_MEMORY_MAX_DOCS)
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    machine = report.machine()
    say(f"machine: {report.machine_line(machine)}")
    workdir = ns.workdir or Path(tempfile.mkdtemp(prefix="cloudant-cos-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    machine["code"] = snapshot_code(workdir)
    variants, public_key = _variants(ns, params)
    clients = _clients(ns.only, variants)
    knobs = ({t.name: t.default for t in TUNABLES} | {"COMPRESSION": DEFAULT_CODEC}
             | {k: (v if k in FLAG_NAMES | TEXT_NAMES else int(v)) for k, v in params.items()})
    settings = {
        "docs": ns.docs, "mixed": ns.mixed, "repeat": ns.repeat, "conditions": ns.conditions, "clients": clients,
        "codecs": ns.codecs, "encrypt": ns.encrypt, "encrypt_to": public_key, "backup_variants": variants,
        "pouchdb": "in-memory" if in_memory else "on-disk", "timeout_s": ns.timeout, "our_parameters": knobs,
        "our_parameters_changed": params,
        "condition_descriptions": {name: CONDITIONS[name].description for name in ns.conditions},
    }  # fmt: skip
    if att is not None:
        settings["attachments"] = {"docs": att.docs, "bytes_each": att.bytes_each, "mb_each": ns.attachments_mb,
                                   "total_docs": total}
    say(f"settings: {json.dumps(settings)}")
    runs: list[Run] = []
    setup: dict[str, Any] = {}
    stack = Stack(workdir, in_memory)
    try:
        say(f"starting pouchdb-server ({settings['pouchdb']}), SeaweedFS and the compat proxy in {workdir}")
        stack.start()
        if att is None:
            say(f"loading {ns.docs:,} documents{' (mixed sizes)' if ns.mixed else ''} ...")
            load = stack.load(DB, ns.docs, ns.mixed)
            say(f"loaded in {load['seconds']} s ({ns.docs / load['seconds']:,.0f} docs/s)")
        else:
            say(f"loading {_attachments_heading(att, ns.docs, ns.mixed)} ...")
            load = stack.load(DB, ns.docs, ns.mixed, att.docs, att.bytes_each)
            say(f"loaded in {load['seconds']} s ({(load['request_bytes']) / MB / load['seconds']:,.1f} MB/s of requests)")
        plain = Routes(stack.couch.url, stack.compat.url)
        # (the setup backup, for the restores, is never encrypted: nothing here could restore it)
        setup_params = {k: v for k, v in params.items() if k != "ENCRYPT_TO"}
        base = Context(stack, plain, "setup", DB, total, workdir, ns.timeout, setup_params, attachments=att)
        warm = Run(client="raw", condition="setup", rep=0)
        run_raw(base, warm)  # warm the server up (and learn the raw size) before anything is timed
        setup.update(load=load, warm_up_read=warm.to_json())
        if set(ns.only) & set(RESTORE_CLIENTS):
            setup["restore_source"] = _setup_restore_source(stack, base)
            say(f"restore source: {setup['restore_source']}")
        for name in ns.conditions:
            routes = stack.routes(CONDITIONS[name])
            ctx = Context(stack, routes, name, DB, total, workdir, ns.timeout, params, base.restore_key, base.restore_file, att,
                          variants)
            timed_out: set[str] = set()
            try:
                for rep in range(1, ns.repeat + 1):
                    for client in clients:
                        if client in timed_out:
                            continue  # once over the time limit, again would only burn the time limit again
                        run = measure(ctx, client, rep)
                        runs.append(run)
                        say(_progress(run, ns.repeat, total))
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
    rows = report.summarise(run_dicts, total, ns.timeout)
    goals = report.targets(rows)
    finished = datetime.now(UTC)
    what = f"{ns.docs:,} docs{' (mixed sizes)' if ns.mixed else ''}" if att is None else _attachments_heading(att, ns.docs, ns.mixed)
    md = "\n".join([
        f"### {what}, pouchdb-server {settings['pouchdb']}, "
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
        *([_variants_line(variants, setup), ""] if variants else []),
        *([*_attachments_lines(att, run_dicts, setup), ""] if att is not None else []),
        report.table(rows, ns.timeout, docs_digits=0 if att is None else 2),
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
