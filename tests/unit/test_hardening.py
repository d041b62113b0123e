"""Issue 14: what an invoker can and cannot change, and errors that say what really failed.

- Under `final` (deploy.sh annotates the action) OpenWhisk refuses an invocation that names a bound parameter:
  a continuation or a fan-out activation passes on only what the action does not have bound.
- IAM_TOKEN_URL never travels in an activation payload, and the IAM token exchange always checks TLS.
- A COS error is an IAM failure only when the failing request went to the token endpoint.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
from ibm_botocore.exceptions import ReadTimeoutError

from backup import cloudant, cos, openwhisk
from backup.config import load_config
from backup.redaction import MASK, redact
from tests.helpers import API_KEY, CapturedLog, FakeOpenWhisk, run_main

# What deploy.sh binds (opts.json): the action's parameters on the platform.
BOUND: dict[str, Any] = {
    "CLOUDANT_URL": "http://127.0.0.1:9",
    "CLOUDANT_USERNAME": "admin",
    "CLOUDANT_PASSWORD": "hardening-couch-password",
    "COS_ENDPOINT": "http://127.0.0.1:9",
    "COS_BUCKET": "hardening-bucket",
    "COS_ACCESS_KEY_ID": "AKIDHARDENING",
    "COS_SECRET_ACCESS_KEY": "hardening-hmac-secret",
    "IAM_TOKEN_URL": "https://iam.example.com/identity/token",
    "CONTINUE_ASYNC": "true",
    "KEEP_LAST": 7,
}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- point 1: bound parameters are final --------------------------------------------------------------------


def test_under_final_a_fan_out_passes_on_only_what_is_not_bound(openwhisk: FakeOpenWhisk) -> None:
    openwhisk.bound, openwhisk.final = dict(BOUND), True
    # The invocation (a trigger, or someone) gives the databases and one parameter the action does not bind.
    result, _ = run_main({**BOUND, "CLOUDANT_DB": "one,two", "BACKUP_MODE": "incremental"})
    assert result["ok"] and result["failed"] == [], result
    assert [call["body"] for call in openwhisk.calls] == [
        {"BACKUP_MODE": "incremental", "CLOUDANT_DB": "one"},
        {"BACKUP_MODE": "incremental", "CLOUDANT_DB": "two"},
    ]


def test_under_final_a_continuation_passes_on_only_what_is_not_bound(openwhisk: FakeOpenWhisk) -> None:
    openwhisk.bound, openwhisk.final = dict(BOUND), True
    config = load_config({**BOUND, "CLOUDANT_DB": "orders", "PAGE_SIZE": "50", "CONTINUE_HOP": 2})
    log = CapturedLog()
    continued = openwhisk_continue(config, log)
    assert continued == {"hop": 3, "activation_id": openwhisk.calls[-1]["activation_id"]}, continued
    assert openwhisk.calls[-1]["body"] == {"PAGE_SIZE": "50", "CLOUDANT_DB": "orders", "CONTINUE_HOP": 3}


def openwhisk_continue(config: Any, log: CapturedLog) -> dict[str, Any]:
    return openwhisk.continue_backup(config, log)


def register_api_key() -> None:
    openwhisk.register_api_key()


def test_without_final_every_public_parameter_is_passed_on_as_before(openwhisk: FakeOpenWhisk) -> None:
    openwhisk.bound, openwhisk.final = dict(BOUND), False  # an action deployed before `final`: overrides allowed
    result, _ = run_main({**BOUND, "CLOUDANT_DB": "one,two", "COS_PREFIX": "adhoc/"})
    assert result["ok"], result
    config = load_config({**BOUND, "CLOUDANT_DB": "one", "COS_PREFIX": "adhoc/"})
    assert openwhisk_continue(config, CapturedLog())["hop"] == 1
    body = openwhisk.calls[-1]["body"]
    assert body["COS_PREFIX"] == "adhoc/" and body["COS_BUCKET"] == "hardening-bucket" and body["KEEP_LAST"] == 7


def test_when_the_action_record_cannot_be_read_only_what_the_activation_sets_is_passed_on_and_that_is_logged(
        openwhisk: FakeOpenWhisk) -> None:
    """A final action refuses a payload naming any bound parameter: with its record unknown, none is named."""
    openwhisk.record_status = 500
    log = CapturedLog()
    config = load_config({**BOUND, "CLOUDANT_DB": "orders"})
    assert "activation_id" in openwhisk_continue(config, log)
    assert set(openwhisk.calls[-1]["body"]) <= {"CLOUDANT_DB", "CONTINUE_HOP", "OPERATION", "COS_KEY"}
    (warning,) = log.events("bound_parameters_unknown")
    assert "HTTP 500" in warning["error"]


# ---- point 2: IAM_TOKEN_URL stays where it is bound; the token exchange checks TLS ------------------------------


def test_iam_token_url_is_never_passed_on(openwhisk: FakeOpenWhisk) -> None:
    args = {**BOUND, "CLOUDANT_DB": "one,two", "IAM_TOKEN_URL": "https://iam.example.com/identity/token"}
    result, _ = run_main(args)
    assert result["ok"], result
    config = load_config({**args, "CLOUDANT_DB": "one"})
    assert "IAM_TOKEN_URL" not in config.public_params
    openwhisk_continue(config, CapturedLog())
    assert len(openwhisk.calls) == 3
    for call in openwhisk.calls:
        assert "IAM_TOKEN_URL" not in call["body"] and "iam.example.com" not in str(call["body"])


def test_the_iam_token_exchange_verifies_tls_even_when_disable_tls_verify_is_set() -> None:
    config = load_config({
        "CLOUDANT_URL": "https://acct.example.com", "CLOUDANT_DB": "orders", "CLOUDANT_IAM_KEY": "tls-cloudant-iam-key",
        "COS_ENDPOINT": "https://s3.example.com", "COS_BUCKET": "b-tls", "COS_API_KEY": "tls-cos-iam-key",
        "COS_SERVICE_INSTANCE_ID": "crn:v1:test", "DISABLE_TLS_VERIFY": "true",
    })
    assert config.cloudant is not None and not config.cloudant.verify_tls and not config.cos.verify_tls
    client = cloudant.make_client(config.cloudant, 10, 0)
    assert client.disable_ssl_verification is True  # requests to CLOUDANT_URL: as asked
    assert client.authenticator.token_manager.disable_ssl_verification is False  # the token exchange: never
    s3 = cos.make_client(config.cos, 10, 0)
    assert s3._endpoint.http_session._verify is False  # requests to COS_ENDPOINT: as asked
    assert s3._request_signer._credentials.token_manager.get_verify() is True  # the token exchange: never


# ---- point 3: the action's own API key ---------------------------------------------------------------------------


def test_the_action_api_key_is_registered_as_a_secret(openwhisk: FakeOpenWhisk) -> None:
    register_api_key()  # the fixture set __OW_API_KEY, as the platform does for an action with provide-api-key
    user, _, key = API_KEY.partition(":")
    assert redact(f"auth {API_KEY} / {key} / {user}") == f"auth {MASK} / {MASK} / {MASK}"


# ---- point 6: diagnosis from the failing request, not from words in a message ------------------------------------


def _hmac_client(endpoint: str) -> Any:
    config = load_config({"OPERATION": "list", "COS_ENDPOINT": endpoint, "COS_BUCKET": "api-tokens",
                          "COS_ACCESS_KEY_ID": "AKIDTOKENS", "COS_SECRET_ACCESS_KEY": "hardening-hmac-tokens"})
    return cos.make_client(config.cos, 5, 0)


def test_a_cos_error_naming_a_bucket_api_tokens_is_no_iam_failure_with_hmac_keys() -> None:
    s3 = _hmac_client(f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(Exception) as info:  # noqa: B017 - whatever the SDK raises goes to describe
        s3.head_bucket(Bucket="api-tokens")
    message = str(cos.describe(info.value, "checking bucket cos://api-tokens/"))
    assert "IAM" not in message and "COS_API_KEY" not in message and "token endpoint" not in message, message
    assert "api-tokens" in message


@pytest.mark.parametrize("exc", [
    ReadTimeoutError(endpoint_url="https://s3.example.com/api-tokens/x"),
    ValueError("the continuation token is not valid"),
    RuntimeError("token bucket empty"),
], ids=["botocore-read-timeout", "value-error", "runtime-error"])
def test_an_error_whose_text_says_token_is_no_iam_failure(exc: Exception) -> None:
    message = str(cos.describe(exc, "listing cos://b/"))
    assert "IAM" not in message and "COS_API_KEY" not in message, message


def test_an_unreachable_token_endpoint_is_an_iam_failure() -> None:
    port = _closed_port()
    config = load_config({"OPERATION": "list", "COS_ENDPOINT": "http://127.0.0.1:9", "COS_BUCKET": "b-iam",
                          "COS_API_KEY": "hardening-cos-key", "COS_SERVICE_INSTANCE_ID": "crn:v1:test",
                          "IAM_TOKEN_URL": f"http://127.0.0.1:{port}/identity/token"})
    s3 = cos.make_client(config.cos, 5, 0)
    with pytest.raises(Exception) as info:  # noqa: B017 - whatever the SDK raises goes to describe
        s3.head_bucket(Bucket="b-iam")
    message = str(cos.describe(info.value, "checking bucket cos://b-iam/"))
    assert "IAM token endpoint" in message and f"127.0.0.1:{port}" in message, message


def test_a_token_endpoint_refusing_the_key_is_an_iam_failure(iam: Any) -> None:
    config = load_config({"OPERATION": "list", "COS_ENDPOINT": "http://127.0.0.1:9", "COS_BUCKET": "b-iam",
                          "COS_API_KEY": "hardening-unknown-cos-key", "COS_SERVICE_INSTANCE_ID": "crn:v1:test",
                          "IAM_TOKEN_URL": iam.url})
    s3 = cos.make_client(config.cos, 5, 0)
    with pytest.raises(Exception) as info:  # noqa: B017 - whatever the SDK raises goes to describe
        s3.head_bucket(Bucket="b-iam")
    message = str(cos.describe(info.value, "checking bucket cos://b-iam/"))
    assert "the IAM token endpoint refused COS_API_KEY" in message, message
    assert "hardening-unknown-cos-key" not in redact(message)
