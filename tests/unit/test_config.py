"""load_config: every bad input gets an actionable message, all at once, and never a secret."""

from __future__ import annotations

from typing import Any

import pytest

from backup.config import DEFAULT_IAM_TOKEN_URL, TUNABLES, load_config
from backup.errors import ConfigError
from backup.redaction import redact

DROP = object()  # marks a key to remove from BASE

# A valid backup configuration; each case below changes one thing.
BASE: dict[str, Any] = {
    "CLOUDANT_URL": "https://acct.cloudant.example.com",
    "CLOUDANT_DB": "orders",
    "COS_ENDPOINT": "https://s3.eu-de.cloud-object-storage.example.com",
    "COS_BUCKET": "orders-backups",
    "COS_ACCESS_KEY_ID": "AKIDEXAMPLE",
    "COS_SECRET_ACCESS_KEY": "hmac-secret-for-base-config",
}


def args_with(changes: dict[str, Any]) -> dict[str, Any]:
    args = dict(BASE)
    for name, value in changes.items():
        if value is DROP:
            args.pop(name, None)
        else:
            args[name] = value
    return args


def error_for(changes: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(args_with(changes))
    return str(info.value)


def test_base_configuration_is_valid() -> None:
    config = load_config(args_with({}))
    assert config.operation == "backup"
    assert config.db == "orders"


BAD_INPUTS = [
    # required strings: missing, empty, whitespace, None
    pytest.param({"CLOUDANT_URL": DROP}, "CLOUDANT_URL is missing", id="cloudant-url-missing"),
    pytest.param({"CLOUDANT_URL": ""}, "CLOUDANT_URL is empty", id="cloudant-url-empty"),
    pytest.param({"CLOUDANT_URL": "  \t "}, "CLOUDANT_URL is empty", id="cloudant-url-whitespace"),
    pytest.param({"CLOUDANT_URL": None}, "CLOUDANT_URL is missing", id="cloudant-url-none"),
    pytest.param({"CLOUDANT_DB": DROP}, "CLOUDANT_DB is missing", id="cloudant-db-missing"),
    pytest.param({"CLOUDANT_DB": ""}, "CLOUDANT_DB is empty", id="cloudant-db-empty"),
    pytest.param({"CLOUDANT_DB": "   "}, "CLOUDANT_DB is empty", id="cloudant-db-whitespace"),
    pytest.param({"COS_ENDPOINT": DROP}, "COS_ENDPOINT is missing", id="cos-endpoint-missing"),
    pytest.param({"COS_ENDPOINT": ""}, "COS_ENDPOINT is empty", id="cos-endpoint-empty"),
    pytest.param({"COS_ENDPOINT": "\n "}, "COS_ENDPOINT is empty", id="cos-endpoint-whitespace"),
    pytest.param({"COS_BUCKET": DROP}, "COS_BUCKET is missing", id="cos-bucket-missing"),
    pytest.param({"COS_BUCKET": ""}, "COS_BUCKET is empty", id="cos-bucket-empty"),
    pytest.param({"COS_BUCKET": "  "}, "COS_BUCKET is empty", id="cos-bucket-whitespace"),
    # wrong types where strings are needed
    pytest.param({"CLOUDANT_URL": 443}, "CLOUDANT_URL must be a string, got int", id="cloudant-url-int"),
    pytest.param({"CLOUDANT_URL": 1.5}, "CLOUDANT_URL must be a string, got float", id="cloudant-url-float"),
    pytest.param({"CLOUDANT_DB": {"name": "orders"}}, "CLOUDANT_DB must be a string, got dict", id="cloudant-db-dict"),
    pytest.param({"COS_BUCKET": ["a", "b"]}, "COS_BUCKET must be a string, got list", id="cos-bucket-list"),
    pytest.param({"COS_ENDPOINT": True}, "COS_ENDPOINT must be a string, got bool", id="cos-endpoint-bool"),
    pytest.param({"CLOUDANT_USERNAME": "admin", "CLOUDANT_PASSWORD": 12345678},
                 "CLOUDANT_PASSWORD must be a string, got int", id="cloudant-password-int"),
    pytest.param({"OPERATION": 5}, "OPERATION must be a string, got int", id="operation-int"),
    # URLs
    pytest.param({"CLOUDANT_URL": "acct.cloudant.example.com"},
                 "CLOUDANT_URL must start with https:// or http://, got 'acct.cloudant.example.com'",
                 id="cloudant-url-no-scheme"),
    pytest.param({"CLOUDANT_URL": "ftp://acct.cloudant.example.com"},
                 "CLOUDANT_URL must use https:// or http://, got ftp://", id="cloudant-url-ftp"),
    pytest.param({"CLOUDANT_URL": "https://acct.cloudant.example.com/orders"},
                 "CLOUDANT_URL must be just scheme://host[:port], without a path, query or fragment",
                 id="cloudant-url-path"),
    pytest.param({"CLOUDANT_URL": "https://acct.cloudant.example.com?x=1"},
                 "CLOUDANT_URL must be just scheme://host[:port], without a path, query or fragment",
                 id="cloudant-url-query"),
    pytest.param({"CLOUDANT_URL": "https://acct.cloudant.example.com#top"},
                 "CLOUDANT_URL must be just scheme://host[:port], without a path, query or fragment",
                 id="cloudant-url-fragment"),
    pytest.param({"CLOUDANT_URL": "https://acct.cloudant.example.com:abc"},
                 "CLOUDANT_URL is not a valid URL", id="cloudant-url-port-not-number"),
    pytest.param({"CLOUDANT_URL": "https://acct.cloudant.example.com:99999"},
                 "CLOUDANT_URL is not a valid URL: bad port", id="cloudant-url-port-too-big"),
    pytest.param({"CLOUDANT_URL": "https://:5984"}, "CLOUDANT_URL has no host name", id="cloudant-url-no-host"),
    pytest.param({"COS_ENDPOINT": "https://s3.example.com/orders-backups"},
                 "COS_ENDPOINT must be just scheme://host[:port], without a path, query or fragment",
                 id="cos-endpoint-path"),
    pytest.param({"COS_ENDPOINT": "https://s3.example.com?region=eu"},
                 "COS_ENDPOINT must be just scheme://host[:port], without a path, query or fragment",
                 id="cos-endpoint-query"),
    pytest.param({"COS_ENDPOINT": "https://s3.example.com:port"}, "COS_ENDPOINT is not a valid URL",
                 id="cos-endpoint-bad-port"),
    pytest.param({"COS_ENDPOINT": "gopher://s3.example.com"}, "COS_ENDPOINT must use https:// or http://, got gopher://",
                 id="cos-endpoint-bad-scheme"),
    pytest.param({"COS_ENDPOINT": "https://AKID:cos-secret@s3.example.com"},
                 "COS_ENDPOINT must not carry credentials", id="cos-endpoint-credentials"),
    pytest.param({"COS_ENDPOINT": "AKID:cos-secret@s3.example.com"},
                 "COS_ENDPOINT must not carry credentials", id="cos-endpoint-credentials-no-scheme"),
    # Cloudant auth
    pytest.param({"CLOUDANT_IAM_KEY": "iam-key-1", "CLOUDANT_USERNAME": "admin", "CLOUDANT_PASSWORD": "pw-123"},
                 "give either CLOUDANT_IAM_KEY (IAM) or CLOUDANT_USERNAME + CLOUDANT_PASSWORD (basic auth), not both",
                 id="cloudant-iam-and-basic"),
    pytest.param({"CLOUDANT_IAM_KEY": "iam-key-2", "CLOUDANT_URL": "https://admin:pw-456@acct.cloudant.example.com"},
                 "give either CLOUDANT_IAM_KEY (IAM) or CLOUDANT_USERNAME + CLOUDANT_PASSWORD (basic auth), not both",
                 id="cloudant-iam-and-url-credentials"),
    pytest.param({"CLOUDANT_URL": "https://admin:pw-789@acct.cloudant.example.com", "CLOUDANT_USERNAME": "other"},
                 "CLOUDANT_URL carries credentials and CLOUDANT_USERNAME/CLOUDANT_PASSWORD are set too; give one",
                 id="cloudant-url-credentials-and-username"),
    pytest.param({"CLOUDANT_URL": "https://admin@acct.cloudant.example.com"},
                 "CLOUDANT_URL has a user name but no password", id="cloudant-url-user-without-password"),
    pytest.param({"CLOUDANT_USERNAME": "admin"}, "CLOUDANT_USERNAME is set but CLOUDANT_PASSWORD is missing",
                 id="cloudant-username-without-password"),
    pytest.param({"CLOUDANT_PASSWORD": "lonely-pw"}, "CLOUDANT_PASSWORD is set but CLOUDANT_USERNAME is missing",
                 id="cloudant-password-without-username"),
    # COS auth
    pytest.param({"COS_API_KEY": "cos-api-key-1", "COS_SERVICE_INSTANCE_ID": "crn:v1:instance"},
                 "give either COS_API_KEY + COS_SERVICE_INSTANCE_ID (IAM) or COS_ACCESS_KEY_ID + "
                 "COS_SECRET_ACCESS_KEY (HMAC), not both", id="cos-iam-and-hmac"),
    pytest.param({"COS_ACCESS_KEY_ID": DROP, "COS_SECRET_ACCESS_KEY": DROP, "COS_API_KEY": "cos-api-key-2"},
                 "COS_API_KEY is set but COS_SERVICE_INSTANCE_ID is missing", id="cos-iam-key-without-instance"),
    pytest.param({"COS_ACCESS_KEY_ID": DROP, "COS_SECRET_ACCESS_KEY": DROP, "COS_SERVICE_INSTANCE_ID": "crn:v1:x"},
                 "COS_SERVICE_INSTANCE_ID is set but COS_API_KEY is missing", id="cos-instance-without-iam-key"),
    pytest.param({"COS_SECRET_ACCESS_KEY": DROP}, "COS_ACCESS_KEY_ID is set but COS_SECRET_ACCESS_KEY is missing",
                 id="cos-hmac-access-key-only"),
    pytest.param({"COS_ACCESS_KEY_ID": DROP}, "COS_SECRET_ACCESS_KEY is set but COS_ACCESS_KEY_ID is missing",
                 id="cos-hmac-secret-only"),
    pytest.param({"COS_ACCESS_KEY_ID": DROP, "COS_SECRET_ACCESS_KEY": DROP},
                 "COS credentials are missing: give COS_API_KEY + COS_SERVICE_INSTANCE_ID or "
                 "COS_ACCESS_KEY_ID + COS_SECRET_ACCESS_KEY", id="cos-no-credentials"),
    # operation
    pytest.param({"OPERATION": "delete"}, "OPERATION must be one of backup, restore, list, verify, drill, status, decrypt, got 'delete'",
                 id="operation-unknown"),
    # database names
    pytest.param({"CLOUDANT_DB": "Orders"}, "CLOUDANT_DB 'Orders' is not a valid database name: it must start with "
                 "a lowercase letter and contain only a-z, 0-9 and _$()+-/", id="db-uppercase"),
    pytest.param({"CLOUDANT_DB": "1orders"}, "CLOUDANT_DB '1orders' is not a valid database name", id="db-leading-digit"),
    pytest.param({"CLOUDANT_DB": "my orders"}, "CLOUDANT_DB 'my orders' is not a valid database name", id="db-space"),
    pytest.param({"CLOUDANT_DB": "_private"}, "CLOUDANT_DB '_private' is not a valid database name: it must start "
                 "with a lowercase letter", id="db-underscore-not-a-system-db"),
    pytest.param({"CLOUDANT_DB": "_users_old"}, "CLOUDANT_DB '_users_old' is not a valid database name",
                 id="db-underscore-system-lookalike"),
    pytest.param({"CLOUDANT_DB": "_Users"}, "CLOUDANT_DB '_Users' is not a valid database name", id="db-system-uppercase"),
    pytest.param({"CLOUDANT_DB": "_users,_nope"}, "CLOUDANT_DB '_nope' is not a valid database name",
                 id="db-list-with-underscore-not-a-system-db"),
    pytest.param({"OPERATION": "restore", "COS_KEY": "k", "CLOUDANT_DB": "_users"},
                 "CLOUDANT_DB '_users' is a system database: restoring into it is not supported",
                 id="restore-into-system-db"),
    pytest.param({"OPERATION": "restore", "COS_KEY": "k", "CLOUDANT_DB": "_replicator"},
                 "CLOUDANT_DB '_replicator' is a system database: restoring into it is not supported",
                 id="restore-into-replicator"),
    pytest.param({"CLOUDANT_DB": "orders.2024"}, "CLOUDANT_DB 'orders.2024' is not a valid database name", id="db-dot"),
    pytest.param({"CLOUDANT_DB": "a" * 239}, "CLOUDANT_DB is longer than 238 characters", id="db-too-long"),
    pytest.param({"OPERATION": "restore", "COS_KEY": "latest", "SOURCE_DB": "Prod"},
                 "SOURCE_DB 'Prod' is not a valid database name", id="source-db-invalid"),
    # tuning values
    pytest.param({"PAGE_SIZE": -1}, "PAGE_SIZE must be between 1 and 100000, got -1", id="page-size-negative"),
    pytest.param({"PAGE_SIZE": 0}, "PAGE_SIZE must be between 1 and 100000, got 0", id="page-size-zero"),
    pytest.param({"PAGE_SIZE": "0"}, "PAGE_SIZE must be between 1 and 100000, got 0", id="page-size-zero-string"),
    pytest.param({"PAGE_SIZE": 10**9}, "PAGE_SIZE must be between 1 and 100000, got 1000000000", id="page-size-absurd"),
    pytest.param({"PAGE_SIZE": "lots"}, "PAGE_SIZE must be an integer, got 'lots'", id="page-size-word"),
    pytest.param({"PAGE_SIZE": "2.5"}, "PAGE_SIZE must be an integer, got '2.5'", id="page-size-decimal-string"),
    pytest.param({"PAGE_SIZE": 1.5}, "PAGE_SIZE must be an integer, got float", id="page-size-float"),
    pytest.param({"PAGE_SIZE": 2000.0}, "PAGE_SIZE must be an integer, got float", id="page-size-whole-float"),
    pytest.param({"PAGE_SIZE": True}, "PAGE_SIZE must be an integer, got bool", id="page-size-bool"),
    pytest.param({"PAGE_SIZE": [100]}, "PAGE_SIZE must be an integer, got list", id="page-size-list"),
    pytest.param({"PART_SIZE_MB": 4}, "PART_SIZE_MB must be between 5 and 5120, got 4", id="part-size-below-cos-min"),
    pytest.param({"PART_SIZE_MB": "4"}, "PART_SIZE_MB must be between 5 and 5120, got 4", id="part-size-below-min-string"),
    pytest.param({"PART_SIZE_MB": 5121}, "PART_SIZE_MB must be between 5 and 5120, got 5121", id="part-size-above-max"),
    pytest.param({"DOCS_PER_LINE": 0}, "DOCS_PER_LINE must be between 1 and 100000, got 0", id="docs-per-line-zero"),
    pytest.param({"DOCS_PER_LINE": -500}, "DOCS_PER_LINE must be between 1 and 100000, got -500",
                 id="docs-per-line-negative"),
    pytest.param({"DOCS_PER_LINE": False}, "DOCS_PER_LINE must be an integer, got bool", id="docs-per-line-bool"),
    pytest.param({"MAX_RETRIES": -1}, "MAX_RETRIES must be between 0 and 20, got -1", id="max-retries-negative"),
    pytest.param({"RESTORE_PARALLELISM": 1000}, "RESTORE_PARALLELISM must be between 1 and 64, got 1000",
                 id="restore-parallelism-absurd"),
    pytest.param({"REQUEST_TIMEOUT": {"s": 5}}, "REQUEST_TIMEOUT must be an integer, got dict", id="request-timeout-dict"),
    # the safety margin must leave some of the time budget to work in
    pytest.param({"TIME_BUDGET": 30, "SAFETY_MARGIN": 30},
                 "SAFETY_MARGIN (30) must be less than TIME_BUDGET (30): the run stops SAFETY_MARGIN seconds before "
                 "its budget ends, so it would stop at once and back nothing up", id="margin-equals-budget"),
    pytest.param({"TIME_BUDGET": 1, "SAFETY_MARGIN": 1}, "SAFETY_MARGIN (1) must be less than TIME_BUDGET (1)",
                 id="margin-equals-budget-one"),
    pytest.param({"TIME_BUDGET": "10", "SAFETY_MARGIN": "60"}, "SAFETY_MARGIN (60) must be less than TIME_BUDGET (10)",
                 id="margin-above-budget"),
    # restore / verify
    pytest.param({"OPERATION": "restore"}, "COS_KEY is missing", id="restore-without-cos-key"),
    pytest.param({"OPERATION": "restore", "COS_KEY": "  "}, "COS_KEY is empty", id="restore-blank-cos-key"),
    pytest.param({"OPERATION": "restore", "COS_KEY": "latest"},
                 "COS_KEY latest needs SOURCE_DB: the database whose newest backup to restore",
                 id="restore-latest-without-source-db"),
    pytest.param({"OPERATION": "verify"}, "COS_KEY is missing", id="verify-without-cos-key"),
    pytest.param({"OPERATION": "verify", "COS_KEY": "latest", "CLOUDANT_DB": DROP},
                 "COS_KEY latest needs SOURCE_DB (or CLOUDANT_DB) to say whose backups",
                 id="verify-latest-without-any-db"),
    # IAM token URL
    pytest.param({"IAM_TOKEN_URL": "iam.cloud.ibm.com/identity/token"},
                 "IAM_TOKEN_URL must be an https:// or http:// URL, got 'iam.cloud.ibm.com/identity/token'",
                 id="iam-token-url-no-scheme"),
    pytest.param({"IAM_TOKEN_URL": "ftp://iam.example.com/token"}, "IAM_TOKEN_URL must be an https:// or http:// URL",
                 id="iam-token-url-ftp"),
    pytest.param({"IAM_TOKEN_URL": "https://[::1"}, "IAM_TOKEN_URL is not a valid URL", id="iam-token-url-bad-ipv6"),
    pytest.param({"IAM_TOKEN_URL": "https://iam.example.com:abc/identity/token"}, "IAM_TOKEN_URL is not a valid URL",
                 id="iam-token-url-port-not-number"),
    pytest.param({"IAM_TOKEN_URL": "https://iam.example.com:70000/identity/token"}, "IAM_TOKEN_URL is not a valid URL",
                 id="iam-token-url-port-too-big"),
    pytest.param({"IAM_TOKEN_URL": "https://iam.example.com:0/identity/token"}, "IAM_TOKEN_URL has port 0",
                 id="iam-token-url-port-zero"),
    pytest.param({"IAM_TOKEN_URL": "https://{iam.example.com}/identity/token"}, "IAM_TOKEN_URL has an invalid host name",
                 id="iam-token-url-braces"),
    pytest.param({"IAM_TOKEN_URL": "https://:443/identity/token"}, "IAM_TOKEN_URL must be an https:// or http:// URL",
                 id="iam-token-url-port-without-host"),
    # host names the SDK or any HTTP client would refuse later
    pytest.param({"CLOUDANT_URL": "https://[::1"}, "CLOUDANT_URL is not a valid URL", id="cloudant-url-bad-ipv6"),
    pytest.param({"CLOUDANT_URL": "https://acct.cloudant.example.com}"}, "CLOUDANT_URL has an invalid host name",
                 id="cloudant-url-host-trailing-brace"),
    pytest.param({"CLOUDANT_URL": 'https://"acct.cloudant.example.com"'}, "CLOUDANT_URL has an invalid host name",
                 id="cloudant-url-host-quoted"),
    pytest.param({"COS_ENDPOINT": "{s3.example.com}"}, "COS_ENDPOINT has an invalid host name", id="cos-endpoint-braces"),
    # bucket names
    pytest.param({"COS_BUCKET": "Orders_Backups"},
                 "COS_BUCKET 'Orders_Backups' is not a valid bucket name (3-63 characters: a-z, 0-9, '.', '-')",
                 id="bucket-uppercase-underscore"),
    pytest.param({"COS_BUCKET": "ab"}, "COS_BUCKET 'ab' is not a valid bucket name", id="bucket-too-short"),
    pytest.param({"COS_BUCKET": "b" * 64}, "is not a valid bucket name", id="bucket-too-long"),
    pytest.param({"COS_BUCKET": "-orders"}, "COS_BUCKET '-orders' is not a valid bucket name", id="bucket-leading-dash"),
    pytest.param({"COS_BUCKET": "orders-"}, "COS_BUCKET 'orders-' is not a valid bucket name", id="bucket-trailing-dash"),
    pytest.param({"COS_BUCKET": "my bucket"}, "COS_BUCKET 'my bucket' is not a valid bucket name", id="bucket-space"),
    # other parameters
    pytest.param({"COS_PREFIX": "/backups/"}, "COS_PREFIX must not start with '/'", id="prefix-leading-slash"),
    pytest.param({"DISABLE_TLS_VERIFY": "maybe"}, "DISABLE_TLS_VERIFY must be true or false, got 'maybe'",
                 id="flag-word"),
    pytest.param({"CREATE_TARGET": 1}, "CREATE_TARGET must be true or false, got 1", id="flag-int"),
    pytest.param({"CLOUDANT_GZIP": "on"}, "CLOUDANT_GZIP must be true or false, got 'on'", id="gzip-flag-word"),
]


@pytest.mark.parametrize(("changes", "fragment"), BAD_INPUTS)
def test_bad_input_is_rejected_with_its_message(changes: dict[str, Any], fragment: str) -> None:
    message = error_for(changes)
    assert message.startswith("invalid parameters: ")
    assert fragment in message


def test_catalogue_has_at_least_thirty_cases() -> None:
    assert len(BAD_INPUTS) >= 30


def test_config_error_is_the_invalid_option_kind() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(args_with({"CLOUDANT_DB": DROP}))
    assert info.value.exit_code == 2
    assert info.value.kind == "config"


@pytest.mark.parametrize("args", [None, [], "CLOUDANT_URL=x", 42], ids=["none", "list", "string", "int"])
def test_parameters_that_are_not_an_object_are_rejected(args: Any) -> None:
    with pytest.raises(ConfigError, match="parameters must be a JSON object"):
        load_config(args)


def test_every_problem_is_reported_in_one_message() -> None:
    message = error_for({
        "CLOUDANT_DB": "Orders",
        "COS_BUCKET": "Bad_Bucket",
        "PAGE_SIZE": 0,
        "COS_ACCESS_KEY_ID": DROP,
        "COS_SECRET_ACCESS_KEY": DROP,
    })
    assert "CLOUDANT_DB 'Orders' is not a valid database name" in message
    assert "COS_BUCKET 'Bad_Bucket' is not a valid bucket name" in message
    assert "PAGE_SIZE must be between 1 and 100000, got 0" in message
    assert "COS credentials are missing" in message


def test_cloudant_auth_problem_is_reported_even_when_url_is_missing() -> None:
    message = error_for({"CLOUDANT_URL": DROP, "CLOUDANT_USERNAME": "admin"})
    assert "CLOUDANT_URL is missing" in message
    assert "CLOUDANT_USERNAME is set but CLOUDANT_PASSWORD is missing" in message


def test_unknown_keys_such_as_openwhisk_headers_are_ignored() -> None:
    config = load_config(args_with({
        "__ow_headers": {"authorization": "Basic abc"},
        "__ow_method": "post",
        "SOMETHING_ELSE": [1, 2, 3],
    }))
    assert config.db == "orders"


def test_credentials_in_cloudant_url_become_basic_auth_and_leave_the_url() -> None:
    config = load_config(args_with({"CLOUDANT_URL": "https://admin:pa%40ss-word@acct.cloudant.example.com:8443"}))
    assert config.cloudant is not None
    assert config.cloudant.url == "https://acct.cloudant.example.com:8443"
    assert config.cloudant.auth == "basic"
    assert config.cloudant.username == "admin"
    assert config.cloudant.password is not None
    assert config.cloudant.password.reveal() == "pa@ss-word"
    assert "pa@ss-word" not in repr(config)
    assert "pa%40ss-word" not in repr(config)
    assert "pa@ss-word" not in str(config)


def test_basic_auth_from_separate_parameters() -> None:
    config = load_config(args_with({"CLOUDANT_USERNAME": "admin", "CLOUDANT_PASSWORD": "sep-pw-42"}))
    assert config.cloudant is not None
    assert config.cloudant.auth == "basic"
    assert config.cloudant.password is not None and config.cloudant.password.reveal() == "sep-pw-42"
    assert "sep-pw-42" not in repr(config)


def test_cloudant_iam_key_selects_iam_with_the_given_token_url() -> None:
    config = load_config(args_with({"CLOUDANT_IAM_KEY": "iam-key-xyz", "IAM_TOKEN_URL": "http://127.0.0.1:9/token"}))
    assert config.cloudant is not None
    assert config.cloudant.auth == "iam"
    assert config.cloudant.iam_token_url == "http://127.0.0.1:9/token"
    assert "iam-key-xyz" not in repr(config)


def test_cos_iam_credentials_select_iam() -> None:
    config = load_config(args_with({
        "COS_ACCESS_KEY_ID": DROP, "COS_SECRET_ACCESS_KEY": DROP,
        "COS_API_KEY": "cos-iam-key-abc", "COS_SERVICE_INSTANCE_ID": "crn:v1:bluemix:instance",
    }))
    assert config.cos.auth == "iam"
    assert config.cos.service_instance_id == "crn:v1:bluemix:instance"
    assert "cos-iam-key-abc" not in repr(config)


@pytest.mark.parametrize(("endpoint", "expected"), [
    ("s3.eu-de.cloud-object-storage.appdomain.cloud", "https://s3.eu-de.cloud-object-storage.appdomain.cloud"),
    ("s3.example.com:8443", "https://s3.example.com:8443"),
    ("http://localhost:8333", "http://localhost:8333"),
    ("https://s3.example.com/", "https://s3.example.com"),
], ids=["no-scheme", "no-scheme-with-port", "explicit-http-kept", "trailing-slash"])
def test_cos_endpoint_is_normalised(endpoint: str, expected: str) -> None:
    assert load_config(args_with({"COS_ENDPOINT": endpoint})).cos.endpoint == expected


@pytest.mark.parametrize(("raw", "expected"), [("5000", 5000), (" 7 ", 7), ("1", 1), ("100000", 100000)],
                         ids=["plain", "padded", "lowest", "highest"])
def test_integers_given_as_strings_are_accepted(raw: str, expected: int) -> None:
    assert load_config(args_with({"PAGE_SIZE": raw})).tune("PAGE_SIZE") == expected


@pytest.mark.parametrize("value", ["5", 5, "5120"], ids=["min-string", "min-int", "max-string"])
def test_part_size_bounds_are_inclusive(value: Any) -> None:
    assert load_config(args_with({"PART_SIZE_MB": value})).tune("PART_SIZE_MB") == int(value)


def test_defaults_are_applied() -> None:
    config = load_config(args_with({}))
    assert config.tuning == {t.name: t.default for t in TUNABLES}
    assert config.tune("DOCS_PER_LINE") == 500
    assert config.tune("PART_SIZE_MB") == 5
    assert config.key is None and config.source_db is None
    assert config.create_target is False and config.allow_non_empty is False
    assert config.cloudant is not None
    assert config.cloudant.auth == "none"
    assert config.cloudant.verify_tls is True
    assert config.cloudant.iam_token_url == DEFAULT_IAM_TOKEN_URL
    assert config.cos.prefix == ""
    assert config.cos.auth == "hmac"


def test_blank_tuning_value_means_default() -> None:
    assert load_config(args_with({"PAGE_SIZE": "  "})).tune("PAGE_SIZE") == 10_000


@pytest.mark.parametrize(("value", "verify"), [("true", False), ("1", False), (True, False), ("no", True), ("", True)])
def test_disable_tls_verify_flag(value: Any, verify: bool) -> None:
    config = load_config(args_with({"DISABLE_TLS_VERIFY": value}))
    assert config.cos.verify_tls is verify
    assert config.cloudant is not None and config.cloudant.verify_tls is verify


@pytest.mark.parametrize(("value", "gzip"), [(None, False), ("true", True), ("yes", True), (False, False), ("0", False)])
def test_gzip_is_off_unless_asked_for(value: Any, gzip: bool) -> None:
    config = load_config(args_with({} if value is None else {"CLOUDANT_GZIP": value}))
    assert config.cloudant is not None and config.cloudant.gzip is gzip


def test_list_needs_no_cloudant_parameters() -> None:
    config = load_config(args_with({"OPERATION": " LIST ", "CLOUDANT_URL": DROP, "CLOUDANT_DB": DROP}))
    assert config.operation == "list"
    assert config.cloudant is None


def test_restore_latest_with_source_db_is_valid() -> None:
    config = load_config(args_with({"OPERATION": "restore", "COS_KEY": "latest", "SOURCE_DB": "orders-prod"}))
    assert (config.key, config.source_db, config.db) == ("latest", "orders-prod", "orders")


@pytest.mark.parametrize("name", ["a", "a/b", "a$b", "a(b)", "a+b", "a-b", "a_b", "a1", "a" * 238],
                         ids=["one-letter", "slash", "dollar", "parens", "plus", "dash", "underscore", "digit", "max-len"])
def test_valid_database_names_are_accepted(name: str) -> None:
    assert load_config(args_with({"CLOUDANT_DB": name})).db == name


@pytest.mark.parametrize("name", ["_users", "_replicator", "_global_changes"])
def test_system_databases_can_be_backed_up_one_by_one(name: str) -> None:
    # A fan-out on OpenWhisk (CLOUDANT_DB="*", INCLUDE_SYSTEM_DBS) starts one activation per database with
    # CLOUDANT_DB set to that one name: a system database's activation must pass its config check.
    config = load_config(args_with({"CLOUDANT_DB": name, "INCLUDE_SYSTEM_DBS": "true"}))
    assert (config.db, config.many, config.dbs) == (name, False, None)
    assert load_config(args_with({"CLOUDANT_DB": name})).db == name


def test_system_databases_in_a_list_of_databases() -> None:
    config = load_config(args_with({"CLOUDANT_DB": "_users, orders,_replicator,_global_changes"}))
    assert config.many and config.dbs == ("_users", "orders", "_replicator", "_global_changes")


@pytest.mark.parametrize("changes", [
    pytest.param({"OPERATION": "list", "CLOUDANT_DB": "_users"}, id="list"),
    pytest.param({"OPERATION": "verify", "COS_KEY": "latest", "CLOUDANT_DB": "_replicator"}, id="verify-latest"),
    pytest.param({"OPERATION": "verify", "COS_KEY": "latest", "SOURCE_DB": "_users", "CLOUDANT_DB": DROP},
                 id="verify-latest-source-db"),
    pytest.param({"OPERATION": "restore", "COS_KEY": "latest", "SOURCE_DB": "_users", "CLOUDANT_DB": "users-copy"},
                 id="restore-from-a-system-db-backup"),
])
def test_system_database_names_are_accepted_for_list_verify_and_as_restore_source(changes: dict[str, Any]) -> None:
    load_config(args_with(changes))


@pytest.mark.parametrize(("budget", "margin"), [(2, 1), (30, 29), (0, 5), (60, 0), ("10", "9")],
                         ids=["just-below", "one-second-left", "margin-without-budget", "budget-without-margin",
                              "strings"])
def test_a_safety_margin_below_the_time_budget_is_accepted(budget: Any, margin: Any) -> None:
    config = load_config(args_with({"TIME_BUDGET": budget, "SAFETY_MARGIN": margin}))
    assert (config.tune("TIME_BUDGET"), config.tune("SAFETY_MARGIN")) == (int(budget), int(margin))


def test_an_out_of_range_margin_is_reported_once() -> None:
    message = error_for({"TIME_BUDGET": 10, "SAFETY_MARGIN": 99999})
    assert "SAFETY_MARGIN must be between 0 and 3600, got 99999" in message
    assert "must be less than TIME_BUDGET" not in message


# Credentials the IBM Cloud SDK refuses when the client is made (has_bad_first_or_last_char): a ConfigError
# naming the parameter, never the value.
SDK_REFUSED = [
    pytest.param({"CLOUDANT_USERNAME": "admin", "CLOUDANT_PASSWORD": "{brace-pw-51}"}, "CLOUDANT_PASSWORD",
                 "brace-pw-51", id="password-in-braces"),
    pytest.param({"CLOUDANT_USERNAME": "admin", "CLOUDANT_PASSWORD": '"quoted-pw-52"'}, "CLOUDANT_PASSWORD",
                 "quoted-pw-52", id="password-in-quotes"),
    pytest.param({"CLOUDANT_USERNAME": "admin", "CLOUDANT_PASSWORD": "trailing-pw-53}"}, "CLOUDANT_PASSWORD",
                 "trailing-pw-53", id="password-trailing-brace"),
    pytest.param({"CLOUDANT_USERNAME": "admin", "CLOUDANT_PASSWORD": '{"json-pw-54"'}, "CLOUDANT_PASSWORD",
                 "json-pw-54", id="password-leading-brace"),
    pytest.param({"CLOUDANT_USERNAME": '"admin-55"', "CLOUDANT_PASSWORD": "fine-pw-55"}, "CLOUDANT_USERNAME",
                 "fine-pw-55", id="username-in-quotes"),
    pytest.param({"CLOUDANT_IAM_KEY": "{iam-key-56}"}, "CLOUDANT_IAM_KEY", "iam-key-56", id="iam-key-in-braces"),
    pytest.param({"CLOUDANT_IAM_KEY": 'iam-key-57"'}, "CLOUDANT_IAM_KEY", "iam-key-57", id="iam-key-trailing-quote"),
    pytest.param({"CLOUDANT_URL": "https://admin:%7Burl-pw-58%7D@acct.example.com"}, "the password in CLOUDANT_URL",
                 "url-pw-58", id="url-password-encoded-braces"),
    pytest.param({"CLOUDANT_URL": "https://admin:url-pw-59%22@acct.example.com"}, "the password in CLOUDANT_URL",
                 "url-pw-59", id="url-password-encoded-quote"),
    pytest.param({"CLOUDANT_URL": "https://%7Badmin:url-pw-60@acct.example.com"}, "the user name in CLOUDANT_URL",
                 "url-pw-60", id="url-user-encoded-brace"),
]


@pytest.mark.parametrize(("changes", "param", "secret"), SDK_REFUSED)
def test_credentials_the_sdk_refuses_are_a_config_error(changes: dict[str, Any], param: str, secret: str) -> None:
    message = error_for(changes)
    assert f"{param} must not start or end with {{, }} or \" (the IBM Cloud SDK refuses it)" in message
    assert secret not in message and secret not in redact(message)


@pytest.mark.parametrize("value", ["{", "}", '"', "{x", "x}", '"x', 'x"', "x{", "}x", "x\"y", "a{b}c", "ok-value"])
def test_the_credential_check_matches_the_sdk(value: str) -> None:
    # Exactly what the SDK refuses is refused, nothing more: a value that passes makes an authenticator.
    from ibm_cloud_sdk_core.authenticators import BasicAuthenticator, IAMAuthenticator
    from ibm_cloud_sdk_core.utils import has_bad_first_or_last_char

    args = args_with({"CLOUDANT_USERNAME": "admin", "CLOUDANT_PASSWORD": value})
    if has_bad_first_or_last_char(value):
        with pytest.raises(ConfigError, match="CLOUDANT_PASSWORD must not start or end"):
            load_config(args)
        with pytest.raises(ConfigError, match="CLOUDANT_IAM_KEY must not start or end"):
            load_config(args_with({"CLOUDANT_IAM_KEY": value}))
    else:
        basic = load_config(args).cloudant
        assert basic is not None and basic.username is not None and basic.password is not None
        BasicAuthenticator(basic.username, basic.password.reveal())
        iam = load_config(args_with({"CLOUDANT_IAM_KEY": value})).cloudant
        assert iam is not None and iam.iam_key is not None
        IAMAuthenticator(iam.iam_key.reveal(), url=iam.iam_token_url)


@pytest.mark.parametrize("changes", [
    pytest.param({"CLOUDANT_USERNAME": "admin", "CLOUDANT_PASSWORD": "{main-pw-61}"}, id="password-in-braces"),
    pytest.param({"CLOUDANT_IAM_KEY": '"main-key-62"'}, id="iam-key-in-quotes"),
    pytest.param({"IAM_TOKEN_URL": "https://[::1", "CLOUDANT_IAM_KEY": "main-key-63"}, id="iam-token-url-bad-ipv6"),
    pytest.param({"CLOUDANT_URL": "https://acct.example.com}"}, id="cloudant-url-trailing-brace"),
])
def test_the_action_reports_them_as_config_errors_not_crashes(changes: dict[str, Any]) -> None:
    import io

    from backup.action import main
    from backup.log import Log

    stream = io.StringIO()
    result = main(args_with(changes), log=Log(stream))
    assert result["kind"] == "config", result
    assert "Traceback" not in stream.getvalue() and "crashed" not in stream.getvalue()
    for value in changes.values():
        if "main-" in value:
            assert value.strip('{}"') not in stream.getvalue() + str(result)


# Secrets never appear in the error message: raw, and after redact().
SECRET_CASES = [
    pytest.param({"CLOUDANT_USERNAME": "admin", "CLOUDANT_PASSWORD": "Cl0udant-Pw!x", "CLOUDANT_IAM_KEY": "iam-K3y-zz9",
                  "COS_API_KEY": "cos-Api-K3y-77", "COS_SERVICE_INSTANCE_ID": "crn:1"},
                 ["Cl0udant-Pw!x", "iam-K3y-zz9", "cos-Api-K3y-77", "hmac-secret-for-base-config"], id="both-auths-twice"),
    pytest.param({"CLOUDANT_PASSWORD": "only-pw-9876", "CLOUDANT_URL": "https://acct.example.com/db",
                  "COS_ACCESS_KEY_ID": DROP, "COS_SECRET_ACCESS_KEY": "cos-Secr3t-55"},
                 ["only-pw-9876", "cos-Secr3t-55"], id="half-pairs-and-bad-url"),
    pytest.param({"CLOUDANT_URL": "https://admin:url-Pw-4321@acct.example.com/orders"},
                 ["url-Pw-4321"], id="credentials-in-url-with-path"),
    pytest.param({"CLOUDANT_URL": "https://admin:url-Pw-8765@acct.example.com:badport"},
                 ["url-Pw-8765"], id="credentials-in-url-with-bad-port"),
    pytest.param({"COS_ENDPOINT": "https://AKID:endpoint-Secr3t@s3.example.com"},
                 ["endpoint-Secr3t"], id="credentials-in-cos-endpoint"),
    pytest.param({"CLOUDANT_URL": "admin:noscheme-Pw-11@acct.example.com"}, ["noscheme-Pw-11"],
                 id="credentials-in-url-without-scheme"),
    pytest.param({"CLOUDANT_URL": "https://admin:hash#Pw-22@acct.example.com"}, ["hash"],
                 id="password-with-hash-in-url"),
    # no scheme, and a password holding what ends an authority: nothing before the last '@' is echoed
    pytest.param({"CLOUDANT_URL": "admin:pa/ss-Pw-31@acct.example.com"}, ["pa/ss", "ss-Pw-31", "admin:pa"],
                 id="no-scheme-slash-in-password"),
    pytest.param({"CLOUDANT_URL": "admin:pa/ss-Pw-32@acct.example.com/orders"}, ["pa/ss", "ss-Pw-32"],
                 id="no-scheme-slash-in-password-and-path"),
    pytest.param({"CLOUDANT_URL": "admin:p@ss/Pw-33@acct.example.com"}, ["p@ss", "Pw-33"],
                 id="no-scheme-at-and-slash-in-password"),
    pytest.param({"CLOUDANT_URL": "admin:qu?ery#Pw-34@acct.example.com"}, ["qu?ery", "Pw-34"],
                 id="no-scheme-query-and-hash-in-password"),
    pytest.param({"CLOUDANT_URL": "admin:sch://eme-Pw-35@acct.example.com"}, ["sch", "eme-Pw-35"],
                 id="no-scheme-colon-slashes-in-password"),
    pytest.param({"IAM_TOKEN_URL": "user:tok/en-Pw-36@iam.example.com/identity/token"}, ["tok/en", "en-Pw-36"],
                 id="iam-token-url-no-scheme-credentials"),
    pytest.param({"IAM_TOKEN_URL": "user:tok/en-Pw-37://iam.example.com@x"}, ["tok/en", "en-Pw-37"],
                 id="iam-token-url-odd-scheme-with-credentials"),
    pytest.param({"IAM_TOKEN_URL": "ftp://user:tok/en-Pw-38@iam.example.com/identity/token"}, ["tok/en", "en-Pw-38"],
                 id="iam-token-url-ftp-with-credentials"),
    pytest.param({"COS_ENDPOINT": "AKID:cos/Secr3t-39@s3.example.com"}, ["cos/Secr3t", "Secr3t-39"],
                 id="cos-endpoint-no-scheme-slash-in-secret"),
]


@pytest.mark.parametrize(("changes", "secrets"), SECRET_CASES)
def test_error_message_never_contains_a_secret(changes: dict[str, Any], secrets: list[str]) -> None:
    message = error_for(changes)
    for secret in secrets:
        assert secret not in message
        assert secret not in redact(message)


def test_port_zero_is_rejected() -> None:
    assert "CLOUDANT_URL" in error_for({"CLOUDANT_URL": "https://acct.cloudant.example.com:0"})


@pytest.mark.parametrize("bucket", ["192.168.5.4", "orders..backups"], ids=["ip-address", "adjacent-periods"])
def test_bucket_names_cos_refuses_are_rejected(bucket: str) -> None:
    assert "COS_BUCKET" in error_for({"COS_BUCKET": bucket})


def test_iam_token_url_without_host_is_rejected() -> None:
    assert "IAM_TOKEN_URL" in error_for({"IAM_TOKEN_URL": "https://"})


def test_a_password_in_iam_token_url_is_a_secret_everywhere() -> None:
    # A private IAM proxy with basic auth: SDK errors about the token fetch quote the whole URL.
    load_config(args_with({"IAM_TOKEN_URL": "https://svc:token%2Fpw-77@iam.internal.example/identity/token"}))
    text = "CredentialRetrievalError: POST https://svc:token%2Fpw-77@iam.internal.example failed; pw token/pw-77"
    assert "pw-77" not in redact(text)


# ---- issue 14: the IAM keys only go to an https token endpoint ----------------------------------------------------


@pytest.mark.parametrize("url", [
    "http://iam.example.com/identity/token",
    "http://attacker.example:8080/identity/token",
    "http://10.1.2.3/identity/token",
    "http://localhost.attacker.example/identity/token",
    "http://127.0.0.1.attacker.example/identity/token",
    "http://[::2]/identity/token",
    "http://u:iam-proxy-pw-14@iam.example.com/identity/token",
])
def test_iam_token_url_must_use_https_except_on_a_loopback_host(url: str) -> None:
    message = error_for({"CLOUDANT_IAM_KEY": "https-check-iam-key", "IAM_TOKEN_URL": url})
    assert "IAM_TOKEN_URL must use https://" in message, message
    assert "iam-proxy-pw-14" not in message
    # Even when no IAM key is given now: the URL is checked like every other parameter.
    assert "IAM_TOKEN_URL must use https://" in error_for({"IAM_TOKEN_URL": url})


@pytest.mark.parametrize("url", [
    "https://iam.cloud.ibm.com/identity/token",
    "https://private.iam.cloud.ibm.com/identity/token",
    "https://10.1.2.3:8443/identity/token",
    "http://127.0.0.1:9/identity/token",
    "http://127.45.6.7/identity/token",
    "http://localhost:8080/identity/token",
    "http://LOCALHOST/identity/token",
    "http://[::1]:8080/identity/token",
])
def test_https_or_a_loopback_host_is_accepted_as_iam_token_url(url: str) -> None:
    config = load_config(args_with({"CLOUDANT_IAM_KEY": "https-check-iam-key", "IAM_TOKEN_URL": url}))
    assert config.cloudant is not None and config.cloudant.iam_token_url == url


def test_iam_token_url_is_not_a_public_parameter() -> None:
    from backup.config import PUBLIC_PARAMS

    config = load_config(args_with({"IAM_TOKEN_URL": "https://iam.example.com/identity/token", "PAGE_SIZE": 10}))
    assert "IAM_TOKEN_URL" not in PUBLIC_PARAMS and "IAM_TOKEN_URL" not in config.public_params
    assert config.public_params["PAGE_SIZE"] == 10


# ---- issue 17: compression and encryption parameters ---------------------------------------------------------------


def test_backups_are_gzip_compressed_and_unencrypted_by_default() -> None:
    config = load_config(BASE)
    assert (config.compression, config.compression_level, config.recipients, config.identities) == ("gzip", None, (), None)


@pytest.mark.parametrize(("changes", "expected"), [
    ({"COMPRESSION": "zstd"}, ("zstd", None)), ({"COMPRESSION": "ZSTD", "COMPRESSION_LEVEL": "19"}, ("zstd", 19)),
    ({"COMPRESSION": "none"}, ("none", None)), ({"COMPRESSION": "gzip", "COMPRESSION_LEVEL": 6}, ("gzip", 6)),
], ids=["zstd", "zstd-19", "none", "gzip-6"])
def test_compression_and_its_level(changes: dict[str, Any], expected: tuple[str, int | None]) -> None:
    config = load_config(args_with(changes))
    assert (config.compression, config.compression_level) == expected


@pytest.mark.parametrize(("changes", "message"), [
    ({"COMPRESSION": "bzip2"}, "COMPRESSION must be one of gzip, zstd, none, got 'bzip2'"),
    ({"COMPRESSION": "gzip", "COMPRESSION_LEVEL": "10"}, "COMPRESSION_LEVEL must be between 1 and 9 for gzip"),
    ({"COMPRESSION": "none", "COMPRESSION_LEVEL": "3"}, "COMPRESSION_LEVEL is set but COMPRESSION is none"),
    ({"COMPRESSION_LEVEL": "20"}, "COMPRESSION_LEVEL must be between 0 and 19"),
    ({"ENCRYPT_TO": "ssh-ed25519 AAAA"}, "ENCRYPT_TO: item 1 is not an age public key"),
    ({"ENCRYPT_TO": "age1qqqqqqqq"}, "ENCRYPT_TO: item 1 (age1qqqqqqqq...) is not a valid age public key"),
], ids=["unknown-codec", "gzip-level-10", "level-without-codec", "level-20", "ssh-key", "bad-checksum"])
def test_bad_compression_or_recipients_are_named(changes: dict[str, Any], message: str) -> None:
    assert message in error_for(changes)


def test_encrypt_to_takes_public_keys_and_age_identity_private_ones_which_become_secrets() -> None:
    from pyrage import x25519

    one, two = x25519.Identity.generate(), x25519.Identity.generate()
    identity_file = f"# created: today\n# public key: {one.to_public()}\n{one}\n\n{two}\n"
    config = load_config(args_with({"ENCRYPT_TO": f"{one.to_public()}, {two.to_public()},",
                                    "AGE_IDENTITY": identity_file}))
    assert config.recipients == (str(one.to_public()), str(two.to_public()))
    assert config.identities is not None and config.identities.recipients == set(config.recipients)
    assert str(one) not in repr(config) and str(two) not in repr(config)
    text = f"failed with {one} and {two} in it, and {identity_file!r}"
    assert str(one) not in redact(text) and str(two) not in redact(text)
    assert "ENCRYPT_TO" in [name for name in config.public_params] and "AGE_IDENTITY" not in config.public_params


@pytest.mark.parametrize("where", ["ENCRYPT_TO", "AGE_IDENTITY"])
def test_a_key_in_the_wrong_parameter_is_refused_without_quoting_it(where: str) -> None:
    from pyrage import x25519

    key = x25519.Identity.generate()
    value = str(key) if where == "ENCRYPT_TO" else str(key.to_public())
    message = error_for({where: value})
    assert where in message and value not in message and value[:20] not in message
    assert ("private key" in message) if where == "ENCRYPT_TO" else ("public key" in message)


def test_an_age_private_key_is_masked_even_when_nobody_registered_it() -> None:
    from pyrage import x25519

    key = str(x25519.Identity.generate())
    assert key not in redact(f"an SDK said: {key}.") and "AGE-SECRET-KEY-1" not in redact(key.lower())


def test_decrypt_needs_the_key_and_the_output_file_but_no_database() -> None:
    message = error_for({"OPERATION": "decrypt", "CLOUDANT_URL": DROP, "CLOUDANT_DB": DROP})
    assert "COS_KEY is missing" in message and "OUTPUT is missing" in message and "CLOUDANT" not in message


def test_decrypt_of_the_latest_backup_needs_to_know_whose() -> None:
    message = error_for({"OPERATION": "decrypt", "COS_KEY": "latest", "OUTPUT": "plain.txt", "CLOUDANT_DB": DROP})
    assert "COS_KEY latest needs SOURCE_DB (or CLOUDANT_DB)" in message
