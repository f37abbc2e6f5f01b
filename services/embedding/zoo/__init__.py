"""Zoo packages: builders of the reference models."""
