"""The circuit breaker shared by every worker through Redis: failing targets are skipped for a while."""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING

from llm.limits import budget

if TYPE_CHECKING:
    from llm.calls.resolution import ResolvedTarget

log = logging.getLogger(__name__)


def circuit_id(target: ResolvedTarget) -> str:
    raw = f"{target.provider}|{target.base_url}|{target.upstream_model}|{target.credential_id}"
    return hashlib.sha1(raw.encode(), usedforsecurity=False).hexdigest()[:16]


async def record_failure(target: ResolvedTarget) -> None:
    """Count a failover-worthy failure; enough of them within a minute open the target's breaker."""
    try:
        if await budget.backend().arecord_failure(circuit_id(target)):
            log.warning("circuit opened for %s %s", target.provider, target.upstream_model)
    except budget.BackendUnavailable:
        log.warning("circuit breaker not updated: the metering store is unreachable")
