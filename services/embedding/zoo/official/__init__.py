"""Official open ECG foundation models: rebuild the published architecture, load the published checkpoint.

Each adapter module (``ecgfounder``, ``st_mem``, ``merl``, ``hubert_ecg``, ``ecg_fm``, ``ecg_jepa``,
``ecg_cpc``) is a faithful PyTorch
port of the authors' code with the same module names and attribute paths, so ``load_state_dict(strict=True)``
accepts the released checkpoints as they are. The exported ONNX graph contains the authors' own preprocessing (their normalisation, and
filters where they apply them) and their pooling, and takes wire ECGs [batch, leads, samples] in mV at the
model's own rate and window; the card says which.

Every adapter module provides:

* ``load_official(checkpoint_path) -> nn.Module`` - the architecture with the checkpoint loaded strictly;
* ``export(module, out_dir) -> dict`` - writes ``model.onnx`` (dynamic batch axis) and returns the card;
* ``card(...) -> dict`` - licence, source, paper, input spec, preprocessing, pooling, embedding size.

``import_official`` builds a package atomically and validates it with ``EmbeddingModel.load`` (warm-up)
before publishing it. Shared pieces: ``checkpoint`` (reading checkpoints), ``export`` (ONNX export and the card
frame); ``cli`` adds ``ecglens zoo import-official FM --checkpoint FILE``.
"""
from __future__ import annotations

import importlib
import logging
from pathlib import Path

from services.embedding.card import CardError, load_card, parse_card, write_card
from services.embedding.zoo.official.checkpoint import OfficialCheckpointError, file_sha256
from services.embedding.zoo.staging import staged_package

log = logging.getLogger(__name__)

# FM name -> adapter module (imported lazily: torch is only needed when a model is imported).
OFFICIAL = {
    "ecgfounder": "services.embedding.zoo.official.ecgfounder",
    "st-mem": "services.embedding.zoo.official.st_mem",
    "merl": "services.embedding.zoo.official.merl",
    "hubert-ecg": "services.embedding.zoo.official.hubert_ecg",
    "ecg-fm": "services.embedding.zoo.official.ecg_fm",
    "ecg-jepa": "services.embedding.zoo.official.ecg_jepa",
    "ecg-cpc": "services.embedding.zoo.official.ecg_cpc",
}

# What `--help` shows without importing torch; tests keep it equal to the adapters' own constants.
SUMMARY = {
    "ecgfounder": {"input": "12 leads (I..V6), 500 Hz, 10 s (5000 samples)", "license": "MIT",
                   "embedding_dim": 1024, "source": "https://github.com/PKUDigitalHealth/ECGFounder",
                   "checkpoint": "12_lead_ECGFounder.pth (huggingface.co/PKUDigitalHealth/ECGFounder)"},
    "st-mem": {"input": "12 leads (I..V6), 250 Hz, 9 s (2250 samples)", "license": "MIT",
               "embedding_dim": 768, "source": "https://github.com/bakqui/ST-MEM",
               "checkpoint": "st_mem_vit_base_encoder.pth (encoder.pth as main_pretrain.py saves it)"},
    "merl": {"input": "12 leads (I, II, III, aVR, aVF, aVL, V1..V6), 500 Hz, 10 s (5000 samples)",
             "license": "MIT", "embedding_dim": 512, "source": "https://github.com/cheliu-computation/MERL-ICML2024",
             "checkpoint": "resnet18 *_encoder.pth (or the whole *_ckpt.pth) from the README's link"},
    "hubert-ecg": {"input": "12 leads (I..V6), 100 Hz, 5 s (500 samples), concatenated lead after lead into 6000",
                   "license": "CC-BY-NC-4.0", "embedding_dim": 768, "source": "https://github.com/Edoar-do/HuBERT-ECG",
                   "checkpoint": "model.safetensors or pytorch_model.bin with config.json beside it "
                                 "(huggingface.co/Edoardo-BS/hubert-ecg-{small,base,large}: 512/768/960-d)"},
    "ecg-fm": {"input": "12 leads (I..V6), 500 Hz, 5 s (2500 samples), per-lead z-score", "license": "MIT",
               "embedding_dim": 768, "source": "https://github.com/bowang-lab/ECG-FM",
               "checkpoint": "mimic_iv_ecg_physionet_pretrained.pt (huggingface.co/wanglab/ecg-fm)"},
    "ecg-jepa": {"input": "8 leads (I, II, V1..V6), 250 Hz, 10 s (2500 samples), mV, no normalisation",
                 "license": "MIT", "embedding_dim": 768, "source": "https://github.com/sehunfromdaegu/ECG_JEPA",
                 "checkpoint": "multiblock_epoch100.pth or random_epoch100.pth (the README's links)"},
    "ecg-cpc": {"input": "12 leads (I..V6), 240 Hz, 10 s (2400 samples; option window_s), mV, no normalisation",
                "license": "unknown", "embedding_dim": 512,
                "source": "https://github.com/AI4HealthUOL/ecg-fm-benchmarking",
                "checkpoint": "the Lightning .ckpt (or its config_last_*_ckpt.yaml) of ECG-CPC_Checkpoint_zip "
                              "(figshare 30192604)"},
}


def adapter(fm: str):
    """The adapter module of one official FM."""
    if fm not in OFFICIAL:
        raise OfficialCheckpointError(f"unknown official FM {fm!r}; known: {', '.join(sorted(OFFICIAL))}")
    return importlib.import_module(OFFICIAL[fm])


def import_official(fm: str, checkpoint: Path | str, out_root: Path | str, name: str | None = None,
                    force: bool = False, options: dict | None = None) -> Path:
    """Official checkpoint -> validated model package out_root/<name> (default name: the FM's).

    options are passed to the adapter's export() (e.g. ecgfounder: filtered=False for the authors' older
    z-score-only preprocessing); each adapter's OPTIONS lists what it accepts.

    Atomic: the package is built and validated (card parses, ONNX loads, one warm-up batch runs) in a
    staging directory next to the target and only then moved into place, so a failure never leaves half a
    package. An existing package is replaced only with force=True.
    """
    from services.embedding.model import EmbeddingModel

    module = adapter(fm)
    checkpoint = Path(checkpoint).expanduser()
    name = name or module.DEFAULT_NAME
    if not name or "/" in name or name.startswith("."):
        raise CardError(f"invalid package name {name!r}")
    out_root = Path(out_root).expanduser()
    target = out_root / name
    if target.exists() and not force:
        raise CardError(f"{target} already exists; pass force=True (CLI: --force) to replace it")
    options = dict(options or {})
    unknown = sorted(set(options) - set(getattr(module, "OPTIONS", {})))
    if unknown:
        raise CardError(f"{fm}: unknown option(s) {', '.join(unknown)}; accepted: "
                        f"{', '.join(sorted(getattr(module, 'OPTIONS', {}))) or 'none'}")
    net = module.load_official(checkpoint)
    with staged_package(out_root, name) as staging:
        data = module.export(net, staging, **options)
        data["name"] = name
        # A HuBERT-ECG checkpoint may be a save_pretrained directory: hash its weights file.
        sha = file_sha256(getattr(module, "weights_file", Path)(checkpoint))
        data["version"] = f"{data.get('version', '1.0.0')}+ckpt.{sha[:12]}"
        data.setdefault("build", {}).update(checkpoint_file=checkpoint.name, checkpoint_sha256=sha,
                                             importer=f"ecglens zoo import-official {fm}")
        write_card(parse_card(data, f"import-official:{fm}"), staging)
        load_card(staging)
        EmbeddingModel.load(staging, warmup=True)  # ONNX Runtime loads it and one batch goes through
    log.info("imported official %s from %s into %s", fm, checkpoint, target)
    return target
