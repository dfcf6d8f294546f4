"""Receivers that drop this process's caches when a key or the LLM configuration changes; connected at start-up.

The caches are the call path's, imported by a receiver when it runs rather than here: every process connects the
receivers, but a Celery worker or a command that never makes a call does not load the call path for them.
"""

from __future__ import annotations

from llm.config.versions import config_changed
from tenants.keys import key_changed


def _forget_key(sender: object, key_hash: str, **kwargs: object) -> None:
    from llm.calls import hot_cache  # lazy: the call path, loaded by the first call (see the docstring)

    hot_cache.forget_key(key_hash)


def _forget_config(sender: object, tenant_id: int | None, **kwargs: object) -> None:
    """A config version changed: what was cached from the old configuration goes, in this process."""
    from llm.calls import hot_cache, resolution  # lazy: the call path, loaded by the first call
    from llm.config import catalog  # lazy: with the call path

    if tenant_id is None:
        catalog.forget_memo()
        resolution.clear_route_cache()
        hot_cache.routes.clear()
    else:
        hot_cache.forget_tenant(tenant_id)


def connect() -> None:
    key_changed.connect(_forget_key, dispatch_uid="llm.calls.hot_cache.forget_key")
    config_changed.connect(_forget_config, dispatch_uid="llm.forget_config")
