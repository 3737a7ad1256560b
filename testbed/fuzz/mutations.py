"""Structured mutation of object inputs (a PyPI project page, a maven-metadata document).

The round-trip targets take objects, not bytes, so ``bench.fuzz`` cannot flip
their bytes; drawing each from Hypothesis runs at about a hundred inputs a
second. These build a new object from one or two drawn seeds (lists spliced,
entries added, dropped or reordered, one field redrawn) that still meets every
constraint of the strategy the seeds came from, which ``valid_page`` and
``valid_metadata`` spell out: the round-trip property must hold for each, so a
failure is a bug and never a malformed input.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TypeVar

from stockade.proxy.ecosystems import maven_layout as ml
from stockade.proxy.ecosystems import pypi_pages as pp

T = TypeVar("T")

# --- maven-metadata.xml (targets._sane_metadata) -------------------------------------

MAVEN_VERSION = re.compile(r"[0-9]{1,2}(\.[0-9]{1,2}){0,2}(-SNAPSHOT|-rc[0-9])?")
MAVEN_MAX_VERSIONS = 6
LAST_UPDATED = (None, "20240101000000")


def _digits(rng: random.Random) -> str:
    return "".join(rng.choice(string.digits) for _ in range(rng.randint(1, 2)))


def maven_version(rng: random.Random) -> str:
    """A version ``MAVEN_VERSION`` matches, leading zeros and all."""
    parts = [_digits(rng) for _ in range(rng.randint(1, 3))]
    suffix = rng.choice(("", "", "-SNAPSHOT", f"-rc{rng.randrange(10)}"))
    return ".".join(parts) + suffix


def _edit_version(version: str, rng: random.Random) -> str:
    core, dash, qualifier = version.partition("-")
    parts = core.split(".")
    op = rng.randrange(4)
    if op == 0:
        parts[rng.randrange(len(parts))] = _digits(rng)
    elif op == 1 and len(parts) < 3:
        parts.insert(rng.randint(0, len(parts)), _digits(rng))
    elif op == 2 and len(parts) > 1:
        del parts[rng.randrange(len(parts))]
    else:
        dash, qualifier = rng.choice((("", ""), ("-", "SNAPSHOT"), ("-", f"rc{rng.randrange(10)}")))
    return ".".join(parts) + dash + qualifier


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def mutate_metadata(doc: ml.Metadata, other: ml.Metadata, rng: random.Random) -> ml.Metadata:
    """A new artifact-level document from ``doc`` (and ``other``'s versions)."""
    versions, own = _mutated(list(doc.versions), other.versions, _edit_version,
                             maven_version, rng)
    last_updated = rng.choice(LAST_UPDATED) if own else doc.last_updated
    versions = _unique(versions)[:MAVEN_MAX_VERSIONS]
    return ml.Metadata(doc.group_id, doc.artifact_id, None, versions, last_updated)


def valid_metadata(doc: ml.Metadata) -> bool:
    """Whether ``doc`` is one ``targets._sane_metadata`` could draw."""
    return (doc.group_id == "com.example" and doc.artifact_id == "demo" and doc.version is None
            and doc.raw is None and doc.last_updated in LAST_UPDATED
            and len(doc.versions) <= MAVEN_MAX_VERSIONS
            and len(set(doc.versions)) == len(doc.versions)
            and all(MAVEN_VERSION.fullmatch(v) for v in doc.versions))


# --- PyPI project pages (targets._sane_pages) ----------------------------------------

FILE_NAME = re.compile(r"([a-z][a-z0-9_]{0,8})-([0-9]{1,2}\.[0-9]{1,2})"
                       r"(\.tar\.gz|-py3-none-any\.whl|\.zip|-cp311-cp311-linux_x86_64\.whl)")
FILE_EXTS = (".tar.gz", "-py3-none-any.whl", ".zip", "-cp311-cp311-linux_x86_64.whl")
PAGE_MAX_FILES = 4
REQUIRES_PYTHON = "<>=!~.,0123456789* "
SHA256 = re.compile(r"[0-9a-f]{64}")
STATUSES = (None, {"status": "active"}, {"status": "archived"})
# Characters st.text() draws and markup or JSON treats specially, tried more often
# than the rest of Unicode.
_TEXT_SPECIAL = "<>&\"'= \t\n\r\x00\x0b\x0c\x1c\x7f\x85\xa0\u2028\u0130\\/%;#"


def file_url(filename: str) -> str:
    return f"https://files.example/p/{filename}"


def provenance_url(filename: str) -> str:
    return f"https://files.example/{filename}.p"


def file_name(rng: random.Random) -> str:
    first = rng.choice(string.ascii_lowercase)
    rest = "".join(rng.choice(string.ascii_lowercase + string.digits + "_")
                   for _ in range(rng.randint(0, 8)))
    return f"{first}{rest}-{_digits(rng)}.{_digits(rng)}{rng.choice(FILE_EXTS)}"


def _sha256(rng: random.Random) -> str:
    return rng.randbytes(32).hex()


def _char(rng: random.Random) -> str:
    """One character as ``st.text()`` may draw it: anything but a surrogate."""
    if rng.random() < 0.5:
        return rng.choice(_TEXT_SPECIAL)
    while True:
        code = rng.choice((rng.randrange(0x80), rng.randrange(0x800), rng.randrange(0x110000)))
        if not 0xD800 <= code <= 0xDFFF:
            return chr(code)


def _text(old: str, rng: random.Random, alphabet: str | None, max_size: int) -> str:
    """``old`` with a few characters inserted, replaced or deleted, at most ``max_size``."""
    chars = list(old)
    for _ in range(rng.randint(1, 3)):
        pick = rng.choice(alphabet) if alphabet else _char(rng)
        pos = rng.randint(0, len(chars))
        op = rng.randrange(3)
        if op == 0:
            chars.insert(pos, pick)
        elif op == 1 and pos < len(chars):
            chars[pos] = pick
        elif chars:
            del chars[min(pos, len(chars) - 1)]
    return "".join(chars[:max_size])


def _requires_python(old: str | None, rng: random.Random) -> str | None:
    if rng.random() < 0.2:
        return None
    text = _text(old or "", rng, REQUIRES_PYTHON, 12)
    return text if text.strip() else ">=3." + rng.choice(string.digits)


def _yanked(old: bool | str, rng: random.Random) -> bool | str:
    if rng.random() < 0.3:
        return rng.random() < 0.5
    text = _text(old if isinstance(old, str) else "", rng, None, 20)
    return text or _char(rng)


def _rename(entry: pp.FileEntry, filename: str) -> pp.FileEntry:
    return replace(entry, filename=filename, url=file_url(filename),
                   provenance=provenance_url(filename) if entry.provenance else None)


def _new_file(rng: random.Random) -> pp.FileEntry:
    filename = file_name(rng)
    return pp.FileEntry(
        filename=filename, url=file_url(filename), hashes={"sha256": _sha256(rng)},
        requires_python=_requires_python(None, rng), yanked=_yanked(False, rng),
        core_metadata=rng.choice((False, True, {"sha256": _sha256(rng)})),
        provenance=rng.choice((None, provenance_url(filename))),
        gpg_sig=rng.choice((None, False, True)))


def _edit_file(entry: pp.FileEntry, rng: random.Random) -> pp.FileEntry:
    op = rng.randrange(7)
    if op == 0:
        return _rename(entry, file_name(rng))
    if op == 1:
        return replace(entry, hashes={"sha256": _sha256(rng)})
    if op == 2:
        return replace(entry, requires_python=_requires_python(entry.requires_python, rng))
    if op == 3:
        return replace(entry, yanked=_yanked(entry.yanked, rng))
    if op == 4:
        return replace(entry, core_metadata=rng.choice(
            (False, True, {"sha256": _sha256(rng)})))
    if op == 5:
        return replace(entry, provenance=None if entry.provenance else provenance_url(
            entry.filename))
    return replace(entry, gpg_sig=rng.choice((None, False, True)))


def _unique_files(files: list[pp.FileEntry]) -> tuple[pp.FileEntry, ...]:
    seen: dict[str, pp.FileEntry] = {}
    for entry in files:
        seen.setdefault(entry.filename, entry)
    return tuple(seen.values())[:PAGE_MAX_FILES]


def mutate_page(page: pp.ProjectPage, other: pp.ProjectPage,
                rng: random.Random) -> pp.ProjectPage:
    """A new page from ``page`` (and ``other``'s files)."""
    files, own = _mutated(list(page.files), other.files, _edit_file, _new_file, rng)
    status = rng.choice(STATUSES) if own else page.status
    return replace(page, files=_unique_files(files), status=status)


def _valid_file(entry: pp.FileEntry) -> bool:
    rp, yanked, core = entry.requires_python, entry.yanked, entry.core_metadata
    return (FILE_NAME.fullmatch(entry.filename) is not None
            and entry.url == file_url(entry.filename)
            and entry.hashes.keys() == {"sha256"} and bool(SHA256.fullmatch(entry.hashes["sha256"]))
            and (rp is None or (0 < len(rp) <= 12 and bool(rp.strip())
                                and set(rp) <= set(REQUIRES_PYTHON)))
            and (isinstance(yanked, bool) or (0 < len(yanked) <= 20 and not any(
                0xD800 <= ord(c) <= 0xDFFF for c in yanked)))
            and (isinstance(core, bool) or (core.keys() == {"sha256"}
                                            and bool(SHA256.fullmatch(core["sha256"]))))
            and entry.provenance in (None, provenance_url(entry.filename))
            and entry.gpg_sig in (None, False, True)
            and entry.size is None and entry.upload_time is None)


def valid_page(page: pp.ProjectPage) -> bool:
    """Whether ``page`` is one ``targets._sane_pages`` could draw."""
    names = [f.filename for f in page.files]
    return (page.name == "demo" and page.versions == () and not page.extra_meta
            and page.status in STATUSES and len(names) <= PAGE_MAX_FILES
            and len(set(names)) == len(names) and all(_valid_file(f) for f in page.files))


def _mutated(items: list[T], other: Sequence[T], edit: Callable[[T, random.Random], T],
             new: Callable[[random.Random], T], rng: random.Random) -> tuple[list[T], bool]:
    """``items`` changed one to three times: spliced with ``other`` (a prefix of one, a
    suffix of the other), one edited, one added, one removed, or all shuffled; and
    whether the document's own field was drawn to change too."""
    own = False
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(6)
        if op == 0:
            items = items[:rng.randint(0, len(items))] + list(
                other[rng.randint(0, len(other)):])
        elif op == 1 and items:
            i = rng.randrange(len(items))
            items[i] = edit(items[i], rng)
        elif op == 2:
            items.insert(rng.randint(0, len(items)), new(rng))
        elif op == 3 and items:
            del items[rng.randrange(len(items))]
        elif op == 4:
            rng.shuffle(items)
        else:
            own = True
    return items, own
