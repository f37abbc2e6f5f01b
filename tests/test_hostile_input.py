"""A hostile client against a real embedding server: every malformed request is INVALID_ARGUMENT on both
protocols, a stream survives a bad message, memory is budgeted, rejections and failed logins are counted,
the metrics endpoint is loopback-only / token / TLS as configured, and draining is observable."""
from __future__ import annotations

import http.client
import re
import signal
import ssl
import threading
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import free_port
from protos.ecglens.v1 import embedding_pb2, embedding_pb2_grpc, tensor_pb2
from protos.inference import open_inference_grpc_pb2 as v2
from services.common.process import start_server
from services.common.tensors import to_tensor
from test_remote_models import make_certs

EMBED = "/ecglens.v1.EmbeddingService/Embed"
CARD = "/ecglens.v1.EmbeddingService/GetModelCard"
INFER = "/inference.GRPCInferenceService/ModelInfer"
LIVE = "/inference.GRPCInferenceService/ServerLive"


def raw_call(channel: grpc.Channel, method: str, payload: bytes, metadata=None, timeout: float = 30):
    """(code, details) of a unary call whose request bytes are sent exactly as given."""
    call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    try:
        call(payload, timeout=timeout, metadata=metadata)
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as err:
        return err.code(), err.details()


def scrape(port: int, name: str, headers: dict | None = None, scheme: str = "http", context=None) -> dict[str, float]:
    """{labels: value} of one Prometheus family from the /metrics page."""
    request = urllib.request.Request(f"{scheme}://127.0.0.1:{port}/metrics", headers=headers or {})
    text = urllib.request.urlopen(request, timeout=5, context=context).read().decode()
    return {m.group(1): float(m.group(2)) for m in re.finditer(rf"^{name}\{{(.*)\}} (\S+)$", text, re.M)}


def wait_for_budget(port: int, done, failure: str, within_s: float = 30) -> None:
    """Poll the handcrafted server's request-budget gauge until done(bytes in use); fail with `failure` after."""
    deadline = time.monotonic() + within_s
    while not done(scrape(port, "ecglens_request_budget_used_bytes").get('model="handcrafted"', 0)):
        assert time.monotonic() < deadline, failure
        time.sleep(0.05)


def ecg_bytes(n: int = 1) -> bytes:
    return to_tensor(np.zeros((n, 12, 5000), np.float32)).data


def bad_utf8_request() -> bytes:
    """An EmbedRequest whose request_id (field 1, a proto3 string) is not UTF-8."""
    return b"\x0a\x02\xff\xfe" + embedding_pb2.EmbedRequest(ecg=to_tensor(np.zeros((1, 12, 5000)))).SerializeToString()


MALFORMED_V1 = {
    "unparseable bytes": b"\xff",
    "bad UTF-8 request_id": bad_utf8_request(),
    "shape overflowing int64": embedding_pb2.EmbedRequest(ecg=tensor_pb2.Tensor(dtype=1, shape=[2**61, 8, 1]))
    .SerializeToString(),
    "rank 100": embedding_pb2.EmbedRequest(ecg=tensor_pb2.Tensor(dtype=1, shape=[1] * 100)).SerializeToString(),
    "shape [1]*10000": embedding_pb2.EmbedRequest(ecg=tensor_pb2.Tensor(dtype=1, shape=[1] * 10000))
    .SerializeToString(),
    "empty tensor with a huge dimension": embedding_pb2.EmbedRequest(
        ecg=tensor_pb2.Tensor(dtype=1, shape=[2**62, 0, 5000])).SerializeToString(),
    "unknown dtype": embedding_pb2.EmbedRequest(ecg=tensor_pb2.Tensor(dtype=77, shape=[1])).SerializeToString(),
    "no ecg": embedding_pb2.EmbedRequest(request_id="x" * 100_000).SerializeToString(),
}


def v2_request(**tensor) -> bytes:
    shape = tensor.pop("shape", [1, 12, 5000])
    data = tensor.pop("raw", ecg_bytes())
    return v2.ModelInferRequest(model_name="handcrafted", inputs=[v2.ModelInferRequest.InferInputTensor(
        name="ecg", datatype=tensor.pop("datatype", "FP32"), shape=shape)], raw_input_contents=[data]).SerializeToString()


MALFORMED_V2 = {
    "unparseable bytes": b"\xff",
    "bad UTF-8 id": b"\x1a\x02\xff\xfe" + v2_request(),  # field 3 (id) is a string
    "shape overflowing int64": v2_request(shape=[2**61, 8, 1], raw=b""),
    "rank 10000": v2_request(shape=[1] * 10000, raw=b""),
    "empty with a huge dimension": v2_request(shape=[2**62, 0, 5000], raw=b""),
    "datatype of 10 kB": v2_request(datatype="X" * 10_000),
}


@pytest.fixture(scope="module")
def server(handcrafted_pkg):
    metrics_port = free_port()
    srv = start_server("services.embedding", ["--model", str(handcrafted_pkg), "--metrics-port", str(metrics_port)],
                       name="hostile")
    srv.metrics_port = metrics_port
    yield srv
    assert srv.stop() == 0, srv.log_tail()


@pytest.mark.parametrize("case", sorted(MALFORMED_V1))
def test_malformed_ecglens_requests_are_invalid_argument(server, case):
    with grpc.insecure_channel(server.address) as channel:
        code, details = raw_call(channel, EMBED, MALFORMED_V1[case])
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (case, code, details[:300])
    assert len(details) <= 1100


@pytest.mark.parametrize("case", sorted(MALFORMED_V2))
def test_malformed_v2_requests_are_invalid_argument(server, case):
    with grpc.insecure_channel(server.address) as channel:
        code, details = raw_call(channel, INFER, MALFORMED_V2[case])
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (case, code, details[:300])
    assert len(details) <= 1100


def test_unparseable_bytes_on_small_methods_are_invalid_argument(server):
    with grpc.insecure_channel(server.address) as channel:
        assert raw_call(channel, CARD, b"\xff")[0] == grpc.StatusCode.INVALID_ARGUMENT
        assert raw_call(channel, LIVE, b"\xff")[0] == grpc.StatusCode.INVALID_ARGUMENT
        assert raw_call(channel, LIVE, b"")[0] == grpc.StatusCode.OK


def test_a_stream_survives_bad_messages_and_each_fails_alone(server):
    good = embedding_pb2.EmbedRequest(request_id="good", ecg=to_tensor(np.zeros((1, 12, 5000)))).SerializeToString()
    sent = [good, b"\xff", good, bad_utf8_request(), MALFORMED_V1["shape overflowing int64"], good, good]
    with grpc.insecure_channel(server.address) as channel:
        stream = channel.stream_stream("/ecglens.v1.EmbeddingService/EmbedStream", request_serializer=None,
                                       response_deserializer=embedding_pb2.EmbedResponse.FromString)
        replies = list(stream(iter(sent), timeout=60))
    assert [r.status.code for r in replies] == [0, 3, 0, 3, 3, 0, 0]  # 3 = INVALID_ARGUMENT
    assert [r.request_id for r in replies if not r.status.code] == ["good"] * 4


def test_every_rejection_is_counted_by_code_and_the_request_id_is_clipped_in_logs(server):
    # The server is shared: wait until no earlier test's call still holds request budget, or a call here could
    # be refused as RESOURCE_EXHAUSTED instead of being judged (the codes are asserted below, so it would show).
    wait_for_budget(server.metrics_port, lambda used: used == 0, "earlier calls never gave their request budget back")
    before = scrape(server.metrics_port, "ecglens_requests_total")
    with grpc.insecure_channel(server.address) as channel:
        huge_id = embedding_pb2.EmbedRequest(request_id="Z" * 1_000_000).SerializeToString()
        codes = [raw_call(channel, EMBED, b"\xff")[0], raw_call(channel, INFER, MALFORMED_V2["rank 10000"])[0],
                 raw_call(channel, EMBED, huge_id)[0]]
    assert codes == [grpc.StatusCode.INVALID_ARGUMENT] * 3
    after = scrape(server.metrics_port, "ecglens_requests_total")
    key = 'code="INVALID_ARGUMENT",method="{}",model="handcrafted"'
    delta = {m: after.get(key.format(m), 0) - before.get(key.format(m), 0) for m in ("Embed", "ModelInfer")}
    assert delta == {"Embed": 2, "ModelInfer": 1}
    longest = max(len(line) for line in server.log_path.read_text().splitlines())
    assert longest < 5000, "a client-controlled field reached the log unclipped"


def test_over_the_budget_is_resource_exhausted_and_oversized_messages_are_refused_unread(handcrafted_pkg):
    metrics_port = free_port()
    srv = start_server("services.embedding", ["--model", str(handcrafted_pkg), "--metrics-port", str(metrics_port),
                                              "--max-message-mb", "0.5", "--request-budget-mb", "2",
                                              "--budget-wait", "0.2", "--drain-seconds", "0"], name="tight")
    try:
        with grpc.insecure_channel(srv.address) as channel:
            big = embedding_pb2.EmbedRequest(ecg=to_tensor(np.zeros((8, 12, 5000)))).SerializeToString()  # 1.9 MB
            code, details = raw_call(channel, EMBED, big)
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in details
            # An open stream waiting for its first message holds the whole budget (4 x 0.5 MiB + overhead).
            gate = threading.Event()
            stream = channel.stream_stream("/ecglens.v1.EmbeddingService/EmbedStream", request_serializer=None,
                                           response_deserializer=None)
            held = stream(iter(gate.wait, True), timeout=60)
            wait_for_budget(metrics_port, lambda used: used > 0, "the stream never reserved budget")
            small = embedding_pb2.EmbedRequest(ecg=to_tensor(np.zeros((1, 12, 5000)))).SerializeToString()
            code, details = raw_call(channel, EMBED, small)
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "memory budget" in details, details
            held.cancel()
            gate.set()
            deadline = time.monotonic() + 30
            while raw_call(channel, EMBED, small)[0] != grpc.StatusCode.OK:  # the budget came back
                assert time.monotonic() < deadline
                time.sleep(0.1)
        counts = scrape(metrics_port, "ecglens_requests_total")
        assert counts['code="RESOURCE_EXHAUSTED",method="Embed",model="handcrafted"'] >= 1
    finally:
        assert srv.stop() == 0, srv.log_tail()


def test_draining_is_observable_not_serving_then_unavailable(handcrafted_pkg):
    srv = start_server("services.embedding", ["--model", str(handcrafted_pkg), "--drain-seconds", "6"], name="drain")
    try:
        with grpc.insecure_channel(srv.address) as channel:
            assert raw_call(channel, LIVE, b"")[0] == grpc.StatusCode.OK
            srv.process.send_signal(signal.SIGTERM)
            health = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + 5
            while health.Check(health_pb2.HealthCheckRequest(), timeout=5).status != \
                    health_pb2.HealthCheckResponse.NOT_SERVING:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            code, details = raw_call(channel, LIVE, b"")
            assert (code, "draining" in details) == (grpc.StatusCode.UNAVAILABLE, True), details
        assert srv.process.wait(60) == 0
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def secure(handcrafted_pkg, tmp_path_factory):
    work = tmp_path_factory.mktemp("hostile-tls")
    certs = make_certs(work)
    (work / "token").write_text("t0ken-never-logged\n")
    metrics_port = free_port()
    srv = start_server("services.embedding", [
        "--model", str(handcrafted_pkg), "--tls-cert", str(certs["cert"]), "--tls-key", str(certs["key"]),
        "--auth-token-file", str(work / "token"), "--metrics-port", str(metrics_port), "--metrics-auth"],
        name="secure", credentials=grpc.ssl_channel_credentials(certs["ca"].read_bytes()))
    srv.metrics_port, srv.certs = metrics_port, certs
    yield srv
    srv.stop()


def test_failed_logins_are_logged_without_the_token_and_counted(secure):
    creds = grpc.ssl_channel_credentials(secure.certs["ca"].read_bytes())
    with grpc.secure_channel(secure.address.replace("127.0.0.1", "localhost"), creds) as channel:
        wrong = [("authorization", "Bearer t0ken-wrong")]
        # 8 MB of body behind a wrong token: refused on metadata, the body is never read.
        assert raw_call(channel, EMBED, b"\0" * 8_000_000, metadata=wrong)[0] == grpc.StatusCode.UNAUTHENTICATED
        assert raw_call(channel, INFER, b"", metadata=None)[0] == grpc.StatusCode.UNAUTHENTICATED
    tls = ssl.create_default_context(cafile=str(secure.certs["ca"]))
    tls.check_hostname = False
    with pytest.raises(urllib.error.HTTPError) as err:
        scrape(secure.metrics_port, "ecglens_auth_failures_total", scheme="https", context=tls)
    assert err.value.code == 401
    with pytest.raises((OSError, http.client.HTTPException)):  # plain HTTP is not served when gRPC uses TLS
        scrape(secure.metrics_port, "x", headers={"Authorization": "Bearer t0ken-never-logged"})
    failures = scrape(secure.metrics_port, "ecglens_auth_failures_total", scheme="https", context=tls,
                      headers={"Authorization": "Bearer t0ken-never-logged"})
    assert sum(failures.values()) >= 2, failures
    log = secure.log_path.read_text()
    assert log.count("authentication failed") >= 2 and "t0ken" not in log


def test_metrics_listen_on_loopback_only_by_default(server):
    import socket

    listening = open("/proc/net/tcp").read().splitlines()[1:]
    local = {line.split()[1] for line in listening if line.split()[3] == "0A"}  # 0A = LISTEN
    assert f"0100007F:{server.metrics_port:04X}" in local
    assert f"00000000:{server.metrics_port:04X}" not in local
    assert socket.gethostbyname("localhost") == "127.0.0.1"


def test_a_key_that_does_not_match_its_certificate_is_one_line(handcrafted_pkg, tmp_path):
    import subprocess
    import sys

    certs = make_certs(tmp_path)
    result = subprocess.run([sys.executable, "-m", "services.embedding", "--model", str(handcrafted_pkg),
                             "--port", "0", "--tls-cert", str(certs["cert"]), "--tls-key", str(tmp_path / "ca.key")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("ecglens serve: error:")]
    assert lines == [f"ecglens serve: error: TLS key {tmp_path / 'ca.key'} does not match certificate {certs['cert']}"]
