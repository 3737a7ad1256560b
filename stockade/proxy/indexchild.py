"""The process that builds typosquat index files for a starting server, and exits.

Run as ``python -m stockade.proxy.indexchild FOLDER KIND ECOSYSTEM...`` by
``proxy.indexes``, with each ecosystem's names on its standard input (one a line,
each ecosystem's separated by a NUL, as the server reads its shipped lists: a file is
keyed by them). It imports the index's own modules only, builds each ecosystem's
index of ``KIND``, writes its file in ``FOLDER`` and prints the file's path: the
build's objects end with this process, never in the server's.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from stockade.policy.model import Ecosystem
from stockade.policy.typosquat.store import write_file


def main(argv: Sequence[str] | None = None) -> int:
    """Build the files the arguments name; 0 once every one is written, else 1."""
    where, kind, *ecosystems = argv if argv is not None else sys.argv[1:]
    lists = sys.stdin.buffer.read().decode("utf-8", "surrogatepass").split("\0")
    if len(lists) != len(ecosystems):
        sys.stderr.write(f"stockade: {len(ecosystems)} ecosystems and {len(lists)} lists\n")
        return 1
    for ecosystem, names in zip(ecosystems, lists, strict=True):
        try:
            path = write_file(Path(where), kind, Ecosystem(ecosystem),
                              tuple(names.split("\n")) if names else ())
        except OSError as exc:
            sys.stderr.write(f"stockade: index file not written in {where}: {exc}\n")
            return 1
        sys.stdout.write(f"{path}\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
