"""`Results`: the whole results.json as typed rows, versioned, read from and written to disk byte for byte.

Plain stdlib dataclasses, no pydantic: this is an internal boundary between the pipeline stages, the
findings and the report, and the experiment file inside it is already validated by orchestrator.experiment.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from orchestrator.results.row import Row, optional, rows
from orchestrator.results.rows import (CalibrationRow, Comparison, CountRow, DatasetInfo, EfficiencyRow, ErrorEntry,
                                       Finding, ModelInfo, PreprocessingInfo, ProbeResult, Representation,
                                       RobustnessRow, SimilarityRow, SubgroupRow, SummaryRow, TransferGap,
                                       TransferResult)


SCHEMA_VERSION = "1.4"  # of results.json; bump the minor for added keys, the major for changed meanings
ECGLENS_VERSION = "0.1.0"


def json_float(value: Any) -> Any:
    """A non-finite float as None (results.json is strict JSON: undefined is null); anything else unchanged."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(kw_only=True)
class Results(Row):
    """results.json (docs/results-schema.md). Lists of the 1.1 schema are None when the key is absent."""

    schema_version: str | None = None
    ecglens_version: str | None = None
    # True when some model lost records it could have embedded (counts[].lost); None in files before 1.2.
    partial: bool | None = optional()
    experiment: dict[str, Any] = field(default_factory=dict)
    models: list[ModelInfo] = rows(ModelInfo)
    datasets: list[DatasetInfo] = rows(DatasetInfo)
    preprocessing: list[PreprocessingInfo] = rows(PreprocessingInfo)
    probes: list[ProbeResult] = rows(ProbeResult)
    summary: list[SummaryRow] = rows(SummaryRow)
    label_efficiency: list[EfficiencyRow] | None = rows(EfficiencyRow, optional_key=True)
    comparisons: list[Comparison] | None = rows(Comparison, optional_key=True)
    representations: list[Representation] = rows(Representation)
    transfer: list[TransferResult] | None = rows(TransferResult, optional_key=True)
    transfer_gap: list[TransferGap] | None = rows(TransferGap, optional_key=True)
    similarity: list[SimilarityRow] | None = rows(SimilarityRow, optional_key=True)
    robustness: list[RobustnessRow] | None = rows(RobustnessRow, optional_key=True)  # schema 1.3
    subgroups: list[SubgroupRow] | None = rows(SubgroupRow, optional_key=True)  # schema 1.3
    calibration: list[CalibrationRow] | None = rows(CalibrationRow, optional_key=True)  # schema 1.3
    errors: list[ErrorEntry] = rows(ErrorEntry)
    counts: list[CountRow] = rows(CountRow)
    findings: list[Finding] | None = rows(Finding, optional_key=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Results:
        """Results from a parsed results.json (any 1.x file, also partial ones)."""
        return super().from_dict(data)  # type: ignore[return-value]

    @classmethod
    def coerce(cls, results: Results | Mapping[str, Any]) -> Results:
        """results itself, or a parsed results.json dict read into Results."""
        return results if isinstance(results, Results) else cls.from_dict(results)

    @classmethod
    def read(cls, path: Path | str) -> Results:
        """Results from a results.json file."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def to_json(self) -> str:
        """The results.json text: two-space indented, keys in schema order, a final newline."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    def write(self, path: Path | str) -> Path:
        """Write results.json to path; returns the path."""
        path = Path(path)
        path.write_text(self.to_json())
        return path

    def losses(self) -> list[CountRow]:
        """counts[] rows of models that lost records (empty in a complete run or a file before 1.2)."""
        return [c for c in self.counts or [] if isinstance(c, CountRow) and (c.lost or 0) > 0]

    def model_names(self) -> list[str]:
        """Model names in experiment order (rows without a name left out)."""
        return [m.name for m in self.models or [] if isinstance(m, ModelInfo) and m.name is not None]
