"""Orchestrated embedding phase vs in-process compute (and read + compute), printed as ratios from one run.

    python bench/pipeline_overhead.py [--model random-resnet] [--records 1024 [10000 ...]] [--repeat 1]

Orchestrated = the path `ecglens run`'s embed stage takes (orchestrator/stages/embed.py): the dataset's content
tokens, a manifest'd and token-checked EmbeddingCache, a progress callback, and run_embed_job, whose per-replica
Ray actors read and preprocess index chunks and send them over gRPC to the model's server process; embeddings
land in the cache. Left out of the timed span (timed on its own and printed): opening the dataset, the duplicate-id
scan and computing content tokens, which the stage does once per dataset for all models.

Each size is timed three times, all printed: `cold` = a job with workers of its own (run_embed_job without a
pool), so the workers' start-up (a Ray worker process and its imports each) is inside the timed span; `warm` = a
job on the run's WorkerPool after an earlier job used it, as every later (model, dataset) job of a run and the
robustness stage's jobs are (the workers exist; the dataset is new to them and opened on their first call);
`run` = a run's first job as `ecglens run` makes it: a fresh server is started and its workers are made in a
fresh pool as soon as it has an address (stages/embed.early_workers), so they start while it loads its model;
the launch's own seconds are printed beside it. A throwaway job on another dataset warms Ray, the server and the
pool first.

In-process baselines, one process, no Ray, no gRPC, the same batches: `compute` = EmbeddingModel.embed on
already preprocessed batches; `read + compute` = reading and preprocessing each batch, then embedding it,
sequentially (the honest single-process pipeline). Overhead = ratio - 1.

CPU seconds are also printed (the driver and every process it started: Ray's own, its workers, the server), so
that a noisy, shared machine can be judged by work done as well as wall time.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ray  # noqa: E402

from orchestrator import dispatch  # noqa: E402
from orchestrator.cache import EmbeddingCache  # noqa: E402
from orchestrator.datasets.base import DatasetSpec, open_dataset  # noqa: E402
from orchestrator.dispatch import EmbedJob, run_embed_job, start_workers  # noqa: E402
from orchestrator.preprocess import preprocess_windows, spec_from_card  # noqa: E402
from orchestrator.stages.embed import _unique_indices  # noqa: E402
from orchestrator.worker_pool import WorkerPool  # noqa: E402
from services.common.process import start_server  # noqa: E402
from services.embedding.client import EmbeddingClient  # noqa: E402
from services.embedding.model import EmbeddingModel  # noqa: E402
from services.embedding.zoo.registry import resolve_package  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu(root: int) -> dict[int, tuple[str, float]]:
    """pid -> (group, CPU seconds user + system) of `root` and its live descendants."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                text = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            name, rest = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
            stats[int(entry)] = (name, int(rest[1]), (int(rest[11]) + int(rest[12])) / TICK)
    children: dict[int, list[int]] = {}
    for pid, (_, ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            name = stats[pid][0]
            group = "driver" if pid == root else name
            out[pid] = (group, stats[pid][2])
        todo.extend(children.get(pid, []))
    return out


class CpuMeter:
    """CPU seconds used by the process tree between start and stop, by group; polled, because Ray actors
    are killed (and their counters gone) before the run returns."""

    def __init__(self, interval_s: float = 1.0) -> None:
        self.interval_s, self.seen, self.base = interval_s, {}, tree_cpu(os.getpid())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.seen.update(tree_cpu(os.getpid()))

    def stop(self) -> dict[str, float]:
        """CPU seconds by group since start (a process that ended loses at most its last interval)."""
        self._stop.set()
        self._thread.join()
        self.seen.update(tree_cpu(os.getpid()))
        out: Counter = Counter()
        for pid, (group, cpu) in self.seen.items():
            out[group] += cpu - self.base.get(pid, (group, 0.0))[1]
        return dict(out)


def in_process(model: EmbeddingModel, dataset, prep, batch_size: int) -> tuple[float, float, float, np.ndarray]:
    """(read+preprocess s, compute s, CPU s) over the dataset in batches, sequentially; first batch's embeddings."""
    read_s = compute_s = 0.0
    first = None
    cpu = time.process_time()
    for k in range(0, len(dataset), batch_size):
        started = time.perf_counter()
        x = np.concatenate([preprocess_windows(dataset.load(i), prep)[0]
                            for i in range(k, min(k + batch_size, len(dataset)))])
        read_s += time.perf_counter() - started
        started = time.perf_counter()
        emb = model.embed(model.validate(x))
        compute_s += time.perf_counter() - started
        first = emb if first is None else first
    return read_s, compute_s, time.process_time() - cpu, first


def orchestrated(server, card, spec, prep, batch_size: int, in_flight: int, root: Path, readers: int = 0,
                 pool: WorkerPool | None = None) -> tuple:
    """(wall s, CPU s by process group, set-up s, cache, ids) of the embed stage's work for one model on one dataset
    (workers from `pool`, else the job's own)."""
    started = time.perf_counter()
    dataset = open_dataset(spec)
    problems: list = []
    keep, ids = _unique_indices(dataset, problems)
    tokens = {rid: dataset.content_token(i) for i, rid in zip(keep, ids)}
    setup_s = time.perf_counter() - started
    meter = CpuMeter()
    started = time.perf_counter()
    cache = EmbeddingCache(root, "m", "d", {"model": card.name, "preprocessing_hash": prep.hash}, tokens=tokens)
    job = EmbedJob(card.name, [server.address], spec, dataset.name, prep, cache, batch_size, in_flight,
                   readers=readers)
    done = [0]

    def progress(n: int) -> None:  # as the stage's (a disabled tqdm bar and the on_embedded hook) costs
        done[0] += n

    problems += run_embed_job(job, keep, ids, progress, pool)
    wall = time.perf_counter() - started
    used = meter.stop()
    assert not problems and len(cache.done_ids()) == len(ids) == done[0], (problems[:3], done[0])
    used.update({f"workers' {k}": v for k, v in job.timing.items()})
    return wall, used, setup_s, cache, ids


def main() -> int:
    """Time both paths per size and print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="random-resnet", help="zoo name or package directory")
    parser.add_argument("--records", type=int, nargs="+", default=[1024],
                        help="synthetic records (Europe-like site, 500 Hz); several sizes run one after another")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--in-flight", type=int, default=2)
    parser.add_argument("--read-ahead", type=int, default=dispatch.READ_AHEAD,
                        help="chunks per replica read beyond those on the wire (dispatch.READ_AHEAD)")
    parser.add_argument("--readers", type=int, default=0,
                        help="worker processes per replica (EmbedJob.readers; 0: one per call in flight)")
    parser.add_argument("--repeat", type=int, default=1, help="timed repetitions per size (each printed)")
    args = parser.parse_args()
    os.environ.setdefault("ECGLENS_ZOO", str(Path(tempfile.gettempdir()) / "ecglens-bench-zoo"))
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    dispatch.READ_AHEAD = args.read_ahead

    package = resolve_package(args.model)
    model = EmbeddingModel.load(package)
    workdir = Path(tempfile.mkdtemp(prefix="ecglens-bench-"))
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    lines = []
    pool = WorkerPool()
    try:
        with start_server("services.embedding", ["--model", str(package)], name="bench") as server:
            with EmbeddingClient(server.address) as client:
                card = client.card()
            prep = spec_from_card(card)
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, _temp_dir=ray_tmp)
            warm_spec = DatasetSpec("synthetic", {"sites": ["eu"], "records_per_site": args.batch_size, "seed": 1})
            model.embed(model.validate(np.zeros((args.batch_size, *prep_shape(prep)), np.float32)))
            # Warm Ray, the server and the run's pool (its workers started and used by an earlier job).
            orchestrated(server, card, warm_spec, prep, args.batch_size, args.in_flight, workdir / "warm",
                         args.readers, pool)
            for n in args.records:
                for rep in range(args.repeat):
                    # A seed per repetition: the pool's workers have not opened this dataset yet, as a later job of
                    # a run on a new dataset has not (they keep the last few open).
                    spec = DatasetSpec("synthetic", {"sites": ["eu"], "records_per_site": n, "seed": rep})
                    read_s, compute_s, local_cpu, first = in_process(model, open_dataset(spec), prep, args.batch_size)
                    timed = {}
                    for kind in ("cold", "warm", "run"):
                        with contextlib.ExitStack() as stack:
                            if kind == "run":
                                job_server, job_pool, launch_s = launch_as_run(stack, package, args)
                            else:
                                job_server, job_pool = server, pool if kind == "warm" else None
                            orch_s, cpu, setup_s, cache, ids = orchestrated(
                                job_server, card, spec, prep, args.batch_size, args.in_flight,
                                workdir / f"cache-{n}-{rep}-{kind}", args.readers, job_pool)
                        got = cache.get(ids[:len(first)])
                        np.testing.assert_allclose(got, first, atol=1e-5)
                        shutil.rmtree(workdir / f"cache-{n}-{rep}-{kind}", ignore_errors=True)
                        timed[kind] = (orch_s, cpu, setup_s)
                    lines += report(n, args, card, timed, read_s, compute_s, local_cpu, launch_s)
    finally:
        pool.close()
        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    print("\n".join(lines))
    return 0


def launch_as_run(stack: contextlib.ExitStack, package: Path, args) -> tuple:
    """(server, pool, launch s): a fresh server started as `ecglens run`'s launch stage starts one, its endpoint
    workers made in a fresh pool as soon as it has an address (stages/embed.early_workers), while it loads."""
    pool = stack.enter_context(WorkerPool())

    def bound(address: str) -> None:  # the settings orchestrated()'s EmbedJob has: the same pool key
        start_workers(pool, [address], {}, EmbedJob.timeout_s, {}, args.in_flight, args.readers)

    started = time.perf_counter()
    server = stack.enter_context(start_server("services.embedding", ["--model", str(package)], name="bench-run",
                                              on_bound=bound))
    return server, pool, time.perf_counter() - started


def prep_shape(prep) -> tuple[int, int]:
    """[leads, samples] of one wire ECG."""
    return len(prep.leads), prep.num_samples


def report(n: int, args, card, timed: dict, read_s: float, compute_s: float, local_cpu: float,
           launch_s: float) -> list[str]:
    """The lines printed for one size: the baselines, then the cold, the warm and the run's first job."""
    lines = [
        f"model {card.name}, {n} records, batch {args.batch_size}, in flight {args.in_flight}, "
        f"read ahead {args.read_ahead}, readers {args.readers or args.in_flight}, cpus={os.cpu_count()}, "
        f"ECGLENS_ORT_THREADS="
        f"{os.environ.get('ECGLENS_ORT_THREADS', 'default')}",
        f"  in-process model compute          {compute_s:7.2f} s  {n / compute_s:7.1f} ECG/s",
        f"  in-process read+preprocess        {read_s:7.2f} s  {n / read_s:7.1f} ECG/s",
        f"  in-process read + compute         {read_s + compute_s:7.2f} s  {n / (read_s + compute_s):7.1f} ECG/s"
        f"  (CPU {local_cpu:.1f} s)",
    ]
    what = {"cold": "a job with workers of its own, started inside it", "warm": "later job, run's pool reused",
            "run": "a run's first job: its workers started while the server loaded"}
    for kind, (orch_s, cpu, setup_s) in timed.items():
        cpu = dict(cpu)
        timing = {k: cpu.pop(k) for k in list(cpu) if k.startswith("workers' ")}
        groups = ", ".join(f"{k} {v:.1f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]) if v >= 0.05)
        summed = ", ".join(f"{k.split(' ', 1)[1]} {v:.1f}" for k, v in timing.items())
        lines += [
            f"  orchestrated {kind} ({what[kind]})",
            f"    embed stage                     {orch_s:7.2f} s  {n / orch_s:7.1f} ECG/s"
            f"  (CPU {sum(cpu.values()):.1f} s: {groups})",
            f"    worker seconds summed over calls  {summed}",
            f"    stage set-up not timed above    {setup_s:7.2f} s  (open dataset, duplicate scan, content tokens)",
            f"    ratio {kind} / compute                {orch_s / compute_s:.3f}",
            f"    ratio {kind} / (read + compute)       {orch_s / (read_s + compute_s):.3f}",
        ]
    cold, warm = timed["cold"][0], timed["warm"][0]
    lines.append(f"  worker start-up paid by the cold job  {cold - warm:7.2f} s  (cold - warm)")
    lines.append(f"  the run's launch (server start to SERVING, its workers starting meanwhile)  {launch_s:.2f} s")
    return lines


if __name__ == "__main__":
    sys.exit(main())
