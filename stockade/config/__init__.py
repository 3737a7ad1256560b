"""Typed settings: the model, and loading it from YAML, environment and flags."""
