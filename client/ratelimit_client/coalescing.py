"""Decisions asked for while calls are in flight share the next ``ShouldAllowBatch`` call.

A gRPC call costs the Python client (and the limiter) about as much CPU as the rest of a
request, so under load requests travel together and the cost is paid once per batch. At most
``max_in_flight`` calls run at once: a request arriving while they run waits for one to
finish and joins the batch sent then; when fewer are running, a turn's requests are sent at
the end of that turn, so a lone request goes at once, alone, as a plain ``ShouldAllow``.
Each request's deadline starts when it arrives, so the wait in the queue counts against it;
a batch's call gets the shortest deadline of its requests.

The limiter decides a batch's items in order and independently, but refuses a whole batch
when one item is invalid (nothing is consumed then); such a batch is re-sent item by item,
within what is left of the deadline, so each request gets its own answer.

An all-or-nothing batch (``call_group``) is never merged with other requests nor split:
its requests must be decided together and only together, so it travels alone as one
``ShouldAllowBatch`` with ``all_or_nothing`` set, and a refusal (one invalid item) fails it
whole. It counts against ``max_in_flight`` while it runs, but does not wait for room.

Each call's method, status, duration and size go to the ``ClientMetrics`` given.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import grpc

from ratelimit_client import proto
from ratelimit_client.errors import RpcFailure, failure_from
from ratelimit_client.metrics import NO_METRICS, ClientMetrics

__all__ = ["MAX_BATCH_BYTES", "MAX_BATCH_ITEMS", "CallCoalescer"]

# The limiter takes at most 1000 requests and 64 KiB per message; stay well inside both.
MAX_BATCH_ITEMS = 256
MAX_BATCH_BYTES = 48 * 1024

# Statuses by which the limiter refuses a whole batch for one bad item.
_ITEM_REFUSED = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)


Outcome = proto.ShouldAllowResponse | RpcFailure
_Waiter = tuple[proto.ShouldAllowRequest, "asyncio.Future[Outcome]", float]
_DEADLINE_EXCEEDED = RpcFailure(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")


def _settle(future: asyncio.Future[Outcome], outcome: Outcome) -> None:
    if not future.done():  # the request may have been cancelled (client went away)
        future.set_result(outcome)


def chunks(waiters: list[_Waiter]) -> list[list[_Waiter]]:
    """Split ``waiters`` in order into batches of at most ``MAX_BATCH_ITEMS`` items and
    ``MAX_BATCH_BYTES`` encoded bytes (an item bigger than that travels alone)."""
    batches: list[list[_Waiter]] = []
    current: list[_Waiter] = []
    size = 0
    for waiter in waiters:
        item_size = waiter[0].ByteSize() + 4
        if current and (len(current) >= MAX_BATCH_ITEMS or size + item_size > MAX_BATCH_BYTES):
            batches.append(current)
            current, size = [], 0
        current.append(waiter)
        size += item_size
    if current:
        batches.append(current)
    return batches


class CallCoalescer:
    """Sends ``ShouldAllow`` requests, batching those that queue while calls are in flight.

    ``single`` and ``batch`` are the channel's callables for the two methods; a request
    must be answered within ``timeout_s`` of its arrival; at most ``max_in_flight`` calls
    (batches) run at once. ``clock`` (monotonic seconds) defaults to the event loop's;
    ``metrics`` hears of every call.
    """

    def __init__(
        self,
        single: grpc.aio.UnaryUnaryMultiCallable,
        batch: grpc.aio.UnaryUnaryMultiCallable,
        timeout_s: float,
        max_in_flight: int = 1,
        clock: Callable[[], float] | None = None,
        metrics: ClientMetrics = NO_METRICS,
    ) -> None:
        self._clock = clock
        self._metrics = metrics
        self._single = single
        self._batch = batch
        self._timeout_s = timeout_s
        self._max_in_flight = max(1, max_in_flight)
        self._in_flight = 0
        self._pending: list[_Waiter] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[Any]] = set()

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    async def call(self, request: proto.ShouldAllowRequest) -> Outcome:
        """The limiter's reply to ``request``, or how the call failed. Never raises
        (except ``CancelledError`` when the caller is cancelled)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        self._pending.append((request, future, self._now() + self._timeout_s))
        if not self._scheduled and self._in_flight < self._max_in_flight:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    async def call_group(self, requests: list[proto.ShouldAllowRequest]) -> list[Outcome]:
        """The limiter's replies to ``requests`` sent alone as one all-or-nothing batch, or
        the same failure for each when the call failed. Never raises (except
        ``CancelledError``)."""
        message = proto.ShouldAllowBatchRequest(requests=requests, all_or_nothing=True)
        started, code = time.perf_counter(), "CANCELLED"
        self._in_flight += 1
        try:
            replies = await self._batch(message, timeout=self._timeout_s)
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
            failure = failure_from(exc)
        except Exception as exc:  # the caller must be answered, whatever went wrong
            code = "UNKNOWN"
            failure = RpcFailure(grpc.StatusCode.UNKNOWN, repr(exc))
        else:
            code = "OK"
            if len(replies.responses) == len(requests):
                return list(replies.responses)
            failure = RpcFailure(
                grpc.StatusCode.INTERNAL,
                f"{len(replies.responses)} replies to a batch of {len(requests)}",
            )
        finally:
            self._metrics.call(
                "ShouldAllowBatch", code, time.perf_counter() - started, len(requests)
            )
            self._in_flight -= 1
            if self._pending and not self._scheduled and self._in_flight < self._max_in_flight:
                self._scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)
        return [failure] * len(requests)

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        now = self._now()
        live: list[_Waiter] = []
        for waiter in pending:
            if waiter[1].done():
                continue  # the request went away while it queued
            if waiter[2] <= now:
                _settle(waiter[1], _DEADLINE_EXCEEDED)
            else:
                live.append(waiter)
        for batch in chunks(live):
            deadline = min(waiter[2] for waiter in batch)
            task = asyncio.ensure_future(
                self._send_one(*batch[0][:2], deadline)
                if len(batch) == 1
                else self._send_batch(batch, deadline)
            )
            self._in_flight += 1
            self._tasks.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self._in_flight -= 1
        if self._pending and not self._scheduled and self._in_flight < self._max_in_flight:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    async def _send_one(
        self, request: proto.ShouldAllowRequest, future: asyncio.Future[Outcome], deadline: float
    ) -> None:
        remaining = deadline - self._now()
        if remaining <= 0:
            _settle(future, _DEADLINE_EXCEEDED)
            return
        started, code = time.perf_counter(), "CANCELLED"
        try:
            reply = await self._single(request, timeout=remaining)
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
            _settle(future, failure_from(exc))
        except Exception as exc:  # every waiter must be answered, whatever went wrong
            code = "UNKNOWN"
            _settle(future, RpcFailure(grpc.StatusCode.UNKNOWN, repr(exc)))
        else:
            code = "OK"
            _settle(future, reply)
        finally:
            self._metrics.call("ShouldAllow", code, time.perf_counter() - started, 1)

    async def _send_batch(self, batch: list[_Waiter], deadline: float) -> None:
        message = proto.ShouldAllowBatchRequest(requests=[waiter[0] for waiter in batch])
        remaining = deadline - self._now()
        started, code = time.perf_counter(), "CANCELLED"
        try:
            replies = await self._batch(message, timeout=max(remaining, 0.001))
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
            self._metrics.call("ShouldAllowBatch", code, time.perf_counter() - started, len(batch))
            if exc.code() in _ITEM_REFUSED:
                await asyncio.gather(
                    *(self._send_one(request, future, deadline) for request, future, _ in batch)
                )
                return
            failure = failure_from(exc)
        except Exception as exc:  # every waiter must be answered, whatever went wrong
            self._metrics.call(
                "ShouldAllowBatch", "UNKNOWN", time.perf_counter() - started, len(batch)
            )
            failure = RpcFailure(grpc.StatusCode.UNKNOWN, repr(exc))
        except asyncio.CancelledError:
            self._metrics.call("ShouldAllowBatch", code, time.perf_counter() - started, len(batch))
            raise
        else:
            self._metrics.call("ShouldAllowBatch", "OK", time.perf_counter() - started, len(batch))
            if len(replies.responses) == len(batch):
                for (_, future, _), reply in zip(batch, replies.responses, strict=True):
                    _settle(future, reply)
                return
            failure = RpcFailure(
                grpc.StatusCode.INTERNAL,
                f"{len(replies.responses)} replies to a batch of {len(batch)}",
            )
        for _, future, _ in batch:
            _settle(future, failure)

    async def close(self) -> None:
        """Wait for the calls already sent (the channel's closing ends them)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
