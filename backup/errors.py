"""The few typed errors the tool raises. Each message says what failed and where, never a secret.

`main(args)` turns them into `{"error": ...}`; the CLI turns them into an exit code.
"""


class BackupError(Exception):
    """Base of every error this tool reports on purpose."""

    exit_code = 1
    kind = "error"


class ConfigError(BackupError):
    """The parameters are wrong; nothing was contacted."""

    exit_code = 2
    kind = "config"


class CloudantError(BackupError):
    """The Cloudant/CouchDB side failed: unreachable, unauthorised, missing database, rejected writes.

    `status` is the HTTP status the server answered, when it answered one.
    """

    exit_code = 3
    kind = "cloudant"

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class CosError(BackupError):
    """The Object Storage side failed: unreachable, unauthorised, missing bucket or object, upload failed."""

    exit_code = 4
    kind = "cos"


class FormatError(BackupError):
    """A backup object is not a well-formed backup (corrupt, truncated, not ours)."""

    exit_code = 5
    kind = "format"


class IncompleteReadError(CloudantError):
    """A full backup read fewer documents than an unchanged database holds (`read_whole`: read in one request)."""

    def __init__(self, message: str, read_whole: bool) -> None:
        super().__init__(message)
        self.read_whole = read_whole


class DatabaseNotEmptyError(CloudantError):
    """A restore target already holds documents."""

    exit_code = 6
    kind = "target_not_empty"


class Interrupted(BackupError):
    """A signal stopped the run: SIGINT (Ctrl-C) here, SIGTERM in `Terminated`. Raised in the main thread by
    backup.interrupt, so the clean-up of any error runs (the upload is aborted, the checkpoint the run owns
    deleted). The exit code is 128 + the signal's number, as a shell reports a process that signal ended."""

    exit_code = 130
    kind = "interrupted"
    signal_name = "SIGINT"


class Terminated(Interrupted):
    """SIGTERM: what `timeout`, systemd, `docker stop`, Kubernetes and Code Engine send before they kill."""

    exit_code = 143
    signal_name = "SIGTERM"
