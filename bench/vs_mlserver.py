"""ECGLens' V2 face vs Seldon MLServer on the same ONNX file, driven by one V2 gRPC client.

    python bench/vs_mlserver.py [--model random-resnet] [--batch-sizes 1,32] [--ecgs 192]
                                [--in-flight 2] [--repeats 3] [--mlserver-venv /tmp/mlsv]

MLServer lives in its own venv (it pins protobuf below ECGLens' own); without --mlserver-venv the bench
creates /tmp/ecglens-mlserver-venv with `pip install mlserver==1.7.1 tritonclient[grpc] onnxruntime`.
There is no MLServer ONNX runtime on PyPI, so the bench writes a small MLServer runtime into a temp dir:
it runs the package's model file with onnxruntime after the card's normalisation, through ECGLens' own
services/embedding/adapt.py (numpy only), so both servers compute the same function. Its session takes
the settings ECGLens' server uses (spinning off, one batch at a time per worker unless
--mlserver-workers says more); everything else is MLServer's default (adaptive batching off).

One client process drives both: tritonclient.grpc (neither project's code) in the MLServer venv, keeping
--in-flight async requests outstanding with raw FP32 contents. Its timed rounds alternate between the two
servers, so load from other tenants during the run falls on both alike. Each figure is the best of --repeats
rounds; the ratio ECGLens / MLServer is the figure to compare (machines here are shared and noisy), and
each side's range over its rounds is printed beside it. The bench first checks both servers return the
same embeddings for the same ECGs.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from services.common.process import start_server  # noqa: E402
from services.embedding.card import load_card  # noqa: E402
from services.embedding.zoo.registry import resolve_package  # noqa: E402

MLSERVER_VERSION = "1.7.1"
DEFAULT_VENV = Path(tempfile.gettempdir()) / "ecglens-mlserver-venv"

RUNTIME = '''
"""An MLServer runtime: the ECGLens card's normalisation, onnxruntime, the card's pooling."""
import sys
import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceResponse

sys.path.insert(0, {repo!r})
from services.embedding import adapt  # numpy only: the very normalisation ECGLens runs


class EcgOnnx(MLModel):
    async def load(self) -> bool:
        self.extra = self.settings.parameters.extra
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if self.extra["threads"]:
            options.intra_op_num_threads = self.extra["threads"]
        self.session = ort.InferenceSession(self.settings.parameters.uri, options, providers=["CPUExecutionProvider"])
        return True

    async def predict(self, payload):
        e = self.extra
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32, copy=False)
        model_in = adapt.to_layout(adapt.normalize(x, e["norm"]), e["layout"])
        y = self.session.run([e["output"]], {{e["input"]: model_in}})[0]
        emb = adapt.pool(np.asarray(y), e["pooling"], e["pool_axis"])
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("embedding", emb)])
'''

DRIVER = '''
"""One V2 gRPC client process for both servers: tritonclient.grpc with requests kept in flight.

Rounds alternate between the servers (ECGLens first in even rounds, MLServer first in odd ones), so load that
other tenants put on the machine during the run falls on both sides alike instead of on whichever ran later.
"""
import json, sys, threading, time
import numpy as np
import tritonclient.grpc as tc

addresses, model, batch, ecgs, in_flight, repeats, leads, samples = sys.argv[1:9]
batch, ecgs, in_flight, repeats, leads, samples = map(int, (batch, ecgs, in_flight, repeats, leads, samples))
clients = [tc.InferenceServerClient(address) for address in addresses.split(",")]
x = np.random.default_rng(0).normal(0, 0.4, (ecgs, leads, samples)).astype(np.float32)


def one_round(client):
    slots = threading.Semaphore(in_flight)
    errors, finished = [], threading.Event()
    left = [0]
    lock = threading.Lock()

    def done(result, error):
        if error is not None:
            errors.append(error)
        slots.release()
        with lock:
            left[0] -= 1
            if left[0] == 0:
                finished.set()

    starts = list(range(0, ecgs, batch))
    left[0] = len(starts)
    began = time.perf_counter()
    for s in starts:
        slots.acquire()
        chunk = x[s:s + batch]
        inp = tc.InferInput("ecg", list(chunk.shape), "FP32")
        inp.set_data_from_numpy(chunk)
        client.async_infer(model, [inp], callback=done)
    finished.wait()
    took = time.perf_counter() - began
    if errors:
        raise SystemExit(f"inference failed: {errors[0]}")
    return ecgs / took


def check(client):
    inp = tc.InferInput("ecg", [4, leads, samples], "FP32")
    inp.set_data_from_numpy(x[:4])
    return client.infer(model, [inp]).as_numpy("embedding").tolist()


if batch == 0:
    print(json.dumps([check(client) for client in clients]))
else:
    for client in clients:  # an untimed round each: connections, the servers' first batches of this size
        one_round(client)
    rounds = [[] for _ in clients]
    for r in range(repeats):
        for k in (range(len(clients)) if r % 2 == 0 else reversed(range(len(clients)))):
            rounds[k].append(one_round(clients[k]))
    print(json.dumps(rounds))
'''


def free_port() -> int:
    """A TCP port free right now on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_venv(venv: Path | None) -> Path:
    """The MLServer venv's python: the given venv's, or the default one, created on first use."""
    venv = venv or DEFAULT_VENV
    python = venv / "bin" / "python"
    # Separate processes: mlserver and tritonclient.grpc both define the inference.* protobuf symbols.
    probes = [[str(python), "-c", f"import mlserver, onnxruntime; assert mlserver.__version__ == '{MLSERVER_VERSION}'"],
              [str(python), "-c", "import tritonclient.grpc"]]
    if python.exists() and all(subprocess.run(p, capture_output=True).returncode == 0 for p in probes):
        return python
    print(f"creating the MLServer venv at {venv} (pip install mlserver=={MLSERVER_VERSION} ...)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"mlserver=={MLSERVER_VERSION}", "tritonclient[grpc]",
                    "onnxruntime", "numpy",
                    # uvloop 0.22 dropped the implicit event loop that MLServer 1.7.1 workers ask for at start
                    "uvloop<0.22"], check=True)
    return python


def start_mlserver(python: Path, package: Path, card, workdir: Path, workers: int, threads: int,
                   batching: bool = False):
    """Write the runtime and settings, start `mlserver start`, wait until the model is ready; (process, address)."""
    models = workdir / "models" / card.name
    models.mkdir(parents=True)
    (workdir / "ecg_runtime.py").write_text(RUNTIME.format(repo=str(REPO)))
    grpc_port, http_port, metrics_port = free_port(), free_port(), free_port()
    (workdir / "models" / "settings.json").write_text(json.dumps({
        "grpc_port": grpc_port, "http_port": http_port, "metrics_port": metrics_port,
        "parallel_workers": workers, "host": "127.0.0.1",
        # its default is 4 MiB, below one batch of 32 ECGs; ECGLens takes 64 MiB
        "grpc_max_message_length": 64 * 1024 * 1024}))
    spec = card.input
    # Adaptive batching (off by default in MLServer) with ECGLens' own dynamic-batching settings, so that
    # with many small requests in flight the comparison is batcher against batcher.
    batch_settings = ({"max_batch_size": card.serving.max_batch_size,
                       "max_batch_time": card.serving.max_queue_delay_ms / 1000} if batching else {})
    (models / "model-settings.json").write_text(json.dumps({
        "name": card.name, "implementation": "ecg_runtime.EcgOnnx", **batch_settings,
        "parameters": {"uri": str(package / str(card.weights)), "extra": {
            "input": spec.input_name or "ecg", "output": card.output.name, "norm": spec.normalization,
            "layout": spec.layout, "pooling": card.output.pooling, "pool_axis": card.output.pool_axis,
            "threads": threads}}}))
    log = open(workdir / "mlserver.log", "wb")
    mlserver = python.parent / "mlserver"
    process = subprocess.Popen([str(mlserver), "start", str(workdir / "models")], cwd=workdir, stdout=log,
                               stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(workdir)},
                               start_new_session=True)
    address = f"127.0.0.1:{grpc_port}"
    ready = [str(python), "-c", f"import tritonclient.grpc as t, sys; "
             f"sys.exit(0 if t.InferenceServerClient('{address}').is_model_ready('{card.name}') else 1)"]
    deadline = time.monotonic() + 180
    while subprocess.run(ready, capture_output=True).returncode != 0:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit(f"MLServer did not get ready:\n{(workdir / 'mlserver.log').read_text()[-3000:]}")
        time.sleep(1)
    return process, address


def stop(process: subprocess.Popen) -> None:
    """SIGTERM the process group (MLServer forks workers), SIGKILL after 15 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def main() -> int:
    """Start both servers, check they agree, print ECG/s and ratios."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="random-resnet", help="zoo name or package directory (ONNX backend)")
    parser.add_argument("--batch-sizes", default="1,32")
    parser.add_argument("--ecgs", type=int, default=192, help="ECGs per timed round")
    parser.add_argument("--in-flight", type=int, default=2, help="requests the client keeps outstanding")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per figure (best is kept)")
    parser.add_argument("--mlserver-venv", type=Path, help=f"a venv with mlserver {MLSERVER_VERSION} and tritonclient")
    parser.add_argument("--mlserver-workers", type=int, default=1, help="MLServer parallel_workers (its default: 1)")
    parser.add_argument("--mlserver-threads", type=int, default=0,
                        help="onnxruntime intra-op threads in MLServer's runtime (0 = ORT default: all cores)")
    parser.add_argument("--mlserver-batching", action="store_true",
                        help="turn on MLServer's adaptive batching with ECGLens' batch size and queue delay")
    args = parser.parse_args()
    os.environ.setdefault("ECGLENS_ZOO", str(Path(tempfile.gettempdir()) / "ecglens-bench-zoo"))
    package = resolve_package(args.model)
    card = load_card(package)
    if card.backend != "onnxruntime":
        raise SystemExit(f"{card.name} runs on {card.backend}; this bench compares ONNX models only")
    python = ensure_venv(args.mlserver_venv)
    shape = [str(len(card.input.leads)), str(card.input.num_samples)]
    driver_file = Path(tempfile.mkdtemp(prefix="ecglens-v2drv-")) / "driver.py"
    driver_file.write_text(DRIVER)

    def drive(addresses: list[str], batch: int) -> list:
        """One client process for both servers: each server's answers (batch 0) or its timed rounds' ECG/s."""
        out = subprocess.run([str(python), str(driver_file), ",".join(addresses), card.name, str(batch),
                              str(args.ecgs), str(args.in_flight), str(args.repeats), *shape],
                             capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(f"client failed against {addresses}:\n{out.stderr[-3000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    sizes = [int(b) for b in args.batch_sizes.split(",")]
    results: dict[str, dict[int, list[float]]] = {"ecglens": {}, "mlserver": {}}  # ECG/s of each timed round
    with tempfile.TemporaryDirectory(prefix="ecglens-mlserver-") as tmp:
        ours = start_server("services.embedding", ["--model", str(package)], name="ecglens-v2")
        try:
            theirs, their_address = start_mlserver(python, package, card, Path(tmp), args.mlserver_workers,
                                                   args.mlserver_threads, args.mlserver_batching)
        except BaseException:
            ours.stop()
            raise
        try:
            import numpy as np
            answers = drive([ours.address, their_address], 0)
            gap = float(np.abs(np.asarray(answers[0]) - np.asarray(answers[1])).max())
            print(f"model {card.name}: {package / str(card.weights)}; normalisation {card.input.normalization}; "
                  f"max |embedding difference| ECGLens vs MLServer = {gap:.2e}")
            if gap > 1e-4:
                raise SystemExit("the two servers disagree: the comparison would not be like with like")
            for bs in sizes:  # rounds alternate between the servers (see DRIVER)
                results["ecglens"][bs], results["mlserver"][bs] = drive([ours.address, their_address], bs)
        finally:
            stop(theirs)
            ours.stop()
    print(f"client: tritonclient.grpc, {args.in_flight} requests in flight, {args.ecgs} ECGs per round, best of "
          f"{args.repeats}; MLServer {MLSERVER_VERSION}: parallel_workers={args.mlserver_workers}, ORT threads="
          f"{args.mlserver_threads or 'default'}, spinning off, adaptive batching "
          f"{'on' if args.mlserver_batching else 'off (its default)'}; cpus={os.cpu_count()}")
    # The best round is the figure (least disturbed by other load); each side's range over its rounds is printed
    # beside it so that one run shows how far this machine's noise moves the figures.
    print(f"{'batch':>5} {'ECGLens V2 ECG/s':>17} {'MLServer ECG/s':>15} {'ratio':>6}   rounds: ECGLens / MLServer")
    for bs in sizes:
        ours_rounds, theirs_rounds = results["ecglens"][bs], results["mlserver"][bs]
        a, b = max(ours_rounds), max(theirs_rounds)
        print(f"{bs:>5} {a:>17.1f} {b:>15.1f} {a / b:>6.2f}   {min(ours_rounds):.1f}-{a:.1f} / "
              f"{min(theirs_rounds):.1f}-{b:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
