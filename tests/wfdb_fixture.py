"""Writes a hospital-style folder of WFDB records (500 Hz, 12 leads, format 16) and its labels.csv."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import wfdb
from scipy.signal import resample_poly

from orchestrator.datasets.synthetic import CONDITIONS, LEADS, generate_record

RATE_HZ = 500
DURATION_S = 10.0
# units written per record (cycled); gains give 1 uV per ADC step whatever the unit, so the values read back agree
UNITS = {"mV": 1000.0, "uV": 1.0, "V": 1e6}
UNIT_TO_MV = {"mV": 1.0, "uV": 1e-3, "V": 1e3}
# record names that `corrupt=True` adds (each also has a labels.csv row unless noted)
TRUNCATED = "bad/truncated"  # .dat cut short
MISSING_HEADER = "bad/no_header"  # .hea deleted
DUPLICATE = "rec002"  # a second labels.csv row for clean record 2 (needs n >= 3)
MISMATCH = "bad/mismatch"  # header declares fewer samples than the .dat holds
NAN_RECORD = "bad/nan"  # invalid samples in lead V2
CORRUPT_BYTES = "bad/bitflip"  # .dat bytes changed, size kept: checksum mismatch
FLAT_RECORD = "flat"  # lead V3 constant: loads, but describe() warns
UNLABELLED = "extra/unlabelled"  # in the folder, not in labels.csv
NAN_COUNT = 25


def record_name(k: int) -> str:
    """Clean record k; a few live in a sub-folder (names are paths relative to the folder)."""
    return f"ward_b/rec{k:03d}" if k % 4 == 3 else f"rec{k:03d}"


def record_labels(k: int) -> tuple[str, ...]:
    """Synthetic condition names; every fifth record also carries STE (multi-label)."""
    condition = CONDITIONS[k % len(CONDITIONS)]
    return (condition, "STE") if k % 5 == 4 and condition != "STE" else (condition,)


def record_unit(k: int) -> str:
    """Header units of record k (mV mostly, some uV and V)."""
    return ("mV", "mV", "uV", "mV", "V")[k % 5]


def signal_mv(k: int, seed: int) -> np.ndarray:
    """[12, 5000] mV signal of record k at 500 Hz, before quantisation."""
    x, rate = generate_record(CONDITIONS[k % len(CONDITIONS)], "eu", seed * 1000 + k, DURATION_S)
    x = resample_poly(x.astype(np.float64), RATE_HZ, int(rate), axis=-1) if rate != RATE_HZ else x
    return x[:, : int(DURATION_S * RATE_HZ)].astype(np.float64)


def quantised_mv(signal: np.ndarray) -> np.ndarray:
    """What reading the written record must give back, in mV (1 uV steps)."""
    return np.round(signal * 1000.0) / 1000.0


def write_record(folder: Path, name: str, signal: np.ndarray, unit: str = "mV") -> None:
    """wfdb.wrsamp one [12, T] mV signal as format 16 with the given header unit."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(path.name, fs=RATE_HZ, units=[unit] * 12, sig_name=list(LEADS),
                p_signal=(signal * (1.0 / UNIT_TO_MV[unit])).T, fmt=["16"] * 12, adc_gain=[UNITS[unit]] * 12,
                baseline=[0] * 12, write_dir=str(path.parent))


def write_wfdb_folder(root: Path, n: int = 20, seed: int = 0, corrupt: bool = False) -> Path:
    """n clean records + labels.csv (record, patient, label, site); corrupt adds the faulty cases above."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(n):
        write_record(root, record_name(k), signal_mv(k, seed), record_unit(k))
        rows.append({"record": record_name(k), "patient": f"P{k // 2 if k < 6 else k:04d}",
                     "label": ";".join(record_labels(k)), "site": "north" if k % 2 else "south"})
    if corrupt:
        rows += _write_corrupt(root, seed)
    with open(root / "labels.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["record", "patient", "label", "site"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def _write_corrupt(root: Path, seed: int) -> list[dict]:
    """The faulty records; returns their labels.csv rows (the duplicate row included)."""
    base = signal_mv(99, seed)
    for name in (TRUNCATED, MISSING_HEADER, MISMATCH, CORRUPT_BYTES, UNLABELLED):
        write_record(root, name, base)
    nan = base.copy()
    nan[7, 100:100 + NAN_COUNT] = np.nan
    write_record(root, NAN_RECORD, nan)
    flat = base.copy()
    flat[8] = 0.0
    write_record(root, FLAT_RECORD, flat)
    _truncate(root / f"{TRUNCATED}.dat", 12_345)
    (root / f"{MISSING_HEADER}.hea").unlink()
    _rewrite_sig_len(root / f"{MISMATCH}.hea", 4000)
    _flip_bytes(root / f"{CORRUPT_BYTES}.dat", offset=2_000)
    names = (TRUNCATED, MISSING_HEADER, MISMATCH, NAN_RECORD, CORRUPT_BYTES, FLAT_RECORD)
    rows = [{"record": name, "patient": f"Q-{name}", "label": "NSR", "site": "north"} for name in names]
    return rows + [{"record": DUPLICATE, "patient": "P0099", "label": "AF,STE", "site": "south"}]


def _truncate(path: Path, size: int) -> None:
    """Cut a file to `size` bytes (an odd count: mid-sample)."""
    data = path.read_bytes()
    path.write_bytes(data[:size])


def _rewrite_sig_len(header: Path, sig_len: int) -> None:
    """Change the sample count on a header's record line, keeping the signal lines (and their checksums)."""
    lines = header.read_text().splitlines()
    fields = lines[0].split()
    fields[3] = str(sig_len)
    header.write_text("\n".join([" ".join(fields), *lines[1:]]) + "\n")


def _flip_bytes(path: Path, offset: int) -> None:
    """Invert a few bytes in place: same size, wrong checksum."""
    data = bytearray(path.read_bytes())
    for k in range(offset, offset + 8):
        data[k] ^= 0xFF
    path.write_bytes(bytes(data))
