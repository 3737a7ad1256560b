"""The one thing pyproject.toml cannot say: the packed tables' optional C look-ups.

``stockade/policy/typosquat/_probe.c`` is built where a compiler is found, and left out
(with a warning) where none is: ``packed.py`` then uses its own Python loops, which
answer the same. The source's CRC-32 is built into the module, so a test can tell a
build older than its source.
"""

import zlib
from pathlib import Path

from setuptools import Extension, setup

SOURCE = "stockade/policy/typosquat/_probe.c"
CRC = zlib.crc32(Path(__file__).with_name("stockade").joinpath(
    "policy", "typosquat", "_probe.c").read_bytes())

setup(ext_modules=[Extension(
    "stockade.policy.typosquat._probe", [SOURCE], optional=True,
    define_macros=[("SOURCE_CRC", f"{CRC}u")], extra_compile_args=["-O2"])])
