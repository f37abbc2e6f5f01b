"""Official FM adapters (ECGFounder, ST-MEM, MERL): key layout, checkpoint wrappers, preprocessing, ONNX parity.

No real weights can be downloaded here, so every test builds RANDOM weights in the authors' key layout and
saves them exactly as the authors' training scripts do. What is verified: architecture and key layout
(strict loading, clear errors), the authors' preprocessing inside the graph, and ONNX Runtime parity with
the PyTorch module through EmbeddingModel (the server's path). Not verified: real-weight accuracy.
"""
from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from services.embedding.card import load_card
from services.embedding.model import EmbeddingModel
from services.embedding.zoo.official import OFFICIAL, SUMMARY, adapter, import_official
from services.embedding.zoo.official.checkpoint import OfficialCheckpointError, file_sha256
from services.embedding.zoo.official.cli import add_cli, parse_options
from services.embedding.zoo.official import ecgfounder as ef
from services.embedding.zoo.official import merl
from services.embedding.zoo.official import st_mem as sm
from golden_layouts import golden_layout, port_layout

TOL = 1e-4
# Same constructors as the published models, fewer/narrower stages and blocks (the key layout is the same).
EF_SMALL = {"base_filters": 16, "filter_list": [16, 32, 32, 64], "m_blocks_list": [1, 2, 1, 2]}
SM_SMALL = {"width": 64, "depth": 2, "heads": 2, "mlp_dim": 128}


def wire_ecgs(batch: int, samples: int, fs: float, seed: int = 0) -> np.ndarray:
    """[batch, 12, samples] float32 mV: beats, baseline wander, mains hum, noise, per-lead gains."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / fs
    out = np.empty((batch, 12, samples), np.float32)
    for b in range(batch):
        rate = rng.uniform(0.9, 1.6)
        phase = (t * rate) % 1.0
        beat = 1.2 * np.exp(-((phase - 0.3) / 0.012) ** 2) + 0.25 * np.exp(-((phase - 0.6) / 0.05) ** 2)
        gains = rng.uniform(-1.0, 1.5, size=(12, 1))
        wander = 0.4 * np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * t + rng.uniform(0, 6))
        out[b] = gains * beat + wander + 0.03 * np.sin(2 * np.pi * 50 * t) + 0.02 * rng.standard_normal((12, samples))
    return out


# ------------------------------------------------------------------------------------------- ECGFounder


def save_ecgfounder(net: torch.nn.Module, path) -> None:
    """As the authors' util.save_checkpoint: {'epoch', 'step', 'state_dict', 'optimizer', 'scheduler', 'val_auroc'}."""
    optimizer = torch.optim.Adam(net.parameters(), lr=5e-5, weight_decay=1e-5)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=10, factor=0.1, mode="max")
    torch.save({"epoch": 3, "step": 10000, "state_dict": net.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "val_auroc": np.float64(0.9204)}, path)


@pytest.fixture(scope="module")
def ecgfounder_pkg(tmp_path_factory):
    """A small Net1D with random weights, saved as the authors save it and imported (filters in the graph)."""
    torch.manual_seed(0)
    net = ef.build(EF_SMALL)
    root = tmp_path_factory.mktemp("ecgfounder")
    ckpt = root / "checkpoint_10000_0.9204.pth"
    save_ecgfounder(net, ckpt)
    return net, import_official("ecgfounder", ckpt, root / "zoo"), ckpt


@pytest.fixture(scope="module")
def ecgfounder_wire():
    """Two wire ECGs and the authors' NumPy/SciPy preprocessing of them (filters + record z-score)."""
    x = wire_ecgs(2, ef.NUM_SAMPLES, ef.SAMPLING_RATE_HZ)
    return x, ef.official_preprocess(x)


def test_ecgfounder_onnx_matches_torch_on_authors_preprocessing(ecgfounder_pkg, ecgfounder_wire):
    net, pkg, _ = ecgfounder_pkg
    x, normalised = ecgfounder_wire
    model = EmbeddingModel.load(pkg)
    emb = model.embed(model.validate(x))
    with torch.no_grad():
        ref = net.forward_features(torch.from_numpy(normalised).float()).numpy()
    assert emb.shape == (2, EF_SMALL["filter_list"][-1])
    assert np.abs(emb - ref).max() <= TOL
    assert np.abs(model.embed(x[1:2])[0] - emb[1]).max() <= 1e-5  # dynamic batch, records independent


def test_ecgfounder_graph_preprocessing_is_the_authors(ecgfounder_pkg, ecgfounder_wire):
    net = ecgfounder_pkg[0]
    x, normalised = ecgfounder_wire
    filtered = ef.ECGFounderEmbedding(net).preprocess(torch.from_numpy(x)).numpy()
    assert np.abs(filtered - normalised).max() <= TOL
    plain = ef.ECGFounderEmbedding(net, filtered=False).preprocess(torch.from_numpy(x)).numpy()
    assert np.abs(plain - ef.official_preprocess(x, filtered=False)).max() <= 1e-5
    # one mean/std for the whole record, not per lead
    assert abs(plain[0].mean()) < 1e-5 and abs(plain[0].std() - 1) < 1e-4 and np.ptp(plain[0].std(axis=1)) > 0.1


def test_ecgfounder_card(ecgfounder_pkg):
    _, pkg, ckpt = ecgfounder_pkg
    card = load_card(pkg)
    assert (card.kind, card.license, card.backend) == ("imported", "MIT", "onnxruntime")
    assert card.extra["source"]["repository"] == "https://github.com/PKUDigitalHealth/ECGFounder"
    assert "NEJM AI" in card.extra["source"]["paper"]
    assert (card.input.sampling_rate_hz, card.input.num_samples, card.input.leads) == (500.0, 5000, ef.LEADS_12)
    assert card.input.normalization == "none" and card.output.embedding_dim == 64
    assert card.extra["build"]["checkpoint_sha256"] == file_sha256(ckpt)
    assert card.extra["build"]["architecture"]["official"] is False  # the small test variant says so
    assert "z-score" in " ".join(card.extra["notes"]["preprocessing_in_graph"])


def test_ecgfounder_official_key_layout_and_variants():
    with torch.device("meta"):
        full = ef.build()
        one_lead = ef.build({"in_channels": 1})
    state = full.state_dict()
    for key, shape in {"first_conv.conv.weight": (64, 12, 16),
                       "stage_list.0.block_list.0.conv1.conv.weight": (64, 64, 1),
                       "stage_list.6.block_list.3.conv2.conv.weight": (1024, 16, 16),
                       "stage_list.6.block_list.3.se_fc2.bias": (1024,), "dense.weight": (150, 1024),
                       "first_bn.running_mean": (64,), "stage_list.1.block_list.0.bn1.num_batches_tracked": ()}.items():
        assert tuple(state[key].shape) == shape, key
    assert ef.infer_config(state) == ef.OFFICIAL_CONFIG
    assert ef.infer_config(one_lead.state_dict())["in_channels"] == 1
    assert ef.card(ef.infer_config(one_lead.state_dict()), 0)["input"]["leads"] == ["I"]
    assert ef.card(ef.OFFICIAL_CONFIG, 0)["output"]["embedding_dim"] == SUMMARY["ecgfounder"]["embedding_dim"]


def test_ecgfounder_bad_checkpoints_name_the_keys(tmp_path):
    torch.manual_seed(1)
    net = ef.build(EF_SMALL)
    state = net.state_dict()
    renamed = dict(state)
    renamed["stage_list.1.block_list.0.se_fc1.w"] = renamed.pop("stage_list.1.block_list.0.se_fc1.weight")
    torch.save({"state_dict": renamed, "step": 1, "val_auroc": 0.5}, tmp_path / "renamed.pth")
    with pytest.raises(OfficialCheckpointError) as err:
        ef.load_official(tmp_path / "renamed.pth")
    assert "stage_list.1.block_list.0.se_fc1.weight" in str(err.value)
    assert "stage_list.1.block_list.0.se_fc1.w" in str(err.value) and "unexpected" in str(err.value)
    missing = {k: v for k, v in state.items() if k != "first_conv.conv.bias"}
    torch.save({"state_dict": missing}, tmp_path / "missing.pth")
    with pytest.raises(OfficialCheckpointError, match=r"missing key\(s\): first_conv\.conv\.bias"):
        ef.load_official(tmp_path / "missing.pth")
    torch.save({"weights": state}, tmp_path / "wrapper.pth")
    with pytest.raises(OfficialCheckpointError, match="state_dict"):
        ef.load_official(tmp_path / "wrapper.pth")
    # DataParallel's 'module.' prefix and a bare state dict are accepted
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "bare.pth")
    loaded = ef.load_official(tmp_path / "bare.pth")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())


# ----------------------------------------------------------------------------------------------- ST-MEM


def save_st_mem(net: torch.nn.Module, path) -> None:
    """As util/misc.py save_model called by main_pretrain.py: encoder.pth = {'epoch', 'model', 'optimizer',
    'scaler', 'config'}."""
    config = {"seed": 0, "model_name": "st_mem_vit_base_dec256d4b",
              "model": {"seq_len": 2250, "patch_size": 75, "num_leads": 12, "norm_pix_loss": True},
              "dataset": {"fs": 250, "lead": "12lead"}, "train": {"epochs": 800, "blr": 1.5e-4, "lr": None}}
    torch.save({"epoch": 799, "model": net.state_dict(), "optimizer": None, "scaler": None, "config": config}, path)


@pytest.fixture(scope="module")
def st_mem_pkg(tmp_path_factory):
    """A small ST_MEM_ViT with random weights, saved as main_pretrain.py saves encoder.pth, and imported."""
    torch.manual_seed(0)
    net = sm.build(SM_SMALL)
    root = tmp_path_factory.mktemp("st_mem")
    ckpt = root / "encoder.pth"
    save_st_mem(net, ckpt)
    return net, import_official("st-mem", ckpt, root / "zoo", name="st-mem-small"), ckpt


def test_st_mem_onnx_matches_torch_on_authors_preprocessing(st_mem_pkg):
    net, pkg, _ = st_mem_pkg
    model = EmbeddingModel.load(pkg)
    x = wire_ecgs(3, sm.NUM_SAMPLES, sm.SAMPLING_RATE_HZ)
    emb = model.embed(model.validate(x))
    with torch.no_grad():
        ref = net.forward_encoding(torch.from_numpy(sm.official_preprocess(x)).float()).numpy()
    assert emb.shape == (3, SM_SMALL["width"])
    assert np.abs(emb - ref).max() <= TOL
    assert np.abs(model.embed(x[2:3])[0] - emb[2]).max() <= 1e-5
    flat = model.embed(np.zeros((1, 12, sm.NUM_SAMPLES), np.float32))  # std == 0 -> zeros, as Standardize
    with torch.no_grad():
        assert np.abs(flat - net.forward_encoding(torch.zeros(1, 12, sm.NUM_SAMPLES)).numpy()).max() <= TOL


def test_st_mem_card(st_mem_pkg):
    _, pkg, ckpt = st_mem_pkg
    card = load_card(pkg)
    assert card.name == "st-mem-small" and card.version.endswith(file_sha256(ckpt)[:12])
    assert (card.kind, card.license) == ("imported", "MIT")
    assert card.extra["source"]["repository"] == "https://github.com/bakqui/ST-MEM"
    assert "ICLR 2024" in card.extra["source"]["paper"]
    assert (card.input.sampling_rate_hz, card.input.num_samples, card.input.leads) == (250.0, 2250, sm.LEADS)
    assert card.output.embedding_dim == 64 and card.input.normalization == "none"
    assert "masked" in card.objective


def test_st_mem_official_key_layout_and_wrappers(tmp_path):
    with torch.device("meta"):
        base = sm.build()
    state = base.state_dict()
    for key, shape in {"to_patch_embedding.1.weight": (75,), "to_patch_embedding.2.weight": (768, 75),
                       "to_patch_embedding.3.bias": (768,), "pos_embedding": (1, 32, 768), "sep_embedding": (768,),
                       "lead_embeddings.11": (768,), "block11.attn.fn.to_qkv.weight": (2304, 768),
                       "block0.attn.fn.to_out.0.weight": (768, 768), "block0.ff.fn.net.3.weight": (768, 3072),
                       "block5.ff.norm.weight": (768,), "norm.bias": (768,)}.items():
        assert tuple(state[key].shape) == shape, key
    assert not any(k.startswith("head") for k in state)
    assert sm.infer_config(state) == sm.OFFICIAL_CONFIG
    assert sm.card(sm.OFFICIAL_CONFIG, 0)["output"]["embedding_dim"] == SUMMARY["st-mem"]["embedding_dim"]

    torch.manual_seed(2)
    net = sm.build(SM_SMALL)
    # a full pre-training checkpoint-N.pth (models/st_mem.py ST_MEM): 'encoder.*' plus decoder and alias keys
    full = {f"encoder.{k}": v for k, v in net.state_dict().items()}
    full.update({f"to_patch_embedding.{k}": v for k, v in net.to_patch_embedding.state_dict().items()})
    full.update({"mask_embedding": torch.zeros(1, 1, 32), "decoder_pos_embed": torch.zeros(1, 32, 32),
                 "to_decoder_embedding.weight": torch.zeros(32, 64), "decoder_head.weight": torch.zeros(75, 32)})
    torch.save({"epoch": 0, "model": full, "optimizer": None, "scaler": None, "config": {}}, tmp_path / "ckpt.pth")
    loaded = sm.load_official(tmp_path / "ckpt.pth")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in net.state_dict().items())
    # a fine-tuned best-*.pth with a head: loaded strictly (head not exported)
    tuned = sm.build({**SM_SMALL, "num_classes": 3})
    torch.save({"epoch": 1, "model": tuned.state_dict(), "optimizer": None, "scaler": None, "config": {}},
               tmp_path / "best.pth")
    assert sm.load_official(tmp_path / "best.pth").config()["num_classes"] == 3


def test_st_mem_bad_checkpoints_name_the_keys(tmp_path):
    torch.manual_seed(3)
    state = sm.build(SM_SMALL).state_dict()
    missing = {k: v for k, v in state.items() if k != "lead_embeddings.3"}
    torch.save({"epoch": 0, "model": missing, "config": {}}, tmp_path / "missing.pth")
    with pytest.raises(OfficialCheckpointError, match=r"missing key\(s\): lead_embeddings\.3"):
        sm.load_official(tmp_path / "missing.pth")
    renamed = dict(state)
    renamed["block1.attn.fn.qkv.weight"] = renamed.pop("block1.attn.fn.to_qkv.weight")
    torch.save({"epoch": 0, "model": renamed, "config": {}}, tmp_path / "renamed.pth")
    with pytest.raises(OfficialCheckpointError) as err:
        sm.load_official(tmp_path / "renamed.pth")
    assert "block1.attn.fn.to_qkv.weight" in str(err.value) and "block1.attn.fn.qkv.weight" in str(err.value)
    shaped = dict(state, **{"to_patch_embedding.1.weight": torch.ones(50)})  # a 50-sample patch norm
    torch.save({"model": shaped}, tmp_path / "shape.pth")
    with pytest.raises(OfficialCheckpointError, match=r"shape mismatch: to_patch_embedding\.1\.bias"):
        sm.load_official(tmp_path / "shape.pth")


# ------------------------------------------------------------------------------------------------- MERL


def random_batchnorm(net: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics and affine terms, as a trained encoder has."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_(1, 0.1)
                m.bias.normal_(0, 0.1)
    return net.eval()


@pytest.fixture(scope="module")
def merl_pkg(tmp_path_factory):
    """The published ResNet18 size with random weights, saved as utils_trainer.py saves *_encoder.pth."""
    torch.manual_seed(0)
    net = random_batchnorm(merl.build())
    root = tmp_path_factory.mktemp("merl")
    ckpt = root / "resnet18_bestZeroShotAll_encoder.pth"
    torch.save(net.state_dict(), ckpt)  # torch.save(self.model.module.ecg_encoder.state_dict(), ...)
    return net, import_official("merl", ckpt, root / "zoo"), ckpt


def test_merl_onnx_matches_torch_on_authors_preprocessing(merl_pkg):
    net, pkg, _ = merl_pkg
    model = EmbeddingModel.load(pkg)
    x = wire_ecgs(3, merl.NUM_SAMPLES, merl.SAMPLING_RATE_HZ)
    emb = model.embed(model.validate(x))
    with torch.no_grad():
        ref = net.forward_features(torch.from_numpy(merl.official_preprocess(x)).float()).numpy()
    assert emb.shape == (3, 512)
    assert np.abs(emb - ref).max() <= TOL
    assert np.abs(model.embed(x[:1])[0] - emb[0]).max() <= 1e-5
    pre = merl.MERLEmbedding.preprocess(torch.from_numpy(x)).numpy()
    assert pre.min() == 0 and abs(pre[0].max() - 1) < 1e-6 and np.ptp(pre[0].max(axis=1)) > 0.05  # one min/max


def test_merl_card_and_lead_order(merl_pkg):
    _, pkg, _ = merl_pkg
    card = load_card(pkg)
    assert (card.kind, card.license, card.name) == ("imported", "MIT", "merl-resnet18")
    assert card.input.leads[3:6] == ("aVR", "aVF", "aVL")  # MIMIC-IV-ECG order, as the authors feed it
    assert (card.input.sampling_rate_hz, card.input.num_samples, card.output.embedding_dim) == (500.0, 5000, 512)
    assert card.extra["build"]["architecture"]["architecture"] == "ResNet18"
    assert "ICML 2024" in card.extra["source"]["paper"]


def test_merl_checkpoint_wrappers_and_errors(tmp_path):
    torch.manual_seed(4)
    net = random_batchnorm(merl.build())
    state = net.state_dict()
    for key, shape in {"conv1.weight": (64, 12, 7), "layer2.0.shortcut.0.weight": (128, 64, 1),
                       "layer4.1.bn2.running_var": (512,), "linear.weight": (10, 512)}.items():
        assert tuple(state[key].shape) == shape, key
    # the whole ECGCLIP (*_ckpt.pth) and save_checkpoints' {'model_state_dict'} of the DDP model
    whole = {f"ecg_encoder.{k}": v for k, v in state.items()}
    whole.update({"downconv.weight": torch.zeros(256, 512, 1), "att_pool_head.cls_token": torch.zeros(1, 1, 256),
                  "proj_t.0.weight": torch.zeros(256, 768)})
    torch.save(whole, tmp_path / "resnet18_ckpt.pth")
    torch.save({"epoch": 50, "model_state_dict": {f"module.{k}": v for k, v in whole.items()},
                "optimizer_state_dict": {"state": {}, "param_groups": []}}, tmp_path / "resnet18_50_ckpt.pth")
    for name in ("resnet18_ckpt.pth", "resnet18_50_ckpt.pth"):
        loaded = merl.load_official(tmp_path / name)
        assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items()), name
    # without the unused linear layer; and a ResNet50 (Bottleneck) encoder
    torch.save({k: v for k, v in state.items() if not k.startswith("linear.")}, tmp_path / "nolinear.pth")
    assert merl.load_official(tmp_path / "nolinear.pth").config()["num_classes"] is None
    with torch.device("meta"):
        r50 = merl.build("Bottleneck", (3, 4, 6, 3))
    assert merl.infer_config(r50.state_dict())["block"] == "Bottleneck"
    assert merl.card(r50.config(), 0)["output"]["embedding_dim"] == 2048
    missing = {k: v for k, v in state.items() if k != "layer3.1.bn1.running_mean"}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(OfficialCheckpointError, match=r"missing key\(s\): layer3\.1\.bn1\.running_mean"):
        merl.load_official(tmp_path / "missing.pth")


# ------------------------------------------------------------------------------------- dispatcher and CLI


def test_dispatcher_cli_and_summary(tmp_path, ecgfounder_pkg, merl_pkg, capsys):
    assert set(OFFICIAL) == set(SUMMARY) >= {"ecgfounder", "st-mem", "merl"}  # --help lists every FM
    for fm, info in SUMMARY.items():
        module = adapter(fm)
        assert module.LICENSE == info["license"] and module.SOURCE_REPO == info["source"]
        assert f"{module.SAMPLING_RATE_HZ:g} Hz" in info["input"] and f"{module.NUM_SAMPLES} samples" in info["input"]
        assert all(lead in info["input"] for lead in module.LEADS[:1] + module.LEADS[-1:])
    with pytest.raises(OfficialCheckpointError, match="unknown official FM"):
        adapter("nope")
    with pytest.raises(OfficialCheckpointError, match="does not exist"):
        import_official("st-mem", tmp_path / "absent.pth", tmp_path)
    _, pkg, ckpt = ecgfounder_pkg
    with pytest.raises(Exception, match="already exists"):  # never silently replaced
        import_official("ecgfounder", ckpt, pkg.parent)
    with pytest.raises(Exception, match="unknown option"):
        import_official("st-mem", ckpt, tmp_path, options={"filtered": False})
    assert parse_options(["filtered=false", "k=3"]) == {"filtered": False, "k": 3}

    parser = argparse.ArgumentParser(prog="ecglens")
    zoo = parser.add_subparsers(dest="cmd").add_parser("zoo").add_subparsers(dest="zoo_command")
    add_cli(zoo)
    args = parser.parse_args(["zoo", "import-official", "ecgfounder", "--checkpoint", "x.pth", "--out", "o",
                              "--name", "n", "--option", "filtered=false"])
    assert (args.fm, args.checkpoint, args.out, args.name, args.option) == ("ecgfounder", "x.pth", "o", "n",
                                                                          ["filtered=false"])
    assert callable(args.func)
    text = zoo.choices["import-official"].format_help()
    assert all(fm in text for fm in OFFICIAL) and "MIT" in text and "500 Hz" in text and "250 Hz" in text
    # the command itself, end to end (MERL: the quickest to export)
    args = parser.parse_args(["zoo", "import-official", "merl", "--checkpoint", str(merl_pkg[2]),
                              "--out", str(tmp_path), "--name", "merl-cli"])
    assert args.func(args) == 0
    assert "merl-cli" in capsys.readouterr().out and (tmp_path / "merl-cli" / "model.onnx").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind


# ------------------------------------------------------------------ golden layouts from the authors' code

@pytest.mark.parametrize("name, build", [
    ("ecgfounder_12lead", lambda: ef.build()),
    ("ecgfounder_1lead", lambda: ef.build({**ef.OFFICIAL_CONFIG, "in_channels": 1})),
    ("st_mem_base", lambda: sm.build()),
    ("st_mem_small", lambda: sm.build(sm.SMALL_CONFIG)),
    ("merl_resnet18", lambda: merl.build("BasicBlock", (2, 2, 2, 2), num_classes=10)),
])
def test_port_has_every_key_and_shape_of_the_authors_model(name, build):
    # tests/golden holds what the authors' own classes build at the published configuration
    # (tests/golden/build_official_manifests.py); the port must load it with strict=True.
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        port = build()
    assert port_layout(port) == golden_layout(name)
