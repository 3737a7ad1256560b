"""The shipped summaries of the protected names, kept as fingerprints.

Owns comparing a project's summary with the summary of the name it resembles
("copies the target's summary"): a summary is reduced to its words (lower case,
letters and digits) and hashed to four bytes. The shipped files
(``data/summaries-<ecosystem>.bin``, made by ``scripts/popular_summaries.py``) hold
one fingerprint per name of ``popular-<ecosystem>.txt``, in its order (0: no
summary known): 0.5 MB for npm's 125,000 names where the text would take ten
times that. Four bytes suffice: only two given summaries are ever compared. Pure.
"""

from __future__ import annotations

import functools
import hashlib
import re
from array import array
from importlib import resources

from stockade.policy.model import Ecosystem

_WORDS = re.compile(r"[^\W_]+")
MIN_WORDS = 3  # "A Python library" is shared by chance, not copied


def words(summary: str) -> str:
    """The words of ``summary``, lower case, one space apart."""
    return " ".join(_WORDS.findall(summary.lower()))


def fingerprint(summary: str | None) -> int:
    """Four bytes standing for the summary's words; 0 for none or too few to compare."""
    text = words(summary or "")
    if text.count(" ") + 1 < MIN_WORDS:
        return 0
    value = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "little")
    return value or 1


def encode(fingerprints: list[int]) -> bytes:
    """The file form of fingerprints: little-endian unsigned 32-bit integers."""
    return array("I", fingerprints).tobytes() if array("I").itemsize == 4 else \
        b"".join(f.to_bytes(4, "little") for f in fingerprints)


@functools.cache
def _prints(ecosystem: Ecosystem) -> bytes:
    """The shipped fingerprints of ``ecosystem``: four bytes a listed name, in order."""
    data = resources.files("stockade.policy.data").joinpath(f"summaries-{ecosystem.value}.bin")
    return data.read_bytes() if data.is_file() else b""


def ranked(ecosystem: Ecosystem, rank: int | None) -> int:
    """The fingerprint of the summary of the shipped name at ``rank`` (its place in
    ``popular-<ecosystem>.txt``); 0 for none. A look-up in the file's bytes, where a
    dict of every listed name would hold some 8 MiB in every process."""
    raw = _prints(ecosystem)
    if rank is None or not 0 <= rank < len(raw) // 4:
        return 0
    return int.from_bytes(raw[4 * rank:4 * rank + 4], "little")


def shipped(ecosystem: Ecosystem) -> dict[str, int]:
    """Name (as listed) -> fingerprint of its summary, for the shipped popular list
    (made anew at each call: for tools and rules over lists of their own)."""
    from stockade.policy.rules.typosquat import popular

    raw = _prints(ecosystem)
    prints = [int.from_bytes(raw[i:i + 4], "little") for i in range(0, len(raw) - 3, 4)]
    return {name: f for name, f in zip(popular(ecosystem), prints, strict=False) if f}
