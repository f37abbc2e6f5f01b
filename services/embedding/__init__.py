"""The embedding server: one model package per process behind ecglens.v1.EmbeddingService."""
