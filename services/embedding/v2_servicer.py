"""The hosted ECGLens model over the KServe / Triton Open Inference Protocol (V2), beside ecglens.v1.

The V2 face is an adapter: each ModelInfer becomes an ecglens.v1 EmbedRequest handed to the
EmbeddingServicer's own path, so both protocols share validation, the dynamic batcher, error
mapping, logs and metrics. Wire input "ecg" is [batch, leads, samples] in mV whatever the model's
internal layout (the server adapts, as for ecglens.v1).
"""
from __future__ import annotations

import logging
from importlib import metadata as _dist

import grpc
import numpy as np

from protos.ecglens.v1 import embedding_pb2, tensor_pb2
from protos.inference import open_inference_grpc_pb2 as pb
from protos.inference import open_inference_grpc_pb2_grpc as pb_grpc
from services.common.tensors import element_count
from services.common.text import clip, clip_shape
from services.embedding.model import EmbeddingModel
from services.embedding.servicer import LOGGED_ID_CHARS, EmbeddingServicer, RequestFailed

log = logging.getLogger("ecglens.embedding.v2")
SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
SERVER_NAME = "ecglens"
PLATFORM = "ecglens"
INPUT_NAME = "ecg"
OUTPUT_NAME = "embedding"
# V2 datatype -> little-endian numpy dtype and the ecglens.v1 wire dtype it travels as internally.
_INPUT_DTYPES = {"FP32": (np.dtype("<f4"), tensor_pb2.FLOAT32), "FP16": (np.dtype("<f2"), tensor_pb2.FLOAT16)}
# Triton, KServe and MLServer answer an unknown model or version with NOT_FOUND, not INVALID_ARGUMENT.
UNKNOWN_MODEL = grpc.StatusCode.NOT_FOUND


def server_version() -> str:
    """The installed ecglens distribution's version."""
    try:
        return _dist.version("ecglens")
    except _dist.PackageNotFoundError:
        return "unknown"


def _invalid(message: str) -> RequestFailed:
    return RequestFailed(grpc.StatusCode.INVALID_ARGUMENT, message)


def _check_model(model: EmbeddingModel, name: str, version: str | None) -> None:
    """Raise NOT_FOUND unless name (and version, when given) are the hosted model's."""
    card = model.card
    if name != card.name:
        raise RequestFailed(UNKNOWN_MODEL, f"unknown model {clip(repr(name))}; this server hosts {card.name!r}")
    if version and version != card.version:
        raise RequestFailed(UNKNOWN_MODEL, f"model {clip(repr(name))} has no version {clip(repr(version))}; "
                                           f"this server hosts version {card.version!r}")


def _properties(model: EmbeddingModel) -> dict[str, str]:
    """The card's ECG meaning as ModelMetadata parameters, each a string InferParameter (field 6 as MLServer
    declares it; see protos/generate.py INFERENCE_PATCHES), parsed back by V2 clients as the card does."""
    card, spec = model.card, model.card.input
    return {
        "sampling_rate_hz": f"{spec.sampling_rate_hz:g}", "leads": ",".join(spec.leads),
        "num_samples": str(spec.num_samples), "embedding_dim": str(card.output.embedding_dim),
        # The V2 input is always [batch, leads, samples]; the server lays it out for the model itself.
        "layout": "BLT", "input_units": spec.units,
        # Informational: this server normalises per lead itself, so clients must send plain mV.
        "normalization": spec.normalization, "normalized_by_server": "true",
        "max_batch_size": str(card.serving.max_batch_size), "kind": card.kind, "objective": card.objective,
        "backend": card.backend, "params": str(model.params), "fingerprint": model.fingerprint,
        "license": card.license, "description": card.description,
    }


def model_metadata(model: EmbeddingModel) -> pb.ModelMetadataResponse:
    """The hosted model's V2 ModelMetadata."""
    card, spec = model.card, model.card.input
    tensor = pb.ModelMetadataResponse.TensorMetadata
    return pb.ModelMetadataResponse(
        name=card.name, versions=[card.version], platform=PLATFORM,
        inputs=[tensor(name=INPUT_NAME, datatype="FP32", shape=[-1, len(spec.leads), spec.num_samples])],
        outputs=[tensor(name=OUTPUT_NAME, datatype="FP32", shape=[-1, card.output.embedding_dim])],
        parameters={key: pb.InferParameter(string_param=text) for key, text in _properties(model).items()})


def _single_input(request: pb.ModelInferRequest) -> pb.ModelInferRequest.InferInputTensor:
    """The one input "ecg", or INVALID_ARGUMENT naming what was sent instead."""
    names = [clip(repr(t.name)) for t in request.inputs[:4]]
    if len(request.inputs) != 1:
        raise _invalid(f"expected exactly 1 input {INPUT_NAME!r}, got {len(request.inputs)}: "
                       f"[{', '.join(names)}{', ...' if len(request.inputs) > 4 else ''}]")
    if request.inputs[0].name != INPUT_NAME:
        raise _invalid(f"unknown input {names[0]}; the model's only input is {INPUT_NAME!r}")
    for wanted in request.outputs:
        if wanted.name != OUTPUT_NAME:
            raise _invalid(f"unknown output {clip(repr(wanted.name))}; the model's only output is {OUTPUT_NAME!r}")
    return request.inputs[0]


def _shape(tensor: pb.ModelInferRequest.InferInputTensor) -> tuple[int, ...]:
    if len(tensor.shape) != 3:
        raise _invalid(f"input {INPUT_NAME!r} must have rank 3 [batch, leads, samples], got shape "
                       f"{clip_shape(tensor.shape)}")
    shape = tuple(int(s) for s in tensor.shape)
    if any(s < 0 for s in shape):
        raise _invalid(f"input {INPUT_NAME!r} has a negative dimension in shape {clip_shape(shape)}")
    return shape


def _values(request: pb.ModelInferRequest, tensor: pb.ModelInferRequest.InferInputTensor,
            shape: tuple[int, ...]) -> np.ndarray:
    """The input as a flat little-endian array, from raw or typed contents (one copy of the data)."""
    if tensor.datatype not in _INPUT_DTYPES:
        raise _invalid(f"input {INPUT_NAME!r} has datatype {clip(tensor.datatype) or '(empty)'}; "
                       f"expected FP32 (raw or fp32_contents) or FP16 (raw)")
    np_dtype, _wire = _INPUT_DTYPES[tensor.datatype]
    count = element_count(shape)  # Python integers: a product that overflows int64 is still compared right
    if request.raw_input_contents:
        if tensor.HasField("contents"):
            raise _invalid(f"input {INPUT_NAME!r} sets both raw_input_contents and typed contents; send one")
        if len(request.raw_input_contents) != 1:
            raise _invalid(f"raw_input_contents has {len(request.raw_input_contents)} entries for 1 input")
        raw = request.raw_input_contents[0]  # each access copies the bytes: read once
        if len(raw) != count * np_dtype.itemsize:
            raise _invalid(f"input {INPUT_NAME!r} raw_input_contents has {len(raw)} bytes but shape "
                           f"{clip_shape(shape)} x {tensor.datatype} needs {clip(count * np_dtype.itemsize, 40)}")
        return np.frombuffer(raw, dtype=np_dtype)
    if tensor.datatype != "FP32":
        raise _invalid(f"input {INPUT_NAME!r} is {tensor.datatype}: send it as raw_input_contents "
                       "(the protocol has no typed field for 16-bit floats)")
    values = tensor.contents.fp32_contents
    if len(values) != count:
        raise _invalid(f"input {INPUT_NAME!r} fp32_contents has {len(values)} values but shape "
                       f"{clip_shape(shape)} needs {clip(count, 40)}")
    return np.asarray(values, dtype=np_dtype)


def decode_input(request: pb.ModelInferRequest) -> np.ndarray:
    """The V2 input "ecg" as a [batch, leads, samples] array; raise RequestFailed (INVALID_ARGUMENT)."""
    tensor = _single_input(request)
    shape = _shape(tensor)
    try:
        return _values(request, tensor, shape).reshape(shape)
    except (ValueError, OverflowError) as err:  # an empty input may name dimensions numpy cannot index
        raise _invalid(f"input {INPUT_NAME!r} shape {clip_shape(shape)} cannot be laid out: {clip(err, 120)}") from None


def to_embed_request(request: pb.ModelInferRequest) -> embedding_pb2.EmbedRequest:
    """Translate a V2 ModelInferRequest into the equivalent ecglens.v1 EmbedRequest; raise RequestFailed."""
    x = decode_input(request)
    wire_dtype = _INPUT_DTYPES[request.inputs[0].datatype][1]
    return embedding_pb2.EmbedRequest(request_id=request.id,
                                      ecg=tensor_pb2.Tensor(dtype=wire_dtype, shape=list(x.shape), data=x.tobytes()))


def infer_response(model: EmbeddingModel, request_id: str, emb: np.ndarray) -> pb.ModelInferResponse:
    """The embedding as a V2 response with raw little-endian FP32 output contents."""
    out = np.ascontiguousarray(emb, dtype="<f4")
    tensor = pb.ModelInferResponse.InferOutputTensor(name=OUTPUT_NAME, datatype="FP32", shape=list(out.shape))
    return pb.ModelInferResponse(model_name=model.card.name, model_version=model.card.version, id=request_id,
                                 outputs=[tensor], raw_output_contents=[out.tobytes()])


def _optional(message, field: str) -> str | None:
    return getattr(message, field) if message.HasField(field) else None


class V2Servicer(pb_grpc.GRPCInferenceServiceServicer):
    """GRPCInferenceService over the model hosted by an EmbeddingServicer (shares its batcher and metrics)."""

    def __init__(self, embedding: EmbeddingServicer) -> None:
        self.embedding = embedding
        self.version = server_version()

    def _loaded(self) -> EmbeddingModel | None:
        return self.embedding.model if self.embedding.batcher is not None else None

    async def ServerLive(self, request, context):  # noqa: N802 (gRPC method name)
        """Live as soon as the process answers (the model may still be loading)."""
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):  # noqa: N802
        """Ready once the model is loaded and warmed up."""
        return pb.ServerReadyResponse(ready=self._loaded() is not None)

    async def ModelReady(self, request, context):  # noqa: N802
        """Ready for the hosted model's name (and version) once loaded; false for any other model."""
        model = self._loaded()
        if model is None:
            return pb.ModelReadyResponse(ready=False)
        version = _optional(request, "version")
        return pb.ModelReadyResponse(ready=request.name == model.card.name
                                     and version in (None, "", model.card.version))

    async def ServerMetadata(self, request, context):  # noqa: N802
        """Server name and version; no protocol extensions."""
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=self.version, extensions=[])

    async def ModelMetadata(self, request, context):  # noqa: N802
        """Inputs, outputs and the card's ECG meaning as properties."""
        try:
            model, _ = self.embedding._ready()
            _check_model(model, request.name, _optional(request, "version"))
        except RequestFailed as failed:
            await context.abort(failed.code, failed.message)
        return model_metadata(model)

    async def ModelInfer(self, request, context):  # noqa: N802
        """Embed input "ecg" through the shared validation and batcher; errors become the RPC status.

        Counted in the metrics by the admission interceptor, like every call."""
        try:
            model, _ = self.embedding._ready()
            _check_model(model, request.model_name, _optional(request, "model_version"))
            emb = await self.embedding.embed_array(decode_input(request), request.id)
        except RequestFailed as failed:
            log.warning("rejected", extra={"request_id": clip(request.id, LOGGED_ID_CHARS), "code": failed.code.name,
                                           "reason": clip(failed.message, 300), "method": "ModelInfer"})
            await context.abort(failed.code, failed.message)
        return infer_response(model, request.id, emb)


def add_v2_to_server(server: grpc.aio.Server, embedding_servicer: EmbeddingServicer) -> list[str]:
    """Register the V2 face of embedding_servicer on server; return its service names (for reflection)."""
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(V2Servicer(embedding_servicer), server)
    return [SERVICE]
