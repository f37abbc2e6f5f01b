"""Typed results.json: `Results` and one row type per list (docs/results-schema.md)."""
from orchestrator.results.document import ECGLENS_VERSION, SCHEMA_VERSION, Results, json_float
from orchestrator.results.row import Row
from orchestrator.results.rows import (CalibrationRow, Comparison, CountRow, DatasetInfo, EfficiencyRow, ErrorEntry,
                                       Finding, ModelInfo, PreprocessingInfo, ProbeResult, Representation,
                                       RobustnessRow, SimilarityRow, SubgroupRow, SummaryRow, TransferGap,
                                       TransferResult)

__all__ = ["ECGLENS_VERSION", "SCHEMA_VERSION", "CalibrationRow", "Comparison", "CountRow", "DatasetInfo", "EfficiencyRow", "ErrorEntry", "Finding", "ModelInfo",
           "PreprocessingInfo", "ProbeResult", "Representation", "Results", "RobustnessRow", "Row", "SimilarityRow", "SubgroupRow", "SummaryRow",
           "TransferGap", "TransferResult", "json_float"]
