"""Admission of request bytes: a memory budget reserved before a body is read, and our own deserialisation.

gRPC reads a unary request whole and deserialises it before the handler runs, so neither a byte budget
nor a clean INVALID_ARGUMENT for unparseable bytes is possible in a servicer. AdmissionInterceptor
turns every handler into its request-streaming twin with raw bytes in: it reserves budget for the
largest message the server accepts, only then reads the message, shrinks the reservation to what the
message costs, parses it itself and releases the budget when the call (or, in a stream, the message's
reply) is done. A message that cannot be parsed is INVALID_ARGUMENT; one that finds no budget within
a short wait is RESOURCE_EXHAUSTED. Oversized messages never reach Python: gRPC core refuses them from
their length prefix (max_receive_message_length), before buffering them.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import traceback
from collections import deque
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Collection

import grpc

from services.common.text import clip, clip_details

log = logging.getLogger(__name__)

# What one request costs at its peak, in multiples of its wire size: gRPC's buffer and the bytes read, the
# parsed message (protobuf copies bytes fields into its arena) and the one copy of the tensor data the
# array views. Measured: a 200 MiB request peaks at 3.45x (bench/memory_budget.py).
COST_FACTOR = 4
OVERHEAD_BYTES = 64 * 1024  # per call: buffers, the coroutine, the reply
MAX_WAITERS = 64  # calls waiting for budget; more are refused at once
READ_TIMEOUT_S = 30.0  # a message must arrive within this once budget is reserved for it (slow clients)


class RequestBudget:
    """Bytes reserved by requests in flight, never above limit; callers wait up to wait_s for room."""

    def __init__(self, limit_bytes: int, wait_s: float = 1.0, max_waiters: int = MAX_WAITERS) -> None:
        if limit_bytes <= 0:
            raise ValueError("the request budget must be positive")
        self.limit, self.wait_s, self.max_waiters = int(limit_bytes), wait_s, max_waiters
        self.used = 0
        self.peak = 0
        self._waiters: deque[asyncio.Future] = deque()

    async def acquire(self, n: int) -> bool:
        """Reserve n bytes (at most the limit), waiting up to wait_s; False when there was no room."""
        n = min(int(n), self.limit)
        if self.used + n <= self.limit and not self._waiters:
            self._take(n)
            return True
        if len(self._waiters) >= self.max_waiters:
            return False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_s
        while True:
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(asyncio.shield(waiter), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                return False
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                self._wake()  # pass the turn on if this caller leaves without taking it
            if self.used + n <= self.limit:
                self._take(n)
                return True

    def release(self, n: int) -> None:
        """Give back n reserved bytes and let a waiter try again."""
        self.used = max(0, self.used - min(int(n), self.limit))
        self._wake()

    def _take(self, n: int) -> None:
        self.used += n
        self.peak = max(self.peak, self.used)

    def _wake(self) -> None:
        if self._waiters and self.used < self.limit:
            first = self._waiters[0]
            if not first.done():
                first.set_result(None)


@dataclass(frozen=True)
class Malformed:
    """Handed to a tolerant stream in place of a message it could not admit; its reply carries the status."""

    code: grpc.StatusCode
    message: str


class _Rejected(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _method_name(full: str) -> str:
    return full.rsplit("/", 1)[-1]


class AdmissionInterceptor(grpc.aio.ServerInterceptor):
    """Budgeted reads and own deserialisation for every method; counts the outcome of counted ones.

    count(method, code) is called once per finished call of a method whose full name starts with one
    of counted_prefixes. tolerant_streams lists request-streaming methods whose servicer accepts a
    Malformed in place of a message (one bad message fails only its own reply).
    """

    def __init__(self, budget: RequestBudget, max_message_bytes: int,
                 count: Callable[[str, str], None] | None = None, counted_prefixes: tuple[str, ...] = (),
                 tolerant_streams: Collection[str] = ()) -> None:
        if budget.limit < COST_FACTOR * max_message_bytes:
            raise ValueError(f"the request budget ({budget.limit // 2**20} MiB) must be at least {COST_FACTOR} x the "
                             f"largest message ({max_message_bytes / 2**20:g} MiB): one such request costs that much")
        self.budget, self.max_message_bytes = budget, max_message_bytes
        self._count, self._counted, self._tolerant = count, counted_prefixes, frozenset(tolerant_streams)
        self.read_reserve = COST_FACTOR * max_message_bytes + OVERHEAD_BYTES

    def cost(self, size: int) -> int:
        """Bytes reserved for a message of size bytes once it has been read."""
        return COST_FACTOR * size + OVERHEAD_BYTES

    async def intercept_service(self, continuation, details):
        """Wrap the method's handler; unknown methods stay unknown (UNIMPLEMENTED)."""
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method
        counted = self._count is not None and method.startswith(self._counted)
        if handler.request_streaming:
            return self._stream_in(handler, method, counted)
        return self._unary_in(handler, method, counted)

    def _outcome(self, method: str, code: str, counted: bool) -> None:
        if counted:
            self._count(_method_name(method), code)

    async def _reserve(self, patient: bool) -> int:
        """Reserve room for the largest message; a patient caller (a stream) waits as long as it takes."""
        while not await self.budget.acquire(self.read_reserve):
            if not patient:
                raise _Rejected(grpc.StatusCode.RESOURCE_EXHAUSTED, self._busy_text())
            await asyncio.sleep(0.05)  # not reading is the stream's backpressure: HTTP/2 flow control holds the client
        return min(self.read_reserve, self.budget.limit)

    async def _read_one(self, read: Callable[[], Any], deserialize, method: str,
                        patient: bool = False) -> tuple[Any, int]:
        """Reserve for the largest message, read and parse one; (message, bytes still reserved)."""
        reserved = await self._reserve(patient)
        try:
            try:
                raw = await _within(read(), READ_TIMEOUT_S)
            except asyncio.TimeoutError:
                raise _Rejected(grpc.StatusCode.DEADLINE_EXCEEDED,
                                f"no request message arrived within {READ_TIMEOUT_S:g} s while memory was reserved "
                                "for it; send the message right after opening the call") from None
            if raw is grpc.aio.EOF:
                return grpc.aio.EOF, reserved
            size = len(raw)
            keep = min(self.cost(size), reserved)
            self.budget.release(reserved - keep)
            reserved = keep
            if deserialize is None:
                return raw, reserved
            try:
                return deserialize(raw), reserved
            except Exception as err:  # protobuf raises DecodeError; anything else is just as malformed
                raise _Rejected(grpc.StatusCode.INVALID_ARGUMENT,
                                f"request is not a valid {_method_name(method)} message ({size} bytes): "
                                f"{clip(err, 120)}") from None
        except BaseException:
            self.budget.release(reserved)
            raise

    def _busy_text(self) -> str:
        mib = 1024 * 1024
        return (f"server memory budget for requests in flight is in use ({self.budget.used // mib} of "
                f"{self.budget.limit // mib} MiB reserved); retry later or send smaller batches")

    def _unary_in(self, handler, method: str, counted: bool):
        """unary_unary -> stream_unary and unary_stream -> stream_stream, reading one message ourselves."""
        behavior = handler.unary_unary or handler.unary_stream
        serialize = handler.response_serializer

        async def admit(context) -> tuple[Any, int]:
            request, reserved = await self._read_one(context.read, handler.request_deserializer, method)
            if request is grpc.aio.EOF:
                self.budget.release(reserved)
                raise _Rejected(grpc.StatusCode.INVALID_ARGUMENT, "the call carried no request message")
            return request, reserved

        if not handler.response_streaming:
            async def unary(_requests, context):
                reserved, request = 0, None
                try:
                    request, reserved = await admit(context)
                    response = behavior(request, context)
                    if inspect.isawaitable(response):
                        response = await response
                except _Rejected as rejected:
                    self._outcome(method, rejected.code.name, counted)
                    code, details = rejected.code, clip_details(rejected.message)
                    _forget(rejected)
                    del rejected
                    await context.abort(code, details)
                except BaseException as err:
                    self._outcome(method, _code_of(context), counted)
                    # The finished frames in the traceback hold the request: free it before giving its budget back.
                    _forget(err)
                    request = None
                    raise
                finally:
                    request = None
                    self.budget.release(reserved)
                self._outcome(method, "OK", counted)
                return response
            return grpc.stream_unary_rpc_method_handler(unary, response_serializer=serialize)

        if inspect.isasyncgenfunction(behavior):
            async def streamed(_requests, context):
                reserved = 0
                try:
                    request, reserved = await admit(context)
                    async for response in behavior(request, context):
                        yield response
                except _Rejected as rejected:
                    await context.abort(rejected.code, clip_details(rejected.message))
                finally:
                    self.budget.release(reserved)
            return grpc.stream_stream_rpc_method_handler(streamed, response_serializer=serialize)

        async def written(_requests, context):  # a handler that answers with context.write (health Watch)
            reserved = 0
            try:
                request, reserved = await admit(context)
                await behavior(request, context)
            except _Rejected as rejected:
                await context.abort(rejected.code, clip_details(rejected.message))
            finally:
                self.budget.release(reserved)
        return grpc.stream_stream_rpc_method_handler(written, response_serializer=serialize)

    def _stream_in(self, handler, method: str, counted: bool):
        """Request-streaming handlers get an iterator that admits each message; replies release them in order."""
        tolerant = method in self._tolerant
        serialize = handler.response_serializer
        deserialize = handler.request_deserializer
        reservations: deque[int] = deque()

        async def requests(raw_iterator: AsyncIterator[bytes]) -> AsyncIterator[Any]:
            source = raw_iterator.__aiter__()

            async def read() -> Any:
                try:
                    return await source.__anext__()
                except StopAsyncIteration:
                    return grpc.aio.EOF

            while True:
                try:
                    request, reserved = await self._read_one(read, deserialize, method, patient=True)
                except _Rejected as rejected:
                    if not tolerant or rejected.code != grpc.StatusCode.INVALID_ARGUMENT:
                        raise
                    reservations.append(0)
                    yield Malformed(rejected.code, clip_details(rejected.message))
                    continue
                if request is grpc.aio.EOF:
                    self.budget.release(reserved)
                    return
                reservations.append(reserved)
                yield request

        def release_all() -> None:
            while reservations:
                self.budget.release(reservations.popleft())

        if handler.response_streaming:
            behavior = handler.stream_stream

            async def stream(raw_iterator, context):
                try:
                    async for response in behavior(requests(raw_iterator), context):
                        if reservations:  # one reply per request, in order: its request is done
                            self.budget.release(reservations.popleft())
                        yield response
                except _Rejected as rejected:
                    await context.abort(rejected.code, clip_details(rejected.message))
                finally:
                    release_all()
            return grpc.stream_stream_rpc_method_handler(stream, response_serializer=serialize)

        behavior = handler.stream_unary

        async def gather(raw_iterator, context):
            try:
                response = await behavior(requests(raw_iterator), context)
            except _Rejected as rejected:
                self._outcome(method, rejected.code.name, counted)
                await context.abort(rejected.code, clip_details(rejected.message))
            except BaseException:
                self._outcome(method, _code_of(context), counted)
                raise
            finally:
                release_all()
            self._outcome(method, "OK", counted)
            return response
        return grpc.stream_unary_rpc_method_handler(gather, response_serializer=serialize)


async def _within(awaitable: Awaitable[Any], seconds: float) -> Any:
    """await with a timeout (asyncio.TimeoutError); on 3.11+ without the Task that wait_for makes per call."""
    if hasattr(asyncio, "timeout"):  # every request passes here: one Task less per message read
        async with asyncio.timeout(seconds):
            return await awaitable
    return await asyncio.wait_for(awaitable, seconds)


def _forget(error: BaseException) -> None:
    """Clear the locals of the finished frames an exception (and its chain) holds, so a request they
    reference is freed now, not when gRPC lets go of the exception."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        traceback.clear_frames(error.__traceback__)
        error = error.__cause__ or error.__context__


def _code_of(context) -> str:
    """The status a call ended with after its handler raised (abort sets it; anything else is UNKNOWN)."""
    try:
        code = context.code()
    except Exception:  # noqa: BLE001 (older grpcio: no code() on aio contexts)
        code = None
    return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"


def refusal(handler, code: grpc.StatusCode, details: str,
            before: Callable[[Any], None] | None = None):
    """A handler that answers code/details without reading the request (its body is never buffered).

    It is request-streaming whatever the method, so gRPC does not read the message for it; its response
    kind matches handler's. before(context) runs first (to log or count the refusal).
    """
    async def answer(context) -> None:
        if before is not None:
            before(context)
        await context.abort(code, clip_details(details))

    if handler.response_streaming:
        async def refuse_stream(_requests, context):
            await answer(context)
            yield  # pragma: no cover (abort raises)
        return grpc.stream_stream_rpc_method_handler(refuse_stream)

    async def refuse(_requests, context):
        await answer(context)
    return grpc.stream_unary_rpc_method_handler(refuse)
