"""Decrypt: the plain couchbackup file of a backup object, for other tools (couchrestore, jq, grep).

    COS object --> verified parts --> decryption --> decompression --> OUTPUT

An object made in several invocations is several age streams (and gzip members / zstd frames), which `age -d`
refuses: this reads them at the offsets the manifest records. The file is written under a temporary name beside
OUTPUT and renamed only once whole and of the size the manifest recorded: a failure never leaves a file at OUTPUT
that looks complete. Only the command line runs it (the action has no file to give back).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from backup import cos
from backup.catalog import latest_key, read_manifest
from backup.config import Config
from backup.errors import BackupError, ConfigError, CosError, FormatError
from backup.log import Log
from backup.reading import plain_chunks
from backup.stages import require


def run_decrypt(config: Config, log: Log) -> dict[str, Any]:
    started = time.monotonic()
    bucket, output = config.cos.bucket, Path(config.output or "")
    if output.exists():
        raise ConfigError(f"OUTPUT {output} exists: remove it or give another path (decrypt never overwrites a file)")
    if not output.parent.is_dir():
        raise ConfigError(f"OUTPUT {output}: its folder {output.parent} does not exist")
    s3 = cos.make_client(config.cos, config.tune("REQUEST_TIMEOUT"), config.tune("MAX_RETRIES"), log)
    key = config.key or ""
    if key == "latest":
        key = latest_key(s3, bucket, config.cos.prefix, config.source_db or config.db or "", config.source_host)
    where = cos.where(bucket, key)
    if not cos.exists(s3, bucket, key):
        raise CosError(f"decrypting {where}: no such object; see `cloudant-cos-backup list`")
    manifest = read_manifest(s3, bucket, key)
    if manifest is not None and manifest.recipients is not None:
        require(config.identities, manifest.recipients, f"decrypting {where}: the backup")
    partial = output.with_name(f".{output.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        size = _write(partial, plain_chunks(s3, bucket, key, manifest, config.identities))
        if manifest is not None and size != manifest.plain_size:
            raise FormatError(f"decrypting {where}: its plain text is {size} bytes, the backup wrote "
                              f"{manifest.plain_size}: the manifest does not describe this object")
        _put_in_place(partial, output)
    except OSError as exc:  # the file system's refusal (no space, no permission): the user's to fix
        raise BackupError(f"decrypting {where}: writing OUTPUT {output} failed: {exc.strerror or exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    result: dict[str, Any] = {"ok": True, "operation": "decrypt", "bucket": bucket, "key": key, "output": str(output),
                              "plain_bytes": size, "seconds": round(time.monotonic() - started, 3)}
    if manifest is not None:
        result.update(bytes=manifest.bytes, compression=manifest.compression,
                      encrypted=manifest.recipients is not None, docs=manifest.docs)
    log.info("decrypted", **result)
    return result


def _write(path: Path, chunks: Iterable[bytes | bytearray]) -> int:
    """The chunks into a new file at `path`, synced; its size."""
    size = 0
    with path.open("xb") as file:
        for chunk in chunks:
            file.write(chunk)
            size += len(chunk)
        file.flush()
        os.fsync(file.fileno())
    return size


def _put_in_place(partial: Path, output: Path) -> None:
    """The whole file at OUTPUT: linked there (never over a file that appeared meanwhile), or, where the file system
    has no hard links, renamed."""
    try:
        os.link(partial, output)
    except FileExistsError:
        raise ConfigError(f"OUTPUT {output} appeared meanwhile: it was left alone; give another path") from None
    except OSError:
        os.replace(partial, output)
