# The two commands the README promises: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint lock bench worker beat clean

# The development environment: the runtime lock plus the tools (tests, lint, types).
$(VENV): requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.lock
	touch $(VENV)

# What the image installs (requirements.lock alone): `make bench` runs the gateway from it.
.venv-runtime: requirements.lock
	$(PYTHON) -m venv .venv-runtime
	.venv-runtime/bin/pip install --quiet --disable-pip-version-check -r requirements.lock
	touch .venv-runtime

.venv/.ok: $(VENV)

run: $(VENV)
	mkdir -p var
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_catalog
	$(VENV)/bin/uvicorn byok_platform.asgi:application --host $(HOST) --port $(PORT) --loop uvloop --http httptools --no-access-log

test: $(VENV)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy .
	$(VENV)/bin/pytest

lint: $(VENV)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

# Re-resolve the dependencies from pyproject.toml: everything into requirements-dev.lock, then its runtime part
# into requirements.lock (scripts/lock.py).
lock:
	rm -rf /tmp/byok-lock && $(PYTHON) -m venv /tmp/byok-lock
	/tmp/byok-lock/bin/pip install --quiet -e '.[dev]'
	/tmp/byok-lock/bin/pip freeze --exclude-editable | grep -viE '^(pip|setuptools|wheel)==' > requirements-dev.lock
	/tmp/byok-lock/bin/python scripts/lock.py

worker: $(VENV)
	$(VENV)/bin/python -m byok_platform.worker -l info

beat: $(VENV)
	$(VENV)/bin/celery -A byok_platform beat -l info

bench: $(VENV) .venv-runtime
	bash scripts/bench.sh

clean:
	rm -rf $(VENV) .venv-runtime var/*.sqlite3
