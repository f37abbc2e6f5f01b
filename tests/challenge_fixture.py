"""Writes a small PhysioNet/CinC Challenge 2021-style folder: WFDB .hea headers + MATLAB v4 .mat signals.

Files follow the official layout byte for byte where it matters: `A0001 12 500 7500 05-Feb-2020 11:39:16`, signal
lines `A0001.mat 16+24 1000/mV 16 0 <first value> <checksum> 0 I`, the six `#Age/#Sex/#Dx/#Rx/#Hx/#Sx` comment
lines, and a .mat written by scipy.io.savemat(format='4') holding int16 `val` [12, T] (so WFDB's 16+24 reading
applies). Signals come from the synthetic generator, resampled to each source's real rate.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.io import savemat
from scipy.signal import resample_poly

from orchestrator.datasets.synthetic import LEADS, generate_record

GAIN = 1000.0  # digital units per mV, as in every Challenge header

# source id -> (record-name prefix, name digits, folder(s) under training/, rate Hz, synthetic site)
SOURCE_LAYOUT: dict[str, tuple[str, int, tuple[str, ...], float, str]] = {
    "cpsc2018": ("A", 4, ("cpsc_2018",), 500.0, "eu"),
    "cpsc_extra": ("Q", 4, ("cpsc_2018_extra",), 500.0, "eu"),
    "incart": ("I", 4, ("st_petersburg_incart",), 257.0, "as"),
    "ptb": ("S", 4, ("ptb",), 1000.0, "eu"),
    "ptbxl": ("HR", 5, ("ptb-xl",), 500.0, "eu"),
    "georgia": ("E", 5, ("georgia",), 500.0, "na"),
    "chapman_ningbo": ("JS", 5, ("chapman_shaoxing", "ningbo"), 500.0, "eu"),
}
DEFAULT_PER_SOURCE = {"cpsc2018": 3, "cpsc_extra": 2, "incart": 1, "ptb": 1, "ptbxl": 2, "georgia": 2,
                      "chapman_ningbo": 2}

# Cycled over records: (synthetic condition drawn, #Dx codes). Covers both members of every equivalent pair,
# a code only the coarse task knows (ST elevation), and an unscored code (myocardial infarction 164865005).
DX_CYCLE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("NSR", ("426783006",)),
    ("AF", ("164889003", "164934002")),
    ("BBB", ("59118001",)),
    ("BBB", ("713427006", "270492004")),
    ("SB", ("426177001",)),
    ("STach", ("427084000", "284470004")),
    ("BBB", ("164909002",)),
    ("STE", ("426783006", "164931005")),
    ("AF", ("164890007",)),
    ("NSR", ("426783006", "63593006")),
    ("BBB", ("733534002",)),
    ("NSR", ("426783006", "164865005")),
)
AGES = ("74", "56", "NaN", "63", "81", "45", "68")
SEXES = ("Male", "Female", "Male", "Female", "Unknown")

# corrupt=True adds these: name -> (source, what is wrong, text the RecordError must contain)
CORRUPT: dict[str, tuple[str, str, str]] = {
    "A9001": ("cpsc2018", "truncated .mat", "A9001.mat"),
    "E09002": ("georgia", "header sample count disagrees with the data", "E09002.mat"),
    "HR09003": ("ptbxl", "unknown SNOMED code 999999999 (record is fine)", ""),
    "Q9004": ("cpsc_extra", ".hea without .mat", "Q9004.mat"),
    "S9005": ("ptb", "corrupt header (record line merged with the first signal line)", "S9005.hea"),
    "I9006": ("incart", ".mat without .hea", "I9006.hea"),
    "JS09007": ("chapman_ningbo", ".mat holds 11 leads, header 12", "JS09007.mat"),
}
UNKNOWN_CODE = "999999999"


@dataclass(frozen=True)
class FixtureRecord:
    """One planned record: where it goes and what its header says."""

    name: str
    source: str
    folder: str
    rate: float
    seconds: float
    condition: str
    dx: tuple[str, ...]
    age: str
    sex: str
    seed: int
    site: str


def _seconds(source: str, n: int) -> float:
    """Record length: CPSC/CPSC-Extra vary, INCART is 30 min in reality (60 s here), the rest near 10 s."""
    return {"cpsc2018": (10.0, 12.5, 15.0)[n % 3], "cpsc_extra": 10.0 + 2 * (n % 2), "incart": 60.0,
            "ptb": 12.0}.get(source, 10.0)


def plan(per_source: dict[str, int] | None = None, seed: int = 0) -> list[FixtureRecord]:
    """The regular records write_challenge writes, in writing order."""
    out = []
    for source, count in (DEFAULT_PER_SOURCE if per_source is None else per_source).items():
        prefix, digits, folders, rate, site = SOURCE_LAYOUT[source]
        for n in range(count):
            k = len(out)
            condition, dx = DX_CYCLE[k % len(DX_CYCLE)]
            out.append(FixtureRecord(f"{prefix}{n + 1:0{digits}d}", source, folders[n % len(folders)], rate,
                                     _seconds(source, n), condition, dx, AGES[k % len(AGES)],
                                     SEXES[k % len(SEXES)], seed * 100_003 + zlib.crc32(f"{source}{n}".encode()), site))
    return out


def fixture_signal(rec: FixtureRecord) -> np.ndarray:
    """[12, T] float mV of a planned record before quantisation, at the record's rate."""
    signal, fs = generate_record(rec.condition, rec.site, rec.seed, rec.seconds)
    if fs != rec.rate:
        signal = resample_poly(signal.astype(np.float64), int(rec.rate), int(fs), axis=-1)
    return np.asarray(signal, np.float64)


def quantise(signal: np.ndarray) -> np.ndarray:
    """mV -> int16 digital units at the Challenge gain."""
    return np.clip(np.round(signal * GAIN), -32768, 32767).astype(np.int16)


def _checksum(row: np.ndarray) -> int:
    """WFDB signal checksum: the 16-bit two's-complement sum of the samples."""
    return (int(row.astype(np.int64).sum()) + 32768) % 65536 - 32768


def header_text(name: str, val: np.ndarray, rate: float, dx: tuple[str, ...], age: str, sex: str,
                samples: int | None = None, leads: tuple[str, ...] = LEADS) -> str:
    """A header in the official form; `samples` overrides the declared sample count."""
    lines = [f"{name} {len(leads)} {rate:g} {val.shape[1] if samples is None else samples} 05-Feb-2020 11:39:16"]
    for k, lead in enumerate(leads):
        row = val[min(k, val.shape[0] - 1)]
        lines.append(f"{name}.mat 16+24 {GAIN:g}/mV 16 0 {int(row[0])} {_checksum(row)} 0 {lead}")
    lines += [f"#Age: {age}", f"#Sex: {sex}", f"#Dx: {','.join(dx)}", "#Rx: Unknown", "#Hx: Unknown", "#Sx: Unknown"]
    return "\n".join(lines) + "\n"


def _write(folder: Path, name: str, val: np.ndarray | None, header: str | None) -> None:
    """Write NAME.mat (MATLAB v4, variable val) and/or NAME.hea."""
    folder.mkdir(parents=True, exist_ok=True)
    if val is not None:
        savemat(str(folder / f"{name}.mat"), {"val": val}, format="4")
    if header is not None:
        (folder / f"{name}.hea").write_text(header)


def record_folder(root: Path, rec_folder: str) -> Path:
    """Where a record of a given training/ sub-folder lives (Challenge 2021: training/<db>/g1/)."""
    return root / "training" / rec_folder / "g1"


def _write_corrupt(root: Path, seed: int) -> None:
    """The CORRUPT records, each broken in its own way."""
    for k, (name, (source, _, _)) in enumerate(CORRUPT.items()):
        _, _, folders, rate, site = SOURCE_LAYOUT[source]
        rec = FixtureRecord(name, source, folders[0], rate, 8.0, "NSR", ("426783006",), "60", "Male",
                            seed * 100_003 + 9000 + k, site)
        val, folder = quantise(fixture_signal(rec)), record_folder(root, rec.folder)
        header = header_text(name, val, rate, rec.dx, rec.age, rec.sex)
        if name == "A9001":
            _write(folder, name, val, header)
            path = folder / f"{name}.mat"
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        elif name == "E09002":
            wrong = header_text(name, val, rate, rec.dx, rec.age, rec.sex, samples=val.shape[1] + 500)
            _write(folder, name, val, wrong)
        elif name == "HR09003":
            _write(folder, name, val, header_text(name, val, rate, rec.dx + (UNKNOWN_CODE,), rec.age, rec.sex))
        elif name == "Q9004":
            _write(folder, name, None, header)
        elif name == "S9005":
            first, second, rest = header.split("\n", 2)
            _write(folder, name, val, f"{first} {second}\n{rest}")  # the real JS23074.hea defect
        elif name == "I9006":
            _write(folder, name, val, None)
        elif name == "JS09007":
            _write(folder, name, val[:11], header)


def write_challenge(root: Path, per_source: dict[str, int] | None = None, seed: int = 0,
                    corrupt: bool = False) -> Path:
    """Write the planned records (and, with corrupt=True, the CORRUPT ones) under root/training; returns root."""
    root = Path(root)
    for rec in plan(per_source, seed):
        val = quantise(fixture_signal(rec))
        _write(record_folder(root, rec.folder), rec.name, val,
               header_text(rec.name, val, rec.rate, rec.dx, rec.age, rec.sex))
    if corrupt:
        _write_corrupt(root, seed)
    return root
