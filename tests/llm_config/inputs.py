"""Bodies turned into the validated data the services take, through the same serializers as the API."""

from __future__ import annotations

from typing import Any

from llm import serializers


def validated(serializer_class: type, body: Any, *, instance: Any = None, **context: Any) -> Any:
    checked = serializer_class(instance, data=body, context=context)
    checked.is_valid(raise_exception=True)
    return checked.validated_data


def credential_input(tenant: Any, **body: Any) -> Any:
    return validated(serializers.CredentialWriteSerializer, body, tenant=tenant)


def preferences_input(tenant: Any, agent: Any = None, **body: Any) -> Any:
    return validated(serializers.PreferencesWriteSerializer, body, tenant=tenant, agent=agent)


def route_input(tenant: Any, **body: Any) -> Any:
    return validated(serializers.RouteSerializer, body, tenant=tenant)
