"""The registries tests and benchmarks run against: fakes that speak each
registry's protocol on 127.0.0.1, and the runners of real registry servers.

Not part of the installed package; the test suite and ``bench/`` import it from
the repository root.
"""
