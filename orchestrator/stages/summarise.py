"""Summarise stage: mean +- spread over seeds per grid cell, and label efficiency of the scarcity curves."""
from __future__ import annotations

from orchestrator.results import EfficiencyRow, ProbeResult, SummaryRow, json_float
from services.probing.efficiency import label_efficiency, summarise


def summaries(probes: list[ProbeResult], intervals: dict[tuple, dict[str, list[float]]] | None = None
              ) -> list[SummaryRow]:
    """results.json `summary`: one row per model x dataset x task x probe x setting, over its seeds.

    intervals (stages/intervals.py) adds `ci` = [low, high], the 95% CI of the seed mean, to each metric.
    """
    groups: dict[tuple, list[ProbeResult]] = {}
    for p in probes:
        groups.setdefault((p.model, p.dataset, p.task, p.probe, p.train_fraction, p.k_shot), []).append(p)
    out = []
    for (model, dname, task, probe, fraction, k_shot), items in groups.items():
        metrics = {}
        for name in sorted({k for p in items for k in p.metrics if not k.endswith("_ci")}):
            values = [p.metrics[name] for p in items if p.metrics.get(name) is not None]
            if values:
                metrics[name] = {k: json_float(float(v)) for k, v in summarise(values).items()}
                ci = (intervals or {}).get((model, dname, task, probe, fraction, k_shot), {}).get(name)
                if ci is not None:
                    metrics[name]["ci"] = [json_float(float(v)) for v in ci]
        out.append(SummaryRow(model=model, dataset=dname, task=task, probe=probe, train_fraction=fraction,
                              k_shot=k_shot, n_seeds=len(items), metrics=metrics))
    return out


def efficiency(summary: list[SummaryRow]) -> list[EfficiencyRow]:
    """Area under the scarcity curve and the fraction reaching 95% of the full-data macro AUROC."""
    curves: dict[tuple, list] = {}
    for row in summary:
        score = row.metrics.get("auroc_macro", {}).get("mean")
        if row.train_fraction is not None and score is not None:
            curves.setdefault((row.model, row.dataset, row.task, row.probe), []).append((row.train_fraction, score))
    out = []
    for (model, dname, task, probe), points in curves.items():
        points.sort()
        eff = label_efficiency([f for f, _ in points], [v for _, v in points])
        out.append(EfficiencyRow(model=model, dataset=dname, task=task, probe=probe, aulc=eff["aulc"],
                                 fraction_to_95pct=eff["fraction_to_95pct"]))
    return out
