"""Input-level lead attribution through a served model.

compute: Shapley values of probe logits over lead x segment masks (`attribute`, `AttributionResult`);
clinical: textbook expectations per class and structured `LeadVerdict`s (`lead_verdicts`, `clinical_notes`);
figure: the class x lead heatmap (`lead_heatmap`).
"""
