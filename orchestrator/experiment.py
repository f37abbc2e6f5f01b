"""The experiment file (YAML): one declarative description of a run, validated with clear messages.

See docs/experiment.md for every key. `ecglens run --dataset ... --model ...` builds the same
structure from the command line.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from orchestrator.attribution.compute import DEFAULT_NSAMPLES, DEFAULT_SEGMENTS
from orchestrator.datasets.base import DatasetSpec
from services.embedding.endpoint_url import Endpoint, EndpointSyntaxError, looks_like_endpoint, parse_endpoint
from services.probing.grid import SAMPLINGS
from services.probing.probes import PROBES

log = logging.getLogger(__name__)


ROBUSTNESS_PERTURBATIONS = ("identity", "gaussian_noise", "baseline_wander", "powerline_50hz", "powerline_60hz",
                            "electrode_motion", "lead_dropout", "limb_reversal", "amplitude_scale", "time_shift")
SUBGROUP_ATTRIBUTES = ("sex", "age_band", "source")


class ConfigError(ValueError):
    """An experiment file that names an unknown key or holds a value outside the allowed ones."""


DEFAULTS: dict[str, Any] = {
    "name": "experiment",
    "description": "",
    "datasets": [],
    "models": [],
    "tasks": None,  # None = every task of each dataset
    # sampling: "stratified" (every class in proportion) or "balanced" (the seed paper's: each class gives
    # the fraction of the smallest class's size).
    "scarcity": {"train_fractions": [0.1, 0.3, 1.0], "k_shots": [], "sampling": "stratified"},
    "seeds": [0, 1, 2],
    # kinds: linear (standardised logistic regression), knn (cosine), mlp, and the seed paper's families
    # random_forest, svm, gradient_boosting, decision_tree (services/probing/families.py).
    # bootstrap: patient-level resamples for 95% CIs on test metrics (0 = off).
    "probe": {"kinds": ["linear"], "cv_folds": 3, "cs": [], "bootstrap": 200},
    # Applied for every model on top of what its card asks for (rate, leads, window length).
    "preprocessing": {"window": "start", "max_windows": 6, "missing_leads": "refuse", "highpass_hz": None,
                      "lowpass_hz": None, "notch_hz": []},
    # "official": a dataset's own split where it defines one (PTB-XL strat_fold 1-8/9/10), else patient-level.
    "split": {"test_fraction": 0.3, "seed": 0, "strategy": "patient"},
    # Continuous targets from record metadata (e.g. age), probed with ridge / kNN / MLP regressors.
    "regression": {"targets": []},
    # Cross-dataset generalisation: train on one source, test on every source, on a harmonised task.
    "transfer": {"enabled": True, "task": "coarse", "min_records": 10},
    "analyses": {
        # grid: n_neighbors x min_dist, the setting with the best class silhouette in 2-D kept (the seed paper's
        # grid is [15, 30, 50, 80, 100] x [0, 0.1, 0.3, 0.5]); empty lists = the single n_neighbors / min_dist.
        # shap_top_k: also a UMAP on the k dims the linear probe's SHAP ranks highest, as the seed does (0 = off).
        "umap": {"enabled": True, "n_neighbors": 15, "min_dist": 0.1, "metric": "euclidean", "seed": 0,
                 "grid": {"n_neighbors": [15, 30], "min_dist": [0.1, 0.5]}, "shap_top_k": 50},
        "shap": {"enabled": True, "top_k": 10},
        "structure": {"enabled": True, "k": 10},
        "similarity": {"enabled": True},
        # Lead x segment SHAP through each model's endpoint: nsamples + 2 embeddings per explained ECG.
        "attribution": {"enabled": True, "ecgs_per_class": 1, "segments": DEFAULT_SEGMENTS,
                        "nsamples": DEFAULT_NSAMPLES, "baseline": "zero", "seed": 0},
    },
    # Perturbed copies of up to max_ecgs test ECGs per dataset, embedded through every served model
    # (orchestrator/perturbations.py names the perturbations and their grades 1..3; identity is the control).
    "robustness": {"enabled": True, "perturbations": list(ROBUSTNESS_PERTURBATIONS), "grades": [1, 2, 3],
                   "max_ecgs": 64, "seed": 0},
    # Probe scores per patient subgroup (full training data, every probe kind), groups under min_records left out.
    "subgroups": {"enabled": True, "attributes": list(SUBGROUP_ATTRIBUTES), "min_records": 10},
    "runtime": {"batch_size": 32, "in_flight": 2, "timeout_s": 300.0, "probing_replicas": 1,
                "analysis_replicas": 1, "ray_address": None, "ray_num_cpus": None, "cache_dir": None},
}
_MODEL_KEYS = {"name", "package", "endpoint", "replicas", "protocol", "v2", "tls", "auth"}


@dataclass(frozen=True)
class ModelEntry:
    """A model to evaluate: launched from a package/zoo name, or reached at remote endpoints."""

    name: str
    package: str | None = None
    endpoints: tuple[str, ...] = ()
    replicas: int = 1
    connection: dict = field(default_factory=dict)  # protocol, v2 overrides, tls, auth (paths/env names only)

    @property
    def remote(self) -> bool:
        """True when ECGLens does not launch the server itself."""
        return bool(self.endpoints)


@dataclass
class Experiment:
    """A validated experiment: `raw` is the merged, checked mapping (written to results.json as is)."""

    raw: dict[str, Any]
    datasets: list[DatasetSpec] = field(default_factory=list)
    models: list[ModelEntry] = field(default_factory=list)

    def without(self, names: set[str] | list[str]) -> "Experiment":
        """The same experiment minus some models (those a run had to give up); `raw` still lists them all."""
        return Experiment(self.raw, self.datasets, [m for m in self.models if m.name not in set(names)])

    # Sections are read from `raw`, so results.json records exactly what ran; each one's keys and defaults
    # are in DEFAULTS above and docs/experiment.md.
    @property
    def name(self) -> str:
        """The experiment's name."""
        return self.raw["name"]

    @property
    def tasks(self) -> list[str] | None:
        """Tasks to probe (None: every task of each dataset)."""
        return self.raw["tasks"]

    @property
    def seeds(self) -> list[int]:
        """Seeds of the probe grid (subsets, probe fits, bootstrap)."""
        return self.raw["seeds"]

    @property
    def scarcity(self) -> dict[str, list]:
        """train_fractions, k_shots and sampling of the data-scarcity sweep."""
        return self.raw["scarcity"]

    @property
    def probe(self) -> dict[str, Any]:
        """kinds, cv_folds, cs, bootstrap."""
        return self.raw["probe"]

    @property
    def preprocessing(self) -> dict[str, Any]:
        """Options applied on top of each model card's input spec."""
        return self.raw["preprocessing"]

    @property
    def split(self) -> dict[str, Any]:
        """test_fraction, seed, strategy (patient | official)."""
        return self.raw["split"]

    @property
    def regression(self) -> dict[str, list[str]]:
        """targets: continuous metadata probed with regressors."""
        return self.raw["regression"]

    @property
    def transfer(self) -> dict[str, Any]:
        """enabled, task, min_records of the cross-source transfer matrix."""
        return self.raw["transfer"]

    @property
    def analyses(self) -> dict[str, dict[str, Any]]:
        """umap, shap, structure, similarity, attribution: each with `enabled` and its parameters."""
        return self.raw["analyses"]

    @property
    def robustness(self) -> dict[str, Any]:
        """enabled, perturbations, grades, max_ecgs, seed of the robustness stage."""
        return self.raw["robustness"]

    @property
    def subgroups(self) -> dict[str, Any]:
        """enabled, attributes, min_records of the subgroup stage."""
        return self.raw["subgroups"]

    @property
    def runtime(self) -> dict[str, Any]:
        """batch_size, in_flight, timeout_s, replicas, ray_address, ray_num_cpus, cache_dir."""
        return self.raw["runtime"]


def _merge(defaults: dict, given: dict, where: str) -> dict:
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(defaults))}")
    merged = copy.deepcopy(defaults)
    for key, value in given.items():
        if isinstance(defaults[key], dict) and key not in ("datasets",):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}.{key}: expected a mapping, got {type(value).__name__}")
            merged[key] = _merge(defaults[key], value, f"{where}.{key}")
        else:
            merged[key] = value
    return merged


def _number_list(value: Any, where: str, kind: type, low: float, high: float) -> list:
    if not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise ConfigError(f"{where}: expected a list of numbers, got {value!r}")
    for v in value:
        if not low <= v <= high or (kind is int and int(v) != v):
            raise ConfigError(f"{where}: {v!r} is outside {low}..{high}" + (" or not an integer" if kind is int else ""))
    return [kind(v) for v in value]


def _model(entry: Any, k: int) -> ModelEntry:
    where = f"models[{k}]"
    if isinstance(entry, str):
        if looks_like_endpoint(entry) and not Path(entry).expanduser().is_dir():
            entry = {"endpoint": entry}
        else:
            entry = {"package": entry} if Path(entry).expanduser().is_dir() else {"name": entry}
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a zoo name, a package path, an endpoint or a mapping")
    unknown = sorted(set(entry) - _MODEL_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_MODEL_KEYS))}")
    given = entry.get("endpoint") or ()
    given = [given] if isinstance(given, str) else list(given)
    parsed = []
    for text in given:
        try:
            parsed.append(parse_endpoint(str(text)))
        except EndpointSyntaxError as err:
            raise ConfigError(f"{where}.endpoint: {err}") from None
    endpoints = tuple(e.address for e in parsed)
    entry = _with_url_settings(entry, parsed, where)
    package = entry.get("package")
    if package and not entry.get("name"):
        package_path = Path(str(package)).expanduser()
        # A package given by path is named by its folder, not the whole path (which would also place its
        # server log outside the run's folder).
        name = package_path.name if package_path.is_dir() else package
    else:
        name = entry.get("name") or package or (endpoints[0] if endpoints else None)
    if not name:
        raise ConfigError(f"{where}: give `name` (zoo model), `package` (directory) or `endpoint` (host:port)")
    if endpoints and package:
        raise ConfigError(f"{where}: `package` (launched by ECGLens) and `endpoint` (already running) exclude each other")
    replicas = entry.get("replicas", 1)
    if not isinstance(replicas, int) or replicas < 1:
        raise ConfigError(f"{where}.replicas: expected a positive integer, got {replicas!r}")
    if endpoints and "replicas" in entry:
        raise ConfigError(f"{where}.replicas: remote models have one replica per listed endpoint")
    if not endpoints and package is None:
        package = name
    connection = _connection(entry, where, bool(endpoints))
    return ModelEntry(str(name), package, endpoints, len(endpoints) or replicas, {"name": str(name), **connection})


def _with_url_settings(entry: dict, parsed: list[Endpoint], where: str) -> dict:
    """The entry with what its endpoint URL(s) state (protocol, V2 model and settings, TLS, token) merged in."""
    stated = [e for e in parsed if e.explicit or e.ca_file or e.token_file]
    if not stated:
        return entry
    first = stated[0].connection()
    for other in parsed[1:]:
        if other.connection() != parsed[0].connection():
            raise ConfigError(f"{where}.endpoint: the replicas' URLs disagree on protocol, model or settings; "
                              "replicas of one model must be called alike")
    merged = dict(entry)
    if "protocol" in entry and entry["protocol"] != first["protocol"]:
        raise ConfigError(f"{where}: protocol is {entry['protocol']!r} but the endpoint URL says "
                          f"{first['protocol']!r}")
    merged["protocol"] = first["protocol"]
    if stated[0].name and not entry.get("name"):
        merged["name"] = stated[0].name
    elif first["protocol"] == "v2" and not entry.get("name"):
        merged["name"] = first["v2"]["model_name"]
    for key in ("v2", "auth"):
        if key in first:
            section = entry.get(key) if isinstance(entry.get(key), dict) else {}
            clash = sorted(k for k in set(section) & set(first[key]) if section[k] != first[key][k])
            if clash:
                raise ConfigError(f"{where}.{key}: {', '.join(clash)} differ(s) from the endpoint URL")
            merged[key] = {**first[key], **section}
    if "tls" in first and "tls" not in entry:
        merged["tls"] = first["tls"]
    return merged


def _connection(entry: dict, where: str, remote: bool) -> dict:
    from orchestrator.endpoints import AUTH_KEYS, PROTOCOLS, TLS_KEYS

    protocol = entry.get("protocol", "ecglens")
    if protocol not in PROTOCOLS:
        raise ConfigError(f"{where}.protocol: {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    extra = {k: entry[k] for k in ("v2", "tls", "auth") if k in entry}
    if (extra or protocol != "ecglens") and not remote:
        raise ConfigError(f"{where}: protocol/v2/tls/auth apply to remote models; add `endpoint: host:port`")
    if "v2" in extra and protocol != "v2":
        raise ConfigError(f"{where}.v2: only with protocol: v2")
    for key, allowed in (("tls", TLS_KEYS), ("auth", AUTH_KEYS)):
        section = extra.get(key)
        if section is None or (key == "tls" and section is True):  # tls: true = TLS with the system's CAs
            continue
        if not isinstance(section, dict):
            raise ConfigError(f"{where}.{key}: expected a mapping")
        unknown = sorted(set(section) - set(allowed))
        if unknown:
            raise ConfigError(f"{where}.{key}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    if "v2" in extra and not isinstance(extra["v2"], dict):
        raise ConfigError(f"{where}.v2: expected a mapping (model_name, input_name, sampling_rate_hz, leads, ...)")
    return {"protocol": protocol, **extra}


def _dataset(entry: Any, k: int) -> DatasetSpec:
    where = f"datasets[{k}]"
    from orchestrator.datasets.base import open_dataset, parse_dataset_arg

    try:
        if isinstance(entry, str):
            spec = parse_dataset_arg(entry)
        elif isinstance(entry, dict) and "kind" in entry:
            spec = DatasetSpec(str(entry["kind"]), {k2: v for k2, v in entry.items() if k2 != "kind"})
        else:
            raise ConfigError(f"{where}: expected a mapping with `kind` (e.g. kind: synthetic) or a KIND:PATH string")
        # Opening validates parameters and paths now, before any server is launched.
        return open_dataset(spec).spec
    except (ValueError, FileNotFoundError, OSError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"{where}: {err}") from None


def _check_umap_grid(umap: dict, where: str) -> None:
    """Grid lists as numbers (n_neighbors integers >= 2, min_dist in 0..1) and shap_top_k >= 0, in place."""
    grid = umap["grid"]
    grid["n_neighbors"] = list(dict.fromkeys(_number_list(grid["n_neighbors"], f"{where}.grid.n_neighbors", int, 2,
                                                          10_000)))
    grid["min_dist"] = list(dict.fromkeys(_number_list(grid["min_dist"], f"{where}.grid.min_dist", float, 0, 1)))
    top = umap["shap_top_k"]
    if not isinstance(top, int) or isinstance(top, bool) or top < 0:
        raise ConfigError(f"{where}.shap_top_k: expected an integer >= 0 (0 = no UMAP on the top SHAP dimensions), "
                          f"got {top!r}")


def parse_experiment(data: Any, source: str = "experiment") -> Experiment:
    """Validate plain data (from YAML or the command line) into an Experiment."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    raw = _merge(DEFAULTS, data, source)
    if raw["runtime"]["probing_replicas"] != 1:
        log.warning("%s.runtime.probing_replicas is ignored: probe fits run as Ray tasks (see ray_num_cpus)", source)
    if raw["runtime"]["analysis_replicas"] != 1:
        log.warning("%s.runtime.analysis_replicas is ignored: analyses run as Ray tasks (see ray_num_cpus)", source)
    if not raw["datasets"]:
        raise ConfigError(f"{source}.datasets: at least one dataset is required")
    if not raw["models"]:
        raise ConfigError(f"{source}.models: at least one model is required")
    sc = raw["scarcity"]
    sc["train_fractions"] = sorted(set(_number_list(sc["train_fractions"], f"{source}.scarcity.train_fractions",
                                                    float, 1e-6, 1.0)))
    sc["k_shots"] = sorted(set(_number_list(sc["k_shots"], f"{source}.scarcity.k_shots", int, 1, 1e9)))
    if not sc["train_fractions"] and not sc["k_shots"]:
        raise ConfigError(f"{source}.scarcity: give train_fractions and/or k_shots")
    if sc["sampling"] not in SAMPLINGS:
        raise ConfigError(f"{source}.scarcity.sampling: {sc['sampling']!r} is not one of {', '.join(SAMPLINGS)} "
                          "(stratified: every class in proportion; balanced: each class gives the fraction of the "
                          "smallest class's size)")
    raw["seeds"] = _number_list(raw["seeds"], f"{source}.seeds", int, 0, 2**31 - 1)
    if not raw["seeds"]:
        raise ConfigError(f"{source}.seeds: at least one seed is required")
    tf = raw["split"]["test_fraction"]
    if not isinstance(tf, (int, float)) or not 0.05 <= tf <= 0.9:
        raise ConfigError(f"{source}.split.test_fraction: expected a number in 0.05..0.9, got {tf!r}")
    pp = raw["preprocessing"]
    from orchestrator.preprocess import MISSING_LEADS, WINDOWS

    if pp["window"] not in WINDOWS:
        raise ConfigError(f"{source}.preprocessing.window: {pp['window']!r} is not one of {', '.join(WINDOWS)}")
    if pp["missing_leads"] not in MISSING_LEADS:
        raise ConfigError(f"{source}.preprocessing.missing_leads: {pp['missing_leads']!r} is not one of "
                          f"{', '.join(MISSING_LEADS)}")
    for key in ("highpass_hz", "lowpass_hz"):
        if pp[key] is not None and (not isinstance(pp[key], (int, float)) or pp[key] <= 0):
            raise ConfigError(f"{source}.preprocessing.{key}: expected a positive number or null, got {pp[key]!r}")
    if not isinstance(pp["max_windows"], int) or pp["max_windows"] < 1:
        raise ConfigError(f"{source}.preprocessing.max_windows: expected a positive integer, got {pp['max_windows']!r}")
    pp["notch_hz"] = _number_list(pp["notch_hz"], f"{source}.preprocessing.notch_hz", float, 1, 1000)
    if raw["split"]["strategy"] not in ("patient", "official"):
        raise ConfigError(f"{source}.split.strategy: {raw['split']['strategy']!r} is not one of patient, official")
    targets = raw["regression"]["targets"]
    if not isinstance(targets, list) or not all(isinstance(t, str) and t for t in targets):
        raise ConfigError(f"{source}.regression.targets: expected a list of metadata names, e.g. [age]")
    kinds = raw["probe"]["kinds"]
    kinds = [kinds] if isinstance(kinds, str) else kinds
    bad = [k for k in kinds if k not in PROBES] if isinstance(kinds, list) else [kinds]
    if bad or not kinds:
        raise ConfigError(f"{source}.probe.kinds: {bad or kinds!r} not allowed; choose from {', '.join(PROBES)}")
    raw["probe"]["kinds"] = list(dict.fromkeys(kinds))
    if not isinstance(raw["probe"]["bootstrap"], int) or raw["probe"]["bootstrap"] < 0:
        raise ConfigError(f"{source}.probe.bootstrap: expected a non-negative integer")
    _check_umap_grid(raw["analyses"]["umap"], f"{source}.analyses.umap")
    metric = raw["analyses"]["umap"]["metric"]
    allowed = ("euclidean", "cosine", "correlation", "manhattan", "chebyshev")
    if metric not in allowed:
        raise ConfigError(f"{source}.analyses.umap.metric: {metric!r} is not one of {', '.join(allowed)}")
    _check_robustness(raw["robustness"], f"{source}.robustness")
    _check_subgroups(raw["subgroups"], f"{source}.subgroups")
    if raw["tasks"] is not None and (isinstance(raw["tasks"], str)):
        raw["tasks"] = [raw["tasks"]]
    models = [_model(m, k) for k, m in enumerate(raw["models"])]
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}.models: duplicate model names {names}; give each a distinct `name`")
    datasets = [_dataset(d, k) for k, d in enumerate(raw["datasets"])]
    if raw["tasks"]:
        from orchestrator.datasets.base import open_dataset

        for k, spec in enumerate(datasets):
            offered = list(open_dataset(spec).tasks)
            if not set(raw["tasks"]) & set(offered):
                raise ConfigError(f"{source}.tasks: datasets[{k}] ({spec.kind}) offers none of {raw['tasks']}; "
                                  f"its tasks: {', '.join(offered)}")
    raw["models"] = [{"name": m.name, "package": m.package, "endpoint": list(m.endpoints), "replicas": m.replicas,
                      **{k: v for k, v in m.connection.items() if k != "name"}} for m in models]
    raw["datasets"] = [{"kind": d.kind, **d.params} for d in datasets]
    return Experiment(raw, datasets, models)


def _check_robustness(section: dict, where: str) -> None:
    """Known perturbation names, grades in 1..3, at least two ECGs."""
    from orchestrator.perturbations import PERTURBATIONS

    names = section["perturbations"]
    if not isinstance(names, list) or any(n not in PERTURBATIONS for n in names):
        raise ConfigError(f"{where}.perturbations: expected a list from {', '.join(PERTURBATIONS)}, got {names!r}")
    section["perturbations"] = list(dict.fromkeys(names))
    section["grades"] = sorted(set(_number_list(section["grades"], f"{where}.grades", int, 1, 3)))
    if not isinstance(section["max_ecgs"], int) or section["max_ecgs"] < 2:
        raise ConfigError(f"{where}.max_ecgs: expected an integer of at least 2, got {section['max_ecgs']!r}")
    if not isinstance(section["seed"], int):
        raise ConfigError(f"{where}.seed: expected an integer, got {section['seed']!r}")


def _check_subgroups(section: dict, where: str) -> None:
    """Known attributes and a positive minimum group size."""
    attributes = section["attributes"]
    if not isinstance(attributes, list) or any(a not in SUBGROUP_ATTRIBUTES for a in attributes):
        raise ConfigError(f"{where}.attributes: expected a list from {', '.join(SUBGROUP_ATTRIBUTES)}, "
                          f"got {attributes!r}")
    if not isinstance(section["min_records"], int) or section["min_records"] < 2:
        raise ConfigError(f"{where}.min_records: expected an integer of at least 2, got {section['min_records']!r}")


def load_experiment(path: Path | str) -> Experiment:
    """Read and validate an experiment YAML file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such experiment file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    return parse_experiment(data, str(path))


DEMO: dict[str, Any] = {
    "name": "demo",
    "description": ("The embedded default: synthetic 12-lead ECGs from two simulated sites (Europe-like 500 Hz / 50 Hz "
                    "mains and South-America-like 400 Hz / 60 Hz mains), six conditions; the random-init and handcrafted controls against two FMs pretrained here "
                    "(contrastive CMSC and masked signal modelling)."),
    "datasets": [{"kind": "synthetic", "sites": ["eu", "sa"], "records_per_site": 150, "seed": 0}],
    "models": ["random-resnet", "handcrafted", "cmsc-ecg-small", "msm-ecg-small"],
    "tasks": ["condition"],
    "scarcity": {"train_fractions": [0.1, 0.3, 1.0]},
    "probe": {"kinds": ["linear", "knn", "mlp", "random_forest", "svm", "gradient_boosting", "decision_tree"]},
    "regression": {"targets": ["age"]},
    "seeds": [0, 1, 2],
}
