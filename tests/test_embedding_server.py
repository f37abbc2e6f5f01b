"""The embedding server as a real separate process: contract, batching, bad input, drain."""
from __future__ import annotations

import signal
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import free_port, package_variant
from protos.ecglens.v1 import embedding_pb2, embedding_pb2_grpc, tensor_pb2
from services.common.grpc_options import channel_options
from services.common.process import start_server
from services.common.tensors import from_tensor, to_tensor
from services.embedding.client import EmbedError, EmbeddingClient, complete_kind
from services.embedding.conformance import check_endpoint
from services.embedding.model import EmbeddingModel


def ecgs(n: int, leads: int = 12, samples: int = 5000, seed: int = 0) -> np.ndarray:
    """Random ECG-scale signals (mV)."""
    return np.random.default_rng(seed).normal(0, 0.4, (n, leads, samples)).astype(np.float32)


def metric_values(port: int, name: str) -> float:
    """Sum of a Prometheus sample family's values from the /metrics page."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


@pytest.fixture(scope="module")
def server(random_resnet_pkg):
    """random-resnet behind a real server process, with metrics."""
    metrics_port = free_port()
    srv = start_server("services.embedding", ["--model", str(random_resnet_pkg), "--metrics-port", str(metrics_port)],
                       name="random-resnet")
    srv.metrics_port = metrics_port
    yield srv
    assert srv.stop() == 0, srv.log_tail()


@pytest.fixture(scope="module")
def stub(server):
    channel = grpc.insecure_channel(server.address, channel_options())
    yield embedding_pb2_grpc.EmbeddingServiceStub(channel)
    channel.close()


@pytest.fixture(scope="module")
def in_process(random_resnet_pkg):
    return EmbeddingModel.load(random_resnet_pkg)


def is_serving(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="ecglens.v1.EmbeddingService"), timeout=5)
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def test_contract_through_reflection_and_health_only(server):
    report = check_endpoint(server.address)
    assert report.ok, report.render()


def test_model_card(server, random_resnet_pkg):
    with EmbeddingClient(server.address) as client:
        card = client.card()
    assert (card.name, card.embedding_dim, card.num_samples, card.sampling_rate_hz) == ("random-resnet", 256, 5000, 500)
    assert list(card.leads)[:3] == ["I", "II", "III"] and len(card.leads) == 12
    assert card.max_batch_size == 32 and card.params > 1_000_000 and len(card.fingerprint) == 64
    with grpc.insecure_channel(server.address) as channel:  # on the wire, not completed by the client
        wire = embedding_pb2_grpc.EmbeddingServiceStub(channel).GetModelCard(embedding_pb2.GetModelCardRequest(),
                                                                            timeout=30)
    assert (wire.kind, wire.model_kind) == ("baseline", embedding_pb2.MODEL_KIND_BASELINE)


def test_client_completes_the_kind_of_old_and_enum_only_servers():
    old = complete_kind(embedding_pb2.ModelCard(kind="imported"))
    enum_only = complete_kind(embedding_pb2.ModelCard(model_kind=embedding_pb2.MODEL_KIND_PRETRAINED))
    assert (old.kind, old.model_kind) == ("imported", embedding_pb2.MODEL_KIND_IMPORTED)
    assert (enum_only.kind, enum_only.model_kind) == ("pretrained", embedding_pb2.MODEL_KIND_PRETRAINED)


def test_embed_equals_in_process_onnxruntime(server, in_process):
    x = ecgs(5, seed=1)
    with EmbeddingClient(server.address) as client:
        served = client.embed(x)
    np.testing.assert_allclose(served, in_process.embed(x), atol=1e-5, rtol=0)


def test_float16_wire_is_widened(server, in_process):
    x = ecgs(2, seed=2).astype(np.float16)
    with EmbeddingClient(server.address, wire_dtype="float16") as client:
        served = client.embed(x)
    np.testing.assert_allclose(served, in_process.embed(x.astype(np.float32)), atol=1e-5, rtol=0)


def test_batch_of_64_ecgs_is_split_and_reassembled(server, in_process):
    x = ecgs(64, seed=3)  # 15.4 MB: above gRPC's default 4 MB limit, above max_batch_size 32
    with EmbeddingClient(server.address) as client:
        served = client.embed(x)
    assert served.shape == (64, 256)
    # Row order survives the split: each row equals that ECG embedded alone.
    np.testing.assert_allclose(served[[0, 31, 32, 63]], in_process.embed(x[[0, 31, 32, 63]]), atol=1e-5, rtol=0)


def test_embed_stream_answers_every_request_in_order(stub, in_process):
    batches = [ecgs(n, seed=10 + n) for n in (1, 3, 2)]
    requests = [embedding_pb2.EmbedRequest(request_id=f"r{i}", ecg=to_tensor(b)) for i, b in enumerate(batches)]
    bad = embedding_pb2.EmbedRequest(request_id="bad", ecg=to_tensor(ecgs(1, leads=11)))
    replies = list(stub.EmbedStream(iter([requests[0], bad, requests[1], requests[2]]), timeout=120))
    assert [r.request_id for r in replies] == ["r0", "bad", "r1", "r2"]
    assert replies[1].status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "11 leads" in replies[1].status.message
    for reply, batch in zip([replies[0], replies[2], replies[3]], batches):
        assert reply.status.code == 0
        np.testing.assert_allclose(from_tensor(reply.embedding), in_process.embed(batch), atol=1e-5, rtol=0)


BAD_INPUTS = {
    "nan": (lambda: embedding_pb2.EmbedRequest(ecg=to_tensor(np.where(np.arange(5000) == 7, np.nan, ecgs(1)))),
            "NaN/Inf"),
    "inf": (lambda: embedding_pb2.EmbedRequest(ecg=to_tensor(np.where(np.arange(5000) == 9, np.inf, ecgs(1)))),
            "NaN/Inf"),
    "wrong_leads": (lambda: embedding_pb2.EmbedRequest(ecg=to_tensor(ecgs(1, leads=8))), "8 leads but"),
    "wrong_samples": (lambda: embedding_pb2.EmbedRequest(ecg=to_tensor(ecgs(1, samples=4000))), "4000 samples"),
    "bytes_mismatch": (lambda: embedding_pb2.EmbedRequest(ecg=tensor_pb2.Tensor(
        dtype=tensor_pb2.FLOAT32, shape=[1, 12, 5000], data=b"\0" * 100)), "data has 100 bytes"),
    "empty_batch": (lambda: embedding_pb2.EmbedRequest(ecg=to_tensor(ecgs(0))), "empty"),
    "wrong_rank": (lambda: embedding_pb2.EmbedRequest(ecg=to_tensor(ecgs(1)[0])), "rank 3"),
    "unspecified_dtype": (lambda: embedding_pb2.EmbedRequest(ecg=tensor_pb2.Tensor(
        shape=[1, 12, 5000], data=ecgs(1).tobytes())), "unsupported dtype DTYPE_UNSPECIFIED"),
    "unknown_dtype": (lambda: embedding_pb2.EmbedRequest(ecg=tensor_pb2.Tensor(
        dtype=7, shape=[1, 12, 5000], data=ecgs(1).tobytes())), "unsupported dtype 7"),
    "missing_ecg": (lambda: embedding_pb2.EmbedRequest(request_id="x"), "ecg is missing"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_invalid_argument_and_server_stays_serving(case, stub, server):
    make, expected = BAD_INPUTS[case]
    with pytest.raises(grpc.RpcError) as info:
        stub.Embed(make(), timeout=60)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in info.value.details()
    assert is_serving(server.address)
    # ... and still answers correctly.
    assert from_tensor(stub.Embed(embedding_pb2.EmbedRequest(ecg=to_tensor(ecgs(1))), timeout=60).embedding).shape == (1, 256)


def test_metrics_endpoint_counts_requests(server):
    with EmbeddingClient(server.address) as client:
        client.embed(ecgs(2))
    assert metric_values(server.metrics_port, "ecglens_requests_total{") >= 1
    assert metric_values(server.metrics_port, "ecglens_ecgs_total{") >= 2


@pytest.fixture(scope="module")
def slow_batching_server(random_resnet_pkg, tmp_path_factory):
    """A variant with a long queue delay, so concurrent requests reliably meet in one batch."""
    pkg = package_variant(random_resnet_pkg, tmp_path_factory.mktemp("variant") / "rr",
                          max_queue_delay_ms=400.0, max_batch_size=8)
    metrics_port = free_port()
    srv = start_server("services.embedding", ["--model", str(pkg), "--metrics-port", str(metrics_port)],
                       name="rr-batching")
    srv.metrics_port = metrics_port
    yield srv
    srv.stop()


def test_concurrent_clients_are_coalesced_and_results_do_not_depend_on_batch(slow_batching_server, in_process):
    x = ecgs(8, seed=5)
    with EmbeddingClient(slow_batching_server.address) as client:
        with ThreadPoolExecutor(8) as pool:
            rows = list(pool.map(lambda i: client.embed(x[i:i + 1]), range(8)))
    batches = metric_values(slow_batching_server.metrics_port, "ecglens_batch_size_count")
    assert batches < 8, "8 concurrent single-ECG requests ran as 8 separate batches"
    np.testing.assert_allclose(np.concatenate(rows), in_process.embed(x), atol=1e-5, rtol=0)


def test_full_queue_answers_resource_exhausted(random_resnet_pkg, tmp_path):
    pkg = package_variant(random_resnet_pkg, tmp_path / "rr", max_queue_ecgs=8)
    with start_server("services.embedding", ["--model", str(pkg)], name="rr-small-queue") as srv:
        with EmbeddingClient(srv.address) as client:
            with pytest.raises(EmbedError) as info:
                client.embed(ecgs(9))
            assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "limit of 8" in info.value.details
            assert client.embed(ecgs(8)).shape == (8, 256)


def test_sigterm_drains_in_flight_requests(random_resnet_pkg):
    srv = start_server("services.embedding", ["--model", str(random_resnet_pkg)], name="rr-drain")
    try:
        with EmbeddingClient(srv.address) as client:
            future = client.stub.Embed.future(client.request(ecgs(128, seed=9)), timeout=300)
            time.sleep(0.5)  # the request is on the server (transfer of 30 MB takes well under this)
            srv.process.send_signal(signal.SIGTERM)
            reply = future.result()
        assert from_tensor(reply.embedding).shape == (128, 256)
        assert srv.process.wait(60) == 0
        assert "draining" in srv.log_path.read_text()
    finally:
        srv.stop()


def test_unknown_model_fails_fast_with_a_clear_message(tmp_path):
    from services.common.process import ServerStartError

    with pytest.raises(ServerStartError, match="neither a package directory nor a zoo model"):
        start_server("services.embedding", ["--model", "no-such-model"], name="bad", timeout_s=60)
