"""Dataset adapters: each yields records lazily, by index."""
