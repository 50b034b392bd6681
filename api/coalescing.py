"""Decisions asked for in the same event-loop turn share one ``ShouldAllowBatch`` call.

A gRPC call costs the Python client about as much CPU as the rest of a request, so under
load the requests that reach the limiter in one turn of the loop travel together: the cost
is paid once per batch instead of once per request. Nothing waits for a batch to fill: a
turn's requests are sent at the end of that turn, so a lone request goes at once, alone,
as a plain ``ShouldAllow``. No batch waits for another to finish either.

The limiter decides a batch's items in order and independently, but refuses a whole batch
when one item is invalid (nothing is consumed then); such a batch is re-sent item by item,
within what is left of the deadline, so each request gets its own answer.
"""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple

import grpc

from limiter_service import proto

__all__ = ["MAX_BATCH_BYTES", "MAX_BATCH_ITEMS", "CallCoalescer", "RpcFailure"]

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


class RpcFailure(NamedTuple):
    """A call that ended without a reply: its status and the limiter's message."""

    code: grpc.StatusCode
    details: str


Outcome = proto.ShouldAllowResponse | RpcFailure
_Waiter = tuple[proto.ShouldAllowRequest, "asyncio.Future[Outcome]"]


def _settle(future: asyncio.Future[Outcome], outcome: Outcome) -> None:
    if not future.done():  # the request may have been cancelled (client went away)
        future.set_result(outcome)


def _failure(exc: grpc.aio.AioRpcError) -> RpcFailure:
    return RpcFailure(exc.code(), exc.details() or "")


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
    """Sends ``ShouldAllow`` requests, batching those that arrive in the same loop turn.

    ``single`` and ``batch`` are the channel's callables for the two methods; every call
    gets ``timeout_s`` from the moment its batch is sent.
    """

    def __init__(
        self,
        single: grpc.aio.UnaryUnaryMultiCallable,
        batch: grpc.aio.UnaryUnaryMultiCallable,
        timeout_s: float,
    ) -> None:
        self._single = single
        self._batch = batch
        self._timeout_s = timeout_s
        self._pending: list[_Waiter] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[Any]] = set()

    async def call(self, request: proto.ShouldAllowRequest) -> Outcome:
        """The limiter's reply to ``request``, or how the call failed. Never raises
        (except ``CancelledError`` when the caller is cancelled)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        self._pending.append((request, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        deadline = asyncio.get_running_loop().time() + self._timeout_s
        for batch in chunks(pending):
            task = asyncio.ensure_future(
                self._send_one(*batch[0], deadline)
                if len(batch) == 1
                else self._send_batch(batch, deadline)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send_one(
        self, request: proto.ShouldAllowRequest, future: asyncio.Future[Outcome], deadline: float
    ) -> None:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            _settle(future, RpcFailure(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))
            return
        try:
            reply = await self._single(request, timeout=remaining)
        except grpc.aio.AioRpcError as exc:
            _settle(future, _failure(exc))
        except Exception as exc:  # every waiter must be answered, whatever went wrong
            _settle(future, RpcFailure(grpc.StatusCode.UNKNOWN, repr(exc)))
        else:
            _settle(future, reply)

    async def _send_batch(self, batch: list[_Waiter], deadline: float) -> None:
        message = proto.ShouldAllowBatchRequest(requests=[request for request, _ in batch])
        try:
            replies = await self._batch(message, timeout=self._timeout_s)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _ITEM_REFUSED:
                await asyncio.gather(
                    *(self._send_one(request, future, deadline) for request, future in batch)
                )
                return
            failure = _failure(exc)
        except Exception as exc:  # every waiter must be answered, whatever went wrong
            failure = RpcFailure(grpc.StatusCode.UNKNOWN, repr(exc))
        else:
            if len(replies.responses) == len(batch):
                for (_, future), reply in zip(batch, replies.responses, strict=True):
                    _settle(future, reply)
                return
            failure = RpcFailure(
                grpc.StatusCode.INTERNAL,
                f"{len(replies.responses)} replies to a batch of {len(batch)}",
            )
        for _, future in batch:
            _settle(future, failure)

    async def close(self) -> None:
        """Wait for the calls already sent (the channel's closing ends them)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
