"""Model cards, backends (ONNX Runtime, TorchScript, Python), pooling and the zoo, in-process."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from services.embedding import adapt
from services.embedding.card import CardError, load_card, parse_card
from services.embedding.model import EmbeddingModel, InputError
from services.embedding.zoo.registry import build_package
from services.embedding.zoo.staging import staged_package

BASE_CARD = {
    "name": "m", "version": "1", "backend": "onnxruntime", "weights": "model.onnx",
    "input": {"sampling_rate_hz": 100, "leads": ["I", "II"], "num_samples": 200},
    "output": {"embedding_dim": 4},
}


def card_with(**changes):
    data = json.loads(json.dumps(BASE_CARD))
    for dotted, value in changes.items():
        section = data
        *path, key = dotted.split("__")
        for part in path:
            section = section[part]
        if value is None:
            section.pop(key)
        else:
            section[key] = value
    return data


@pytest.mark.parametrize("changes, message", [
    ({"backend": "tensorflow"}, "backend: 'tensorflow' is not one of onnxruntime, torch, python"),
    ({"input__leads": []}, "input.leads must be a non-empty list"),
    ({"input__leads": ["I", "I"]}, "duplicates"),
    ({"input__num_samples": -5}, "input.num_samples: expected a positive integer"),
    ({"input__sampling_rate_hz": None}, "missing required key 'sampling_rate_hz'"),
    ({"input__layout": "TBL"}, "input.layout: 'TBL' is not one of BLT, BTL, BT"),
    ({"input__layout": "BT"}, "single-lead"),
    ({"output__pooling": "median"}, "output.pooling"),
    ({"weights": None}, "missing required key 'weights'"),
    ({"colour": "red"}, "unknown key(s) colour"),
    ({"input__normalisation": "zscore"}, "input: unknown key(s) normalisation"),
    ({"serving": {"max_batch_size": 0}}, "serving.max_batch_size"),
])
def test_card_validation_names_the_bad_key(changes, message):
    with pytest.raises(CardError) as info:
        parse_card(card_with(**changes), "card.yaml")
    assert message in str(info.value)


def test_missing_weights_file_is_reported(tmp_path):
    (tmp_path / "card.yaml").write_text(yaml.safe_dump(BASE_CARD))
    with pytest.raises(CardError, match="weights file 'model.onnx' not found"):
        load_card(tmp_path)


def test_pooling_and_layouts():
    y = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    assert adapt.pool(y, "mean", 2).shape == (2, 3)
    np.testing.assert_array_equal(adapt.pool(y, "max", 1), y[:, 2, :])
    np.testing.assert_array_equal(adapt.pool(y, "first", 1), y[:, 0, :])
    assert adapt.pool(y, "flatten", 1).shape == (2, 12)
    with pytest.raises(ValueError, match="rank 3"):
        adapt.pool(y, "none", 1)
    x = np.random.default_rng(0).normal(size=(2, 3, 50)).astype(np.float32)
    assert adapt.to_layout(x, "BTL").shape == (2, 50, 3)
    z = adapt.normalize(x, "zscore")
    np.testing.assert_allclose(z.mean(-1), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(-1), 1, atol=1e-4)
    flat = adapt.normalize(np.zeros((1, 2, 10), np.float32), "zscore")
    assert np.isfinite(flat).all()


class TinyNet(torch.nn.Module):
    """[B, T, L] (channels last) -> per-step features [B, T', 8] and a pooled head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv1d(2, 8, 5, stride=5)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)  # [B, T', 8]
        return self.head(h.mean(1))


def write_package(tmp_path, card: dict, weights_name: str | None = None) -> None:
    (tmp_path / "card.yaml").write_text(yaml.safe_dump(card))


def export_tinynet(tmp_path) -> TinyNet:
    """A TinyNet exported to tmp_path/model.onnx (input "ecg" with a dynamic batch, output "logits"); the net."""
    net = TinyNet().eval()
    torch.onnx.export(net, (torch.randn(1, 200, 2),), str(tmp_path / "model.onnx"), input_names=["ecg"],
                      output_names=["logits"], dynamo=False, dynamic_axes={"ecg": {0: "b"}})
    return net


def test_onnx_intermediate_tensor_as_embedding_with_pooling(tmp_path):
    torch.manual_seed(0)
    net = TinyNet().eval()
    x = torch.randn(2, 200, 2)
    torch.onnx.export(net, (x,), str(tmp_path / "model.onnx"), input_names=["ecg"], output_names=["logits"],
                      dynamo=False, dynamic_axes={"ecg": {0: "batch"}})
    import onnx

    graph = onnx.load(str(tmp_path / "model.onnx")).graph
    # The Relu's output (before the transpose back) is [B, 8, T']: an intermediate tensor, not a graph output.
    relu_out = next(n.output[0] for n in graph.node if n.op_type == "Relu")
    card = card_with(input__layout="BTL", output__name=relu_out, output__pooling="mean", output__pool_axis=2,
                     output__embedding_dim=8)
    write_package(tmp_path, card)
    model = EmbeddingModel.load(tmp_path)
    ecg = np.random.default_rng(1).normal(size=(3, 2, 200)).astype(np.float32)
    with torch.no_grad():
        expected = torch.relu(net.conv(torch.from_numpy(ecg))).mean(-1).numpy()
    np.testing.assert_allclose(model.embed(model.validate(ecg)), expected, atol=1e-5)


def test_onnx_weights_are_counted_from_the_file_when_the_card_does_not_state_them(tmp_path):
    net = export_tinynet(tmp_path)
    write_package(tmp_path, card_with(input__layout="BTL", output__embedding_dim=3))
    assert EmbeddingModel.load(tmp_path).params == sum(p.numel() for p in net.parameters())
    write_package(tmp_path, {**card_with(input__layout="BTL", output__embedding_dim=3), "params": 7})
    assert EmbeddingModel.load(tmp_path).params == 7  # the card's own figure wins


def test_a_corrupt_onnx_file_is_a_backend_error_naming_the_file(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07not a model")
    write_package(tmp_path, BASE_CARD)
    from services.embedding.backends import BackendError

    with pytest.raises(BackendError, match=r"model.onnx: not a readable ONNX model \("):
        EmbeddingModel.load(tmp_path)


def test_serving_a_card_that_states_its_weights_never_imports_onnx(tmp_path):
    """The onnx package costs a server ~1 s of imports; onnxruntime reads the file without it."""
    export_tinynet(tmp_path)
    write_package(tmp_path, {**card_with(input__layout="BTL", output__embedding_dim=3), "params": 1})
    script = ("import sys\nfrom services.embedding.model import EmbeddingModel\n"
              f"EmbeddingModel.load({str(tmp_path)!r})\nprint('onnx' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "False"


def test_card_that_does_not_fit_the_model_is_rejected_at_load(tmp_path):
    export_tinynet(tmp_path)
    write_package(tmp_path, card_with(input__layout="BTL", output__embedding_dim=5))
    from services.embedding.backends import BackendError

    with pytest.raises(BackendError, match=r"embedding shape \[1, 3\], card says \[1, 5\]"):
        EmbeddingModel.load(tmp_path)
    write_package(tmp_path, card_with(output__name="no_such_tensor"))
    with pytest.raises(BackendError, match="neither a graph output nor an intermediate tensor"):
        EmbeddingModel.load(tmp_path)


def test_torchscript_backend_matches_torch(tmp_path):
    torch.manual_seed(0)
    net = TinyNet().eval()
    torch.jit.save(torch.jit.script(net), str(tmp_path / "model.pt"))
    write_package(tmp_path, card_with(backend="torch", weights="model.pt", input__layout="BTL",
                                      output__embedding_dim=3))
    model = EmbeddingModel.load(tmp_path)
    ecg = np.random.default_rng(2).normal(size=(4, 2, 200)).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(ecg).transpose(1, 2).contiguous()).numpy()
    np.testing.assert_allclose(model.embed(ecg), expected, atol=1e-6)
    assert model.params == sum(p.numel() for p in net.parameters())


class MeanModel:
    """A Python-backend model used by the test below."""

    def run(self, x):
        return x.mean(axis=2)


def test_python_backend_and_input_validation(tmp_path):
    sys.modules.setdefault("ecglens_test_models", sys.modules[__name__])
    write_package(tmp_path, card_with(backend="python", weights=None, entry_point=f"{__name__}:MeanModel",
                                      output__embedding_dim=2))
    model = EmbeddingModel.load(tmp_path)
    ecg = np.ones((2, 2, 200), np.float32)
    np.testing.assert_array_equal(model.embed(ecg), np.ones((2, 2)))
    with pytest.raises(InputError, match="3 leads but m expects 2"):
        model.validate(np.ones((1, 3, 200), np.float32))
    with pytest.raises(InputError, match=r"150 samples per lead but m expects 200 \(2 s at 100 Hz\)"):
        model.validate(np.ones((1, 2, 150), np.float32))


def test_random_resnet_build_is_deterministic(tmp_path, random_resnet_pkg):
    again = build_package("random-resnet", tmp_path)
    for name in ("card.yaml", "model.onnx"):
        assert (again / name).read_bytes() == (random_resnet_pkg / name).read_bytes(), name
    card = load_card(again)
    assert card.kind == "baseline" and card.output.embedding_dim == 256


def test_handcrafted_package_serves_finite_features(handcrafted_pkg):
    model = EmbeddingModel.load(handcrafted_pkg)
    x = np.random.default_rng(0).normal(0, 0.3, (3, 12, 5000)).astype(np.float32)
    emb = model.embed(x)
    assert emb.shape == (3, model.card.output.embedding_dim) and np.isfinite(emb).all()
    np.testing.assert_allclose(model.embed(x[1:2]), emb[1:2], atol=1e-5)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ecglens_cli.main", *args], capture_output=True, text=True,
                          timeout=120)


def test_cli_help_explains_every_subcommand():
    top = run_cli("--help")
    assert top.returncode == 0
    for command in ("serve", "zoo", "check"):
        assert command in top.stdout
    for args in (("serve", "--help"), ("zoo", "list", "--help"), ("zoo", "build", "--help"), ("check", "--help")):
        result = run_cli(*args)
        assert result.returncode == 0 and "usage:" in result.stdout, args


def test_zoo_list_json():
    result = run_cli("zoo", "list", "--json")
    assert result.returncode == 0, result.stderr
    entries = {e["name"]: e for e in json.loads(result.stdout)}
    assert {"random-resnet", "handcrafted"} <= set(entries)
    for entry in entries.values():
        assert set(entry) == {"name", "version", "kind", "objective", "embedding_dim", "params"}
        assert entry["kind"] in ("baseline", "pretrained", "imported")
    assert entries["random-resnet"]["params"] > 1_000_000


def test_cli_reports_a_bad_model_clearly():
    result = run_cli("serve", "--model", "/nonexistent/dir")
    assert result.returncode == 2
    assert "neither a package directory nor a zoo model" in result.stderr


def test_staged_package_publishes_only_a_completed_build(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="half-built"):
        with staged_package(tmp_path, "pkg") as staging:
            (staging / "new.txt").write_text("new")
            raise RuntimeError("half-built")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]  # no staging dir left behind
    assert sorted(p.name for p in (tmp_path / "pkg").iterdir()) == ["old.txt"]
    with staged_package(tmp_path, "pkg") as staging:
        assert staging.name.startswith(".pkg-") and staging.stat().st_mode & 0o777 == 0o755
        (staging / "new.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]
    assert sorted(p.name for p in (tmp_path / "pkg").iterdir()) == ["new.txt"]
