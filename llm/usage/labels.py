"""Usage as people know it: a call's model by the name they picked or their endpoint serves, its mode and provider
in plain words (the events keep the router's ids: `custom:…`, a catalog id a custom endpoint served, `ollama:…`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from llm.config.catalog import Catalog, get_catalog
from llm.models import CredentialKind

MODES = {"platform": "Managed", "byok": "Own key", "custom": "Custom endpoint"}

# What the router or a saved setting put before the name a custom endpoint is asked for.
_PREFIXES = ("custom:", "ollama:", "openrouter:", "byok:", "platform:")


@dataclass(slots=True)
class ModelNames:
    """Names for one read (the catalog as it is now, each id worked out once)."""

    catalog: Catalog = field(default_factory=get_catalog)
    _known: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)

    def known_id(self, model: str, mode: str) -> str:
        return self.known(model, mode)[0]

    def known_name(self, model: str, mode: str) -> str:
        """The name of a model as `known_id` gave it (a custom endpoint's model is its own name)."""
        return self.known(model, mode)[1]

    def known(self, model: str, mode: str) -> tuple[str, str]:
        """(id, name) of the model as the user knows it. A custom endpoint's calls go by the name the endpoint
        was asked for, whatever the router called them; a catalog model by its catalog name."""
        key = (model, mode)
        if key not in self._known:
            self._known[key] = self._work_out(model, mode)
        return self._known[key]

    def _work_out(self, model: str, mode: str) -> tuple[str, str]:
        if not model:
            return "", "No model (refused before one was chosen)"
        if mode == "custom":
            bare = model
            while bare.startswith(_PREFIXES):  # `custom:byok:openai:gpt-5` was asked of the endpoint as gpt-5
                bare = bare.split(":", 1)[1]
            m = self.catalog.model(bare)
            served = (m.native_model_id or m.id.split(":", 1)[1]) if m is not None else bare
            return served, served
        if model.startswith("ollama:"):
            return model, model.split(":", 1)[1]
        if model.startswith("openrouter:"):
            slug = model.split(":", 1)[1]
            listed = self.catalog.by_openrouter_id(slug)
            return model, listed.name if listed is not None else slug
        m = self.catalog.model(model)
        return (m.id, m.name) if m is not None else (model, model)

    def provider(self, provider: str) -> str:
        listed = self.catalog.providers.get(provider)
        if listed is not None:
            return listed.name
        try:
            return CredentialKind(provider).label
        except ValueError:
            return provider or "—"


def mode_label(mode: str) -> str:
    return MODES.get(mode, mode or "—")
