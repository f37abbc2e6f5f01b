"""Input-level attribution through a served model: which leads and time segments drive a probe's decision.

Players. An ECG window [L, T] is cut into G = L x S groups: every lead split into S equal time segments (default
S = 4, i.e. 2.5 s each for a 10-s window; 48 groups for 12 leads). Group g = lead * S + segment (lead-major).

Masking baseline. A coalition z in {0, 1}^G keeps the groups with z = 1 and overwrites every sample of a group
with z = 0 by a baseline value of that lead:

* ``"zero"`` (default): 0 mV. ECGLens windows are baseline-corrected by preprocessing (high-pass / wander
  removal), so 0 mV is the ECG's own isoelectric line and a masked group reads as a flat, silent lead segment.
* ``"mean"``: the lead's mean over the record, the isoelectric level when baseline wander was *not* removed.

A flat segment is itself unlike any training ECG, so the values answer "what does the probe lose when this part of
the signal is flattened", not "what would a plausible counterfactual ECG do".

Value function. f_c(z) = the probe's logit of class c on embed(mask(x, z)), where embed is the model's OWN gRPC
endpoint (EmbeddingClient): attribution runs through exactly the served model the benchmark probed.

Explainer. The real ``shap.KernelExplainer`` on the binary coalition space: its model maps a coalition matrix
[n, G] to logits [n, C]; the background is the single all-zeros coalition (every group masked), so the base value
is the logit of the fully masked ECG and base + sum(phi) equals the logit of the original ECG (KernelExplainer
enforces this efficiency constraint exactly). ``l1_reg=False`` so every group is estimated (shap's default keeps
only 10 features); link identity (logit units).

Cost. KernelExplainer evaluates nsamples coalitions (every coalition, i.e. exact Shapley values, when nsamples >=
2**G - 2), plus the background and the unmasked ECG: the endpoint embeds nsamples + 2 masked ECGs per explained
ECG. The default nsamples = 128 gives 130 embeddings per ECG; shap's "auto" (2G + 2048 = 2144 for 48 groups) is
about 16x that and gives lower-variance values. Below 2G + 2 samples (98 for 48 groups) the weighted regression is
near-singular and the values are noise, so that is refused. Measured on a busy 2-core host: 6 ECGs x 258 = 1548
embeddings through the handcrafted package in about 27 s (~17 ms per embedding, its feature extractor dominates).
With the zero baseline a fully masked ECG is far from anything a model saw, so base values and |phi| can be large
(tens of logit units for handcrafted): compare groups within a class (lead_heatmap normalises per class).

Execution: record, evaluate, replay. Which coalitions KernelExplainer samples depends only on G, nsamples and the
seed, never on the model's outputs. So (1) a dry run of the explainer records the coalitions; (2) every ECG x
coalition is embedded in parallel - a thread pool keeping ``in_flight`` requests of the card's max_batch_size
outstanding, or one Ray task per ECG when Ray is initialised; (3) each ECG's explainer is replayed with the same
seed against a lookup of the computed logits. shap draws from the global np.random; its state is saved and
restored around every use, so callers' random streams are untouched, and for a seed the values are identical
whatever the batch size, in_flight or thread/Ray choice (as long as the model embeds each ECG independently of its
batch mates; a backend whose float results depend on batch composition differs in the last bits).

Logits, not probabilities, are explained: they are additive in the probe and comparable across classes only up to
the softmax's shared offset for a multi-class probe (class 0 of a binary probe is the constant 0 and gets no
attribution).
"""
from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from orchestrator.attribution.clinical import TOP_K, top_leads
from services.probing.logistic import linear_logits

BASELINES: dict[str, str] = {
    "zero": "0 mV (the isoelectric line of a baseline-corrected ECG)",
    "mean": "the lead's mean over the record",
}
DEFAULT_SEGMENTS = 4
DEFAULT_NSAMPLES = 128  # the one default: the experiment file's analyses.attribution.nsamples uses it too

# shap samples with the global np.random: one explainer at a time, so a seed means the same coalitions.
_RNG_LOCK = threading.Lock()


@dataclass
class AttributionResult:
    """Group Shapley values of probe logits per ECG, their summaries and how they were computed."""

    shap_values: np.ndarray  # [N, C, L, S], logit units
    base_values: np.ndarray  # [N, C], logit of the fully masked ECG
    logits: np.ndarray  # [N, C], logit of the unmasked ECG (= base + sum of phi)
    class_names: list[str]
    leads: list[str]
    segments: list[str]  # labels, e.g. "0-2.5 s"
    lead_importance: dict[str, dict[str, float]]  # class -> lead -> mean over ECGs of sum over segments |phi|
    segment_importance: dict[str, dict[str, float]]  # class -> segment -> mean over ECGs of sum over leads |phi|
    explainer: dict[str, Any]
    n_embeddings: int
    wall_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    def additivity_error(self) -> float:
        """Largest |base + sum(phi) - logit| over ECGs and classes (≈ 0: KernelExplainer enforces it)."""
        total = self.base_values + self.shap_values.sum(axis=(2, 3))
        return float(np.max(np.abs(total - self.logits))) if self.logits.size else 0.0

    def top_leads(self, class_name: str, k: int = TOP_K) -> list[str]:
        """The k leads with the largest importance for a class, most important first (ties in lead order)."""
        return top_leads(self.lead_importance[class_name], self.leads, k)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (mean |phi| per class, lead and segment instead of per-ECG arrays)."""
        return {
            "class_names": self.class_names, "leads": self.leads, "segments": self.segments,
            "lead_importance": self.lead_importance, "segment_importance": self.segment_importance,
            "mean_abs_shap": np.abs(self.shap_values).mean(axis=0).tolist() if len(self.shap_values) else [],
            "n_ecgs": int(len(self.shap_values)), "n_embeddings": self.n_embeddings, "wall_s": self.wall_s,
            "max_additivity_error": self.additivity_error(), "explainer": self.explainer, "notes": self.notes,
        }


@dataclass(frozen=True)
class _Probe:
    """A linear probe in the services.probing.logistic logit convention."""

    coef: np.ndarray
    intercept: np.ndarray
    mean: np.ndarray
    scale: np.ndarray

    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        """[n, D] embeddings to [n, C] logits."""
        return linear_logits(embeddings, self.coef, self.intercept, self.mean, self.scale)


# ---------------------------------------------------------------------------------------------
# Input checks (all before any RPC)
# ---------------------------------------------------------------------------------------------

def _as_probe(probe: Any) -> _Probe:
    """A probe from a mapping or an object (e.g. ProbeResult) with coef, intercept, mean, scale."""
    get = probe.get if isinstance(probe, Mapping) else (lambda key: getattr(probe, key, None))
    parts = {k: get(k) for k in ("coef", "intercept", "mean", "scale")}
    missing = [k for k, v in parts.items() if v is None]
    if missing:
        raise ValueError(f"probe lacks {', '.join(missing)}; expected coef [C, D], intercept [C], mean [D], scale [D]")
    coef = np.atleast_2d(np.asarray(parts["coef"], dtype=np.float64))
    intercept = np.asarray(parts["intercept"], dtype=np.float64).reshape(-1)
    mean = np.asarray(parts["mean"], dtype=np.float64).reshape(-1)
    scale = np.asarray(parts["scale"], dtype=np.float64).reshape(-1)
    n_classes, dim = coef.shape
    if intercept.shape != (n_classes,) or mean.shape != (dim,) or scale.shape != (dim,):
        raise ValueError(f"probe shapes disagree: coef {list(coef.shape)}, intercept {list(intercept.shape)}, "
                         f"mean {list(mean.shape)}, scale {list(scale.shape)}")
    return _Probe(coef, intercept, mean, scale)


def _check_ecgs(ecgs: Any, leads: Sequence[str]) -> np.ndarray:
    """ecgs as float32 [N, L, T] with L == len(leads) and only finite values."""
    x = np.asarray(ecgs, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"ecgs must be [N, leads, samples], got shape {list(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError("ecgs is empty: nothing to attribute")
    if x.shape[1] != len(leads):
        raise ValueError(f"ecgs have {x.shape[1]} leads but `leads` names {len(leads)} ({', '.join(leads)})")
    if not np.all(np.isfinite(x)):
        raise ValueError("ecgs contain NaN or infinite values")
    return x


def effective_nsamples(n_groups: int, nsamples: int) -> int:
    """How many coalitions KernelExplainer samples: nsamples, capped at all 2**G - 2 non-trivial ones."""
    return min(int(nsamples), 2 ** n_groups - 2) if n_groups <= 30 else int(nsamples)


def is_exact(n_groups: int, nsamples: int) -> bool:
    """True when nsamples covers every coalition, so KernelExplainer returns exact Shapley values."""
    return n_groups <= 30 and nsamples >= 2 ** n_groups - 2


def _check_settings(n_groups: int, segments: int, n_samples: int, baseline: str, nsamples: int,
                    in_flight: int, batch_size: int | None) -> None:
    """ValueError naming the first bad setting."""
    if isinstance(segments, bool) or not isinstance(segments, (int, np.integer)) or not 1 <= segments <= n_samples:
        raise ValueError(f"segments must be an integer in 1..{n_samples} (samples per lead), got {segments!r}")
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {', '.join(BASELINES)}, got {baseline!r}")
    if isinstance(nsamples, bool) or not isinstance(nsamples, (int, np.integer)):
        raise ValueError(f"nsamples must be an integer, got {nsamples!r}")
    if not is_exact(n_groups, nsamples) and nsamples < 2 * n_groups + 2:
        # Near G coalitions KernelExplainer's weighted regression is (almost) singular: at 64 samples for 48
        # groups the values were pure noise, from about 2G on the known answers came out.
        raise ValueError(f"nsamples must be at least 2G + 2 = {2 * n_groups + 2} for {n_groups} groups "
                         f"(recommended >= {DEFAULT_NSAMPLES}), got {nsamples}")
    if in_flight < 1 or (batch_size is not None and batch_size < 1):
        raise ValueError(f"in_flight and batch_size must be >= 1, got {in_flight} and {batch_size}")


def _check_card(card: Any, leads: Sequence[str], n_samples: int, dim: int, address: str) -> None:
    """ValueError when the served model expects other leads, another window or another embedding width."""
    where = f"model {card.name!r} at {address}"
    if list(card.leads) != list(leads):
        raise ValueError(f"`leads` are {', '.join(leads)} but {where} expects {', '.join(card.leads)}")
    if int(card.num_samples) != n_samples:
        raise ValueError(f"ecgs have {n_samples} samples per lead but {where} expects {card.num_samples}")
    if int(card.embedding_dim) != dim:
        raise ValueError(f"the probe has D={dim} but {where} returns {card.embedding_dim}-dim embeddings")


# ---------------------------------------------------------------------------------------------
# Groups and masking
# ---------------------------------------------------------------------------------------------

def segment_edges(n_samples: int, segments: int) -> np.ndarray:
    """Sample boundaries [S + 1] of S (near-)equal time segments."""
    return np.round(np.linspace(0, n_samples, segments + 1)).astype(np.int64)


def segment_labels(edges: np.ndarray, sampling_rate_hz: float) -> list[str]:
    """Human labels such as "0-2.5 s" for each segment."""
    secs = np.asarray(edges, dtype=np.float64) / float(sampling_rate_hz)
    return [f"{a:.3g}-{b:.3g} s" for a, b in zip(secs[:-1], secs[1:])]


def baseline_values(x: np.ndarray, baseline: str) -> np.ndarray:
    """Per-lead fill value [L] for one ECG [L, T]."""
    if baseline == "zero":
        return np.zeros(x.shape[0], np.float32)
    return x.mean(axis=1, dtype=np.float64).astype(np.float32)


def mask_ecgs(x: np.ndarray, coalitions: np.ndarray, fill: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Masked copies [k, L, T] of one ECG [L, T]: groups with coalition 0 become the lead's fill value."""
    k = len(coalitions)
    n_leads, n_segments = x.shape[0], len(edges) - 1
    keep = np.repeat(np.asarray(coalitions, bool).reshape(k, n_leads, n_segments), np.diff(edges), axis=2)
    return np.where(keep, x[None], fill[None, :, None]).astype(np.float32, copy=False)


# ---------------------------------------------------------------------------------------------
# Coalition sampling and replay with shap.KernelExplainer
# ---------------------------------------------------------------------------------------------

@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed the global np.random for shap and restore the caller's state afterwards."""
    with _RNG_LOCK:
        state = np.random.get_state()
        np.random.seed(int(seed) % 2 ** 32)
        try:
            yield
        finally:
            np.random.set_state(state)


def _explain(value_fn: Callable[[np.ndarray], np.ndarray], n_groups: int, nsamples: int,
             seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(phi [G, C], base [C]) from KernelExplainer on coalitions, all-masked background."""
    import shap

    with _seeded(seed):
        explainer = shap.KernelExplainer(value_fn, np.zeros((1, n_groups)), link="identity")
        phi = explainer.shap_values(np.ones(n_groups), nsamples=nsamples, l1_reg=False, silent=True)
    base = np.atleast_1d(np.asarray(explainer.expected_value, dtype=np.float64))
    return np.asarray(phi, dtype=np.float64).reshape(n_groups, -1), base


class _Recorder:
    """A value function that records the coalitions it is asked for and answers zeros."""

    def __init__(self, n_classes: int) -> None:
        self.n_classes = n_classes
        self.rows: list[np.ndarray] = []

    def __call__(self, z: np.ndarray) -> np.ndarray:
        self.rows.append(np.asarray(z) > 0.5)
        return np.zeros((len(z), self.n_classes))


def sample_coalitions(n_groups: int, n_classes: int, nsamples: int, seed: int) -> np.ndarray:
    """The distinct coalitions [K, G] (bool) KernelExplainer evaluates for this seed, in first-use order."""
    recorder = _Recorder(n_classes)
    _explain(recorder, n_groups, nsamples, seed)
    rows = np.concatenate(recorder.rows)
    _, first = np.unique(np.packbits(rows, axis=1), axis=0, return_index=True)
    return rows[np.sort(first)]


class _Lookup:
    """A value function answering from precomputed logits; unseen coalitions go to a fallback."""

    def __init__(self, coalitions: np.ndarray, logits: np.ndarray,
                 fallback: Callable[[np.ndarray], np.ndarray]) -> None:
        self.index = {row.tobytes(): i for i, row in enumerate(np.asarray(coalitions, bool))}
        self.logits = logits
        self.fallback = fallback

    def __call__(self, z: np.ndarray) -> np.ndarray:
        rows = np.asarray(z) > 0.5
        out = np.empty((len(rows), self.logits.shape[1]))
        missing = []
        for i, row in enumerate(rows):
            j = self.index.get(row.tobytes())
            if j is None:
                missing.append(i)
            else:
                out[i] = self.logits[j]
        if missing:  # only if shap's sampling ever came to depend on outputs; correct, just slower
            out[missing] = self.fallback(rows[missing])
        return out


# ---------------------------------------------------------------------------------------------
# Evaluating coalitions through the endpoint
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Job:
    """Everything needed to evaluate coalitions of ECGs, shippable to a Ray task."""

    coalitions: np.ndarray
    edges: np.ndarray
    probe: _Probe
    batch_size: int
    in_flight: int


def _evaluate(client: Any, ecgs: np.ndarray, fills: np.ndarray, job: _Job) -> np.ndarray:
    """Logits [N, K, C] of every ECG under every coalition, `in_flight` requests of batch_size outstanding."""
    n_coal = len(job.coalitions)
    tasks = [(i, start) for i in range(len(ecgs)) for start in range(0, n_coal, job.batch_size)]

    def run(task: tuple[int, int]) -> np.ndarray:
        i, start = task
        # The masked batch is built inside the worker, so memory stays at in_flight batches.
        batch = mask_ecgs(ecgs[i], job.coalitions[start:start + job.batch_size], fills[i], job.edges)
        return job.probe.logits(client.embed(batch))

    with ThreadPoolExecutor(max_workers=job.in_flight, thread_name_prefix="attr") as pool:
        parts = list(pool.map(run, tasks))
    out = np.empty((len(ecgs), n_coal, job.probe.coef.shape[0]))
    for (i, start), part in zip(tasks, parts):
        out[i, start:start + len(part)] = part
    return out


def _evaluate_remote(address: str, timeout_s: float, wire_dtype: str, ecg: np.ndarray, fill: np.ndarray,
                     job: _Job) -> np.ndarray:
    """Ray task body: one ECG's logits [K, C] through its own channel to the endpoint."""
    from services.embedding.client import EmbeddingClient

    with EmbeddingClient(address, timeout_s=timeout_s, wire_dtype=wire_dtype) as client:
        return _evaluate(client, ecg[None], fill[None], job)[0]


def _ray_ready() -> bool:
    """True when Ray is imported and initialised in this process (never imports Ray itself)."""
    ray = sys.modules.get("ray")
    return bool(ray is not None and ray.is_initialized())


def _evaluate_ray(client: Any, ecgs: np.ndarray, fills: np.ndarray, job: _Job) -> np.ndarray:
    """Fan ECGs out as Ray tasks, each with its own channel and `in_flight` requests."""
    import ray

    remote = ray.remote(num_cpus=1, max_retries=0)(_evaluate_remote)
    job_ref = ray.put(job)
    refs = [remote.remote(client.address, client.timeout_s, client.wire_dtype, ecgs[i], fills[i], job_ref)
            for i in range(len(ecgs))]
    return np.stack(ray.get(refs))


# ---------------------------------------------------------------------------------------------
# The public entry point
# ---------------------------------------------------------------------------------------------

def _importance(phi: np.ndarray, class_names: Sequence[str], leads: Sequence[str],
                segments: Sequence[str]) -> tuple[dict, dict]:
    """Per class: lead -> mean |phi| summed over segments; segment -> mean |phi| summed over leads."""
    mean_abs = np.abs(phi).mean(axis=0)  # [C, L, S]
    by_lead = {c: {lead: float(mean_abs[k, j].sum()) for j, lead in enumerate(leads)}
               for k, c in enumerate(class_names)}
    by_segment = {c: {seg: float(mean_abs[k, :, s].sum()) for s, seg in enumerate(segments)}
                  for k, c in enumerate(class_names)}
    return by_lead, by_segment


def _replay(client: Any, x: np.ndarray, fills: np.ndarray, job: _Job, logits: np.ndarray, nsamples: int,
            seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Replay each ECG's explainer on its precomputed logits: phi [N, G, C], base [N, C], full [N, C], extra embeds."""
    n_groups = job.coalitions.shape[1]
    extra = 0
    phi, base, full = [], [], []
    for i in range(len(x)):
        def fallback(rows: np.ndarray, i: int = i) -> np.ndarray:
            nonlocal extra
            extra += len(rows)
            return _evaluate(client, x[i:i + 1], fills[i:i + 1], _Job(rows, job.edges, job.probe, job.batch_size,
                                                                       job.in_flight))[0]

        lookup = _Lookup(job.coalitions, logits[i], fallback)
        values, base_i = _explain(lookup, n_groups, nsamples, seed)
        phi.append(values)
        base.append(base_i)
        full.append(lookup(np.ones((1, n_groups)))[0])
    return np.stack(phi), np.stack(base), np.stack(full), extra


def attribute(client: Any, probe: Any, ecgs: np.ndarray, class_names: Sequence[str], leads: Sequence[str],
              segments: int = DEFAULT_SEGMENTS, baseline: str = "zero", nsamples: int = DEFAULT_NSAMPLES,
              seed: int = 0, batch_size: int | None = None, in_flight: int = 2,
              use_ray: bool | None = None) -> AttributionResult:
    """Lead x segment KernelSHAP values of a linear probe's logits, every masked ECG embedded by the endpoint.

    client: an EmbeddingClient (or anything with card(), embed(), address, timeout_s, wire_dtype);
    probe: mapping or object with coef [C, D], intercept [C], mean [D], scale [D];
    ecgs: [N, L, T] in the card's lead order and window; batch_size defaults to the card's max_batch_size;
    use_ray: None = Ray tasks per ECG when Ray is initialised, else a thread pool.
    """
    started = time.perf_counter()
    class_names, leads = [str(c) for c in class_names], [str(lead) for lead in leads]
    x = _check_ecgs(ecgs, leads)
    lin = _as_probe(probe)
    if lin.coef.shape[0] != len(class_names):
        raise ValueError(f"the probe has {lin.coef.shape[0]} classes but class_names has {len(class_names)}")
    n_groups = x.shape[1] * int(segments) if isinstance(segments, (int, np.integer)) else 0
    _check_settings(n_groups, segments, x.shape[2], baseline, nsamples, in_flight, batch_size)
    card = client.card()  # the first RPC, only after every local check passed
    _check_card(card, leads, x.shape[2], lin.coef.shape[1], getattr(client, "address", "?"))
    edges = segment_edges(x.shape[2], int(segments))
    job = _Job(sample_coalitions(n_groups, len(class_names), nsamples, seed), edges, lin,
               int(batch_size or card.max_batch_size or 32), int(in_flight))
    fills = np.stack([baseline_values(e, baseline) for e in x])
    parallel = "ray" if (use_ray if use_ray is not None else _ray_ready()) else "threads"
    logits = (_evaluate_ray if parallel == "ray" else _evaluate)(client, x, fills, job)
    phi, base, full, extra = _replay(client, x, fills, job, logits, nsamples, seed)
    shap_values = phi.transpose(0, 2, 1).reshape(len(x), len(class_names), len(leads), int(segments))
    labels = segment_labels(edges, card.sampling_rate_hz)
    by_lead, by_segment = _importance(shap_values, class_names, leads, labels)
    notes = _notes(n_groups, nsamples, extra)
    return AttributionResult(
        shap_values=shap_values, base_values=base, logits=full, class_names=class_names, leads=leads,
        segments=labels, lead_importance=by_lead, segment_importance=by_segment,
        explainer=_describe(card, client, n_groups, int(segments), baseline, nsamples, seed, job, parallel),
        n_embeddings=int(logits.shape[0] * logits.shape[1] + extra), wall_s=round(time.perf_counter() - started, 3),
        notes=notes)


def _notes(n_groups: int, nsamples: int, extra: int) -> list[str]:
    """Caveats a reader of the values should know."""
    notes = []
    if not is_exact(n_groups, nsamples) and nsamples < 4 * n_groups:
        notes.append(f"nsamples={nsamples} is under 4G = {4 * n_groups}: single-group values are noisy; "
                     "lead and segment sums are steadier")
    if extra:
        notes.append(f"{extra} coalition(s) outside the recorded sample were embedded on demand")
    return notes


def _describe(card: Any, client: Any, n_groups: int, segments: int, baseline: str, nsamples: int, seed: int,
              job: _Job, parallel: str) -> dict[str, Any]:
    """The explainer description stored with the result."""
    import shap

    effective = effective_nsamples(n_groups, nsamples)
    return {
        "explainer": "shap.KernelExplainer", "shap_version": shap.__version__, "link": "identity (probe logits)",
        "l1_reg": False,
        "background": "all-masked coalition: every group replaced by the baseline (base value = its logit)",
        "baseline": baseline, "baseline_value": BASELINES[baseline],
        "groups": n_groups, "leads": int(len(card.leads)), "segments": segments,
        "segment_s": float(card.num_samples) / float(card.sampling_rate_hz) / segments,
        "nsamples": effective, "nsamples_requested": int(nsamples), "exact": is_exact(n_groups, nsamples),
        "embeddings_per_ecg": int(len(job.coalitions)), "seed": int(seed),
        "model": card.name, "model_version": card.version, "fingerprint": card.fingerprint,
        "endpoint": getattr(client, "address", ""), "batch_size": job.batch_size, "in_flight": job.in_flight,
        "parallel": parallel,
    }
