"""Lead x segment SHAP through a real embedding server: known answers, additivity, determinism, accounting."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest

from orchestrator.attribution import clinical, figure
from orchestrator.attribution import compute as attr
from services.common.process import start_server
from services.embedding.client import EmbeddingClient
from services.probing.linear import fit_linear_probe
from services.probing.logistic import linear_logits

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))  # the tiny model package's entry point lives beside this file
import attribution_models as am  # noqa: E402

CLASSES = ["absent", "present"]
NSAMPLES = 256


class CountingClient(EmbeddingClient):
    """An EmbeddingClient that counts the ECGs it sends and the largest batch."""

    def __init__(self, address: str) -> None:
        super().__init__(address)
        self.lock = threading.Lock()
        self.sent = 0
        self.largest = 0

    def embed(self, x: np.ndarray, request_id: str | None = None) -> np.ndarray:
        with self.lock:
            self.sent += len(x)
            self.largest = max(self.largest, len(x))
        return super().embed(x, request_id)


class NoRPC:
    """A client that fails the test on any use: bad input must be rejected before the first RPC."""

    def __getattr__(self, name: str):
        raise AssertionError(f"RPC attempted ({name}) before input validation")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The lead-stats package served by a real embedding-server process."""
    pkg = am.write_package(tmp_path_factory.mktemp("attr") / "lead-stats", max_batch_size=16)
    path = os.pathsep.join([str(TESTS), str(TESTS.parent), os.environ.get("PYTHONPATH", "")])
    with start_server("services.embedding", ["--model", str(pkg)], name="lead-stats",
                      env={"PYTHONPATH": path}) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    with CountingClient(server.address) as c:
        yield c


def fit_probe(client: EmbeddingClient, lead: str, seconds: tuple[float, float]) -> tuple[dict, np.ndarray]:
    """A linear probe on served embeddings for "wave on `lead` during `seconds`"; also the held-out ECGs."""
    x, y = am.make_task(240, lead, seconds, seed=1)
    emb = client.embed_many(x, batch_size=64)
    onehot = np.eye(2)[y]
    probe = fit_linear_probe(emb[:200], onehot[:200], emb[200:], onehot[200:], CLASSES, multi_label=False,
                             seed=0, cs=(0.1, 1.0), cv_folds=3)
    assert probe.metrics["auroc_macro"] > 0.99  # the task is learnable, so attributions are meaningful
    return {"coef": probe.coef, "intercept": probe.intercept, "mean": probe.mean, "scale": probe.scale}, x[200:]


@pytest.fixture(scope="module")
def v2_task(client):
    """Wave on V2 over the whole record: explain 2 positive and 2 negative held-out ECGs."""
    probe, held_out = fit_probe(client, "V2", (0.0, 10.0))
    ecgs = held_out[:4]
    before = client.sent
    result = attr.attribute(client, probe, ecgs, CLASSES, am.LEADS, nsamples=NSAMPLES, seed=0)
    return probe, ecgs, result, client.sent - before


def test_only_the_informative_lead_matters(v2_task):
    _, _, result, _ = v2_task
    present = result.lead_importance["present"]
    ranked = sorted(present, key=present.get, reverse=True)
    assert ranked[0] == "V2"
    assert present["V2"] > 3 * present[ranked[1]], present
    assert result.top_leads("present", 1) == ["V2"]
    # Class 0 of a binary probe is the constant reference logit: nothing to attribute.
    assert not np.any(result.shap_values[:, 0])


def test_additivity_and_value_function_go_through_the_endpoint(v2_task, client):
    probe, ecgs, result, _ = v2_task
    assert result.shap_values.shape == (4, 2, 12, 4) and result.base_values.shape == (4, 2)
    assert result.additivity_error() < 1e-8
    coef = (probe["coef"], probe["intercept"], probe["mean"], probe["scale"])
    # f(all ones) is the probe's logit of the untouched ECG; the base value that of the all-zero (0 mV) ECG.
    np.testing.assert_allclose(result.logits, linear_logits(client.embed(ecgs), *coef), atol=1e-5)
    np.testing.assert_allclose(result.base_values, linear_logits(client.embed(np.zeros_like(ecgs)), *coef),
                               atol=1e-5)


def test_embedding_accounting_and_explainer_description(v2_task, client):
    _, ecgs, result, sent = v2_task
    per_ecg = NSAMPLES + 2  # sampled coalitions + all-masked background + the unmasked ECG
    assert result.n_embeddings == sent == len(ecgs) * per_ecg
    assert client.largest == 16  # the card's max_batch_size (embed_many, used to fit probes, is not counted)
    info = result.explainer
    assert info["explainer"] == "shap.KernelExplainer" and info["baseline"] == "zero"
    assert info["groups"] == 48 and info["nsamples"] == NSAMPLES and info["embeddings_per_ecg"] == per_ecg
    assert info["batch_size"] == 16 and info["parallel"] == "threads" and info["model"] == "lead-stats"
    assert result.segments == ["0-2.5 s", "2.5-5 s", "5-7.5 s", "7.5-10 s"]
    summary = result.to_dict()
    assert summary["n_embeddings"] == result.n_embeddings and len(summary["mean_abs_shap"]) == 2


def test_signal_in_the_first_segment_dominates(client):
    probe, held_out = fit_probe(client, "II", (0.0, 2.5))
    positives = held_out[1:6:2]  # odd records carry the wave
    result = attr.attribute(client, probe, positives, CLASSES, am.LEADS, nsamples=NSAMPLES, seed=0, in_flight=3)
    seg = list(result.segment_importance["present"].values())
    assert seg[0] > 3 * max(seg[1:]), seg
    lead = result.lead_importance["present"]
    assert max(lead, key=lead.get) == "II"


def test_fixed_seed_is_deterministic_whatever_the_parallelism(v2_task, client):
    probe, ecgs, result, _ = v2_task
    again = attr.attribute(client, probe, ecgs[:2], CLASSES, am.LEADS, nsamples=NSAMPLES, seed=0, batch_size=7,
                           in_flight=1)
    np.testing.assert_array_equal(again.shap_values, result.shap_values[:2])
    np.testing.assert_array_equal(again.base_values, result.base_values[:2])
    other = attr.sample_coalitions(48, 2, NSAMPLES, seed=1)
    assert not np.array_equal(other, attr.sample_coalitions(48, 2, NSAMPLES, seed=0))


def test_ray_tasks_give_the_same_values_as_threads(v2_task, client):
    ray = pytest.importorskip("ray")
    probe, ecgs, result, _ = v2_task
    owned = not ray.is_initialized()
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths have a length limit
    if owned:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp)
    try:
        before = client.sent
        out = attr.attribute(client, probe, ecgs[:2], CLASSES, am.LEADS, nsamples=NSAMPLES, seed=0)
    finally:
        if owned:
            ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    assert out.explainer["parallel"] == "ray" and client.sent == before  # tasks opened their own channels
    np.testing.assert_array_equal(out.shap_values, result.shap_values[:2])
    assert out.n_embeddings == 2 * (NSAMPLES + 2)


def test_callers_random_state_is_left_alone(v2_task, client):
    probe, ecgs, _, _ = v2_task
    np.random.seed(1234)
    expected = np.random.rand(3)
    np.random.seed(1234)
    attr.attribute(client, probe, ecgs[:1], CLASSES, am.LEADS, nsamples=2 * 48 + 2, seed=5)
    np.testing.assert_array_equal(np.random.rand(3), expected)


def test_mean_baseline_fills_each_lead_with_its_mean(v2_task, client):
    probe, ecgs, _, _ = v2_task
    result = attr.attribute(client, probe, ecgs[:1], CLASSES, am.LEADS, baseline="mean", nsamples=2 * 48 + 2)
    flat = np.broadcast_to(ecgs[:1].mean(axis=2, keepdims=True), ecgs[:1].shape).astype(np.float32)
    coef = (probe["coef"], probe["intercept"], probe["mean"], probe["scale"])
    np.testing.assert_allclose(result.base_values, linear_logits(client.embed(flat), *coef), atol=1e-5)
    assert result.explainer["baseline"] == "mean" and result.additivity_error() < 1e-8
    assert result.notes and "noisy" in result.notes[0]  # 98 samples for 48 groups is under 4G


def good_args(**changes):
    probe = {"coef": np.zeros((2, 24)), "intercept": np.zeros(2), "mean": np.zeros(24), "scale": np.ones(24)}
    args = dict(probe=probe, ecgs=np.zeros((2, 12, 1000), np.float32), class_names=CLASSES, leads=am.LEADS)
    args.update(changes)
    return args


@pytest.mark.parametrize("changes, message", [
    ({"ecgs": np.zeros((2, 11, 1000), np.float32)}, r"ecgs have 11 leads but `leads` names 12"),
    ({"ecgs": np.zeros((12, 1000), np.float32)}, r"ecgs must be \[N, leads, samples\]"),
    ({"ecgs": np.full((1, 12, 1000), np.nan, np.float32)}, "NaN"),
    ({"class_names": ["a", "b", "c"]}, "the probe has 2 classes but class_names has 3"),
    ({"probe": {"coef": np.zeros((2, 24))}}, "probe lacks intercept, mean, scale"),
    ({"baseline": "noise"}, "baseline must be one of zero, mean"),
    ({"segments": 0}, "segments must be an integer"),
    ({"nsamples": 50}, r"nsamples must be at least 2G \+ 2 = 98 for 48 groups"),
])
def test_bad_input_is_rejected_before_any_rpc(changes, message):
    with pytest.raises(ValueError, match=message):
        attr.attribute(NoRPC(), **good_args(**changes))


def test_input_that_does_not_match_the_card_is_rejected_before_embedding(client):
    before = client.sent
    with pytest.raises(ValueError, match="ecgs have 900 samples per lead but model 'lead-stats'.* expects 1000"):
        attr.attribute(client, **good_args(ecgs=np.zeros((1, 12, 900), np.float32)))
    with pytest.raises(ValueError, match="the probe has D=10 but model 'lead-stats'"):
        attr.attribute(client, **good_args(probe={"coef": np.zeros((2, 10)), "intercept": np.zeros(2),
                                                  "mean": np.zeros(10), "scale": np.ones(10)}))
    assert client.sent == before


def test_masking_replaces_exactly_the_dropped_groups():
    x = np.arange(2 * 8, dtype=np.float32).reshape(2, 8) + 1
    edges = attr.segment_edges(8, 4)
    coalition = np.array([[1, 0, 1, 1, 0, 0, 0, 1]], bool)  # lead 0 drops segment 1; lead 1 keeps segment 3
    out = attr.mask_ecgs(x, coalition, np.array([0.0, -1.0], np.float32), edges)
    expected = x.copy()
    expected[0, 2:4] = 0.0
    expected[1, :6] = -1.0
    np.testing.assert_array_equal(out[0], expected)
    assert attr.segment_labels(edges, 2.0) == ["0-1 s", "1-2 s", "2-3 s", "3-4 s"]


def test_kernel_explainer_recovers_an_additive_game_exactly():
    weights = np.linspace(-1.0, 2.0, 48)
    phi, base = attr._explain(lambda z: np.asarray(z) @ weights[:, None], 48, 2 * 48 + 2, seed=3)
    np.testing.assert_allclose(phi[:, 0], weights, atol=1e-8)
    assert base.tolist() == [0.0]


def test_enumerating_every_coalition_gives_exact_shapley_values():
    def game(z: np.ndarray) -> np.ndarray:
        z = np.asarray(z)
        return (3 * z[:, 0] * z[:, 1] + z[:, 2] - 2 * z[:, 3] * z[:, 0])[:, None]

    assert attr.is_exact(4, 14) and attr.effective_nsamples(4, 256) == 14
    phi, _ = attr._explain(game, 4, 256, seed=0)
    # Shapley values split each interaction equally between its players.
    np.testing.assert_allclose(phi[:, 0], [1.5 - 1.0, 1.5, 1.0, -1.0], atol=1e-10)


def synthetic_result(importance: dict[str, dict[str, float]]) -> attr.AttributionResult:
    classes = list(importance)
    return attr.AttributionResult(
        shap_values=np.zeros((1, len(classes), 12, 4)), base_values=np.zeros((1, len(classes))),
        logits=np.zeros((1, len(classes))), class_names=classes, leads=list(am.LEADS), segments=[],
        lead_importance=importance, segment_importance={}, explainer={"model": "m", "segments": 4},
        n_embeddings=0)


def ranked(*top: str) -> dict[str, float]:
    """Importance with `top` first (descending), every other lead small."""
    values = {lead: 0.01 for lead in am.LEADS}
    values.update({lead: 1.0 - 0.1 * i for i, lead in enumerate(top)})
    return values


def test_clinical_notes_compare_top_leads_with_the_textbook():
    result = synthetic_result({
        "BBB": ranked("V1", "V2", "V3"), "STE": ranked("III", "aVF", "II"), "AF": ranked("V5", "V6", "I"),
        "LBBB": ranked("V6", "V3", "V4"), "SB": ranked("I", "II", "V1"), "XYZ": ranked("V4"),
        "ref": {lead: 0.0 for lead in am.LEADS},
    })
    notes = dict(zip(result.class_names, clinical.clinical_notes(result)))
    assert notes["BBB"].startswith("BBB: top leads V1, V2, V3 - agrees with the expectation (V1/V2 for right "
                                   "bundle-branch block")
    assert "agrees with the expectation (II/III/aVF for inferior ST elevation" in notes["STE"]
    assert "does not agree with the expectation" in notes["AF"]
    assert "partly agrees with" in notes["LBBB"]
    assert "rate/rhythm class" in notes["SB"] and "no clinical expectation" in notes["XYZ"]
    assert "no attribution" in notes["ref"]


def test_lead_verdicts_are_structured_and_render_the_notes():
    importance = {"BBB": ranked("V1", "V2", "V3"), "AF": ranked("V5", "V6", "I"), "LBBB": ranked("V6", "V3", "V4"),
                  "SB": ranked("I"), "ref": {lead: 0.0 for lead in am.LEADS}}
    verdicts = {v.class_name: v for v in clinical.lead_verdicts(importance, list(am.LEADS))}
    assert verdicts["BBB"].status == clinical.AGREES and verdicts["BBB"].top_leads == ("V1", "V2", "V3")
    assert verdicts["BBB"].expected_leads == ("V1", "V2") and verdicts["BBB"].cite == "AHA/ACCF/HRS 2009"
    assert verdicts["AF"].status == clinical.DISAGREES and verdicts["AF"].judged
    assert verdicts["LBBB"].status == clinical.PARTLY
    assert verdicts["SB"].status == clinical.RATE_CLASS and not verdicts["SB"].judged
    assert verdicts["ref"].status == clinical.NO_ATTRIBUTION and verdicts["ref"].top_leads == ()
    # The sentences in results.json are the verdicts rendered; dict order alone gives the lead order.
    notes = clinical.clinical_notes(synthetic_result(importance))
    assert [v.note() for v in verdicts.values()] == notes
    assert [v.note() for v in clinical.lead_verdicts(importance)] == notes


def test_lead_heatmap_is_a_png_normalised_per_class():
    result = synthetic_result({"BBB": ranked("V1", "V2"), "ref": {lead: 0.0 for lead in am.LEADS}})
    matrix = figure.lead_matrix(result)
    assert matrix.shape == (2, 12) and matrix[0].max() == 1.0 and not matrix[1].any()
    png = figure.lead_heatmap(result, result.class_names, result.leads)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000
