# syntax=docker/dockerfile:1
# MyTrader Data Integrity: one image for the web server (gunicorn), the
# django-q2 workers (qcluster) and one-off commands (migrate, ...). See docs/deploy.md.
# Python 3.11: the version the suite runs on in CI (the locks also resolve for 3.12 and 3.13).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: the runtime lock into a virtualenv, then the static files ---
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
# The runtime lock only (no test tools), every file checked against its hash.
RUN /opt/venv/bin/pip install --require-hashes -r /tmp/requirements.txt
WORKDIR /app
COPY . .
# collectstatic reads the settings, which insist on a key and a database in
# production; neither is used to collect files.
RUN DEBUG=off SECRET_KEY=collectstatic-only DATABASE_URL=postgres://unused@localhost/unused \
    NUMBA_CACHE_DIR=/tmp/numba /opt/venv/bin/python manage.py collectstatic --noinput --verbosity 0

# --- runtime: no compiler, no pip cache, not root ---
FROM ${PYTHON_IMAGE}
RUN useradd --system --uid 10001 --user-group --home-dir /app --no-create-home mytrader
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
RUN mkdir -p /app/var/cache/numba /data && chown -R mytrader:mytrader /app/var /data
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DEBUG=off \
    DATA_ROOT=/data \
    NUMBA_CACHE_DIR=/app/var/cache/numba
USER mytrader
EXPOSE 8000
# Plain HTTP to itself: /api/etl/health is exempt from the HTTPS redirect, and
# answers 503 (exit 1 here) when the database or the queue is down.
# 127.0.0.1 must be in ALLOWED_HOSTS (it is by default).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/etl/health', timeout=4)"]
CMD ["gunicorn", "mytrader.wsgi:application", "--workers", "4", "--timeout", "360", "--bind", "0.0.0.0:8000"]
