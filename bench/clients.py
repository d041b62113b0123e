"""The measured clients, each run as its own process under ``/usr/bin/time`` (wall time, peak RSS of that
process only), with the result checked afterwards (untimed): a run that finished with fewer documents than
the database holds counts as failed, not as fast.

    raw          curl GET _all_docs?include_docs=true to /dev/null (no Accept-Encoding: plain JSON)
    raw-gzip     the same with --compressed (what SDK clients get: pouchdb-server gzips for them)
    backup       python -m backup backup              -> SeaweedFS S3
    backup (gzip), backup (zstd+age), ...  the same with COMPRESSION (and ENCRYPT_TO) set: --codecs, --encrypt
    couchbackup  couchbackup --mode shallow           -> a local file
    couchbackup-full  couchbackup --mode full         -> a local file (via the compat proxy)
    restore      python -m backup restore             <- S3, into a new db (via the compat proxy)
    couchrestore couchrestore < the same backup file   (via the compat proxy)

couchrestore gets --attachments when the backup file's metadata line says `"attachments": true` (it refuses either
mismatch). With --attachments-mb (``Context.attachments``): raw reads with attachments=true, couchbackup gets
--attachments, each backup records whether it holds the attachments inline, and each restore compares one restored
attachment with the source's bytes when the backup holds it.

Our backup's object is compressed (gzip by default) and maybe encrypted: its `bytes` are the stored bytes (the result's
"bytes"), `plain_bytes` the couchbackup text's (MB/s counts those). The restores read the setup backup, made with
the codec of the run but never encrypted; couchrestore reads it decompressed (see `plain_copy`).
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests

from bench.data import ATTACHMENT_NAME, attachment_data, attachment_doc_id
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
    bytes: int | None = None  # bytes the client produced (backup file / stored object / response) or read (restore file)
    plain_bytes: int | None = None  # our backup: the plain couchbackup text of its object (MB/s counts these when set)
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
class Attachments:
    """--attachments-mb: `docs` documents with one attachment of `bytes_each` bytes; and what the restore source
    (the setup backup) turned out to hold, filled in by `scan_restore_source`."""

    docs: int
    bytes_each: int
    source_inline: int | None = None  # attachments with data in the restore source
    source_stubs: int | None = None  # attachments as stubs only (no data: a backup without attachments)
    source_flag: bool | None = None  # the metadata line's "attachments" (couchrestore needs --attachments iff true)
    source_check: str = ""  # the checked attachment in the restore source: "equal" / why not

    @property
    def total_bytes(self) -> int:
        return self.docs * self.bytes_each

    @property
    def check_index(self) -> int:
        return self.docs - 1  # the last one: where a truncated backup or restore would show first

    @property
    def check_id(self) -> str:
        return attachment_doc_id(self.check_index)

    def expected(self) -> bytes:
        return attachment_data(self.check_index, self.bytes_each)

    def holds(self, object_bytes: int | None) -> bool:
        """Whether a backup of this size can hold the attachments (random bytes: base64 adds 1/3, gzip takes off
        about as much; a backup of stubs only is a few KB)."""
        return object_bytes is not None and object_bytes >= self.total_bytes // 2


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
    attachments: Attachments | None = None  # --attachments-mb (None: the usual documents only)
    # --codecs / --encrypt: "backup (zstd)" -> {"COMPRESSION": "zstd"}: more rows of our backup, each with these
    # parameters on top of `params`
    variants: dict[str, dict[str, str]] = field(default_factory=dict)

    def url(self, client: str) -> str:
        return getattr(self.routes, UPSTREAM[base_client(client)])


def base_client(client: str) -> str:
    """"backup (zstd+age)" -> "backup": the client a variant row runs."""
    return client.split(" (", 1)[0]


def variant_name(codec: str, encrypted: bool) -> str:
    return f"backup ({codec}{'+age' if encrypted else ''})"


def _tag(run: Run) -> str:
    """For file names: "plain-backup-zstd-age-1"."""
    name = "".join(c if c.isalnum() or c in "-_" else "-" for c in run.client).strip("-")
    while "--" in name:
        name = name.replace("--", "-")
    return f"{run.condition}-{name}-{run.rep}"


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
    tag = _tag(run)
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


@dataclass
class BackupScan:
    """What a couchbackup-format file holds: array lines of documents after a metadata line."""

    docs: int = 0
    lines: int = 0
    inline: int = 0  # attachments with data
    stubs: int = 0  # attachments without (a backup made without attachments)
    metadata: dict[str, Any] | None = None
    wanted: dict[str, Any] | None = None  # `_attachments` of the document asked for, if it is there


def scan_backup(path: Path, want: str | None = None) -> BackupScan:
    scan = BackupScan()
    with open(path, "rb") as fh:
        for raw in fh:
            if not raw.strip():
                continue
            value = json.loads(raw)
            if isinstance(value, list):
                scan.docs += len(value)
                scan.lines += 1
                for doc in value:
                    attachments = doc.get("_attachments") if isinstance(doc, dict) else None
                    if not isinstance(attachments, dict):
                        continue
                    for attachment in attachments.values():
                        if isinstance(attachment, dict) and "data" in attachment:
                            scan.inline += 1
                        else:
                            scan.stubs += 1
                    if want is not None and doc.get("_id") == want:
                        scan.wanted = attachments
            elif isinstance(value, dict) and scan.lines == 0 and scan.metadata is None:
                scan.metadata = value
    return scan


def count_docs(path: Path) -> tuple[int, int]:
    """(documents, lines) in a couchbackup-format file (array lines; the metadata line is not counted)."""
    scan = scan_backup(path)
    return scan.docs, scan.lines


def says_attachments(path: Path) -> bool:
    """Whether the file's metadata line (line 1) has `"attachments": true`, as couchrestore reads it."""
    with open(path, "rb") as fh:
        first = fh.readline(1 << 20)
    try:
        meta = json.loads(first)
    except ValueError:
        return False
    if not isinstance(meta, dict) or not (meta.get("name") and meta.get("version") and meta.get("mode")):
        return False  # not a metadata line: couchrestore takes it for documents
    return meta.get("attachments") is True


def scan_restore_source(att: Attachments, path: Path) -> dict[str, Any]:
    """Fill in what the restore source holds of the attachments (untimed, once): inline or stubs, and whether the
    checked attachment's data in it is the source's."""
    scan = scan_backup(path, want=att.check_id)
    att.source_inline, att.source_stubs = scan.inline, scan.stubs
    att.source_flag = bool((scan.metadata or {}).get("attachments"))
    entry = (scan.wanted or {}).get(ATTACHMENT_NAME)
    if scan.wanted is None:
        att.source_check = f"{att.check_id} is not in the backup"
    elif not isinstance(entry, dict) or not isinstance(entry.get("data"), str):
        att.source_check = f"{att.check_id}/{ATTACHMENT_NAME} is a stub (no data)"
    else:
        try:
            data = base64.b64decode(entry["data"], validate=True)
        except ValueError as exc:
            att.source_check = f"{att.check_id}/{ATTACHMENT_NAME}: data is not base64 ({exc})"
        else:
            att.source_check = "equal" if data == att.expected() else (
                f"{att.check_id}/{ATTACHMENT_NAME}: {len(data)} bytes in the backup, not the source's {att.bytes_each}"
                if len(data) != att.bytes_each else f"{att.check_id}/{ATTACHMENT_NAME}: the backup's bytes differ")
    return {"docs": scan.docs, "attachments_inline": scan.inline, "attachment_stubs": scan.stubs,
            "metadata_attachments": att.source_flag, "checked": att.check_id, "check": att.source_check}


def _note(run: Run, text: str) -> None:
    run.detail = f"{run.detail}; {text}" if run.detail else text


def _expect_docs(run: Run, got: int | None, expected: int) -> None:
    run.docs = got
    if run.status == "ok" and got != expected:
        run.status = "incomplete"
        run.detail = f"{got} documents instead of {expected}"


# -- the clients


def raw(ctx: Context, run: Run, compressed: bool = False) -> None:
    url = f"{ctx.url(run.client)}/{ctx.db}/_all_docs?include_docs=true"
    if ctx.attachments is not None:
        url += "&attachments=true"  # the read with the attachments' data inline (base64), as the backups need it
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


def _our_env(ctx: Context, cloudant_url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    s3 = ctx.stack.s3
    env = python_env()
    env.update(CLOUDANT_URL=cloudant_url, COS_ENDPOINT=s3.endpoint, COS_BUCKET=ctx.stack.bucket,
               COS_ACCESS_KEY_ID=s3.access_key, COS_SECRET_ACCESS_KEY=s3.secret_key)
    env.update(ctx.params)
    env.update(extra or {})
    return env


def _last_json(path: Path) -> dict[str, Any]:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    try:
        value = json.loads(lines[-1]) if lines else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def backup(ctx: Context, run: Run, keep: bool = False, extra: dict[str, str] | None = None) -> dict[str, Any]:
    """Our backup, with `extra` parameters (else the run's variant's, if any) on top of ctx.params. Returns its result."""
    variant = ctx.variants.get(run.client, {}) if extra is None else extra
    out = ctx.workdir / f"stdout-{_tag(run)}.json"
    timed([sys.executable, "-m", "backup", "backup", "--db", ctx.db], run, ctx,
          _our_env(ctx, ctx.url(run.client), variant), stdout=out, cwd=code_dir())
    result = _last_json(out)
    if variant:
        run.extra["parameters"] = dict(variant)
    if result.get("key"):
        run.extra.update(key=result["key"], internal_seconds=result.get("seconds"), parts=result.get("parts"))
        if not keep:
            ctx.stack.delete_object(result["key"])
    if run.status == "ok" and not result.get("ok"):
        run.status, run.detail = "failed", f"no ok result: {tail(out)}"
    run.bytes = result.get("bytes")  # stored: compressed, encrypted
    # (a backup/ from before compression has no plain_bytes: its object is the plain text)
    run.plain_bytes = result.get("plain_bytes", run.bytes)
    run.extra.update(compression=result.get("compression", "none"), encrypted=bool(result.get("encrypted")))
    asked = {**ctx.params, **variant}  # what the run was given: --param, then its row's parameters
    if run.status == "ok" and asked.get("COMPRESSION") and run.extra["compression"] != asked["COMPRESSION"]:
        run.status, run.detail = "failed", f"asked COMPRESSION={asked['COMPRESSION']}, got {run.extra['compression']}"
    if run.status == "ok" and bool(asked.get("ENCRYPT_TO")) != run.extra["encrypted"]:
        run.status, run.detail = "failed", f"asked ENCRYPT_TO={bool(asked.get('ENCRYPT_TO'))}, encrypted: {run.extra['encrypted']}"
    _expect_docs(run, result.get("docs"), ctx.docs)
    if ctx.attachments is not None and run.status == "ok":
        # (the size of the plain text tells: a setup backup's content is scanned exactly, see scan_restore_source)
        run.extra["attachments_inline"] = ctx.attachments.holds(run.plain_bytes)
        if not run.extra["attachments_inline"]:
            _note(run, f"stubs only: {run.plain_bytes} bytes cannot hold {ctx.attachments.total_bytes:,} bytes of attachments")
    return result


def plain_copy(stored: Path, compression: str, plain: Path) -> int:
    """The couchbackup text of an unencrypted object of ours (gzip members / zstd frames / none): couchrestore reads
    this, and the attachment scan. Decoded here with the standard libraries, not with backup/. Returns its size."""
    if compression == "gzip":
        with gzip.open(stored, "rb") as src, open(plain, "wb") as dst:  # every member, in turn
            shutil.copyfileobj(src, dst, 1 << 20)
    elif compression == "zstd":
        import zstandard  # in the venv (requirements.txt): backup/ writes zstd with it

        decompressor = zstandard.ZstdDecompressor()
        with (open(stored, "rb") as fin, open(plain, "wb") as dst,
              decompressor.stream_reader(fin, read_across_frames=True) as src):
            shutil.copyfileobj(src, dst, 1 << 20)
    elif compression == "none":
        shutil.copyfile(stored, plain)
    else:
        raise ValueError(f"unknown compression {compression!r}")
    return plain.stat().st_size


def couchbackup(ctx: Context, run: Run, mode: str = "shallow") -> None:
    out = ctx.workdir / f"couchbackup-{run.condition}-{mode}-{run.rep}.txt"
    cmd = [str(NODE_BIN / "couchbackup"), "--url", ctx.url(run.client), "--db", ctx.db, "--mode", mode, "--output", str(out)]
    if ctx.attachments is not None:
        cmd.append("--attachments")  # experimental in couchbackup: without it, it backs up stubs only
    if mode == "full":
        log = ctx.workdir / f"couchbackup-{run.condition}-{mode}-{run.rep}.log"
        cmd += ["--log", str(log)]
    timed(cmd, run, ctx, _node_env())
    if out.exists():
        run.bytes = out.stat().st_size
        try:
            scan: BackupScan | None = scan_backup(out)
        except ValueError as exc:
            scan = None
            run.detail = (run.detail + f"; unreadable output: {exc}").strip("; ")
        docs, lines = (scan.docs, scan.lines) if scan else (None, None)
        run.extra["lines"] = lines
        if ctx.attachments is not None and scan is not None:
            run.extra.update(attachments_inline=scan.inline, attachment_stubs=scan.stubs)
            if scan.inline < ctx.attachments.docs and run.status == "ok":
                _note(run, f"{scan.inline} of {ctx.attachments.docs} attachments inline")
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
    if ctx.attachments is not None:
        _check_attachment(ctx.attachments, ctx, run, target)
    ctx.stack.delete_db(target)


def _check_attachment(att: Attachments, ctx: Context, run: Run, target: str) -> None:
    """One restored attachment against the source's bytes, when the backup holds it; otherwise say why not."""
    where = f"{att.check_id}/{ATTACHMENT_NAME}"
    if att.source_check != "equal":
        # e.g. backup/ does not back attachments up (yet): the restore wrote the documents without them
        run.extra["attachment_check"] = f"not made: {att.source_check or 'the restore source was not scanned'}"
        _note(run, f"attachment not checked: the backup holds {att.source_inline} of {att.docs} inline ({att.source_check})")
        return
    try:
        got = ctx.stack.attachment(target, att.check_id, ATTACHMENT_NAME)
    except requests.RequestException as exc:
        run.extra["attachment_check"] = f"unreadable: {exc}"
        if run.status == "ok":
            run.status, run.detail = "failed", f"restored attachment {where} unreadable: {exc}"
        return
    if got == att.expected():
        run.extra["attachment_check"] = "equal"
        return
    problem = "missing" if got is None else f"{len(got):,} bytes differ from the source's {att.bytes_each:,}"
    run.extra["attachment_check"] = problem
    if run.status == "ok":
        run.status, run.detail = ("incomplete" if got is None else "failed"), f"restored attachment {where}: {problem}"


def restore(ctx: Context, run: Run) -> None:
    assert ctx.restore_key is not None and ctx.restore_file is not None
    target = _target(run)
    ctx.stack.delete_db(target)
    out = ctx.workdir / f"stdout-{_tag(run)}.json"
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
    if says_attachments(ctx.restore_file):
        # it refuses a file whose metadata line says attachments without it, and one that does not with it: a user
        # restoring our backup has to pass it as soon as our metadata says so (whether documents have any or not)
        cmd.append("--attachments")
        run.extra["attachments_option"] = True
    timed(cmd, run, ctx, _node_env(), stdin=ctx.restore_file)
    run.bytes = ctx.restore_file.stat().st_size
    if run.status == "failed" and ctx.attachments is not None and ctx.attachments.source_stubs:
        # first: the progress line shows the detail's start only
        run.detail = f"the backup holds attachment stubs, which couchrestore cannot write (412 missing_stub); {run.detail}"
    _check_restored(ctx, run, target)


RUNNERS: dict[str, Callable[[Context, Run], object]] = {
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
    runner = RUNNERS[client] if client in RUNNERS else RUNNERS[base_client(client)]
    ctx.routes.reset()
    proxy_pids = [p.proc.pid for p in ctx.routes.proxies.values() if p.proc is not None]
    server_before, proxy_before = process_cpu(ctx.stack.couch.pid), _own_cpu() + sum(map(process_cpu, proxy_pids))
    try:
        runner(ctx, run)
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
