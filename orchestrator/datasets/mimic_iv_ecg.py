"""MIMIC-IV-ECG v1.0 (Gow et al., 2023, PhysioNet) read in place from its release layout.

Layout: ``record_list.csv`` (subject_id, study_id, file_name, ecg_time, path), ``machine_measurements.csv``
(subject_id, study_id, cart_id, ecg_time, report_0..report_17, bandwidth, filtering, rr_interval, p_onset, p_end,
qrs_onset, qrs_end, t_end, p_axis, qrs_axis, t_axis) and WFDB records under ``files/pNNNN/pNNNNNNNN/sNNNNNNNN/``.
One record per row of record_list.csv; patient id = subject_id.

Labels are a heuristic, not a diagnosis: the release has no cardiologist labels, only the ECG cart's own free-text
statements (report_0..report_17 of machine_measurements.csv). ``mimic_statements`` maps them by keyword onto task
``rhythm`` (SR, SB, STach, AF, AFL, paced), ``normality`` (normal/borderline/abnormal, the machine's overall call) and
``coarse`` (NSR, AF, SB, STach, 1dAVb, RBBB, LBBB; never STE). What a probe learns from them is how well an embedding
reproduces the machine's read, and every summary names the label source "machine statements (keyword rules)".
Machine measurements go into each record's extra (numbers, 29999 and other out-of-range values as missing).
"""
from __future__ import annotations

import csv
import math
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.datasets.base import DatasetSpec, Record, RecordError, RecordMeta, file_token
from orchestrator.datasets.header_checks import check_wfdb_header
from orchestrator.datasets.mimic_statements import TASKS, labels_of
from orchestrator.datasets.ptbxl import read_header, read_signal

KIND = "mimic-iv-ecg"
RECORD_LIST = "record_list.csv"
MEASUREMENTS = "machine_measurements.csv"
REGION = "North America (USA, Boston)"
SOURCE = "mimic-iv-ecg"
LABEL_SOURCE = "machine statements (keyword rules)"
REPORT_COLUMNS = tuple(f"report_{k}" for k in range(18))
NUMBER_COLUMNS = ("rr_interval", "p_onset", "p_end", "qrs_onset", "qrs_end", "t_end", "p_axis", "qrs_axis", "t_axis")
_REQUIRED_LIST = ("subject_id", "study_id", "path")
_REQUIRED_MEASUREMENTS = ("study_id", "report_0")
# Part of every record's content token: bump when load() would return something else from the same files.
ADAPTER_VERSION = "1"
_MISSING_AT = 29999.0  # the release's "not measured"; no interval (ms) or axis (degrees) reaches it
_PATH = re.compile(r"^files/p\d{4}/p\d+/s\d+/\d+$")


def _int(text: str | None) -> int | None:
    """A whole-number cell, None when empty or not a whole number."""
    try:
        value = float(text) if text not in (None, "") else None
    except ValueError:
        return None
    return int(value) if value is not None and math.isfinite(value) and value == int(value) else None


def _measure(text: str | None) -> float:
    """A machine-measurement cell as float, NaN when empty, not a number or the release's missing value."""
    try:
        value = float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan
    return value if math.isfinite(value) and abs(value) < _MISSING_AT else math.nan


def _open_csv(path: Path, required: tuple[str, ...]) -> tuple[Any, csv.DictReader]:
    """(file, DictReader) of a release CSV, after checking the columns it must have."""
    f = open(path, newline="", encoding="utf-8", errors="replace")
    reader = csv.DictReader(f)
    missing = [c for c in required if c not in (reader.fieldnames or [])]
    if missing:
        f.close()
        raise ValueError(f"{KIND} dataset: {path} lacks column(s) {missing}; is this the MIMIC-IV-ECG release?")
    return f, reader


class MimicIvEcgDataset:
    """MIMIC-IV-ECG: one record per row of record_list.csv, labels from the machine's statements."""

    def __init__(self, spec: DatasetSpec) -> None:
        unknown = set(spec.params) - {"path"}
        if unknown:
            raise ValueError(f"{KIND} dataset: unknown parameter(s) {sorted(unknown)}; allowed: path")
        if not spec.params.get("path"):
            raise ValueError(f"{KIND} dataset: give the release folder (holding {RECORD_LIST}) as `path`")
        self.root = Path(spec.params["path"]).expanduser().resolve()
        self.spec = DatasetSpec(KIND, {"path": str(self.root)})  # `mimic:` and `mimic-iv-ecg:` share a cache key
        self.name = KIND
        if not (self.root / RECORD_LIST).is_file():
            raise ValueError(f"{KIND} dataset: {self.root / RECORD_LIST} not found; `path` must be the release "
                             f"folder holding {RECORD_LIST}, {MEASUREMENTS} and files/")
        self._problems: list[dict] = []
        self._read_record_list()
        self._read_measurements()
        self.tasks = {task: classes for task, classes in TASKS.items()}
        self.multi_label = {task: True for task in self.tasks}
        self.counts = {task: Counter(c for labels in self._labels for c in labels.get(task, ())) for task in TASKS}

    def _read_record_list(self) -> None:
        """Ids and paths in file order (compact: no per-record dicts); bad rows are skipped and noted."""
        subjects, studies, paths, times, seen = [], [], [], [], set()
        f, reader = _open_csv(self.root / RECORD_LIST, _REQUIRED_LIST)
        with f:
            for line, row in enumerate(reader, start=2):
                where = f"{RECORD_LIST} line {line}"
                subject, study = _int(row.get("subject_id")), _int(row.get("study_id"))
                path = (row.get("path") or "").strip().strip("/")
                if subject is None or study is None:
                    self._bad_row(where, f"subject_id {row.get('subject_id')!r} / study_id {row.get('study_id')!r}"
                                         f" not whole numbers; row skipped")
                    continue
                if not path:
                    path = f"files/p{str(subject)[:4]}/p{subject}/s{study}/{study}"  # the release's own rule
                if ".." in Path(path).parts or Path(path).is_absolute():
                    self._bad_row(where, f"path {path!r} leaves the release folder; row skipped")
                    continue
                if study in seen:
                    self._bad_row(where, f"study_id {study} listed twice; later row skipped")
                    continue
                if not _PATH.match(path):
                    self._bad_row(where, f"path {path!r} is not files/pNNNN/pNNNNNNNN/sNNNNNNNN/NNNNNNNN; "
                                         f"used as given")
                seen.add(study)
                subjects.append(subject)
                studies.append(study)
                paths.append(path)
                times.append((row.get("ecg_time") or "").strip() or None)
        self._subjects = np.asarray(subjects, dtype=np.int64)
        self._studies = np.asarray(studies, dtype=np.int64)
        self._paths, self._times = paths, times
        self._index = {s: i for i, s in enumerate(studies)}

    def _read_measurements(self) -> None:
        """Labels and measurements per listed study; a record without a report row has no labels."""
        n = len(self._studies)
        self._labels: list[dict[str, tuple[str, ...]]] = [{} for _ in range(n)]
        self._numbers = np.full((n, len(NUMBER_COLUMNS)), np.nan, dtype=np.float32)
        self._carts: list[str | None] = [None] * n
        self.reported = np.zeros(n, dtype=bool)
        self.unlisted_reports = 0
        path = self.root / MEASUREMENTS
        if not path.is_file():
            self._problems.append({"kind": "missing_file", "where": MEASUREMENTS,
                                   "problem": f"{path} not found: no record has labels"})
            return
        interned: dict[tuple, dict] = {}  # few distinct label sets: share them across records
        f, reader = _open_csv(path, _REQUIRED_MEASUREMENTS)
        with f:
            for line, row in enumerate(reader, start=2):
                i = self._index.get(_int(row.get("study_id")))
                if i is None:
                    self.unlisted_reports += 1
                    continue
                statements = [row[c] for c in REPORT_COLUMNS if row.get(c)]
                labels = labels_of(statements)
                key = tuple(sorted(labels.items()))
                self._labels[i] = interned.setdefault(key, labels)
                self._numbers[i] = [_measure(row.get(c)) for c in NUMBER_COLUMNS]
                self._carts[i] = (row.get("cart_id") or "").strip() or None
                self.reported[i] = True

    def _bad_row(self, where: str, problem: str) -> None:
        self._problems.append({"kind": "bad_row", "where": where, "problem": problem})

    def __len__(self) -> int:
        return len(self._studies)

    def record_ids(self) -> list[str]:
        """Every record id in index order, without building metadata."""
        return [f"mimic-{s}" for s in self._studies.tolist()]

    def meta(self, i: int) -> RecordMeta:
        """Record i's ids, heuristic labels and machine measurements (built on demand; no file is opened)."""
        study, subject = int(self._studies[i]), int(self._subjects[i])
        extra: dict[str, Any] = {"age": None, "sex": None, "region": REGION, "subject_id": subject,
                                 "study_id": study, "ecg_time": self._times[i], "cart_id": self._carts[i],
                                 "label_source": LABEL_SOURCE}
        for name, value in zip(NUMBER_COLUMNS, self._numbers[i].tolist()):
            extra[name] = None if math.isnan(value) else value
        labels = self._labels[i]
        return RecordMeta(f"mimic-{study}", f"mimic-p{subject}", SOURCE,
                          {task: labels.get(task, ()) for task in self.tasks}, extra)

    def record_path(self, i: int) -> Path:
        """Record i's WFDB path without extension."""
        return self.root / self._paths[i]

    def _files(self, i: int) -> tuple[Path, Path]:
        base = self.record_path(i)
        return base.parent / (base.name + ".hea"), base.parent / (base.name + ".dat")

    def content_token(self, i: int) -> str:
        """Stats of record i's .hea and .dat (the release names its signal file after the study)."""
        return file_token(ADAPTER_VERSION, self._files(i))

    def load(self, i: int) -> Record:
        """Record i's samples in mV, [leads, samples], lead names as in the header (aVF before aVL)."""
        record_id = f"mimic-{int(self._studies[i])}"
        hea, _ = self._files(i)
        if not hea.is_file():
            raise RecordError(f"{record_id}: header file {hea} is missing")
        check_wfdb_header(hea, record_id)  # wfdb would read a corrupt rate as its 250 Hz default
        try:
            signal, rate, leads = read_signal(self.record_path(i))
        except RecordError as err:
            raise RecordError(f"{record_id}: {err}") from None
        return Record(record_id, signal, rate, leads, "mV")

    def metadata_problems(self) -> list[tuple[str, str]]:
        """(where, problem) of every record_list.csv row skipped or read with a gap (the run lists them in errors)."""
        return [(p["where"], p["problem"]) for p in self._problems if p["kind"] == "bad_row"]

    def describe(self, headers: int | None = 100) -> dict[str, Any]:
        """Counts, heuristic labels and problems; reads `headers` evenly spaced headers (None: all), size-checked."""
        problems = list(self._problems)
        lengths, rates, leads, checked = self._sample_headers(headers, problems)
        kinds = Counter(p["kind"] for p in problems)
        return {
            "name": self.name, "kind": KIND, "path": str(self.root), "records": len(self),
            "patients": int(len(np.unique(self._subjects))), "sources": {SOURCE: len(self)}, "region": REGION,
            "label_source": LABEL_SOURCE, "with_machine_report": int(self.reported.sum()),
            "reports_of_unlisted_studies": self.unlisted_reports,
            "headers_read": checked, "sampling_rates_hz": sorted(rates), "leads": leads,
            "lengths_s": _summary(lengths),
            "label_counts": {t: {c: self.counts[t][c] for c in classes} for t, classes in self.tasks.items()},
            "unlabelled": {t: sum(1 for labels in self._labels if not labels.get(t)) for t in self.tasks},
            "problem_counts": dict(sorted(kinds.items())), "problems": problems[:100],
            "problems_left_out": max(0, len(problems) - 100),
        }

    def _sample_headers(self, limit: int | None, problems: list[dict]) -> tuple[list[float], set[float], list[str],
                                                                                    int]:
        """Lengths (s), rates, lead names and count from evenly spaced records; their failures join problems."""
        n = len(self) if limit is None else min(limit, len(self))
        picks = sorted(set(np.linspace(0, len(self) - 1, n).round().astype(int).tolist())) if n > 0 else []
        lengths, rates, leads = [], set(), []
        for i in picks:
            record_id = f"mimic-{int(self._studies[i])}"
            hea, dat = self._files(i)
            missing = [p for p in (hea, dat) if not os.path.isfile(p)]
            if missing:
                problems.append({"kind": "missing_file", "where": record_id,
                                 "problem": ", ".join(f"{p} is missing" for p in missing)})
                continue
            try:
                header = read_header(self.record_path(i))  # runs the header checks, then the size check
            except RecordError as err:
                problems.append({"kind": "bad_record", "where": record_id, "problem": str(err)})
                continue
            lengths.append(header.sig_len / header.fs)
            rates.add(float(header.fs))
            leads = leads or list(header.sig_name)
        return lengths, rates, leads, len(picks)


def _summary(values: list[float]) -> dict[str, float] | None:
    """min/median/max of a list, None when empty."""
    if not values:
        return None
    return {"min": float(np.min(values)), "median": float(np.median(values)), "max": float(np.max(values))}
