"""ONNX Runtime backend: CUDA/TensorRT picked when present, an intermediate tensor as embedding."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from services.common.text import first_line
from services.embedding.backends.base import Backend, BackendError
from services.embedding.card import ModelCard

# Preference order when the installed onnxruntime offers them; CPU always closes the list.
_PREFERRED = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def choose_providers(override: str | None = None) -> list[str]:
    """Providers to use: ECGLENS_ORT_PROVIDERS / override (comma list) or the best available."""
    wanted = override or os.environ.get("ECGLENS_ORT_PROVIDERS")
    available = ort.get_available_providers()
    if wanted:
        chosen = [p.strip() for p in wanted.split(",") if p.strip()]
        missing = [p for p in chosen if p not in available]
        if missing:
            raise BackendError(f"execution provider(s) {missing} not available; this onnxruntime has {available}")
        return chosen
    return [p for p in _PREFERRED if p in available]


def _in_process() -> bool:
    """True unless this process is an embedding server (which sets ECGLENS_SERVER=1)."""
    return os.environ.get("ECGLENS_SERVER") != "1"


def _cpu_count() -> int:
    """CPUs this process may run on (a container's limit, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def plan_threads(providers: list[str], in_process: bool, cpus: int) -> tuple[int, int]:
    """(runners, intra-op threads; 0 = ORT's default) for a session on these providers.

    In-process a caller runs one batch at a time, so ORT's default (all cores inside each batch) is best.
    A CPU server runs two batches side by side with half the cores each: a batch parallelised over every
    core leaves them waiting at each operator's barrier, and while one batch is received or answered the
    other keeps computing. Measured with bench/serve_throughput.py on 2 cores: ORT CPU per ECG fell ~25%.
    ECGLENS_ORT_RUNNERS / ECGLENS_ORT_THREADS override either choice.
    """
    runners = int(os.environ.get("ECGLENS_ORT_RUNNERS", "0"))
    threads = int(os.environ.get("ECGLENS_ORT_THREADS", "0"))
    accelerated = any(p != "CPUExecutionProvider" for p in providers)
    if not runners:
        runners = 1 if in_process or accelerated or cpus < 2 else 2
    if not threads and runners > 1 and not accelerated:
        threads = max(1, cpus // runners)
    return max(1, runners), max(0, threads)


def _expose_output(model, name: str):
    """Make an intermediate tensor a graph output of an onnx.ModelProto so ORT returns it."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    infos = {vi.name: vi for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}
    produced = {out for node in model.graph.node for out in node.output}
    if name not in produced:
        candidates = sorted(produced)[:20]
        raise BackendError(f"output.name {name!r} is neither a graph output nor an intermediate tensor; "
                           f"some tensors of this model: {candidates}")
    model.graph.output.append(infos.get(name) or onnx.helper.make_empty_tensor_value_info(name))
    return model


class OnnxBackend(Backend):
    """Runs a .onnx file with onnxruntime."""

    def load(self, card: ModelCard, package_dir: Path) -> None:
        """Create the session, exposing the card's output tensor if it is intermediate.

        The session reads the file itself: the onnx package (~1 s of imports, most of it ml_dtypes) is imported
        only to expose an intermediate tensor, or to count the weights of a card that does not state them.
        """
        path = Path(package_dir) / str(card.weights)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = choose_providers()
        self.runners, threads = plan_threads(providers, _in_process(), _cpu_count())
        if threads:
            options.intra_op_num_threads = threads
        # Spinning intra-op threads burn the cores that gRPC needs to receive the next batch; a server
        # overlaps transport with compute, so it turns spinning off (ECGLENS_ORT_SPINNING=1 restores it).
        spinning = os.environ.get("ECGLENS_ORT_SPINNING", "1" if _in_process() else "0")
        options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
        self._path, self._params = path, None
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as err:  # onnxruntime raises its own types for a missing or corrupt file
            raise BackendError(f"{path}: not a readable ONNX model ({first_line(err)})") from None
        outputs = [o.name for o in self.session.get_outputs()]
        self._output = card.output.name or outputs[0]
        if self._output not in outputs:
            import onnx

            model = _expose_output(onnx.load(str(path)), self._output)
            self._params = _initialiser_elements(model)
            self.session = ort.InferenceSession(model.SerializeToString(), options, providers=providers)
        inputs = [i.name for i in self.session.get_inputs()]
        self._input = card.input.input_name or inputs[0]
        if self._input not in inputs:
            raise BackendError(f"input.input_name {self._input!r} not in the model's inputs {inputs}")
        self.description = f"onnxruntime {ort.__version__} {self.session.get_providers()}"

    def run(self, x: np.ndarray) -> np.ndarray:
        """One session.run on a float32 batch."""
        return self.session.run([self._output], {self._input: x})[0]

    def param_count(self) -> int:
        """Elements in the initialisers (weights), read from the file on first use."""
        if self._params is None:
            import onnx

            self._params = _initialiser_elements(onnx.load(str(self._path), load_external_data=False))
        return self._params


def _initialiser_elements(model) -> int:
    """Elements in an onnx.ModelProto's initialisers."""
    return int(sum(np.prod(init.dims) for init in model.graph.initializer))

