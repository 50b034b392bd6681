"""``make bench``: throughput and latency of the decision service, next to its baselines.

``python -m bench`` starts every process it measures through ``devstack`` on free loopback
ports: a ``redis-server``, the bare gRPC echo server (``bench.echo_server``) and the limiter,
each driven in turn by the in-process load generator (``bench.loadgen``, the generated
stub); ``redis-benchmark`` on the same Lua script; then the end-to-end part
(``bench.edge``): the whole stack through Nginx next to FastAPI apps limiting in-process
with ``limits``. It prints the tables (plain and Markdown) and writes
``bench/results.json``.
"""
