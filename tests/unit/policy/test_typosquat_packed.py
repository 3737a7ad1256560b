"""The typosquat index's packed tables: each answers as the dict it was packed from,
over bytes in memory and over the index file mapped read-only, with the C look-ups
(where built) and with the Python loops alike (every test runs with each)."""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stockade.policy.model import Ecosystem
from stockade.policy.typosquat import NameIndex, packed, store
from stockade.policy.typosquat.forms import deletions
from stockade.policy.typosquat.packed import Layered, Lists, Names, Ranks, Strings


@pytest.fixture(scope="module", autouse=True, params=["native", "python"])
def _look_ups(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tables made in a test look up with the C module, then with the Python loops."""
    if request.param == "native" and packed.NATIVE is None:
        pytest.skip("the C look-ups are not built here")
    with pytest.MonkeyPatch.context() as patch:
        if request.param == "python":
            patch.setattr(packed, "NATIVE", None)
        yield


# any text a name may hold: non-ASCII, lone surrogates (as a list file may carry), empty
TEXT = st.text(st.characters(blacklist_characters="\0"), max_size=12)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(TEXT, st.integers(0, 2**32 - 1), max_size=60), st.lists(TEXT))
def test_ranks_answer_as_their_dict(table: dict[str, int], probes: list[str]) -> None:
    packed = Ranks(Ranks.pack(table.items()))
    assert list(packed.items()) == list(table.items())  # the dict's order too
    assert len(packed) == len(table)
    for key in [*table, *probes]:
        assert packed.get(key) == table.get(key)
        assert (key in packed) == (key in table)
        if key not in table:
            with pytest.raises(KeyError):
                packed[key]
    keys = [*probes, *table, *probes]
    assert packed.found_with(keys) == [(k, table[k]) for k in keys if k in table]
    assert packed.below(2**31, 2) == [(k, v) for k, v in table.items()
                                      if v < 2**31 and len(k) >= 2]


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(TEXT, st.one_of(TEXT, st.tuples(TEXT), st.lists(TEXT, min_size=2)
                                       .map(tuple)), max_size=60), st.lists(TEXT))
def test_names_keep_a_name_or_a_tuple(table: dict[str, str | tuple[str, ...]],
                                      probes: list[str]) -> None:
    packed = Names(Names.pack(table.items()))
    for key in [*table, *probes]:
        assert packed.get(key) == table.get(key)
    strings = {k: v for k, v in table.items() if isinstance(v, str)}
    assert dict(Strings(Strings.pack(strings.items())).items()) == strings


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(TEXT, st.lists(TEXT, min_size=1, max_size=8).map(tuple), max_size=60),
       st.lists(TEXT))
def test_lists_keep_each_tuple_in_its_order(table: dict[str, tuple[str, ...]],
                                            probes: list[str]) -> None:
    packed = Lists(Lists.pack(table.items()))
    assert list(packed.items()) == list(table.items())
    for key in [*table, *probes]:
        assert packed.get(key) == table.get(key)
    keys = [*probes, *table]
    assert packed.found(keys) == [table[k] for k in keys if k in table]


# short words of few letters: runs of one letter, and deletions shared between words
WORDS = st.text(st.sampled_from("aabé\udc80"), max_size=7)


@settings(max_examples=300, deadline=None)
@given(st.lists(WORDS, max_size=12), st.lists(WORDS, max_size=12))
def test_a_words_deletions_are_found_as_its_deletion_set(filed: list[str],
                                                         probes: list[str]) -> None:
    table: dict[str, list[str]] = {}
    for word in filed:
        for key in deletions(word):
            table.setdefault(key, []).append(word)
    packed = Lists(Lists.pack((k, tuple(v)) for k, v in table.items()))
    for word in [*probes, *filed]:
        found = packed.found_deletions(word)
        assert sorted(found) == sorted(packed.found(deletions(word))), word
    assert Lists(Lists.pack(())).found_deletions("abc") == []


def test_lists_refuse_what_they_cannot_give_back() -> None:
    with pytest.raises(ValueError, match="NUL"):
        Lists.pack([("k", ("a\0b",))])
    with pytest.raises(ValueError, match="empty"):
        Lists.pack([("k", ())])


def test_bytes_keys_and_nul_in_them() -> None:
    table: dict[str | bytes, str | tuple[str, ...]] = {
        b"\0\1\0": "a", b"\0\1": ("b", "c"), b"": "d"}
    packed = Names(Names.pack(table.items()))
    assert [packed.get(k) for k in table] == list(table.values())
    assert packed.get(b"\0") is None and packed.get(b"\0\1\0\0") is None


def test_a_name_with_nul_is_refused_where_it_would_split() -> None:
    with pytest.raises(ValueError, match="NUL"):
        Names.pack([("k", ("a\0b", "c"))])


def test_empty_and_damaged_tables() -> None:
    empty = Ranks(Ranks.pack([]))
    assert len(empty) == 0 and empty.get("x") is None and list(empty) == []
    raw = Ranks.pack([("requests", 0), ("numpy", 1)])
    with pytest.raises(ValueError, match="kind"):
        Strings(raw)  # a table of another kind
    with pytest.raises(ValueError, match="truncated"):
        Ranks(raw[:-8])
    with pytest.raises(ValueError, match="header"):
        Ranks(b"garbage")


def test_a_table_read_in_place_at_an_offset() -> None:
    raw = Strings.pack([("reqeusts", "requests"), ("nunpy", "numpy")])
    packed = Strings(b"\xff" * 24 + raw + b"tail", 24)
    assert packed.get("nunpy") == "numpy" and packed.tobytes() == raw


def test_layered_answers_as_the_merged_dict() -> None:
    own, base = {"a": 0, "b": 0}, {"b": 5, "c": 6}
    layered = Layered(own, Ranks(Ranks.pack(base.items())))
    merged = {**base, **own}
    assert dict(layered.items()) == merged and len(layered) == len(merged)
    assert [layered.get(k) for k in "abcd"] == [merged.get(k) for k in "abcd"]
    assert "c" in layered and "d" not in layered


def test_the_file_is_mapped_and_no_name_is_made_at_load(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCKADE_INDEX_CACHE", str(tmp_path))
    names = ["lodash", "react", "@babel/core", "express", "puppeteer", "chalk"]
    built = store.load_or_build(Ecosystem.NPM, names)
    loaded = store.load_or_build(Ecosystem.NPM, names)
    assert isinstance(loaded.names, Ranks) and isinstance(loaded.names._blob, mmap.mmap)
    assert isinstance(loaded._edits._deletes, Names)
    for name in ["lodahs", "reakt", "@babel/cor", "expres", "pupeteer", "chalk", "left-pad"]:
        assert loaded.lookalike(name) == built.lookalike(name), name
    assert list(loaded.names) == list(built.names)


def test_a_file_changed_inside_is_built_anew(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCKADE_INDEX_CACHE", str(tmp_path))
    names = ["requests", "numpy", "pandas", "matplotlib"]
    store.load_or_build(Ecosystem.PYPI, names)
    (path,) = tmp_path.glob("names-pypi-*.packed")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside a table: only the checksum tells
    path.write_bytes(bytes(data))
    index = store.load_or_build(Ecosystem.PYPI, names)
    assert index.lookalike("reqeusts") == NameIndex(Ecosystem.PYPI, names).lookalike("reqeusts")
    assert path.read_bytes() != bytes(data)  # written again
