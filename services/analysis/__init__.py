"""Analysis service: UMAP and SHAP on embeddings."""
