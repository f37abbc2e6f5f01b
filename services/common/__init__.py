"""Pieces every ECGLens service shares: tensor codec, gRPC options, process helpers."""
