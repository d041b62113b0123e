"""The shell command: `cloudant-cos-backup {backup,restore,list,verify,drill,status,decrypt}` (also `python -m backup`).

Reads the same parameter names as the action from environment variables; flags override them.
On a terminal the result prints as short text and backups and restores draw a progress bar on stderr; with
--json, or when stdout is not a terminal, it prints as one JSON object (logs are JSON lines on stderr).
Exit code 0 on success, otherwise the error's code (2 config, 3 Cloudant, 4 COS, 5 format, 6 target not
empty, 1 other, e.g. a failed drill or a stale status).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

from backup import interrupt
from backup.action import answer
from backup.config import from_environment
from backup.errors import BackupError, ConfigError
from backup.log import Log

PROG = "cloudant-cos-backup"
# (flag, parameter, help) of each subcommand: the flags a user types, and the parameter each one sets, so that a
# message about a parameter can name the flag too.
_DB, _PREFIX = ("--db", "CLOUDANT_DB"), ("--prefix", "COS_PREFIX")
FLAGS: dict[str, list[tuple[str, str, str]]] = {
    "backup": [(*_DB, "database to back up; '*' for every one, or a,b,c"), (*_PREFIX, "object key prefix"),
               ("--mode", "BACKUP_MODE", "full or incremental")],
    "restore": [("--key", "COS_KEY", "backup object key, or 'latest' with --source-db"),
                (*_DB, "target database"), ("--source-db", "SOURCE_DB", "with --key latest: whose newest backup"),
                (*_PREFIX, "object key prefix")],
    "list": [(*_DB, "only backups of this database"), (*_PREFIX, "object key prefix")],
    "verify": [("--key", "COS_KEY", "backup object key, or 'latest' with --db"),
               (*_DB, "with --key latest: whose newest backup"), (*_PREFIX, "object key prefix")],
    "drill": [(*_DB, "database whose newest backup to drill"),
              ("--key", "COS_KEY", "drill this backup instead of the newest"),
              ("--drill-db", "DRILL_DB", "scratch database to restore into (default: made from --db and the time)"),
              ("--sample", "DRILL_SAMPLE", "documents to compare with the live source too (0: none)"),
              (*_PREFIX, "object key prefix")],
    "status": [(*_DB, "database, a,b,c, or '*' for every database of the account (default: every one in the "
                "bucket)"), ("--max-age-hours", "MAX_AGE_HOURS", "a newest complete backup older than this is stale"),
               (*_PREFIX, "object key prefix")],
    "decrypt": [("--key", "COS_KEY", "backup object key, or 'latest' with --db"),
                ("--output", "OUTPUT", "the plain couchbackup file to write (never overwritten)"),
                (*_DB, "with --key latest: whose newest backup"), (*_PREFIX, "object key prefix")],
}
SWITCHES = {"restore": [("--create-target", "CREATE_TARGET", "create the target database if missing"),
                        ("--allow-non-empty", "ALLOW_NON_EMPTY_TARGET", "write into a target that has documents")]}
HELP = {"backup": "back up a database into COS", "restore": "restore a backup into a database",
        "list": "list backups, newest first", "verify": "check a backup (and its chain) against its manifest",
        "drill": "restore the newest backup into a scratch database, compare, delete it",
        "status": "is every database's newest complete backup recent enough?",
        "decrypt": "write a backup's plain couchbackup file (decrypted, decompressed) for other tools"}


def _common(parser: argparse.ArgumentParser, where: str) -> None:
    """The options that go before or after the subcommand (each place keeps its own, merged by `_merged`)."""
    default = argparse.SUPPRESS
    parser.add_argument("--quiet", action="store_true", dest=f"quiet_{where}", default=default,
                        help="log only warnings and errors")
    parser.add_argument("--json", action="store_true", dest=f"json_{where}", default=default,
                        help="print the result as JSON even on a terminal (and no progress bar)")
    parser.add_argument("--param", action="append", dest=f"param_{where}", default=default, metavar="NAME=VALUE",
                        help="set any parameter (e.g. PAGE_SIZE=5000); repeatable")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                     epilog="Other parameters (credentials, COS_BUCKET, ...) come from environment "
                                            "variables of the same names, or --param NAME=VALUE.")
    _common(parser, "before")
    sub = parser.add_subparsers(dest="operation", required=True, metavar="{" + ",".join(FLAGS) + "}")
    for operation, flags in FLAGS.items():
        p = sub.add_parser(operation, help=HELP[operation], description=HELP[operation])
        for flag, param, text in flags:
            p.add_argument(flag, dest=param, help=f"{text} ({param})")
        for flag, param, text in SWITCHES.get(operation, []):
            p.add_argument(flag, dest=param, action="store_const", const="true", help=f"{text} ({param})")
        _common(p, "after")
    return parser


def _merged(ns: argparse.Namespace, name: str) -> Any:
    before, after = getattr(ns, f"{name}_before", None), getattr(ns, f"{name}_after", None)
    if name == "param":
        return [*(before or []), *(after or [])]
    return bool(before or after)


def build_args(ns: argparse.Namespace, environ: dict[str, str]) -> dict[str, Any]:
    # Only the environment variables that are parameters or of our prefixes (a typo there warns): never PATH & co.
    args: dict[str, Any] = from_environment(environ)
    args["OPERATION"] = ns.operation
    for _, param, _ in FLAGS[ns.operation] + SWITCHES.get(ns.operation, []):
        if getattr(ns, param, None) is not None:
            args[param] = getattr(ns, param)
    for number, item in enumerate(_merged(ns, "param"), 1):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            # Not echoed: "CLOUDANT_PASSWORD:hunter2" typed for "=" would put the password in a CI log.
            raise ConfigError(f"--param needs NAME=VALUE: --param number {number} has no NAME= before its value")
        args[name.strip()] = value
    return args


def with_flags(message: str, operation: str) -> str:
    """A configuration message that names each parameter's flag where this subcommand has one
    (`COS_KEY (--key) is missing`), and says how to give a missing one that has none."""
    for flag, param, _ in FLAGS.get(operation, []) + SWITCHES.get(operation, []):
        message = re.sub(rf"\b{param}\b(?! \()", f"{param} ({flag})", message, count=1)
    return re.sub(r"\b([A-Z][A-Z0-9_]+) is missing(?!\s*\()",
                  lambda m: f"{m[1]} is missing (export {m[1]}=... or --param {m[1]}=...)", message)


def _terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # replaced or closed
        return False


def main(argv: Sequence[str] | None = None) -> int:
    ns = _parser().parse_args(argv)
    human = not _merged(ns, "json") and _terminal(sys.stdout)
    log = _log(human and _terminal(sys.stderr), _merged(ns, "quiet"))
    # SIGTERM/SIGINT: caught from here to the result line (raised only while the operation runs, see
    # backup.interrupt), so a signal never ends in a traceback or a missing result.
    with interrupt.signals_handled() as stop:
        failure: BackupError | None
        try:
            args = build_args(ns, dict(os.environ))
        except ConfigError as exc:
            result, failure = {"error": str(exc), "kind": exc.kind}, exc
        else:
            if human:
                args.setdefault("PROGRESS_EVERY", "1000")  # a bar moves more often than a log line
            result, failure = answer(args, log)
        code = failure.exit_code if failure is not None else (1 if "error" in result else 0)
        if failure is None and code and stop is not None and stop.signum is not None:
            code = 128 + stop.signum  # a fan-out a signal stopped: its databases since then failed
        if isinstance(failure, ConfigError):
            result["error"] = with_flags(result["error"], ns.operation)
        close = getattr(log, "close", None)
        if close is not None:
            close()
        _print(result, ns.operation, human)
    return code


def _log(bar: bool, quiet: bool) -> Log:
    if not bar:
        return Log(stream=sys.stderr, quiet=quiet)
    from backup.terminal import TerminalLog  # tqdm: only where a bar is drawn

    return TerminalLog(stream=sys.stderr, quiet=quiet)


def _print(result: dict[str, Any], operation: str, human: bool) -> None:
    if not human:
        print(json.dumps(result, ensure_ascii=False), flush=True)
        return
    from backup.human import only_error, render

    # An error alone goes to stderr, like any command's; a result that also holds a problem (a stale status, a
    # drill that differs) is still the answer asked for.
    print(render(result, operation), file=sys.stderr if only_error(result) else sys.stdout, flush=True)
