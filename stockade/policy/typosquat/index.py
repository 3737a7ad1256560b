"""The index of protected names: which one a name imitates, and how.

Owns the protected names of one ecosystem, ranked, and the order of the checks: the
same skeleton (a separator variant, scope confusion, confusable characters), look-alike
pairs, an affix added (or, of the 500 most installed, dropped: ``yaml`` for
``pyyaml``), a language marker moved or changed, a version digit dropped, edits
(``edits``), two of the most installed PyPI names joined (``matplotlib-requests``),
slips (``slips``) and swaps. Maven gets its groupIds an index of their own (a
look-alike groupId is a squat whatever artifact it names), and a popular artifactId
under someone else's personal namespace (``io.github.<user>:scribejava-core``) is a
squat. Names under one owner's namespace (a verified Maven namespace such as
``org.apache`` or ``io.github.<user>``, an npm ``@scope``) are never squats of each
other. Pure; the corpus is passed in.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Set

from stockade.policy.model import Ecosystem
from stockade.policy.names import normalize
from stockade.policy.typosquat.compare import Match, maven_owner, personal
from stockade.policy.typosquat.edits import EditIndex
from stockade.policy.typosquat.forms import SEPARATORS, cores, fold_pairs, skeleton
from stockade.policy.typosquat.limits import (
    AFFIX_HEADS,
    AFFIX_TAILS,
    COMBO_PART,
    COMBO_RANK,
    DROPPABLE,
    DROPPED_MIN,
    DROPPED_RANK,
    MARKERS,
    MIN_CORE,
    MIN_FUZZY,
    POPULAR_RANK,
    SCOPE_MAX_RANK,
    SEPARATOR_MAX_RANK,
    TOP_LONG,
    VARIANT_MAX_RANK,
)
from stockade.policy.typosquat.packed import Layered, Ranks, Strings
from stockade.policy.typosquat.slips import SlipIndex


class NameIndex:
    """Protected names of one ecosystem, ranked (earlier is more protected)."""

    def __init__(self, ecosystem: Ecosystem, names: Iterable[str], *,
                 first: Iterable[str] = (), groups: bool = True) -> None:
        """``names`` ranked, most installed first; ``first`` (the organisation's own
        and the policy's) ranked above them all without moving their ranks."""
        self.ecosystem = ecosystem
        names_: dict[str, int] = {}  # normalised name -> rank
        skeletons: dict[str, str] = {}  # skeleton -> best-ranked name
        self.names: Mapping[str, int] = names_
        self._skeletons: Mapping[str, str] = skeletons
        # skeleton with rn->m etc. -> best-ranked name, where that differs from the
        # skeleton (elsewhere the skeleton's own entry stands for it)
        self._folded: Mapping[str, str] = {}
        self._cores: Mapping[str, str] = {}  # skeleton without its language marker -> name
        self._digitless: Mapping[str, str] = {}  # skeleton without version digits -> name
        # skeleton of a most installed name without an affix -> (name, affix)
        self._stripped: Mapping[str, tuple[str, str]] = {}
        self._edits = EditIndex(ecosystem, names_, skeletons)
        self._slips = SlipIndex(ecosystem, names_)
        # the last name ``lookalike`` compared, normalised, its skeleton and the name
        # holding that skeleton (None: none): the loose tier's quick search of the same
        # name reads them rather than making them again (one tuple: a thread reads all
        # of it or none; a reader checks the name is its own). An attribute, not a
        # property: a first sight with facts reads it each time.
        self.last: tuple[str, str, str | None] = ("", "", None)
        adding = _Adding(self, names_, skeletons)
        for rank, raw in itertools.chain(((0, n) for n in first), enumerate(names)):
            adding.add(normalize(ecosystem, raw), rank)
        # The parts ``_named`` finds one of the COMBO_RANK most installed for: most
        # names with a separator hold none, and a set tells that before ``_named`` runs.
        self._combo_parts: Set[str] = frozenset()
        if ecosystem is Ecosystem.PYPI:
            top = [k for k, n in self._skeletons.items() if self.names[n] < COMBO_RANK]
            top += [k for k, n in self._digitless.items()
                    if self.names[n] < COMBO_RANK and len(k) >= TOP_LONG]
            self._combo_parts = frozenset(top)
        # Maven: the groupIds of the protected coordinates, for a look-alike groupId
        # with any artifact in it.
        self._groups: NameIndex | None = None
        # Maven: a protected coordinate by its artifactId, where no other protected
        # coordinate shares it (``jackson-bom`` has two owners, ``scribejava-core`` one).
        self._artifacts: dict[str, str] = {}
        if ecosystem is Ecosystem.MAVEN and groups:
            self._add_owners()
        self._seal()

    def _seal(self) -> None:
        """The big tables packed (``packed``): a few bytes a name, where a dict of str
        costs about a hundred in every process; the parts read the packed ones."""
        self.names = Ranks(Ranks.pack(self.names.items()))
        self._skeletons = Strings(Strings.pack(self._skeletons.items()))
        self._folded = Strings(Strings.pack(self._folded.items()))
        self._edits.seal(self.names, self._skeletons)
        self._slips.seal(self.names)

    @classmethod
    def over(cls, base: NameIndex, first: Iterable[str]) -> NameIndex:
        """``NameIndex(base's ecosystem, base's names, first=first)``, deciding every
        name alike, without building ``base`` again: ``first`` (the policy's own names)
        in a small index of their own, looked up before ``base``. A name of ``base``
        whose skeleton one of ``first`` holds is hidden where only a skeleton's holder
        is filed (edits, slips, swaps), as it is when the two are built as one. Maven
        takes no layers (its groupIds are ranked among themselves): build it whole."""
        if base.ecosystem is Ecosystem.MAVEN:
            raise ValueError("Maven indexes are built whole")
        own = cls(base.ecosystem, (), first=first, groups=False)
        hidden = frozenset(s for s in own._skeletons if s in base._skeletons)
        index = cls.__new__(cls)
        index.ecosystem = base.ecosystem
        # Each table the policy's names first: the packed ones layered (a look-up in
        # them is a Python call either way), the small ones merged into plain dicts.
        index.names = Layered(own.names, base.names)
        index._skeletons = Layered(own._skeletons, base._skeletons)
        index._folded = Layered(own._folded, base._folded)
        index._cores = {**base._cores, **own._cores}
        index._digitless = {**base._digitless, **own._digitless}
        index._stripped = {**base._stripped, **own._stripped}
        index._combo_parts = base._combo_parts | own._combo_parts
        index._groups, index._artifacts = None, {}
        index.last = ("", "", None)
        index._edits = own._edits.over(base._edits, index.names, index._skeletons, hidden)
        index._slips = own._slips.over(base._slips, index.names,
                                       frozenset(base._skeletons[s] for s in hidden),
                                       base._skeletons)
        return index

    def _add_owners(self) -> None:
        owned = dict.fromkeys(n.partition(":")[0] for n in self.names if ":" in n)
        self._groups = NameIndex(self.ecosystem, owned, groups=False)
        shared: set[str] = set()
        for coordinate in self.names:
            artifact = coordinate.partition(":")[2]
            if len(artifact) < MIN_FUZZY or artifact in shared:
                continue
            if artifact in self._artifacts:
                shared.add(artifact)
                del self._artifacts[artifact]
            else:
                self._artifacts[artifact] = coordinate

    @property
    def edits(self) -> EditIndex:
        """The edit look-ups (``edits``): the loose tier shares their deletions."""
        return self._edits

    def __contains__(self, name: str) -> bool:
        return normalize(self.ecosystem, name) in self.names

    def lookalike(self, name: str, *, normalized: bool = False) -> Match | None:
        """The protected name ``name`` imitates, if any (never itself). A protected name
        below the POPULAR_RANK most installed is itself checked against those above:
        bots keep some copies fetched often (``loadsh``)."""
        norm = name if normalized else normalize(self.ecosystem, name)
        skel = skeleton(self.ecosystem, norm)
        exact = self._skeletons.get(skel)
        self.last = (norm, skel, exact)
        # a listed name's skeleton is held (by it or a better-ranked name): where none
        # holds it, the name is not listed, and the list is not asked
        rank = None if exact is None else self.names.get(norm)
        if rank is not None and rank < POPULAR_RANK:
            return None
        match = self._lookalike(norm, skel, exact)
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
        if match is not None and maven_owner(group) == maven_owner(match.target):
            return None  # one verified namespace has one owner, who does not squat itself
        if match is None and self._groups is not None and group not in self._groups.names:
            groups = self._groups
            held = skeleton(self.ecosystem, group)
            found = groups._lookalike(group, held, groups._skeletons.get(held))
            if found is not None and maven_owner(group) != maven_owner(found.target):
                return Match(found.target, f"groupId look-alike: {found.technique}")
        if match is None and personal(group):
            # Anyone can publish under io.github.<user>: a popular artifactId there,
            # not its owner's, is a copy passing for the original (MAL-2025-2552).
            target = self._artifacts.get(norm.partition(":")[2])
            if target is not None and maven_owner(group) != maven_owner(target):
                return Match(target, "its artifactId under a personal namespace")
        return match

    def _lookalike(self, norm: str, skel: str, exact: str | None) -> Match | None:
        """The checks in order, on ``norm``'s skeleton ``skel`` and the name holding it
        (``exact``; None: none)."""
        if exact is not None and exact != norm:
            technique = self._exact_technique(norm, exact)
            limit = {"separator variant": SEPARATOR_MAX_RANK,
                     "scope confusion": SCOPE_MAX_RANK}.get(technique)
            if limit is None or self.names[exact] < limit:
                return Match(exact, technique)
        folded = self._look_alike_pairs(skel, exact) if len(skel) >= MIN_FUZZY else None
        if folded is not None and folded not in (norm, exact):
            return Match(folded, "confusable characters")
        return self._affix(skel) or self._variant(skel) or self._edits.fuzzy(skel, norm) \
            or self._combo(norm) or self._dropped(skel) or self._slips.slip(norm, skel) \
            or self._slips.slipped_word(norm) or self._edits.swapped(skel)

    def _look_alike_pairs(self, skel: str, exact: str | None) -> str | None:
        """The best-ranked name whose skeleton, with look-alike pairs folded (rn -> m),
        is ``skel``'s so folded (``exact``: the name holding ``skel``, read already)."""
        folded = fold_pairs(skel)
        pair = self._folded.get(folded)
        plain = exact if folded == skel else self._skeletons.get(folded)
        if pair is None or plain is None:
            return pair or plain
        return min(pair, plain, key=self.names.__getitem__)

    def _dropped(self, skel: str) -> Match | None:
        """A most installed name without its affix: ``yaml`` for ``pyyaml``."""
        found = self._stripped.get(skel)
        return None if found is None else Match(found[0], f"dropped affix {found[1]!r}")

    def _exact_technique(self, norm: str, target: str) -> str:
        if self.ecosystem is Ecosystem.NPM and ("/" in norm) != ("/" in target):
            return "scope confusion"
        plain = SEPARATORS.sub("", norm)
        if not norm.isascii():
            return "confusable characters"
        if plain != SEPARATORS.sub("", target):
            return "confusable characters"
        return "separator variant"

    def _affix(self, skel: str) -> Match | None:
        if not skel:
            return None
        for affix, max_rank in AFFIX_HEADS[self.ecosystem].get(skel[0], ()):
            if skel.startswith(affix):
                target = self._skeletons.get(skel[len(affix):])
                if target is not None and self.names[target] < max_rank \
                        and len(skel) - len(affix) >= 2:
                    return Match(target, f"added affix {affix!r}")
        for affix, max_rank in AFFIX_TAILS[self.ecosystem].get(skel[-1], ()):
            if skel.endswith(affix):
                target = self._skeletons.get(skel[:-len(affix)])
                if target is not None and self.names[target] < max_rank \
                        and len(skel) - len(affix) >= 2:
                    return Match(target, f"added affix {affix!r}")
        return None

    def _variant(self, skel: str) -> Match | None:
        """A language marker moved or changed on the same core; a version digit dropped."""
        marked = cores(skel, MARKERS[self.ecosystem])
        found = [t for core in marked if (t := self._cores.get(core)) is not None] \
            if marked else None  # most names carry no marker: no list made
        if found:
            return Match(min(found, key=self.names.__getitem__), "changed affix")
        target = self._digitless.get(skel)
        if target is not None:
            return Match(target, "dropped version digit")
        return None

    def _named(self, skel: str) -> str | None:
        """The best-ranked name ``skel`` spells, with or without its version digit."""
        bare = self._digitless.get(skel) if len(skel) >= TOP_LONG else None  # not json5
        found = [n for n in (self._skeletons.get(skel), bare) if n]
        return min(found, key=self.names.__getitem__, default=None)

    def _combo(self, norm: str) -> Match | None:
        """Two of the most installed names joined by a separator: ``matplotlib-requests``."""
        if self.ecosystem is not Ecosystem.PYPI or "-" not in norm or not norm.isascii():
            return None
        parts = norm.split("-")  # a normalised PyPI name: lower case, one separator
        for i in range(1, len(parts)):
            left, right = "".join(parts[:i]), "".join(parts[i:])
            if min(len(left), len(right)) < COMBO_PART or left not in self._combo_parts \
                    or right not in self._combo_parts:
                continue
            first, second = self._named(left), self._named(right)
            if first is None or second is None:
                continue
            if max(self.names[first], self.names[second]) < COMBO_RANK:
                if self.names[second] < self.names[first]:
                    first, second = second, first
                return Match(first, f"joins {first!r} and {second!r}")
        return None


class _Adding:
    """A ``NameIndex`` being built: its tables as the plain dicts they are until then."""

    def __init__(self, index: NameIndex, names: dict[str, int],
                 skeletons: dict[str, str]) -> None:
        self.index, self.names, self.skeletons = index, names, skeletons
        self.cores: dict[str, str] = {}
        self.digitless: dict[str, str] = {}
        self.folded: dict[str, str] = {}
        self.stripped: dict[str, tuple[str, str]] = {}
        index._cores, index._digitless = self.cores, self.digitless
        index._folded, index._stripped = self.folded, self.stripped

    def add(self, name: str, rank: int) -> None:
        index, ecosystem = self.index, self.index.ecosystem
        if not name or name in self.names:
            return
        self.names[name] = rank
        index._slips.add_words(name, rank)
        skel = skeleton(ecosystem, name)
        if rank < VARIANT_MAX_RANK:
            for core in cores(skel, MARKERS[ecosystem]):
                self.cores.setdefault(core, name)
            digitless = skel.rstrip("0123456789")
            if digitless != skel and len(digitless) >= MIN_CORE:
                self.digitless.setdefault(digitless, name)
        folded = fold_pairs(skel)
        if folded != skel:
            self.folded.setdefault(folded, name)
        if skel in self.skeletons:
            return  # a better-ranked name holds the skeleton, and all it reaches
        self.skeletons[skel] = name
        index._slips.add(name, skel, rank)
        if rank < DROPPED_RANK:
            for affix in DROPPABLE[ecosystem]:
                for rest in (skel.removeprefix(affix), skel.removesuffix(affix)):
                    if rest != skel and len(rest) >= DROPPED_MIN:
                        self.stripped.setdefault(rest, (name, affix))
        index._edits.add(name, skel, rank)
