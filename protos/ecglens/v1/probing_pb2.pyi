from . import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProbeKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROBE_KIND_UNSPECIFIED: _ClassVar[ProbeKind]
    PROBE_KIND_LINEAR: _ClassVar[ProbeKind]
    PROBE_KIND_KNN: _ClassVar[ProbeKind]
    PROBE_KIND_MLP: _ClassVar[ProbeKind]
    PROBE_KIND_RANDOM_FOREST: _ClassVar[ProbeKind]
    PROBE_KIND_SVM: _ClassVar[ProbeKind]
    PROBE_KIND_GRADIENT_BOOSTING: _ClassVar[ProbeKind]
    PROBE_KIND_DECISION_TREE: _ClassVar[ProbeKind]

class TargetKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TARGET_KIND_UNSPECIFIED: _ClassVar[TargetKind]
    TARGET_KIND_CLASSIFICATION: _ClassVar[TargetKind]
    TARGET_KIND_REGRESSION: _ClassVar[TargetKind]
PROBE_KIND_UNSPECIFIED: ProbeKind
PROBE_KIND_LINEAR: ProbeKind
PROBE_KIND_KNN: ProbeKind
PROBE_KIND_MLP: ProbeKind
PROBE_KIND_RANDOM_FOREST: ProbeKind
PROBE_KIND_SVM: ProbeKind
PROBE_KIND_GRADIENT_BOOSTING: ProbeKind
PROBE_KIND_DECISION_TREE: ProbeKind
TARGET_KIND_UNSPECIFIED: TargetKind
TARGET_KIND_CLASSIFICATION: TargetKind
TARGET_KIND_REGRESSION: TargetKind

class ProbeConfig(_message.Message):
    __slots__ = ("probe", "seed", "cs", "cv_folds", "ks", "distance_weighted", "alphas", "hidden_units", "max_epochs", "patience", "val_fraction", "probe_kind")
    PROBE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    CS_FIELD_NUMBER: _ClassVar[int]
    CV_FOLDS_FIELD_NUMBER: _ClassVar[int]
    KS_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_WEIGHTED_FIELD_NUMBER: _ClassVar[int]
    ALPHAS_FIELD_NUMBER: _ClassVar[int]
    HIDDEN_UNITS_FIELD_NUMBER: _ClassVar[int]
    MAX_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    PATIENCE_FIELD_NUMBER: _ClassVar[int]
    VAL_FRACTION_FIELD_NUMBER: _ClassVar[int]
    PROBE_KIND_FIELD_NUMBER: _ClassVar[int]
    probe: str
    seed: int
    cs: _containers.RepeatedScalarFieldContainer[float]
    cv_folds: int
    ks: _containers.RepeatedScalarFieldContainer[int]
    distance_weighted: bool
    alphas: _containers.RepeatedScalarFieldContainer[float]
    hidden_units: int
    max_epochs: int
    patience: int
    val_fraction: float
    probe_kind: ProbeKind
    def __init__(self, probe: _Optional[str] = ..., seed: _Optional[int] = ..., cs: _Optional[_Iterable[float]] = ..., cv_folds: _Optional[int] = ..., ks: _Optional[_Iterable[int]] = ..., distance_weighted: _Optional[bool] = ..., alphas: _Optional[_Iterable[float]] = ..., hidden_units: _Optional[int] = ..., max_epochs: _Optional[int] = ..., patience: _Optional[int] = ..., val_fraction: _Optional[float] = ..., probe_kind: _Optional[_Union[ProbeKind, str]] = ...) -> None: ...

class EvaluateRequest(_message.Message):
    __slots__ = ("request_id", "train_embeddings", "train_labels", "test_embeddings", "test_labels", "class_names", "multi_label", "config", "target_type", "test_groups", "bootstrap", "bootstrap_seed", "target_kind")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TRAIN_EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_LABELS_FIELD_NUMBER: _ClassVar[int]
    TEST_EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    TEST_LABELS_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAMES_FIELD_NUMBER: _ClassVar[int]
    MULTI_LABEL_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    TARGET_TYPE_FIELD_NUMBER: _ClassVar[int]
    TEST_GROUPS_FIELD_NUMBER: _ClassVar[int]
    BOOTSTRAP_FIELD_NUMBER: _ClassVar[int]
    BOOTSTRAP_SEED_FIELD_NUMBER: _ClassVar[int]
    TARGET_KIND_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    train_embeddings: _tensor_pb2.Tensor
    train_labels: _tensor_pb2.Tensor
    test_embeddings: _tensor_pb2.Tensor
    test_labels: _tensor_pb2.Tensor
    class_names: _containers.RepeatedScalarFieldContainer[str]
    multi_label: bool
    config: ProbeConfig
    target_type: str
    test_groups: _containers.RepeatedScalarFieldContainer[str]
    bootstrap: int
    bootstrap_seed: int
    target_kind: TargetKind
    def __init__(self, request_id: _Optional[str] = ..., train_embeddings: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., train_labels: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., test_embeddings: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., test_labels: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., class_names: _Optional[_Iterable[str]] = ..., multi_label: _Optional[bool] = ..., config: _Optional[_Union[ProbeConfig, _Mapping]] = ..., target_type: _Optional[str] = ..., test_groups: _Optional[_Iterable[str]] = ..., bootstrap: _Optional[int] = ..., bootstrap_seed: _Optional[int] = ..., target_kind: _Optional[_Union[TargetKind, str]] = ...) -> None: ...

class LinearModel(_message.Message):
    __slots__ = ("coef", "intercept", "mean", "scale", "c")
    COEF_FIELD_NUMBER: _ClassVar[int]
    INTERCEPT_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    C_FIELD_NUMBER: _ClassVar[int]
    coef: _tensor_pb2.Tensor
    intercept: _tensor_pb2.Tensor
    mean: _tensor_pb2.Tensor
    scale: _tensor_pb2.Tensor
    c: float
    def __init__(self, coef: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., intercept: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., mean: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., scale: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., c: _Optional[float] = ...) -> None: ...

class EvaluateResponse(_message.Message):
    __slots__ = ("request_id", "metrics", "per_class_auroc", "model", "test_logits", "warnings", "metrics_ci_low", "metrics_ci_high", "test_probabilities", "probe", "target_type", "hyperparameters", "bootstrap", "probe_kind", "target_kind")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class PerClassAurocEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class MetricsCiLowEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class MetricsCiHighEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class HyperparametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    PER_CLASS_AUROC_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TEST_LOGITS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    METRICS_CI_LOW_FIELD_NUMBER: _ClassVar[int]
    METRICS_CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    TEST_PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    PROBE_FIELD_NUMBER: _ClassVar[int]
    TARGET_TYPE_FIELD_NUMBER: _ClassVar[int]
    HYPERPARAMETERS_FIELD_NUMBER: _ClassVar[int]
    BOOTSTRAP_FIELD_NUMBER: _ClassVar[int]
    PROBE_KIND_FIELD_NUMBER: _ClassVar[int]
    TARGET_KIND_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    metrics: _containers.ScalarMap[str, float]
    per_class_auroc: _containers.ScalarMap[str, float]
    model: LinearModel
    test_logits: _tensor_pb2.Tensor
    warnings: _containers.RepeatedScalarFieldContainer[str]
    metrics_ci_low: _containers.ScalarMap[str, float]
    metrics_ci_high: _containers.ScalarMap[str, float]
    test_probabilities: _tensor_pb2.Tensor
    probe: str
    target_type: str
    hyperparameters: _containers.ScalarMap[str, float]
    bootstrap: int
    probe_kind: ProbeKind
    target_kind: TargetKind
    def __init__(self, request_id: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., per_class_auroc: _Optional[_Mapping[str, float]] = ..., model: _Optional[_Union[LinearModel, _Mapping]] = ..., test_logits: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., warnings: _Optional[_Iterable[str]] = ..., metrics_ci_low: _Optional[_Mapping[str, float]] = ..., metrics_ci_high: _Optional[_Mapping[str, float]] = ..., test_probabilities: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., probe: _Optional[str] = ..., target_type: _Optional[str] = ..., hyperparameters: _Optional[_Mapping[str, float]] = ..., bootstrap: _Optional[int] = ..., probe_kind: _Optional[_Union[ProbeKind, str]] = ..., target_kind: _Optional[_Union[TargetKind, str]] = ...) -> None: ...
