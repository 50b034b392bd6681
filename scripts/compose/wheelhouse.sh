#!/usr/bin/env bash
# The wheels the images install (deploy/image_requirements.py, pinned by
# requirements/constraints.txt), downloaded once into $COMPOSE_TEST_CACHE/wheels/<hash>;
# prints that directory. The image builds then install from it alone, with no network.
#
#   bash scripts/compose/wheelhouse.sh python:3.11-slim
#
# pip runs inside the given base image (podman, host network), so environment markers and
# wheel tags are resolved for the interpreter the images really have (the stand-in's
# Python 3.11.2 needs async-timeout, which a newer 3.11 on the host would not download).
# It trusts the host's CA certificates: the first of PIP_CERT, SSL_CERT_FILE,
# REQUESTS_CA_BUNDLE or the system bundle that exists is mounted in. Binary wheels only,
# so no build step ever runs. Expects scripts/compose/env.sh to have been sourced.
set -euo pipefail
cd "$(dirname "$0")/../.."
base="$1"
inputs=(deploy/image_requirements.py pyproject.toml client/pyproject.toml api/requirements.txt
  requirements/constraints.txt)
image_id="$(podman image inspect --format '{{.Id}}' "$base")"
key="$( { cat "${inputs[@]}"; echo "$image_id"; } | sha256sum | cut -c1-16)"
root="$COMPOSE_TEST_CACHE/wheels"
out="$root/$key"
if [ -f "$out/.complete" ]; then
  echo "$out"
  exit 0
fi

ca=""
for candidate in "${PIP_CERT:-}" "${SSL_CERT_FILE:-}" "${REQUESTS_CA_BUNDLE:-}" \
  /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt; do
  if [ -n "$candidate" ] && [ -f "$candidate" ]; then ca="$candidate"; break; fi
done
rm -rf "$root" && mkdir -p "$out"
{
  for image in limiter api envoy; do python3 deploy/image_requirements.py "$image"; done
} >"$out/requirements.txt"
cp requirements/constraints.txt "$out/constraints.txt"
args=(--rm --pull=never --network=host -v "$out:/wheelhouse" -e PIP_DISABLE_PIP_VERSION_CHECK=1)
if [ -n "$ca" ]; then args+=(-v "$ca:/etc/ssl/host-ca.pem:ro" -e PIP_CERT=/etc/ssl/host-ca.pem); fi
if [ -n "${PIP_INDEX_URL:-}" ]; then args+=(-e PIP_INDEX_URL); fi
echo "wheelhouse.sh: downloading wheels for $base into $out" >&2
podman run "${args[@]}" "$base" pip download --quiet --only-binary=:all: -d /wheelhouse \
  -c /wheelhouse/constraints.txt -r /wheelhouse/requirements.txt >&2
touch "$out/.complete"
echo "$out"
