# syntax=docker/dockerfile:1

# stopguard worker image. Build: docker build -t stopguard:0.1.0 .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: install the project and its dependencies into a virtualenv ------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
# Every dependency ships manylinux wheels, so no compiler is needed here.
RUN pip install .

# --- runtime: the virtualenv, the topic catalogue and an unprivileged user ---
FROM ${PYTHON_IMAGE} AS runtime

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    STOPGUARD_DATA_DIR=/var/lib/stopguard \
    STOPGUARD_TOPICS_FILE=/app/topics/topics.yaml \
    STOPGUARD_WEB_HOST=0.0.0.0 \
    STOPGUARD_WEB_PORT=6066

# A fixed numeric uid lets Kubernetes verify runAsNonRoot.
RUN groupadd --system --gid 10001 stopguard \
    && useradd --system --uid 10001 --gid stopguard \
        --home-dir /app --no-create-home --shell /usr/sbin/nologin stopguard \
    && mkdir -p /app /var/lib/stopguard \
    && chown stopguard:stopguard /var/lib/stopguard

COPY --from=build /opt/venv /opt/venv
COPY topics /app/topics

WORKDIR /app
USER 10001:10001

# RocksDB state. Losing it costs a restore from the changelog topics, not data.
VOLUME ["/var/lib/stopguard"]
EXPOSE 6066

# python:3.11-slim has no curl; the standard library does the probe.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import os, urllib.request as r; r.urlopen('http://127.0.0.1:%s/health' % os.environ.get('STOPGUARD_WEB_PORT', '6066'), timeout=4)" || exit 1

ENTRYPOINT ["stopguard"]
CMD ["run"]
