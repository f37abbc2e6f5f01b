"""MERL (Liu et al., ICML 2024): the authors' 1-D ResNet ECG encoder, checkpoint layouts, preprocessing, pooling.

Sources read (github.com/cheliu-computation/MERL-ICML2024):

* architecture - ``utils/resnet1d.py`` and ``finetune/models/resnet1d.py`` @
  7a931dbd2dbf347a9745edd3b6729820cc518a90 (identical modules; ``ResNet`` with ``conv1`` Conv1d(12, 64, 7,
  stride 2), ``bn1``, ``layer1``..``layer4`` of ``BasicBlock``/``Bottleneck`` with ``shortcut`` Sequential,
  ``linear`` and ``avgpool``; ResNet18 = BasicBlock [2, 2, 2, 2]). Module names and attribute paths are the
  authors', so their state dicts load with ``strict=True``.
* checkpoint - ``utils/utils_trainer.py`` saves ``torch.save(self.model.module.ecg_encoder.state_dict(),
  '<name>_..._encoder.pth')`` (a bare state dict; the README: "xxx_encoder.pth is the ecg encoder only for
  linear probing") and ``torch.save(self.model.module.state_dict(), '<name>_..._ckpt.pth')`` (the whole
  ECGCLIP: keys ``ecg_encoder.*`` next to the text model and projection heads) and, in
  ``save_checkpoints``, ``{'epoch', 'model_state_dict' (DDP, 'module.' prefix), 'optimizer_state_dict'}``.
  All three are accepted; only the ECG encoder is kept. ``linear`` (ResNet's unused 10-class layer in
  pre-training) is loaded when present and never exported.
* preprocessing - ``finetune/finetune_dataset.py`` (linear probing): first 5000 samples of the 500 Hz
  record, ``(ecg - np.min(ecg)) / (np.max(ecg) - np.min(ecg) + 1e-8)`` over the WHOLE [12, 5000] record (one
  min and max, not per lead), and ``ecg[[4, 5]] = ecg[[5, 4]]`` so that the model sees MIMIC-IV-ECG's lead
  order I, II, III, aVR, aVF, aVL, V1-V6 (the card lists the leads in that order, so ECGLens sends them so).
  Pre-training (``pretrain/preprocess.ipynb``) used the same min-max, stored as int16 of x * 1000.
* pooling - ``finetune/models/resnet1d.py`` ``ResNet.forward``: ``avgpool`` over time of ``layer4``, flattened
  (512-d for ResNet18), which ``linear`` receives in linear probing; that vector is the embedding. (The
  zero-shot path's ``downconv`` + ``att_pool_head`` projection lives in the full ECGCLIP only.)

The exported graph takes wire ECGs [batch, 12, 5000] in mV at 500 Hz (MIMIC lead order) and contains the
record-wide min-max scaling, the encoder (BatchNorm with its running statistics) and the average pooling;
the card therefore says ``normalization: none``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from services.embedding.zoo.official.checkpoint import (OfficialCheckpointError, key_indices, load_checkpoint,
                                                        load_strict, strip_prefix)
from services.embedding.zoo.official.export import card_frame, encoder_params, write_onnx

FM = "merl"
DEFAULT_NAME = "merl-resnet18"
VERSION = "1.0.0"
LICENSE = "MIT"
SOURCE_REPO = "https://github.com/cheliu-computation/MERL-ICML2024"
SOURCE_COMMIT = "7a931dbd2dbf347a9745edd3b6729820cc518a90"
CHECKPOINT_URL = ("Google Drive folder linked from the README (resnet18 *_encoder.pth for linear probing, "
                  "*_ckpt.pth for the whole model)")
PAPER = ("Liu C, Wan Z, Ouyang C, Shah A, Bai W, Arcucci R. Zero-Shot ECG Classification with Multimodal "
         "Learning and Test-time Clinical Knowledge Enhancement. ICML 2024. arXiv:2403.06659")
OBJECTIVE = "ECG-report contrastive (CLIP-style, MIMIC-IV-ECG) + uni-modal ECG alignment"
# MIMIC-IV-ECG's order; finetune_dataset.py swaps aVL/aVF of standard-order datasets to match it.
LEADS = ("I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6")
SAMPLING_RATE_HZ = 500.0
NUM_SAMPLES = 5000
MINMAX_EPS = 1e-8
OPTIONS: dict[str, str] = {}
ARCHITECTURES = {("BasicBlock", (2, 2, 2, 2)): "ResNet18", ("BasicBlock", (3, 4, 6, 3)): "ResNet34",
                 ("Bottleneck", (3, 4, 6, 3)): "ResNet50", ("Bottleneck", (3, 4, 23, 3)): "ResNet101",
                 ("Bottleneck", (3, 8, 36, 3)): "ResNet152"}


# ------------------------------------------------------------------ utils/resnet1d.py (authors' names kept)


class BasicBlock(nn.Module):
    """Two k=3 convolutions with BatchNorm, projection shortcut when the shape changes."""

    expansion = 1

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv1d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm1d(out_channels)
        self.conv2 = nn.Conv1d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm1d(out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != self.expansion * out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv1d(in_channels, self.expansion * out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm1d(self.expansion * out_channels))

    def forward(self, x):
        """relu(bn(conv)) -> bn(conv) + shortcut -> relu."""
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + self.shortcut(x)
        return torch.relu(out)


class Bottleneck(nn.Module):
    """1x1 - 3 - 1x1 convolutions (expansion 4), projection shortcut when the shape changes."""

    expansion = 4

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv1d(in_channels, out_channels, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm1d(out_channels)
        self.conv2 = nn.Conv1d(out_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm1d(out_channels)
        self.conv3 = nn.Conv1d(out_channels, self.expansion * out_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm1d(self.expansion * out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != self.expansion * out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv1d(in_channels, self.expansion * out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm1d(self.expansion * out_channels))

    def forward(self, x):
        """The authors' bottleneck."""
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = out + self.shortcut(x)
        return torch.relu(out)


class ResNet(nn.Module):
    """MERL's ECG encoder: [B, 12, T] -> layer4 features; avgpool + linear in linear probing."""

    def __init__(self, block, num_blocks, num_classes=10):
        super().__init__()
        self.in_channels = 64
        self.block_name = block.__name__
        self.num_blocks = tuple(num_blocks)
        self.conv1 = nn.Conv1d(12, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm1d(64)
        self.layer1 = self._make_layer(block, 64, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(block, 128, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(block, 256, num_blocks[2], stride=2)
        self.layer4 = self._make_layer(block, 512, num_blocks[3], stride=2)
        self.linear = nn.Linear(512 * block.expansion, num_classes)
        self.avgpool = nn.AdaptiveAvgPool1d((1))
        self.embedding_dim = 512 * block.expansion

    def _make_layer(self, block, out_channels, num_blocks, stride):
        strides = [stride] + [1] * (num_blocks - 1)
        layers = []
        for stride in strides:
            layers.append(block(self.in_channels, out_channels, stride))
            self.in_channels = out_channels * block.expansion
        return nn.Sequential(*layers)

    def forward_features(self, x):
        """finetune/models/resnet1d.py up to ``out.view(out.size(0), -1)`` after avgpool: the embedding."""
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.layer1(out)
        out = self.layer2(out)
        out = self.layer3(out)
        out = self.layer4(out)
        out = self.avgpool(out)
        return out.view(out.size(0), -1)

    def forward(self, x):
        """linear(forward_features(x)) as in linear probing."""
        return self.linear(self.forward_features(x))

    def config(self) -> dict:
        """Block type, blocks per layer, the published name and the linear layer's size (None: absent)."""
        linear = self.linear.out_features if isinstance(self.linear, nn.Linear) else None
        return {"block": self.block_name, "num_blocks": list(self.num_blocks), "num_classes": linear,
                "architecture": ARCHITECTURES.get((self.block_name, self.num_blocks), "non-published variant")}


def build(block: str = "BasicBlock", num_blocks=(2, 2, 2, 2), num_classes: int | None = 10) -> ResNet:
    """The authors' ResNet (default ResNet18); num_classes=None drops `linear` (a checkpoint without it)."""
    cls = {"BasicBlock": BasicBlock, "Bottleneck": Bottleneck}[block]
    net = ResNet(cls, list(num_blocks), num_classes or 10)
    if num_classes is None:
        net.linear = nn.Identity()
    return net.eval()


# ------------------------------------------------------------------------------------------- checkpoint


def _encoder_state(ckpt, source: str) -> dict:
    """The ECG encoder's state dict from the authors' three ways of saving it."""
    state = ckpt
    if isinstance(ckpt, dict):
        for key in ("model_state_dict", "state_dict", "model"):
            if key in ckpt and isinstance(ckpt[key], dict):
                state = ckpt[key]
                break
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        keys = sorted(ckpt)[:10] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise OfficialCheckpointError(f"{source}: expected the authors' *_encoder.pth state dict, a whole "
                                      f"*_ckpt.pth or {{'model_state_dict': ...}}; found {keys}")
    state = strip_prefix(dict(state), "module.")
    if any(k.startswith("ecg_encoder.") for k in state):  # the whole ECGCLIP: keep its ECG encoder
        state = {k[len("ecg_encoder."):]: v for k, v in state.items() if k.startswith("ecg_encoder.")}
    return state


def infer_config(state: dict) -> dict:
    """Block type and blocks per layer from the keys (ResNet18 where a key cannot tell)."""
    block = "Bottleneck" if any(k.startswith("layer1.0.conv3.") for k in state) else "BasicBlock"
    blocks = []
    for i, default in enumerate((2, 2, 2, 2), start=1):
        ids = key_indices(state, rf"layer{i}\.(\d+)\.")
        blocks.append(ids[-1] + 1 if ids else default)
    linear = state.get("linear.weight", state.get("linear.bias"))
    return {"block": block, "num_blocks": blocks, "num_classes": int(linear.shape[0]) if linear is not None else None}


def load_official(checkpoint_path: Path | str) -> ResNet:
    """The authors' encoder checkpoint -> ResNet, loaded strictly (every key checked)."""
    source = str(checkpoint_path)
    state = _encoder_state(load_checkpoint(checkpoint_path), source)
    net = build(**infer_config(state))
    load_strict(net, state, FM, source)
    return net.eval()


# ---------------------------------------------------------------------------------------- preprocessing


def official_preprocess(x: np.ndarray) -> np.ndarray:
    """finetune_dataset.py on [12, T] (or [B, 12, T]) records already in MIMIC lead order (float64 reference)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 3:
        return np.stack([official_preprocess(r) for r in x])
    x = x[:, :NUM_SAMPLES]
    return (x - np.min(x)) / (np.max(x) - np.min(x) + MINMAX_EPS)


class MERLEmbedding(nn.Module):
    """What model.onnx computes: [B, 12, 5000] mV -> record min-max -> ResNet -> average over time."""

    def __init__(self, net: ResNet) -> None:
        super().__init__()
        self.net = net

    @staticmethod
    def preprocess(ecg: torch.Tensor) -> torch.Tensor:
        """(x - min) / (max - min + 1e-8) with one min and max per record."""
        low = ecg.amin(dim=(1, 2), keepdim=True)
        high = ecg.amax(dim=(1, 2), keepdim=True)
        return (ecg - low) / (high - low + MINMAX_EPS)

    def forward(self, ecg: torch.Tensor) -> torch.Tensor:
        """[B, 12, T] wire ECG -> [B, 512 * expansion]."""
        return self.net.forward_features(self.preprocess(ecg))


# ----------------------------------------------------------------------------------------------- export


def card(config: dict, params: int, exporter: str = "") -> dict:
    """The package's card.yaml content for a loaded ResNet configuration."""
    dim = 512 * (4 if config["block"] == "Bottleneck" else 1)
    return card_frame(
        name=DEFAULT_NAME, version=VERSION, license=LICENSE, objective=OBJECTIVE,
        description=(f"MERL ECG encoder ({config['architecture']}, 1-D) pre-trained by multimodal ECG-report "
                     f"alignment on MIMIC-IV-ECG; the embedding is the {dim}-d time average of the last stage "
                     "(what MERL's linear probes see). Weights: the checkpoint named in "
                     "build.checkpoint_file (sha256 in build.checkpoint_sha256)."),
        params=params, sampling_rate_hz=SAMPLING_RATE_HZ, leads=LEADS, num_samples=NUM_SAMPLES,
        normalization="none", embedding_dim=dim,
        source={"repository": SOURCE_REPO, "commit": SOURCE_COMMIT, "checkpoint": CHECKPOINT_URL,
                "paper": PAPER, "license_file": "LICENSE (MIT, Copyright (c) 2024 Che Liu)",
                "files": ["utils/resnet1d.py", "finetune/models/resnet1d.py", "utils/utils_builder.py",
                          "utils/utils_trainer.py", "finetune/finetune_dataset.py", "finetune/main_single.py",
                          "pretrain/preprocess.ipynb"]},
        notes={"preprocessing_in_graph": ["min-max over the whole record: (x - min) / (max - min + 1e-8), "
                                          "one min and max for all leads"],
               "pooling_in_graph": "AdaptiveAvgPool1d(1) over time of layer4, flattened",
               "leads": "MIMIC-IV-ECG order I, II, III, aVR, aVF, aVL, V1-V6 (aVF before aVL), as the authors "
                        "feed the model",
               "window": "first 10 s at 500 Hz (5000 samples)",
               "units": "min-max scaling makes the scale irrelevant; no filtering in the authors' pipeline",
               "pretraining_quantisation": "pre-training stored the scaled signal as int16(x * 1000) / 1000; "
                                           "linear probing (reproduced here) does not",
               "head": ("no linear layer in the checkpoint" if config["num_classes"] is None else
                        f"linear {dim}->{config['num_classes']} is loaded but not exported")},
        build={"builder": "services.embedding.zoo.official.merl", "exporter": exporter, "architecture": config})


def export(module: ResNet, out_dir: Path | str) -> dict:
    """Write out_dir/model.onnx (min-max + ResNet + average pooling, dynamic batch); return the card data."""
    wrapper = MERLEmbedding(module.eval()).eval()
    exporter = write_onnx(wrapper, torch.zeros(2, len(LEADS), NUM_SAMPLES), out_dir)
    return card(module.config(), encoder_params(module, module.linear), exporter)
