"""HuBERT-ECG (Coppola et al., 2024): the published HuBERT encoder for 12-lead ECG, rebuilt in plain PyTorch.

Official sources read for this port (github.com/Edoar-do/HuBERT-ECG):

* ``code/hubert_ecg.py`` (first release; ``hubert_ecg/modeling.py`` in the packaged release) -
  ``HuBERTECG(HubertModel)``: a Hugging Face ``transformers.HubertModel`` plus pre-training heads
  ``final_proj.{i}`` (Linear) and ``label_embedding.{i}`` (Embedding); its eval forward is HubertModel's:
  conv feature encoder -> feature projection -> transformer encoder.
* ``scripts/pretrain.py`` - the configs: small 512-d/8 layers/8 heads/2048 FFN, base 768/12/12/3072,
  large 960/16/12/3840; with ``--downsampling_factor 5`` (100 Hz input) the conv feature encoder is
  5 layers of 512 channels, kernels (10, 3, 3, 2, 2), strides (4, 2, 2, 2, 2).
* ``hubert_ecg/dataset.py`` - the input: the first 5 s of a (12, T) 500 Hz ECG, flattened lead after lead
  (``reshape(-1)``: 12 x 2500 = 30000 samples) and decimated by 5 -> one 6000-sample sequence (12 x 500).
* ``code/utils.py`` - ``ecg_preprocessing``: resample to 500 Hz, FIR band-pass 0.05-47 Hz (order
  int(0.3 * fs)), then ``scaling``: per lead, 2 * (x - min) / (max - min + 1e-8) - 1, i.e. into [-1, 1].
* ``code/hubert_ecg_classification.py`` (``hubert_ecg/modeling_classification.py`` later) -
  ``HuBERTForECGClassification``: the representation fed to the classifier is
  ``last_hidden_state.mean(dim=1)`` (no attention mask) - the embedding used here. ``code/finetune.py``
  builds it on the pre-trained backbone.

The module names and attribute paths below are transformers' ``modeling_hubert.py`` (HubertModel), so a
checkpoint saved by ``HuBERTECG.save_pretrained`` (``config.json`` + ``model.safetensors`` or
``pytorch_model.bin``, as on huggingface.co/Edoardo-BS/hubert-ecg-{small,base,large}) loads with
``load_state_dict(strict=True)`` after only these documented key edits: the pre-training heads
(``final_proj.*``, ``label_embedding.*``, ``masked_spec_embed``) and classification heads are dropped, a
``hubert_ecg.`` prefix (fine-tuned checkpoints) is removed, and the legacy weight-norm names
``weight_g``/``weight_v`` of the positional convolution become ``parametrizations.weight.original0/1``.
transformers is not needed at import or serving time; the tests compare this port with
``transformers.HubertModel`` on the same weights when transformers is installed.

What runs where (card ``input.normalization: none``):

* orchestrator (declared in the experiment): band-pass (the official pipeline uses 0.05-47 Hz), resampling
  to 100 Hz, the first 5 s (500 samples per lead);
* ONNX graph (this module): the official per-lead min-max scaling to [-1, 1], lead-after-lead
  concatenation to [B, 6000], the HuBERT encoder, mean over the output frames -> [B, hidden_size].
"""
from __future__ import annotations

import json
import math
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from services.embedding.zoo.official.checkpoint import OfficialCheckpointError, load_checkpoint, load_strict
from services.embedding.zoo.official.export import card_frame, param_count, without_weight_norm, write_onnx

FM = "hubert-ecg"
DEFAULT_NAME = "hubert-ecg"
VERSION = "1.0.0"
LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
SAMPLING_RATE_HZ = 100.0
NUM_SAMPLES = 500  # 5 s at 100 Hz per lead; the model sees 12 x 500 = 6000 samples
SCALING_SMOOTH = 1e-8  # code/utils.py scaling(seq, smooth=1e-8)
LICENSE = "CC-BY-NC-4.0"
SOURCE_REPO = "https://github.com/Edoar-do/HuBERT-ECG"
SOURCE = {
    "repository": SOURCE_REPO,
    "weights": "https://huggingface.co/Edoardo-BS (hubert-ecg-small, hubert-ecg-base, hubert-ecg-large)",
    "paper": ("Coppola E., Savardi M., Massussi M., Adamo M., Metra M., Signoroni A. HuBERT-ECG as a "
              "self-supervised foundation model for broad and scalable cardiac applications. medRxiv 2024, "
              "doi:10.1101/2024.11.14.24317328"),
    "license": "CC BY-NC 4.0 (code and weights, per the repository README and pyproject.toml): non-commercial",
}
OBJECTIVE = ("HuBERT masked prediction of k-means cluster targets (ensemble of codebooks, iterative "
             "re-clustering) on 9.1 M 12-lead ECGs")
# Keys of HuBERTECG / HuBERTECGForClassification that are not part of the encoder.
HEAD_PREFIXES = ("final_proj.", "label_embedding.", "masked_spec_embed", "classifier.", "classifier_dropout")
SIZES = {512: "small", 768: "base", 960: "large"}
_ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu, "silu": F.silu, "swish": F.silu,
                "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
                "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh")}


# ------------------------------------------------------------------------------------------------ config


@dataclass(frozen=True)
class HubertEcgConfig:
    """The HubertConfig fields that shape the encoder (config.json of the checkpoint).

    The defaults are transformers' HubertConfig defaults, not HuBERT-ECG's: save_pretrained writes only the
    fields that differ from them, so a field absent from config.json means HubertConfig's value.
    """

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    feat_extract_norm: str = "group"
    feat_extract_activation: str = "gelu"
    conv_dim: tuple[int, ...] = (512, 512, 512, 512, 512, 512, 512)
    conv_stride: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
    conv_kernel: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
    conv_bias: bool = False
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    do_stable_layer_norm: bool = False
    feat_proj_layer_norm: bool = True
    layer_norm_eps: float = 1e-5

    @classmethod
    def from_dict(cls, data: dict, source: str = "config.json") -> "HubertEcgConfig":
        """Read a transformers config.json (HubertConfig / HuBERTECGConfig); refuse what this port lacks."""
        if not isinstance(data, dict):
            raise OfficialCheckpointError(f"{source}: not a JSON object")
        defaults = cls()
        values: dict[str, Any] = {}
        for name in cls.__dataclass_fields__:
            value = data.get(name, getattr(defaults, name))
            values[name] = tuple(int(v) for v in value) if isinstance(value, (list, tuple)) else value
        config = cls(**values)
        problems = []
        if data.get("conv_pos_batch_norm"):
            problems.append("conv_pos_batch_norm=true")
        if data.get("adapter_attn_dim") is not None:
            problems.append("adapter_attn_dim is set")
        if data.get("use_weighted_layer_sum"):
            problems.append("use_weighted_layer_sum=true")
        if config.feat_extract_norm not in ("group", "layer"):
            problems.append(f"feat_extract_norm={config.feat_extract_norm!r}")
        for act in (config.hidden_act, config.feat_extract_activation):
            if act not in _ACTIVATIONS:
                problems.append(f"activation {act!r}")
        if not len(config.conv_dim) == len(config.conv_stride) == len(config.conv_kernel):
            problems.append("conv_dim/conv_stride/conv_kernel differ in length")
        if config.hidden_size % config.num_attention_heads:
            problems.append("hidden_size is not a multiple of num_attention_heads")
        if problems:
            raise OfficialCheckpointError(f"{source}: unsupported HuBERT config ({'; '.join(problems)})")
        return config

    def to_dict(self) -> dict:
        """Plain data (lists, not tuples: the card is YAML)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def frames(self, length: int) -> int:
        """Output frames of the conv feature encoder for an input of `length` samples."""
        for kernel, stride in zip(self.conv_kernel, self.conv_stride):
            length = (length - kernel) // stride + 1
        return length


# ------------------------------------------------------------------------------------------------ modules
# Attribute names follow transformers/models/hubert/modeling_hubert.py so the state-dict keys are HF's.


class HubertConvLayer(nn.Module):
    """One conv block: Conv1d, optional GroupNorm (layer 0 of 'group') or LayerNorm ('layer'), activation."""

    def __init__(self, config: HubertEcgConfig, layer_id: int) -> None:
        super().__init__()
        c_in = config.conv_dim[layer_id - 1] if layer_id > 0 else 1
        c_out = config.conv_dim[layer_id]
        self.conv = nn.Conv1d(c_in, c_out, config.conv_kernel[layer_id], stride=config.conv_stride[layer_id],
                              bias=config.conv_bias)
        self.norm = "layer" if config.feat_extract_norm == "layer" else ("group" if layer_id == 0 else None)
        if self.norm == "group":
            self.layer_norm = nn.GroupNorm(num_groups=c_out, num_channels=c_out, affine=True)
        elif self.norm == "layer":
            self.layer_norm = nn.LayerNorm(c_out, elementwise_affine=True)
        self.activation = _ACTIVATIONS[config.feat_extract_activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C_in, T] -> [B, C_out, T']."""
        x = self.conv(x)
        if self.norm == "group":
            x = self.layer_norm(x)
        elif self.norm == "layer":
            x = self.layer_norm(x.transpose(-2, -1)).transpose(-2, -1)
        return self.activation(x)


class HubertFeatureEncoder(nn.Module):
    """Raw 1-D signal [B, L] -> conv features [B, C, T']."""

    def __init__(self, config: HubertEcgConfig) -> None:
        super().__init__()
        self.conv_layers = nn.ModuleList(HubertConvLayer(config, i) for i in range(len(config.conv_dim)))

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        """Convolutions over the single input channel."""
        x = input_values[:, None]
        for layer in self.conv_layers:
            x = layer(x)
        return x


class HubertFeatureProjection(nn.Module):
    """LayerNorm (feat_proj_layer_norm) and Linear from conv_dim[-1] to hidden_size."""

    def __init__(self, config: HubertEcgConfig) -> None:
        super().__init__()
        self.feat_proj_layer_norm = config.feat_proj_layer_norm
        if self.feat_proj_layer_norm:
            self.layer_norm = nn.LayerNorm(config.conv_dim[-1], eps=config.layer_norm_eps)
        self.projection = nn.Linear(config.conv_dim[-1], config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T', C] -> [B, T', hidden]."""
        if self.feat_proj_layer_norm:
            x = self.layer_norm(x)
        return self.projection(x)


class HubertPositionalConvEmbedding(nn.Module):
    """Grouped, weight-normalised (dim=2) convolution; the extra frame of an even kernel is dropped; GELU."""

    def __init__(self, config: HubertEcgConfig) -> None:
        super().__init__()
        conv = nn.Conv1d(config.hidden_size, config.hidden_size, kernel_size=config.num_conv_pos_embeddings,
                         padding=config.num_conv_pos_embeddings // 2, groups=config.num_conv_pos_embedding_groups)
        self.conv = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
        self.num_pad_remove = 1 if config.num_conv_pos_embeddings % 2 == 0 else 0
        self.activation = _ACTIVATIONS[config.feat_extract_activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, D] -> positional embedding [B, T, D]."""
        y = self.conv(x.transpose(1, 2))
        if self.num_pad_remove:
            y = y[:, :, :-self.num_pad_remove]
        return self.activation(y).transpose(1, 2)


class HubertAttention(nn.Module):
    """Multi-head self-attention with separate q/k/v/out projections (eval: no dropout, no mask)."""

    def __init__(self, config: HubertEcgConfig) -> None:
        super().__init__()
        dim = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = dim // self.num_heads
        self.scaling = self.head_dim ** -0.5
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """softmax(q k^T / sqrt(d_head)) v per head."""
        b, t, d = x.shape
        q = self.q_proj(x).reshape(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).reshape(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).reshape(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        attn = torch.softmax(torch.matmul(q, k.transpose(2, 3)) * self.scaling, dim=-1)
        return self.out_proj(torch.matmul(attn, v).transpose(1, 2).reshape(b, t, d))


class HubertFeedForward(nn.Module):
    """intermediate_dense -> activation -> output_dense."""

    def __init__(self, config: HubertEcgConfig) -> None:
        super().__init__()
        self.intermediate_dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.output_dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.activation = _ACTIVATIONS[config.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Position-wise MLP."""
        return self.output_dense(self.activation(self.intermediate_dense(x)))


class HubertEncoderLayer(nn.Module):
    """Post-LN layer (HubertEncoderLayer) or pre-LN (HubertEncoderLayerStableLayerNorm)."""

    def __init__(self, config: HubertEcgConfig) -> None:
        super().__init__()
        self.stable = config.do_stable_layer_norm
        self.attention = HubertAttention(config)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = HubertFeedForward(config)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attention and feed-forward sub-layers with residuals."""
        if self.stable:
            x = x + self.attention(self.layer_norm(x))
            return x + self.feed_forward(self.final_layer_norm(x))
        x = self.layer_norm(x + self.attention(x))
        return self.final_layer_norm(x + self.feed_forward(x))


class HubertEncoder(nn.Module):
    """Positional conv embedding, LayerNorm (before the layers, or after them when stable), layers."""

    def __init__(self, config: HubertEcgConfig) -> None:
        super().__init__()
        self.stable = config.do_stable_layer_norm
        self.pos_conv_embed = HubertPositionalConvEmbedding(config)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.layers = nn.ModuleList(HubertEncoderLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T', D] -> last_hidden_state [B, T', D]."""
        x = x + self.pos_conv_embed(x)
        if not self.stable:
            x = self.layer_norm(x)
        for layer in self.layers:
            x = layer(x)
        return self.layer_norm(x) if self.stable else x


class HubertEcgModel(nn.Module):
    """HubertModel's encoder path: input_values [B, L] -> last_hidden_state [B, T', hidden_size]."""

    def __init__(self, config: HubertEcgConfig) -> None:
        super().__init__()
        self.config = config
        self.feature_extractor = HubertFeatureEncoder(config)
        self.feature_projection = HubertFeatureProjection(config)
        self.encoder = HubertEncoder(config)

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        """The eval forward of HubertModel (no masking, no attention mask)."""
        features = self.feature_extractor(input_values).transpose(1, 2)
        return self.encoder(self.feature_projection(features))


def official_scaling(ecg: torch.Tensor, smooth: float = SCALING_SMOOTH) -> torch.Tensor:
    """code/utils.py `scaling`: per record and lead, 2 * (x - min) / (max - min + smooth) - 1 over time."""
    low = ecg.amin(dim=-1, keepdim=True)
    high = ecg.amax(dim=-1, keepdim=True)
    return 2 * (ecg - low) / (high - low + smooth) - 1


class HubertEcgEmbedder(nn.Module):
    """What model.onnx computes: wire ECG [B, 12, 500] (100 Hz, mV) -> embedding [B, hidden_size]."""

    def __init__(self, model: HubertEcgModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, ecg: torch.Tensor) -> torch.Tensor:
        """Official scaling, leads concatenated one after the other (12 x 500 -> 6000), encoder, time mean."""
        sequence = official_scaling(ecg).reshape(ecg.shape[0], -1)
        return self.model(sequence).mean(dim=1)


# ------------------------------------------------------------------------------------------------ loading


_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                       "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                       "U8": torch.uint8, "BOOL": torch.bool}


def read_safetensors(path: Path | str) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors file (8-byte little-endian header size, JSON header, raw data); no pickle."""
    path = Path(path)
    blob = path.read_bytes()
    if len(blob) < 8:
        raise OfficialCheckpointError(f"{path}: too short to be a safetensors file")
    (size,) = struct.unpack("<Q", blob[:8])
    if size > len(blob) - 8:
        raise OfficialCheckpointError(f"{path}: safetensors header size {size} exceeds the file")
    try:
        header = json.loads(blob[8:8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise OfficialCheckpointError(f"{path}: safetensors header is not JSON ({err})") from None
    data = bytearray(blob[8 + size:])
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _SAFETENSORS_DTYPES.get(info.get("dtype"))
        begin, end = info.get("data_offsets", (0, -1))
        if dtype is None or not 0 <= begin <= end <= len(data):
            raise OfficialCheckpointError(f"{path}: tensor {name!r} has an unsupported dtype or bad offsets")
        shape = [int(s) for s in info["shape"]]
        itemsize = torch.empty((), dtype=dtype).element_size()
        if (end - begin) != math.prod(shape) * itemsize:
            raise OfficialCheckpointError(f"{path}: tensor {name!r} size does not match its shape {shape}")
        count = math.prod(shape)
        tensors[name] = (torch.frombuffer(data, dtype=dtype, count=count, offset=begin).reshape(shape).clone()
                         if count else torch.empty(shape, dtype=dtype))
    return tensors


def weights_file(checkpoint: Path | str) -> Path:
    """The weights file of a checkpoint given as a directory (HF save_pretrained) or as the file itself."""
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        for candidate in ("model.safetensors", "pytorch_model.bin"):
            if (path / candidate).is_file():
                return path / candidate
        if any(path.glob("*.index.json")):
            raise OfficialCheckpointError(f"{path}: sharded checkpoints are not supported; merge the shards "
                                          "(e.g. save_pretrained(max_shard_size='100GB')) first")
        raise OfficialCheckpointError(f"{path}: no model.safetensors or pytorch_model.bin in the directory")
    if not path.is_file():
        raise OfficialCheckpointError(f"checkpoint {path} does not exist")
    return path


def _config_for(weights: Path) -> tuple[HubertEcgConfig, dict]:
    config_path = weights.parent / "config.json"
    if not config_path.is_file():
        raise OfficialCheckpointError(f"{weights}: no config.json next to the weights (HuBERT-ECG checkpoints "
                                      "are Hugging Face save_pretrained directories: config.json + weights)")
    try:
        raw = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise OfficialCheckpointError(f"{config_path}: unreadable ({err})") from None
    return HubertEcgConfig.from_dict(raw, str(config_path)), raw


def canonical_state(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Official HuBERTECG state dict -> this port's keys; also returns the dropped (head) keys."""
    if any(k.startswith("hubert_ecg.") for k in state):  # HuBERTECGForClassification wraps the backbone
        state = {k[len("hubert_ecg."):] if k.startswith("hubert_ecg.") else k: v for k, v in state.items()}
    renames = {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1"}
    out, dropped = {}, []
    for key, value in state.items():
        if key.startswith(HEAD_PREFIXES):
            dropped.append(key)
            continue
        prefix, _, leaf = key.rpartition(".")
        if prefix == "encoder.pos_conv_embed.conv" and leaf in renames:
            key = f"{prefix}.{renames[leaf]}"
        out[key] = value.float() if value.is_floating_point() else value
    return out, sorted(dropped)


def load_official(checkpoint_path: Path | str) -> HubertEcgModel:
    """A HuBERT-ECG checkpoint (save_pretrained directory, or its weights file next to config.json) -> encoder.

    Every encoder key must be present with the architecture's shape (strict); heads are dropped and listed
    in ``module.official_meta['dropped_keys']``.
    """
    weights = weights_file(checkpoint_path)
    config, raw_config = _config_for(weights)
    if weights.suffix == ".safetensors":
        state = read_safetensors(weights)
    else:
        state = load_checkpoint(weights)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
    if not isinstance(state, dict):
        raise OfficialCheckpointError(f"{weights}: expected a state dict, got {type(state).__name__}")
    state, dropped = canonical_state(state)
    model = HubertEcgModel(config)
    load_strict(model, state, FM, str(weights))
    model.eval()
    model.official_meta = {"checkpoint": str(weights), "config": config.to_dict(), "dropped_keys": dropped,
                           "model_type": raw_config.get("model_type"),
                           "architectures": raw_config.get("architectures")}
    return model


# ------------------------------------------------------------------------------------------------ export


def _size(config: HubertEcgConfig) -> str:
    return SIZES.get(config.hidden_size, f"{config.hidden_size}-d")


def card(params: int, config: HubertEcgConfig, build: dict | None = None) -> dict:
    """The package's card.yaml content."""
    frames = config.frames(NUM_SAMPLES * len(LEADS))
    return card_frame(
        name=DEFAULT_NAME, version=VERSION, license=LICENSE, objective=OBJECTIVE,
        description=(f"HuBERT-ECG {_size(config)} ({config.num_hidden_layers} layers, {config.hidden_size}-d, "
                     f"{params / 1e6:.1f}M encoder params): the official checkpoint in a plain-PyTorch port "
                     "of its transformers HubertModel. 12 leads at 100 Hz, 5 s, concatenated lead after lead "
                     "into one 6000-sample sequence; embedding = mean of the last hidden state over time. "
                     "Licence CC BY-NC 4.0 (non-commercial)."),
        params=params, sampling_rate_hz=SAMPLING_RATE_HZ, leads=LEADS, num_samples=NUM_SAMPLES,
        normalization="none", embedding_dim=config.hidden_size, source=dict(SOURCE),
        notes={
            "in_graph": ["per record and lead: 2 * (x - min) / (max - min + 1e-8) - 1 over the 5-s window "
                         "(official code/utils.py scaling)",
                         "leads concatenated I, II, ..., V6 -> one sequence of 6000 samples (dataset.py reshape(-1))",
                         f"HuBERT encoder -> [B, {frames}, {config.hidden_size}] last_hidden_state",
                         "mean over the frames (HuBERTForECGClassification pooling, no attention mask)"],
            "orchestrator": ("declare the official band-pass in the experiment: preprocessing highpass_hz 0.05, "
                             "lowpass_hz 47 (ECGLens applies a zero-phase 2nd-order Butterworth before "
                             "resampling to 100 Hz and cropping the first 5 s)"),
            "official_pipeline": ("resample to 500 Hz; FIR band-pass 0.05-47 Hz (order int(0.3*fs)); min-max "
                                  "scaling to [-1, 1] per lead over the whole record; first 5 s; flatten 12 leads "
                                  "and decimate by 5 (scipy.signal.decimate) to 6000 samples"),
            "differences": ["scaling range taken over the 5-s window at 100 Hz, not over the whole 500 Hz record",
                            "band-pass filter family (Butterworth vs FIR) and anti-alias filter (polyphase per "
                            "lead vs decimate over the concatenated sequence, whose filter spans lead "
                            "boundaries)"],
        },
        build={"builder": __name__, "torch": str(torch.__version__), "config": config.to_dict(),
               "frames": frames, **(build or {})})


def export(module: HubertEcgModel, out_dir: Path | str) -> dict:
    """Write model.onnx (scaling + concatenation + encoder + mean pooling, dynamic batch); return the card."""
    model = without_weight_norm(module, "encoder.pos_conv_embed.conv")
    example = torch.randn(2, len(LEADS), NUM_SAMPLES)
    exporter = write_onnx(HubertEcgEmbedder(model), example, out_dir)
    meta = getattr(module, "official_meta", {})
    return card(param_count(module), module.config,
                {"exporter": exporter, "dropped_keys": meta.get("dropped_keys", []),
                 "checkpoint_model_type": meta.get("model_type"),
                 "checkpoint_architectures": meta.get("architectures")})
