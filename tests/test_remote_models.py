"""Mixed experiments: a zoo FM, an imported ONNX package, a V2 endpoint, and a TLS + token endpoint."""
from __future__ import annotations

import subprocess
from pathlib import Path

import grpc
import pytest
import ray
import torch
import yaml

from orchestrator.endpoints import EndpointError
from orchestrator.experiment import ConfigError, parse_experiment
from orchestrator.runner import run_experiment
from services.common.process import start_server
from test_v2 import spawn, stop

LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def make_certs(folder: Path) -> dict[str, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost, made with openssl."""
    run = lambda *args: subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=ecglens-test-ca")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (folder / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "san.ext")
    return {"ca": folder / "ca.pem", "cert": folder / "server.pem", "key": folder / "server.key"}


def imported_onnx_package(folder: Path) -> Path:
    """A user's own ONNX model (not from the zoo) with a card: the bring-your-own path."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv1d(12, 16, 25, stride=10), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool1d(1), torch.nn.Flatten()).eval()
    folder.mkdir()
    torch.onnx.export(net, (torch.zeros(1, 12, 5000),), str(folder / "model.onnx"), input_names=["x"],
                      output_names=["emb"], dynamo=False, dynamic_axes={"x": {0: "b"}})
    card = {"name": "hospital-onnx", "version": "0.1", "backend": "onnxruntime", "weights": "model.onnx",
            "kind": "imported", "license": "proprietary",
            "input": {"sampling_rate_hz": 500, "leads": LEADS, "num_samples": 5000, "normalization": "zscore"},
            "output": {"embedding_dim": 16}}
    (folder / "card.yaml").write_text(yaml.safe_dump(card))
    return folder


@pytest.fixture(scope="module")
def endpoints(handcrafted_pkg, tmp_path_factory):
    """A V2 reference server and an ECGLens server behind TLS with a bearer token."""
    work = tmp_path_factory.mktemp("remote")
    certs = make_certs(work)
    (work / "token").write_text("s3cret-token\n")
    proc, v2_address, log = spawn(work, "v2_reference_server.py", "lead-stats")
    secure = start_server("services.embedding", ["--model", str(handcrafted_pkg), "--tls-cert", str(certs["cert"]),
                                                 "--tls-key", str(certs["key"]),
                                                 "--auth-token-file", str(work / "token")], name="secure",
                          credentials=grpc.ssl_channel_credentials(certs["ca"].read_bytes()))
    secure.address = secure.address.replace("127.0.0.1", "localhost")  # the certificate's name
    yield {"v2": v2_address, "secure": secure.address, "certs": certs, "token": work / "token", "work": work}
    secure.stop()
    stop(proc, log)




def mixed(endpoints, onnx_dir: Path, token_file: Path) -> dict:
    return {
        "name": "mixed",
        "datasets": [{"kind": "synthetic", "sites": ["eu", "sa"], "records_per_site": 40, "seed": 3}],
        "models": [
            "handcrafted",
            {"name": "hospital-onnx", "package": str(onnx_dir)},
            {"name": "hospital-v2", "endpoint": endpoints["v2"], "protocol": "v2",
             "v2": {"model_name": "lead-stats", "input_name": "signals", "sampling_rate_hz": 500, "leads": LEADS,
                    "num_samples": 5000}},
            {"name": "secure-fm", "endpoint": endpoints["secure"], "tls": {"ca_file": str(endpoints["certs"]["ca"])},
             "auth": {"token_file": str(token_file)}},
        ],
        "tasks": ["condition"],
        "scarcity": {"train_fractions": [1.0]},
        "seeds": [0],
        "analyses": {"umap": {"enabled": False}, "shap": {"enabled": False}},
        "transfer": {"enabled": False},
    }


def test_zoo_imported_onnx_v2_and_secure_endpoints_in_one_run(endpoints, ray_session, tmp_path):
    exp = parse_experiment(mixed(endpoints, imported_onnx_package(tmp_path / "onnx"), endpoints["token"]))
    results = run_experiment(exp, tmp_path / "out", show_progress=False).to_dict()
    models = {m["name"]: m for m in results["models"]}
    assert set(models) == {"handcrafted", "hospital-onnx", "hospital-v2", "secure-fm"}
    assert models["hospital-v2"]["endpoint"] == "remote" and models["hospital-v2"]["embedding_dim"] == 24
    assert models["hospital-onnx"]["kind"] == "imported" and models["hospital-onnx"]["endpoint"] == "launched"
    assert results["errors"] == []
    probes = {p["model"]: p for p in results["probes"]}
    assert set(probes) == set(models)
    # The secure endpoint serves the handcrafted package: its probe must match the launched one exactly.
    assert probes["secure-fm"]["metrics"] == probes["handcrafted"]["metrics"]
    text = (tmp_path / "out" / "results.json").read_text() + (tmp_path / "out" / "run.json").read_text()
    assert "s3cret-token" not in text


def test_wrong_token_is_a_clear_unauthenticated_error(endpoints, ray_session, tmp_path):
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-token")
    data = mixed(endpoints, imported_onnx_package(tmp_path / "onnx"), wrong)
    data["models"] = [data["models"][3]]
    with pytest.raises(EndpointError, match="secure-fm at localhost:.*UNAUTHENTICATED.*bearer token"):
        run_experiment(parse_experiment(data), tmp_path / "out", show_progress=False)


def test_plaintext_client_cannot_talk_to_a_tls_endpoint(endpoints, ray_session, tmp_path):
    data = mixed(endpoints, imported_onnx_package(tmp_path / "onnx"), endpoints["token"])
    model = dict(data["models"][3])
    model.pop("tls")
    data["models"] = [model]
    with pytest.raises(EndpointError, match="secure-fm at localhost:.*not reachable.*tls"):
        run_experiment(parse_experiment({**data, "runtime": {"timeout_s": 5}}), tmp_path / "out", show_progress=False)


def test_connection_settings_are_validated():
    with pytest.raises(ConfigError, match=r"models\[0\].tls: unknown key\(s\) ca"):
        parse_experiment({"datasets": ["synthetic:eu@5"], "models": [{"endpoint": "h:1", "tls": {"ca": "x"}}]})
    with pytest.raises(ConfigError, match="protocol: 'grpc' is not one of ecglens, v2"):
        parse_experiment({"datasets": ["synthetic:eu@5"], "models": [{"endpoint": "h:1", "protocol": "grpc"}]})
    with pytest.raises(ConfigError, match="apply to remote models"):
        parse_experiment({"datasets": ["synthetic:eu@5"], "models": [{"name": "handcrafted", "protocol": "v2"}]})
