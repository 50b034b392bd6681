#!/bin/sh
# One Redis data node, started from its own writable config file in this container's /data.
#
#   REDIS_PASSWORD         required; requirepass and masterauth (the same on every node, so
#                          whichever node Sentinel promotes, the others can follow it)
#   REDIS_ANNOUNCE_HOST    this node's service name, announced to Sentinel and clients
#   REDIS_REPLICA_OF       the master's service name; empty or unset for the first master
#   REDIS_PORT, REDIS_MASTER_PORT, DATA_DIR   6379, 6379, /data unless set (tests run
#                          this script outside Docker on loopback ports)
#
# The file is written once: after a failover Sentinel rewrites it (replicaof), and a
# restarted container must come back with that role, not the one it was created with.
# The password goes from the environment into the file, never onto a command line.
set -eu
: "${REDIS_PASSWORD:?REDIS_PASSWORD must be set}"
: "${REDIS_ANNOUNCE_HOST:?REDIS_ANNOUNCE_HOST must be set}"
port="${REDIS_PORT:-6379}"
conf="${DATA_DIR:-/data}/redis.conf"
if [ ! -f "$conf" ]; then
    umask 077
    {
        echo "port $port"
        echo "protected-mode no"
        echo "save \"\""
        # Counters survive a restart: compose restarts a crashed master at once, likely
        # before Sentinel reacts, and an empty master would reset every budget (its
        # replicas resync from it). At most ~1 s of increments is lost on a host crash.
        echo "appendonly yes"
        echo "appendfsync everysec"
        # A master cut off from every replica for 2 s refuses writes (bounds split brain).
        echo "min-replicas-to-write 1"
        echo "min-replicas-max-lag 2"
        echo "dir \"${DATA_DIR:-/data}\""
        echo "repl-diskless-sync-delay 0"
        echo "requirepass \"$REDIS_PASSWORD\""
        echo "masterauth \"$REDIS_PASSWORD\""
        echo "replica-announce-ip $REDIS_ANNOUNCE_HOST"
        if [ -n "${REDIS_REPLICA_OF:-}" ]; then
            echo "replicaof $REDIS_REPLICA_OF ${REDIS_MASTER_PORT:-6379}"
        fi
    } > "$conf"
fi
exec redis-server "$conf"
