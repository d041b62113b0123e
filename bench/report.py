"""Summaries (median of the repetitions), the markdown table, the targets and the machine line. Pure
except for `machine()`, which reads /proc and asks the tools for their versions."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
from typing import Any

from devstack import REPO_ROOT

MB = 1_000_000
MIB = 1024 * 1024
# What each row's ratio column compares against: restores against couchrestore, the rest against couchbackup.
REFERENCE = {"restore": "couchrestore", "couchrestore": "couchrestore"}
BACKUP_REFERENCE = "couchbackup"
# Our backup's rows: "backup", or one per codec ("backup (gzip)", "backup (zstd+age)", ...: --codecs, --encrypt).
DEFAULT_CODEC_ROW = "backup (gzip)"  # what users get, when the rows are per codec
# Clients whose `bytes` are what they store (a file, an object): the table shows them as "stored MB".
STORING = ("backup", "couchbackup", "couchbackup-full")


def is_backup(client: str) -> bool:
    return client == "backup" or client.startswith("backup (")


def _base(client: str) -> str:
    return "backup" if is_backup(client) else client


def _rate(per_s: float) -> float:
    """docs/s, rounded: to 0.1 as always, finer below 100 (a few documents with large attachments: ~1 doc/s, where
    0.1 would make the ratios of two rates wrong by several %)."""
    return round(per_s, 1) if per_s >= 100 else round(per_s, 4)


def summarise(runs: list[dict[str, Any]], docs: int, timeout: float) -> list[dict[str, Any]]:
    """One row per (condition, client), in the order first seen."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["condition"], run["client"]), []).append(run)
    rows = []
    for (condition, client), group in groups.items():
        ok = [r for r in group if r["status"] == "ok"]
        row: dict[str, Any] = {
            "condition": condition, "client": client, "runs": len(group), "ok": len(ok),
            "failed": sum(r["status"] in ("failed", "incomplete") for r in group),
            "timeouts": sum(r["status"] == "timeout" for r in group),
            "seconds": None, "docs_per_s": None, "mb_per_s": None,
            "peak_rss_mib": None, "too_many_requests": None, "details": sorted({r["detail"] for r in group if r["detail"]}),
            "stored_bytes": None, "plain_bytes": None,
        }  # fmt: skip
        if is_backup(client):
            codecs = {(r.get("extra", {}).get("compression"), r.get("extra", {}).get("encrypted")) for r in ok}
            if len(codecs) == 1:
                row["compression"], row["encrypted"] = next(iter(codecs))
        rss = [r["peak_rss_kib"] for r in group if r["peak_rss_kib"] and r["status"] != "timeout"]
        if rss:
            row["peak_rss_mib"] = round(max(rss) / 1024, 1)  # worst repetition
        limited = [r["too_many_requests"] for r in group if r["too_many_requests"] is not None]
        if limited:
            row["too_many_requests"] = statistics.median(limited)
        if ok:
            seconds = statistics.median(r["seconds"] for r in ok)
            row["seconds"] = round(seconds, 3)
            row["seconds_min"], row["seconds_max"] = min(r["seconds"] for r in ok), max(r["seconds"] for r in ok)
            row["spread"] = round((row["seconds_max"] - row["seconds_min"]) / seconds, 3) if seconds else None
            row["docs_per_s"] = _rate(docs / seconds)
            # MB/s of the plain text where a client says what that is (our backup), else of what it moved
            sizes = [r.get("plain_bytes") or r["bytes"] for r in ok if r.get("plain_bytes") or r["bytes"]]
            if sizes:
                row["mb_per_s"] = round(statistics.median(sizes) / MB / seconds, 2)
            if _base(client) in STORING:
                stored = [r["bytes"] for r in ok if r["bytes"] is not None]
                plain = [r.get("plain_bytes") or r["bytes"] for r in ok if (r.get("plain_bytes") or r["bytes"]) is not None]
                row["stored_bytes"] = round(statistics.median(stored)) if stored else None
                row["plain_bytes"] = round(statistics.median(plain)) if plain else None
        elif row["timeouts"]:
            row["docs_per_s_below"] = _rate(docs / timeout)  # it was slower than this
        rows.append(row)
    for row in rows:
        row["x_reference"], row["x_raw"] = _ratios(row, rows)
    return rows


def _find(rows: list[dict[str, Any]], condition: str, client: str) -> dict[str, Any] | None:
    return next((r for r in rows if r["condition"] == condition and r["client"] == client), None)


def ratio(row: dict[str, Any], ref: dict[str, Any] | None) -> dict[str, Any] | None:
    """row docs/s ÷ ref docs/s: {"value", "bound"} where bound is "=" or ">" (the reference timed out)."""
    if ref is None or row is ref or row["docs_per_s"] is None:
        return None
    if ref["docs_per_s"]:
        return {"value": round(row["docs_per_s"] / ref["docs_per_s"], 2), "bound": "="}
    if ref.get("docs_per_s_below"):
        return {"value": round(row["docs_per_s"] / ref["docs_per_s_below"], 2), "bound": ">"}
    return None


def _ratios(row: dict[str, Any], rows: list[dict[str, Any]]) -> tuple[dict | None, dict | None]:
    ref_name = REFERENCE.get(row["client"], BACKUP_REFERENCE)  # (every backup row against couchbackup)
    to_ref = ratio(row, _find(rows, row["condition"], ref_name))
    to_raw = None if row["client"] in REFERENCE else ratio(row, _find(rows, row["condition"], "raw"))
    return to_ref, to_raw


def _fmt_ratio(r: dict[str, Any] | None) -> str:
    if r is None:
        return ""
    return f"{'>' if r['bound'] == '>' else ''}{r['value']:.2f}x"


def _fmt_num(value: float | None, digits: int = 0) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def _fmt_mb(count: int | None) -> str:
    return "" if count is None else f"{count / MB:,.2f}"


def table(rows: list[dict[str, Any]], timeout: float, docs_digits: int = 0) -> str:
    """docs_digits: decimals of the docs/s column below 100 (a few documents with large attachments: ~1 doc/s)."""
    head = ("| condition | client | runs ok | median s | spread | docs/s | MB/s | peak RSS MiB | stored MB | plain MB "
            "| x couchbackup / couchrestore | x raw read | 429s/run |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        runs = f"{r['ok']}/{r['runs']}"
        if r["timeouts"]:
            runs += f" ({r['timeouts']} timeout >{timeout:.0f} s)"
        if r["failed"]:
            runs += f" ({r['failed']} failed)"
        # (max - min) / median of the ok runs' wall times: how much to trust the median
        spread = f"{r['spread']:.0%}" if r.get("spread") is not None and r["ok"] > 1 else ""
        docs_per_s = _fmt_num(r["docs_per_s"], docs_digits if r["docs_per_s"] is not None and r["docs_per_s"] < 100 else 0)
        if r["docs_per_s"] is None:
            docs_per_s = f"<{r['docs_per_s_below']:,.0f}" if r.get("docs_per_s_below") else "failed"
        lines.append(
            f"| {r['condition']} | {r['client']} | {runs} | {_fmt_num(r['seconds'], 2)} | {spread} | {docs_per_s} | "
            f"{_fmt_num(r['mb_per_s'], 1)} | {_fmt_num(r['peak_rss_mib'], 0)} | {_fmt_mb(r.get('stored_bytes'))} | "
            f"{_fmt_mb(r.get('plain_bytes'))} | {_fmt_ratio(r['x_reference'])} | "
            f"{_fmt_ratio(r['x_raw'])} | {'' if r['too_many_requests'] is None else _fmt_num(r['too_many_requests'])} |"
        )
    return "\n".join(lines)


# The targets; each is (what, condition, client, reference, minimum ratio).
RATIO_TARGETS = (
    ("plain: backup >= 2x couchbackup shallow", "plain", "backup", "couchbackup", 2.0),
    ("plain: backup >= 0.9x raw read", "plain", "backup", "raw", 0.9),
    ("latency: backup >= 4x couchbackup shallow", "latency", "backup", "couchbackup", 4.0),
    ("ratelimit: backup >= 5x couchbackup shallow", "ratelimit", "backup", "couchbackup", 5.0),
    ("plain: restore >= 1.5x couchrestore", "plain", "restore", "couchrestore", 1.5),
    ("latency: restore >= 1.5x couchrestore", "latency", "restore", "couchrestore", 1.5),
    ("ratelimit: restore >= 1.5x couchrestore", "ratelimit", "restore", "couchrestore", 1.5),
)
RSS_TARGET_MIB = 80


# Issue 17: with the default codec (gzip) a backup loses at most 10% throughput against none (per condition measured).
CODEC_TARGET = ("backup (gzip) >= 0.9x backup (none)", "backup (gzip)", "backup (none)", 0.9)


def _backup_row(rows: list[dict[str, Any]], condition: str) -> dict[str, Any] | None:
    """The row of what users get: "backup", or with rows per codec the default codec's, unencrypted."""
    return _find(rows, condition, "backup") or _find(rows, condition, DEFAULT_CODEC_ROW)


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target measured in this run: met / missed / not measured (a report, never an assertion)."""
    out = []
    goals = list(RATIO_TARGETS)
    what, client, ref_name, minimum = CODEC_TARGET
    for condition in dict.fromkeys(r["condition"] for r in rows):
        goals.append((f"{condition}: {what}", condition, client, ref_name, minimum))
    for what, condition, client, ref_name, minimum in goals:
        row = _backup_row(rows, condition) if client == "backup" else _find(rows, condition, client)
        ref = _find(rows, condition, ref_name)
        if row is None or ref is None:
            continue
        r = ratio(row, ref)
        if r is None:
            verdict, shown = "not measured", "n/a (a side failed)"
        elif r["value"] >= minimum:  # a lower bound (">") that clears the bar clears it too
            verdict, shown = "met", _fmt_ratio(r)
        else:
            verdict, shown = ("unknown (the reference timed out)" if r["bound"] == ">" else "missed"), _fmt_ratio(r)
        out.append({"target": what, "measured": shown, "verdict": verdict})
    ratelimited = _backup_row(rows, "ratelimit")
    if ratelimited is not None:
        bad = ratelimited["failed"] + ratelimited["timeouts"]
        out.append({"target": "ratelimit: zero failed backups", "measured": f"{bad} of {ratelimited['runs']} failed",
                    "verdict": "met" if not bad else "missed"})
    rss = [r["peak_rss_mib"] for r in rows if is_backup(r["client"]) and r["peak_rss_mib"] is not None]
    worst = "worst condition" if all(r["client"] == "backup" for r in rows if is_backup(r["client"])) else "worst row"
    if rss:
        out.append({"target": f"backup peak RSS <= {RSS_TARGET_MIB} MiB ({worst})", "measured": f"{max(rss):.0f} MiB",
                    "verdict": "met" if max(rss) <= RSS_TARGET_MIB else "missed"})
    return out


def targets_table(items: list[dict[str, Any]]) -> str:
    lines = ["| target | measured | verdict |", "|---|---|---|"]
    lines += [f"| {t['target']} | {t['measured']} | {t['verdict']} |" for t in items]
    return "\n".join(lines)


# -- the machine


def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return ""


def _cmd(*cmd: str) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=REPO_ROOT).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _npm_version(package: str) -> str:
    try:
        return json.loads(_read(str(REPO_ROOT / "node_modules" / package / "package.json")))["version"]
    except (ValueError, KeyError):
        return "?"


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines()
                if line.startswith("model name")), platform.processor() or "?")
    mem_kib = next((int(line.split()[1]) for line in _read("/proc/meminfo").splitlines() if line.startswith("MemTotal")), 0)
    changed = _cmd("git", "status", "--porcelain", "--", "backup")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kib / MIB, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "node": _cmd("node", "--version"),
        "pouchdb_server": _npm_version("pouchdb-server"),
        "couchbackup": _npm_version("@cloudant/couchbackup"),
        "curl": (_cmd("curl", "--version").splitlines() or ["?"])[0].split(" (")[0],
        "git": _cmd("git", "rev-parse", "--short", "HEAD") + (" + uncommitted changes in backup/" if changed else ""),
    }


def machine_line(m: dict[str, Any]) -> str:
    return (f"{m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, {m['os']}; Python {m['python']}, "
            f"Node {m['node']}, pouchdb-server {m['pouchdb_server']}, couchbackup {m['couchbackup']}, {m['curl']}; "
            f"git {m['git']}")
