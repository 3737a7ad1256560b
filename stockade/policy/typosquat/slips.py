"""Look-alikes by slips that keep every consonant in place, at any rank.

Owns the slip look-ups: doubled or undoubled letters (``pupeter`` for ``puppeteer``),
one or two vowels dropped (``solidity-covrage``), and, of the 5,000 most installed, a
plural ``s`` added to or dropped from a word (``webpacks-dev-servers``), looked up by
one key (the first letter and the later consonants, doubles written once) against
every protected name whatever its rank; and a doubled or undoubled letter in one word
of a longer name (``pupeteer-har``). Real names rarely differ from a popular one this
way alone, where a changed consonant often makes another word. Maven takes none of
them: its coordinates share a few groupId prefixes. Pure; the ranks are the owning
``NameIndex``'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Set

from stockade.policy.model import Ecosystem
from stockade.policy.typosquat.compare import Match, dropped_vowels
from stockade.policy.typosquat.forms import (
    SEPARATORS,
    collapse_doubles,
    consonants,
    singular,
    slip_forms,
    slip_key,
    words,
)
from stockade.policy.typosquat.limits import (
    PLURAL_RANK,
    POPULAR_RANK,
    SLIP_MIN,
    VOWEL_KEY,
    WORD_SLIP_RANK,
)
from stockade.policy.typosquat.packed import Names


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
            self._singular = singular(self.norm)
        return self._singular

    @property
    def words(self) -> str:
        """Its words, doubled letters undone in each, joined."""
        if self._words is None:
            self._words = words(self.norm, undouble=True)[0] if self.plain else self.once
        return self._words


class SlipIndex:
    """The protected names of one ecosystem by what a slip leaves as it is."""

    def __init__(self, ecosystem: Ecosystem, names: Mapping[str, int]) -> None:
        """``names`` (normalised name -> rank) is the owning index's, filled as it adds
        names."""
        self._ecosystem = ecosystem
        self._names = names
        # the first letter and later consonants but s, doubled letters undone -> names
        # (a str while unique): what a doubled letter, a dropped vowel or a plural s
        # leaves unchanged
        self._slips: dict[str, str | tuple[str, ...]] | Names = {}
        # every word of a popular name: a word misspelt in a longer name is one no
        # popular name uses
        self._vocabulary: set[str] = set()
        # the WORD_SLIP_RANK most installed one-word names, doubles written once
        self._word_slips: dict[str, str] = {}
        # a layered index (``over``): the shipped lists' slips, and the names of theirs
        # whose skeleton the policy's own names hold (filed here, not there)
        self._base: SlipIndex | None = None
        self._hidden: Set[str] = frozenset()

    def over(self, base: SlipIndex, names: Mapping[str, int], hidden: Set[str],
             skeletons: Mapping[str, str]) -> SlipIndex:
        """These (the policy's own names, all ranked first) looked up before ``base``,
        with the layered ``names``; ``hidden``: names of ``base`` whose skeleton these
        hold; ``skeletons``: ``base``'s, skeleton -> the name holding it."""
        layered = SlipIndex(self._ecosystem, names)
        layered._base, layered._hidden = base, hidden
        # a hidden name is filed under its skeleton's key, which these hold too: the
        # keys of theirs merged with the base's, the rest read from the base
        layered._slips = {key: layered._merged(held, base._slips.get(key))
                          for key, held in self._slips.items()}
        layered._vocabulary = self._vocabulary | base._vocabulary \
            if self._vocabulary else base._vocabulary
        word_slips = dict(self._word_slips)
        for once, name in base._word_slips.items():
            if once not in word_slips and name not in hidden:
                word_slips[once] = name
        if any(name in hidden for name in base._word_slips.values()):
            # the next of the shipped names filed under a hidden one's key, as a build
            # of all the names together files it
            for name, rank in base._names.items():
                if rank >= WORD_SLIP_RANK:
                    break
                # filed where it holds a skeleton that is its own name
                if name not in hidden and skeletons.get(name) == name \
                        and len(once := collapse_doubles(name)) >= SLIP_MIN:
                    word_slips.setdefault(once, name)
        layered._word_slips = word_slips
        return layered

    def add_words(self, name: str, rank: int) -> None:
        """Learn the words of a protected name, if it is a popular one."""
        if rank < POPULAR_RANK:
            self._vocabulary.update(SEPARATORS.split(name))

    def add(self, name: str, skel: str, rank: int) -> None:
        """File a protected name under its first skeleton."""
        if self._ecosystem is Ecosystem.MAVEN:
            return
        key = slip_key(skel)
        if key:
            slips = self._slips
            if isinstance(slips, Names):
                raise TypeError("a sealed index takes no more names")
            held = slips.get(key)
            slips[key] = name if held is None else (
                (held, name) if isinstance(held, str) else (*held, name))
        if rank < WORD_SLIP_RANK and skel == name \
                and len(once := collapse_doubles(skel)) >= SLIP_MIN:
            self._word_slips.setdefault(once, name)

    def seal(self, names: Mapping[str, int]) -> None:
        """Pack the slips once every name is added, and read the owner's packed
        ``names``."""
        self._names = names
        self._slips = Names(Names.pack(self._slips.items()))

    def slip(self, norm: str, skel: str) -> Match | None:
        """Doubled letters, dropped vowels or a plural s, at any rank."""
        if self._ecosystem is Ecosystem.MAVEN or len(skel) < SLIP_MIN:
            return None
        key = slip_key(skel)
        held = self._slips.get(key)
        if held is None and self._base is not None:
            held = self._base._slips.get(key)
        if held is None or held == norm:
            return None  # no name, or only itself (a listed name below the popular ones)
        once = collapse_doubles(skel)
        if len(once) < SLIP_MIN:
            return None
        mine = _Slipped(norm, skel, once)
        found = []
        for target in (held,) if isinstance(held, str) else held:
            if target == norm:
                continue  # a listed name below the popular ones: its own key
            technique = self._technique(mine, target)
            if technique is not None:
                found.append((self._names[target], target, technique))
        if not found:
            return None
        _, target, technique = min(found)
        return Match(target, technique)

    def _merged(self, own: str | tuple[str, ...] | None,
                base: str | tuple[str, ...] | None) -> tuple[str, ...]:
        """The names a key holds here and in the base, but the hidden ones."""
        return (*((own,) if isinstance(own, str) else own or ()),
                *(n for n in ((base,) if isinstance(base, str) else base or ())
                  if n not in self._hidden))

    def _technique(self, mine: _Slipped, target: str) -> str | None:
        theirs, once, target_consonants, raw_consonants = slip_forms(self._ecosystem, target)
        if theirs == mine.skel:
            return None
        # cheap tests first: a short key is shared by a dozen names, and the full
        # test splits both names into words
        if once == mine.once and (not (mine.plain and target.isascii())
                                  or words(target, undouble=True)[0] == mine.words):
            if len(mine.skel) > len(theirs):
                return "repeated letters"
            if len(mine.skel) < len(theirs):
                return "dropped repeated letters"
            return "moved repeated letters"
        if len(target_consonants) >= VOWEL_KEY and mine.plain and target.isascii() and (
                target_consonants == consonants(mine.words)
                or raw_consonants == consonants(mine.skel)) and (
                dropped_vowels(mine.words, *words(target, undouble=True))
                # a vowel dropped between two of a letter: ``paralll`` for ``parallel``
                or dropped_vowels(mine.skel, *words(target, undouble=False))):
            return "dropped vowels"
        if self._names[target] < PLURAL_RANK and mine.singular == singular(target):
            return "plural"
        return None

    def slipped_word(self, norm: str) -> Match | None:
        """A word of a longer name with a letter doubled or undoubled from one of the
        WORD_SLIP_RANK most installed one-word names (``pupeteer-har``), where no
        popular name uses that word (``regexp`` is not ``regexpp``)."""
        if not self._word_slips or not norm.isascii() or not (
                "-" in norm or "." in norm or "_" in norm):
            return None  # one word (npm's scope is its owner's, not a word of it)
        bare = norm.partition("/")[2] if norm[0] == "@" else norm
        for word in bare.replace(".", "-").replace("_", "-").split("-"):  # str's: fast
            if len(word) < SLIP_MIN or word in self._vocabulary:
                continue
            target = self._word_slips.get(collapse_doubles(word))
            if target is not None and target != word:
                technique = "repeated letters" if len(word) > len(target) else \
                    "dropped repeated letters" if len(word) < len(target) else \
                    "moved repeated letters"
                return Match(target, f"{technique} in a word")
        return None
