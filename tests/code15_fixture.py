"""Writes a small CODE-15% in the official layout (exams.csv + exams_part{k}.hdf5) from the synthetic generator."""
from __future__ import annotations

import csv
from pathlib import Path

import h5py
import numpy as np
from scipy.signal import resample_poly

from orchestrator.datasets.synthetic import CONDITIONS, generate_record

COLUMNS = ("exam_id", "age", "is_male", "nn_predicted_age", "1dAVb", "RBBB", "LBBB", "SB", "ST", "AF", "patient_id",
           "death", "timey", "normal_ecg", "trace_file")
SAMPLES = 4096
RATE_HZ = 400
STORED_PER_MV = 2.0  # the official files hold 2 x mV (antonior92/ecg-preprocessing: "scaled by 2")
# exam ids of the rows that `corrupt=True` adds
MISSING_PART_EXAM = 9_000_001  # trace_file names a part that does not exist
ABSENT_EXAM = 9_000_002  # trace_file exists but does not hold this exam_id
ZERO_EXAM = 9_000_003  # all-zero tracing
# synthetic condition -> the official labels set (BBB alternates RBBB/LBBB); NSR is normal_ecg instead
_LABELS = {"NSR": (), "AF": ("AF",), "SB": ("SB",), "STach": ("ST",), "STE": ()}


def exam_plan(n_exams: int, seed: int, parts: int = 2) -> list[dict]:
    """Deterministic per-exam facts: exam id, patient, condition, duration, labels, part (contiguous blocks)."""
    rng = np.random.default_rng([seed, 15])
    ids = rng.choice(np.arange(100_000, 999_999), size=n_exams, replace=False)
    plan = []
    for k in range(n_exams):
        condition = CONDITIONS[k % len(CONDITIONS)]
        labels = _LABELS.get(condition, ("RBBB",) if (k // len(CONDITIONS)) % 2 == 0 else ("LBBB",))
        if k % 7 == 3:
            labels = ("1dAVb", *labels)
        plan.append({"exam_id": int(ids[k]), "patient_id": 5000 + k // 2 if k % 5 == 0 else 6000 + k,
                     "condition": condition, "duration_s": 7.0 if k % 3 == 0 else 10.0, "labels": labels,
                     "normal_ecg": condition == "NSR", "age": int(30 + rng.integers(0, 60)),
                     "is_male": bool(rng.integers(0, 2)), "trace_file": f"exams_part{k * parts // n_exams}.hdf5"})
    return plan


def signal_mv(exam: dict, seed: int) -> np.ndarray:
    """The exam's [12, T] float32 mV signal at 400 Hz: what a reader must get back."""
    x, rate = generate_record(exam["condition"], "sa", seed * 100_003 + exam["exam_id"] % 100_003, exam["duration_s"])
    x = resample_poly(x.astype(np.float64), RATE_HZ, int(rate), axis=-1)
    return x[:, : int(round(exam["duration_s"] * RATE_HZ))].astype(np.float32)


def stored_tracing(signal: np.ndarray) -> np.ndarray:
    """[4096, 12] in the official units, centre zero-padded like ecg-preprocessing (floor of the pad in front)."""
    out = np.zeros((SAMPLES, 12), np.float32)
    pad = (SAMPLES - signal.shape[1]) // 2
    out[pad: pad + signal.shape[1]] = signal.T * np.float32(STORED_PER_MV)
    return out


def write_code15(root: Path, n_exams: int = 30, parts: int = 2, seed: int = 0, corrupt: bool = False) -> Path:
    """Write exams.csv and `parts` HDF5 parts under root; returns root."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    plan = exam_plan(n_exams, seed, parts)
    for exam in plan:
        exam["tracing"] = stored_tracing(signal_mv(exam, seed))
    rows = [_csv_row(exam) for exam in plan]
    extra = _corrupt_exams(parts) if corrupt else []
    rows += [_csv_row(exam) for exam in extra]
    _write_csv(root / "exams.csv", rows)
    for part in range(parts):
        members = [e for e in plan + extra if e["trace_file"] == f"exams_part{part}.hdf5" and "tracing" in e]
        _write_part(root / f"exams_part{part}.hdf5", members, seed + part)
    return root


def _corrupt_exams(parts: int) -> list[dict]:
    """A row pointing at a missing part, a row absent from its part, and an all-zero tracing."""
    base = {"patient_id": 7777, "condition": "NSR", "duration_s": 10.0, "labels": ("AF",), "normal_ecg": False,
            "age": 50, "is_male": True}
    return [{**base, "exam_id": MISSING_PART_EXAM, "trace_file": f"exams_part{parts}.hdf5"},
            {**base, "exam_id": ABSENT_EXAM, "trace_file": "exams_part0.hdf5"},
            {**base, "exam_id": ZERO_EXAM, "trace_file": "exams_part0.hdf5",
             "tracing": np.zeros((SAMPLES, 12), np.float32)}]


def _csv_row(exam: dict) -> dict:
    """An exams.csv row in the official spelling (True/False; death/timey only on a patient's first exam)."""
    row = {"exam_id": exam["exam_id"], "age": exam["age"], "is_male": exam["is_male"],
           "nn_predicted_age": round(exam["age"] + 3.5, 4), "patient_id": exam["patient_id"],
           "death": "", "timey": "", "normal_ecg": exam["normal_ecg"], "trace_file": exam["trace_file"]}
    row.update({name: name in exam["labels"] for name in ("1dAVb", "RBBB", "LBBB", "SB", "ST", "AF")})
    return row


def _write_csv(path: Path, rows: list[dict]) -> None:
    """Official column order."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _write_part(path: Path, members: list[dict], seed: int) -> None:
    """Shuffled row order (readers must use exam_id) plus a trailing filler row with exam_id 0, as in the release."""
    order = np.random.default_rng(seed).permutation(len(members))
    tracings = np.stack([members[k]["tracing"] for k in order] + [np.zeros((SAMPLES, 12), np.float32)])
    ids = np.array([members[k]["exam_id"] for k in order] + [0], dtype=np.int64)
    with h5py.File(path, "w") as handle:
        handle.create_dataset("tracings", data=tracings, dtype="f4")
        handle.create_dataset("exam_id", data=ids)
