"""The role matrix: who gets through on every page and API route, generated from the URLconf.

Each Django route must have at least one `Case` here (and an API view one for every method it answers), or
`test_every_route_is_in_the_matrix` fails: a new route is added together with who may use it. A case names the
principals that get through (2xx/3xx); every other principal must be refused (403, 404, 401, or, on a page, the
redirect to log in). Principals: the four roles in a session, and tenant API keys with only the `manage` or only
the `gateway` scope. Tenant isolation (another tenant's ids) is tests/test_isolation.py; the rules themselves are
tenants/roles.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from rest_framework.views import APIView

from tenants.audit import SYSTEM
from tenants.keys import apikey_create
from tenants.models import Membership, Tenant, User

OWNER, ADMIN, MEMBER, BILLING, MANAGE, GATEWAY = (
    "owner",
    "admin",
    "member",
    "billing",
    "manage_key",
    "gateway_key",
)
PRINCIPALS = [OWNER, ADMIN, MEMBER, BILLING, MANAGE, GATEWAY]
PEOPLE = frozenset({OWNER, ADMIN, MEMBER, BILLING})
ALL = frozenset(PRINCIPALS)
NOBODY: frozenset[str] = frozenset()
OA = frozenset({OWNER, ADMIN})
OAM = frozenset({OWNER, ADMIN, MEMBER})
CONFIG_READ = PEOPLE | {MANAGE}  # Perm.VIEW_CONFIG / VIEW_USAGE
CONFIG_WRITE = OA | {MANAGE}  # Perm.MANAGE_LLM / MANAGE_AGENTS / MANAGE_KEYS / VIEW_AUDIT
CAPS = frozenset({OWNER, ADMIN, BILLING, MANAGE})  # Perm.MANAGE_CAPS
BILLS = frozenset({OWNER, BILLING})  # Perm.MANAGE_BILLING (never a key)

# Not tenant pages: Django admin (staff only), probes and metrics (their own access rules), the Stripe
# webhook (authenticated by Stripe's signature). /v1 is served ahead of Django and is not in the URLconf.
ALLOWED_UNLISTED_PREFIXES = ("admin/", "healthz", "readyz", "metrics", "billing/stripe/webhook")


class World:
    """One tenant with a person in each role, a `manage` and a `gateway` key, and one object of every kind."""

    def __init__(self, tenant: Tenant, make_user: Callable[..., User], fake_url: str):
        from billing.caps import agent_budget_set
        from billing.notifications import notification_create
        from llm.config.credentials import credential_create
        from llm.config.routes import route_create
        from llm.models import Job, Thread
        from tenants.models import Invitation
        from tenants.services import agent_create
        from tests.llm_config.inputs import credential_input, route_input

        self.tenant = tenant
        self.fake_url = fake_url
        self.members: dict[str, Membership] = {
            OWNER: Membership.objects.unscoped().get(tenant=tenant, role="owner")
        }
        for role in (ADMIN, MEMBER, BILLING):
            self.members[role] = self._person(make_user, role, role)
        self.owner2 = self._person(make_user, "owner2", "owner")
        self.target = self._person(make_user, "target", "member")
        self.keys = {
            MANAGE: apikey_create(tenant=tenant, actor=SYSTEM, name="matrix-manage", scopes=["manage"])[1],
            GATEWAY: apikey_create(tenant=tenant, actor=SYSTEM, name="matrix-gateway", scopes=["gateway"])[1],
        }
        self.agent = agent_create(tenant=tenant, actor=SYSTEM, slug="matrix-agent", name="Matrix agent")
        agent_budget_set(tenant=tenant, actor=SYSTEM, agent=self.agent, monthly_tcu=5000)
        self.key_id = apikey_create(tenant=tenant, actor=SYSTEM, name="victim", scopes=["gateway"])[0].id
        self.credential_id = credential_create(
            tenant=tenant,
            actor=SYSTEM,
            data=credential_input(tenant, kind="openai", name="matrix-cred", api_key="sk-matrix-0000000000"),
        ).pk
        self.route_id = route_create(
            tenant=tenant,
            actor=SYSTEM,
            data=route_input(tenant, name="matrix_route", targets=["openai:gpt-5-mini"]),
        ).pk
        self.notification_id = notification_create(tenant=tenant, title="matrix notice").pk
        self.invitation_id = (
            Invitation.objects.unscoped()
            .create(
                tenant=tenant, email="invitee@example.com", role="member", invited_by=self.members[OWNER].user
            )
            .id
        )
        self.owner_invitation_id = (
            Invitation.objects.unscoped()
            .create(
                tenant=tenant,
                email="future-owner@example.com",
                role="owner",
                invited_by=self.members[OWNER].user,
            )
            .id
        )
        self.jobs = {
            who: Job.objects.unscoped()
            .create(tenant=tenant, model="default", total=0, status="queued", user=self.members[who].user)
            .id
            for who in (OWNER, MEMBER)
        }
        self.threads = {
            who: Thread.objects.unscoped().create(tenant=tenant, user=m.user, title=f"{who} thread").id
            for who, m in [*self.members.items(), ("target", self.target)]
        }
        self.message_ids = {who: self._message(tid) for who, tid in self.threads.items()}

    def _person(self, make_user, name: str, role: str) -> Membership:
        return Membership.objects.unscoped().create(
            tenant=self.tenant, user=make_user(f"{name}@matrix.example.com", password=None), role=role
        )

    def _message(self, thread_id: int) -> int:
        from llm.models import Message

        return (
            Message.objects.unscoped()
            .create(tenant=self.tenant, thread_id=thread_id, role="user", content="hello")
            .id
        )

    def thread_of(self, principal: str) -> int:
        """The principal's own thread (a key has none: it is shown the owner's)."""
        return self.threads.get(principal, self.threads[OWNER])

    def membership_of(self, principal: str) -> Membership:
        return self.members.get(principal, self.members[OWNER])

    def client(self, principal: str) -> Client:
        client = Client()
        if principal in self.keys:
            client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {self.keys[principal]}"
        else:
            client.force_login(self.members[principal].user)
        return client

    def invite_token(self) -> str:
        from tenants.models import Invitation
        from tenants.services import invitation_token

        return invitation_token(Invitation.objects.unscoped().get(id=self.invitation_id))


Path = Callable[[World, str], str]
Body = Callable[[World], Any]


@dataclass(frozen=True)
class Case:
    route: str  # the URL name
    method: str
    path: Path
    allowed: frozenset[str]
    body: Body | None = None
    form: bool = False  # a page form post rather than JSON
    label: str = ""
    # Statuses that also count as getting through, where the only outcome possible here is an error after
    # the access check (no Stripe account in tests). Say why next to the case.
    also_through: frozenset[int] = field(default_factory=frozenset)

    @property
    def id(self) -> str:
        return f"{self.route}-{self.method}" + (f"-{self.label}" if self.label else "")


def _p(url: str) -> Path:
    return lambda world, principal: url


CASES: list[Case] = [
    # --- public pages (anyone, logged in or not) ---------------------------------------------------
    Case("landing", "GET", _p("/"), ALL),
    Case("signup", "GET", _p("/signup/"), ALL),
    Case("login", "GET", _p("/login/"), ALL),
    Case("logout", "POST", _p("/logout/"), ALL, form=True),
    Case("password_reset", "GET", _p("/password-reset/"), ALL),
    Case("password_reset_done", "GET", _p("/password-reset/sent/"), ALL),
    Case("password_reset_confirm", "GET", _p("/password-reset/MQ/bad-token/"), ALL),
    Case("password_reset_complete", "GET", _p("/password-reset/done/"), ALL),
    Case("invite_accept", "GET", lambda w, p: f"/invite/{w.invite_token()}/", ALL),
    Case("api-schema", "GET", _p("/api/schema/"), ALL - {GATEWAY}),
    Case("api-docs", "GET", _p("/api/docs/"), ALL - {GATEWAY}),
    Case("api_reference", "GET", _p("/api-reference/"), PEOPLE),
    # --- tenant pages (a session; keys are sent to log in) -----------------------------------------
    Case("dashboard", "GET", _p("/dashboard/"), PEOPLE),
    Case(
        "switch_tenant",
        "POST",
        lambda w, p: "/workspace/switch/",
        PEOPLE,
        body=lambda w: {"tenant": w.tenant.id},
        form=True,
    ),
    # Anyone logged in may create a workspace of their own (and owns only that one); keys never.
    Case("workspace_new", "GET", _p("/workspace/new/"), PEOPLE),
    Case(
        "workspace_new",
        "POST",
        _p("/workspace/new/"),
        PEOPLE,
        body=lambda w: {"tenant_name": "Side project", "tenant_slug": "side-project"},
        form=True,
    ),
    Case("members", "GET", _p("/members/"), PEOPLE),
    Case(
        "members",
        "POST",
        _p("/members/"),
        OA,
        body=lambda w: {"email": "new@example.com", "role": "member"},
        form=True,
        label="invite",
    ),
    Case(
        "member_role",
        "POST",
        lambda w, p: f"/members/{w.target.id}/role/",
        OA,
        body=lambda w: {"role": "billing"},
        form=True,
        label="member-to-billing",
    ),
    Case(
        "member_role",
        "POST",
        lambda w, p: f"/members/{w.target.id}/role/",
        frozenset({OWNER}),
        body=lambda w: {"role": "owner"},
        form=True,
        label="grant-owner",
    ),
    Case(
        "member_role",
        "POST",
        lambda w, p: f"/members/{w.owner2.id}/role/",
        frozenset({OWNER}),
        body=lambda w: {"role": "member"},
        form=True,
        label="demote-owner",
    ),
    Case(
        "member_role",
        "POST",
        lambda w, p: f"/members/{w.membership_of(p).id}/role/",
        frozenset({OWNER}),
        body=lambda w: {"role": "owner"},
        form=True,
        label="self-to-owner",
    ),
    Case(
        "member_remove", "POST", lambda w, p: f"/members/{w.target.id}/remove/", OA, form=True, label="member"
    ),
    Case(
        "member_remove",
        "POST",
        lambda w, p: f"/members/{w.owner2.id}/remove/",
        frozenset({OWNER}),
        form=True,
        label="owner",
    ),
    Case(
        "invitation_resend",
        "POST",
        lambda w, p: f"/members/invitations/{w.invitation_id}/resend/",
        OA,
        form=True,
    ),
    Case(
        "invitation_resend",
        "POST",
        lambda w, p: f"/members/invitations/{w.owner_invitation_id}/resend/",
        frozenset({OWNER}),
        form=True,
        label="owner-invitation",
    ),
    Case(
        "invitation_revoke",
        "POST",
        lambda w, p: f"/members/invitations/{w.invitation_id}/revoke/",
        OA,
        form=True,
    ),
    Case("agents", "GET", _p("/agents/"), PEOPLE),
    Case("agents", "POST", _p("/agents/"), OA, body=lambda w: {"slug": "new-agent"}, form=True),
    Case("agent_detail", "GET", _p("/agents/matrix-agent/"), PEOPLE),
    Case(
        "agent_detail",
        "POST",
        _p("/agents/matrix-agent/"),
        OA,
        body=lambda w: {"name": "Renamed", "is_active": "on"},
        form=True,
    ),
    Case(
        "agent_detail",
        "POST",
        _p("/agents/matrix-agent/"),
        frozenset({OWNER, ADMIN, BILLING}),  # Perm.MANAGE_CAPS
        body=lambda w: {"action": "budget", "monthly_tcu": "7000"},
        form=True,
        label="budget",
    ),
    Case(
        "agent_detail",
        "POST",
        _p("/agents/matrix-agent/"),
        frozenset({OWNER, ADMIN, BILLING}),  # Perm.MANAGE_CAPS, as PUT /api/agents/{slug}/managed
        body=lambda w: {"action": "managed"},
        form=True,
        label="managed",
    ),
    Case(
        "agent_detail",
        "POST",
        _p("/agents/matrix-agent/"),
        OA,  # Perm.MANAGE_LLM, as DELETE /api/llm/preferences?agent=SLUG
        body=lambda w: {"action": "reset_llm"},
        form=True,
        label="reset-llm",
    ),
    Case("keys", "GET", _p("/keys/"), OA),
    Case("keys", "POST", _p("/keys/"), OA, body=lambda w: {"name": "k", "scopes": ["gateway"]}, form=True),
    Case(
        "keys",
        "POST",
        _p("/keys/"),
        OA,
        body=lambda w: {"action": "limit", "key": w.key_id, "spend_limit_tcu": "100"},
        form=True,
        label="limit",
    ),
    Case("key_revoke", "POST", lambda w, p: f"/keys/{w.key_id}/revoke/", OA, form=True),
    Case(
        "key_rotate",
        "POST",
        lambda w, p: f"/keys/{w.key_id}/rotate/",
        OA,
        body=lambda w: {"grace_seconds": "3600"},
        form=True,
    ),
    Case("audit", "GET", _p("/audit/"), OA),
    Case("usage", "GET", _p("/usage/"), PEOPLE),
    Case("usage_csv", "GET", _p("/usage.csv"), PEOPLE),
    Case("llm_settings", "GET", _p("/settings/llm/"), PEOPLE),
    # Linking an OpenRouter account: off to OpenRouter's consent page, and back (nothing pending here: a message)
    Case(
        "openrouter_connect", "POST", _p("/settings/llm/openrouter/connect"), OA, body=lambda w: {}, form=True
    ),
    Case("openrouter_callback", "GET", _p("/settings/llm/openrouter/callback?code=abc"), OA),
    Case("routes", "GET", _p("/routes/"), PEOPLE),
    Case(
        "routes",
        "POST",
        _p("/routes/"),
        OA,
        body=lambda w: {"name": "page_route", "targets": "openai:gpt-5-mini"},
        form=True,
    ),
    Case("assistant", "GET", _p("/assistant/"), OAM),
    Case("assistant", "POST", _p("/assistant/"), OAM, body=lambda w: {"action": "new"}, form=True),
    Case("assistant_thread", "GET", lambda w, p: f"/assistant/{w.thread_of(p)}/", OAM, label="own"),
    Case(
        "assistant_thread",
        "GET",
        lambda w, p: f"/assistant/{w.threads['target']}/",
        NOBODY,
        label="someone-elses",
    ),
    Case("billing", "GET", _p("/billing/"), frozenset({OWNER, ADMIN, BILLING})),
    Case(
        "billing",
        "POST",
        _p("/billing/"),
        frozenset({OWNER, ADMIN, BILLING}),  # Perm.MANAGE_CAPS, as PUT /api/managed
        body=lambda w: {"action": "managed"},
        form=True,
        label="managed",
    ),
    Case(
        "agent_detail",
        "POST",
        _p("/agents/matrix-agent/"),
        OA,  # Perm.MANAGE_LLM, as DELETE /api/llm/preferences?agent=SLUG
        body=lambda w: {"action": "reset_llm"},
        form=True,
        label="reset-llm",
    ),
    Case(
        "billing_change_plan",
        "POST",
        _p("/billing/plan"),
        BILLS,
        body=lambda w: {"plan": _current_plan(w)},
        form=True,
    ),
    Case("billing_portal", "POST", _p("/billing/portal"), BILLS, form=True),
    Case("notifications", "GET", _p("/notifications/"), PEOPLE),
    # --- tenants REST API --------------------------------------------------------------------------
    Case("api-agents", "GET", _p("/api/agents"), CONFIG_READ),
    Case("api-agents", "POST", _p("/api/agents"), CONFIG_WRITE, body=lambda w: {"slug": "api-agent"}),
    Case("api-agent", "GET", _p("/api/agents/matrix-agent"), CONFIG_READ),
    Case("api-agent", "PATCH", _p("/api/agents/matrix-agent"), CONFIG_WRITE, body=lambda w: {"name": "x"}),
    Case("api-agent", "PUT", _p("/api/agents/matrix-agent"), CONFIG_WRITE, body=lambda w: {"name": "x"}),
    Case("api-agent", "DELETE", _p("/api/agents/matrix-agent"), CONFIG_WRITE),
    Case("api-keys", "GET", _p("/api/keys"), CONFIG_WRITE),
    Case("api-keys", "POST", _p("/api/keys"), CONFIG_WRITE, body=lambda w: {"name": "k"}),
    Case("api-key", "GET", lambda w, p: f"/api/keys/{w.key_id}", CONFIG_WRITE),
    Case(
        "api-key",
        "PATCH",
        lambda w, p: f"/api/keys/{w.key_id}",
        CONFIG_WRITE,
        body=lambda w: {"spend_limit_tcu": 100},
    ),
    Case("api-key", "DELETE", lambda w, p: f"/api/keys/{w.key_id}", CONFIG_WRITE),
    Case(
        "api-key-rotate",
        "POST",
        lambda w, p: f"/api/keys/{w.key_id}/rotate",
        CONFIG_WRITE,
        body=lambda w: {"grace_seconds": 60},
    ),
    Case("api-audit", "GET", _p("/api/audit"), CONFIG_WRITE),
    Case("api-invitations", "GET", _p("/api/invitations"), OA),
    Case("api-invitations", "POST", _p("/api/invitations"), OA, body=lambda w: {"email": "n@example.com"}),
    Case("api-invitation", "GET", lambda w, p: f"/api/invitations/{w.invitation_id}", OA),
    Case("api-invitation", "DELETE", lambda w, p: f"/api/invitations/{w.invitation_id}", OA),
    Case("api-invitation-resend", "POST", lambda w, p: f"/api/invitations/{w.invitation_id}/resend", OA),
    Case(
        "api-invitation-resend",
        "POST",
        lambda w, p: f"/api/invitations/{w.owner_invitation_id}/resend",
        frozenset({OWNER}),
        label="owner-invitation",
    ),
    # --- assistant threads (personal to their author) and batch jobs ------------------------------
    Case("api-threads", "GET", _p("/api/llm/threads"), OAM),
    Case("api-threads", "POST", _p("/api/llm/threads"), OAM, body=lambda w: {"title": "t"}),
    Case("api-thread", "GET", lambda w, p: f"/api/llm/threads/{w.thread_of(p)}", OAM),
    Case(
        "api-thread",
        "GET",
        lambda w, p: f"/api/llm/threads/{w.threads['target']}",
        NOBODY,
        label="someone-elses",
    ),
    Case(
        "api-thread",
        "PATCH",
        lambda w, p: f"/api/llm/threads/{w.thread_of(p)}",
        OAM,
        body=lambda w: {"title": "r"},
    ),
    Case("api-thread", "DELETE", lambda w, p: f"/api/llm/threads/{w.thread_of(p)}", OAM),
    Case(
        "api-thread-messages",
        "POST",
        lambda w, p: f"/api/llm/threads/{w.thread_of(p)}/messages",
        OAM,
        body=lambda w: {"content": "hi"},
    ),
    Case(
        "api-thread-message",
        "GET",
        lambda w, p: (
            f"/api/llm/threads/{w.thread_of(p)}/messages/{w.message_ids.get(p, w.message_ids[OWNER])}"
        ),
        OAM,
    ),
    Case("api-jobs", "GET", _p("/api/llm/jobs"), OAM | {MANAGE}),
    Case(
        "api-jobs",
        "POST",
        _p("/api/llm/jobs"),
        OAM | {MANAGE},
        body=lambda w: {"requests": [{"messages": [{"role": "user", "content": "hi"}]}]},
    ),
    Case(
        "api-job", "GET", lambda w, p: f"/api/llm/jobs/{w.jobs[MEMBER]}", OAM | {MANAGE}, label="members-job"
    ),
    Case("api-job", "GET", lambda w, p: f"/api/llm/jobs/{w.jobs[OWNER]}", OA | {MANAGE}, label="owners-job"),
    Case(
        "api-job",
        "DELETE",
        lambda w, p: f"/api/llm/jobs/{w.jobs[MEMBER]}",
        OAM | {MANAGE},
        label="members-job",
    ),
    Case(
        "api-job", "DELETE", lambda w, p: f"/api/llm/jobs/{w.jobs[OWNER]}", OA | {MANAGE}, label="owners-job"
    ),
    Case(
        "api-job-cancel",
        "POST",
        lambda w, p: f"/api/llm/jobs/{w.jobs[MEMBER]}/cancel",
        OAM | {MANAGE},
        label="members-job",
    ),
    Case(
        "api-job-cancel",
        "POST",
        lambda w, p: f"/api/llm/jobs/{w.jobs[OWNER]}/cancel",
        OA | {MANAGE},
        label="owners-job",
    ),
    # --- usage and LLM configuration API -------------------------------------------------------------
    Case("api-llm-usage", "GET", _p("/api/llm/usage"), CONFIG_READ),
    Case("llm-models", "GET", _p("/api/llm/models"), CONFIG_READ),
    Case("llm-credentials", "GET", _p("/api/llm/credentials"), CONFIG_READ),
    Case(
        "llm-credentials",
        "POST",
        _p("/api/llm/credentials"),
        CONFIG_WRITE,
        body=lambda w: {"kind": "openai", "name": "another", "api_key": "sk-another-000000000"},
    ),
    Case("llm-credential", "GET", lambda w, p: f"/api/llm/credentials/{w.credential_id}", CONFIG_READ),
    Case(
        "llm-credential",
        "PATCH",
        lambda w, p: f"/api/llm/credentials/{w.credential_id}",
        CONFIG_WRITE,
        body=lambda w: {"name": "renamed"},
    ),
    Case(
        "llm-credential",
        "PUT",
        lambda w, p: f"/api/llm/credentials/{w.credential_id}",
        CONFIG_WRITE,
        body=lambda w: {"name": "renamed"},
    ),
    Case("llm-credential", "DELETE", lambda w, p: f"/api/llm/credentials/{w.credential_id}", CONFIG_WRITE),
    Case("llm-preferences", "GET", _p("/api/llm/preferences"), CONFIG_READ),
    Case(
        "llm-preferences",
        "POST",
        _p("/api/llm/preferences"),
        CONFIG_WRITE,
        body=lambda w: {"mode": "byok", "model": "openai:gpt-5-mini", "api_key": "sk-prefs-00000000000"},
    ),
    Case("llm-preferences", "DELETE", _p("/api/llm/preferences?agent=matrix-agent"), CONFIG_WRITE),
    Case("llm-routes", "GET", _p("/api/llm/routes"), CONFIG_READ),
    Case(
        "llm-routes",
        "POST",
        _p("/api/llm/routes"),
        CONFIG_WRITE,
        body=lambda w: {"name": "api_route", "targets": ["openai:gpt-5-mini"]},
    ),
    Case("llm-routes-export", "GET", _p("/api/llm/routes/export"), CONFIG_READ),
    Case(
        "llm-routes-import",
        "POST",
        _p("/api/llm/routes/import"),
        CONFIG_WRITE,
        body=lambda w: {
            "yaml": "routes:\n- name: imported_route\n  targets:\n  - model: openai:gpt-5-mini\n"
        },
    ),
    Case("llm-route", "GET", lambda w, p: f"/api/llm/routes/{w.route_id}", CONFIG_READ),
    Case(
        "llm-route",
        "PATCH",
        lambda w, p: f"/api/llm/routes/{w.route_id}",
        CONFIG_WRITE,
        body=lambda w: {"description": "d"},
    ),
    Case(
        "llm-route",
        "PUT",
        lambda w, p: f"/api/llm/routes/{w.route_id}",
        CONFIG_WRITE,
        body=lambda w: {"name": "matrix_route", "targets": ["openai:gpt-5-mini"]},
    ),
    Case("llm-route", "DELETE", lambda w, p: f"/api/llm/routes/{w.route_id}", CONFIG_WRITE),
    Case(
        "llm-test-connection",
        "POST",
        _p("/api/llm/test-connection"),
        CONFIG_WRITE,
        body=lambda w: {
            "mode": "custom",
            "model": "llama3:8b",
            "custom_endpoint": {"kind": "openai_compatible", "base_url": f"{w.fake_url}/v1"},
        },
    ),
    Case(
        "llm-ollama-models", "GET", lambda w, p: f"/api/llm/ollama/models?base_url={w.fake_url}", CONFIG_WRITE
    ),
    Case(
        "llm-ollama-models",
        "POST",
        _p("/api/llm/ollama/models"),
        CONFIG_WRITE,
        body=lambda w: {"base_url": w.fake_url},
    ),
    Case(
        "llm-endpoint-models",
        "POST",
        _p("/api/llm/endpoint-models"),
        CONFIG_WRITE,
        body=lambda w: {"base_url": f"{w.fake_url}/v1"},
    ),
    # --- billing API ---------------------------------------------------------------------------------
    Case("api-billing-caps", "GET", _p("/api/billing/caps"), CAPS),
    Case(
        "api-billing-caps",
        "PUT",
        _p("/api/billing/caps"),
        CAPS,
        body=lambda w: {"warn_tcu": 10, "hard_tcu": 20},
    ),
    Case(
        "api-billing-caps",
        "PATCH",
        _p("/api/billing/caps"),
        CAPS,
        body=lambda w: {"warn_tcu": 10, "hard_tcu": 20},
    ),
    Case("api-billing-summary", "GET", _p("/api/billing/summary"), CONFIG_READ),
    Case("api-billing-plans", "GET", _p("/api/billing/plans"), CONFIG_READ),
    Case("api-billing-plan", "GET", _p("/api/billing/plan"), CONFIG_READ),
    Case(
        "api-billing-plan", "POST", _p("/api/billing/plan"), BILLS, body=lambda w: {"plan": _current_plan(w)}
    ),
    # No Stripe account here: the portal request gets past the access check and then fails at Stripe.
    Case("api-billing-portal", "POST", _p("/api/billing/portal"), BILLS, also_through=frozenset({400, 503})),
    Case("api-billing-alert-webhook", "GET", _p("/api/billing/alert-webhook"), CAPS),
    Case(
        "api-billing-alert-webhook", "PUT", _p("/api/billing/alert-webhook"), CAPS, body=lambda w: {"url": ""}
    ),
    Case("api-billing-agent-budget", "GET", _p("/api/billing/agents/matrix-agent/budget"), CAPS),
    Case(
        "api-billing-agent-budget",
        "PUT",
        _p("/api/billing/agents/matrix-agent/budget"),
        CAPS,
        body=lambda w: {"monthly_tcu": 100},
    ),
    # Managed LLM per agent: everyone reads; owners, admins, billing and manage keys change it (Stripe is not
    # configured here: a paid tier gets past the access check and then fails at Stripe, a 400).
    Case("api-agent-managed", "GET", _p("/api/agents/matrix-agent/managed"), CONFIG_READ),
    Case(
        "api-agent-managed",
        "PUT",
        _p("/api/agents/matrix-agent/managed"),
        CAPS,
        body=lambda w: {"tier": "pro"},
        also_through=frozenset({400}),
    ),
    Case("api-managed", "GET", _p("/api/managed"), CONFIG_READ),
    Case("api-managed", "PUT", _p("/api/managed"), CAPS, body=lambda w: {"tier": None}, label="off"),
    Case("api-billing-notifications", "GET", _p("/api/billing/notifications"), CONFIG_READ),
    Case(
        "api-billing-notification",
        "GET",
        lambda w, p: f"/api/billing/notifications/{w.notification_id}",
        CONFIG_READ,
    ),
    Case(
        "api-billing-notification",
        "POST",
        lambda w, p: f"/api/billing/notifications/{w.notification_id}",
        CONFIG_READ,
    ),
]


def _current_plan(world: World) -> str:
    from billing.plans import ensure_subscription

    return ensure_subscription(world.tenant).plan.slug


# --- the URLconf ---------------------------------------------------------------------------------------


def _routes(patterns=None, prefix: str = "") -> list[tuple[str, URLPattern]]:
    found = []
    for p in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(p, URLResolver):
            found += _routes(p.url_patterns, prefix + str(p.pattern))
        else:
            found.append((prefix + str(p.pattern), p))
    return found


def _api_methods(pattern: URLPattern) -> set[str]:
    view_class = getattr(pattern.callback, "view_class", None) or getattr(pattern.callback, "cls", None)
    if view_class is None or not issubclass(view_class, APIView):
        return set()
    return {
        m.upper()
        for m in view_class.http_method_names
        if m not in ("options", "head") and hasattr(view_class, m)
    }


def test_every_route_is_in_the_matrix():
    covered: dict[str, set[str]] = {}
    for case in CASES:
        covered.setdefault(case.route, set()).add(case.method)
    missing, unknown_methods = [], []
    for route, pattern in _routes():
        if route.startswith(ALLOWED_UNLISTED_PREFIXES):
            continue
        if pattern.name not in covered:
            missing.append(f"/{route} ({pattern.name})")
            continue
        if absent := _api_methods(pattern) - covered[pattern.name]:
            unknown_methods.append(f"/{route} ({pattern.name}): {sorted(absent)}")
    assert not missing, f"routes without an entry in tests/test_role_matrix.py CASES: {missing}"
    assert not unknown_methods, f"API methods without an entry in the role matrix: {unknown_methods}"
    names = {p.name for _, p in _routes()}
    assert not (stale := sorted(set(covered) - names)), (
        f"matrix entries for routes that no longer exist: {stale}"
    )


# --- the matrix ----------------------------------------------------------------------------------------


@pytest.fixture
def world(tenant, make_user, fake, settings, platform_allowed):
    settings.ALLOW_PRIVATE_ENDPOINTS = True  # the fake upstream is on 127.0.0.1
    # platform_allowed: the routes made and posted name platform-mode targets, which the workspace may then call
    return World(tenant, make_user, fake.url)


def _outcome(response) -> str:
    status = response.status_code
    if status in (301, 302, 303, 307, 308):
        return (
            "refused"
            if response["Location"].startswith(("/login/", "http://testserver/login/"))
            else "through"
        )
    if 200 <= status < 300:
        return "through"
    if status in (401, 403, 404):
        return "refused"
    return f"unexpected {status}"


def _request(case: Case, principal: str, world: World) -> str:
    url = case.path(world, principal)
    assert resolve(url.split("?")[0]).url_name == case.route, f"{url} is not the route {case.route}"
    client = world.client(principal)
    body = case.body(world) if case.body else None
    kwargs: dict[str, Any] = {}
    if case.method != "GET":
        kwargs = {"data": body or {}} if case.form else {"data": body, "content_type": "application/json"}
    response = getattr(client, case.method.lower())(url, **kwargs)
    outcome = _outcome(response)
    if outcome.startswith("unexpected") and response.status_code in case.also_through:
        outcome = "through"
    expected = "through" if principal in case.allowed else "refused"
    if outcome == expected:
        return ""
    return (
        f"{principal} {case.method} {url}: {response.status_code} ({outcome}), expected {expected}; "
        f"{response.content[:200]!r}"
    )


@pytest.mark.django_db
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_role_matrix(case: Case, world: World):
    """Every principal in turn against the same objects; each request's changes are rolled back after it."""
    wrong = []
    for principal in PRINCIPALS:
        with transaction.atomic():
            wrong.append(_request(case, principal, world))
            transaction.set_rollback(True)
    assert not any(wrong), "\n".join(w for w in wrong if w)
