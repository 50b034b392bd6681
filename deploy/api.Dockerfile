# The demo API (FastAPI under uvicorn) on :8000, rate-limited through the limiter replicas.
# Build from the repository root: docker build -f deploy/api.Dockerfile .
# It carries the API and the client library (ratelimit_client[fastapi]), not the server's
# Redis, YAML, settings or reflection packages.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin app
WORKDIR /app

# Dependencies first, in their own layer: rebuilt only when client/pyproject.toml,
# api/requirements.txt or the pins change, not on every code edit.
# deploy/image_requirements.py reads the list; the constraints file pins it.
# WHEELHOUSE, empty by default (install from the package index): a directory of wheels
# mounted into the build to install from it alone, with no network, e.g.
#   podman build -v "$PWD/wheels:/wheelhouse:ro" --build-arg WHEELHOUSE=/wheelhouse ...
ARG WHEELHOUSE=
COPY deploy/image_requirements.py /tmp/deps/
COPY client/pyproject.toml /tmp/deps/client/
COPY api/requirements.txt /tmp/deps/api/
COPY requirements/constraints.txt /tmp/deps/requirements/
RUN python /tmp/deps/image_requirements.py api /tmp/deps > /tmp/deps/requirements.txt \
    && pip install ${WHEELHOUSE:+--no-index --find-links "$WHEELHOUSE"} \
        -c /tmp/deps/requirements/constraints.txt -r /tmp/deps/requirements.txt \
    && rm -rf /tmp/deps

# The code, run from source.
COPY client/ratelimit_client ./ratelimit_client
COPY api ./api

USER app
ENV PYTHONPATH=/app \
    API_HOST=0.0.0.0 \
    API_PORT=8000
EXPOSE 8000
CMD ["python", "-m", "api"]
