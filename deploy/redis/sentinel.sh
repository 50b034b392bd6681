#!/bin/sh
# One Sentinel, started from its OWN writable copy of the config in this container's /data.
# Sentinel writes its generated ID and what it learns into that file: Sentinels sharing one
# file would share one ID, ignore each other and never reach a quorum.
#
#   REDIS_PASSWORD           required; the data nodes' password (auth-pass)
#   SENTINEL_PASSWORD        required; what clients (and the other Sentinels) must send
#   SENTINEL_ANNOUNCE_HOST   this Sentinel's service name, announced to the other Sentinels
#   REDIS_MASTER             the monitored master's name (default mymaster)
#   REDIS_MASTER_HOST        the first master's service name (default redis-master)
#   SENTINEL_DOWN_AFTER_MS   failure detection time (default 5000)
#   SENTINEL_PORT, REDIS_MASTER_PORT, DATA_DIR   26379, 6379, /data unless set (tests run
#                            this script outside Docker on loopback ports)
#
# Hostnames need resolve-hostnames (before the monitor line) and announce-hostnames.
set -eu
: "${REDIS_PASSWORD:?REDIS_PASSWORD must be set}"
: "${SENTINEL_PASSWORD:?SENTINEL_PASSWORD must be set}"
: "${SENTINEL_ANNOUNCE_HOST:?SENTINEL_ANNOUNCE_HOST must be set}"
name="${REDIS_MASTER:-mymaster}"
conf="${DATA_DIR:-/data}/sentinel.conf"
if [ ! -f "$conf" ]; then
    umask 077
    {
        echo "port ${SENTINEL_PORT:-26379}"
        echo "dir \"${DATA_DIR:-/data}\""
        echo "protected-mode no"
        echo "sentinel resolve-hostnames yes"
        echo "sentinel announce-hostnames yes"
        echo "sentinel announce-ip $SENTINEL_ANNOUNCE_HOST"
        echo "sentinel monitor $name ${REDIS_MASTER_HOST:-redis-master} ${REDIS_MASTER_PORT:-6379} 2"
        echo "sentinel auth-pass $name \"$REDIS_PASSWORD\""
        echo "sentinel down-after-milliseconds $name ${SENTINEL_DOWN_AFTER_MS:-5000}"
        echo "sentinel failover-timeout $name 10000"
        echo "sentinel parallel-syncs $name 1"
        echo "requirepass \"$SENTINEL_PASSWORD\""
    } > "$conf"
fi
exec redis-sentinel "$conf"
