"""The shell command: `python -m backup {backup,restore,list,verify}`.

Reads the same parameter names as the action from environment variables; flags override them.
Prints the result as one JSON object on stdout (logs go to stderr); exit code 0 on success,
otherwise the error's code (2 config, 3 Cloudant, 4 COS, 5 format, 6 target not empty, 1 other).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from backup import interrupt
from backup.action import run
from backup.config import from_environment
from backup.errors import BackupError, ConfigError
from backup.log import Log
from backup.redaction import IDENTIFIERS, redact, redact_all


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m backup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quiet", action="store_true", help="log only warnings and errors")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="set any parameter (e.g. PAGE_SIZE=5000); repeatable")
    sub = parser.add_subparsers(dest="operation", required=True)
    b = sub.add_parser("backup", help="back up one database into COS")
    b.add_argument("--db", help="database to back up (CLOUDANT_DB)")
    b.add_argument("--prefix", help="object key prefix (COS_PREFIX)")
    r = sub.add_parser("restore", help="restore a backup object into a database")
    r.add_argument("--key", help="backup object key, or 'latest' (COS_KEY)")
    r.add_argument("--db", help="target database (CLOUDANT_DB)")
    r.add_argument("--source-db", help="with --key latest: whose newest backup (SOURCE_DB)")
    r.add_argument("--create-target", action="store_true", help="create the target database if missing")
    r.add_argument("--allow-non-empty", action="store_true", help="write into a target that already has documents")
    r.add_argument("--prefix", help="object key prefix (COS_PREFIX)")
    li = sub.add_parser("list", help="list backups, newest first")
    li.add_argument("--db", help="only backups of this database")
    li.add_argument("--prefix", help="object key prefix (COS_PREFIX)")
    v = sub.add_parser("verify", help="check one backup object against its manifest")
    v.add_argument("--key", help="backup object key, or 'latest' with --db (COS_KEY)")
    v.add_argument("--db", help="with --key latest: whose newest backup")
    v.add_argument("--prefix", help="object key prefix (COS_PREFIX)")
    return parser


def build_args(ns: argparse.Namespace, environ: dict[str, str]) -> dict[str, Any]:
    # Only the environment variables that are parameters or of our prefixes (a typo there warns): never PATH & co.
    args: dict[str, Any] = from_environment(environ)
    args["OPERATION"] = ns.operation
    flags = {"db": "CLOUDANT_DB", "key": "COS_KEY", "source_db": "SOURCE_DB", "prefix": "COS_PREFIX"}
    for attr, name in flags.items():
        value = getattr(ns, attr, None)
        if value is not None:
            args[name] = value
    if getattr(ns, "create_target", False):
        args["CREATE_TARGET"] = "true"
    if getattr(ns, "allow_non_empty", False):
        args["ALLOW_NON_EMPTY_TARGET"] = "true"
    for number, item in enumerate(ns.param, 1):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            # Not echoed: "CLOUDANT_PASSWORD:hunter2" typed for "=" would put the password in a CI log.
            raise ConfigError(f"--param needs NAME=VALUE: --param number {number} has no NAME= before its value")
        args[name.strip()] = value
    return args


def main(argv: Sequence[str] | None = None) -> int:
    ns = _parser().parse_args(argv)
    log = Log(stream=sys.stderr, quiet=ns.quiet)
    # SIGTERM/SIGINT: caught from here to the result line (raised only while the operation runs, see
    # backup.interrupt), so a signal never ends in a traceback or a missing result.
    with interrupt.signals_handled() as stop:
        try:
            result = redact_all(run(build_args(ns, dict(os.environ)), log), IDENTIFIERS)
            code = 1 if "error" in result else 0  # e.g. some databases of a fan-out failed
            if code and stop is not None and stop.signum is not None:
                code = 128 + stop.signum  # a fan-out a signal stopped: its databases since then failed
        except BackupError as exc:
            result, code = {"error": redact(str(exc)), "kind": exc.kind}, exc.exit_code
            log.error("failed", kind=exc.kind, error=result["error"])
        except Exception as exc:  # noqa: BLE001 - a bug still ends with a clear, redacted message
            result, code = {"error": redact(f"unexpected {type(exc).__name__}: {exc}"), "kind": "internal"}, 1
            log.error("crashed", error=result["error"], traceback=redact(traceback.format_exc()))
        print(json.dumps(result, ensure_ascii=False), flush=True)
    return code
