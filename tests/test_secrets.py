"""Secrets never leave: not in logs, results or errors, also not URL-encoded or inside a URL.

The scenarios below put secrets in every place a user can; `test_no_secret_in_any_output_of_the_session`
(moved last by conftest) then scans every output the whole suite recorded through `run_main`/the CLI.
"""

from __future__ import annotations

import base64
import json
import os
from urllib.parse import quote, quote_plus

import pytest

from tests.helpers import (
    API_KEY,
    OUTPUTS,
    FakeOpenWhisk,
    cos_params,
    couch_params,
    load_docs,
    run_main,
    sample_docs,
    session_secrets,
)

pytestmark = pytest.mark.integration

# Secret values used by the scenarios here, on top of those of the stack (collected in the final scan).
TEST_SECRETS = {"s3cr3t+/=&@pw!", "wr0ng%2Fpass+word", "unknown-iam-key-9f8e7d", "cos-secret-wrong-4242"}
USED: set[str] = set()


def forms(secret: str) -> set[str]:
    return {secret, quote(secret, safe=""), quote_plus(secret), base64.b64encode(secret.encode()).decode()}


def assert_clean(*texts: str, secrets: set[str]) -> None:
    for text in texts:
        for secret in secrets:
            for form in forms(secret):
                assert form not in text, f"a secret leaked as {form[:3]}..."


def test_credentials_inside_the_url_work_and_are_redacted(couch, db_name, seaweed, bucket):
    load_docs(couch, db_name, sample_docs(filler=3))
    user, password = couch.admin
    url = couch.url.replace("://", f"://{user}:{quote(password, safe='')}@")
    USED.add(password)
    result, log = run_main({"CLOUDANT_URL": url, "CLOUDANT_DB": db_name, **cos_params(seaweed, bucket)})
    assert result["ok"], result
    assert_clean(log.text, str(result), secrets={password})
    assert couch.url in log.text or "****" in log.text or db_name in log.text


def test_wrong_password_inside_the_url_is_redacted_in_the_error(couch, db_name, seaweed, bucket):
    load_docs(couch, db_name, sample_docs(filler=1))
    wrong = "wr0ng%2Fpass+word"
    url = couch.url.replace("://", f"://{couch.admin[0]}:{quote(wrong, safe='')}@")
    result, log = run_main({"CLOUDANT_URL": url, "CLOUDANT_DB": db_name, **cos_params(seaweed, bucket)})
    assert result["kind"] == "cloudant" and "401" in result["error"]
    assert_clean(log.text, str(result), secrets={wrong})


def test_wrong_hmac_secret_is_a_clear_error_without_the_secret(couch, db_name, seaweed, bucket):
    load_docs(couch, db_name, sample_docs(filler=1))
    params = {**couch_params(couch, db_name), **cos_params(seaweed, bucket), "COS_SECRET_ACCESS_KEY": "cos-secret-wrong-4242"}
    result, log = run_main(params)
    assert result["kind"] == "cos" and "COS_SECRET_ACCESS_KEY" in result["error"]
    assert_clean(log.text, str(result), secrets={"cos-secret-wrong-4242"})


def test_iam_endpoint_refusing_the_key_is_a_clear_error_without_the_key(couch, db_name, seaweed, bucket, iam):
    params = {**couch_params(couch, db_name), **cos_params(seaweed, bucket)}
    del params["CLOUDANT_USERNAME"], params["CLOUDANT_PASSWORD"]
    result, log = run_main({**params, "CLOUDANT_IAM_KEY": "unknown-iam-key-9f8e7d", "IAM_TOKEN_URL": iam.url})
    assert result["kind"] == "cloudant" and "IAM token endpoint refused CLOUDANT_IAM_KEY" in result["error"]
    assert_clean(log.text, str(result), secrets={"unknown-iam-key-9f8e7d"})


def test_invalid_config_errors_never_echo_secrets():
    result, log = run_main({"CLOUDANT_URL": "https://u:s3cr3t+/=&@pw!@host/path", "CLOUDANT_DB": "x",
                            "CLOUDANT_IAM_KEY": "unknown-iam-key-9f8e7d", "COS_ENDPOINT": "e", "COS_BUCKET": "b",
                            "COS_SECRET_ACCESS_KEY": "cos-secret-wrong-4242"})
    assert result["kind"] == "config"
    assert_clean(log.text, str(result), secrets=TEST_SECRETS)


def test_the_action_api_key_never_leaves_even_when_the_platform_echoes_it(openwhisk: FakeOpenWhisk):
    # A gateway in front of OpenWhisk answers an invocation with an error page that quotes the request's
    # credentials: the action's own key (__OW_API_KEY) must not reach the result or the log.
    openwhisk.status = 502
    openwhisk.answer = f"bad gateway: user:key {API_KEY} / key {API_KEY.partition(':')[2]}".encode()
    params = {"CLOUDANT_URL": "http://127.0.0.1:9", "CLOUDANT_DB": "one,two", "COS_ENDPOINT": "http://127.0.0.1:9",
              "COS_BUCKET": "b-api-key", "COS_ACCESS_KEY_ID": "AKID", "COS_SECRET_ACCESS_KEY": "cos-secret-wrong-4242"}
    result, log = run_main(params)
    assert result["failed"] == ["one", "two"] and "HTTP 502" in result["databases"][0]["error"], result
    assert_clean(log.text, json.dumps(result), secrets={API_KEY, *API_KEY.split(":")})
    # What left the activation (the payloads, recorded by the fake) holds no key either.
    assert openwhisk.calls and all("not-a-real-openwhisk-key" not in json.dumps(c["body"]) for c in openwhisk.calls)


def test_activation_payloads_and_the_api_key_are_in_the_session_scan(openwhisk: FakeOpenWhisk):
    result, _ = run_main({"CLOUDANT_URL": "http://127.0.0.1:9", "CLOUDANT_DB": "one,two", "COS_ENDPOINT": "http://127.0.0.1:9",
                          "COS_BUCKET": "b-api-key", "COS_ACCESS_KEY_ID": "AKID", "COS_SECRET_ACCESS_KEY": "cos-secret-wrong-4242"})
    assert result["ok"], result
    assert openwhisk.calls[0]["body"] in [_json_or_none(output) for output in OUTPUTS]  # recorded for the scan
    assert {API_KEY, *API_KEY.split(":")} <= session_secrets()


def _json_or_none(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return None


def secrets_in_play() -> set[str]:
    return TEST_SECRETS | USED | session_secrets()


def test_no_secret_in_any_output_of_the_session():
    """Runs last (see conftest): every output the suite recorded, against every secret in play."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.skip("under pytest-xdist a worker sees only its own outputs: the controller scans every worker's "
                    "at the session's end (tests/conftest.py pytest_sessionfinish)")
    assert OUTPUTS, "no output was recorded: the scan would prove nothing"
    assert_clean(*OUTPUTS, secrets=secrets_in_play())
