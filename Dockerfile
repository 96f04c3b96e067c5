# One image for every role of the compose stack: web (gunicorn), Celery worker and beat, the
# freshness watermark's checks (manage.py pipeline_watermark), the transformer and the ClickHouse
# sink; docker-compose.yml picks the role by its command.
# Two stages: wheels are built with the compiler and MySQL headers, the runtime keeps only the
# shared libraries, so the image that runs carries no toolchain.

FROM python:3.11-slim AS build

# mysqlclient compiles against the MySQL/MariaDB client headers.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential pkg-config default-libmysqlclient-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md ./
COPY backend ./backend
COPY orders ./orders
COPY outbox ./outbox
COPY analytics ./analytics
COPY consumers ./consumers
COPY contract ./contract
COPY environment ./environment
COPY warehouse ./warehouse
RUN pip wheel --no-cache-dir --wheel-dir /wheels .


FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=backend.settings.base

# Only the client library mysqlclient links against, and curl-free healthchecks (python urllib).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libmariadb3 \
    && rm -rf /var/lib/apt/lists/*

# The wheels hold the dependencies and the project's packages; the sources copied below are what
# manage.py, gunicorn and `python -m consumers` import (the working directory comes first).
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels

# The app runs as an unprivileged user with a fixed numeric id (so `runAsNonRoot`-style checks
# can verify it); the code is owned by root and read-only to it.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home app
WORKDIR /app
COPY manage.py ./
COPY backend ./backend
COPY orders ./orders
COPY outbox ./outbox
COPY analytics ./analytics
COPY consumers ./consumers
COPY contract ./contract
COPY environment ./environment
COPY warehouse ./warehouse

USER 10001:10001
EXPOSE 8000
CMD ["gunicorn", "backend.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--worker-class", "gthread", "--threads", "4"]
