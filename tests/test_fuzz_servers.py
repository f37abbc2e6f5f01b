"""Property-based fuzzing (hypothesis, bounded) of the tensor codec and of both servicers in a real server:
no malformed input gets UNKNOWN or INTERNAL, a stream answers every message, and the server stays healthy."""
from __future__ import annotations

import random

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz_requests import ALLOWED, STREAM, UNARY_METHODS, embed_request, malformed, valid_embed
from protos.ecglens.v1 import embedding_pb2, tensor_pb2
from services.common.process import start_server
from services.common.tensors import TensorError, from_tensor, to_tensor

FUZZ = settings(max_examples=120, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@FUZZ
@given(dtype=st.integers(min_value=-(2**31), max_value=2**31 - 1),
       shape=st.lists(st.one_of(INT64, st.integers(0, 16)), max_size=80), data=st.binary(max_size=600))
def test_the_codec_decodes_or_raises_tensor_error(dtype, shape, data):
    tensor = tensor_pb2.Tensor(dtype=dtype, shape=shape, data=data)
    try:
        array = from_tensor(tensor, "ecg")
    except TensorError as err:
        assert len(str(err)) < 1000
        return
    assert array.nbytes == len(data) and list(array.shape) == shape


@FUZZ
@given(shape=st.lists(st.integers(0, 6), max_size=4), dtype=st.sampled_from(["float32", "float16"]))
def test_the_codec_round_trips(shape, dtype):
    array = np.random.default_rng(0).normal(size=shape).astype(dtype)
    assert np.array_equal(from_tensor(to_tensor(array, dtype)), array)


@pytest.fixture(scope="module")
def server(handcrafted_pkg):
    srv = start_server("services.embedding", ["--model", str(handcrafted_pkg), "--drain-seconds", "0"], name="fuzz")
    yield srv
    log = srv.log_path.read_text()
    assert srv.stop() == 0, srv.log_tail()
    assert "Traceback" not in log and '"level": "error"' not in log, log[-3000:]


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server.address) as chan:
        yield chan


def call(channel: grpc.Channel, method: str, payload: bytes) -> str:
    try:
        channel.unary_unary(method, request_serializer=None, response_deserializer=None)(payload, timeout=60)
        return "OK"
    except grpc.RpcError as err:
        return err.code().name


@FUZZ
@given(rng=st.randoms(use_true_random=False))
def test_malformed_requests_get_a_clean_status(channel, rng):
    method, payload = malformed(rng)
    assert call(channel, method, payload) in ALLOWED


@FUZZ
@given(method=st.sampled_from(UNARY_METHODS), payload=st.binary(max_size=300))
def test_byte_soup_gets_a_clean_status(channel, method, payload):
    assert call(channel, method, payload) in ALLOWED


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(rng=st.randoms(use_true_random=False), good=st.lists(st.booleans(), min_size=1, max_size=8))
def test_a_stream_answers_every_message_in_order(channel, rng, good):
    sent = [valid_embed(rng) if ok else embed_request(rng) for ok in good]
    stream = channel.stream_stream(STREAM, request_serializer=None,
                                   response_deserializer=embedding_pb2.EmbedResponse.FromString)
    replies = list(stream(iter(sent), timeout=60))
    assert len(replies) == len(sent)
    assert all(r.status.code == 0 for r, ok in zip(replies, good) if ok)
    assert {grpc.StatusCode.OK.value[0], grpc.StatusCode.INVALID_ARGUMENT.value[0]} >= {r.status.code for r in replies}


def test_the_server_is_healthy_after_the_fuzzing(channel):
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert call(channel, UNARY_METHODS[0], valid_embed(random.Random(0))) == "OK"
