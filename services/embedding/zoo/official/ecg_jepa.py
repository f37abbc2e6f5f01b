"""ECG-JEPA (Kim, 2024): the authors' MaskTransformer encoder, checkpoint layout, input and pooling.

Sources read (github.com/sehunfromdaegu/ECG_JEPA @ d937ad2c2c8a1e22856ce7e4a23a30f84a71217c):

* architecture - ``ecg_jepa.py``: ``MaskTransformer`` (the context encoder; ``ecg_jepa.encoder``) with
  ``W_P`` = Linear(t=50, embed_dim) applied to every 50-sample patch of every lead, a fixed 2-D sin-cos
  ``pos_embed`` [c * p, embed_dim] (``pos_encoding.py``; a Parameter with requires_grad=False, so it is in
  the state dict), ``encoder_blocks.blocks.i`` pre-norm ``Block`` s (``norm1``, ``attn.qkv`` without bias,
  ``attn.proj``, ``norm2``, ``mlp.fc1``/``fc2``, GELU) that add ``pos_embed`` to their input at EVERY block
  (``Encoder_Block.forward``: ``x = block(x + pos, attention_mask)``), a cross-lead attention mask (a token
  attends to the tokens of its own lead and to the tokens at its own time patch on the other leads;
  ``_cross_attention_mask``; masked scores are -inf), and a final ``norm``.
* sizes - ``models.py`` ``load_encoder``: embed_dim 768, depth 12, 16 heads, mlp_ratio 4, c = 8 leads,
  p = 50 patches of t = 50 samples, sincos positions (``pretrain_ECG_JEPA.py`` trains the same encoder).
* checkpoint - ``pretrain_ECG_JEPA.py`` saves ``{'encoder': model.encoder.state_dict(), 'epoch': epoch}``
  as ``epoch{N}.pth`` (released: ``multiblock_epoch100.pth`` and ``random_epoch100.pth``) and ``load_encoder``
  reads ``ckpt['encoder']`` with strict loading. A whole ``ecg_jepa`` state dict (``encoder.*``,
  ``target_encoder.*``, ``predictor.*``) is also accepted here: its ``encoder.*`` part is used.
* input - ``ecg_data.py``: wfdb ``p_signal`` (mV), leads I, II, V1..V6 (``reduced_lead``: 12-lead order
  indices 0, 1, 6..11), resampled to 2500 samples over 10 s (250 Hz) with ``scipy.signal.resample``; no
  filtering and no normalisation.
* pooling - ``MaskTransformer.representation``: patches -> W_P -> blocks -> norm -> mean over all 400
  tokens; the embed_dim-d result is the embedding (``linear_probe_utils.py`` probes it).

The exported graph takes wire ECGs [batch, 8, 2500] in mV at 250 Hz and holds the encoder and the mean
pooling; there is no preprocessing to put in it (the card says ``normalization: none``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from services.embedding.zoo.official.checkpoint import (OfficialCheckpointError, first_shape, key_indices,
                                                        load_checkpoint, load_strict, wrapped_state)
from services.embedding.zoo.official.export import card_frame, param_count, write_onnx

FM = "ecg-jepa"
DEFAULT_NAME = "ecg-jepa"
VERSION = "1.0.0"
LICENSE = "MIT"
SOURCE_REPO = "https://github.com/sehunfromdaegu/ECG_JEPA"
SOURCE_COMMIT = "d937ad2c2c8a1e22856ce7e4a23a30f84a71217c"
CHECKPOINT_URL = ("multiblock_epoch100.pth (multi-block masking) or random_epoch100.pth (random masking), "
                  "linked from the README of https://github.com/sehunfromdaegu/ECG_JEPA (read as ckpt['encoder'])")
PAPER = ("Kim S. Learning General Representation of 12-Lead Electrocardiogram with a Joint-Embedding "
         "Predictive Architecture. arXiv:2410.08559 (2024)")
OBJECTIVE = ("joint-embedding predictive architecture: predict the EMA target encoder's latents of masked "
             "patch blocks from the visible ones (no reconstruction of the signal)")
LEADS = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
SAMPLING_RATE_HZ = 250.0
NUM_SAMPLES = 2500
OPTIONS: dict[str, str] = {}

# models.py load_encoder (the encoder of ecg_jepa(...) with the released sizes).
OFFICIAL_CONFIG = {"embed_dim": 768, "depth": 12, "num_heads": 16, "mlp_ratio": 4.0, "qkv_bias": False,
                   "c": 8, "p": 50, "t": 50}


# ------------------------------------------------------------------------------ ecg_jepa.py (names kept)


class Mlp(nn.Module):
    """fc1 - GELU - dropout - fc2 - dropout."""

    def __init__(self, in_features: int, hidden_features: int):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop = nn.Dropout(0.0)

    def forward(self, x):
        """MLP."""
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Attention(nn.Module):
    """Multi-head self-attention with one qkv projection and an optional 0/1 attention mask (0 -> -inf)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(0.0)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(0.0)

    def forward(self, x, attention_mask=None):
        """The authors' attention: masked_fill(mask == 0, -inf) before the softmax."""
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        if attention_mask is not None:
            attn = attn.masked_fill(attention_mask == 0, float("-inf"))
        attn = self.attn_drop(attn.softmax(dim=-1))
        x = (attn @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj_drop(self.proj(x))


class Block(nn.Module):
    """Pre-norm transformer block (drop_path is identity at inference)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.drop_path = nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio))
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias)

    def forward(self, x, attention_mask=None):
        """x + attn(norm1(x)), then x + mlp(norm2(x))."""
        x = x + self.drop_path(self.attn(self.norm1(x), attention_mask))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class Encoder_Block(nn.Module):  # noqa: N801 - the authors' class name
    """The blocks, each given x + pos (the positions are re-added before every block)."""

    def __init__(self, embed_dim: int, depth: int, num_heads: int, mlp_ratio: float, qkv_bias: bool):
        super().__init__()
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, qkv_bias) for _ in range(depth))

    def forward(self, x, pos, attention_mask=None):
        """for block: x = block(x + pos, mask)."""
        for block in self.blocks:
            x = block(x + pos, attention_mask)
        return x


def cross_attention_mask(c: int, p: int) -> torch.Tensor:
    """MaskTransformer._cross_attention_mask: 1 within a lead's row of patches and within a time patch's column."""
    size = c * p
    index = torch.arange(size)
    same_lead = (index[:, None] // p) == (index[None, :] // p)
    same_patch = (index[:, None] % p) == (index[None, :] % p)
    return (same_lead | same_patch).float()


class MaskTransformer(nn.Module):
    """The ECG-JEPA encoder at inference (masking, used only in pre-training, is not ported)."""

    def __init__(self, embed_dim: int = 768, depth: int = 12, num_heads: int = 16, mlp_ratio: float = 4.0,
                 qkv_bias: bool = False, c: int = 8, p: int = 50, t: int = 50):
        super().__init__()
        if embed_dim % num_heads:
            raise OfficialCheckpointError(f"embed_dim {embed_dim} is not a multiple of {num_heads} heads")
        self._config = {"embed_dim": embed_dim, "depth": depth, "num_heads": num_heads, "mlp_ratio": mlp_ratio,
                        "qkv_bias": qkv_bias, "c": c, "p": p, "t": t}
        self.encoder_blocks = Encoder_Block(embed_dim, depth, num_heads, mlp_ratio, qkv_bias)
        self.norm = nn.LayerNorm(embed_dim)
        self.c, self.p, self.t = c, p, t
        self.embed_dim = embed_dim
        self.W_P = nn.Linear(t, embed_dim)  # noqa: N815 - the authors' attribute name
        self.pos_embed = nn.Parameter(torch.from_numpy(sincos_pos_embed(embed_dim, c, p)).float(),
                                      requires_grad=False)

    def representation(self, x, attention_mask: torch.Tensor | None = None):
        """[B, c, p * t] -> [B, embed_dim]: patches, W_P, blocks with the cross-lead mask, norm, mean of tokens."""
        if attention_mask is None:
            attention_mask = cross_attention_mask(self.c, self.p).to(x.device)
        bs = x.shape[0]
        x = x.reshape(bs, -1, self.t)  # (bs, c, p*t) -> (bs, c*p, t): lead-major, consecutive patches
        x = self.W_P(x)
        x = self.encoder_blocks(x, self.pos_embed, attention_mask)
        x = self.norm(x)
        return torch.mean(x, dim=1)

    def forward(self, x):
        """representation(x)."""
        return self.representation(x)

    def config(self) -> dict:
        """The constructor arguments."""
        return dict(self._config)


def sincos_pos_embed(embed_dim: int, grid_h: int, grid_w: int) -> np.ndarray:
    """pos_encoding.get_2d_sincos_pos_embed(embed_dim, c, p): the initial (and, being frozen, final) positions."""
    def one_d(dim: int, pos: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=float) / (dim / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    grid = np.stack(np.meshgrid(np.arange(grid_w, dtype=float), np.arange(grid_h, dtype=float)), axis=0)
    grid = grid.reshape(2, 1, grid_h, grid_w)
    return np.concatenate([one_d(embed_dim // 2, grid[0]), one_d(embed_dim // 2, grid[1])], axis=1)


def build(config: dict | None = None) -> MaskTransformer:
    """MaskTransformer with the released configuration (or a variant of it), in eval mode."""
    return MaskTransformer(**{**OFFICIAL_CONFIG, **(config or {})}).eval()


# ------------------------------------------------------------------------------------------- checkpoint


def infer_config(state: dict) -> dict:
    """The MaskTransformer arguments a state dict implies; heads (not visible in shapes) stay load_encoder's 16."""
    cfg = dict(OFFICIAL_CONFIG)
    proj = first_shape(state, ["W_P.weight"])
    if proj:
        cfg["embed_dim"], cfg["t"] = proj
    blocks = key_indices(state, r"encoder_blocks\.blocks\.(\d+)\.")
    if blocks:
        cfg["depth"] = blocks[-1] + 1
    hidden = first_shape(state, ["encoder_blocks.blocks.0.mlp.fc1.weight"])
    if hidden:
        cfg["mlp_ratio"] = hidden[0] / hidden[1]
    cfg["qkv_bias"] = "encoder_blocks.blocks.0.attn.qkv.bias" in state
    pos = first_shape(state, ["pos_embed"])
    if pos and pos[0] % cfg["c"] == 0:
        cfg["p"] = pos[0] // cfg["c"]
    return cfg


def _encoder_state(ckpt, source: str) -> dict:
    """The encoder's state dict from {'encoder': ..., 'epoch': N}, a bare state dict or a whole ecg_jepa."""
    state = wrapped_state(ckpt, "encoder", source,
                          "the authors' {'encoder': state_dict, 'epoch': N} (pretrain_ECG_JEPA.py)")
    if any(k.startswith("target_encoder.") for k in state):  # a whole ecg_jepa: use its (context) encoder
        state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    return state


def load_official(checkpoint_path: Path | str) -> MaskTransformer:
    """The authors' epoch{N}.pth -> MaskTransformer, loaded strictly."""
    source = str(checkpoint_path)
    state = _encoder_state(load_checkpoint(checkpoint_path), source)
    cfg = infer_config(state)
    if cfg["p"] * cfg["t"] != NUM_SAMPLES:
        raise OfficialCheckpointError(f"{source}: {cfg['p']} patches of {cfg['t']} samples is not the "
                                      f"{NUM_SAMPLES}-sample window this adapter exports")
    net = build(cfg)
    load_strict(net, state, FM, source)
    return net.eval()


# ----------------------------------------------------------------------------------------------- export


class ECGJEPAEmbedding(nn.Module):
    """What model.onnx computes: [B, 8, 2500] mV at 250 Hz -> MaskTransformer.representation."""

    def __init__(self, net: MaskTransformer) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("attention_mask", cross_attention_mask(net.c, net.p), persistent=False)

    def forward(self, ecg: torch.Tensor) -> torch.Tensor:
        """[B, 8, 2500] wire ECG -> [B, embed_dim] embedding."""
        return self.net.representation(ecg, self.attention_mask)


def card(config: dict, params: int, exporter: str = "") -> dict:
    """The package's card.yaml content for a loaded MaskTransformer configuration."""
    published = all(config[k] == v for k, v in OFFICIAL_CONFIG.items())
    return card_frame(
        name=DEFAULT_NAME, version=VERSION, license=LICENSE, objective=OBJECTIVE,
        description=(f"ECG-JEPA encoder ({'ViT-B, as released' if published else 'non-published variant'}): "
                     f"each of 8 leads cut into {config['p']} patches of {config['t']} samples, fixed sin-cos "
                     f"positions re-added before each of {config['depth']} blocks, cross-lead attention mask; "
                     f"embedding = mean of the {config['c'] * config['p']} normalised tokens "
                     f"({config['embed_dim']}-d). Weights: the checkpoint named in build.checkpoint_file "
                     "(sha256 in build.checkpoint_sha256)."),
        params=params, sampling_rate_hz=SAMPLING_RATE_HZ, leads=LEADS, num_samples=config["p"] * config["t"],
        normalization="none", embedding_dim=int(config["embed_dim"]),
        source={"repository": SOURCE_REPO, "commit": SOURCE_COMMIT, "checkpoint": CHECKPOINT_URL,
                "paper": PAPER, "license_file": "license (MIT, Copyright (c) 2024 Sehun Kim)",
                "files": ["ecg_jepa.py", "pos_encoding.py", "models.py", "pretrain_ECG_JEPA.py", "ecg_data.py",
                          "linear_probe_utils.py"]},
        notes={"preprocessing_in_graph": [],
               "preprocessing_outside": ("the authors feed wfdb p_signal in mV, resampled to 250 Hz with "
                                         "scipy.signal.resample (FFT); ECGLens' preprocessing resamples to the "
                                         "card's rate (resample_poly); no filter and no normalisation"),
               "pooling_in_graph": "mean over all lead x patch tokens after the final LayerNorm "
                                   "(MaskTransformer.representation)",
               "window": "10 s at 250 Hz (2500 samples), leads I, II, V1-V6",
               "units": "mV (the model is not scale invariant)"},
        build={"builder": "services.embedding.zoo.official.ecg_jepa", "exporter": exporter,
               "architecture": {**config, "published_size": published}})


def export(module: MaskTransformer, out_dir: Path | str) -> dict:
    """Write out_dir/model.onnx (encoder + pooling, dynamic batch); return the card."""
    wrapper = ECGJEPAEmbedding(module.eval()).eval()
    example = torch.zeros(2, module.c, module.p * module.t)
    exporter = write_onnx(wrapper, example, out_dir)
    # pos_embed is a frozen Parameter (requires_grad=False) in the authors' code: not counted as trainable
    params = param_count(module) - module.pos_embed.numel()
    return card(module.config(), params, exporter)
