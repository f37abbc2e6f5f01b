"""Orchestrated embedding phase vs pure in-process model compute, printed as ratios from one run.

    python bench/pipeline_overhead.py [--model random-resnet] [--records 256]

Orchestrated = the real path: Ray tasks read and preprocess synthetic records, a Ray actor sends
batches over gRPC to the model's server process, embeddings land in the cache. In-process = the
same package's EmbeddingModel.embed on the same, already preprocessed records (pure model compute),
and, for context, the same plus reading/preprocessing in one process. Overhead = ratio - 1.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ray  # noqa: E402

from orchestrator.cache import EmbeddingCache  # noqa: E402
from orchestrator.datasets.base import DatasetSpec, open_dataset  # noqa: E402
from orchestrator.dispatch import EmbedJob, run_embed_job  # noqa: E402
from orchestrator.preprocess import preprocess, spec_from_card  # noqa: E402
from services.common.process import start_server  # noqa: E402
from services.embedding.client import EmbeddingClient  # noqa: E402
from services.embedding.model import EmbeddingModel  # noqa: E402
from services.embedding.zoo.registry import resolve_package  # noqa: E402


def main() -> int:
    """Time both paths and print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="random-resnet", help="zoo name or package directory")
    parser.add_argument("--records", type=int, default=256, help="synthetic records (Europe-like site, 500 Hz)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--in-flight", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("ECGLENS_ZOO", str(Path(tempfile.gettempdir()) / "ecglens-bench-zoo"))
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")

    package = resolve_package(args.model)
    model = EmbeddingModel.load(package)
    spec = DatasetSpec("synthetic", {"sites": ["eu"], "records_per_site": args.records, "seed": 0})
    dataset = open_dataset(spec)
    workdir = Path(tempfile.mkdtemp(prefix="ecglens-bench-"))
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    try:
        with start_server("services.embedding", ["--model", str(package)], name="bench") as server:
            with EmbeddingClient(server.address) as client:
                card = client.card()
            prep = spec_from_card(card)
            started = time.perf_counter()
            records = [preprocess(dataset.load(i), prep) for i in range(len(dataset))]
            read_s = time.perf_counter() - started
            x = np.stack(records)
            model.embed(x[:args.batch_size])  # warm-up
            started = time.perf_counter()
            for k in range(0, len(x), args.batch_size):
                model.embed(model.validate(x[k:k + args.batch_size]))
            compute_s = time.perf_counter() - started

            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, _temp_dir=ray_tmp)
            ids = [dataset.meta(i).record_id for i in range(len(dataset))]
            # Warm the Ray workers (imports) on a throwaway cache so the timed run measures steady state.
            warm = EmbedJob(card.name, [server.address], spec, dataset.name, prep,
                            EmbeddingCache(workdir / "warm", "m", "d"), args.batch_size, args.in_flight)
            run_embed_job(warm, list(range(args.batch_size)), ids[:args.batch_size])
            job = EmbedJob(card.name, [server.address], spec, dataset.name, prep,
                           EmbeddingCache(workdir / "cache", "m", "d"), args.batch_size, args.in_flight)
            started = time.perf_counter()
            problems = run_embed_job(job, list(range(len(dataset))), ids)
            orchestrated_s = time.perf_counter() - started
            assert not problems and len(job.cache.done_ids()) == len(dataset)
            np.testing.assert_allclose(job.cache.get(ids[:4]), model.embed(x[:4]), atol=1e-5)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(ray_tmp, ignore_errors=True)

    n = len(dataset)
    print(f"model {card.name}, {n} records, batch {args.batch_size}, in flight {args.in_flight}, cpus={os.cpu_count()}")
    print(f"in-process model compute        {compute_s:7.2f} s  {n / compute_s:7.1f} ECG/s")
    print(f"in-process read+preprocess      {read_s:7.2f} s  {n / read_s:7.1f} ECG/s")
    print(f"orchestrated (Ray + gRPC+cache) {orchestrated_s:7.2f} s  {n / orchestrated_s:7.1f} ECG/s")
    print(f"ratio orchestrated / compute            {orchestrated_s / compute_s:.3f}  "
          f"(overhead {100 * (orchestrated_s / compute_s - 1):+.1f}%)")
    print(f"ratio orchestrated / (read + compute)   {orchestrated_s / (read_s + compute_s):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
