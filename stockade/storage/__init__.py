"""Bytes at rest: the content-addressed blob store and its backends."""
