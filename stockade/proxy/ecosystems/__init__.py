"""One module per package ecosystem; each owns its registry protocol."""
