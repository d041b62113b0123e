"""OpenWhisk REST calls from inside an activation: continue a checkpointed backup, fan out databases.

Uses the activation's own environment: `__OW_API_HOST`, `__OW_NAMESPACE`, `__OW_ACTION_NAME`, and
`__OW_API_KEY` (present when the action is annotated `provide-api-key`; deploy.sh sets it). That key is a secret
like any other: registered for redaction before it is used.
Only non-secret parameters are passed on: the platform merges the action's bound parameters itself,
so credentials never travel in an activation's payload. Under `final` (deploy.sh annotates the action) OpenWhisk
refuses an invocation that names a bound parameter at all: the payload then leaves out every bound one.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote

import requests

from backup.config import Config
from backup.errors import BackupError
from backup.log import Log
from backup.redaction import register

# Parameters an activation always gives the next one itself (never bound: deploy.sh refuses them in opts.json).
OWN_PARAMS = ("CLOUDANT_DB", "CONTINUE_HOP")


def available() -> bool:
    return all(os.environ.get(name) for name in ("__OW_API_HOST", "__OW_API_KEY", "__OW_ACTION_NAME"))


def register_api_key() -> None:
    """The action's own API key (`user:key`) is a secret: whole and each half are masked wherever they appear."""
    value = os.environ.get("__OW_API_KEY")
    if value:
        register(value)
        for part in value.split(":", 1):
            register(part)


def _action_url() -> tuple[str, tuple[str, str]]:
    """This action's REST URL and the basic auth of its own key."""
    if not available():
        raise BackupError("cannot invoke the action: __OW_API_HOST/__OW_API_KEY are not set "
                          "(annotate the action with provide-api-key true; deploy.sh does)")
    register_api_key()
    host = os.environ["__OW_API_HOST"].rstrip("/")
    if "://" not in host:
        host = "https://" + host
    namespace, _, name = os.environ["__OW_ACTION_NAME"].lstrip("/").partition("/")
    user, _, key = os.environ["__OW_API_KEY"].partition(":")
    return f"{host}/api/v1/namespaces/{quote(namespace, safe='')}/actions/{quote(name)}", (user, key)


def bound_parameters() -> tuple[bool, frozenset[str]]:
    """From this action's record (read with its own key, without the code): whether it is annotated `final`, and
    the names of its bound parameters that have a value (OpenWhisk lets an invocation give one bound to null).
    The values (secrets among them) are dropped at once. BackupError when the record cannot be read."""
    url, auth = _action_url()
    what = f"reading the parameters of {os.environ['__OW_ACTION_NAME']}"
    try:
        response = requests.get(url, params={"code": "false"}, auth=auth, timeout=30)
    except requests.RequestException as exc:
        raise BackupError(f"{what}: {type(exc).__name__}: {exc}") from None
    if response.status_code != 200:
        raise BackupError(f"{what}: HTTP {response.status_code}")
    try:
        record = response.json()
        final = any(a["key"] == "final" and a.get("value") is True for a in record.get("annotations") or [])
        bound = frozenset(str(p["key"]) for p in record.get("parameters") or [] if p.get("value") is not None)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise BackupError(f"{what}: HTTP 200 without an action record") from None
    return final, bound


def passed_on(params: dict[str, Any], log: Log) -> dict[str, Any]:
    """The payload for another activation of this action: `params` without the action's bound parameters when it
    is `final` (OpenWhisk refuses an invocation naming one; the next activation gets them from the platform, with
    the values this one had). Not final (deployed before deploy.sh set it): `params` as they are, overrides
    included. Record unreadable: only what the activation itself sets (a final action refuses any payload naming a
    bound parameter; the platform supplies those), and a warning: overrides given at invoke time are lost then."""
    if not available():
        return dict(params)  # invoking fails anyway, and says why
    try:
        final, bound = bound_parameters()
    except BackupError as exc:
        log.warning("bound_parameters_unknown", error=str(exc),
                    detail="passing on only the database, the hop and the restore's key; the rest comes from the "
                           "action's bound parameters")
        return {name: value for name, value in params.items() if name in (*OWN_PARAMS, "OPERATION", "COS_KEY")}
    if not final:
        return dict(params)
    return {name: value for name, value in params.items() if name in OWN_PARAMS or name not in bound}


def invoke_async(params: dict[str, Any]) -> str:
    """Start one non-blocking activation of this same action; return its activation id."""
    url, auth = _action_url()
    try:
        response = requests.post(url, params={"blocking": "false"}, json=params, auth=auth, timeout=30)
    except requests.RequestException as exc:
        raise BackupError(f"invoking {os.environ['__OW_ACTION_NAME']}: {type(exc).__name__}: {exc}") from None
    if response.status_code not in (200, 202):
        raise BackupError(f"invoking {os.environ['__OW_ACTION_NAME']}: HTTP {response.status_code}: {response.text[:200]}")
    try:
        return str(response.json()["activationId"])
    except (ValueError, KeyError, TypeError):
        raise BackupError(f"invoking {os.environ['__OW_ACTION_NAME']}: HTTP {response.status_code} without an "
                          f"activation id: {response.text[:200]}") from None


def continue_backup(config: Config, log: Log, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """After a checkpoint (of a backup, or of a restore: `extra` says which backup it restores): invoke the next
    hop, unless the hop limit is reached. Never raises."""
    if config.hop >= config.tune("MAX_HOPS"):
        log.warning("hop_limit_reached", database=config.db, hops=config.hop)
        return {"hop": config.hop, "stopped": "MAX_HOPS reached; the next scheduled run continues"}
    params = {**config.public_params, "CLOUDANT_DB": config.db, "CONTINUE_HOP": config.hop + 1, **(extra or {})}
    params = passed_on(params, log)  # under final: without the bound parameters, which OpenWhisk would refuse
    try:
        activation = invoke_async(params)
    except BackupError as exc:
        log.warning("continue_failed", database=config.db, error=str(exc))
        return {"hop": config.hop + 1, "error": str(exc)}
    log.info("continued", database=config.db, hop=config.hop + 1, activation_id=activation)
    return {"hop": config.hop + 1, "activation_id": activation}
