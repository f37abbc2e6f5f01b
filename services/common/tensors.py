"""Convert between numpy arrays and ecglens.v1.Tensor without per-element encoding."""
from __future__ import annotations

import numpy as np

from protos.ecglens.v1 import tensor_pb2

_NP_OF = {tensor_pb2.FLOAT32: np.dtype("<f4"), tensor_pb2.FLOAT16: np.dtype("<f2")}
_PB_OF = {np.dtype("<f4"): tensor_pb2.FLOAT32, np.dtype("<f2"): tensor_pb2.FLOAT16}


class TensorError(ValueError):
    """A Tensor message that cannot be decoded; the text is safe to return to a client."""


def to_tensor(array: np.ndarray, dtype: str = "float32") -> tensor_pb2.Tensor:
    """Encode an array as a little-endian C-order Tensor of FLOAT32 or FLOAT16."""
    np_dtype = np.dtype(dtype).newbyteorder("<")
    if np_dtype not in _PB_OF:
        raise TensorError(f"unsupported dtype {dtype!r}: use float32 or float16")
    data = np.ascontiguousarray(array, dtype=np_dtype)
    return tensor_pb2.Tensor(dtype=_PB_OF[np_dtype], shape=list(data.shape), data=data.tobytes())


def from_tensor(tensor: tensor_pb2.Tensor, name: str = "tensor") -> np.ndarray:
    """Decode a Tensor to a read-only array (zero-copy over the message bytes); raise TensorError."""
    if tensor.dtype not in _NP_OF:
        known = ", ".join(tensor_pb2.DType.Name(v) for v in _NP_OF)
        label = tensor_pb2.DType.Name(tensor.dtype) if tensor.dtype in tensor_pb2.DType.values() else tensor.dtype
        raise TensorError(f"{name}: unsupported dtype {label}; expected one of {known}")
    shape = tuple(int(s) for s in tensor.shape)
    if any(s < 0 for s in shape):
        raise TensorError(f"{name}: negative dimension in shape {list(shape)}")
    itemsize = _NP_OF[tensor.dtype].itemsize
    expected = int(np.prod(shape, dtype=np.int64)) * itemsize
    if len(tensor.data) != expected:
        raise TensorError(
            f"{name}: data has {len(tensor.data)} bytes but shape {list(shape)} x "
            f"{tensor_pb2.DType.Name(tensor.dtype)} needs {expected}")
    return np.frombuffer(tensor.data, dtype=_NP_OF[tensor.dtype]).reshape(shape)
