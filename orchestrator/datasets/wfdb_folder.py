"""A hospital's own folder of WFDB records (.hea + signal files, any format wfdb reads) plus a labels CSV.

Params (DatasetSpec("wfdb", {...})):

* ``path``: the folder; record names are relative to it, without extension (``ward_b/rec010``).
* ``labels``: the labels CSV (default ``<path>/labels.csv``), one row per record.
* ``record_column`` ("record"), ``patient_column`` ("patient"; when the column is absent or a cell is empty the
  record is its own patient), ``label_column`` ("label").
* ``label_column`` cells may hold several labels separated by ";" or "," (a cell with "," must be quoted in a
  comma-separated file, e.g. ``"AF,RBBB"``); surrounding spaces are dropped. The task's classes are the sorted set of
  labels seen; it is multi-label unless every row has exactly one label.
* ``source`` (default: the folder's name) or ``source_column`` (per-row source; empty cells fall back to ``source``).
* ``task``: the task name (default "label").

load(i) reads through wfdb and converts every lead to mV with its header units (mV, uV, V; WFDB's default unit is mV).
It raises RecordError for a missing or unreadable header, a missing, truncated or oversized signal file (checked
against the header's sample count before reading), a checksum mismatch, invalid (NaN) samples, unknown units, and for
every copy of a record listed more than once in the CSV. Flat leads are not errors: describe() lists them as warnings,
and lists .hea records of the folder that the CSV does not name as `unlabelled` (they are ignored).
"""
from __future__ import annotations

import csv
import math
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import wfdb

from orchestrator.datasets.base import DatasetSpec, Record, RecordError, RecordMeta, file_token
from orchestrator.datasets.header_checks import check_wfdb_header

DEFAULTS: dict[str, Any] = {"path": None, "labels": None, "record_column": "record", "patient_column": "patient",
                            "label_column": "label", "source": None, "source_column": None, "task": "label"}
UNIT_TO_MV = {"mv": 1.0, "millivolt": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "microvolt": 1e-3, "v": 1e3,
              "volt": 1e3}
# Below 10 uV peak-to-peak a lead carries no ECG (QRS is >= ~0.1 mV); a disconnected electrode reads like this.
FLAT_PTP_MV = 0.01
# Bytes per sample of the fixed-size WFDB formats; FLAC formats (508/516/524) are compressed and not size-checked.
BYTES_PER_SAMPLE = {"8": 1.0, "16": 2.0, "24": 3.0, "32": 4.0, "61": 2.0, "80": 1.0, "160": 2.0, "212": 1.5,
                    "310": 4 / 3, "311": 4 / 3}
_SPLIT = re.compile(r"[;,]")
# Part of every record's content token: bump when load() would return something else from the same files.
ADAPTER_VERSION = "1"


@dataclass(frozen=True)
class Row:
    """One labels-CSV row."""

    record: str
    patient: str
    source: str
    labels: tuple[str, ...]
    line: int  # CSV line (header = 1)


class WfdbFolderDataset:
    """Adapter over a folder of WFDB records and a labels CSV; one task, classes = labels seen."""

    def __init__(self, spec: DatasetSpec) -> None:
        params = _check_params(spec.params)
        self.spec = DatasetSpec("wfdb", params)
        self.folder = Path(params["path"])
        self.labels_path = Path(params["labels"])
        self.task = params["task"]
        self._rows, self._skipped = _read_rows(self.labels_path, params)
        if not self._rows:
            raise ValueError(f"wfdb dataset: {self.labels_path} names no records")
        lines: dict[str, list[int]] = {}
        for row in self._rows:
            lines.setdefault(row.record, []).append(row.line)
        self._duplicates = {name: where for name, where in lines.items() if len(where) > 1}
        self.name = f"wfdb[{self.folder.name}]"
        self.tasks = {self.task: tuple(sorted({label for row in self._rows for label in row.labels}))}
        self.multi_label = {self.task: any(len(row.labels) != 1 for row in self._rows)}

    def __len__(self) -> int:
        return len(self._rows)

    def meta(self, i: int) -> RecordMeta:
        """From the CSV only."""
        row = self._rows[i]
        return RecordMeta(row.record, row.patient, row.source, {self.task: row.labels}, {"csv_line": row.line})

    def header(self, i: int) -> wfdb.Record | wfdb.MultiRecord:
        """The record's parsed header, after the checks that need no samples (duplicates, files, sizes)."""
        row = self._rows[i]
        if row.record in self._duplicates:
            where = ", ".join(map(str, self._duplicates[row.record]))
            raise RecordError(f"{row.record}: listed more than once in {self.labels_path.name} (lines {where}); "
                              "all copies skipped")
        base = self._base(row.record)
        hea = base.with_name(base.name + ".hea")
        if not hea.is_file():
            raise RecordError(f"{row.record}: header {row.record}.hea not found in {self.folder}")
        check_wfdb_header(hea, row.record)  # rate, sample count, gains: wfdb's parser would guess defaults
        try:
            header = wfdb.rdheader(str(base))
        except Exception as err:  # wfdb raises bare ValueError/IndexError/etc. on malformed headers
            raise RecordError(f"{row.record}: unreadable header: {type(err).__name__}: {err}") from None
        if isinstance(header, wfdb.Record):
            _check_signal_files(row.record, header, base.parent)
        return header

    def load(self, i: int) -> Record:
        """Digital samples -> checksum check -> physical -> NaN check -> mV; [leads, samples] float32."""
        row = self._rows[i]
        self.header(i)
        try:
            record = wfdb.rdrecord(str(self._base(row.record)), physical=False)
        except Exception as err:  # corrupt data surfaces as assorted numpy/wfdb errors
            raise RecordError(f"{row.record}: unreadable signal data: {type(err).__name__}: {err}") from None
        if not record.n_sig or not record.sig_len:
            raise RecordError(f"{row.record}: no samples ({record.n_sig} signals x {record.sig_len} samples)")
        _check_checksums(row.record, record)
        signal = record.dac(return_res=64)  # [samples, leads], NaN where the format's invalid value was stored
        _check_invalid(row.record, signal, record.sig_name)
        signal = signal * _unit_scales(row.record, record.units, record.sig_name)
        return Record(row.record, np.ascontiguousarray(signal.T, dtype=np.float32), float(record.fs),
                      tuple(record.sig_name), "mV")

    def content_token(self, i: int) -> str:
        """Stats of the record's header and of the signal files it names (multi-segment: each segment's)."""
        base = self._base(self._rows[i].record)
        return file_token(ADAPTER_VERSION, _record_files(base))

    def _base(self, record: str) -> Path:
        """Folder path of a record name (no extension)."""
        return self.folder / record

    def metadata_problems(self) -> list[tuple[str, str]]:
        """(where, problem) for every labels-CSV row that names no usable record (the run lists them in errors)."""
        return [(f"{self.labels_path.name} line {line}", f"row skipped: {reason}") for line, reason in self._skipped]

    def unlabelled(self) -> list[str]:
        """Records (.hea files) in the folder that the CSV does not name; ignored by the adapter."""
        named = {row.record for row in self._rows}
        found = (p.relative_to(self.folder).with_suffix("").as_posix() for p in self.folder.rglob("*.hea"))
        return sorted(name for name in found if name not in named)

    def describe(self, scan_signals: bool = True) -> dict[str, Any]:
        """Counts and problems from headers; scan_signals (default) also reads samples: NaN, checksums, flat leads."""
        problems = [{"record": f"line {line}", "problem": reason, "level": "error"} for line, reason in self._skipped]
        rates, leads, durations = Counter(), Counter(), []
        for i, row in enumerate(self._rows):
            try:
                header = self.header(i)
                if scan_signals:
                    problems += _flat_lead_warnings(self.load(i))
            except RecordError as err:
                problems.append({"record": row.record, "problem": str(err), "level": "error"})
                continue
            rates[f"{float(header.fs):g}"] += 1
            leads[",".join(header.sig_name or [])] += 1
            if header.sig_len and header.fs:
                durations.append(header.sig_len / header.fs)
        metas = [self.meta(i) for i in range(len(self))]
        counts = Counter(label for m in metas for label in m.labels[self.task])
        return {
            "name": self.name,
            "kind": "wfdb",
            "path": str(self.folder),
            "labels_csv": str(self.labels_path),
            "records": len(self),
            "patients": len({m.patient_id for m in metas}),
            "sampling_rates_hz": dict(rates),
            "durations_s": _duration_summary(durations),
            "leads": dict(leads),
            "labels": {self.task: {c: counts.get(c, 0) for c in self.tasks[self.task]}},
            "sources": dict(Counter(m.source for m in metas)),
            "problems": problems,
            "unlabelled": self.unlabelled(),
            "signals_scanned": scan_signals,
        }


def _read_rows(path: Path, params: dict[str, Any]) -> tuple[list[Row], list[tuple[int, str]]]:
    """Rows of the labels CSV, and (line, reason) for rows that name no record."""
    with open(path, newline="", encoding="utf-8-sig") as handle:  # -sig: spreadsheets write a BOM
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        _check_columns(path, columns, params)
        rows, skipped = [], []
        for line, cells in enumerate(reader, start=2):
            row = _parse_row(cells, line, params, has_patient=params["patient_column"] in columns)
            if isinstance(row, str):
                skipped.append((line, row))
            else:
                rows.append(row)
    return rows, skipped


def _check_columns(path: Path, columns: list[str], params: dict[str, Any]) -> None:
    """The record and label columns (and source_column when named) must exist."""
    wanted = [params["record_column"], params["label_column"]] + ([params["source_column"]]
                                                                 if params["source_column"] else [])
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise ValueError(f"wfdb dataset: {path} lacks column(s) {missing}; it has {columns}")


def _parse_row(cells: dict[str, str], line: int, params: dict[str, Any], has_patient: bool) -> Row | str:
    """One CSV row, or the reason it names no usable record."""
    record = (cells.get(params["record_column"]) or "").strip()
    for extension in (".hea", ".dat"):  # tolerate names copied with their extension
        if record.endswith(extension):
            record = record[: -len(extension)]
    if not record:
        return "empty record name"
    if Path(record).is_absolute() or ".." in Path(record).parts:
        return f"record name {record!r} points outside the folder"
    patient = (cells.get(params["patient_column"]) or "").strip() if has_patient else ""
    source = (cells.get(params["source_column"]) or "").strip() if params["source_column"] else ""
    labels = tuple(dict.fromkeys(t.strip() for t in _SPLIT.split(cells.get(params["label_column"]) or "")
                                 if t.strip()))
    return Row(record, patient or record, source or params["source"], labels, line)


def _record_files(base: Path) -> list[Path]:
    """The header of record `base` and the files it names; just the header when it cannot be parsed."""
    files = [base.with_name(base.name + ".hea")]
    try:
        header = wfdb.rdheader(str(base))
    except Exception:  # an unreadable header is load()'s error to report; its stat still tracks it
        return files
    if isinstance(header, wfdb.MultiRecord):
        for segment in dict.fromkeys(header.seg_name or []):
            if segment and segment != "~":  # "~" is a gap, no file
                files += _record_files(base.parent / segment)
        return files
    return files + [base.parent / name for name in dict.fromkeys(header.file_name or [])]


def _check_signal_files(name: str, header: wfdb.Record, folder: Path) -> None:
    """Every signal file exists and holds exactly the samples the header declares (when its format has a size)."""
    if not header.n_sig:
        return
    per_file: dict[str, list[int]] = {}
    for k, file_name in enumerate(header.file_name):
        per_file.setdefault(file_name, []).append(k)
    for file_name, channels in per_file.items():
        path = folder / file_name
        if not path.is_file():
            raise RecordError(f"{name}: signal file {file_name} not found")
        fmt = header.fmt[channels[0]]
        if header.sig_len is None or fmt not in BYTES_PER_SAMPLE:
            continue
        _check_size(name, path, header, channels, fmt)


def _check_size(name: str, path: Path, header: wfdb.Record, channels: list[int], fmt: str) -> None:
    """Compare a signal file's size with sig_len x samples per frame x bytes per sample (+ byte offset)."""
    per_frame = sum((header.samps_per_frame or [1] * header.n_sig)[k] or 1 for k in channels)
    offset = (header.byte_offset or [0] * header.n_sig)[channels[0]] or 0
    frame_bytes = per_frame * BYTES_PER_SAMPLE[fmt]
    expected = math.ceil(header.sig_len * frame_bytes)  # 212/310/311 pack samples; the last byte may be partial
    size = os.path.getsize(path) - offset
    held = int(max(size, 0) // frame_bytes)
    if size < expected:
        raise RecordError(f"{name}: {path.name} is truncated: {size} bytes hold {held} of the {header.sig_len} "
                          f"samples per lead that the header declares")
    if size - expected >= frame_bytes:
        raise RecordError(f"{name}: header declares {header.sig_len} samples per lead but {path.name} holds {held}")


def _check_checksums(name: str, record: wfdb.Record) -> None:
    """The header's 16-bit checksums (when present) against the digital samples read."""
    if not record.checksum or record.d_signal is None:
        return
    actual = np.sum(record.d_signal.astype(np.int64), axis=0) % 65536
    bad = [record.sig_name[k] for k, (want, got) in enumerate(zip(record.checksum, actual))
           if want is not None and (int(want) - int(got)) % 65536]  # headers may write the checksum signed
    if bad:
        raise RecordError(f"{name}: checksum mismatch in lead(s) {', '.join(bad)}: signal data is corrupt")


def _check_invalid(name: str, signal: np.ndarray, leads: list[str]) -> None:
    """wfdb turns the format's invalid-sample value into NaN; any NaN makes the record unusable."""
    bad = np.isnan(signal)
    if bad.any():
        where = ", ".join(f"{leads[k]} ({int(n)})" for k, n in enumerate(bad.sum(axis=0)) if n)
        raise RecordError(f"{name}: {int(bad.sum())} invalid (NaN) sample(s) in lead(s) {where}")


def _unit_scales(name: str, units: list[str | None], leads: list[str]) -> np.ndarray:
    """Per-lead factor to mV; an absent unit is WFDB's default, mV."""
    scales = []
    for unit, lead in zip(units, leads):
        scale = UNIT_TO_MV.get((unit or "mV").strip().lower())
        if scale is None:
            raise RecordError(f"{name}: lead {lead} has units {unit!r}; expected mV, uV or V")
        scales.append(scale)
    return np.asarray(scales)


def _flat_lead_warnings(record: Record) -> list[dict[str, str]]:
    """A warning for leads whose whole-record peak-to-peak is below FLAT_PTP_MV."""
    ptp = np.ptp(record.signal, axis=1)
    flat = [lead for lead, p in zip(record.leads, ptp) if p < FLAT_PTP_MV]
    if not flat:
        return []
    return [{"record": record.record_id, "problem": f"flat lead(s) {', '.join(flat)} (peak-to-peak < {FLAT_PTP_MV} mV)",
             "level": "warning"}]


def _duration_summary(durations: list[float]) -> dict[str, Any] | None:
    """min/median/max and a histogram at 0.1 s."""
    if not durations:
        return None
    values = np.asarray(durations)
    counts = Counter(f"{d:.1f}" for d in values)
    return {"min": float(values.min()), "median": float(np.median(values)), "max": float(values.max()),
            "counts": dict(sorted(counts.items(), key=lambda kv: float(kv[0])))}


def _check_params(params: dict[str, Any]) -> dict[str, Any]:
    """Validated params with defaults; paths made absolute so any worker can reopen the spec."""
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"wfdb dataset: unknown parameter(s) {sorted(unknown)}; allowed: {sorted(DEFAULTS)}")
    merged = {**DEFAULTS, **params}
    if not merged["path"]:
        raise ValueError("wfdb dataset: give the folder of WFDB records (param path)")
    folder = Path(merged["path"]).expanduser().resolve()
    if not folder.is_dir():
        raise ValueError(f"wfdb dataset: folder {folder} not found")
    labels = Path(merged["labels"]).expanduser().resolve() if merged["labels"] else folder / "labels.csv"
    if not labels.is_file():
        raise ValueError(f"wfdb dataset: labels CSV {labels} not found (param labels)")
    return {**merged, "path": str(folder), "labels": str(labels), "source": merged["source"] or folder.name}
