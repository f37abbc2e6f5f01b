"""Clinical plausibility of lead attributions: textbook expectations per class and a structured verdict.

`lead_verdicts` turns per-class lead importance (AttributionResult.lead_importance, or results.json's
`shap.lead_importance_per_class`) into `LeadVerdict`s; `LeadVerdict.note()` is the English sentence written to
results.json's `shap.clinical_notes`, and the findings read the verdicts themselves, never the sentences.
Stdlib only, so readers of results.json need no numpy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence

TOP_K = 3  # leads compared with the expectation per class

# LeadVerdict.status values; the first three are judged against an expectation.
AGREES, PARTLY, DISAGREES = "agrees", "partly", "disagrees"
RATE_CLASS, NO_EXPECTATION, NO_ATTRIBUTION = "rate_class", "no_expectation", "no_attribution"
_WORDS = {AGREES: "agrees with", PARTLY: "partly agrees with", DISAGREES: "does not agree with"}
_SCORES = {2: AGREES, 1: PARTLY, 0: DISAGREES}

LIMB_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF")


@dataclass(frozen=True)
class Expectation:
    """Where a class is classically seen: one or more (leads, wording) patterns and the source."""

    aliases: tuple[str, ...]
    patterns: tuple[tuple[tuple[str, ...], str], ...]
    cite: str  # short form used in the sentences
    source: str


_AHA_IVCD = ("AHA/ACCF/HRS 2009",
             "Surawicz et al., AHA/ACCF/HRS recommendations for the standardization and interpretation of the "
             "ECG, part III: intraventricular conduction disturbances, Circulation 2009;119:e235-e240")
_GOLDBERGER = ("Goldberger 2018", "Goldberger, Goldberger & Shvilkin, Goldberger's Clinical Electrocardiography: "
               "A Simplified Approach, 9th ed., Elsevier 2018")
_UDMI = ("UDMI 2018", "Thygesen et al., Fourth universal definition of myocardial infarction, "
         "Circulation 2018;138:e618-e651")

# Deliberately small; aliases are matched case-insensitively. Synthetic "BBB" is RBBB-like (R' in V1, wide S in
# I/V6; orchestrator.datasets.synthetic), so it shares the RBBB row.
EXPECTATIONS: tuple[Expectation, ...] = (
    Expectation(("RBBB", "CRBBB", "IRBBB", "BBB"),
                ((("V1", "V2"), "V1/V2 for right bundle-branch block: rsR' in V1-V2"),), *_AHA_IVCD),
    Expectation(("LBBB", "CLBBB"),
                ((("V1", "V5", "V6", "I", "aVL"),
                  "I, aVL, V5-V6 (broad notched R) and V1 (QS) for left bundle-branch block"),), *_AHA_IVCD),
    Expectation(("STE", "STEMI", "ASTE", "AMI", "ANMI"),
                ((("V1", "V2", "V3", "V4"), "V1-V4 for anterior ST elevation"),
                 (("II", "III", "aVF"), "II/III/aVF for inferior ST elevation")), *_UDMI),
    Expectation(("ISTE", "IMI", "INFERIOR"),
                ((("II", "III", "aVF"), "II/III/aVF for inferior ST elevation"),), *_UDMI),
    Expectation(("AF", "AFIB", "AFL", "AFLT"),
                ((("II", "III", "aVF", "V1"), "II/III/aVF and V1, where P waves or f waves are best seen"),),
                *_GOLDBERGER),
    Expectation(("1DAVB", "IAVB", "1AVB", "LPR"),
                ((("II", "V1"), "II and V1, where the P wave that starts the PR interval is clearest"),),
                *_GOLDBERGER),
    Expectation(("LAD", "RAD", "LAFB", "LANFB", "LPFB", "AXIS"),
                ((LIMB_LEADS, "the limb leads, which define the frontal-plane axis"),), *_GOLDBERGER),
)
# Rate classes are read from RR intervals, visible in every lead: no lead is expected to dominate.
RATE_CLASSES = frozenset({"NSR", "SR", "SB", "SBRAD", "BRADY", "STACH", "TACHY", "NORM"})


def expectation_for(class_name: str) -> Expectation | None:
    """The table row whose aliases include the class name (case-insensitive), if any."""
    key = class_name.strip().upper()
    return next((e for e in EXPECTATIONS if key in {a.upper() for a in e.aliases}), None)


def _verdict(top: Sequence[str], expected: Sequence[str]) -> int:
    """2 = agrees (>= min(2, |expected|) of the top leads expected), 1 = partly (one), 0 = not."""
    hits = sum(lead in expected for lead in top)
    return 2 if hits >= min(2, len(expected)) else (1 if hits else 0)


@dataclass(frozen=True)
class LeadVerdict:
    """One class's top leads compared with its textbook expectation."""

    class_name: str
    top_leads: tuple[str, ...]
    status: str  # AGREES, PARTLY, DISAGREES, RATE_CLASS, NO_EXPECTATION or NO_ATTRIBUTION
    expected_leads: tuple[str, ...] = ()  # the pattern quoted (every pattern's leads when none matched)
    expectation: str = ""  # its wording, e.g. "V1-V4 for anterior ST elevation"
    cite: str = ""  # short source, e.g. "UDMI 2018"

    @property
    def judged(self) -> bool:
        """Whether the class has an expectation its top leads were compared with."""
        return self.status in _WORDS

    def note(self) -> str:
        """The sentence written to results.json's shap.clinical_notes."""
        name = self.class_name
        if self.status == NO_ATTRIBUTION:
            return (f"{name}: no attribution - the probe's logit for this class is constant "
                    "(the reference class of a binary probe).")
        head = f"{name}: top leads {', '.join(self.top_leads)}"
        if self.status == RATE_CLASS:
            return (f"{head} - a rate/rhythm class read from RR intervals in every lead, so no lead is expected to "
                    "dominate.")
        if self.status == NO_EXPECTATION:
            return f"{head} - no clinical expectation recorded for this class."
        return f"{head} - {_WORDS[self.status]} the expectation ({self.expectation}; {self.cite})."


def top_leads(importance: Mapping[str, float], leads: Sequence[str] | None = None, k: int = TOP_K) -> list[str]:
    """The k leads with the largest importance, most important first (ties in lead order)."""
    order = list(leads) if leads is not None else list(importance)
    return sorted(order, key=lambda lead: -importance[lead])[:k]


def lead_verdict(class_name: str, importance: Mapping[str, float], leads: Sequence[str] | None = None,
                 top_k: int = TOP_K) -> LeadVerdict:
    """The verdict of one class from its lead -> importance map."""
    if not any(importance.values()):
        return LeadVerdict(class_name, (), NO_ATTRIBUTION)
    top = tuple(top_leads(importance, leads, top_k))
    exp = expectation_for(class_name)
    if exp is None:
        status = RATE_CLASS if class_name.strip().upper() in RATE_CLASSES else NO_EXPECTATION
        return LeadVerdict(class_name, top, status)
    score, text, expected = max((_verdict(top, leads_), text_, leads_) for leads_, text_ in exp.patterns)
    if score == 0:
        text = " or ".join(t for _, t in exp.patterns)
        expected = tuple(dict.fromkeys(lead for leads_, _ in exp.patterns for lead in leads_))
    return LeadVerdict(class_name, top, _SCORES[score], tuple(expected), text, exp.cite)


def lead_verdicts(per_class: Mapping[str, Mapping[str, float]], leads: Sequence[str] | None = None,
                  top_k: int = TOP_K) -> list[LeadVerdict]:
    """One verdict per class of a class -> (lead -> importance) map, in its order."""
    return [lead_verdict(name, importance, leads, top_k) for name, importance in per_class.items()]


class _LeadImportance(Protocol):
    """What clinical_notes reads of an AttributionResult (a Protocol, so this module needs no numpy)."""

    class_names: list[str]
    leads: list[str]
    lead_importance: dict[str, dict[str, float]]


def clinical_notes(result: _LeadImportance, top_k: int = TOP_K) -> list[str]:
    """One sentence per class of an AttributionResult comparing its top leads with the textbook expectation."""
    per_class = {name: result.lead_importance[name] for name in result.class_names}
    return [v.note() for v in lead_verdicts(per_class, result.leads, top_k)]
