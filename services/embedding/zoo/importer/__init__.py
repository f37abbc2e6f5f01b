"""Bring your own model: inspect an ONNX / TorchScript / torch.export file, draft its card, import it as a package.

inspection reads a model file; card_draft drafts its card; checks test a card against the model; packaging
writes and validates the package; cli wires `ecglens zoo inspect` and `ecglens zoo import`.
"""
