"""The tenant pages through Django's test client: sign-up, log-in, invitations, members, agents, keys, audit."""

import html
import re
import time

import pytest
from django.core import mail, signing
from django.test import Client

from tenants.models import Agent, ApiKey, AuditEvent, Invitation, Membership, Tenant, User

pytestmark = pytest.mark.django_db
PASSWORD = "a-sturdy-passphrase-42"


def _signup(client, **overrides):
    data = {
        "name": "Ada",
        "email": "ada@example.com",
        "password": PASSWORD,
        "tenant_name": "Acme AI",
        "tenant_slug": "acme-ai",
        **overrides,
    }
    return client.post("/signup/", data)


def _owner(tenant) -> Client:
    client = Client()
    client.force_login(Membership.objects.unscoped().get(tenant=tenant, role="owner").user)
    return client


def test_landing_offers_sign_up_and_log_in(client):
    body = client.get("/").content.decode()
    assert 'href="/signup/"' in body
    assert 'href="/login/"' in body


def test_signup_creates_user_tenant_owner_and_logs_in(client):
    response = _signup(client)
    assert response.status_code == 302
    assert response.url == "/dashboard/"
    tenant = Tenant.objects.get(slug="acme-ai")
    user = User.objects.get(email="ada@example.com")
    assert Membership.objects.unscoped().get(tenant=tenant, user=user).role == "owner"
    assert "Acme AI" in client.get("/dashboard/").content.decode()


@pytest.mark.parametrize(
    ("overrides", "field_text"),
    [
        ({"password": "password"}, "too common"),
        ({"password": "short"}, "too short"),
        ({"tenant_slug": "Not A Slug"}, "lowercase"),
    ],
)
def test_signup_errors_are_shown_and_nothing_is_created(client, overrides, field_text):
    response = _signup(client, **overrides)
    assert response.status_code == 400
    assert field_text in response.content.decode()
    assert not User.objects.filter(email="ada@example.com").exists()
    assert not Tenant.objects.filter(slug="acme-ai").exists()


def test_duplicate_slug_and_email_are_refused(client, tenant):
    response = _signup(client, tenant_slug=tenant.slug)
    assert response.status_code == 400
    assert "already exists" in response.content.decode()
    _signup(Client())
    again = _signup(Client(), tenant_slug="other-slug")
    assert again.status_code == 400
    assert "already exists" in again.content.decode()
    assert Tenant.objects.filter(slug="other-slug").count() == 0


def test_signup_shows_every_error_at_once_keeps_the_other_fields_and_asks_for_the_password_again(
    client, tenant
):
    response = _signup(
        client, email="not-an-email", password="password", tenant_slug=tenant.slug, name="Ada L"
    )
    assert response.status_code == 400
    form = response.context["form"]
    assert set(form.errors) == {"email", "password", "tenant_slug"}
    body = response.content.decode()
    assert "too common" in body
    assert "already exists" in body
    assert 'value="Ada L"' in body
    assert 'value="Acme AI"' in body
    assert 'value="password"' not in body  # the password itself is never sent back
    assert "Enter your password again" in body


def test_signup_suggests_the_workspace_id_from_the_name_without_accents(client):
    response = _signup(client, tenant_name="Ünïcode Café & Co", tenant_slug="")
    assert response.status_code == 302
    assert Tenant.objects.get(slug="unicode-cafe-co").name == "Ünïcode Café & Co"


def test_a_signed_up_user_creates_another_workspace_and_lands_in_it(tenant, other_tenant):
    client = _owner(tenant)
    assert client.get("/signup/").url == "/workspace/new/"
    assert client.post("/workspace/switch/", {"tenant": "new"}).url == "/workspace/new/"
    taken = client.post("/workspace/new/", {"tenant_name": "Theirs", "tenant_slug": other_tenant.slug})
    assert taken.status_code == 400
    assert "already exists" in taken.content.decode()
    assert (
        not Membership.objects.unscoped()
        .filter(tenant=other_tenant, user__email="owner@acme.example.com")
        .exists()
    )
    created = client.post("/workspace/new/", {"tenant_name": "Side Project", "tenant_slug": ""})
    assert created.url == "/dashboard/"
    side = Tenant.objects.get(slug="side-project")
    assert Membership.objects.unscoped().get(tenant=side).role == "owner"
    assert client.session["tenant_id"] == side.id
    assert "Side Project" in client.get("/dashboard/").content.decode()


def test_login_and_logout(client, tenant):
    User.objects.create_user(email="bob@example.com", password=PASSWORD)
    bad = client.post("/login/", {"username": "bob@example.com", "password": "wrong"})
    assert bad.status_code == 200
    assert "correct" in bad.content.decode()
    ok = client.post("/login/", {"username": "bob@example.com", "password": PASSWORD})
    assert ok.status_code == 302
    assert client.post("/logout/").status_code == 302
    assert client.get("/dashboard/").status_code == 302  # back to log-in


def test_password_reset_sends_a_working_link(client):
    User.objects.create_user(email="carol@example.com", password=PASSWORD)
    client.post("/password-reset/", {"email": "carol@example.com"})
    assert len(mail.outbox) == 1
    link = re.search(r"https?://[^/]+(/password-reset/\S+/)", mail.outbox[0].body).group(1)
    form = client.get(link, follow=True)
    assert form.status_code == 200
    done = client.post(
        form.redirect_chain[-1][0],
        {"new_password1": "another-long-secret-9", "new_password2": "another-long-secret-9"},
    )
    assert done.status_code == 302
    assert User.objects.get(email="carol@example.com").check_password("another-long-secret-9")


def _invite(tenant, email, role, capture):
    with capture(execute=True):
        return _owner(tenant).post("/members/", {"email": email, "role": role})


def test_invite_a_new_user_who_signs_up_from_the_link(tenant, django_capture_on_commit_callbacks):
    response = _invite(tenant, "dave@example.com", "admin", django_capture_on_commit_callbacks)
    assert (response.status_code, response.url) == (302, "/members/")
    link = re.search(r"(/invite/[^/\s]+/)", mail.outbox[-1].body).group(1)
    guest = Client()
    weak = guest.post(link, {"name": "Dave", "password": "123"})
    assert weak.status_code == 400
    assert not User.objects.filter(email="dave@example.com").exists()
    joined = guest.post(link, {"name": "Dave", "password": PASSWORD})
    assert joined.status_code == 302
    assert Membership.objects.unscoped().get(tenant=tenant, user__email="dave@example.com").role == "admin"
    used = Client().get(link)
    assert used.status_code == 410
    assert "already been used" in used.content.decode()


def test_existing_user_accepts_after_logging_in(tenant, django_capture_on_commit_callbacks):
    erin = User.objects.create_user(email="erin@example.com", password=PASSWORD)
    _invite(tenant, "erin@example.com", "member", django_capture_on_commit_callbacks)
    link = re.search(r"(/invite/[^/\s]+/)", mail.outbox[-1].body).group(1)
    client = Client()
    assert "Log in to accept" in client.get(link).content.decode()
    client.force_login(erin)
    assert client.post(link).status_code == 302
    assert Membership.objects.unscoped().filter(tenant=tenant, user=erin, role="member").exists()


def test_expired_invitation_changes_nothing(tenant, monkeypatch, django_capture_on_commit_callbacks):
    _invite(tenant, "late@example.com", "member", django_capture_on_commit_callbacks)
    link = re.search(r"(/invite/[^/\s]+/)", mail.outbox[-1].body).group(1)
    real_time = time.time
    monkeypatch.setattr(signing.time, "time", lambda: real_time() + 8 * 86400)
    response = Client().post(link, {"password": PASSWORD})
    assert response.status_code == 410
    assert "expired" in response.content.decode()
    assert not User.objects.filter(email="late@example.com").exists()


def test_role_change_and_last_owner_protection(tenant, make_user):
    owner = _owner(tenant)
    member = Membership.objects.unscoped().create(
        tenant=tenant, user=make_user("m@example.com"), role="member"
    )
    owner.post(f"/members/{member.id}/role/", {"role": "billing"})
    member.refresh_from_db()
    assert member.role == "billing"
    me = Membership.objects.unscoped().get(tenant=tenant, role="owner")
    page = owner.post(f"/members/{me.id}/remove/", follow=True).content.decode()
    assert "last owner" in page
    assert Membership.objects.unscoped().filter(id=me.id).exists()
    owner.post(f"/members/{member.id}/remove/")
    assert not Membership.objects.unscoped().filter(id=member.id).exists()


def test_member_cannot_open_keys_or_invite(tenant, make_user):
    member = make_user("plain@example.com")
    Membership.objects.unscoped().create(tenant=tenant, user=member, role="member")
    client = Client()
    client.force_login(member)
    assert client.get("/keys/").status_code == 403
    assert client.post("/members/", {"email": "x@example.com", "role": "owner"}).status_code == 403
    assert not Invitation.objects.unscoped().filter(email="x@example.com").exists()
    assert 'href="/keys/"' not in client.get("/dashboard/").content.decode()


def test_switcher_refuses_a_workspace_the_user_is_not_in(tenant, other_tenant):
    client = _owner(tenant)
    client.post("/workspace/switch/", {"tenant": other_tenant.id})
    assert client.session["tenant_id"] == tenant.id
    assert other_tenant.name not in client.get("/dashboard/").content.decode()


def test_switching_between_own_workspaces(tenant, make_tenant):
    owner_user = Membership.objects.unscoped().get(tenant=tenant, role="owner").user
    second = make_tenant("second", owner=owner_user)
    client = Client()
    client.force_login(owner_user)
    client.post("/workspace/switch/", {"tenant": second.id})
    assert "Second" in client.get("/dashboard/").content.decode()


def test_agents_create_duplicate_edit_delete(tenant):
    client = _owner(tenant)
    assert client.post("/agents/", {"slug": "helper", "name": "Helper"}).status_code == 302
    dup = client.post("/agents/", {"slug": "helper"})
    assert dup.status_code == 400
    assert "already exists" in dup.content.decode()
    client.post("/agents/helper/", {"action": "save", "name": "Helpful", "description": "d", "is_active": ""})
    agent = Agent.objects.unscoped().get(tenant=tenant, slug="helper")
    assert agent.name == "Helpful"
    assert not agent.is_active
    client.post("/agents/helper/", {"action": "delete"})
    assert not Agent.objects.unscoped().filter(tenant=tenant, slug="helper").exists()


def test_key_is_shown_once_then_only_masked_and_revocable(tenant):
    client = _owner(tenant)
    created = client.post("/keys/", {"name": "prod", "scopes": ["gateway"]})
    assert (created.status_code, created.url) == (302, "/keys/")
    page = client.get("/keys/")
    raw = re.search(r"byok-[A-Za-z0-9_\-]{40,}", page.content.decode()).group(0)
    assert 'data-copy="new-key-value"' in page.content.decode()
    assert page["Cache-Control"] == "no-store"
    listing = client.get("/keys/").content.decode()
    assert raw not in listing
    assert raw[-4:] in listing
    key = ApiKey.objects.unscoped().get(tenant=tenant, name="prod")
    client.post(f"/keys/{key.id}/revoke/")
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_creating_a_key_redirects_so_a_reload_creates_nothing(tenant):
    client = _owner(tenant)
    created = client.post("/keys/", {"name": "prod", "scopes": ["gateway"]})
    assert created.status_code == 302
    first = client.get("/keys/").content.decode()
    assert "Copy it now" in first
    again = client.get("/keys/").content.decode()
    assert "Copy it now" not in again
    assert not re.search(r"byok-[A-Za-z0-9_\-]{40,}", again)
    assert ApiKey.objects.unscoped().filter(tenant=tenant).count() == 1


def test_a_key_name_in_use_is_refused_and_nothing_is_created(tenant):
    client = _owner(tenant)
    client.post("/keys/", {"name": "prod", "scopes": ["gateway"]})
    dup = client.post("/keys/", {"name": "PROD ", "scopes": ["gateway"]})
    assert dup.status_code == 400
    assert "already in use" in dup.content.decode()
    assert ApiKey.objects.unscoped().filter(tenant=tenant).count() == 1
    key = ApiKey.objects.unscoped().get(tenant=tenant)
    client.post(f"/keys/{key.id}/revoke/")
    assert client.post("/keys/", {"name": "prod", "scopes": ["gateway"]}).status_code == 302


def test_an_agent_name_in_use_is_refused_on_create_and_rename(tenant):
    client = _owner(tenant)
    client.post("/agents/", {"slug": "one", "name": "Support"})
    client.post("/agents/", {"slug": "two", "name": "Sales"})
    dup = client.post("/agents/", {"slug": "three", "name": "support"})
    assert dup.status_code == 400
    assert "already exists" in dup.content.decode()
    renamed = client.post("/agents/two/", {"action": "save", "name": "Support", "is_active": "on"})
    assert renamed.status_code == 400
    assert "already exists" in renamed.content.decode()
    assert sorted(Agent.objects.unscoped().filter(tenant=tenant).values_list("name", flat=True)) == [
        "Sales",
        "Support",
    ]


def test_inviting_redirects_so_a_reload_sends_nothing_again(tenant, django_capture_on_commit_callbacks):
    client = _owner(tenant)
    with django_capture_on_commit_callbacks(execute=True):
        sent = client.post("/members/", {"email": "zed@example.com", "role": "member"})
    assert sent.status_code == 302
    assert "/invite/" in client.get("/members/").content.decode()
    assert "/invite/" not in client.get("/members/").content.decode()
    assert len(mail.outbox) == 1


def test_key_form_errors(tenant):
    response = _owner(tenant).post("/keys/", {"name": "", "scopes": ["root"]})
    assert response.status_code == 400
    assert ApiKey.objects.unscoped().filter(tenant=tenant).count() == 0


def test_audit_page_lists_and_filters_changes(tenant):
    client = _owner(tenant)
    client.post("/agents/", {"slug": "audited"})
    client.post("/keys/", {"name": "audited-key", "scopes": ["gateway"]})
    page = client.get("/audit/").content.decode()
    assert "agent.create" in page
    assert "apikey.create" in page
    filtered = client.get("/audit/?action=apikey").content.decode()
    assert "apikey.create" in filtered
    assert "agent.create" not in filtered


def test_other_tenant_sees_nothing_of_ours(tenant, other_tenant):
    ours = _owner(tenant)
    ours.post("/agents/", {"slug": "private-agent", "name": "Private agent"})
    ours.post("/keys/", {"name": "private-key", "scopes": ["gateway"]})
    theirs = _owner(other_tenant)
    for url in ("/agents/", "/keys/", "/members/", "/audit/", "/dashboard/", "/usage/"):
        body = theirs.get(url).content.decode()
        assert "private-agent" not in body, url
        assert "private-key" not in body, url
        assert "owner@acme.example.com" not in body, url
    assert theirs.get("/agents/private-agent/").status_code == 404
    key = ApiKey.objects.unscoped().get(tenant=tenant, name="private-key")
    assert theirs.post(f"/keys/{key.id}/revoke/").status_code == 404
    key.refresh_from_db()
    assert key.revoked_at is None
    assert AuditEvent.objects.unscoped().filter(tenant=other_tenant, action="apikey.revoke").count() == 0


def test_usage_and_billing_pages_render(tenant):
    client = _owner(tenant)
    assert client.get("/usage/?range=7d").status_code == 200
    assert client.get("/usage.csv?range=7d").status_code == 200
    page = client.get("/billing/")
    assert page.status_code == 200
    assert "Spend caps" in page.content.decode()
    saved = client.post("/billing/", {"warn_tcu": "5000", "hard_tcu": "1000"})
    assert saved.status_code == 400  # warn above hard is refused, nothing saved


def test_llm_settings_page_renders_the_modal_with_current_preferences(tenant, agent):
    client = _owner(tenant)
    page = client.get("/settings/llm/").content.decode()
    assert 'id="llm-modal"' in page
    assert "anthropic:claude-sonnet-4.5" in page
    agent_page = client.get(f"/settings/llm/?agent={agent.slug}").content.decode()
    assert "inherits the workspace" in agent_page


def test_routes_page_create_edit_export_import_and_errors(tenant, platform_allowed):
    from llm.models import Route

    client = _owner(tenant)
    bad = client.post("/routes/", {"action": "save", "name": "Bad Name", "targets": ""})
    assert bad.status_code == 400
    assert Route.objects.unscoped().filter(tenant=tenant).count() == 0
    ok = client.post(
        "/routes/",
        {"action": "save", "name": "chat", "targets": "openai:gpt-5-mini 70\nanthropic:claude-haiku-4.5 30"},
    )
    assert ok.status_code == 302
    route = Route.objects.unscoped().get(tenant=tenant, name="chat")
    assert [t["weight"] for t in route.targets] == [70, 30]
    page = client.get(f"/routes/?edit={route.id}").content.decode()
    assert "openai:gpt-5-mini 70" in page
    exported = client.post("/routes/", {"action": "export"})
    assert exported["Content-Type"] == "application/yaml"
    assert b"chat" in exported.content
    route.delete()
    client.post("/routes/", {"action": "import", "yaml": exported.content.decode()})
    assert Route.objects.unscoped().filter(tenant=tenant, name="chat").exists()
    broken = client.post("/routes/", {"action": "import", "yaml": "routes: [unclosed"})
    assert broken.status_code == 400
    assert "YAML" in broken.content.decode()


def test_routes_page_answers_a_bad_route_with_the_apis_own_messages(tenant, manage_client, platform_allowed):
    """The page and the API run the same serializer: the same body gets the same field errors from both."""
    import html

    from llm.models import Route

    targets = "nope:nope\nopenai:gpt-5 abc"
    api = manage_client.post(
        "/api/llm/routes",
        {"name": "chat", "targets": [{"model": "nope:nope"}, {"model": "openai:gpt-5", "weight": "abc"}]},
        format="json",
    )
    assert api.status_code == 400
    messages = api.json()["targets"]
    assert len(messages) == 2
    page = _owner(tenant).post("/routes/", {"action": "save", "name": "chat", "targets": targets})
    assert page.status_code == 400
    shown = html.unescape(page.content.decode())
    assert all(message in shown for message in messages), messages
    assert not Route.objects.unscoped().filter(tenant=tenant).exists()


def test_editing_a_route_on_the_page_keeps_what_only_the_api_can_set(tenant, manage_client, platform_allowed):
    """A target's credential and params (set through the API or YAML) are shown on the page and survive an edit
    there: of the description, and of the targets' order and weights (they go with their model's line)."""
    from llm.models import Route

    manage_client.post(
        "/api/llm/credentials",
        {"kind": "openai_compatible", "name": "vllm", "base_url": "http://127.0.0.1:8000/v1"},
        format="json",
    )
    made = manage_client.post(
        "/api/llm/routes",
        {
            "name": "extract",
            "targets": [
                {"model": "qwen2.5-coder", "credential": "vllm", "params": {"temperature": 0.1}},
                {"model": "anthropic:claude-haiku-4.5", "params": {"max_tokens": 500}},
            ],
        },
        format="json",
    )
    assert made.status_code == 201, made.json()
    stored = Route.objects.unscoped().get(name="extract").targets
    client = _owner(tenant)
    listing = html.unescape(client.get("/routes/").content.decode())
    assert "via vllm" in listing
    assert "temperature 0.1" in listing
    form = {"action": "save", "id": made.json()["id"], "name": "extract", "cache_ttl_seconds": ""}

    text = "qwen2.5-coder\nanthropic:claude-haiku-4.5"
    edited = client.post("/routes/", {**form, "description": "edited", "targets": text})
    assert edited.status_code == 302, html.unescape(edited.content.decode())
    route = Route.objects.unscoped().get(name="extract")
    assert (route.description, route.targets) == ("edited", stored)

    swapped = client.post("/routes/", {**form, "targets": "anthropic:claude-haiku-4.5 40\nqwen2.5-coder 60"})
    assert swapped.status_code == 302, html.unescape(swapped.content.decode())
    first, second = Route.objects.unscoped().get(name="extract").targets
    assert (first["model"], first["weight"], first["params"]) == (
        "anthropic:claude-haiku-4.5",
        40,
        {"max_tokens": 500},
    )
    assert (second["credential"], second["weight"], second["params"]) == (
        stored[0]["credential"],
        60,
        {"temperature": 0.1},
    )


def test_alert_webhook_setting_and_notifications_page(tenant):
    from billing.notifications import notification_create

    client = _owner(tenant)
    saved = client.post("/billing/", {"action": "webhook", "url": "https://hooks.example.com/byok"})
    secret = re.search(r"whsec_[A-Za-z0-9_\-]+", saved.content.decode()).group(0)
    later = client.get("/billing/").content.decode()
    assert secret not in later
    assert secret[-4:] in later
    refused = client.post("/billing/", {"action": "webhook", "url": "ftp://nope"})
    assert refused.status_code == 400
    notification_create(
        tenant=tenant, title="Warn cap crossed", body="You used 200,000 TCU.", level="warning"
    )
    page = client.get("/notifications/").content.decode()
    assert "Warn cap crossed" in page
    assert "Mark read" in page


def test_audit_page_shows_changes_in_words_and_finds_events_by_plain_words(tenant):
    from tenants.audit import SYSTEM, audit_record

    client = _owner(tenant)
    client.post("/keys/", {"name": "words-key", "scopes": ["gateway"]})
    audit_record(
        tenant=tenant,
        actor=SYSTEM,
        action="llm.preferences.save",
        changes={"mode": ["byok", "custom"], "max_tokens": [4096, 8000], "api_key": "x"},
    )
    page = client.get("/audit/").content.decode()
    assert "Mode</span>: Bring your own key → Enterprise custom endpoint" in page
    assert "Max tokens</span>: 4,096 → 8,000" in page
    assert "API key</span>: changed" in page
    assert "[changed]" not in page
    for words, expected, unexpected in [
        ("key", "Created an API key", "Changed the LLM settings"),
        ("llm settings", "Changed the LLM settings", "Created an API key"),
        ("apikey.", "Created an API key", "Changed the LLM settings"),
        ("words-key", "Created an API key", "Changed the LLM settings"),
    ]:
        found = client.get("/audit/", {"q": words}).content.decode()
        assert expected in found, words
        assert unexpected not in found, words


def test_max_tokens_is_audited_as_a_value_not_as_a_secret(tenant):
    from tenants.audit import SYSTEM, audit_record

    event = audit_record(
        tenant=tenant,
        actor=SYSTEM,
        action="x",
        changes={"max_tokens": [1, 2], "bearer_token": "t", "apikey": "k"},
    )
    assert event.changes == {"max_tokens": [1, 2], "bearer_token": "[changed]", "apikey": "[changed]"}


def test_resetting_an_agents_llm_drops_only_its_own_settings(tenant, make_user):
    from llm.config.preferences import preferences_read

    client = _owner(tenant)
    client.post("/agents/", {"slug": "helper", "name": "Helper"})
    agent = Agent.objects.unscoped().get(tenant=tenant, slug="helper")
    saved = client.post(
        "/api/llm/preferences?agent=helper",
        {
            "mode": "custom",
            "model": "llama3",
            "custom_endpoint": {"kind": "openai_compatible", "base_url": "http://127.0.0.1:9/v1"},
        },
        content_type="application/json",
    )
    assert saved.status_code in (200, 201), saved.content
    assert "Overrides the workspace" in client.get("/agents/helper/").content.decode()
    member = make_user("plain-member@example.com")
    Membership.objects.unscoped().create(tenant=tenant, user=member, role="member")
    other = Client()
    other.force_login(member)
    assert other.post("/agents/helper/", {"action": "reset_llm"}).status_code == 403
    assert preferences_read(tenant=tenant, agent=agent)["inherited"] is False
    done = client.post("/agents/helper/", {"action": "reset_llm"})
    assert done.status_code == 302
    assert preferences_read(tenant=tenant, agent=agent)["inherited"] is True
    assert AuditEvent.objects.unscoped().filter(tenant=tenant, action="llm.preferences.delete").count() == 1


def test_members_page_offers_neither_remove_nor_demotion_for_the_only_owner(tenant):
    page = _owner(tenant).get("/members/")
    row = page.context["rows"][0]
    assert (row["last_owner"], row["can_remove"], row["choices"]) == (True, False, [])
    body = page.content.decode()
    assert "What each role can do" in body
    assert "/remove/" not in body
