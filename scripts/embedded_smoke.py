"""Embedded-mode smoke: the app as `make run` serves it on a fresh machine — SQLite in a temporary directory, no
Redis, no Celery broker, no DJANGO_ALLOW_ASYNC_UNSAFE — called as a new user would with the official `openai` SDK.

    .venv/bin/python scripts/embedded_smoke.py

Starts the fake provider (`python -m tests.fakes.upstream`) and `make run` on free ports, creates a tenant and keys
with the management commands, points the tenant at the fake through the REST API (custom endpoint), then does a
chat, a stream with usage, embeddings and models.list through the SDK, a Messages call with the `anthropic` SDK, two
chained Responses calls, and waits (with a deadline) for the calls
to show in `GET /api/llm/usage`. Everything it starts is stopped and its files removed; exit status 0 on success.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai

ROOT = Path(__file__).resolve().parent.parent
CHECKS: list[str] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], Any], what: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"embedded smoke: timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def check(ok: bool, what: str) -> None:
    if not ok:
        raise AssertionError(what)
    CHECKS.append(what)
    print(f"  ok  {what}", flush=True)


def embedded_env(tmp: Path) -> dict[str, str]:
    """The environment of a fresh machine: nothing that selects PostgreSQL, Redis, a broker or test settings."""
    dropped = (
        "REDIS_URL",
        "DATABASE_URL",
        "CACHE_KEY_PREFIX",
        "DJANGO_SETTINGS_MODULE",
        "DJANGO_ALLOW_ASYNC_UNSAFE",
        "DEBUG",
        "ALLOW_PRIVATE_ENDPOINTS",
        "SECRET_KEY",
        "STATIC_ROOT",
        "MAKEFLAGS",
        "MFLAGS",
        "MAKELEVEL",
    )
    env = {
        k: v for k, v in os.environ.items() if k not in dropped and not k.startswith(("CELERY_", "PYTEST_"))
    }
    env["DATABASE_URL"] = f"sqlite:///{tmp / 'db.sqlite3'}"
    env["STATIC_ROOT"] = str(tmp / "static")
    return env


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise AssertionError(f"manage.py {args[0]} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def stop(proc: subprocess.Popen | None, group: bool = False) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        if group:
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.terminate()
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        if group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
        proc.wait(timeout=20)
    except ProcessLookupError:
        pass


def smoke(tmp: Path, env: dict[str, str], procs: list[tuple[subprocess.Popen, bool]]) -> None:
    fake_port, app_port = free_port(), free_port()
    fake_url, app = f"http://127.0.0.1:{fake_port}", f"http://127.0.0.1:{app_port}"
    log = (tmp / "app.log").open("wb")
    fake = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.upstream", "--port", str(fake_port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    procs.append((fake, False))
    # Exactly `make run` (migrate, seed_catalog, uvicorn with uvloop and httptools); -o: never rebuild the venv here.
    server = subprocess.Popen(
        ["make", "--no-print-directory", "-o", ".venv", "run", "HOST=127.0.0.1", f"PORT={app_port}"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    procs.append((server, True))

    def up(url: str) -> bool:
        if server.poll() is not None:
            raise AssertionError(f"make run exited with {server.returncode}")
        try:
            return httpx.get(url, timeout=2).status_code < 500
        except httpx.HTTPError:
            return False

    wait_for(lambda: up(fake_url + "/health"), "the fake provider", 30)
    wait_for(lambda: up(app + "/healthz"), "make run to serve /healthz", 180)
    ready = httpx.get(app + "/readyz", timeout=10).json()
    check(
        ready["checks"] == {"database": "ok", "secrets": "ok"},
        f"embedded mode: /readyz checks the database and the stored secrets, no Redis ({ready})",
    )

    password = secrets.token_urlsafe(12)
    # `--password=…` in one argument: a random password may start with "-", which argparse would take for an option.
    manage(env, "createtenant", "smoke", "--owner", "owner@smoke.example.com", f"--password={password}")
    manage_key = (
        manage(env, "createapikey", "smoke", "--name", "smoke-manage", "--scopes", "manage")
        .strip()
        .splitlines()[-1]
    )
    gateway_key = (
        manage(env, "createapikey", "smoke", "--name", "smoke-gateway", "--scopes", "gateway")
        .strip()
        .splitlines()[-1]
    )
    check(
        manage_key.startswith("byok") and gateway_key.startswith("byok"), "tenant and keys from the commands"
    )

    api = httpx.Client(base_url=app, headers={"Authorization": f"Bearer {manage_key}"}, timeout=30)
    saved = api.post(
        "/api/llm/preferences",
        json={
            "mode": "custom",
            "model": "gpt-fake",
            "custom_endpoint": {
                "kind": "openai_compatible",
                "base_url": fake_url + "/v1",
                "input_usd_per_mtok": 1,
                "output_usd_per_mtok": 2,
            },
        },
    )
    check(saved.status_code in (200, 201), f"custom endpoint saved through the API ({saved.status_code})")

    client = openai.OpenAI(base_url=app + "/v1", api_key=gateway_key, max_retries=0, timeout=30)
    chat = client.chat.completions.create(model="gpt-fake", messages=[{"role": "user", "content": "Hello"}])
    check(
        chat.choices[0].message.content == "Hello from fake openai_compat!"
        and chat.usage is not None
        and chat.usage.total_tokens == 17,
        "chat completion",
    )

    chunks = list(
        client.chat.completions.create(
            model="gpt-fake",
            messages=[{"role": "user", "content": "Hello"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = chunks[-1].usage
    check(
        text == "Hello from fake openai_compat!" and usage is not None and usage.completion_tokens == 5,
        "streamed chat with usage",
    )

    vectors = client.embeddings.create(model="gpt-fake", input=["one", "two"])
    check(len(vectors.data) == 2 and len(vectors.data[0].embedding) == 8, "embeddings")

    models = [m.id for m in client.models.list()]
    check("gpt-fake" in models, "models.list offers the custom model")

    claude = anthropic.Anthropic(base_url=app, api_key=gateway_key, max_retries=0, timeout=30)
    message = claude.messages.create(
        model="default", max_tokens=50, messages=[{"role": "user", "content": "Hi"}]
    )
    block = message.content[0]
    check(
        isinstance(block, anthropic.types.TextBlock) and block.text == "Hello from fake openai_compat!",
        "Anthropic Messages (anthropic SDK)",
    )

    first = client.responses.create(model="default", input="My name is Ada.")
    second = client.responses.create(model="default", previous_response_id=first.id, input="And my name?")
    check(
        second.output_text == "Hello from fake openai_compat!"
        and client.responses.retrieve(first.id).id == first.id,
        "Responses, stored and chained (previous_response_id)",
    )

    def usage_shows_all() -> dict | None:
        totals = api.get("/api/llm/usage").json()["totals"]
        return totals if totals["requests"] >= 6 else None

    totals = wait_for(usage_shows_all, "the calls to show in /api/llm/usage", 30)
    check(
        totals["requests"] == 6 and totals["errors"] == 0 and totals["input_tokens"] > 0,
        f"usage shows the 6 calls ({totals['requests']} requests, {totals['input_tokens']} input tokens)",
    )


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="byok-embedded-smoke-"))
    env = embedded_env(tmp)
    procs: list[tuple[subprocess.Popen, bool]] = []
    started = time.monotonic()
    print(f"embedded smoke: make run on SQLite in {tmp}, no Redis", flush=True)
    failed = ""
    try:
        smoke(tmp, env, procs)
    except (AssertionError, SystemExit, Exception) as exc:  # noqa: BLE001 - top level: report, stop all, exit 1
        failed = f"{exc.__class__.__name__}: {exc}"
        traceback.print_exc()
    finally:
        for proc, group in reversed(procs):
            stop(proc, group)
    if failed:
        print(f"embedded smoke FAILED: {failed}", flush=True)
        log = tmp / "app.log"
        if log.exists():
            print("--- server and fake provider output (last 60 lines) ---")
            print("\n".join(log.read_text(errors="replace").splitlines()[-60:]))
    shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"embedded smoke: {len(CHECKS)} checks passed in {time.monotonic() - started:.1f} s"
        + (", then failed" if failed else ""),
        flush=True,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
