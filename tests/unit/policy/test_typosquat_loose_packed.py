"""The loose search's packed tables over the shipped lists: built in memory or mapped
from its file, the index finds what the same tables as plain dicts find."""

from __future__ import annotations

import copy
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from stockade.policy.model import Ecosystem
from stockade.policy.rules.typosquat import popular
from stockade.policy.typosquat import store
from stockade.policy.typosquat.loose import LooseIndex
from stockade.policy.typosquat.packed import _Packed

_TABLES = ("_names", "_ranks", "_one", "_ends", "_ratios", "_anagrams", "_dropped")
_LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789-"


class _Dict(dict[str, Any]):
    """A dict with the packed tables' ``found``, ``found_with`` and ``below``."""

    def found(self, keys: Iterable[str]) -> list[Any]:
        return [self[key] for key in keys if key in self]

    def found_with(self, keys: Iterable[str]) -> list[tuple[str, Any]]:
        return [(key, self[key]) for key in keys if key in self]

    def below(self, limit: int, shortest: int = 0) -> list[tuple[str, int]]:
        return [(k, v) for k, v in self.items() if v < limit and len(k) >= shortest]


def _as_dicts(index: LooseIndex) -> LooseIndex:
    """``index`` with each packed table read into the dict it was packed from."""
    plain = copy.copy(index)
    for name in _TABLES:
        table = getattr(index, name)
        assert isinstance(table, _Packed)
        setattr(plain, name, _Dict(table.items()))
    return plain


def _probes(names: tuple[str, ...], rng: random.Random, count: int) -> list[str]:
    """Names near the listed ones: an edit or two, an affix, a version, one listed
    name run into another, and listed names themselves."""
    top = names[:30_000]
    out: list[str] = []
    for _ in range(count):
        name = list(rng.choice(top))
        at = rng.randrange(len(name) + 1)
        kind = rng.randrange(6)
        if kind == 0 and len(name) > 1:
            del name[min(at, len(name) - 1)]
        elif kind == 1:
            name.insert(at, rng.choice(_LETTERS))
        elif kind == 2 and len(name) > 1:
            i = min(at, len(name) - 2)
            name[i], name[i + 1] = name[i + 1], name[i]
        elif kind == 3:
            name = [*rng.choice(["py", "node-", "my", ""]), *name,
                    *rng.choice(["-js", "2", "-utils", "x", "-1.2", ""])]
        elif kind == 4:
            name = [*name, *rng.choice(["", "-"]), *rng.choice(top)]
        for _ in range(rng.randrange(3) if kind == 5 else 0):
            name[rng.randrange(len(name))] = rng.choice(_LETTERS)
        out.append("".join(name))
    return out + list(rng.sample(top, count // 10))


@pytest.mark.parametrize("eco", [Ecosystem.PYPI, Ecosystem.NPM])
def test_packed_index_finds_what_its_dicts_find(eco: Ecosystem, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCKADE_INDEX_CACHE", str(tmp_path))
    names = popular(eco)
    built = store.load_or_build_loose(eco, names)  # built, and its file written
    mapped = store.load_or_build_loose(eco, names)  # the file mapped
    assert mapped is not built and next(tmp_path.glob(f"loose-{eco.value}-*.packed"))
    plain = _as_dicts(built)
    rng = random.Random(11)  # noqa: S311 - test data, not secrets
    found = {False: 0, True: 0}
    for probe in _probes(names, rng, 1500):
        for deep in (False, True):
            want = plain.match(probe, deep=deep)
            assert built.match(probe, deep=deep) == want, (probe, deep)
            assert mapped.match(probe, deep=deep) == want, (probe, deep)
            found[deep] += want is not None
    assert found[False] > 300 and found[True] > found[False]  # the probes do find names
