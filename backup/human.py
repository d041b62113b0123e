"""Results as short text for a person at a terminal (pure). Scripts and the action get the JSON result instead."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def size(n: Any) -> str:
    """Bytes in binary units: 512 B, 1.5 KiB, 20.0 MiB."""
    if not isinstance(n, int) or isinstance(n, bool):
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if round(value, 1) < 1024 or unit == "TiB":  # 1,048,575 B is "1.0 MiB", not "1024.0 KiB"
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _count(n: Any) -> str:
    return f"{n:,}" if isinstance(n, int) and not isinstance(n, bool) else "-"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded to their widest cell; numbers (right-aligned) and text (left-aligned) told apart by header."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    right = {i for i, h in enumerate(headers) if h in ("DOCS", "SIZE", "AGE (H)", "CHAIN")}

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True))).rstrip()

    return "\n".join([line(headers), *(line(r) for r in cells)])


def _list(r: dict[str, Any]) -> str:
    rows = [(b.get("time"), b.get("database"), b.get("kind"), _count(b.get("docs")), size(b.get("bytes")),
             b.get("complete")) for b in r.get("backups", [])]
    text = table(("TIME", "DATABASE", "KIND", "DOCS", "SIZE", "COMPLETE"), rows) if rows else "no backups"
    more = f"\n(showing {len(rows)} of {r['count']}: --db or --param LIST_LIMIT=N for more)" if r.get("truncated") else ""
    return f"{text}{more}\n{r.get('count', len(rows))} backups in {r.get('bucket')}"


def _status(r: dict[str, Any]) -> str:
    rows = [(d.get("database"), d.get("time"), d.get("age_hours"), d.get("kind"), d.get("chain"),
             _count(d.get("docs")), size(d.get("bytes")), "STALE: " + (d.get("reason") or "") if d.get("stale") else "ok")
            for d in r.get("databases", [])]
    text = table(("DATABASE", "NEWEST", "AGE (H)", "KIND", "CHAIN", "DOCS", "SIZE", "STATUS"), rows) if rows else \
        "no databases"
    stale = r.get("stale") or []
    total = r.get("count", len(rows))  # every database checked (the rows shown may be fewer)
    verdict = f"{r.get('stale_count', len(stale))} of {total} stale" if stale else f"all {total} fresh"
    return f"{text}\n{verdict} (newest complete backup at most {r.get('max_age_hours')} hours old)"


def _backup(r: dict[str, Any]) -> str:
    if "databases" in r:  # a fan-out: one line per database
        rows = [(o.get("database"), None if "error" in o else o.get("kind"), _count(o.get("docs")), size(o.get("bytes")),
                 o.get("error") or ("done" if o.get("complete") else o.get("activation_id") or "continues"))
                for o in r["databases"]]
        return table(("DATABASE", "KIND", "DOCS", "SIZE", "OUTCOME"), rows)
    state = "complete" if r.get("complete") else "checkpointed: run it again to go on"
    return (f"backed up {r.get('database')}: {_count(r.get('docs'))} docs, {size(r.get('bytes'))}{_stored(r)} in "
            f"{r.get('seconds')} s ({r.get('kind', 'full')}, {state})\n  {r.get('key')}")


def _stored(r: dict[str, Any]) -> str:
    """How the bytes are stored, when not as plain text: ` (gzip of 10.6 MiB, encrypted)`."""
    how = [f"{r['compression']} of {size(r.get('plain_bytes'))}"] if r.get("compression") not in (None, "none") else []
    how += ["encrypted"] if r.get("encrypted") else []
    return f" ({', '.join(how)})" if how else ""


def _restore(r: dict[str, Any]) -> str:
    if not r.get("complete"):
        return (f"restore into {r.get('database')} checkpointed after {_count(r.get('written'))} docs: run it again "
                "with the same parameters to go on")
    return (f"restored {r.get('key')} into {r.get('database')}: it holds {_count(r.get('docs'))} docs "
            f"({_count(r.get('written'))} written in {r.get('seconds')} s)")


def _verify(r: dict[str, Any]) -> str:
    chain = f" (and the {len(r['chain']) - 1} backups of its chain before it)" if r.get("chain") else ""
    checked = "" if r.get("content_checked", True) else \
        " (encrypted: its stored bytes were checked; set AGE_IDENTITY to check its content too)"
    return (f"verified {r.get('key')}{chain}: whole, {_count(r.get('docs'))} docs, {size(r.get('bytes'))}"
            f"{_stored(r)}, sha256 {r.get('sha256')}{checked}")


def _decrypt(r: dict[str, Any]) -> str:
    return f"wrote {r.get('output')}: the plain backup of {r.get('key')}, {size(r.get('plain_bytes'))}"


def _drill(r: dict[str, Any]) -> str:
    sample = r.get("sample") or {}
    lines = [f"drill of {r.get('database')}: {'EQUAL' if r.get('equal') else 'NOT EQUAL'} -- "
             f"{_count(r.get('docs'))} docs of {r.get('key')} restored into {r.get('drill_db')} and compared in "
             f"{r.get('seconds')} s"]
    if sample.get("checked"):
        lines.append(f"  source sample: {sample.get('checked')} checked, {sample.get('unchanged_equal')} unchanged "
                     f"and equal, {sample.get('changed_since_backup')} changed since the backup")
    lines += [f"  differs: {_difference(d)}" for d in r.get("differences", [])]
    if r.get("scratch_deleted") is False:
        lines.append(f"  the scratch database {r.get('drill_db')} could not be deleted: delete it by hand")
    return "\n".join(lines)


def _difference(d: Any) -> str:
    if not isinstance(d, dict):
        return str(d)
    details = ", ".join(f"{k} {v}" for k, v in d.items() if k not in ("id", "differs"))
    what = f"{d.get('differs', '')}" + (f" ({details})" if details else "")
    return f"{d['id']}: {what}" if d.get("id") else what


RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "list": _list, "status": _status, "backup": _backup, "restore": _restore, "verify": _verify, "drill": _drill,
    "decrypt": _decrypt,
}


def only_error(result: dict[str, Any]) -> bool:
    """A result that is just an error (the run ended before it had anything else to say)."""
    return set(result) <= {"error", "kind", "warnings"}


def render(result: dict[str, Any], operation: str) -> str:
    parts = [] if only_error(result) else [RENDERERS.get(result.get("operation") or operation, _fallback)(result)]
    parts += [f"warning: {w}" for w in result.get("warnings", [])]
    if "error" in result:
        parts.append(f"error: {result['error']}")
    return "\n".join(parts)


def _fallback(r: dict[str, Any]) -> str:
    return "\n".join(f"{k}: {v}" for k, v in r.items() if k not in ("warnings", "error"))
