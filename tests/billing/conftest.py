"""Billing fixtures: localstripe (one private instance per test session), Stripe settings, tenants on plans."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from django.utils import timezone

from billing.stripe.client import reset_clients, stripe_client
from llm.models import UsageEvent

# localstripe pickles its state to a fixed /tmp path; this launcher redirects it to a private file so that
# this session's instance never shares state with another one on the machine, and extends it to subscriptions
# with several items (Stripe's wire format; see tests/fakes/localstripe_items.py).
_LAUNCHER = """
import builtins, sys
_real_open = builtins.open
_path = sys.argv[2]
def _open(file, *args, **kwargs):
    if file == '/tmp/localstripe.pickle':
        file = _path
    return _real_open(file, *args, **kwargs)
builtins.open = _open
import importlib.util
_spec = importlib.util.spec_from_file_location("localstripe_items", sys.argv[3])
_items = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_items)
_items.patch()  # several subscription items (tests/fakes/localstripe_items.py)
from aiohttp import web
from localstripe.server import app
web.run_app(app, host='127.0.0.1', port=int(sys.argv[1]), print=None)
"""

_ITEMS_PATCH = Path(__file__).resolve().parents[1] / "fakes" / "localstripe_items.py"
WEBHOOK_SECRET = "whsec_test_secret_for_billing_tests"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def localstripe_url():
    port = _free_port()
    state = Path(tempfile.mkdtemp(prefix="localstripe-")) / "store.pickle"
    proc = subprocess.Popen(
        [sys.executable, "-c", _LAUNCHER, str(port), str(state), str(_ITEMS_PATCH)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("localstripe exited: " + proc.stderr.read().decode()[-2000:])
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError("localstripe did not start within 30 s")
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def stripe_settings(settings, localstripe_url):
    """Point the project's Stripe client at an emptied localstripe."""
    httpx.delete(f"{localstripe_url}/_config/data", timeout=10).raise_for_status()
    settings.STRIPE_API_KEY = "sk_test_billing"
    settings.STRIPE_API_BASE = localstripe_url
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    reset_clients()
    yield settings
    reset_clients()


@pytest.fixture
def stripe(stripe_settings):
    """The project's own Stripe client (tests read localstripe through it)."""
    return stripe_client()


def attach_card(tenant, number: str = "4242424242424242") -> str:
    """Test-only: give the tenant's Stripe customer a default card (the app itself never sees card numbers)."""
    from billing.stripe.sync import ensure_customer

    client = stripe_client()
    customer_id = ensure_customer(tenant)
    pm = client.v1.payment_methods.create(
        params={"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123"}}
    )
    client.v1.payment_methods.attach(pm.id, params={"customer": customer_id})
    client.v1.customers.update(customer_id, params={"invoice_settings": {"default_payment_method": pm.id}})
    return customer_id


def make_managed_paid(tenant, tier: str = "pro", agent=None):
    """Managed LLM at `tier` for `agent` (None: the default agent), paid with a card, as a user turns it on."""
    from billing.plans import managed_change
    from tenants.audit import SYSTEM

    attach_card(tenant)
    result = managed_change(tenant=tenant, actor=SYSTEM, agent=agent, tier_slug=tier)
    assert result.checkout_url is None
    assert result.managed is not None
    assert result.managed.tier.slug == tier
    return tenant


@pytest.fixture
def paid_tenant(tenant, stripe_settings):
    """`tenant` (workspace plan free) with its default agent on managed Pro ($10/agent, 5M included, $3 per 1M
    over), a card and a live Stripe subscription: one item, the Pro tier, quantity 1."""
    return make_managed_paid(tenant, "pro")


@pytest.fixture
def paid_plans(db):
    """Paid public workspace plans (none is seeded any more: the managed tiers are sold per agent), for the plan
    change mechanics: Team $10 and Business $20 per agent a month, both with platform-managed keys."""
    from billing.models import Plan

    return [
        Plan.objects.create(
            slug=slug,
            name=name,
            price_per_agent_usd=Decimal(price),
            platform_allowed=True,
            sort_order=order,
            rpm_tenant=300,
        )
        for slug, name, price, order in (("team", "Team", 10, 50), ("business", "Business", 20, 60))
    ]


@pytest.fixture
def plan_tenant(tenant, stripe_settings, paid_plans):
    """`tenant` on the paid workspace plan Team with a card and a live Stripe subscription (quantity 1)."""
    from billing.plans import plan_change
    from tenants.audit import SYSTEM

    attach_card(tenant)
    result = plan_change(tenant=tenant, actor=SYSTEM, plan_slug="team")
    assert result.checkout_url is None
    assert result.subscription.stripe_subscription_id
    return tenant


def remote_items(stripe, tenant) -> dict[str, int]:
    """Stripe Plan id → quantity of the tenant's Stripe subscription, as Stripe holds it."""
    from billing.models import Subscription

    sub_id = Subscription.objects.unscoped().get(tenant=tenant).stripe_subscription_id
    remote = stripe.v1.subscriptions.retrieve(sub_id)
    return {i["plan"]["id"]: i["quantity"] for i in remote["items"]["data"]}


_counter = {"n": 0}


def make_usage(
    tenant,
    *,
    tokens: int = 0,
    tcu: int = 0,
    mode: str = "platform",
    when=None,
    agent=None,
    cost_usd: Decimal | None = None,
    billed_usd: Decimal = Decimal(0),
) -> UsageEvent:
    """One UsageEvent with `tokens` split half input, half output."""
    _counter["n"] += 1
    return UsageEvent.objects.unscoped().create(
        tenant=tenant,
        request_id=f"req_test_{os.getpid()}_{_counter['n']}_{time.monotonic_ns()}",
        created_at=when or timezone.now(),
        mode=mode,
        provider="openai",
        model="gpt-5-mini",
        agent=agent,
        input_tokens=tokens // 2,
        output_tokens=tokens - tokens // 2,
        tcu=tcu,
        cost_usd=cost_usd if cost_usd is not None else Decimal(tcu) * Decimal("0.00001"),
        billed_usd=billed_usd,
    )
