#!/usr/bin/env bash
# make compose-test: deploy/docker-compose.yml for real. Builds the images and brings the
# project up with podman and podman-compose, tests through the containers
# (tests/compose/), takes it down, and checks that nothing is left: no container, network,
# volume, or firewall chain that was not there before, even when a test fails.
#
# Nothing comes from an image registry (this kind of machine reaches none): the official
# base images are replaced by stand-ins built from Debian packages (standins.sh), and the
# Python packages by a wheelhouse (wheelhouse.sh). Both are cached under
# COMPOSE_TEST_CACHE (~/.cache/ratelimit-compose-test), together with podman's own store
# and a podman-compose of its own, so a second run only rebuilds what changed.
#
# Needs root (mmdebstrap and rootful podman); as root, installs missing Debian packages.
# Environment: COMPOSE_TEST_CACHE, DEBIAN_MIRROR (standins.sh), COMPOSE_PYTEST_ARGS (more
# pytest arguments, e.g. -x).
set -euo pipefail
cd "$(dirname "$0")/../.."
started=$SECONDS
py=.venv/bin/python
podman_compose_version=1.6.0
packages=(podman runc netavark aardvark-dns iptables mmdebstrap)
project=ratelimit-compose-test

# --- system packages -------------------------------------------------------------------
missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$package")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "compose-test needs these Debian packages: ${missing[*]}" >&2
    echo "install them first, e.g.: sudo apt-get install --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "compose-test runs as root (mmdebstrap builds the stand-in images, podman runs rootful)" >&2
  exit 1
fi

# shellcheck source=scripts/compose/env.sh
source scripts/compose/env.sh

# --- what is there before, and the sweep that restores it --------------------------------
netavark_chains() {  # TABLE -> the NETAVARK chains it has, one a line
  iptables -t "$1" -S 2>/dev/null | sed -n 's/^-N \(NETAVARK[^ ]*\)$/\1/p' | sort
}
declare -A chains_before
for table in filter nat; do chains_before[$table]="$(netavark_chains "$table")"; done

remove_chain_rules() {  # TABLE CHAIN: every rule jumping to CHAIN, then CHAIN itself
  local table="$1" chain="$2" rule
  iptables -t "$table" -S | grep -- "-j $chain\$" | while read -r rule; do
    # shellcheck disable=SC2086  # a rule as iptables -S prints it, words and all
    eval iptables -t "$table" ${rule/#-A /-D }
  done
  iptables -t "$table" -F "$chain" && iptables -t "$table" -X "$chain"
}

# netavark leaves its chains behind when the last network goes (the per-network DNAT chain
# too, in Debian's 1.4). Remove the ones this run added: per-network chains when empty;
# the shared ones only when no network of anyone's still has a rule in them.
sweep_firewall() {
  local table chain added
  for table in filter nat; do
    added="$(comm -13 <(echo "${chains_before[$table]}") <(netavark_chains "$table"))"
    for chain in $added; do
      if [[ "$chain" == NETAVARK-DN-* ]] && [ "$(iptables -t "$table" -S "$chain" | wc -l)" -eq 1 ]; then
        remove_chain_rules "$table" "$chain"
      fi
    done
  done
  if [ -z "${chains_before[filter]}${chains_before[nat]}" ] \
    && [ "$(iptables -t filter -S NETAVARK_FORWARD 2>/dev/null | wc -l)" -le 1 ] \
    && [ "$(iptables -t nat -S NETAVARK-HOSTPORT-DNAT 2>/dev/null | wc -l)" -le 1 ]; then
    for table in filter nat; do
      for chain in $(netavark_chains "$table"); do remove_chain_rules "$table" "$chain"; done
    done
  fi
}

logs="$(mktemp -d /tmp/compose-test.XXXXXX)"
finish() {
  local status=$? label="label=io.podman.compose.project=$project" left=""
  set +e
  # Whatever the tests could not take down (an interrupted run, a failed teardown).
  podman ps -aq --filter "$label" | xargs -r podman rm --force --volumes >/dev/null
  podman network ls -q --filter "$label" | xargs -r podman network rm --force >/dev/null
  podman volume prune --force >/dev/null
  # conmon starts `podman container cleanup` when a container exits, and that runs on
  # after `down` returns: its network teardown puts netavark's chains back. Let every
  # engine process of this store finish before the firewall is swept.
  local deadline=$((SECONDS + 60))
  while pgrep -f -- "$COMPOSE_TEST_CACHE/storage" >/dev/null && [ $SECONDS -lt $deadline ]; do
    sleep 0.2
  done
  sweep_firewall
  left+="$(podman ps -a --format '{{.Names}}' | sed 's/^/container /')"
  left+="$(podman network ls --format '{{.Name}}' | grep -vx podman | sed 's/^/network /')"
  left+="$(podman volume ls -q | sed 's/^/volume /')"
  for table in filter nat; do
    left+="$(comm -13 <(echo "${chains_before[$table]}") <(netavark_chains "$table") \
      | sed "s/^/iptables -t $table chain /")"
  done
  if [ -n "$left" ]; then
    echo "compose-test left behind:" >&2
    echo "$left" >&2
    [ "$status" -eq 0 ] && status=1
  fi
  if [ "$status" -eq 0 ]; then
    rm -rf "$logs"
  else
    echo "compose-test failed: engine commands and container output in $logs" >&2
  fi
  echo "compose-test: $((SECONDS - started)) s; cache $(du -sh "$COMPOSE_TEST_CACHE" | cut -f1) in $COMPOSE_TEST_CACHE"
  exit "$status"
}
trap finish EXIT

# --- podman-compose, in a venv of its own ------------------------------------------------
podman_compose="$COMPOSE_TEST_CACHE/podman-compose-$podman_compose_version/bin/podman-compose"
if [ ! -x "$podman_compose" ]; then
  venv="$COMPOSE_TEST_CACHE/podman-compose-$podman_compose_version"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet -c requirements/constraints.txt \
    "podman-compose==$podman_compose_version"
fi

# --- base images and wheels --------------------------------------------------------------
mapfile -t bases < <("$py" scripts/compose/base_images.py)
bash scripts/compose/standins.sh "${bases[@]}"
python_base="$(printf '%s\n' "${bases[@]}" | grep -m1 -E '(^|/)python:')"
wheelhouse="$(bash scripts/compose/wheelhouse.sh "$python_base")"
echo "compose-test: ready after $((SECONDS - started)) s"

# --- the tests ---------------------------------------------------------------------------
# shellcheck disable=SC2086  # COMPOSE_PYTEST_ARGS is a list of words
COMPOSE_TEST=1 PODMAN_COMPOSE="$podman_compose" COMPOSE_TEST_WHEELHOUSE="$wheelhouse" \
  COMPOSE_TEST_LOGS="$logs" "$py" -m pytest -v -s -p no:cacheprovider tests/compose ${COMPOSE_PYTEST_ARGS:-}
