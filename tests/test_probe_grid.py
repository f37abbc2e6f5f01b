"""The probe-grid engine: fit for fit equal to the served path, shared kNN fits, order, errors, Ray."""
from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler

from services.common.process import start_server
from services.probing.client import ProbingClient
from services.probing.grid import GridCell, run_grid
from services.probing.probes import ProbeSettings, fit_probe
from services.probing.sampling import scarcity_subset

D = 8
FAST = ProbeSettings(alphas=(1e-2,), max_epochs=15)  # keeps MLP fits short; passed to both sides alike
WIRE_FAST = {"alphas": [1e-2], "max_epochs": 15}


def classification_cell(key: str, multi_label: bool, seed: int, **fields) -> GridCell:
    """A cell on 150 records (float64 embeddings: the engine must cast them as the wire does)."""
    rng = np.random.default_rng(seed)
    n = 150
    if multi_label:
        y = (rng.random((n, 3)) < 0.35).astype(np.float32)
    else:
        y = np.eye(3, dtype=np.float32)[np.arange(n) % 3]
    x = y @ rng.normal(size=(3, D)) + rng.normal(size=(n, D))
    order = rng.permutation(n)
    defaults = {"settings": [(0.5, None), (1.0, None), (None, 3), (None, 500)], "seeds": [0, 1],
                "probes": ["linear", "knn", "mlp"], "groups": [f"p{i // 2}" for i in range(n)], "bootstrap": 30,
                "options": FAST}
    return GridCell(key=(key,), x=x, y=y, train=np.sort(order[:100]), test=np.sort(order[100:]),
                    class_names=["a", "b", "c"], multi_label=multi_label, **{**defaults, **fields})


def regression_cell(seed: int) -> GridCell:
    """A continuous target linear in the embeddings; groups are integers (sent as strings)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(120, D)).astype(np.float32)
    y = (x @ rng.normal(size=(D, 1)) + 0.3 * rng.normal(size=(120, 1))).astype(np.float32)
    return GridCell(key=("age",), x=x, y=y, train=np.arange(80), test=np.arange(80, 120), class_names=["age"],
                    multi_label=False, settings=[(0.3, None), (1.0, None)],
                    seeds=[0, 1], probes=["linear", "knn", "mlp"], target_type="regression",
                    groups=list(range(120)), bootstrap=30, options=FAST)


def served_subset(cell: GridCell, fraction, k_shot, seed: int) -> np.ndarray:
    """The subset the runner draws for the served path (its own code, repeated here)."""
    if cell.target_type == "regression":
        order = np.random.default_rng([seed, 4241]).permutation(len(cell.train))
        return np.sort(order[:max(5, int(round(fraction * len(cell.train))))])
    return scarcity_subset(cell.y[cell.train], fraction, k_shot, seed, class_names=cell.class_names)


def served_fit(client: ProbingClient, cell: GridCell, rows: np.ndarray, seed: int, probe: str):
    """One fit as the runner's Ray task makes it through the ProbingService."""
    groups = [cell.groups[i] for i in cell.test]
    return client.evaluate(cell.x[rows], cell.y[rows], cell.x[cell.test], cell.y[cell.test], cell.class_names,
                           cell.multi_label, seed, cs=cell.cs or None, cv_folds=cell.cv_folds, probe=probe,
                           target_type=cell.target_type, test_groups=groups, bootstrap=cell.bootstrap,
                           bootstrap_seed=seed, **WIRE_FAST)


@pytest.fixture(scope="module")
def server():
    handle = start_server("services.probing", [], name="probing")
    yield handle
    handle.stop()


def test_grid_equals_the_probing_service_fit_for_fit(server):
    cells = [classification_cell("mc", False, 1), classification_cell("ml", True, 2, cs=[0.01, 1.0], cv_folds=3),
             regression_cell(3)]
    ticks = []
    outcomes = run_grid(cells, executor="serial", progress=ticks.append)
    assert sum(ticks) == len(outcomes)
    errors = [o for o in outcomes if o.probe is None]
    assert [(o.key, o.k_shot, o.seed) for o in errors] == [(("mc",), 500, 0), (("mc",), 500, 1),
                                                            (("ml",), 500, 0), (("ml",), 500, 1)]
    with pytest.raises(ValueError) as drawn:
        scarcity_subset(cells[0].y[cells[0].train], None, 500, 0, class_names=cells[0].class_names)
    assert errors[0].error == str(drawn.value) and errors[0].result is None
    fitted = [o for o in outcomes if o.probe is not None]
    assert len(fitted) == 2 * (3 * 3 * 2) + 2 * 3 * 2
    with ProbingClient(server.address) as client:
        for outcome in fitted:
            cell = next(c for c in cells if c.key == outcome.key)
            rows = cell.train[served_subset(cell, outcome.train_fraction, outcome.k_shot, outcome.seed)]
            remote, local = served_fit(client, cell, rows, outcome.seed, outcome.probe), outcome.result
            label = (outcome.key, outcome.probe, outcome.train_fraction, outcome.k_shot, outcome.seed)
            assert outcome.error is None and outcome.n_train == len(rows) and outcome.n_test == len(cell.test)
            assert local.metrics == remote.metrics and local.per_class_auroc == remote.per_class_auroc, label
            assert local.metrics_ci_low == remote.metrics_ci_low, label
            assert local.metrics_ci_high == remote.metrics_ci_high, label
            assert local.hyperparameters == remote.hyperparameters and local.warnings == remote.warnings, label
            assert local.c == remote.c and local.bootstrap == remote.bootstrap == 30, label
            assert np.array_equal(local.test_logits.astype(np.float32), remote.test_logits), label
            assert np.array_equal(local.coef.astype(np.float32), remote.coef), label
            if local.test_probabilities is not None:
                assert np.array_equal(local.test_probabilities.astype(np.float32), remote.test_probabilities), label


def test_seed_family_grid_fits_equal_the_probing_service(server):
    families = ["random_forest", "svm", "gradient_boosting", "decision_tree"]
    cells = [classification_cell("mc", False, 13, settings=[(0.5, None)], seeds=[3], probes=families),
             replace(regression_cell(14), settings=[(1.0, None)], seeds=[2], probes=families)]
    outcomes = run_grid(cells, executor="serial")
    assert [o.probe for o in outcomes] == families * 2 and all(o.error is None for o in outcomes)
    with ProbingClient(server.address) as client:
        for outcome in outcomes:
            cell = next(c for c in cells if c.key == outcome.key)
            rows = cell.train[served_subset(cell, outcome.train_fraction, outcome.k_shot, outcome.seed)]
            remote, local = served_fit(client, cell, rows, outcome.seed, outcome.probe), outcome.result
            assert remote.probe == outcome.probe and local.metrics == remote.metrics, outcome.probe
            assert local.hyperparameters == remote.hyperparameters and local.warnings == remote.warnings
            assert np.array_equal(local.test_logits.astype(np.float32), remote.test_logits), outcome.probe


def test_knn_fits_are_shared_across_seeds_with_their_own_cis():
    cell = classification_cell("mc", False, 4, settings=[(1.0, None), (0.3, None)], seeds=[0, 1, 2], probes=["knn"])
    outcomes = run_grid([cell], executor="serial")
    full = [o for o in outcomes if o.train_fraction == 1.0]
    assert [o.shared_from for o in full] == [None, 0, 0]
    assert all(o.shared_from is None for o in outcomes if o.train_fraction == 0.3)
    assert all(o.result.metrics == full[0].result.metrics for o in full)
    assert full[1].result.metrics_ci_low != full[2].result.metrics_ci_low  # each seed resamples on its own
    x, y = cell.x.astype(np.float32), cell.y
    groups = [cell.groups[i] for i in cell.test]
    for outcome in full:
        ref = fit_probe(x[cell.train], y[cell.train], x[cell.test], y[cell.test], cell.class_names, False,
                        outcome.seed, "knn", settings=FAST, test_groups=groups, bootstrap=30,
                        bootstrap_seed=outcome.seed)
        assert outcome.result.metrics_ci_low == ref.metrics_ci_low
        assert outcome.result.metrics_ci_high == ref.metrics_ci_high
    assert full[1].result is not full[2].result


def test_outcomes_are_ordered_by_cell_probe_setting_seed():
    cells = [classification_cell("b", False, 5, probes=["knn", "linear"], settings=[(None, 3), (0.5, None)],
                                 bootstrap=0),
             classification_cell("a", False, 6, probes=["linear"], settings=[(0.5, None)], seeds=[2, 1])]
    outcomes = run_grid(cells, executor="serial")
    assert [(o.key[0], o.probe, o.train_fraction, o.k_shot, o.seed) for o in outcomes] == [
        ("b", "knn", None, 3, 0), ("b", "knn", None, 3, 1), ("b", "knn", 0.5, None, 0), ("b", "knn", 0.5, None, 1),
        ("b", "linear", None, 3, 0), ("b", "linear", None, 3, 1), ("b", "linear", 0.5, None, 0),
        ("b", "linear", 0.5, None, 1), ("a", "linear", 0.5, None, 2), ("a", "linear", 0.5, None, 1)]
    assert all(o.result.metrics_ci_low == {} and o.result.bootstrap == 0 for o in outcomes[:8])
    assert all(o.result.metrics_ci_low and o.result.bootstrap == 30 for o in outcomes[8:])


def test_whole_split_setting_and_fits_that_fail():
    cell = classification_cell("t", True, 7, settings=[(None, None)], seeds=[3], probes=["linear", "nope"],
                               groups=None)
    linear, unknown = run_grid([cell], executor="serial")
    assert linear.n_train == len(cell.train) and linear.error is None and linear.result.bootstrap == 0
    assert unknown.result is None and "probe 'nope' is not supported" in unknown.error


def test_regression_cells_take_fractions_only():
    cell = replace(regression_cell(9), settings=[(0.3, None), (None, 10)], seeds=[5], probes=["linear"])
    bad, ok = run_grid([cell], executor="serial")  # subset errors come first in their cell
    assert ok.probe == "linear" and ok.n_train == 24 and ok.error is None
    assert bad.probe is None and bad.k_shot == 10 and bad.seed == 5 and "k-shot" in bad.error


def test_sweep_options_equal_fit_probe_with_the_shared_standardiser_and_warm_starts():
    cell = classification_cell("mc", False, 10, settings=[(0.5, None)], seeds=[4], probes=["linear", "knn"],
                               groups=None, shared_standardisation=True, warm_start=True)
    x, y = cell.x.astype(np.float32), cell.y
    scaler = StandardScaler().fit(x[cell.train].astype(np.float64))
    rows = cell.train[scarcity_subset(y[cell.train], 0.5, None, 4, class_names=cell.class_names)]
    for outcome in run_grid([cell], executor="serial"):
        ref = fit_probe(x[rows], y[rows], x[cell.test], y[cell.test], cell.class_names, False, 4, outcome.probe,
                        settings=FAST, standardiser=(scaler.mean_, scaler.scale_),
                        warm_start=outcome.probe == "linear")
        plain = fit_probe(x[rows], y[rows], x[cell.test], y[cell.test], cell.class_names, False, 4, outcome.probe,
                          settings=FAST)
        assert np.array_equal(outcome.result.test_logits, ref.test_logits), outcome.probe
        assert not np.array_equal(outcome.result.test_logits, plain.test_logits), outcome.probe




def test_ray_executor_equals_serial_and_reports_failed_tasks(ray_session):
    class Crash:
        """Embeddings whose first read kills the worker process (a stand-in for an OOM kill)."""

        def __getitem__(self, rows):
            os._exit(1)

    cell = classification_cell("mc", False, 11, settings=[(1.0, None), (0.5, None)], probes=["linear", "knn"])
    broken = replace(regression_cell(12), key=("broken",), x=np.zeros((10, D)), probes=["linear"],
                     settings=[(0.5, None)], seeds=[0])
    crashing = replace(broken, key=("crash",), x=Crash())
    serial = run_grid([cell], executor="serial")
    ticks = []
    shared = replace(cell, x=ray_session.put(cell.x), groups=ray_session.put(cell.groups))
    remote = run_grid([shared, broken, crashing], progress=ticks.append)  # "auto": Ray is initialised
    assert sum(ticks) == len(remote) == len(serial) + 2
    for a, b in zip(serial, remote):
        assert (a.probe, a.train_fraction, a.seed, a.shared_from) == (b.probe, b.train_fraction, b.seed, b.shared_from)
        assert a.result.metrics == b.result.metrics and a.result.metrics_ci_low == b.result.metrics_ci_low
        assert np.array_equal(a.result.test_logits, b.result.test_logits)
    failed, crashed = remote[-2:]
    assert failed.key == ("broken",) and failed.result is None and failed.error.startswith("IndexError")
    assert crashed.key == ("crash",) and crashed.result is None and "Worker" in crashed.error, crashed.error
