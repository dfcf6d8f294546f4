"""Every page a workspace owner can reach, at phone width (390 px): no sideways scroll, no console error (#15).

The pages come from the URLconf, so a new page is checked without anyone adding it here; a new URL argument
needs a sample below (the test says which). Routes that answer GET with 405 are actions, not pages."""

from __future__ import annotations

import pytest
from django.contrib.auth.tokens import default_token_generator
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from tests.browser.conftest import ARGS  # noqa: F401  (same Chromium flags)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}
# Not pages: the machine endpoints (health, metrics, Stripe's webhook) and the APIs and Django admin.
NOT_PAGES = ("api/", "admin/", "healthz", "readyz", "metrics", "billing/stripe/")
# Pages for people who are not logged in (a logged-in owner is sent on to the dashboard).
PUBLIC = {
    "landing",
    "signup",
    "login",
    "password_reset",
    "password_reset_done",
    "password_reset_confirm",
    "password_reset_complete",
    "invite_accept",
}


def _routes(patterns=None, prefix: str = ""):
    for p in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(p, URLResolver):
            yield from _routes(p.url_patterns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern) and p.name and not (prefix + str(p.pattern)).startswith(NOT_PAGES):
            yield p.name, list(p.pattern.converters)


ROUTES = sorted(dict(_routes()).items())


@pytest.fixture
def world(make_user, make_tenant):
    """An owner with a bit of everything, so list pages show rows and detail pages exist."""
    from llm.runtime.assistant import thread_create
    from tenants.audit import SYSTEM, Actor
    from tenants.keys import apikey_create
    from tenants.models import Membership
    from tenants.services import agent_create, invitation_create, invitation_token

    owner = make_user("owner@phone.example.com")
    tenant = make_tenant("phone-co", owner=owner)
    make_tenant("second-workspace-with-a-long-name", owner=owner)
    agent = agent_create(tenant=tenant, actor=SYSTEM, slug="support-bot", name="Customer support bot")
    key, _ = apikey_create(
        tenant=tenant, actor=SYSTEM, name="production backend key", scopes=["gateway", "manage"], agent=agent
    )
    invitation, _ = invitation_create(
        tenant=tenant, email="new.colleague@phone.example.com", role="member", actor=Actor(user=owner)
    )
    return {
        "owner": owner,
        "tenant": tenant,
        "slug": agent.slug,
        "key_id": key.id,
        "thread_id": thread_create(tenant=tenant, user=owner, title="A question").id,
        "membership_id": Membership.objects.for_tenant(tenant).get(user=owner).id,
        "invitation_id": invitation.id,
        "token": invitation_token(invitation),
        "uidb64": urlsafe_base64_encode(force_bytes(owner.pk)),
        "password_token": default_token_generator.make_token(owner),
    }


def _url(name: str, args: list[str], world: dict) -> str:
    kwargs = {}
    for arg in args:
        sample = "password_token" if (name.startswith("password_reset") and arg == "token") else arg
        assert sample in world, (
            f"No sample value for <{arg}> of URL “{name}”: add one to the `world` fixture."
        )
        kwargs[arg] = world[sample]
    return reverse(name, kwargs=kwargs)


def _overflow(page) -> list[str]:
    """The document's sideways overflow, and any table or box wider than the space it has (content hidden
    to the right), described for the failure message."""
    return page.evaluate(
        """() => {
          const name = (el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
            (typeof el.className === 'string' && el.className ? '.' + el.className.trim().split(/\\s+/).join('.') : '');
          const culprit = (box) => {
            const edge = box.getBoundingClientRect().right + 1;
            let worst = null;
            for (const el of box.querySelectorAll('*')) {
              const right = el.getBoundingClientRect().right;
              if (right > edge && (!worst || right >= worst.right)) worst = {el, right};
            }
            return worst ? ` (widest: ${name(worst.el)} “${worst.el.textContent.trim().slice(0, 40)}”)` : '';
          };
          const found = [];
          const doc = document.documentElement;
          if (doc.scrollWidth > window.innerWidth) found.push(`page ${doc.scrollWidth}px wide${culprit(document.body)}`);
          for (const el of document.querySelectorAll('.table-wrap, .card, main')) {
            if (el.scrollWidth > el.clientWidth + 1) {
              found.push(`${name(el)} ${el.scrollWidth}px in ${el.clientWidth}px${culprit(el)}`);
            }
          }
          return found;
        }"""
    )


@pytest.mark.parametrize(("name", "args"), ROUTES, ids=[name for name, _ in ROUTES])
def test_every_page_fits_a_phone_without_console_errors(browser, live_server, world, name, args):
    url = _url(name, args, world)
    client = Client()
    if name not in PUBLIC:
        client.force_login(world["owner"])
    probe = client.get(url)
    if probe.status_code == 405:  # an action (POST only): there is no page to lay out
        assert probe.status_code == 405
        return
    if not probe.get("Content-Type", "").startswith("text/html"):  # a download
        assert probe.status_code == 200
        return
    context = browser.new_context(viewport=PHONE, base_url=live_server.url, is_mobile=True, has_touch=True)
    if name not in PUBLIC:
        context.add_cookies(
            [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}]
        )
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        response = page.goto(url)
        assert response is not None
        assert response.status < 400, f"{url} answered {response.status}"
        page.wait_for_load_state("networkidle")
        overflow = _overflow(page)
        assert not overflow, f"{url}: " + "; ".join(overflow)
        assert errors == [], url
    finally:
        context.close()
