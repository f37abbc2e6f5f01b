"""Run an experiment end to end: launch -> embed -> views -> probe -> analyse -> report.

Data flows one way: dataset -> preprocess -> embedding servers -> cache -> probing / analysis
-> results.json + report.html. Each stage is a function in orchestrator/stages/ with typed inputs and
outputs; this module only strings them together, times them, and stops every process the run
started on exit (Ctrl-C included).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import re
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import ray

from orchestrator.experiment import Experiment
from orchestrator.dispatch import RecordProblem
from orchestrator.findings import findings
from orchestrator.report import write_report
from orchestrator.results import ECGLENS_VERSION, SCHEMA_VERSION, Results
from orchestrator.stages import assemble
from orchestrator.stages.analyse import analyse
from orchestrator.stages.compare import compare
from orchestrator.stages.connect import connect_remote
from orchestrator.stages.embed import early_workers, embed
from orchestrator.stages.intervals import seed_mean_intervals
from orchestrator.stages.launch import Services, launch
from orchestrator.stages.probe import probe
from orchestrator.stages.robustness import robustness
from orchestrator.stages.subgroups import subgroups
from orchestrator.stages.summarise import efficiency, summaries
from orchestrator.stages.transfer import transfer, transfer_gaps
from orchestrator.stages.types import Figure, Hooks
from orchestrator.stages.views import make_views
from orchestrator.worker_pool import WorkerPool

__all__ = ["Hooks", "run_experiment"]


def _init_ray(address: str | None, num_cpus: int | None, temp_dir: str | None) -> str | None:
    """Join a cluster or start a local one; returns the private temp dir of a local one we started, else None."""
    if ray.is_initialized():
        return None
    common = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    with _keeping_sigterm_handler():
        if address:
            ray.init(address=address, **common)
            return None
        # A private session dir per run, so two runs on one machine never share Ray's files. Short path
        # under /tmp because Ray's Unix sockets have a length limit.
        temp_dir = temp_dir or tempfile.mkdtemp(prefix="ecglens-ray-", dir="/tmp")
        ray.init(num_cpus=num_cpus or os.cpu_count(), _temp_dir=temp_dir, **common)
        return temp_dir


@contextlib.contextmanager
def _keeping_sigterm_handler() -> Iterator[None]:
    """Put back a SIGTERM handler the caller installed (the CLI's: SIGTERM unwinds like Ctrl-C) after ray.init.

    ray.init replaces it with sys.exit(15); raised while the driver waits inside Ray, that SystemExit comes
    out as SystemExit(1), and a run stopped on purpose would look like a crash (exit 1, not 130).
    """
    previous = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        if callable(previous) and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _ray_session(exp: Experiment, ray_address: str | None, ray_temp_dir: str | None) -> Iterator[bool]:
    """Ray for the run, shut down (and its private files removed) afterwards if this run started it.

    Yields whether the run joined a cluster (an address was given): then launched servers must run on
    cluster nodes, reachable from every node, not on the driver's loopback (see stages/launch.py).
    """
    address = ray_address or exp.runtime["ray_address"]
    with contextlib.ExitStack() as stack:
        ray_dir = _init_ray(address, exp.runtime["ray_num_cpus"], ray_temp_dir)
        if ray_dir:
            if not ray_temp_dir:
                stack.callback(shutil.rmtree, ray_dir, True)
            stack.callback(ray.shutdown)
        yield bool(address)


class _Timer:
    """Wall seconds per stage, for run.json."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.seconds[f"{name}_s"] = self.seconds.get(f"{name}_s", 0.0) + time.perf_counter() - started


def _write_figures(out_dir: Path, figures: list[Figure]) -> None:
    """Every figure as figures/<name>.png (the name made safe for a file system)."""
    folder = out_dir / "figures"
    folder.mkdir(exist_ok=True)
    for fig in figures:
        (folder / (re.sub(r"[^A-Za-z0-9_.-]+", "-", fig.name.replace("/", "__")) + ".png")).write_bytes(fig.png)


def run_experiment(exp: Experiment, out_dir: Path | str, ray_address: str | None = None,
                   hooks: Hooks | None = None, show_progress: bool = True, ray_temp_dir: str | None = None) -> Results:
    """Run everything and write results.json, report.html, figures/ and run.json into out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    hooks, timer, started = hooks or Hooks(), _Timer(), time.perf_counter()
    services = Services(out_dir / "logs")
    cache_root = Path(exp.runtime["cache_dir"] or out_dir / "cache")
    # Remote endpoints first, before Ray starts: a setting they lack is reported at once, and a model whose
    # endpoint does not answer is left out (its records reported as lost) instead of stopping the run.
    remote = timer("connect", connect_remote, exp)
    full, exp = exp, exp.without(remote.lost)
    with _ray_session(exp, ray_address, ray_temp_dir) as on_cluster, contextlib.ExitStack() as stack:
        stack.callback(services.stop_all)
        # One pool of endpoint workers for the run: the embed and robustness stages' jobs reuse them, so each
        # worker's start-up is paid once per run; closed (its workers killed) before the servers stop.
        pool = stack.enter_context(WorkerPool())
        # Each replica's workers start as soon as it has an address, while its server loads the model.
        launched = timer("launch", launch, exp, services, hooks, on_cluster, remote.cards, early_workers(exp, pool))
        embedded = timer("embed", embed, exp, launched, cache_root, hooks, show_progress, pool)
        evaluate_started = time.perf_counter()
        views = make_views(exp, embedded)
        # Each step's seconds are in run.json too, so that a slow run says where its time went.
        probed = timer("probe", probe, exp, views, show_progress)
        intervals = seed_mean_intervals(exp, probed)
        comparisons, compare_problems = timer("compare", compare, exp, views, probed.fits)
        transfer_rows, transfer_problems = timer("transfer", transfer, exp, views, show_progress)
        analysed = timer("analyse", analyse, exp, views, probed, launched, embedded)
        subgroup_rows, calibration = timer("subgroups", subgroups, exp, views, probed)
        timer.seconds["evaluate_s"] = time.perf_counter() - evaluate_started
        robust = timer("robustness", robustness, exp, views, probed, launched, embedded, cache_root, show_progress,
                       pool)
    problems = (embedded.problems + probed.problems + compare_problems + transfer_problems + analysed.problems
                + robust.problems)
    problems += [RecordProblem(d.name, "*", "warning", note, model)
                 for model, notes in remote.notes.items() for d in embedded.datasets for note in notes]
    lost_rows, lost_notes = assemble.lost_model_rows(remote.lost, views, problems)
    _write_figures(out_dir, analysed.figures)
    summary = summaries(probed.probes, intervals)
    results = Results(
        schema_version=SCHEMA_VERSION, ecglens_version=ECGLENS_VERSION, experiment=full.raw,
        models=assemble.models(exp, launched), datasets=[assemble.dataset_entry(exp, view) for view in views],
        preprocessing=assemble.preprocessing_entries(exp, embedded), probes=probed.probes, summary=summary,
        label_efficiency=efficiency(summary), comparisons=comparisons, representations=analysed.representations,
        transfer=transfer_rows, transfer_gap=transfer_gaps(transfer_rows), similarity=analysed.similarity,
        robustness=robust.rows, subgroups=subgroup_rows, calibration=calibration,
        errors=assemble.errors(problems + lost_notes), counts=assemble.counts(exp, views, problems) + lost_rows)
    results.partial = bool(results.losses())
    results.findings = findings(results)
    results.write(out_dir / "results.json")
    report = write_report(results, [f.as_dict() for f in analysed.figures], out_dir)
    timer.seconds["total_s"] = time.perf_counter() - started
    (out_dir / "run.json").write_text(json.dumps({
        "timings_s": {k: round(v, 3) for k, v in timer.seconds.items()},
        "python": platform.python_version(), "cpus": os.cpu_count(),
        "endpoints": launched.endpoints,
        "report": str(report)}, indent=2) + "\n")
    return results
