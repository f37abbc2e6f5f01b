"""Write tests/golden/official_*.json: every state_dict key and shape of each official ECG FM, from the authors' code.

Run by hand when an adapter follows a new upstream revision, not by the test suite:

    python tests/golden/build_official_manifests.py SRC [NAME ...]

SRC holds one plain checkout per repository, named owner+name (e.g. SRC/bakqui+ST-MEM), at the commits in
COMMITS (ecg_cpc also needs einops and opt_einsum importable, e.g. installed with `pip install --target DIR`
and DIR put on PYTHONPATH). Each builder imports the authors' own model class from there and instantiates it at
the published configuration (random weights, never saved), so the manifests say what the authors' code
builds, independently of the ports in services/embedding/zoo/official. Nothing of their code is copied
into this repository; only the key names and shapes it produces are.
"""
from __future__ import annotations

import ast
import importlib
import json
import re
import sys
import types
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
COMMITS = {
    "PKUDigitalHealth+ECGFounder": "04edac702b61c91face519774ddcc0cd712fef23",
    "bakqui+ST-MEM": "69ec70246c01fe32b14dea810af812556c06eab0",
    "cheliu-computation+MERL-ICML2024": "38799b7deb1c9958f41badcfacc6a95192787cc4",
    "Edoar-do+HuBERT-ECG": "affe1f94d06d61a346fa7520be441af5642616b4",
    "Jwoo5+fairseq-signals": "6b9e1375bbe6bc2e55ff4d9b95eabe8eee3adec7",
    "sehunfromdaegu+ECG_JEPA": "d937ad2c2c8a1e22856ce7e4a23a30f84a71217c",
    "AI4HealthUOL+ecg-fm-benchmarking": "6367295666569d63d6642594bbe3ae9ac56a1644",
}


def _import(root: Path, module: str, stubs: dict[str, types.ModuleType] | None = None):
    """The authors' module, imported from their checkout (stubs stand in for parameter-free dependencies)."""
    sys.modules.update(stubs or {})
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module(module)
    finally:
        sys.path.remove(str(root))


def _einops_stub() -> dict[str, types.ModuleType]:
    """einops is not installed here; Rearrange holds no parameters, so a parameter-free module keeps indices."""
    class Rearrange(nn.Module):
        def __init__(self, *args, **kwargs):
            super().__init__()

    top, layers, torch_layers = (types.ModuleType(n) for n in ("einops", "einops.layers", "einops.layers.torch"))
    top.rearrange = top.repeat = top.pack = top.unpack = None
    torch_layers.Rearrange = Rearrange
    return {"einops": top, "einops.layers": layers, "einops.layers.torch": torch_layers}


def _dataclass_defaults(path: Path, classes: list[str]) -> dict:
    """Field defaults of the authors' config dataclasses (read from their source: omegaconf is not needed)."""
    defaults = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ClassDef) and node.name in classes:
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.value, ast.Call):
                    for kw in item.value.keywords:
                        if kw.arg == "default":
                            try:
                                defaults[item.target.id] = ast.literal_eval(kw.value)
                            except ValueError:
                                pass  # II("task...") interpolations: not model shapes
    return defaults


def ecgfounder(src: Path, in_channels: int) -> tuple[nn.Module, dict, list[str]]:
    """ft_12lead_ECGFounder / ft_1lead_ECGFounder (finetune_model.py) with the released 150-class head."""
    root = src / "PKUDigitalHealth+ECGFounder"
    net1d = _import(root, "net1d")
    config = {"in_channels": in_channels, "base_filters": 64, "ratio": 1,
              "filter_list": [64, 160, 160, 400, 400, 1024, 1024], "m_blocks_list": [2, 2, 2, 3, 3, 4, 4],
              "kernel_size": 16, "stride": 2, "groups_width": 16, "use_bn": False, "use_do": False, "n_classes": 150}
    return net1d.Net1D(**config), config, ["net1d.py", "finetune_model.py"]


def st_mem(src: Path, size: str) -> tuple[nn.Module, dict, list[str]]:
    """st_mem_vit_{size}(num_leads=12) as main_pretrain.py saves it to encoder.pth (num_classes None)."""
    root = src / "bakqui+ST-MEM"
    module = _import(root, "models.encoder.st_mem_vit", _einops_stub())
    model = getattr(module, f"st_mem_vit_{size}")(num_leads=12)
    return model, {"builder": f"st_mem_vit_{size}", "num_leads": 12, "seq_len": 2250, "patch_size": 75,
                   "num_classes": None}, ["models/encoder/st_mem_vit.py", "models/encoder/vit.py"]


def merl(src: Path) -> tuple[nn.Module, dict, list[str]]:
    """ResNet18() of utils/resnet1d.py: the ECG encoder saved as <name>_encoder.pth."""
    root = src / "cheliu-computation+MERL-ICML2024" / "utils"
    return _import(root, "resnet1d").ResNet18(), {"builder": "ResNet18"}, ["utils/resnet1d.py"]


HUBERT_SIZES = {"small": (512, 8, 8, 2048, 256), "base": (768, 12, 12, 3072, 256),
                "large": (960, 16, 12, 3840, 512)}


def hubert_ecg(src: Path, size: str) -> tuple[nn.Module, dict, list[str]]:
    """HuBERTECG (code/hubert_ecg.py) at scripts' pretrain.py sizes, --downsampling_factor 5, default vocab."""
    root = src / "Edoar-do+HuBERT-ECG" / "code"
    module = _import(root, "hubert_ecg")
    hidden, layers, heads, ffn, proj = HUBERT_SIZES[size]
    config = {"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
              "intermediate_size": ffn, "classifier_proj_size": proj, "conv_kernel": [10, 3, 3, 2, 2],
              "conv_stride": [4, 2, 2, 2, 2], "conv_dim": [512] * 5, "ensemble_length": 1, "vocab_sizes": [100]}
    model = module.HuBERTECG(module.HuBERTECGConfig(**config))
    return model, config, ["code/hubert_ecg.py", "code/pretrain.py"]


def ecg_fm(src: Path) -> tuple[nn.Module, dict, list[str]]:
    """ECGTransformerModel's encoder modules (the part ECG-FM's embedding uses) with w2v_cmsc_rlm.yaml's model."""
    root = src / "Jwoo5+fairseq-signals"
    models = root / "fairseq_signals" / "models"
    cfg = _dataclass_defaults(models / "transformer.py", ["TransformerConfig"])
    cfg |= _dataclass_defaults(models / "ecg_transformer.py", ["ECGTransformerConfig"])
    recipe = {"encoder_embed_dim": 768, "in_d": 12}  # examples/w2v_cmsc/config/pretraining/w2v_cmsc_rlm.yaml
    cfg |= recipe
    package = types.ModuleType("fairseq_signals")
    package.__path__ = [str(root / "fairseq_signals")]
    distributed = types.ModuleType("fairseq_signals.distributed")
    distributed.utils = types.ModuleType("fairseq_signals.distributed.utils")  # GatherLayer only: no parameters
    modules = _import(root, "fairseq_signals.modules", {"fairseq_signals": package,
                                                         "fairseq_signals.distributed": distributed,
                                                         "fairseq_signals.distributed.utils": distributed.utils})
    args = types.SimpleNamespace(**cfg)
    layers = eval(cfg["conv_feature_layers"])  # the authors' own config string, e.g. "[(256, 2, 2)] * 4"
    encoder = nn.Module()
    # The attributes ECGTransformerModel.__init__ (models/ecg_transformer.py) and TransformerModel.__init__
    # (models/transformer.py) create; mask_emb and Wav2Vec2's pre-training heads are left out (the port drops them).
    encoder.feature_extractor = modules.ConvFeatureExtraction(conv_layers=layers, in_d=cfg["in_d"], dropout=0.0,
                                                              mode=cfg["extractor_mode"], conv_bias=cfg["conv_bias"])
    encoder.post_extract_proj = nn.Linear(layers[-1][0], cfg["encoder_embed_dim"])
    encoder.conv_pos = modules.ConvPositionalEncoding(args)
    encoder.layer_norm = modules.LayerNorm(layers[-1][0])
    encoder.encoder = modules.TransformerEncoder(args)
    shown = {k: cfg[k] for k in ("conv_feature_layers", "in_d", "extractor_mode", "conv_bias", "encoder_layers",
                                 "encoder_embed_dim", "encoder_ffn_embed_dim", "encoder_attention_heads",
                                 "layer_norm_first", "conv_pos", "conv_pos_groups")}
    return encoder, shown, ["fairseq_signals/models/ecg_transformer.py", "fairseq_signals/models/transformer.py",
                            "fairseq_signals/modules/*.py", "examples/w2v_cmsc/config/pretraining/w2v_cmsc_rlm.yaml"]


def _timm_stub() -> dict[str, types.ModuleType]:
    """timm is not installed here; ecg_jepa.py takes DropPath (identity at drop_path 0) and trunc_normal_ from it."""
    class DropPath(nn.Module):
        def __init__(self, *args, **kwargs):
            super().__init__()

    top, models, layers = (types.ModuleType(n) for n in ("timm", "timm.models", "timm.models.layers"))
    layers.DropPath, layers.trunc_normal_ = DropPath, nn.init.trunc_normal_
    return {"timm": top, "timm.models": models, "timm.models.layers": layers}


def ecg_jepa(src: Path) -> tuple[nn.Module, dict, list[str]]:
    """ecg_jepa(**params).encoder with models.py load_encoder's params: what pretrain_ECG_JEPA.py saves as 'encoder'."""
    module = _import(src / "sehunfromdaegu+ECG_JEPA", "ecg_jepa", _timm_stub())
    params = {"encoder_embed_dim": 768, "encoder_depth": 12, "encoder_num_heads": 16, "predictor_embed_dim": 384,
              "predictor_depth": 6, "predictor_num_heads": 12, "c": 8, "pos_type": "sincos", "mask_scale": (0, 0),
              "leads": [0, 1, 2, 3, 4, 5, 6, 7]}
    return module.ecg_jepa(**params).encoder, params, ["ecg_jepa.py", "models.py", "pretrain_ECG_JEPA.py"]


def ecg_cpc_encoder(src: Path) -> tuple[nn.Module, nn.Module]:
    """The authors' TimeSeriesEncoder at config_cpc_ecg_s4_heedb.yaml (dataclass defaults + the yaml's values)."""
    stubs = {"pytorch_lightning": types.ModuleType("pytorch_lightning"),
             "pytorch_lightning.utilities": types.ModuleType("pytorch_lightning.utilities")}
    stubs["pytorch_lightning.utilities"].rank_zero_only = lambda fn: fn  # logging decorator only
    root = src / "AI4HealthUOL+ecg-fm-benchmarking" / "code"
    tm = _import(root, "clinical_ts.template_modules", stubs)
    enc, s4, head, loss = (_import(root, m) for m in ("clinical_ts.ts.encoder", "clinical_ts.ts.s4",
                                                       "clinical_ts.ts.head", "clinical_ts.loss.selfsupervised"))
    config = tm.TimeSeriesEncoderConfig(
        enc=enc.RNNEncoderConfig(features=[512] * 4, kss=[3, 1, 1, 1], strides=[2, 1, 1, 1]),
        pred=s4.S4PredictorConfig(causal=True, state_dim=8, model_dim=512, backbone="s42"),
        head_ssl=head.MLPHeadConfig(multi_prediction=True, bias=False),
        loss=loss.CPCLossConfig(negatives_from_same_seq_only=True, steps_predicted=14))
    config.name = "ts_tsenc"  # SSLModel prefixes the hparams key
    shape = tm.ShapeConfig(channels=12, length=2400, sequence_last=True)  # ceil(input_size 10 s * fs 240)
    holder = nn.Module()  # SSLModel (a LightningModule) keeps it as ts_encoder; nothing else has parameters
    holder.ts_encoder = tm.TimeSeriesEncoder(config, shape, None)
    return holder, tm


def ecg_cpc(src: Path) -> tuple[nn.Module, dict, list[str]]:
    """ECGModel's parameters (ts_encoder) as SSLModel builds them for config_cpc_ecg_s4_heedb.yaml."""
    holder, _ = ecg_cpc_encoder(src)
    shown = {"base": {"fs": 240.0, "input_channels": 12, "input_size": 10.0, "normalize": False},
             "ts.enc": {"features": [512] * 4, "kss": [3, 1, 1, 1], "strides": [2, 1, 1, 1]},
             "ts.pred": {"causal": True, "state_dim": 8, "model_dim": 512, "backbone": "s42"},
             "ts.head_ssl": {"multi_prediction": True, "bias": False}}
    return holder, shown, ["code/conf/config_cpc_ecg_s4_heedb.yaml", "code/clinical_ts/template_model.py",
                           "code/clinical_ts/template_modules.py", "code/clinical_ts/ts/encoder.py",
                           "code/clinical_ts/ts/s4.py", "code/clinical_ts/ts/s4_modules/*.py",
                           "code/clinical_ts/ts/head.py"]


NOTES = {
    "ecgfounder": "Upstream net1d.py (in the repository since this commit) at ft_12lead/ft_1lead_ECGFounder's "
                  "arguments; the released checkpoints' head is dense [150, 1024]. The port loads every key.",
    "st_mem": "The encoder alone, as encoder.pth holds it; einops (absent here) was replaced by a parameter-free "
              "stand-in for Rearrange, which keeps module indices. The port loads every key.",
    "merl": "The ECG encoder; `linear` is ResNet's unused 10-class layer, kept in <name>_encoder.pth. The port "
            "loads every key.",
    "hubert_ecg": "transformers' HubertModel plus the pre-training heads final_proj.* and label_embedding.*, "
                  "whose sizes follow --vocab_sizes (a training argument, not in the code; built here with "
                  "HuBERTECGConfig's default [100]). The port drops those heads and masked_spec_embed. "
                  "Checkpoints saved by older transformers name the positional conv weight_g/weight_v; the port renames them.",
    "ecg_fm": "ECGTransformerModel's encoder modules only (feature_extractor, post_extract_proj, conv_pos, "
              "layer_norm, encoder), built from the authors' fairseq_signals.modules with the config "
              "dataclass defaults read from their source plus the recipe's model section; mask_emb and "
              "Wav2Vec2/CMSC pre-training modules (quantizer, project_q, final_proj) are not listed: the port "
              "drops them.",
    "ecg_jepa": "The context encoder (MaskTransformer), as pretrain_ECG_JEPA.py saves it under 'encoder'; timm "
                "(absent here) was replaced by a stand-in for DropPath (identity at the loader's drop_path 0). "
                "pos_embed is a frozen Parameter and is in the state dict. The port loads every key.",
    "ecg_cpc": "TimeSeriesEncoder built by the authors' template_modules from their config dataclasses with the "
               "yaml's values; SSLModel holds it as ts_encoder and has no other parameters (no static encoder, "
               "head or criterion; CPCLoss has none). The S4 kernel's log_dt/B/P/w/Q are buffers "
               "(trainable=None), omega/z are the FFT nodes of l_max = 1200. pytorch_lightning's rank_zero_only "
               "was stubbed; einops/opt_einsum came from a side install. The port loads every key.",
}

BUILDS = {
    "ecgfounder_12lead": ("PKUDigitalHealth+ECGFounder", "ecgfounder", lambda src: ecgfounder(src, 12)),
    "ecgfounder_1lead": ("PKUDigitalHealth+ECGFounder", "ecgfounder", lambda src: ecgfounder(src, 1)),
    "st_mem_base": ("bakqui+ST-MEM", "st_mem", lambda src: st_mem(src, "base")),
    "st_mem_small": ("bakqui+ST-MEM", "st_mem", lambda src: st_mem(src, "small")),
    "merl_resnet18": ("cheliu-computation+MERL-ICML2024", "merl", merl),
    "hubert_ecg_small": ("Edoar-do+HuBERT-ECG", "hubert_ecg", lambda src: hubert_ecg(src, "small")),
    "hubert_ecg_base": ("Edoar-do+HuBERT-ECG", "hubert_ecg", lambda src: hubert_ecg(src, "base")),
    "hubert_ecg_large": ("Edoar-do+HuBERT-ECG", "hubert_ecg", lambda src: hubert_ecg(src, "large")),
    "ecg_fm": ("Jwoo5+fairseq-signals", "ecg_fm", ecg_fm),
    "ecg_jepa": ("sehunfromdaegu+ECG_JEPA", "ecg_jepa", ecg_jepa),
    "ecg_cpc": ("AI4HealthUOL+ecg-fm-benchmarking", "ecg_cpc", ecg_cpc),
}


def main(src: Path, only: list[str] | None = None) -> None:
    """Build every manifest (or those named) into this folder."""
    import transformers

    for name, (repo, family, build) in BUILDS.items():
        if only and name not in only:
            continue
        model, config, paths = build(src)  # on the CPU: some constructors call .item() (no meta device)
        state = {key: list(value.shape) for key, value in model.state_dict().items()}
        manifest = {"model": name, "source": {"repository": "https://github.com/" + repo.replace("+", "/"),
                                              "commit": COMMITS[repo], "paths": paths},
                    "configuration": config, "notes": NOTES[family],
                    "built_with": {"torch": torch.__version__.split("+")[0]}, "state_dict": state}
        if repo == "Edoar-do+HuBERT-ECG":
            manifest["built_with"]["transformers"] = transformers.__version__
        text = re.sub(r"\[\s+([-\d,\s]*?)\s+\]", lambda m: "[" + re.sub(r",\s*", ", ", m.group(1)) + "]",
                      json.dumps(manifest, indent=1))  # one line per key
        (HERE / f"official_{name}.json").write_text(text + "\n")
        print(name, len(state), "keys")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
