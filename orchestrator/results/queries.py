"""Questions the findings and the report both ask of `Results`: leaderboards, CIs, paired comparisons, models.

Every reader tolerates schema 1.0 rows (no probe kind, CIs or comparisons) and missing or null values.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Callable, Iterable, Iterator, Sequence

from orchestrator.results.document import Results
from orchestrator.results.rows import Comparison, ModelInfo, ProbeResult, Representation, SummaryRow

PROBE_ORDER = ("linear", "knn", "mlp", "random_forest", "svm", "gradient_boosting", "decision_tree")
PROBE_LABELS = {"linear": "linear", "knn": "kNN", "mlp": "MLP", "random_forest": "random forest", "svm": "SVM",
                "gradient_boosting": "boosted trees", "decision_tree": "decision tree"}
ALPHA = 0.05  # only used when a comparison has no CI

# Within cached(), lookups that would rescan probes/comparisons for every row share one index per Results.
_CACHE: ContextVar[dict | None] = ContextVar("ecglens_results_cache", default=None)


def is_num(x: Any) -> bool:
    """A finite real number (bools and NaN excluded)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def fkey(fraction: Any) -> float | None:
    """A training fraction usable as a dict key despite JSON round-trips."""
    return round(float(fraction), 9) if is_num(fraction) else None


def probe_kind(row: ProbeResult | SummaryRow | Comparison | Any) -> str:
    """The probe kind of a probe, summary, comparison or efficiency row ('linear' when absent, as in 1.0)."""
    return str(getattr(row, "probe", None) or "linear")


def probe_label(kind: str) -> str:
    """'kNN' for 'knn' etc.; unknown kinds as given."""
    return PROBE_LABELS.get(kind, kind)


def ordered_probes(kinds: Iterable[str]) -> list[str]:
    """Probe kinds in the canonical order (linear, kNN, MLP, then the seed's families), then others sorted."""
    kinds = set(kinds)
    return [k for k in PROBE_ORDER if k in kinds] + sorted(kinds - set(PROBE_ORDER))


def model_order(results: Results) -> list[str]:
    """Model names in results.models order, then any other name in the rows, sorted."""
    listed = results.model_names()
    seen = {r.model for rows in (results.summary, results.probes, results.representations, results.label_efficiency,
                                 results.transfer, results.transfer_gap) for r in rows or []}
    seen |= {m for c in results.comparisons or [] for m in (c.model_a, c.model_b)}
    extra = sorted(str(m) for m in seen - set(listed) - {None, ""})
    return list(dict.fromkeys(listed)) + extra


def metric_mean(row: SummaryRow, metric: str) -> float | None:
    """The mean of a summary row's metric, or None."""
    stats = (row.metrics or {}).get(metric)
    mean = stats.get("mean") if isinstance(stats, dict) else None
    return mean if is_num(mean) else None


def metric_std(row: SummaryRow, metric: str) -> float | None:
    """The SD over seeds of a summary row's metric, or None."""
    stats = (row.metrics or {}).get(metric)
    std = stats.get("std") if isinstance(stats, dict) else None
    return std if is_num(std) else None


def primary_metric(rows: Sequence[SummaryRow]) -> str:
    """macro AUROC when any row has it, else R^2, else Pearson r (regression); higher is better for all."""
    for metric in ("auroc_macro", "r2", "pearson_r"):
        if any(metric_mean(r, metric) is not None for r in rows):
            return metric
    return "auroc_macro"


def _pair(value: Any) -> tuple[float, float] | None:
    """[low, high] as a tuple of numbers, or None."""
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(is_num(v) for v in value):
        return float(value[0]), float(value[1])
    return None


@contextmanager
def cached() -> Iterator[None]:
    """Inside the block, probe CIs and comparisons are indexed once per Results (do not mutate it there)."""
    token = _CACHE.set({})
    try:
        yield
    finally:
        _CACHE.reset(token)


def _indexed(results: Results, name: str, build: Callable[[Results], dict]) -> dict:
    """build(results), memoised for the current cached() block; rebuilt on every call outside one."""
    cache = _CACHE.get()
    if cache is None:
        return build(results)
    key = (id(results), name)
    if key not in cache:
        cache[key] = build(results)
    return cache[key]


def _cell(row: ProbeResult | SummaryRow) -> tuple:
    """The (model, dataset, task, probe, training set) identity of a probe or summary row."""
    return row.model, row.dataset, row.task, probe_kind(row), fkey(row.train_fraction), row.k_shot


def _probe_cis(results: Results, metric: str) -> dict[tuple, list[tuple[float, float]]]:
    """Cell -> the per-seed CIs of `metric` in its probe rows."""
    index: dict[tuple, list] = {}
    for p in results.probes or []:
        ci = _pair((p.metrics or {}).get(f"{metric}_ci"))
        if ci is not None:
            index.setdefault(_cell(p), []).append(ci)
    return index


def n_test(results: Results, row: SummaryRow) -> int | None:
    """Test ECGs a summary row's probes were scored on (None when no probe row says)."""
    def build(res: Results) -> dict[tuple, int]:
        return {_cell(p): p.n_test for p in reversed(res.probes or []) if isinstance(p.n_test, int)}

    return _indexed(results, "n_test", build).get(_cell(row))


def metric_ci(results: Results, row: SummaryRow, metric: str) -> tuple[float, float] | None:
    """95% CI of a summary row's seed-mean score, or None when no real interval of it exists.

    Schema 1.2 rows carry it (`metrics.<m>.ci`: one patient bootstrap, every seed scored on each
    resample; stages/intervals.py). A one-seed cell's mean is that seed's score, so the probe row's own
    CI is the interval. Averaging several seeds' bounds is not a CI of anything, so older files with
    several seeds get None (readers then show mean +- SD).
    """
    stats = (row.metrics or {}).get(metric)
    own = _pair(stats.get("ci")) if isinstance(stats, dict) else None
    own = own or _pair((row.metrics or {}).get(f"{metric}_ci"))
    if own is not None:
        return own
    cis = _indexed(results, f"ci:{metric}", lambda res: _probe_cis(res, metric)).get(_cell(row))
    return cis[0] if cis and len(cis) == 1 and (row.n_seeds or 1) == 1 else None


def interval(results: Results, row: SummaryRow, metric: str) -> tuple[float, float] | None:
    """The 95% CI when known, else mean +- SD; None when the metric is undefined."""
    mean = metric_mean(row, metric)
    if mean is None:
        return None
    ci = metric_ci(results, row, metric)
    if ci is not None:
        return ci
    std = metric_std(row, metric) or 0.0
    return mean - std, mean + std


def leaderboard_cells(results: Results) -> list[tuple[str, str, str]]:
    """(dataset, task, probe kind) with training-fraction summary rows, in a stable order."""
    dataset_order = [d.name for d in results.datasets or []]
    cells = {(r.dataset, r.task, probe_kind(r)) for r in results.summary or [] if r.train_fraction is not None}
    datasets = [d for d in dataset_order if d in {c[0] for c in cells}]
    datasets += sorted({c[0] for c in cells} - set(datasets))
    out = []
    for d in datasets:
        for t in sorted({c[1] for c in cells if c[0] == d}):
            out += [(d, t, p) for p in ordered_probes(c[2] for c in cells if c[:2] == (d, t))]
    return out


def leaderboard(results: Results, dataset: str, task: str, probe: str) -> tuple[float | None, str, list[SummaryRow]]:
    """(largest training fraction, primary metric, summary rows there best first; undefined scores last)."""
    cell = [r for r in results.summary or []
            if (r.dataset, r.task, probe_kind(r)) == (dataset, task, probe) and r.train_fraction is not None]
    if not cell:
        return None, "auroc_macro", []
    top = max(r.train_fraction for r in cell)
    rows = [r for r in cell if fkey(r.train_fraction) == fkey(top)]
    metric = primary_metric(rows)
    # Name breaks ties so the order never depends on input order.
    ranked = sorted(rows, key=lambda r: (metric_mean(r, metric) is None, -(metric_mean(r, metric) or 0.0), r.model))
    return top, metric, ranked


def comparison(results: Results, dataset: str, task: str, probe: str, fraction: float | None, model_a: str,
               model_b: str, metric: str = "auroc_macro") -> dict | None:
    """The paired comparison a - b at one cell over seeds: the most conservative one, plus 'clear' and 'n'.

    A pair is clearly different only when every seed's 95% CI excludes 0 on the same side (p < ALPHA when the
    CI is missing); the row quoted is the one with the largest p.
    """
    found = []
    index = _indexed(results, "comparisons", _comparison_index)
    for c in index.get((dataset, task, probe, fkey(fraction), metric), []):
        if (c.model_a, c.model_b) == (model_a, model_b):
            found.append(_oriented(c, flip=False))
        elif (c.model_a, c.model_b) == (model_b, model_a):
            found.append(_oriented(c, flip=True))
    found = [c for c in found if c["side"] is not None]
    if not found:
        return None
    sides = {c["side"] for c in found}
    rep = max(found, key=lambda c: (c["p_value"] if is_num(c["p_value"]) else -1.0, str(c.get("seed"))))
    return {**rep, "clear": sides in ({1}, {-1}), "n": len(found)}


def _comparison_index(results: Results) -> dict[tuple, list[Comparison]]:
    """(dataset, task, probe, fraction, metric) -> its comparison rows."""
    index: dict[tuple, list] = {}
    for c in results.comparisons or []:
        key = (c.dataset, c.task, probe_kind(c), fkey(c.train_fraction), c.metric or "auroc_macro")
        index.setdefault(key, []).append(c)
    return index


def _oriented(c: Comparison, flip: bool) -> dict:
    """A comparison as a - b with side = +1 (a better), -1 (b better), 0 (CI includes 0), None (unknown)."""
    diff, lo, hi = c.diff, c.ci_low, c.ci_high
    if flip:
        diff = -diff if is_num(diff) else None
        lo, hi = (-hi if is_num(hi) else None), (-lo if is_num(lo) else None)
    p = c.p_value
    if is_num(lo) and is_num(hi):
        side = 1 if lo > 0 else -1 if hi < 0 else 0
    elif is_num(p) and is_num(diff):
        side = 0 if p >= ALPHA else (1 if diff > 0 else -1)
    else:
        side = None
    return {"diff": diff if is_num(diff) else None, "ci_low": lo, "ci_high": hi, "p_value": p if is_num(p) else None,
            "delong_p": c.delong_p if is_num(c.delong_p) else None, "seed": c.seed, "side": side,
            "n_common": c.n_common if is_num(c.n_common) else None}


def site_separability(rep: Representation) -> float | None:
    """A representation row's site separability (top level, else in structure)."""
    value = rep.site_separability
    if not is_num(value):
        value = (rep.structure or {}).get("site_separability")
    return value if is_num(value) else None


def effective_rank(rep: Representation) -> float | None:
    """A representation row's effective rank (top level, else in structure)."""
    value = rep.effective_rank
    if not is_num(value):
        value = (rep.structure or {}).get("effective_rank")
    return value if is_num(value) else None


def embedding_dims(results: Results) -> dict[str, int]:
    """Embedding dimension per model name, where known."""
    return {m.name: int(m.embedding_dim) for m in results.models or []
            if isinstance(m, ModelInfo) and is_num(m.embedding_dim) and m.embedding_dim > 0}
