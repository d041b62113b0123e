"""Parameters: one table of names, checked all at once before any network call.

Pure logic: `load_config(args)` turns the action's args (or the CLI's environment) into a `Config`,
or raises one `ConfigError` that lists every problem found.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from backup.compression import CODECS, DEFAULT_CODEC
from backup.encryption import IDENTITY_PREFIX, Identities, parse_recipients
from backup.errors import ConfigError
from backup.redaction import MASK, Secret, register

MIB = 1024 * 1024
# IBM's public IAM token endpoint; tests point both IAM paths at a local one.
DEFAULT_IAM_TOKEN_URL = "https://iam.cloud.ibm.com/identity/token"
# CouchDB's rule for database names (https://docs.couchdb.org/en/stable/api/database/common.html).
_DB_NAME = re.compile(r"^[a-z][a-z0-9_$()+/-]*$")
_DB_NAME_MAX = 238
# The only names CouchDB accepts that start with '_': its system databases (backed up with INCLUDE_SYSTEM_DBS).
SYSTEM_DBS = ("_users", "_replicator", "_global_changes")
# A scheme at the very start of a value: what may be echoed before a masked userinfo.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
OPERATIONS = ("backup", "restore", "list", "verify", "drill", "status", "decrypt")
# Where a notification may be sent: https, or http only on this machine (a test's receiver).
NOTIFY_ON = ("failure", "always")


@dataclass(frozen=True)
class Tunable:
    name: str
    default: int
    low: int
    high: int
    help: str


# Every tuning knob, its default and the range that makes sense; the README table is built from this.
TUNABLES = (
    Tunable("DOCS_PER_LINE", 500, 1, 100_000, "documents per line of the backup file (couchbackup's buffer size)"),
    Tunable("PAGE_SIZE", 10_000, 1, 100_000, "most rows per `_all_docs` request: bigger pages mean fewer scarce global queries"),
    Tunable("PART_SIZE_MB", 5, 5, 5 * 1024, "first multipart part size in MiB (COS minimum 5); grows so that 10,000 parts always suffice"),
    Tunable("PROGRESS_EVERY", 10_000, 1, 10**9, "log a progress line every N documents"),
    Tunable("REQUEST_TIMEOUT", 120, 1, 3600, "seconds before one HTTP request to Cloudant or COS gives up"),
    Tunable("MAX_RETRIES", 5, 0, 20, "retries of one request on 429/5xx/connection errors (honours Retry-After)"),
    Tunable("RESTORE_BATCH_SIZE", 500, 1, 10_000, "documents per `_bulk_docs` request when restoring"),
    Tunable("RESTORE_PARALLELISM", 5, 1, 64, "`_bulk_docs` requests in flight at once when restoring"),
    Tunable("TIME_BUDGET", 0, 0, 86_400, "seconds this run may take (0: none; the action also obeys __OW_DEADLINE); "
            "a backup reaching it stores a checkpoint and the next run continues"),
    Tunable("SAFETY_MARGIN", 0, 0, 3600, "seconds before the deadline to stop and checkpoint (0: a quarter of the time, 1-30 s)"),
    Tunable("CHECKPOINT_MAX_AGE_HOURS", 48, 1, 24 * 365,
            "a checkpoint older than this is abandoned (upload aborted) and a fresh backup starts"),
    Tunable("MAX_HOPS", 50, 0, 10_000, "CONTINUE_ASYNC: at most this many self re-invocations for one backup"),
    Tunable("KEEP_LAST", 0, 0, 100_000, "after a backup, keep only the newest N backups of the database (0: keep all)"),
    Tunable("KEEP_DAYS", 0, 0, 100_000, "after a backup, delete backups older than N days (0: keep all)"),
    Tunable("FULL_EVERY", 6, 0, 100_000, "incremental mode: a chain holds at most N incrementals after its full "
            "backup, then the next backup is full (0: never)"),
    Tunable("LIST_LIMIT", 1000, 1, 1_000_000, "list: at most N backups in the result, newest first (an action's result "
            "must stay under 1 MB)"),
    Tunable("MAX_AGE_HOURS", 26, 1, 24 * 365, "status: a database whose newest complete backup is older than this "
            "(or that has none) is stale"),
    Tunable("COMPRESSION_LEVEL", 0, 0, 19, "the codec's level (0: its default, gzip 1 and zstd 3; gzip takes 1-9, "
            "zstd 1-19)"),
    Tunable("DRILL_SAMPLE", 100, 0, 100_000, "drill: how many documents of the backup to compare with the live "
            "source too (those unchanged since the backup must be equal; 0: none)"),
)
BACKUP_MODES = ("full", "incremental")
# Parameters that carry no secret: the only ones passed on when the action invokes itself (continuing a
# backup, fanning out databases). Credentials come from the action's bound parameters on the platform, and so does
# IAM_TOKEN_URL: the IAM API keys are sent to it, so it never travels in a payload.
PUBLIC_PARAMS = (
    "OPERATION", "BACKUP_MODE", "COS_PREFIX", "COS_BUCKET", "COS_ENDPOINT", "CONTINUE_ASYNC",
    "CLOUDANT_GZIP", "ATTACHMENTS", "RESTORE_SECURITY", "NOTIFY_ON", "COMPRESSION", "ENCRYPT_TO",
    "INCLUDE_SYSTEM_DBS", "DISABLE_TLS_VERIFY", *(t.name for t in TUNABLES),
)
# Every parameter this tool reads (tests/unit/test_typos.py checks that load_config reads no other). Any other name
# that looks like one of these is probably a typo: it gets a warning (see `unknown_parameters`).
PARAMETERS = (
    "OPERATION", "CLOUDANT_URL", "CLOUDANT_DB", "CLOUDANT_IAM_KEY", "CLOUDANT_USERNAME", "CLOUDANT_PASSWORD",
    "CLOUDANT_GZIP", "COS_ENDPOINT", "COS_BUCKET", "COS_API_KEY", "COS_SERVICE_INSTANCE_ID", "COS_ACCESS_KEY_ID",
    "COS_SECRET_ACCESS_KEY", "COS_PREFIX", "COS_KEY", "IAM_TOKEN_URL", "DISABLE_TLS_VERIFY", "SOURCE_DB", "SOURCE_URL",
    "CREATE_TARGET", "ALLOW_NON_EMPTY_TARGET", "BACKUP_MODE", "CONTINUE_ASYNC", "CONTINUE_HOP", "INCLUDE_SYSTEM_DBS",
    "ATTACHMENTS", "RESTORE_SECURITY", "DRILL_DB", "NOTIFY_URL", "NOTIFY_ON", "COMPRESSION", "ENCRYPT_TO",
    "AGE_IDENTITY", "OUTPUT", *(t.name for t in TUNABLES),
)
# An unknown name with one of these prefixes is meant for us, whatever else it says.
OUR_PREFIXES = ("CLOUDANT_", "COS_", "BACKUP_", "RESTORE_", "KEEP_", "FULL_", "DRILL_", "NOTIFY_", "AGE_", "ENCRYPT_",
                "COMPRESSION")
# ...and so is one this close to a parameter's name (insertions, deletions, substitutions, swaps).
TYPO_DISTANCE = 2


@dataclass(frozen=True)
class CloudantConfig:
    url: str  # scheme://host[:port], never with credentials
    auth: str  # "iam" | "basic" | "none"
    iam_key: Secret | None = None
    username: str | None = None
    password: Secret | None = None
    iam_token_url: str = DEFAULT_IAM_TOKEN_URL
    verify_tls: bool = True
    gzip: bool = False  # CLOUDANT_GZIP: compress request and response bodies

    @property
    def host(self) -> str:
        return host_of(self.url)


@dataclass(frozen=True)
class CosConfig:
    endpoint: str  # scheme://host[:port]
    bucket: str
    auth: str  # "iam" | "hmac"
    api_key: Secret | None = None
    service_instance_id: str | None = None
    access_key_id: str | None = None
    secret_access_key: Secret | None = None
    iam_token_url: str = DEFAULT_IAM_TOKEN_URL
    prefix: str = ""
    verify_tls: bool = True


@dataclass(frozen=True)
class Notify:
    url: Secret  # a webhook URL carries its token in its path (Slack's do): masked like a password
    always: bool = False  # NOTIFY_ON=always: every run's result, not only failures


@dataclass(frozen=True)
class Config:
    operation: str
    db: str | None
    cloudant: CloudantConfig | None
    cos: CosConfig
    tuning: dict[str, int] = field(default_factory=dict)
    key: str | None = None  # COS_KEY: the backup object to restore/verify, or "latest"
    source_db: str | None = None  # SOURCE_DB: whose latest backup to restore
    source_host: str | None = None  # the server whose backups `latest` means: SOURCE_URL, else CLOUDANT_URL
    create_target: bool = False
    allow_non_empty: bool = False
    mode: str = "full"  # BACKUP_MODE
    dbs: tuple[str, ...] | None = None  # CLOUDANT_DB="*" (None: every database) or "a,b": several databases
    many: bool = False  # True when CLOUDANT_DB named several databases (or "*")
    include_system_dbs: bool = False
    continue_async: bool = False
    attachments: bool = True  # ATTACHMENTS: back attachments up inline
    # RESTORE_SECURITY: give the target the backup's `_security`; None (unset): only to a target the restore created
    restore_security: bool | None = None
    hop: int = 0  # CONTINUE_HOP: how many times this backup already re-invoked itself
    drill_db: str | None = None  # DRILL_DB: the scratch database a drill restores into (None: a name made up)
    notify: Notify | None = None  # NOTIFY_URL / NOTIFY_ON
    compression: str = "gzip"  # COMPRESSION of a new backup (a backup being continued keeps its own)
    compression_level: int | None = None  # COMPRESSION_LEVEL (None: the codec's default)
    recipients: tuple[str, ...] = ()  # ENCRYPT_TO: age public keys a new backup is encrypted to (none: not encrypted)
    identities: Identities | None = None  # AGE_IDENTITY: the private keys that read encrypted backups
    output: str | None = None  # OUTPUT: where `decrypt` writes the plain backup file
    public_params: dict[str, Any] = field(default_factory=dict)  # PUBLIC_PARAMS as given
    # What the run should say before it starts (log and result): probable typos, an anonymous connection.
    warnings: tuple[str, ...] = ()

    def tune(self, name: str) -> int:
        return self.tuning[name]


class _Problems:
    """Collects every problem so the user fixes them all in one go."""

    def __init__(self, args: Mapping[str, Any]) -> None:
        self.args = args
        self.items: list[str] = []

    def add(self, message: str) -> None:
        self.items.append(message)

    def text(self, name: str, required: bool = False) -> str | None:
        value = self.args.get(name)
        if value is None:
            if required:
                self.add(f"{name} is missing")
            return None
        if not isinstance(value, str):
            self.add(f"{name} must be a string, got {type(value).__name__}")
            return None
        value = value.strip()
        if not value:
            if required:
                self.add(f"{name} is empty")
            return None
        return value

    def secret(self, name: str) -> Secret | None:
        value = self.text(name)
        return Secret(value) if value is not None else None

    def integer(self, t: Tunable) -> int:
        value = self.args.get(t.name)
        if value is None or (isinstance(value, str) and not value.strip()):
            return t.default
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            self.add(f"{t.name} must be an integer, got {type(value).__name__}")
            return t.default
        try:
            number = int(value.strip()) if isinstance(value, str) else value
        except ValueError:
            self.add(f"{t.name} must be an integer, got {value!r}")
            return t.default
        if not t.low <= number <= t.high:
            self.add(f"{t.name} must be between {t.low} and {t.high}, got {number}")
            return t.default
        return number

    def optional_flag(self, name: str, default: bool | None = None) -> bool | None:
        """A flag that may be left unset (None, or an empty string): then `default`."""
        value = self.args.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            return default
        return self.flag(name)

    def flag(self, name: str) -> bool:
        value = self.args.get(name)
        if value is None or isinstance(value, bool):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in ("", "0", "false", "no"):
            return False
        if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes"):
            return True
        self.add(f"{name} must be true or false, got {value!r}")
        return False


def check_db_name(name: str, param: str, system: bool = True) -> str | None:
    """The reason CouchDB would reject this database name, or None.

    The system databases are valid names; `system=False` refuses them too (a restore target).
    """
    if len(name) > _DB_NAME_MAX:
        return f"{param} is longer than {_DB_NAME_MAX} characters"
    if name in SYSTEM_DBS:
        if system:
            return None
        return (
            f"{param} {name!r} is a system database: restoring into it is not supported "
            "(restore into a new database and copy the documents you need)"
        )
    if not _DB_NAME.match(name):
        return (
            f"{param} {name!r} is not a valid database name: it must start with a lowercase letter "
            f"and contain only a-z, 0-9 and _$()+-/ (the system databases {', '.join(SYSTEM_DBS)} are the "
            "only names starting with '_')"
        )
    return None


def _distance(a: str, b: str) -> int:
    """Edit distance (optimal string alignment: an insertion, deletion, substitution or swap of neighbours each
    count 1)."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        row = [i]
        for j, cb in enumerate(b, 1):
            cost = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, previous2[j - 2] + 1)
            row.append(cost)
        previous2, previous = previous, row
    return previous[-1]


def _closest(name: str) -> tuple[str, int]:
    """The parameter whose name is nearest to `name` (case ignored), and how near."""
    upper = name.strip().upper()
    return min(((known, _distance(upper, known)) for known in PARAMETERS), key=lambda pair: pair[1])


def looks_like_ours(name: str) -> bool:
    """A parameter, or a name that is probably meant to be one: one of OUR_PREFIXES, or within TYPO_DISTANCE of a
    parameter's name (case ignored). Never a platform field: a trigger's `__ow_*`, an activation's `__OW_*`."""
    if not isinstance(name, str) or name.lower().startswith("__ow_"):
        return False
    upper = name.strip().upper()
    return upper.startswith(OUR_PREFIXES) or _closest(name)[1] <= TYPO_DISTANCE


def from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """The parameters in an environment (a shell, a Code Engine job): the names that are, or look like, ours (a
    look-alike then warns as a typo); never PATH and the like."""
    return {name: value for name, value in environ.items() if looks_like_ours(name)}


def unknown_parameters(names: Iterable[Any]) -> list[str]:
    """A warning for each name that is not a parameter but looks like one, with the parameter it probably means."""
    warnings = []
    for name in names:
        if name in PARAMETERS or not looks_like_ours(name):
            continue
        known, distance = _closest(name)
        if distance <= max(TYPO_DISTANCE, len(known) // 4):
            warnings.append(f"unknown parameter {name} (did you mean {known}?)")
        else:
            warnings.append(f"unknown parameter {name} (ignored)")
    return warnings


def _is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: a token endpoint on this machine (a test's stand-in)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_of(url: str) -> str:
    """The server a `scheme://host[:port]` URL names, as backups record it: host[:port], the scheme's default
    port left out (https://h and https://h:443 are one server), never credentials."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is not None and port != {"https": 443, "http": 80}.get(parts.scheme):
        host += f":{port}"
    return host


def _source_host(p: _Problems, cloudant: CloudantConfig | None) -> str | None:
    """SOURCE_URL (the server a backup was made from, when restoring into another one), else CLOUDANT_URL."""
    raw = p.text("SOURCE_URL")
    if raw is None:
        if cloudant is not None:
            return cloudant.host
        raw = p.text("CLOUDANT_URL")  # list and verify: optional, only to say whose backups
        name = "CLOUDANT_URL"
    else:
        name = "SOURCE_URL"
    if raw is None:
        return None
    split = _split_url(p, name, raw, default_scheme="https")
    return host_of(split[0]) if split is not None else None


def _without_userinfo(value: str) -> str:
    """The value safe to echo in a message: everything up to its last '@' is masked.

    With or without a scheme, and whatever the password holds ('/', '?', '#', '@', '://'), userinfo ends
    at an '@', so nothing before the last one is shown; only a well-formed scheme at the start is kept.
    """
    if "@" not in value:
        return value
    scheme = _SCHEME.match(value)
    return (scheme.group(0) if scheme else "") + MASK + "@" + value.rpartition("@")[2]


def _sdk_refuses(value: str) -> bool:
    """The IBM Cloud SDK core (has_bad_first_or_last_char) refuses a credential or service URL that starts
    with '{' or '"' or ends with '}' or '"': it raises ValueError when the client is created."""
    return bool(value) and (value[0] in '{"' or value[-1] in '}"')


def _check_credential(p: _Problems, what: str, value: str | None) -> None:
    if value is not None and _sdk_refuses(value):
        p.add(f"{what} must not start or end with {{, }} or \" (the IBM Cloud SDK refuses it): "
              "remove any braces or quotes around it")


def _host_is_valid(host: str) -> bool:
    """Letters, digits and '.-_' (a name, IDNs included), or ':' and '%' (an IPv6 address and its zone)."""
    return all(ch.isalnum() or ch in ".-_:%" for ch in host)


def _split_url(p: _Problems, name: str, value: str, default_scheme: str | None) -> tuple[str, str | None, str | None] | None:
    """Check a service URL; return (scheme://host[:port], user, password) or None after adding a problem.

    Messages never echo the credentials a URL may carry, even a malformed one.
    """
    if "://" not in value:
        if default_scheme is None:
            p.add(f"{name} must start with https:// or http://, got {_without_userinfo(value)!r}")
            return None
        value = f"{default_scheme}://{value}"
    try:
        parts = urlsplit(value)
        port = parts.port  # raises on a non-numeric or out-of-range port
    except ValueError:
        # urlsplit's own text quotes the port, which may be part of a password with an unencoded '#', '/' or '?'
        p.add(f"{name} is not a valid URL: bad port, or an unencoded '#', '/', '?' or '@' in its credentials")
        return None
    if parts.scheme not in ("http", "https"):
        p.add(f"{name} must use https:// or http://, got {parts.scheme}://")
        return None
    if not parts.hostname:
        p.add(f"{name} has no host name")
        return None
    if not _host_is_valid(parts.hostname):
        p.add(f"{name} has an invalid host name (letters, digits, '.', '-' and '_' only, or an IPv6 address in [])")
        return None
    if port == 0:
        p.add(f"{name} has port 0")
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        p.add(f"{name} must be just scheme://host[:port], without a path, query or fragment")
        return None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    base = f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return base, user, password


def _cloudant(p: _Problems, verify_tls: bool, token_url: str) -> CloudantConfig | None:
    gzip = p.flag("CLOUDANT_GZIP")
    raw_url = p.text("CLOUDANT_URL", required=True)
    iam_key = p.secret("CLOUDANT_IAM_KEY")
    username = p.text("CLOUDANT_USERNAME")
    password = p.secret("CLOUDANT_PASSWORD")
    split = _split_url(p, "CLOUDANT_URL", raw_url, default_scheme=None) if raw_url is not None else None
    url, url_user, url_password = split if split is not None else (None, None, None)
    _check_credential(p, "CLOUDANT_IAM_KEY", iam_key.reveal() if iam_key else None)
    _check_credential(p, "CLOUDANT_USERNAME", username)
    _check_credential(p, "CLOUDANT_PASSWORD", password.reveal() if password else None)
    _check_credential(p, "the user name in CLOUDANT_URL", url_user)
    _check_credential(p, "the password in CLOUDANT_URL", url_password)
    if url_user is not None:
        # Credentials inside the URL are accepted as basic auth, then kept out of the URL (and every message).
        if url_password is None:
            p.add("CLOUDANT_URL has a user name but no password; use CLOUDANT_USERNAME and CLOUDANT_PASSWORD")
        elif username or password:
            p.add("CLOUDANT_URL carries credentials and CLOUDANT_USERNAME/CLOUDANT_PASSWORD are set too; give one")
        else:
            username, password = url_user, Secret(url_password)
    if username and not password:
        p.add("CLOUDANT_USERNAME is set but CLOUDANT_PASSWORD is missing")
    if password and not username:
        p.add("CLOUDANT_PASSWORD is set but CLOUDANT_USERNAME is missing")
    if iam_key and (username or password):
        p.add("give either CLOUDANT_IAM_KEY (IAM) or CLOUDANT_USERNAME + CLOUDANT_PASSWORD (basic auth), not both")
    if url is None or p.items:
        return None
    if iam_key:
        return CloudantConfig(url, "iam", iam_key=iam_key, iam_token_url=token_url, verify_tls=verify_tls,
                              gzip=gzip)
    if username and password:
        return CloudantConfig(url, "basic", username=username, password=password, verify_tls=verify_tls,
                              gzip=gzip)
    return CloudantConfig(url, "none", verify_tls=verify_tls, gzip=gzip)


def _cos(p: _Problems, verify_tls: bool, token_url: str) -> CosConfig | None:
    raw_endpoint = p.text("COS_ENDPOINT", required=True)
    bucket = p.text("COS_BUCKET", required=True)
    api_key = p.secret("COS_API_KEY")
    instance = p.text("COS_SERVICE_INSTANCE_ID")
    access_key = p.text("COS_ACCESS_KEY_ID")
    secret_key = p.secret("COS_SECRET_ACCESS_KEY")
    prefix = p.text("COS_PREFIX") or ""
    endpoint = None
    if raw_endpoint is not None:
        split = _split_url(p, "COS_ENDPOINT", raw_endpoint, default_scheme="https")
        if split is not None:
            endpoint = split[0]
            if split[1] is not None:
                p.add("COS_ENDPOINT must not carry credentials; use COS_ACCESS_KEY_ID/COS_SECRET_ACCESS_KEY or COS_API_KEY")
                endpoint = None
    if bucket is not None and (
        not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket)
        or ".." in bucket
        or re.fullmatch(r"\d+\.\d+\.\d+\.\d+", bucket)
    ):
        p.add(f"COS_BUCKET {bucket!r} is not a valid bucket name (3-63 characters: a-z, 0-9, '.', '-')")
    if prefix.startswith("/"):
        p.add("COS_PREFIX must not start with '/'")
    iam = api_key is not None or instance is not None
    hmac = access_key is not None or secret_key is not None
    auth = None
    if iam and hmac:
        p.add("give either COS_API_KEY + COS_SERVICE_INSTANCE_ID (IAM) or COS_ACCESS_KEY_ID + COS_SECRET_ACCESS_KEY (HMAC), not both")
    elif iam:
        if api_key is None:
            p.add("COS_SERVICE_INSTANCE_ID is set but COS_API_KEY is missing")
        elif instance is None:
            p.add("COS_API_KEY is set but COS_SERVICE_INSTANCE_ID is missing")
        else:
            auth = "iam"
    elif hmac:
        if access_key is None:
            p.add("COS_SECRET_ACCESS_KEY is set but COS_ACCESS_KEY_ID is missing")
        elif secret_key is None:
            p.add("COS_ACCESS_KEY_ID is set but COS_SECRET_ACCESS_KEY is missing")
        else:
            auth = "hmac"
    else:
        p.add("COS credentials are missing: give COS_API_KEY + COS_SERVICE_INSTANCE_ID or COS_ACCESS_KEY_ID + COS_SECRET_ACCESS_KEY")
    if endpoint is None or bucket is None or auth is None:
        return None
    return CosConfig(
        endpoint, bucket, auth, api_key=api_key, service_instance_id=instance, access_key_id=access_key,
        secret_access_key=secret_key, iam_token_url=token_url, prefix=prefix, verify_tls=verify_tls,
    )


def load_config(args: Mapping[str, Any]) -> Config:
    """Validate every parameter; raise one ConfigError listing all problems. Unknown keys are ignored, but those
    that look like a parameter (a typo) are named in `Config.warnings` (and in the error, if there is one)."""
    if not isinstance(args, Mapping):
        raise ConfigError(f"parameters must be a JSON object, got {type(args).__name__}")
    p = _Problems(args)
    operation = (p.text("OPERATION") or "backup").lower()
    if operation not in OPERATIONS:
        p.add(f"OPERATION must be one of {', '.join(OPERATIONS)}, got {args.get('OPERATION')!r}")
    token_url = p.text("IAM_TOKEN_URL") or DEFAULT_IAM_TOKEN_URL
    try:
        token_parts = urlsplit(token_url) if "://" in token_url else None
        token_port = token_parts.port if token_parts is not None else None  # raises on a bad port
    except ValueError:
        p.add("IAM_TOKEN_URL is not a valid URL: bad port or IPv6 address, or an unencoded '#', '/', '?' or '@' "
              "in its credentials")
    else:
        if token_parts is not None and token_parts.password:  # basic auth to a private IAM proxy: a secret
            register(token_parts.password)
            register(unquote(token_parts.password))
        if token_parts is None or token_parts.scheme not in ("http", "https") or not token_parts.hostname:
            p.add(f"IAM_TOKEN_URL must be an https:// or http:// URL, got {_without_userinfo(token_url)!r}")
        elif token_port == 0:
            p.add("IAM_TOKEN_URL has port 0")
        elif not _host_is_valid(token_parts.hostname):
            p.add("IAM_TOKEN_URL has an invalid host name (letters, digits, '.', '-' and '_' only, or an IPv6 "
                  "address in [])")
        elif token_parts.scheme != "https" and not _is_loopback(token_parts.hostname):
            # The IAM API keys are sent to it: in clear text over http, anyone on the way could take them.
            p.add(f"IAM_TOKEN_URL must use https:// (http:// only on a loopback host: 127.0.0.1, ::1 or localhost), "
                  f"got {_without_userinfo(token_url)!r}")
    verify_tls = not p.flag("DISABLE_TLS_VERIFY")
    needs_db = operation in ("backup", "restore", "drill")
    db = p.text("CLOUDANT_DB", required=needs_db)
    dbs: tuple[str, ...] | None = None
    many = False
    if db is not None and operation in ("backup", "status") and (db == "*" or "," in db):
        many = True
        if db != "*":
            dbs = tuple(name.strip() for name in db.split(",") if name.strip())
            for name in dbs:
                if problem := check_db_name(name, "CLOUDANT_DB"):
                    p.add(problem)
    elif db is not None and (problem := check_db_name(db, "CLOUDANT_DB", system=operation != "restore")):
        p.add(problem)
    source_db = p.text("SOURCE_DB")
    if source_db is not None and (problem := check_db_name(source_db, "SOURCE_DB")):
        p.add(problem)
    key = p.text("COS_KEY", required=operation in ("restore", "verify", "decrypt"))
    output = p.text("OUTPUT", required=operation == "decrypt")
    if operation in ("verify", "decrypt") and key == "latest" and not (source_db or db):
        p.add("COS_KEY latest needs SOURCE_DB (or CLOUDANT_DB) to say whose backups")
    if operation == "restore" and key == "latest" and not source_db:
        p.add("COS_KEY latest needs SOURCE_DB: the database whose newest backup to restore")
    drill_db = p.text("DRILL_DB")
    if drill_db is not None and (problem := check_db_name(drill_db, "DRILL_DB", system=False)):
        p.add(problem)
    elif drill_db is not None and drill_db == db and operation == "drill":
        p.add(f"DRILL_DB must not be CLOUDANT_DB ({db!r}): a drill restores into a new scratch database and "
              "deletes it afterwards, it never writes into the source")
    # status of every database of the account ("*") asks Cloudant for their names; of named ones, only COS
    needs_cloudant = needs_db or (operation == "status" and db == "*")
    cloudant = _cloudant(p, verify_tls, token_url) if needs_cloudant else None
    source_host = _source_host(p, cloudant) if not (needs_cloudant and cloudant is None) else None
    cos = _cos(p, verify_tls, token_url)
    tuning = {t.name: p.integer(t) for t in TUNABLES}
    budget, margin = tuning["TIME_BUDGET"], tuning["SAFETY_MARGIN"]
    if budget and margin and margin >= budget:
        p.add(f"SAFETY_MARGIN ({margin}) must be less than TIME_BUDGET ({budget}): the run stops SAFETY_MARGIN "
              "seconds before its budget ends, so it would stop at once and back nothing up")
    mode = (p.text("BACKUP_MODE") or "full").lower()
    if mode not in BACKUP_MODES:
        p.add(f"BACKUP_MODE must be full or incremental, got {args.get('BACKUP_MODE')!r}")
    hop = p.integer(Tunable("CONTINUE_HOP", 0, 0, 1_000_000, ""))
    include_system_dbs = p.flag("INCLUDE_SYSTEM_DBS")
    continue_async = p.flag("CONTINUE_ASYNC")
    create_target = p.flag("CREATE_TARGET")
    allow_non_empty = p.flag("ALLOW_NON_EMPTY_TARGET")
    attachments = p.optional_flag("ATTACHMENTS", True)
    restore_security = p.optional_flag("RESTORE_SECURITY")
    notify = notify_of(args, p)
    compression, level = _compression(p, tuning["COMPRESSION_LEVEL"])
    recipients, identities = _keys(p)
    warnings = unknown_parameters(args)
    if p.items:
        raise ConfigError("invalid parameters: " + "; ".join(p.items + warnings))  # a typo may be why
    assert cos is not None and (cloudant is not None or not needs_cloudant)
    if cloudant is not None and cloudant.auth == "none":
        warnings.append("no Cloudant credentials (CLOUDANT_IAM_KEY, CLOUDANT_USERNAME + CLOUDANT_PASSWORD, or "
                        "user:password in CLOUDANT_URL): connecting anonymously")
    return Config(
        operation=operation, db=db, cloudant=cloudant, cos=cos, tuning=tuning, key=key, source_db=source_db,
        source_host=source_host, create_target=create_target, allow_non_empty=allow_non_empty, mode=mode, dbs=dbs, many=many,
        include_system_dbs=include_system_dbs, continue_async=continue_async, hop=hop,
        attachments=bool(attachments), restore_security=restore_security, drill_db=drill_db, notify=notify,
        compression=compression, compression_level=level, recipients=recipients, identities=identities, output=output,
        public_params={name: args[name] for name in PUBLIC_PARAMS if args.get(name) is not None},
        warnings=tuple(warnings),
    )


def _compression(p: _Problems, level: int) -> tuple[str, int | None]:
    """COMPRESSION and COMPRESSION_LEVEL (0: the codec's default)."""
    codec = (p.text("COMPRESSION") or DEFAULT_CODEC).lower()
    if codec not in CODECS:
        p.add(f"COMPRESSION must be one of {', '.join(CODECS)}, got {p.args.get('COMPRESSION')!r}")
        return DEFAULT_CODEC, None
    if level and codec == "none":
        p.add("COMPRESSION_LEVEL is set but COMPRESSION is none")
    elif level > 9 and codec == "gzip":
        p.add(f"COMPRESSION_LEVEL must be between 1 and 9 for gzip, got {level}")
    return codec, level or None


def _keys(p: _Problems) -> tuple[tuple[str, ...], Identities | None]:
    """ENCRYPT_TO (public keys: not secret) and AGE_IDENTITY (private keys: registered as secrets before they are
    parsed, each key line too, so no message can show one)."""
    recipients: tuple[str, ...] = ()
    identities = None
    raw = p.text("ENCRYPT_TO")
    if raw is not None:
        try:
            recipients = parse_recipients(raw)
        except ConfigError as exc:
            p.add(str(exc))
    secret = p.secret("AGE_IDENTITY")
    if secret is not None:
        for line in secret.reveal().splitlines():
            if line.strip().upper().startswith(IDENTITY_PREFIX):
                register(line.strip())
        try:
            identities = Identities.parse(secret.reveal())
        except ConfigError as exc:
            p.add(str(exc))
    return recipients, identities


def notify_of(args: Mapping[str, Any], p: _Problems | None = None) -> Notify | None:
    """NOTIFY_URL and NOTIFY_ON checked on their own: a run whose other parameters are wrong still tells the
    webhook so (its problems go to `p`, when given). None: no notification (unset, or not valid)."""
    p = p if p is not None else _Problems(args)
    before = len(p.items)
    raw = p.text("NOTIFY_URL")
    on = (p.text("NOTIFY_ON") or "failure").lower()
    if on not in NOTIFY_ON:
        p.add(f"NOTIFY_ON must be failure or always, got {args.get('NOTIFY_ON')!r}")
    if raw is None:
        return None
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        p.add("NOTIFY_URL is not a valid URL")
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        p.add("NOTIFY_URL must be an https:// URL (http:// only on a loopback host)")
    elif parts.scheme == "http" and not _is_loopback(parts.hostname):
        # The result (and the URL's own token) would cross the network in clear text.
        p.add("NOTIFY_URL must use https:// (http:// only on a loopback host: 127.0.0.1, ::1 or localhost)")
    if len(p.items) > before:
        return None  # not registered: a bad value ("https://") is never echoed, and masking it would mangle text
    if len(parts.path) >= 12:  # a webhook's token is in its path, which an HTTP library's error may quote alone
        register(parts.path)
    return Notify(Secret(raw), always=on == "always")  # Secret registers the whole URL
