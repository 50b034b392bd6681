# The rate-limit decision service: gRPC on :50051, grpc.health.v1 + reflection.
# Build from the repository root: docker build -f deploy/limiter.Dockerfile .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin app
WORKDIR /app

# Dependencies first, in their own layer: rebuilt only when pyproject.toml or the pins
# change, not on every code edit. The list is read from pyproject.toml, pinned by the
# constraints file.
COPY pyproject.toml ./
COPY requirements/constraints.txt requirements/constraints.txt
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -c requirements/constraints.txt -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The code, run from source (no build step; the Lua scripts are read from the package).
COPY limiter_service ./limiter_service

USER app
ENV LIMITER_LISTEN=0.0.0.0:50051
EXPOSE 50051
# SIGTERM drains in-flight RPCs (LIMITER_SHUTDOWN_GRACE_S) and exits 0.
CMD ["python", "-m", "limiter_service"]
