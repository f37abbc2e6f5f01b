"""ecglens.v1.EmbeddingService over one model and its dynamic batcher (the V2 face reuses its path)."""
from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import grpc
import numpy as np

from protos.ecglens.v1 import embedding_pb2, embedding_pb2_grpc, tensor_pb2
from services.common.admission import Malformed
from services.common.proto_enums import to_enum
from services.common.tensors import TensorError, from_tensor, to_tensor
from services.common.text import clip, clip_details
from services.embedding.backends import BackendError
from services.embedding.batcher import Draining, DynamicBatcher, QueueFull
from services.embedding.metrics import ServerMetrics
from services.embedding.model import EmbeddingModel, InputError

log = logging.getLogger("ecglens.embedding")
SERVICE = embedding_pb2.DESCRIPTOR.services_by_name["EmbeddingService"].full_name
STREAM_WINDOW = 8  # requests of one stream processed concurrently, so they can share batches
LOGGED_ID_CHARS = 128  # a request_id is the client's text: logs carry at most this much of it


class RequestFailed(Exception):
    """A request that ends with a gRPC status instead of an embedding."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        message = clip_details(message)  # it travels as a trailer; echoed input must not overflow it
        super().__init__(message)
        self.code, self.message = code, message


def card_message(model: EmbeddingModel) -> embedding_pb2.ModelCard:
    """The card as the protocol's ModelCard (the kind both as model_kind and as the deprecated text)."""
    card = model.card
    return embedding_pb2.ModelCard(
        name=card.name, version=card.version, embedding_dim=card.output.embedding_dim,
        sampling_rate_hz=card.input.sampling_rate_hz, leads=list(card.input.leads),
        num_samples=card.input.num_samples, max_batch_size=card.serving.max_batch_size, license=card.license,
        backend=card.backend, kind=card.kind, objective=card.objective, normalization=card.input.normalization,
        input_units=card.input.units, params=model.params, fingerprint=model.fingerprint,
        description=card.description, model_kind=to_enum(embedding_pb2.ModelKind, card.kind))


class EmbeddingServicer(embedding_pb2_grpc.EmbeddingServiceServicer):
    """Implements GetModelCard, Embed and EmbedStream over one model and its batcher."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self.model: EmbeddingModel | None = None
        self.batcher: DynamicBatcher | None = None
        self.metrics = metrics

    def attach(self, model: EmbeddingModel, batcher: DynamicBatcher) -> None:
        """Called once the model is loaded; until then requests get UNAVAILABLE."""
        self.model, self.batcher = model, batcher

    async def load(self, package: Path) -> EmbeddingModel:
        """Load and warm up the package off the event loop, start its batcher and attach both."""
        loop = asyncio.get_running_loop()
        model = await loop.run_in_executor(None, EmbeddingModel.load, package)
        serving = model.card.serving
        batcher = DynamicBatcher(model.embed, serving.max_batch_size, serving.max_queue_delay_ms / 1e3,
                                 serving.max_queue_ecgs, on_batch=self.metrics.observe_batch,
                                 runners=model.backend.runners)
        batcher.start()
        self.attach(model, batcher)
        return model

    async def drain(self) -> None:
        """Finish the batches already queued, then stop the batcher (after the server stopped taking calls)."""
        if self.batcher:
            await self.batcher.drain()
            await self.batcher.close()

    def _ready(self) -> tuple[EmbeddingModel, DynamicBatcher]:
        if self.model is None or self.batcher is None:
            raise RequestFailed(grpc.StatusCode.UNAVAILABLE, "model is still loading; retry shortly")
        return self.model, self.batcher

    async def GetModelCard(self, request, context):  # noqa: N802 (gRPC method name)
        """Return the card of the hosted model."""
        try:
            model, _ = self._ready()
        except RequestFailed as failed:
            await context.abort(failed.code, failed.message)
        return card_message(model)

    async def _embed(self, request: embedding_pb2.EmbedRequest) -> np.ndarray:
        self._ready()
        if not request.HasField("ecg"):
            raise RequestFailed(grpc.StatusCode.INVALID_ARGUMENT, "ecg is missing")
        try:
            x = from_tensor(request.ecg, "ecg")
        except TensorError as err:
            raise RequestFailed(grpc.StatusCode.INVALID_ARGUMENT, str(err)) from None
        return await self.embed_array(x, request.request_id)

    async def embed_array(self, x: np.ndarray, request_id: str = "") -> np.ndarray:
        """Validate a decoded wire batch and embed it through the batcher; raise RequestFailed."""
        model, batcher = self._ready()
        try:
            x = model.validate(x)
        except InputError as err:
            raise RequestFailed(grpc.StatusCode.INVALID_ARGUMENT, str(err)) from None
        try:
            return await batcher.submit(x)
        except QueueFull as err:
            raise RequestFailed(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err)) from None
        except Draining as err:
            raise RequestFailed(grpc.StatusCode.UNAVAILABLE, str(err)) from None
        except BackendError as err:
            raise RequestFailed(grpc.StatusCode.INTERNAL, f"model failed: {err}") from None
        except Exception as err:  # a crash inside a backend must not take the server down
            log.exception("inference failed", extra={"request_id": clip(request_id, LOGGED_ID_CHARS)})
            raise RequestFailed(grpc.StatusCode.INTERNAL, f"model failed: {type(err).__name__}: {err}") from None

    async def _answer(self, request: embedding_pb2.EmbedRequest | Malformed, method: str,
                      counted: bool = True) -> embedding_pb2.EmbedResponse:
        """Embed one request; failures (a message that could not even be parsed too) set the response's status."""
        started = time.perf_counter()
        request_id = "" if isinstance(request, Malformed) else request.request_id
        try:
            if isinstance(request, Malformed):
                raise RequestFailed(request.code, request.message)
            emb = await self._embed(request)
        except RequestFailed as failed:
            if counted:
                self.metrics.count(method, failed.code.name)
            log.warning("rejected", extra={"request_id": clip(request_id, LOGGED_ID_CHARS), "code": failed.code.name,
                                           "reason": clip(failed.message, 300), "method": method})
            return embedding_pb2.EmbedResponse(request_id=request_id, status=tensor_pb2.Status(
                code=failed.code.value[0], message=failed.message))
        if counted:
            self.metrics.count(method, "OK")
        log.debug("embedded", extra={"request_id": clip(request_id, LOGGED_ID_CHARS), "batch": len(emb),
                                     "ms": round(1e3 * (time.perf_counter() - started), 2)})
        return embedding_pb2.EmbedResponse(request_id=request_id, embedding=to_tensor(emb))

    async def Embed(self, request, context):  # noqa: N802
        """Embed one batch; failures are the RPC's status (counted by the admission interceptor)."""
        response = await self._answer(request, "Embed", counted=False)
        if response.status.code:
            await context.abort(_STATUS_BY_NUMBER[response.status.code], response.status.message)
        return response

    async def EmbedStream(self, request_iterator, context):  # noqa: N802
        """One response per request, in request order; a bad request (even unparseable bytes) fails only itself."""
        pending: asyncio.Queue = asyncio.Queue(maxsize=STREAM_WINDOW)

        async def read() -> None:
            try:
                async for request in request_iterator:
                    await pending.put(asyncio.ensure_future(self._answer(request, "EmbedStream")))
            finally:
                await pending.put(None)

        reader = asyncio.ensure_future(read())
        try:
            while (task := await pending.get()) is not None:
                yield await task
            await reader
        finally:
            reader.cancel()


_STATUS_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}
