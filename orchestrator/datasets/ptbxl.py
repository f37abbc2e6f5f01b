"""PTB-XL v1.0.3 (Wagner et al., 2020) in its official PhysioNet layout, with the tasks of the PTB-XL benchmark.

Layout: ``ptbxl_database.csv``, ``scp_statements.csv`` and WFDB records under ``records100/`` and ``records500/``.
Tasks follow ``utils.compute_label_aggregations`` of github.com/helme/ecg_ptbxl_benchmarking (Strodthoff et al.,
2021): a statement counts when it is a key of ``scp_codes``, whatever its likelihood, and classes with fewer than
``min_count`` records are dropped. Unlike that code, records left without a label for a task are kept with an empty
label tuple, so one dataset serves every task. Task ``coarse`` maps statements onto ``COARSE_CLASSES`` through
``labels/ptbxl_coarse.csv``.
"""
from __future__ import annotations

import ast
import csv
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from orchestrator.datasets.base import COARSE_CLASSES, DatasetSpec, Record, RecordError, RecordMeta, file_token
from orchestrator.datasets.header_checks import wfdb_header_problem

DATABASE = "ptbxl_database.csv"
STATEMENTS = "scp_statements.csv"
COARSE_MAP = Path(__file__).with_name("labels") / "ptbxl_coarse.csv"
REGION = "Europe (Germany)"
SOURCE = "ptbxl"
RATE_COLUMN = {100: "filename_lr", 500: "filename_hr"}
DEFAULT_FOLDS = {"train": [1, 2, 3, 4, 5, 6, 7, 8], "validation": [9], "test": [10]}
DEFAULTS: dict[str, Any] = {"sampling_rate": 500, "min_count": 10, "folds": DEFAULT_FOLDS}
# superdiagnostic first: the runner splits and colours UMAPs by the first task, and five classes read best there.
TASKS = ("superdiagnostic", "subdiagnostic", "diagnostic", "form", "rhythm", "all", "coarse")
REQUIRED_COLUMNS = ("ecg_id", "patient_id", "scp_codes", "strat_fold", "filename_lr", "filename_hr")
# Part of every record's content token: bump when load() would return something else from the same files.
ADAPTER_VERSION = "1"
AGE_OVER_89 = 300.0  # PTB-XL's de-identified age of patients aged 90 or more (HIPAA)
_UNIT_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3}
# Bytes per sample of the WFDB storage formats whose size follows from the header; others are not size-checked.
_BYTES_PER_SAMPLE = {"8": 1.0, "80": 1.0, "16": 2.0, "61": 2.0, "160": 2.0, "24": 3.0, "32": 4.0,
                     "212": 1.5, "310": 4 / 3, "311": 4 / 3}


@dataclass(frozen=True)
class Statement:
    """One row of scp_statements.csv, reduced to what the label aggregation needs."""

    code: str
    description: str
    diagnostic: bool
    form: bool
    rhythm: bool
    diagnostic_class: str
    diagnostic_subclass: str


@dataclass(frozen=True)
class _Row:
    """One row of ptbxl_database.csv, parsed."""

    ecg_id: int
    patient_id: str
    fold: int | None
    files: dict[int, str]
    codes: tuple[str, ...]
    extra: dict[str, Any]


def _flag(text: str) -> bool:
    """scp_statements.csv marks membership with 1.0 and leaves the cell empty otherwise."""
    try:
        return float(text) == 1.0
    except (TypeError, ValueError):
        return False


def _number(text: str | None) -> float | None:
    """A float cell, None when empty or not a number."""
    try:
        value = float(text) if text not in (None, "") else None
    except ValueError:
        return None
    return value if value is None or math.isfinite(value) else None


def read_statements(path: Path) -> dict[str, Statement]:
    """scp_statements.csv as code -> Statement; the code is the first, unnamed column."""
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: empty file")
        need = ("description", "diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass")
        missing = [c for c in need if c not in header]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}")
        at = {name: header.index(name) for name in need}
        table = {}
        for row in reader:
            if not row or not row[0].strip():
                continue
            cell = {name: (row[k].strip() if k < len(row) else "") for name, k in at.items()}
            code = row[0].strip()
            table[code] = Statement(code, cell["description"], _flag(cell["diagnostic"]), _flag(cell["form"]),
                                    _flag(cell["rhythm"]), cell["diagnostic_class"], cell["diagnostic_subclass"])
    return table


def read_coarse_map(path: Path = COARSE_MAP) -> dict[str, str]:
    """statement code -> coarse class; '#' lines are commentary and rows without a class are documented exclusions."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(line for line in f if not line.lstrip().startswith("#")))
    mapping = {}
    for row in rows:
        code, coarse = row["scp_code"].strip(), (row.get("coarse_class") or "").strip()
        if coarse and coarse not in COARSE_CLASSES:
            raise ValueError(f"{path}: {code} maps to {coarse!r}, which is not one of {COARSE_CLASSES}")
        if coarse:
            mapping[code] = coarse
    return mapping


def aggregate(codes: Iterable[str], statements: dict[str, Statement], coarse: dict[str, str]) -> dict[str, set[str]]:
    """Every task's classes of one record, before min_count (compute_label_aggregations, task by task)."""
    codes = set(codes)
    known = [statements[c] for c in codes if c in statements]
    diagnostic = [s for s in known if s.diagnostic]
    return {
        "all": codes,  # every key of scp_codes, as the benchmark's 'all_scp'
        "diagnostic": {s.code for s in diagnostic},
        "subdiagnostic": {s.diagnostic_subclass for s in diagnostic if s.diagnostic_subclass},
        "superdiagnostic": {s.diagnostic_class for s in diagnostic if s.diagnostic_class},
        "form": {s.code for s in known if s.form},
        "rhythm": {s.code for s in known if s.rhythm},
        "coarse": {coarse[c] for c in codes if c in coarse},
    }


def parse_scp_codes(text: str) -> dict[str, float]:
    """The scp_codes cell, a Python dict literal such as "{'NORM': 100.0, 'SR': 0.0}"."""
    value = ast.literal_eval(text)
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"not a dict of statement codes: {text!r}")
    return value


def _sex(text: str | None) -> str | None:
    """PTB-XL codes sex as 0 = male, 1 = female; the synthetic adapter's M/F is used across datasets."""
    return {0.0: "M", 1.0: "F"}.get(_number(text))


def _age(text: str | None) -> float | None:
    """Age in years; PTB-XL's 300 (aged 90 or more) becomes 90."""
    age = _number(text)
    return 90.0 if age == AGE_OVER_89 else age


def _parse_row(row: dict[str, str], line: int, problems: list[dict]) -> _Row | None:
    """One database row; None (with a problem noted) when it has no usable ecg_id."""
    ecg = _number(row.get("ecg_id"))
    if ecg is None or ecg != int(ecg):
        problems.append({"kind": "bad_row", "where": f"{DATABASE} line {line}",
                         "problem": f"ecg_id {row.get('ecg_id')!r} is not an integer; row skipped"})
        return None
    ecg_id = int(ecg)
    where = f"{DATABASE} line {line} (ecg_id {ecg_id})"
    patient = _number(row.get("patient_id"))
    if patient is None:
        problems.append({"kind": "bad_row", "where": where, "problem": "no patient_id; the record is its own patient"})
    try:
        codes = tuple(parse_scp_codes(row.get("scp_codes") or ""))
    except (ValueError, SyntaxError, TypeError) as err:
        problems.append({"kind": "bad_row", "where": where, "problem": f"scp_codes unreadable ({err}); no labels"})
        codes = ()
    fold = _number(row.get("strat_fold"))
    if fold is None:
        problems.append({"kind": "bad_row", "where": where, "problem": "no strat_fold; outside the official split"})
    site = _number(row.get("site"))
    extra = {"age": _age(row.get("age")), "sex": _sex(row.get("sex")),
             "strat_fold": None if fold is None else int(fold), "site": None if site is None else int(site),
             "device": (row.get("device") or "").strip() or None, "region": REGION}
    return _Row(ecg_id, f"ptbxl-p{int(patient)}" if patient is not None else f"ptbxl-e{ecg_id}",
                None if fold is None else int(fold), {r: (row.get(c) or "").strip() for r, c in RATE_COLUMN.items()},
                codes, extra)


def read_database(path: Path) -> tuple[list[_Row], list[dict]]:
    """ptbxl_database.csv in file order, with the problems met on the way."""
    # errors="replace": only the free-text report column could suffer, and it is not used.
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; is this PTB-XL's ptbxl_database.csv?")
        problems: list[dict] = []
        rows = [_parse_row(row, reader.line_num, problems) for row in reader]
    return [r for r in rows if r is not None], problems


def _check_folds(folds: Any) -> dict[str, list[int]]:
    """folds param: {train, test[, validation]} -> disjoint lists of strat_fold numbers 1..10."""
    if not isinstance(folds, dict) or not {"train", "test"} <= set(folds) <= {"train", "validation", "test"}:
        raise ValueError(f"ptbxl dataset: folds must map train, test (and optionally validation) to strat_fold "
                         f"numbers, got {folds!r}")
    out, seen = {}, set()
    for part, numbers in folds.items():
        numbers = [numbers] if isinstance(numbers, int) else list(numbers)
        if not all(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 10 for n in numbers):
            raise ValueError(f"ptbxl dataset: folds.{part} must be strat_fold numbers 1..10, got {numbers!r}")
        if seen & set(numbers):
            raise ValueError(f"ptbxl dataset: strat_fold(s) {sorted(seen & set(numbers))} are in two parts of folds")
        seen |= set(numbers)
        out[part] = sorted(numbers)
    return out


def normalise_params(params: dict[str, Any]) -> dict[str, Any]:
    """Validated params with defaults filled in and the path made absolute (workers may run elsewhere)."""
    unknown = set(params) - set(DEFAULTS) - {"path"}
    if unknown:
        raise ValueError(f"ptbxl dataset: unknown parameter(s) {sorted(unknown)}; allowed: path, {', '.join(DEFAULTS)}")
    if not params.get("path"):
        raise ValueError("ptbxl dataset: give the PTB-XL folder as `path` (the one holding ptbxl_database.csv)")
    out = {**DEFAULTS, **params, "path": str(Path(params["path"]).expanduser().resolve())}
    rate = out["sampling_rate"]
    if isinstance(rate, bool) or rate not in RATE_COLUMN:
        raise ValueError(f"ptbxl dataset: sampling_rate must be 100 or 500, got {rate!r}")
    out["sampling_rate"] = int(rate)
    if isinstance(out["min_count"], bool) or not isinstance(out["min_count"], int) or out["min_count"] < 1:
        raise ValueError(f"ptbxl dataset: min_count must be an integer >= 1, got {out['min_count']!r}")
    out["folds"] = _check_folds(out["folds"])
    return out


def _sidecar(base: Path, suffix: str) -> Path:
    """base + suffix; with_suffix would eat anything after a dot in the record name."""
    return base.parent / (base.name + suffix)


def _check_sizes(header: Any, base: Path) -> None:
    """Each signal file holds exactly the bytes its header declares (catches truncation and a wrong n_samples)."""
    hea = _sidecar(base, ".hea")
    for name in dict.fromkeys(header.file_name):
        signals = [k for k, f in enumerate(header.file_name) if f == name]
        dat = base.parent / name
        if not dat.is_file():
            raise RecordError(f"signal file {dat} named in {hea} is missing")
        formats = {header.fmt[k] for k in signals}
        if len(formats) != 1 or next(iter(formats)) not in _BYTES_PER_SAMPLE:
            continue  # compressed or mixed formats: the reader's own checks must do
        fmt = next(iter(formats))
        frame = sum((header.samps_per_frame[k] or 1) for k in signals)
        offset = max((header.byte_offset[k] or 0) for k in signals)
        expected = offset + math.ceil(header.sig_len * frame * _BYTES_PER_SAMPLE[fmt])
        actual = dat.stat().st_size
        if actual != expected:
            raise RecordError(f"{dat} holds {actual} bytes but {hea} declares {len(signals)} signal(s) x "
                              f"{header.sig_len} samples in format {fmt} = {expected} bytes: truncated data or a "
                              f"header whose n_samples disagrees with it")


def read_header(base: Path) -> Any:
    """The WFDB header of record `base` (path without extension), size-checked against its signal files."""
    import wfdb

    hea = _sidecar(base, ".hea")
    if not hea.is_file():
        raise RecordError(f"header file {hea} is missing")
    problem = wfdb_header_problem(hea.read_text(errors="replace"))  # wfdb would guess defaults for bad fields
    if problem:
        raise RecordError(f"{hea}: {problem}")
    try:
        header = wfdb.rdheader(str(base))
    except Exception as err:  # any parser failure is this record's problem, not the dataset's
        raise RecordError(f"{hea}: unreadable header ({type(err).__name__}: {err})") from None
    if not hasattr(header, "file_name") or not header.file_name:
        raise RecordError(f"{hea}: not a single-segment record with signal files")
    if not header.sig_len:
        raise RecordError(f"{hea}: declares no samples")
    _check_sizes(header, base)
    return header


def read_signal(base: Path) -> tuple[np.ndarray, float, tuple[str, ...]]:
    """([leads, samples] float64 in mV, rate, lead names) of WFDB record `base`; RecordError names the file."""
    import wfdb

    hea = _sidecar(base, ".hea")
    if not hea.is_file():
        raise RecordError(f"header file {hea} is missing")
    try:
        record = wfdb.rdrecord(str(base))
    except Exception as err:
        read_header(base)  # a missing or mis-sized signal file gets its precise message here
        raise RecordError(f"{hea}: unreadable record ({type(err).__name__}: {err})") from None
    # Checked after the read so the common case parses the header once; wfdb itself reads a short
    # header's worth of samples from a longer file without complaint.
    _check_sizes(record, base)
    dat = base.parent / record.file_name[0]
    signal = np.asarray(record.p_signal, dtype=np.float64).T
    if signal.shape != (len(record.sig_name), record.sig_len):
        raise RecordError(f"{dat}: read {list(signal.shape)} samples but the header declares "
                          f"{len(record.sig_name)} x {record.sig_len}")
    scales = [_UNIT_TO_MV.get((u or "mV").strip().lower()) for u in record.units]
    if None in scales:
        raise RecordError(f"{_sidecar(base, '.hea')}: unknown units {record.units}")
    bad = int((~np.isfinite(signal)).sum())
    if bad:
        raise RecordError(f"{dat}: {bad} invalid (NaN) sample(s)")
    return signal * np.asarray(scales)[:, None], float(record.fs), tuple(record.sig_name)


class PtbxlDataset:
    """PTB-XL: one record per row of ptbxl_database.csv; tasks of the PTB-XL benchmark plus `coarse`."""

    def __init__(self, spec: DatasetSpec) -> None:
        params = normalise_params(dict(spec.params))
        self.spec = DatasetSpec("ptbxl", params)
        self.root = Path(params["path"])
        self.sampling_rate = params["sampling_rate"]
        self.name = f"ptbxl[{self.sampling_rate}Hz]"
        for needed in (DATABASE, STATEMENTS):
            if not (self.root / needed).is_file():
                raise ValueError(f"ptbxl dataset: {self.root / needed} not found; `path` must be the PTB-XL folder "
                                 f"holding {DATABASE}, {STATEMENTS}, records100/ and records500/")
        self.statements = read_statements(self.root / STATEMENTS)
        self.coarse_map = read_coarse_map()
        self._rows, self._problems = read_database(self.root / DATABASE)
        self._unknown_statements(self._rows)
        raw = [aggregate(r.codes, self.statements, self.coarse_map) for r in self._rows]
        self.counts = {task: Counter(c for labels in raw for c in labels[task]) for task in TASKS}
        self.dropped = {task: {c: n for c, n in sorted(self.counts[task].items()) if n < params["min_count"]}
                        for task in TASKS}
        kept = {task: self._class_order(task, params["min_count"]) for task in TASKS}
        self.tasks = {task: classes for task, classes in kept.items() if classes}
        self.multi_label = {task: True for task in self.tasks}
        self._metas = [self._make_meta(r, labels) for r, labels in zip(self._rows, raw)]

    def __len__(self) -> int:
        return len(self._rows)

    def _class_order(self, task: str, min_count: int) -> tuple[str, ...]:
        """Kept classes: sorted as MultiLabelBinarizer does, except coarse, which keeps COARSE_CLASSES order."""
        keep = {c for c, n in self.counts[task].items() if n >= min_count}
        return tuple(c for c in COARSE_CLASSES if c in keep) if task == "coarse" else tuple(sorted(keep))

    def _unknown_statements(self, rows: list[_Row]) -> None:
        """Note statement codes absent from scp_statements.csv (they still count for task `all`)."""
        unknown = Counter(c for r in rows for c in r.codes if c not in self.statements)
        for code, n in sorted(unknown.items()):
            self._problems.append({"kind": "unknown_statement", "where": STATEMENTS,
                                   "problem": f"{code} ({n} record(s)) is not in {STATEMENTS}"})

    def _make_meta(self, row: _Row, labels: dict[str, set[str]]) -> RecordMeta:
        """RecordMeta with every task's kept classes, in the task's class order."""
        task_labels = {task: tuple(c for c in classes if c in labels[task]) for task, classes in self.tasks.items()}
        return RecordMeta(f"ptbxl-{row.ecg_id}", row.patient_id, SOURCE, task_labels, dict(row.extra))

    def meta(self, i: int) -> RecordMeta:
        """Record i's ids, labels and demographics, from the CSVs read at start-up (no file is opened)."""
        return self._metas[i]

    def record_path(self, i: int) -> Path:
        """Record i's WFDB path without extension at the chosen sampling rate."""
        return self.root / self._rows[i].files[self.sampling_rate]

    def content_token(self, i: int) -> str:
        """Stats of record i's .hea and .dat at the chosen rate (PTB-XL names its signal file after the record)."""
        if not self._rows[i].files[self.sampling_rate]:
            return file_token(ADAPTER_VERSION, (), "no file")
        base = self.record_path(i)
        return file_token(ADAPTER_VERSION, (_sidecar(base, ".hea"), _sidecar(base, ".dat")))

    def load(self, i: int) -> Record:
        """Record i's samples in mV, [leads, samples], lead names as in the header."""
        record_id = self._metas[i].record_id
        if not self._rows[i].files[self.sampling_rate]:
            raise RecordError(f"{record_id}: {DATABASE} gives no {RATE_COLUMN[self.sampling_rate]}")
        try:
            signal, rate, leads = read_signal(self.record_path(i))
        except RecordError as err:
            raise RecordError(f"{record_id}: {err}") from None
        return Record(record_id, signal, rate, leads, "mV")

    def official_split(self) -> dict[str, list[int]]:
        """Indices per part of the folds param (default: strat_fold 1-8 train, 9 validation, 10 test)."""
        part_of = {n: part for part, numbers in self.spec.params["folds"].items() for n in numbers}
        split: dict[str, list[int]] = {part: [] for part in self.spec.params["folds"]}
        for i, row in enumerate(self._rows):
            if row.fold in part_of:
                split[part_of[row.fold]].append(i)
        return split

    def metadata_problems(self) -> list[tuple[str, str]]:
        """(where, problem) of every database row that was skipped or read with a gap (the run lists them in errors)."""
        return [(p["where"], p["problem"]) for p in self._problems if p["kind"] == "bad_row"]

    def describe(self, headers: int | None = 100) -> dict[str, Any]:
        """Counts, labels and problems; checks every record's files exist and reads `headers` headers (None: all)."""
        missing, absent = self._missing_files()
        problems = list(self._problems) + missing
        lengths, rates, leads = self._sample_headers(headers, absent, problems)
        kinds = Counter(p["kind"] for p in problems)
        split = self.official_split()
        return {
            "name": self.name, "kind": "ptbxl", "path": str(self.root), "records": len(self),
            "patients": len({m.patient_id for m in self._metas}), "sources": {SOURCE: len(self)},
            "region": REGION, "sampling_rate_hz": self.sampling_rate,
            "headers_read": len(lengths), "sampling_rates_hz": sorted(rates), "leads": leads,
            "lengths_s": _summary(lengths),
            "strat_folds": dict(sorted(Counter(r.fold for r in self._rows if r.fold is not None).items())),
            "split": {part: len(idx) for part, idx in split.items()},
            "label_counts": {t: {c: self.counts[t][c] for c in classes} for t, classes in self.tasks.items()},
            "dropped_classes": {t: d for t, d in self.dropped.items() if d},
            "unlabelled": {t: sum(1 for m in self._metas if not m.labels[t]) for t in self.tasks},
            "problem_counts": dict(sorted(kinds.items())), "problems": problems[:100],
            "problems_left_out": max(0, len(problems) - 100),
        }

    def _missing_files(self) -> tuple[list[dict], set[int]]:
        """Problems for absent .hea/.dat files at the chosen rate (stats only, no reads), and those records."""
        out, absent = [], set()
        column = RATE_COLUMN[self.sampling_rate]
        for i, row in enumerate(self._rows):
            where = self._metas[i].record_id
            if not row.files[self.sampling_rate]:
                out.append({"kind": "missing_file", "where": where, "problem": f"{DATABASE} gives no {column}"})
                absent.add(i)
                continue
            for suffix in (".hea", ".dat"):
                path = _sidecar(self.record_path(i), suffix)
                if not os.path.isfile(path):
                    out.append({"kind": "missing_file", "where": where, "problem": f"{path} is missing"})
                    absent.add(i)
        return out, absent

    def _sample_headers(self, limit: int | None, skip: set[int],
                        problems: list[dict]) -> tuple[list[float], set[float], list[str]]:
        """Lengths (s), rates and lead names from evenly spaced headers, size-checked; failures join problems."""
        n = len(self) if limit is None else min(limit, len(self))
        picks = sorted(set(np.linspace(0, len(self) - 1, n).round().astype(int).tolist())) if n > 0 else []
        lengths, rates, leads = [], set(), []
        for i in (i for i in picks if i not in skip):
            try:
                header = read_header(self.record_path(i))
            except RecordError as err:
                problems.append({"kind": "bad_record", "where": self._metas[i].record_id, "problem": str(err)})
                continue
            lengths.append(header.sig_len / header.fs)
            rates.add(float(header.fs))
            leads = leads or list(header.sig_name)
        return lengths, rates, leads


def _summary(values: list[float]) -> dict[str, float] | None:
    """min/median/max of a list, None when empty."""
    if not values:
        return None
    return {"min": float(np.min(values)), "median": float(np.median(values)), "max": float(np.max(values))}
