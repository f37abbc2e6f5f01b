"""ECG-CPC (Al-Masud, Lopez Alcaraz, Strodthoff; ICLR 2026): conv encoder + causal S4 predictor, Lightning checkpoint.

Sources read (github.com/AI4HealthUOL/ecg-fm-benchmarking @ 6367295666569d63d6642594bbe3ae9ac56a1644):

* configuration - ``code/conf/config_cpc_ecg_s4_heedb.yaml`` (``ts/enc: rnn``, ``ts/pred: s4``,
  ``ts/head_ssl: mlp``, ``ts/loss: cpc``; base fs 240 Hz, input_size 10 s, 12 channels, normalize false;
  encoder features [512] * 4, kernel sizes [3, 1, 1, 1], strides [2, 1, 1, 1]; predictor causal, state_dim 8,
  model_dim 512, backbone s42; head_ssl multi_prediction true, bias false) over the dataclass defaults of
  ``clinical_ts/ts/encoder.py`` (``RNNEncoderConfig``: BatchNorm on, dilations 1), ``clinical_ts/ts/s4.py``
  (``S4PredictorConfig``: 4 layers, prenorm false, batchnorm false -> LayerNorm) and ``clinical_ts/ts/head.py``
  (``MLPHeadConfig``: one Linear, heads 0).
* architecture - ``clinical_ts/task/ecg.py`` ``ECGModel`` (an ``SSLModel``, ``template_model.py``) holds
  ``ts_encoder`` = ``TimeSeriesEncoder`` (``template_modules.py``) with ``encoder`` (``RNNEncoder``, "actually
  just a conv encoder": ``layers.i`` = Sequential(Conv1d(bias=False, padding (k-1)//2), BatchNorm1d, ReLU)
  from ``basic_conv1d._conv1d``), ``predictor`` (``S4Predictor`` whose ``predictor`` is ``S4Model``; see
  ``s4.py`` here) and ``head_ssl`` (``MLPHead``: ``proj`` = Sequential(Linear(512, 512, bias=False)), the CPC
  prediction head; loaded, not exported). ``CPCLoss`` has no parameters.
* checkpoint - a PyTorch Lightning ``.ckpt`` (``{'state_dict', 'epoch', 'global_step', 'hyper_parameters', ...}``
  with the hyper-parameters an OmegaConf DictConfig); ``SSLModel.load_weights_from_checkpoint`` reads
  ``checkpoint['state_dict']``. The released archive (figshare 30192604) pairs it with a
  ``config_last_*_ckpt.yaml`` whose ``trainer.pretrained`` names it; either file is accepted here.
* input and pooling - the benchmark's ``CPCWrapper`` (``code/clinical_ts/models/fm_ecg.py``) feeds raw mV
  (``--normalize`` is not passed in ``run.sh``; ``base.normalize`` is false) in the canonical lead order of
  ``preprocess_ecg_dataset.ipynb`` (I, II, III, aVR, aVL, aVF, V1..V6) resampled to 240 Hz, takes
  ``model(seq=x)["seq"]`` (the S4 predictor's output sequence; with the CPC loss configured,
  ``TimeSeriesEncoder.forward`` returns the predictor output of the clean input) and, for linear probing,
  ``sequence_features.mean(dim=1)``: that 512-d mean is the embedding here.

The exported graph takes [batch, 12, T] in mV at 240 Hz (T = 2400, the 10 s pre-training window, unless the
``window_s`` option says otherwise; the benchmark's fine-tuning uses 2.5 s crops) and holds the encoder, the
S4 predictor - its convolution kernels, which depend only on the weights, computed once at export by the
ported NPLR kernel and stored as FFT spectra - and the mean pooling.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from services.embedding.zoo.official.checkpoint import (OfficialCheckpointError, first_shape, key_indices,
                                                        load_checkpoint, load_strict, wrapped_state)
from services.embedding.zoo.official.export import card_frame, param_count, write_onnx
from services.embedding.zoo.official.s4 import S4Model

FM = "ecg-cpc"
DEFAULT_NAME = "ecg-cpc"
VERSION = "1.0.0"
LICENSE = "unknown"  # the repository has no LICENSE file; the figshare record was not readable here
SOURCE_REPO = "https://github.com/AI4HealthUOL/ecg-fm-benchmarking"
SOURCE_COMMIT = "6367295666569d63d6642594bbe3ae9ac56a1644"
CHECKPOINT_URL = ("the .ckpt in ECG-CPC_Checkpoint_zip "
                  "(figshare.com/articles/dataset/ECG-CPC_Checkpoint_zip/30192604), linked from the README of "
                  "https://github.com/AI4HealthUOL/ecg-fm-benchmarking")
PAPER = ("Al-Masud MA, Lopez Alcaraz JM, Strodthoff N. Benchmarking ECG Foundational Models: A Reality Check "
         "Across Clinical Tasks. ICLR 2026. arXiv:2509.25095")
OBJECTIVE = ("contrastive predictive coding: a causal S4 predictor's output at step i identifies the conv "
             "encoder's output 14 steps ahead among negatives from the same sequence (pre-trained on HEEDB)")
LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
SAMPLING_RATE_HZ = 240.0
NUM_SAMPLES = 2400
OPTIONS = {"window_s": "seconds of ECG per embedding (default 10, the pre-training window; the benchmark "
                       "fine-tunes on 2.5 s crops); at most the checkpoint's S4 kernel length allows"}
ENC = "ts_encoder.encoder.layers."
PRED = "ts_encoder.predictor.predictor."

# config_cpc_ecg_s4_heedb.yaml over the dataclass defaults (l_max = 10 s x 240 Hz / stride 2 tokens).
OFFICIAL_CONFIG = {"input_channels": 12, "features": [512, 512, 512, 512], "kss": [3, 1, 1, 1],
                   "strides": [2, 1, 1, 1], "model_dim": 512, "state_dim": 8, "layers": 4, "causal": True,
                   "l_max": 1200, "prenorm": False, "layer_norm": True, "head_ssl": [512, 512], "head_bias": False}


# -------------------------------------------------------- clinical_ts modules (names kept, inference only)


class RNNEncoder(nn.Module):
    """The conv encoder: Conv1d(no bias) - BatchNorm1d - ReLU per layer; [B, C, T] -> [B, T', F]."""

    def __init__(self, input_channels: int, features: list[int], kss: list[int], strides: list[int]):
        super().__init__()
        layers = []
        for i, (f, k, s) in enumerate(zip(features, kss, strides)):
            c_in = input_channels if i == 0 else features[i - 1]
            layers.append(nn.Sequential(nn.Conv1d(c_in, f, kernel_size=k, stride=s, padding=(k - 1) // 2,
                                                  bias=False), nn.BatchNorm1d(f), nn.ReLU(True)))
        self.layers = nn.Sequential(*layers)

    def forward(self, seq):
        """{'seq': layers(seq).transpose(1, 2)} of the authors, returned as the tensor."""
        return self.layers(seq).transpose(1, 2)


class S4Predictor(nn.Module):
    """Holds the S4Model as `predictor` (input projection only when the encoder width differs)."""

    def __init__(self, d_input: int, cfg: dict):
        super().__init__()
        self.predictor = S4Model(d_input=d_input if d_input != cfg["model_dim"] else None,
                                 d_state=cfg["state_dim"], d_model=cfg["model_dim"], n_layers=cfg["layers"],
                                 l_max=cfg["l_max"], bidirectional=not cfg["causal"], prenorm=cfg["prenorm"],
                                 layer_norm=cfg["layer_norm"])

    def forward(self, seq):
        """S4Model over [B, T', F] -> [B, T', model_dim]."""
        return self.predictor(seq)


class MLPHead(nn.Module):
    """The CPC prediction head (multi_prediction, no hidden layer): proj = Sequential(Linear)."""

    def __init__(self, d_in: int, d_out: int, bias: bool):
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(d_in, d_out, bias=bias))


class TimeSeriesEncoder(nn.Module):
    """encoder -> predictor (head_ssl and the CPC loss are pre-training only)."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.encoder = RNNEncoder(cfg["input_channels"], cfg["features"], cfg["kss"], cfg["strides"])
        self.predictor = S4Predictor(cfg["features"][-1], cfg)
        self.head_ssl = MLPHead(*cfg["head_ssl"], cfg["head_bias"]) if cfg["head_ssl"] else None

    def forward(self, seq):
        """[B, C, T] -> the predictor's output sequence [B, T', model_dim]."""
        return self.predictor(self.encoder(seq))


class ECGModel(nn.Module):
    """The Lightning module's parameter-holding part: `ts_encoder` (its keys are the checkpoint's)."""

    def __init__(self, **cfg):
        super().__init__()
        self._config = {**OFFICIAL_CONFIG, **cfg}
        self.ts_encoder = TimeSeriesEncoder(self._config)

    def tokens(self, num_samples: int) -> int:
        """Sequence length after the conv encoder for num_samples input samples."""
        length = num_samples
        for k, s in zip(self._config["kss"], self._config["strides"]):
            length = (length + 2 * ((k - 1) // 2) - k) // s + 1
        return length

    def forward(self, seq):
        """[B, 12, T] mV -> mean over time of the S4 predictor output, [B, model_dim]."""
        return self.ts_encoder(seq).mean(dim=1)

    def config(self) -> dict:
        """The architecture arguments."""
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self._config.items()}


def build(config: dict | None = None) -> ECGModel:
    """ECGModel with the released configuration (or a variant of it), in eval mode."""
    return ECGModel(**(config or {})).eval()


# ------------------------------------------------------------------------------------------- checkpoint


def infer_config(state: dict) -> dict:
    """The architecture a state dict implies. Strides, prenorm and the S4 rank are not visible in shapes and
    stay the published configuration's."""
    cfg = {k: (list(v) if isinstance(v, list) else v) for k, v in OFFICIAL_CONFIG.items()}
    convs = key_indices(state, ENC.replace(".", r"\.") + r"(\d+)\.0\.weight")
    if convs:
        shapes = [tuple(state[f"{ENC}{i}.0.weight"].shape) for i in convs]
        cfg["input_channels"] = shapes[0][1]
        cfg["features"] = [s[0] for s in shapes]
        cfg["kss"] = [s[2] for s in shapes]
        cfg["strides"] = (OFFICIAL_CONFIG["strides"] + [1] * len(shapes))[:len(shapes)]
    layers = key_indices(state, PRED.replace(".", r"\.") + r"s4_layers\.(\d+)\.")
    if layers:
        cfg["layers"] = layers[-1] + 1
    c = first_shape(state, [f"{PRED}s4_layers.0.kernel.kernel.C"])
    if c:
        cfg["causal"] = c[0] == 1
        cfg["model_dim"], cfg["state_dim"] = c[1], 2 * c[2]
    omega = first_shape(state, [f"{PRED}s4_layers.0.kernel.kernel.omega"])
    if omega:
        cfg["l_max"] = 2 * (omega[0] - 1)
    cfg["layer_norm"] = f"{PRED}norms.0.running_mean" not in state
    head = first_shape(state, ["ts_encoder.head_ssl.proj.0.weight"])
    cfg["head_ssl"] = [head[1], head[0]] if head else None
    cfg["head_bias"] = "ts_encoder.head_ssl.proj.0.bias" in state
    return cfg


def weights_file(path: Path | str) -> Path:
    """The .ckpt itself, or the one a config_last_*_ckpt.yaml names in trainer.pretrained."""
    import yaml

    path = Path(path).expanduser()
    if path.suffix not in (".yaml", ".yml"):
        return path
    try:
        pretrained = (yaml.safe_load(path.read_text()) or {}).get("trainer", {}).get("pretrained", "")
    except (OSError, yaml.YAMLError, AttributeError) as err:
        raise OfficialCheckpointError(f"{path}: not a readable ECG-CPC config ({err})") from None
    if not pretrained:
        raise OfficialCheckpointError(f"{path}: the config names no checkpoint in trainer.pretrained")
    ckpt = Path(pretrained)
    return ckpt if ckpt.is_absolute() and ckpt.is_file() else path.parent / Path(pretrained).name


def _model_state(ckpt, source: str) -> dict:
    """The ECGModel state dict from a Lightning checkpoint ({'state_dict': ...}) or a bare state dict."""
    return wrapped_state(ckpt, "state_dict", source, "a PyTorch Lightning checkpoint ({'state_dict': ...})")


def load_official(checkpoint_path: Path | str) -> ECGModel:
    """The authors' Lightning .ckpt (or its config yaml) -> ECGModel, loaded strictly."""
    path = weights_file(checkpoint_path)
    source = str(path)
    state = _model_state(load_checkpoint(path, inert_metadata=True), source)
    net = build(infer_config(state))
    load_strict(net, state, FM, source)
    return net.eval()


# ----------------------------------------------------------------------------------------------- export


class ECGCPCEmbedding(nn.Module):
    """What model.onnx computes: [B, 12, T] mV at 240 Hz -> encoder -> S4 predictor -> mean over time.

    A fresh copy of the model whose S4 layers hold their kernels' spectra for this window as constants.
    """

    def __init__(self, net: ECGModel, num_samples: int) -> None:
        super().__init__()
        self.net = build(net.config())
        self.net.load_state_dict(net.state_dict())
        tokens = self.net.tokens(num_samples)
        for layer in self.net.ts_encoder.predictor.predictor.s4_layers:
            layer.freeze_kernel(tokens)

    def forward(self, ecg: torch.Tensor) -> torch.Tensor:
        """[B, 12, T] wire ECG -> [B, model_dim] embedding."""
        return self.net(ecg)


def card(config: dict, params: int, num_samples: int, exporter: str = "") -> dict:
    """The package's card.yaml content for a loaded ECG-CPC configuration and window."""
    published = all(config[k] == v for k, v in OFFICIAL_CONFIG.items())
    seconds = num_samples / SAMPLING_RATE_HZ
    direction = "causal" if config["causal"] else "bidirectional"
    return card_frame(
        name=DEFAULT_NAME, version=VERSION, license=LICENSE, objective=OBJECTIVE,
        description=(f"ECG-CPC ({'as released' if published else 'non-published variant'}): conv encoder "
                     f"({len(config['features'])} layers, {config['features'][-1]} channels, stride "
                     f"{'x'.join(map(str, config['strides']))}) and a {direction} "
                     f"S4 predictor ({config['layers']} layers, d_model {config['model_dim']}, state "
                     f"{config['state_dim']}); embedding = mean over time of the predictor output "
                     f"({config['model_dim']}-d). Weights: the checkpoint named in build.checkpoint_file "
                     "(sha256 in build.checkpoint_sha256)."),
        params=params, sampling_rate_hz=SAMPLING_RATE_HZ, leads=LEADS[:config["input_channels"]],
        num_samples=num_samples, normalization="none", embedding_dim=int(config["model_dim"]),
        source={"repository": SOURCE_REPO, "commit": SOURCE_COMMIT, "checkpoint": CHECKPOINT_URL, "paper": PAPER,
                "license_file": "none in the repository (no licence stated for code or checkpoint); check the "
                                "figshare record's licence before redistributing",
                "files": ["code/conf/config_cpc_ecg_s4_heedb.yaml", "code/clinical_ts/template_model.py",
                          "code/clinical_ts/template_modules.py", "code/clinical_ts/ts/encoder.py",
                          "code/clinical_ts/ts/s4.py", "code/clinical_ts/ts/s4_modules/s42.py",
                          "code/clinical_ts/ts/s4_modules/s4_model.py", "code/clinical_ts/ts/head.py",
                          "code/clinical_ts/models/fm_ecg.py", "code/clinical_ts/models/ecg_foundation_models/"
                          "ecg_cpc/basic_io.py", "run.sh"]},
        notes={"preprocessing_in_graph": [],
               "preprocessing_outside": ("the authors feed raw mV resampled to 240 Hz (no filter, no "
                                         "normalisation); ECGLens' preprocessing resamples to the card's rate "
                                         "(resample_poly)"),
               "pooling_in_graph": "mean over time of the S4 predictor output (CPCWrapper, linear evaluation)",
               "s4_kernel": ("the SSM convolution kernels depend only on the weights: computed at export by the "
                             "ported NPLR kernel (Cauchy sum in plain torch instead of pykeops) and stored as "
                             "rfft spectra; the graph convolves by FFT as the authors do"),
               "window": (f"{seconds:g} s at 240 Hz ({num_samples} samples); pre-training used 10 s, the "
                          "benchmark's fine-tuning 2.5 s crops"),
               "units": "mV (the model is not scale invariant)",
               "head": "head_ssl (CPC prediction head) is loaded but not exported"},
        build={"builder": "services.embedding.zoo.official.ecg_cpc", "exporter": exporter,
               "architecture": {**config, "published_size": published}})


def export(module: ECGModel, out_dir: Path | str, window_s: float = NUM_SAMPLES / SAMPLING_RATE_HZ) -> dict:
    """Write out_dir/model.onnx (encoder + S4 predictor + mean, dynamic batch) for window_s seconds; return the card."""
    num_samples = int(round(float(window_s) * SAMPLING_RATE_HZ))
    tokens = module.tokens(num_samples) if num_samples > 0 else 0
    limit = module.ts_encoder.predictor.predictor.s4_layers[0].kernel.kernel.L
    if tokens < 1 or tokens > limit:
        seconds = limit * module.config()["strides"][0] / SAMPLING_RATE_HZ
        raise OfficialCheckpointError(f"window_s={window_s} gives {tokens} S4 steps; the checkpoint's kernels "
                                      f"cover 1..{limit} steps ({seconds:g} s)")
    wrapper = ECGCPCEmbedding(module.eval(), num_samples).eval()
    example = torch.zeros(2, module.config()["input_channels"], num_samples)
    exporter = write_onnx(wrapper, example, out_dir)
    head = module.ts_encoder.head_ssl
    params = param_count(module) - (param_count(head) if head is not None else 0)
    return card(module.config(), params, num_samples, exporter)
