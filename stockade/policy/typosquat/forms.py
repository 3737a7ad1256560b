"""The forms of one name that look-alikes share: its skeleton, its keys and its parts.

Owns turning a name into what the typosquat index files and looks up: the skeleton
(lower case, separators removed, look-alike characters folded to ASCII), look-alike
pairs folded (``rn`` read as ``m``), the keys a swap or a slip leaves as they are,
its words, its language-marker cores and its one-letter deletions. ASCII names, almost
all of them, take ``bytes.translate`` paths several times as fast as a pattern. Pure.
"""

from __future__ import annotations

import operator
import re
import unicodedata
from functools import lru_cache

from stockade.policy.model import Ecosystem
from stockade.policy.typosquat.limits import MIN_CORE

SEPARATORS = re.compile(r"[-_.@/:\s]+")
DIGITS = re.compile(r"[0-9]")
_DOUBLE = re.compile(r"(.)\1")
_RUNS = re.compile(r"(.)\1+")
_FIRST = operator.itemgetter(1)
_NO_VOWELS = str.maketrans("", "", "aeiou")
_NO_VOWELS_OR_S = str.maketrans("", "", "aeious")


@lru_cache(maxsize=8192)
def _fold_char(ch: str) -> str:
    if ch.isascii():
        return ch
    decomposed = unicodedata.normalize("NFKD", ch)
    base = "".join(c for c in decomposed if not unicodedata.combining(c))
    if base.isascii() and base:
        return base.lower()
    # imported on the first character that needs it, not at every start (loading its
    # tables took about 10 ms of each start): most names never reach here
    from confusable_homoglyphs import confusables

    found = confusables.is_confusable(ch, preferred_aliases=["latin"], greedy=True)
    if found:
        for item in found[0]["homoglyphs"]:
            if item["c"].isascii():
                return str(item["c"]).lower()
    return ch


# The ASCII characters SEPARATORS matches, for bytes.translate to delete (several
# times as fast as the pattern, on every name checked).
_ASCII_SEPARATORS = bytes(c for c in range(128) if SEPARATORS.fullmatch(chr(c)))
_TO_DASH = bytes.maketrans(_ASCII_SEPARATORS, b"-" * len(_ASCII_SEPARATORS))


def skeleton(ecosystem: Ecosystem, name: str) -> str:
    """The form look-alikes share: ``Req_uests`` and ``requests`` have one skeleton."""
    if name.isascii():  # NFKC and folding leave ASCII as it is
        return name.lower().encode().translate(None, _ASCII_SEPARATORS).decode()
    text = unicodedata.normalize("NFKC", name).lower()
    text = "".join(_fold_char(ch) for ch in text)
    return SEPARATORS.sub("", text)


_ONE_LOOK = str.maketrans({"l": "i", "1": "i", "0": "o"})
_ONE_LOOK_ASCII = bytes.maketrans(b"l10", b"iio")


def fold_pairs(skel: str) -> str:
    # Letters and pairs that read alike in many fonts (capital I and l lower-cased apart).
    pairs = skel.replace("rn", "m").replace("vv", "w").replace("cl", "d")
    if pairs.isascii():  # bytes.translate: several times as fast as str's
        return pairs.encode().translate(_ONE_LOOK_ASCII).decode()
    return pairs.translate(_ONE_LOOK)


# Each byte to its square (mod 251), to sum a name's letters a second way, not in
# step with the first, that a swap leaves as it is.
_SCRAMBLE = bytes(i * i % 251 for i in range(256))


def swap_key(skel: str) -> bytes:
    """Length, first letter and two sums of the letters of an ASCII ``skel``, packed in
    16 bytes: the same for every order of the letters after the first, and rarely for
    other names. Each field has its own 32 bits below 16 million letters; bytes, as the
    packed tables key by them."""
    raw = skel.encode()
    return (len(raw) | ord(skel[0]) << 32 | sum(raw) << 64
            | sum(raw.translate(_SCRAMBLE)) << 96).to_bytes(16, "little")


@lru_cache(maxsize=16384)  # the protected names a slip key holds, when it matches
def slip_forms(ecosystem: Ecosystem, name: str) -> tuple[str, str, str, str]:
    """A protected name's skeleton, that with doubles undone, and the consonants of its
    words with doubles undone in each and of its skeleton (vowels are all a dropped
    vowel changes)."""
    skel = skeleton(ecosystem, name)
    joined = words(name, undouble=True)[0] if name.isascii() else collapse_doubles(skel)
    return skel, collapse_doubles(skel), consonants(joined), consonants(skel)


def collapse_doubles(skel: str) -> str:
    """``skel`` with every doubled letter written once: ``puppeteer`` -> ``pupeter``."""
    # a callable replacement: a template is expanded anew for every match
    return _RUNS.sub(_FIRST, skel) if _DOUBLE.search(skel) else skel


def consonants(undoubled: str) -> str:
    """The first letter and every later consonant: ``solidity`` -> ``sldty``."""
    rest = undoubled[1:]
    if rest.isascii():  # as in slip_key: bytes.translate is the fast one
        return undoubled[:1] + rest.encode().translate(None, b"aeiou").decode()
    return undoubled[:1] + rest.translate(_NO_VOWELS)


def slip_key(skel: str) -> str:
    """The first letter and the later consonants but s, doubles written once: what a
    doubled letter, a dropped vowel or a plural s leaves as it is."""
    rest = skel[1:]
    if rest.isascii():  # bytes.translate deletes about three times as fast as str's
        return collapse_doubles(skel[:1] + rest.encode().translate(None, b"aeious").decode())
    return collapse_doubles(skel[:1] + rest.translate(_NO_VOWELS_OR_S))


@lru_cache(maxsize=16384)  # called with the protected names a key holds
def singular(norm: str) -> str:
    """The words of ``norm`` without a trailing s (``webpacks-dev-servers`` ->
    ``webpack-dev-server``)."""
    return "-".join(w.removesuffix("s") for w in SEPARATORS.split(norm) if w)


@lru_cache(maxsize=16384)  # protected names recur: a key is shared by a few
def words(norm: str, *, undouble: bool) -> tuple[str, frozenset[int]]:
    """``norm``'s words joined (doubled letters undone in each, if ``undouble``), and
    where each starts."""
    lowered = norm.lower()
    if lowered.isascii():  # one C pass instead of the pattern's split
        parts = lowered.encode().translate(_TO_DASH).decode().split("-")
    else:
        parts = SEPARATORS.split(lowered)
    if undouble and _DOUBLE.search(lowered):
        # word by word: a letter doubled across a separator is two words'
        # (``check-kit`` is not ``checkit``, ``cc-changelog`` not ``changelog``)
        parts = [collapse_doubles(word) for word in parts]
    out = ""
    starts = set()
    for plain in parts:
        if plain:
            starts.add(len(out))
            out += plain
    return out, frozenset(starts)


def cores(skel: str, affixes: tuple[str, ...]) -> tuple[str, ...]:
    """``skel`` without one of ``affixes`` at either end (long enough to stand alone),
    in the order of ``affixes``: the same answer in every process."""
    if not (skel.startswith(affixes) or skel.endswith(affixes)):
        return ()  # most names carry none: one test at each end, in C
    found: dict[str, None] = {}
    for affix in affixes:
        for rest in (skel.removeprefix(affix), skel.removesuffix(affix)):
            if rest != skel and len(rest) >= MIN_CORE:
                found[rest] = None
    return tuple(found)


def deletions(word: str) -> set[str]:
    """``word`` and every string made by deleting one character.

    One deletion on each side finds every pair one edit apart (a transposition
    included) and the two-edit pairs that share a deletion (a substitution plus
    an insertion elsewhere, say); pairs two substitutions apart are not found.
    """
    found = {word[:i] + word[i + 1:] for i in range(len(word))}
    found.add(word)
    return found
