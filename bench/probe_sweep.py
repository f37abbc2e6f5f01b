"""Label-efficiency sweep: a naive one-process scikit-learn loop vs ECGLens's probe-grid engine.

    python bench/probe_sweep.py [--quick] [--records 20000] [--dim 768] [--seeds 10] [--naive-seeds 1]

Data: synthetic embeddings (6 Gaussian class blobs with unequal priors in a 32-dimensional subspace,
the rest noise, then a random rotation and per-dimension scales/offsets so standardisation matters),
split 80/20 into train/test. Grid: fractions x seeds x probe kinds (linear, knn, mlp). The default
fractions (0.5% .. 10%, i.e. 80 .. 1600 training records) keep the run near 3 minutes on 2 shared
cores; `--fractions 0.01 0.03 0.1 0.3 1.0 --seeds 3` gives the whole curve in ~8 minutes.

(a) naive: for every fit, a fresh pipeline as one would write it with scikit-learn alone:
    linear = StandardScaler + LogisticRegressionCV(Cs = the ECGLens C grid, 5 stratified folds, AUROC);
    knn    = StandardScaler + GridSearchCV(KNeighborsClassifier(cosine, brute), k grid, 5 folds, AUROC);
    mlp    = StandardScaler + the same MLP protocol written plainly: a stratified 15% validation split,
             per alpha an MLPClassifier(256) trained by partial_fit epochs until validation AUROC stops
             improving (float64, as StandardScaler returns it). Subsets come from sampling.scarcity_subset
             per fit. Timed on --naive-seeds seeds
    and extrapolated to all seeds (per-fit times barely depend on the seed); say --naive-seeds = --seeds
    to time every fit.
(b) ours: services.probing.grid.run_grid, the path `ecglens run` takes, with its defaults (each fit
    standardised on its own subset, a cold C grid, exactly the protocol the naive loop follows),
    one kNN fit per distinct subset, per-seed subset orders, and the fits as Ray tasks on
    ray.init(num_cpus=--cpus). --shared-standardisation and --warm-start time the engine's two
    optional shortcuts (they change results within solver tolerance). Ray start-up is timed
    separately and not counted in the sweep time.

Printed: time per fit (mean per probe kind and fraction) of both, totals, and the ratios naive / ours,
in wall time and in CPU time. On shared cores wall time also measures the neighbours' load (it moved
2-3x between runs here); CPU time is the work each side did.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.linear_model import LogisticRegressionCV  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split  # noqa: E402
from sklearn.neighbors import KNeighborsClassifier  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from services.probing.blas import single_threaded_blas  # noqa: E402
from services.probing.c_selection import DEFAULT_CS  # noqa: E402
from services.probing.efficiency import label_efficiency  # noqa: E402
from services.probing.grid import FitOutcome, GridCell, run_grid  # noqa: E402
from services.probing.knn import DEFAULT_KS  # noqa: E402
from services.probing.mlp import (DEFAULT_HIDDEN, DEFAULT_MLP_ALPHAS, DEFAULT_PATIENCE,  # noqa: E402
                                  DEFAULT_VAL_FRACTION)
from services.probing.probes import ProbeSettings  # noqa: E402
from services.probing.sampling import scarcity_subset  # noqa: E402

PRIORS = np.array([0.35, 0.2, 0.15, 0.12, 0.1, 0.08])


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------

def make_data(n: int, dim: int, n_classes: int, seed: int, informative: int = 32,
              separation: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """float32 embeddings [n, dim] and one-hot labels [n, C] (see module docstring)."""
    rng = np.random.default_rng(seed)
    priors = PRIORS[:n_classes] / PRIORS[:n_classes].sum()
    y = rng.choice(n_classes, size=n, p=priors)
    centres = rng.normal(size=(n_classes, informative)) * separation
    x = rng.normal(size=(n, dim))
    x[:, :informative] += centres[y]
    rotation, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    x = (x @ rotation) * rng.lognormal(0, 1, size=dim) + rng.normal(0, 3, size=dim)
    return x.astype(np.float32), np.eye(n_classes, dtype=np.float32)[y]


# ---------------------------------------------------------------------------------------------
# (a) naive scikit-learn loop
# ---------------------------------------------------------------------------------------------

def _auroc(y: np.ndarray, probs: np.ndarray) -> float:
    """Macro one-vs-rest AUROC."""
    return float(roc_auc_score(y, probs, average="macro"))


def naive_linear(xtr, ytr, xte, yte, seed: int) -> float:
    """StandardScaler + LogisticRegressionCV over the ECGLens C grid."""
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    model = make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=list(DEFAULT_CS), cv=folds, scoring="roc_auc_ovr",
                                                                 max_iter=2000, random_state=seed))
    model.fit(xtr, ytr.argmax(axis=1))
    return _auroc(yte, model.predict_proba(xte))


def naive_knn(xtr, ytr, xte, yte, seed: int) -> float:
    """StandardScaler + GridSearchCV over k of a brute-force cosine kNN."""
    cap = min(int(ytr.sum(axis=0).min()), int(0.8 * len(xtr)) - 1)
    grid = [k for k in DEFAULT_KS if k <= cap] or [1]
    search = GridSearchCV(KNeighborsClassifier(metric="cosine", algorithm="brute"), {"n_neighbors": grid},
                          cv=StratifiedKFold(5, shuffle=True, random_state=seed), scoring="roc_auc_ovr")
    model = make_pipeline(StandardScaler(), search).fit(xtr, ytr.argmax(axis=1))
    return _auroc(yte, model.predict_proba(xte))


def _val_auroc(y: np.ndarray, probs: np.ndarray) -> float:
    """Macro AUROC over the classes present in a validation part."""
    present = [k for k in range(y.shape[1]) if 0 < y[:, k].sum() < len(y)]
    return float(np.mean([roc_auc_score(y[:, k], probs[:, k]) for k in present])) if present else -np.inf


def _naive_mlp_one(xf, yf, xv, yv, alpha: float, seed: int) -> tuple[float, MLPClassifier]:
    """One alpha: epochs of partial_fit until validation AUROC stops improving; best epoch restored."""
    model = MLPClassifier((DEFAULT_HIDDEN,), alpha=alpha, batch_size=min(200, len(xf)),
                          random_state=np.random.RandomState(seed))
    top, stale, state = -np.inf, 0, None
    for _ in range(200):
        model.partial_fit(xf, yf.argmax(axis=1), classes=np.arange(yf.shape[1]))
        score = _val_auroc(yv, model.predict_proba(xv))
        if score > top + 1e-3:
            top, stale, state = score, 0, ([c.copy() for c in model.coefs_], [b.copy() for b in model.intercepts_])
        else:
            stale += 1
            if stale >= DEFAULT_PATIENCE:
                break
    model.coefs_, model.intercepts_ = state
    return top, model


def naive_mlp(xtr, ytr, xte, yte, seed: int, alphas) -> float:
    """StandardScaler + the ECGLens MLP protocol written plainly (float64, one pipeline per fit)."""
    # sklearn's built-in early_stopping scores validation *accuracy*: far cheaper, but it stops a
    # label-scarce MLP after a few epochs at chance AUROC, so it is not the same protocol.
    scaler = StandardScaler().fit(xtr)
    xs, xt = scaler.transform(xtr), scaler.transform(xte)
    labels = ytr.argmax(axis=1)
    stratify = labels if np.bincount(labels).min() >= 2 else None  # sklearn refuses singleton strata
    fit_rows, val_rows = train_test_split(np.arange(len(xs)), test_size=DEFAULT_VAL_FRACTION, stratify=stratify,
                                          random_state=seed)
    trials = [_naive_mlp_one(xs[fit_rows], ytr[fit_rows], xs[val_rows], ytr[val_rows], a, seed) for a in alphas]
    return _auroc(yte, max(trials, key=lambda t: t[0])[1].predict_proba(xt))


def naive_fit(data: tuple, probe: str, fraction: float, seed: int, alphas) -> float:
    """One naive fit (subset drawn per fit); its test macro AUROC."""
    xtr, ytr, xte, yte = data
    idx = scarcity_subset(ytr, fraction, None, seed)
    if probe == "linear":
        return naive_linear(xtr[idx], ytr[idx], xte, yte, seed)
    if probe == "knn":
        return naive_knn(xtr[idx], ytr[idx], xte, yte, seed)
    return naive_mlp(xtr[idx], ytr[idx], xte, yte, seed, alphas)


def run_naive(data: tuple, fractions: list[float], seeds: list[int], probes: list[str], alphas) -> dict:
    """Per (probe, fraction): list of (wall seconds, CPU seconds, auroc) over the naive seeds."""
    times = defaultdict(list)
    for probe in probes:
        for fraction in fractions:
            for seed in seeds:
                started, cpu = time.perf_counter(), time.process_time()
                score = naive_fit(data, probe, fraction, seed, alphas)
                entry = (time.perf_counter() - started, time.process_time() - cpu, score)
                times[(probe, fraction)].append(entry)
                print(f"  naive {probe:6s} fraction {fraction:<5g} seed {seed}: {entry[0]:7.2f} s wall "
                      f"{entry[1]:7.2f} s CPU  auroc {score:.3f}", flush=True)
    return times


# ---------------------------------------------------------------------------------------------
# (b) ECGLens probe-grid engine on Ray
# ---------------------------------------------------------------------------------------------

def run_ours(data: tuple, fractions: list[float], seeds: list[int], probes: list[str], alphas, cpus: int,
             shortcuts: dict) -> tuple[list[FitOutcome], float, float, float]:
    """(outcomes, grid wall seconds, driver CPU seconds during the grid, ray.init seconds)."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    started = time.perf_counter()
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, _temp_dir=temp)
    init_s = time.perf_counter() - started
    try:
        xtr, ytr, xte, yte = data
        cell = GridCell(key=("bench",), x=np.concatenate([xtr, xte]), y=np.concatenate([ytr, yte]),
                        train=np.arange(len(xtr)), test=np.arange(len(xtr), len(xtr) + len(xte)),
                        class_names=[f"c{k}" for k in range(ytr.shape[1])], multi_label=False,
                        settings=[(f, None) for f in fractions], seeds=seeds, probes=probes,
                        options=ProbeSettings(alphas=alphas), **shortcuts)
        started, cpu = time.perf_counter(), time.process_time()
        outcomes = run_grid([cell], executor="ray")
        return outcomes, time.perf_counter() - started, time.process_time() - cpu, init_s
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

def efficiency_table(outcomes: list[FitOutcome], metric: str = "auroc_macro") -> dict[str, dict]:
    """Per probe: mean metric over seeds at each fraction, and label_efficiency of that curve."""
    by_probe: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for o in outcomes:
        if o.result is not None and o.train_fraction is not None and metric in o.result.metrics:
            by_probe[o.probe][o.train_fraction].append(o.result.metrics[metric])
    table = {}
    for probe, curve in by_probe.items():
        fractions = sorted(curve)
        means = [float(np.mean(curve[f])) for f in fractions]
        table[probe] = {"fractions": fractions, "mean": means, **label_efficiency(fractions, means)}
    return table


def report(naive: dict, outcomes: list[FitOutcome], timing: dict, n_seeds: int, n_naive_seeds: int,
           fractions: list[float], probes: list[str]) -> None:
    """Print per-fit times, totals and the ratios."""
    ours = defaultdict(list)
    for o in outcomes:
        ours[(o.probe, o.train_fraction)].append(o)
    print("\nper fit, mean over seeds (wall / CPU seconds; ours measured inside its Ray task, a shared kNN fit once)")
    print(f"{'probe':7s} {'fraction':>8s} {'n_train':>8s} {'naive wall':>11s} {'ours wall':>10s} {'naive CPU':>10s} "
          f"{'ours CPU':>9s} {'naive auroc':>12s} {'ours auroc':>11s}")
    for probe in probes:
        for fraction in fractions:
            nv, mine = np.array(naive[(probe, fraction)]), ours[(probe, fraction)]
            fitted = [o for o in mine if o.shared_from is None]
            print(f"{probe:7s} {fraction:8g} {mine[0].n_train:8d} {nv[:, 0].mean():11.2f} "
                  f"{np.mean([o.fit_s for o in fitted]):10.2f} {nv[:, 1].mean():10.2f} "
                  f"{np.mean([o.fit_cpu_s for o in fitted]):9.2f} {nv[:, 2].mean():12.3f} "
                  f"{np.mean([o.result.metrics['auroc_macro'] for o in mine]):11.3f}")
    print("\nper probe kind, whole sweep: CPU seconds (naive extrapolated to all seeds; ours summed over its tasks)")
    naive_wall = naive_cpu = 0.0
    for probe in probes:
        theirs = sum(np.array(naive[(probe, f)])[:, 1].mean() * n_seeds for f in fractions)
        naive_wall += sum(np.array(naive[(probe, f)])[:, 0].mean() * n_seeds for f in fractions)
        naive_cpu += theirs
        mine = sum(o.fit_cpu_s for o in outcomes if o.probe == probe)
        print(f"  {probe:7s} naive {theirs:8.1f}   ours {mine:8.1f}   ratio {theirs / mine:5.2f}x")
    ours_cpu = sum(o.fit_cpu_s for o in outcomes) + timing["driver_cpu_s"]
    extrapolated = ("" if n_naive_seeds == n_seeds
                    else f", timed on {n_naive_seeds} seed(s) x{n_seeds / n_naive_seeds:g}")
    print(f"\nnaive sweep total : {naive_wall:8.1f} s wall, {naive_cpu:8.1f} s CPU (one process{extrapolated})")
    print(f"ours sweep total  : {timing['wall_s']:8.1f} s wall, {ours_cpu:8.1f} s CPU (tasks + driver; ray.init "
          f"{timing['init_s']:.1f} s not counted)")
    print(f"ratio naive/ours  : {naive_wall / timing['wall_s']:8.2f}x wall, {naive_cpu / ours_cpu:8.2f}x CPU")
    for probe, entry in efficiency_table(outcomes).items():
        print(f"label efficiency {probe:6s}: aulc {entry['aulc']:.3f}, fraction_to_95pct {entry['fraction_to_95pct']}")


def main() -> int:
    """Run both sweeps and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", "--n", dest="n", type=int, default=20000, help="records (80%% train, 20%% test)")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--classes", type=int, default=6)
    # Label-scarce fractions keep the default run near 3 minutes on 2 shared cores; add 0.3 1.0 for the
    # full curve (where kNN's one-fit-per-distinct-subset pays most), at ~10x the time.
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.005, 0.01, 0.02, 0.05, 0.1])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--naive-seeds", type=int, default=1, help="seeds the naive loop is timed on")
    # Only the kinds the naive loop has a counterpart for: naive_fit would otherwise time the MLP under
    # another kind's name. The seed families (services/probing/families.py) run on the same engine.
    parser.add_argument("--probes", nargs="+", default=["linear", "knn", "mlp"], choices=["linear", "knn", "mlp"])
    parser.add_argument("--mlp-alphas", type=float, nargs="+", default=list(DEFAULT_MLP_ALPHAS))
    parser.add_argument("--cpus", type=int, default=2, help="ray.init(num_cpus=...)")
    parser.add_argument("--shared-standardisation", action="store_true",
                        help="engine option: one scaler per split for every fit (off in `ecglens run`)")
    parser.add_argument("--warm-start", action="store_true",
                        help="engine option: warm-started C paths for linear probes (off in `ecglens run`)")
    parser.add_argument("--quick", action="store_true",
                        help="n=4000, dim=128, 3 seeds, fractions 0.02 .. 1.0: a smoke run (~30 s)")
    args = parser.parse_args()
    if args.quick:
        args.n, args.dim, args.seeds, args.fractions = 4000, 128, 3, [0.02, 0.05, 0.1, 0.3, 1.0]
    warnings.simplefilter("ignore", ConvergenceWarning)
    # scikit-learn 1.8's notices about LogisticRegressionCV's future defaults: one per naive fit, no news.
    warnings.filterwarnings("ignore", category=FutureWarning, module="sklearn")
    x, y = make_data(args.n, args.dim, args.classes, seed=0)
    cut = int(0.8 * args.n)
    data = (x[:cut], y[:cut], x[cut:], y[cut:])
    seeds = list(range(args.seeds))
    naive_seeds = seeds[:max(1, min(args.naive_seeds, args.seeds))]
    print(f"data: {cut} train x {args.dim}, {args.n - cut} test, {args.classes} classes; fractions {args.fractions}, "
          f"{args.seeds} seeds, probes {args.probes}; mlp alphas {args.mlp_alphas}")
    print("(a) naive one-process scikit-learn loop")
    with single_threaded_blas():
        # One BLAS thread like the probes' own fits: on shared cores extra threads only add contention.
        naive = run_naive(data, args.fractions, naive_seeds, args.probes, args.mlp_alphas)
    shortcuts = {"shared_standardisation": args.shared_standardisation, "warm_start": args.warm_start}
    print(f"(b) ECGLens probe-grid engine, Ray with {args.cpus} CPUs, options {shortcuts}")
    outcomes, wall_s, driver_cpu_s, init_s = run_ours(data, args.fractions, seeds, args.probes,
                                                      tuple(args.mlp_alphas), args.cpus, shortcuts)
    failed = [o for o in outcomes if o.error]
    if failed:
        print(f"{len(failed)} fits failed, first: {failed[0].error}")
        return 1
    timing = {"wall_s": wall_s, "driver_cpu_s": driver_cpu_s, "init_s": init_s}
    report(naive, outcomes, timing, args.seeds, len(naive_seeds), args.fractions, args.probes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
