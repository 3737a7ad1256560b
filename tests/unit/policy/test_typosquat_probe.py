"""The packed tables' C look-ups (``_probe``): in use wherever a compiler could build
them, built from the source beside them, and answering as the Python loops do over
random and real names and tables, non-ASCII and lone surrogates included."""

from __future__ import annotations

import random
import shutil
import sysconfig
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stockade.policy.typosquat import packed
from stockade.policy.typosquat.forms import deletions
from stockade.policy.typosquat.packed import Lists, Names, Ranks

SOURCE = Path(packed.__file__).with_name("_probe.c")
DATA = Path(packed.__file__).parents[1] / "data"


def _compiler() -> bool:
    command = (sysconfig.get_config_var("CC") or "cc").split()
    return bool(command) and shutil.which(command[0]) is not None


def test_the_c_look_ups_are_in_use_where_they_could_be_built() -> None:
    if packed.NATIVE is None and not _compiler():
        pytest.skip("no C compiler: the Python loops are the look-ups here")
    # a compiler and no module: the build failed and fell back without a word
    assert packed.NATIVE is not None, "_probe was not built (or is of another ABI)"
    assert zlib.crc32(SOURCE.read_bytes()) == packed.NATIVE.SOURCE_CRC, \
        "_probe was built from an older _probe.c: install again (pip install -e .)"
    table = Ranks(Ranks.pack([("requests", 0)]))
    assert table._probe is not None and table.get("requests") == 0


def test_its_crc_is_zlib_s() -> None:
    if packed.NATIVE is None:
        pytest.skip("the C look-ups are not built here")
    rng = random.Random(5)  # noqa: S311 - test data, not secrets
    for size in [0, 1, 2, 7, 8, 63, 300]:
        data = rng.randbytes(size)
        assert packed.NATIVE.crc32(data) == zlib.crc32(data)


def _both(make: Any, items: list[tuple[str, Any]]) -> tuple[Any, Any]:
    """The table of ``items`` with the C look-ups and with the Python loops."""
    raw = make.pack(items)
    native = make(raw)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(packed, "NATIVE", None)
        python = make(raw)
    assert python._probe is None
    return native, python


def _agree(native: Any, python: Any, words: list[str]) -> None:
    for word in words:
        assert native.found_deletions(word) == python.found_deletions(word) \
            or not word.isascii(), word  # a set's order where a word is not ASCII
        assert sorted(map(repr, native.found_deletions(word))) \
            == sorted(map(repr, python.found_deletions(word))), word
        keys = [word, *deletions(word)]
        assert native.found(keys) == python.found(keys), word
        assert native.found_with(keys) == python.found_with(keys), word
        assert native.get(word) == python.get(word), word
        assert native._find(word.encode("utf-8", "surrogatepass")) \
            == python._find(word.encode("utf-8", "surrogatepass")), word


def _mutated(rng: random.Random, word: str) -> str:
    i = rng.randrange(len(word) + 1)
    return rng.choice([word[:i] + word[i + 1:], word[:i] + rng.choice("aeoé-_x") + word[i:],
                       word[:i] + word[i:i + 2][::-1] + word[i + 2:], word + word[-1:]])


@pytest.mark.skipif(packed.NATIVE is None, reason="the C look-ups are not built here")
def test_they_answer_as_the_python_loops_over_the_shipped_lists() -> None:
    rng = random.Random(21)  # noqa: S311 - test data, not secrets
    words: dict[str, None] = {}
    for path in sorted(DATA.glob("popular-*.txt")):
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
                 if line.strip() and not line.startswith("#")]
        words.update(dict.fromkeys(rng.sample(names, min(3000, len(names)))))
    filed = list(words)[:6000]
    table: dict[str, list[str]] = {}
    for word in filed:
        for key in deletions(word):
            table.setdefault(key, []).append(word)
    native, python = _both(Names, [(k, v[0] if len(v) == 1 else tuple(v))
                                   for k, v in table.items()])
    probes = list(words) + [_mutated(rng, w) for w in words if w] \
        + ["réqüests", "numpy\udc80", "ñ", "", "\U0001f600pandas"]
    _agree(native, python, probes)
    ranks_native, ranks_python = _both(Ranks, [(w, i) for i, w in enumerate(filed)])
    _agree(ranks_native, ranks_python, probes[:3000])


TEXT = st.text(st.sampled_from("aabé-\udc80\U0001f600"), max_size=9)


@pytest.mark.skipif(packed.NATIVE is None, reason="the C look-ups are not built here")
@settings(max_examples=300, deadline=None)
@given(st.lists(TEXT, max_size=20), st.lists(TEXT, max_size=20))
def test_they_answer_as_the_python_loops_over_random_tables(filed: list[str],
                                                           probes: list[str]) -> None:
    table: dict[str, list[str]] = {}
    for word in filed:
        for key in deletions(word):
            table.setdefault(key, []).append(word)
    native, python = _both(Lists, [(k, tuple(v)) for k, v in table.items()])
    _agree(native, python, [*probes, *filed])


@pytest.mark.skipif(packed.NATIVE is None, reason="the C look-ups are not built here")
def test_a_probe_refuses_arrays_shorter_than_its_sizes() -> None:
    assert packed.NATIVE is not None
    with pytest.raises(ValueError, match="shorter"):
        packed.NATIVE.Probe(b"", b"", b"\0\0\0\0", b"", b"", 0, 4, 1)
    with pytest.raises(TypeError):
        Ranks(Ranks.pack([("a", 1)]))._probe.find(3)  # type: ignore[union-attr, arg-type]
