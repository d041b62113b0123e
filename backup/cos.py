"""IBM Cloud Object Storage I/O through the official `ibm-cos-sdk` (ibm_boto3): client, errors,
multipart upload that always commits or aborts, small JSON objects, streamed reads, listing.

Every SDK exception is turned here, once, into a `CosError` naming the bucket and key.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from typing import Any, TypeVar

import ibm_boto3
import urllib3
from ibm_botocore.client import Config as BotoConfig
from ibm_botocore.exceptions import BotoCoreError, ClientError

from backup.config import CosConfig
from backup.deadline import Deadline
from backup.errors import CosError
from backup.log import Log
from backup.parts import MAX_PARTS, part_size

T = TypeVar("T")
# Read size when streaming an object back: big enough to keep the reader fast, small enough to stay flat.
READ_CHUNK = 1024 * 1024
# Ranged re-GETs of one object after its body was cut, before giving up.
BODY_RESUMES = 3


def make_client(cfg: CosConfig, timeout: int, max_retries: int) -> Any:
    """An S3 client: IAM (oauth signatures, token from IAM_TOKEN_URL) or HMAC (signature v4)."""
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
        kwargs.update(
            ibm_api_key_id=cfg.api_key.reveal(),
            ibm_service_instance_id=cfg.service_instance_id,
            ibm_auth_endpoint=cfg.iam_token_url,
        )
    else:
        assert cfg.secret_access_key is not None
        kwargs.update(aws_access_key_id=cfg.access_key_id, aws_secret_access_key=cfg.secret_access_key.reveal())
    client = ibm_boto3.client("s3", **kwargs)
    client.meta.events.register("needs-retry.s3", _retry_too_many_requests(max_retries))
    return client


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


def describe(exc: BaseException, what: str) -> CosError:
    if isinstance(exc, CosError):
        return exc
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        hint = _HINTS.get(code) or f"{code or status}: {error.get('Message') or exc}"
        return CosError(f"{what}: {hint}")
    if isinstance(exc, BotoCoreError):
        if "Credential" in type(exc).__name__ or "token" in str(exc).lower():
            return CosError(f"{what}: IAM authentication failed: the token endpoint refused COS_API_KEY "
                            f"(check COS_API_KEY and IAM_TOKEN_URL): {exc}")
        return CosError(f"{what}: {exc}")
    text = str(exc)
    if "token" in text.lower() or "iam" in type(exc).__name__.lower():
        return CosError(f"{what}: IAM authentication failed (check COS_API_KEY and IAM_TOKEN_URL): {type(exc).__name__}: {text}")
    return CosError(f"{what}: {type(exc).__name__}: {text}")


def call(what: str, fn: Callable[[], T]) -> T:
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
    """

    def __init__(self, s3: Any, bucket: str, key: str, base_part_size: int, log: Log,
                 metadata: dict[str, str] | None = None, upload_id: str | None = None,
                 parts: list[dict[str, Any]] | None = None, next_part: int = 0,
                 deadline: Deadline | None = None) -> None:
        self.s3, self.bucket, self.key = s3, bucket, key
        self.deadline = deadline
        self.base = base_part_size
        self.log = log
        self.metadata = metadata or {}
        self.upload_id = upload_id  # given: continue an upload a checkpoint recorded
        self.parts: list[dict[str, Any]] = [dict(p) for p in parts or []]
        last = self.parts[-1] if self.parts else {}
        self.docs, self.lines, self.mark = last.get("docs", 0), last.get("lines", 0), last.get("mark")
        self._buffer = bytearray()
        # One part uploads in the background while the next one fills: memory is two parts at most.
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="part-upload")
        self._in_flight: Future[dict[str, Any]] | None = None
        self._last_body: bytearray | None = None  # the short last part complete() sent, while in flight
        # A part number given up by a checkpoint is never reused (next_part): its request may still land.
        self._next_number = max(next_part, self.parts[-1]["PartNumber"] + 1 if self.parts else 1)
        self._completed = False
        self._abandoned = False  # a stalled part was left behind: do not wait for its thread

    @property
    def next_part(self) -> int:
        """The number the next part gets; numbers sent before stay used, even for a part given up."""
        return self._next_number

    @property
    def uploaded_bytes(self) -> int:
        """Bytes in uploaded parts."""
        return sum(p["size"] for p in self.parts)

    def __enter__(self) -> MultipartUpload:
        if self.upload_id is None:
            response = call(
                f"starting upload of {where(self.bucket, self.key)}",
                lambda: self.s3.create_multipart_upload(
                    Bucket=self.bucket, Key=self.key, ContentType="text/plain; charset=utf-8", Metadata=self.metadata
                ),
            )
            self.upload_id = response["UploadId"]
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is not None and not self._completed:
                self.abort()
        finally:
            self._sender.shutdown(wait=not self._abandoned)

    def write(self, data: bytes, mark: Any = None, docs: int = 0, lines: int = 1) -> None:
        self._buffer += data
        self.docs += docs
        self.lines += lines
        self.mark = mark
        if len(self._buffer) >= part_size(min(self._next_number, MAX_PARTS), self.base):  # _flush says when too many
            self._flush()

    def _flush(self, last: bool = False) -> None:
        number = self._next_number
        if number > MAX_PARTS:
            raise CosError(f"uploading {where(self.bucket, self.key)}: more than {MAX_PARTS} parts needed; raise PART_SIZE_MB")
        self._wait()  # at most one part in flight; a failure of the previous part surfaces here
        body, self._buffer = self._buffer, bytearray()  # handed over whole: no copy of the part
        self._last_body = body if last else None
        record = {"PartNumber": number, "size": len(body), "mark": self.mark, "docs": self.docs, "lines": self.lines}
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
            self._last_body = None  # recorded: no longer the caller's to take back
            self.log.info("part_uploaded", key=self.key, part=part["PartNumber"], bytes=part["size"],
                          total_bytes=self.uploaded_bytes)

    def take_buffer(self) -> bytes:
        """For a checkpoint: the lines written but not yet in a part (fewer bytes than a part); the upload
        forgets them. A part still in flight after a short wait is given up, and the lines after it with it:
        the counts and the resume mark go back to the last part uploaded, and those lines are read again.
        The last part, sent by `complete()` when the deadline came, is never kept as a part: it may be under
        5 MiB and the next invocation may read more after it, so its lines go back into the tail.
        Either way the part's number stays used (`next_part`): a request given up may still land later,
        and then it lands on a number the completed upload does not list."""
        if self._in_flight is not None and (wait := self._time_to_wait()) is not None:
            # A part about to land is kept: wait for it up to half the safety margin before the hard deadline.
            try:
                self._in_flight.result(timeout=wait)
            except Exception:  # noqa: BLE001 - still running (timeout) or failed: given up below either way
                pass
        if self._last_body is not None:
            body, self._last_body = bytes(self._last_body), None
            self._abandoned = self._in_flight is not None and not self._in_flight.done()
            self._in_flight = None
            return body
        if self._in_flight is not None and not self._in_flight.done():
            self._in_flight, self._abandoned = None, True
            last = self.parts[-1] if self.parts else {}
            self.docs, self.lines, self.mark = last.get("docs", 0), last.get("lines", 0), last.get("mark")
            self._buffer = bytearray()
            return b""
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
        """Abort, so no object appears and no billed incomplete upload remains. Never raises."""
        if self.upload_id is None:
            return
        self._buffer = bytearray()
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


def exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as exc:
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
            return False
        raise describe(exc, f"checking {where(bucket, key)}") from None
    except Exception as exc:  # noqa: BLE001 - network or auth failure, reported as CosError
        raise describe(exc, f"checking {where(bucket, key)}") from None


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


def iter_chunks(s3: Any, bucket: str, key: str) -> Iterator[bytes]:
    """The object's bytes as a stream of chunks: memory holds one chunk, whatever the object size.

    A connection cut mid-body is resumed with a ranged GET from the last byte received (If-Match on the
    ETag, so the bytes still come from the same object), up to BODY_RESUMES times.
    """
    what = f"reading {where(bucket, key)}"
    response = call(what, lambda: s3.get_object(Bucket=bucket, Key=key))
    etag, body, offset, resumes = response.get("ETag"), response["Body"], 0, 0
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
