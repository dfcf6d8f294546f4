#!/usr/bin/env bash
# `make bench`: the gateway overhead bench (../shared/bench) against this project as production runs it
# (uvicorn, 2 workers, DEBUG=false, PostgreSQL + Redis) and LiteLLM in the same sitting; prints the table.
#
# Scenarios: the harness's chat, stream, embeddings, messages, messages-stream, and this project's responses and
# responses-stream (scripts/bench_ext: the shared mock and load generator with OpenAI's Responses API added; the
# harness runs from a directory of links to the shared files with those two replaced, LiteLLM's run too).
#
# Env: BENCH_DIR (../shared/bench), REQUESTS (500), REPEATS (3), CONCURRENCY (1,16), SCENARIOS (chat,stream),
#      SKIP_LITELLM=1 to measure only this gateway, GW_PORT (8300), MOCK_PORT (8100), BENCH_DB (byok_bench),
#      GW_VENV (.venv-runtime: the gateway and its worker run from what the image installs, requirements.lock alone;
#      `make bench` builds it).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$ROOT/../shared/bench}
[ -f "$BENCH_DIR/overhead.py" ] || { echo "bench harness not found at $BENCH_DIR (set BENCH_DIR)"; exit 1; }
RUN_DIR=${RUN_DIR:-/tmp/byok-bench-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$RUN_DIR/harness"
export BENCH_ORIG_DIR=$(cd "$BENCH_DIR" && pwd)
for f in "$BENCH_ORIG_DIR"/*; do ln -sf "$f" "$RUN_DIR/harness/"; done
rm -f "$RUN_DIR/harness/mock_upstream.py" "$RUN_DIR/harness/overhead.py"
cp "$ROOT/scripts/bench_ext/mock_upstream.py" "$ROOT/scripts/bench_ext/overhead.py" "$RUN_DIR/harness/"
BENCH_DIR=$RUN_DIR/harness
# shellcheck source=/dev/null
source "$BENCH_DIR/lib.sh"

REQUESTS=${REQUESTS:-500} REPEATS=${REPEATS:-3} CONCURRENCY=${CONCURRENCY:-1,16} SCENARIOS=${SCENARIOS:-chat,stream}
GW_PORT=${GW_PORT:-8300} MOCK_PORT=${MOCK_PORT:-8100} BENCH_DB=${BENCH_DB:-byok_bench}
PY=$ROOT/.venv/bin/python
GW_VENV=${GW_VENV:-$ROOT/.venv-runtime}
[ -x "$GW_VENV/bin/gunicorn" ] || die "no runtime virtualenv at $GW_VENV: run \`make .venv-runtime\` (or set GW_VENV)"

trap 'stop_all_started' EXIT
trap 'exit 130' INT TERM

export DATABASE_URL=postgres://postgres@127.0.0.1:5432/$BENCH_DB
export REDIS_URL=${BENCH_REDIS_URL:-redis://127.0.0.1:6379/3}
export DEBUG=false SECRET_KEY=bench-$(od -An -N16 -tx8 /dev/urandom | tr -d ' \n')
export ALLOWED_HOSTS=127.0.0.1,localhost SECURE_SSL_REDIRECT=false CELERY_TASK_ALWAYS_EAGER=false
export CACHE_KEY_PREFIX=byok-bench LOG_LEVEL=WARNING
export OPENAI_API_KEY=sk-mock-upstream OPENAI_BASE_URL=http://127.0.0.1:$MOCK_PORT/v1
export ANTHROPIC_API_KEY=sk-mock-upstream ANTHROPIC_BASE_URL=http://127.0.0.1:$MOCK_PORT
export PROMETHEUS_MULTIPROC_DIR=$RUN_DIR/prom && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"

psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $BENCH_DB" >/dev/null
psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $BENCH_DB" >/dev/null
redis-cli -u "$REDIS_URL" flushdb >/dev/null
log "migrating $BENCH_DB"
"$PY" "$ROOT/manage.py" migrate --noinput -v0
"$PY" "$ROOT/manage.py" createtenant bench --owner bench@example.com --plan enterprise >/dev/null
GW_KEY=$("$PY" "$ROOT/manage.py" createapikey bench --name bench --scopes gateway | tail -1)

ensure_bench_python
start_mock "$MOCK_PORT"
# What a deployment runs for the gateway: the web workers (2) and one Celery worker (the settings' pool: threads),
# under one parent so the harness counts the whole tree (CPU and PSS).
start_bg GW_PID "$RUN_DIR/gateway.log" bash -c '
    cd "$0"
    "$3"/bin/python -m byok_platform.worker --loglevel warning &
    if [ "$2" = gunicorn ]; then
        "$3"/bin/gunicorn byok_platform.asgi:application --config byok_platform/gunicorn.conf.py \
            --bind "127.0.0.1:$1" --log-level warning &
    else
        "$3"/bin/uvicorn byok_platform.asgi:application --host 127.0.0.1 --port "$1" --workers 2 \
            --loop uvloop --http httptools --no-access-log --log-level warning &
    fi
    wait' "$ROOT" "$GW_PORT" "${BENCH_SERVER:-gunicorn}" "$GW_VENV"
wait_http "http://127.0.0.1:$GW_PORT/healthz" 60 "$GW_PID" || die "gateway did not start (see $RUN_DIR/gateway.log)"

log "benchmark: byok-gateway"
"$BENCH_PY" "$BENCH_DIR/overhead.py" --label byok-gateway \
    --direct-base "http://127.0.0.1:$MOCK_PORT/v1" --direct-key sk-mock-upstream \
    --gateway-base "http://127.0.0.1:$GW_PORT/v1" --gateway-key "$GW_KEY" --gateway-model openai:gpt-5-mini \
    --gateway-tree "$GW_PID" --upstream-pid "$MOCK_PID" \
    --scenarios "$SCENARIOS" --concurrency "$CONCURRENCY" --requests "$REQUESTS" --repeats "$REPEATS" \
    --quiet-below "${QUIET_BELOW:-0.25}" --quiet-timeout "${QUIET_TIMEOUT:-20}" \
    --json-out "$RUN_DIR/byok-gateway.json" | grep --line-buffered -v '^RESULT_JSON '
sleep 2
events=$("$PY" "$ROOT/manage.py" shell --no-imports -c "from llm.metering.queue import flush; flush(); from llm.models import UsageEvent; print(UsageEvent.objects.unscoped().count())")
log "usage events recorded: $events"
stop_all_started

if [ "${SKIP_LITELLM:-0}" != 1 ]; then
    SKIP=""
    [ -x /tmp/litellm-venv/bin/litellm ] && SKIP=--skip-install
    # LiteLLM reads DATABASE_URL / REDIS_URL too: run it with none of this project's variables.
    env -u DATABASE_URL -u REDIS_URL -u DEBUG -u SECRET_KEY -u ALLOWED_HOSTS -u OPENAI_API_KEY -u OPENAI_BASE_URL \
        -u ANTHROPIC_API_KEY -u ANTHROPIC_BASE_URL \
        -u PROMETHEUS_MULTIPROC_DIR -u CACHE_KEY_PREFIX -u CELERY_TASK_ALWAYS_EAGER -u SECURE_SSL_REDIRECT \
        bash "$BENCH_DIR/litellm_baseline.sh" $SKIP --requests "$REQUESTS" --repeats "$REPEATS" \
        --concurrency "$CONCURRENCY" --scenarios "$SCENARIOS" --out "$RUN_DIR/litellm"
fi
"$BENCH_PY" "$BENCH_DIR/report.py" "$RUN_DIR"/byok-gateway.json "$RUN_DIR"/litellm/litellm*.json 2>/dev/null \
    | tee "$RUN_DIR/report.md" || "$BENCH_PY" "$BENCH_DIR/report.py" "$RUN_DIR"/byok-gateway.json
log "results in $RUN_DIR"
