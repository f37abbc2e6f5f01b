"""The committed ecglens.v1 stubs are exactly what protos/generate.py makes from the .proto files."""
from __future__ import annotations

from pathlib import Path

from protos.generate import generate, package_dir

PACKAGE_DIR = package_dir("ecglens.v1")


def test_generated_stubs_are_not_stale(tmp_path):
    written = generate(tmp_path, "ecglens.v1")
    assert written
    for fresh in written:
        committed = PACKAGE_DIR / fresh.name
        assert committed.exists(), f"{fresh.name} missing: run `make protos`"
        assert committed.read_text() == fresh.read_text(), f"{committed} is stale: run `make protos`"
    committed_names = {p.name for p in PACKAGE_DIR.glob("*_pb2*.py*")}
    assert committed_names == {p.name for p in written}, "stubs without a .proto: delete them"


def test_contract_names_and_field_numbers_are_as_published():
    from protos.ecglens.v1 import embedding_pb2, tensor_pb2

    fields = {f.name: f.number for f in embedding_pb2.ModelCard.DESCRIPTOR.fields}
    assert {k: fields[k] for k in ("name", "version", "embedding_dim", "sampling_rate_hz", "leads", "num_samples",
                                   "max_batch_size")} == {"name": 1, "version": 2, "embedding_dim": 3,
                                                          "sampling_rate_hz": 4, "leads": 5, "num_samples": 6,
                                                          "max_batch_size": 7}
    assert {f.name: f.number for f in tensor_pb2.Tensor.DESCRIPTOR.fields} == {"dtype": 1, "shape": 2, "data": 3}
    assert dict(tensor_pb2.DType.items()) == {"DTYPE_UNSPECIFIED": 0, "FLOAT32": 1, "FLOAT16": 2}
    req = {f.name: f.number for f in embedding_pb2.EmbedRequest.DESCRIPTOR.fields}
    assert req == {"request_id": 1, "ecg": 2}
    resp = {f.name: f.number for f in embedding_pb2.EmbedResponse.DESCRIPTOR.fields}
    assert resp["request_id"] == 1 and resp["embedding"] == 2
    methods = {m.name: (m.client_streaming, m.server_streaming)
               for m in embedding_pb2.DESCRIPTOR.services_by_name["EmbeddingService"].methods}
    assert methods == {"GetModelCard": (False, False), "Embed": (False, False), "EmbedStream": (True, True)}
