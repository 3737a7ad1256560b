"""Finding names that imitate protected ones: the matching core of the typosquat rules.

Owns the skeleton of a name (lower case, separators removed, look-alike characters
folded to ASCII, npm scope joined in; ``rn`` read as ``m`` in a second look-up), and
an index of protected names that answers "which protected name does this one
imitate, and how" in a few microseconds.

- Dictionary look-ups: the same skeleton, an affix added (or, of the 500 most
  installed, dropped: ``yaml`` for ``pyyaml``), a language marker moved or changed, a
  version digit dropped.
- Edit distance through a one-deletion neighbourhood index (SymSpell's idea) checked
  with rapidfuzz's Damerau-Levenshtein distance: one edit for names of seven letters
  or more (for five and six, a swap, a doubled letter, or for the most installed a
  neighbouring key or another vowel; below eight letters, only of the 3,000 most
  installed), two from ten.
- The fifty most installed names, the ones squatters aim at first, compared directly
  with names that share their first letter: any one edit from five letters, any two
  from eight (from ten letters, the 200 most installed too, with or without their
  version digit).
- A PyPI name made of two of the 1,000 most installed joined by a separator
  (``matplotlib-requests``) claims both.
- Slips that keep every consonant in place, looked up by key against every protected
  name whatever its rank: doubled or undoubled letters (``pupeter`` for
  ``puppeteer``), one or two vowels dropped (``solidity-covrage``), and, of the
  5,000 most installed, a plural ``s`` added to or dropped from a word
  (``webpacks-dev-servers``). Real names rarely differ from a popular one this way
  alone, where a changed consonant often makes another word.
- Maven takes none of the last three (its coordinates share a few groupId prefixes);
  its protected groupIds get an index of their own instead (a look-alike groupId is a
  squat whatever artifact it names), and a popular artifactId under someone else's
  personal namespace (``io.github.<user>:scribejava-core``) is a squat.

Names under one owner's namespace (a verified Maven namespace such as ``org.apache``
or ``io.github.<user>``, an npm ``@scope``) are never squats of each other. Pure; the
corpus is passed in.
"""

from __future__ import annotations

import itertools
import operator
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from confusable_homoglyphs import confusables
from rapidfuzz import process
from rapidfuzz.distance import DamerauLevenshtein, Levenshtein

from stockade.policy.model import Ecosystem
from stockade.policy.names import normalize

_SEPARATORS = re.compile(r"[-_.@/:\s]+")
_AFFIX_RANK = 20000
# Affixes typosquats add to or drop from a popular name, and how popular the
# imitated name must be (by rank) for the affix alone to make a look-alike.
_AFFIXES = {
    Ecosystem.PYPI: (("python3", 20000), ("python", 20000), ("py3", 5000), ("py", 2000),
                     ("lib", 2000), ("cli", 2000), ("dev", 2000), ("sdk", 2000),
                     # words that make a name read as part of Python or its installer
                     # (``sys-selenium``, ``install-pyyaml``: a 2024 campaign)
                     ("install", 1000), ("sys", 1000), ("os", 1000)),
    Ecosystem.NPM: (("node", _AFFIX_RANK), ("js", _AFFIX_RANK), ("lib", 2000), ("cli", 2000),
                    ("dev", 2000), ("sdk", 2000)),
    Ecosystem.MAVEN: (),
}
# The affixes by the letter a name starts (ends) with, to try only those that may fit.
_AFFIX_HEADS = {eco: {ch: tuple(a for a in affixes if a[0][0] == ch)
                      for ch in {a[0][0] for a in affixes}}
                for eco, affixes in _AFFIXES.items()}
_AFFIX_TAILS = {eco: {ch: tuple(a for a in affixes if a[0][-1] == ch)
                      for ch in {a[0][-1] for a in affixes}}
                for eco, affixes in _AFFIXES.items()}
# The most installed names of each ecosystem: never refused as look-alikes. The
# shipped lists go further down (npm); names there are protected as targets but
# are checked themselves against these.
POPULAR_RANK = 20_000
_MIN_FUZZY = 5  # shorter names differ by one letter from too many real ones
_ANY_EDIT = 7  # below this, only swapped and repeated letters count (real names collide)
# How popular (by rank) a name must be for an edit alone to make a look-alike of
# it: the popular PyPI and npm names (every PyPI name listed), but below the
# _EDGE_RANK most installed only the edits of a typist's slip count; npm names listed
# further down take swaps and the slips below.
_EDIT_MAX_RANK = {Ecosystem.PYPI: 20_000, Ecosystem.NPM: 20_000, Ecosystem.MAVEN: 10_000}
# The same for a separator change alone: real lesser-known names often sit one
# separator from a mid-ranked one, while typosquatters aim at the most installed.
_SEPARATOR_MAX_RANK = 10_000
_SCOPE_MAX_RANK = 5_000
_TWO_EDITS = 10  # from this length two edits are still a look-alike
# Short names (five or six letters) of the most installed projects: one slip of
# the finger (a neighbouring key, a vowel for another) still makes a look-alike.
_SHORT_SLIP_RANK = 1_000
# Names under _SHORT_EDIT_LEN letters sit one edit from many real ones: an edit
# alone makes them a look-alike only of the _SHORT_EDIT_RANK most installed.
_SHORT_EDIT_LEN = 8
_SHORT_EDIT_RANK = 3_000
# Swapped neighbours still make a look-alike where other edits no longer reach: any
# listed name of _SWAP_MIN letters or more beyond the edits, short names below the
# _SHORT_EDIT_RANK most installed among them (``pytroch``, ``ffmepg``). Real names
# rarely sit one swap from another.
_SWAP_MIN = 6
# Below the _EDGE_RANK most installed, an edit alone imitates a name only as a
# typist slips: one edit, the first letter kept and the last too where a letter is
# added or dropped (``eprogress``, ``tempfile2`` and ``prop-type`` are real variants;
# a plural is for the slips below), and, below _SUBSTITUTE_RANK, a letter changed
# only for a neighbouring key or a vowel for a vowel (``qfactory`` is not
# ``kfactory``).
_EDGE_RANK = 500
_SUBSTITUTE_RANK = 1_000
# How popular a name must be for a variant that keeps its core and moves or
# changes its language marker (``python-openssl`` for ``pyopenssl``,
# ``nmap-python`` for ``python-nmap``) or drops its version digit (``urllib``
# for ``urllib3``) to count as a look-alike.
_VARIANT_MAX_RANK = 10_000
_MARKERS = {
    Ecosystem.PYPI: ("python3", "python", "py3", "py"),
    Ecosystem.NPM: ("node", "js"),
    Ecosystem.MAVEN: (),
}
_MIN_CORE = 3
_KEYBOARD = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_NEIGHBOURS = {
    ch: {row[j] for j in (i - 1, i + 1) if 0 <= j < len(row)}
    for row in _KEYBOARD for i, ch in enumerate(row)
}
_VOWELS = frozenset("aeiouy")
# The most installed PyPI and npm names, compared with every candidate of about their
# length that starts with the same letter: any one edit from _TOP_ONE letters, any two
# (two substitutions included) from _TOP_TWO. Squatters aim here first (``requesgt``,
# ``botoceor``, ``pyyal``).
_TOP_RANK = 50
_TOP_ONE = 5
_TOP_TWO = 8
# Long names (_TOP_LONG letters or more, with or without a trailing version
# digit) of the _TOP_LONG_RANK most installed take two edits the same way
# (``BeaitifulSoop`` for ``beautifulsoup4``).
_TOP_LONG = 10
_TOP_LONG_RANK = 200
# Two names each among the _COMBO_RANK most installed, joined by a separator,
# every part at least _COMBO_PART letters (``pandas-numpy``; ``uuid-v4`` is not).
_COMBO_RANK = 1_000
_COMBO_PART = 4
# A name of _DROPPED_MIN letters or more that is one of the _DROPPED_RANK most
# installed without an affix (``yaml`` for ``pyyaml``, ``openssl`` for ``pyopenssl``).
_DROPPED_RANK = 500
_DROPPED_MIN = 4
_DROPPABLE = {
    Ecosystem.PYPI: ("python3", "python", "py3", "py", "lib", "cli", "dev", "sdk"),
    Ecosystem.NPM: ("node", "js", "lib", "cli", "dev", "sdk"),
    Ecosystem.MAVEN: (),
}
# Slips of the finger that keep every consonant in place, looked up by key at any
# rank of the protected lists: doubled or undoubled letters (``pupeter`` for
# ``puppeteer``, ``mongose``), from _SLIP_MIN letters once doubles are undone; up
# to _VOWELS_MAX single vowels dropped (``solidity-covrage``, ``gnache-cli``), from
# _VOWEL_KEY letters in the name's consonant key; a plural ``s`` added to or dropped
# from its words (``webpacks-dev-servers``), of the _PLURAL_RANK most installed.
_SLIP_MIN = 6
_VOWEL_KEY = 6
_VOWELS_MAX = 2
_PLURAL_RANK = 5_000
# Doubled or undoubled letters in one word of a longer name, imitating one of the
# _WORD_SLIP_RANK most installed one-word names.
_WORD_SLIP_RANK = 3_000
_DIGITS = re.compile(r"[0-9]")
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
    found = confusables.is_confusable(ch, preferred_aliases=["latin"], greedy=True)
    if found:
        for item in found[0]["homoglyphs"]:
            if item["c"].isascii():
                return item["c"].lower()
    return ch


# The ASCII characters _SEPARATORS matches, for bytes.translate to delete (several
# times as fast as the pattern, on every name checked).
_ASCII_SEPARATORS = bytes(c for c in range(128) if _SEPARATORS.fullmatch(chr(c)))
_TO_DASH = bytes.maketrans(_ASCII_SEPARATORS, b"-" * len(_ASCII_SEPARATORS))


def skeleton(ecosystem: Ecosystem, name: str) -> str:
    """The form look-alikes share: ``Req_uests`` and ``requests`` have one skeleton."""
    if name.isascii():  # NFKC and folding leave ASCII as it is
        return name.lower().encode().translate(None, _ASCII_SEPARATORS).decode()
    text = unicodedata.normalize("NFKC", name).lower()
    text = "".join(_fold_char(ch) for ch in text)
    return _SEPARATORS.sub("", text)


_ONE_LOOK = str.maketrans({"l": "i", "1": "i", "0": "o"})
_ONE_LOOK_ASCII = bytes.maketrans(b"l10", b"iio")


def _fold_pairs(skel: str) -> str:
    # Letters and pairs that read alike in many fonts (capital I and l lower-cased apart).
    pairs = skel.replace("rn", "m").replace("vv", "w").replace("cl", "d")
    if pairs.isascii():  # bytes.translate: several times as fast as str's
        return pairs.encode().translate(_ONE_LOOK_ASCII).decode()
    return pairs.translate(_ONE_LOOK)


def _technique(candidate: str, target: str) -> str:
    if len(candidate) == len(target) and sorted(candidate) == sorted(target):
        return "swapped letters"
    longer, shorter = (candidate, target) if len(candidate) > len(target) else (target, candidate)
    if len(longer) == len(shorter) + 1:
        for i in range(len(longer)):
            if longer[:i] + longer[i + 1:] == shorter:
                repeated = (i > 0 and longer[i - 1] == longer[i]) or (
                    i + 1 < len(longer) and longer[i + 1] == longer[i])
                if repeated:
                    return "repeated letter" if longer is candidate else "dropped repeated letter"
                return "added letter" if longer is candidate else "dropped letter"
    distance = DamerauLevenshtein.distance(candidate, target)
    return "one edit" if distance == 1 else f"{distance} edits"


@dataclass(frozen=True, slots=True)
class Match:
    """A protected name a candidate imitates, and how."""

    target: str
    technique: str


class _Slipped:
    """A candidate name in the forms the slip checks compare (its words on demand)."""

    __slots__ = ("_singular", "_words", "norm", "once", "plain", "skel")

    def __init__(self, norm: str, skel: str, once: str) -> None:
        self.norm, self.skel, self.once = norm, skel, once
        self.plain = norm.isascii()
        self._words: str | None = None
        self._singular: str | None = None

    @property
    def singular(self) -> str:
        """Its words without a plural s."""
        if self._singular is None:
            self._singular = _singular(self.norm)
        return self._singular

    @property
    def words(self) -> str:
        """Its words, doubled letters undone in each, joined."""
        if self._words is None:
            self._words = _words(self.norm, undouble=True)[0] if self.plain else self.once
        return self._words


class NameIndex:
    """Protected names of one ecosystem, ranked (earlier is more protected)."""

    def __init__(self, ecosystem: Ecosystem, names: Iterable[str], *,
                 first: Iterable[str] = (), groups: bool = True) -> None:
        """``names`` ranked, most installed first; ``first`` (the organisation's own
        and the policy's) ranked above them all without moving their ranks."""
        self.ecosystem = ecosystem
        self.names: dict[str, int] = {}  # normalised name -> rank
        self._skeletons: dict[str, str] = {}  # skeleton -> best-ranked name
        # skeleton with rn->m etc. -> best-ranked name, where that differs from the
        # skeleton (elsewhere the skeleton's own entry stands for it)
        self._folded: dict[str, str] = {}
        # one-deletion variant -> skeleton(s); a str while unique, saving memory
        self._deletes: dict[str, str | tuple[str, ...]] = {}
        self._cores: dict[str, str] = {}  # skeleton without its language marker -> name
        self._digitless: dict[str, str] = {}  # skeleton without version digits -> name
        # (candidate length, first letter) -> skeletons of the most installed within two
        # edits' length of it that start with that letter (typists rarely miss the first)
        self._top: dict[tuple[int, str], list[str]] = {}
        self._top_names: dict[str, str] = {}  # those skeletons -> name
        # skeleton of a most installed name without an affix -> (name, affix)
        self._stripped: dict[str, tuple[str, str]] = {}
        # the first letter and later consonants but s, doubled letters undone -> names
        # (a str while unique): what a doubled letter, a dropped vowel or a plural s
        # leaves unchanged
        self._slips: dict[str, str | tuple[str, ...]] = {}
        # every word of a popular name: a word misspelt in a longer name is one no
        # popular name uses
        self._vocabulary: set[str] = set()
        # skeletons of names too far down for edits, by what swapping two of their
        # letters leaves as it is
        self._swaps: dict[tuple[int, str, int, int], str | tuple[str, ...]] = {}
        # the _WORD_SLIP_RANK most installed one-word names, doubles written once
        self._word_slips: dict[str, str] = {}
        ranked = itertools.chain(((0, n) for n in first), enumerate(names))
        for rank, raw in ranked:
            name = normalize(ecosystem, raw)
            if not name or name in self.names:
                continue
            self.names[name] = rank
            if rank < POPULAR_RANK:
                self._vocabulary.update(_SEPARATORS.split(name))
            skel = skeleton(ecosystem, name)
            if rank < _VARIANT_MAX_RANK:
                self._add_variants(name, skel)
            folded = _fold_pairs(skel)
            if folded != skel:
                self._folded.setdefault(folded, name)
            if skel not in self._skeletons:
                self._skeletons[skel] = name
                if ecosystem is not Ecosystem.MAVEN:
                    self._add_slip(name, skel)
                    self._add_top(name, skel, rank)
                    if rank < _WORD_SLIP_RANK and skel == name \
                            and len(once := _undouble(skel)) >= _SLIP_MIN:
                        self._word_slips.setdefault(once, name)
                if rank < _DROPPED_RANK:
                    for affix in _DROPPABLE[ecosystem]:
                        for rest in (skel.removeprefix(affix), skel.removesuffix(affix)):
                            if rest != skel and len(rest) >= _DROPPED_MIN:
                                self._stripped.setdefault(rest, (name, affix))
                if ecosystem is not Ecosystem.MAVEN and skel.isascii() and (
                        (rank >= _EDIT_MAX_RANK[ecosystem] and len(skel) >= _SWAP_MIN)
                        or (_SWAP_MIN <= len(skel) < _SHORT_EDIT_LEN
                            and rank >= _SHORT_EDIT_RANK)):
                    key = _swap_key(skel)
                    held = self._swaps.get(key)
                    self._swaps[key] = skel if held is None else (
                        (held, skel) if isinstance(held, str) else (*held, skel))
                if rank >= _EDIT_MAX_RANK[ecosystem] or len(skel) < _MIN_FUZZY or (
                        len(skel) < _SHORT_EDIT_LEN and rank >= _SHORT_EDIT_RANK):
                    continue  # too short, or too far down, for an edit alone to imitate it
                for variant in _deletions(skel):
                    held = self._deletes.get(variant)
                    if held is None:
                        self._deletes[variant] = skel
                    elif isinstance(held, str):
                        self._deletes[variant] = (held, skel)
                    else:
                        self._deletes[variant] = (*held, skel)

        # The same variants in a set, to find which of a name's are there. A set keeps
        # its keys and hashes in one table probed in line; a dict this large costs
        # several cache misses for each key it lacks, and most names share none. About
        # 25 MB for the shipped lists, for a tenth of the time of a first sight.
        self._variants = frozenset(self._deletes)

        # Maven: the groupIds of the protected coordinates, for a look-alike groupId
        # with any artifact in it.
        self._groups: NameIndex | None = None
        # Maven: a protected coordinate by its artifactId, where no other protected
        # coordinate shares it (``jackson-bom`` has two owners, ``scribejava-core`` one).
        self._artifacts: dict[str, str] = {}
        if ecosystem is Ecosystem.MAVEN and groups:
            owned = dict.fromkeys(n.partition(":")[0] for n in self.names if ":" in n)
            self._groups = NameIndex(ecosystem, owned, groups=False)
            shared: set[str] = set()
            for coordinate in self.names:
                artifact = coordinate.partition(":")[2]
                if len(artifact) < _MIN_FUZZY or artifact in shared:
                    continue
                if artifact in self._artifacts:
                    shared.add(artifact)
                    del self._artifacts[artifact]
                else:
                    self._artifacts[artifact] = coordinate

    def _add_top(self, name: str, skel: str, rank: int) -> None:
        bare = skel.rstrip("0123456789")  # beautifulsoup4 is squatted as "BeautifulSoup"
        for form in dict.fromkeys((skel, bare)):
            if rank < _TOP_RANK or (rank < _TOP_LONG_RANK and len(form) >= _TOP_LONG):
                self._top_names.setdefault(form, name)
                # filed under every candidate length two edits may reach
                for length in range(len(form) - 2, len(form) + 3):
                    self._top.setdefault((length, form[:1]), []).append(form)

    def _add_slip(self, name: str, skel: str) -> None:
        key = _slip_key(skel)
        if not key:
            return
        held = self._slips.get(key)
        self._slips[key] = name if held is None else (
            (held, name) if isinstance(held, str) else (*held, name))

    def _add_variants(self, name: str, skel: str) -> None:
        for core in _cores(skel, _MARKERS[self.ecosystem]):
            self._cores.setdefault(core, name)
        digitless = skel.rstrip("0123456789")
        if digitless != skel and len(digitless) >= _MIN_CORE:
            self._digitless.setdefault(digitless, name)

    def __contains__(self, name: str) -> bool:
        return normalize(self.ecosystem, name) in self.names

    def lookalike(self, name: str, *, normalized: bool = False) -> Match | None:
        """The protected name ``name`` imitates, if any (never itself). A protected name
        below the POPULAR_RANK most installed is itself checked against those above:
        bots keep some copies fetched often (``loadsh``)."""
        norm = name if normalized else normalize(self.ecosystem, name)
        rank = self.names.get(norm)
        if rank is not None and rank < POPULAR_RANK:
            return None
        match = self._lookalike(norm)
        if rank is not None and match is not None and (
                match.target == norm or self.names[match.target] >= POPULAR_RANK):
            return None
        if self.ecosystem is Ecosystem.NPM:
            if match is not None and norm.startswith("@") \
                    and match.target.startswith(norm.partition("/")[0] + "/"):
                return None  # a scope is one owner's, as a Maven namespace is
            return match
        if self.ecosystem is not Ecosystem.MAVEN:
            return match
        group = norm.partition(":")[0]
        if match is not None and _maven_owner(group) == _maven_owner(match.target):
            return None  # one verified namespace has one owner, who does not squat itself
        if match is None and self._groups is not None and group not in self._groups.names:
            found = self._groups._lookalike(group)
            if found is not None and _maven_owner(group) != _maven_owner(found.target):
                return Match(found.target, f"groupId look-alike: {found.technique}")
        if match is None and _personal(group):
            # Anyone can publish under io.github.<user>: a popular artifactId there,
            # not its owner's, is a copy passing for the original (MAL-2025-2552).
            target = self._artifacts.get(norm.partition(":")[2])
            if target is not None and _maven_owner(group) != _maven_owner(target):
                return Match(target, "its artifactId under a personal namespace")
        return match

    def _lookalike(self, norm: str) -> Match | None:
        skel = skeleton(self.ecosystem, norm)
        exact = self._skeletons.get(skel)
        if exact is not None and exact != norm:
            technique = self._exact_technique(norm, exact)
            limit = {"separator variant": _SEPARATOR_MAX_RANK,
                     "scope confusion": _SCOPE_MAX_RANK}.get(technique)
            if limit is None or self.names[exact] < limit:
                return Match(exact, technique)
        folded = self._look_alike_pairs(skel) if len(skel) >= _MIN_FUZZY else None
        if folded is not None and folded not in (norm, exact):
            return Match(folded, "confusable characters")
        return self._affix(skel) or self._variant(skel) or self._fuzzy(skel, norm) \
            or self._combo(norm) or self._dropped(skel) or self._slip(norm, skel) \
            or self._slipped_word(norm) or self._swapped(skel)

    def _swapped(self, skel: str) -> Match | None:
        """Two neighbouring letters swapped, not the first, in a name of _SWAP_MIN
        letters or more listed beyond the reach of edits (``etherscna-api``,
        ``xgplayre``, ``pytroch``), looked up by what a swap leaves as it is
        (``_swap_key``)."""
        if len(skel) < _SWAP_MIN or not self._swaps or not skel.isascii():
            return None
        held = self._swaps.get(_swap_key(skel))
        if held is None:
            return None
        for theirs in (held,) if isinstance(held, str) else held:
            # the key holds the length: ``_slip`` tests a swap of neighbours here
            if theirs != skel and _slip(skel, theirs) \
                    and _DIGITS.sub("", theirs) != _DIGITS.sub("", skel):
                return Match(self._skeletons[theirs], "swapped letters")
        return None

    def _slipped_word(self, norm: str) -> Match | None:
        """A word of a longer name with a letter doubled or undoubled from one of the
        _WORD_SLIP_RANK most installed one-word names (``pupeteer-har``), where no
        popular name uses that word (``regexp`` is not ``regexpp``)."""
        if not self._word_slips or not norm.isascii() or not (
                "-" in norm or "." in norm or "_" in norm):
            return None  # one word (npm's scope is its owner's, not a word of it)
        bare = norm.partition("/")[2] if norm[0] == "@" else norm
        for word in bare.replace(".", "-").replace("_", "-").split("-"):  # str's: fast
            if len(word) < _SLIP_MIN or word in self._vocabulary:
                continue
            target = self._word_slips.get(_undouble(word))
            if target is not None and target != word:
                technique = "repeated letters" if len(word) > len(target) else \
                    "dropped repeated letters" if len(word) < len(target) else \
                    "moved repeated letters"
                return Match(target, f"{technique} in a word")
        return None

    def _look_alike_pairs(self, skel: str) -> str | None:
        """The best-ranked name whose skeleton, with look-alike pairs folded (rn -> m),
        is ``skel``'s so folded."""
        folded = _fold_pairs(skel)
        pair, plain = self._folded.get(folded), self._skeletons.get(folded)
        if pair is None or plain is None:
            return pair or plain
        return min(pair, plain, key=self.names.__getitem__)

    def _slip(self, norm: str, skel: str) -> Match | None:
        """Doubled letters, dropped vowels or a plural s, at any rank."""
        if self.ecosystem is Ecosystem.MAVEN or len(skel) < _SLIP_MIN:
            return None
        held = self._slips.get(_slip_key(skel))
        if held is None or held == norm:
            return None  # no name, or only itself (a listed name below the popular ones)
        once = _undouble(skel)
        if len(once) < _SLIP_MIN:
            return None
        mine = _Slipped(norm, skel, once)
        found = []
        for target in (held,) if isinstance(held, str) else held:
            if target == norm:
                continue  # a listed name below the popular ones: its own key
            technique = self._slip_technique(mine, target)
            if technique is not None:
                found.append((self.names[target], target, technique))
        if not found:
            return None
        _, target, technique = min(found)
        return Match(target, technique)

    def _slip_technique(self, mine: _Slipped, target: str) -> str | None:
        theirs, once, consonants, raw_consonants = _slip_forms(self.ecosystem, target)
        if theirs == mine.skel:
            return None
        # cheap tests first: a short key is shared by a dozen names, and the full
        # test splits both names into words
        if once == mine.once and (not (mine.plain and target.isascii())
                                  or _words(target, undouble=True)[0] == mine.words):
            if len(mine.skel) > len(theirs):
                return "repeated letters"
            if len(mine.skel) < len(theirs):
                return "dropped repeated letters"
            return "moved repeated letters"
        if len(consonants) >= _VOWEL_KEY and mine.plain and target.isascii() and (
                consonants == _consonants(mine.words)
                or raw_consonants == _consonants(mine.skel)) and (
                _dropped_vowels(mine.words, *_words(target, undouble=True))
                # a vowel dropped between two of a letter: ``paralll`` for ``parallel``
                or _dropped_vowels(mine.skel, *_words(target, undouble=False))):
            return "dropped vowels"
        if self.names[target] < _PLURAL_RANK and mine.singular == _singular(target):
            return "plural"
        return None

    def _dropped(self, skel: str) -> Match | None:
        """A most installed name without its affix: ``yaml`` for ``pyyaml``."""
        found = self._stripped.get(skel)
        return None if found is None else Match(found[0], f"dropped affix {found[1]!r}")

    def _exact_technique(self, norm: str, target: str) -> str:
        if self.ecosystem is Ecosystem.NPM and ("/" in norm) != ("/" in target):
            return "scope confusion"
        plain = _SEPARATORS.sub("", norm)
        if not norm.isascii():
            return "confusable characters"
        if plain != _SEPARATORS.sub("", target):
            return "confusable characters"
        return "separator variant"

    def _affix(self, skel: str) -> Match | None:
        if not skel:
            return None
        for affix, max_rank in _AFFIX_HEADS[self.ecosystem].get(skel[0], ()):
            if skel.startswith(affix):
                target = self._skeletons.get(skel[len(affix):])
                if target is not None and self.names[target] < max_rank \
                        and len(skel) - len(affix) >= 2:
                    return Match(target, f"added affix {affix!r}")
        for affix, max_rank in _AFFIX_TAILS[self.ecosystem].get(skel[-1], ()):
            if skel.endswith(affix):
                target = self._skeletons.get(skel[:-len(affix)])
                if target is not None and self.names[target] < max_rank \
                        and len(skel) - len(affix) >= 2:
                    return Match(target, f"added affix {affix!r}")
        return None

    def _variant(self, skel: str) -> Match | None:
        """A language marker moved or changed on the same core; a version digit dropped."""
        found = [t for core in _cores(skel, _MARKERS[self.ecosystem])
                 if (t := self._cores.get(core)) is not None]
        if found:
            return Match(min(found, key=self.names.__getitem__), "changed affix")
        target = self._digitless.get(skel)
        if target is not None:
            return Match(target, "dropped version digit")
        return None

    def _fuzzy(self, skel: str, norm: str) -> Match | None:
        size = len(skel)
        if size < _MIN_FUZZY:
            return None
        scoped = "/" in norm
        best: tuple[int, int, str] | None = None
        for variant in self._variants & _deletions(skel):
            held = self._deletes[variant]
            for candidate in (held,) if isinstance(held, str) else held:
                if candidate == skel:
                    continue  # the same skeleton: the exact check's, with its limits
                length = len(candidate)
                shorter = length if length < size else size
                target = self._skeletons[candidate]
                rank = self.names[target]
                if shorter < _SHORT_EDIT_LEN and rank >= _SHORT_EDIT_RANK:
                    continue
                edge = rank >= _EDGE_RANK
                if edge and (candidate[0] != skel[0]
                             or (length != size and candidate[-1] != skel[-1])
                             # a scope of one's own and an edit: scope confusion, which
                             # counts only for the _SCOPE_MAX_RANK most installed
                             or (scoped and "/" not in target)):
                    continue  # see _EDGE_RANK
                allowed = 1 if edge or shorter < _TWO_EDITS else 2
                distance = DamerauLevenshtein.distance(skel, candidate, score_cutoff=allowed)
                if distance > allowed:
                    continue
                if shorter < _ANY_EDIT and not _slip(skel, candidate) \
                        and not (rank < _SHORT_SLIP_RANK and _near_key(skel, candidate)):
                    continue
                if edge and length == size and rank >= _SUBSTITUTE_RANK \
                        and not (_slip(skel, candidate) or _near_key(skel, candidate)):
                    continue
                if edge and length != size and _DIGITS.sub("", skel) == _DIGITS.sub("", candidate):
                    continue  # a version digit added or dropped: vue3-spinner, angular-flatpickr
                key = (distance, rank, target)
                if best is None or key < best:
                    best = key
        if best is None:
            return self._near_top(skel)
        target = best[2]
        return Match(target, _technique(skel, skeleton(self.ecosystem, target)))

    def _near_top(self, skel: str) -> Match | None:
        """Any one edit (from five letters) or two (from eight) of one of the fifty most
        installed names; from ten letters, two edits of the 200 most installed too."""
        if len(skel) < _TOP_ONE:
            return None
        window = self._top.get((len(skel), skel[:1]))
        if not window:
            return None
        # Levenshtein (a swap counts two) keeps this one pass of bit-parallel
        # comparisons; swaps of these names are found by the edit index already.
        found = process.extractOne(skel, window, scorer=Levenshtein.distance,
                                   score_cutoff=2)
        if found is None:
            return None
        candidate, distance = found[0], found[1]
        if distance > 1 and min(len(candidate), len(skel)) < _TOP_TWO:
            return None
        target = self._top_names[candidate]
        if distance > 1 and self.names[target] >= _TOP_RANK \
                and min(len(candidate), len(skel)) < _TOP_LONG:
            return None
        return Match(target, _technique(skel, skeleton(self.ecosystem, target)))

    def _named(self, skel: str) -> str | None:
        """The best-ranked name ``skel`` spells, with or without its version digit."""
        bare = self._digitless.get(skel) if len(skel) >= _TOP_LONG else None  # not json5
        found = [n for n in (self._skeletons.get(skel), bare) if n]
        return min(found, key=self.names.__getitem__, default=None)

    def _combo(self, norm: str) -> Match | None:
        """Two of the most installed names joined by a separator: ``matplotlib-requests``."""
        if self.ecosystem is not Ecosystem.PYPI or "-" not in norm or not norm.isascii():
            return None
        parts = norm.split("-")  # a normalised PyPI name: lower case, one separator
        for i in range(1, len(parts)):
            left, right = "".join(parts[:i]), "".join(parts[i:])
            if min(len(left), len(right)) < _COMBO_PART:
                continue
            first, second = self._named(left), self._named(right)
            if first is None or second is None:
                continue
            if max(self.names[first], self.names[second]) < _COMBO_RANK:
                if self.names[second] < self.names[first]:
                    first, second = second, first
                return Match(first, f"joins {first!r} and {second!r}")
        return None


# Each byte to its square (mod 251), to sum a name's letters a second way, not in
# step with the first, that a swap leaves as it is.
_SCRAMBLE = bytes(i * i % 251 for i in range(256))


def _swap_key(skel: str) -> tuple[int, str, int, int]:
    """Length, first letter and two sums of the letters of an ASCII ``skel``: the same
    for every order of the letters after the first, and rarely for other names."""
    raw = skel.encode()
    return len(raw), skel[0], sum(raw), sum(raw.translate(_SCRAMBLE))


@lru_cache(maxsize=16384)  # the protected names a slip key holds, when it matches
def _slip_forms(ecosystem: Ecosystem, name: str) -> tuple[str, str, str, str]:
    """A protected name's skeleton, that with doubles undone, and the consonants of its
    words with doubles undone in each and of its skeleton (vowels are all a dropped
    vowel changes)."""
    skel = skeleton(ecosystem, name)
    words = _words(name, undouble=True)[0] if name.isascii() else _undouble(skel)
    return skel, _undouble(skel), _consonants(words), _consonants(skel)


def _undouble(skel: str) -> str:
    """``skel`` with every doubled letter written once: ``puppeteer`` -> ``pupeter``."""
    # a callable replacement: a template is expanded anew for every match
    return _RUNS.sub(_FIRST, skel) if _DOUBLE.search(skel) else skel


def _consonants(undoubled: str) -> str:
    """The first letter and every later consonant: ``solidity`` -> ``sldty``."""
    rest = undoubled[1:]
    if rest.isascii():  # as in _slip_key: bytes.translate is the fast one
        return undoubled[:1] + rest.encode().translate(None, b"aeiou").decode()
    return undoubled[:1] + rest.translate(_NO_VOWELS)


def _slip_key(skel: str) -> str:
    """The first letter and the later consonants but s, doubles written once: what a
    doubled letter, a dropped vowel or a plural s leaves as it is."""
    rest = skel[1:]
    if rest.isascii():  # bytes.translate deletes about three times as fast as str's
        return _undouble(skel[:1] + rest.encode().translate(None, b"aeious").decode())
    return _undouble(skel[:1] + rest.translate(_NO_VOWELS_OR_S))


@lru_cache(maxsize=16384)  # called with the protected names a key holds
def _singular(norm: str) -> str:
    """The words of ``norm`` without a trailing s (``webpacks-dev-servers`` ->
    ``webpack-dev-server``)."""
    return "-".join(w.removesuffix("s") for w in _SEPARATORS.split(norm) if w)


@lru_cache(maxsize=16384)  # protected names recur: a key is shared by a few
def _words(norm: str, *, undouble: bool) -> tuple[str, frozenset[int]]:
    """``norm``'s words joined (doubled letters undone in each, if ``undouble``), and
    where each starts."""
    lowered = norm.lower()
    if lowered.isascii():  # one C pass instead of the pattern's split
        parts = lowered.encode().translate(_TO_DASH).decode().split("-")
    else:
        parts = _SEPARATORS.split(lowered)
    if undouble and _DOUBLE.search(lowered):
        # word by word: a letter doubled across a separator is two words'
        # (``check-kit`` is not ``checkit``, ``cc-changelog`` not ``changelog``)
        parts = [_undouble(word) for word in parts]
    out = ""
    starts = set()
    for plain in parts:
        if plain:
            starts.add(len(out))
            out += plain
    return out, frozenset(starts)


def _dropped_vowels(short: str, full: str, starts: frozenset[int]) -> bool:
    """True when ``short`` is ``full`` with one or two single vowels dropped from
    inside its words (``covrage``), none starting a word and no two side by side:
    ``react-native-path`` is not ``react-native-app-auth``, nor ``swagger-express``
    ``swagger-ui-express``."""
    dropped = len(full) - len(short)
    if not 1 <= dropped <= _VOWELS_MAX:
        return False
    # A dropped letter lies after the part both share at the start and before the
    # part they share at the end; every place there is tried (``unicod-emoji`` drops
    # the e of ``unicode``, not the one that starts ``emoji``).
    head = _shared(short, full)
    tail = _shared(short[::-1], full[::-1])
    last = min(head, len(full) - 1)
    if dropped == 1:
        first = max(0, len(full) - 1 - tail)
        return any(full[i] in "aeiou" and i not in starts for i in range(first, last + 1))
    heads = [i for i in range(last + 1) if full[i] in "aeiou" and i not in starts]
    tails = [k for k in range(len(full) - 1 - tail, len(full))
             if full[k] in "aeiou" and k not in starts]
    return any(k > i + 1 and full[i + 1:k] == short[i:k - 1] for i in heads for k in tails)


def _shared(a: str, b: str) -> int:
    """How many letters ``a`` and ``b`` share at the start."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _slip(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` differ by swapped neighbours or a doubled letter."""
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] \
            and a[diff[1]] == b[diff[0]]
    longer, shorter = (a, b) if len(a) > len(b) else (b, a)
    if len(longer) != len(shorter) + 1:
        return False
    for i in range(len(longer)):
        if longer[:i] + longer[i + 1:] == shorter:
            return (i > 0 and longer[i - 1] == longer[i]) or (
                i + 1 < len(longer) and longer[i + 1] == longer[i])
    return False


# Hosts on which each account is a namespace of its own (io.github.<user>).
_SHARED_HOSTS = frozenset({"io.github", "com.github", "io.gitlab", "com.gitlab",
                           "io.bitbucket", "org.bitbucket", "com.bitbucket"})


def _personal(group: str) -> bool:
    """True for a groupId on a shared host, where any account gets a namespace."""
    return ".".join(group.split(".")[:2]) in _SHARED_HOSTS


def _maven_owner(name: str) -> str:
    """The namespace Maven Central verifies for a groupId (or coordinate): its domain."""
    parts = name.partition(":")[0].split(".")
    width = 3 if ".".join(parts[:2]) in _SHARED_HOSTS else 2
    return ".".join(parts[:width])


def _near_key(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` differ in one letter: a neighbouring key or another vowel."""
    if len(a) != len(b):
        return False
    diff = [(x, y) for x, y in zip(a, b, strict=True) if x != y]
    if len(diff) != 1:
        return False
    x, y = diff[0]
    return y in _NEIGHBOURS.get(x, ()) or (x in _VOWELS and y in _VOWELS)


def _cores(skel: str, affixes: tuple[str, ...]) -> tuple[str, ...]:
    """``skel`` without one of ``affixes`` at either end (long enough to stand alone),
    in the order of ``affixes``: the same answer in every process."""
    if not (skel.startswith(affixes) or skel.endswith(affixes)):
        return ()  # most names carry none: one test at each end, in C
    found: dict[str, None] = {}
    for affix in affixes:
        for rest in (skel.removeprefix(affix), skel.removesuffix(affix)):
            if rest != skel and len(rest) >= _MIN_CORE:
                found[rest] = None
    return tuple(found)


def _deletions(word: str) -> set[str]:
    """``word`` and every string made by deleting one character.

    One deletion on each side finds every pair one edit apart (a transposition
    included) and the two-edit pairs that share a deletion (a substitution plus
    an insertion elsewhere, say); pairs two substitutions apart are not found.
    """
    found = {word[:i] + word[i + 1:] for i in range(len(word))}
    found.add(word)
    return found


def load_index(ecosystem: Ecosystem, names: Sequence[str]) -> NameIndex:
    """An index over ``names`` (ranked, most protected first)."""
    return NameIndex(ecosystem, names)
