#!/usr/bin/env bash
# Printed by `make run` before the service starts in the foreground.
addr="${LIMITER_LISTEN:-0.0.0.0:50051}"
port="${addr##*:}"
metrics="${LIMITER_METRICS_LISTEN-0.0.0.0:9090}"
scrape=""
if [ -n "$metrics" ]; then
  scrape="  curl -s localhost:${metrics##*:}/metrics | grep '^ratelimit_decisions'   # Prometheus"
fi
cat <<TEXT
Starting the rate-limit decision service on ${addr} (memory backend unless REDIS_URL or
SENTINEL_HOSTS is set; default policy: ${RATE_LIMIT:-10} requests per ${TIME_WINDOW:-60} s).
Try it from another terminal (server reflection is on, no proto files needed):

  grpcurl -plaintext localhost:${port} list
  grpcurl -plaintext localhost:${port} describe ratelimit.v1.RateLimiter
  grpcurl -plaintext -d '{"key":"ip:1.2.3.4"}' localhost:${port} ratelimit.v1.RateLimiter/ShouldAllow
  grpcurl -plaintext -d '{"requests":[{"key":"ip:1.2.3.4"},{"key":"user:42","cost":3}]}' \\
      localhost:${port} ratelimit.v1.RateLimiter/ShouldAllowBatch
  grpcurl -plaintext localhost:${port} grpc.health.v1.Health/Check
${scrape}

  (without grpcurl: npx @bufbuild/buf curl --protocol grpc --http2-prior-knowledge \\
      --data '{"key":"ip:1.2.3.4"}' http://localhost:${port}/ratelimit.v1.RateLimiter/ShouldAllow)

Ctrl-C stops it (in-flight RPCs finish first).
TEXT
