from . import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_KIND_UNSPECIFIED: _ClassVar[ModelKind]
    MODEL_KIND_BASELINE: _ClassVar[ModelKind]
    MODEL_KIND_PRETRAINED: _ClassVar[ModelKind]
    MODEL_KIND_IMPORTED: _ClassVar[ModelKind]
MODEL_KIND_UNSPECIFIED: ModelKind
MODEL_KIND_BASELINE: ModelKind
MODEL_KIND_PRETRAINED: ModelKind
MODEL_KIND_IMPORTED: ModelKind

class GetModelCardRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelCard(_message.Message):
    __slots__ = ("name", "version", "embedding_dim", "sampling_rate_hz", "leads", "num_samples", "max_batch_size", "license", "backend", "kind", "objective", "normalization", "input_units", "params", "fingerprint", "description", "model_kind")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_DIM_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    LEADS_FIELD_NUMBER: _ClassVar[int]
    NUM_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    LICENSE_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    NORMALIZATION_FIELD_NUMBER: _ClassVar[int]
    INPUT_UNITS_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    MODEL_KIND_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    embedding_dim: int
    sampling_rate_hz: float
    leads: _containers.RepeatedScalarFieldContainer[str]
    num_samples: int
    max_batch_size: int
    license: str
    backend: str
    kind: str
    objective: str
    normalization: str
    input_units: str
    params: int
    fingerprint: str
    description: str
    model_kind: ModelKind
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., embedding_dim: _Optional[int] = ..., sampling_rate_hz: _Optional[float] = ..., leads: _Optional[_Iterable[str]] = ..., num_samples: _Optional[int] = ..., max_batch_size: _Optional[int] = ..., license: _Optional[str] = ..., backend: _Optional[str] = ..., kind: _Optional[str] = ..., objective: _Optional[str] = ..., normalization: _Optional[str] = ..., input_units: _Optional[str] = ..., params: _Optional[int] = ..., fingerprint: _Optional[str] = ..., description: _Optional[str] = ..., model_kind: _Optional[_Union[ModelKind, str]] = ...) -> None: ...

class EmbedRequest(_message.Message):
    __slots__ = ("request_id", "ecg")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ECG_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    ecg: _tensor_pb2.Tensor
    def __init__(self, request_id: _Optional[str] = ..., ecg: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("request_id", "embedding", "status")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    embedding: _tensor_pb2.Tensor
    status: _tensor_pb2.Status
    def __init__(self, request_id: _Optional[str] = ..., embedding: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., status: _Optional[_Union[_tensor_pb2.Status, _Mapping]] = ...) -> None: ...
