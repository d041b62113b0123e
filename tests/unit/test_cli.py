"""The shell entry (`python -m backup`): bad input ends with a JSON error and exit code 2, before any network call."""

from __future__ import annotations

import json

import pytest

from backup.cli import main


def test_a_param_without_equals_is_a_config_error_that_does_not_echo_it(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--quiet", "--param", "PAGE_SIZE=50", "--param", "CLOUDANT_PASSWORD:hunter2-secret", "list"])
    out, err = capsys.readouterr()
    assert code == 2
    result = json.loads(out)
    assert result["kind"] == "config" and "--param number 2 has no NAME=" in result["error"], result
    assert "hunter2" not in out + err
