# Production image: uvicorn (ASGI) serving Django; the same image runs the Celery worker
# (`python -m byok_platform.worker`, see docker-compose.yml) and beat (`celery -A byok_platform beat`).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DEBUG=false
WORKDIR /app
COPY requirements.lock .
# The runtime lock alone (scripts/lock.py): no test runner, type checker or their dependencies in the image.
RUN pip install --no-cache-dir -r requirements.lock
COPY . .
RUN SECRET_KEY=build-only DEBUG=false python manage.py collectstatic --noinput
RUN useradd --create-home app && mkdir -p var && chown -R app var
USER app
EXPOSE 8000
# gunicorn preloads the app, and what each worker would import after the fork, and forks uvicorn workers from it
# (byok_platform/gunicorn.conf.py): the workers share the loaded code copy-on-write instead of each importing
# everything again.
CMD ["gunicorn", "byok_platform.asgi:application", "--config", "byok_platform/gunicorn.conf.py"]
