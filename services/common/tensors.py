"""Convert between numpy arrays and ecglens.v1.Tensor without per-element encoding."""
from __future__ import annotations

import numpy as np

from protos.ecglens.v1 import tensor_pb2
from services.common.text import clip, clip_shape

_NP_OF = {tensor_pb2.FLOAT32: np.dtype("<f4"), tensor_pb2.FLOAT16: np.dtype("<f2")}
_PB_OF = {np.dtype("<f4"): tensor_pb2.FLOAT32, np.dtype("<f2"): tensor_pb2.FLOAT16}
# No ECGLens tensor has more than 3 dimensions; 8 leaves room and keeps every message short.
MAX_RANK = 8


class TensorError(ValueError):
    """A Tensor message that cannot be decoded; the text is safe to return to a client."""


def to_tensor(array: np.ndarray, dtype: str = "float32") -> tensor_pb2.Tensor:
    """Encode an array as a little-endian C-order Tensor of FLOAT32 or FLOAT16."""
    np_dtype = np.dtype(dtype).newbyteorder("<")
    if np_dtype not in _PB_OF:
        raise TensorError(f"unsupported dtype {dtype!r}: use float32 or float16")
    data = np.asarray(array, dtype=np_dtype, order="C")  # not ascontiguousarray: it turns 0-d into 1-d
    return tensor_pb2.Tensor(dtype=_PB_OF[np_dtype], shape=list(data.shape), data=data.tobytes())


def _varint(n: int) -> bytes:
    """Protobuf base-128 varint of a non-negative int."""
    out = bytearray()
    while True:
        low = n & 0x7F
        n >>= 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _field(tag: int, payload_len: int) -> bytes:
    """Key and length prefix of a length-delimited field (tag = field number << 3 | 2)."""
    return _varint(tag) + _varint(payload_len)


def encode_tensor_message(request_id: str, array: np.ndarray, dtype: str = "float32") -> bytes:
    """The wire bytes of a message {string request_id = 1; Tensor <tensor> = 2;} with one copy of the data.

    Byte for byte what EmbedRequest(request_id=..., ecg=to_tensor(array, dtype)).SerializeToString()
    gives (tests/test_serving_fast_paths.py holds it to that), without the three intermediate copies of the
    samples (tobytes, the Tensor, the request) that building the protobuf objects makes.
    """
    np_dtype = np.dtype(dtype).newbyteorder("<")
    if np_dtype not in _PB_OF:
        raise TensorError(f"unsupported dtype {dtype!r}: use float32 or float16")
    data = np.asarray(array, dtype=np_dtype, order="C")
    shape = b"".join(_varint(int(s)) for s in data.shape)
    nbytes = data.nbytes
    tensor_head = bytes([0x08]) + _varint(_PB_OF[np_dtype])  # field 1, varint: dtype (never 0 here)
    if shape:
        tensor_head += _field(0x12, len(shape)) + shape  # field 2, packed int64: shape
    if nbytes:
        tensor_head += _field(0x1A, nbytes)  # field 3, bytes: data (proto3 omits an empty one)
    ident = request_id.encode()
    head = (_field(0x0A, len(ident)) + ident if ident else b"") + _field(0x12, len(tensor_head) + nbytes) + tensor_head
    if not nbytes:
        return head
    return b"".join((head, data.reshape(-1).view(np.uint8).data))


def check_shape(shape, name: str = "tensor") -> tuple[int, ...]:
    """The shape as ints, with rank <= MAX_RANK and no negative dimension; raise TensorError."""
    if len(shape) > MAX_RANK:
        raise TensorError(f"{name}: shape has {len(shape)} dimensions; at most {MAX_RANK} are allowed")
    dims = tuple(int(s) for s in shape)
    if any(s < 0 for s in dims):
        raise TensorError(f"{name}: negative dimension in shape {clip_shape(dims)}")
    return dims


def element_count(shape: tuple[int, ...]) -> int:
    """Product of the dimensions in Python integers (numpy's int64 would wrap around)."""
    count = 1
    for s in shape:
        count *= s
    return count


def from_tensor(tensor: tensor_pb2.Tensor, name: str = "tensor") -> np.ndarray:
    """Decode a Tensor to a read-only array (zero-copy over one copy of the bytes); raise TensorError."""
    if tensor.dtype not in _NP_OF:
        known = ", ".join(tensor_pb2.DType.Name(v) for v in _NP_OF)
        label = tensor_pb2.DType.Name(tensor.dtype) if tensor.dtype in tensor_pb2.DType.values() else tensor.dtype
        raise TensorError(f"{name}: unsupported dtype {clip(label)}; expected one of {known}")
    shape = check_shape(tensor.shape, name)
    itemsize = _NP_OF[tensor.dtype].itemsize
    expected = element_count(shape) * itemsize
    data = tensor.data  # each access of a bytes field copies it: read it once
    if len(data) != expected:
        raise TensorError(
            f"{name}: data has {len(data)} bytes but shape {clip_shape(shape)} x "
            f"{tensor_pb2.DType.Name(tensor.dtype)} needs {clip(expected, 40)}")
    try:  # an empty tensor may still name dimensions numpy cannot index (e.g. [2**62, 0])
        return np.frombuffer(data, dtype=_NP_OF[tensor.dtype]).reshape(shape)
    except (ValueError, OverflowError) as err:
        raise TensorError(f"{name}: shape {clip_shape(shape)} cannot be laid out: {clip(err, 120)}") from None
