"""ecglens.v1.ProbingService: fit a probe (linear, knn, mlp) on frozen embeddings and score it (gRPC server)."""
from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass

import grpc
import numpy as np

from protos.ecglens.v1 import probing_pb2, probing_pb2_grpc
from services.common.proto_enums import enum_names, from_enum, to_enum
from services.common.runtime import add_server_arguments, serve_threaded
from services.common.tensors import TensorError, from_tensor, to_tensor
from services.probing import mlp as mlp_probe
from services.probing.probes import PROBES, TARGET_TYPES, ProbeSettings, fit_probe
from services.probing.result import ProbeResult

log = logging.getLogger(__name__)

SERVICE_NAME = "ecglens.v1.ProbingService"
ALLOWED_PROBES = PROBES
DEFAULT_CV_FOLDS = 5
MAX_BOOTSTRAP = 100_000


class RequestError(ValueError):
    """A request that cannot be evaluated as sent; the text names the field and goes to the client."""


@dataclass
class ProbeInputs:
    """A decoded, validated EvaluateRequest."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    class_names: list[str]
    multi_label: bool
    seed: int
    cs: list[float]
    cv_folds: int
    probe: str = "linear"
    target_type: str = "classification"
    settings: ProbeSettings | None = None
    test_groups: list[str] | None = None
    bootstrap: int = 0
    bootstrap_seed: int = 0


def _decode(tensor, name: str, ndim: int) -> np.ndarray:
    """Decode a Tensor field to float32 with the expected rank; TensorError/RequestError otherwise."""
    array = from_tensor(tensor, name)
    if array.ndim != ndim:
        raise RequestError(f"{name} must be {ndim}-D, got shape {list(array.shape)}")
    # FLOAT16 is a wire format only: every computation sees float32, as the contract says.
    return array.astype(np.float32, copy=False)


def _check_finite(array: np.ndarray, name: str) -> None:
    """RequestError locating the first NaN/Inf."""
    bad = ~np.isfinite(array)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise RequestError(f"{name} contains NaN or Inf (first at row {row}, column {col})")


def _check_binary(array: np.ndarray, name: str) -> None:
    """RequestError locating the first label that is not exactly 0 or 1."""
    bad = (array != 0) & (array != 1)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise RequestError(f"{name} must contain only 0 and 1 (found {array[row, col]!r} at row {row}, "
                           f"column {col})")


def _check_one_hot(array: np.ndarray, name: str) -> None:
    """RequestError naming the first row of a multi-class target that is not one-hot."""
    sums = array.sum(axis=1)
    bad = np.flatnonzero(sums != 1)
    if bad.size:
        raise RequestError(f"{name} row {int(bad[0])} has {int(sums[bad[0]])} positives; multi-class labels "
                           "must be one-hot (set multi_label=true for multi-hot targets)")


def _check_rows(x: np.ndarray, y: np.ndarray, split: str) -> None:
    """RequestError unless a split's embeddings and labels have the same, non-zero row count."""
    if x.shape[0] != y.shape[0]:
        raise RequestError(f"{split}_labels has {y.shape[0]} rows but {split}_embeddings has {x.shape[0]}")
    if x.shape[0] == 0:
        raise RequestError(f"{split}_embeddings has no rows")


def _check_columns(inputs: ProbeInputs) -> None:
    """RequestError unless D agrees across splits and C agrees with class_names."""
    if inputs.test_x.shape[1] != inputs.train_x.shape[1]:
        raise RequestError(f"test_embeddings has D={inputs.test_x.shape[1]} columns but train_embeddings has "
                           f"D={inputs.train_x.shape[1]}")
    n_names = len(inputs.class_names)
    for name, y in (("train_labels", inputs.train_y), ("test_labels", inputs.test_y)):
        if y.shape[1] != n_names:
            raise RequestError(f"class_names has {n_names} names but {name} has {y.shape[1]} columns")
    if n_names == 0:
        raise RequestError("class_names is empty")
    if len(set(inputs.class_names)) != n_names:
        raise RequestError("class_names contains duplicates")
    if not inputs.multi_label and inputs.target_type == "classification" and n_names < 2:
        raise RequestError("class_names needs at least 2 classes for a multi-class probe")


def _check_values(inputs: ProbeInputs) -> None:
    """RequestError for non-finite inputs or labels that are not 0/1 (one-hot when multi-class)."""
    _check_finite(inputs.train_x, "train_embeddings")
    _check_finite(inputs.test_x, "test_embeddings")
    for name, y in (("train_labels", inputs.train_y), ("test_labels", inputs.test_y)):
        if inputs.target_type == "regression":
            _check_finite(y, name)
            continue
        _check_binary(y, name)
        if not inputs.multi_label:
            _check_one_hot(y, name)


def _check_evaluation(inputs: ProbeInputs) -> None:
    """RequestError for a bad target type / label combination or bootstrap options."""
    if inputs.target_type == "regression" and inputs.multi_label:
        raise RequestError("multi_label must be false when target_type is 'regression'")
    if inputs.test_groups and len(inputs.test_groups) != inputs.test_x.shape[0]:
        raise RequestError(f"test_groups has {len(inputs.test_groups)} entries but test_embeddings has "
                           f"{inputs.test_x.shape[0]} rows (leave it empty for one group per record)")
    if not 0 <= inputs.bootstrap <= MAX_BOOTSTRAP:
        raise RequestError(f"bootstrap must be in [0, {MAX_BOOTSTRAP}], got {inputs.bootstrap}")


def _decode_choice(enum, number: int, text: str, allowed: tuple[str, ...], default: str, enum_field: str,
                   text_field: str) -> str:
    """The enum's value when set, else the deprecated text (empty = default); RequestError if not allowed."""
    if number:
        value = from_enum(enum, number)
        if value not in allowed:
            raise RequestError(f"{enum_field} {number} is not supported; allowed: {', '.join(enum_names(enum))} "
                               f"(unspecified = {text_field})")
        return value
    value = text or default
    if value not in allowed:
        raise RequestError(f"{text_field} {text!r} is not supported; allowed: {', '.join(allowed)} (empty = {default})")
    return value


def _decode_probe(config: probing_pb2.ProbeConfig) -> str:
    """probe_kind when set, else the deprecated probe text ("" = linear); RequestError if unknown."""
    return _decode_choice(probing_pb2.ProbeKind, config.probe_kind, config.probe, ALLOWED_PROBES, "linear",
                          "config.probe_kind", "config.probe")


def _decode_config(config: probing_pb2.ProbeConfig) -> tuple[int, list[float], int]:
    """(seed, cs, cv_folds) from ProbeConfig; RequestError for an unknown probe or bad values."""
    _decode_probe(config)
    cs = [float(c) for c in config.cs]
    if any(not np.isfinite(c) or c <= 0 for c in cs):
        raise RequestError(f"config.cs must be finite and > 0, got {cs}")
    folds = config.cv_folds or DEFAULT_CV_FOLDS
    if folds < 2:
        raise RequestError(f"config.cv_folds must be at least 2 (0 = default {DEFAULT_CV_FOLDS}), got {folds}")
    return int(config.seed), cs, int(folds)


def _nonnegative(value: int, name: str) -> int:
    """value, or RequestError when it is negative."""
    if value < 0:
        raise RequestError(f"config.{name} must be >= 0 (0 = default), got {value}")
    return int(value)


def _decode_settings(config: probing_pb2.ProbeConfig, cs: list[float], cv_folds: int) -> ProbeSettings:
    """ProbeSettings from ProbeConfig, zero/empty fields meaning the documented defaults."""
    if any(k < 1 for k in config.ks):
        raise RequestError(f"config.ks must all be at least 1, got {list(config.ks)}")
    alphas = [float(a) for a in config.alphas]
    if any(not np.isfinite(a) or a < 0 for a in alphas):
        raise RequestError(f"config.alphas must be finite and >= 0, got {alphas}")
    val_fraction = config.val_fraction or mlp_probe.DEFAULT_VAL_FRACTION
    if not 0 < val_fraction < 1:
        raise RequestError(f"config.val_fraction must be in (0, 1) (0 = default), got {config.val_fraction}")
    return ProbeSettings(
        cs=tuple(cs) or None, cv_folds=cv_folds, ks=tuple(int(k) for k in config.ks) or None,
        distance_weighted=bool(config.distance_weighted), alphas=tuple(alphas) or None,
        hidden_units=_nonnegative(config.hidden_units, "hidden_units") or mlp_probe.DEFAULT_HIDDEN,
        max_epochs=_nonnegative(config.max_epochs, "max_epochs") or mlp_probe.DEFAULT_MAX_EPOCHS,
        patience=_nonnegative(config.patience, "patience") or mlp_probe.DEFAULT_PATIENCE,
        val_fraction=float(val_fraction))


def _decode_target_type(request: probing_pb2.EvaluateRequest) -> str:
    """target_kind when set, else the deprecated target_type text ("" = classification); RequestError if unknown."""
    return _decode_choice(probing_pb2.TargetKind, request.target_kind, request.target_type, TARGET_TYPES,
                          "classification", "target_kind", "target_type")


def decode_request(request: probing_pb2.EvaluateRequest) -> ProbeInputs:
    """Decode and validate an EvaluateRequest; TensorError or RequestError name the offending field."""
    seed, cs, cv_folds = _decode_config(request.config)
    inputs = ProbeInputs(
        train_x=_decode(request.train_embeddings, "train_embeddings", 2),
        train_y=_decode(request.train_labels, "train_labels", 2),
        test_x=_decode(request.test_embeddings, "test_embeddings", 2),
        test_y=_decode(request.test_labels, "test_labels", 2),
        class_names=list(request.class_names), multi_label=bool(request.multi_label),
        seed=seed, cs=cs, cv_folds=cv_folds, probe=_decode_probe(request.config),
        target_type=_decode_target_type(request),
        settings=_decode_settings(request.config, cs, cv_folds), test_groups=list(request.test_groups) or None,
        bootstrap=int(request.bootstrap), bootstrap_seed=int(request.bootstrap_seed))
    _check_rows(inputs.train_x, inputs.train_y, "train")
    _check_rows(inputs.test_x, inputs.test_y, "test")
    _check_columns(inputs)
    _check_values(inputs)
    _check_evaluation(inputs)
    return inputs


def build_response(request_id: str, result: ProbeResult) -> probing_pb2.EvaluateResponse:
    """EvaluateResponse carrying the result; every tensor as FLOAT32; `model` only for linear probes."""
    reply = probing_pb2.EvaluateResponse(
        request_id=request_id, metrics=result.metrics, per_class_auroc=result.per_class_auroc,
        test_logits=to_tensor(result.test_logits), warnings=result.warnings,
        metrics_ci_low=result.metrics_ci_low, metrics_ci_high=result.metrics_ci_high, probe=result.probe,
        target_type=result.target_type, hyperparameters=result.hyperparameters, bootstrap=result.bootstrap,
        probe_kind=to_enum(probing_pb2.ProbeKind, result.probe),
        target_kind=to_enum(probing_pb2.TargetKind, result.target_type))
    if result.probe == "linear":
        reply.model.CopyFrom(probing_pb2.LinearModel(
            coef=to_tensor(result.coef), intercept=to_tensor(result.intercept), mean=to_tensor(result.mean),
            scale=to_tensor(result.scale), c=result.c))
    if result.test_probabilities is not None:
        reply.test_probabilities.CopyFrom(to_tensor(result.test_probabilities))
    return reply


class ProbingServicer(probing_pb2_grpc.ProbingServiceServicer):
    """Evaluate: validate, fit the probe in this process, return metrics and the fitted model."""

    def Evaluate(self, request: probing_pb2.EvaluateRequest, context: grpc.ServicerContext):
        """Fit one probe on the training split and score it on the test split."""
        started = time.perf_counter()
        try:
            inputs = decode_request(request)
        except (TensorError, RequestError) as err:
            log.info("Evaluate %r rejected: %s", request.request_id, err)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        try:
            result = fit_probe(inputs.train_x, inputs.train_y, inputs.test_x, inputs.test_y, inputs.class_names,
                               inputs.multi_label, inputs.seed, inputs.probe, inputs.target_type, inputs.settings,
                               test_groups=inputs.test_groups, bootstrap=inputs.bootstrap,
                               bootstrap_seed=inputs.bootstrap_seed)
        except ValueError as err:
            # The data is well-formed but cannot support a probe (e.g. a class with no training samples).
            log.info("Evaluate %r failed precondition: %s", request.request_id, err)
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(err))
        log.info("Evaluate %r: %s %s n_train=%d n_test=%d D=%d C=%d multi_label=%s chose %s metrics=%s "
                 "bootstrap=%d in %.2fs", request.request_id, inputs.probe, inputs.target_type,
                 inputs.train_x.shape[0], inputs.test_x.shape[0], inputs.train_x.shape[1], len(inputs.class_names),
                 inputs.multi_label, result.hyperparameters, result.metrics, inputs.bootstrap,
                 time.perf_counter() - started)
        return build_response(request.request_id, result)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options of the probing server."""
    parser = argparse.ArgumentParser(prog="python -m services.probing", description=__doc__)
    return add_server_arguments(parser, port=8600, workers_help="concurrent Evaluate calls").parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Serve ecglens.v1.ProbingService until SIGTERM/SIGINT."""
    serve_threaded(probing_pb2_grpc.add_ProbingServiceServicer_to_server, ProbingServicer(), SERVICE_NAME,
                   parse_args(argv))


if __name__ == "__main__":
    main()
