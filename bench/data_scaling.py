"""Orchestrator peak memory and wall time for a small vs a 10x larger synthetic dataset.

    python bench/data_scaling.py [--small 10000] [--large 100000]

Each size runs the real embedding path (endpoint actors read and send -> gRPC server -> cache)
in its own process, against a server whose model returns zeros, so what is measured is the data
path, then loads the embedding matrix from the cache the way the views stage does (in a Ray task). Records are read lazily: the driver's peak memory should barely grow with the dataset, and
the printed ratio (large / small peak RSS) is what to compare (target <= 1.2).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CARD = """name: null-model
version: "1"
backend: python
entry_point: null_model:NullModel
input: {sampling_rate_hz: 500, leads: [I, II, III, aVR, aVL, aVF, V1, V2, V3, V4, V5, V6], num_samples: 5000}
output: {embedding_dim: DIM}
serving: {max_batch_size: 64}
"""


def measure(records: int, dim: int = 8) -> dict:
    """Run one size in this process and return peak RSS (MB) and records/s."""
    import ray

    from orchestrator.cache import EmbeddingCache
    from orchestrator.datasets.base import DatasetSpec, open_dataset, record_ids
    from orchestrator.dispatch import EmbedJob, run_embed_job
    from orchestrator.preprocess import PreprocessSpec
    from orchestrator.stages.embedding_refs import load_rows

    shape_of = ray.remote(lambda m: m.shape)
    from services.common.process import start_server

    work = Path(tempfile.mkdtemp(prefix="ecglens-scale-"))
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    try:
        (work / "pkg").mkdir()
        (work / "pkg" / "card.yaml").write_text(CARD.replace("DIM", str(dim)))
        env = {"PYTHONPATH": os.pathsep.join([str(ROOT / "bench"), os.environ.get("PYTHONPATH", "")]),
               "ECGLENS_NULL_DIM": str(dim)}
        with start_server("services.embedding", ["--model", str(work / "pkg")], env=env) as server:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, _temp_dir=ray_tmp)
            spec = DatasetSpec("synthetic", {"sites": ["eu"], "records_per_site": records, "seed": 0})
            dataset = open_dataset(spec)
            prep = PreprocessSpec(500.0, ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"),
                                  5000)
            ids = record_ids(dataset)
            job = EmbedJob("null", [server.address], spec, dataset.name, prep, EmbeddingCache(work / "cache", "m", "d"),
                           batch_size=64, in_flight=2)
            started = time.perf_counter()
            problems = run_embed_job(job, list(range(len(dataset))), ids)
            assert not problems and len(job.cache.done_ids()) == records
            # The views stage's path: the matrix is loaded from the cache in a Ray task, never in the driver.
            matrix = load_rows.remote(str(job.cache.dir), ids, np.ones(len(ids), bool))
            shape = ray.get(shape_of.remote(matrix))
            elapsed = time.perf_counter() - started
            assert shape == (records, dim), shape
            ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    return {"records": records, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "records_per_s": records / elapsed}


def main() -> int:
    """Run both sizes in child processes and print the ratio."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=8,
                        help="embedding width (default 8; 1024 checks a 100k x 1024 float32 set end to end)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if args.one:
        print(json.dumps(measure(args.one, args.dim)))
        return 0
    rows = []
    for n in (args.small, args.large):
        out = subprocess.run([sys.executable, __file__, "--one", str(n), "--dim", str(args.dim)], capture_output=True,
                             text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    for r in rows:
        print(f"{r['records']:>8} records: driver peak RSS {r['peak_rss_mb']:7.1f} MB, {r['records_per_s']:7.1f} records/s")
    print(f"peak memory ratio large/small: {rows[1]['peak_rss_mb'] / rows[0]['peak_rss_mb']:.3f} (target <= 1.2)")
    wall = (rows[1]["records"] / rows[1]["records_per_s"]) / (rows[0]["records"] / rows[0]["records_per_s"])
    print(f"wall time ratio large/small: {wall:.2f} for {rows[1]['records'] / rows[0]['records']:g}x the records "
          "(target <= 11 for 10x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
