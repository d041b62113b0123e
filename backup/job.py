"""Code Engine job entry: `python -m backup.job`.

A cron subscription starts one job run per database. The run's parameters are its environment variables
(the project secret made from opts.json, attached with --env-from-secret) merged with CE_DATA, the JSON body
of the subscription (e.g. {"CLOUDANT_DB": "mydb"}); CE_DATA wins, as trigger parameters win over bound ones in
OpenWhisk. Same code path as the action: `backup.action.main(args)`.

Prints the result as one JSON line on stdout (logs go to stderr) and exits 0 on success, otherwise with the
CLI's code for the error's kind (2 config, 3 Cloudant, 4 COS, 5 format, 6 target not empty, 1 other), so a
failed backup shows as a failed job run.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import Any

from backup import errors, interrupt
from backup.action import main as action_main
from backup.config import from_environment
from backup.errors import BackupError, ConfigError
from backup.log import Log

# kind -> exit code, from the error classes themselves.
_EXIT_CODES = {
    cls.kind: cls.exit_code
    for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, BackupError)
}


def build_args(environ: Mapping[str, str]) -> dict[str, Any]:
    """The environment's parameters, overlaid with the CE_DATA object; raise ConfigError when CE_DATA is not one."""
    args: dict[str, Any] = from_environment(environ)
    raw = environ.get("CE_DATA", "").strip()
    if raw:
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"CE_DATA is not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"CE_DATA must be a JSON object like {{\"CLOUDANT_DB\": \"mydb\"}}, got {type(data).__name__}")
        args.update(data)
    return args


def main(environ: Mapping[str, str] | None = None) -> int:
    log = Log(stream=sys.stderr)
    # SIGTERM (Code Engine stops a job run with it, then kills it) and SIGINT: caught from here to the result line,
    # raised only while the operation runs (see backup.interrupt); the run then exits 128 + the signal's number.
    with interrupt.signals_handled() as stop:
        try:
            args = build_args(os.environ if environ is None else environ)
        except ConfigError as exc:
            result: dict[str, Any] = {"error": str(exc), "kind": exc.kind}
            log.error("failed", kind=exc.kind, error=result["error"])
        else:
            result = action_main(args, log)
        print(json.dumps(result, ensure_ascii=False), flush=True)
    if "error" in result:
        if stop is not None and stop.signum is not None:
            return 128 + stop.signum
        return _EXIT_CODES.get(result.get("kind", ""), 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
