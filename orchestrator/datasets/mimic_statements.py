"""Keyword rules from MIMIC-IV-ECG machine statements (report_0..report_17) to labels: a heuristic, not a diagnosis.

Each statement is matched on its own, lower-cased, with word boundaries, so "Abnormal ECG" is never "normal",
"Incomplete right bundle branch block" is never RBBB, and "Sinus rhythm with 1st degree A-V block" is both SR and
1dAVb. Statements that compare with an earlier tracing ("... has replaced ...", "no longer", "compared", "previous",
"prior") are skipped: they name rhythms that may not be in this ECG. Warnings and unmatched statements add nothing;
a record none of whose statements match has no label for that task and is left out of it.
"""
from __future__ import annotations

import re
from typing import Iterable

# task -> classes, in class order. rhythm: the cart's rhythm call; normality: its overall call.
TASKS: dict[str, tuple[str, ...]] = {
    "rhythm": ("SR", "SB", "STach", "AF", "AFL", "paced"),
    "normality": ("normal", "borderline", "abnormal"),
    "coarse": ("NSR", "AF", "SB", "STach", "1dAVb", "RBBB", "LBBB"),  # a subset of COARSE_CLASSES (no STE rule)
}

# (pattern, task, class); every rule that matches a statement adds its class.
RULES: tuple[tuple[re.Pattern, str, str], ...] = tuple((re.compile(p), task, cls) for p, task, cls in (
    (r"\bsinus rhythm\b", "rhythm", "SR"),
    (r"\bsinus rhythm\b", "coarse", "NSR"),
    (r"\bsinus bradycardia\b", "rhythm", "SB"),
    (r"\bsinus bradycardia\b", "coarse", "SB"),
    (r"\bsinus tachycardia\b", "rhythm", "STach"),
    (r"\bsinus tachycardia\b", "coarse", "STach"),
    (r"\batrial fibrillation\b", "rhythm", "AF"),
    (r"\batrial fibrillation\b", "coarse", "AF"),
    (r"\batrial flutter\b", "rhythm", "AFL"),
    (r"\b(pacemaker|paced|pacing)\b", "rhythm", "paced"),
    (r"\b(1st|first) degree a-?v block\b", "coarse", "1dAVb"),
    (r"(?<!incomplete )\bright bundle branch block\b", "coarse", "RBBB"),
    (r"(?<!incomplete )\bleft bundle branch block\b", "coarse", "LBBB"),
    (r"\bnormal ecg\b", "normality", "normal"),  # also "otherwise normal ecg"; \b keeps "abnormal ecg" out
    (r"\bborderline ecg\b", "normality", "borderline"),
    (r"\babnormal ecg\b", "normality", "abnormal"),
))
_COMPARISON = re.compile(r"\b(replaced|no longer|compared|previous|prior)\b")


def labels_of(statements: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Task -> classes (in TASKS order) that a record's machine statements name; tasks with none are omitted."""
    found: dict[str, set[str]] = {}
    for statement in statements:
        text = " ".join(statement.lower().split())
        if not text or _COMPARISON.search(text):
            continue
        for pattern, task, cls in RULES:
            if pattern.search(text):
                found.setdefault(task, set()).add(cls)
    return {task: tuple(c for c in TASKS[task] if c in found[task]) for task in TASKS if task in found}
