"""IBM Cloud Object Storage I/O through the official `ibm-cos-sdk` (ibm_boto3): client, errors,
multipart upload that always commits or aborts, small JSON objects, streamed reads, listing.

Every SDK exception is turned here, once, into a `CosError` naming the bucket and key.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from typing import Any, TypeVar
from urllib.parse import urlsplit

import ibm_boto3
import requests
import urllib3
from ibm_botocore.client import Config as BotoConfig
from ibm_botocore.credentials import DefaultTokenManager
from ibm_botocore.exceptions import BotoCoreError, ClientError, CredentialRetrievalError
from ibm_botocore.retries import standard as retries_standard

from backup import interrupt
from backup.config import CosConfig
from backup.deadline import Deadline
from backup.errors import BackupError, CosError
from backup.log import Log
from backup.parts import MAX_PARTS, part_size

T = TypeVar("T")
# Read size when streaming an object back: big enough to keep the reader fast, small enough to stay flat.
READ_CHUNK = 1024 * 1024
# Ranged re-GETs of one object after its body was cut, before giving up.
BODY_RESUMES = 3


def make_client(cfg: CosConfig, timeout: int, max_retries: int, log: Log | None = None) -> Any:
    """An S3 client: IAM (oauth signatures, token from IAM_TOKEN_URL) or HMAC (signature v4). With `log`, each
    retry logs a line (see `_log_retries`)."""
    boto_cfg = BotoConfig(
        signature_version="oauth" if cfg.auth == "iam" else "s3v4",
        connect_timeout=min(timeout, 30),
        read_timeout=timeout,
        # total_max_attempts counts the first try too (max_attempts would mean retries in one mode, tries in another)
        retries={"total_max_attempts": max_retries + 1, "mode": "standard"},
    )
    kwargs: dict[str, Any] = {"endpoint_url": cfg.endpoint, "config": boto_cfg, "verify": cfg.verify_tls}
    if cfg.auth == "iam":
        assert cfg.api_key is not None
        # A token manager of our own: ibm_boto3 hands `verify` to the one it makes, so DISABLE_TLS_VERIFY would reach
        # the IAM token exchange too; this one always checks TLS (DISABLE_TLS_VERIFY is for COS_ENDPOINT only).
        kwargs.update(
            token_manager=DefaultTokenManager(api_key_id=cfg.api_key.reveal(), service_instance_id=cfg.service_instance_id,
                                              auth_endpoint=cfg.iam_token_url, verify=True),
            ibm_service_instance_id=cfg.service_instance_id,
        )
    else:
        assert cfg.secret_access_key is not None
        kwargs.update(aws_access_key_id=cfg.access_key_id, aws_secret_access_key=cfg.secret_access_key.reveal())
    client = ibm_boto3.client("s3", **kwargs)
    if log is None:
        client.meta.events.register("needs-retry.s3", _retry_too_many_requests(max_retries))
    else:
        _log_retries(client, _retry_too_many_requests(max_retries), log)
    return client


def _log_retries(client: Any, too_many: Callable[..., float | None], log: Log) -> None:
    """botocore decides a retry in the `needs-retry` handlers (the first answer that is not None is the wait) and
    sleeps without a word. The client's standard-mode handler is replaced by the same one (botocore's own, built
    again: it cannot be read back) and `too_many` behind it, in one handler that logs each retry it decides."""
    events, service = client.meta.events, client.meta.service_model.service_id.hyphenize()
    event, unique_id = f"needs-retry.{service}", f"retry-config-{service}"  # as botocore registers its own
    max_attempts = client.meta.config.retries.get("total_max_attempts")
    events.unregister(event, unique_id=unique_id)
    standard = retries_standard.register_retry_handler(
        client, **({"max_attempts": max_attempts} if max_attempts is not None else {}))
    events.unregister(event, unique_id=unique_id)

    def needs_retry(**kwargs: Any) -> float | None:
        wait = standard.needs_retry(**kwargs)
        if wait is None:
            wait = too_many(**kwargs)
        if wait is not None:
            try:
                log.warning("retry", **_retry_fields(kwargs), attempt=int(kwargs.get("attempts") or 0) + 1,
                            wait=round(float(wait), 3))
            except Exception:  # noqa: BLE001 - a log line never fails the request it describes
                pass
        return wait

    events.register(event, needs_retry, unique_id=unique_id)


def _retry_fields(kwargs: dict[str, Any]) -> dict[str, Any]:
    """What a `needs-retry` event retries: method and URL path (never the host, its userinfo or the query), and
    why: the HTTP status and S3 error code, or the exception's class (its message names the endpoint)."""
    request = kwargs.get("request_dict") or {}
    path = urlsplit(str(request.get("url") or "")).path or "/"
    fields: dict[str, Any] = {"service": "cos", "request": f"{request.get('method') or '?'} {path}"}
    response, error = kwargs.get("response"), kwargs.get("caught_exception")
    if response is not None:
        fields["status"] = getattr(response[0], "status_code", None)
        code = (response[1] or {}).get("Error", {}).get("Code")
        if code:
            fields["error"] = str(code)
    elif error is not None:
        fields["error"] = type(error).__name__
    return fields


def _retry_too_many_requests(max_retries: int) -> Callable[..., float | None]:
    """botocore's standard retries skip a 429 whose error code is not on its throttling list and never read
    Retry-After; this handler (asked only when those say no) retries it, waiting what the server asks."""

    def handler(response: Any = None, attempts: int = 0, **_: Any) -> float | None:
        if response is None or attempts > max_retries:
            return None
        http = response[0]
        if getattr(http, "status_code", None) != 429:
            return None
        try:
            wait = float(http.headers.get("Retry-After", ""))
        except ValueError:
            wait = min(2.0 ** attempts, 20.0) * random.uniform(0.5, 1.0)
        return min(max(wait, 0.1), 60.0)

    return handler


_HINTS = {
    "NoSuchBucket": "the bucket does not exist: check COS_BUCKET and COS_ENDPOINT",
    "NoSuchKey": "no such object: check COS_KEY",
    "404": "not found (404): check COS_BUCKET / COS_KEY",
    "AccessDenied": "access denied: the credentials lack permission on this bucket",
    "403": "access denied (403): check COS_ACCESS_KEY_ID/COS_SECRET_ACCESS_KEY (or COS_API_KEY) and their access to this bucket",
    "InvalidAccessKeyId": "the HMAC access key id was rejected: check COS_ACCESS_KEY_ID",
    "SignatureDoesNotMatch": "the HMAC signature was rejected: check COS_SECRET_ACCESS_KEY",
    "NoSuchUpload": "the multipart upload no longer exists (aborted or expired)",
}


def describe(exc: BaseException, what: str) -> BackupError:
    if isinstance(exc, BackupError):  # ours already (a signal's Interrupted raised inside an SDK call, too)
        return exc
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        hint = _HINTS.get(code) or f"{code or status}: {error.get('Message') or exc}"
        return CosError(f"{what}: {hint}")
    # An IAM failure only when the request that failed went to the token endpoint, told by what raised, never by
    # words in a message (a bucket named api-tokens is not an IAM problem): the token manager raises
    # CredentialRetrievalError when the endpoint answers with an error, and it alone uses `requests` (S3 requests go
    # through botocore's own urllib3 session, whose errors are BotoCoreErrors, some of them also subclassing requests'
    # for compatibility), so a requests exception that is no BotoCoreError is a token request that got no answer.
    if isinstance(exc, CredentialRetrievalError):
        return CosError(f"{what}: IAM authentication failed: the IAM token endpoint refused COS_API_KEY "
                        f"(check COS_API_KEY and IAM_TOKEN_URL): {exc}")
    if isinstance(exc, BotoCoreError):
        return CosError(f"{what}: {exc}")
    if isinstance(exc, requests.RequestException):
        url = getattr(exc.request, "url", None) or "IAM_TOKEN_URL"
        return CosError(f"{what}: IAM authentication failed: the IAM token endpoint {url} could not be reached "
                        f"(check IAM_TOKEN_URL): {type(exc).__name__}: {exc}")
    return CosError(f"{what}: {type(exc).__name__}: {exc}")


def call(what: str, fn: Callable[[], T]) -> T:
    interrupt.check()  # a signal the SDK swallowed, or held during a clean-up, stops the run before its next request
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - the one place SDK errors become CosError
        raise describe(exc, what) from None


def where(bucket: str, key: str = "") -> str:
    return f"cos://{bucket}/{key}"


def check_bucket(s3: Any, bucket: str) -> None:
    """Fail early, before reading any document, when the bucket is missing or not ours to write."""
    call(f"checking bucket {where(bucket)}", lambda: s3.head_bucket(Bucket=bucket))


class PartStalled(Exception):
    """A part upload is still running when the deadline comes: the backup must checkpoint without it."""


class MultipartUpload:
    """A multipart upload that either completes or is aborted: never left half-done by a failure.

    `write()` takes whole lines; a part is cut when the buffer reaches the planned part size, so every
    part ends on a line boundary and memory holds at most about one part. Each part remembers its size,
    sha256, and the `mark` (resume point), docs and lines totals of its last line: what a checkpoint needs.
    Use as a context manager: leaving it with an exception aborts the upload. Leaving it normally without
    `complete()` keeps it open on purpose (a checkpointed backup continues it later).

    `guard`, when set, is asked before an abort: False means another invocation now owns this upload (it took the
    checkpoint's lease over), and the upload is left to it.
    """

    def __init__(self, s3: Any, bucket: str, key: str, base_part_size: int, log: Log,
                 metadata: dict[str, str] | None = None, upload_id: str | None = None,
                 parts: list[dict[str, Any]] | None = None, next_part: int = 0,
                 deadline: Deadline | None = None, guard: Callable[[], bool] | None = None,
                 content_type: str = "text/plain; charset=utf-8") -> None:
        self.s3, self.bucket, self.key = s3, bucket, key
        self.content_type = content_type
        self.deadline = deadline
        self.guard = guard
        self.base = base_part_size
        self.log = log
        self.metadata = metadata or {}
        self.upload_id = upload_id  # given: continue an upload a checkpoint recorded
        self.parts: list[dict[str, Any]] = [dict(p) for p in parts or []]
        self._restore_counts(self.parts[-1] if self.parts else {})
        self.written = self.uploaded_bytes  # bytes of the object so far: parts, the part in flight, the buffer
        self._buffer = bytearray()
        # One part uploads in the background while the next one fills: memory is two parts at most.
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="part-upload")
        self._in_flight: Future[dict[str, Any]] | None = None
        self._sending: bytearray | None = None  # the body of the part in flight, until it is recorded
        self._last = False  # the part in flight is the short last one complete() sent
        # A part number given up by a checkpoint is never reused (next_part): its request may still land.
        self._next_number = max(next_part, self.parts[-1]["PartNumber"] + 1 if self.parts else 1)
        self._completed = False
        self._aborted = False  # abort() ran (a second call does nothing)
        self._abandoned = False  # a stalled part was left behind: do not wait for its thread

    @property
    def next_part(self) -> int:
        """The number the next part gets; numbers sent before stay used, even for a part given up."""
        return self._next_number

    @property
    def uploaded_bytes(self) -> int:
        """Bytes in uploaded parts."""
        return sum(p["size"] for p in self.parts)

    @property
    def completed(self) -> bool:
        return self._completed

    def __enter__(self) -> MultipartUpload:
        if self.upload_id is None:
            response = call(
                f"starting upload of {where(self.bucket, self.key)}",
                lambda: self.s3.create_multipart_upload(
                    Bucket=self.bucket, Key=self.key, ContentType=self.content_type, Metadata=self.metadata
                ),
            )
            self.upload_id = response["UploadId"]
            if response.get("ResponseMetadata", {}).get("RetryAttempts"):
                self._abort_duplicates()
        return self

    def _abort_duplicates(self) -> None:
        """The SDK sent the create again (an answer lost or late): the earlier attempt may have made an upload too,
        which nobody knows of. Abort every upload of this key but ours (the key is this backup's alone: a new time
        with microseconds, checked free before starting). Never raises: what is left, the next backup's leftover
        cleaning or the bucket's lifecycle rule removes."""
        try:
            uploads = list_uploads(self.s3, self.bucket, self.key)
        except CosError as exc:
            self.log.warning("duplicate_uploads_unknown", key=self.key, error=str(exc))
            return
        for upload in uploads:
            if upload.get("Key") == self.key and upload.get("UploadId") != self.upload_id:
                with interrupt.deferred():
                    abort_upload(self.s3, self.bucket, self.key, upload["UploadId"], self.log)
                self.log.warning("duplicate_upload_aborted", key=self.key,
                                 detail="the SDK retried starting the upload (an answer lost): the first one is aborted")

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is not None and not self._completed:
                self.abort()
        finally:
            self._sender.shutdown(wait=not self._abandoned)

    def _restore_counts(self, record: dict[str, Any]) -> None:
        """The totals as of a part's (or a tail's) last line."""
        self.docs, self.lines, self.mark = record.get("docs", 0), record.get("lines", 0), record.get("mark")
        self.counts: dict[str, int] = dict(record.get("counts") or {})

    def write(self, data: bytes, mark: Any = None, docs: int = 0, lines: int = 1,
              counts: dict[str, int] | None = None) -> None:
        """Whole lines, with the resume mark after them, the docs they hold and any other `counts` of theirs to add
        up (kept per part, like docs, so a checkpoint knows them as of its last part)."""
        self._buffer += data
        self.written += len(data)
        self.docs += docs
        self.lines += lines
        self.mark = mark
        for name, n in (counts or {}).items():
            self.counts[name] = self.counts.get(name, 0) + n
        if len(self._buffer) >= part_size(min(self._next_number, MAX_PARTS), self.base):  # _flush says when too many
            self._flush()

    def _flush(self, last: bool = False) -> None:
        number = self._next_number
        if number > MAX_PARTS:
            raise CosError(f"uploading {where(self.bucket, self.key)}: more than {MAX_PARTS} parts needed; raise PART_SIZE_MB")
        self._wait()  # at most one part in flight; a failure of the previous part surfaces here
        body, self._buffer = self._buffer, bytearray()  # handed over whole: no copy of the part
        self._sending, self._last = body, last
        record = {"PartNumber": number, "size": len(body), "mark": self.mark, "docs": self.docs, "lines": self.lines,
                  "counts": dict(self.counts)}
        self._next_number += 1
        self._in_flight = self._sender.submit(self._send, body, record)

    def _send(self, body: bytearray, record: dict[str, Any]) -> dict[str, Any]:
        number = record["PartNumber"]
        digest = hashlib.sha256(body).hexdigest()
        response = call(
            f"uploading part {number} of {where(self.bucket, self.key)}",
            lambda: self.s3.upload_part(
                Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=body
            ),
        )
        return {**record, "ETag": response["ETag"], "sha256": digest}

    def _wait(self) -> None:
        """Let the part in flight finish and record it (raises its error). With a deadline, raises PartStalled
        when the deadline comes first: a stalled request must not hold the backup past it."""
        if self._in_flight is not None:
            while self.deadline is not None and self.deadline.at is not None:
                try:
                    self._in_flight.result(timeout=0.1)
                    break
                except FuturesTimeout:
                    if self.deadline.reached():
                        raise PartStalled() from None
            future, self._in_flight = self._in_flight, None
            part = future.result()
            self.parts.append(part)
            self._sending = None  # recorded: no longer the caller's to take back
            self.log.info("part_uploaded", key=self.key, part=part["PartNumber"], bytes=part["size"],
                          total_bytes=self.uploaded_bytes)

    def take_buffer(self) -> bytes:
        """For a checkpoint: the bytes written but not yet in an uploaded part; the upload forgets them, and the
        totals (docs, lines, mark) stay those of the last line written.

        A part still in flight after a short wait is given up, but never its bytes: they go back into the tail,
        before the lines written after it. (Reading those lines again from the last part that landed is not an
        option: with compression or encryption that point is in the middle of a gzip member or an age stream.)
        The last part, sent by `complete()` when the deadline came, is never kept as a part even when it lands:
        it may be under 5 MiB and the next invocation may read more after it. Either way the part's number stays
        used (`next_part`): a request given up may still land later, on a number the completed upload does not list."""
        if self._in_flight is not None and (wait := self._time_to_wait()) is not None:
            # A part about to land is kept: wait for it up to half the safety margin before the hard deadline.
            try:
                self._in_flight.result(timeout=wait)
            except Exception:  # noqa: BLE001 - still running (timeout) or failed: given up below either way
                pass
        if self._in_flight is not None and (self._last or not self._in_flight.done()):
            assert self._sending is not None
            body = bytes(self._sending) + bytes(self._buffer)
            self._abandoned = not self._in_flight.done()
            self._in_flight, self._sending, self._buffer = None, None, bytearray()
            return body
        self._wait()
        body, self._buffer = bytes(self._buffer), bytearray()
        return body

    def complete(self) -> None:
        if self._buffer or (not self.parts and self._in_flight is None):  # an empty object is one empty part
            self._flush(last=True)
        self._wait()
        etags = [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in self.parts]
        try:
            call(
                f"completing upload of {where(self.bucket, self.key)}",
                lambda: self.s3.complete_multipart_upload(
                    Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": etags}
                ),
            )
        except CosError:
            # A completion whose answer was lost is retried by the SDK, and the retry gets NoSuchUpload: the
            # object may be there, whole. It is ours if it is these parts (the key was free when we started).
            if not self._completed_anyway():
                raise
            self.log.warning("completion_confirmed", key=self.key,
                             detail="the completion's answer was lost; the object is there and is these parts")
        self._completed = True

    def _completed_anyway(self) -> bool:
        try:
            head = self.s3.head_object(Bucket=self.bucket, Key=self.key)
        except Exception:  # noqa: BLE001 - not there (or not knowable): the completion error stands
            return False
        try:
            expected = multipart_etag(self.parts)
        except ValueError:  # a part's ETag is not an MD5 (a store that computes them otherwise): cannot tell
            return False
        return head.get("ContentLength") == self.uploaded_bytes and head.get("ETag") == expected

    def abort(self) -> None:
        """Abort, so no object appears and no billed incomplete upload remains. Never raises (but for a signal held
        meanwhile, raised at its end: the abort itself is never cut short). Once only; nothing after complete();
        nothing when the guard says another invocation owns the upload now."""
        if self.upload_id is None or self._aborted or self._completed:
            return
        self._aborted = True
        with interrupt.deferred():
            self._abort()

    def _abort(self) -> None:
        assert self.upload_id is not None
        self._buffer = bytearray()
        if self.guard is not None and not self.guard():
            self._in_flight = None
            self._abandoned = True  # its part uploads are the new owner's business: do not wait for them
            self.log.warning("upload_left_to_its_owner", bucket=self.bucket, key=self.key,
                             detail="another invocation holds this backup's checkpoint now: its upload is not aborted")
            return
        late = None
        if self._in_flight is not None:  # a part landing after the abort can re-create storage: wait for it,
            try:                         # but never past the deadline
                self._in_flight.result(timeout=self._time_to_wait())
            except Exception:  # noqa: BLE001 - still running (timeout), or its failure is part of what is reported
                pass
            if not self._in_flight.done():
                late, self._abandoned = self._in_flight, True
            self._in_flight = None
        abort_upload(self.s3, self.bucket, self.key, self.upload_id, self.log)
        if late is not None:  # abort again once it lands (in a warm container; else the lifecycle rule)
            upload_id = self.upload_id
            late.add_done_callback(lambda _: abort_upload(self.s3, self.bucket, self.key, upload_id, self.log))

    def _time_to_wait(self) -> float | None:
        """How long a part in flight may still be waited for: until half the safety margin before the
        deadline (None: no deadline, wait for it)."""
        if self.deadline is None or (left := self.deadline.remaining()) is None:
            return None
        return max(0.0, left - self.deadline.margin / 2)


def multipart_etag(parts: list[dict[str, Any]]) -> str:
    """The ETag S3 (and COS) gives the object these parts complete: md5 of the parts' md5s, "-", their count."""
    digests = b"".join(bytes.fromhex(p["ETag"].strip('"')) for p in parts)
    return f'"{hashlib.md5(digests).hexdigest()}-{len(parts)}"'  # noqa: S324 - S3's definition, not security


def abort_upload(s3: Any, bucket: str, key: str, upload_id: str, log: Log) -> bool:
    """Abort one multipart upload; log (never raise) when that fails. True when it is gone."""
    try:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        log.info("upload_aborted", bucket=bucket, key=key)
        return True
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchUpload":
            return True
        failure: Exception = exc
    except Exception as exc:  # noqa: BLE001 - the original failure is what the caller reports
        failure = exc
    log.error(
        "abort_failed", bucket=bucket, key=key, upload_id=upload_id, error=str(describe(failure, "aborting the upload")),
        hint="an AbortIncompleteMultipartUpload lifecycle rule on the bucket removes leftovers",
    )
    return False


def put_bytes(s3: Any, bucket: str, key: str, body: bytes) -> None:
    call(f"writing {where(bucket, key)}", lambda: s3.put_object(Bucket=bucket, Key=key, Body=body))


def get_bytes(s3: Any, bucket: str, key: str) -> bytes:
    return call(f"reading {where(bucket, key)}", lambda: s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def put_json(s3: Any, bucket: str, key: str, value: Any) -> None:
    body = json.dumps(value, indent=1, sort_keys=True).encode()
    call(f"writing {where(bucket, key)}", lambda: s3.put_object(Bucket=bucket, Key=key, Body=body,
                                                                 ContentType="application/json"))


def get_json(s3: Any, bucket: str, key: str) -> Any:
    def fetch() -> Any:
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    return call(f"reading {where(bucket, key)}", fetch)


def size(s3: Any, bucket: str, key: str) -> int | None:
    """The object's size in bytes (one HEAD), or None when there is no such object."""
    try:
        return int(s3.head_object(Bucket=bucket, Key=key)["ContentLength"])
    except ClientError as exc:
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
            return None
        raise describe(exc, f"checking {where(bucket, key)}") from None
    except Exception as exc:  # noqa: BLE001 - network or auth failure, reported as CosError
        raise describe(exc, f"checking {where(bucket, key)}") from None


def exists(s3: Any, bucket: str, key: str) -> bool:
    return size(s3, bucket, key) is not None


def delete(s3: Any, bucket: str, key: str) -> None:
    call(f"deleting {where(bucket, key)}", lambda: s3.delete_object(Bucket=bucket, Key=key))


def list_objects(s3: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    """Every object under prefix (key, size, last modified), page by page."""
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        if token:
            kwargs["ContinuationToken"] = token
        page = call(f"listing {where(bucket, prefix)}", functools.partial(s3.list_objects_v2, **kwargs))
        yield from page.get("Contents", [])
        if not page.get("IsTruncated"):
            return
        token = page.get("NextContinuationToken")


def iter_chunks(s3: Any, bucket: str, key: str, start: int = 0) -> Iterator[bytes]:
    """The object's bytes (from byte `start` on) as a stream of chunks: memory holds one chunk, whatever the
    object size.

    A connection cut mid-body is resumed with a ranged GET from the last byte received (If-Match on the
    ETag, so the bytes still come from the same object), up to BODY_RESUMES times.
    """
    what = f"reading {where(bucket, key)}"
    ranged = {"Range": f"bytes={start}-"} if start else {}
    response = call(what, functools.partial(s3.get_object, Bucket=bucket, Key=key, **ranged))
    etag, body, offset, resumes = response.get("ETag"), response["Body"], start, 0
    try:
        while True:
            try:
                chunk = body.read(READ_CHUNK)
            except (BotoCoreError, OSError, ValueError, urllib3.exceptions.HTTPError) as exc:  # cut, timed out, short
                resumes += 1
                if resumes > BODY_RESUMES:
                    raise describe(exc, what) from None
                body.close()
                extra = {"IfMatch": etag} if etag else {}
                body = call(what, functools.partial(
                    s3.get_object, Bucket=bucket, Key=key, Range=f"bytes={offset}-", **extra))["Body"]
                continue
            if not chunk:
                return
            offset += len(chunk)
            yield chunk
    finally:
        body.close()


def list_uploads(s3: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    """Every incomplete multipart upload whose key starts with prefix (Key, UploadId, Initiated), page by page."""
    found: list[dict[str, Any]] = []
    markers: dict[str, str] = {}
    while True:
        page = call(f"listing the incomplete uploads under {where(bucket, prefix)}",
                    functools.partial(s3.list_multipart_uploads, Bucket=bucket, Prefix=prefix, **markers))
        found.extend(page.get("Uploads") or [])
        if not page.get("IsTruncated") or not page.get("NextKeyMarker"):
            return found
        markers = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page.get("NextUploadIdMarker") or ""}


def list_parts(s3: Any, bucket: str, key: str, upload_id: str) -> list[dict[str, Any]]:
    """Every part of one multipart upload (PartNumber, Size, ETag, LastModified), page by page."""
    found: list[dict[str, Any]] = []
    marker: dict[str, int] = {}
    while True:
        page = call(f"listing the parts of an upload of {where(bucket, key)}",
                    functools.partial(s3.list_parts, Bucket=bucket, Key=key, UploadId=upload_id, **marker))
        found.extend(page.get("Parts") or [])
        if not page.get("IsTruncated") or not page.get("NextPartNumberMarker"):
            return found
        marker = {"PartNumberMarker": int(page["NextPartNumberMarker"])}


# -- conditional writes: `If-None-Match: *` (create only) and `If-Match: <etag>` (replace only that version) on
# PutObject. ibm_botocore's PutObject model has neither parameter, so they travel as call parameters that a
# `before-parameter-build` handler takes out (before validation) and a `before-call` handler turns into headers
# (before signing: SigV4 signs them). Only the calls of put_if pass them; every other PutObject is untouched.

_CONDITIONS = {"IfMatch": "If-Match", "IfNoneMatch": "If-None-Match"}
_CONTEXT_KEY = "cloudant_cos_backup_conditions"


def _take_conditions(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    taken = {name: params.pop(name) for name in list(_CONDITIONS) if name in params}
    if taken:
        context[_CONTEXT_KEY] = taken


def _add_condition_headers(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    for name, value in (context.get(_CONTEXT_KEY) or {}).items():
        params.setdefault("headers", {})[_CONDITIONS[name]] = value


def _with_conditions(s3: Any) -> Any:
    events = s3.meta.events  # registering twice under one unique_id is a no-op
    events.register("before-parameter-build.s3.PutObject", _take_conditions, unique_id="cloudant-cos-backup-if-params")
    events.register("before-call.s3.PutObject", _add_condition_headers, unique_id="cloudant-cos-backup-if-headers")
    return s3


# 412: the condition does not hold; 409 ConditionalRequestConflict: a concurrent write to the key (S3); 404 NoSuchKey:
# If-Match on a key that is gone (S3 and moto; SeaweedFS answers 412).
_PRECONDITION_FAILED = {412, 409, 404}
# A store that refuses the headers outright (rather than ignoring them): 501 NotImplemented, 400 for an unknown one.
_CONDITIONS_REFUSED = {400, 501}
_REFUSED_BY: weakref.WeakSet[Any] = weakref.WeakSet()  # clients whose store refused them: written without


def put_if(s3: Any, bucket: str, key: str, body: bytes, *, etag: str | None = None, create: bool = False,
           log: Log | None = None) -> str | None:
    """Write body at key only if the object there is still the version `etag` (If-Match), or, with `create`, only
    if there is none (If-None-Match: *). The new ETag, or None when the condition failed.

    A store that ignores the headers writes unconditionally (see checkpoint.py for what then still holds); one that
    refuses them (400, 501) is written to without them from then on, with a warning. When the SDK retries a write
    whose answer was lost, the retry itself can fail its condition (the first one landed): the caller reads the
    object back to tell."""
    conditions = {"IfNoneMatch": "*"} if create else {"IfMatch": etag} if etag else {}
    if s3 in _REFUSED_BY:
        conditions = {}
    what = f"writing {where(bucket, key)}"
    client = _with_conditions(s3)
    interrupt.check()
    try:
        response = client.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json", **conditions)
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if conditions and status in _PRECONDITION_FAILED:
            return None
        if conditions and status in _CONDITIONS_REFUSED:
            _REFUSED_BY.add(s3)
            if log is not None:
                log.warning("conditional_write_unsupported", key=key, error=str(describe(exc, what)),
                            detail="the store refused If-Match/If-None-Match: the checkpoint's lease falls back to "
                                   "reading back what was written (see README, the lease)")
            return put_if(s3, bucket, key, body, log=log)
        raise describe(exc, what) from None
    except Exception as exc:  # noqa: BLE001 - network or auth failure, reported as CosError
        raise describe(exc, what) from None
    return str(response.get("ETag") or "")


def read_versioned(s3: Any, bucket: str, key: str) -> tuple[bytes, str] | None:
    """The object's bytes and ETag (one GET), or None when there is no such object."""
    what = f"reading {where(bucket, key)}"
    interrupt.check()
    try:
        response = s3.get_object(Bucket=bucket, Key=key)
        return response["Body"].read(), str(response.get("ETag") or "")
    except ClientError as exc:
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
            return None
        raise describe(exc, what) from None
    except Exception as exc:  # noqa: BLE001 - network or auth failure, reported as CosError
        raise describe(exc, what) from None


def etag_of(s3: Any, bucket: str, key: str) -> str | None:
    """The object's ETag (one HEAD), or None when there is no such object."""
    what = f"checking {where(bucket, key)}"
    interrupt.check()
    try:
        return str(s3.head_object(Bucket=bucket, Key=key).get("ETag") or "")
    except ClientError as exc:
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
            return None
        raise describe(exc, what) from None
    except Exception as exc:  # noqa: BLE001 - network or auth failure, reported as CosError
        raise describe(exc, what) from None
