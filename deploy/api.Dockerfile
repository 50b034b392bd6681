# The demo API (FastAPI under uvicorn) on :8000, rate-limited through the limiter replicas.
# Build from the repository root: docker build -f deploy/api.Dockerfile .
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

# The code, run from source. The API imports the generated protobuf code from
# limiter_service.proto, hence both packages.
COPY limiter_service ./limiter_service
COPY api ./api

USER app
ENV API_HOST=0.0.0.0 \
    API_PORT=8000
EXPOSE 8000
CMD ["python", "-m", "api"]
