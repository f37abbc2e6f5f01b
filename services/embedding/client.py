"""A Python client of ecglens.v1.EmbeddingService with deadlines, retries and requests kept in flight."""
from __future__ import annotations

import uuid
from collections import deque
from typing import Iterable, Iterator

import grpc
import numpy as np

from protos.ecglens.v1 import embedding_pb2, embedding_pb2_grpc
from services.common.grpc_options import ChannelClient, open_channel
from services.common.memory import reuse_large_buffers
from services.common.proto_enums import from_enum, to_enum
from services.common.tensors import encode_tensor_message, from_tensor, to_tensor

SERVICE = "ecglens.v1.EmbeddingService"


class EmbedError(RuntimeError):
    """A request the server answered with a non-OK status."""

    def __init__(self, code: grpc.StatusCode, message: str, request_id: str = "") -> None:
        super().__init__(f"{code.name}: {message}" + (f" (request {request_id})" if request_id else ""))
        self.code, self.details, self.request_id = code, message, request_id


def complete_kind(card: embedding_pb2.ModelCard) -> embedding_pb2.ModelCard:
    """Fill whichever of model_kind / kind a server left empty from the other (old or enum-only servers)."""
    if not card.model_kind:
        card.model_kind = to_enum(embedding_pb2.ModelKind, card.kind)
    if not card.kind:
        card.kind = from_enum(embedding_pb2.ModelKind, card.model_kind) or ""
    return card


class EmbeddingClient(ChannelClient):
    """Talks to one embedding endpoint; thread-safe (one channel, many calls)."""

    def __init__(self, address: str, timeout_s: float = 120.0, wire_dtype: str = "float32",
                 credentials: grpc.ChannelCredentials | None = None,
                 metadata: tuple[tuple[str, str], ...] = (),
                 extra_options: list[tuple[str, object]] | None = None) -> None:
        self.address = address
        self.metadata = tuple(metadata)  # e.g. (("authorization", "Bearer ..."),); never logged
        self.timeout_s = timeout_s
        self.wire_dtype = wire_dtype
        reuse_large_buffers()  # batches are megabytes: without it each one page-faults fresh memory
        self.channel = open_channel(address, SERVICE, credentials, extra_options)
        self.stub = embedding_pb2_grpc.EmbeddingServiceStub(self.channel)
        # The same methods taking requests already serialised by encode_tensor_message (one copy of the samples).
        self._embed_raw = self.channel.unary_unary(
            f"/{SERVICE}/Embed", request_serializer=None, response_deserializer=embedding_pb2.EmbedResponse.FromString)
        self._stream_raw = self.channel.stream_stream(
            f"/{SERVICE}/EmbedStream", request_serializer=None,
            response_deserializer=embedding_pb2.EmbedResponse.FromString)

    def card(self, connect_timeout_s: float | None = None) -> embedding_pb2.ModelCard:
        """The served model's card, with model_kind and the deprecated text kind both filled when either is.

        With connect_timeout_s, an endpoint that cannot be reached fails within that many seconds with
        gRPC's own reason (connection refused, DNS) instead of waiting the whole request timeout for it.
        """
        wait = connect_timeout_s is None
        try:
            card = self.stub.GetModelCard(embedding_pb2.GetModelCardRequest(),
                                          timeout=self.timeout_s if wait else connect_timeout_s,
                                          metadata=self.metadata, wait_for_ready=wait)
        except grpc.RpcError as err:
            raise EmbedError(err.code(), err.details()) from None
        return complete_kind(card)

    def request(self, x: np.ndarray, request_id: str | None = None) -> embedding_pb2.EmbedRequest:
        """Build an EmbedRequest for a [B, L, T] batch."""
        return embedding_pb2.EmbedRequest(request_id=request_id or uuid.uuid4().hex,
                                          ecg=to_tensor(x, self.wire_dtype))

    def request_bytes(self, x: np.ndarray, request_id: str | None = None) -> tuple[str, bytes]:
        """(request_id, the serialised EmbedRequest) for a [B, L, T] batch: request() as wire bytes."""
        rid = request_id or uuid.uuid4().hex
        return rid, encode_tensor_message(rid, x, self.wire_dtype)

    def embed(self, x: np.ndarray, request_id: str | None = None) -> np.ndarray:
        """Embed one batch with the unary RPC; raise EmbedError on a non-OK status."""
        rid, req = self.request_bytes(x, request_id)
        try:
            reply = self._embed_raw(req, timeout=self.timeout_s, metadata=self.metadata)
        except grpc.RpcError as err:
            raise EmbedError(err.code(), err.details(), rid) from None
        return from_tensor(reply.embedding, "embedding")

    def embed_many(self, x: np.ndarray, batch_size: int, in_flight: int = 2) -> np.ndarray:
        """Embed a large array in batches, keeping `in_flight` unary calls outstanding to overlap transport."""
        pending: deque = deque()
        parts: list[np.ndarray] = []

        def collect() -> None:
            rid, fut = pending.popleft()
            try:
                parts.append(from_tensor(fut.result().embedding, "embedding"))
            except grpc.RpcError as err:
                raise EmbedError(err.code(), err.details(), rid) from None

        for start in range(0, len(x), batch_size):
            if len(pending) >= in_flight:
                collect()
            rid, req = self.request_bytes(x[start:start + batch_size])
            pending.append((rid, self._embed_raw.future(req, timeout=self.timeout_s, metadata=self.metadata)))
        while pending:
            collect()
        return np.concatenate(parts)

    def embed_stream(self, batches: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Embed many batches over one EmbedStream; yields in order, raises EmbedError on a failed item."""
        requests = (self.request_bytes(b)[1] for b in batches)
        try:
            for reply in self._stream_raw(requests, timeout=self.timeout_s * 10, metadata=self.metadata):
                if reply.status.code:
                    code = next(c for c in grpc.StatusCode if c.value[0] == reply.status.code)
                    raise EmbedError(code, reply.status.message, reply.request_id)
                yield from_tensor(reply.embedding, "embedding")
        except grpc.RpcError as err:
            raise EmbedError(err.code(), err.details()) from None
