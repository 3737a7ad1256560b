"""Rebuild the popular-name lists the typosquat rule protects.

Sources (public, documented):

- PyPI: the "top-pypi-packages" dataset (https://hugovk.github.io/top-pypi-packages/),
  the 15,000 most downloaded projects of the last 30 days from PyPI's public BigQuery
  download statistics. Give it as its JSON (``rows[].project``, ranked) or as a TSV
  with ``name`` and ``rank_among_15000_most_downloaded`` columns.
- npm: monthly download counts from the npm downloads API
  (https://api.npmjs.org/downloads/point/last-month/<name>) for the registry's
  names, as a TSV with ``name`` and ``downloads_a_month`` columns (and ``version``,
  the newest: npm's security holding packages, ``0.0.1-security``, stand where
  malware was removed and are left out, however often bots still fetch them). The
  125,000 most downloaded (``--npm-count``): the typosquat rule never refuses the
  first 20,000, and protects the rest as targets while checking them against those
  (squats of mid-ranked packages are common on npm; some copies are fetched often).
- Maven: Central publishes no download counts; the list is kept by hand in
  ``popular-maven.txt`` (coordinates of widely used artifacts), and this script
  can add the ``groupId:artifactId`` of every artifact in a local repository
  layout (``--maven-repo ~/.m2/repository``).

    python scripts/build_popular.py --pypi top-pypi-packages.json --npm npm.tsv \
        [--maven-repo DIR] [--count 20000] [--npm-count 125000]
"""

from __future__ import annotations

import argparse
import csv
import heapq
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "stockade" / "policy" / "data"
csv.field_size_limit(sys.maxsize)


def _rows(path: Path) -> Iterator[dict[str, str]]:
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        yield from csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)


def pypi_names(path: Path, count: int) -> list[str]:
    """Ranked, PEP 503-normalised PyPI names."""
    if path.suffix == ".json":
        rows = json.loads(path.read_text())["rows"]
        ranked = [r["project"] for r in rows]
    else:
        pairs = [(int(r["rank_among_15000_most_downloaded"]), r["name"]) for r in _rows(path)
                 if (r.get("rank_among_15000_most_downloaded") or "").strip().isdigit()]
        ranked = [name for _, name in sorted(pairs)]
    seen: dict[str, None] = {}
    for name in ranked:
        seen.setdefault(re.sub(r"[-_.]+", "-", name).lower(), None)
    return list(seen)[:count]


def npm_names(path: Path, count: int) -> list[str]:
    """npm names by monthly downloads, most first, without security holding packages."""
    def scored() -> Iterator[tuple[int, str]]:
        for r in _rows(path):
            value = (r.get("downloads_a_month") or "").strip()
            if "-security" in (r.get("version") or ""):
                continue  # a removed malicious package's placeholder
            if value.isdigit() and r.get("name"):
                yield int(value), r["name"].lower()

    return [name for _, name in heapq.nlargest(count, scored())]


def maven_names(repo: Path) -> list[str]:
    """``groupId:artifactId`` of every artifact (a folder holding a .pom) in a layout."""
    found = set()
    for pom in repo.rglob("*.pom"):
        version_dir = pom.parent
        artifact_dir = version_dir.parent
        group = artifact_dir.parent.relative_to(repo).as_posix().replace("/", ".")
        if group:
            found.add(f"{group}:{artifact_dir.name}".lower())
    return sorted(found)


def write(name: str, names: list[str]) -> None:
    (DATA / name).write_text("\n".join(names) + "\n", encoding="utf-8")
    print(f"wrote {len(names)} names to {DATA / name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pypi", type=Path, help="top-pypi-packages JSON or ranked TSV")
    parser.add_argument("--npm", type=Path, help="TSV with name and downloads_a_month")
    parser.add_argument("--maven-repo", type=Path, help="a Maven repository layout to add")
    parser.add_argument("--count", type=int, default=20000, help="PyPI names at most")
    parser.add_argument("--npm-count", type=int, default=125000, help="npm names")
    args = parser.parse_args()
    if args.pypi:
        write("popular-pypi.txt", pypi_names(args.pypi, args.count))
    if args.npm:
        write("popular-npm.txt", npm_names(args.npm, args.npm_count))
    if args.maven_repo:
        listed = (DATA / "popular-maven.txt").read_text().split() \
            if (DATA / "popular-maven.txt").exists() else []
        merged = list(dict.fromkeys([*listed, *maven_names(args.maven_repo)]))
        write("popular-maven.txt", merged)


if __name__ == "__main__":
    main()
