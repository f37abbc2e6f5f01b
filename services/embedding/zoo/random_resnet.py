"""random-resnet: a randomly initialised 1-D ResNet, the "random encoder" control of representation studies."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch
from torch import nn

LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
SAMPLING_RATE_HZ = 500.0
NUM_SAMPLES = 5000
SEED = 0
WIDTHS = (64, 128, 192, 256)


class ResidualBlock(nn.Module):
    """Two convolutions with a (strided) shortcut, as in ECG ResNets (Ribeiro et al., Strodthoff et al.)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(c_in, c_out, 9, stride=stride, padding=4, bias=False)
        self.bn1 = nn.BatchNorm1d(c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, 9, padding=4, bias=False)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.skip = (nn.Sequential() if stride == 1 and c_in == c_out else
                     nn.Sequential(nn.Conv1d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm1d(c_out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """conv-bn-relu-conv-bn + shortcut, relu."""
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.skip(x))


class ResNet1d(nn.Module):
    """[B, 12, T] -> [B, 256] by a strided stem, four residual stages and global average pooling."""

    def __init__(self, leads: int = len(LEADS), widths: tuple[int, ...] = WIDTHS) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv1d(leads, widths[0], 15, stride=4, padding=7, bias=False),
                                  nn.BatchNorm1d(widths[0]), nn.ReLU())
        stages, c_in = [], widths[0]
        for width in widths:
            stages.append(ResidualBlock(c_in, width, stride=4 if width != widths[0] else 2))
            c_in = width
        self.stages = nn.Sequential(*stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed a batch."""
        return self.stages(self.stem(x)).mean(dim=-1)


def build_module(seed: int = SEED) -> ResNet1d:
    """The network with deterministic random weights, in eval mode (BatchNorm uses its running stats)."""
    torch.manual_seed(seed)
    return ResNet1d().eval()


def export_onnx(module: nn.Module, path: Path, num_samples: int = NUM_SAMPLES) -> None:
    """Export with a dynamic batch axis, weights inside the single .onnx file."""
    example = torch.zeros(2, len(LEADS), num_samples)
    # The exporter logs warnings about optional torchvision ops that a ResNet never uses.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        _export(module, example, path)


def _export(module: nn.Module, example: torch.Tensor, path: Path) -> None:
    torch.onnx.export(module, (example,), str(path), input_names=["ecg"], output_names=["embedding"],
                      dynamo=True, external_data=False, optimize=True, verbose=False,
                      dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=4096)}})


def card(params: int) -> dict:
    """The package's card.yaml content."""
    return {
        "name": "random-resnet", "version": "1.0.0", "backend": "onnxruntime", "license": "Apache-2.0",
        "kind": "baseline", "objective": "none (random initialisation, seed 0)",
        "description": ("A 1-D ResNet (4 residual stages, widths 64-256) with random weights: the standard control "
                        "showing how much structure an untrained convolutional encoder already exposes."),
        "weights": "model.onnx", "params": params,
        "input": {"sampling_rate_hz": SAMPLING_RATE_HZ, "leads": list(LEADS), "num_samples": NUM_SAMPLES,
                  "layout": "BLT", "units": "mV", "normalization": "zscore", "input_name": "ecg"},
        "output": {"name": "embedding", "embedding_dim": WIDTHS[-1], "pooling": "none"},
        "serving": {"max_batch_size": 32, "max_queue_delay_ms": 2.0, "max_queue_ecgs": 4096},
        "build": {"seed": SEED, "builder": "services.embedding.zoo.random_resnet", "torch": str(torch.__version__)},
    }


def build(out_dir: Path) -> dict:
    """Write model.onnx and return the card data."""
    module = build_module()
    export_onnx(module, out_dir / "model.onnx")
    return card(sum(p.numel() for p in module.parameters()))


def describe() -> dict:
    """Zoo listing entry, without building."""
    return {"name": "random-resnet", "version": "1.0.0", "kind": "baseline",
            "objective": "none (random initialisation, seed 0)", "embedding_dim": WIDTHS[-1],
            "params": sum(p.numel() for p in ResNet1d().parameters())}
