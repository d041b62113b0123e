"""Cloudant/CouchDB I/O through the official `ibmcloudant` SDK: client, errors, paging, bulk writes.

Every SDK or HTTP exception is turned here, once, into a `CloudantError` whose message says what
failed and where (database and host, never credentials).
"""

from __future__ import annotations

import functools
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit

import requests
from ibm_cloud_sdk_core import ApiException
from ibm_cloud_sdk_core.authenticators import BasicAuthenticator, IAMAuthenticator, NoAuthAuthenticator
from ibm_cloud_sdk_core.http_adapter import SSLHTTPAdapter
from ibmcloudant.cloudant_v1 import CloudantV1
from urllib3.util.retry import Retry

from backup import interrupt
from backup.config import CloudantConfig
from backup.errors import CloudantError, Interrupted
from backup.leaves import live_leaves as _row_live_leaves
from backup.log import Log
from backup.rows import Doc, Page, RowsFormatError, bulk_get_answers, iter_docs, iter_rows, page_docs, page_limit

# `_all_docs` has no "until the end" on pouchdb-server without an end_key (it drops ids starting at or
# above U+00FF); U+10FFFF sorts after every real id under CouchDB's raw collation too.
END_KEY = "\U0010ffff"
# Network faults *inside* a response body (a cut connection mid-page) are not retried by the SDK's
# urllib3 retry, which only sees the request; a page is re-fetched this many times before giving up.
BODY_RETRIES = 3
# Bytes read from a streamed response at a time.
STREAM_CHUNK = 256 * 1024
# Largest `_all_docs` response held whole (to be spliced); a bigger one is decoded row by row as it streams.
# Callers size pages to about half of this.
PAGE_BUFFER = 16 * 1024 * 1024

T = TypeVar("T")


def make_client(cfg: CloudantConfig, timeout: int, max_retries: int, log: Log | None = None) -> CloudantV1:
    """A client with retries on 429/5xx (honouring Retry-After) and a timeout on every request; with `log`,
    each retry logs a line (see `LoggedRetry`)."""
    if cfg.auth == "iam":
        assert cfg.iam_key is not None
        auth: Any = IAMAuthenticator(  # the token exchange always checks TLS: DISABLE_TLS_VERIFY is for CLOUDANT_URL only
            cfg.iam_key.reveal(), url=cfg.iam_token_url, disable_ssl_verification=False
        )
    elif cfg.auth == "basic":
        assert cfg.username is not None and cfg.password is not None
        auth = BasicAuthenticator(cfg.username, cfg.password.reveal())
    else:
        auth = NoAuthAuthenticator()
    client = CloudantV1(authenticator=auth)
    client.set_service_url(cfg.url)
    client.set_http_config({"timeout": (min(timeout, 30), timeout)})
    client.set_disable_ssl_verification(not cfg.verify_tls)
    if not cfg.gzip:
        # Off unless CLOUDANT_GZIP: in IBM Cloud the link to Cloudant is fast and the pages are fetched one
        # after another, so the time the server takes to compress each page (and we to inflate it) is pure
        # delay; gzip pays on a slow link (a laptop over the internet).
        client.set_default_headers({"Accept-Encoding": "identity"})
        client.set_enable_gzip_compression(False)
    if max_retries:
        client.enable_retries(max_retries=max_retries, retry_interval=30.0)
        if log is not None:
            enable_logged_retries(client, _retry_logger(log))
    return client


# A retry about to be made: (method, URL, HTTP status or None, error or None, number of the attempt it makes,
# seconds waited before it).
RetryCallback = Callable[[str | None, str | None, int | None, Exception | None, int, float | None], None]


class LoggedRetry(Retry):
    """urllib3's Retry that tells `on_retry` about each retry before its wait: the SDK's retries say nothing
    while they wait (up to 30 s each). Its copies (`new`, one per attempt) keep the callback."""

    on_retry: RetryCallback | None = None

    def new(self, **kw: Any) -> Self:
        retry = super().new(**kw)
        retry.on_retry = self.on_retry
        return retry

    def increment(self, method: str | None = None, url: str | None = None, response: Any = None,
                  error: Exception | None = None, _pool: Any = None, _stacktrace: Any = None) -> Self:
        retry = super().increment(method, url, response, error, _pool, _stacktrace)  # raises when exhausted
        if self.on_retry is not None:
            try:
                self.on_retry(method, url, getattr(response, "status", None) if error is None else None, error,
                              len(retry.history) + 1, retry.wait_before(response))
            except Exception:  # noqa: BLE001 - a log line never fails the request it describes
                pass
        return retry

    def wait_before(self, response: Any = None) -> float | None:
        """What `sleep(response)` waits: the response's Retry-After when honoured and set, else the backoff."""
        try:
            if self.respect_retry_after_header and response is not None:
                after = self.get_retry_after(response)
                if after:
                    return float(after)
            return float(self.get_backoff_time())
        except Exception:  # noqa: BLE001 - an unparsable Retry-After: urllib3's sleep reports it
            return None


def enable_logged_retries(client: CloudantV1, on_retry: RetryCallback) -> None:
    """Replace the retries `client.enable_retries` set up by the same policy (the SDK's: its status list, its
    methods including POST, Retry-After honoured, its backoff and cap) as a LoggedRetry calling `on_retry`, mounted
    the way the SDK mounts its own (and remounts it, e.g. in set_disable_ssl_verification: `retry_config`)."""
    sdk = client.retry_config
    if sdk is None:
        return
    retry = LoggedRetry(
        total=sdk.total, connect=sdk.connect, read=sdk.read, redirect=sdk.redirect, status=sdk.status, other=sdk.other,
        allowed_methods=sdk.allowed_methods, status_forcelist=sdk.status_forcelist, backoff_factor=sdk.backoff_factor,
        backoff_max=sdk.backoff_max, raise_on_redirect=sdk.raise_on_redirect, raise_on_status=sdk.raise_on_status,
        respect_retry_after_header=sdk.respect_retry_after_header, backoff_jitter=sdk.backoff_jitter,
        remove_headers_on_redirect=sdk.remove_headers_on_redirect, retry_after_max=sdk.retry_after_max,
    )
    retry.on_retry = on_retry
    client.retry_config = retry
    client.http_adapter = SSLHTTPAdapter(max_retries=retry, _disable_ssl_verification=client.disable_ssl_verification)
    client.http_client.mount("http://", client.http_adapter)
    client.http_client.mount("https://", client.http_adapter)


def request_path(url: str | None) -> str:
    """The path of a request's URL, without scheme, host, userinfo, query or fragment (a log may show it)."""
    return urlsplit(url or "").path or "/"


def error_name(error: BaseException) -> str:
    """A network error's class, with the one it wraps (urllib3's ProtocolError(..., RemoteDisconnected(...))):
    never its message, which may name the host."""
    inner = error.args[-1] if error.args else None
    return f"{type(error).__name__}({type(inner).__name__})" if isinstance(inner, BaseException) else type(error).__name__


def _retry_logger(log: Log) -> RetryCallback:
    def on_retry(method: str | None, url: str | None, status: int | None, error: Exception | None, attempt: int,
                 wait: float | None) -> None:
        fields: dict[str, Any] = {"service": "cloudant", "request": f"{method or '?'} {request_path(url)}"}
        if status is not None:
            fields["status"] = status
        if error is not None:
            fields["error"] = error_name(error)
        log.warning("retry", **fields, attempt=attempt, wait=None if wait is None else round(wait, 3))

    return on_retry


def describe(exc: BaseException, what: str, where: str) -> CloudantError:
    """One clear CloudantError for any failure of a Cloudant call."""
    if isinstance(exc, CloudantError):
        return exc
    if isinstance(exc, ApiException):
        code = exc.status_code
        response = exc.http_response
        url = response.url if response is not None and response.url else ""
        if "/identity/token" in url:  # the SDK's token manager always posts to <IAM_TOKEN_URL base>/identity/token
            return CloudantError(f"{what}: the IAM token endpoint refused CLOUDANT_IAM_KEY ({code}: {exc.message})")
        hints = {
            401: "the credentials were rejected (401 unauthorized): check CLOUDANT_IAM_KEY or CLOUDANT_USERNAME/CLOUDANT_PASSWORD",
            403: "permission denied (403 forbidden): the credentials lack access to this database",
            404: "not found (404): check CLOUDANT_DB and CLOUDANT_URL",
            413: "request too large (413)",
            429: "rate limited (429) after all retries: raise the Cloudant capacity or retry later",
        }
        detail = hints.get(code, f"HTTP {code}: {exc.message}")
        return CloudantError(f"{what} at {where}: {detail}", status=code)
    if isinstance(exc, requests.exceptions.RetryError):
        return CloudantError(f"{what} at {where}: still failing after all retries ({_reason(exc)})")
    if isinstance(exc, requests.exceptions.Timeout):
        return CloudantError(f"{what} at {where}: timed out ({_reason(exc)})")
    if isinstance(exc, requests.exceptions.RequestException):
        return CloudantError(f"{what} at {where}: connection failed ({_reason(exc)})")
    return CloudantError(f"{what} at {where}: {type(exc).__name__}: {exc}")


def _reason(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) < 300 else text[:300] + "..."


def call(what: str, where: str, fn: Callable[[], T]) -> T:
    """Run one SDK call, retrying body-level network faults, and translate any failure."""
    for attempt in range(BODY_RETRIES + 1):
        interrupt.check()  # a signal the SDK swallowed, or held during a clean-up, stops the run before its next request
        try:
            return fn()
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as exc:
            if attempt == BODY_RETRIES:
                raise describe(exc, what, where) from None
            time.sleep(min(2 ** attempt, 10))
        except Interrupted:  # a signal, raised inside the SDK's request: not a Cloudant failure
            raise
        except Exception as exc:  # noqa: BLE001 - the one place SDK errors become CloudantError
            raise describe(exc, what, where) from None
    raise AssertionError("unreachable")


# Faults inside a response body, after the SDK (whose retries see only the request) has handed it over.
_BODY_FAULTS = (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError, RowsFormatError)


def _after_body_fault(faults: int, exc: BaseException, what: str, where: str) -> int:
    """One more fault inside a response body: wait before asking again, or give up after BODY_RETRIES."""
    faults += 1
    if faults > BODY_RETRIES:
        raise describe(exc, what, where) from None
    time.sleep(min(2 ** faults, 10))
    return faults


def database_info(client: CloudantV1, db: str) -> dict[str, Any]:
    where = f"{client.service_url}/{db}"
    return call(f"reading database '{db}'", where, lambda: client.get_database_information(db=db).get_result())


def iter_pages(client: CloudantV1, db: str, max_rows: int, page_bytes: int, after: str | None = None,
               batch: int = 500, hint: tuple[int, int] | None = None,
               whole: bool = False) -> Iterator[list[tuple[str, bytes]]]:
    """Every live document (winning revision, design docs included) in id order, as (id, document JSON in
    the backup format), in batches of <= `batch`.

    Pages hold up to `max_rows` rows and about `page_bytes` of documents (the row limit follows the average
    document seen so far; for the first page, the database's own average from `hint`, see `rows.size_hint`),
    so requests stay few: `_all_docs` is Cloudant's scarcest request class. A page is read whole and spliced
    (`rows.page_docs`); one above PAGE_BUFFER bytes is decoded row by row as it streams instead, so memory
    stays bounded whatever the documents. Once a whole page is decoded, the next one is requested (`_Ahead`)
    while this one is spliced and handed on: the server works on it meanwhile instead of waiting for us.
    Paging uses start_key = last id seen (the extra first row is dropped), which never skips an id, unlike
    `last id + "\\u0000"`. A page cut mid-body is requested again from the last row received. With
    `after`, reading resumes after that id. With `whole`, the database is read in one request, streamed
    (for servers that lose rows when a page starts at some ids).

    Reading runs up to END_KEY, then once more from END_KEY without an end key: ids may sort after it
    (CouchDB orders raw UTF-8 bytes: "\\U0010ffff\\U0010ffff" does).
    """
    where = f"{client.service_url}/{db}"
    what = f"reading documents of '{db}'"

    def request(start: str | None, limit: int | None, end_key: str | None) -> Any:
        # conflicts: a document with conflicts says so (`_conflicts`), so its leaves are read too (see refetch.py)
        kwargs: dict[str, Any] = {"db": db, "include_docs": True, "conflicts": True}
        if end_key is not None:
            kwargs["end_key"] = end_key
        if limit is not None:
            kwargs["limit"] = limit
        if start is not None:
            kwargs["start_key"] = start
            if limit is not None:
                kwargs["limit"] = limit + 1  # its first row is `start` itself, dropped
        return call(what, where, lambda: client.post_all_docs_as_stream(**kwargs).get_result())

    last_id = after
    end_key: str | None = END_KEY if after is None or after <= END_KEY else None
    seen_docs = seen_bytes = 0
    ahead: _Ahead | None = None
    try:
        while True:
            limit: int | None
            if whole:
                limit = None
            elif ahead is not None:
                limit = ahead.limit
            else:
                limit = page_limit(max_rows, page_bytes, *(hint if hint and not seen_docs else (seen_docs, seen_bytes)))
            received, faults = 0, 0
            while True:  # one page; after a fault inside the body, the rest of it from the last row received
                rest = None if limit is None else limit - received
                response = ahead.response() if ahead is not None else request(last_id, rest, end_key)
                ahead = None
                docs: list[tuple[str, bytes]] = []
                skip, received_before = last_id, received
                try:
                    rows = _page_rows(response.iter_content(STREAM_CHUNK))
                    if isinstance(rows, Page):
                        response.close()
                        n_docs, n_bytes = rows.doc_sizes()
                        seen_docs, seen_bytes = seen_docs + n_docs, seen_bytes + n_bytes
                        new_rows = len(rows) - int(skip is not None and rows.first_id() == skip)
                        next_start = rows.last_id()
                        if limit is not None and received + new_rows >= limit and next_start is not None:
                            n = page_limit(max_rows, page_bytes, seen_docs, seen_bytes)  # not the last page
                            ahead = _Ahead(functools.partial(request, next_start, n, end_key), n)
                    for doc_id, doc in rows:
                        if skip is not None and doc_id == skip:
                            skip = None
                            continue
                        skip = None
                        received += 1
                        last_id = doc_id
                        if doc is not None:
                            if not isinstance(rows, Page):
                                seen_docs, seen_bytes = seen_docs + 1, seen_bytes + len(doc)
                            docs.append((doc_id, doc))
                            if len(docs) >= batch:
                                yield docs
                                docs = []
                    del rows  # frees the body before the next one arrives
                    if docs:
                        yield docs
                    break
                except _BODY_FAULTS as exc:
                    if ahead is not None:
                        ahead.drop()  # this page is read again first
                        ahead = None
                    if received > received_before:
                        faults = 0  # it got on: only faults in a row give up (a whole read may be cut often)
                    faults = _after_body_fault(faults, exc, what, where)
                    if docs:
                        yield docs  # rows already decoded are good: keep them, continue after them
                finally:
                    response.close()
            if limit is None or received < limit:  # the end up to end_key
                if end_key is None:
                    return
                end_key = None
                if last_id is None or last_id < END_KEY:
                    last_id = END_KEY  # a row of that id, if any, was read already: dropped as `start`
    finally:
        if ahead is not None:
            ahead.drop()  # stopped early (deadline, failure): its answer is not read


class _Ahead:
    """The next page's request, sent on a daemon thread (a stop never waits for it) while this page is
    spliced. Its answer is read by the caller; dropped, it is closed unread."""

    def __init__(self, send: Callable[[], Any], limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._answer: Any = None
        self._error: BaseException | None = None
        self._dropped = False
        self._thread = threading.Thread(target=self._run, args=(send,), name="next-page", daemon=True)
        self._thread.start()

    def _run(self, send: Callable[[], Any]) -> None:
        try:
            answer = send()
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread by response()
            self._error = exc
            return
        with self._lock:
            self._answer = answer
            if self._dropped:
                answer.close()

    def response(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._answer

    def drop(self) -> None:
        with self._lock:
            self._dropped = True
            if self._answer is not None:
                self._answer.close()


def _page_rows(chunks: Iterator[bytes]) -> Page | Iterator[Doc]:
    """The rows of one response: held whole and spliced when it fits in PAGE_BUFFER, else decoded as it streams."""
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) > PAGE_BUFFER:
            held = (bytes(body[i:i + STREAM_CHUNK]) for i in range(0, len(body), STREAM_CHUNK))
            return iter_docs(itertools.chain(held, chunks))
    page = page_docs(body)
    # msgspec refused it (an escaped lone surrogate, say): the slower decoder takes anything valid
    return iter_docs([body]) if page is None else page


def _result(method: Callable[..., Any], **kwargs: Any) -> Any:
    """One SDK request's result, for `call` (bound with functools.partial: a retry repeats the same request)."""
    return method(**kwargs).get_result()


def iter_changes(client: CloudantV1, db: str, since: Any, limit: int) -> Iterator[tuple[list[dict[str, Any]], Any, Any]]:
    """The changes feed from `since`, one page at a time: (results, since of the page, last_seq).

    Each result's `changes` lists every leaf revision of the doc (style=all_docs: conflicts and deleted
    leaves too), not only the winner: a backup holding only winners cannot carry a conflict's resolution.
    Sequences are opaque (CouchDB 3 / Cloudant strings like "29-g1AAAA..."): passed back as received,
    never compared or parsed. The feed is at-least-once: callers must be idempotent.
    """
    where = f"{client.service_url}/{db}/_changes"
    while True:
        page_since = since
        kwargs: dict[str, Any] = {"db": db, "limit": limit, "style": "all_docs"}
        if since is not None:
            kwargs["since"] = str(since) if not isinstance(since, str) else since
        result = call(f"reading changes of '{db}'", where, functools.partial(_result, client.post_changes, **kwargs))
        results = result.get("results", [])
        since = result.get("last_seq", since)
        yield results, page_since, since
        if len(results) < limit or result.get("pending") == 0:
            return


def iter_bulk_get(client: CloudantV1, db: str, items: list[dict[str, str]], attachments: bool = False,
                  latest: bool = False) -> Iterator[dict[str, Any] | bytes]:
    """The exact revisions asked for, with their `_revisions` history (deleted ones as tombstones), in the
    order asked, decoded one at a time as the response streams: 500 documents near Cloudant's 1 MB limit are
    never held at once, nor a page of documents with their attachments (`attachments`: their data inline, base64).
    With `latest`, a revision no longer a leaf answers as the newest leaf of its branch. After a fault inside the
    body the rest is asked for again. A document nested too deep to decode comes as its JSON in the backup format
    (bytes, spliced: see `rows.bulk_get_answers`).

    A revision that cannot be read fails the read with a CloudantError naming it, once the others are read;
    so does an answer that holds neither the revision nor an error for it (never skip a change silently).
    """
    if not items:  # an empty _bulk_get hangs some servers
        return
    where = f"{client.service_url}/{db}/_bulk_get"
    what = f"reading changed documents of '{db}'"
    answered, faults = 0, 0
    errors: list[dict[str, Any]] = []
    while answered < len(items):
        rest = items[answered:]
        response = call(what, where, functools.partial(_result, client.post_bulk_get_as_stream, db=db, docs=rest, revs=True,
                                                       attachments=attachments or None, latest=latest or None))
        try:
            for entry in iter_rows(response.iter_content(STREAM_CHUNK), array="results"):
                asked = items[answered] if answered < len(items) else {}  # answers come in the order asked
                answered += 1
                for answer in bulk_get_answers(entry):
                    if isinstance(answer, dict) and "ok" in answer:
                        yield answer["ok"]
                        continue
                    error = answer.get("error") if isinstance(answer, dict) else None
                    if not isinstance(error, dict):  # neither the revision nor an error: never skip it silently
                        error = {"error": "no_answer", "reason": "the server answered neither the revision nor an error"}
                    errors.append({"id": entry.get("id", asked.get("id")), "rev": error.get("rev") or asked.get("rev"),
                                   "error": error.get("error"), "reason": error.get("reason")})
            if answered < len(items):  # a whole answer, but short: never skip changes silently
                raise CloudantError(f"{what}: the server answered {answered} of the {len(items)} revisions asked "
                                    "for; retry the backup")
            break
        except _BODY_FAULTS as exc:
            faults = _after_body_fault(faults, exc, what, where)
        finally:
            response.close()
    if errors:
        raise CloudantError(f"{what}: {len(errors)} could not be read, e.g. {errors[0]}; retry the backup")


def live_leaves(client: CloudantV1, db: str, ids: list[str]) -> dict[str, list[str]]:
    """The live leaf revisions of each doc (winner, then its `_conflicts`; none for a missing or deleted doc), by id."""
    what = f"reading the leaves of restored documents in '{db}'"
    return {doc_id: _row_live_leaves(row) for doc_id, row in zip(ids, rows_of(client, db, ids, what), strict=True)}


def rows_of(client: CloudantV1, db: str, ids: list[str], what: str) -> list[dict[str, Any]]:
    """The `_all_docs` row of each id, in order: its winner (`doc`) with `_conflicts`, or a deleted/missing row.

    One `POST _all_docs` (keys, include_docs, conflicts: the only bulk read of conflicts), decoded row by row as it
    streams. After a fault inside the body the rest is asked for again (rows come in the order of the keys).
    """
    where = f"{client.service_url}/{db}/_all_docs"
    rows: list[dict[str, Any]] = []
    faults = 0
    while len(rows) < len(ids):
        rest = ids[len(rows):]
        response = call(what, where, functools.partial(_result, client.post_all_docs_as_stream, db=db, keys=rest,
                                                       include_docs=True, conflicts=True))
        try:
            for row in iter_rows(response.iter_content(STREAM_CHUNK)):
                if len(rows) >= len(ids) or row.get("key") != ids[len(rows)]:
                    raise CloudantError(f"{what}: the server answered a row for {row.get('key')!r}, not the "
                                        "documents asked for in their order")
                rows.append(row)
            if len(rows) < len(ids):
                raise CloudantError(f"{what}: the server answered {len(rows)} of the {len(ids)} documents asked for")
            break
        except _BODY_FAULTS as exc:
            faults = _after_body_fault(faults, exc, what, where)
        finally:
            response.close()
    return rows


def delete_database(client: CloudantV1, db: str) -> None:
    call(f"deleting database '{db}'", f"{client.service_url}/{db}", lambda: client.delete_database(db=db).get_result())


def write_revisions(client: CloudantV1, db: str, docs: list[dict[str, Any]], what: str) -> None:
    """Write these exact revisions (`new_edits: false`); any document the server rejects fails the call."""
    where = f"{client.service_url}/{db}/_bulk_docs"
    result = call(what, where, functools.partial(_result, client.post_bulk_docs, db=db,
                                                 bulk_docs={"docs": docs, "new_edits": False}))
    failed = [r for r in (result or []) if isinstance(r, dict) and r.get("error")]
    if failed:
        sample = "; ".join(f"{r.get('id')!r}: {r.get('error')} {r.get('reason', '')}".strip() for r in failed[:3])
        raise CloudantError(f"{what}: {len(failed)} of {len(docs)} documents were rejected ({sample})")


def attachment(client: CloudantV1, db: str, doc_id: str, rev: str, name: str) -> bytes:
    """One attachment's bytes, of revision `rev` of the document (streamed: the SDK would decode a JSON one)."""
    where = f"{client.service_url}/{db}"

    def read() -> bytes:
        response = client.get_attachment(db=db, doc_id=doc_id, attachment_name=name, rev=rev, stream=True).get_result()
        try:
            return response.content
        finally:
            response.close()
    try:
        return call(f"reading attachment {name!r} of document {doc_id!r} in '{db}'", where, read)
    except CloudantError as exc:
        if exc.status != 404:
            raise
        raise CloudantError(f"reading attachment {name!r} of document {doc_id!r} in '{db}': gone (404): the document "
                            "changed while the backup read it; retry the backup", status=404) from None


def security(client: CloudantV1, db: str) -> dict[str, Any]:
    """The database's `_security` object (who may read, write and administer it)."""
    where = f"{client.service_url}/{db}/_security"
    return call(f"reading the permissions of '{db}'", where, lambda: client.get_security(db=db).get_result()) or {}


def put_security(client: CloudantV1, db: str, value: dict[str, Any]) -> None:
    """Replace the database's `_security` object by `value` (its admins, members and Cloudant API keys)."""
    where = f"{client.service_url}/{db}/_security"
    call(f"writing the permissions of '{db}'", where, lambda: client.put_security(
        db=db, admins=value.get("admins"), members=value.get("members"), cloudant=value.get("cloudant"),
        couchdb_auth_only=value.get("couchdb_auth_only")).get_result())


def is_partitioned(info: dict[str, Any]) -> bool:
    """Whether a database (its `GET /db` answer) is partitioned: its ids are `partition:id`, for good."""
    return bool((info.get("props") or {}).get("partitioned"))


def all_dbs(client: CloudantV1) -> list[str]:
    return call("listing databases", f"{client.service_url}/_all_dbs", lambda: client.get_all_dbs().get_result())
