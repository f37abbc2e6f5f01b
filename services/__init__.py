"""ECGLens services: embedding servers, probing and analysis, each importable without gRPC running."""
