"""Generated stubs of the ecglens.v1 protocol (see protos/generate.py)."""
