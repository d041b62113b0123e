"""The shell entry (`python -m backup`): bad input ends with a JSON error and exit code 2, before any network call."""

from __future__ import annotations

import json

import pytest

from backup.cli import _parser, build_args, main


def test_a_param_without_equals_is_a_config_error_that_does_not_echo_it(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--quiet", "--param", "PAGE_SIZE=50", "--param", "CLOUDANT_PASSWORD:hunter2-secret", "list"])
    out, err = capsys.readouterr()
    assert code == 2
    result = json.loads(out)
    assert result["kind"] == "config" and "--param number 2 has no NAME=" in result["error"], result
    assert "hunter2" not in out + err


@pytest.mark.parametrize("operation", ["decrypt", " Decrypt "])
def test_the_action_refuses_decrypt_which_writes_a_local_file(operation: str) -> None:
    from backup.action import main as action_main

    result = action_main({"OPERATION": operation, "COS_KEY": "k", "OUTPUT": "/tmp/x"})
    assert result["kind"] == "config" and "command line" in result["error"] and "decrypt --key" in result["error"]


def test_decrypt_has_its_flags() -> None:
    ns = _parser().parse_args(["decrypt", "--key", "k.gz.age", "--output", "plain.txt"])
    assert build_args(ns, {})["OUTPUT"] == "plain.txt" and build_args(ns, {})["COS_KEY"] == "k.gz.age"
