"""``make bench``: throughput and latency of the decision service, next to its baselines.

One run starts a real ``redis-server``, the limiter and a bare gRPC echo server on free
loopback ports, drives each with the same closed-loop load generator (``bench.loadgen``,
its own process), runs ``redis-benchmark`` on the same Lua script, and prints one table
(plain and Markdown) plus ``bench/results.json``. Entry point: ``python -m bench``.
"""
