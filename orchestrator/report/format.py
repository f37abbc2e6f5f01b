"""Number and label formatting shared by every report section; the dash stands for undefined."""
from __future__ import annotations

import json
from typing import Any

from orchestrator.results.queries import is_num


DASH = "\u2014"  # how a missing or undefined number is shown


METRICS = ("auroc_macro", "auprc_macro", "f1_macro", "balanced_accuracy", "accuracy")


REGRESSION_METRICS = ("r2", "mae", "rmse", "pearson_r")


METRIC_LABELS = {"auroc_macro": "AUROC", "auprc_macro": "AUPRC", "f1_macro": "F1",
                 "balanced_accuracy": "Balanced acc.", "accuracy": "Accuracy", "r2": "R\u00b2", "mae": "MAE",
                 "rmse": "RMSE", "pearson_r": "Pearson r"}


SECONDARY = {"auroc_macro": ("auprc_macro", "balanced_accuracy"), "r2": ("mae", "rmse", "pearson_r"),
             "pearson_r": ("mae", "rmse")}


CHANCE = {"auroc_macro": 0.5, "r2": 0.0, "pearson_r": 0.0}


# One line style per probe kind, colour per model; the seed's families as named dash patterns.
LINESTYLES = {"linear": "-", "knn": "--", "mlp": ":", "random_forest": "-.", "svm": (0, (5, 1, 1, 1, 1, 1)),
              "gradient_boosting": (0, (8, 2)), "decision_tree": (0, (1, 3))}
LINESTYLE_NAMES = {"linear": "solid", "knn": "dashed", "mlp": "dotted", "random_forest": "dash-dot",
                   "svm": "dash-dot-dot", "gradient_boosting": "long dashes", "decision_tree": "sparse dots"}


def fmt(x: Any, digits: int = 3) -> str:
    """A number to `digits` decimals; None, NaN or non-numbers as the dash."""
    return f"{x:.{digits}f}" if is_num(x) else DASH


def fmt_pm(stats: dict | None) -> str:
    """'mean ± std' of a summary metric; the dash when the mean is undefined."""
    stats = stats or {}
    mean, std = stats.get("mean"), stats.get("std")
    if not is_num(mean):
        return DASH
    return f"{mean:.3f} \u00b1 {std:.3f}" if is_num(std) else f"{mean:.3f}"


def or_dash(value: Any) -> Any:
    """The value, or the dash when it is missing (None)."""
    return DASH if value is None else value


def fmt_ci(ci: tuple[float, float] | None) -> str:
    """'[0.970, 0.990]' or the dash."""
    return DASH if ci is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def fraction_label(fraction: float | None, k_shot: int | None) -> str:
    """'10%' for a training fraction, '5 per class' for k-shot, the dash for neither."""
    if fraction is not None:
        return f"{fraction * 100:g}%"
    return DASH if k_shot is None else f"{k_shot} per class"


def fmt_count(n: Any) -> str:
    """An integer with thousands separators; the dash when missing."""
    return f"{int(n):,}" if is_num(n) else DASH


def plain_text(value: Any) -> str:
    """A config value as short text: integers with separators, containers as compact JSON."""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, separators=(", ", ": "), default=str)
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
