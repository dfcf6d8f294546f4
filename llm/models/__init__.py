"""LLM models, one module per concern: catalog and tenant configuration, usage, assistant threads."""

from .assistant import *  # noqa: F403
from .config import *  # noqa: F403
from .usage import *  # noqa: F403
