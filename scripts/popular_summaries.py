"""Derive the shipped summary fingerprints of the popular lists from package lists.

Reads a PyPI list (tab-separated, with a header: name, version, month, rank, summary)
and an npm list (name, version, downloads a month, summary), and writes, for each
name of ``stockade/policy/data/popular-<ecosystem>.txt`` in its order, the fingerprint
of its summary (``stockade.policy.typosquat.summaries``) to
``stockade/policy/data/summaries-<ecosystem>.bin``. Names without a summary get 0.
Running it again on the same lists writes the same bytes.

    python scripts/popular_summaries.py --pypi PYPI.tsv --npm NPM.tsv
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

from stockade.policy.model import Ecosystem  # noqa: E402
from stockade.policy.names import normalize  # noqa: E402
from stockade.policy.rules.typosquat import popular  # noqa: E402
from stockade.policy.typosquat.summaries import encode, fingerprint  # noqa: E402

DATA = HERE / "stockade" / "policy" / "data"


def summaries(path: Path, eco: Ecosystem) -> dict[str, str]:
    """Normalised name -> summary, from a list's first and last columns."""
    csv.field_size_limit(1 << 20)
    out: dict[str, str] = {}
    with path.open(encoding="utf-8", errors="replace", newline="") as fh:
        rows = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(rows, None)  # the header
        for row in rows:
            if len(row) >= 4 and row[-1].strip():
                out.setdefault(normalize(eco, row[0]), row[-1].strip())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pypi", type=Path, required=True, help="the PyPI package list")
    parser.add_argument("--npm", type=Path, required=True, help="the npm package list")
    args = parser.parse_args()
    for eco, path in ((Ecosystem.PYPI, args.pypi), (Ecosystem.NPM, args.npm)):
        known = summaries(path, eco)
        prints = [fingerprint(known.get(normalize(eco, n))) for n in popular(eco)]
        (DATA / f"summaries-{eco.value}.bin").write_bytes(encode(prints))
        print(f"{eco.value}: {sum(1 for f in prints if f)} of {len(prints)} names have a "
              "summary to compare")


if __name__ == "__main__":
    main()
