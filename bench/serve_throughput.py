"""Served vs in-process throughput of one model package, printed as ratios measured in one run.

    python bench/serve_throughput.py [--model random-resnet] [--batch-sizes 1,8,32] [--ecgs 256]

In-process = EmbeddingModel.embed (the very code the server runs: validation, normalisation,
ONNX Runtime) called in a loop. Served = the same package behind `ecglens serve` in its own
process, called by a client over loopback gRPC: unary Embed with requests kept in flight, and
EmbedStream, and unary Embed with the ECGs sent as float16 (half the bytes; the server
widens them). Machines here are shared and noisy, so each figure is the best of --repeats rounds
and the ratios (served / in-process ECGs/s) are what to compare.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.common.process import start_server  # noqa: E402
from services.embedding.client import EmbeddingClient  # noqa: E402
from services.embedding.model import EmbeddingModel  # noqa: E402
from services.embedding.zoo.registry import resolve_package  # noqa: E402


def best_rate(fn, n_ecgs: int, repeats: int) -> float:
    """ECGs/s of the fastest of `repeats` timed calls (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return n_ecgs / best


def main() -> int:
    """Run the comparison and print a table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="random-resnet", help="zoo name or package directory")
    parser.add_argument("--batch-sizes", default="1,8,32", help="comma-separated request batch sizes")
    parser.add_argument("--ecgs", type=int, default=192, help="ECGs per timed round")
    parser.add_argument("--in-flight", type=int, default=2, help="unary requests kept outstanding by the client")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per figure (best is kept)")
    args = parser.parse_args()
    os.environ.setdefault("ECGLENS_ZOO", str(Path(tempfile.gettempdir()) / "ecglens-bench-zoo"))

    package = resolve_package(args.model)
    model = EmbeddingModel.load(package)
    spec = model.card.input
    x = np.random.default_rng(0).normal(0, 0.4, (args.ecgs, len(spec.leads), spec.num_samples)).astype(np.float32)
    print(f"model {model.card.name} ({model.backend.description}), {args.ecgs} ECGs of "
          f"{len(spec.leads)}x{spec.num_samples} per round, best of {args.repeats}, cpus={os.cpu_count()}")

    rows = []
    with start_server("services.embedding", ["--model", str(package)], name="bench") as server, \
            EmbeddingClient(server.address) as client, \
            EmbeddingClient(server.address, wire_dtype="float16") as half:
        for bs in (int(b) for b in args.batch_sizes.split(",")):
            batches = [x[i:i + bs] for i in range(0, len(x), bs)]

            def in_process() -> None:
                for b in batches:
                    model.embed(model.validate(b))

            def unary() -> None:
                client.embed_many(x, bs, in_flight=args.in_flight)

            def unary_f16() -> None:
                half.embed_many(x, bs, in_flight=args.in_flight)

            def stream() -> None:
                for _ in client.embed_stream(batches):
                    pass

            base = best_rate(in_process, len(x), args.repeats)
            served = best_rate(unary, len(x), args.repeats)
            streamed = best_rate(stream, len(x), args.repeats)
            served16 = best_rate(unary_f16, len(x), args.repeats)
            rows.append((bs, base, served, streamed, served16))
        drift = float(np.abs(half.embed(x[:8]) - model.embed(x[:8])).max())
    print(f"{'batch':>5} {'in-process ECG/s':>17} {'Embed ECG/s':>12} {'ratio':>6} {'EmbedStream ECG/s':>18} {'ratio':>6}"
          f" {'Embed f16-wire':>15} {'ratio':>6}")
    for bs, base, served, streamed, served16 in rows:
        print(f"{bs:>5} {base:>17.1f} {served:>12.1f} {served / base:>6.2f} {streamed:>18.1f} {streamed / base:>6.2f}"
              f" {served16:>15.1f} {served16 / base:>6.2f}")
    print(f"float16 wire: max |embedding difference| vs float32 in-process = {drift:.2e} "
          f"(embedding scale {float(np.abs(model.embed(x[:8])).mean()):.2e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
