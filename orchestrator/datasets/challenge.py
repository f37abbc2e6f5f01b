"""PhysioNet/CinC Challenge 2020/2021 12-lead ECGs: WFDB headers with `#Dx:` SNOMED CT codes, MATLAB v4 signals.

Layout: a folder searched recursively (``training/cpsc_2018/g1/A0001.hea`` + ``A0001.mat``, or all files flat).
A header is the WFDB text header of the record; its signal lines name a MATLAB v4 file holding one int16 variable
``val`` of shape [leads, samples], which is exactly WFDB format ``16+24`` (24 bytes of MATLAB header, then
sample-interleaved int16), so ``wfdb.rdrecord`` reads it too. Here the .mat is read with ``scipy.io.loadmat``
because it checks the MATLAB structure and reports the stored shape, which lets a truncated file or a
header/data disagreement be named precisely; gain and baseline are then applied from the header.

Sources are told apart by the record-name prefix (Challenge 2021 convention), so one folder may mix databases.
The Challenge data carries no patient ids: patient_id = record_id, so a patient-level split is a record-level
split here, and a patient with several records (PTB, INCART) can sit on both sides of it.

Tasks (both multi-label): ``scored``, the 26 Challenge 2021 scored classes after its equivalences
(labels/challenge2021_scored.csv); ``coarse``, base.COARSE_CLASSES (labels/snomed_coarse.csv).
A code in neither table gives no label; codes in no Challenge table at all are reported by describe().

meta(i) reads only the text header (cached). A record whose header is missing or corrupt still has a meta
(empty labels, extra["problem"]) because the runner lists every record's meta; its load(i) raises RecordError.
"""
from __future__ import annotations

import csv
import math
import os
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from orchestrator.datasets.base import COARSE_CLASSES, DatasetSpec, Record, RecordError, RecordMeta, file_token
from orchestrator.datasets.header_checks import rate_problem

LABELS_DIR = Path(__file__).resolve().parent / "labels"
ALLOWED_PARAMS = {"path"}
# Part of every record's content token: bump when load() would return something else from the same files.
ADAPTER_VERSION = "1"
_UNIT_SCALE_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "v": 1e3}


@dataclass(frozen=True)
class Source:
    """One source database of the Challenge data."""

    id: str
    database: str
    country: str
    region: str


# Record-name prefix -> source. Chapman-Shaoxing and Ningbo share the JS prefix and cannot be told apart by name.
SOURCES: dict[str, Source] = {
    "A": Source("cpsc2018", "CPSC 2018", "China", "Asia"),
    "Q": Source("cpsc_extra", "CPSC 2018 extra (China 12-lead ECG Challenge)", "China", "Asia"),
    "I": Source("incart", "St Petersburg INCART 12-lead arrhythmia", "Russia", "Europe"),
    "S": Source("ptb", "PTB diagnostic ECG", "Germany", "Europe"),
    "HR": Source("ptbxl", "PTB-XL", "Germany", "Europe"),
    "E": Source("georgia", "Georgia 12-lead ECG Challenge", "USA", "North America"),
    "JS": Source("chapman_ningbo", "Chapman-Shaoxing and Ningbo", "China", "Asia"),
}
UNKNOWN_SOURCE = Source("unknown", "unrecognised record-name prefix", "", "")
_NAME = re.compile(r"^(JS|HR|A|Q|I|S|E)\d+$")


def source_of(record_name: str) -> Source:
    """The source database a record name belongs to, by its prefix."""
    match = _NAME.match(record_name)
    return SOURCES[match.group(1)] if match else UNKNOWN_SOURCE


# --------------------------------------------------------------------------------------------------- label tables


@dataclass(frozen=True)
class LabelTables:
    """SNOMED CT code -> scored class / coarse class, and every code the Challenge lists."""

    scored: dict[str, str]
    scored_classes: tuple[str, ...]
    coarse: dict[str, str]
    known: frozenset[str]


def _read_table(name: str) -> list[dict[str, str]]:
    """Rows of a label CSV shipped beside this module; '#' lines are provenance comments."""
    with open(LABELS_DIR / name, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


@lru_cache(maxsize=1)
def label_tables() -> LabelTables:
    """The shipped mapping tables, checked for consistency."""
    scored_rows = _read_table("challenge2021_scored.csv")
    scored = {r["snomed_code"]: r["scored_class"] for r in scored_rows}
    coarse = {r["snomed_code"]: r["coarse_class"] for r in _read_table("snomed_coarse.csv")}
    bad = sorted(set(coarse.values()) - set(COARSE_CLASSES))
    if bad:
        raise ValueError(f"snomed_coarse.csv: classes {bad} are not in COARSE_CLASSES")
    unscored = {r["snomed_code"] for r in _read_table("challenge2021_unscored.csv")}
    # Sorted names reproduce the class order of the official weights_abbreviations.csv.
    return LabelTables(scored, tuple(sorted(set(scored.values()))), coarse, frozenset(scored) | unscored | set(coarse))


# --------------------------------------------------------------------------------------------------- headers


class HeaderError(ValueError):
    """A .hea file that is not a usable WFDB header."""


@dataclass(frozen=True)
class Header:
    """What a Challenge .hea says: signal layout, calibration, demographics and diagnoses."""

    record_name: str
    sampling_rate_hz: float
    num_samples: int
    signal_file: str
    gains: tuple[float, ...]
    baselines: tuple[int, ...]
    units: tuple[str, ...]
    leads: tuple[str, ...]
    age: int | None
    sex: str | None
    dx: tuple[str, ...]
    has_dx: bool


def parse_age(value: str) -> int | None:
    """`74` -> 74; `NaN`, `Unknown`, empty or negative -> None."""
    try:
        age = float(value)
    except ValueError:
        return None
    return int(age) if math.isfinite(age) and age >= 0 else None


def parse_sex(value: str) -> str | None:
    """`Male`/`M` -> "M", `Female`/`F` -> "F", anything else None."""
    return {"male": "M", "m": "M", "female": "F", "f": "F"}.get(value.strip().lower())


def parse_dx(value: str) -> tuple[str, ...]:
    """`426783006,164889003` -> the codes in order, duplicates dropped, spaces tolerated."""
    return tuple(dict.fromkeys(c.strip() for c in value.split(",") if c.strip()))


def _comments(lines: list[str]) -> dict[str, str]:
    """`#Key: value` comment lines as {lower-case key: value}."""
    fields = {}
    for line in lines:
        key, sep, value = line.lstrip("#").partition(":")
        if sep:
            fields[key.strip().lower()] = value.strip()
    return fields


def _record_line(line: str) -> tuple[str, int, float, int]:
    """`A0001 12 500 7500 [time date]` -> (name, signals, rate, samples)."""
    tokens = line.split()
    if len(tokens) < 4:
        raise HeaderError(f"record line {line!r} lacks the signal count, rate or sample count")
    try:
        n_signals, num_samples = int(tokens[1]), int(tokens[3])
        rate = float(tokens[2].split("/")[0])  # "fs/counter-freq(base)" keeps fs before the slash
    except ValueError:
        raise HeaderError(f"record line {line!r} is not `name signals rate samples`") from None
    if n_signals < 1 or num_samples < 1 or not rate > 0:
        raise HeaderError(f"record line {line!r} has a non-positive signal count, rate or sample count")
    problem = rate_problem(rate)
    if problem:
        raise HeaderError(f"record line {line[:80]!r}: {problem}")
    return tokens[0], n_signals, rate, num_samples


_GAIN = re.compile(r"^([-+]?[\d.]+(?:[eE][-+]?\d+)?)(?:\(([-+]?\d+)\))?(?:/(\S+))?$")


def _signal_line(line: str, k: int) -> tuple[str, float, int, str, str]:
    """`A0001.mat 16+24 1000/mV 16 0 28 -1716 0 I` -> (file, gain, baseline, units, lead name)."""
    tokens = line.split()
    if len(tokens) < 3:
        raise HeaderError(f"signal line {line!r} lacks the format or gain")
    match = _GAIN.match(tokens[2])
    if not match:
        raise HeaderError(f"signal line {line!r}: gain {tokens[2]!r} is not `gain[(baseline)][/units]`")
    try:
        adc_zero = int(tokens[4]) if len(tokens) > 4 else 0
        # WFDB: an absent baseline defaults to the ADC zero
        baseline = int(match.group(2)) if match.group(2) is not None else adc_zero
        gain = float(match.group(1))
    except ValueError:
        raise HeaderError(f"signal line {line!r} has a non-numeric ADC zero or gain") from None
    if gain == 0 or not math.isfinite(gain):  # WFDB reads 0 as "uncalibrated": no conversion to mV exists
        raise HeaderError(f"signal line {line[:80]!r}: ADC gain {match.group(1)} (uncalibrated)")
    lead = " ".join(tokens[8:]) or f"signal{k}"
    return tokens[0], gain, baseline, match.group(3) or "mV", lead


def parse_header(text: str) -> Header:
    """A Challenge .hea text -> Header; HeaderError when it is not a usable single-file WFDB header."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    spec = [line for line in lines if not line.startswith("#")]
    if not spec:
        raise HeaderError("header is empty")
    name, n_signals, rate, num_samples = _record_line(spec[0])
    if len(spec) - 1 != n_signals:
        raise HeaderError(f"header declares {n_signals} signals but has {len(spec) - 1} signal lines")
    signals = [_signal_line(line, k) for k, line in enumerate(spec[1:])]
    files = {s[0] for s in signals}
    if len(files) != 1:
        raise HeaderError(f"signals are spread over several files {sorted(files)}; the Challenge uses one .mat")
    fields = _comments([line for line in lines if line.startswith("#")])
    return Header(name, rate, num_samples, signals[0][0], tuple(s[1] for s in signals), tuple(s[2] for s in signals),
                  tuple(s[3] for s in signals), tuple(s[4] for s in signals), parse_age(fields.get("age", "")),
                  parse_sex(fields.get("sex", "")), parse_dx(fields.get("dx", "")), "dx" in fields)


def read_header(path: Path) -> Header:
    """Parse a .hea file (text only; the signal file is not touched)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise HeaderError(f"cannot read header: {err.strerror or err}") from None
    return parse_header(text)


# --------------------------------------------------------------------------------------------------- signals


def read_val(path: Path) -> np.ndarray:
    """The MATLAB v4 variable `val` of a Challenge .mat, as stored ([leads, samples]); RecordError-free ValueError."""
    from scipy.io import loadmat

    if not path.is_file():
        raise ValueError("signal file is missing")
    try:
        val = loadmat(str(path), variable_names=["val"]).get("val")
    except Exception as err:  # scipy raises ValueError, MatReadError, EOFError... for a broken file
        raise ValueError(f"unreadable MATLAB file ({type(err).__name__}: {err})") from None
    if val is None:
        raise ValueError("no variable 'val' in the MATLAB file")
    if val.ndim != 2:
        raise ValueError(f"'val' has shape {list(val.shape)}, expected [leads, samples]")
    return val


def to_millivolts(val: np.ndarray, header: Header) -> np.ndarray:
    """Digital samples -> float32 mV with the header's per-lead baseline, gain and units."""
    scale = []
    for units in header.units:
        if units.lower() not in _UNIT_SCALE_TO_MV:
            raise ValueError(f"unknown units {units!r} in the header")
        scale.append(_UNIT_SCALE_TO_MV[units.lower()])
    baseline = np.asarray(header.baselines, np.float64)[:, None]
    factor = (np.asarray(scale) / np.asarray(header.gains, np.float64))[:, None]
    return ((val.astype(np.float64) - baseline) * factor).astype(np.float32)


# --------------------------------------------------------------------------------------------------- dataset


@dataclass(frozen=True)
class _Entry:
    """One record as found on disk: folder relative to the root, name, and whether its .hea exists."""

    folder: str
    name: str
    has_header: bool


def scan(root: Path) -> list[_Entry]:
    """Every record under root (a .hea or a .mat), in a stable order."""
    found: dict[tuple[str, str], set[str]] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = os.path.relpath(folder, root)
        for file in files:
            stem, ext = os.path.splitext(file)
            if ext in (".hea", ".mat") and not file.startswith("."):
                found.setdefault(("" if rel == "." else rel, stem), set()).add(ext)
    return [_Entry(folder, name, ".hea" in exts) for (folder, name), exts in sorted(found.items())]


class ChallengeDataset:
    """Adapter over a folder of PhysioNet/CinC Challenge 2020/2021 records."""

    multi_label = {"scored": True, "coarse": True}

    def __init__(self, spec: DatasetSpec) -> None:
        unknown = set(spec.params) - ALLOWED_PARAMS
        if unknown:
            raise ValueError(f"challenge dataset: unknown parameter(s) {sorted(unknown)}; "
                             f"allowed: {sorted(ALLOWED_PARAMS)}")
        if "path" not in spec.params:
            raise ValueError("challenge dataset: give the folder, e.g. challenge:/data/challenge-2021/training")
        self.root = Path(spec.params["path"]).expanduser()
        if not self.root.is_dir():
            raise ValueError(f"challenge dataset: {self.root} is not a folder")
        self.spec = spec
        self.name = f"challenge[{self.root.name}]"
        self.labels = label_tables()
        self.tasks = {"scored": self.labels.scored_classes, "coarse": COARSE_CLASSES}
        self._entries = scan(self.root)
        if not self._entries:
            raise ValueError(f"challenge dataset: no .hea/.mat records under {self.root}")
        self._headers: dict[int, Header | str] = {}
        self.meta = lru_cache(maxsize=None)(self._meta)

    def __len__(self) -> int:
        return len(self._entries)

    def _path(self, i: int, ext: str) -> Path:
        """Absolute path of record i's file with this extension."""
        entry = self._entries[i]
        return self.root / entry.folder / f"{entry.name}{ext}"

    def _rel(self, path: Path) -> str:
        """A path as shown in messages: relative to the dataset folder where it lies inside it."""
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:  # a header may name its signal file by an absolute path
            return str(path)

    def header(self, i: int) -> Header | str:
        """Record i's parsed header, or why there is none (cached; reads the .hea only)."""
        if i not in self._headers:
            path = self._path(i, ".hea")
            if not self._entries[i].has_header:
                self._headers[i] = f"{self._rel(path)}: no header (.hea) for this record"
            else:
                try:
                    self._headers[i] = read_header(path)
                except HeaderError as err:
                    self._headers[i] = f"{self._rel(path)}: corrupt header: {err}"
        return self._headers[i]

    def record_id(self, i: int) -> str:
        """`{source}-{record name}`, e.g. cpsc2018-A0001."""
        name = self._entries[i].name
        return f"{source_of(name).id}-{name}"

    def _labels(self, dx: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
        """Per-task class names of a set of SNOMED codes, in each task's class order."""
        out = {}
        for task, table in (("scored", self.labels.scored), ("coarse", self.labels.coarse)):
            hit = {table[c] for c in dx if c in table}
            out[task] = tuple(c for c in self.tasks[task] if c in hit)
        return out

    def _meta(self, i: int) -> RecordMeta:
        """Labels and demographics from the header alone."""
        rid, source = self.record_id(i), source_of(self._entries[i].name)
        extra = {"region": source.region, "country": source.country, "database": source.database,
                 "path": self._rel(self._path(i, ".hea"))}
        header = self.header(i)
        if isinstance(header, str):
            return RecordMeta(rid, rid, source.id, {task: () for task in self.tasks},
                              {**extra, "age": None, "sex": None, "dx": (), "problem": header})
        extra.update(age=header.age, sex=header.sex, dx=header.dx, sampling_rate_hz=header.sampling_rate_hz,
                     duration_s=header.num_samples / header.sampling_rate_hz, leads=header.leads)
        return RecordMeta(rid, rid, source.id, self._labels(header.dx), extra)

    def content_token(self, i: int) -> str:
        """Stats of record i's .hea and of the signal file it names (<name>.mat when it names none)."""
        hea, header = self._path(i, ".hea"), self.header(i)
        signal = hea.parent / header.signal_file if isinstance(header, Header) else self._path(i, ".mat")
        return file_token(ADAPTER_VERSION, (hea, signal))

    def load(self, i: int) -> Record:
        """Record i in mV at the header's rate; RecordError naming the file when it cannot be used."""
        rid, header = self.record_id(i), self.header(i)
        if isinstance(header, str):
            raise RecordError(f"{rid}: {header}")
        path = self._path(i, ".hea").parent / header.signal_file
        try:
            val = read_val(path)
            self._check_shape(val, header)
            signal = to_millivolts(val, header)
        except ValueError as err:
            raise RecordError(f"{rid}: {self._rel(path)}: {err}") from None
        if not np.isfinite(signal).all():
            raise RecordError(f"{rid}: {self._rel(path)}: {int((~np.isfinite(signal)).sum())} NaN/Inf sample(s)")
        return Record(rid, signal, header.sampling_rate_hz, header.leads, "mV")

    @staticmethod
    def _check_shape(val: np.ndarray, header: Header) -> None:
        """The stored [leads, samples] must be what the header declares."""
        leads, samples = val.shape
        if leads != len(header.leads):
            raise ValueError(f"holds {leads} leads, header declares {len(header.leads)}")
        if samples != header.num_samples:
            raise ValueError(f"holds {samples} samples per lead, header declares {header.num_samples}")

    def describe(self) -> dict:
        """Summary from the headers alone: sources, rates, durations, leads, label counts, unknown codes, problems."""
        metas = [self.meta(i) for i in range(len(self))]
        headers = [self.header(i) for i in range(len(self))]
        ok = [(i, h) for i, h in enumerate(headers) if isinstance(h, Header)]
        durations = np.array([h.num_samples / h.sampling_rate_hz for _, h in ok]) if ok else np.zeros(0)
        code_records = Counter(c for _, h in ok for c in h.dx)
        unknown = {c: n for c, n in sorted(code_records.items()) if c not in self.labels.known}
        mapped = set(self.labels.scored) | set(self.labels.coarse)
        return {
            "name": self.name, "kind": "challenge", "path": str(self.root), "records": len(self),
            "patients": len({m.patient_id for m in metas}),
            "sources": dict(sorted(Counter(m.source for m in metas).items())),
            "sampling_rates_hz": {f"{r:g}": n for r, n in sorted(Counter(h.sampling_rate_hz for _, h in ok).items())},
            "durations_s": ({"min": float(durations.min()), "median": float(np.median(durations)),
                             "max": float(durations.max())} if durations.size else {}),
            "leads": dict(Counter(",".join(h.leads) for _, h in ok).most_common()),
            "labels": {task: {c: sum(c in m.labels[task] for m in metas) for c in classes}
                       for task, classes in self.tasks.items()},
            "unknown_codes": unknown,
            "unmapped_codes": {c: n for c, n in sorted(code_records.items())
                               if c in self.labels.known and c not in mapped},
            "problems": self._problems(metas, headers, ok, unknown),
        }

    def _problems(self, metas: list[RecordMeta], headers: list, ok: list, unknown: dict[str, int]) -> list[dict]:
        """Findings that cost records (error) or labels (warning); .mat files are only checked for existence."""
        def entry(record: str, problem: str, level: str = "error") -> dict[str, str]:
            return {"record": record, "problem": problem, "level": level}

        out = [entry(m.record_id, h) for m, h in zip(metas, headers) if isinstance(h, str)]
        for i, h in ok:
            signal = self._path(i, ".hea").parent / h.signal_file
            if not signal.is_file():
                out.append(entry(metas[i].record_id, f"{self._rel(signal)}: signal file is missing"))
            if not h.has_dx:
                out.append(entry(metas[i].record_id, "header has no #Dx line: no labels", "warning"))
        out += [entry(m.record_id, "record name matches no Challenge source prefix", "warning")
                for m in metas if m.source == UNKNOWN_SOURCE.id]
        out += [entry("", f"unknown SNOMED code {c} in {n} record(s)", "warning") for c, n in unknown.items()]
        out += [entry(r, f"record id appears {n} times (the runner skips every copy)")
                for r, n in Counter(m.record_id for m in metas).items() if n > 1]
        return out
