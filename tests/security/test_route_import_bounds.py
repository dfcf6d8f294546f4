"""Route import is bounded: no anchors or aliases (a 380-byte "billion laughs" document once produced a 25 MB
error), at most 256 KB and 20 levels, and errors name the route and field without quoting the value."""

from __future__ import annotations

import pytest
import yaml

from llm.models import Route

pytestmark = pytest.mark.django_db
URL = "/api/llm/routes/import"

LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
routes:
  - name: chat
    targets:
      - model: openai:gpt-5
        credential: *f
"""


def _post(client, text: str):
    return client.post(URL, text, content_type="application/yaml")


def test_billion_laughs_gets_a_small_clean_400(manage_client):
    assert len(LAUGHS) < 400
    response = _post(manage_client, LAUGHS)
    assert response.status_code == 400
    assert len(response.content) < 500
    assert response.json() == {
        "yaml": [
            "Not accepted: line 1: anchors and aliases (& and *) are not supported; write each value out."
        ]
    }
    assert not Route.objects.unscoped().exists()


def test_an_alias_alone_is_refused_as_well(manage_client):
    text = "defaults: &d {model: openai:gpt-5}\nroutes:\n  - name: chat\n    targets: [*d]\n"
    response = _post(manage_client, text)
    assert response.status_code == 400
    assert "anchors and aliases" in response.json()["yaml"][0]


def test_a_file_over_256_kb_is_refused(manage_client):
    text = yaml.safe_dump(
        {"routes": [{"name": "chat", "description": "x" * 300_000, "targets": ["openai:gpt-5"]}]}
    )
    response = _post(manage_client, text)
    assert response.status_code == 400
    assert "larger than 256 KB" in response.json()["yaml"][0]
    assert len(response.content) < 500


def test_deep_nesting_is_a_field_error(manage_client):
    response = _post(manage_client, "routes: " + "[" * 5000 + "]" * 5000)
    assert response.status_code == 400
    assert "nested more than 20 levels" in response.json()["yaml"][0]


def test_errors_name_the_field_and_never_quote_a_large_value(manage_client):
    big = "q" * 30_000
    text = yaml.safe_dump(
        {
            "routes": [
                {"name": big, "targets": ["openai:gpt-5"]},
                {
                    "name": "chat",
                    big: 1,
                    7: 2,
                    "targets": [{"model": "openai:gpt-5", "credential": big, big: 1}],
                },
                {"name": "other", "targets": [{"model": "openai:gpt-5", "credential": [big, big]}]},
            ]
        },
        width=1_000_000,
    )
    response = _post(manage_client, text)
    assert response.status_code == 400
    assert len(response.content) < 2_000, len(response.content)
    messages = response.json()["routes"]
    assert any(m.startswith("#1: name:") for m in messages)
    assert any(m.startswith("chat: targets: Target 1: no credential (give its id or name)") for m in messages)
    assert any(m.startswith("other: targets: Target 1: credential:") for m in messages)
    assert not Route.objects.unscoped().exists()


def test_an_unsupported_version_is_not_quoted(manage_client):
    response = _post(manage_client, "version: " + "9" * 4_000 + "\nroutes: []\n")
    assert response.status_code == 400
    assert response.json() == {"yaml": ["Unsupported version; this server reads version 1."]}


def test_a_number_too_long_to_read_is_a_field_error(manage_client):
    response = _post(manage_client, "version: " + "9" * 10_000 + "\nroutes: []\n")
    assert response.status_code == 400
    assert response.json()["yaml"][0].startswith("Not valid YAML")
