"""Fuzz a real embedding server with mixed malformed requests; print counts by status code, health and peak RSS.

    python bench/fuzz_servers.py [--model handcrafted] [--requests 10000] [--concurrency 4] [--seed 0]

Requests come from tests/fuzz_requests.py (byte soup, truncated and bit-flipped messages, hostile shapes,
dtypes, sizes, names and non-UTF-8 strings on ecglens.v1 and V2), sent unary from a few threads, plus
one EmbedStream per 100 requests mixing valid and malformed messages. A clean server answers every
request with OK, INVALID_ARGUMENT, NOT_FOUND or RESOURCE_EXHAUSTED, answers every stream message, logs
no traceback and is still SERVING at the end. RSS is read from /proc (VmRSS idle, VmHWM peak).
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the request generators are shared with tests/test_fuzz_servers.py

from fuzz_requests import ALLOWED, STREAM, embed_request, malformed, valid_embed  # noqa: E402
from protos.ecglens.v1 import embedding_pb2  # noqa: E402
from services.common.process import start_server  # noqa: E402
from services.embedding.zoo.registry import resolve_package  # noqa: E402


def rss_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of pid in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def unary(channel: grpc.Channel, method: str, payload: bytes) -> str:
    try:
        channel.unary_unary(method, request_serializer=None, response_deserializer=None)(payload, timeout=60)
        return "OK"
    except grpc.RpcError as err:
        return err.code().name


def stream(channel: grpc.Channel, rng: random.Random, size: int) -> Counter:
    """One EmbedStream of size messages, half malformed; counts reply codes (LOST for unanswered messages)."""
    sent = [valid_embed(rng) if rng.random() < 0.5 else embed_request(rng) for _ in range(size)]
    call = channel.stream_stream(STREAM, request_serializer=None,
                                 response_deserializer=embedding_pb2.EmbedResponse.FromString)
    codes: Counter = Counter()
    try:
        replies = list(call(iter(sent), timeout=120))
    except grpc.RpcError as err:
        return Counter({f"stream:{err.code().name}": 1, "stream:LOST": size})
    for reply in replies:
        codes[f"stream:{grpc.StatusCode.OK.name if not reply.status.code else _name(reply.status.code)}"] += 1
    if len(replies) < size:
        codes["stream:LOST"] += size - len(replies)
    return codes


def _name(number: int) -> str:
    return next(code.name for code in grpc.StatusCode if code.value[0] == number)


def main(argv: list[str] | None = None) -> int:
    """Run the campaign; exit 1 when any answer is outside ALLOWED, a stream lost a reply or the server died."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="handcrafted")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    server = start_server("services.embedding", ["--model", str(resolve_package(args.model)), "--drain-seconds", "0"],
                          name="fuzz")
    pid = server.process.pid
    idle, _ = rss_mib(pid)
    codes: Counter = Counter()
    started = time.perf_counter()
    try:
        with grpc.insecure_channel(server.address) as channel:
            rngs = [random.Random(args.seed * 1000 + k) for k in range(args.concurrency)]

            def worker(k: int) -> Counter:
                rng, mine = rngs[k], Counter()
                for i in range(k, args.requests, args.concurrency):
                    method, payload = malformed(rng)
                    mine[f"{method.rsplit('/', 1)[-1]}:{unary(channel, method, payload)}"] += 1
                    if i % 100 == 99:  # and a stream mixing valid and malformed messages
                        mine.update(stream(channel, rng, rng.randint(1, 12)))
                return mine

            with ThreadPoolExecutor(args.concurrency) as pool:
                for counted in pool.map(worker, range(args.concurrency)):
                    codes.update(counted)
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            serving = health.status == health_pb2.HealthCheckResponse.SERVING
            after_ok = unary(channel, "/ecglens.v1.EmbeddingService/Embed", valid_embed(random.Random(0))) == "OK"
        rss, peak = rss_mib(pid)
        log = server.log_path.read_text()
    finally:
        exit_code = server.stop()
    elapsed = time.perf_counter() - started
    by_code = Counter()
    for key, n in codes.items():
        by_code[key.split(":", 1)[1]] += n
    print(f"{args.requests} malformed unary requests and {sum(n for k, n in codes.items() if k.startswith('stream:'))} "
          f"stream messages (about half malformed) in {elapsed:.0f} s against {args.model}, {args.concurrency} client threads")
    print("by status code: " + ", ".join(f"{code} {n}" for code, n in by_code.most_common()))
    print("by method:code: " + ", ".join(f"{key} {n}" for key, n in sorted(codes.items())))
    print(f"server: SERVING after the campaign: {serving}; a valid Embed after it: {'OK' if after_ok else 'FAILED'}; "
          f"tracebacks in its log: {log.count('Traceback')}; exit status on SIGTERM: {exit_code}")
    print(f"server RSS: idle {idle:.0f} MiB, after {rss:.0f} MiB, peak {peak:.0f} MiB (+{peak - idle:.0f} MiB)")
    unexpected = {code: n for code, n in by_code.items() if code not in ALLOWED}
    clean = not unexpected and serving and after_ok and exit_code == 0 and "Traceback" not in log
    print("verdict: " + ("clean" if clean else f"NOT clean: {unexpected}"))
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
