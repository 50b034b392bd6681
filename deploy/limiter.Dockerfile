# The rate-limit decision service: gRPC on :50051, grpc.health.v1 + reflection.
# Build from the repository root: docker build -f deploy/limiter.Dockerfile .
# It carries the server and the wire contract (ratelimit_client), not the demo API's
# FastAPI/uvicorn.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin app
WORKDIR /app

# Dependencies first, in their own layer: rebuilt only when a pyproject.toml or the pins
# change, not on every code edit. deploy/image_requirements.py reads the list from the
# server's and the client's pyproject.toml; the constraints file pins it.
# WHEELHOUSE, empty by default (install from the package index): a directory of wheels
# mounted into the build to install from it alone, with no network, e.g.
#   podman build -v "$PWD/wheels:/wheelhouse:ro" --build-arg WHEELHOUSE=/wheelhouse ...
ARG WHEELHOUSE=
COPY deploy/image_requirements.py /tmp/deps/
COPY pyproject.toml /tmp/deps/
COPY client/pyproject.toml /tmp/deps/client/
COPY requirements/constraints.txt /tmp/deps/requirements/
RUN python /tmp/deps/image_requirements.py limiter /tmp/deps > /tmp/deps/requirements.txt \
    && pip install ${WHEELHOUSE:+--no-index --find-links "$WHEELHOUSE"} \
        -c /tmp/deps/requirements/constraints.txt -r /tmp/deps/requirements.txt \
    && rm -rf /tmp/deps

# The code, run from source (no build step; the Lua scripts are read from the package).
COPY client/ratelimit_client ./ratelimit_client
COPY limiter_service ./limiter_service

USER app
ENV PYTHONPATH=/app \
    LIMITER_LISTEN=0.0.0.0:50051
EXPOSE 50051
# SIGTERM drains in-flight RPCs (LIMITER_SHUTDOWN_GRACE_S) and exits 0.
CMD ["python", "-m", "limiter_service"]
