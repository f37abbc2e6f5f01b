from . import tensor_pb2 as _tensor_pb2
from . import probing_pb2 as _probing_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UmapRequest(_message.Message):
    __slots__ = ("request_id", "embeddings", "class_labels", "sources", "n_neighbors", "min_dist", "metric", "seed", "title")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    CLASS_LABELS_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    N_NEIGHBORS_FIELD_NUMBER: _ClassVar[int]
    MIN_DIST_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    embeddings: _tensor_pb2.Tensor
    class_labels: _containers.RepeatedScalarFieldContainer[str]
    sources: _containers.RepeatedScalarFieldContainer[str]
    n_neighbors: int
    min_dist: float
    metric: str
    seed: int
    title: str
    def __init__(self, request_id: _Optional[str] = ..., embeddings: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., class_labels: _Optional[_Iterable[str]] = ..., sources: _Optional[_Iterable[str]] = ..., n_neighbors: _Optional[int] = ..., min_dist: _Optional[float] = ..., metric: _Optional[str] = ..., seed: _Optional[int] = ..., title: _Optional[str] = ...) -> None: ...

class UmapResponse(_message.Message):
    __slots__ = ("request_id", "projection", "silhouette_class", "silhouette_source", "trustworthiness", "figures", "n_neighbors", "min_dist", "metric")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECTION_FIELD_NUMBER: _ClassVar[int]
    SILHOUETTE_CLASS_FIELD_NUMBER: _ClassVar[int]
    SILHOUETTE_SOURCE_FIELD_NUMBER: _ClassVar[int]
    TRUSTWORTHINESS_FIELD_NUMBER: _ClassVar[int]
    FIGURES_FIELD_NUMBER: _ClassVar[int]
    N_NEIGHBORS_FIELD_NUMBER: _ClassVar[int]
    MIN_DIST_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    projection: _tensor_pb2.Tensor
    silhouette_class: float
    silhouette_source: float
    trustworthiness: float
    figures: _containers.RepeatedCompositeFieldContainer[_tensor_pb2.Figure]
    n_neighbors: int
    min_dist: float
    metric: str
    def __init__(self, request_id: _Optional[str] = ..., projection: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., silhouette_class: _Optional[float] = ..., silhouette_source: _Optional[float] = ..., trustworthiness: _Optional[float] = ..., figures: _Optional[_Iterable[_Union[_tensor_pb2.Figure, _Mapping]]] = ..., n_neighbors: _Optional[int] = ..., min_dist: _Optional[float] = ..., metric: _Optional[str] = ...) -> None: ...

class ShapRequest(_message.Message):
    __slots__ = ("request_id", "model", "background", "samples", "class_names", "top_k", "title")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BACKGROUND_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAMES_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    model: _probing_pb2.LinearModel
    background: _tensor_pb2.Tensor
    samples: _tensor_pb2.Tensor
    class_names: _containers.RepeatedScalarFieldContainer[str]
    top_k: int
    title: str
    def __init__(self, request_id: _Optional[str] = ..., model: _Optional[_Union[_probing_pb2.LinearModel, _Mapping]] = ..., background: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., samples: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., class_names: _Optional[_Iterable[str]] = ..., top_k: _Optional[int] = ..., title: _Optional[str] = ...) -> None: ...

class ClassTopDims(_message.Message):
    __slots__ = ("class_name", "dims", "importance")
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    DIMS_FIELD_NUMBER: _ClassVar[int]
    IMPORTANCE_FIELD_NUMBER: _ClassVar[int]
    class_name: str
    dims: _containers.RepeatedScalarFieldContainer[int]
    importance: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, class_name: _Optional[str] = ..., dims: _Optional[_Iterable[int]] = ..., importance: _Optional[_Iterable[float]] = ...) -> None: ...

class ShapResponse(_message.Message):
    __slots__ = ("request_id", "shap_values", "base_values", "dims_for_90pct", "top_dims", "max_additivity_error", "figures")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SHAP_VALUES_FIELD_NUMBER: _ClassVar[int]
    BASE_VALUES_FIELD_NUMBER: _ClassVar[int]
    DIMS_FOR_90PCT_FIELD_NUMBER: _ClassVar[int]
    TOP_DIMS_FIELD_NUMBER: _ClassVar[int]
    MAX_ADDITIVITY_ERROR_FIELD_NUMBER: _ClassVar[int]
    FIGURES_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    shap_values: _tensor_pb2.Tensor
    base_values: _tensor_pb2.Tensor
    dims_for_90pct: int
    top_dims: _containers.RepeatedCompositeFieldContainer[ClassTopDims]
    max_additivity_error: float
    figures: _containers.RepeatedCompositeFieldContainer[_tensor_pb2.Figure]
    def __init__(self, request_id: _Optional[str] = ..., shap_values: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., base_values: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., dims_for_90pct: _Optional[int] = ..., top_dims: _Optional[_Iterable[_Union[ClassTopDims, _Mapping]]] = ..., max_additivity_error: _Optional[float] = ..., figures: _Optional[_Iterable[_Union[_tensor_pb2.Figure, _Mapping]]] = ...) -> None: ...
