"""OpenWhisk REST calls from inside an activation: continue a checkpointed backup, fan out databases.

Uses the activation's own environment: `__OW_API_HOST`, `__OW_NAMESPACE`, `__OW_ACTION_NAME`, and
`__OW_API_KEY` (present when the action is annotated `provide-api-key`; deploy.sh sets it).
Only non-secret parameters are passed on: the platform merges the action's bound parameters itself,
so credentials never travel in an activation's payload.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote

import requests

from backup.config import Config
from backup.errors import BackupError
from backup.log import Log


def available() -> bool:
    return all(os.environ.get(name) for name in ("__OW_API_HOST", "__OW_API_KEY", "__OW_ACTION_NAME"))


def invoke_async(params: dict[str, Any]) -> str:
    """Start one non-blocking activation of this same action; return its activation id."""
    if not available():
        raise BackupError("cannot invoke the action: __OW_API_HOST/__OW_API_KEY are not set "
                          "(annotate the action with provide-api-key true; deploy.sh does)")
    host = os.environ["__OW_API_HOST"].rstrip("/")
    if "://" not in host:
        host = "https://" + host
    namespace, _, name = os.environ["__OW_ACTION_NAME"].lstrip("/").partition("/")
    user, _, key = os.environ["__OW_API_KEY"].partition(":")
    url = f"{host}/api/v1/namespaces/{quote(namespace, safe='')}/actions/{quote(name)}"
    try:
        response = requests.post(url, params={"blocking": "false"}, json=params, auth=(user, key), timeout=30)
    except requests.RequestException as exc:
        raise BackupError(f"invoking {os.environ['__OW_ACTION_NAME']}: {type(exc).__name__}: {exc}") from None
    if response.status_code not in (200, 202):
        raise BackupError(f"invoking {os.environ['__OW_ACTION_NAME']}: HTTP {response.status_code}: {response.text[:200]}")
    try:
        return str(response.json()["activationId"])
    except (ValueError, KeyError, TypeError):
        raise BackupError(f"invoking {os.environ['__OW_ACTION_NAME']}: HTTP {response.status_code} without an "
                          f"activation id: {response.text[:200]}") from None


def continue_backup(config: Config, log: Log) -> dict[str, Any]:
    """After a checkpoint: invoke the next hop, unless the hop limit is reached. Never raises."""
    if config.hop >= config.tune("MAX_HOPS"):
        log.warning("hop_limit_reached", database=config.db, hops=config.hop)
        return {"hop": config.hop, "stopped": "MAX_HOPS reached; the next scheduled run continues"}
    params = {**config.public_params, "CLOUDANT_DB": config.db, "CONTINUE_HOP": config.hop + 1}
    try:
        activation = invoke_async(params)
    except BackupError as exc:
        log.warning("continue_failed", database=config.db, error=str(exc))
        return {"hop": config.hop + 1, "error": str(exc)}
    log.info("continued", database=config.db, hop=config.hop + 1, activation_id=activation)
    return {"hop": config.hop + 1, "activation_id": activation}
