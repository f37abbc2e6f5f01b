"""Plugging in without friction: one endpoint syntax, `ecglens check` for V2, fail-fast endpoints that cost
only their own model, batch-1-only ONNX files imported by flags, real Challenge header variants."""
from __future__ import annotations

import argparse

import pytest
import torch
import yaml

from orchestrator.endpoints import EndpointError, open_client
from orchestrator.experiment import ConfigError, parse_experiment
from orchestrator.stages.connect import connect_remote
from services.embedding.card import CardError
from services.embedding.conformance import check_endpoint
from services.embedding.endpoint_url import STANDARD12, EndpointSyntaxError, parse_endpoint
from services.embedding.model import EmbeddingModel
from services.embedding.v2_conformance import check_v2
from services.embedding.zoo.importer.cli import add_cli
from services.embedding.zoo.importer.inspection import inspect_model
from services.embedding.zoo.importer.packaging import import_model
from test_v2 import spawn, stop

pytestmark = [pytest.mark.filterwarnings("ignore:.*legacy TorchScript-based ONNX export:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning")]
T = 200
REFUSED = "127.0.0.1:1"  # nothing listens on port 1: the connection is refused at once


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    proc, address, log = spawn(tmp_path_factory.mktemp("v2ref"), "v2_reference_server.py", "lead-stats")
    yield address
    stop(proc, log)


# ---------------------------------------------------------------- one endpoint syntax


def test_endpoint_syntax():
    assert parse_endpoint("10.0.0.5:8500").connection() == {"protocol": "ecglens"}
    assert parse_endpoint("grpcs://fm.example.org:443?token_file=/run/t").connection() == \
        {"protocol": "ecglens", "tls": True, "auth": {"token_file": "/run/t"}}
    v2 = parse_endpoint("v2s://h:8001/ecg_encoder/2?sampling_rate_hz=500&leads=standard12&input=x&output=emb"
                        "&ca_file=/ca.pem")
    assert (v2.protocol, v2.address, v2.model) == ("v2", "h:8001", "ecg_encoder")
    assert v2.connection() == {"protocol": "v2", "tls": {"ca_file": "/ca.pem"},
                               "v2": {"model_name": "ecg_encoder", "sampling_rate_hz": 500.0,
                                      "leads": list(STANDARD12), "input_name": "x", "output_name": "emb",
                                      "model_version": "2"}}
    for bad, message in (("v2://h:1", "names its model"), ("v2://h:1/m?rate=5", "unknown setting 'rate'"),
                         ("grpc://h:1/m", "no path"), ("http://h:1", "unknown scheme"),
                         ("v2://h:1/m?num_samples=x", "not a number")):
        with pytest.raises(EndpointSyntaxError, match=message):
            parse_endpoint(bad)


def test_quick_form_v2_url_and_package_path(handcrafted_pkg):
    exp = parse_experiment({"datasets": ["synthetic:eu@5"], "models": [
        str(handcrafted_pkg), "v2://127.0.0.1:9/lead-stats?sampling_rate_hz=500&num_samples=5000",
        "127.0.0.1:8500"]})
    local, remote, plain = exp.models
    # A package given by path is named by its folder (never by the path, which would also put its log elsewhere).
    assert (local.name, local.package) == (handcrafted_pkg.name, str(handcrafted_pkg))
    assert (remote.name, remote.endpoints, remote.connection["protocol"]) == ("lead-stats", ("127.0.0.1:9",), "v2")
    assert remote.connection["v2"] == {"model_name": "lead-stats", "sampling_rate_hz": 500.0, "num_samples": 5000}
    assert plain.connection["protocol"] == "ecglens"
    with pytest.raises(ConfigError, match="protocol is 'ecglens' but the endpoint URL says 'v2'"):
        parse_experiment({"datasets": ["synthetic:eu@5"], "models": [{"endpoint": "v2://h:1/m",
                                                                      "protocol": "ecglens"}]})


# ---------------------------------------------------------------- fail fast, every problem at once


def test_refused_endpoint_fails_with_the_reason_not_after_the_request_timeout():
    with pytest.raises(EndpointError, match="Connection refused.*not reachable within 10s") as err:
        open_client(REFUSED, {"name": "m"}, timeout_s=300)
    assert err.value.unreachable
    with pytest.raises(EndpointError, match="not reachable") as err:
        open_client(REFUSED, {"name": "m", "protocol": "v2"}, timeout_s=300)
    assert err.value.unreachable


def test_ecglens_address_of_a_v2_server_says_how_to_write_it(reference):
    with pytest.raises(EndpointError, match=f"UNIMPLEMENTED.*v2://{reference}/MODEL") as err:
        open_client(reference, {"name": "m"}, timeout_s=30)
    assert not err.value.unreachable


def test_every_missing_v2_setting_of_every_model_in_one_error(reference):
    exp = parse_experiment({"datasets": ["synthetic:eu@5"], "models": [
        f"v2://{reference}/lead-stats", {"name": "other", "endpoint": f"v2://{reference}/lead-stats-typed"}]})
    with pytest.raises(EndpointError) as err:
        connect_remote(exp)
    text = str(err.value)
    assert text.count("does not state sampling_rate_hz, num_samples") == 2, text
    assert "lead-stats?sampling_rate_hz=500&num_samples=5000" in text


def test_unreachable_model_is_lost_not_fatal_and_12_leads_default_with_a_note(reference):
    exp = parse_experiment({"datasets": ["synthetic:eu@5"], "models": [
        f"v2://{reference}/lead-stats?sampling_rate_hz=500&num_samples=5000", {"name": "gone", "endpoint": REFUSED}]})
    remote = connect_remote(exp)
    assert set(remote.cards) == {"lead-stats"} and set(remote.lost) == {"gone"}
    assert "Connection refused" in remote.lost["gone"]
    assert remote.cards["lead-stats"].leads == STANDARD12 and "standard order" in remote.notes["lead-stats"][0]
    only_lost = parse_experiment({"datasets": ["synthetic:eu@5"], "models": [{"name": "gone", "endpoint": REFUSED}]})
    with pytest.raises(EndpointError, match="no model is reachable"):
        connect_remote(only_lost)


def test_run_goes_on_without_an_unreachable_model(ray_session, tmp_path):
    from ecglens_cli.main import EXIT_PARTIAL, exit_status
    from orchestrator.runner import run_experiment

    exp = parse_experiment({
        "datasets": [{"kind": "synthetic", "sites": ["eu"], "records_per_site": 30, "seed": 1}],
        "models": ["handcrafted", {"name": "gone", "endpoint": REFUSED}], "tasks": ["condition"],
        "scarcity": {"train_fractions": [1.0]}, "seeds": [0], "transfer": {"enabled": False},
        "analyses": {"umap": {"enabled": False}, "shap": {"enabled": False}, "attribution": {"enabled": False}}})
    results = run_experiment(exp, tmp_path / "out", show_progress=False)
    assert {p.model for p in results.probes} == {"handcrafted"}
    counts = {c.model: c for c in results.counts}
    assert (counts["handcrafted"].embedded, counts["handcrafted"].lost) == (30, 0)
    assert (counts["gone"].embedded, counts["gone"].lost) == (0, 30)
    assert results.partial and exit_status(results) == EXIT_PARTIAL
    assert any(e.model == "gone" and "unreachable" in e.reason for e in results.errors)
    assert [m["name"] for m in results.experiment["models"]] == ["handcrafted", "gone"]
    assert (tmp_path / "out" / "logs" / "handcrafted-0.log").is_file()


# ---------------------------------------------------------------- ecglens check


def _lines(report) -> dict[str, tuple[str, str]]:
    return {name: (status, detail) for name, status, detail in report.checks}


def test_check_v2_passes_with_url_settings_and_warns_on_what_v2_does_not_promise(reference):
    endpoint = parse_endpoint(f"v2://{reference}/lead-stats?sampling_rate_hz=500&num_samples=1000")
    report = check_v2(endpoint.address, endpoint.model, endpoint.v2, timeout=30)
    lines = _lines(report)
    assert report.ok, report.render()
    assert lines["ModelInfer shape"] == ("PASS", "[4, 24]") and lines["ModelInfer deterministic"][0] == "PASS"
    assert lines["grpc.health.v1"][0] == "WARN" and lines["wrong lead count"][0] == "WARN"
    assert lines["assumed"][0] == "WARN" and "standard order" in lines["assumed"][1]


def test_check_v2_fails_cleanly(reference):
    missing = check_v2(reference, "lead-stats", timeout=30)
    assert not missing.ok and "does not state sampling_rate_hz, num_samples" in missing.render()
    broken = check_v2(reference, "broken", {"sampling_rate_hz": 500, "num_samples": 500}, timeout=30)
    assert not broken.ok and "[FAIL] ModelInfer [4, 12, 500]: INTERNAL: model raised" in broken.render()
    assert "[FAIL] ServerLive: UNAVAILABLE" in check_v2(REFUSED, "m", timeout=30).render()
    hint = check_endpoint(reference, timeout=30).render()
    assert "UNIMPLEMENTED" in hint and "ecglens check v2://HOST:PORT/MODEL" in hint


def test_check_wrong_lead_count_reaches_lead_validation(handcrafted_pkg):
    from services.common.process import start_server

    with start_server("services.embedding", ["--model", str(handcrafted_pkg)], name="check") as server:
        lines = _lines(check_endpoint(server.address, timeout=30))
    status, detail = lines["wrong lead count -> INVALID_ARGUMENT"]
    assert status == "PASS" and "13 leads" in detail, detail


def test_check_reports_a_failing_model_as_fail_lines_not_a_traceback(tmp_path):
    import os
    from pathlib import Path

    from services.common.process import start_server

    tests = Path(__file__).resolve().parent
    card = {"name": "fails", "version": "1", "backend": "python", "entry_point": "plugin_models:FailsOnSignal",
            "input": {"sampling_rate_hz": 100, "leads": list(STANDARD12), "num_samples": T},
            "output": {"embedding_dim": 12}}
    (tmp_path / "card.yaml").write_text(yaml.safe_dump(card))
    path = os.pathsep.join([str(tests), str(tests.parent), os.environ.get("PYTHONPATH", "")])
    with start_server("services.embedding", ["--model", str(tmp_path)], name="fails",
                      env={"PYTHONPATH": path}) as server:
        report = check_endpoint(server.address, timeout=30)
    assert not report.ok
    assert _lines(report)["Embed"][0] == "FAIL" and "INTERNAL" in _lines(report)["Embed"][1], report.render()


# ---------------------------------------------------------------- batch-1-only ONNX, imported by flags


class Batch1Only(torch.nn.Module):
    """[B, 12, T] -> logits; a reshape traced at batch 1 fixes the batch of the [1, 16] embedding inside."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv1d(12, 4, 5, stride=5)
        self.embed = torch.nn.Linear(4 * (T // 5), 16)
        self.head = torch.nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.embed(torch.relu(self.conv(x)).reshape(1, 4 * (T // 5)))))


@pytest.fixture(scope="module")
def batch1(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("b1only") / "third_party.onnx"
    torch.onnx.export(Batch1Only().eval(), (torch.randn(1, 12, T),), str(path), input_names=["ecg"],
                      output_names=["logits"], dynamo=False, dynamic_axes={"ecg": {0: "batch"}})
    info = inspect_model(path)
    emb = next(t for t in info["intermediates"] if t["shape"] == [1, 16] and t["op"] == "Gemm")
    return path, info, emb["name"]


def _cli(*argv) -> int:
    parser = argparse.ArgumentParser(prog="ecglens zoo")
    add_cli(parser.add_subparsers(dest="zoo_command", required=True))
    args = parser.parse_args([str(a) for a in argv])
    return args.func(args)


def test_inspect_lists_fixed_batch_intermediates_and_finds_batch_1_only(batch1, capsys):
    path, info, emb = batch1
    assert info["inputs"][0]["shape"] == ["batch", 12, T]
    tensor = next(t for t in info["intermediates"] if t["name"] == emb)
    assert tensor["fixed_batch"] == 1 and tensor["embedding_dim"] == 16
    probe = info["batch_probe"]
    assert probe["batch_2"] and probe["batch_1"] is None
    assert _cli("inspect", path) == 0
    text = capsys.readouterr().out
    assert "runs only at batch 1" in text and "fixed-batch" in text and "max_batch_size: 1" in text
    row = next(line for line in text.splitlines() if line.startswith(f"  {emb} "))
    assert "  float32  " in row  # columns never run together


def test_batch_1_only_onnx_imports_by_flags_and_a_lying_card_is_refused(batch1, tmp_path, capsys):
    path, _, emb = batch1
    zoo = tmp_path / "zoo"
    flags = ["--rate", "100", "--leads", "standard12", "--output", emb, "--out", zoo]
    assert _cli("import", path, *flags, "--max-batch-size", "8") == 2
    err = capsys.readouterr().err
    assert "It runs on a batch of 1" in err and "--max-batch-size 1" in err
    assert _cli("import", path, *flags) == 0  # max_batch_size 1 from the batch probe; name from the file's stem
    package = zoo / "third_party"
    model = EmbeddingModel.load(package)
    assert model.card.serving.max_batch_size == 1 and model.card.output.embedding_dim == 16
    card = yaml.safe_load((package / "card.yaml").read_text())
    card["serving"]["max_batch_size"] = 32
    (package / "card.yaml").write_text(yaml.safe_dump(card))
    with pytest.raises(CardError, match="max_batch_size is 32, but the model fails on a batch of 32"):
        EmbeddingModel.load(package)


def test_served_batch_1_only_import_passes_check(batch1, tmp_path):
    from services.common.process import start_server

    path, _, emb = batch1
    card = {"name": "b1", "input": {"sampling_rate_hz": 100, "leads": list(STANDARD12), "num_samples": T,
                                    "normalization": "none"},
            "output": {"name": emb, "embedding_dim": 16}, "serving": {"max_batch_size": 1}}
    package = import_model(path, tmp_path / "zoo", card)
    with start_server("services.embedding", ["--model", str(package)], name="b1") as server:
        report = check_endpoint(server.address, timeout=30)
    # check sends batches of 4: the server's batcher runs them one ECG at a time, as the card says.
    assert report.ok, report.render()
    assert _lines(report)["Embed shape"] == ("PASS", "[4, 16]")


# ---------------------------------------------------------------- real folders, report


def test_describe_detects_challenge_headers_written_with_a_space(tmp_path):
    from challenge_fixture import write_challenge
    from orchestrator.datasets.describe import describe, spec_from_arg

    root = write_challenge(tmp_path / "c2021")
    for header in root.rglob("*.hea"):
        header.write_text(header.read_text().replace("#Dx:", "# Dx:").replace("#Age:", "# Age:"))
    spec = spec_from_arg(str(root))
    assert spec.kind == "challenge"
    summary = describe(spec)
    assert summary["records"] > 0 and sum(summary["labels"]["coarse"].values()) > 0  # `# Dx:` was parsed


def test_empty_model_version_is_not_rendered_as_v():
    from orchestrator.report.experiment import models_section
    from orchestrator.results import ModelInfo, Results

    html = models_section(Results(models=[ModelInfo(name="mlserver-fm", version=""),
                                          ModelInfo(name="zoo-fm", version="1.2")]))
    assert '<span class="note">v</span>' not in html and "v1.2" in html
