"""A local stack to try every command of the README by hand.

    .venv/bin/python -m devstack [--dir DIR] [--port-couch N] [--port-s3 N] [--no-sample] [--env-file PATH]

Starts pouchdb-server (the CouchDB stand-in, with an admin) and SeaweedFS (S3) on 127.0.0.1, creates
the bucket "backups" and a sample database "animals", prints the ``export`` lines to paste into a shell
and a few commands to try, then runs until Ctrl-C (SIGINT), SIGTERM or SIGHUP, and stops both servers.
Every start makes up new credentials (with --dir too: the data stays, the export lines change).
Exit code 0 once stopped by a signal, 1 when a server died or could not start.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from devstack.demo import BUCKET, SAMPLE_DB, create_bucket, load_sample, stack_params
from devstack.servers import HOST, LocalStack, PouchServer, SeaweedS3

SAMPLE_DOCS = 1000
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
POLL_SECONDS = 0.5  # how soon a dead server is noticed


class _Stopped(Exception):
    """A stop signal arrived."""


def _ignore_signals() -> None:
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _ignore_signals()  # nothing may interrupt the servers' shutdown
    raise _Stopped(signal.Signals(signum).name)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, help="data directory, kept at exit (default: a temporary one, deleted)")
    parser.add_argument("--port-couch", type=int, metavar="PORT", help="pouchdb-server's port (default: a free one)")
    parser.add_argument("--port-s3", type=int, metavar="PORT", help="the S3 server's port (default: a free one)")
    parser.add_argument("--no-sample", action="store_true", help=f"do not create the sample database {SAMPLE_DB!r}")
    parser.add_argument("--env-file", type=Path, metavar="PATH", help="also write the export lines there (to `source`)")
    return parser


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
    return False


def export_lines(params: dict[str, str]) -> list[str]:
    return [f"export {name}={shlex.quote(value)}" for name, value in params.items()]


def _write_env_file(path: Path, lines: list[str]) -> None:
    # Written whole then renamed: a reader polling for the file never sees half of it. 0600: passwords.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("# written by python -m devstack: valid while it runs\n" + "\n".join(lines) + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)


def _instructions(lines: list[str], sample: bool) -> str:
    db = SAMPLE_DB if sample else "mydb"
    examples = [
        f"python -m backup backup --db {db}",
        "python -m backup list",
        f"python -m backup verify --key latest --db {db}",
        f"python -m backup restore --key latest --source-db {db} --db {db}-restored --create-target",
        f"python -m backup drill --db {db}",
        f"python -m backup status --db {db}",
    ]
    return "\n".join([
        "# The local stack is running. Paste these lines into a shell:",
        *lines,
        "# Then try, from the repository root (after `source .venv/bin/activate`):",
        *examples,
        "# Press Ctrl-C to stop.",
    ])


def _setup(stack: LocalStack, sample: bool) -> dict[str, str]:
    create_bucket(stack.s3, BUCKET)
    if sample and not load_sample(stack.couch, SAMPLE_DB, SAMPLE_DOCS):
        print(f"devstack: {SAMPLE_DB!r} exists already: left as it is", file=sys.stderr)
    return stack_params(stack, BUCKET)


def _dead(stack: LocalStack) -> PouchServer | SeaweedS3 | None:
    for server in (stack.couch, stack.s3):
        if not server.running:
            return server
    return None


def serve(stack: LocalStack, sample: bool, env_file: Path | None) -> int:
    """Set the stack up, print how to use it, then wait: returns 1 if a server dies (a signal raises _Stopped)."""
    # These are throw-away credentials of servers that live as long as this process, made up
    # for it on 127.0.0.1: printing them is the point, they are nobody's secrets.
    lines = export_lines(_setup(stack, sample))
    if env_file is not None:
        _write_env_file(env_file, lines)
    print(_instructions(lines, sample), flush=True)
    while (dead := _dead(stack)) is None:
        time.sleep(POLL_SECONDS)
    print(f"devstack: {type(dead).__name__} (pid {dead.pid}) died with exit code {dead.returncode}; "
          f"the other server is stopped too.\n{dead.log_tail(20)}", file=sys.stderr, flush=True)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    ns = _parser().parse_args(argv)
    for port in (ns.port_couch, ns.port_s3):
        if port is not None and _port_in_use(port):
            print(f"devstack: port {port} on {HOST} is in use: choose another one", file=sys.stderr)
            return 1
    stack = LocalStack(ns.dir, couch_port=ns.port_couch, s3_port=ns.port_s3)
    print(f"devstack: starting pouchdb-server and SeaweedFS in {stack.workdir} ...", file=sys.stderr, flush=True)
    for sig in STOP_SIGNALS:
        signal.signal(sig, _on_signal)
    message = ""
    try:
        stack.start()
        code = serve(stack, not ns.no_sample, ns.env_file)
    except _Stopped as stop:
        code, message = 0, f"devstack: stopped ({stop})"
    except RuntimeError as exc:  # e.g. a server that could not start: the message holds its log's last lines
        code, message = 1, f"devstack: {exc}"
    finally:
        _ignore_signals()
        stack.stop()  # idempotent; removes the data directory unless it is --dir's
    if message:
        print(message, file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
