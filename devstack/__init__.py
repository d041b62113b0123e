"""Local test/demo infrastructure: real servers on free 127.0.0.1 ports (never shipped in the action)."""

from devstack.faultproxy import Fault, FaultProxy  # noqa: F401 - re-exported: the fault-injection proxy
from devstack.servers import (
    REPO_ROOT,
    CouchCompatProxy,
    IamTokenServer,
    LocalStack,
    MotoS3,
    PouchServer,
    SeaweedS3,
    free_port,
)

__all__ = [
    "REPO_ROOT",
    "CouchCompatProxy",
    "IamTokenServer",
    "LocalStack",
    "MotoS3",
    "PouchServer",
    "SeaweedS3",
    "free_port",
]
