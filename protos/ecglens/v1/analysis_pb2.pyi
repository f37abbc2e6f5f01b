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
    __slots__ = ("request_id", "shap_values", "base_values", "dims_for_90pct", "top_dims", "max_additivity_error", "figures", "dims_for_50pct", "gini", "mean_abs")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SHAP_VALUES_FIELD_NUMBER: _ClassVar[int]
    BASE_VALUES_FIELD_NUMBER: _ClassVar[int]
    DIMS_FOR_90PCT_FIELD_NUMBER: _ClassVar[int]
    TOP_DIMS_FIELD_NUMBER: _ClassVar[int]
    MAX_ADDITIVITY_ERROR_FIELD_NUMBER: _ClassVar[int]
    FIGURES_FIELD_NUMBER: _ClassVar[int]
    DIMS_FOR_50PCT_FIELD_NUMBER: _ClassVar[int]
    GINI_FIELD_NUMBER: _ClassVar[int]
    MEAN_ABS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    shap_values: _tensor_pb2.Tensor
    base_values: _tensor_pb2.Tensor
    dims_for_90pct: int
    top_dims: _containers.RepeatedCompositeFieldContainer[ClassTopDims]
    max_additivity_error: float
    figures: _containers.RepeatedCompositeFieldContainer[_tensor_pb2.Figure]
    dims_for_50pct: int
    gini: float
    mean_abs: _tensor_pb2.Tensor
    def __init__(self, request_id: _Optional[str] = ..., shap_values: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., base_values: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., dims_for_90pct: _Optional[int] = ..., top_dims: _Optional[_Iterable[_Union[ClassTopDims, _Mapping]]] = ..., max_additivity_error: _Optional[float] = ..., figures: _Optional[_Iterable[_Union[_tensor_pb2.Figure, _Mapping]]] = ..., dims_for_50pct: _Optional[int] = ..., gini: _Optional[float] = ..., mean_abs: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class StructureRequest(_message.Message):
    __slots__ = ("request_id", "embeddings", "class_labels", "sources", "groups", "projection", "k", "metric", "projection_metric", "seed", "cv_folds")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    CLASS_LABELS_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    PROJECTION_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    PROJECTION_METRIC_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    CV_FOLDS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    embeddings: _tensor_pb2.Tensor
    class_labels: _containers.RepeatedScalarFieldContainer[str]
    sources: _containers.RepeatedScalarFieldContainer[str]
    groups: _containers.RepeatedScalarFieldContainer[str]
    projection: _tensor_pb2.Tensor
    k: int
    metric: str
    projection_metric: str
    seed: int
    cv_folds: int
    def __init__(self, request_id: _Optional[str] = ..., embeddings: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., class_labels: _Optional[_Iterable[str]] = ..., sources: _Optional[_Iterable[str]] = ..., groups: _Optional[_Iterable[str]] = ..., projection: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., k: _Optional[int] = ..., metric: _Optional[str] = ..., projection_metric: _Optional[str] = ..., seed: _Optional[int] = ..., cv_folds: _Optional[int] = ...) -> None: ...

class LabelScore(_message.Message):
    __slots__ = ("label", "value")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    label: str
    value: float
    def __init__(self, label: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...

class StructureResponse(_message.Message):
    __slots__ = ("request_id", "n_rows", "knn_agreement", "knn_chance", "k", "metric", "knn_per_class", "site_separability", "site_per_source", "site_cv_folds", "effective_rank", "participation_ratio", "alignment", "uniformity", "trustworthiness", "continuity", "projection_k", "projection_metric")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    N_ROWS_FIELD_NUMBER: _ClassVar[int]
    KNN_AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    KNN_CHANCE_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    KNN_PER_CLASS_FIELD_NUMBER: _ClassVar[int]
    SITE_SEPARABILITY_FIELD_NUMBER: _ClassVar[int]
    SITE_PER_SOURCE_FIELD_NUMBER: _ClassVar[int]
    SITE_CV_FOLDS_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_RANK_FIELD_NUMBER: _ClassVar[int]
    PARTICIPATION_RATIO_FIELD_NUMBER: _ClassVar[int]
    ALIGNMENT_FIELD_NUMBER: _ClassVar[int]
    UNIFORMITY_FIELD_NUMBER: _ClassVar[int]
    TRUSTWORTHINESS_FIELD_NUMBER: _ClassVar[int]
    CONTINUITY_FIELD_NUMBER: _ClassVar[int]
    PROJECTION_K_FIELD_NUMBER: _ClassVar[int]
    PROJECTION_METRIC_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    n_rows: int
    knn_agreement: float
    knn_chance: float
    k: int
    metric: str
    knn_per_class: _containers.RepeatedCompositeFieldContainer[LabelScore]
    site_separability: float
    site_per_source: _containers.RepeatedCompositeFieldContainer[LabelScore]
    site_cv_folds: int
    effective_rank: float
    participation_ratio: float
    alignment: float
    uniformity: float
    trustworthiness: float
    continuity: float
    projection_k: int
    projection_metric: str
    def __init__(self, request_id: _Optional[str] = ..., n_rows: _Optional[int] = ..., knn_agreement: _Optional[float] = ..., knn_chance: _Optional[float] = ..., k: _Optional[int] = ..., metric: _Optional[str] = ..., knn_per_class: _Optional[_Iterable[_Union[LabelScore, _Mapping]]] = ..., site_separability: _Optional[float] = ..., site_per_source: _Optional[_Iterable[_Union[LabelScore, _Mapping]]] = ..., site_cv_folds: _Optional[int] = ..., effective_rank: _Optional[float] = ..., participation_ratio: _Optional[float] = ..., alignment: _Optional[float] = ..., uniformity: _Optional[float] = ..., trustworthiness: _Optional[float] = ..., continuity: _Optional[float] = ..., projection_k: _Optional[int] = ..., projection_metric: _Optional[str] = ...) -> None: ...

class NamedEmbeddings(_message.Message):
    __slots__ = ("name", "embeddings")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    name: str
    embeddings: _tensor_pb2.Tensor
    def __init__(self, name: _Optional[str] = ..., embeddings: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class SimilarityRequest(_message.Message):
    __slots__ = ("request_id", "models", "title")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    models: _containers.RepeatedCompositeFieldContainer[NamedEmbeddings]
    title: str
    def __init__(self, request_id: _Optional[str] = ..., models: _Optional[_Iterable[_Union[NamedEmbeddings, _Mapping]]] = ..., title: _Optional[str] = ...) -> None: ...

class CkaPair(_message.Message):
    __slots__ = ("model_a", "model_b", "cka")
    MODEL_A_FIELD_NUMBER: _ClassVar[int]
    MODEL_B_FIELD_NUMBER: _ClassVar[int]
    CKA_FIELD_NUMBER: _ClassVar[int]
    model_a: str
    model_b: str
    cka: float
    def __init__(self, model_a: _Optional[str] = ..., model_b: _Optional[str] = ..., cka: _Optional[float] = ...) -> None: ...

class SimilarityResponse(_message.Message):
    __slots__ = ("request_id", "pairs", "figures")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    FIGURES_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    pairs: _containers.RepeatedCompositeFieldContainer[CkaPair]
    figures: _containers.RepeatedCompositeFieldContainer[_tensor_pb2.Figure]
    def __init__(self, request_id: _Optional[str] = ..., pairs: _Optional[_Iterable[_Union[CkaPair, _Mapping]]] = ..., figures: _Optional[_Iterable[_Union[_tensor_pb2.Figure, _Mapping]]] = ...) -> None: ...
