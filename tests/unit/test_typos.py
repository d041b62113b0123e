"""Typos are caught: an unknown parameter that looks like ours warns, in the log and in the result, with the name
it probably meant; a backup without any Cloudant credentials says once that it connects anonymously."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from backup import action, config
from backup.config import load_config
from backup.errors import ConfigError
from backup.log import Log

BASE: dict[str, Any] = {
    "CLOUDANT_URL": "https://acct.cloudant.example.com",
    "CLOUDANT_DB": "orders",
    "CLOUDANT_USERNAME": "admin",
    "CLOUDANT_PASSWORD": "typo-test-password-1",
    "COS_ENDPOINT": "https://s3.eu-de.cloud-object-storage.example.com",
    "COS_BUCKET": "orders-backups",
    "COS_ACCESS_KEY_ID": "AKIDEXAMPLE",
    "COS_SECRET_ACCESS_KEY": "hmac-secret-for-typo-tests",
}


def warnings_for(**extra: Any) -> list[str]:
    return list(load_config({**BASE, **extra}).warnings)


@pytest.mark.parametrize(("name", "meant"), [
    ("KEEP_LST", "KEEP_LAST"),
    ("KEEP_LASTT", "KEEP_LAST"),
    ("CLOUDANT_PASWORD", "CLOUDANT_PASSWORD"),
    ("COS_BUKET", "COS_BUCKET"),
    ("PAGESIZE", "PAGE_SIZE"),
    ("MAX_HOP", "MAX_HOPS"),
    ("OPERATON", "OPERATION"),
    ("keep_last", "KEEP_LAST"),
    ("INCLUDE_SYSTEM_DB", "INCLUDE_SYSTEM_DBS"),
], ids=lambda v: v)
def test_a_typo_warns_with_the_name_it_probably_meant(name: str, meant: str) -> None:
    assert warnings_for(**{name: "7"}) == [f"unknown parameter {name} (did you mean {meant}?)"]


@pytest.mark.parametrize("name", ["COS_REGION", "CLOUDANT_ACCOUNT_NAME", "BACKUP_DIRECTORY", "RESTORE_TO_SOMEWHERE",
                                  "KEEP_FOREVER_AND_EVER", "FULL_BACKUP_WEEKDAY"])
def test_a_name_with_one_of_our_prefixes_warns_even_without_a_close_name(name: str) -> None:
    (warning,) = warnings_for(**{name: "x"})
    assert warning.startswith(f"unknown parameter {name}"), warning


@pytest.mark.parametrize("name", ["__ow_headers", "__ow_method", "__ow_path", "__OW_DEADLINE", "__OW_API_KEY",
                                  "__OW_ACTIVATION_ID", "PATH", "HOME", "USER", "SHELL", "LANG", "TERM", "PWD",
                                  "HOSTNAME", "VIRTUAL_ENV", "PYTHONPATH", "CE_DATA", "CE_JOB", "SOMETHING_ELSE"])
def test_platform_fields_and_unrelated_names_do_not_warn(name: str) -> None:
    assert warnings_for(**{name: "x"}) == []


def test_every_known_parameter_is_silent() -> None:
    args = {**BASE, **{name: None for name in config.PARAMETERS if name not in BASE}}
    assert load_config(args).warnings == ()


def test_every_name_the_configuration_reads_is_a_known_parameter(monkeypatch: pytest.MonkeyPatch) -> None:
    read: set[str] = set()

    class Spy(config._Problems):
        def __init__(self, args: Any) -> None:
            super().__init__(args)
            self.args = _Recording(args, read)

    monkeypatch.setattr(config, "_Problems", Spy)
    for operation in config.OPERATIONS:
        try:
            load_config({**BASE, "OPERATION": operation, "COS_KEY": "k", "SOURCE_URL": "https://h"})
        except ConfigError:
            pass
    assert read and read <= set(config.PARAMETERS), read - set(config.PARAMETERS)


class _Recording(dict):  # type: ignore[type-arg]
    def __init__(self, args: Any, read: set[str]) -> None:
        super().__init__(args)
        self.read = read

    def get(self, key: Any, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: Any) -> Any:
        self.read.add(key)
        return super().__getitem__(key)


def test_a_typo_is_named_in_the_error_when_the_configuration_fails() -> None:
    args = {k: v for k, v in BASE.items() if k != "COS_BUCKET"} | {"COS_BUKET": "orders-backups"}
    with pytest.raises(ConfigError) as info:
        load_config(args)
    assert "COS_BUCKET is missing" in str(info.value)
    assert "unknown parameter COS_BUKET (did you mean COS_BUCKET?)" in str(info.value)


def test_a_backup_without_cloudant_credentials_says_once_that_it_connects_anonymously() -> None:
    anonymous = {k: v for k, v in BASE.items() if not k.startswith("CLOUDANT_") or k in ("CLOUDANT_URL", "CLOUDANT_DB")}
    (warning,) = load_config(anonymous).warnings
    assert "no Cloudant credentials" in warning and "anonymously" in warning
    assert load_config({**anonymous, "CLOUDANT_DB": "a,b,c"}).warnings == (warning,)  # many databases: still once
    assert load_config(BASE).warnings == ()
    assert load_config({**anonymous, "CLOUDANT_IAM_KEY": "typo-test-iam-key"}).warnings == ()
    assert load_config({**anonymous, "CLOUDANT_URL": "https://u:typo-pw-in-url@acct.example.com"}).warnings == ()
    assert load_config({**anonymous, "OPERATION": "list"}).warnings == ()  # list never reads Cloudant


def test_the_action_puts_the_warnings_in_its_result_and_its_log(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(action, "_operation", lambda name: lambda cfg, log: {"ok": True, "operation": "backup"})
    stream = io.StringIO()
    anonymous = {k: v for k, v in BASE.items() if k not in ("CLOUDANT_USERNAME", "CLOUDANT_PASSWORD")}
    result = action.main({**anonymous, "KEEP_LST": 3, "__ow_headers": {"x": "y"}}, log=Log(stream))
    assert result["ok"] is True
    assert result["warnings"][0] == "unknown parameter KEEP_LST (did you mean KEEP_LAST?)"
    assert "anonymously" in result["warnings"][1] and len(result["warnings"]) == 2
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    warned = [line for line in lines if line["level"] == "warning"]
    assert [line["warning"] for line in warned] == result["warnings"]


def test_a_clean_run_has_no_warnings_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(action, "_operation", lambda name: lambda cfg, log: {"ok": True})
    stream = io.StringIO()
    assert action.main(dict(BASE), log=Log(stream)) == {"ok": True}
    assert '"warning"' not in stream.getvalue()


def test_from_a_shell_only_names_like_ours_are_considered(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from backup import cli

    seen: dict[str, Any] = {}

    def fake_answer(args: dict[str, Any], log: Log) -> Any:
        seen.update(args)
        return action.answer(args, log)

    monkeypatch.setattr(cli, "answer", fake_answer)
    monkeypatch.setattr(action, "_operation", lambda name: lambda cfg, log: {"ok": True, "operation": "list"})
    for name in list(__import__("os").environ):
        if name.startswith(("CLOUDANT_", "COS_", "BACKUP_", "RESTORE_", "KEEP_", "FULL_", "DRILL_", "NOTIFY_")):
            monkeypatch.delenv(name)
    environment = {"PATH": "/usr/bin", "HOME": "/home/me", "SOURCE_DIRECTORY": "/src", "EDITOR": "vi",
                   "COS_ENDPOINT": BASE["COS_ENDPOINT"], "COS_BUCKET": "b-1", "COS_ACCESS_KEY_ID": "AKID",
                   "COS_SECRET_ACCESS_KEY": "typo-shell-secret", "KEEP_LST": "2", "COS_BUKET": "b-2"}
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["list"]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert sorted(result["warnings"]) == ["unknown parameter COS_BUKET (did you mean COS_BUCKET?)",
                                          "unknown parameter KEEP_LST (did you mean KEEP_LAST?)"], result
    assert "PATH" not in seen and "HOME" not in seen and "EDITOR" not in seen  # the environment is not the parameters
    assert seen["COS_BUCKET"] == "b-1" and seen["KEEP_LST"] == "2"
    assert "PATH" not in err and "HOME" not in err
