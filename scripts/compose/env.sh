# shellcheck shell=bash
# Source this to point podman (and podman-compose) at the store and settings of
# make compose-test, e.g. to look at a stack a failed run left up:
#
#   source scripts/compose/env.sh && podman ps -a
#
# Everything lives under COMPOSE_TEST_CACHE (default ~/.cache/ratelimit-compose-test):
# images, containers, volumes and network definitions of its own, apart from any other
# podman use on the machine. What it writes there:
#   containers.conf   ulimits a container may get where the engine's default (1048576 open
#                     files) is more than root may raise; its own network config directory
#   storage.conf      the image store (overlay) under the cache, run state under /run
#   registries.conf   no search registries and docker.io blocked: an image that is not in
#                     the store fails at once instead of being pulled
COMPOSE_TEST_CACHE="${COMPOSE_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ratelimit-compose-test}"
if [ "$(id -u)" -eq 0 ]; then
  COMPOSE_TEST_RUN=/run/ratelimit-compose-test
else
  COMPOSE_TEST_RUN="${XDG_RUNTIME_DIR:-/tmp/ratelimit-compose-test-$(id -u)}/ratelimit-compose-test"
fi
mkdir -p "$COMPOSE_TEST_CACHE/etc" "$COMPOSE_TEST_CACHE/networks" "$COMPOSE_TEST_RUN"
cat >"$COMPOSE_TEST_CACHE/etc/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
log_driver = "k8s-file"

[network]
network_backend = "netavark"
network_config_dir = "$COMPOSE_TEST_CACHE/networks"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$COMPOSE_TEST_RUN/libpod"
CONF
cat >"$COMPOSE_TEST_CACHE/etc/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$COMPOSE_TEST_CACHE/storage"
runroot = "$COMPOSE_TEST_RUN/storage"
CONF
cat >"$COMPOSE_TEST_CACHE/etc/registries.conf" <<CONF
unqualified-search-registries = []
short-name-mode = "permissive"

[[registry]]
prefix = "docker.io"
location = "docker.io"
blocked = true
CONF
export COMPOSE_TEST_CACHE COMPOSE_TEST_RUN
export CONTAINERS_CONF="$COMPOSE_TEST_CACHE/etc/containers.conf"
export CONTAINERS_STORAGE_CONF="$COMPOSE_TEST_CACHE/etc/storage.conf"
export CONTAINERS_REGISTRIES_CONF="$COMPOSE_TEST_CACHE/etc/registries.conf"
