"""In-project self-supervised ECG encoders: contrastive (CMSC/SimCLR) and masked-signal-modelling (MAE/ST-MEM).

`pretrain()` trains the zoo's compact 1-D ResNet (services.embedding.zoo.ssl_encoder) on an unlabelled synthetic
corpus (all four simulated sites, seeds that the demo never uses, labels never read) and writes an ONNX model package (kind: pretrained) whose card records exactly
how it was trained. The zoo's `cmsc-ecg-small` and `msm-ecg-small` builders do not retrain: they load the shipped
state dicts in `weights/` and export them (`ssl_encoder.build_from_weights`); `--export-weights` writes that format.

Inputs follow the serving contract: 12 leads, 500 Hz, 10 s, per-lead z-score (the server applies it, so training
z-scores too). The encoder is length-agnostic (global average pooling): contrastive-cmsc trains on the two adjacent
5-s halves of a record, as CMSC does, and the package takes the full 10-s window.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from orchestrator.datasets.synthetic import SITES, SyntheticDataset
from orchestrator.preprocess import fit_window, resample
from services.embedding.card import load_card, parse_card, write_card
from services.embedding.zoo.random_resnet import LEADS, NUM_SAMPLES, SAMPLING_RATE_HZ
from services.embedding.zoo.ssl_encoder import (EMBEDDING_DIM, OBJECTIVES, PACKAGE_NAMES, VERSION, ECGEncoder,
                                                param_count, state_dict_sha256, write_package)

log = logging.getLogger(__name__)

CORPUS_SEED_OFFSET = 1000  # corpus seed = 1000 + seed: the demo and the probes use seed 0
PATCH = 100  # 0.2 s at 500 Hz: the masking unit of masked-signal-modelling
SEGMENT = NUM_SAMPLES // 2  # CMSC views: the two adjacent 5-s halves of a 10-s record
THREADS = 2
_EPS = 1e-6


@dataclass(frozen=True)
class Hyper:
    """Objective-specific optimisation defaults (steps, batch, lr, ...), recorded in the card."""

    steps: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_frac: float = 0.05


DEFAULTS = {
    "contrastive-cmsc": Hyper(steps=600, batch_size=64, lr=1e-3, weight_decay=1e-4),
    "masked-signal-modelling": Hyper(steps=600, batch_size=64, lr=1e-3, weight_decay=0.05),
}
CORPUS_RECORDS = 2048
TEMPERATURE = 0.1
MASK_RATIO = 0.75
AUGMENT = {"gaussian_noise_std_max": 0.1, "baseline_wander_amp_max": 0.3, "baseline_wander_hz": [0.05, 0.5],
           "lead_dropout_p": 0.15}


# ----------------------------------------------------------------------------------------- training-only heads


class ProjectionHead(nn.Module):
    """SimCLR's MLP head; the loss lives in its output space and the head is discarded at export."""

    def __init__(self, dim_in: int = EMBEDDING_DIM, dim_out: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim_in, dim_in), nn.ReLU(), nn.Linear(dim_in, dim_out))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Project embeddings."""
        return self.net(h)


class PatchDecoder(nn.Module):
    """Light MAE-style decoder: frame features -> all 12 x 100 samples of each 0.2-s patch (discarded at export)."""

    def __init__(self, num_patches: int, dim_in: int = EMBEDDING_DIM, hidden: int = 128) -> None:
        super().__init__()
        self.num_patches = num_patches
        self.net = nn.Sequential(nn.Conv1d(dim_in, hidden, 3, padding=1), nn.GELU(),
                                 nn.Conv1d(hidden, len(LEADS) * PATCH, 1))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """[B, C, frames] -> [B, 12, patches, 100]."""
        grid = F.interpolate(feats, size=self.num_patches, mode="linear", align_corners=False)
        out = self.net(grid)  # [B, 12*100, P]
        return out.view(out.shape[0], len(LEADS), PATCH, self.num_patches).transpose(2, 3)


# --------------------------------------------------------------------------------------------------- corpus


def corpus_spec(records: int, seed: int) -> dict:
    """The unlabelled corpus, as recorded in the card."""
    sites = tuple(SITES)
    return {"generator": "orchestrator.datasets.synthetic.SyntheticDataset", "sites": list(sites),
            "records_per_site": max(1, records // len(sites)), "seed": CORPUS_SEED_OFFSET + seed,
            "duration_s": 10.0, "resampled_to_hz": SAMPLING_RATE_HZ, "num_samples": NUM_SAMPLES,
            "normalization": "per-lead z-score, stored as float16", "labels_used": False}


def zscore(x: np.ndarray) -> np.ndarray:
    """Per-lead z-score over time, the same formula as the server's (services.embedding.adapt)."""
    std = np.maximum(x.std(axis=-1, keepdims=True), _EPS)
    return (x - x.mean(axis=-1, keepdims=True)) / std


def build_corpus(spec: dict) -> torch.Tensor:
    """[N, 12, 5000] float16 z-scored windows (float16 halves memory; SSL does not need more precision)."""
    ds = SyntheticDataset(spec["sites"], spec["records_per_site"], seed=spec["seed"])
    out = np.empty((len(ds), len(LEADS), NUM_SAMPLES), np.float16)
    for i in range(len(ds)):
        rec = ds.load(i)
        window = fit_window(resample(rec.signal.astype(np.float64), rec.sampling_rate_hz, SAMPLING_RATE_HZ),
                            NUM_SAMPLES)
        out[i] = zscore(window)
    return torch.from_numpy(out)


class BatchSampler:
    """Epoch-wise shuffled batches of record indices from a seeded generator (drop_last)."""

    def __init__(self, n: int, batch_size: int, gen: torch.Generator) -> None:
        if batch_size > n:
            raise ValueError(f"batch size {batch_size} exceeds the corpus ({n} records)")
        self.n, self.batch_size, self.gen = n, batch_size, gen
        self.order, self.pos = torch.randperm(n, generator=gen), 0

    def next(self) -> torch.Tensor:
        """Indices of the next batch."""
        if self.pos + self.batch_size > self.n:
            self.order, self.pos = torch.randperm(self.n, generator=self.gen), 0
        idx = self.order[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        return idx


# --------------------------------------------------------------------------------------------------- objectives


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random Gaussian noise, baseline wander and lead dropout on z-scored views [B, 12, T].

    Amplitude scaling is left out on purpose: the per-lead z-score in front of the encoder undoes it.
    """
    b, leads, t = x.shape
    noise_std = torch.rand(b, 1, 1, generator=gen) * AUGMENT["gaussian_noise_std_max"]
    x = x + noise_std * torch.randn(x.shape, generator=gen)
    lo, hi = AUGMENT["baseline_wander_hz"]
    freq = lo + (hi - lo) * torch.rand(b, 1, 1, generator=gen)
    phase = 2 * math.pi * torch.rand(b, leads, 1, generator=gen)
    amp = AUGMENT["baseline_wander_amp_max"] * torch.rand(b, leads, 1, generator=gen)
    time_s = torch.arange(t, dtype=torch.float32) / SAMPLING_RATE_HZ
    x = x + amp * torch.sin(2 * math.pi * freq * time_s + phase)
    keep = (torch.rand(b, leads, 1, generator=gen) >= AUGMENT["lead_dropout_p"]).float()
    return x * keep


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """SimCLR's normalised-temperature cross entropy: each view must pick its partner among 2N-1 candidates."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool), -1e9)  # a view is not its own candidate
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(sim, target)


def cmsc_loss(encoder: ECGEncoder, head: nn.Module, batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """CMSC: the two adjacent 5-s halves of a record (each augmented) are positives, other records negatives."""
    first, second = batch[..., :SEGMENT], batch[..., SEGMENT:2 * SEGMENT]
    z1 = head(encoder(augment(first, gen)))
    z2 = head(encoder(augment(second, gen)))
    return nt_xent(z1, z2)


def patch_mask(b: int, num_patches: int, gen: torch.Generator) -> torch.Tensor:
    """[B, 12, P] bool: exactly round(MASK_RATIO * P) random patches masked in every lead independently (ST-MEM)."""
    k = int(round(MASK_RATIO * num_patches))
    ranks = torch.rand(b, len(LEADS), num_patches, generator=gen).argsort(dim=-1).argsort(dim=-1)
    return ranks < k


def msm_loss(encoder: ECGEncoder, decoder: PatchDecoder, batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """MAE-style: zero the masked patches, reconstruct every patch, MSE on the masked ones only."""
    b = batch.shape[0]
    patches = batch.view(b, len(LEADS), decoder.num_patches, PATCH)
    mask = patch_mask(b, decoder.num_patches, gen)
    visible = (patches * (~mask).unsqueeze(-1)).view_as(batch)
    recon = decoder(encoder.features(visible))
    err = ((recon - patches) ** 2).mean(dim=-1)
    return (err * mask).sum() / mask.sum()


# --------------------------------------------------------------------------------------------------- training


def lr_at(step: int, hyper: Hyper, steps: int) -> float:
    """Linear warm-up then cosine decay to zero."""
    warmup = max(1, int(round(hyper.warmup_frac * steps)))
    if step < warmup:
        return hyper.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return hyper.lr * 0.5 * (1 + math.cos(math.pi * progress))


def _objective_parts(objective: str) -> tuple[Callable[[], nn.Module], Callable, dict]:
    """A factory for the discarded training-only module, the loss function and the objective's card description."""
    if objective == "contrastive-cmsc":
        return ProjectionHead, cmsc_loss, {
            "views": "two adjacent 5-s halves of each 10-s record (CMSC, Kiyasseh et al. 2021), each augmented",
            "augmentations": AUGMENT, "loss": "NT-Xent", "temperature": TEMPERATURE,
            "projection_head": "Linear(256,256)-ReLU-Linear(256,128), discarded at export",
            "train_input_samples": SEGMENT}
    if objective == "masked-signal-modelling":
        return lambda: PatchDecoder(NUM_SAMPLES // PATCH), msm_loss, {
            "patch_s": PATCH / SAMPLING_RATE_HZ, "mask_ratio": MASK_RATIO,
            "masking": "independent random patches per lead (ST-MEM), masked samples set to 0",
            "loss": "MSE on masked patches",
            "decoder": "linear upsampling to 50 patches, Conv1d(256,128,3)-GELU-Conv1d(128,1200,1), discarded",
            "train_input_samples": NUM_SAMPLES}
    raise ValueError(f"unknown objective {objective!r}; known: {', '.join(OBJECTIVES)}")


def _summary(losses: list[float], log_every: int) -> dict:
    """Loss curve as (step, mean loss over the preceding log_every steps) and headline numbers."""
    curve = [[min(s + log_every, len(losses)), round(float(np.mean(losses[s:s + log_every])), 5)]
             for s in range(0, len(losses), log_every)]
    tail = losses[-min(10, len(losses)):]
    return {"final_loss": round(float(np.mean(tail)), 5), "final_loss_window": len(tail),
            "first_loss": round(losses[0], 5), "min_loss": round(min(losses), 5), "loss_curve": curve}


@dataclass
class TrainResult:
    """The trained encoder (eval mode), per-step losses and the training record for the card."""

    encoder: ECGEncoder
    losses: list[float]
    record: dict


def train(objective: str, steps: int | None = None, batch_size: int | None = None, seed: int = 0,
          corpus_records: int = CORPUS_RECORDS, lr: float | None = None, log_every: int = 10,
          threads: int = THREADS) -> TrainResult:
    """Train an encoder deterministically (fixed seed, deterministic kernels, fixed thread count).

    Results are bit-identical for equal arguments on one machine; a different thread count changes float
    summation order (~1e-5 after a few steps), so the shipped weights are defined at THREADS = 2.
    """
    make_aux, loss_fn, details = _objective_parts(objective)
    base = DEFAULTS[objective]
    hyper = Hyper(steps or base.steps, batch_size or base.batch_size, lr or base.lr, base.weight_decay,
                  base.warmup_frac)
    spec = corpus_spec(corpus_records, seed)
    prev_threads, prev_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        started = time.perf_counter()
        data = build_corpus(spec)
        corpus_s = time.perf_counter() - started
        torch.manual_seed(seed)
        encoder, aux = ECGEncoder(), make_aux()  # built after seeding, so initialisation is reproducible
        cpu_started = time.process_time()
        losses, train_s = _optimise(encoder, aux, loss_fn, data, hyper, seed, log_every)
        train_cpu_s = time.process_time() - cpu_started
    finally:
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det)
    record = {"objective": objective, **details, "steps": hyper.steps, "batch_size": hyper.batch_size,
              "optimizer": {"name": "AdamW", "lr": hyper.lr, "betas": [0.9, 0.999],
                            "weight_decay": hyper.weight_decay},
              "schedule": f"linear warm-up {hyper.warmup_frac:g} of steps, then cosine to 0",
              "seed": seed, "corpus": {**spec, "records": len(data)}, **_summary(losses, log_every),
              "wall_time_s": {"corpus": round(corpus_s, 1), "train": round(train_s, 1)},
              # CPU seconds (both threads) survive contention on shared machines better than wall time.
              "train_cpu_s": round(train_cpu_s, 1),
              "threads": threads, "torch": str(torch.__version__), "python": platform.python_version(),
              "deterministic_algorithms": True, "encoder_params": param_count(encoder)}
    return TrainResult(encoder.eval(), losses, record)


def _optimise(encoder: ECGEncoder, aux: nn.Module, loss_fn: Callable, data: torch.Tensor, hyper: Hyper,
              seed: int, log_every: int) -> tuple[list[float], float]:
    """The optimisation loop; returns per-step losses and wall time."""
    gen = torch.Generator().manual_seed(seed)
    sampler = BatchSampler(len(data), hyper.batch_size, gen)
    params = list(encoder.parameters()) + list(aux.parameters())
    opt = torch.optim.AdamW(params, lr=hyper.lr, weight_decay=hyper.weight_decay)
    encoder.train(), aux.train()
    losses: list[float] = []
    started = time.perf_counter()
    for step in range(hyper.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, hyper, hyper.steps)
        loss = loss_fn(encoder, aux, data[sampler.next()].float(), gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if (step + 1) % log_every == 0 or step + 1 == hyper.steps:
            log.info("step %d/%d loss %.4f (%.1fs)", step + 1, hyper.steps,
                     float(np.mean(losses[-log_every:])), time.perf_counter() - started)
    return losses, time.perf_counter() - started


# --------------------------------------------------------------------------------------------------- outputs


def export_weights(encoder: ECGEncoder, training: dict, path: Path) -> Path:
    """Write the float32 state dict to path (.pt) and the training record + sha256 next to it (.json)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().clone() if v.is_floating_point() else v.detach().clone()
             for k, v in encoder.state_dict().items()}
    torch.save(state, path)
    meta = {"objective": training["objective"], "package": PACKAGE_NAMES[training["objective"]],
            "version": VERSION, "state_dict_sha256": state_dict_sha256(state),
            "file_sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "training": training}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    return path


def pretrain(objective: str, out_dir: Path, steps: int | None = None, batch_size: int | None = None,
             seed: int = 0, corpus_records: int = CORPUS_RECORDS, lr: float | None = None,
             export_weights_to: Path | None = None, threads: int = THREADS) -> dict:
    """Train one objective and write a validated package (model.onnx + card.yaml) to out_dir; return the card."""
    result = train(objective, steps, batch_size, seed, corpus_records, lr, threads=threads)
    out_dir = Path(out_dir)
    data = write_package(result.encoder, objective, result.record, out_dir, "orchestrator.pretrain")
    write_card(parse_card(data, f"pretrain:{objective}"), out_dir)
    load_card(out_dir)
    if export_weights_to:
        export_weights(result.encoder, result.record, Path(export_weights_to))
    return data


# --------------------------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `ecglens pretrain` options (shared by this module's own entry point)."""
    parser.add_argument("--objective", required=True, choices=OBJECTIVES, help="self-supervised objective")
    parser.add_argument("--out", required=True, type=Path, help="package directory to write (model.onnx, card.yaml)")
    parser.add_argument("--steps", type=int, help="optimisation steps (default: 600)")
    parser.add_argument("--batch-size", type=int, help="records per step (default: 64)")
    parser.add_argument("--lr", type=float, help="peak learning rate (default: 1e-3)")
    parser.add_argument("--seed", type=int, default=0, help="model/augmentation seed; corpus seed is 1000 + seed")
    parser.add_argument("--corpus-records", type=int, default=CORPUS_RECORDS,
                        help=f"unlabelled synthetic records, split over the four sites (default: {CORPUS_RECORDS})")
    parser.add_argument("--export-weights", type=Path, metavar="PATH",
                        help="also write the state dict to PATH (.pt) and its training record + sha256 (.json)")


def run(args: argparse.Namespace) -> int:
    """Execute parsed `pretrain` arguments."""
    data = pretrain(args.objective, args.out, args.steps, args.batch_size, args.seed, args.corpus_records,
                    args.lr, args.export_weights)
    tr = data["training"]
    print(f"{data['name']} {data['version']} -> {args.out}: {tr['steps']} steps, final loss {tr['final_loss']}, "
          f"train {tr['wall_time_s']['train']}s")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m orchestrator.pretrain`: train one SSL encoder and package it."""
    parser = argparse.ArgumentParser(prog="ecglens pretrain", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
