"""One probe-grid engine: every (training subset, seed, probe kind) fit of many train/test splits.

A GridCell is one train/test split of one model x dataset x target; `run_grid` makes every fit of
every cell, in process ("serial") or as Ray tasks ("ray"), and returns one FitOutcome per fit. It is
the path `ecglens run` takes and the one bench/probe_sweep.py times.

Exactness. With the default options each outcome equals what the ProbingService returns for the
same fit (services.probing.server Evaluate -> fit_probe), fit for fit:
  * subsets: classification targets get scarcity_subset(y[train], fraction, k_shot, seed,
    class_names=...) (no train groups), or with sampling="balanced" (not a service option) the
    fractions get sampling.balanced_subsets (k-shot settings are balanced already); regression
    targets get a nested random subset (sampling.regression_subset; fractions only); the setting
    (None, None) is the whole training split;
  * inputs are cast to float32 as the wire does, then fit_probe receives the seed, the C grid and
    fold count (cs [] = the default grid, cv_folds 0 = 5), the probe kind and target type; with
    groups and bootstrap > 0 it also gets the test records' groups (as strings) and
    bootstrap_seed = seed; without groups no CIs are computed, as before;
  * a subset that cannot be drawn gives one outcome with probe None and the ValueError's text.
Outcomes carry full-precision results (the wire returns probabilities and coefficients as float32).

Shared work. kNN depends on the seed only through its subset, so identical subsets of one cell are
fitted once; the other seeds reuse the fit (shared_from) and get their own bootstrap CIs. Ray tasks
are submitted largest subset first, all cells at once, arrays shared through the object store; a task
whose worker dies is retried (MAX_RETRIES) and then reported as an error outcome. Two options, OFF by
default because they change results slightly: shared_standardisation (one StandardScaler fitted on
the cell's whole training split, used by every fit) and warm_start (warm-started C paths for linear
classification probes; see services.probing.c_selection).
"""
from __future__ import annotations

import copy
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np
from sklearn.preprocessing import StandardScaler

from services.probing.c_selection import check_cs
from services.probing.probes import ProbeSettings, fit_probe, with_bootstrap
from services.probing.result import ProbeResult
from services.probing.sampling import balanced_subsets, regression_subset, scarcity_subset, scarcity_subsets

Setting = tuple[float | None, int | None]  # (train fraction, k-shot); exactly one is set, or neither = all
DEFAULT_CV_FOLDS = 5
TASK_CPUS = 1  # each task fits in its own worker process, single-threaded BLAS
MAX_RETRIES = 2
EXECUTORS = ("auto", "serial", "ray")
SAMPLINGS = ("stratified", "balanced")


@dataclass(frozen=True)
class GridCell:
    """One train/test split of one model x dataset x target: every fit of the grid on it."""

    key: tuple  # caller's label, echoed in every FitOutcome
    x: Any  # [N, D] embeddings of all N records of the cell (ndarray or ray.ObjectRef)
    y: Any  # [N, C] labels (0/1), or [N, 1] regression target (ndarray or ray.ObjectRef)
    train: np.ndarray  # positions (into x/y) of the training split
    test: np.ndarray  # positions of the test split
    class_names: list[str]
    multi_label: bool
    settings: list[Setting]
    seeds: list[int]
    probes: list[str]  # services.probing.probes.PROBES: "linear", "knn", "mlp", "random_forest", ...
    target_type: str = "classification"  # or "regression"
    groups: Any = None  # patient id per position (list or ray.ObjectRef), for bootstrap CIs
    bootstrap: int = 0  # patient-level resamples per fit (needs groups)
    cs: list[float] | None = None  # C grid (None or [] = the protocol default)
    cv_folds: int = DEFAULT_CV_FOLDS  # inner CV folds (0 = the default, 5)
    options: ProbeSettings | None = None  # other probe hyper-parameters; cs/cv_folds above take precedence
    shared_standardisation: bool = False
    warm_start: bool = False
    sampling: str = "stratified"  # or "balanced": fractions of the smallest class from every class


@dataclass
class FitOutcome:
    """One fit of the grid: its result, or why it could not be made."""

    key: tuple
    probe: str | None  # None: the training subset could not be drawn, so no probe was fitted
    train_fraction: float | None
    k_shot: int | None
    seed: int
    n_train: int
    n_test: int
    result: ProbeResult | None
    error: str | None
    shared_from: int | None = None  # seed whose identical fit this reuses (kNN), else None
    fit_s: float = 0.0  # wall seconds this outcome cost inside its task (a shared one: its own CIs only)
    fit_cpu_s: float = 0.0  # CPU seconds of the same (on shared cores wall time measures the neighbours too)


@dataclass
class _Job:
    """One fit to make, and every (setting index, seed) member of its cell that shares it."""

    cell: int
    probe: str
    rows: np.ndarray  # positions into the cell's x/y
    members: list[tuple[int, int]]  # the first member computes; the others reuse (kNN only)
    class_names: list[str]
    multi_label: bool
    target_type: str
    settings: ProbeSettings
    bootstrap: int
    standardiser: tuple[np.ndarray, np.ndarray] | None = None
    warm_start: bool = False


@dataclass
class _Plan:
    """Everything run_grid will do: subset errors found while planning, and the jobs."""

    errors: list[tuple[int, FitOutcome]] = field(default_factory=list)  # (cell number, outcome)
    jobs: list[_Job] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------------------------

def _ray():
    """The ray module if this process imported it, else None (the engine never imports Ray itself)."""
    return sys.modules.get("ray")


def _resolve(value: Any) -> Any:
    """value, fetched from the object store when it is a ray.ObjectRef."""
    ray = _ray()
    if ray is not None and isinstance(value, ray.ObjectRef):
        return ray.get(value)
    return value


def _balanced_subsets(y_train: np.ndarray, settings: Sequence[Setting], seed: int,
                      class_names: list[str]) -> list[np.ndarray | str]:
    """Per setting, balanced subsets for fractions (k-shot as usual), or why one cannot be drawn."""
    out: list[np.ndarray | str] = []
    for fraction, k_shot in settings:
        try:
            if fraction is not None:
                out.append(balanced_subsets(y_train, [fraction], seed, class_names=class_names)[0])
            else:
                out.append(scarcity_subset(y_train, None, k_shot, seed, class_names=class_names))
        except ValueError as err:
            out.append(str(err))
    return out


def _classification_subsets(y_train: np.ndarray, settings: Sequence[Setting], seed: int,
                            class_names: list[str], sampling: str = "stratified") -> list[np.ndarray | str]:
    """Per setting, the subset positions into the training split, or why it cannot be drawn."""
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}")
    if sampling == "balanced":
        return _balanced_subsets(y_train, settings, seed, class_names)
    try:
        return list(scarcity_subsets(y_train, settings, seed, class_names=class_names))
    except ValueError:
        pass  # at least one setting is impossible: draw each alone so the others still run
    out: list[np.ndarray | str] = []
    for fraction, k_shot in settings:
        try:
            out.append(scarcity_subset(y_train, fraction, k_shot, seed, class_names=class_names))
        except ValueError as err:
            out.append(str(err))
    return out


def _regression_subset(n_train: int, setting: Setting, seed: int) -> np.ndarray | str:
    """The regression rule's subset positions, or why the setting does not apply."""
    fraction, k_shot = setting
    if k_shot is not None:
        return f"k-shot settings do not apply to a regression target (k_shot={k_shot})"
    if not 0 < fraction <= 1:
        return f"fraction must be in (0, 1], got {fraction}"
    try:
        return regression_subset(n_train, fraction, seed)
    except ValueError as err:  # e.g. a negative seed
        return str(err)


def _subsets(cell: GridCell, y: np.ndarray) -> dict[tuple[int, int], np.ndarray | str]:
    """(setting index, seed) -> subset positions into cell.train, or the reason it cannot be drawn."""
    train = np.asarray(cell.train)
    out: dict[tuple[int, int], np.ndarray | str] = {}
    drawn = [i for i, s in enumerate(cell.settings) if s != (None, None)]
    for seed in cell.seeds:
        for i, setting in enumerate(cell.settings):
            if setting == (None, None):
                out[(i, seed)] = np.arange(len(train))
            elif cell.target_type == "regression":
                out[(i, seed)] = _regression_subset(len(train), setting, seed)
        if cell.target_type != "regression" and drawn:
            subsets = _classification_subsets(y[train], [cell.settings[i] for i in drawn], seed,
                                              list(cell.class_names), cell.sampling)
            out.update({(i, seed): subset for i, subset in zip(drawn, subsets)})
    return out


def _probe_settings(cell: GridCell) -> ProbeSettings:
    """What fit_probe receives: the cell's options with its C grid and fold count, as the service decodes them."""
    cs = tuple(float(c) for c in cell.cs or ()) or None
    return replace(cell.options or ProbeSettings(), cs=cs, cv_folds=int(cell.cv_folds or DEFAULT_CV_FOLDS))


def _standardiser(cell: GridCell, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, scale) of the cell's whole training split (float32 inputs, as every fit sees them)."""
    train_x = np.asarray(x[np.asarray(cell.train)], dtype=np.float32).astype(np.float64)
    scaler = StandardScaler().fit(train_x)
    return scaler.mean_.copy(), scaler.scale_.copy()


def _plan_cell(number: int, cell: GridCell, plan: _Plan) -> None:
    """Add the cell's subset errors and jobs to the plan (kNN jobs shared across identical subsets)."""
    y = np.asarray(_resolve(cell.y))
    subsets = _subsets(cell, y)
    train, n_test = np.asarray(cell.train), len(cell.test)
    for i, (fraction, k_shot) in enumerate(cell.settings):
        for seed in cell.seeds:
            if isinstance(subsets[(i, seed)], str):
                plan.errors.append((number, FitOutcome(cell.key, None, fraction, k_shot, seed, 0, n_test, None,
                                                       subsets[(i, seed)])))
    settings = _probe_settings(cell)
    bootstrap = int(cell.bootstrap) if cell.groups is not None else 0
    standardiser = _standardiser(cell, np.asarray(_resolve(cell.x))) if cell.shared_standardisation else None
    for probe in cell.probes:
        shared: dict[bytes, _Job] = {}
        for i in range(len(cell.settings)):
            for seed in cell.seeds:
                subset = subsets[(i, seed)]
                if isinstance(subset, str):
                    continue
                rows = train[subset]
                if probe == "knn" and rows.tobytes() in shared:
                    shared[rows.tobytes()].members.append((i, seed))
                    continue
                job = _Job(number, probe, rows, [(i, seed)], list(cell.class_names), bool(cell.multi_label),
                           cell.target_type, settings, bootstrap, standardiser,
                           cell.warm_start and probe == "linear")
                plan.jobs.append(job)
                if probe == "knn":
                    shared[rows.tobytes()] = job


# ---------------------------------------------------------------------------------------------
# One job (in process or in a Ray task)
# ---------------------------------------------------------------------------------------------

def _error_text(err: BaseException) -> str:
    """A fit failure as one line: a ValueError's own text (a precondition), else type and message."""
    cause = getattr(err, "cause", None)  # a RayTaskError wraps the task's own exception
    err = cause if isinstance(cause, BaseException) else err
    return str(err) if isinstance(err, ValueError) else f"{type(err).__name__}: {err}"


def _clock() -> tuple[float, float]:
    """(wall, CPU) seconds now."""
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> tuple[float, float]:
    """(wall, CPU) seconds since start."""
    wall, cpu = _clock()
    return wall - start[0], cpu - start[1]


def run_job(x: np.ndarray, y: np.ndarray, groups: Sequence | None, test: np.ndarray,
            job: _Job) -> list[tuple[ProbeResult | None, str | None, float, float]]:
    """(result, error, wall s, CPU s) for each member of the job: one fit, then each member's own bootstrap CIs."""
    start = _clock()
    try:
        if job.settings.cs is not None:
            check_cs(job.settings.cs)  # the service refuses a bad C grid for every probe kind
        # float32, as the service decodes its tensors: in-process fits then equal served ones bit for bit.
        data = [np.asarray(a, dtype=np.float32) for a in (x[job.rows], y[job.rows], x[test], y[test])]
        test_groups = [str(groups[i]) for i in test] if job.bootstrap else None
        first_seed = job.members[0][1]
        base = fit_probe(*data, job.class_names, job.multi_label, first_seed, job.probe, job.target_type,
                         job.settings, test_groups=test_groups, standardiser=job.standardiser,
                         warm_start=job.warm_start)
    except Exception as err:  # one failed fit is reported; the grid goes on
        return [(None, _error_text(err), *_since(start))] * len(job.members)
    out = []
    for number, (_, seed) in enumerate(job.members):
        result = base if number == 0 else copy.deepcopy(base)
        result = with_bootstrap(result, data[3], job.multi_label, test_groups, job.bootstrap, seed)
        out.append((result, None, *_since(start)))
        start = _clock()
    return out


# ---------------------------------------------------------------------------------------------
# Executors
# ---------------------------------------------------------------------------------------------

def _resolve_executor(executor: str) -> str:
    """"serial" or "ray" ("auto" = ray when this process has an initialised Ray session)."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    ray = _ray()
    initialised = ray is not None and ray.is_initialized()
    if executor == "ray" and not initialised:
        raise ValueError("executor='ray' needs ray.init() first")
    return "ray" if executor == "ray" or (executor == "auto" and initialised) else "serial"


def _run_serial(cells: Sequence[GridCell], jobs: list[_Job], done: Callable[[int, list], None]) -> None:
    """Every job in this process, in plan order."""
    arrays = [(np.asarray(_resolve(c.x)), np.asarray(_resolve(c.y)), _resolve(c.groups), np.asarray(c.test))
              for c in cells]
    for number, job in enumerate(jobs):
        done(number, run_job(*arrays[job.cell], job))


_REMOTE = None


def _remote_job():
    """run_job as a Ray remote function (created once per process)."""
    global _REMOTE
    if _REMOTE is None:
        _REMOTE = _ray().remote(num_cpus=TASK_CPUS, max_retries=MAX_RETRIES)(run_job)
    return _REMOTE


def _shared(ray, value: Any) -> Any:
    """value in the object store (put once; an ObjectRef or None is passed as is)."""
    return value if value is None or isinstance(value, ray.ObjectRef) else ray.put(value)


def _run_ray(cells: Sequence[GridCell], jobs: list[_Job], done: Callable[[int, list], None]) -> None:
    """Every job as one Ray task, largest subset first, all cells at once; failures become error rows."""
    ray = _ray()
    refs = [(_shared(ray, c.x), _shared(ray, c.y), _shared(ray, c.groups), ray.put(np.asarray(c.test)))
            for c in cells]
    remote = _remote_job()
    order = sorted(range(len(jobs)), key=lambda j: -len(jobs[j].rows))
    pending = {remote.remote(*refs[jobs[j].cell], jobs[j]): j for j in order}
    while pending:
        finished, _ = ray.wait(list(pending), num_returns=1)
        number = pending.pop(finished[0])
        try:
            rows = ray.get(finished[0])
        except Exception as err:  # a worker that died MAX_RETRIES + 1 times, or a task that raised
            rows = [(None, _error_text(err), 0.0, 0.0)] * len(jobs[number].members)
        done(number, rows)


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------

def run_grid(cells: Sequence[GridCell], *, executor: str = "auto",
             progress: Callable[[int], None] | None = None) -> list[FitOutcome]:
    """Every fit of every cell; outcomes in a deterministic order (cell, probe, setting, seed)."""
    mode = _resolve_executor(executor)
    plan = _Plan()
    for number, cell in enumerate(cells):
        _plan_cell(number, cell, plan)
    tick = progress or (lambda n: None)
    for _ in plan.errors:
        tick(1)
    found: dict[tuple[int, str, int, int], FitOutcome] = {}

    def done(number: int, rows: list) -> None:
        job = plan.jobs[number]
        cell = cells[job.cell]
        for position, ((i, seed), (result, error, wall, cpu)) in enumerate(zip(job.members, rows)):
            fraction, k_shot = cell.settings[i]
            shared_from = job.members[0][1] if position else None
            found[(job.cell, job.probe, i, seed)] = FitOutcome(
                cell.key, job.probe, fraction, k_shot, seed, len(job.rows), len(cell.test), result, error,
                shared_from, wall, cpu)
            tick(1)

    (_run_ray if mode == "ray" else _run_serial)(cells, plan.jobs, done)
    return _ordered(cells, plan.errors, found)


def _ordered(cells: Sequence[GridCell], errors: list[tuple[int, FitOutcome]],
             found: dict[tuple[int, str, int, int], FitOutcome]) -> list[FitOutcome]:
    """Per cell: its subset errors (setting, seed order), then its fits by probe, setting, seed."""
    by_cell: dict[int, list[FitOutcome]] = {}
    for number, outcome in errors:
        by_cell.setdefault(number, []).append(outcome)
    out = []
    for number, cell in enumerate(cells):
        out += by_cell.get(number, [])
        for probe in cell.probes:
            for i in range(len(cell.settings)):
                for seed in cell.seeds:
                    if (number, probe, i, seed) in found:
                        out.append(found[(number, probe, i, seed)])
    return out
