"""backup/job.py, the Code Engine entry: parameters from the environment plus CE_DATA (which wins), the
result as one JSON line on stdout, a non-zero exit on failure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from backup.errors import ConfigError
from backup.job import build_args
from tests.helpers import OUTPUTS, cos_params, couch_params, keys_in, load_docs

ROOT = Path(__file__).resolve().parent.parent


def run_job(env: dict[str, str]) -> tuple[int, dict[str, Any], str]:
    """`python -m backup.job` as the job's container runs it: exit code, the stdout result, stderr."""
    proc = subprocess.run([sys.executable, "-m", "backup.job"], cwd=ROOT, env={"PATH": "/usr/bin:/bin", **env},
                          capture_output=True, text=True, timeout=120)
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout
    OUTPUTS.extend([proc.stdout, proc.stderr])
    return proc.returncode, json.loads(lines[0]), proc.stderr


def test_ce_data_overrides_the_environment() -> None:
    args = build_args({"CLOUDANT_DB": "from-secret", "COS_BUCKET": "b", "CE_DATA": '{"CLOUDANT_DB": "mydb", "PAGE_SIZE": 10}'})
    assert args["CLOUDANT_DB"] == "mydb" and args["PAGE_SIZE"] == 10 and args["COS_BUCKET"] == "b"
    assert build_args({"CLOUDANT_DB": "x", "CE_DATA": "  "})["CLOUDANT_DB"] == "x"  # a manual run has no CE_DATA


@pytest.mark.parametrize(("data", "message"), [("{oops", "CE_DATA is not valid JSON"), ('["mydb"]', "must be a JSON object")])
def test_ce_data_must_be_a_json_object(data: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_args({"CE_DATA": data})


def test_bad_parameters_exit_non_zero_with_a_clear_error() -> None:
    code, result, stderr = run_job({"CE_DATA": '{"CLOUDANT_DB": "mydb"}', "COS_SECRET_ACCESS_KEY": "job-secret-5d1e"})
    assert code == 2  # the CLI's code for a configuration error
    assert result["kind"] == "config" and "CLOUDANT_URL is missing" in result["error"]
    assert '"event": "failed"' in stderr
    assert "job-secret-5d1e" not in json.dumps(result) + stderr


def test_invalid_ce_data_exits_non_zero() -> None:
    code, result, _ = run_job({"CE_DATA": "not json"})
    assert code == 2 and result["kind"] == "config" and "CE_DATA" in result["error"]


@pytest.mark.integration
def test_a_scheduled_job_run_backs_up_the_database_in_ce_data(couch: Any, seaweed: Any, bucket: str, db_name: str,
                                                               s3_client: Any) -> None:
    load_docs(couch, db_name, [{"_id": f"doc-{i}", "n": i} for i in range(30)])
    secret = {**couch_params(couch, "some-other-db"), **cos_params(seaweed, bucket)}  # what --env-from-secret gives
    code, result, stderr = run_job({**secret, "CE_DATA": json.dumps({"CLOUDANT_DB": db_name})})
    assert code == 0, stderr
    assert result["ok"] and result["database"] == db_name and result["docs"] == 30
    assert result["key"] in keys_in(s3_client, bucket)
    assert seaweed.secret_key not in json.dumps(result) + stderr
