"""Official open ECG foundation models: rebuild the published architecture, load the published checkpoint.

Each adapter module (``ecgfounder``, ``st_mem``, ``merl``) is a faithful PyTorch port of the authors' code
with the same module names and attribute paths, so ``load_state_dict(strict=True)`` accepts the released
checkpoints as they are. The exported ONNX graph contains the authors' own preprocessing (their normalisation, and
filters where they apply them) and their pooling, and takes wire ECGs [batch, leads, samples] in mV at the
model's own rate and window; the card says which.

Every adapter module provides:

* ``load_official(checkpoint_path) -> nn.Module`` - the architecture with the checkpoint loaded strictly;
* ``export(module, out_dir) -> dict`` - writes ``model.onnx`` (dynamic batch axis) and returns the card;
* ``card(...) -> dict`` - licence, source, paper, input spec, preprocessing, pooling, embedding size.

``import_official`` builds a package atomically and validates it with ``EmbeddingModel.load`` (warm-up)
before publishing it. ``add_cli`` adds ``ecglens zoo import-official FM --checkpoint FILE``.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from services.embedding.card import CARD_FILE, CardError, load_card, parse_card, write_card

log = logging.getLogger(__name__)

# FM name -> adapter module (imported lazily: torch is only needed when a model is imported).
OFFICIAL = {
    "ecgfounder": "services.embedding.zoo.official.ecgfounder",
    "st-mem": "services.embedding.zoo.official.st_mem",
    "merl": "services.embedding.zoo.official.merl",
    "hubert-ecg": "services.embedding.zoo.official.hubert_ecg",
    "ecg-fm": "services.embedding.zoo.official.ecg_fm",
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
}


class OfficialCheckpointError(CardError):
    """A checkpoint that is unreadable or does not match the official architecture's key layout."""


def adapter(fm: str):
    """The adapter module of one official FM."""
    if fm not in OFFICIAL:
        raise OfficialCheckpointError(f"unknown official FM {fm!r}; known: {', '.join(sorted(OFFICIAL))}")
    return importlib.import_module(OFFICIAL[fm])


# ----------------------------------------------------------------------------------------- checkpoints


def file_sha256(path: Path | str) -> str:
    """SHA-256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _numpy_safe_globals() -> list:
    """NumPy scalar/dtype classes that training scripts pickle as metadata (e.g. a val_auroc np.float64)."""
    import numpy as np

    multiarray = getattr(np, "_core", None) or np.core
    classes = [multiarray.multiarray.scalar, np.dtype]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        classes += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return classes


def load_checkpoint(path: Path | str) -> Any:
    """torch.load with weights_only=True (no arbitrary code from pickles); NumPy metadata scalars allowed."""
    import pickle

    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise OfficialCheckpointError(f"checkpoint {path} does not exist (or is not a file)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass  # most often NumPy scalars in the metadata: retry with those (and only those) allowed
    except Exception as err:  # noqa: BLE001 - torch raises many types for a corrupt file
        raise OfficialCheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: {err})") \
            from None
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        raise OfficialCheckpointError(
            f"{path}: cannot be loaded with weights_only=True ({type(err).__name__}: {str(err)[:300]}); "
            "ECGLens does not unpickle arbitrary objects from checkpoints") from None


def strip_prefix(state: dict, prefix: str) -> dict:
    """Drop a key prefix (e.g. 'module.' from DataParallel) when every key has it."""
    if state and all(isinstance(k, str) and k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


def _listing(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_strict(module, state: dict, fm: str, source: str) -> None:
    """load_state_dict(strict=True), but first name every missing, unexpected or mis-shaped key."""
    import torch

    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise OfficialCheckpointError(f"{source}: the {fm} weights are not a mapping of names to tensors")
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mis_shaped = sorted(f"{k} (checkpoint {list(state[k].shape)}, architecture {list(expected[k].shape)})"
                        for k in set(expected) & set(state) if state[k].shape != expected[k].shape)
    problems = []
    if missing:
        problems.append(f"missing key(s): {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected key(s): {_listing(unexpected)}")
    if mis_shaped:
        problems.append(f"shape mismatch: {_listing(mis_shaped)}")
    if problems:
        raise OfficialCheckpointError(f"{source}: does not match the official {fm} key layout; "
                                      + "; ".join(problems))
    module.load_state_dict(state, strict=True)


def key_indices(state: dict, pattern: str) -> list[int]:
    """Sorted distinct integers captured by a regex with one group over the state dict's keys."""
    import re

    regex = re.compile(pattern)
    return sorted({int(m.group(1)) for k in state if (m := regex.match(k))})


def first_shape(state: dict, keys: list[str]) -> tuple[int, ...] | None:
    """Shape of the first of keys present in state (None if none is)."""
    for key in keys:
        if key in state:
            return tuple(state[key].shape)
    return None


# ------------------------------------------------------------------------------------------------ export


def export_onnx(wrapper, example, path: Path) -> str:
    """Export wrapper(ecg) -> embedding with a dynamic batch axis, weights inside the single .onnx file.

    The dynamo exporter is tried first (as for the zoo models); if it fails for an architecture, the
    TorchScript exporter (dynamo=False, opset 17) is used instead. Returns which exporter produced the file.
    """
    import torch

    wrapper = wrapper.eval()
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(wrapper, (example,), str(path), input_names=["ecg"], output_names=["embedding"],
                              dynamo=True, external_data=False, optimize=True, verbose=False,
                              dynamic_shapes={"ecg": {0: torch.export.Dim("batch", min=1, max=4096)}})
            return f"torch.onnx.export(dynamo=True), torch {torch.__version__}"
        except Exception as err:  # noqa: BLE001 - fall back to the TorchScript exporter, and say so
            log.warning("dynamo ONNX export failed (%s: %s); falling back to dynamo=False",
                        type(err).__name__, str(err)[:200])
            Path(path).unlink(missing_ok=True)
            torch.onnx.export(wrapper, (example,), str(path), input_names=["ecg"], output_names=["embedding"],
                              dynamo=False, opset_version=17,
                              dynamic_axes={"ecg": {0: "batch"}, "embedding": {0: "batch"}})
            return (f"torch.onnx.export(dynamo=False, opset 17) after the dynamo exporter failed "
                    f"({type(err).__name__}), torch {torch.__version__}")


def param_count(module) -> int:
    """Parameters of a module (buffers excluded)."""
    return int(sum(p.numel() for p in module.parameters()))


# ------------------------------------------------------------------------------------------------ import


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
    out_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=out_root))
    staging.chmod(0o755)  # mkdtemp makes it private; serving containers read it as another user
    try:
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
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("imported official %s from %s into %s", fm, checkpoint, target)
    return target


# ---------------------------------------------------------------------------------------------------- CLI


def _cli_help() -> str:
    lines = ["Official FMs (the checkpoint is the authors' file, loaded as they save it):"]
    for fm, info in SUMMARY.items():
        lines.append(f"  {fm:<11} {info['input']}; dim {info['embedding_dim']}; licence {info['license']}; "
                     f"{info['source']}; checkpoint: {info['checkpoint']}")
    return "\n".join(lines)


def parse_options(items: list[str] | None) -> dict:
    """`KEY=VALUE` strings to a dict; true/false/yes/no/on/off become booleans, numbers numbers."""
    options = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CardError(f"--option expects KEY=VALUE, got {item!r}")
        low = value.strip().lower()
        if low in ("true", "yes", "on", "1"):
            parsed: Any = True
        elif low in ("false", "no", "off", "0"):
            parsed = False
        else:
            try:
                parsed = float(low) if "." in low else int(low)
            except ValueError:
                parsed = value.strip()
        options[key.strip()] = parsed
    return options


def _cmd_import_official(args: argparse.Namespace) -> int:
    from services.embedding.zoo.registry import zoo_dir

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    path = import_official(args.fm, Path(args.checkpoint), Path(args.out) if args.out else zoo_dir(),
                           name=args.name, force=args.force, options=parse_options(args.option))
    card = load_card(path)
    print(f"{args.fm}: {path}  ({card.name} {card.version}, {card.input.sampling_rate_hz:g} Hz x "
          f"{card.input.num_samples} samples, dim {card.output.embedding_dim}, licence {card.license})")
    print(f"serve it: ecglens serve --model {path}")
    return 0


def add_cli(zoo_subparsers) -> None:
    """Add `zoo import-official FM --checkpoint FILE [--out DIR] [--name NAME] [--force]`."""
    parser = zoo_subparsers.add_parser(
        "import-official", help="package an official FM checkpoint (ECGFounder, ST-MEM, MERL, HuBERT-ECG, ECG-FM) as an ONNX model",
        description="Rebuild an official ECG foundation model's architecture, load its published checkpoint "
                    "strictly (every key checked), put the authors' preprocessing and pooling in the graph, "
                    "export ONNX and validate the package with a warm-up batch.\n\n" + _cli_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("fm", choices=sorted(OFFICIAL), help="which official FM")
    parser.add_argument("--checkpoint", required=True, metavar="FILE", help="the authors' checkpoint file")
    parser.add_argument("--out", help="package root (default: $ECGLENS_ZOO or ~/.cache/ecglens/zoo)")
    parser.add_argument("--name", help="package name (default: the FM's name)")
    parser.add_argument("--force", action="store_true", help="replace an existing package of that name")
    parser.add_argument("--option", action="append", metavar="KEY=VALUE",
                        help="adapter option (repeatable); ecgfounder: filtered=false exports the authors' "
                             "older z-score-only preprocessing instead of filters + z-score")
    parser.set_defaults(func=_cmd_import_official)
