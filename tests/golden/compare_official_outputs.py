"""Compare the ECG-JEPA and ECG-CPC ports with the authors' own code on random checkpoints (run by hand, on CPU).

    PYTHONPATH=DEPS:. python tests/golden/compare_official_outputs.py SRC [--onnx]

SRC is laid out as for build_official_manifests.py; DEPS holds einops and opt_einsum (the authors' S4 needs
them). For each FM the authors' class is built at the published configuration with their random
initialisation, saved in the official file layout, loaded by the port's load_official, and both are run on the
same wire ECGs; the largest absolute difference of the embeddings is printed. With --onnx the package that
`import_official` builds (ONNX Runtime, the serving path) is compared too.

The authors' S4 evaluates its Cauchy sum with pykeops on a GPU or a CUDA extension, neither of which runs
here; `cauchy_reference` below evaluates the same sum term by term and replaces their `cauchy_conj`. Nothing
else of theirs is replaced. Their code is imported from SRC, never copied into this repository.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_official_manifests import _import, _timm_stub, ecg_cpc_encoder  # noqa: E402

from services.embedding.model import EmbeddingModel  # noqa: E402
from services.embedding.zoo.official import ecg_cpc, ecg_jepa, import_official  # noqa: E402


def wire(batch: int, leads: int, samples: int, fs: float, seed: int = 0) -> np.ndarray:
    """ECG-like wire signals in mV: a beat train, baseline wander and noise per lead."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / fs
    beat = np.exp(-(((t * rng.uniform(0.9, 1.5, (batch, 1, 1))) % 1.0 - 0.3) / 0.015) ** 2)
    out = rng.uniform(-1, 1.5, (batch, leads, 1)) * beat + 0.2 * np.sin(2 * np.pi * 0.3 * t)
    return (out + 0.02 * rng.standard_normal((batch, leads, samples))).astype(np.float32)


def cauchy_reference(v, z, w):
    """sum_n v/(z - w) + conj(v)/(z - conj(w)), term by term (what pykeops' cauchy_conj computes)."""
    v, w, z = v.unsqueeze(-1), w.unsqueeze(-1), z.reshape(*([1] * (v.dim() - 1)), -1)
    return (v / (z - w) + v.conj() / (z - w.conj())).sum(-2)


def randomise_norms(module: torch.nn.Module, seed: int) -> None:
    """Non-trivial BatchNorm statistics and norm affine terms (a fresh model has 0/1)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.LayerNorm)):
                m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=gen))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)


def compare_jepa(src: Path, tmp: Path, onnx: bool) -> None:
    """Authors' MaskTransformer.representation vs the port (and its ONNX package)."""
    torch.manual_seed(0)
    module = _import(src / "sehunfromdaegu+ECG_JEPA", "ecg_jepa", _timm_stub())
    theirs = module.ecg_jepa(encoder_embed_dim=768, encoder_depth=12, encoder_num_heads=16, predictor_embed_dim=384,
                             predictor_depth=6, predictor_num_heads=12, c=8, pos_type="sincos",
                             mask_scale=(0, 0)).encoder
    randomise_norms(theirs, 1)
    theirs.eval()
    ckpt = tmp / "multiblock_epoch100.pth"
    torch.save({"encoder": theirs.state_dict(), "epoch": 99}, ckpt)  # pretrain_ECG_JEPA.py's layout
    port = ecg_jepa.load_official(ckpt)
    x = wire(3, 8, 2500, 250.0)
    with torch.no_grad():
        ref = theirs.representation(torch.from_numpy(x)).numpy()
        ours = port.representation(torch.from_numpy(x)).numpy()
    print(f"ECG-JEPA  torch port vs authors: max |diff| {np.abs(ours - ref).max():.2e} "
          f"(embedding scale {np.abs(ref).max():.2f})")
    if onnx:
        model = EmbeddingModel.load(import_official("ecg-jepa", ckpt, tmp / "zoo"))
        emb = model.embed(model.validate(x))
        print(f"ECG-JEPA  ONNX package vs authors: max |diff| {np.abs(emb - ref).max():.2e}")


def compare_cpc(src: Path, tmp: Path, onnx: bool) -> None:
    """Authors' TimeSeriesEncoder forward (CPC configuration) vs the port, at 10 s and 2.5 s windows."""
    torch.manual_seed(0)
    holder, _ = ecg_cpc_encoder(src)
    s42 = sys.modules["clinical_ts.ts.s4_modules.s42"]
    s42.cauchy_conj = cauchy_reference
    randomise_norms(holder, 2)
    holder.eval()
    ckpt = tmp / "last.ckpt"
    torch.save({"epoch": 3, "global_step": 40000, "pytorch-lightning_version": "2.4.0",
                "state_dict": holder.state_dict(), "hyper_parameters": {"base": {"fs": 240.0}}}, ckpt)
    port = ecg_cpc.load_official(ckpt)
    for seconds in (10.0, 2.5):
        x = wire(3, 12, int(seconds * 240), 240.0, seed=int(seconds))
        with torch.no_grad():
            out = holder.ts_encoder(seq=torch.from_numpy(x))  # with the CPC loss set: the predictor output
            ref = out["seq"].mean(dim=1).numpy()
            ours = port(torch.from_numpy(x)).numpy()
        print(f"ECG-CPC   torch port vs authors, {seconds:g} s: max |diff| {np.abs(ours - ref).max():.2e} "
              f"(embedding scale {np.abs(ref).max():.2f})")
        if onnx:
            pkg = import_official("ecg-cpc", ckpt, tmp / "zoo", name=f"cpc-{seconds:g}",
                                  options={"window_s": seconds})
            model = EmbeddingModel.load(pkg)
            emb = model.embed(model.validate(x))
            print(f"ECG-CPC   ONNX package vs authors, {seconds:g} s: max |diff| {np.abs(emb - ref).max():.2e}")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp_dir:
        compare_cpc(Path(sys.argv[1]), Path(tmp_dir), "--onnx" in sys.argv)
        compare_jepa(Path(sys.argv[1]), Path(tmp_dir), "--onnx" in sys.argv)
