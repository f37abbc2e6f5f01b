"""The in-project self-supervised ECG encoder: architecture, shipped weights, ONNX export and card.

What the zoo's `cmsc-ecg-small` and `msm-ecg-small` builders need to serve the pre-trained models: they load the
state dicts shipped in `weights/` and export them (`build_from_weights`). Training them is a job over datasets and
lives a layer up, in `orchestrator.pretrain` (`ecglens pretrain`), which uses this architecture and packaging.

Inputs follow the serving contract: 12 leads, 500 Hz, 10 s, per-lead z-score. The encoder is length-agnostic
(global average pooling), so it trains on 5-s views and serves 10-s windows.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import nn

from services.embedding.zoo.random_resnet import LEADS, NUM_SAMPLES, SAMPLING_RATE_HZ, export_onnx

OBJECTIVES = ("contrastive-cmsc", "masked-signal-modelling")
PACKAGE_NAMES = {"contrastive-cmsc": "cmsc-ecg-small", "masked-signal-modelling": "msm-ecg-small"}
VERSION = "1.0.0"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

# Encoder shape. Changing any of these invalidates the shipped state dicts in weights/.
WIDTHS = (32, 64, 128, 256)
STAGE_STRIDES = (2, 2, 4, 4)
STEM_STRIDE = 4
KERNEL = 7
EMBEDDING_DIM = WIDTHS[-1]


# --------------------------------------------------------------------------------------------------- model


class ResidualBlock(nn.Module):
    """Two convolutions with a (strided) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(c_in, c_out, KERNEL, stride=stride, padding=KERNEL // 2, bias=False)
        self.bn1 = nn.BatchNorm1d(c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, KERNEL, padding=KERNEL // 2, bias=False)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.skip = (nn.Sequential() if stride == 1 and c_in == c_out else
                     nn.Sequential(nn.Conv1d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm1d(c_out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """conv-bn-relu-conv-bn + shortcut, relu."""
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.skip(x))


class ECGEncoder(nn.Module):
    """[B, 12, T] z-scored ECG -> [B, 256]: strided stem, four residual stages (total stride 256), mean pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv1d(len(LEADS), WIDTHS[0], 15, stride=STEM_STRIDE, padding=7, bias=False),
                                  nn.BatchNorm1d(WIDTHS[0]), nn.ReLU())
        blocks, c_in = [], WIDTHS[0]
        for width, stride in zip(WIDTHS, STAGE_STRIDES):
            blocks.append(ResidualBlock(c_in, width, stride))
            c_in = width
        self.stages = nn.Sequential(*blocks)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Frame features [B, 256, ~T/256] before pooling (the MSM decoder reads these)."""
        return self.stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed a batch by global average pooling (so any length works)."""
        return self.features(x).mean(dim=-1)


def param_count(module: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in module.parameters())


# --------------------------------------------------------------------------------------------------- packaging


def card(objective: str, params: int, training: dict, builder: str) -> dict:
    """The package's card.yaml content."""
    name = PACKAGE_NAMES[objective]
    what = ("contrastive multi-segment coding (CMSC/SimCLR, NT-Xent over adjacent 5-s halves)"
            if objective == "contrastive-cmsc" else "masked signal modelling (MAE/ST-MEM, 75% of 0.2-s patches)")
    return {
        "name": name, "version": VERSION, "backend": "onnxruntime", "license": "Apache-2.0",
        "kind": "pretrained", "objective": objective,
        "description": (f"A compact 1-D ResNet ({params / 1e6:.2f}M params, 256-d) pre-trained in-project by {what} "
                        "on an unlabelled synthetic corpus from all four simulated sites. Small and briefly "
                        "trained: a reference point for SSL objectives, not a clinical foundation model."),
        "weights": "model.onnx", "params": params,
        "input": {"sampling_rate_hz": SAMPLING_RATE_HZ, "leads": list(LEADS), "num_samples": NUM_SAMPLES,
                  "layout": "BLT", "units": "mV", "normalization": "zscore", "input_name": "ecg"},
        "output": {"name": "embedding", "embedding_dim": EMBEDDING_DIM, "pooling": "none"},
        "serving": {"max_batch_size": 32, "max_queue_delay_ms": 2.0, "max_queue_ecgs": 4096},
        "training": training,
        "build": {"builder": builder, "torch": str(torch.__version__), "reproduce": reproduce_command(training)},
    }


def reproduce_command(training: dict) -> str:
    """The `ecglens pretrain` call that retrains these weights (bit-identical with the same torch, CPU and threads)."""
    return (f"ecglens pretrain --objective {training['objective']} --out DIR --steps {training['steps']} "
            f"--batch-size {training['batch_size']} --lr {training['optimizer']['lr']:g} --seed {training['seed']} "
            f"--corpus-records {training['corpus']['records']}")


def write_package(encoder: ECGEncoder, objective: str, training: dict, out_dir: Path, builder: str) -> dict:
    """Export model.onnx into out_dir and return the card data (not yet written)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    export_onnx(encoder.eval(), out_dir / "model.onnx")
    return card(objective, param_count(encoder), training, builder)


def state_dict_sha256(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of a state dict, in key order (independent of pickling)."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().contiguous().cpu()
        digest.update(f"{key}|{tensor.dtype}|{list(tensor.shape)}|".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def load_encoder(path: Path) -> ECGEncoder:
    """An eval-mode encoder from a shipped state dict, refusing one whose hash differs from its .json."""
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    meta = json.loads(Path(path).with_suffix(".json").read_text())
    if state_dict_sha256(state) != meta["state_dict_sha256"]:
        raise ValueError(f"{path}: state dict sha256 does not match {Path(path).with_suffix('.json').name}")
    encoder = ECGEncoder()
    encoder.load_state_dict(state)
    return encoder.eval()


def build_from_weights(objective: str, out_dir: Path, builder: str) -> dict:
    """Zoo build: shipped weights -> model.onnx in out_dir; returns the card data (fast, deterministic)."""
    path = WEIGHTS_DIR / f"{PACKAGE_NAMES[objective]}.pt"
    meta = json.loads(path.with_suffix(".json").read_text())
    data = write_package(load_encoder(path), objective, meta["training"], Path(out_dir), builder)
    data["build"]["weights_sha256"] = meta["state_dict_sha256"]
    return data


def describe_entry(objective: str) -> dict:
    """Zoo listing entry, without building."""
    return {"name": PACKAGE_NAMES[objective], "version": VERSION, "kind": "pretrained", "objective": objective,
            "embedding_dim": EMBEDDING_DIM, "params": param_count(ECGEncoder())}
