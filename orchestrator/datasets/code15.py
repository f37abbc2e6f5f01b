"""CODE-15% (Ribeiro et al., Zenodo record 4916206) read in place from its official layout.

Layout: ``exams.csv`` (one row per exam: exam_id, age, is_male, nn_predicted_age, 1dAVb, RBBB, LBBB, SB, ST, AF,
patient_id, death, timey, normal_ecg, trace_file) and ``exams_part0.hdf5`` ... ``exams_part17.hdf5``, each holding
``tracings`` [N, 4096, 12] float32 and ``exam_id`` [N]. Tracings are 400 Hz, leads DI, DII, DIII, AVR, AVL, AVF,
V1..V6; shorter exams (7 s = 2800 samples, 10 s = 4000) are zero-padded on both sides to 4096 samples (the Zenodo
description: 648 zeros before and after a 7-s exam; ecg-preprocessing puts the odd sample at the end), and the padding
is stripped on load: leading and trailing samples that are zero on all 12 leads.

Amplitude units. The Zenodo record states no unit, and the authors' automatic-ecg-diagnosis README contradicts itself
("at the scale 1e-4V: so if the signal is in V it should be multiplied by 1000"). The preprocessing repository that
produced the files (antonior92/ecg-preprocessing, README, "Available datasets in HDF5") says CODE-15% was made with
``generate_h5.py --scale 2 ... --new_freq 400 --new_len 4096``, "so they were scaled by 2", and its reader returns
wfdb's physical signal (p_signal, in the header unit: mV for ECG). We infer stored = 2 x mV (an inference from the
preprocessing code, not a unit the dataset states) and multiply by ``scale_to_mv`` = 0.5. The parameter is part of the
dataset spec, so of every cache key: 1.0 reads the stored values as mV, 0.1 reads them literally as 1e-4 V.

Reading is lazy: exams.csv is parsed once per process (meta never touches HDF5); load(i) opens the exam's part with
h5py (handles cached per process), finds the row through that part's exam_id index and reads that one row.
"""
from __future__ import annotations

import csv
import math
import os
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from orchestrator.datasets.base import COARSE_CLASSES, DatasetSpec, Record, RecordError, RecordMeta, file_token

COLUMNS = ("exam_id", "age", "is_male", "nn_predicted_age", "1dAVb", "RBBB", "LBBB", "SB", "ST", "AF", "patient_id",
           "death", "timey", "normal_ecg", "trace_file")
LABELS: tuple[str, ...] = ("1dAVb", "RBBB", "LBBB", "SB", "ST", "AF")  # exams.csv column order
OFFICIAL_LEADS = ("DI", "DII", "DIII", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6")
LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")  # same order, canonical names
RATE_HZ = 400.0
REGION = "South America (Brazil)"
SOURCE = "code15"
# Part of every record's content token: bump when load() would return something else from the same files.
ADAPTER_VERSION = "1"
DEFAULT_SCALE_TO_MV = 0.5  # stored = 2 x mV (ecg-preprocessing README: "scaled by 2")
COARSE_MAP_FILE = Path(__file__).resolve().parent / "labels" / "code15_coarse.csv"
_REQUIRED = ("exam_id", "patient_id", "trace_file", *LABELS)
_FAST_BOOL = {"True": True, "False": False, "": None}
_TRUE = {"true", "1", "1.0", "yes", "t"}
_FALSE = {"false", "0", "0.0", "no", "f"}


@dataclass(frozen=True)
class Exam:
    """One row of exams.csv, parsed."""

    exam_id: int
    patient_id: str
    age: int | None
    is_male: bool | None
    labels: tuple[str, ...]  # the official labels set on this exam, in LABELS order
    normal_ecg: bool | None  # None when the column is absent or empty
    trace_file: str
    line: int  # line in exams.csv (header = 1), for messages


def read_coarse_map(path: Path = COARSE_MAP_FILE) -> dict[str, str]:
    """code15 label (or normal_ecg) -> coarse class, from the shipped CSV; '#' lines are comments."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(line for line in handle if not line.startswith("#")))
    mapping = {row["code15_label"].strip(): row["coarse_class"].strip() for row in rows}
    unknown = sorted(set(mapping.values()) - set(COARSE_CLASSES))
    missing = sorted(set(LABELS) - set(mapping))
    if unknown or missing:
        raise ValueError(f"{path}: coarse classes {unknown} are not in COARSE_CLASSES, or labels {missing} unmapped")
    return mapping


def _parse_bool(text: str, column: str, line: int) -> bool | None:
    """'True'/'False' (the official spelling) or 1/0; empty -> None."""
    if text in _FAST_BOOL:  # the common case, without strip/lower (345,779 rows x 8 columns)
        return _FAST_BOOL[text]
    value = text.strip().lower()
    if not value:
        return None
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"exams.csv line {line}: column {column} has {text!r}, expected True or False")


def _parse_int(text: str, column: str, line: int) -> int | None:
    """Integers, tolerating '123.0' (a CSV that went through a float column); empty -> None."""
    try:
        return int(text)
    except ValueError:
        pass
    value = text.strip()
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not number.is_integer():
        raise ValueError(f"exams.csv line {line}: column {column} has {text!r}, expected an integer")
    return int(number)


@dataclass(frozen=True)
class ExamTable:
    """exams.csv held column by column (345,779 Exam objects would cost seconds and memory in every worker)."""

    exam_id: list[int]
    patient_id: list[str]
    age: list[int | None]
    is_male: list[bool | None]
    labels: list[tuple[str, ...]]
    normal_ecg: list[bool | None]
    trace_file: list[str]
    lines: list[int]
    duplicates: dict[int, list[int]]  # exam_id -> CSV lines, for exam ids listed more than once

    def __len__(self) -> int:
        return len(self.exam_id)

    def exam(self, i: int) -> Exam:
        """Row i as an Exam."""
        return Exam(self.exam_id[i], self.patient_id[i], self.age[i], self.is_male[i], self.labels[i],
                    self.normal_ecg[i], self.trace_file[i], self.lines[i])


def _int_column(values: list[str], name: str, lines: list[int]) -> list[int | None]:
    """A column of integers: one fast map(int), element-wise parsing only when that fails."""
    try:
        return list(map(int, values))
    except ValueError:
        return [_parse_int(v, name, line) for v, line in zip(values, lines)]


def _bool_column(values: list[str], name: str, lines: list[int]) -> list[bool | None]:
    """A column of booleans: dictionary lookups for the official spelling, parsing for anything else."""
    out = [_FAST_BOOL.get(v, v) for v in values]
    return [v if v is None or isinstance(v, bool) else _parse_bool(v, name, line) for v, line in zip(out, lines)]


def _label_tuples(columns: list[list[bool | None]]) -> list[tuple[str, ...]]:
    """Per row, the official labels set; one shared tuple per distinct combination."""
    shared: dict[tuple, tuple[str, ...]] = {}
    out = []
    for flags in zip(*columns):
        if flags not in shared:
            shared[flags] = tuple(name for name, flag in zip(LABELS, flags) if flag)
        out.append(shared[flags])
    return out


@lru_cache(maxsize=4)
def _read_exams_cached(path: str, mtime_ns: int, size: int) -> ExamTable:
    """Parse exams.csv once per process and file version (Ray workers reopen the dataset for every batch)."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        missing = [c for c in _REQUIRED if c not in header]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; CODE-15% exams.csv has {', '.join(COLUMNS)}")
        width = len(header)
        numbered = [(line, cells) for line, cells in enumerate(reader, start=2) if cells]
    lines = [line for line, _ in numbered]
    rows = [cells if len(cells) == width else (cells + [""] * width)[:width] for _, cells in numbered]
    columns = dict(zip(header, map(list, zip(*rows)))) if rows else {name: [] for name in header}
    empty = [""] * len(rows)
    exam_id = _int_column(columns["exam_id"], "exam_id", lines)
    patient_id = _int_column(columns["patient_id"], "patient_id", lines)
    for ids, name in ((exam_id, "exam_id"), (patient_id, "patient_id")):
        if None in ids:
            raise ValueError(f"exams.csv line {lines[ids.index(None)]}: {name} is required")
    labels = _label_tuples([_bool_column(columns[name], name, lines) for name in LABELS])
    duplicates: dict[int, list[int]] = {}
    for exam, line in zip(exam_id, lines):
        duplicates.setdefault(exam, []).append(line)
    return ExamTable(exam_id, [str(p) for p in patient_id], _int_column(columns.get("age", empty), "age", lines),
                     _bool_column(columns.get("is_male", empty), "is_male", lines), labels,
                     _bool_column(columns.get("normal_ecg", empty), "normal_ecg", lines),
                     [t.strip() for t in columns["trace_file"]], lines,
                     {exam: where for exam, where in duplicates.items() if len(where) > 1})


def read_exams(path: Path) -> ExamTable:
    """All rows of exams.csv, in file order."""
    stat = os.stat(path)
    return _read_exams_cached(str(path), stat.st_mtime_ns, stat.st_size)


def strip_zero_padding(signal: np.ndarray) -> np.ndarray:
    """[leads, T] without the leading and trailing samples at which every lead is exactly zero."""
    active = np.flatnonzero(np.any(signal != 0, axis=0))
    if active.size == 0:
        return signal[:, :0]
    return signal[:, active[0]:active[-1] + 1]


# Per-process state. h5py handles must not cross fork(), so everything is keyed by the process id.
_FILES: dict[tuple[int, str], h5py.File] = {}
_INDEXES: dict[tuple[int, str], dict[int, int] | str] = {}


def _open_part(path: Path) -> h5py.File:
    """The process's open handle on one HDF5 part."""
    key = (os.getpid(), str(path))
    if key not in _FILES:
        _FILES[key] = h5py.File(path, "r")
    return _FILES[key]


def _part_index(path: Path) -> dict[int, int] | str:
    """exam_id -> row of one part, or the reason the part is unusable; built once per process."""
    key = (os.getpid(), str(path))
    if key not in _INDEXES:
        _INDEXES[key] = _build_index(path)
    return _INDEXES[key]


def _build_index(path: Path) -> dict[int, int] | str:
    """Read a part's exam_id dataset (small) and check it against its tracings."""
    try:
        handle = _open_part(path)
        if "exam_id" not in handle or "tracings" not in handle:
            return f"{path.name} lacks the exam_id or tracings dataset"
        ids = np.asarray(handle["exam_id"][:]).astype(np.int64)
        shape = handle["tracings"].shape
    except OSError as err:
        return f"cannot open {path.name}: {err}"
    if len(shape) != 3 or shape[0] != len(ids) or shape[2] != len(LEADS):
        return f"{path.name}: tracings shape {list(shape)} does not fit {len(ids)} exam ids x samples x 12 leads"
    index: dict[int, int] = {}
    for row, exam_id in enumerate(ids.tolist()):
        index.setdefault(exam_id, row)  # the official parts end in filler rows with exam_id 0; never asked for
    return index


class Code15Dataset:
    """Adapter over the official CODE-15% files; task `code15` (six labels) and task `coarse`."""

    tasks = {"code15": LABELS, "coarse": COARSE_CLASSES}
    multi_label = {"code15": True, "coarse": True}

    def __init__(self, spec: DatasetSpec) -> None:
        params = _check_params(spec.params)
        self.root = Path(params["path"])
        self.scale_to_mv = float(params["scale_to_mv"])
        self.spec = DatasetSpec("code15", params)
        self.name = "code15"
        self._table = read_exams(self.root / "exams.csv")
        self._duplicates = self._table.duplicates
        self._coarse = read_coarse_map()
        self._coarse_of: dict[tuple[tuple[str, ...], bool | None], tuple[str, ...]] = {}
        # Stat each part once: a cheap existence check, no HDF5 read.
        self._present = {name: (self.root / name).is_file() for name in set(self._table.trace_file) if name}

    def __len__(self) -> int:
        return len(self._table)

    def meta(self, i: int) -> RecordMeta:
        """Labels and demographics from exams.csv; never opens an HDF5 part."""
        exam = self._table.exam(i)
        return RecordMeta(f"code15-{exam.exam_id}", f"code15-p{exam.patient_id}", SOURCE,
                          {"code15": exam.labels, "coarse": self._coarse_labels(exam)},
                          {"age": exam.age, "sex": None if exam.is_male is None else ("M" if exam.is_male else "F"),
                           "region": REGION, "exam_id": exam.exam_id, "trace_file": exam.trace_file})

    def _coarse_labels(self, exam: Exam) -> tuple[str, ...]:
        """The exam's labels on COARSE_CLASSES, in that order; normal_ecg adds NSR when mapped (memoised: few combos)."""
        key = (exam.labels, exam.normal_ecg)
        if key not in self._coarse_of:
            names = {self._coarse[label] for label in exam.labels}
            if exam.normal_ecg and "normal_ecg" in self._coarse:
                names.add(self._coarse["normal_ecg"])
            self._coarse_of[key] = tuple(c for c in COARSE_CLASSES if c in names)
        return self._coarse_of[key]

    def locate(self, i: int) -> tuple[Path, int]:
        """(part file, row) of exam i; RecordError when exams.csv and the parts disagree."""
        exam = self._table.exam(i)
        rid = f"code15-{exam.exam_id}"
        if exam.exam_id in self._duplicates:
            lines = ", ".join(map(str, self._duplicates[exam.exam_id]))
            raise RecordError(f"{rid}: exam_id listed more than once in exams.csv (lines {lines}); all copies skipped")
        if not exam.trace_file:
            raise RecordError(f"{rid}: exams.csv line {exam.line} has no trace_file")
        if not self._present.get(exam.trace_file):
            raise RecordError(f"{rid}: trace_file {exam.trace_file} not found in {self.root}")
        path = self.root / exam.trace_file
        index = _part_index(path)
        if isinstance(index, str):
            raise RecordError(f"{rid}: {index}")
        if exam.exam_id not in index:
            raise RecordError(f"{rid}: exam_id {exam.exam_id} is not in {exam.trace_file}")
        return path, index[exam.exam_id]

    def content_token(self, i: int) -> str:
        """Stats of the HDF5 part holding exam i, plus its exam_id (a changed part re-embeds all of its exams)."""
        trace_file = self._table.trace_file[i]
        parts = (self.root / trace_file,) if trace_file else ()
        return file_token(ADAPTER_VERSION, parts, str(self._table.exam_id[i]))

    def load(self, i: int) -> Record:
        """Read one row of one part; strip the zero padding; stored units -> mV."""
        rid = f"code15-{self._table.exam_id[i]}"
        path, row = self.locate(i)
        try:
            tracing = np.asarray(_open_part(path)["tracings"][row], dtype=np.float32)  # [samples, 12]
        except (OSError, KeyError) as err:
            raise RecordError(f"{rid}: cannot read row {row} of {path.name}: {err}") from None
        if not tracing.any():
            raise RecordError(f"{rid}: empty tracing (all {tracing.size} values in {path.name} row {row} are zero)")
        signal = strip_zero_padding(tracing.T) * np.float32(self.scale_to_mv)
        return Record(rid, np.ascontiguousarray(signal, dtype=np.float32), RATE_HZ, LEADS, "mV")

    def describe(self, scan_signals: bool = False) -> dict[str, Any]:
        """Counts and problems; scan_signals also reads every tracing (durations, empty tracings; slow on 18 parts)."""
        problems: list[dict[str, str]] = []
        usable: list[int] = []
        for i in range(len(self)):
            try:
                self.locate(i)
                usable.append(i)
            except RecordError as err:
                problems.append(_problem(f"code15-{self._table.exam_id[i]}", err))
        durations = _scan(self, usable, problems) if scan_signals else None
        if durations is not None:
            usable = [i for i in usable if i in durations]
        metas = [self.meta(i) for i in range(len(self))]
        return {
            "name": self.name,
            "kind": "code15",
            "records": len(self),
            "patients": len({m.patient_id for m in metas}),
            "path": str(self.root),
            "sampling_rates_hz": {f"{RATE_HZ:g}": len(usable)},
            "durations_s": _duration_summary(list(durations.values())) if durations is not None else None,
            "leads": {",".join(LEADS): len(usable)},
            "labels": {task: _label_counts(metas, task, classes) for task, classes in self.tasks.items()},
            "sources": dict(Counter(m.source for m in metas)),
            "problems": problems,
            "signals_scanned": scan_signals,
            "amplitude": f"stored values x {self.scale_to_mv} -> mV",
        }


def _scan(dataset: Code15Dataset, indices: list[int], problems: list[dict[str, str]]) -> dict[int, float]:
    """Load each record (part by part, row order) -> {index: duration in s}; failures join problems."""
    durations = {}
    for i in sorted(indices, key=dataset.locate):
        try:
            durations[i] = dataset.load(i).signal.shape[1] / RATE_HZ
        except RecordError as err:
            problems.append(_problem(dataset.meta(i).record_id, err))
    return durations


def _problem(record: str, err: Exception, level: str = "error") -> dict[str, str]:
    """One describe() problem entry."""
    return {"record": record, "problem": str(err), "level": level}


def _duration_summary(durations: list[float]) -> dict[str, Any] | None:
    """min/median/max and a histogram at 0.1 s."""
    if not durations:
        return None
    values = np.asarray(durations)
    counts = Counter(f"{d:.1f}" for d in values)
    return {"min": float(values.min()), "median": float(np.median(values)), "max": float(values.max()),
            "counts": dict(sorted(counts.items(), key=lambda kv: float(kv[0])))}


def _label_counts(metas: list[RecordMeta], task: str, classes: tuple[str, ...]) -> dict[str, int]:
    """Records carrying each class of a task (zeros included, so absent classes show)."""
    counts = Counter(label for m in metas for label in m.labels.get(task, ()))
    return {c: counts.get(c, 0) for c in classes}


def _check_params(params: dict[str, Any]) -> dict[str, Any]:
    """Validated params with defaults; path made absolute so any worker can reopen the spec."""
    allowed = {"path", "scale_to_mv"}
    unknown = set(params) - allowed
    if unknown:
        raise ValueError(f"code15 dataset: unknown parameter(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    if not params.get("path"):
        raise ValueError("code15 dataset: give the folder holding exams.csv and exams_part*.hdf5 (param path)")
    root = Path(params["path"]).expanduser().resolve()
    if not (root / "exams.csv").is_file():
        raise ValueError(f"code15 dataset: {root / 'exams.csv'} not found")
    scale = float(params.get("scale_to_mv", DEFAULT_SCALE_TO_MV))
    if not scale > 0:
        raise ValueError(f"code15 dataset: scale_to_mv must be > 0, got {scale}")
    return {"path": str(root), "scale_to_mv": scale}
