"""Generated stubs of the vendored Open Inference Protocol (V2), package `inference` (see protos/generate_inference.py)."""
