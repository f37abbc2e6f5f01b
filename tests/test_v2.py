"""The Open Inference Protocol (V2) both ways: V2Client against an independent reference server, and
ECGLens' own V2 face answering like its ecglens.v1 EmbeddingService."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from protos.inference import open_inference_grpc_pb2 as pb
from protos.inference import open_inference_grpc_pb2_grpc as pb_grpc
from services.common.grpc_options import channel_options
from services.embedding.client import EmbedError, EmbeddingClient
from services.embedding.v2_client import V2CardError, V2Client, card_from_v2, connect_v2

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
from v2_reference_server import lead_stats  # noqa: E402

REF_OVERRIDES = {"sampling_rate_hz": 100, "num_samples": 500,
                 "leads": ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]}


def ecgs(n: int, samples: int, leads: int = 12, seed: int = 0) -> np.ndarray:
    """Random ECG-scale signals (mV)."""
    return np.random.default_rng(seed).normal(0, 0.4, (n, leads, samples)).astype(np.float32)


def spawn(workdir: Path, script: str, model: str, *args: str, timeout_s: float = 120.0):
    """Run tests/<script> as a child, wait until V2 says `model` is ready; return (process, address, log)."""
    port_file, log = workdir / "port", workdir / "server.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), os.environ.get("PYTHONPATH", "")])}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(TESTS / script), "--port-file", str(port_file), *args],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    deadline, address = time.monotonic() + timeout_s, None
    while True:
        if address is None and port_file.exists():
            address = f"127.0.0.1:{int(port_file.read_text())}"
        if address and _ready(address, model):
            return proc, address, log
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{script} did not become ready:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.1)


def _ready(address: str, model: str) -> bool:
    with V2Client(address, model, timeout_s=2) as client:
        return client.ready()


def stop(proc: subprocess.Popen, log: Path) -> None:
    """SIGTERM, then check the child exited cleanly."""
    proc.terminate()
    code = proc.wait(30)
    assert code == 0, log.read_text(errors="replace")[-3000:]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    proc, address, log = spawn(tmp_path_factory.mktemp("v2ref"), "v2_reference_server.py", "lead-stats")
    yield address
    stop(proc, log)


@pytest.fixture(scope="module")
def ecglens_v2(random_resnet_pkg, tmp_path_factory):
    proc, address, log = spawn(tmp_path_factory.mktemp("v2ecglens"), "v2_testserver.py", "random-resnet",
                               "--model", str(random_resnet_pkg))
    yield address
    stop(proc, log)


@pytest.fixture(scope="module")
def v2_stub(ecglens_v2):
    channel = grpc.insecure_channel(ecglens_v2, channel_options())
    yield pb_grpc.GRPCInferenceServiceStub(channel)
    channel.close()


# ---- V2Client against the independent reference server ----------------------------------------

def test_reference_ready_and_metadata(reference):
    with V2Client(reference, "lead-stats", input_name="signals") as client:
        assert client.ready()
        assert client.server_metadata()["name"] == "v2-reference"
        md = client.metadata()
    assert md == {"name": "lead-stats", "versions": ["3"], "platform": "numpy",
                  "inputs": [{"name": "signals", "datatype": "FP32", "shape": [-1, 12, -1]}],
                  "outputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 24]}], "properties": {}}
    with V2Client(reference, "no-such-model") as client:
        assert not client.ready()
    with V2Client("127.0.0.1:1", "lead-stats", timeout_s=1) as client:
        assert not client.ready()


@pytest.mark.parametrize("model", ["lead-stats", "lead-stats-typed"])
def test_reference_embed_equals_numpy(reference, model):
    x = ecgs(5, 500, seed=1)
    with V2Client(reference, model, input_name="signals", output_name="features") as client:
        emb = client.embed(x)
    assert emb.dtype == np.float32 and emb.shape == (5, 24)
    np.testing.assert_allclose(emb, lead_stats(x), rtol=1e-6, atol=1e-7)


def test_reference_fp16_raw_input(reference):
    x = ecgs(3, 500, seed=2)
    with V2Client(reference, "lead-stats", input_name="signals", datatype="FP16") as client:
        emb = client.embed(x)
    np.testing.assert_allclose(emb, lead_stats(x.astype(np.float16).astype(np.float32)), rtol=1e-6, atol=1e-7)


def test_reference_wrong_input_name_is_a_clear_error(reference):
    with V2Client(reference, "lead-stats", input_name="ecg") as client:
        with pytest.raises(EmbedError) as err:
            client.embed(ecgs(1, 500))
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "unexpected inference input 'ecg'" in err.value.details
    with V2Client(reference, "nope", input_name="signals") as client, pytest.raises(EmbedError) as err:
        client.embed(ecgs(1, 500))
    assert err.value.code == grpc.StatusCode.NOT_FOUND and err.value.request_id


def test_reference_card_needs_ecg_meaning_from_overrides(reference):
    with V2Client(reference, "lead-stats", input_name="signals") as client:
        card = card_from_v2(client, REF_OVERRIDES)
        assert (card.name, card.version, card.embedding_dim, card.num_samples, card.sampling_rate_hz) == \
               ("lead-stats", "3", 24, 500, 100.0)
        assert (card.backend, card.kind, card.input_units, card.params) == ("remote-v2", "imported", "mV", 0)
        assert len(card.leads) == 12 and len(card.fingerprint) == 64 and card.max_batch_size == 32
        assert card_from_v2(client, {**REF_OVERRIDES, "num_samples": 1000}).fingerprint != card.fingerprint
        missing = {k: v for k, v in REF_OVERRIDES.items() if k != "sampling_rate_hz"}
        with pytest.raises(V2CardError, match="does not state sampling_rate_hz"):
            card_from_v2(client, missing)
        with pytest.raises(V2CardError, match="6 leads but the input shape has 12"):
            card_from_v2(client, {**REF_OVERRIDES, "leads": "I,II,III,aVR,aVL,aVF"})
        with pytest.raises(V2CardError, match="embedding_dim is 32 in the experiment's overrides but 24"):
            card_from_v2(client, {**REF_OVERRIDES, "embedding_dim": 32})
        with pytest.raises(V2CardError, match="unknown override"):
            card_from_v2(client, {**REF_OVERRIDES, "sample_rate": 100})


def test_reference_btl_model_through_connect_v2(reference):
    x = ecgs(4, 500, seed=3)
    client, card = connect_v2(reference, "lead-stats-btl", {**REF_OVERRIDES, "layout": "BTL"}, input_name="signals")
    with client:
        assert (card.layout, client.layout, card.num_samples) == ("BTL", "BTL", 500)
        np.testing.assert_allclose(client.embed(x), lead_stats(x), rtol=1e-6, atol=1e-7)


# ---- ECGLens' own V2 face -------------------------------------------------------------------------

def test_ecglens_v2_metadata(ecglens_v2):
    with EmbeddingClient(ecglens_v2) as ours:
        card = ours.card()
    with V2Client(ecglens_v2, "random-resnet") as client:
        assert client.ready()
        assert client.server_metadata()["name"] == "ecglens"
        md = client.metadata()
    assert (md["name"], md["versions"], md["platform"]) == ("random-resnet", [card.version], "ecglens")
    assert md["inputs"] == [{"name": "ecg", "datatype": "FP32", "shape": [-1, 12, 5000]}]
    assert md["outputs"] == [{"name": "embedding", "datatype": "FP32", "shape": [-1, 256]}]
    props = md["properties"]
    assert (props["sampling_rate_hz"], props["embedding_dim"], props["fingerprint"]) == ("500", "256", card.fingerprint)
    assert props["leads"].split(",") == list(card.leads)


def test_ecglens_v2_card_matches_the_v1_card(ecglens_v2):
    with EmbeddingClient(ecglens_v2) as ours, V2Client(ecglens_v2, "random-resnet") as client:
        v1, v2 = ours.card(), card_from_v2(client, {})
    keys = ("name", "version", "embedding_dim", "sampling_rate_hz", "num_samples", "max_batch_size",
            "normalization", "input_units", "params", "license", "objective")
    assert {k: getattr(v2, k) for k in keys} == {k: getattr(v1, k) for k in keys}
    assert list(v2.leads) == list(v1.leads) and v2.layout == "BLT" and v2.client_normalization == "none"
    assert (v2.kind, v2.backend) == ("imported", "remote-v2")


@pytest.mark.parametrize("datatype,wire", [("FP32", "float32"), ("FP16", "float16")])
def test_ecglens_v2_embed_equals_v1_embed(ecglens_v2, datatype, wire):
    x = ecgs(3, 5000, seed=4)
    with EmbeddingClient(ecglens_v2, wire_dtype=wire) as ours, \
            V2Client(ecglens_v2, "random-resnet", datatype=datatype) as client:
        expected, got = ours.embed(x), client.embed(x)
    assert got.shape == (3, 256)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def infer_request(x: np.ndarray, **changes) -> pb.ModelInferRequest:
    """A raw FP32 request for random-resnet; keyword arguments replace parts of it."""
    tensor = pb.ModelInferRequest.InferInputTensor(name=changes.pop("input_name", "ecg"),
                                                   datatype=changes.pop("datatype", "FP32"),
                                                   shape=changes.pop("shape", list(x.shape)))
    raw = changes.pop("raw", [x.astype("<f4").tobytes()])
    return pb.ModelInferRequest(model_name="random-resnet", id="r1", inputs=[tensor], raw_input_contents=raw,
                                **changes)


def test_ecglens_v2_typed_fp32_contents(ecglens_v2, v2_stub):
    x = ecgs(2, 5000, seed=5)
    request = infer_request(x, raw=[])
    request.inputs[0].contents.fp32_contents.extend(x.ravel().tolist())
    reply = v2_stub.ModelInfer(request, timeout=60)
    assert (reply.model_name, reply.id, reply.outputs[0].name, list(reply.outputs[0].shape)) == \
           ("random-resnet", "r1", "embedding", [2, 256])
    with EmbeddingClient(ecglens_v2) as ours:
        expected = ours.embed(x)
    np.testing.assert_allclose(np.frombuffer(reply.raw_output_contents[0], "<f4").reshape(2, 256), expected,
                               rtol=0, atol=1e-6)


def _nan_ecg() -> np.ndarray:
    x = ecgs(1, 5000)
    x[0, 1, 7] = np.nan
    return x


BAD = {
    "wrong input name": (dict(input_name="signal"), "unknown input 'signal'; the model's only input is 'ecg'"),
    "wrong datatype": (dict(datatype="INT32"), "datatype INT32; expected FP32"),
    "rank": (dict(shape=[1, 12 * 5000]), "must have rank 3"),
    "bytes": (dict(raw=[b"\0" * 12]), "has 12 bytes but shape [1, 12, 5000] x FP32 needs 240000"),
    "leads": (dict(shape=[2, 6, 5000]), "ecg has 6 leads but random-resnet expects 12"),
    "unknown output": (dict(outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="logits")]),
                       "unknown output 'logits'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_ecglens_v2_bad_input_is_invalid_argument(v2_stub, case):
    changes, message = BAD[case]
    with pytest.raises(grpc.RpcError) as err:
        v2_stub.ModelInfer(infer_request(ecgs(1, 5000), **changes), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in err.value.details()


def test_ecglens_v2_nan_and_unknown_model(ecglens_v2):
    with V2Client(ecglens_v2, "random-resnet") as client, pytest.raises(EmbedError) as err:
        client.embed(_nan_ecg())
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "1 NaN/Inf value(s); first at record 0, lead II, sample 7" in err.value.details
    for name, version in (("resnet", None), ("random-resnet", "v999")):
        with V2Client(ecglens_v2, name, model_version=version) as client:
            assert not client.ready()
            with pytest.raises(EmbedError) as err:
                client.embed(ecgs(1, 5000))
        assert err.value.code == grpc.StatusCode.NOT_FOUND and "this server hosts" in err.value.details


def test_ecglens_v2_is_listed_by_reflection(ecglens_v2):
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    with grpc.insecure_channel(ecglens_v2) as channel:
        services = ProtoReflectionDescriptorDatabase(channel).get_services()
    assert "inference.GRPCInferenceService" in services and "ecglens.v1.EmbeddingService" in services


def test_v2_face_before_the_model_is_loaded():
    from services.embedding.metrics import ServerMetrics
    from services.embedding.servicer import EmbeddingServicer
    from services.embedding.v2_servicer import V2Servicer

    class Aborted(Exception):
        pass

    class Context:
        async def abort(self, code, details):
            raise Aborted(code, details)

    v2 = V2Servicer(EmbeddingServicer(ServerMetrics("m")))

    async def run():
        assert (await v2.ServerLive(pb.ServerLiveRequest(), Context())).live
        assert not (await v2.ServerReady(pb.ServerReadyRequest(), Context())).ready
        assert not (await v2.ModelReady(pb.ModelReadyRequest(name="m"), Context())).ready
        with pytest.raises(Aborted) as err:
            await v2.ModelInfer(infer_request(ecgs(1, 10)), Context())
        return err.value.args

    code, details = asyncio.run(run())
    assert code == grpc.StatusCode.UNAVAILABLE and "still loading" in details
