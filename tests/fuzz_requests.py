"""Malformed-request generators shared by tests/test_fuzz_servers.py (hypothesis) and bench/fuzz_servers.py.

Each generator turns a random source into (method, request bytes): byte soup, truncated or bit-flipped
valid messages, and structurally valid messages whose fields are hostile (shapes, dtypes, sizes, names,
non-UTF-8 strings) on ecglens.v1 Embed / EmbedStream / GetModelCard and V2 ModelInfer / ModelMetadata.
"""
from __future__ import annotations

import random

import numpy as np

from protos.ecglens.v1 import embedding_pb2, tensor_pb2
from protos.inference import open_inference_grpc_pb2 as v2

EMBED = "/ecglens.v1.EmbeddingService/Embed"
CARD = "/ecglens.v1.EmbeddingService/GetModelCard"
STREAM = "/ecglens.v1.EmbeddingService/EmbedStream"
INFER = "/inference.GRPCInferenceService/ModelInfer"
METADATA = "/inference.GRPCInferenceService/ModelMetadata"
UNARY_METHODS = (EMBED, CARD, INFER, METADATA)
# What a malformed request may get: never UNKNOWN or INTERNAL (a server bug), never a dead server.
ALLOWED = {"OK", "INVALID_ARGUMENT", "NOT_FOUND", "RESOURCE_EXHAUSTED"}

_DIMS = [0, 1, 2, 3, 11, 12, 13, 4999, 5000, 5001, -1, 2**31, 2**61, 2**63 - 1, -(2**63)]


def _shape(rng: random.Random) -> list[int]:
    rank = rng.choice([0, 1, 2, 3, 3, 3, 4, 9, 65, rng.randint(0, 300)])
    return [rng.choice(_DIMS) if rng.random() < 0.5 else rng.randint(0, 20) for _ in range(rank)]


def _data(rng: random.Random, shape: list[int]) -> bytes:
    """Bytes that fit the shape (with odd values) half the time, else random bytes of a random size."""
    count = 1
    for s in shape:
        count *= s
    if 0 <= count <= 500_000 and rng.random() < 0.5:
        return np.full(count, rng.choice([0.0, 1.0, np.nan, np.inf, -1e38]), np.float32).tobytes()
    return rng.randbytes(rng.choice([0, 1, 3, 4, 7, 240_000, rng.randint(0, 5000)]))


def _text(rng: random.Random) -> str:
    return rng.choice(["", "handcrafted", "x" * rng.choice([1, 300, 100_000]), "\u00e9\u2603", "ecg", "\0"])


def _bad_utf8_string_field(field: int, body: bytes) -> bytes:
    """Prefix a serialised message with a string field holding invalid UTF-8 (the last value wins)."""
    return bytes([(field << 3) | 2, 2, 0xFF, 0xFE]) + body


def valid_embed(rng: random.Random, n: int = 1) -> bytes:
    """A well-formed EmbedRequest for a 12 x 5000 model."""
    ecg = tensor_pb2.Tensor(dtype=tensor_pb2.FLOAT32, shape=[n, 12, 5000], data=bytes(n * 12 * 5000 * 4))
    return embedding_pb2.EmbedRequest(request_id=f"ok-{rng.randint(0, 9999)}", ecg=ecg).SerializeToString()


def embed_request(rng: random.Random) -> bytes:
    """A structurally valid EmbedRequest with hostile fields."""
    shape = _shape(rng)
    tensor = tensor_pb2.Tensor(dtype=rng.choice([0, 1, 2, 3, 99, -5]), shape=shape, data=_data(rng, shape))
    body = embedding_pb2.EmbedRequest(request_id=_text(rng), ecg=tensor).SerializeToString()
    return _bad_utf8_string_field(1, body) if rng.random() < 0.1 else body


def infer_request(rng: random.Random) -> bytes:
    """A structurally valid ModelInferRequest with hostile fields."""
    shape = _shape(rng)
    inputs = [v2.ModelInferRequest.InferInputTensor(name=rng.choice(["ecg", "ecg", "x", _text(rng)]),
                                                    datatype=rng.choice(["FP32", "FP16", "INT8", "", _text(rng)]),
                                                    shape=shape) for _ in range(rng.choice([0, 1, 1, 1, 2]))]
    request = v2.ModelInferRequest(model_name=rng.choice(["handcrafted", "handcrafted", _text(rng)]), inputs=inputs,
                                   id=_text(rng))
    if inputs and rng.random() < 0.3:
        inputs[0].contents.fp32_contents.extend([0.0] * rng.choice([0, 1, 60_000, rng.randint(0, 100)]))
    if rng.random() < 0.8:
        request.raw_input_contents.extend([_data(rng, shape) for _ in range(rng.choice([1, 1, 2]))])
    body = request.SerializeToString()
    return _bad_utf8_string_field(3, body) if rng.random() < 0.1 else body


def mutate(rng: random.Random, body: bytes) -> bytes:
    """Truncate, bit-flip or splice a serialised message."""
    data = bytearray(body)
    for _ in range(rng.randint(1, 4)):
        if not data:
            break
        kind = rng.random()
        at = rng.randrange(len(data))
        if kind < 0.4:
            data[at] ^= 1 << rng.randrange(8)
        elif kind < 0.7:
            del data[at:]
        else:
            data[at:at] = rng.randbytes(rng.randint(1, 16))
    return bytes(data)


def malformed(rng: random.Random) -> tuple[str, bytes]:
    """One (method, request bytes) drawn from every class of malformed input."""
    kind = rng.random()
    if kind < 0.15:
        return rng.choice(UNARY_METHODS), rng.randbytes(rng.choice([1, 2, 5, 64, 1000]))
    if kind < 0.45:
        return EMBED, embed_request(rng)
    if kind < 0.75:
        return INFER, infer_request(rng)
    if kind < 0.9:
        return EMBED, mutate(rng, valid_embed(rng))
    if kind < 0.95:
        return METADATA, mutate(rng, v2.ModelMetadataRequest(name="handcrafted").SerializeToString())
    return INFER, mutate(rng, infer_request(rng))
