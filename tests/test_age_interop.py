"""Our encrypted objects are standard age: an independent implementation of the format (age-encryption, the age
authors' TypeScript one, from package.json) decrypts them, so this runs wherever the suite does, `age` binary or
not (tests/test_codecs.py also uses the binary where it is installed). A backup made in one invocation is one age
file; one made in several is one age file per segment, at the offsets its manifest records, which is how a
person with only the standard tools reads it (README, Compression and encryption)."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import zstandard
from pyrage import x25519

from backup.keys import manifest_key
from tests.helpers import OUTPUTS, SECRET_SOURCES, cos_params, couch_params, load_docs, run_main, sample_docs

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]
AGE_DECRYPT = ROOT / "tests" / "fakes" / "age_decrypt.mjs"


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> tuple[x25519.Identity, Path]:
    identity = x25519.Identity.generate()
    SECRET_SOURCES.append(lambda: [str(identity)])  # the session's secret scan looks for it in every output
    path = tmp_path_factory.mktemp("age") / "key.txt"
    path.write_text(f"# a test key\n{identity}\n")
    return identity, path


def _typage(identity_file: Path, data: bytes) -> subprocess.CompletedProcess[bytes]:
    node = shutil.which("node")
    assert node is not None and (ROOT / "node_modules" / "age-encryption").is_dir(), "scripts/setup.sh installs both"
    return subprocess.run([node, str(AGE_DECRYPT), str(identity_file)], input=data, capture_output=True, timeout=60,
                          check=False)


def _decrypt_command(params: dict[str, Any], key: str, identity: x25519.Identity, output: Path) -> dict[str, Any]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("CLOUDANT_", "COS_"))},
           **{k: str(v) for k, v in params.items()}, "AGE_IDENTITY": str(identity)}
    proc = subprocess.run([sys.executable, "-m", "backup", "--json", "decrypt", "--key", key, "--output", str(output)],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    OUTPUTS.extend([proc.stdout, proc.stderr])
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    return dict(json.loads(proc.stdout))


def _backup_until_complete(params: dict[str, Any]) -> dict[str, Any]:
    for _ in range(100):
        result, _ = run_main(params)
        assert result.get("ok"), result
        if result["complete"]:
            return result
    raise AssertionError("the backup never completed")


def test_a_one_invocation_encrypted_backup_is_one_age_file(couch, db_name, seaweed, bucket, s3_client, key,
                                                           tmp_path) -> None:
    identity, identity_file = key
    load_docs(couch, db_name, sample_docs(filler=500))
    params = {**couch_params(couch, db_name), **cos_params(seaweed, bucket), "ENCRYPT_TO": str(identity.to_public())}
    backup = _backup_until_complete(params)
    assert backup["invocations"] == 1 and backup["key"].endswith("_backup.txt.gz.age"), backup
    stored = s3_client.get_object(Bucket=bucket, Key=backup["key"])["Body"].read()
    assert stored.startswith(b"age-encryption.org/v1\n")

    typage = _typage(identity_file, stored)
    assert typage.returncode == 0, typage.stderr
    plain = gzip.decompress(typage.stdout)
    written = _decrypt_command(params, backup["key"], identity, tmp_path / "plain.txt")
    assert (tmp_path / "plain.txt").read_bytes() == plain and written["plain_bytes"] == len(plain)
    assert json.loads(plain.split(b"\n")[0])["name"] == "cloudant-cos-backup"
    assert sum(len(json.loads(line)) for line in plain.split(b"\n")[1:-1]) == backup["docs"]

    other = tmp_path / "other.txt"
    other.write_text(f"{x25519.Identity.generate()}\n")
    assert _typage(other, stored).returncode != 0  # and so it is no plain gzip with a header in front


def test_a_backup_made_in_several_invocations_is_one_age_file_per_segment(couch, db_name, seaweed, bucket, s3_client,
                                                                          key, tmp_path) -> None:
    identity, identity_file = key
    load_docs(couch, db_name, sample_docs(filler=20_000, filler_bytes=1000))
    params = {**couch_params(couch, db_name), **cos_params(seaweed, bucket), "ENCRYPT_TO": str(identity.to_public()),
              "COMPRESSION": "zstd"}
    backup = _backup_until_complete({**params, "TIME_BUDGET": 2, "SAFETY_MARGIN": 1, "PAGE_SIZE": 50})
    manifest = json.loads(s3_client.get_object(Bucket=bucket, Key=manifest_key(backup["key"]))["Body"].read())
    starts = [segment["stored"] for segment in manifest["segments"]]
    assert backup["invocations"] > 1 and len(starts) > 1, (backup, manifest["segments"])
    assert manifest["encryption"] == {"format": "age", "recipients": [str(identity.to_public())]}

    stored = s3_client.get_object(Bucket=bucket, Key=backup["key"])["Body"].read()
    assert len(stored) == manifest["bytes"]
    pieces = [_typage(identity_file, stored[start:end]) for start, end in zip(starts, [*starts[1:], len(stored)],
                                                                              strict=True)]
    assert all(piece.returncode == 0 for piece in pieces), [piece.stderr for piece in pieces]
    compressed = b"".join(piece.stdout for piece in pieces)
    with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(compressed), read_across_frames=True) as reader:
        plain = reader.read()  # one frame (or more) a segment: `zstd -d` reads them as one stream
    written = _decrypt_command(params, backup["key"], identity, tmp_path / "plain.txt")
    assert (tmp_path / "plain.txt").read_bytes() == plain and len(plain) == manifest["plain_bytes"] == written["plain_bytes"]
    assert [segment["plain"] for segment in manifest["segments"]][0] == 0
