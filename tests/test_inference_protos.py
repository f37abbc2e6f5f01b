"""The vendored Open Inference Protocol proto is upstream's, and its committed stubs are not stale."""
from __future__ import annotations

import hashlib
import re

from protos.generate import generate, package_dir, unpatched

PACKAGE_DIR = package_dir("inference")
PROTO = PACKAGE_DIR / "open_inference_grpc.proto"
MARKER = "// ---- upstream file below ----\n"


def test_generated_stubs_are_not_stale(tmp_path):
    written = generate(tmp_path, "inference")
    assert written
    for fresh in written:
        committed = PACKAGE_DIR / fresh.name
        assert committed.exists(), f"{fresh.name} missing: run `python -m protos.generate inference`"
        assert committed.read_text() == fresh.read_text(), \
            f"{committed} is stale: run `python -m protos.generate inference`"
    committed_names = {p.name for p in PACKAGE_DIR.glob("*_pb2*.py*")}
    assert committed_names == {p.name for p in written}, "stubs without a .proto: delete them"


def test_vendored_proto_is_upstream_byte_for_byte_but_for_the_listed_patches():
    text = PROTO.read_text(encoding="utf-8")
    header, vendored = text.split(MARKER, 1)
    recorded = re.search(r"sha256:\s+([0-9a-f]{64})", header).group(1)
    assert hashlib.sha256(unpatched(vendored).encode("utf-8")).hexdigest() == recorded, \
        "the vendored proto was edited beyond protos/generate.py INFERENCE_PATCHES"
    assert "open-inference/open-inference-protocol" in header and "Apache-2.0" in header


def test_service_and_field_numbers_are_the_protocols():
    from protos.inference import open_inference_grpc_pb2 as pb

    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert service.full_name == "inference.GRPCInferenceService"
    assert [m.name for m in service.methods] == ["ServerLive", "ServerReady", "ModelReady", "ServerMetadata",
                                                 "ModelMetadata", "ModelInfer"]
    infer = {f.name: f.number for f in pb.ModelInferRequest.DESCRIPTOR.fields}
    assert infer == {"model_name": 1, "model_version": 2, "id": 3, "parameters": 4, "inputs": 5, "outputs": 6,
                     "raw_input_contents": 7}
    reply = {f.name: f.number for f in pb.ModelInferResponse.DESCRIPTOR.fields}
    assert reply["outputs"] == 5 and reply["raw_output_contents"] == 6
    meta = {f.name: f.number for f in pb.ModelMetadataResponse.DESCRIPTOR.fields}
    # Field 6 as MLServer declares it (see protos/generate.py INFERENCE_PATCHES), not upstream's string map.
    assert meta == {"name": 1, "versions": 2, "platform": 3, "inputs": 4, "outputs": 5, "parameters": 6}
    assert pb.ModelMetadataResponse.DESCRIPTOR.fields_by_name["parameters"].message_type.fields_by_name[
        "value"].message_type.full_name == "inference.InferParameter"
    assert pb.InferTensorContents.DESCRIPTOR.fields_by_name["fp32_contents"].number == 6
