"""ST-MEM (Na et al., ICLR 2024): the authors' ST_MEM_ViT encoder, checkpoint layout, preprocessing, pooling.

Sources read (github.com/bakqui/ST-MEM):

* architecture - ``models/encoder/st_mem_vit.py`` @ a73d1ef913c85430d11b63981e8f4adaf773c089 (``ST_MEM_ViT``:
  every lead patchified separately, ``to_patch_embedding`` = Rearrange('b c (n p) -> b c n p') ->
  LayerNorm(p) -> Linear(p, width) -> LayerNorm(width); ``pos_embedding`` [1, n + 2, width] whose first and
  last rows belong to the SEP tokens; ``sep_embedding``; one ``lead_embeddings.i`` per lead; blocks
  ``block0``..``block{depth-1}`` registered with add_module; final ``norm``; ``head`` Identity when
  num_classes is None) and ``models/encoder/vit.py`` @ 681a312700a4753e6250555fe3e42da9123077de
  (``TransformerBlock`` = PreNorm(Attention) + PreNorm(FeedForward), dim_head 64, GELU). The einops
  rearranges are written as reshapes/transposes (same element order); every parameter path is the
  authors', so their state dict loads with ``strict=True``.
* sizes - ``st_mem_vit_base`` (width 768, depth 12, heads 12, mlp 3072) and ``st_mem_vit_small`` (384, 12, 6,
  1536), seq_len 2250, patch_size 75, 12 leads (``configs/*/st_mem.yaml``); ``models/st_mem.py`` builds the
  pre-training encoder with the same constructor (LayerNorm eps 1e-5 in the encoder).
* checkpoint - ``util/misc.py`` ``save_model`` writes ``{'epoch', 'model': state_dict, 'optimizer',
  'scaler', 'config'}``; ``main_pretrain.py`` saves the encoder alone as ``encoder.pth``
  (``misc.save_model(config, ..., 'encoder.pth', epoch, model_without_ddp.encoder)``) and
  ``main_downstream.py`` reads ``checkpoint['model']`` (head keys may be absent). Also accepted here: a
  full pre-training ``checkpoint-N.pth`` (keys ``encoder.*`` plus the decoder, which is dropped) and
  fine-tuned ``best-*.pth`` files (with ``head.*``, loaded and not exported).
* preprocessing - ``configs/downstream/st_mem.yaml`` ``eval_transforms`` (also the pre-training transforms):
  crop 2250 samples at 250 Hz (``util/dataset.py`` resamples to ``fs: 250``; leads in the order of
  ``data/process_ecg.py`` ``_LEAD_NAMES``), ``highpass_filter`` 0.67 Hz and ``lowpass_filter`` 40 Hz
  (``util/transforms.py``: Butterworth order 5, ``sosfiltfilt``), ``standardize`` with axis [-1, -2]:
  one mean and std over the whole [leads, samples] crop, result 0 where std == 0.
* pooling - ``ST_MEM_ViT.forward_encoding``: drop the SEP tokens, ``torch.mean(x, dim=(1, 2))`` over leads
  and patches, then ``self.norm``; the ``width``-d result is what ``head`` receives and is the embedding.

The exported graph takes wire ECGs [batch, 12, 2250] in mV at 250 Hz and contains both filters (as one
exact [2250, 2250] matrix - ``sosfiltfilt`` is linear for a fixed length), the standardisation, the
encoder and the pooling; the card therefore says ``normalization: none``. The authors' downstream
evaluation averages the outputs of 3 crops of a 10 s record (``n_crop``); ECGLens embeds one 9 s window.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from services.embedding.zoo.official.checkpoint import (OfficialCheckpointError, first_shape, key_indices,
                                                        load_checkpoint, load_strict, strip_prefix)
from services.embedding.zoo.official.export import card_frame, encoder_params, write_onnx

FM = "st-mem"
DEFAULT_NAME = "st-mem"
VERSION = "1.0.0"
LICENSE = "MIT"
SOURCE_REPO = "https://github.com/bakqui/ST-MEM"
SOURCE_COMMIT = "a73d1ef913c85430d11b63981e8f4adaf773c089"
CHECKPOINT_URL = ("st_mem_vit_base_encoder.pth: the pre-trained ViT-B encoder linked from the README of "
                  "https://github.com/bakqui/ST-MEM (read as checkpoint['model'])")
PAPER = ("Na Y, Park M, Tae Y, Joo S. Guiding Masked Representation Learning to Capture Spatio-Temporal "
         "Relationship of Electrocardiogram. ICLR 2024. arXiv:2402.09450")
OBJECTIVE = "masked signal modelling (spatio-temporal masked ECG autoencoder, 75% of patches masked)"
LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
SAMPLING_RATE_HZ = 250.0
NUM_SAMPLES = 2250
DIM_HEAD = 64  # ST_MEM_ViT's default; both st_mem_vit_small and st_mem_vit_base keep it
OPTIONS: dict[str, str] = {}

# st_mem_vit_base(num_leads=12) with the configs' seq_len/patch_size.
OFFICIAL_CONFIG = {"seq_len": 2250, "patch_size": 75, "num_leads": 12, "num_classes": None, "width": 768,
                   "depth": 12, "mlp_dim": 3072, "heads": 12, "dim_head": DIM_HEAD, "qkv_bias": True}
SMALL_CONFIG = {**OFFICIAL_CONFIG, "width": 384, "heads": 6, "mlp_dim": 1536}


# ------------------------------------------------------------------------ models/encoder/vit.py (names kept)


class DropPath(nn.Module):
    """Stochastic depth (identity at inference)."""

    def __init__(self, drop_prob: float, scale_by_keep: bool = True):
        super().__init__()
        self.drop_prob = drop_prob
        self.scale_by_keep = scale_by_keep

    def forward(self, x):
        """Identity in eval mode, as in the authors' code."""
        if self.drop_prob <= 0. or not self.training:
            return x
        keep_prob = 1 - self.drop_prob
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        random_tensor = x.new_empty(shape).bernoulli_(keep_prob)
        if keep_prob > 0.0 and self.scale_by_keep:
            random_tensor.div_(keep_prob)
        return x * random_tensor


class PreNorm(nn.Module):
    """LayerNorm then fn."""

    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x, **kwargs):
        """fn(norm(x))."""
        return self.fn(self.norm(x), **kwargs)


class FeedForward(nn.Module):
    """Linear - GELU - Dropout - Linear - Dropout (keys net.0, net.3)."""

    def __init__(self, input_dim: int, output_dim: int, hidden_dim: int, drop_out_rate=0.):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(input_dim, hidden_dim), nn.GELU(), nn.Dropout(drop_out_rate),
                                 nn.Linear(hidden_dim, output_dim), nn.Dropout(drop_out_rate))

    def forward(self, x):
        """MLP."""
        return self.net(x)


class Attention(nn.Module):
    """Multi-head self-attention with one qkv projection (keys to_qkv, to_out.0)."""

    def __init__(self, input_dim: int, output_dim: int, heads: int = 8, dim_head: int = 64,
                 qkv_bias: bool = True, drop_out_rate: float = 0., attn_drop_out_rate: float = 0.):
        super().__init__()
        inner_dim = dim_head * heads
        project_out = not (heads == 1 and dim_head == input_dim)
        self.heads = heads
        self.scale = dim_head ** -0.5
        self.attend = nn.Softmax(dim=-1)
        self.dropout = nn.Dropout(attn_drop_out_rate)
        self.to_qkv = nn.Linear(input_dim, inner_dim * 3, bias=qkv_bias)
        if project_out:
            self.to_out = nn.Sequential(nn.Linear(inner_dim, output_dim), nn.Dropout(drop_out_rate))
        else:
            self.to_out = nn.Identity()

    def forward(self, x):
        """rearrange 'b n (h d) -> b h n d', scaled dot product, softmax, 'b h n d -> b n (h d)'."""
        qkv = self.to_qkv(x).chunk(3, dim=-1)
        q, k, v = (t.unflatten(-1, (self.heads, -1)).transpose(1, 2) for t in qkv)
        dots = torch.matmul(q, k.transpose(-1, -2)) * self.scale
        attn = self.attend(dots)
        attn = self.dropout(attn)
        out = torch.matmul(attn, v)
        out = out.transpose(1, 2).flatten(2)
        return self.to_out(out)


class TransformerBlock(nn.Module):
    """Pre-norm transformer block (keys attn.norm, attn.fn.*, ff.norm, ff.fn.net.*)."""

    def __init__(self, input_dim: int, output_dim: int, hidden_dim: int, heads: int = 8, dim_head: int = 32,
                 qkv_bias: bool = True, drop_out_rate: float = 0., attn_drop_out_rate: float = 0.,
                 drop_path_rate: float = 0.):
        super().__init__()
        attn = Attention(input_dim=input_dim, output_dim=output_dim, heads=heads, dim_head=dim_head,
                         qkv_bias=qkv_bias, drop_out_rate=drop_out_rate, attn_drop_out_rate=attn_drop_out_rate)
        self.attn = PreNorm(dim=input_dim, fn=attn)
        self.droppath1 = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()
        ff = FeedForward(input_dim=output_dim, output_dim=output_dim, hidden_dim=hidden_dim,
                         drop_out_rate=drop_out_rate)
        self.ff = PreNorm(dim=output_dim, fn=ff)
        self.droppath2 = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def forward(self, x):
        """x + attn(x), then x + ff(x)."""
        x = self.droppath1(self.attn(x)) + x
        x = self.droppath2(self.ff(x)) + x
        return x


# ------------------------------------------------------------------ models/encoder/st_mem_vit.py (names kept)


class PatchRearrange(nn.Module):
    """einops Rearrange('b c (n p) -> b c n p', p=patch_size) (no parameters: index 0 of to_patch_embedding)."""

    def __init__(self, patch_size: int):
        super().__init__()
        self.patch_size = patch_size

    def forward(self, x):
        """Split time into consecutive patches."""
        return x.unflatten(-1, (-1, self.patch_size))


class ST_MEM_ViT(nn.Module):  # noqa: N801 - the authors' class name
    """ST-MEM encoder: per-lead patches + positional, SEP and lead embeddings, ViT blocks, mean, LayerNorm."""

    def __init__(self, seq_len: int, patch_size: int, num_leads: int, num_classes: int | None = None,
                 width: int = 768, depth: int = 12, mlp_dim: int = 3072, heads: int = 12, dim_head: int = 64,
                 qkv_bias: bool = True, drop_out_rate: float = 0., attn_drop_out_rate: float = 0.,
                 drop_path_rate: float = 0.):
        super().__init__()
        assert seq_len % patch_size == 0, 'The sequence length must be divisible by the patch size.'
        self._config = {"seq_len": seq_len, "patch_size": patch_size, "num_leads": num_leads,
                        "num_classes": num_classes, "width": width, "depth": depth, "mlp_dim": mlp_dim,
                        "heads": heads, "dim_head": dim_head, "qkv_bias": qkv_bias}
        self.width = width
        self.depth = depth
        num_patches = seq_len // patch_size
        patch_dim = patch_size
        self.to_patch_embedding = nn.Sequential(PatchRearrange(patch_size), nn.LayerNorm(patch_dim),
                                                nn.Linear(patch_dim, width), nn.LayerNorm(width))
        self.pos_embedding = nn.Parameter(torch.randn(1, num_patches + 2, width))
        self.sep_embedding = nn.Parameter(torch.randn(width))
        self.lead_embeddings = nn.ParameterList(nn.Parameter(torch.randn(width)) for _ in range(num_leads))
        drop_path_rate_list = [x.item() for x in torch.linspace(0, drop_path_rate, depth, device="cpu")]
        for i in range(depth):
            block = TransformerBlock(input_dim=width, output_dim=width, hidden_dim=mlp_dim, heads=heads,
                                     dim_head=dim_head, qkv_bias=qkv_bias, drop_out_rate=drop_out_rate,
                                     attn_drop_out_rate=attn_drop_out_rate, drop_path_rate=drop_path_rate_list[i])
            self.add_module(f'block{i}', block)
        self.dropout = nn.Dropout(drop_out_rate)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Identity() if num_classes is None else nn.Linear(width, num_classes)

    def forward_encoding(self, series):
        """The authors' forward_encoding: [B, leads, seq_len] -> [B, width]."""
        num_leads = series.shape[1]
        if num_leads > len(self.lead_embeddings):
            raise ValueError(f'Number of leads ({num_leads}) exceeds the number of lead embeddings')
        x = self.to_patch_embedding(series)
        b, _, n, _ = x.shape
        x = x + self.pos_embedding[:, 1:n + 1, :].unsqueeze(1)
        sep_embedding = self.sep_embedding[None, None, None, :]
        left_sep = sep_embedding.expand(b, num_leads, -1, -1) + self.pos_embedding[:, :1, :].unsqueeze(1)
        right_sep = sep_embedding.expand(b, num_leads, -1, -1) + self.pos_embedding[:, -1:, :].unsqueeze(1)
        x = torch.cat([left_sep, x, right_sep], dim=2)
        lead_embeddings = torch.stack([lead_embedding for lead_embedding in self.lead_embeddings]).unsqueeze(0)
        lead_embeddings = lead_embeddings.unsqueeze(2).expand(b, -1, n + 2, -1)
        x = x + lead_embeddings
        x = x.flatten(1, 2)  # rearrange 'b c n p -> b (c n) p'
        x = self.dropout(x)
        for i in range(self.depth):
            x = getattr(self, f'block{i}')(x)
        x = x.unflatten(1, (num_leads, -1))  # rearrange 'b (c n) p -> b c n p'
        x = x[:, :, 1:-1, :]  # remove SEP embeddings
        x = torch.mean(x, dim=(1, 2))
        return self.norm(x)

    def forward(self, series):
        """head(forward_encoding(series))."""
        return self.head(self.forward_encoding(series))

    def config(self) -> dict:
        """The constructor arguments."""
        return dict(self._config)


def build(config: dict | None = None) -> ST_MEM_ViT:
    """ST_MEM_ViT with the ViT-B configuration (or a variant of it), in eval mode."""
    return ST_MEM_ViT(**{**OFFICIAL_CONFIG, **(config or {})}).eval()


# ------------------------------------------------------------------------------------------- checkpoint


def infer_config(state: dict, saved_config: dict | None = None) -> dict:
    """The ST_MEM_ViT constructor arguments a state dict implies (ViT-B values where a key cannot tell).

    width, patches, leads, depth, MLP size and head come from tensor shapes; heads = qkv width / 64 (the
    authors' dim_head for both published sizes); a missing key only falls back here - the strict key
    check afterwards names it.
    """
    cfg = dict(OFFICIAL_CONFIG)
    pos = first_shape(state, ["pos_embedding"])
    width = first_shape(state, ["norm.weight", "norm.bias", "sep_embedding", "to_patch_embedding.3.weight"])
    if width:
        cfg["width"] = width[0]
    elif pos:
        cfg["width"] = pos[-1]
    patch = first_shape(state, ["to_patch_embedding.1.weight", "to_patch_embedding.1.bias"])
    if patch:
        cfg["patch_size"] = patch[0]
    elif first_shape(state, ["to_patch_embedding.2.weight"]):
        cfg["patch_size"] = first_shape(state, ["to_patch_embedding.2.weight"])[1]
    if pos:
        cfg["seq_len"] = (pos[1] - 2) * cfg["patch_size"]
    elif saved_config and isinstance(saved_config.get("seq_len"), int):
        cfg["seq_len"] = saved_config["seq_len"]
    leads = key_indices(state, r"lead_embeddings\.(\d+)$")
    if leads:
        cfg["num_leads"] = leads[-1] + 1
    blocks = key_indices(state, r"block(\d+)\.")
    if blocks:
        cfg["depth"] = blocks[-1] + 1
    mlp = first_shape(state, ["block0.ff.fn.net.0.weight", "block0.ff.fn.net.0.bias"])
    if mlp:
        cfg["mlp_dim"] = mlp[0]
    qkv = first_shape(state, ["block0.attn.fn.to_qkv.weight"])
    if qkv:
        inner = qkv[0] // 3
        if inner % DIM_HEAD == 0:
            cfg["heads"], cfg["dim_head"] = inner // DIM_HEAD, DIM_HEAD
        else:
            cfg["heads"], cfg["dim_head"] = 1, inner
    elif cfg["width"] != OFFICIAL_CONFIG["width"]:
        cfg["heads"] = max(1, cfg["width"] // DIM_HEAD)
    cfg["qkv_bias"] = "block0.attn.fn.to_qkv.bias" in state if qkv else True
    head = first_shape(state, ["head.weight", "head.bias"])
    cfg["num_classes"] = head[0] if head else None
    return cfg


def _encoder_state(ckpt, source: str) -> tuple[dict, dict | None]:
    """The encoder's state dict and the saved config['model'] from the authors' wrappers."""
    saved = None
    if isinstance(ckpt, dict) and "model" in ckpt and isinstance(ckpt["model"], dict):
        state = ckpt["model"]
        config = ckpt.get("config")
        if isinstance(config, dict) and isinstance(config.get("model"), dict):
            saved = config["model"]
    elif isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        state = ckpt
    else:
        keys = sorted(ckpt)[:10] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise OfficialCheckpointError(f"{source}: expected the authors' {{'model': ...}} checkpoint "
                                      f"(util/misc.py save_model) or a state dict; found {keys}")
    state = strip_prefix(dict(state), "module.")
    if any(k.startswith("encoder.") for k in state):
        # models/st_mem.py ST_MEM: the encoder lives under 'encoder.'; the decoder (and the alias
        # 'to_patch_embedding.*' = encoder.to_patch_embedding) are pre-training only.
        state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    return state, saved


def load_official(checkpoint_path: Path | str) -> ST_MEM_ViT:
    """The authors' checkpoint ({'model': ...}, e.g. encoder.pth) -> ST_MEM_ViT, loaded strictly."""
    source = str(checkpoint_path)
    state, saved = _encoder_state(load_checkpoint(checkpoint_path), source)
    cfg = infer_config(state, saved)
    if cfg["seq_len"] % cfg["patch_size"]:
        raise OfficialCheckpointError(f"{source}: seq_len {cfg['seq_len']} is not a multiple of patch_size "
                                      f"{cfg['patch_size']}")
    if cfg["num_leads"] != len(LEADS):
        raise OfficialCheckpointError(f"{source}: the checkpoint has {cfg['num_leads']} lead embeddings; this "
                                      "adapter exports the 12-lead encoder (lead_embeddings.0..11)")
    net = build(cfg)
    load_strict(net, state, FM, source)
    return net.eval()


# ---------------------------------------------------------------------------------------- preprocessing


def _sos(fs: float):
    from scipy.signal import butter

    # util/transforms.py HighpassFilter / LowpassFilter: butter(order=5, cutoff, btype, fs=fs, output='sos')
    return (butter(5, 0.67, btype="highpass", fs=fs, output="sos"),
            butter(5, 40, btype="lowpass", fs=fs, output="sos"))


def official_preprocess(x: np.ndarray, fs: float = SAMPLING_RATE_HZ) -> np.ndarray:
    """The authors' eval transforms on [leads, samples] (or [B, leads, samples]) crops, float64 reference."""
    from scipy.signal import sosfiltfilt

    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 3:
        return np.stack([official_preprocess(r, fs) for r in x])
    highpass, lowpass = _sos(fs)
    x = sosfiltfilt(lowpass, sosfiltfilt(highpass, x))
    loc = np.mean(x, axis=(-1, -2), keepdims=True)
    scale = np.std(x, axis=(-1, -2), keepdims=True)
    return np.divide(x - loc, scale, out=np.zeros_like(x), where=scale != 0)


def linear_filter_matrix(num_samples: int = NUM_SAMPLES, fs: float = SAMPLING_RATE_HZ) -> np.ndarray:
    """M with M @ x == sosfiltfilt(lowpass, sosfiltfilt(highpass, x)) for any x of num_samples samples."""
    from scipy.signal import sosfiltfilt

    highpass, lowpass = _sos(fs)
    return sosfiltfilt(lowpass, sosfiltfilt(highpass, np.eye(num_samples), axis=0), axis=0)


class STMEMEmbedding(nn.Module):
    """What model.onnx computes: [B, 12, T] mV -> authors' filters + standardize -> forward_encoding."""

    def __init__(self, net: ST_MEM_ViT, fs: float = SAMPLING_RATE_HZ) -> None:
        super().__init__()
        self.net = net
        matrix = linear_filter_matrix(net.config()["seq_len"], fs)
        self.register_buffer("filter_t", torch.from_numpy(np.ascontiguousarray(matrix.T, np.float32)))

    def preprocess(self, ecg: torch.Tensor) -> torch.Tensor:
        """Band-pass (exact linear operator) and Standardize(axis=(-1, -2)) with 0 where std == 0."""
        x = torch.matmul(ecg, self.filter_t)
        loc = x.mean(dim=(1, 2), keepdim=True)
        centred = x - loc
        scale = centred.pow(2).mean(dim=(1, 2), keepdim=True).sqrt()
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))
        return torch.where(scale > 0, centred / safe, torch.zeros_like(centred))

    def forward(self, ecg: torch.Tensor) -> torch.Tensor:
        """[B, 12, T] wire ECG -> [B, width] embedding."""
        return self.net.forward_encoding(self.preprocess(ecg))


# ----------------------------------------------------------------------------------------------- export


def card(config: dict, params: int, exporter: str = "") -> dict:
    """The package's card.yaml content for a loaded ST_MEM_ViT configuration."""
    official = {k: config[k] for k in OFFICIAL_CONFIG if k != "num_classes"}
    size = ("ViT-B" if official == {k: OFFICIAL_CONFIG[k] for k in official} else
            "ViT-S" if official == {k: SMALL_CONFIG[k] for k in official} else "non-published variant")
    n = config["seq_len"] // config["patch_size"]
    return card_frame(
        name=DEFAULT_NAME, version=VERSION, license=LICENSE, objective=OBJECTIVE,
        description=(f"ST-MEM encoder ({size}): each of 12 leads cut into {n} patches of "
                     f"{config['patch_size']} samples, with SEP, positional and lead embeddings, "
                     f"{config['depth']} transformer blocks; embedding = LayerNorm of the mean over all lead "
                     f"patches ({config['width']}-d). Weights: the checkpoint named in build.checkpoint_file "
                     "(sha256 in build.checkpoint_sha256)."),
        params=params, sampling_rate_hz=SAMPLING_RATE_HZ, leads=LEADS, num_samples=config["seq_len"],
        normalization="none", embedding_dim=int(config["width"]),
        source={"repository": SOURCE_REPO, "commit": SOURCE_COMMIT, "checkpoint": CHECKPOINT_URL,
                "paper": PAPER, "license_file": "LICENSE (MIT, Copyright (c) 2024 Minje Park)",
                "files": ["models/encoder/st_mem_vit.py", "models/encoder/vit.py", "models/st_mem.py",
                          "util/transforms.py", "util/dataset.py", "util/misc.py", "main_pretrain.py",
                          "main_downstream.py", "configs/downstream/st_mem.yaml"]},
        notes={"preprocessing_in_graph": ["Butterworth high-pass 0.67 Hz, order 5 (sosfiltfilt)",
                                          "Butterworth low-pass 40 Hz, order 5 (sosfiltfilt)",
                                          "standardize over the whole crop (axis -1, -2; 0 where std == 0)"],
               "pooling_in_graph": "mean over leads and patches without SEP tokens, then LayerNorm "
                                   "(ST_MEM_ViT.forward_encoding)",
               "window": (f"{config['seq_len'] / SAMPLING_RATE_HZ:g} s at 250 Hz ({config['seq_len']} samples); "
                          "the authors' evaluation averages 3 crops of a 10 s record"),
               "units": "standardisation makes the scale irrelevant",
               "head": ("no classification head (pre-trained encoder)" if config["num_classes"] is None else
                        f"head {config['width']}->{config['num_classes']} is loaded but not exported")},
        build={"builder": "services.embedding.zoo.official.st_mem", "exporter": exporter,
               "architecture": {**config, "published_size": size}})


def export(module: ST_MEM_ViT, out_dir: Path | str) -> dict:
    """Write out_dir/model.onnx (filters + standardize + encoder + pooling, dynamic batch); return the card."""
    wrapper = STMEMEmbedding(module.eval()).eval()
    example = torch.zeros(2, len(module.lead_embeddings), module.config()["seq_len"])
    exporter = write_onnx(wrapper, example, out_dir)
    return card(module.config(), encoder_params(module, module.head), exporter)
