"""The process that builds one typosquat index file for a starting server, and exits.

Run as ``python -m stockade.proxy.indexchild FOLDER ECOSYSTEM KIND`` by
``proxy.indexes``, with the names on its standard input (one a line, as the server
reads its shipped lists: the file is keyed by them). It imports the index's own
modules only, builds the index, writes its file in ``FOLDER`` and prints the file's
path: the build's objects end with this process, never in the server's.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from stockade.policy.model import Ecosystem
from stockade.policy.typosquat.store import write_file


def main(argv: Sequence[str] | None = None) -> int:
    """Build the file the arguments name; 0 once it is written, else 1."""
    where, ecosystem, kind = argv if argv is not None else sys.argv[1:]
    names = tuple(sys.stdin.buffer.read().decode("utf-8", "surrogatepass").split("\n")[:-1])
    try:
        path = write_file(Path(where), kind, Ecosystem(ecosystem), names)
    except OSError as exc:
        sys.stderr.write(f"stockade: index file not written in {where}: {exc}\n")
        return 1
    sys.stdout.write(f"{path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
