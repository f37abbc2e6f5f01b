"""Served vs in-process throughput of one model package, printed as ratios measured in one run.

    python bench/serve_throughput.py [--model random-resnet] [--batch-sizes 1,8,32] [--ecgs 256]

In-process = EmbeddingModel.embed (the very code the server runs: validation, normalisation,
ONNX Runtime) called in a loop. Served = the same package behind `ecglens serve` in its own
process, called by a client over loopback gRPC: unary Embed with requests kept in flight, and
EmbedStream, and unary Embed with the ECGs sent as float16 (half the bytes; the server
widens them). Machines here are shared and noisy, so each figure is the best of --repeats rounds
and the ratios (served / in-process ECGs/s) are what to compare.

Like with like: both sides run the same model file with each side's own defaults, which are what a user
gets. In-process is a library caller: ONNX Runtime's defaults (intra-op threads = all cores, spinning
threads on). The server runs two batches side by side on half the cores each with spinning off (see
services/embedding/backends/onnx_backend.plan_threads); the bench prints both plans. The client shares
the machine's cores with the server, as it would on one host. Besides wall-clock rates the bench prints
CPU milliseconds per ECG (server process + client process vs the in-process loop): on a busy machine
that is the steadier figure of what serving costs over calling the model.
"""
from __future__ import annotations

import argparse
import os
import resource
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


def process_cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system, all threads) of this process (pid None) or of a child by pid."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # not Linux: the server's share is not measured
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def best_rate(fn, n_ecgs: int, repeats: int, server_pid: int | None = None) -> tuple[float, float]:
    """(ECGs/s of the fastest of `repeats` timed calls after one warm-up, CPU ms per ECG of the fastest).

    CPU counts this process and, given its pid, the server process too.
    """
    fn()
    best, cpu = float("inf"), float("nan")
    for _ in range(repeats):
        cpu0 = process_cpu_s(None) + (process_cpu_s(server_pid) if server_pid else 0.0)
        started = time.perf_counter()
        fn()
        took = time.perf_counter() - started
        if took < best:
            used = process_cpu_s(None) + (process_cpu_s(server_pid) if server_pid else 0.0) - cpu0
            best, cpu = took, 1e3 * used / n_ecgs
    return n_ecgs / best, cpu


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
    # A second in-process session without spinning threads, for the CPU table only: spinning burns CPU
    # while waiting, so the default session's CPU per ECG would flatter the server's.
    saved = os.environ.get("ECGLENS_ORT_SPINNING")
    os.environ["ECGLENS_ORT_SPINNING"] = "0"
    quiet_model = EmbeddingModel.load(package)
    if saved is None:
        del os.environ["ECGLENS_ORT_SPINNING"]
    else:
        os.environ["ECGLENS_ORT_SPINNING"] = saved
    spec = model.card.input
    x = np.random.default_rng(0).normal(0, 0.4, (args.ecgs, len(spec.leads), spec.num_samples)).astype(np.float32)
    print(f"model {model.card.name} ({model.backend.description}), {args.ecgs} ECGs of "
          f"{len(spec.leads)}x{spec.num_samples} per round, best of {args.repeats}, cpus={os.cpu_count()}")
    from services.embedding.backends.onnx_backend import _cpu_count, plan_threads
    cpus = _cpu_count()
    for side, in_process in (("in-process", True), ("server", False)):
        runners, threads = plan_threads(["CPUExecutionProvider"], in_process, cpus)
        spinning = os.environ.get("ECGLENS_ORT_SPINNING", "1" if in_process else "0")
        print(f"  {side:10s}: {runners} batch(es) at a time x {threads or 'all'} intra-op thread(s), spinning "
              f"{'on' if spinning == '1' else 'off'} (CPU backend plan; ECGLENS_ORT_* override)")

    rows = []
    with start_server("services.embedding", ["--model", str(package)], name="bench") as server, \
            EmbeddingClient(server.address) as client, \
            EmbeddingClient(server.address, wire_dtype="float16") as half:
        pid = server.process.pid
        for bs in (int(b) for b in args.batch_sizes.split(",")):
            batches = [x[i:i + bs] for i in range(0, len(x), bs)]

            def in_process() -> None:
                for b in batches:
                    model.embed(model.validate(b))

            def in_process_quiet() -> None:
                for b in batches:
                    quiet_model.embed(quiet_model.validate(b))

            def unary() -> None:
                client.embed_many(x, bs, in_flight=args.in_flight)

            def unary_f16() -> None:
                half.embed_many(x, bs, in_flight=args.in_flight)

            def stream() -> None:
                for _ in client.embed_stream(batches):
                    pass

            n, k = len(x), args.repeats
            rows.append((bs, best_rate(in_process, n, k), best_rate(unary, n, k, pid), best_rate(stream, n, k, pid),
                         best_rate(unary_f16, n, k, pid), best_rate(in_process_quiet, n, k)))
        drift = float(np.abs(half.embed(x[:8]) - model.embed(x[:8])).max())
    print(f"{'batch':>5} {'in-process ECG/s':>17} {'Embed ECG/s':>12} {'ratio':>6} {'EmbedStream ECG/s':>18} {'ratio':>6}"
          f" {'Embed f16-wire':>15} {'ratio':>6}")
    for bs, (base, _), (served, _), (streamed, _), (served16, _), _ in rows:
        print(f"{bs:>5} {base:>17.1f} {served:>12.1f} {served / base:>6.2f} {streamed:>18.1f} {streamed / base:>6.2f}"
              f" {served16:>15.1f} {served16 / base:>6.2f}")
    print("CPU ms per ECG (server + client processes; in-process: the loop's process). Lower is better. "
          "'no-spin' is in-process with spinning off (ECGLens' server setting), the like-for-like CPU reference.")
    print(f"{'batch':>5} {'in-process':>11} {'no-spin':>8} {'Embed':>8} {'EmbedStream':>12} {'Embed f16':>10}")
    for bs, (_, base), (_, served), (_, streamed), (_, served16), (_, quiet) in rows:
        print(f"{bs:>5} {base:>11.2f} {quiet:>8.2f} {served:>8.2f} {streamed:>12.2f} {served16:>10.2f}")
    print(f"float16 wire: max |embedding difference| vs float32 in-process = {drift:.2e} "
          f"(embedding scale {float(np.abs(model.embed(x[:8])).mean()):.2e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
