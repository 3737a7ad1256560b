"""Fuzz targets: one per parser and renderer that takes outside bytes, each a
Hypothesis strategy with the properties that must hold. ``tests/fuzz`` runs a
bounded number of cases in CI; ``python -m bench.fuzz`` runs a million."""
