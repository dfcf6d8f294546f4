"""Every `.unscoped()` in the app code is a listed exception with its reason: work that is cross-tenant by nature.

Everything else reads and writes through `Model.objects.for_tenant(tenant)`. The test walks the syntax tree of
every non-test, non-migration module of the apps, finds each `.unscoped` and the function around it, and fails
on one that is not listed below, and on a listed function that no longer has one (a stale entry).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("llm", "billing", "tenants", "byok_platform")

TASK_BY_ID = "a task's body: loads its own row by id, then works for that row's tenant through for_tenant"

# (module, qualified name of the enclosing function or class) -> why it is cross-tenant.
ALLOWED: dict[tuple[str, str], str] = {
    # The usage drain, rollups and metering counters.
    ("llm.metering.queue", "_insert"): "the usage drain: one batch from the queue holds many tenants' events",
    ("llm.usage.rollups", "rollup_pending"): (
        "the rollup schedule finds every tenant with events to roll up; each tenant's rollup is for_tenant"
    ),
    ("llm.usage.rollups", "latest_event_id"): (
        "the highest event id of the whole table: ids are one sequence for every tenant, and a seal must cover "
        "every insert still open, whoever's; reads then filter for_tenant"
    ),
    ("llm.runtime.responses_store", "purge_expired"): (
        "the retention schedule deletes every tenant's stored Responses API answers past their expiry"
    ),
    ("llm.limits.budget", "_rebuild_used"): (
        "rebuilds a Redis budget counter keyed by its own id alone (a tenant, an API key or an agent, each "
        "unique platform-wide): the counter carries no tenant to scope by"
    ),
    # Reconciliation, the billing cycle and Stripe webhooks.
    ("billing.stripe.reconciliation", "reconcile"): "reconciliation walks every tenant's subscription",
    ("billing.stripe.reconciliation", "check_rollups"): (
        "reconciliation compares every tenant's events of the period with its daily rollups"
    ),
    ("billing.stripe.ledger", "tenants_to_push"): "the billing cycle lists every tenant with overage to push",
    ("billing.caps", "invalidate_all"): "a plan changed: the cached limits of every subscribed tenant go",
    ("billing.metrics", "_platform_sums"): "/metrics: every tenant's platform list cost",
    ("billing.metrics", "platform_margin"): "/metrics: every tenant's platform revenue",
    ("billing.stripe.webhooks", "_tenant_for"): (
        "a Stripe webhook names a Stripe customer; its subscription row says which tenant the event is for"
    ),
    # Tasks that load a row by id.
    ("llm.runtime.jobs", "job_run"): TASK_BY_ID,
    ("llm.runtime.assistant", "reply_run"): TASK_BY_ID,
    ("billing.alerts", "alert_webhook_deliver"): TASK_BY_ID,
    ("billing.alerts", "alert_webhook_give_up"): "a task's last retry failed: marks its own alert by id",
    ("llm.config.encryption", "unreadable_secrets"): (
        "/readyz: can the configured master keys unwrap the newest data key, whichever tenant's it is"
    ),
    # Management commands.
    ("llm.config.encryption", "rotate"): (
        "rotate_encryption_key re-wraps every tenant's data keys and finds the tenants still on an old "
        "master key; each tenant's re-encryption is for_tenant"
    ),
    # API-key authentication by hash.
    (
        "tenants.keys",
        "key_info_by_hash",
    ): "a presented key is looked up by its hash, before any tenant is known",
    ("tenants.keys", "touch_last_used"): "records the use of the key just authenticated, by its id",
    # A user's memberships across tenants.
    (
        "tenants.middleware",
        "resolve_membership",
    ): "a user's memberships in every tenant pick the request's one",
    ("tenants.services", "user_tenants"): "the workspaces a user belongs to, across tenants",
    ("tenants.services", "invitation_from_token"): (
        "an invitation link names its row by id and tenant id (signed); who follows it is not a member yet"
    ),
    # The Django admin.
    (
        "tenants.admin_base",
        "TenantOwnedAdmin.get_queryset",
    ): "the Django admin: platform admins see every tenant",
    ("tenants.admin", "MembershipInline.get_queryset"): "the Django admin: a tenant's memberships, inline",
    ("billing.admin", "ManagedTierAdmin._tenant_ids"): (
        "the Django admin: a tier edit or delete concerns every tenant with an agent on it"
    ),
    ("billing.admin", "ManagedAgentAdmin.formfield_for_foreignkey"): (
        "the Django admin: a platform admin types any tenant's agent id; the form refuses another tenant's"
    ),
    ("tenants.forms", "ApiKeyForm"): (
        "an empty placeholder (.none()) at class definition, where there is no tenant; __init__ sets the "
        "tenant's agents through for_tenant"
    ),
}


def _app_modules() -> list[Path]:
    files = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if "migrations" in rel.parts or "tests" in rel.parts or path.name.startswith("test_"):
                continue
            files.append(path)
    return files


class _Finder(ast.NodeVisitor):
    """Collects (qualified name of the enclosing function or class, line) of every `.unscoped` attribute."""

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.found: list[tuple[str, int]] = []

    def _scope(self, node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.stack.append(node.name)
        self.generic_visit(node)
        self.stack.pop()

    visit_ClassDef = visit_FunctionDef = visit_AsyncFunctionDef = _scope

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr == "unscoped":
            self.found.append((".".join(self.stack) or "<module>", node.lineno))
        self.generic_visit(node)


def unscoped_uses() -> dict[tuple[str, str], list[str]]:
    """(module, qualname) -> the `path:line` of each `.unscoped` in it."""
    uses: dict[tuple[str, str], list[str]] = {}
    for path in _app_modules():
        rel = path.relative_to(ROOT)
        module = ".".join(rel.with_suffix("").parts)
        finder = _Finder()
        finder.visit(ast.parse(path.read_text(), filename=str(rel)))
        for qualname, line in finder.found:
            uses.setdefault((module, qualname), []).append(f"{rel}:{line}")
    return uses


def test_every_unscoped_call_is_an_allowed_cross_tenant_exception():
    uses = unscoped_uses()
    unlisted = [
        f"{where} ({m}:{q})"
        for (m, q), places in sorted(uses.items())
        if (m, q) not in ALLOWED
        for where in places
    ]
    assert not unlisted, (
        "`.unscoped()` where the work is for one tenant: use Model.objects.for_tenant(tenant), or, if it is "
        "cross-tenant by nature, add the function to ALLOWED with the reason:\n  " + "\n  ".join(unlisted)
    )


def test_every_allowed_exception_is_still_used():
    uses = unscoped_uses()
    stale = [f"{m}:{q}" for (m, q) in ALLOWED if (m, q) not in uses]
    assert not stale, "ALLOWED names functions without `.unscoped()` any more; remove:\n  " + "\n  ".join(
        stale
    )


def test_every_allowed_exception_says_why():
    assert all(isinstance(why, str) and len(why) > 20 for why in ALLOWED.values())


def test_the_finder_sees_calls_in_methods_nested_functions_and_class_bodies():
    source = (
        "class A:\n"
        "    q = M.objects.unscoped().none()\n"
        "    def f(self):\n"
        "        def g():\n"
        "            return M.objects.unscoped()\n"
        "        return g\n"
        "async def h():\n"
        "    return M.objects.for_tenant(1)\n"
        "x = M.objects.unscoped\n"
    )
    finder = _Finder()
    finder.visit(ast.parse(source))
    assert finder.found == [("A", 2), ("A.f.g", 5), ("<module>", 9)]
