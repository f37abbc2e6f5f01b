"""Peak server memory under hostile bursts: does the request budget hold? Prints peak RSS over idle per scenario.

    python bench/memory_budget.py [--model handcrafted] [--mib 200] [--concurrent 8]

Each scenario starts a fresh `ecglens serve` (so VmHWM, the kernel's peak RSS, belongs to it alone),
waits for SERVING, reads idle VmRSS, fires `--concurrent` requests of `--mib` MiB at once from threads
and reports the codes and VmHWM - idle. The requests are well-formed tensors of 1 lead (the model wants
12), so the server reads, parses and decodes every byte before refusing them INVALID_ARGUMENT: the
memory path of a real batch without minutes of inference on a 2-core machine.

Scenarios: the defaults (64 MiB message limit, 1024 MiB budget); a raised message limit (--max-message-mb
256) so the budget alone must hold; the same without a token on a token-protected server; and a burst of
20 x 256-ECG (61 MB) requests on the defaults.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from protos.ecglens.v1 import embedding_pb2, tensor_pb2  # noqa: E402
from services.common.grpc_options import channel_options  # noqa: E402
from services.common.process import start_server  # noqa: E402
from services.embedding.zoo.registry import resolve_package  # noqa: E402

EMBED = "/ecglens.v1.EmbeddingService/Embed"
MIB = 1024 * 1024


def rss_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of pid in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def request(mib: float, leads: int = 1) -> bytes:
    """A serialised EmbedRequest of about mib MiB: float32 [1, leads, n]."""
    samples = int(mib * MIB / 4 / leads)
    tensor = tensor_pb2.Tensor(dtype=tensor_pb2.FLOAT32, shape=[1, leads, samples], data=bytes(samples * leads * 4))
    return embedding_pb2.EmbedRequest(request_id="burst", ecg=tensor).SerializeToString()


def burst(address: str, payload: bytes, count: int, metadata=None) -> Counter:
    """Send count copies of payload at once; count the codes."""
    options = channel_options() + [("grpc.max_send_message_length", 1 << 30)]
    with grpc.insecure_channel(address, options) as channel:
        call = channel.unary_unary(EMBED, request_serializer=None, response_deserializer=None)

        def one(_: int) -> str:
            try:
                call(payload, timeout=300, metadata=metadata)
                return "OK"
            except grpc.RpcError as err:
                return err.code().name

        with ThreadPoolExecutor(count) as pool:
            return Counter(pool.map(one, range(count)))


def scenario(name: str, package: Path, flags: list[str], payload: bytes, count: int, metadata=None) -> dict:
    """Fresh server, one burst; the figures."""
    server = start_server("services.embedding", ["--model", str(package), "--drain-seconds", "0", *flags], name="mem")
    try:
        time.sleep(1.0)
        idle, _ = rss_mib(server.process.pid)
        started = time.perf_counter()
        codes = burst(server.address, payload, count, metadata)
        elapsed = time.perf_counter() - started
        _, peak = rss_mib(server.process.pid)
    finally:
        server.stop()
    row = {"scenario": name, "requests": f"{count} x {len(payload) / MIB:.0f} MiB", "codes": dict(codes),
           "idle_mib": round(idle), "peak_mib": round(peak), "over_idle_mib": round(peak - idle),
           "seconds": round(elapsed, 1)}
    print(f"{name:<44} {row['requests']:>13}  idle {row['idle_mib']:>4} MiB  peak {row['peak_mib']:>5} MiB  "
          f"+{row['over_idle_mib']:>5} MiB  {elapsed:5.1f} s  {dict(codes)}", flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    """Run every scenario and print one line each."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="handcrafted")
    parser.add_argument("--mib", type=float, default=200)
    parser.add_argument("--concurrent", type=int, default=8)
    args = parser.parse_args(argv)
    package = resolve_package(args.model)
    big = request(args.mib)
    with tempfile.TemporaryDirectory() as tmp:
        token = Path(tmp) / "token"
        token.write_text("bench-token\n")
        scenario("defaults (64 MiB limit, 1024 MiB budget)", package, [], big, args.concurrent)
        scenario("--max-message-mb 256 (budget alone)", package, ["--max-message-mb", "256"], big, args.concurrent)
        scenario("--max-message-mb 256, budget 2048", package, ["--max-message-mb", "256", "--request-budget-mb", "2048"],
                 big, args.concurrent)
        scenario("token server, --max-message-mb 256, no token", package,
                 ["--max-message-mb", "256", "--auth-token-file", str(token)], big, args.concurrent)
        scenario("defaults, burst of 256-ECG requests", package, [], request(61_440_000 / MIB, leads=12), 20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
