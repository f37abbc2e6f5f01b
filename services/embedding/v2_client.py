"""A client of any KServe / Triton Open Inference Protocol (V2) gRPC server, used as an ECG embedding endpoint.

V2 servers (Triton, KServe, MLServer, ECGLens' own V2 face) know tensors, not ECGs: the ECG meaning of
a remote model (sampling rate, leads, window, layout) comes from ModelMetadata properties when the
server states it, otherwise from the experiment's overrides; `card_from_v2` merges both into a card.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import grpc
import numpy as np

from protos.inference import open_inference_grpc_pb2 as pb
from protos.inference import open_inference_grpc_pb2_grpc as pb_grpc
from services.common.grpc_options import ChannelClient, open_channel
from services.common.memory import reuse_large_buffers
from services.embedding import adapt
from services.embedding.client import EmbedError

SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
# V2 datatype -> little-endian numpy dtype of its raw (row-major) bytes.
_RAW_DTYPES = {"FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8")}
# Typed (non-raw) contents field per datatype; 16-bit floats only travel raw.
_TYPED_FIELDS = {"FP32": "fp32_contents", "FP64": "fp64_contents"}
_NOT_UP = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def _bf16_to_f32(raw: bytes) -> np.ndarray:
    """BF16 is the top half of a float32; numpy has no bfloat16, so widen the bits."""
    return (np.frombuffer(raw, "<u2").astype("<u4") << 16).view("<f4")


def parameter_text(value: pb.InferParameter) -> str:
    """A ModelMetadata parameter as the text the card reader parses: strings as sent, numbers and bools
    spelled out (MLServer sends int64 and bool parameters; "true"/"false" as the card's own text does)."""
    kind = value.WhichOneof("parameter_choice")
    if kind is None:
        return ""
    got = getattr(value, kind)
    if kind == "bool_param":
        return "true" if got else "false"
    if kind == "double_param":
        return str(int(got)) if got.is_integer() else repr(got)
    return str(got)


def _malformed(message: str, request_id: str = "") -> EmbedError:
    """A reply that breaks the protocol: reported like a server error, as INTERNAL."""
    return EmbedError(grpc.StatusCode.INTERNAL, f"malformed V2 reply: {message}", request_id)


def _tensor_meta(t: pb.ModelMetadataResponse.TensorMetadata) -> dict[str, Any]:
    return {"name": t.name, "datatype": t.datatype, "shape": [int(s) for s in t.shape]}


class V2Client(ChannelClient):
    """Embeds ECGs with one model of a V2 server; thread-safe (one channel, many calls)."""

    def __init__(self, address: str, model_name: str, input_name: str | None = None, output_name: str | None = None,
                 datatype: str = "FP32", timeout_s: float = 120.0,
                 credentials: grpc.ChannelCredentials | None = None,
                 metadata: Sequence[tuple[str, str]] | None = None, *, model_version: str | None = None,
                 layout: str = "BLT", normalization: str = "none", pooling: str = "none",
                 pool_axis: int = 1) -> None:
        if datatype not in _RAW_DTYPES:
            raise ValueError(f"datatype {datatype!r} is not one of {', '.join(_RAW_DTYPES)}")
        self.address, self.model_name, self.model_version = address, model_name, model_version
        self.input_name, self.output_name, self.datatype = input_name, output_name, datatype
        self.timeout_s = timeout_s
        # gRPC call metadata (e.g. an auth header); named call_metadata so it cannot shadow metadata().
        self.call_metadata = tuple(metadata or ())
        # Client-side adaptation for servers that take a model's own input and return its raw output.
        self.layout, self.normalization, self.pooling, self.pool_axis = layout, normalization, pooling, pool_axis
        reuse_large_buffers()  # batches are megabytes: without it each one page-faults fresh memory
        self.channel = open_channel(address, SERVICE, credentials)
        self.stub = pb_grpc.GRPCInferenceServiceStub(self.channel)

    def _call(self, method: Callable, request, request_id: str = "", **kwargs):
        try:
            return method(request, timeout=self.timeout_s, metadata=self.call_metadata, **kwargs)
        except grpc.RpcError as err:
            raise EmbedError(err.code(), err.details(), request_id) from None

    def ready(self) -> bool:
        """ServerReady and ModelReady; False while the server is unreachable or still loading."""
        try:
            if not self._call(self.stub.ServerReady, pb.ServerReadyRequest()).ready:
                return False
            request = pb.ModelReadyRequest(name=self.model_name, version=self.model_version)
            return self._call(self.stub.ModelReady, request).ready
        except EmbedError as err:
            if err.code in _NOT_UP:
                return False
            raise

    def live(self, timeout_s: float) -> bool:
        """ServerLive within timeout_s, not waiting for a connection: raise EmbedError (with gRPC's reason, e.g.
        connection refused) when the server cannot be reached."""
        try:
            return self.stub.ServerLive(pb.ServerLiveRequest(), timeout=timeout_s, metadata=self.call_metadata).live
        except grpc.RpcError as err:
            raise EmbedError(err.code(), err.details()) from None

    def server_metadata(self) -> dict[str, Any]:
        """ServerMetadata as plain data."""
        reply = self._call(self.stub.ServerMetadata, pb.ServerMetadataRequest(), wait_for_ready=True)
        return {"name": reply.name, "version": reply.version, "extensions": list(reply.extensions)}

    def metadata(self) -> dict[str, Any]:
        """ModelMetadata as plain data: name, versions, platform, inputs, outputs, properties."""
        request = pb.ModelMetadataRequest(name=self.model_name, version=self.model_version)
        reply = self._call(self.stub.ModelMetadata, request, wait_for_ready=True)
        return {"name": reply.name, "versions": list(reply.versions), "platform": reply.platform,
                "inputs": [_tensor_meta(t) for t in reply.inputs],
                "outputs": [_tensor_meta(t) for t in reply.outputs],
                "properties": {key: parameter_text(value) for key, value in reply.parameters.items()}}

    def request(self, x: np.ndarray, request_id: str | None = None) -> pb.ModelInferRequest:
        """A ModelInferRequest for a [B, L, T] mV batch, adapted and sent as raw little-endian bytes."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 3:
            raise ValueError(f"ecg must be [batch, leads, samples], got shape {list(x.shape)}")
        data = np.ascontiguousarray(adapt.to_layout(adapt.normalize(x, self.normalization), self.layout),
                                    dtype=_RAW_DTYPES[self.datatype])
        # Without a name (none given, ModelMetadata not read): "ecg", the name ECGLens' own V2 face uses.
        tensor = pb.ModelInferRequest.InferInputTensor(name=self.input_name or "ecg", datatype=self.datatype,
                                                       shape=list(data.shape))
        wanted = [pb.ModelInferRequest.InferRequestedOutputTensor(name=self.output_name)] if self.output_name else []
        return pb.ModelInferRequest(model_name=self.model_name, model_version=self.model_version,
                                    id=request_id or uuid.uuid4().hex, inputs=[tensor], outputs=wanted,
                                    raw_input_contents=[data.tobytes()])

    def embed(self, x: np.ndarray, request_id: str | None = None) -> np.ndarray:
        """Embed one [B, L, T] batch with ModelInfer; return [B, D] float32; raise EmbedError."""
        req = self.request(x, request_id)
        reply = self._call(self.stub.ModelInfer, req, req.id)
        y = decode_output(reply, self.output_name, req.id)
        try:
            emb = adapt.pool(y, self.pooling, self.pool_axis)
        except ValueError as err:
            raise _malformed(f"{err} (set pooling/pool_axis for this model)", req.id) from None
        if len(emb) != len(x):
            raise _malformed(f"{len(x)} ECGs in, {len(emb)} embeddings out", req.id)
        return emb


def _pick_output(reply: pb.ModelInferResponse, name: str | None, request_id: str) -> int:
    """Index of the embedding among the reply's outputs: the named one, else the only one."""
    names = [t.name for t in reply.outputs]
    if name is not None:
        if name not in names:
            raise _malformed(f"no output {name!r} in reply; outputs: {names}", request_id)
        return names.index(name)
    if len(names) != 1:
        raise _malformed(f"reply has outputs {names}; pass output_name to choose the embedding", request_id)
    return 0


def decode_output(reply: pb.ModelInferResponse, name: str | None = None, request_id: str = "") -> np.ndarray:
    """One output tensor of a reply as float32, from raw_output_contents or typed contents."""
    index = _pick_output(reply, name, request_id)
    tensor = reply.outputs[index]
    shape = [int(s) for s in tensor.shape]
    count = int(np.prod(shape, dtype=np.int64))
    if reply.raw_output_contents:
        if len(reply.raw_output_contents) != len(reply.outputs):
            raise _malformed(f"{len(reply.raw_output_contents)} raw_output_contents for {len(reply.outputs)} "
                             "outputs", request_id)
        raw = reply.raw_output_contents[index]
        itemsize = 2 if tensor.datatype == "BF16" else getattr(_RAW_DTYPES.get(tensor.datatype), "itemsize", 0)
        if not itemsize:
            raise _malformed(f"output {tensor.name!r} has datatype {tensor.datatype}; expected a float type",
                             request_id)
        if len(raw) != count * itemsize:
            raise _malformed(f"output {tensor.name!r} has {len(raw)} bytes but shape {shape} x {tensor.datatype} "
                             f"needs {count * itemsize}", request_id)
        values = _bf16_to_f32(raw) if tensor.datatype == "BF16" else np.frombuffer(raw, _RAW_DTYPES[tensor.datatype])
    else:
        field = _TYPED_FIELDS.get(tensor.datatype)
        if field is None:
            raise _malformed(f"output {tensor.name!r} has datatype {tensor.datatype} without raw contents",
                             request_id)
        values = np.asarray(getattr(tensor.contents, field))
        if len(values) != count:
            raise _malformed(f"output {tensor.name!r} has {len(values)} {field} but shape {shape} needs {count}",
                             request_id)
    return values.astype(np.float32, copy=False).reshape(shape)


class V2CardError(ValueError):
    """A remote V2 model whose ECG meaning is missing or contradictory; the text names the key."""


@dataclass(frozen=True)
class V2Card:
    """A remote V2 model described like ecglens.v1.ModelCard (the attributes the orchestrator reads)."""

    name: str
    version: str
    embedding_dim: int
    sampling_rate_hz: float
    leads: tuple[str, ...]
    num_samples: int
    max_batch_size: int
    fingerprint: str
    normalization: str
    description: str
    license: str
    objective: str = ""
    input_units: str = "mV"
    kind: str = "imported"
    backend: str = "remote-v2"
    params: int = 0
    # How the client adapts ECGs and outputs for this model (see V2Client).
    layout: str = "BLT"
    client_normalization: str = "none"
    pooling: str = "none"
    pool_axis: int = 1
    notes: tuple[str, ...] = ()  # assumptions made for this model (e.g. standard lead order), as warnings


OVERRIDE_KEYS = ("sampling_rate_hz", "leads", "num_samples", "layout", "normalization", "input_units",
                 "embedding_dim", "max_batch_size", "pooling", "pool_axis", "version", "description", "license",
                 "objective")
DEFAULT_MAX_BATCH_SIZE = 32
_LAYOUTS = ("BLT", "BTL", "BT")


def _leads(value: Any) -> tuple[str, ...]:
    names = value.split(",") if isinstance(value, str) else list(value)
    return tuple(str(n).strip() for n in names if str(n).strip())


class _Resolver:
    """Looks keys up in overrides, then ModelMetadata properties, then what the tensor shapes imply."""

    def __init__(self, model: str, overrides: dict[str, Any], properties: dict[str, str]) -> None:
        self.model, self.overrides, self.properties = model, overrides, properties
        self.missing: list[str] = []  # keys nobody states, reported together by raise_missing

    def get(self, key: str, parse: Callable[[Any], Any], implied: Any = None, default: Any = None) -> Any:
        """The value of key; sources that state it must agree; None/default when none does."""
        stated = [("the experiment's overrides", self.overrides.get(key)),
                  ("ModelMetadata properties", self.properties.get(key)), ("the tensor shapes", implied)]
        found = []
        for source, raw in stated:
            if raw in (None, ""):
                continue
            try:
                found.append((source, parse(raw)))
            except (TypeError, ValueError):
                raise V2CardError(f"{self.model}: {key} from {source} is not valid: {raw!r}") from None
        for source, value in found[1:]:
            if value != found[0][1]:
                raise V2CardError(f"{self.model}: {key} is {found[0][1]!r} in {found[0][0]} but {value!r} in "
                                  f"{source}")
        return found[0][1] if found else default

    def need(self, key: str, parse: Callable[[Any], Any], implied: Any = None) -> Any:
        """Like get, but a key nobody states is remembered as missing (see raise_missing)."""
        value = self.get(key, parse, implied)
        if value is None:
            self.missing.append(key)
        return value

    def raise_missing(self) -> None:
        """One error naming every key nobody states, and the two places to state them."""
        if self.missing:
            keys = ", ".join(self.missing)
            query = "&".join(f"{k}={_EXAMPLES.get(k, '...')}" for k in self.missing)
            raise V2CardError(f"{self.model}: ModelMetadata does not state {keys}; give them in the endpoint URL "
                              f"(v2://HOST:PORT/{self.model}?{query}) or in the model's `v2:` mapping in the "
                              "experiment YAML")


_EXAMPLES = {"sampling_rate_hz": "500", "leads": "standard12", "num_samples": "5000", "embedding_dim": "256"}
STANDARD12 = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


def _tensor(entries: list[dict[str, Any]], name: str | None, kind: str, model: str) -> dict[str, Any]:
    """The named tensor of ModelMetadata's inputs or outputs (the only one when name is None)."""
    names = [t["name"] for t in entries]
    if name is None and len(entries) == 1:
        return entries[0]
    if name in names:
        return entries[names.index(name)]
    raise V2CardError(f"{model}: no {kind} {name!r} in ModelMetadata; {kind}s: {names}"
                      + ("" if name else f" (name it: {kind}=NAME in the endpoint URL, "
                                           f"{kind}_name in the `v2:` mapping)"))


def _known(dim: int) -> int | None:
    return dim if dim > 0 else None


def _implied_input(shape: list[int], layout: str) -> tuple[int | None, int | None]:
    """Lead count and samples the declared input shape fixes (None where variable)."""
    dims = {"BLT": (1, 2), "BTL": (2, 1)}.get(layout)
    if layout == "BT":
        return (1, _known(shape[1])) if len(shape) == 2 else (None, None)
    if dims is None or len(shape) != 3:
        return None, None
    return _known(shape[dims[0]]), _known(shape[dims[1]])


def _implied_dim(shape: list[int], pooling: str, pool_axis: int) -> int | None:
    """The embedding size the declared output shape gives after pooling (None if any dim varies)."""
    if len(shape) < 2 or any(d <= 0 for d in shape[1:]):
        return None
    try:
        return int(adapt.pool(np.zeros([1, *shape[1:]], np.float32), pooling, pool_axis).shape[1])
    except (ValueError, IndexError):
        return None


def card_from_v2(client: V2Client, overrides: dict[str, Any] | None = None) -> V2Card:
    """The remote model's card from its ModelMetadata plus overrides; raise V2CardError naming a missing key."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(OVERRIDE_KEYS))
    if unknown:
        raise V2CardError(f"{client.model_name}: unknown override(s) {', '.join(unknown)}; allowed: "
                          f"{', '.join(OVERRIDE_KEYS)}")
    md = client.metadata()
    props, name = md["properties"], md["name"] or client.model_name
    r = _Resolver(name, overrides, props)
    layout = r.get("layout", str, default="BLT")
    if layout not in _LAYOUTS:
        raise V2CardError(f"{name}: layout {layout!r} is not one of {', '.join(_LAYOUTS)}")
    pooling, pool_axis = r.get("pooling", str, default="none"), r.get("pool_axis", int, default=1)
    if md["inputs"]:
        model_input = _tensor(md["inputs"], client.input_name, "input", name)
        client.input_name = model_input["name"]  # the only input, when none was named
        n_leads, n_samples = _implied_input(model_input["shape"], layout)
    elif client.input_name:
        n_leads = n_samples = None  # some servers (MLServer without declared tensors) list none
    else:
        raise V2CardError(f"{name}: ModelMetadata lists no inputs; name the ECG input (input=NAME in the endpoint "
                          "URL, input_name in the `v2:` mapping)")
    notes = []
    leads = r.get("leads", _leads)
    if leads is None and n_leads == len(STANDARD12):
        leads = STANDARD12
        notes.append(f"{name}: neither the endpoint nor ModelMetadata names the leads of its 12-channel input; "
                     f"taken as the standard order {','.join(STANDARD12)} (state `leads` if it differs)")
    elif leads is None:
        r.missing.append("leads")
    if leads is not None and n_leads is not None and len(leads) != n_leads:
        raise V2CardError(f"{name}: leads names {len(leads)} leads but the input shape has {n_leads}")
    out_shape = _tensor(md["outputs"], client.output_name, "output", name)["shape"] if md["outputs"] else []
    embedding_dim = r.need("embedding_dim", int, _implied_dim(out_shape, pooling, pool_axis))
    sampling_rate_hz = r.need("sampling_rate_hz", float)
    num_samples = r.need("num_samples", int, n_samples)
    r.raise_missing()
    return V2Card(
        name=name, version=r.get("version", str) or (md["versions"][0] if md["versions"] else ""),
        embedding_dim=embedding_dim, sampling_rate_hz=sampling_rate_hz, leads=leads, num_samples=num_samples,
        max_batch_size=r.get("max_batch_size", int, default=DEFAULT_MAX_BATCH_SIZE),
        fingerprint=hashlib.sha256(json.dumps({"metadata": md, "overrides": overrides}, sort_keys=True,
                                              default=str).encode()).hexdigest(),
        # Not resolved across sources: in overrides it is the client's job, in properties the server's.
        normalization=str(overrides.get("normalization") or props.get("normalization") or "none"),
        description=r.get("description", str) or f"{md['platform'] or 'V2'} model {name} at {client.address}",
        license=r.get("license", str, default="unknown"), objective=r.get("objective", str, default=""),
        input_units=r.get("input_units", str, default="mV"), params=int(props.get("params", 0) or 0),
        layout=layout, client_normalization=overrides.get("normalization", "none"), pooling=pooling,
        pool_axis=pool_axis, notes=tuple(notes))


def connect_v2(address: str, model_name: str, overrides: dict[str, Any] | None = None,
               connect_timeout_s: float | None = None, **client_kwargs: Any) -> tuple[V2Client, V2Card]:
    """A V2Client whose layout, normalization and pooling follow the model's resolved card.

    With connect_timeout_s, an unreachable server fails within that many seconds (see V2Client.live).
    """
    client = V2Client(address, model_name, **client_kwargs)
    try:
        if connect_timeout_s is not None:
            client.live(connect_timeout_s)
        card = card_from_v2(client, overrides)
    except Exception:
        client.close()
        raise
    client.layout, client.normalization = card.layout, card.client_normalization
    client.pooling, client.pool_axis = card.pooling, card.pool_axis
    return client, card
