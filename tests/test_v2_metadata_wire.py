"""ModelMetadata field 6 on the wire as MLServer sends it: typed InferParameters, read by our V2 client."""
from __future__ import annotations

from concurrent import futures

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from protos.inference import open_inference_grpc_pb2 as pb
from protos.inference import open_inference_grpc_pb2_grpc as pb_grpc
from services.embedding.v2_client import V2Client, parameter_text

# What MLServer 1.7 puts in ModelMetadataResponse.parameters: strings, int64s, bools.
MLSERVER_STYLE = {
    "sampling_rate_hz": pb.InferParameter(string_param="500"),
    "num_samples": pb.InferParameter(int64_param=5000),
    "max_batch_size": pb.InferParameter(int64_param=32),
    "normalized_by_server": pb.InferParameter(bool_param=True),
    "scale": pb.InferParameter(double_param=0.25),
}


def mlserver_style_metadata() -> pb.ModelMetadataResponse:
    tensor = pb.ModelMetadataResponse.TensorMetadata
    return pb.ModelMetadataResponse(name="ecg-model", versions=["1"], platform="mlserver",
                                    inputs=[tensor(name="ecg", datatype="FP32", shape=[-1, 12, 5000])],
                                    outputs=[tensor(name="embedding", datatype="FP32", shape=[-1, 64])],
                                    parameters=MLSERVER_STYLE)


class _MetadataOnly(pb_grpc.GRPCInferenceServiceServicer):
    def ModelMetadata(self, request, context):  # noqa: N802 (gRPC method name)
        return mlserver_style_metadata()


@pytest.fixture()
def mlserver_like():
    server = grpc.server(futures.ThreadPoolExecutor(2))
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(_MetadataOnly(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0)


def test_client_reads_typed_parameters_from_a_real_server(mlserver_like):
    with V2Client(mlserver_like, "ecg-model") as client:
        md = client.metadata()
    assert md["name"] == "ecg-model"
    assert md["properties"] == {"sampling_rate_hz": "500", "num_samples": "5000", "max_batch_size": "32",
                                "normalized_by_server": "true", "scale": "0.25"}


def _old_definition():
    """ModelMetadataResponse as upstream OIP declares field 6: map<string, string> properties."""
    fd = descriptor_pb2.FileDescriptorProto(name="old_oip.proto", package="old", syntax="proto3")
    msg = fd.message_type.add(name="ModelMetadataResponse")
    entry = msg.nested_type.add(name="PropertiesEntry")
    entry.options.map_entry = True
    field = descriptor_pb2.FieldDescriptorProto
    string, optional = field.TYPE_STRING, field.LABEL_OPTIONAL
    entry.field.add(name="key", number=1, type=string, label=optional)
    entry.field.add(name="value", number=2, type=string, label=optional)
    msg.field.add(name="name", number=1, type=string, label=optional)
    msg.field.add(name="properties", number=6, label=field.LABEL_REPEATED, type=field.TYPE_MESSAGE,
                  type_name=".old.ModelMetadataResponse.PropertiesEntry")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("old.ModelMetadataResponse"))


def test_the_old_string_map_cannot_parse_what_mlserver_sends():
    wire = mlserver_style_metadata().SerializeToString()
    with pytest.raises(DecodeError):  # int64 5000 is not valid UTF-8 once read as a string
        _old_definition().FromString(wire)


def test_parameter_text_spells_every_kind():
    assert parameter_text(pb.InferParameter(string_param="BLT")) == "BLT"
    assert parameter_text(pb.InferParameter(int64_param=-3)) == "-3"
    assert parameter_text(pb.InferParameter(uint64_param=2 ** 63)) == str(2 ** 63)
    assert parameter_text(pb.InferParameter(bool_param=False)) == "false"
    assert parameter_text(pb.InferParameter(double_param=500.0)) == "500"
    assert parameter_text(pb.InferParameter(double_param=0.1)) == "0.1"
    assert parameter_text(pb.InferParameter()) == ""
