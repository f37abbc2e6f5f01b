"""`ecglens datasets describe`: what a dataset folder holds, and which kind it is when not told."""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np

from orchestrator.datasets.base import DatasetSpec, RecordError, open_dataset, parse_dataset_arg


def detect_kind(path: Path) -> str:
    """Guess the adapter from the official layout's marker files."""
    if (path / "ptbxl_database.csv").is_file():
        return "ptbxl"
    if (path / "exams.csv").is_file():
        return "code15"
    if (path / "labels.csv").is_file():
        return "wfdb"
    if (path / "record_list.csv").is_file() and ((path / "machine_measurements.csv").is_file()
                                                 or (path / "files").is_dir()):
        return "mimic-iv-ecg"  # before the header scan: the release holds ~800,000 headers without #Dx lines
    for k, header in enumerate(path.rglob("*.hea")):
        # Real Challenge 2020/2021 headers write `#Dx:` and `# Dx:` alike; a few headers may lack the line.
        if _DX_LINE.search(header.read_text(errors="replace")):
            return "challenge"
        if k >= 4:
            break
    raise ValueError(f"{path}: cannot tell the dataset kind (no ptbxl_database.csv, exams.csv, labels.csv, "
                     f"record_list.csv or Challenge headers with a #Dx: line); say it explicitly as KIND:PATH")


_DX_LINE = re.compile(r"^#\s*Dx\s*:", re.MULTILINE | re.IGNORECASE)


def spec_from_arg(text: str) -> DatasetSpec:
    """KIND:PATH, or a bare existing PATH whose kind is detected."""
    path = Path(text)
    if ":" not in text or path.exists():
        if not path.exists():
            raise ValueError(f"{text}: no such folder")
        return DatasetSpec(detect_kind(path), {"path": str(path)})
    return parse_dataset_arg(text)


def describe(spec: DatasetSpec, sample_per_source: int = 3) -> dict:
    """The adapter's own describe() when it has one, else a summary from metadata and a few loads."""
    dataset = open_dataset(spec)
    if hasattr(dataset, "describe"):
        return {"kind": spec.kind, "name": dataset.name, **dataset.describe()}
    metas = [dataset.meta(i) for i in range(len(dataset))]
    labels = {task: dict(sorted(Counter(c for m in metas for c in m.labels.get(task, ())).items()))
              for task in dataset.tasks}
    rates, lengths, leads, problems = Counter(), [], set(), []
    seen: Counter = Counter()
    for i, meta in enumerate(metas):
        if seen[meta.source] >= sample_per_source:
            continue
        seen[meta.source] += 1
        try:
            record = dataset.load(i)
        except RecordError as err:
            problems.append({"record": meta.record_id, "problem": str(err)})
            continue
        rates[record.sampling_rate_hz] += 1
        lengths.append(record.signal.shape[1] / record.sampling_rate_hz)
        leads.add(tuple(record.leads))
    return {"kind": spec.kind, "name": dataset.name, "records": len(metas),
            "patients": len({m.patient_id for m in metas}),
            "sources": dict(sorted(Counter(m.source for m in metas).items())),
            "sampling_rates_hz (sampled)": {f"{k:g}": v for k, v in sorted(rates.items())},
            "duration_s (sampled)": {"min": float(np.min(lengths)), "max": float(np.max(lengths))} if lengths else {},
            "leads": [list(x) for x in sorted(leads)], "labels": labels, "problems": problems}


def render(summary: dict) -> str:
    """Readable text for the terminal."""
    lines = [f"{summary.get('name', '')} ({summary.get('kind', '')})"]
    for key, value in summary.items():
        if key in ("name", "kind"):
            continue
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            lines.append(f"{key}:")
            for sub, counts in value.items():
                lines.append(f"  {sub}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            lines.append(f"{key}: {len(value)}")
            lines += [f"  - " + "; ".join(f"{k}: {v}" for k, v in item.items()) for item in value[:50]]
            if len(value) > 50:
                lines.append(f"  ... and {len(value) - 50} more")
        else:
            lines.append(f"{key}: {value}")
    return "\n".join(lines)
