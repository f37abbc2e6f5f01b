"""The committed ecglens.v1 stubs are exactly what protos/generate.py makes from the .proto files."""
from __future__ import annotations

import json

from protos import lint
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


def test_field_numbers_match_the_committed_snapshot():
    # buf breaking, in small: every recorded field keeps its number, label and type, in every package.
    snapshot = json.loads(lint.SNAPSHOT.read_text())
    assert lint.stability_problems(lint.current_numbers(), snapshot) == []
    assert snapshot["ecglens.v1.ModelCard.max_batch_size"] == "7 optional int64"
    assert snapshot["ecglens.v1.Tensor.shape"] == "2 repeated int64"
    assert snapshot["inference.ModelInferRequest.raw_input_contents"] == "7 repeated bytes"


def test_stability_check_can_fail():
    snapshot = {"ecglens.v1.Tensor.dtype": "1 optional .ecglens.v1.DType", "ecglens.v1.Tensor.shape": "2 repeated int64",
                "ecglens.v1.Tensor.gone": "4 optional string"}
    current = {"ecglens.v1.Tensor.dtype": "1 optional .ecglens.v1.DType", "ecglens.v1.Tensor.shape": "5 repeated int64",
               "ecglens.v1.Tensor.fresh": "6 optional string"}
    problems = lint.stability_problems(current, snapshot)
    assert len(problems) == 3
    assert "Tensor.shape: was '2 repeated int64', now '5 repeated int64'" in problems[0]
    assert "Tensor.gone: removed" in problems[1] and "Tensor.fresh: new" in problems[2]


def test_ecglens_protos_pass_the_style_lint():
    assert lint.style_problems() == []


def test_the_vendored_protocol_is_exempt_from_style_only():
    assert lint.STYLE_PACKAGES == ("ecglens.v1",)
    # It would fail the style rules (its own naming), which is why it is exempt ...
    assert any("package is 'inference'" in p for fd in lint.package_files("inference") for p in lint.lint_file(fd))
    # ... but not from stability.
    assert any(name.startswith("inference.") for name in lint.current_numbers())


BAD_PROTO = """syntax = "proto3";
package ecglens.v2;

// A message whose field has no comment.
message bad_message {
  string BadField = 1;
  // An old field whose comment hides that it is going away.
  string old = 2 [deprecated = true];
}

// Values without the enum's prefix and no UNSPECIFIED zero.
enum Colour {
  // Zero.
  RED = 0;
  // Not prefixed.
  COLOUR_green = 1;
}

service Thing {
  // Fine.
  rpc Get(bad_message) returns (bad_message);
}
"""


def test_style_lint_can_fail():
    problems = lint.lint_text(BAD_PROTO)
    expected = [
        "package is 'ecglens.v2', not 'ecglens.v1'",
        "ecglens.v2.bad_message: name 'bad_message' is not PascalCase",
        "ecglens.v2.bad_message.BadField: name 'BadField' is not lower_snake_case",
        "ecglens.v2.bad_message.BadField: has no leading comment",
        "ecglens.v2.bad_message.old: is deprecated but its comment does not say so",
        "ecglens.v2.Colour.RED: value is not prefixed with COLOUR_",
        "ecglens.v2.Colour.RED: the zero value must be COLOUR_UNSPECIFIED",
        "ecglens.v2.Colour.COLOUR_green: name 'COLOUR_green' is not UPPER_SNAKE",
        "ecglens.v2.Thing: has no leading comment",
    ]
    for want in expected:
        assert any(p.endswith(want) for p in problems), (want, problems)
    assert len(problems) == len(expected), problems
    assert lint.lint_text(GOOD_PROTO) == []


GOOD_PROTO = """syntax = "proto3";
package ecglens.v1;

// Colours.
enum Colour {
  // Not set.
  COLOUR_UNSPECIFIED = 0;
  // Green.
  COLOUR_GREEN = 1;
}
"""


def test_rpc_shapes_are_as_published():
    from protos.ecglens.v1 import embedding_pb2, tensor_pb2

    assert dict(tensor_pb2.DType.items()) == {"DTYPE_UNSPECIFIED": 0, "FLOAT32": 1, "FLOAT16": 2}
    methods = {m.name: (m.client_streaming, m.server_streaming)
               for m in embedding_pb2.DESCRIPTOR.services_by_name["EmbeddingService"].methods}
    assert methods == {"GetModelCard": (False, False), "Embed": (False, False), "EmbedStream": (True, True)}
