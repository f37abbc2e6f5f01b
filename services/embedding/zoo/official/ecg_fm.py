"""ECG-FM (McKeen et al., 2024): the fairseq-signals wav2vec 2.0 + CMSC encoder, rebuilt in plain PyTorch.

Official sources read for this port:

* github.com/bowang-lab/ECG-FM ``README.md`` - wav2vec 2.0 architecture pre-trained with W2V+CMSC+RLM; the
  released checkpoints (huggingface.co/wanglab/ecg-fm) are BERT-Base sized (90,883,072 parameters with the
  pre-training heads) and trained on MIMIC-IV-ECG and PhysioNet 2021; ``LICENSE`` - MIT.
* ECG-FM ``scripts/embs.py`` - the embedding: ``encoder_out`` (the final encoder output [B, T, D]) reduced as
  ``x.sum(dim=1) / (x != 0).sum(dim=1)``, from fairseq_signals/models/classification/
  ecg_transformer_classifier.py (a mean over time that skips exact zeros, i.e. padding).
* github.com/Jwoo5/fairseq-signals ``fairseq_signals/models/ecg_transformer.py`` (``ECGTransformerModel``,
  the base of ``Wav2Vec2Model``/``Wav2Vec2CMSCModel`` in ``models/wav2vec2/``): feature_extractor (conv) ->
  transpose -> ``layer_norm`` -> ``post_extract_proj`` -> x + ``conv_pos``(x) -> ``encoder``;
  ``modules/conv_feature_extraction.py`` (each block nn.Sequential(Conv1d, Dropout, [Fp32GroupNorm on block
  0 in 'default' mode], GELU); 12 leads enter as input channels, ``in_d=12``); ``modules/
  conv_positional_encoding.py`` (weight-normalised grouped Conv1d, dim=2, + SamePad + GELU);
  ``modules/transformer_encoder.py`` (LayerNorm before the layers unless ``layer_norm_first``) and the
  fairseq-style ``TransformerEncoderLayer`` (self_attn.{q,k,v,out}_proj, self_attn_layer_norm, fc1, fc2,
  final_layer_norm; post-LN by default); ``examples/w2v_cmsc/config/pretraining/w2v_cmsc_rlm.yaml``
  (ECG-FM's recipe: in_d 12, encoder_embed_dim 768, default conv layers [(256, 2, 2)] * 4).
* fairseq-signals ``data/ecg/preprocess/preprocess.py`` and ``scripts/preprocess/ecg/README.md`` - the data:
  resampled to 500 Hz (linear interpolation), standardised per lead (x - mean) / std (constant leads -> 0),
  cut into non-overlapping 5-s segments (2500 samples); ``task.normalize: false`` (no further scaling).

The checkpoint is the fairseq-signals ``.pt`` (``{"cfg": {...}, "model": state_dict, ...}``). Its encoder
keys load with ``load_state_dict(strict=True)`` after these documented edits only: pre-training modules
(``mask_emb``, ``quantizer.*``, ``project_q.*``, ``final_proj.*``, ``target_glu.*``, ``project_inp.*``,
``input_quantizer.*``) are dropped; in a fine-tuned checkpoint the ``encoder.`` wrapper prefix is removed
and the ``proj.*`` head dropped; legacy weight-norm names ``weight_g``/``weight_v`` become
``parametrizations.weight.original0/1``; an older layout that kept the positional convolution inside the
transformer encoder (``encoder.pos_conv.0.*``, same computation order) is renamed to ``conv_pos.pos_conv.0.*``.

What runs where: the orchestrator resamples to 500 Hz and takes 5 s; the model server applies the card's
per-lead z-score (``normalization: zscore``); the ONNX graph runs the encoder and the official pooling.
"""
from __future__ import annotations

import ast
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from services.embedding.zoo.official.checkpoint import (OfficialCheckpointError, key_indices, load_checkpoint,
                                                        load_strict)
from services.embedding.zoo.official.export import card_frame, param_count, without_weight_norm, write_onnx

FM = "ecg-fm"
DEFAULT_NAME = "ecg-fm"
VERSION = "1.0.0"
LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
SAMPLING_RATE_HZ = 500.0
NUM_SAMPLES = 2500  # 5-s segments, as in ECG-FM's pre-training manifests
LICENSE = "MIT"
SOURCE_REPO = "https://github.com/bowang-lab/ECG-FM"
SOURCE = {
    "repository": SOURCE_REPO,
    "framework": "https://github.com/Jwoo5/fairseq-signals (model code)",
    "weights": ("https://huggingface.co/wanglab/ecg-fm (mimic_iv_ecg_physionet_pretrained.pt; "
                "physionet_finetuned.pt is also accepted: its encoder is used, the head dropped)"),
    "paper": ("McKeen K., Oliva L., Masood S., Toma A., Rubin B., Wang B. ECG-FM: An Open Electrocardiogram "
              "Foundation Model. arXiv:2408.05178 (2024)"),
    "license": "MIT (ECG-FM repository LICENSE); check the Hugging Face model card for the weights' terms",
}
OBJECTIVE = ("wav2vec 2.0 contrastive masked prediction of quantised latents + CMSC (contrastive "
             "multi-segment coding) + random lead masking (W2V+CMSC+RLM)")
PRETRAINING_ONLY = ("mask_emb", "quantizer.", "project_q.", "final_proj.", "target_glu.", "project_inp.",
                    "input_quantizer.")
DEFAULT_CONV_LAYERS = ((256, 2, 2),) * 4


# ------------------------------------------------------------------------------------------------ config


@dataclass(frozen=True)
class EcgFmConfig:
    """The ECGTransformerConfig / Wav2Vec2Config fields that shape the encoder."""

    conv_feature_layers: tuple[tuple[int, int, int], ...] = DEFAULT_CONV_LAYERS
    in_d: int = 12
    extractor_mode: str = "default"
    conv_bias: bool = False
    encoder_layers: int = 12
    encoder_embed_dim: int = 768
    encoder_ffn_embed_dim: int = 3072
    encoder_attention_heads: int = 12
    layer_norm_first: bool = False
    conv_pos: int = 128
    conv_pos_groups: int = 16

    def to_dict(self) -> dict:
        """Plain data for the card (lists, not tuples)."""
        data = asdict(self)
        data["conv_feature_layers"] = [list(layer) for layer in self.conv_feature_layers]
        return data

    def frames(self, length: int) -> int:
        """Output frames of the conv feature extractor for `length` input samples."""
        for _, kernel, stride in self.conv_feature_layers:
            length = (length - kernel) // stride + 1
        return length


def parse_conv_layers(text: Any) -> tuple[tuple[int, int, int], ...]:
    """fairseq's conv_feature_layers string, e.g. "[(256, 2, 2)] * 4", evaluated without eval()."""
    if isinstance(text, (list, tuple)):
        value = text
    else:
        def ev(node: ast.AST) -> Any:
            if isinstance(node, ast.Constant) and isinstance(node.value, int):
                return node.value
            if isinstance(node, ast.Tuple):
                return tuple(ev(e) for e in node.elts)
            if isinstance(node, ast.List):
                return [ev(e) for e in node.elts]
            if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mult, ast.Add)):
                left, right = ev(node.left), ev(node.right)
                return left * right if isinstance(node.op, ast.Mult) else left + right
            raise ValueError(f"unsupported expression {ast.dump(node)[:60]}")

        try:
            value = ev(ast.parse(str(text), mode="eval").body)
        except (SyntaxError, ValueError, TypeError) as err:
            raise OfficialCheckpointError(f"conv_feature_layers {text!r} is not a list of (dim, kernel, "
                                          f"stride): {err}") from None
    layers = tuple(tuple(int(v) for v in layer) for layer in value)
    if not layers or any(len(layer) != 3 for layer in layers):
        raise OfficialCheckpointError(f"conv_feature_layers {text!r} is not a list of (dim, kernel, stride)")
    return layers


def infer_config(state: dict[str, torch.Tensor], model_cfg: dict | None, source: str) -> tuple[EcgFmConfig, dict]:
    """Config from the checkpoint's cfg.model; fields it lacks are read from tensor shapes, else assumed.

    Shapes cannot show strides, heads, layer_norm_first or extractor_mode: without cfg, ECG-FM's values are
    assumed (stride = kernel, 12 heads, post-LN, 'default') and listed in the notes. Any disagreement between
    cfg and the tensors surfaces in the strict load as named missing/unexpected/mis-shaped keys.
    """
    cfg = dict(model_cfg or {})
    notes: dict[str, Any] = {"from_cfg": sorted(k for k in EcgFmConfig.__dataclass_fields__ if k in cfg),
                             "from_shapes": [], "assumed": []}

    def pick(field: str, inferred: Any, default: Any, how: str) -> Any:
        if field in cfg:
            return cfg[field]
        if inferred is not None:
            notes["from_shapes"].append(field)
            return inferred
        notes["assumed"].append(f"{field}={default!r} ({how})")
        return default

    def dim(key: str, axis: int) -> int | None:
        return int(state[key].shape[axis]) if key in state and state[key].dim() > axis else None

    conv_ids = key_indices(state, r"feature_extractor\.conv_layers\.(\d+)\.0\.weight$")
    if "conv_feature_layers" in cfg:
        layers = parse_conv_layers(cfg["conv_feature_layers"])
    elif conv_ids:
        shapes = [state[f"feature_extractor.conv_layers.{i}.0.weight"].shape for i in conv_ids]
        layers = tuple((int(w[0]), int(w[2]), int(w[2])) for w in shapes)
        notes["from_shapes"].append("conv_feature_layers")
        notes["assumed"].append("conv strides = kernel sizes (fairseq-signals default [(256, 2, 2)] * 4)")
    else:
        raise OfficialCheckpointError(f"{source}: does not match the official {FM} key layout; missing key(s): "
                                      "feature_extractor.conv_layers.0.0.weight")
    layer_ids = key_indices(state, r"encoder\.layers\.(\d+)\.")
    embed = int(pick("encoder_embed_dim", dim("post_extract_proj.weight", 0) or dim("encoder.layers.0.fc1.weight", 1),
                     768, "ECG-FM"))
    pos_v = "conv_pos.pos_conv.0.parametrizations.weight.original1"
    config = EcgFmConfig(
        conv_feature_layers=layers,
        in_d=int(pick("in_d", dim("feature_extractor.conv_layers.0.0.weight", 1), 12, "12 leads")),
        extractor_mode=str(pick("extractor_mode", None, "default", "ECG-FM")),
        conv_bias=bool(pick("conv_bias", "feature_extractor.conv_layers.0.0.bias" in state, False, "")),
        encoder_layers=int(pick("encoder_layers", max(layer_ids) + 1 if layer_ids else None, 12, "ECG-FM")),
        encoder_embed_dim=embed,
        encoder_ffn_embed_dim=int(pick("encoder_ffn_embed_dim", dim("encoder.layers.0.fc1.weight", 0), 3072,
                                       "ECG-FM")),
        encoder_attention_heads=int(pick("encoder_attention_heads", None, 12, "ECG-FM")),
        layer_norm_first=bool(pick("layer_norm_first", None, False, "ECG-FM, post-LN")),
        conv_pos=int(pick("conv_pos", dim(pos_v, 2), 128, "ECG-FM")),
        conv_pos_groups=int(pick("conv_pos_groups", embed // dim(pos_v, 1) if dim(pos_v, 1) else None, 16,
                                 "ECG-FM")))
    problems = []
    if config.extractor_mode != "default":
        problems.append(f"extractor_mode={config.extractor_mode!r} (this port implements ECG-FM's 'default')")
    if config.encoder_embed_dim % config.encoder_attention_heads:
        problems.append(f"encoder_embed_dim {config.encoder_embed_dim} is not a multiple of "
                        f"{config.encoder_attention_heads} heads")
    if problems:
        raise OfficialCheckpointError(f"{source}: unsupported ECG-FM config ({'; '.join(problems)})")
    return config, notes


# ------------------------------------------------------------------------------------------------ modules
# Attribute names follow fairseq-signals so that the state-dict keys are the checkpoint's.


class SamePad(nn.Module):
    """Drop the extra frame an even-kernel 'same' convolution produces."""

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        self.remove = 1 if kernel_size % 2 == 0 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, T+1] -> [B, C, T] for even kernels."""
        return x[:, :, :-self.remove] if self.remove else x


class ConvFeatureExtraction(nn.Module):
    """'default' mode: blocks nn.Sequential(Conv1d, Dropout, GroupNorm(dim, dim) on block 0 only, GELU)."""

    def __init__(self, config: EcgFmConfig) -> None:
        super().__init__()
        self.conv_layers = nn.ModuleList()
        c_in = config.in_d
        for i, (dim, kernel, stride) in enumerate(config.conv_feature_layers):
            parts: list[nn.Module] = [nn.Conv1d(c_in, dim, kernel, stride=stride, bias=config.conv_bias),
                                      nn.Dropout(0.0)]
            if i == 0:
                parts.append(nn.GroupNorm(dim, dim, affine=True))
            parts.append(nn.GELU())
            self.conv_layers.append(nn.Sequential(*parts))
            c_in = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 12, T] -> [B, C, T']."""
        for block in self.conv_layers:
            x = block(x)
        return x


class ConvPositionalEncoding(nn.Module):
    """pos_conv = Sequential(weight-normalised grouped Conv1d (dim=2), SamePad, GELU)."""

    def __init__(self, config: EcgFmConfig) -> None:
        super().__init__()
        conv = nn.Conv1d(config.encoder_embed_dim, config.encoder_embed_dim, kernel_size=config.conv_pos,
                         padding=config.conv_pos // 2, groups=config.conv_pos_groups)
        conv = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
        self.pos_conv = nn.Sequential(conv, SamePad(config.conv_pos), nn.GELU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, D] -> [B, T, D]."""
        return self.pos_conv(x.transpose(1, 2)).transpose(1, 2)


class MultiHeadAttention(nn.Module):
    """fairseq self-attention: k/v/q/out projections, scaled dot product (eval: no dropout, no mask)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.scaling = self.head_dim ** -0.5
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, D] -> [B, T, D]."""
        b, t, d = x.shape
        q = (self.q_proj(x) * self.scaling).reshape(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).reshape(b, t, self.heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).reshape(b, t, self.heads, self.head_dim).transpose(1, 2)
        attn = torch.softmax(torch.matmul(q, k.transpose(2, 3)), dim=-1)
        return self.out_proj(torch.matmul(attn, v).transpose(1, 2).reshape(b, t, d))


class TransformerEncoderLayer(nn.Module):
    """Post-LN (layer_norm_first=False, ECG-FM) or pre-LN fairseq encoder layer with a GELU FFN."""

    def __init__(self, config: EcgFmConfig) -> None:
        super().__init__()
        dim = config.encoder_embed_dim
        self.layer_norm_first = config.layer_norm_first
        self.self_attn = MultiHeadAttention(dim, config.encoder_attention_heads)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, config.encoder_ffn_embed_dim)
        self.fc2 = nn.Linear(config.encoder_ffn_embed_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Self-attention and FFN sub-layers with residuals."""
        if self.layer_norm_first:
            x = x + self.self_attn(self.self_attn_layer_norm(x))
            return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))
        x = self.self_attn_layer_norm(x + self.self_attn(x))
        return self.final_layer_norm(x + self.fc2(F.gelu(self.fc1(x))))


class TransformerEncoder(nn.Module):
    """layers + layer_norm (applied before the layers when post-LN, after them when layer_norm_first)."""

    def __init__(self, config: EcgFmConfig) -> None:
        super().__init__()
        self.layer_norm_first = config.layer_norm_first
        self.layers = nn.ModuleList(TransformerEncoderLayer(config) for _ in range(config.encoder_layers))
        self.layer_norm = nn.LayerNorm(config.encoder_embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, D] -> [B, T, D]."""
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        for layer in self.layers:
            x = layer(x)
        return self.layer_norm(x) if self.layer_norm_first else x


class EcgFmEncoder(nn.Module):
    """ECGTransformerModel's eval forward: source [B, 12, T] -> encoder_out [B, T', D] (no padding mask)."""

    def __init__(self, config: EcgFmConfig) -> None:
        super().__init__()
        self.config = config
        embed = config.conv_feature_layers[-1][0]
        self.feature_extractor = ConvFeatureExtraction(config)
        self.layer_norm = nn.LayerNorm(embed)
        self.post_extract_proj = (nn.Linear(embed, config.encoder_embed_dim)
                                  if embed != config.encoder_embed_dim else None)
        self.conv_pos = ConvPositionalEncoding(config)
        self.encoder = TransformerEncoder(config)

    def forward(self, source: torch.Tensor) -> torch.Tensor:
        """Features, LayerNorm, projection, + positional conv, transformer."""
        x = self.layer_norm(self.feature_extractor(source).transpose(1, 2))
        if self.post_extract_proj is not None:
            x = self.post_extract_proj(x)
        return self.encoder(x + self.conv_pos(x))


def official_pooling(encoder_out: torch.Tensor) -> torch.Tensor:
    """ECG-FM scripts/embs.py: x.sum(dim=1) / (x != 0).sum(dim=1) (count clamped at 1 against all-zero)."""
    count = (encoder_out != 0).sum(dim=1).clamp(min=1)
    return encoder_out.sum(dim=1) / count


class EcgFmEmbedder(nn.Module):
    """What model.onnx computes: z-scored ECG [B, 12, 2500] (500 Hz) -> embedding [B, encoder_embed_dim]."""

    def __init__(self, encoder: EcgFmEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, ecg: torch.Tensor) -> torch.Tensor:
        """Encoder, then the official time pooling."""
        return official_pooling(self.encoder(ecg))


# ------------------------------------------------------------------------------------------------ loading


def canonical_state(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str], str]:
    """fairseq-signals state dict -> this port's keys; also the dropped keys and which layout was found."""
    layout = "pretraining (Wav2Vec2CMSCModel)"
    if "encoder.feature_extractor.conv_layers.0.0.weight" in state:  # ECGTransformerFinetuningModel
        layout = "fine-tuned (encoder wrapped by the classifier)"
        dropped = sorted(k for k in state if not k.startswith("encoder."))
        state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    else:
        dropped = []
    renames = {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1"}
    out = {}
    for key, value in state.items():
        if key.startswith(PRETRAINING_ONLY):
            dropped.append(key)
            continue
        if key.startswith("encoder.pos_conv.0."):  # older layout: positional conv inside the encoder
            key = "conv_pos.pos_conv.0." + key[len("encoder.pos_conv.0."):]
        prefix, _, leaf = key.rpartition(".")
        if prefix == "conv_pos.pos_conv.0" and leaf in renames:
            key = f"{prefix}.{renames[leaf]}"
        out[key] = value.float() if value.is_floating_point() else value
    return out, sorted(dropped), layout


def weights_file(checkpoint: Path | str) -> Path:
    """The checkpoint file itself (ECG-FM ships one .pt)."""
    return Path(checkpoint).expanduser()


def load_official(checkpoint_path: Path | str) -> EcgFmEncoder:
    """A fairseq-signals ECG-FM checkpoint (.pt with 'model' and 'cfg') -> encoder, loaded strictly."""
    path = weights_file(checkpoint_path)
    ckpt = load_checkpoint(path)
    if not isinstance(ckpt, dict):
        raise OfficialCheckpointError(f"{path}: expected a fairseq checkpoint dict, got {type(ckpt).__name__}")
    if isinstance(ckpt.get("model"), dict):
        state, cfg = ckpt["model"], ckpt.get("cfg")
    elif all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        state, cfg = ckpt, None
    else:
        raise OfficialCheckpointError(f"{path}: no 'model' state dict (keys: {sorted(ckpt)[:10]})")
    model_cfg = cfg.get("model") if isinstance(cfg, dict) else None
    state, dropped, layout = canonical_state(state)
    config, notes = infer_config(state, model_cfg if isinstance(model_cfg, dict) else None, str(path))
    encoder = EcgFmEncoder(config)
    load_strict(encoder, state, FM, str(path))
    encoder.eval()
    encoder.official_meta = {"checkpoint": str(path), "config": config.to_dict(), "dropped_keys": dropped,
                             "layout": layout, "config_notes": notes,
                             "model_name": model_cfg.get("_name") if isinstance(model_cfg, dict) else None}
    return encoder


# ------------------------------------------------------------------------------------------------ export


def card(params: int, config: EcgFmConfig, build: dict | None = None) -> dict:
    """The package's card.yaml content."""
    frames = config.frames(NUM_SAMPLES)
    dim = config.encoder_embed_dim
    return card_frame(
        name=DEFAULT_NAME, version=VERSION, license=LICENSE, objective=OBJECTIVE,
        description=(f"ECG-FM ({config.encoder_layers} layers, {dim}-d, {params / 1e6:.1f}M encoder params): "
                     "the official fairseq-signals wav2vec 2.0 + CMSC checkpoint in a plain-PyTorch port. "
                     "12 leads as input channels, 500 Hz, 5 s, per-lead z-score; embedding = the official "
                     "mean of the final encoder output over time."),
        params=params, sampling_rate_hz=SAMPLING_RATE_HZ, leads=LEADS, num_samples=NUM_SAMPLES,
        normalization="zscore", embedding_dim=dim, source=dict(SOURCE),
        notes={
            "model_server": "per record and lead z-score over the 5-s window (card normalization: zscore)",
            "in_graph": [f"encoder -> [B, {frames}, {dim}] encoder_out",
                         "x.sum(time) / (x != 0).sum(time) (ECG-FM scripts/embs.py; count clamped at 1)"],
            "orchestrator": "resample to 500 Hz, first 5 s; no band-pass in the official pipeline",
            "official_pipeline": ("linear-interpolation resampling to 500 Hz; per-lead standardisation over the "
                                  "whole record (constant leads -> 0); non-overlapping 5-s segments"),
            "differences": ["z-score statistics taken over the 5-s window, not the whole record",
                            "polyphase instead of linear-interpolation resampling"],
        },
        build={"builder": __name__, "torch": str(torch.__version__), "config": config.to_dict(),
               "frames": frames, **(build or {})})


def export(module: EcgFmEncoder, out_dir: Path | str) -> dict:
    """Write model.onnx (encoder + official pooling, dynamic batch axis) and return the card."""
    encoder = without_weight_norm(module, "conv_pos.pos_conv.0")
    example = torch.randn(2, len(LEADS), NUM_SAMPLES)
    exporter = write_onnx(EcgFmEmbedder(encoder), example, out_dir)
    meta = getattr(module, "official_meta", {})
    return card(param_count(module), module.config,
                {"exporter": exporter, "checkpoint_layout": meta.get("layout"),
                 "checkpoint_model": meta.get("model_name"), "dropped_keys": meta.get("dropped_keys", []),
                 "config_notes": meta.get("config_notes", {})})
