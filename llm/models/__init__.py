"""LLM models, one module per concern: catalog and tenant configuration, usage, assistant threads, stored
Responses API answers."""

from llm.models.assistant import *  # noqa: F403
from llm.models.config import *  # noqa: F403
from llm.models.responses import *  # noqa: F403
from llm.models.usage import *  # noqa: F403
