"""Typed Results: a real results.json reads into rows and writes back byte for byte."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from orchestrator.results import ModelInfo, ProbeResult, Representation, Results, Row, json_float

FIXTURE = Path(__file__).parent / "fixtures" / "demo-results-trimmed.json"  # the demo's results.json, trimmed


@pytest.fixture(scope="module")
def text() -> str:
    return FIXTURE.read_text()


def test_round_trip_is_byte_identical(text: str, tmp_path: Path) -> None:
    results = Results.from_dict(json.loads(text))
    assert results.to_json() == text
    assert Results.read(results.write(tmp_path / "results.json")).to_json() == text
    assert list(results.to_dict()) == list(json.loads(text))


def test_rows_are_typed(text: str) -> None:
    results = Results.read(FIXTURE)
    assert isinstance(results.models[0], ModelInfo) and results.models[0].embedding_dim > 0
    assert isinstance(results.probes[0], ProbeResult) and isinstance(results.representations[0], Representation)
    assert results.findings and results.findings[0].kind in ("strength", "risk", "note")
    assert all(not row.extra for key in ("models", "probes", "summary", "representations", "findings")
               for row in getattr(results, key))  # every key the demo writes is a declared field


def test_a_changed_field_or_value_is_detected(text: str) -> None:
    results = Results.read(FIXTURE)
    results.models[0].embedding_dim += 1
    assert results.to_json() != text
    results = Results.read(FIXTURE)
    results.summary[1].metrics["auroc_macro"]["mean"] = 0.5
    assert results.to_json() != text
    results = Results.read(FIXTURE)
    results.findings.pop()
    assert results.to_json() != text


def test_rows_built_in_code_write_the_runners_key_order(text: str) -> None:
    """A row built from its fields (no remembered keys) gives the same object: declaration order is schema order."""
    results = Results.read(FIXTURE)
    for name in ("models", "datasets", "preprocessing", "probes", "summary", "label_efficiency", "comparisons",
                 "representations", "transfer", "transfer_gap", "similarity", "counts", "findings"):
        for row in getattr(results, name):
            values = {f.name: getattr(row, f.name) for f in dataclasses.fields(row) if f.name not in ("_keys",)}
            assert type(row)(**values).to_dict() == row.to_dict() and list(type(row)(**values).to_dict()) == \
                list(row.to_dict()), name
    fresh = Results(**{f.name: getattr(results, f.name) for f in dataclasses.fields(results) if f.name != "_keys"})
    assert fresh.to_json() == text


def test_schema_1_0_and_partial_files_keep_their_keys() -> None:
    old = {"schema_version": "1.0", "models": [{"name": "a"}], "summary": [{"model": "a", "metrics": {}}],
           "findings": None, "future_key": {"x": 1}}
    results = Results.from_dict(old)
    assert results.to_dict() == old and list(results.to_dict()) == list(old)
    assert results.comparisons is None and results.findings is None and results.extra == {"future_key": {"x": 1}}
    assert results.summary[0].probe is None  # readers treat a missing probe kind as linear
    assert Results.from_dict({}).to_dict() == {}
    results.models[0].served_name = "card-name"  # set after reading: written after the keys that were read
    assert results.to_dict()["models"] == [{"name": "a", "served_name": "card-name"}]


def test_fresh_results_leave_out_absent_optional_keys() -> None:
    out = Results(schema_version="1.1", models=[ModelInfo(name="m")]).to_dict()
    assert "comparisons" not in out and "findings" not in out and out["errors"] == []
    assert "served_name" not in out["models"][0] and out["models"][0]["leads"] == []
    assert Row.from_dict({"a": 1}).to_dict() == {"a": 1}


def test_coerce_and_json_float() -> None:
    results = Results.from_dict({"models": []})
    assert Results.coerce(results) is results and Results.coerce({"models": []}) == results
    assert json_float(float("nan")) is None and json_float(float("inf")) is None
    assert json_float(1.5) == 1.5 and json_float(None) is None and json_float("x") == "x"


def test_diff_names_every_kind_of_difference_and_honours_the_tolerance():
    from orchestrator.results.diff import differences

    a = {"x": 1.0, "rows": [{"p": 0.5}, {"p": 0.25}], "gone": 1, "s": "a"}
    b = {"rows": [{"p": 0.5 + 1e-16}], "x": 1.0, "new": 2, "s": "b"}
    found = list(differences(a, b))
    assert found[0] == "removed /gone" and "added /new" in found and 'changed /s: "a" -> "b"' in found
    assert "length /rows: 2 -> 1" in found and any(f.startswith("changed /rows[0]/p") for f in found)
    assert not any("rows[0]" in f for f in differences(a, b, tol=1e-12))
    assert list(differences(a, json.loads(json.dumps(a)))) == []  # key order and a JSON round trip change nothing
