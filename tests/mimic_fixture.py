"""A small MIMIC-IV-ECG v1.0 in its PhysioNet layout: record_list.csv, machine_measurements.csv, WFDB records.

Layout as published (physionet.org/content/mimic-iv-ecg/1.0): ``files/p<first 4 digits of subject>/p<subject>/
s<study>/<study>.hea|.dat``; ``record_list.csv`` with columns subject_id, study_id, file_name, ecg_time, path (path
without extension, relative to the release folder); ``machine_measurements.csv`` with subject_id, study_id, cart_id,
ecg_time, report_0..report_17 (free-text machine statements, empty when unused), bandwidth, filtering, rr_interval,
p_onset, p_end, qrs_onset, qrs_end, t_end, p_axis, qrs_axis, t_axis. Records are 12 leads in the release's order
(I, II, III, aVR, aVF, aVL, V1..V6 - aVF before aVL), 500 Hz, 10 s, format 16. The statements below are composed in
the style of machine reads (not copied from the restricted data); signals come from the synthetic generator.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from orchestrator.datasets.synthetic import generate_record

RECORD_LIST_COLUMNS = ("subject_id", "study_id", "file_name", "ecg_time", "path")
MEASUREMENT_COLUMNS = ("subject_id", "study_id", "cart_id", "ecg_time", *(f"report_{k}" for k in range(18)),
                       "bandwidth", "filtering", "rr_interval", "p_onset", "p_end", "qrs_onset", "qrs_end", "t_end",
                       "p_axis", "qrs_axis", "t_axis")
LEADS = ("I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6")
GAIN = 200.0  # adc units per mV
RATE = 500
DURATION_S = 10.0

# (statements, waveform condition, expected rhythm labels, expected normality, expected coarse labels)
PROFILES: tuple[tuple[tuple[str, ...], str, tuple[str, ...], tuple[str, ...], tuple[str, ...]], ...] = (
    (("Sinus rhythm", "Normal ECG"), "NSR", ("SR",), ("normal",), ("NSR",)),
    (("Sinus bradycardia", "Otherwise normal ECG"), "SB", ("SB",), ("normal",), ("SB",)),
    (("Sinus tachycardia", "Borderline ECG"), "STach", ("STach",), ("borderline",), ("STach",)),
    (("Atrial fibrillation with rapid ventricular response", "Abnormal ECG"), "AF", ("AF",), ("abnormal",),
     ("AF",)),
    (("Atrial flutter with variable A-V block", "Abnormal ECG"), "AF", ("AFL",), ("abnormal",), ()),
    (("Sinus rhythm with 1st degree A-V block", "Right bundle branch block", "Abnormal ECG"), "BBB", ("SR",),
     ("abnormal",), ("NSR", "1dAVb", "RBBB")),
    (("Sinus rhythm", "Incomplete right bundle branch block", "Borderline ECG"), "NSR", ("SR",), ("borderline",),
     ("NSR",)),
    (("Sinus rhythm", "Left bundle branch block", "Abnormal ECG"), "BBB", ("SR",), ("abnormal",), ("NSR", "LBBB")),
    (("Ventricular pacing", "Abnormal ECG"), "NSR", ("paced",), ("abnormal",), ()),
    (("Atrial fibrillation has replaced Sinus rhythm", "Abnormal ECG"), "AF", (), ("abnormal",), ()),
    (("--- Warning: Data quality may affect interpretation ---", "Sinus rhythm", "Normal ECG"), "NSR", ("SR",),
     ("normal",), ("NSR",)),
    ((), "NSR", (), (), ()),  # a study without a machine_measurements row
)


def record_path(subject: int, study: int) -> str:
    """The release's path of a record, without extension."""
    return f"files/p{str(subject)[:4]}/p{subject}/s{study}/{study}"


def plan(n_records: int = 24, seed: int = 0) -> list[dict]:
    """One dict per record: ids, path, statements, waveform condition and the labels the adapter should give."""
    rng = np.random.default_rng([seed, 4])
    out, subject = [], 10000032
    for k in range(n_records):
        if k == 0 or rng.random() >= 0.3:  # some patients have several ECGs
            subject += int(rng.integers(1, 9000))
        study = 40000000 + 689 * k + int(rng.integers(0, 600))
        statements, condition, rhythm, normality, coarse = PROFILES[k % len(PROFILES)]
        out.append({"subject_id": subject, "study_id": study, "path": record_path(subject, study),
                    "ecg_time": f"21{80 + k % 10}-0{1 + k % 9}-1{k % 10} 1{k % 10}:{k % 60:02d}:00",
                    "statements": statements, "condition": condition, "has_report": k % len(PROFILES) != 11,
                    "rhythm": rhythm, "normality": normality, "coarse": coarse})
    return out


def record_signal(study: int, condition: str, seed: int) -> np.ndarray:
    """The [12, 5000] mV signal written for a study, in the release's lead order, before 16-bit storage."""
    signal, fs = generate_record(condition, "eu", seed=seed * 100_003 + study % 100_000, duration_s=DURATION_S)
    assert fs == RATE
    canonical = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
    signal = np.asarray(signal, dtype=np.float64)
    return signal[[canonical.index(name) for name in LEADS]]


def write_record(root: Path, path: str, signal: np.ndarray) -> None:
    """One WFDB record as the release stores it: format 16, gain 200/mV, units mV, base time and date."""
    import wfdb

    base = root / path
    base.parent.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(base.name, fs=RATE, units=["mV"] * 12, sig_name=list(LEADS), p_signal=signal.T,
                fmt=["16"] * 12, adc_gain=[GAIN] * 12, baseline=[0] * 12, write_dir=str(base.parent))


def write_mimic(root: Path, n_records: int = 24, seed: int = 0) -> Path:
    """Write the release folder (files/, record_list.csv, machine_measurements.csv) under root; returns root."""
    root.mkdir(parents=True, exist_ok=True)
    rows = plan(n_records, seed)
    with open(root / "record_list.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(RECORD_LIST_COLUMNS)
        for r in rows:
            writer.writerow([r["subject_id"], r["study_id"], r["study_id"], r["ecg_time"], r["path"]])
    with open(root / "machine_measurements.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(MEASUREMENT_COLUMNS)
        for k, r in enumerate(rows):
            if not r["has_report"]:
                continue
            reports = list(r["statements"]) + [""] * (18 - len(r["statements"]))
            writer.writerow([r["subject_id"], r["study_id"], 6848296 + k % 3, r["ecg_time"], *reports,
                             "0.005-150 Hz", "60 Hz notch Baseline filter", 600 + 10 * k, 40, 150, 230, 320,
                             620, 29999 if k % 5 == 4 else 60, 45, 40])
    for r in rows:
        write_record(root, r["path"], record_signal(r["study_id"], r["condition"], seed))
    return root
