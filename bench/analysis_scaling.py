"""How the representation analyses scale from 10k to 100k ECGs: wall time, CPU time and peak memory.

Each (analysis, N) runs in a fresh child process (so peak RSS, ru_maxrss, is that analysis's own and
counts numpy/numba/native allocations that tracemalloc misses), on synthetic embeddings with class
structure (C classes), acquisition sources (a per-source shift) and patient ids. The children call the
functions `ecglens run` runs inside its Ray tasks (orchestrator/stages/analysis_tasks.py) with the
experiment's default settings (UMAP over the default 2 x 2 grid, SHAP top-k UMAP, structure with the
UMAP projection, linear SHAP of a fitted probe, CKA of three models), so the figures include what the
run really pays (figures, silhouettes, trustworthiness). Lead attribution's cost depends on the number of
ECGs it explains (ecgs_per_class x classes), not on N; `attribution_picks` times the one N-dependent
step, the choice of those ECGs from the test split.

Printed per analysis: wall s, CPU s (the child's user+sys), peak RSS and the RSS before the analysis
began (data and imports), at each N; then the ratios 100k/10k of wall, CPU and peak-minus-before
memory, and the caps/subsamples that applied (as the results report them). A ratio near 10 is linear,
near 100 quadratic. Use --sizes to choose N, --dim for D, --only to run a subset.

    PYTHONPATH=$PWD python bench/analysis_scaling.py [--sizes 10000 100000] [--dim 256] [--only umap shap]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

ANALYSES = ("umap", "umap_top", "structure", "shap", "cka", "attribution_picks")
N_CLASSES, N_SOURCES = 5, 3


def synthetic(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, list[str], list[str], list[str]]:
    """float32 [n, dim] embeddings: class centres + source shift + noise; labels, sources, patient ids."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, N_CLASSES, n)
    s = rng.integers(0, N_SOURCES, n)
    centres = rng.normal(size=(N_CLASSES, dim)) * 1.5
    shifts = rng.normal(size=(N_SOURCES, dim)) * 0.5
    # A low-rank signal plus isotropic noise, so the spectrum is not flat.
    basis = rng.normal(size=(32, dim)) / np.sqrt(32)
    x = centres[y] + shifts[s] + rng.normal(size=(n, 32)) @ basis * 2 + rng.normal(size=(n, dim))
    return (x.astype(np.float32), [f"c{v}" for v in y], [f"s{v}" for v in s],
            [f"p{v}" for v in rng.integers(0, max(2, n // 2), n)])


def _rss_now_mb() -> float:
    """Current resident set size of this process, MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _umap_params() -> dict:
    """The experiment's default UMAP section."""
    from orchestrator.experiment import DEFAULTS

    return dict(DEFAULTS["analyses"]["umap"])


def _linear_probe(x: np.ndarray, y: list[str], train: np.ndarray) -> dict:
    """A fitted standardised linear probe as the grid engine hands it to SHAP (coef, intercept, mean, scale)."""
    from sklearn.linear_model import LogisticRegression

    rows = train[:5000]  # the probe's quality is not what is measured; its fit stays off the clock
    mean, scale = x[train].mean(axis=0), x[train].std(axis=0)
    model = LogisticRegression(max_iter=300).fit((x[rows] - mean) / scale, np.asarray(y)[rows])
    return {"coef": model.coef_, "intercept": model.intercept_, "mean": mean, "scale": scale}


def _prepare(name: str, n: int, dim: int):
    """(thunk that runs the analysis and returns its caps dict) with the data built off the clock."""
    from orchestrator.stages import analysis_tasks as at
    from services.analysis import sampling

    x, classes, sources, groups = synthetic(n, dim)
    params = _umap_params()
    rng = np.random.default_rng(1)
    order = rng.permutation(n)
    train, test = np.sort(order[: int(0.8 * n)]), np.sort(order[int(0.8 * n):])
    if name == "umap":
        def run():
            at.umap_task(x, classes, sources, params, "bench")
            return sampling.umap_rows(n, at.grid_points(params) is not None)  # as the analyse stage records it
    elif name == "umap_top":
        mean_abs = np.abs(np.random.default_rng(2).normal(size=(N_CLASSES, dim)))

        def run():
            at.umap_top_task(x, np.arange(n), mean_abs, classes, params, "bench")
            return sampling.selection_rows(n)
    elif name == "structure":
        projection = (x[:, :2] + np.random.default_rng(3).normal(size=(n, 2))).astype(np.float32)

        def run():
            at.structure_task(x, classes, sources, groups, projection, {"k": 10, "projection_metric": "euclidean"}, 0)
            return sampling.structure_rows(classes, projection=True)
    elif name == "shap":
        probe = _linear_probe(x, classes, train)

        def run():
            at.shap_task(probe, x[train], x[test], [f"c{i}" for i in range(N_CLASSES)], 10, "bench")
            return {"n_explained": len(test), "exact": True}  # every test ECG, in chunks
    elif name == "cka":
        rot = np.linalg.qr(np.random.default_rng(4).normal(size=(dim, dim)))[0].astype(np.float32)
        models = {"a": x, "b": x @ rot, "c": np.tanh(x[:, : dim // 2])}

        def run():
            at.similarity_task(models, "bench")
            return {"exact": True}
    elif name == "attribution_picks":
        y = np.zeros((n, N_CLASSES), np.int8)
        y[np.arange(n), [int(c[1:]) for c in classes]] = 1

        def run():
            picks = []
            for c in range(N_CLASSES):  # as orchestrator/stages/analyse.py picks the ECGs to explain
                picks += [i for i in test if y[i, c] == 1][:1]
            return {"n_ecgs": len(sorted(set(picks)))}
    else:
        raise ValueError(f"unknown analysis {name!r}")
    return run


def child(name: str, n: int, dim: int) -> None:
    """Run one analysis once and print one JSON line with its costs."""
    from services.analysis import tasks

    tasks.preload()
    if name.startswith("umap"):
        # The numba JIT is not what is measured: compile the brute-force kNN (small N), pynndescent (N >= 4096)
        # and transform paths off the clock (umap-learn and pynndescent do not cache every kernel on disk).
        from services.analysis.core import fit_projection
        warm = np.random.default_rng(0).normal(size=(4500, 8)).astype(np.float32)
        fit_projection(warm[:60], 5, 0.1, "euclidean", 0)
        fit_projection(warm, 15, 0.1, "euclidean", 0, max_fit=4200)
    run = _prepare(name, n, dim)
    before = _rss_now_mb()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0, c0 = time.perf_counter(), time.process_time()
    caps = run()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"name": name, "n": n, "wall_s": wall, "cpu_s": cpu, "peak_mb": peak,
                      "before_mb": max(before, 0.0), "peak_before_mb": peak_before, "caps": caps}, default=str))


def _spawn(name: str, n: int, dim: int, threads: int, timeout: float) -> dict:
    """One child process for (name, n); its JSON line, or a timeout/error record."""
    env = {**os.environ, **{v: str(threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                                        "NUMBA_NUM_THREADS")}}
    cmd = [sys.executable, os.path.abspath(__file__), "--child", name, str(n), "--dim", str(dim)]
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"name": name, "n": n, "error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode or not lines:
        return {"name": name, "n": n, "error": (done.stderr or done.stdout).strip().splitlines()[-1:]}
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--only", nargs="+", choices=ANALYSES, default=list(ANALYSES))
    parser.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP/numba threads per child")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per child")
    parser.add_argument("--child", nargs=2, metavar=("NAME", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.dim)
        return
    print(f"analysis scaling: D={args.dim}, {N_CLASSES} classes, {N_SOURCES} sources, {args.threads} thread(s) "
          f"per child, sizes {args.sizes}; host CPUs {os.cpu_count()}")
    results: dict[tuple[str, int], dict] = {}
    for name in args.only:
        for n in args.sizes:
            r = results[(name, n)] = _spawn(name, n, args.dim, args.threads, args.timeout)
            if "error" in r:
                print(f"  {name:18s} N={n:>7,}: ERROR {r['error']}", flush=True)
                continue
            print(f"  {name:18s} N={n:>7,}: wall {r['wall_s']:8.2f} s  cpu {r['cpu_s']:8.2f} s  peak RSS "
                  f"{r['peak_mb']:8.0f} MiB (before {r['before_mb']:6.0f}, +{r['peak_mb'] - r['before_mb']:6.0f})  "
                  f"caps {r['caps']}", flush=True)
    small, large = min(args.sizes), max(args.sizes)
    print(f"\nratios N={large:,} / N={small:,} ({large / small:.0f} = linear, {(large / small) ** 2:.0f} = quadratic):")
    for name in args.only:
        a, b = results.get((name, small), {}), results.get((name, large), {})
        if "wall_s" not in a or "wall_s" not in b:
            print(f"  {name:18s} n/a")
            continue
        extra = lambda r: max(r["peak_mb"] - r["before_mb"], 1.0)  # noqa: E731
        wall, cpu = b["wall_s"] / max(a["wall_s"], 1e-6), b["cpu_s"] / max(a["cpu_s"], 1e-6)
        print(f"  {name:18s} time {wall:6.2f}x  cpu {cpu:6.2f}x"
              f"  peak RSS {b['peak_mb'] / a['peak_mb']:5.2f}x  analysis memory (peak - before) "
              f"{extra(b) / extra(a):6.2f}x  caps at {large:,}: {b['caps']}")


if __name__ == "__main__":
    main()
