"""stockade: a caching proxy mirror for PyPI, npm and Maven that enforces policy."""

__version__ = "0.1.0"
