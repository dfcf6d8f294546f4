"""Agent templates offered when an agent is created: a name and description to start from, the tokens such an agent
typically uses a month, and the managed tier recommended for it, so a user picks a tier without knowing models.

The figures follow the seed's usage table in spirit (we have no finer data): each template's recommended tier is the
one whose customer description names that kind of work (Starter: FAQ, e-mail replies; Pro: content, research,
analysis; Ultra: coding, deep research, strategy), and its expected monthly tokens fit inside that tier's included
tokens (Starter 2M, Pro 5M, Ultra 10M) with room to spare, so a typical month has no overage:

| template          | expected tokens a month | recommended |
|-------------------|-------------------------|-------------|
| Simple FAQ bot    | ~0.5M                   | Starter     |
| Support email     | ~1.5M                   | Starter     |
| Content writer    | ~3M                     | Pro         |
| Research agent    | ~4M                     | Pro         |
| Coding assistant  | ~8M                     | Ultra       |
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AgentTemplate:
    key: str  # the `?template=` of the agents page
    slug: str  # the agent id it suggests
    name: str
    description: str
    monthly_tokens: int  # what such an agent typically uses a month
    tier: str  # the recommended managed tier's slug (billing.ManagedTier)


TEMPLATES: tuple[AgentTemplate, ...] = (
    AgentTemplate(
        key="support-email",
        slug="support-email",
        name="Support email",
        description="Answers customer e-mails: order status, returns, common questions; hands the rest to a person.",
        monthly_tokens=1_500_000,
        tier="starter",
    ),
    AgentTemplate(
        key="content-writer",
        slug="content-writer",
        name="Content writer",
        description="Drafts blog posts, newsletters and social posts in your brand's voice.",
        monthly_tokens=3_000_000,
        tier="pro",
    ),
    AgentTemplate(
        key="research-agent",
        slug="research-agent",
        name="Research agent",
        description="Reads sources, compares options and writes summaries and reports.",
        monthly_tokens=4_000_000,
        tier="pro",
    ),
    AgentTemplate(
        key="coding-assistant",
        slug="coding-assistant",
        name="Coding assistant",
        description="Writes, reviews and explains code, and helps find bugs.",
        monthly_tokens=8_000_000,
        tier="ultra",
    ),
    AgentTemplate(
        key="faq-bot",
        slug="faq-bot",
        name="Simple FAQ bot",
        description="Answers frequently asked questions from your help pages.",
        monthly_tokens=500_000,
        tier="starter",
    ),
)


def template_for(key: str | None) -> AgentTemplate | None:
    """The template a key names, or None (unknown keys are ignored: the form starts empty)."""
    return next((t for t in TEMPLATES if t.key == key), None)
