"""Bring your own model: inspect, card skeleton, import (ONNX intermediate, BTL, BT, TorchScript, .pt2) and CLI."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
import yaml

from services.embedding.backends import BackendError
from services.embedding.card import CardError, load_card, parse_card
from services.embedding.model import EmbeddingModel
from services.embedding.zoo.imported import find_imported, imported_packages
from services.embedding.zoo.importer.card_draft import STANDARD12, card_skeleton, missing_flags, parse_leads
from services.embedding.zoo.importer.cli import add_cli
from services.embedding.zoo.importer.inspection import inspect_model
from services.embedding.zoo.importer.packaging import import_model
from services.embedding.zoo.importer.shapes import guess_layout

# Exporting and loading tiny models through torch's deprecated-but-supported TorchScript paths is intended here.
pytestmark = [pytest.mark.filterwarnings("ignore:.*legacy TorchScript-based ONNX export:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:.*torch.jit.*deprecated:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning")]

T = 200


class Cnn12(torch.nn.Module):
    """[B, 12, T] -> logits [B, 3]; the useful embedding is the second ReLU's [B, 16, T'] map."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv1d(12, 8, 5, stride=5)
        self.conv2 = torch.nn.Conv1d(8, 16, 5, stride=2)
        self.head = torch.nn.Linear(16, 3)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv2(torch.relu(self.conv1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(-1))


class Tokens(torch.nn.Module):
    """[B, T, 12] -> [B, T, 16] tokens (features last, like a transformer)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(12, 16)
        self.norm = torch.nn.LayerNorm(16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))


class SingleLead(torch.nn.Module):
    """[B, T] -> [B, 8]."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv1d(1, 8, 5, stride=5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x.unsqueeze(1))).mean(-1)


class DictOut(torch.nn.Module):
    """[B, 12, T] -> {"emb": [B, 16], "logits": [B, 3]}."""

    def __init__(self) -> None:
        super().__init__()
        self.cnn = Cnn12()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        emb = self.cnn.features(x).mean(-1)
        return {"emb": emb, "logits": self.cnn.head(emb)}


def _export(net: torch.nn.Module, example: torch.Tensor, path, dynamic: dict | None = None) -> None:
    torch.onnx.export(net, (example,), str(path), input_names=["ecg"], output_names=["out"], dynamo=False,
                      dynamic_axes={"ecg": dynamic or {0: "batch"}})


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Small exported models and the torch modules they came from."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("byom")
    nets = {"cnn": Cnn12().eval(), "tokens": Tokens().eval(), "single": SingleLead().eval(), "dict": DictOut().eval()}
    _export(nets["cnn"], torch.randn(2, 12, T), root / "cnn.onnx")
    _export(nets["cnn"], torch.randn(2, 12, T), root / "cnn_dyn.onnx", {0: "batch", 1: "leads", 2: "time"})
    _export(nets["tokens"], torch.randn(2, T, 12), root / "tokens.onnx")
    _export(nets["single"], torch.randn(2, T), root / "single.onnx")
    torch.jit.save(torch.jit.script(nets["dict"]), str(root / "dict.pt"))
    program = torch.export.export(nets["cnn"], (torch.randn(2, 12, T),),
                                  dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=1024)}})
    torch.export.save(program, str(root / "cnn.pt2"))
    return root, nets


def ecg(batch: int = 3, leads: int = 12, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(batch, leads, T)).astype(np.float32)


def _relu_map(info: dict) -> dict:
    """The last ReLU's [B, 16, T'] map among the inspected candidates."""
    return next(t for t in info["intermediates"] if t["op"] == "Relu" and len(t["shape"]) == 3)


def _cnn_card(models, **changes) -> dict:
    root, _ = models
    info = inspect_model(root / "cnn.onnx")
    card = card_skeleton(root / "cnn.onnx", info, name="cnn", sampling_rate_hz=100, leads=list(STANDARD12),
                         output=_relu_map(info)["name"], normalization="none")
    for dotted, value in changes.items():
        section, key = (card, dotted) if "__" not in dotted else (card[dotted.split("__")[0]], dotted.split("__")[1])
        section[key] = value
    return card


# ---------------------------------------------------------------- inspect and skeleton


def test_inspect_onnx_lists_inputs_outputs_and_intermediates(models):
    root, nets = models
    info = inspect_model(root / "cnn.onnx")
    assert info["format"] == "onnx" and info["backend"] == "onnxruntime"
    assert info["inputs"] == [{"name": "ecg", "shape": ["batch", 12, T], "dtype": "float32"}]
    assert [(o["name"], o["shape"]) for o in info["outputs"]] == [("out", ["batch", 3])]
    assert info["params"] == sum(p.numel() for p in nets["cnn"].parameters())
    shapes = {tuple(t["shape"]) for t in info["intermediates"]}
    assert {("batch", 8, 40), ("batch", 16, 18), ("batch", 16)} <= shapes
    # The pooled features right before the head rank first; a conv map suggests mean over time (axis 2).
    assert info["intermediates"][0]["shape"] == ["batch", 16]
    relu = _relu_map(info)
    assert (relu["shape"], relu["pooling"], relu["pool_axis"], relu["embedding_dim"]) == \
        (["batch", 16, 18], "mean", 2, 16)


def test_card_skeleton_guesses_layout_and_samples_and_marks_todos(models):
    root, _ = models
    info = inspect_model(root / "cnn.onnx")
    card = card_skeleton(root / "cnn.onnx", info)
    assert card["backend"] == "onnxruntime" and card["weights"] == "model.onnx" and card["kind"] == "imported"
    assert card["input"]["layout"] == "BLT" and card["input"]["num_samples"] == T
    assert card["input"]["input_name"] == "ecg"
    assert card["output"] == {"name": "out", "embedding_dim": 3, "pooling": "none"}
    missing = " ".join(missing_flags(card))
    assert "--rate" in missing and "--leads" in missing and "12 lead names" in missing
    assert "--normalization" in missing
    with pytest.raises(CardError):
        parse_card(card)  # TODOs never pass as values
    assert any("logits?" in note for note in card["notes"])  # a 3-wide output hints at an intermediate


def test_skeleton_for_btl_tokens_pools_over_time_axis_1(models):
    root, _ = models
    info = inspect_model(root / "tokens.onnx")
    card = card_skeleton(root / "tokens.onnx", info)
    assert card["input"]["layout"] == "BTL" and card["input"]["num_samples"] == T
    assert card["output"] == {"name": "out", "embedding_dim": 16, "pooling": "mean", "pool_axis": 1}


@pytest.mark.parametrize("shape, leads, layout", [
    (["batch", 12, 5000], None, "BLT"), (["batch", 5000, 12], None, "BTL"), (["batch", 5000], None, "BT"),
    (["b", 12, "time"], None, "BLT"), (["b", "time", 8], None, "BTL"), (["b", 8, 8], ["I", "II"], None),
    ([1, 2, 2], None, None), (["b", 1, 3, 100], None, None),
])
def test_guess_layout(shape, leads, layout):
    assert guess_layout(shape, leads) == layout


def test_parse_leads():
    assert parse_leads("standard12") == list(STANDARD12)
    assert parse_leads("I, II,V1") == ["I", "II", "V1"]


def test_inspect_fills_dynamic_time_with_the_given_input_shape(models):
    root, _ = models
    symbolic = inspect_model(root / "cnn_dyn.onnx")
    assert symbolic["inputs"][0]["shape"] == ["batch", "leads", "time"]
    concrete = inspect_model(root / "cnn_dyn.onnx", input_shape=[2, 12, T])
    assert ["batch", 16, 18] in [t["shape"] for t in concrete["intermediates"]]


def test_inspect_torch_models(models):
    root, nets = models
    script = inspect_model(root / "dict.pt")
    assert script["format"] == "torchscript" and script["outputs"] == []
    assert any("--input-shape" in note for note in script["notes"])
    script = inspect_model(root / "dict.pt", input_shape=[2, 12, T])
    assert [(o["name"], o["shape"]) for o in script["outputs"]] == [("emb", ["batch", 16]), ("logits", ["batch", 3])]
    assert script["params"] == sum(p.numel() for p in nets["dict"].parameters())
    exported = inspect_model(root / "cnn.pt2")  # a torch.export program carries its shapes
    assert exported["format"] == "torch.export" and exported["inputs"][0]["shape"][1:] == [12, T]
    assert [o["shape"] for o in exported["outputs"]] == [["batch", 3]]


def test_unsupported_file_is_explained(tmp_path):
    (tmp_path / "weights.pth").write_bytes(b"x")
    with pytest.raises(CardError, match="state_dict needs its Python code"):
        inspect_model(tmp_path / "weights.pth")
    (tmp_path / "broken.pt").write_bytes(b"not a zip")
    with pytest.raises(BackendError, match="cannot load as torchscript"):
        inspect_model(tmp_path / "broken.pt")


# ---------------------------------------------------------------- import


def test_import_onnx_intermediate_matches_torch(models, tmp_path):
    _, nets = models
    card = _cnn_card(models)
    assert card["output"]["pooling"] == "mean" and card["output"]["pool_axis"] == 2
    package = import_model(models[0] / "cnn.onnx", tmp_path / "zoo", card)
    assert package == tmp_path / "zoo" / "cnn"
    assert sorted(p.name for p in (tmp_path / "zoo").iterdir()) == ["cnn"]  # no staging left
    assert sorted(p.name for p in package.iterdir()) == ["card.yaml", "model.onnx"]
    model = EmbeddingModel.load(package)
    x = ecg()
    with torch.no_grad():
        expected = nets["cnn"].features(torch.from_numpy(x)).mean(-1).numpy()
    np.testing.assert_allclose(model.embed(model.validate(x)), expected, atol=1e-5)
    assert load_card(package).extra["source"]["file"] == "cnn.onnx"


def test_import_btl_model(models, tmp_path):
    root, nets = models
    info = inspect_model(root / "tokens.onnx")
    card = card_skeleton(root / "tokens.onnx", info, name="tokens", sampling_rate_hz=100,
                         leads=list(STANDARD12), normalization="none")
    model = EmbeddingModel.load(import_model(root / "tokens.onnx", tmp_path, card))
    x = ecg(seed=1)
    with torch.no_grad():
        expected = nets["tokens"](torch.from_numpy(x).transpose(1, 2)).mean(1).numpy()
    np.testing.assert_allclose(model.embed(x), expected, atol=1e-5)


def test_import_single_lead_bt_model(models, tmp_path):
    root, nets = models
    info = inspect_model(root / "single.onnx")
    card = card_skeleton(root / "single.onnx", info, name="lead-ii", sampling_rate_hz=100, leads=["II"],
                         normalization="zscore")
    assert card["input"]["layout"] == "BT" and card["input"]["num_samples"] == T
    model = EmbeddingModel.load(import_model(root / "single.onnx", tmp_path, card))
    x = ecg(leads=1, seed=2)
    z = (x - x.mean(-1, keepdims=True)) / x.std(-1, keepdims=True)
    with torch.no_grad():
        expected = nets["single"](torch.from_numpy(z[:, 0])).numpy()
    np.testing.assert_allclose(model.embed(x), expected, atol=1e-5)


def test_import_torchscript_dict_output(models, tmp_path):
    root, nets = models
    info = inspect_model(root / "dict.pt", input_shape=[2, 12, T])
    card = card_skeleton(root / "dict.pt", info, name="scripted", sampling_rate_hz=100, leads=list(STANDARD12),
                         output="emb", normalization="none")
    assert card["backend"] == "torch" and card["weights"] == "model.pt"
    assert card["output"] == {"name": "emb", "embedding_dim": 16, "pooling": "none"}
    model = EmbeddingModel.load(import_model(root / "dict.pt", tmp_path, card))
    x = ecg(seed=3)
    with torch.no_grad():
        expected = nets["dict"](torch.from_numpy(x))["emb"].numpy()
    np.testing.assert_allclose(model.embed(x), expected, atol=1e-5)
    assert model.params == sum(p.numel() for p in nets["dict"].parameters())


def test_import_torch_export_program(models, tmp_path):
    root, nets = models
    info = inspect_model(root / "cnn.pt2")
    card = card_skeleton(root / "cnn.pt2", info, name="exported", sampling_rate_hz=100, leads=list(STANDARD12),
                         normalization="none")
    model = EmbeddingModel.load(import_model(root / "cnn.pt2", tmp_path, card))
    x = ecg(seed=4)
    with torch.no_grad():
        np.testing.assert_allclose(model.embed(x), nets["cnn"](torch.from_numpy(x)).numpy(), atol=1e-5)


@pytest.mark.parametrize("changes, error, message", [
    ({"output__name": "no_such_tensor"}, CardError,
     r"output.name 'no_such_tensor' is not a tensor of this model; outputs: out \[batch, 3\]; candidate "
     r"intermediate tensors: /ReduceMean_output_0 \[batch, 16\]"),
    ({"output__pooling": "none"}, CardError,
     r"has shape \[batch, 16, 18\]; pooling none cannot make \[batch, dim\] \(it gives rank 3\): "
     r"use pooling mean with pool_axis 2"),
    ({"output__embedding_dim": 99}, CardError,
     r"pooling mean over axis 2 gives \[B, 16\] but output.embedding_dim is 99: set output.embedding_dim: 16"),
    ({"output__pool_axis": 1}, CardError,
     r"pooling mean over axis 1 gives \[B, 18\] but output.embedding_dim is 16: pool_axis 2 gives 16"),
    ({"input__leads": ["I", "II", "III", "V1", "V2", "V3", "V4", "V5"]}, CardError,
     r"model input 'ecg' has shape \[batch, 12, 200\]: with layout BLT axis 1 is leads, so it expects 12 leads, "
     r"but input.leads lists 8"),
    ({"input__num_samples": 500}, CardError, r"expects 200 samples, but input.num_samples is 500"),
    ({"input__layout": "BT", "input__leads": ["II"]}, CardError, r"\(rank 3\) but layout BT feeds rank 2"),
    ({"input__input_name": "x"}, CardError, r"input.input_name 'x' is not an input of the model; inputs: \['ecg'\]"),
    ({"name": "random-resnet"}, CardError, "is a built-in zoo model"),
    ({"name": "../evil"}, CardError, "use letters, digits"),
    ({"input__sampling_rate_hz": "TODO: --rate HZ (x)"}, CardError, "TODO values; set: --rate HZ"),
])
def test_import_errors_are_precise_and_leave_nothing(models, tmp_path, changes, error, message):
    out = tmp_path / "zoo"
    with pytest.raises(error, match=message):
        import_model(models[0] / "cnn.onnx", out, _cnn_card(models, **changes))
    assert not out.exists() or list(out.iterdir()) == []


def test_wrong_lead_count_on_dynamic_input_fails_at_the_probe(models, tmp_path):
    root, _ = models
    info = inspect_model(root / "cnn_dyn.onnx")
    card = card_skeleton(root / "cnn_dyn.onnx", info, name="dyn", sampling_rate_hz=100, leads=["I", "II"],
                         num_samples=T, layout="BLT", output="out", normalization="none")
    card["output"]["embedding_dim"] = 3
    with pytest.raises(BackendError, match=r"the model failed on a probe batch of shape \[2, 2, 200\] "
                                           r"\(layout BLT, 2 leads, 200 samples\)"):
        import_model(root / "cnn_dyn.onnx", tmp_path, card)
    assert list(tmp_path.iterdir()) == []


def test_existing_package_needs_force(models, tmp_path):
    import_model(models[0] / "cnn.onnx", tmp_path, _cnn_card(models))
    with pytest.raises(CardError, match="already exists; choose another name or pass --force"):
        import_model(models[0] / "cnn.onnx", tmp_path, _cnn_card(models))
    card = _cnn_card(models, output__name="/ReduceMean_output_0", output__pooling="none")
    package = import_model(models[0] / "cnn.onnx", tmp_path, card, force=True)
    assert load_card(package).output.name == "/ReduceMean_output_0"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cnn"]


def test_imported_packages_listing(models, tmp_path):
    import_model(models[0] / "cnn.onnx", tmp_path, _cnn_card(models))
    (tmp_path / "random-resnet").mkdir()  # builder-made packages are listed by the registry, not here
    (tmp_path / "random-resnet" / "card.yaml").write_text("name: random-resnet")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "card.yaml").write_text("name: broken")
    (tmp_path / ".cnn-staging").mkdir()
    entries = imported_packages(tmp_path)
    assert entries == [{"name": "cnn", "version": "1.0.0", "kind": "imported", "objective": "imported from cnn.onnx",
                        "embedding_dim": 16, "params": entries[0]["params"], "built": True,
                        "path": str(tmp_path / "cnn")}]
    assert entries[0]["params"] > 0
    assert imported_packages(tmp_path / "absent") == []
    assert find_imported("cnn", tmp_path) == tmp_path / "cnn" and find_imported("broken/..", tmp_path) is None


def test_fixed_batch_of_one_serves_one_at_a_time(models, tmp_path):
    root, nets = models
    torch.onnx.export(nets["cnn"], (torch.randn(1, 12, T),), str(tmp_path / "b1.onnx"), input_names=["ecg"],
                      output_names=["out"], dynamo=False)
    info = inspect_model(tmp_path / "b1.onnx")
    card = card_skeleton(tmp_path / "b1.onnx", info, name="b1", sampling_rate_hz=100, leads=list(STANDARD12),
                         normalization="none")
    assert card["serving"]["max_batch_size"] == 1 and info["intermediates"]  # first dim 1 is the batch here
    card["serving"]["max_batch_size"] = 32
    with pytest.raises(CardError, match="batch size is fixed at 1, so set serving.max_batch_size: 1"):
        import_model(tmp_path / "b1.onnx", tmp_path / "zoo", card)
    card["serving"]["max_batch_size"] = 1
    model = EmbeddingModel.load(import_model(tmp_path / "b1.onnx", tmp_path / "zoo", card))
    assert model.embed(ecg(batch=1)).shape == (1, 3)


# ---------------------------------------------------------------- CLI


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="ecglens zoo")
    add_cli(parser.add_subparsers(dest="zoo_command", required=True))
    args = parser.parse_args([str(a) for a in argv])
    return args.func(args)


def test_cli_inspect_json_and_text(models, capsys):
    root, _ = models
    assert _cli("inspect", root / "cnn.onnx", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"]["inputs"][0]["shape"] == ["batch", 12, T] and data["card"]["input"]["layout"] == "BLT"
    assert _cli("inspect", root / "dict.pt", "--input-shape", "2,12,200") == 0
    text = capsys.readouterr().out
    assert "emb" in text and "[batch, 16]" in text and "TODO: --rate" in text


def test_cli_write_card_reports_missing_flags(models, tmp_path, capsys):
    root, _ = models
    out = tmp_path / "card.yaml"
    assert _cli("inspect", root / "cnn.onnx", "--write-card", out, "--samples", "200") == 2
    err = capsys.readouterr().err
    assert "cannot write" in err and "--rate HZ" in err and "--leads LIST" in err and not out.exists()


def test_cli_write_card_then_import_with_card(models, tmp_path, capsys):
    root, nets = models
    out, zoo = tmp_path / "card.yaml", tmp_path / "zoo"
    relu = _relu_map(inspect_model(root / "cnn.onnx"))["name"]
    assert _cli("inspect", root / "cnn.onnx", "--write-card", out, "--name", "mine", "--rate", "100",
                "--leads", "standard12", "--output", relu, "--pooling", "mean", "--pool-axis", "2") == 0
    assert "normalization: none" in capsys.readouterr().err.replace("(", "").replace(")", "")
    card = parse_card(yaml.safe_load(out.read_text()))
    assert (card.input.leads, card.output.embedding_dim, card.input.normalization) == (STANDARD12, 16, "none")
    assert _cli("import", root / "cnn.onnx", "--card", out, "--out", zoo, "--name", "mine2") == 0
    assert "imported cnn.onnx as mine2" in capsys.readouterr().out
    model = EmbeddingModel.load(zoo / "mine2")
    x = ecg(seed=5)
    with torch.no_grad():
        expected = nets["cnn"].features(torch.from_numpy(x)).mean(-1).numpy()
    np.testing.assert_allclose(model.embed(x), expected, atol=1e-5)


def test_cli_import_with_flags_and_errors(models, tmp_path, capsys):
    root, _ = models
    zoo = tmp_path / "zoo"
    # --name defaults to the file's stem.
    assert _cli("import", root / "dict.pt", "--rate", "100", "--leads", "standard12", "--samples", "200",
                "--output", "emb", "--out", zoo) == 0
    assert "imported dict.pt as dict" in capsys.readouterr().out
    assert _cli("import", root / "dict.pt", "--name", "scripted", "--rate", "100", "--leads", "standard12",
                "--samples", "200", "--output", "emb", "--normalization", "zscore", "--out", zoo) == 0
    assert load_card(zoo / "scripted").output.embedding_dim == 16
    assert _cli("import", root / "cnn.onnx", "--name", "eight", "--rate", "100", "--leads", "I,II,III,V1,V2,V3,V4,V5",
                "--layout", "BLT", "--out", zoo) == 2
    assert "expects 12 leads, but input.leads lists 8" in capsys.readouterr().err
    relu = _relu_map(inspect_model(root / "cnn.onnx"))["name"]
    assert _cli("import", root / "cnn.onnx", "--name", "flat", "--rate", "100", "--leads", "standard12",
                "--output", relu, "--pooling", "none", "--out", zoo) == 2
    assert "pooling none cannot make [batch, dim] (it gives rank 3): use pooling mean with pool_axis 2" \
        in capsys.readouterr().err
    assert sorted(p.name for p in zoo.iterdir()) == ["dict", "scripted"]
