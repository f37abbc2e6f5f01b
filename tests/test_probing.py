"""Probing service: linear probe on known-answer data, label-scarce subsets, and the gRPC server."""
from __future__ import annotations

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from scipy.special import expit, softmax
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.preprocessing import StandardScaler

from protos.ecglens.v1 import probing_pb2, probing_pb2_grpc
from services.common.process import start_server
from services.common.tensors import to_tensor
from services.probing.client import ProbingClient, build_request
from services.probing.efficiency import summarise
from services.probing.linear import fit_linear_probe
from services.probing.logistic import MAX_ITER, probabilities
from services.probing.sampling import scarcity_subset

D = 32
SERVICE = "ecglens.v1.ProbingService"


def blobs(n: int, n_classes: int, sep: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian class blobs in D dimensions: float32 embeddings and one-hot float32 labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, D)) * sep / np.sqrt(D)
    y = np.arange(n) % n_classes
    rng.shuffle(y)
    x = centres[y] + rng.normal(size=(n, D))
    return x.astype(np.float32), np.eye(n_classes, dtype=np.float32)[y]


def multi_hot(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """3 labels, each shifting its own direction; about a third of the records carry two labels."""
    rng = np.random.default_rng(seed)
    y = np.eye(3, dtype=np.float32)[np.arange(n) % 3]
    second = rng.random(n) < 0.35
    y[second, (np.arange(n)[second] + 1) % 3] = 1
    directions = rng.normal(size=(3, D)) * 2.5 / np.sqrt(D)
    return (y @ directions + rng.normal(size=(n, D))).astype(np.float32), y


def split(x: np.ndarray, y: np.ndarray, n_train: int) -> tuple[np.ndarray, ...]:
    """(train_x, train_y, test_x, test_y) by position."""
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def names(n_classes: int) -> list[str]:
    """Class names c0..c{n-1}."""
    return [f"c{k}" for k in range(n_classes)]


def model_logits(result, x: np.ndarray) -> np.ndarray:
    """Logits recomputed from the returned model exactly as the contract documents."""
    return ((x.astype(np.float64) - result.mean) / result.scale) @ result.coef.T + result.intercept


def sklearn_probabilities(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, c: float) -> np.ndarray:
    """predict_proba of a plain sklearn standardise + logistic-regression fit at C (the reference)."""
    # float64 as in the core: sklearn would otherwise fit float32 features along a different path.
    scaler = StandardScaler().fit(train_x.astype(np.float64))
    model = LogisticRegression(C=c, max_iter=MAX_ITER, random_state=0).fit(
        scaler.transform(train_x.astype(np.float64)), train_y)
    return model.predict_proba(scaler.transform(test_x.astype(np.float64)))


# --------------------------------------------------------------------------------------------------
# Known answers
# --------------------------------------------------------------------------------------------------

def test_separable_blobs_score_near_perfect():
    x, y = blobs(400, 4, sep=8.0, seed=1)
    result = fit_linear_probe(*split(x, y, 300), names(4), multi_label=False, seed=0)
    assert result.metrics["auroc_macro"] > 0.95
    assert result.metrics["balanced_accuracy"] > 0.9
    assert set(result.per_class_auroc) == set(names(4))
    assert result.warnings == []


def test_shuffled_labels_score_near_chance():
    x, y = blobs(600, 3, sep=8.0, seed=2)
    y = y[np.random.default_rng(3).permutation(len(y))]
    result = fit_linear_probe(*split(x, y, 400), names(3), multi_label=False, seed=0)
    assert 0.35 <= result.metrics["auroc_macro"] <= 0.65


def test_metrics_are_finite_and_match_sklearn():
    x, y = blobs(300, 3, sep=2.0, seed=4)
    train_x, train_y, test_x, test_y = split(x, y, 200)
    result = fit_linear_probe(train_x, train_y, test_x, test_y, names(3), multi_label=False, seed=0)
    assert set(result.metrics) == {"auroc_macro", "auprc_macro", "f1_macro", "balanced_accuracy", "accuracy", "ece",
                                   "brier"}
    assert all(np.isfinite(v) for v in result.metrics.values())
    pred = result.test_logits.argmax(axis=1)
    assert result.metrics["balanced_accuracy"] == pytest.approx(
        balanced_accuracy_score(test_y.argmax(axis=1), pred), abs=1e-12)


# --------------------------------------------------------------------------------------------------
# The returned linear model reproduces the probabilities
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_classes", [2, 4])
def test_model_logits_reproduce_sklearn_probabilities(n_classes):
    x, y = blobs(300, n_classes, sep=2.0, seed=5)
    train_x, train_y, test_x, test_y = split(x, y, 200)
    result = fit_linear_probe(train_x, train_y, test_x, test_y, names(n_classes), multi_label=False, seed=0)
    assert result.coef.shape == (n_classes, D) and result.intercept.shape == (n_classes,)
    logits = model_logits(result, test_x)
    np.testing.assert_allclose(logits, result.test_logits, atol=1e-9)
    reference = sklearn_probabilities(train_x, train_y.argmax(axis=1), test_x, result.c)
    np.testing.assert_allclose(softmax(logits, axis=1), reference, atol=1e-6)
    np.testing.assert_allclose(probabilities(logits, False), softmax(logits, axis=1), atol=1e-12)
    if n_classes == 2:
        # Binary: class 0 carries the zero logit, so softmax([0, z]) is sklearn's sigmoid(z).
        assert not result.coef[0].any() and result.intercept[0] == 0.0


def test_multilabel_probe_with_two_label_records():
    x, y = multi_hot(450, seed=6)
    assert (y.sum(axis=1) == 2).sum() > 50
    train_x, train_y, test_x, test_y = split(x, y, 300)
    result = fit_linear_probe(train_x, train_y, test_x, test_y, ["a", "b", "c"], multi_label=True, seed=0)
    assert result.coef.shape == (3, D)
    assert set(result.per_class_auroc) == {"a", "b", "c"}
    assert result.metrics["auroc_macro"] > 0.8
    assert all(np.isfinite(v) for v in result.metrics.values())
    logits = model_logits(result, test_x)
    np.testing.assert_allclose(logits, result.test_logits, atol=1e-9)
    for k in range(3):
        reference = sklearn_probabilities(train_x, train_y[:, k], test_x, result.c)[:, 1]
        np.testing.assert_allclose(expit(logits[:, k]), reference, atol=1e-6)


def test_same_inputs_give_identical_outputs():
    x, y = blobs(240, 3, sep=2.0, seed=7)
    runs = [fit_linear_probe(*split(x, y, 160), names(3), multi_label=False, seed=11) for _ in range(2)]
    first, second = runs
    assert first.metrics == second.metrics and first.per_class_auroc == second.per_class_auroc
    assert first.c == second.c and first.warnings == second.warnings
    for field in ("coef", "intercept", "mean", "scale", "test_logits"):
        assert np.array_equal(getattr(first, field), getattr(second, field)), field


def test_class_missing_from_test_is_left_out_and_warned():
    x, y = blobs(300, 3, sep=4.0, seed=8)
    train_x, train_y, test_x, test_y = split(x, y, 200)
    keep = test_y[:, 2] == 0
    result = fit_linear_probe(train_x, train_y, test_x[keep], test_y[keep], names(3), multi_label=False, seed=0)
    assert "c2" not in result.per_class_auroc
    assert any("'c2'" in w and "no positives" in w for w in result.warnings)
    assert all(np.isfinite(v) for v in result.metrics.values())


def test_class_with_one_training_sample_skips_cv():
    x, y = blobs(300, 3, sep=4.0, seed=9)
    train_x, train_y, test_x, test_y = split(x, y, 200)
    rows = np.flatnonzero(train_y[:, 2] == 0)[:150].tolist() + [int(np.flatnonzero(train_y[:, 2] == 1)[0])]
    result = fit_linear_probe(train_x[rows], train_y[rows], test_x, test_y, names(3), multi_label=False, seed=0)
    assert result.c == 1.0
    assert any("'c2'" in w and "inner CV skipped" in w for w in result.warnings)


def test_class_without_training_samples_is_refused():
    x, y = blobs(200, 3, sep=4.0, seed=10)
    train_x, train_y, test_x, test_y = split(x, y, 150)
    keep = train_y[:, 1] == 0
    with pytest.raises(ValueError, match="'c1' has no training samples"):
        fit_linear_probe(train_x[keep], train_y[keep], test_x, test_y, names(3), multi_label=False, seed=0)


# --------------------------------------------------------------------------------------------------
# Label-scarce subsets
# --------------------------------------------------------------------------------------------------

SHARES = (0.5, 0.3, 0.15, 0.04, 0.01)


def imbalanced_labels(n: int = 2000) -> np.ndarray:
    """One-hot labels with the class counts n * SHARES, in shuffled order."""
    classes = np.repeat(np.arange(len(SHARES)), [round(n * s) for s in SHARES])
    return np.eye(len(SHARES))[np.random.default_rng(12).permutation(classes)]


def test_fraction_subsets_are_nested_and_stratified():
    labels = imbalanced_labels()
    totals = labels.sum(axis=0)
    previous: set[int] = set()
    for fraction in (0.01, 0.05, 0.1, 0.25, 0.5, 1.0):
        idx = scarcity_subset(labels, fraction, None, seed=3)
        assert previous <= set(idx.tolist()), fraction
        previous = set(idx.tolist())
        counts = labels[idx].sum(axis=0)
        assert counts.min() >= 1, fraction
        if fraction >= 0.05:
            assert len(idx) == round(fraction * len(labels))
            assert np.all(np.abs(counts - fraction * totals) <= 1), (fraction, counts, fraction * totals)
    assert len(previous) == len(labels)


def test_every_class_present_in_a_tiny_fraction():
    labels = imbalanced_labels()
    counts = labels[scarcity_subset(labels, 0.001, None, seed=0)].sum(axis=0)
    assert np.all(counts >= 1)


def test_subsets_depend_on_seed_only():
    labels = imbalanced_labels()
    a, b = (scarcity_subset(labels, 0.1, None, seed=5) for _ in range(2))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, scarcity_subset(labels, 0.1, None, seed=6))


def test_k_shot_counts_are_exact_and_nested():
    labels = imbalanced_labels()
    previous: set[int] = set()
    for k in (1, 2, 5, 10):
        idx = scarcity_subset(labels, None, k, seed=4)
        assert np.array_equal(labels[idx].sum(axis=0), np.full(len(SHARES), k))
        assert previous <= set(idx.tolist())
        previous = set(idx.tolist())


def test_impossible_subsets_name_the_class():
    labels = np.zeros((50, 3))
    labels[:40, 0], labels[40:, 1] = 1, 1  # NORM 40, MI 10, STTC none
    with pytest.raises(ValueError, match="'STTC'.*no training samples"):
        scarcity_subset(labels, 0.1, None, seed=0, class_names=["NORM", "MI", "STTC"])
    with pytest.raises(ValueError, match="column 2"):
        scarcity_subset(labels, None, 1, seed=0)
    with pytest.raises(ValueError, match="'MI' \\(column 1\\) has 10 training samples but k_shot=20"):
        scarcity_subset(labels[:, :2], None, 20, seed=0, class_names=["NORM", "MI"])


def test_multilabel_and_grouped_subsets():
    _, labels = multi_hot(300, seed=13)
    small, large = (scarcity_subset(labels, f, None, seed=1) for f in (0.02, 0.2))
    assert set(small.tolist()) <= set(large.tolist())
    assert np.all(labels[small].sum(axis=0) >= 1)
    groups = np.arange(300) // 3  # three records per "patient"
    idx = scarcity_subset(labels, 0.1, None, seed=1, groups=groups)
    chosen = np.unique(groups[idx])
    assert len(chosen) == 10 and np.array_equal(np.sort(idx), np.flatnonzero(np.isin(groups, chosen)))


def test_summarise():
    assert summarise([1.0, 2.0, 3.0]) == {"mean": 2.0, "std": 1.0, "min": 1.0, "max": 3.0, "n": 3}
    assert summarise([0.7]) == {"mean": 0.7, "std": 0.0, "min": 0.7, "max": 0.7, "n": 1}


# --------------------------------------------------------------------------------------------------
# The gRPC service in a separate process
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server():
    handle = start_server("services.probing", [], name="probing")
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.address) as channel:
        yield probing_pb2_grpc.ProbingServiceStub(channel)


def assert_serving(address: str) -> None:
    """The server still reports SERVING for the probing service."""
    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=SERVICE),
                                                          timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("multi_label", [False, True])
def test_grpc_evaluate_equals_in_process_core(server, multi_label):
    x, y = multi_hot(300, seed=14) if multi_label else blobs(300, 3, sep=2.0, seed=14)
    parts = split(x, y, 200)
    local = fit_linear_probe(*parts, names(3), multi_label=multi_label, seed=21)
    with ProbingClient(server.address) as client:
        remote = client.evaluate(*parts, names(3), multi_label=multi_label, seed=21)
    assert remote.metrics.keys() == local.metrics.keys()
    for key, value in local.metrics.items():
        assert remote.metrics[key] == pytest.approx(value, abs=1e-9), key
    assert remote.per_class_auroc == pytest.approx(local.per_class_auroc, abs=1e-9)
    assert remote.c == local.c and remote.warnings == local.warnings
    for field in ("coef", "intercept", "mean", "scale", "test_logits"):
        assert np.array_equal(getattr(remote, field), getattr(local, field).astype(np.float32)), field


def _valid_request() -> probing_pb2.EvaluateRequest:
    """A small, well-formed multi-class request."""
    x, y = blobs(60, 3, sep=3.0, seed=15)
    return build_request(*split(x, y, 40), names(3), multi_label=False, seed=0, cs=[0.1, 1.0], cv_folds=3)


def _mismatched_rows(request):
    request.train_labels.CopyFrom(to_tensor(np.eye(3, dtype=np.float32)[np.arange(39) % 3]))


def _nan_embedding(request):
    x = np.zeros((20, D), dtype=np.float32)
    x[4, 7] = np.nan
    request.test_embeddings.CopyFrom(to_tensor(x))


def _short_class_names(request):
    del request.class_names[-1]


def _unknown_probe(request):
    # As an old client sends it: text only (a set probe_kind would take precedence).
    request.config.probe = "xgboost"
    request.config.ClearField("probe_kind")


def _unknown_probe_kind(request):
    request.config.probe_kind = 9


def _unknown_target_type(request):
    request.target_type = "ordinal"
    request.ClearField("target_kind")


def _unknown_target_kind(request):
    request.target_kind = 7


def _short_test_groups(request):
    request.test_groups.extend(["p1", "p2"])


def _regression_multilabel(request):
    request.target_kind, request.multi_label = probing_pb2.TARGET_KIND_REGRESSION, True


def _negative_bootstrap(request):
    request.bootstrap = -5


def _bad_val_fraction(request):
    request.config.val_fraction = 1.5


def _truncated_tensor(request):
    request.train_embeddings.data = request.train_embeddings.data[:-4]


@pytest.mark.parametrize("corrupt, message", [
    (_mismatched_rows, "train_labels has 39 rows but train_embeddings has 40"),
    (_nan_embedding, "test_embeddings contains NaN or Inf (first at row 4, column 7)"),
    (_short_class_names, "class_names has 2 names but train_labels has 3 columns"),
    (_unknown_probe, "config.probe 'xgboost' is not supported; allowed: linear, knn, mlp, random_forest, svm, "
                     "gradient_boosting, decision_tree"),
    (_unknown_probe_kind, "config.probe_kind 9 is not supported; allowed: PROBE_KIND_LINEAR, PROBE_KIND_KNN, "
                          "PROBE_KIND_MLP, PROBE_KIND_RANDOM_FOREST, PROBE_KIND_SVM, PROBE_KIND_GRADIENT_BOOSTING, "
                          "PROBE_KIND_DECISION_TREE"),
    (_truncated_tensor, "train_embeddings: data has"),
    (_unknown_target_type, "target_type 'ordinal' is not supported"),
    (_unknown_target_kind, "target_kind 7 is not supported; allowed: TARGET_KIND_CLASSIFICATION"),
    (_short_test_groups, "test_groups has 2 entries but test_embeddings has 20 rows"),
    (_regression_multilabel, "multi_label must be false when target_type is 'regression'"),
    (_negative_bootstrap, "bootstrap must be in [0, 100000], got -5"),
    (_bad_val_fraction, "config.val_fraction must be in (0, 1)"),
])
def test_grpc_rejects_bad_input_and_keeps_serving(server, stub, corrupt, message):
    request = _valid_request()
    corrupt(request)
    with pytest.raises(grpc.RpcError) as err:
        stub.Evaluate(request, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in err.value.details()
    assert_serving(server.address)


def test_grpc_untrainable_class_is_failed_precondition(server, stub):
    x, y = blobs(60, 3, sep=3.0, seed=16)
    keep = y[:, 1] == 0
    request = build_request(x[keep][:30], y[keep][:30], x[40:], y[40:], names(3), multi_label=False, seed=0)
    with pytest.raises(grpc.RpcError) as err:
        stub.Evaluate(request, timeout=30)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "'c1' has no training samples" in err.value.details()
    assert_serving(server.address)


# --------------------------------------------------------------------------------------------------
# The gRPC service: every probe kind, regression, CIs and probabilities
# --------------------------------------------------------------------------------------------------

def _assert_same_result(remote, local) -> None:
    """A result that crossed the wire equals the in-process one (tensors as float32)."""
    assert remote.metrics.keys() == local.metrics.keys()
    for key, value in local.metrics.items():
        assert remote.metrics[key] == pytest.approx(value, abs=1e-9), key
    assert remote.per_class_auroc == pytest.approx(local.per_class_auroc, abs=1e-9)
    assert remote.metrics_ci_low == pytest.approx(local.metrics_ci_low, abs=1e-9)
    assert remote.metrics_ci_high == pytest.approx(local.metrics_ci_high, abs=1e-9)
    assert remote.hyperparameters == local.hyperparameters and remote.warnings == local.warnings
    assert (remote.probe, remote.target_type, remote.bootstrap) == (local.probe, local.target_type, local.bootstrap)
    assert np.array_equal(remote.test_logits, local.test_logits.astype(np.float32))
    if local.test_probabilities is None:
        assert remote.test_probabilities is None
    else:
        assert np.array_equal(remote.test_probabilities, local.test_probabilities.astype(np.float32))


@pytest.mark.parametrize("probe, multi_label", [("knn", False), ("knn", True), ("mlp", False), ("mlp", True),
                                                ("linear", True)])
def test_grpc_probe_kinds_with_cis_equal_in_process(server, probe, multi_label):
    from services.probing.probes import ProbeSettings, fit_probe

    x, y = multi_hot(240, seed=22) if multi_label else blobs(240, 3, sep=3.0, seed=22)
    parts = split(x, y, 160)
    groups = [f"p{i // 2}" for i in range(80)]
    options = {"ks": [1, 5, 9], "alphas": [1e-3, 1e-1], "max_epochs": 40}
    local = fit_probe(*parts, names(3), multi_label, 7, probe,
                      settings=ProbeSettings(ks=(1, 5, 9), alphas=(1e-3, 1e-1), max_epochs=40),
                      test_groups=groups, bootstrap=100, bootstrap_seed=3)
    with ProbingClient(server.address) as client:
        remote = client.evaluate(*parts, names(3), multi_label, 7, probe=probe, test_groups=groups, bootstrap=100,
                                 bootstrap_seed=3, **options)
    _assert_same_result(remote, local)
    assert set(remote.metrics_ci_low) == set(remote.metrics)
    if probe == "linear":
        assert np.array_equal(remote.coef, local.coef.astype(np.float32)) and remote.c == local.c
    else:
        assert remote.coef.size == 0 and remote.c == 0.0


@pytest.mark.parametrize("probe", ["linear", "knn", "mlp"])
def test_grpc_regression_equals_in_process(server, probe):
    from services.probing.probes import ProbeSettings, fit_probe

    rng = np.random.default_rng(23)
    x = rng.normal(size=(200, D)).astype(np.float32)
    y = (x @ rng.normal(size=(D, 1)) + 0.5 * rng.normal(size=(200, 1))).astype(np.float32)
    parts = split(x, y, 140)
    local = fit_probe(*parts, ["age"], False, 1, probe, "regression", ProbeSettings(max_epochs=40), bootstrap=80)
    with ProbingClient(server.address) as client:
        remote = client.evaluate(*parts, ["age"], False, 1, probe=probe, target_type="regression", max_epochs=40,
                                 bootstrap=80)
    _assert_same_result(remote, local)
    assert set(remote.metrics) == {"mae", "rmse", "r2", "pearson_r"}
    assert (remote.coef.shape == (1, D)) == (probe == "linear")


def test_grpc_response_fields_on_the_wire(stub):
    x, y = blobs(90, 3, sep=3.0, seed=24)
    request = build_request(*split(x, y, 60), names(3), multi_label=False, seed=0, probe="knn", bootstrap=50)
    reply = stub.Evaluate(request, timeout=60)
    assert reply.probe == "knn" and reply.target_type == "classification" and reply.bootstrap == 50
    assert (reply.probe_kind, reply.target_kind) == (probing_pb2.PROBE_KIND_KNN, probing_pb2.TARGET_KIND_CLASSIFICATION)
    assert not reply.HasField("model") and reply.HasField("test_probabilities")
    assert list(reply.test_probabilities.shape) == [30, 3] and set(reply.hyperparameters) == {"k", "distance_weighted"}
    plain = stub.Evaluate(build_request(*split(x, y, 60), names(3), multi_label=False, seed=0), timeout=60)
    assert plain.probe == "linear" and plain.HasField("model") and not plain.metrics_ci_low
    assert plain.probe_kind == probing_pb2.PROBE_KIND_LINEAR


def test_grpc_reads_the_enum_when_set_else_the_deprecated_text(stub):
    x, y = blobs(90, 3, sep=3.0, seed=24)
    parts = (*split(x, y, 60), names(3))
    enum_only = build_request(*parts, multi_label=False, seed=0, probe="knn")
    enum_only.config.probe = ""  # a client that only knows the enum
    text_only = build_request(*parts, multi_label=False, seed=0, probe="knn")
    text_only.config.ClearField("probe_kind")  # a client that predates the enum
    both_disagree = build_request(*parts, multi_label=False, seed=0, probe="knn")
    both_disagree.config.probe = "mlp"  # the enum wins
    for request in (enum_only, text_only, both_disagree):
        reply = stub.Evaluate(request, timeout=60)
        assert (reply.probe, reply.probe_kind) == ("knn", probing_pb2.PROBE_KIND_KNN)
    regression = build_request(x[:60, :], x[:60, :1], x[60:, :], x[60:, :1], ["first-dim"], multi_label=False,
                               seed=0, target_type="regression")
    regression.target_type = ""  # enum only: REGRESSION, not the empty text's classification
    reply = stub.Evaluate(regression, timeout=60)
    assert (reply.target_type, reply.target_kind) == ("regression", probing_pb2.TARGET_KIND_REGRESSION)


def _per_c_keys(x, y, multi_label, seed, cs, folds):
    """The C-selection keys as computed before folds were standardised once: fit_standardised per (C, fold)."""
    from services.probing import c_selection as csel
    from services.probing.logistic import fit_standardised

    splits = csel._fold_splits(x, y, folds, seed)
    keys = []
    for c in cs:
        scores = []
        for tr, va in splits:
            keep = csel._fold_keep(y, tr, multi_label)
            y_fit = y[:, keep] if multi_label else y
            fit = fit_standardised(x[tr], y_fit[tr], c, seed, multi_label)
            scores.append(csel._fold_eval(x, y_fit, va, fit, multi_label))
        keys.append(csel._cv_key(np.array(scores)))
    return keys


@pytest.mark.parametrize("multi_label", [False, True])
def test_standardising_each_fold_once_gives_the_same_choice_bit_for_bit(multi_label, monkeypatch):
    from services.probing import c_selection as csel

    rng = np.random.default_rng(5)
    x = rng.normal(size=(120, 7)) * rng.uniform(0.1, 10, 7) + rng.normal(size=7)
    if multi_label:
        y = (x[:, :3] + rng.normal(size=(120, 3)) > 0).astype(float)
    else:
        y = np.eye(3)[np.argmax(x[:, :3] + rng.normal(size=(120, 3)), axis=1)]
    cs, seen = [1e-3, 1e-1, 10.0], []
    monkeypatch.setattr(csel, "_best", lambda grid, keys: seen.append(list(keys)) or 0)  # record every C's key
    assert csel.select_c(x, y, ["a", "b", "c"], multi_label, 3, cs, 4, []) == cs[0]
    assert seen[0] == _per_c_keys(x, y, multi_label, 3, cs, 4)  # exact: same floats, same order of work
