"""Perturbations (formulas, identity, determinism), the perturbed dataset, and the robustness scores' known answers."""
from __future__ import annotations

import numpy as np
import pytest

from orchestrator.datasets.base import DatasetSpec, open_dataset
from orchestrator.datasets.perturbed import copy_id
from orchestrator.perturbations import PERTURBATIONS, REVERSALS, perturb
from orchestrator.stages.robustness import cosines, score
from services.probing.probes import fit_probe

FS = 500.0
LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


def ecg(seed: int = 0, seconds: float = 10.0) -> np.ndarray:
    """A 12-lead signal with a realistic spread of amplitudes."""
    t = np.arange(int(seconds * FS)) / FS
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(0.3, 1.5) * np.sin(2 * np.pi * 1.2 * t + rng.uniform(0, 6)) ** 15
                     + 0.05 * rng.standard_normal(t.size) for _ in LEADS])


@pytest.mark.parametrize("name", sorted(PERTURBATIONS))
def test_grade_zero_is_the_identity_and_other_grades_are_deterministic_and_keep_the_shape(name):
    x = ecg()
    assert np.array_equal(perturb(x, FS, LEADS, name, 0, 0, "r1"), x)
    for grade in PERTURBATIONS[name].grades([1, 2, 3]):
        a, b = perturb(x, FS, LEADS, name, grade, 0, "r1"), perturb(x, FS, LEADS, name, grade, 0, "r1")
        assert a.shape == x.shape and np.array_equal(a, b), (name, grade)
        if name != "identity":
            assert not np.array_equal(a, x), (name, grade)
    assert np.array_equal(x, ecg())  # the input is never modified


def test_random_perturbations_depend_on_the_record_and_the_seed():
    x = ecg()
    for name in ("gaussian_noise", "baseline_wander", "electrode_motion", "lead_dropout"):
        a = perturb(x, FS, LEADS, name, 2, 0, "r1")
        assert not np.array_equal(a, perturb(x, FS, LEADS, name, 2, 0, "r2")), name
        assert not np.array_equal(a, perturb(x, FS, LEADS, name, 2, 1, "r1")), name


def test_gaussian_noise_reaches_the_stated_snr_per_lead():
    x = ecg(seconds=60)
    for grade, snr in zip((1, 2, 3), (20.0, 10.0, 0.0)):
        noise = perturb(x, FS, LEADS, "gaussian_noise", grade, 0, "r") - x
        signal_power = ((x - x.mean(axis=1, keepdims=True)) ** 2).mean(axis=1)
        measured = 10 * np.log10(signal_power / (noise ** 2).mean(axis=1))
        assert np.allclose(measured, snr, atol=0.2), measured


@pytest.mark.parametrize("name,hz", [("powerline_50hz", 50.0), ("powerline_60hz", 60.0)])
def test_powerline_adds_a_sinusoid_at_mains_frequency_with_the_stated_amplitude(name, hz):
    x = ecg()
    added = perturb(x, FS, LEADS, name, 2, 0, "r") - x
    spectrum = np.abs(np.fft.rfft(added, axis=1)) * 2 / x.shape[1]
    freqs = np.fft.rfftfreq(x.shape[1], 1 / FS)
    assert np.all(freqs[spectrum.argmax(axis=1)] == hz)
    assert np.allclose(spectrum.max(axis=1), PERTURBATIONS[name].value(2), rtol=1e-6)


def test_baseline_wander_is_below_half_a_hertz_and_electrode_motion_comes_in_bursts():
    x = ecg()
    wander = perturb(x, FS, LEADS, "baseline_wander", 3, 0, "r") - x
    freqs = np.fft.rfftfreq(x.shape[1], 1 / FS)
    assert np.all(freqs[np.abs(np.fft.rfft(wander, axis=1)).argmax(axis=1)] <= 0.5)
    assert np.allclose(np.abs(wander).max(axis=1), 1.0, atol=0.01)
    motion = perturb(x, FS, LEADS, "electrode_motion", 3, 0, "r") - x
    touched = np.any(motion != 0, axis=0)
    assert 0.03 < touched.mean() < 0.25  # two bursts of 0.3-1 s in 10 s
    assert np.abs(motion).max() <= 1.0 + 1e-9


def test_limb_reversal_equals_recomputing_the_leads_from_swapped_electrodes():
    rng = np.random.default_rng(3)
    potentials = {e: rng.standard_normal(500) for e in ("RA", "LA", "LL")}
    chest = rng.standard_normal((6, 500))

    def leads(p: dict) -> np.ndarray:
        ra, la, ll = p["RA"], p["LA"], p["LL"]
        limb = [la - ra, ll - ra, ll - la, ra - (la + ll) / 2, la - (ra + ll) / 2, ll - (ra + la) / 2]
        return np.vstack([np.stack(limb), chest])

    x = leads(potentials)
    for kind, (pair, _) in REVERSALS.items():
        a, b = pair.split("/")
        swapped = dict(potentials, **{a: potentials[b], b: potentials[a]})
        assert np.allclose(perturb(x, FS, LEADS, "limb_reversal", kind, 0, "r"), leads(swapped)), pair


def test_dropout_scaling_and_shift():
    x = ecg()
    for grade, k in ((1, 1), (2, 3), (3, 6)):
        out = perturb(x, FS, LEADS, "lead_dropout", grade, 0, "r")
        flat = np.all(out == 0, axis=1)
        assert flat.sum() == k and np.array_equal(out[~flat], x[~flat])
    assert np.allclose(perturb(x, FS, LEADS, "amplitude_scale", 2, 0, "r"), 2 * x)
    shifted = perturb(x, FS, LEADS, "time_shift", 2, 0, "r")  # 1 s
    assert np.array_equal(shifted[:, :-500], x[:, 500:]) and np.array_equal(shifted[:, -500:], x[:, :500])


def test_the_perturbed_dataset_serves_perturbed_copies_record_major():
    base = {"kind": "synthetic", "params": {"sites": ["eu"], "records_per_site": 6, "seed": 0}}
    copies = [["identity", 0], ["gaussian_noise", 3]]
    spec = DatasetSpec("perturbed", {"base": base, "indices": [4, 1], "perturbations": copies, "seed": 0})
    data, source = open_dataset(spec), open_dataset(DatasetSpec("synthetic", base["params"]))
    assert len(data) == 4
    ids = [data.meta(i).record_id for i in range(4)]
    first, second = source.meta(4).record_id, source.meta(1).record_id
    assert ids == [copy_id(first, "identity", 0), copy_id(first, "gaussian_noise", 3),
                   copy_id(second, "identity", 0), copy_id(second, "gaussian_noise", 3)]
    assert data.meta(3).labels == source.meta(1).labels
    assert np.array_equal(data.load(0).signal, source.load(4).signal)
    clean = source.load(1)
    expected = perturb(clean.signal, clean.sampling_rate_hz, clean.leads, "gaussian_noise", 3, 0, clean.record_id)
    assert np.array_equal(data.load(3).signal, expected.astype(clean.signal.dtype))
    reseeded = open_dataset(DatasetSpec("perturbed", {**spec.params, "seed": 1}))
    assert reseeded.content_token(3) != data.content_token(3) and reseeded.content_token(2) != data.content_token(2)
    with pytest.raises(ValueError, match="grade 4"):
        open_dataset(DatasetSpec("perturbed", {**spec.params, "perturbations": [["time_shift", 4]]}))


def _probe_case():
    rng = np.random.default_rng(7)
    y = np.eye(3)[rng.integers(0, 3, 300)]
    x = (y @ rng.normal(size=(3, 16)) * 2 + rng.normal(size=(300, 16))).astype(np.float32)
    fit = fit_probe(x[:200], y[:200], x[200:], y[200:], ["a", "b", "c"], False, 0)
    probe = {"coef": fit.coef, "intercept": fit.intercept, "mean": fit.mean, "scale": fit.scale}
    return x[200:], y[200:], probe


def test_an_identity_perturbation_scores_cosine_one_and_no_auroc_drop():
    x, y, probe = _probe_case()
    values = score(x, x.copy(), [probe], y, False)
    assert values["cosine"] == pytest.approx(1.0, abs=1e-12) and values["auroc_drop"] == 0.0
    assert values["auroc_clean"] == values["auroc_macro"] > 0.9


def test_noise_in_the_embedding_lowers_cosine_and_auroc():
    x, y, probe = _probe_case()
    noisy = x + np.random.default_rng(8).normal(scale=4.0, size=x.shape)
    values = score(x, noisy, [probe], y, False)
    assert values["cosine"] < 0.8 and values["auroc_drop"] > 0.05
    assert np.isnan(cosines(np.zeros((1, 3)), np.ones((1, 3))))[0]
    assert score(x, noisy, [], y, False)["auroc_drop"] is None  # no linear probe: cosine only


@pytest.mark.parametrize("change,message", [
    ({"robustness": {"perturbations": ["rain"]}}, "robustness.perturbations"),
    ({"robustness": {"grades": [4]}}, "robustness.grades"),
    ({"robustness": {"max_ecgs": 1}}, "robustness.max_ecgs"),
    ({"subgroups": {"attributes": ["height"]}}, "subgroups.attributes"),
    ({"subgroups": {"min_records": 0}}, "subgroups.min_records"),
])
def test_robustness_and_subgroup_settings_are_validated(change, message):
    from orchestrator.experiment import ConfigError, parse_experiment

    base = {"datasets": ["synthetic:eu@5"], "models": ["handcrafted"]}
    with pytest.raises(ConfigError, match=message):
        parse_experiment({**base, **change}, "exp.yaml")
    exp = parse_experiment({**base, "robustness": {"perturbations": ["time_shift", "identity", "time_shift"],
                                                   "grades": [3, 1]}}, "exp.yaml")
    assert exp.robustness["perturbations"] == ["time_shift", "identity"] and exp.robustness["grades"] == [1, 3]
    from orchestrator.stages.robustness import copies

    assert copies(exp) == [("time_shift", 1), ("time_shift", 3), ("identity", 0)]
