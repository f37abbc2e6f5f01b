"""The "What was measured" section: plain-language intro and glossary (templates/intro.html.j2)."""
from __future__ import annotations

from orchestrator.report.templating import render

# The intro paragraph is prose with <em> markup, so it lives in templates/intro.html.j2; the glossary is plain text.
GLOSSARY = (
    ("AUROC", "ranking quality, 0.5 = chance, 1.0 = perfect; macro = mean over classes."),
    ("AUPRC", "area under the precision-recall curve; more sensitive to rare classes than AUROC."),
    ("F1", "harmonic mean of precision and recall of the probe's decisions, averaged over classes."),
    ("Balanced accuracy", "mean per-class recall (sensitivity), so large classes do not dominate."),
    ("95% CI", "patient-level bootstrap confidence interval: the range of plausible scores on other patients. "
               "Next to a mean over seeds it is the interval of that mean (every seed scored on the same "
               "resampled patients); next to one fit, that fit's own."),
    ("Paired bootstrap", "both models are scored on the same resampled patients; if the 95% CI of the "
                         "difference includes 0, the two are \u201cnot clearly different\u201d."),
    ("AULC", "area under the label-efficiency curve: the mean score over the training fractions (log scale); "
             "higher = good with few labels."),
    ("Silhouette (class)", "from \u22121 to 1: how well ECGs of the same class cluster together in the "
                           "embedding space; high = classes are well separated."),
    ("Silhouette (source)", "the same for acquisition source (hospital, device, database); high = the "
                            "embedding separates sites, a generalisation risk."),
    ("Trustworthiness", "from 0 to 1: how faithfully the 2-D UMAP map keeps true neighbours together; "
                        "near 1 = the picture can be trusted, below ~0.8 = read it with caution."),
    ("Continuity", "from 0 to 1: how many true neighbours the 2-D map keeps close (the converse of trustworthiness)."),
    ("kNN agreement", "share of an ECG's nearest neighbours in the embedding that have the same class; compare "
                      "with chance (what random neighbours would give)."),
    ("Site separability", "AUROC of telling the acquisition site from the embedding alone; 0.5 = sites look "
                          "alike (good), near 1 = sites are easy to tell apart (a generalisation risk)."),
    ("Effective rank", "how many directions of the embedding carry variance; far below the embedding size means "
                       "the embedding has collapsed onto a few directions."),
    ("Participation ratio", "another count of the directions that carry variance, dominated by the largest ones."),
    ("Alignment / uniformity", "mean distance between same-class ECGs (lower = tighter classes) and how evenly "
                               "embeddings spread over the sphere (more negative = more uniform)."),
    ("Jaccard", "overlap of two sets of top dimensions, 0 = none shared, 1 = identical; compared with chance."),
    ("Gini", "from 0 to 1: how unequally the probe's reliance is spread over dimensions; high = concentrated."),
    ("CKA", "centred kernel alignment, 0 to 1: how similar two models' embedding geometries are on the same ECGs."),
    ("Cosine to clean", "from \u22121 to 1: how close an ECG's embedding stays to its clean one after the ECG is "
                        "corrupted (noise, wander, mains, missing or swapped leads); 1 = unchanged."),
    ("AUROC drop", "AUROC of a probe trained on clean ECGs, minus its AUROC on corrupted copies of the same test "
                   "ECGs; near 0 = robust."),
    ("Subgroup gap", "a patient group's AUROC (by sex, age band or source) minus the AUROC on all test patients; "
                     "negative = the model serves that group worse."),
    ("ECE", "expected calibration error, 0 to 1: the average gap between the probe's stated confidence and how "
            "often it is right, over ten probability bins; 0 = perfectly calibrated."),
    ("Brier score", "mean squared error of the predicted probabilities (summed over classes for single-label "
                    "tasks); 0 = perfect."),
)


def intro_section() -> str:
    """What was measured, in plain language, and a glossary of the scores."""
    return render("intro.html.j2", glossary=GLOSSARY)
