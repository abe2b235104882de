"""Data layer: manifests, validation, splits and the synthetic generator."""
