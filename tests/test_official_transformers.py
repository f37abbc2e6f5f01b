"""Official transformer-family ECG FMs (HuBERT-ECG, ECG-FM): key layout, strict loading, ONNX parity.

No real weights can be downloaded here: every test writes a RANDOM checkpoint in the official file format
and key layout (written out independently of the adapters, from the authors' code), imports it, and checks
that ONNX Runtime behind EmbeddingModel (the serving path) matches PyTorch and an independent functional
re-derivation of the official forward pass. transformers, when installed, is a second reference for HuBERT.
"""
from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from services.embedding import adapt
from services.embedding.card import load_card, parse_card, write_card
from services.embedding.model import EmbeddingModel
from services.embedding.zoo import official
from services.embedding.zoo.official import ecg_fm, hubert_ecg
from services.embedding.zoo.official.checkpoint import OfficialCheckpointError
from golden_layouts import golden_manifest, golden_layout, port_layout

# ---------------------------------------------------------------------------------------- shared helpers


def _rand(gen: torch.Generator, *shape: int, scale: float | None = None) -> torch.Tensor:
    fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
    return torch.randn(*shape, generator=gen) * (scale if scale is not None else fan_in ** -0.5)


def _norm(gen: torch.Generator, prefix: str, dim: int) -> dict[str, torch.Tensor]:
    return {f"{prefix}.weight": 1 + _rand(gen, dim, scale=0.1), f"{prefix}.bias": _rand(gen, dim, scale=0.1)}


def _linear(gen: torch.Generator, prefix: str, d_out: int, d_in: int) -> dict[str, torch.Tensor]:
    return {f"{prefix}.weight": _rand(gen, d_out, d_in), f"{prefix}.bias": _rand(gen, d_out, scale=0.05)}


def _weight_norm(g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """torch weight norm with dim=2: g * v / ||v|| over every axis but 2."""
    return g * v / v.norm(dim=(0, 1), keepdim=True)


def _ref_layers(h: torch.Tensor, p: dict, n_layers: int, heads: int, names: dict) -> torch.Tensor:
    """Post-LN transformer layers with PyTorch's own multi-head attention (independent of the adapters)."""
    dim = h.shape[-1]
    for i in range(n_layers):
        g = lambda key: p[names[key].format(i=i)]  # noqa: E731
        in_w = torch.cat([g("q.weight"), g("k.weight"), g("v.weight")])
        in_b = torch.cat([g("q.bias"), g("k.bias"), g("v.bias")])
        seq = h.transpose(0, 1)
        attn = F.multi_head_attention_forward(seq, seq, seq, dim, heads, in_w, in_b, None, None, False, 0.0,
                                              g("o.weight"), g("o.bias"), training=False,
                                              need_weights=False)[0].transpose(0, 1)
        h = F.layer_norm(h + attn, (dim,), g("ln1.weight"), g("ln1.bias"))
        ffn = F.linear(F.gelu(F.linear(h, g("fc1.weight"), g("fc1.bias"))), g("fc2.weight"), g("fc2.bias"))
        h = F.layer_norm(h + ffn, (dim,), g("ln2.weight"), g("ln2.bias"))
    return h


def _pos_conv(h: torch.Tensor, g: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, groups: int) -> torch.Tensor:
    kernel = v.shape[2]
    y = F.conv1d(h.transpose(1, 2), _weight_norm(g, v), bias, padding=kernel // 2, groups=groups)
    return F.gelu(y[:, :, :-1] if kernel % 2 == 0 else y).transpose(1, 2)


def _package(module, fm: str, checkpoint, out_root) -> tuple[object, object]:
    """Import like `ecglens zoo import-official` (once the FM is registered there), else the same steps."""
    if fm in official.OFFICIAL:
        return official.import_official(fm, checkpoint, out_root), module.load_official(checkpoint)
    net = module.load_official(checkpoint)
    pkg = out_root / fm
    data = module.export(net, pkg)
    write_card(parse_card(data, fm), pkg)
    return pkg, net


def _ecgs(batch: int, samples: int, seed: int) -> np.ndarray:
    """Wire ECGs in mV: a few sinusoids plus noise per lead, so min/max and z-scores are not degenerate."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / samples
    x = (rng.normal(0, 0.3, (batch, 12, 1)) * np.sin(2 * np.pi * rng.uniform(1, 9, (batch, 12, 1)) * t)
         + rng.normal(0, 0.05, (batch, 12, samples)) + rng.normal(0, 0.2, (batch, 12, 1)))
    return x.astype(np.float32)


# -------------------------------------------------------------------------------------------- HuBERT-ECG

HUBERT_CFG = {"model_type": "hubert_ecg", "architectures": ["HuBERTECG"], "hidden_size": 64,
              "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128, "hidden_act": "gelu",
              "feat_extract_norm": "group", "feat_extract_activation": "gelu", "conv_dim": [32] * 5,
              "conv_stride": [4, 2, 2, 2, 2], "conv_kernel": [10, 3, 3, 2, 2], "conv_bias": False,
              "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4, "do_stable_layer_norm": False,
              "feat_proj_layer_norm": True, "layer_norm_eps": 1e-5, "classifier_proj_size": 16,
              "ensemble_length": 1, "vocab_sizes": [20], "mask_time_prob": 0.05}
HUBERT_NAMES = {f"{w}.{t}": f"encoder.layers.{{i}}.{m}.{t}" for w, m in
                [("q", "attention.q_proj"), ("k", "attention.k_proj"), ("v", "attention.v_proj"),
                 ("o", "attention.out_proj"), ("ln1", "layer_norm"), ("fc1", "feed_forward.intermediate_dense"),
                 ("fc2", "feed_forward.output_dense"), ("ln2", "final_layer_norm")] for t in ("weight", "bias")}


def hf_hubert_state(cfg: dict, seed: int = 0, legacy_weight_norm: bool = True) -> dict[str, torch.Tensor]:
    """A HuBERTECG.save_pretrained state dict (transformers HubertModel keys + pre-training heads), random."""
    gen = torch.Generator().manual_seed(seed)
    d, f, c_in = cfg["hidden_size"], cfg["intermediate_size"], 1
    s: dict[str, torch.Tensor] = {}
    for i, (c, k) in enumerate(zip(cfg["conv_dim"], cfg["conv_kernel"])):
        s[f"feature_extractor.conv_layers.{i}.conv.weight"] = _rand(gen, c, c_in, k)
        c_in = c
    s.update(_norm(gen, "feature_extractor.conv_layers.0.layer_norm", cfg["conv_dim"][0]))  # GroupNorm
    s.update(_norm(gen, "feature_projection.layer_norm", c_in))
    s.update(_linear(gen, "feature_projection.projection", d, c_in))
    k, groups = cfg["num_conv_pos_embeddings"], cfg["num_conv_pos_embedding_groups"]
    g, v = 1 + _rand(gen, 1, 1, k, scale=0.1), _rand(gen, d, d // groups, k)
    names = ("weight_g", "weight_v") if legacy_weight_norm else ("parametrizations.weight.original0",
                                                                  "parametrizations.weight.original1")
    s[f"encoder.pos_conv_embed.conv.{names[0]}"], s[f"encoder.pos_conv_embed.conv.{names[1]}"] = g, v
    s["encoder.pos_conv_embed.conv.bias"] = _rand(gen, d, scale=0.05)
    s.update(_norm(gen, "encoder.layer_norm", d))
    for i in range(cfg["num_hidden_layers"]):
        for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
            s.update(_linear(gen, f"encoder.layers.{i}.attention.{proj}", d, d))
        s.update(_norm(gen, f"encoder.layers.{i}.layer_norm", d))
        s.update(_linear(gen, f"encoder.layers.{i}.feed_forward.intermediate_dense", f, d))
        s.update(_linear(gen, f"encoder.layers.{i}.feed_forward.output_dense", d, f))
        s.update(_norm(gen, f"encoder.layers.{i}.final_layer_norm", d))
    proj = cfg["classifier_proj_size"]
    s["masked_spec_embed"] = torch.rand(d, generator=gen)
    s.update(_linear(gen, "final_proj.0", proj, d))
    s["label_embedding.0.weight"] = _rand(gen, cfg["vocab_sizes"][0], proj)
    return s


def hubert_reference(s: dict, cfg: dict, ecg: np.ndarray) -> np.ndarray:
    """The official pipeline re-derived functionally: code/utils.py scaling (float64), concatenation,
    HubertModel forward (post-LN), mean over time (HuBERTForECGClassification)."""
    low, high = ecg.min(axis=-1, keepdims=True), ecg.max(axis=-1, keepdims=True)
    scaled = 2 * (ecg.astype(np.float64) - low) / (high - low + 1e-8) - 1
    h = torch.from_numpy(scaled.reshape(len(ecg), -1)).float()[:, None]
    for i, stride in enumerate(cfg["conv_stride"]):
        h = F.conv1d(h, s[f"feature_extractor.conv_layers.{i}.conv.weight"], stride=stride)
        if i == 0:
            h = F.group_norm(h, h.shape[1], s["feature_extractor.conv_layers.0.layer_norm.weight"],
                             s["feature_extractor.conv_layers.0.layer_norm.bias"])
        h = F.gelu(h)
    h = F.layer_norm(h.transpose(1, 2), (h.shape[1],), s["feature_projection.layer_norm.weight"],
                     s["feature_projection.layer_norm.bias"])
    h = F.linear(h, s["feature_projection.projection.weight"], s["feature_projection.projection.bias"])
    h = h + _pos_conv(h, s["encoder.pos_conv_embed.conv.weight_g"], s["encoder.pos_conv_embed.conv.weight_v"],
                      s["encoder.pos_conv_embed.conv.bias"], cfg["num_conv_pos_embedding_groups"])
    h = F.layer_norm(h, (h.shape[-1],), s["encoder.layer_norm.weight"], s["encoder.layer_norm.bias"])
    h = _ref_layers(h, s, cfg["num_hidden_layers"], cfg["num_attention_heads"], HUBERT_NAMES)
    return h.mean(dim=1).numpy()


def write_safetensors(path, tensors: dict[str, torch.Tensor]) -> None:
    """Minimal safetensors writer (format: u64 header size, JSON header, raw little-endian data)."""
    header, chunks, offset = {}, [], 0
    for name, tensor in tensors.items():
        raw = tensor.detach().contiguous().float().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensor.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + b"".join(chunks))


def _hubert_dir(root, state: dict, cfg: dict = HUBERT_CFG, fmt: str = "safetensors"):
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps(cfg))
    if fmt == "safetensors":
        write_safetensors(root / "model.safetensors", state)
    else:
        torch.save(state, root / "pytorch_model.bin")
    return root


@pytest.fixture(scope="module")
def hubert_pkg(tmp_path_factory):
    root = tmp_path_factory.mktemp("hubert")
    state = hf_hubert_state(HUBERT_CFG)
    ckpt = _hubert_dir(root / "hubert-ecg-random", state)
    pkg, net = _package(hubert_ecg, "hubert-ecg", ckpt / "model.safetensors", root / "packages")
    return pkg, net, state


def test_hubert_ecg_import_card_and_onnx_parity(hubert_pkg):
    pkg, net, state = hubert_pkg
    card = load_card(pkg)
    assert (card.kind, card.license, card.backend) == ("imported", "CC-BY-NC-4.0", "onnxruntime")
    assert (card.input.sampling_rate_hz, card.input.num_samples, card.input.normalization) == (100.0, 500, "none")
    assert card.input.leads == hubert_ecg.LEADS and card.output.embedding_dim == HUBERT_CFG["hidden_size"]
    assert card.extra["source"]["repository"] == "https://github.com/Edoar-do/HuBERT-ECG"
    assert sorted(card.extra["build"]["dropped_keys"]) == ["final_proj.0.bias", "final_proj.0.weight",
                                                           "label_embedding.0.weight", "masked_spec_embed"]
    model = EmbeddingModel.load(pkg)
    x = _ecgs(3, 500, seed=1)  # batch 3: the graph was exported with 2, the batch axis is dynamic
    served = model.embed(model.validate(x))
    with torch.no_grad():
        torch_out = hubert_ecg.HubertEcgEmbedder(net)(torch.from_numpy(x)).numpy()
    assert served.shape == (3, HUBERT_CFG["hidden_size"])
    np.testing.assert_allclose(served, torch_out, atol=1e-4, rtol=0)  # ONNX Runtime vs PyTorch
    np.testing.assert_allclose(torch_out, hubert_reference(state, HUBERT_CFG, x), atol=1e-4, rtol=0)
    assert np.abs(served[0] - served[1]).max() > 1e-3  # the records are not collapsed onto one vector


def test_hubert_ecg_matches_transformers_hubert_model(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf_cfg = {k: v for k, v in HUBERT_CFG.items() if k not in ("model_type", "architectures", "ensemble_length",
                                                                 "vocab_sizes")}
    for extra in ({}, {"do_stable_layer_norm": True, "feat_extract_norm": "layer"}):
        reference = transformers.HubertModel(transformers.HubertConfig(**{**hf_cfg, **extra})).eval()
        with torch.no_grad():
            for p in reference.parameters():
                p.add_(0.1 * torch.randn_like(p))  # LayerNorms away from identity
        # transformers' own writer: config.json holds only non-default fields, weights in model.safetensors
        reference.save_pretrained(tmp_path / f"hf{len(extra)}")
        net = hubert_ecg.load_official(tmp_path / f"hf{len(extra)}")
        sequence = torch.randn(2, 6000)
        with torch.no_grad():
            expected = reference(sequence).last_hidden_state
            np.testing.assert_allclose(net(sequence).numpy(), expected.numpy(), atol=1e-5, rtol=0)


def test_hubert_ecg_layouts_load_the_same_weights(tmp_path):
    state = hf_hubert_state(HUBERT_CFG, seed=3, legacy_weight_norm=False)
    a = hubert_ecg.load_official(_hubert_dir(tmp_path / "new", state, fmt="bin"))
    wrapped = {f"hubert_ecg.{k}": v for k, v in state.items()} | {"classifier.weight": torch.zeros(2, 64)}
    b = hubert_ecg.load_official(_hubert_dir(tmp_path / "finetuned", wrapped) / "model.safetensors")
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key


def test_hubert_ecg_missing_or_renamed_keys_are_named(tmp_path):
    state = hf_hubert_state(HUBERT_CFG, seed=4)
    missing = dict(state)
    del missing["encoder.layers.1.attention.q_proj.weight"]
    with pytest.raises(OfficialCheckpointError, match=r"missing key\(s\): encoder\.layers\.1\.attention\.q_proj"):
        hubert_ecg.load_official(_hubert_dir(tmp_path / "missing", missing))
    renamed = dict(state)
    renamed["encoder.layernorm.weight"] = renamed.pop("encoder.layer_norm.weight")
    with pytest.raises(OfficialCheckpointError) as err:
        hubert_ecg.load_official(_hubert_dir(tmp_path / "renamed", renamed))
    assert "missing key(s): encoder.layer_norm.weight" in str(err.value)
    assert "unexpected key(s): encoder.layernorm.weight" in str(err.value)
    (tmp_path / "noconfig").mkdir()
    write_safetensors(tmp_path / "noconfig" / "model.safetensors", state)
    with pytest.raises(OfficialCheckpointError, match="no config.json"):
        hubert_ecg.load_official(tmp_path / "noconfig")
    with pytest.raises(OfficialCheckpointError, match="conv_pos_batch_norm"):
        hubert_ecg.load_official(_hubert_dir(tmp_path / "bn", state, {**HUBERT_CFG, "conv_pos_batch_norm": True}))


def test_safetensors_reader_matches_the_library(tmp_path):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    tensors = {"a": torch.randn(3, 4), "b": torch.arange(5, dtype=torch.int64), "c": torch.randn(2).half(),
               "s": torch.tensor(1.5)}
    safetensors_torch.save_file(tensors, str(tmp_path / "x.safetensors"))
    ours = hubert_ecg.read_safetensors(tmp_path / "x.safetensors")
    assert set(ours) == set(tensors)
    for key, value in tensors.items():
        assert ours[key].dtype == value.dtype and torch.equal(ours[key], value), key


# ---------------------------------------------------------------------------------------------- ECG-FM

ECG_FM_CFG = {"_name": "wav2vec2_cmsc", "conv_feature_layers": "[(32, 2, 2)] * 4", "in_d": 12,
              "extractor_mode": "default", "conv_bias": False, "encoder_layers": 2, "encoder_embed_dim": 64,
              "encoder_ffn_embed_dim": 128, "encoder_attention_heads": 4, "layer_norm_first": False,
              "conv_pos": 16, "conv_pos_groups": 4, "quantize_targets": True, "final_dim": 32, "latent_vars": 8,
              "latent_groups": 2, "apply_mask": True}
FAIRSEQ_NAMES = {f"{w}.{t}": f"encoder.layers.{{i}}.{m}.{t}" for w, m in
                 [("q", "self_attn.q_proj"), ("k", "self_attn.k_proj"), ("v", "self_attn.v_proj"),
                  ("o", "self_attn.out_proj"), ("ln1", "self_attn_layer_norm"), ("fc1", "fc1"), ("fc2", "fc2"),
                  ("ln2", "final_layer_norm")] for t in ("weight", "bias")}


def fairseq_w2v_state(cfg: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """A fairseq-signals Wav2Vec2CMSCModel state dict (ECGTransformerModel keys + pre-training modules)."""
    gen = torch.Generator().manual_seed(seed)
    d, f, c_in, conv = cfg["encoder_embed_dim"], cfg["encoder_ffn_embed_dim"], cfg["in_d"], 32
    s: dict[str, torch.Tensor] = {}
    for i in range(4):  # [(32, 2, 2)] * 4: Sequential(Conv1d, Dropout, [GroupNorm], GELU)
        s[f"feature_extractor.conv_layers.{i}.0.weight"] = _rand(gen, conv, c_in, 2)
        c_in = conv
    s.update(_norm(gen, "feature_extractor.conv_layers.0.2", conv))
    s.update(_norm(gen, "layer_norm", conv))
    s.update(_linear(gen, "post_extract_proj", d, conv))
    k, groups = cfg["conv_pos"], cfg["conv_pos_groups"]
    s["conv_pos.pos_conv.0.weight_g"] = 1 + _rand(gen, 1, 1, k, scale=0.1)
    s["conv_pos.pos_conv.0.weight_v"] = _rand(gen, d, d // groups, k)
    s["conv_pos.pos_conv.0.bias"] = _rand(gen, d, scale=0.05)
    for i in range(cfg["encoder_layers"]):
        for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
            s.update(_linear(gen, f"encoder.layers.{i}.self_attn.{proj}", d, d))
        s.update(_norm(gen, f"encoder.layers.{i}.self_attn_layer_norm", d))
        s.update(_linear(gen, f"encoder.layers.{i}.fc1", f, d))
        s.update(_linear(gen, f"encoder.layers.{i}.fc2", d, f))
        s.update(_norm(gen, f"encoder.layers.{i}.final_layer_norm", d))
    s.update(_norm(gen, "encoder.layer_norm", d))
    v_total, final = cfg["latent_vars"] * cfg["latent_groups"], cfg["final_dim"]
    s["mask_emb"] = torch.rand(d, generator=gen)
    s["quantizer.vars"] = _rand(gen, 1, v_total, final // cfg["latent_groups"])
    s.update(_linear(gen, "quantizer.weight_proj", v_total, conv))
    s.update(_linear(gen, "project_q", final, final))
    s.update(_linear(gen, "final_proj", final, d))
    return s


def ecg_fm_reference(s: dict, cfg: dict, ecg: np.ndarray) -> np.ndarray:
    """fairseq-signals' forward re-derived functionally, after the pipeline's per-lead z-score, with
    ECG-FM's pooling x.sum(1) / (x != 0).sum(1)."""
    mean, std = ecg.mean(axis=-1, keepdims=True), ecg.std(axis=-1, keepdims=True)
    h = torch.from_numpy(((ecg - mean) / std).astype(np.float32))
    for i in range(4):
        h = F.conv1d(h, s[f"feature_extractor.conv_layers.{i}.0.weight"], stride=2)
        if i == 0:
            h = F.group_norm(h, h.shape[1], s["feature_extractor.conv_layers.0.2.weight"],
                             s["feature_extractor.conv_layers.0.2.bias"])
        h = F.gelu(h)
    h = F.layer_norm(h.transpose(1, 2), (h.shape[1],), s["layer_norm.weight"], s["layer_norm.bias"])
    h = F.linear(h, s["post_extract_proj.weight"], s["post_extract_proj.bias"])
    h = h + _pos_conv(h, s["conv_pos.pos_conv.0.weight_g"], s["conv_pos.pos_conv.0.weight_v"],
                      s["conv_pos.pos_conv.0.bias"], cfg["conv_pos_groups"])
    h = F.layer_norm(h, (h.shape[-1],), s["encoder.layer_norm.weight"], s["encoder.layer_norm.bias"])
    h = _ref_layers(h, s, cfg["encoder_layers"], cfg["encoder_attention_heads"], FAIRSEQ_NAMES)
    return torch.div(h.sum(dim=1), (h != 0).sum(dim=1)).numpy()


def _fairseq_ckpt(path, state: dict, model_cfg: dict | None = ECG_FM_CFG):
    ckpt = {"model": state, "optimizer_history": [{"num_updates": 10}], "extra_state": {"epoch": 1}}
    if model_cfg is not None:
        ckpt["cfg"] = {"model": dict(model_cfg), "task": {"_name": "ecg_pretraining", "normalize": False}}
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="module")
def ecg_fm_pkg(tmp_path_factory):
    root = tmp_path_factory.mktemp("ecgfm")
    state = fairseq_w2v_state(ECG_FM_CFG)
    ckpt = _fairseq_ckpt(root / "mimic_iv_ecg_physionet_pretrained.pt", state)
    pkg, net = _package(ecg_fm, "ecg-fm", ckpt, root / "packages")
    return pkg, net, state


def test_ecg_fm_import_card_and_onnx_parity(ecg_fm_pkg):
    pkg, net, state = ecg_fm_pkg
    card = load_card(pkg)
    assert (card.kind, card.license, card.backend) == ("imported", "MIT", "onnxruntime")
    assert (card.input.sampling_rate_hz, card.input.num_samples, card.input.normalization) == (500.0, 2500, "zscore")
    assert card.input.leads == ecg_fm.LEADS and card.output.embedding_dim == ECG_FM_CFG["encoder_embed_dim"]
    assert card.extra["build"]["config"]["conv_feature_layers"] == [[32, 2, 2]] * 4
    assert {"mask_emb", "quantizer.vars", "project_q.weight", "final_proj.weight"} <= set(
        card.extra["build"]["dropped_keys"])
    model = EmbeddingModel.load(pkg)
    x = _ecgs(3, 2500, seed=2)
    x[1, 4] = 0.25  # a flat lead: zscore maps it to zeros, as the official constant_lead_strategy 'zero'
    served = model.embed(model.validate(x))
    with torch.no_grad():
        torch_out = ecg_fm.EcgFmEmbedder(net)(torch.from_numpy(adapt.normalize(x, "zscore"))).numpy()
    assert served.shape == (3, ECG_FM_CFG["encoder_embed_dim"])
    np.testing.assert_allclose(served, torch_out, atol=1e-4, rtol=0)  # ONNX Runtime vs PyTorch
    ref = ecg_fm_reference(state, ECG_FM_CFG, x[[0, 2]])  # the reference's z-score has no flat-lead guard
    np.testing.assert_allclose(torch_out[[0, 2]], ref, atol=1e-4, rtol=0)
    assert np.abs(served[0] - served[2]).max() > 1e-3


def test_ecg_fm_finetuned_and_older_layouts_load_the_same_weights(tmp_path):
    state = fairseq_w2v_state(ECG_FM_CFG, seed=5)
    base = ecg_fm.load_official(_fairseq_ckpt(tmp_path / "pre.pt", state))
    encoder_only = {k: v for k, v in state.items() if not k.startswith(ecg_fm.PRETRAINING_ONLY)}
    finetuned = {f"encoder.{k}": v for k, v in encoder_only.items()}
    finetuned |= {"proj.weight": torch.zeros(3, 64), "proj.bias": torch.zeros(3)}
    older = {("encoder.pos_conv.0." + k[len("conv_pos.pos_conv.0."):] if k.startswith("conv_pos.") else k): v
             for k, v in state.items()}
    for name, variant in (("finetuned", finetuned), ("older", older)):
        net = ecg_fm.load_official(_fairseq_ckpt(tmp_path / f"{name}.pt", variant))
        for key, value in base.state_dict().items():
            assert torch.equal(value, net.state_dict()[key]), (name, key)
    torch.save(encoder_only, tmp_path / "bare.pt")  # no cfg: 12 heads (ECG-FM) assumed; 64-d cannot split
    with pytest.raises(OfficialCheckpointError, match="not a multiple of 12 heads"):
        ecg_fm.load_official(tmp_path / "bare.pt")


def test_ecg_fm_missing_or_renamed_keys_are_named(tmp_path):
    state = fairseq_w2v_state(ECG_FM_CFG, seed=6)
    missing = dict(state)
    del missing["encoder.layers.0.self_attn.k_proj.bias"]
    with pytest.raises(OfficialCheckpointError, match=r"missing key\(s\): encoder\.layers\.0\.self_attn\.k_proj\.bias"):
        ecg_fm.load_official(_fairseq_ckpt(tmp_path / "missing.pt", missing))
    renamed = dict(state)
    renamed["encoder.layers.1.ffn1.weight"] = renamed.pop("encoder.layers.1.fc1.weight")
    with pytest.raises(OfficialCheckpointError) as err:
        ecg_fm.load_official(_fairseq_ckpt(tmp_path / "renamed.pt", renamed))
    assert "encoder.layers.1.fc1.weight" in str(err.value) and "encoder.layers.1.ffn1.weight" in str(err.value)
    with pytest.raises(OfficialCheckpointError, match=r"shape mismatch: feature_extractor\.conv_layers\.0\.0\.weight"):
        ecg_fm.load_official(_fairseq_ckpt(tmp_path / "cfg.pt", state,
                                           {**ECG_FM_CFG, "conv_feature_layers": "[(32, 3, 2)] * 4"}))


def test_ecg_fm_default_architecture_has_the_published_parameter_count():
    """ECG-FM README: the released (BERT-Base sized) model has 90,883,072 parameters, pre-training heads
    included. Built on the meta device (no memory): encoder + wav2vec 2.0 heads of w2v_cmsc_rlm.yaml."""
    with torch.device("meta"):
        encoder = ecg_fm.EcgFmEncoder(ecg_fm.EcgFmConfig())
    heads = (1 * 640 * 128            # quantizer.vars: 2 groups x 320 latents, 256 / 2 dims each
             + 256 * 640 + 640         # quantizer.weight_proj: Linear(256 -> 640)
             + 256 * 256 + 256         # project_q: Linear(256 -> final_dim 256)
             + 768 * 256 + 256         # final_proj: Linear(768 -> 256)
             + 768)                    # mask_emb
    assert sum(p.numel() for p in encoder.parameters()) + heads == 90_883_072
    assert ecg_fm.EcgFmConfig().frames(ecg_fm.NUM_SAMPLES) == 156


# ------------------------------------------------------------------ golden layouts from the authors' code

@pytest.mark.parametrize("size", ["small", "base", "large"])
def test_hubert_ecg_port_has_every_encoder_key_of_the_authors_model(size):
    # tests/golden: HuBERTECG (transformers' HubertModel + pre-training heads) at pretrain.py's sizes.
    manifest = golden_manifest(f"hubert_ecg_{size}")
    with torch.device("meta"):
        port = hubert_ecg.HubertEcgModel(hubert_ecg.HubertEcgConfig.from_dict(manifest["configuration"]))
    # The heads and the mask embedding are what load_official documents dropping, nothing else.
    assert port_layout(port) == golden_layout(f"hubert_ecg_{size}", ("final_proj.", "label_embedding.",
                                                                     "masked_spec_embed"))


def test_ecg_fm_port_has_every_encoder_key_of_the_authors_model():
    config = golden_manifest("ecg_fm")["configuration"]
    with torch.device("meta"):
        port = ecg_fm.EcgFmEncoder(ecg_fm.EcgFmConfig(**{
            **config, "conv_feature_layers": ecg_fm.parse_conv_layers(config["conv_feature_layers"])}))
    assert port.config == ecg_fm.EcgFmConfig()  # the port's defaults are the published recipe
    assert port_layout(port) == golden_layout("ecg_fm")
