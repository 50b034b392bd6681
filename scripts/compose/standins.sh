#!/usr/bin/env bash
# Stand-ins for the official base images deploy/ names, built from Debian bookworm packages
# (mmdebstrap, then podman import) for a machine that reaches no image registry:
#
#   bash scripts/compose/standins.sh python:3.11-slim redis:7.2-alpine nginx:1.27-alpine \
#     prom/prometheus:v2.53.2
#
# Each reference is tagged as the fully qualified name a pull would have given it
# (docker.io/library/python:3.11-slim), in whatever store podman is configured to use
# (make compose-test points it at a store of its own). The stand-ins carry what
# deploy/docker-compose.yml and the Dockerfiles use of the official images:
#
#   python  python3.11 as `python` and `pip` on PATH, pip allowed to install as root
#           (no EXTERNALLY-MANAGED), useradd, CA certificates; CMD python3
#   redis   redis-server, redis-sentinel, redis-cli, a `redis` user owning /data, which is
#           WORKDIR and a VOLUME (an anonymous volume per container, as in the official image)
#   nginx   nginx, wget, envsubst, the template step of the official entrypoint
#           (nginx-entrypoint.sh beside this file), STOPSIGNAL SIGQUIT
#   prometheus  prometheus as the ENTRYPOINT (/bin/prometheus, as in the official image), wget,
#           user nobody owning /prometheus, which is WORKDIR and a VOLUME
#
# The versions are Debian's (Redis 7.0, Nginx 1.22, Prometheus 2.42), not the tags' own. Images are built
# once per content of this script and the entrypoint (a label records the hash), so a
# second run only checks labels and tags. Needs root (mmdebstrap in root mode).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
label=ratelimit.compose-test.standin
key="$(cat "$0" "$here/nginx-entrypoint.sh" | sha256sum | cut -c1-16)"

qualified() {
  local ref="$1" first="${1%%/*}"
  if [[ "$ref" != */* ]]; then
    echo "docker.io/library/$ref"
  elif [[ "$first" == *.* || "$first" == *:* || "$first" == localhost ]]; then
    echo "$ref"
  else
    echo "docker.io/$ref"
  fi
}

kind_of() {
  local name="${1##*/}"
  echo "${name%%:*}"
}

current() {
  podman image inspect --format "{{index .Labels \"$label\"}}" "$1" 2>/dev/null || true
}

# build KIND TAG: one mmdebstrap run streamed into podman import.
build() {
  local kind="$1" tag="$2"
  local -a include hooks changes
  case "$kind" in
    python)
      include=(python3 python3-pip ca-certificates passwd)
      hooks=(
        'rm -f "$1"/usr/lib/python3.*/EXTERNALLY-MANAGED'
        'ln -s /usr/bin/python3 "$1/usr/local/bin/python"'
        'ln -s /usr/bin/pip3 "$1/usr/local/bin/pip"'
      )
      changes=('CMD ["python3"]')
      ;;
    redis)
      include=(redis-server redis-sentinel)
      hooks=('mkdir -p "$1/data"' 'chroot "$1" chown redis:redis /data')
      changes=('VOLUME /data' 'WORKDIR /data' 'EXPOSE 6379' 'CMD ["redis-server"]')
      ;;
    nginx)
      include=(nginx wget gettext-base)
      hooks=(
        "install -m 0755 '$here/nginx-entrypoint.sh' \"\$1/docker-entrypoint.sh\""
        'mkdir -p "$1/var/cache/nginx" "$1/etc/nginx/templates"'
      )
      changes=(
        'ENTRYPOINT ["/docker-entrypoint.sh"]'
        'CMD ["nginx", "-g", "daemon off;"]'
        'STOPSIGNAL SIGQUIT'
        'EXPOSE 80'
      )
      ;;
    prometheus)
      include=(prometheus wget)
      hooks=('mkdir -p "$1/prometheus"' 'chroot "$1" chown nobody:nogroup /prometheus')
      changes=(
        'USER nobody'
        'WORKDIR /prometheus'
        'VOLUME /prometheus'
        'EXPOSE 9090'
        'ENTRYPOINT ["/bin/prometheus"]'
        'CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]'
      )
      ;;
    *)
      echo "standins.sh: no stand-in recipe for $tag (kinds: python, redis, nginx, prometheus)" >&2
      return 1
      ;;
  esac
  local -a args=(
    --variant=minbase
    --aptopt='APT::Install-Recommends "false"'
    --dpkgopt='path-exclude=/usr/share/doc/*'
    --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-exclude=/usr/share/man/*'
    --dpkgopt='path-exclude=/usr/share/locale/*'
    --include="$(IFS=,; echo "${include[*]}")"
  )
  local hook change
  for hook in "${hooks[@]}"; do args+=(--customize-hook="$hook"); done
  local -a import=(
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
    --change 'ENV LANG=C.UTF-8'
    --change "LABEL $label=$key"
  )
  for change in "${changes[@]}"; do import+=(--change "$change"); done
  echo "standins.sh: building $tag from Debian bookworm ($(IFS=' '; echo "${include[*]}"))"
  mmdebstrap --quiet "${args[@]}" bookworm - "$mirror" | podman import --quiet "${import[@]}" - "$tag" >/dev/null
}

declare -A built=()
for ref in "$@"; do
  tag="$(qualified "$ref")"
  kind="$(kind_of "$tag")"
  if [[ "$(current "$tag")" == "$key" ]]; then
    built[$kind]="$tag"
    continue
  fi
  old="$(podman image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)"
  if [[ -n "${built[$kind]:-}" ]]; then
    podman tag "${built[$kind]}" "$tag"
  else
    build "$kind" "$tag"
  fi
  built[$kind]="$tag"
  # A stand-in of an older recipe: of no further use once nothing is built on it.
  if [[ -n "$old" ]]; then podman rmi "$old" >/dev/null 2>&1 || true; fi
done
