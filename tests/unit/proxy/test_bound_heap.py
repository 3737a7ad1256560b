"""A serving process's heap settings: a near-megabyte buffer allocated and freed
again and again (a warm ~1 MB file's send buffer) reuses its pages rather than
giving them back and faulting them in at every request."""

from __future__ import annotations

import subprocess
import sys

import pytest

from stockade.proxy.rendered import _libc

CYCLES = 60
_PROBE = f"""
import resource
from stockade.proxy.rendered import bound_heap
bound_heap()
keep = [bytes(64) for _ in range(1000)]  # small objects above and below
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range({CYCLES}):
    body = b"x" * 900_000
    del body
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(_libc() is None, reason="glibc's mallopt is not available here")
def test_a_freed_near_megabyte_buffer_is_reused_not_faulted_in_again() -> None:
    done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,  # noqa: S603
                          check=True, timeout=60)
    faults = int(done.stdout.strip())
    # each 900 KB buffer spans some 220 pages: faulted in every cycle, were the heap
    # trimmed at each free; once, kept
    assert faults < CYCLES * 20, faults
