"""Request and response shapes of the LLM configuration API, and the one validation of each body it takes.

Each write body has one serializer here. The API view validates with it and hands its `validated_data` (typed in
the service's module) to the service; the pages and every other caller go through the same class; and the view's
`@extend_schema(request=…)` names it, so the published schema is generated from what is enforced. The messages
and field keys are the API's contract; a body gets all its field errors in one answer (`AllErrorsSerializer`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, NoReturn

from django.core.exceptions import ValidationError as DjangoValidationError
from django.template.defaultfilters import pluralize
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.fields import SkipField, empty, get_error_detail
from rest_framework.settings import api_settings

from llm.calls.resolution import platform_model_refusal
from llm.config import catalog, credentials, llm_config_doc, preferences, routes, ssrf
from llm.config.catalog_data import OPENROUTER
from llm.models import CREDENTIAL_KINDS, Credential, Route

# --- read shapes ---------------------------------------------------------------------------------------------


class CatalogModelSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    input_usd_per_mtok = serializers.FloatField(allow_null=True)
    output_usd_per_mtok = serializers.FloatField(allow_null=True)
    cache_read_usd_per_mtok = serializers.FloatField(
        allow_null=True, help_text="Input tokens read from the prompt cache; null: the input price"
    )
    cache_write_usd_per_mtok = serializers.FloatField(
        allow_null=True, help_text="Input tokens written to the prompt cache; null: the input price"
    )
    context_length = serializers.IntegerField(allow_null=True)
    max_output_tokens = serializers.IntegerField(allow_null=True)
    capabilities = serializers.ListField(child=serializers.CharField())
    eu_hosted = serializers.BooleanField()
    recommended = serializers.BooleanField()
    tier = serializers.CharField()


class ProviderGroupSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    models = CatalogModelSerializer(many=True)


class ModelListSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    providers = ProviderGroupSerializer(many=True)


class CredentialSerializer(serializers.Serializer):
    """A credential as read: masks only. Endpoint fields appear for endpoint kinds."""

    id = serializers.IntegerField(read_only=True)
    kind = serializers.CharField()
    name = serializers.CharField()
    api_key_masked = serializers.CharField(allow_null=True, read_only=True)
    base_url = serializers.CharField(allow_null=True)
    deployment = serializers.CharField(allow_null=True, required=False)
    api_version = serializers.CharField(allow_null=True, required=False)
    region = serializers.CharField(allow_null=True, required=False)
    access_key_id = serializers.CharField(allow_null=True, required=False)
    eu_hosted = serializers.BooleanField(required=False)
    input_usd_per_mtok = serializers.FloatField(required=False)
    output_usd_per_mtok = serializers.FloatField(required=False)
    cache_read_usd_per_mtok = serializers.FloatField(
        required=False,
        allow_null=True,
        help_text="Input tokens read from the prompt cache; null: the input price",
    )
    cache_write_usd_per_mtok = serializers.FloatField(
        required=False,
        allow_null=True,
        help_text="Input tokens written to the prompt cache; null: the input price",
    )
    created_at = serializers.DateTimeField(read_only=True)
    rotated_at = serializers.DateTimeField(allow_null=True, read_only=True)
    last_verified_at = serializers.DateTimeField(allow_null=True, read_only=True)


class CustomEndpointReadSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    name = serializers.CharField()
    base_url = serializers.CharField(allow_null=True)
    deployment = serializers.CharField(allow_null=True)
    api_version = serializers.CharField(allow_null=True)
    region = serializers.CharField(allow_null=True)
    access_key_id = serializers.CharField(allow_null=True)
    api_key_masked = serializers.CharField(allow_null=True)
    eu_hosted = serializers.BooleanField()
    input_usd_per_mtok = serializers.FloatField()
    output_usd_per_mtok = serializers.FloatField()
    cache_read_usd_per_mtok = serializers.FloatField(
        allow_null=True, help_text="Input tokens read from the prompt cache; null: the input price"
    )
    cache_write_usd_per_mtok = serializers.FloatField(
        allow_null=True, help_text="Input tokens written to the prompt cache; null: the input price"
    )


class CredentialRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    name = serializers.CharField()
    api_key_masked = serializers.CharField(allow_null=True)


class RouteWarningSerializer(serializers.Serializer):
    route = serializers.CharField(help_text="route:NAME")
    model = serializers.CharField()
    reason = serializers.CharField()


class PreferencesSerializer(serializers.Serializer):
    agent = serializers.CharField(allow_null=True)
    saved = serializers.BooleanField()
    configured = serializers.BooleanField(
        help_text="Something to call with: saved preferences, or platform models through a managed tier or the plan."
    )
    inherited = serializers.BooleanField()
    mode = serializers.CharField()
    model = serializers.CharField()
    temperature = serializers.FloatField()
    max_tokens = serializers.IntegerField()
    eu_only = serializers.BooleanField()
    tenant_eu_only = serializers.BooleanField()
    fallbacks = serializers.ListField(child=serializers.CharField())
    api_key_masked = serializers.CharField(allow_null=True)
    credential = CredentialRefSerializer(allow_null=True)
    saved_keys = serializers.DictField(
        child=serializers.CharField(),
        help_text="Per provider (and openrouter): the masked key a BYOK call would use, whatever the mode.",
    )
    custom_endpoint = CustomEndpointReadSerializer(allow_null=True)
    model_info = CatalogModelSerializer(allow_null=True)
    platform_mode_available = serializers.BooleanField()
    platform_mode_reason = serializers.CharField()
    updated_at = serializers.DateTimeField(allow_null=True)
    route_warnings = RouteWarningSerializer(
        many=True,
        required=False,
        help_text="After a save of the workspace's settings: the route targets it left unreachable.",
    )


class RouteImportResultSerializer(serializers.Serializer):
    created = serializers.ListField(child=serializers.CharField())
    updated = serializers.ListField(child=serializers.CharField())
    deleted = serializers.ListField(child=serializers.CharField())


class ConnectionErrorSerializer(serializers.Serializer):
    kind = serializers.CharField()
    message = serializers.CharField()
    hint = serializers.CharField()
    models = serializers.ListField(child=serializers.CharField(), required=False)


class ConnectionTestSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    latency_ms = serializers.IntegerField(allow_null=True)
    model = serializers.CharField(allow_null=True)
    error = ConnectionErrorSerializer(allow_null=True)


class EndpointModelsSerializer(serializers.Serializer):
    base_url = serializers.CharField()
    # a field named like Field.source: the metaclass takes it as a field, which mypy cannot see
    source = serializers.ChoiceField(choices=["openai", "ollama"], help_text="Which list answered.")  # type: ignore[assignment]
    models = serializers.ListField(child=serializers.CharField(), help_text="Names the endpoint knows.")


class OllamaModelsSerializer(serializers.Serializer):
    base_url = serializers.CharField()
    models = serializers.ListField(child=serializers.CharField())


def provider_name(provider: str) -> str:
    """A provider as people call it (`openai` → OpenAI)."""
    info = catalog.get_catalog().providers.get(provider)
    return info.name if info is not None else provider


# --- validation machinery ------------------------------------------------------------------------------------

Problems = dict[str, Any]
SEND_AN_OBJECT = "Send a JSON object."
MUST_BE_BOOLEAN = "Must be true or false."


class AllErrorsSerializer(serializers.Serializer):
    """A serializer that answers every problem of a body at once, as the pages show them.

    DRF skips `validate()` when a field fails; here it always runs: the fields' errors wait in `self.problems`,
    `validate()` adds the ones that need several fields (skipping a field already refused) and ends with
    `raise_problems()`, which orders them as the fields are declared (keys that are no field first).
    """

    default_error_messages = {"invalid": SEND_AN_OBJECT, "null": SEND_AN_OBJECT}
    # Keys that are no field: "Unknown field." (else they are ignored). A read-only field is accepted and ignored,
    # so what GET answered may be sent back with a change.
    refuse_unknown = False
    ignored: frozenset[str] = frozenset()  # keys accepted and ignored even so
    problems: Problems

    def run_validation(self, data: Any = empty) -> Any:
        if data is None:  # a JSON `null` body: the same answer as any other body that is no object
            self._not_an_object()
        return super().run_validation(data)

    def _not_an_object(self) -> NoReturn:
        raise ValidationError(
            {api_settings.NON_FIELD_ERRORS_KEY: [self.error_messages["invalid"]]}, code="invalid"
        )

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, Mapping):
            self._not_an_object()
        writable = list(self._writable_fields)
        unknown = set(data) - set(self.fields) - self.ignored
        self.problems = self.unknown_problems(unknown) if self.refuse_unknown and unknown else {}
        values: dict[str, Any] = {}
        for field in writable:
            name = str(field.field_name)
            try:
                value = field.run_validation(field.get_value(data))
                check = getattr(self, "validate_" + name, None)
                values[name] = check(value) if check is not None else value
            except ValidationError as exc:
                self.problems[name] = exc.detail
            except DjangoValidationError as exc:
                self.problems[name] = get_error_detail(exc)
            except SkipField:
                pass
        return values

    def unknown_problems(self, keys: set[Any]) -> Problems:
        return {str(key): ["Unknown field."] for key in sorted(keys, key=str)}

    def raise_problems(self) -> None:
        if self.problems:
            raise ValidationError(self.ordered(self.problems))

    def ordered(self, problems: Problems) -> Problems:
        """The problems in the order the fields are declared (keys that are no field first)."""
        order = {name: i for i, name in enumerate(self.fields)}
        return dict(sorted(problems.items(), key=lambda item: order.get(item[0], -1)))

    def validate(self, attrs: Any) -> Any:
        self.raise_problems()
        return attrs


class StrictCharField(serializers.CharField):
    """Text only: a number is refused, not turned into text."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class BoundedTextField(StrictCharField):
    """Text of at most `max_length` characters as sent, then stripped; null is the same as leaving it out."""

    def __init__(self, max_length: int, **kwargs: Any):
        message = f"Enter text of at most {max_length} characters."
        kwargs.setdefault("error_messages", {"invalid": message, "max_length": message})
        super().__init__(
            max_length=max_length,
            required=False,
            allow_blank=True,
            allow_null=True,
            trim_whitespace=False,
            **kwargs,
        )

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str) or len(data) > (self.max_length or 0):
            self.fail("invalid")
        return data.strip()


class StrictBooleanField(serializers.BooleanField):
    """true or false, not "yes", 1 or "true"."""

    default_error_messages = {"invalid": MUST_BE_BOOLEAN, "null": MUST_BE_BOOLEAN}
    default_empty_html = empty  # left out of a form is left out, not false

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class LenientChoiceField(serializers.ChoiceField):
    """Documents the choices; the serializer's validate() checks them (a value left out may fall back to a saved
    one, and a wrong one answers alone)."""

    def __init__(self, choices: Any, **kwargs: Any):
        super().__init__(choices, required=False, allow_null=True, **kwargs)

    def to_internal_value(self, data: Any) -> Any:
        return data


class _Passthrough(serializers.Field):
    """Any value: the serializer's validate() checks it, where its rule depends on other fields (e.g. an api_key
    counts only in byok mode)."""

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_null", True)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Any:
        return data

    def to_representation(self, value: Any) -> Any:
        return value


@extend_schema_field(OpenApiTypes.STR)
class LaterTextField(_Passthrough):
    pass


@extend_schema_field(OpenApiTypes.INT)
class CredentialRefField(_Passthrough):
    pass


# --- credentials -------------------------------------------------------------------------------------------

NAME_MESSAGE = "Enter a name of 1–100 characters."
HEADERS_MESSAGE = "Give extra headers as an object of up to 20 header names to text values."
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
_TEXT_FIELDS = (
    "api_key",
    "base_url",
    "secret_access_key",
    "deployment",
    "api_version",
    "region",
    "access_key_id",
)
_CONFIG_TEXT = ("deployment", "api_version", "region", "access_key_id")
_REQUIRED = {
    "openai_compatible": ("base_url",),
    "ollama": ("base_url",),
    "azure_openai": ("base_url", "api_key", "deployment", "api_version"),
    "bedrock": ("region", "access_key_id", "secret_access_key"),
}
_LABELS = {
    "api_key": "an API key",
    "base_url": "the endpoint's base URL",
    "deployment": "the deployment name",
    "api_version": "the API version (e.g. 2024-10-21)",
    "region": "the AWS region (e.g. eu-central-1)",
    "access_key_id": "the AWS access key id",
    "secret_access_key": "the AWS secret access key",
}
_SECRET_LABELS = {
    "api_key": "the API key",
    "secret_access_key": "the AWS secret access key",
    "headers": "the extra headers",
}


class HeadersField(serializers.DictField):
    default_error_messages = {"invalid": HEADERS_MESSAGE}

    def __init__(self, **kwargs: Any):
        super().__init__(child=serializers.CharField(), required=False, allow_null=True, **kwargs)

    def to_internal_value(self, data: Any) -> dict[str, str]:
        if not isinstance(data, dict) or len(data) > 20 or not all(_header_ok(k, v) for k, v in data.items()):
            self.fail("invalid")
        return dict(data)


def _header_ok(name: Any, value: Any) -> bool:
    return (
        isinstance(name, str)
        and bool(_HEADER_NAME.match(name))
        and isinstance(value, str)
        and len(value) < 4000
        and value.isprintable()
    )


class PriceField(serializers.FloatField):
    """USD per 1M tokens, 0 to 10000, as a number or its text; empty or null is 0."""

    default_error_messages = {
        "invalid": "Enter a number (USD per 1M tokens).",
        "range": "Enter a price between 0 and 10000 USD per 1M tokens.",
    }

    def __init__(self, **kwargs: Any):
        super().__init__(required=False, allow_null=True, min_value=0, max_value=10_000, **kwargs)

    def to_internal_value(self, data: Any) -> Decimal:  # type: ignore[override]
        if data == "":
            return Decimal(0)
        try:
            number = Decimal(str(data))
        except (InvalidOperation, ValueError):
            self.fail("invalid")
        if not number.is_finite() or number < 0 or number > 10_000:
            self.fail("range")
        return number


class CachePriceField(PriceField):
    """A prompt-cache price: as `PriceField`, but empty or null is None, the input price (0 is a price)."""

    def run_validation(self, data: Any = empty) -> Decimal | None:  # type: ignore[override]
        return None if data == "" else super().run_validation(data)


class CredentialWriteSerializer(AllErrorsSerializer):
    """Create or change a credential; secrets are write-only and kept when left out of a change, as long as the
    base URL stays on the same scheme, host and port (moved elsewhere, each secret must be sent again)."""

    # Instance: the credential changed (its kind cannot change). Context: `tenant`, and `new_origin`: on a move to
    # another origin a stored secret is refused ("refuse", saving: a field error) or left out ("drop": a connection
    # test of unsaved settings uses only the secrets it was given). Validated: `credentials.CredentialInput`.

    kind = LenientChoiceField(CREDENTIAL_KINDS, help_text="Required to create one.")
    name = serializers.CharField(
        required=False,
        allow_null=True,
        max_length=100,
        error_messages={"invalid": NAME_MESSAGE, "blank": NAME_MESSAGE, "max_length": NAME_MESSAGE},
    )
    api_key = BoundedTextField(4000, write_only=True)
    base_url = BoundedTextField(500)
    secret_access_key = BoundedTextField(4000, write_only=True)
    deployment = BoundedTextField(200)
    api_version = BoundedTextField(200)
    region = BoundedTextField(200)
    access_key_id = BoundedTextField(200)
    eu_hosted = StrictBooleanField(required=False)
    headers = HeadersField(write_only=True)
    input_usd_per_mtok = PriceField()
    output_usd_per_mtok = PriceField()
    cache_read_usd_per_mtok = CachePriceField(help_text="Empty or null: the input price.")
    cache_write_usd_per_mtok = CachePriceField(help_text="Empty or null: the input price.")

    existing: Credential | None = None  # the stored credential the validated values build on

    def ordered(self, problems: Problems) -> Problems:
        """As found: the fields' own, then the settings that need others (required for the kind, formats, the
        address), then the prices."""
        prices = credentials.PRICE_FIELDS
        return {k: v for k, v in problems.items() if k not in prices} | {
            k: problems[k] for k in prices if k in problems
        }

    def kind_and_existing(self, attrs: dict[str, Any]) -> tuple[str, Credential | None]:
        """The kind, and the stored credential whose secrets and settings fill what the body leaves out. A wrong
        kind is the only error answered."""
        if self.instance is not None:
            if "kind" in attrs and attrs["kind"] != self.instance.kind:
                raise ValidationError({"kind": ["The kind of a credential cannot change; create a new one."]})
            return self.instance.kind, self.instance
        kind = attrs.get("kind")
        if not kind:
            raise ValidationError({"kind": ["Choose the provider or endpoint kind."]})
        if str(kind) not in CREDENTIAL_KINDS:
            raise ValidationError({"kind": [f"Choose one of: {', '.join(CREDENTIAL_KINDS)}."]})
        return str(kind), None

    def validate(self, attrs: Any) -> credentials.CredentialInput:
        kind, self.existing = self.kind_and_existing(attrs)
        values, kept = self._values(attrs)
        _default_base_url(kind, values)
        self._bind_secrets(values, kept)
        self._check_required(kind, values)
        self._check_formats(kind, values)
        prices = self._prices(attrs)
        self.raise_problems()
        eu_hosted = values["eu_hosted"] or (kind == "bedrock" and values["region"].startswith("eu-"))
        cleaned = credentials.CredentialInput(
            kind=kind,
            base_url=values["base_url"],
            config={**{k: values[k] for k in _CONFIG_TEXT if values[k]}, "eu_hosted": eu_hosted},
            secrets={k: values[k] for k in credentials.SECRET_FIELDS if values[k]},
            **prices,
        )
        if attrs.get("name") is not None:
            cleaned["name"] = attrs["name"]
        return cleaned

    def _values(self, attrs: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """Every setting: as sent, else as stored; and the stored secrets carried over because the body left them
        out. A refused field counts as empty."""
        existing = self.existing
        old_secrets = credentials.secrets_of(existing) if existing and existing.secrets_ciphertext else {}
        old_config = dict(existing.config) if existing else {}
        stored = {**old_config, **old_secrets, "base_url": existing.base_url if existing else ""}
        values: dict[str, Any] = {}
        kept: list[str] = []
        for field in _TEXT_FIELDS:
            if field in self.problems:
                values[field] = ""
            elif attrs.get(field) is not None:
                values[field] = attrs[field]
            else:
                values[field] = stored.get(field) or ""
                if field in credentials.SECRET_FIELDS and values[field]:
                    kept.append(field)
        values["eu_hosted"] = attrs.get("eu_hosted", old_config.get("eu_hosted", False))
        values["headers"] = self._headers(attrs, old_secrets, kept)
        return values, kept

    def _headers(self, attrs: dict[str, Any], old_secrets: dict[str, Any], kept: list[str]) -> dict[str, str]:
        if "headers" in self.problems:
            return {}
        if "headers" in attrs:
            return attrs["headers"] or {}  # null clears them
        if old_secrets.get("headers"):
            kept.append("headers")
        return old_secrets.get("headers") or {}

    def _bind_secrets(self, values: dict[str, Any], kept: list[str]) -> None:
        """A stored secret goes only to the origin it was saved for."""
        existing = self.existing
        if (
            existing is None
            or not kept
            or credentials.origin_of(values["base_url"]) == credentials.origin_of(existing.base_url)
        ):
            return
        for field in kept:
            if self.context.get("new_origin", "refuse") == "drop":
                values[field] = {} if field == "headers" else ""
            elif field not in self.problems:
                self.problems[field] = [
                    f"The endpoint's address (scheme, host or port) changed: enter {_SECRET_LABELS[field]} "
                    "again. A saved secret is only sent to the address it was saved for."
                ]

    def _check_required(self, kind: str, values: dict[str, Any]) -> None:
        for field in _REQUIRED.get(kind, ("api_key",)):
            if not values.get(field) and field not in self.problems:
                self.problems[field] = [
                    f"Enter {_LABELS[field]}; a {kind.replace('_', ' ')} endpoint needs it."
                ]

    def _check_formats(self, kind: str, values: dict[str, Any]) -> None:
        region, api_version, base_url = values["region"], values["api_version"], values["base_url"]
        if kind == "bedrock" and region and not _REGION.match(region) and "region" not in self.problems:
            self.problems["region"] = ["Enter an AWS region such as eu-central-1."]
        if kind == "azure_openai" and api_version and not _API_VERSION.match(api_version):
            self.problems["api_version"] = ["Enter an API version such as 2024-10-21."]
        if base_url and "base_url" not in self.problems:
            try:
                ssrf.check_url(base_url, use_cache=False)
            except ssrf.BlockedAddress as exc:
                self.problems["base_url"] = [str(exc)]
        if values["api_key"] and any(c.isspace() for c in values["api_key"]):
            self.problems["api_key"] = ["The API key contains spaces or line breaks; paste it again."]

    def _prices(self, attrs: dict[str, Any]) -> credentials.Prices:
        """As sent, else as stored. The input and output prices' empty is 0; a cache price's is None, the input
        price (as the catalog's)."""

        def price(name: str, empty: Decimal | None) -> Any:
            if name in attrs:
                return attrs[name] if attrs[name] is not None else empty
            return getattr(self.existing, name) if self.existing is not None else empty

        return credentials.Prices(
            input_usd_per_mtok=price("input_usd_per_mtok", Decimal(0)),
            output_usd_per_mtok=price("output_usd_per_mtok", Decimal(0)),
            cache_read_usd_per_mtok=price("cache_read_usd_per_mtok", None),
            cache_write_usd_per_mtok=price("cache_write_usd_per_mtok", None),
        )


def _default_base_url(kind: str, values: dict[str, Any]) -> None:
    """Ollama's local address, and Bedrock's regional one, when no base URL is given."""
    if values["base_url"]:
        return
    if kind == "ollama":
        values["base_url"] = credentials.OLLAMA_DEFAULT_URL
    elif kind == "bedrock" and values["region"] and _REGION.match(values["region"]):
        values["base_url"] = f"https://bedrock-runtime.{values['region']}.amazonaws.com"


class CustomEndpointSerializer(CredentialWriteSerializer):
    """The custom endpoint of custom mode; what is left out keeps the saved endpoint's value (its kind too)."""

    # Context: as `CredentialWriteSerializer`, and `saved_endpoint`: the endpoint the preferences have now, whose
    # secrets and settings fill what the body leaves out while the kind stays the same.

    default_error_messages = {
        "invalid": "Send the endpoint as an object.",
        "null": "Send the endpoint as an object.",
    }
    kind = LenientChoiceField(preferences.CUSTOM_KINDS, help_text="Left out: the saved endpoint's.")

    def kind_and_existing(self, attrs: dict[str, Any]) -> tuple[str, Credential | None]:
        saved = self.context.get("saved_endpoint")
        kind = str(attrs.get("kind") or (saved.kind if saved is not None else ""))
        if kind not in preferences.CUSTOM_KINDS:
            raise ValidationError({"kind": [f"Choose one of: {', '.join(preferences.CUSTOM_KINDS)}."]})
        return kind, saved if saved is not None and saved.kind == kind else None


@extend_schema_field(CustomEndpointSerializer)
class _EndpointField(_Passthrough):
    pass


# --- preferences -------------------------------------------------------------------------------------------

MODE_MESSAGE = f"Choose one of: {', '.join(preferences.MODES)}."
MODEL_MESSAGE = "Choose a model."
FALLBACKS_MESSAGE = "Give the fallbacks as a list of model ids."


class ModelField(StrictCharField):
    def __init__(self, **kwargs: Any):
        too_long = "A model name has at most 200 characters."
        messages: dict[str, Any] = {
            "invalid": MODEL_MESSAGE,
            "null": MODEL_MESSAGE,
            "blank": MODEL_MESSAGE,
            "max_length": too_long,
        }
        super().__init__(max_length=200, error_messages=messages, **kwargs)


class TemperatureField(serializers.FloatField):
    default_error_messages = {"invalid": preferences.TEMPERATURE_ERROR}

    def __init__(self, **kwargs: Any):
        super().__init__(required=False, allow_null=True, min_value=0, max_value=2, **kwargs)

    def to_internal_value(self, data: Any) -> float:
        value = preferences.parse_temperature(data)
        if value is None:
            self.fail("invalid")
        return value


class MaxTokensField(serializers.IntegerField):
    default_error_messages = {"invalid": preferences.MAX_TOKENS_ERROR}

    def __init__(self, **kwargs: Any):
        super().__init__(
            required=False,
            allow_null=True,
            min_value=preferences.MIN_TOKENS,
            max_value=preferences.MAX_TOKENS,
            **kwargs,
        )

    def to_internal_value(self, data: Any) -> int:
        value = preferences.parse_max_tokens(data)
        if value is None:
            self.fail("invalid")
        return value


class FallbacksField(serializers.ListField):
    default_error_messages = {
        "invalid": FALLBACKS_MESSAGE,
        "too_many": f"At most {preferences.MAX_FALLBACKS} fallbacks.",
    }

    def __init__(self, **kwargs: Any):
        super().__init__(
            child=serializers.CharField(),
            required=False,
            allow_null=True,
            max_length=preferences.MAX_FALLBACKS,
            **kwargs,
        )

    def to_internal_value(self, data: Any) -> list[str]:
        if not isinstance(data, list) or not all(isinstance(f, str) for f in data):
            self.fail("invalid")
        if len(data) > preferences.MAX_FALLBACKS:
            self.fail("too_many")
        return list(data)


class PreferencesWriteSerializer(AllErrorsSerializer):
    """Fields left out keep their current value."""

    # Context: `tenant`, `agent` (None: the workspace's preferences), `new_origin` (see CredentialWriteSerializer).
    # Validated: `preferences.PreferencesInput`.

    refuse_unknown = True
    # What GET answers (PreferencesSerializer) may be sent back with a change: its read-only parts are ignored.
    ignored = frozenset(PreferencesSerializer._declared_fields)
    mode = serializers.ChoiceField(
        choices=preferences.MODES,
        required=False,
        error_messages={"invalid_choice": MODE_MESSAGE, "null": MODE_MESSAGE},
    )
    eu_only = StrictBooleanField(required=False)
    model = ModelField(required=False)
    temperature = TemperatureField()
    max_tokens = MaxTokensField()
    fallbacks = FallbacksField(help_text="Ordered model ids.")
    embedding_model = serializers.CharField(
        required=False,
        allow_blank=True,
        allow_null=True,
        trim_whitespace=True,
        help_text="The model /v1/embeddings calls for `default` (empty: the chat model's provider's embedding "
        "model when it has one; an agent's empty value follows the workspace's).",
    )
    api_key_provider = LaterTextField(help_text="Whose key api_key is (default: inferred); byok mode.")
    provider = LaterTextField(help_text="The same as api_key_provider.")
    api_key = LaterTextField(
        write_only=True, help_text="BYOK: the provider's (or OpenRouter's) key; stored encrypted."
    )
    custom_endpoint = _EndpointField(help_text="Custom mode: the endpoint (left out: the saved one).")

    def validate(self, attrs: Any) -> preferences.PreferencesInput:
        tenant, agent = self.context["tenant"], self.context.get("agent")
        own, applying = preferences.preferences_scope(tenant=tenant, agent=agent)
        values = preferences.values_of(applying)
        access = preferences.managed_access(tenant, agent) if own is None and agent is not None else None
        if access is not None and preferences.follows_tier(agent, own, access):
            values = preferences.tier_values(values, access)  # what the agent calls with now
        values["mode"] = attrs.get("mode", values["mode"])
        values["eu_only"] = attrs.get("eu_only", values["eu_only"])
        eu_required = bool(values["eu_only"] or tenant.eu_only)
        m = self._check_model(attrs, values, eu_required)
        self._check_params(attrs, values, m)
        fallbacks = self._check_fallbacks(attrs, values, eu_required)
        embedding = self._check_embedding(attrs, values, eu_required)
        inline_key = endpoint = None
        if values["mode"] == "platform":
            self._check_platform(values, fallbacks)
        elif values["mode"] == "byok":
            inline_key = self._check_byok(attrs, values, m, fallbacks)
        else:
            endpoint = self._check_custom(attrs, applying, eu_required)
        if embedding is not None:
            self._check_embedding_reach(values["mode"], embedding, inline_key)
        self.raise_problems()
        return preferences.PreferencesInput(values=values, inline_key=inline_key, endpoint=endpoint)

    def _check_model(
        self, attrs: dict[str, Any], values: preferences.PreferenceValues, eu_required: bool
    ) -> Any:
        if "model" in self.problems:
            values["model"] = ""
            return None
        model_id, m, errors = preferences.check_model(
            attrs.get("model", values["model"]), mode=values["mode"], eu_required=eu_required
        )
        if errors:
            self.problems["model"] = errors
        values["model"] = model_id
        return m

    def _check_params(self, attrs: dict[str, Any], values: preferences.PreferenceValues, m: Any) -> None:
        if attrs.get("temperature") is not None:
            values["temperature"] = attrs["temperature"]
        if "max_tokens" in self.problems or ("max_tokens" in attrs and attrs["max_tokens"] is None):
            return  # null keeps the current value as it is
        max_tokens = attrs.get("max_tokens")
        too_many = preferences.max_output_error(
            max_tokens if max_tokens is not None else values["max_tokens"],
            m.max_output_tokens if m is not None else None,
        )
        if too_many:
            self.problems["max_tokens"] = [too_many]
        elif max_tokens is not None:
            values["max_tokens"] = max_tokens

    def _check_fallbacks(
        self, attrs: dict[str, Any], values: preferences.PreferenceValues, eu_required: bool
    ) -> list[tuple[str, Any]]:
        if "fallbacks" in self.problems:
            return []
        given = attrs.get("fallbacks", values["fallbacks"])
        entries: list[tuple[str, Any]] = []
        messages: list[str] = []
        for name in given or []:
            fid, fm, errors = preferences.check_model(name, mode=values["mode"], eu_required=eu_required)
            if fid == values["model"]:
                errors = ["A fallback cannot be the primary model."]
            if fid in [f for f, _ in entries]:
                errors = [f"{fid} is listed twice."]
            messages += [f"{name}: {e}" for e in errors]
            entries.append((fid, fm))
        if messages:
            self.problems["fallbacks"] = messages
        values["fallbacks"] = [f for f, _ in entries]
        return entries

    def _check_embedding(
        self, attrs: dict[str, Any], values: preferences.PreferenceValues, eu_required: bool
    ) -> tuple[str, Any] | None:
        """The embedding model of `default` (a catalog one is returned, for `_check_embedding_reach`)."""
        if "embedding_model" in self.problems:
            return None
        name, m, errors = preferences.check_embedding_model(
            attrs.get("embedding_model", values["embedding_model"]),
            mode=values["mode"],
            eu_required=eu_required,
        )
        values["embedding_model"] = name
        if errors:
            self.problems["embedding_model"] = errors
            return None
        return (name, m) if name and m is not None else None

    def _check_embedding_reach(
        self, mode: str, embedding: tuple[str, Any], inline_key: preferences.CredentialChange | None
    ) -> None:
        """A catalog embedding model is called like the chat model: the platform's keys reach it (in the agent's
        tier), or a saved (or just given) key of its provider or OpenRouter does."""
        tenant, agent = self.context["tenant"], self.context.get("agent")
        name, m = embedding
        problem = None
        if mode == "platform":
            allowed, _ = preferences.platform_mode_allowed(tenant, agent)
            access = preferences.managed_access(tenant, agent)
            problem = platform_model_refusal(tenant, access, name, embeddings=True) if allowed else None
        elif mode == "byok":
            kinds = set(Credential.objects.for_tenant(tenant).values_list("kind", flat=True))
            if inline_key is not None:
                kinds.add(inline_key["kind"])
            if not preferences.has_key_for(name, m, kinds):
                problem = (
                    f"No API key for {m.provider} or OpenRouter is saved; add one, or choose another model."
                )
        if problem is not None:
            self.problems["embedding_model"] = [problem]

    def _check_platform(self, values: preferences.PreferenceValues, fallbacks: list[tuple[str, Any]]) -> None:
        """The agent may use the platform's keys (a managed tier, or a workspace plan that includes them), and
        the model and each fallback resolve there: in its tier, reachable, priced."""
        tenant, agent = self.context["tenant"], self.context.get("agent")
        allowed, reason = preferences.platform_mode_allowed(tenant, agent)
        if not allowed:
            self.problems["mode"] = [reason]
            return
        access = preferences.managed_access(tenant, agent)
        refusal = platform_model_refusal(tenant, access, values["model"]) if values["model"] else None
        if refusal is not None and "model" not in self.problems:
            self.problems["model"] = [refusal]
        messages = []
        for fid, _ in fallbacks:
            refusal = platform_model_refusal(tenant, access, fid)
            if refusal is not None:
                messages.append(f"{fid}: {refusal}")
        if messages and "fallbacks" not in self.problems:
            self.problems["fallbacks"] = messages

    def _check_byok(
        self,
        attrs: dict[str, Any],
        values: preferences.PreferenceValues,
        m: Any,
        fallbacks: list[tuple[str, Any]],
    ) -> preferences.CredentialChange | None:
        """The key for the model and each fallback: sent inline (stored with the preferences) or saved before."""
        tenant = self.context["tenant"]
        kinds = set(Credential.objects.for_tenant(tenant).values_list("kind", flat=True))
        api_key = attrs.get("api_key")
        inline_key = None
        if api_key:
            inline_key = self._inline_key(attrs, values["model"], m)
            if inline_key is not None:
                kinds.add(inline_key["kind"])
        elif api_key not in (None, ""):
            self.problems["api_key"] = ["Enter the API key as text."]
        missing_key = not preferences.has_key_for(values["model"], m, kinds)
        if missing_key and "model" not in self.problems and "api_key" not in self.problems:
            provider = m.provider if m is not None else OPENROUTER
            self.problems["api_key"] = [
                f"Enter your {provider_name(provider)} API key"
                + (" (or an OpenRouter key)" if provider != OPENROUTER else "")
                + " to call this model."
            ]
        missing = [fid for fid, fm in fallbacks if not preferences.has_key_for(fid, fm, kinds)]
        if missing and "fallbacks" not in self.problems:
            self.problems["fallbacks"] = [
                f"{fid}: no API key for its provider or OpenRouter is saved." for fid in missing
            ]
        return inline_key

    def _inline_key(
        self, attrs: dict[str, Any], model_id: str, m: Any
    ) -> preferences.CredentialChange | None:
        kind = preferences.inline_key_kind(
            provider=attrs.get("api_key_provider") or attrs.get("provider"),
            api_key=str(attrs["api_key"]),
            model_id=model_id,
            m=m,
        )
        if kind not in credentials.PROVIDER_KINDS:
            self.problems["api_key_provider"] = [f"Choose one of: {', '.join(credentials.PROVIDER_KINDS)}."]
            return None
        stored = credentials.credential_for_kind(tenant_id=self.context["tenant"].id, kind=kind)
        key = CredentialWriteSerializer(
            stored,
            data={"kind": kind, "api_key": attrs["api_key"]},
            context={"tenant": self.context["tenant"]},
        )
        if not key.is_valid():
            self.problems.update(key.errors)
            return None
        return preferences.CredentialChange(kind=kind, existing=stored, credential=key.validated_data)

    def _check_custom(
        self, attrs: dict[str, Any], current: Any, eu_required: bool
    ) -> preferences.CredentialChange | None:
        given = attrs.get("custom_endpoint")
        saved = current.custom_endpoint if current is not None else None
        endpoint = None
        if given is None and saved is None:
            kinds = ", ".join(preferences.CUSTOM_KINDS)
            self.problems["custom_endpoint"] = {
                "kind": [f"Describe the endpoint: kind ({kinds}), base_url and its credentials."]
            }
        elif given is not None:
            checked = CustomEndpointSerializer(data=given, context={**self.context, "saved_endpoint": saved})
            if checked.is_valid():
                cleaned = checked.validated_data
                endpoint = preferences.CredentialChange(
                    kind=cleaned["kind"], existing=checked.existing, credential=cleaned
                )
            else:
                self.problems["custom_endpoint"] = dict(checked.errors)
        if "custom_endpoint" not in self.problems and eu_required:
            config = (
                endpoint["credential"]["config"]
                if endpoint is not None
                else (getattr(saved, "config", None) or {})
            )
            if not config.get("eu_hosted"):
                self.problems["custom_endpoint"] = {
                    "eu_hosted": [
                        "EU data residency is required: mark the endpoint as EU-hosted (eu_hosted) if it is."
                    ]
                }
        return endpoint


# --- routes ------------------------------------------------------------------------------------------------

ROUTE_NAME_MESSAGE = "Use 1–64 lowercase letters, digits, “_” and “-”, e.g. rule_extraction."
TARGETS_MESSAGE = 'Give at least one target: [{"model": "provider:model"}, …].'
WEIGHT_MESSAGE = "weight is a whole number from 0 to 1000."
PARAMS_MESSAGE = "params may set temperature and max_tokens."
TTL_MESSAGE = f"Enter whole seconds from 1 to {routes.MAX_CACHE_TTL} (or null: no cache)."


def field_names(keys: Any) -> list[str]:
    """Unknown keys as short names for an error message (a key can be anything a document holds)."""
    names = sorted(str(k)[:40] for k in keys if isinstance(k, str | int) and not isinstance(k, bool))
    return names[:10] + (["…"] if len(names) > 10 else [])


class WholeNumberField(serializers.IntegerField):
    """A whole number (not a boolean, a float or text) within the bounds (checked here with one message; the
    bounds' own validators, which would see the None an empty value becomes, are dropped)."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.validators = []

    def to_internal_value(self, data: Any) -> int:
        low, high = self.min_value, self.max_value
        if isinstance(data, bool) or not isinstance(data, int) or not low <= data <= high:  # type: ignore[operator]
            self.fail("invalid")
        return data


class CacheTtlField(WholeNumberField):
    default_error_messages = {"invalid": TTL_MESSAGE}

    def __init__(self, **kwargs: Any):
        super().__init__(
            required=False, allow_null=True, min_value=1, max_value=routes.MAX_CACHE_TTL, **kwargs
        )

    def to_internal_value(self, data: Any) -> int | None:  # type: ignore[override]
        if data in ("", 0):
            return None  # off, like null
        return super().to_internal_value(data)


class ParamsField(serializers.DictField):
    default_error_messages = {"invalid": PARAMS_MESSAGE}

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not data:
            return {}
        if not isinstance(data, Mapping) or set(data) - {"temperature", "max_tokens"}:
            self.fail("invalid")
        return dict(data)


class RouteTargetSerializer(AllErrorsSerializer):
    """A target of a route: a model id, or an object with the model and optionally a credential, a weight (A/B)
    and params."""

    # Checked by RouteSerializer, whose context it shares (`tenant`), with the route's `mode`, `credentials` (by
    # id and by name) and `eu_required`; its messages are answered under `targets` as "Target N: …".

    refuse_unknown = True
    credential = CredentialRefField(help_text="Credential id (or name)")
    credential_name = serializers.CharField(read_only=True, allow_null=True)
    problem = serializers.CharField(
        read_only=True,
        allow_null=True,
        help_text="Why a call of the workspace cannot reach this target now (calls skip it), or null",
    )
    model = LaterTextField(required=True, error_messages={"required": MODEL_MESSAGE})
    weight = WholeNumberField(
        required=False,
        allow_null=True,
        min_value=0,
        max_value=1000,
        error_messages={"invalid": WEIGHT_MESSAGE},
    )
    params = ParamsField(required=False, allow_null=True, help_text="temperature, max_tokens")

    def unknown_problems(self, keys: set[Any]) -> Problems:
        return {"unknown": [f"unknown field{pluralize(len(keys))} {', '.join(field_names(keys))}."]}

    def validate(self, attrs: Any) -> routes.TargetInput:
        credential = self._credential(attrs.get("credential"))
        mode = self.context["mode"]
        if credential is not None:
            mode = "custom" if credential.kind in credentials.ENDPOINT_KINDS else "byok"
        model_id, m = self._model(attrs, mode, credential)
        params = self._params(attrs, m)
        self.raise_problems()
        return routes.TargetInput(
            model=model_id,
            credential=credential.pk if credential is not None else None,
            weight=attrs.get("weight") or 0,
            params=params,
        )

    def _credential(self, ref: Any) -> Credential | None:
        if ref in (None, ""):
            return None
        if isinstance(ref, bool) or not isinstance(ref, int | str):
            self.problems["credential"] = ["credential: give the credential's id or name."]
            return None
        by_id: dict[int, Credential] = self.context["credentials"]
        credential = by_id.get(ref) if isinstance(ref, int) else self.context["credentials_by_name"].get(ref)
        if credential is None and isinstance(ref, str) and ref.isascii() and ref.isdigit() and len(ref) <= 18:
            credential = by_id.get(int(ref))
        if credential is None:
            shown = f" “{ref}”" if len(str(ref)) <= 100 else ""
            self.problems["credential"] = [f"no credential{shown} (give its id or name)."]
        return credential

    def _model(self, attrs: dict[str, Any], mode: str, credential: Credential | None) -> tuple[str, Any]:
        if "model" in self.problems:
            return "", None
        model_id, m, errors = preferences.check_model(attrs.get("model"), mode=mode, eu_required=False)
        errors = errors or self._reach(model_id, m, mode, credential)
        if errors:
            self.problems["model"] = errors
        elif self.context["eu_required"]:
            eu = m is not None and m.eu_hosted and not model_id.startswith("openrouter:")
            if mode == "custom" and credential is not None:
                eu = bool((credential.config or {}).get("eu_hosted"))
            if not eu:
                self.problems["model"] = [f"EU data residency is required and {model_id} is not EU-hosted."]
        return model_id, m

    def _reach(self, model_id: str, m: Any, mode: str, credential: Credential | None) -> list[str]:
        """What the gateway would answer calling the target: the named credential (or, without one, a key of
        the workspace in byok mode) must reach the model; in platform mode some caller of the route may use the
        platform's keys (a managed agent, or any under a plan that includes them) and the model resolves there
        for it."""
        if mode == "custom":
            return []
        if credential is not None:
            if preferences.has_key_for(model_id, m, {credential.kind}):
                return []
            return [f"the credential “{credential.name}” cannot reach {model_id}."]
        if mode == "byok":
            if preferences.has_key_for(model_id, m, {c.kind for c in self.context["credentials"].values()}):
                return []
            provider = m.provider if m is not None else OPENROUTER
            also = " or OpenRouter" if provider != OPENROUTER else ""
            return [f"no API key for {provider}{also} is saved; add one, or name the credential to use."]
        scopes, reason = self.context["platform"]
        if not scopes:
            return [reason]
        refusals = [platform_model_refusal(self.context["tenant"], access, model_id) for access in scopes]
        return [] if None in refusals else [str(refusals[0])]

    def _params(self, attrs: dict[str, Any], m: Any) -> dict[str, Any]:
        if "params" in self.problems:
            return {}
        errors: dict[str, list[str]] = {}
        params = preferences.check_params(
            attrs.get("params") or {}, errors, max_output=m.max_output_tokens if m is not None else None
        )
        if errors:
            self.problems["params"] = [message for messages in errors.values() for message in messages]
        return params


@extend_schema_field(RouteTargetSerializer(many=True))
class _TargetsField(_Passthrough):
    pass


class RouteNameField(StrictCharField):
    def __init__(self, **kwargs: Any):
        messages: dict[str, Any] = dict.fromkeys(
            ("invalid", "null", "blank", "required", "max_length"), ROUTE_NAME_MESSAGE
        )
        super().__init__(max_length=64, trim_whitespace=False, error_messages=messages, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str) or not routes.NAME.match(data):
            self.fail("invalid")
        return data


def _stored_target(target: Mapping[str, Any]) -> routes.TargetInput:
    return routes.TargetInput(
        model=target["model"],
        credential=target.get("credential"),
        weight=target.get("weight") or 0,
        params=target.get("params") or {},
    )


class RouteSerializer(AllErrorsSerializer):
    """A named route (call it as model `route:NAME`). A change keeps the fields it leaves out, except that PUT
    resets description, cache_ttl_seconds and eu_only."""

    # Context: `tenant`. Instance: the route changed. Validated: `routes.RouteInput`.

    refuse_unknown = True
    id = serializers.IntegerField(read_only=True)
    name = RouteNameField()
    description = StrictCharField(
        required=False,
        allow_blank=True,
        allow_null=True,
        max_length=200,
        trim_whitespace=False,
        error_messages={"invalid": "At most 200 characters.", "max_length": "At most 200 characters."},
    )
    cache_ttl_seconds = CacheTtlField()
    eu_only = StrictBooleanField(required=False)
    fallback_on = serializers.ListField(
        child=serializers.ChoiceField(routes.FALLBACK_ON),
        required=False,
        allow_null=True,
        max_length=len(routes.FALLBACK_ON),
        help_text="Failures that also fall back to the next target: content_policy (a provider's content "
        "policy refused the request). Rate limits, timeouts, outages and a too small context window always do.",
    )
    model = serializers.CharField(read_only=True, help_text="What to send as `model`: route:NAME")
    # DRF formats a field's messages with str.format: the braces of the example are doubled
    targets = _TargetsField(
        required=True, error_messages={"required": TARGETS_MESSAGE.replace("{", "{{").replace("}", "}}")}
    )
    weighted = serializers.BooleanField(read_only=True)
    reachable = serializers.BooleanField(
        read_only=True,
        help_text="Whether a call of the workspace can reach some target now (see each target's problem)",
    )
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.instance is not None:  # a change keeps the route's name and targets when it leaves them out
            self.fields["name"].required = self.fields["targets"].required = False

    def unknown_problems(self, keys: set[Any]) -> Problems:
        return {key: ["Unknown field."] for key in field_names(keys)}

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if self.instance is not None and not self.partial and isinstance(data, Mapping):
            data = {"description": "", "cache_ttl_seconds": None, "eu_only": False, "fallback_on": [], **data}
        return super().to_internal_value(data)

    def validate_name(self, name: str) -> str:
        clash = Route.objects.for_tenant(self.context["tenant"]).filter(name=name)
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise ValidationError(f"A route named “{name}” exists already.")
        return name

    def validate(self, attrs: Any) -> routes.RouteInput:
        route = self.instance
        eu_only = (
            False if "eu_only" in self.problems else attrs.get("eu_only", route.eu_only if route else False)
        )
        targets: list[routes.TargetInput] = []
        if route is not None and "targets" not in attrs and not (eu_only and not route.eu_only):
            # A change that leaves the targets out keeps them as stored, checked or not under today's settings: a
            # target the workspace's mode cannot reach now is skipped by calls (and marked), not an error here.
            targets = [_stored_target(t) for t in route.targets]
        elif "targets" not in self.problems:
            given = attrs.get("targets", route.targets if route else None)
            targets = self._targets(given, eu_required=eu_only or self.context["tenant"].eu_only)
        self.raise_problems()
        return routes.RouteInput(
            name=attrs.get("name", route.name if route else ""),
            description=attrs.get("description", route.description if route else "") or "",
            cache_ttl_seconds=attrs.get("cache_ttl_seconds", route.cache_ttl_seconds if route else None),
            eu_only=eu_only,
            targets=targets,
            fallback_on=sorted(
                set((attrs["fallback_on"] or []) if "fallback_on" in attrs else self._kept_fallback_on())
            ),
        )

    def _kept_fallback_on(self) -> list[str]:
        return list(self.instance.fallback_on or []) if self.instance is not None else []

    def _targets(self, given: Any, *, eu_required: bool) -> list[routes.TargetInput]:
        if not isinstance(given, list) or not given:
            self.problems["targets"] = [TARGETS_MESSAGE]
            return []
        if len(given) > routes.MAX_TARGETS:
            self.problems["targets"] = [f"At most {routes.MAX_TARGETS} targets."]
            return []
        tenant = self.context["tenant"]
        by_id = {c.pk: c for c in Credential.objects.for_tenant(tenant)}
        mode = routes.tenant_mode(tenant)
        context = {
            **self.context,
            "mode": mode,
            "credentials": by_id,
            "credentials_by_name": {c.name: c for c in by_id.values()},
            "eu_required": eu_required,
            "platform": preferences.platform_scopes(tenant) if mode == "platform" else ([], ""),
        }
        messages: list[str] = []
        cleaned: list[routes.TargetInput] = []
        for i, spec in enumerate(given, start=1):
            if not isinstance(spec, str | Mapping):
                messages.append(f"Target {i}: give an object with model, credential, weight and params.")
                continue
            target = RouteTargetSerializer(
                data={"model": spec} if isinstance(spec, str) else spec, context=context
            )
            if target.is_valid():
                cleaned.append(target.validated_data)
            else:
                messages += [f"Target {i}: {m}" for ms in target.errors.values() for m in ms]
        if not messages and sum(1 for t in cleaned if t["weight"]) == 1:
            messages.append("An A/B split needs weights on at least two targets (or none at all).")
        if messages:
            self.problems["targets"] = messages
        return cleaned


YAML_TEXT_MESSAGE = "Send the routes as YAML text."
NOT_UTF8_MESSAGE = "The file is not UTF-8 text; save it as UTF-8 and import it again."


def _text(raw: str | bytes) -> str:
    """A routes document as text: bytes (a file, a raw body) are UTF-8, with or without a byte-order mark."""
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationError({"yaml": [NOT_UTF8_MESSAGE]}) from None


class YamlTextField(serializers.CharField):
    """The document as text (or the raw bytes of a body); empty or false is no document. Characters YAML
    refuses (NUL too) are the loader's to name, so no check of its own runs here."""

    default_error_messages = {"invalid": YAML_TEXT_MESSAGE}

    def __init__(self, **kwargs: Any):
        super().__init__(required=False, allow_blank=True, allow_null=True, trim_whitespace=False, **kwargs)
        self.validators = []

    def to_internal_value(self, data: Any) -> str | bytes:  # type: ignore[override]
        if not data:
            return ""
        if not isinstance(data, str | bytes):
            self.fail("invalid")
        return data


class YamlFileField(serializers.FileField):
    def __init__(self, **kwargs: Any):
        super().__init__(required=False, allow_empty_file=True, **kwargs)

    def to_internal_value(self, data: Any) -> bytes:  # type: ignore[override]
        return super().to_internal_value(data).read()


class RouteImportSerializer(AllErrorsSerializer):
    """A routes document as exported (YAML: `version: 1`, `routes: [...]`), as text or as a file (the file wins).
    Routes are matched by name; all or nothing."""

    # Each route is checked by RouteSerializer (one that exists: as a PUT of it) and every problem of every route
    # is answered at once under `routes`. Context: `tenant`. Validated: `routes.RoutesImport`.

    yaml = YamlTextField(help_text="The document's text.")
    file = YamlFileField(help_text="The document as a file (UTF-8).")

    def validate(self, attrs: Any) -> routes.RoutesImport:
        self.raise_problems()
        text = _text(attrs["file"] if "file" in attrs else attrs.get("yaml") or "")
        doc = routes.load_document(text) if text else None
        if llm_config_doc.is_llm_config(doc):
            try:
                entries = llm_config_doc.route_entries(
                    doc, credentials=list(Credential.objects.for_tenant(self.context["tenant"]))
                )
            except llm_config_doc.NotReadable as exc:
                raise ValidationError({"yaml": exc.messages}) from None
        else:
            entries = _document_routes(doc)
        existing = {r.name: r for r in Route.objects.for_tenant(self.context["tenant"])}
        errors: dict[str, Any] = {}
        plan: list[tuple[Route | None, routes.RouteInput]] = []
        names: set[str] = set()
        for i, entry in enumerate(entries):
            name = entry.get("name") if isinstance(entry, dict) else None
            label = name if isinstance(name, str) and routes.NAME.match(name) else f"#{i + 1}"
            if label in names:
                errors[label] = {"name": ["Listed twice."]}
                continue
            names.add(label)
            route = RouteSerializer(existing.get(label), data=entry, context=self.context)
            if route.is_valid():
                plan.append((existing.get(label), route.validated_data))
            else:
                errors[label] = route.errors
        if errors:
            raise ValidationError(
                {
                    "routes": [
                        f"{label}: {field}: {message}"
                        for label, fields in errors.items()
                        for field, messages in fields.items()
                        for message in messages
                    ]
                }
            )
        return routes.RoutesImport(plan=plan, names=names)


def _document_routes(doc: Any) -> list[Any]:
    if isinstance(doc, list):
        doc = {"routes": doc}
    if not isinstance(doc, dict) or not isinstance(doc.get("routes"), list):
        raise ValidationError(
            {"yaml": ["Expected a document with a “routes:” list (or an “llm_config:” mapping)."]}
        )
    if doc.get("version", routes.EXPORT_VERSION) != routes.EXPORT_VERSION:
        raise ValidationError({"yaml": ["Unsupported version; this server reads version 1."]})
    return doc["routes"]


# --- Ollama discovery --------------------------------------------------------------------------------------


class _AnyTextField(serializers.CharField):
    """Whatever is sent, as text (the address is checked when it is called)."""

    def __init__(self, **kwargs: Any):
        super().__init__(required=False, allow_blank=True, allow_null=True, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        return str(data or "")


class OllamaDiscoverySerializer(AllErrorsSerializer):
    """An Ollama server to list the models of."""

    base_url = _AnyTextField(help_text="The Ollama server, e.g. http://127.0.0.1:11434")
    api_key = _AnyTextField(write_only=True, help_text="A bearer token, when the server wants one.")


class EndpointDiscoverySerializer(AllErrorsSerializer):
    """A custom endpoint to list the models of (unsaved: as typed in the modal)."""

    base_url = _AnyTextField(help_text="The server's base URL, e.g. http://localhost:8000/v1")
    api_key = _AnyTextField(
        write_only=True,
        help_text="Its bearer token; left out: the one saved for an endpoint at the same origin.",
    )
