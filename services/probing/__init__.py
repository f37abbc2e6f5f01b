"""Probing service: downstream probes on frozen embeddings."""
