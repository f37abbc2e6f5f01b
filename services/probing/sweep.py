"""Label-efficiency sweeps: every (training subset, seed, probe kind) fit over one train/test split.

`sweep` is the reusable path for the orchestrator (inside one probing request or one Ray task) and
for bench/probe_sweep.py. Work shared across the grid:

  * Subsets: each seed's nested fraction order is built once for all fractions (core.scarcity_subsets);
    subsets are identical to core.scarcity_subset's. Regression targets are subsampled unstratified
    (every record in one stratum; k_shot = k records).
  * Shared standardisation (shared_standardisation=True, default): one StandardScaler fitted on the
    whole training split passed in, used by every fit instead of a scaler fitted on each subset (and,
    for linear probes, on each inner-CV fold). It uses embedding statistics of training records outside
    the subset, never labels and never the test split, so nothing leaks into the evaluation; but a
    subset's probe then differs slightly from one standardised on the subset alone (the L2 penalty and
    the cosine geometry depend on the scaling).
  * Warm starts (warm_start=True, default; linear classification only): the C grid is walked from strong
    to weak regularisation inside each fold, each fit starting from the previous solution, and the final
    fit starts from the fold-average solution at the chosen C. Same convex optimum, so results move only
    within the lbfgs tolerance (a near-tie between two Cs can flip). sklearn's LogisticRegressionCV does
    the same, so per fit this matches it rather than beats it. Warm starts across fractions (from the
    next smaller fraction's solution at the same C) were measured and rejected: 832 lbfgs iterations
    against 357 for the C path on a 16k x 768 split, the smaller subset's weak-C solution being far off.
  * kNN fits depend on the seed only through the subset, so identical subsets (every seed at fraction 1.0)
    are fitted once and the result is shared (rows say which seed computed it in `shared_from`).
  * Parallelism: with Ray initialised (or executor="ray"), each fit is one Ray task (num_cpus=1) reading
    the arrays from the object store; largest subsets are submitted first so the tail is short.

Each row equals fit_probe(subset of train, test, seed, probe, standardiser=<the shared one or None>,
warm_start=<warm_start for linear>) exactly; with shared_standardisation=False and warm_start=False it is
exactly the individual fit_probe call with the protocol's defaults.
"""
from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from typing import Sequence

import numpy as np
from sklearn.preprocessing import StandardScaler

from services.probing.core import ProbeResult, scarcity_subsets
from services.probing.efficiency import label_efficiency
from services.probing.probes import PROBES, TARGET_TYPES, ProbeSettings, _prepare, fit_probe

Setting = tuple[float | None, int | None]
_REMOTE = None


def _subsets(train_y: np.ndarray, settings: Sequence[Setting], seeds: Sequence[int], regression: bool,
             train_groups, class_names: Sequence[str]) -> dict[int, list[np.ndarray]]:
    """Per seed, the training indices of every setting (one order computation per seed)."""
    labels = np.ones((train_y.shape[0], 1)) if regression else train_y
    names = ["record"] if regression else class_names
    return {seed: scarcity_subsets(labels, settings, seed, train_groups, class_names=names) for seed in seeds}


def _job_kwargs(probe: str, target_type: str, probe_settings: ProbeSettings, test_groups, bootstrap: int,
                bootstrap_seed: int, standardiser, warm_start: bool) -> dict:
    """fit_probe keyword arguments shared by every fit of one probe kind."""
    return {"probe": probe, "target_type": target_type, "settings": probe_settings, "test_groups": test_groups,
            "bootstrap": bootstrap, "bootstrap_seed": bootstrap_seed, "standardiser": standardiser,
            "warm_start": warm_start and probe == "linear"}


def run_fit(arrays: tuple, index: np.ndarray, class_names: list[str], multi_label: bool, seed: int,
            kwargs: dict) -> tuple[ProbeResult | None, str | None, float, float]:
    """(result, error message, wall seconds, CPU seconds) of one fit on the rows `index` of the training split."""
    train_x, train_y, test_x, test_y = arrays
    started, cpu = time.perf_counter(), time.process_time()
    try:
        result, error = fit_probe(train_x[index], train_y[index], test_x, test_y, class_names, multi_label, seed,
                                  **kwargs), None
    except ValueError as err:
        result, error = None, str(err)
    # CPU time too: on shared cores wall time measures the neighbours as much as the fit.
    return result, error, time.perf_counter() - started, time.process_time() - cpu


def _remote_fit():
    """run_fit as a Ray remote function (created once per process; Ray imported only when used)."""
    global _REMOTE
    if _REMOTE is None:
        import ray

        _REMOTE = ray.remote(num_cpus=1)(run_fit)
    return _REMOTE


def _execute(jobs: list[tuple], arrays: tuple, class_names: list[str], multi_label: bool,
             executor: str) -> list[tuple]:
    """Run (index, seed, kwargs) jobs serially or as Ray tasks; results in job order."""
    if executor == "serial":
        return [run_fit(arrays, idx, class_names, multi_label, seed, kw) for idx, seed, kw in jobs]
    import ray

    remote, shared = _remote_fit(), ray.put(arrays)
    # Largest subsets first: the longest fits start early and the short ones fill the gaps.
    order = sorted(range(len(jobs)), key=lambda j: -len(jobs[j][0]))
    refs = {j: remote.remote(shared, jobs[j][0], class_names, multi_label, jobs[j][1], jobs[j][2]) for j in order}
    return [ray.get(refs[j]) for j in range(len(jobs))]


def _resolve_executor(executor: str) -> str:
    """"serial" or "ray" ("auto" = ray when a Ray session is initialised)."""
    if executor == "auto":
        try:
            import ray

            return "ray" if ray.is_initialized() else "serial"
        except ImportError:
            return "serial"
    if executor not in ("serial", "ray"):
        raise ValueError(f"executor must be 'auto', 'serial' or 'ray', got {executor!r}")
    return executor


def _row(probe: str, setting: Setting, seed: int, n_train: int, outcome: tuple, shared_from: int | None,
         keep_results: bool) -> dict:
    """One output row."""
    result, error, seconds, cpu_seconds = outcome
    row = {"probe": probe, "fraction": setting[0], "k_shot": setting[1], "seed": seed, "n_train": n_train,
           "fit_s": seconds, "fit_cpu_s": cpu_seconds, "shared_from": shared_from, "error": error}
    if result is not None:
        row.update(metrics=result.metrics, per_class_auroc=result.per_class_auroc,
                   metrics_ci_low=result.metrics_ci_low, metrics_ci_high=result.metrics_ci_high,
                   hyperparameters=result.hyperparameters, warnings=result.warnings)
        if keep_results:
            row["result"] = result
    return row


def _plan(probes: Sequence[str], settings: Sequence[Setting], seeds: Sequence[int],
          subsets: dict[int, list[np.ndarray]]) -> tuple[list[tuple], dict[tuple, tuple[int, int | None]]]:
    """(unique fits (probe, setting index, seed), row key -> (fit number, seed it is shared from))."""
    fits, rows, knn_seen = [], {}, {}
    for probe in probes:
        for i in range(len(settings)):
            for seed in seeds:
                if probe == "knn":
                    digest = hashlib.sha1(subsets[seed][i].tobytes()).hexdigest()
                    if digest in knn_seen:
                        first = knn_seen[digest]
                        rows[(probe, i, seed)] = (first, fits[first][2])
                        continue
                    knn_seen[digest] = len(fits)
                rows[(probe, i, seed)] = (len(fits), None)
                fits.append((probe, i, seed))
    return fits, rows


def sweep(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
          class_names: Sequence[str], multi_label: bool, settings: Sequence[Setting], seeds: Sequence[int],
          probes: Sequence[str], *, target_type: str = "classification",
          probe_settings: ProbeSettings | None = None, train_groups: Sequence | np.ndarray | None = None,
          test_groups: Sequence | np.ndarray | None = None, bootstrap: int = 0, bootstrap_seed: int = 0,
          shared_standardisation: bool = True, warm_start: bool = True, executor: str = "auto",
          keep_results: bool = True) -> list[dict]:
    """Fit every probe on every (fraction | None, k_shot | None) setting x seed; rows in probe, setting, seed order.

    Row keys: probe, fraction, k_shot, seed, n_train, fit_s and fit_cpu_s (wall and CPU seconds inside the
    fit; a shared row repeats its source's), shared_from (the
    seed whose identical kNN fit the row reuses, else None), error (None, or why fit_probe refused that
    subset), and when it succeeded metrics, per_class_auroc, metrics_ci_low, metrics_ci_high,
    hyperparameters, warnings and (keep_results) result: the full ProbeResult. Bad arguments, and a
    setting that cannot be drawn (e.g. k_shot above a class's size), raise ValueError before any fit.
    """
    unknown = [p for p in probes if p not in PROBES]
    if unknown or target_type not in TARGET_TYPES:
        raise ValueError(f"unknown probe(s) {unknown} or target_type {target_type!r}")
    train_x, train_y, test_x, test_y, names = _prepare(train_x, train_y, test_x, test_y, class_names, multi_label,
                                                       target_type)
    regression = target_type == "regression"
    subsets = _subsets(train_y, settings, seeds, regression, train_groups, names)
    standardiser = None
    if shared_standardisation:
        scaler = StandardScaler().fit(train_x)
        standardiser = (scaler.mean_.copy(), scaler.scale_.copy())
    probe_settings = (probe_settings or ProbeSettings()).check()
    fits, rows = _plan(probes, settings, seeds, subsets)
    kwargs = {p: _job_kwargs(p, target_type, probe_settings, test_groups, bootstrap, bootstrap_seed, standardiser,
                             warm_start) for p in probes}
    jobs = [(subsets[seed][i], seed, kwargs[probe]) for probe, i, seed in fits]
    outcomes = _execute(jobs, (train_x, train_y, test_x, test_y), names, multi_label, _resolve_executor(executor))
    out = []
    for probe in probes:
        for i, setting in enumerate(settings):
            for seed in seeds:
                fit_no, shared_from = rows[(probe, i, seed)]
                out.append(_row(probe, setting, seed, len(subsets[seed][i]), outcomes[fit_no], shared_from,
                                keep_results))
    return out


def efficiency_table(rows: Sequence[dict], metric: str = "auroc_macro") -> dict[str, dict]:
    """Per probe: mean metric over seeds at each fraction, and label_efficiency of that curve."""
    by_probe: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row.get("error") is None and row["fraction"] is not None and metric in row.get("metrics", {}):
            by_probe[row["probe"]][row["fraction"]].append(row["metrics"][metric])
    table = {}
    for probe, curve in by_probe.items():
        fractions = sorted(curve)
        means = [float(np.mean(curve[f])) for f in fractions]
        table[probe] = {"fractions": fractions, "mean": means, **label_efficiency(fractions, means)}
    return table
