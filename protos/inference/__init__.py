"""Generated stubs of the vendored Open Inference Protocol (V2), package `inference` (see `python -m protos.generate inference`)."""
