"""ECGFounder (Li et al., NEJM AI 2025): the authors' Net1D, their checkpoint layout, preprocessing and pooling.

Sources read (github.com/PKUDigitalHealth/ECGFounder and copies of its files):

* architecture - ``net1d.py`` (Shenda Hong's Net1D with Swish activations, squeeze-and-excitation and a
  ``filter_list`` of absolute widths), as vendored unchanged in Verma-Lab/ECGFounder-ukb
  ``net1d.py`` @ 7c6b800985a6ceb894dbaddc82d0a17903c931b0 (the upstream snapshot stored for this work has
  no ``net1d.py``); class, attribute and module names below are the authors', so the released state dict
  loads with ``strict=True``. Differences from Hong's older hsd1503/resnet1d ``net1d.py`` (ReLU,
  ``filter_mul_list``) are deliberate: ECGFounder's copy uses Swish and absolute widths.
* configuration - ``finetune_model.py`` @ 39477dbe73c95636b6ba643783b531e380fcb4f9, ``ft_ECGFounder``:
  in_channels=12, base_filters=64, ratio=1, filter_list=[64,160,160,400,400,1024,1024],
  m_blocks_list=[2,2,2,3,3,4,4], kernel_size=16, stride=2, groups_width=16, use_bn=False, use_do=False;
  the released head has n_classes=150 (``ptbxl_eval.py``). ``ft_1lead_ECGFounder`` is the same with
  in_channels=1 (lead I, ``dataset.py`` ``*_1lead_Dataset``).
* checkpoint - ``util.py`` ``save_checkpoint`` writes ``{'epoch', 'step', 'state_dict': model.state_dict(),
  'optimizer', 'scheduler', 'val_auroc'}`` (``MIMIC_finetune_template.py``); ``finetune_model.py`` reads
  ``checkpoint['state_dict']``. ``val_auroc`` is a NumPy scalar, allowed explicitly by the loader.
* preprocessing - the README (Aug 2025) requires the pretrained weights be used with the preprocessing of
  ``dataset.py``, "including filtering, z-score normalization". That revision of ``dataset.py`` and
  ``util.py`` is newer than the upstream snapshot stored for this work and was read from verbatim copies
  indexed with it (the same ``filter_bandpass`` text in several repositories): ``dataset.py`` calls
  ``util.filter_bandpass(data, 500)`` - a 50 Hz notch (``iirnotch(50, 30, fs)``, ``filtfilt``), a 4th-order
  Butterworth band-pass 0.67-40 Hz (``filtfilt``) and subtraction of a median-filter baseline (kernel
  ``int(0.4 * fs) + 1`` = 201 samples) - then ``z_score_normalization``: ``(x - np.mean(x)) /
  (np.std(x) + 1e-8)`` over the WHOLE [leads, samples] record (one mean and one std, not per lead).
  Older revisions of ``dataset.py`` and ``ptbxl_eval.py`` apply the z-score without the filters;
  ``export(..., filtered=False)`` reproduces that variant.
* pooling - ``Net1D.forward``: ``deep_features = out.mean(-1)`` before ``dense``; that 1024-d vector is
  the embedding (``return_features=True`` in the authors' code).

The exported graph takes wire ECGs [batch, leads, 5000] in mV at 500 Hz and contains the filters (the
two linear zero-phase filters as one exact [5000, 5000] matrix - ``filtfilt`` is linear on a fixed-length
record, so this is the same operator, not an approximation - and the median filter as a sliding-window
k-th smallest value), the record-wide z-score, Net1D and the time average. The card therefore says
``normalization: none``.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from services.embedding.zoo.official.checkpoint import (OfficialCheckpointError, first_shape, key_indices,
                                                        load_checkpoint, load_strict, strip_prefix)
from services.embedding.zoo.official.export import card_frame, encoder_params, write_onnx

FM = "ecgfounder"
DEFAULT_NAME = "ecgfounder"
VERSION = "1.0.0"
LICENSE = "MIT"
SOURCE_REPO = "https://github.com/PKUDigitalHealth/ECGFounder"
SOURCE_COMMIT = "68d25f25e323a4a423b9d9e8ea2e0af3f234bf22"
CHECKPOINT_URL = "https://huggingface.co/PKUDigitalHealth/ECGFounder (12_lead_ECGFounder.pth, 1_lead_ECGFounder.pth)"
PAPER = ("Li J, Aguirre A, Moura J, Jin J, Liu C, Zhong L, Sun C, Clifford G, Westover B, Hong S. An "
         "Electrocardiogram Foundation Model Built on over 10 Million Recordings with External Evaluation "
         "across Multiple Domains. NEJM AI 2025;2(7):AIoa2401033. arXiv:2410.04133")
OBJECTIVE = "supervised multi-label classification (150 ECG statements, HEEDB, 10M+ ECGs)"
LEADS_12 = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
LEADS_1 = ("I",)
LEADS = LEADS_12  # the released 12_lead_ECGFounder.pth
SAMPLING_RATE_HZ = 500.0
NUM_SAMPLES = 5000
ZSCORE_EPS = 1e-8
# export() options accepted through import_official(options=...) / `--option KEY=VALUE`.
OPTIONS = {"filtered": "true (default): util.filter_bandpass + z-score, as the README requires; "
                       "false: z-score only (older dataset.py / ptbxl_eval.py)"}

# ft_ECGFounder in finetune_model.py; n_classes=150 in ptbxl_eval.py.
OFFICIAL_CONFIG = {"in_channels": 12, "base_filters": 64, "ratio": 1,
                   "filter_list": [64, 160, 160, 400, 400, 1024, 1024], "m_blocks_list": [2, 2, 2, 3, 3, 4, 4],
                   "kernel_size": 16, "stride": 2, "groups_width": 16, "n_classes": 150,
                   "use_bn": False, "use_do": False}


# ------------------------------------------------------------------------- net1d.py (authors' names kept)


class MyConv1dPadSame(nn.Module):
    """nn.Conv1d with TensorFlow-style SAME padding (output length ceil(n / stride))."""

    def __init__(self, in_channels, out_channels, kernel_size, stride, groups=1):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.groups = groups
        self.conv = torch.nn.Conv1d(in_channels=self.in_channels, out_channels=self.out_channels,
                                    kernel_size=self.kernel_size, stride=self.stride, groups=self.groups)

    def forward(self, x):
        """Pad (left = p // 2, right = the rest) and convolve."""
        in_dim = x.shape[-1]
        out_dim = (in_dim + self.stride - 1) // self.stride
        p = max(0, (out_dim - 1) * self.stride + self.kernel_size - in_dim)
        pad_left = p // 2
        pad_right = p - pad_left
        return self.conv(F.pad(x, (pad_left, pad_right), "constant", 0))


class MyMaxPool1dPadSame(nn.Module):
    """nn.MaxPool1d with SAME-style zero padding."""

    def __init__(self, kernel_size):
        super().__init__()
        self.kernel_size = kernel_size
        self.max_pool = torch.nn.MaxPool1d(kernel_size=self.kernel_size)

    def forward(self, x):
        """Zero-pad by kernel_size - 1 (left p // 2) and max-pool."""
        p = max(0, self.kernel_size - 1)
        pad_left = p // 2
        pad_right = p - pad_left
        return self.max_pool(F.pad(x, (pad_left, pad_right), "constant", 0))


class Swish(nn.Module):
    """x * sigmoid(x)."""

    def forward(self, x):
        """Swish activation."""
        return x * torch.sigmoid(x)


class BasicBlock(nn.Module):
    """conv1 -> convk (grouped, strided) -> conv1, squeeze-and-excitation, zero-padded identity shortcut."""

    def __init__(self, in_channels, out_channels, ratio, kernel_size, stride, groups, downsample,
                 is_first_block=False, use_bn=True, use_do=True):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.ratio = ratio
        self.kernel_size = kernel_size
        self.groups = groups
        self.downsample = downsample
        self.stride = stride if self.downsample else 1
        self.is_first_block = is_first_block
        self.use_bn = use_bn
        self.use_do = use_do
        self.middle_channels = int(self.out_channels * self.ratio)

        self.bn1 = nn.BatchNorm1d(in_channels)
        self.activation1 = Swish()
        self.do1 = nn.Dropout(p=0.5)
        self.conv1 = MyConv1dPadSame(in_channels=self.in_channels, out_channels=self.middle_channels,
                                     kernel_size=1, stride=1, groups=1)
        self.bn2 = nn.BatchNorm1d(self.middle_channels)
        self.activation2 = Swish()
        self.do2 = nn.Dropout(p=0.5)
        self.conv2 = MyConv1dPadSame(in_channels=self.middle_channels, out_channels=self.middle_channels,
                                     kernel_size=self.kernel_size, stride=self.stride, groups=self.groups)
        self.bn3 = nn.BatchNorm1d(self.middle_channels)
        self.activation3 = Swish()
        self.do3 = nn.Dropout(p=0.5)
        self.conv3 = MyConv1dPadSame(in_channels=self.middle_channels, out_channels=self.out_channels,
                                     kernel_size=1, stride=1, groups=1)
        r = 2
        self.se_fc1 = nn.Linear(self.out_channels, self.out_channels // r)
        self.se_fc2 = nn.Linear(self.out_channels // r, self.out_channels)
        self.se_activation = Swish()
        if self.downsample:
            self.max_pool = MyMaxPool1dPadSame(kernel_size=self.stride)

    def forward(self, x):
        """The authors' block, step for step (BN and dropout are off in ECGFounder: use_bn=use_do=False)."""
        identity = x
        out = x
        if not self.is_first_block:
            if self.use_bn:
                out = self.bn1(out)
            out = self.activation1(out)
            if self.use_do:
                out = self.do1(out)
        out = self.conv1(out)
        if self.use_bn:
            out = self.bn2(out)
        out = self.activation2(out)
        if self.use_do:
            out = self.do2(out)
        out = self.conv2(out)
        if self.use_bn:
            out = self.bn3(out)
        out = self.activation3(out)
        if self.use_do:
            out = self.do3(out)
        out = self.conv3(out)

        se = out.mean(-1)
        se = self.se_fc1(se)
        se = self.se_activation(se)
        se = self.se_fc2(se)
        se = torch.sigmoid(se)
        out = torch.einsum("abc,ab->abc", out, se)

        if self.downsample:
            identity = self.max_pool(identity)
        if self.out_channels != self.in_channels:
            identity = identity.transpose(-1, -2)
            ch1 = (self.out_channels - self.in_channels) // 2
            ch2 = self.out_channels - self.in_channels - ch1
            identity = F.pad(identity, (ch1, ch2), "constant", 0)
            identity = identity.transpose(-1, -2)
        out = out + identity
        return out


class BasicStage(nn.Module):
    """m_blocks BasicBlocks; the first one downsamples by `stride` and changes the width."""

    def __init__(self, in_channels, out_channels, ratio, kernel_size, stride, groups, i_stage, m_blocks,
                 use_bn=True, use_do=True, verbose=False):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.ratio = ratio
        self.kernel_size = kernel_size
        self.groups = groups
        self.i_stage = i_stage
        self.m_blocks = m_blocks
        self.use_bn = use_bn
        self.use_do = use_do
        self.verbose = verbose
        self.block_list = nn.ModuleList()
        for i_block in range(self.m_blocks):
            is_first_block = self.i_stage == 0 and i_block == 0
            downsample = i_block == 0
            self.block_list.append(BasicBlock(
                in_channels=self.in_channels if i_block == 0 else self.out_channels,
                out_channels=self.out_channels, ratio=self.ratio, kernel_size=self.kernel_size,
                stride=stride if downsample else 1, groups=self.groups, downsample=downsample,
                is_first_block=is_first_block, use_bn=self.use_bn, use_do=self.use_do))

    def forward(self, x):
        """Blocks in order."""
        out = x
        for i_block in range(self.m_blocks):
            out = self.block_list[i_block](out)
        return out


class Net1D(nn.Module):
    """ECGFounder's backbone: SAME conv stem (stride 2), stages, time average, dense head."""

    def __init__(self, in_channels, base_filters, ratio, filter_list, m_blocks_list, kernel_size, stride,
                 groups_width, n_classes, use_bn=True, use_do=True, return_features=False, verbose=False):
        super().__init__()
        self.in_channels = in_channels
        self.base_filters = base_filters
        self.ratio = ratio
        self.filter_list = list(filter_list)
        self.m_blocks_list = list(m_blocks_list)
        self.kernel_size = kernel_size
        self.stride = stride
        self.groups_width = groups_width
        self.n_stages = len(filter_list)
        self.n_classes = n_classes
        self.use_bn = use_bn
        self.use_do = use_do
        self.return_features = return_features
        self.verbose = verbose

        self.first_conv = MyConv1dPadSame(in_channels=in_channels, out_channels=self.base_filters,
                                          kernel_size=self.kernel_size, stride=2)
        self.first_bn = nn.BatchNorm1d(base_filters)
        self.first_activation = Swish()
        self.stage_list = nn.ModuleList()
        in_channels = self.base_filters
        for i_stage in range(self.n_stages):
            out_channels = self.filter_list[i_stage]
            self.stage_list.append(BasicStage(
                in_channels=in_channels, out_channels=out_channels, ratio=self.ratio,
                kernel_size=self.kernel_size, stride=self.stride, groups=out_channels // self.groups_width,
                i_stage=i_stage, m_blocks=self.m_blocks_list[i_stage], use_bn=self.use_bn, use_do=self.use_do,
                verbose=self.verbose))
            in_channels = out_channels
        self.dense = nn.Linear(in_channels, n_classes)

    def forward_features(self, x):
        """The authors' forward up to ``deep_features = out.mean(-1)`` (the embedding)."""
        out = self.first_conv(x)
        if self.use_bn:
            out = self.first_bn(out)
        out = self.first_activation(out)
        for i_stage in range(self.n_stages):
            out = self.stage_list[i_stage](out)
        return out.mean(-1)

    def forward(self, x):
        """Logits of the 150 pre-training labels (and the features with return_features=True)."""
        deep_features = self.forward_features(x)
        out = self.dense(deep_features)
        if self.return_features:
            return out, deep_features
        return out

    def config(self) -> dict:
        """The constructor arguments (as in OFFICIAL_CONFIG)."""
        return {"in_channels": self.in_channels, "base_filters": self.base_filters, "ratio": self.ratio,
                "filter_list": list(self.filter_list), "m_blocks_list": list(self.m_blocks_list),
                "kernel_size": self.kernel_size, "stride": self.stride, "groups_width": self.groups_width,
                "n_classes": self.n_classes, "use_bn": self.use_bn, "use_do": self.use_do}


def build(config: dict | None = None) -> Net1D:
    """Net1D with ECGFounder's configuration (or a variant of it), in eval mode."""
    return Net1D(**{**OFFICIAL_CONFIG, **(config or {})}).eval()


# ------------------------------------------------------------------------------------------- checkpoint


def infer_config(state: dict) -> dict:
    """The Net1D constructor arguments a state dict implies (official values where a key cannot tell).

    Widths, depths, kernel, groups, input leads and head size are read from tensor shapes, so the released
    12-lead and 1-lead checkpoints (and smaller variants built with the same code) all load; stride cannot
    be read from weights and is the authors' 2. A missing key only falls back to the official value here -
    the strict key check afterwards names it.
    """
    cfg = dict(OFFICIAL_CONFIG)
    stem = first_shape(state, ["first_conv.conv.weight"])
    if stem:
        cfg["base_filters"], cfg["in_channels"], cfg["kernel_size"] = stem
    stages = key_indices(state, r"stage_list\.(\d+)\.")
    if stages:
        n_stages = stages[-1] + 1
        filters, blocks = [], []
        for i in range(n_stages):
            default_f = OFFICIAL_CONFIG["filter_list"][i] if i < len(OFFICIAL_CONFIG["filter_list"]) else None
            default_m = OFFICIAL_CONFIG["m_blocks_list"][i] if i < len(OFFICIAL_CONFIG["m_blocks_list"]) else 1
            ids = key_indices(state, rf"stage_list\.{i}\.block_list\.(\d+)\.")
            blocks.append(ids[-1] + 1 if ids else default_m)
            width = None
            for b in range(blocks[-1]):
                shape = first_shape(state, [f"stage_list.{i}.block_list.{b}.{k}" for k in
                                            ("conv3.conv.weight", "conv3.conv.bias", "se_fc2.weight", "se_fc2.bias")])
                if shape:
                    width = shape[0]
                    break
            filters.append(width or default_f or cfg["base_filters"])
        cfg["filter_list"], cfg["m_blocks_list"] = filters, blocks
        mid = first_shape(state, ["stage_list.0.block_list.0.conv1.conv.weight"])
        if mid and filters[0]:
            ratio = mid[0] / filters[0]
            cfg["ratio"] = int(ratio) if float(ratio).is_integer() else ratio
        convk = first_shape(state, ["stage_list.0.block_list.0.conv2.conv.weight"])
        if convk and convk[1]:
            groups = convk[0] // convk[1]
            if groups and filters[0] % groups == 0:
                cfg["groups_width"] = filters[0] // groups
    head = first_shape(state, ["dense.weight", "dense.bias"])
    if head:
        cfg["n_classes"] = head[0]
    return cfg


def load_official(checkpoint_path: Path | str) -> Net1D:
    """The authors' checkpoint ({'state_dict': ...}, as util.save_checkpoint writes it) -> Net1D, strictly.

    Accepted wrappers: the authors' dict with 'state_dict' (finetune_model.py: ``checkpoint['state_dict']``),
    or a bare state dict; a 'module.' prefix on every key (nn.DataParallel) is removed.
    """
    source = str(checkpoint_path)
    ckpt = load_checkpoint(checkpoint_path)
    if isinstance(ckpt, dict) and "state_dict" in ckpt:
        state = ckpt["state_dict"]
    elif isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        state = ckpt
    else:
        keys = sorted(ckpt)[:10] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise OfficialCheckpointError(f"{source}: expected the authors' {{'state_dict': ...}} checkpoint "
                                      f"(util.save_checkpoint) or a state dict; found {keys}")
    if not isinstance(state, dict):
        raise OfficialCheckpointError(f"{source}: 'state_dict' is a {type(state).__name__}, not a mapping")
    state = strip_prefix(dict(state), "module.")
    cfg = infer_config(state)
    if cfg["in_channels"] not in (1, 12):
        raise OfficialCheckpointError(f"{source}: first_conv takes {cfg['in_channels']} leads; ECGFounder "
                                      "checkpoints take 12 (12_lead_ECGFounder.pth) or 1 (1_lead_ECGFounder.pth)")
    net = build(cfg)
    load_strict(net, state, FM, source)
    return net.eval()


# ---------------------------------------------------------------------------------------- preprocessing


def _notch_bandpass(fs: float):
    from scipy.signal import butter, iirnotch

    notch = iirnotch(50, 30, fs)
    band = butter(N=4, Wn=[0.67, 40], btype="bandpass", fs=fs)
    return notch, band


def median_kernel(fs: float) -> int:
    """util.filter_bandpass: int(0.4 * fs) + 1, made odd."""
    k = int(0.4 * fs) + 1
    return k + 1 if k % 2 == 0 else k


def official_preprocess(x: np.ndarray, fs: float = SAMPLING_RATE_HZ, filtered: bool = True) -> np.ndarray:
    """The authors' NumPy/SciPy preprocessing of one or more [leads, samples] records (reference, float64).

    dataset.py: ``data = filter_bandpass(data, 500)`` then ``z_score_normalization(data)``.
    """
    from scipy.signal import filtfilt, medfilt

    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 3:
        return np.stack([official_preprocess(r, fs, filtered) for r in x])
    if filtered:
        (bn, an), (bb, ab) = _notch_bandpass(fs)
        out = np.zeros_like(x)
        for c in range(x.shape[0]):
            out[c] = filtfilt(bn, an, x[c])
        for c in range(x.shape[0]):
            out[c] = filtfilt(bb, ab, out[c])
        baseline = np.zeros_like(out)
        for c in range(out.shape[0]):
            baseline[c] = medfilt(out[c], kernel_size=median_kernel(fs))
        x = out - baseline
    return (x - np.mean(x)) / (np.std(x) + ZSCORE_EPS)


def linear_filter_matrix(num_samples: int = NUM_SAMPLES, fs: float = SAMPLING_RATE_HZ) -> np.ndarray:
    """M with M @ x == filtfilt(band, filtfilt(notch, x)) for any x of num_samples samples.

    filtfilt (odd extension, lfilter_zi initial state, forward-backward) is linear in x for a fixed
    length, so applying it to the identity's columns gives the exact operator.
    """
    from scipy.signal import filtfilt

    (bn, an), (bb, ab) = _notch_bandpass(fs)
    eye = np.eye(num_samples)
    return filtfilt(bb, ab, filtfilt(bn, an, eye, axis=0), axis=0)


@lru_cache(maxsize=1)
def _filter_t32(num_samples: int, fs: float) -> np.ndarray:
    """float32 M.T (x @ M.T filters the rows of x), cached: building it takes seconds for 5000 samples."""
    matrix = np.ascontiguousarray(linear_filter_matrix(num_samples, fs).T, np.float32)
    matrix.setflags(write=False)
    return matrix


class ECGFounderEmbedding(nn.Module):
    """What model.onnx computes: [B, L, T] mV -> authors' filters + record z-score -> Net1D features."""

    def __init__(self, net: Net1D, num_samples: int = NUM_SAMPLES, fs: float = SAMPLING_RATE_HZ,
                 filtered: bool = True, chunk: int = 1000) -> None:
        super().__init__()
        self.net = net
        self.filtered = filtered
        self.kernel = median_kernel(fs)
        self.chunk = chunk
        if filtered:
            self.register_buffer("filter_t", torch.from_numpy(_filter_t32(num_samples, float(fs)).copy()))

    def running_median(self, x: torch.Tensor) -> torch.Tensor:
        """scipy.signal.medfilt (zero padding) along time, in chunks to bound memory: k-th smallest of k."""
        half = self.kernel // 2
        padded = F.pad(x, (half, half))
        total = x.shape[-1]
        parts = []
        for start in range(0, total, self.chunk):
            count = min(self.chunk, total - start)
            windows = padded[..., start:start + count + self.kernel - 1].unfold(-1, self.kernel, 1)
            parts.append(torch.topk(windows, half + 1, dim=-1, largest=False).values[..., -1])
        return torch.cat(parts, dim=-1)

    def preprocess(self, ecg: torch.Tensor) -> torch.Tensor:
        """The authors' preprocessing in float32 (see official_preprocess for the reference)."""
        x = ecg
        if self.filtered:
            x = torch.matmul(x, self.filter_t)
            x = x - self.running_median(x)
        mean = x.mean(dim=(1, 2), keepdim=True)
        std = (x - mean).pow(2).mean(dim=(1, 2), keepdim=True).sqrt()
        return (x - mean) / (std + ZSCORE_EPS)

    def forward(self, ecg: torch.Tensor) -> torch.Tensor:
        """[B, L, T] wire ECG -> [B, 1024] deep_features."""
        return self.net.forward_features(self.preprocess(ecg))


# ----------------------------------------------------------------------------------------------- export


def leads_for(net: Net1D) -> tuple[str, ...]:
    """12-lead checkpoints take I..V6 (dataset.py new_leads); 1-lead ones take lead I."""
    return LEADS_12 if net.in_channels == 12 else LEADS_1


def card(config: dict, params: int, exporter: str = "", filtered: bool = True) -> dict:
    """The package's card.yaml content for a loaded Net1D configuration."""
    leads = LEADS_12 if config["in_channels"] == 12 else LEADS_1
    official = all(config[k] == OFFICIAL_CONFIG[k] for k in OFFICIAL_CONFIG if k not in ("in_channels",
                                                                                       "n_classes"))
    steps = (["50 Hz notch (iirnotch Q=30, filtfilt)", "Butterworth band-pass 0.67-40 Hz, order 4 (filtfilt)",
              f"minus median-filter baseline ({median_kernel(SAMPLING_RATE_HZ)} samples = 0.4 s)"]
             if filtered else [])
    steps.append("z-score over the whole record: (x - mean) / (std + 1e-8), one mean/std for all leads")
    return card_frame(
        name=DEFAULT_NAME, version=VERSION, license=LICENSE, objective=OBJECTIVE,
        description=(f"ECGFounder: Net1D (1-D CNN, Swish, squeeze-and-excitation, {len(config['filter_list'])} "
                     "stages) pre-trained on >10 million ECGs; the embedding is the "
                     f"{config['filter_list'][-1]}-d time average before the classification layer. Weights: "
                     "the checkpoint named in build.checkpoint_file (sha256 in build.checkpoint_sha256)."),
        params=params, sampling_rate_hz=SAMPLING_RATE_HZ, leads=leads, num_samples=NUM_SAMPLES,
        normalization="none", embedding_dim=int(config["filter_list"][-1]),
        source={"repository": SOURCE_REPO, "commit": SOURCE_COMMIT, "checkpoint": CHECKPOINT_URL,
                "paper": PAPER, "license_note": ("MIT as stated for the upstream repository; the LICENSE file "
                                                 "was not in the snapshot read for this adapter - verify "
                                                 "before redistributing weights"),
                "files": ["net1d.py", "finetune_model.py", "dataset.py", "util.py (filter_bandpass, "
                          "save_checkpoint)", "ptbxl_eval.py"]},
        notes={"preprocessing_in_graph": steps,
               "pooling_in_graph": "mean over time of the last stage (Net1D deep_features)",
               "units": "the z-score makes the scale irrelevant; mV is what wfdb.rdsamp gives the authors",
               "leads": "standard order I, II, III, aVR, aVL, aVF, V1-V6 (dataset.py reorders MIMIC's to it)"
               if len(leads) == 12 else "lead I only (1_lead_ECGFounder)",
               "window": "10 s at 500 Hz (5000 samples), as all of the authors' datasets",
               "head": f"dense {config['filter_list'][-1]}->{config['n_classes']} is loaded but not exported"},
        build={"builder": "services.embedding.zoo.official.ecgfounder", "exporter": exporter,
               "architecture": {**config, "official": official}, "filtered": filtered})


def export(module: Net1D, out_dir: Path | str, filtered: bool = True) -> dict:
    """Write out_dir/model.onnx (preprocessing + Net1D + pooling, dynamic batch) and return the card data."""
    wrapper = ECGFounderEmbedding(module.eval(), filtered=filtered).eval()
    exporter = write_onnx(wrapper, torch.zeros(2, module.in_channels, NUM_SAMPLES), out_dir)
    return card(module.config(), encoder_params(module, module.dense), exporter, bool(filtered))
