"""What a Maven upstream publishes, remembered per origin and for a while."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

from stockade.proxy.checksum_origins import ABSENT_TTL_S, ChecksumOrigins
from stockade.proxy.upstream import Upstream
from stockade.storage.refs import RefStore

ALL = ("sha512", "sha256", "sha1")


@dataclass
class _Origin:
    name: str
    url: str


class _Clock:
    now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _up(name: str = "central", url: str = "https://repo.example/maven2/") -> Upstream:
    return cast(Upstream, _Origin(name, url))


async def test_an_absent_algorithm_is_skipped_until_it_expires(tmp_path: Path) -> None:
    clock = _Clock()
    origins = ChecksumOrigins(RefStore(tmp_path, "m"), clock=clock)
    assert await origins.worth_asking(_up(), ALL) == list(ALL)
    await origins.learn(_up(), "sha1", ["sha512", "sha256"])
    assert await origins.worth_asking(_up(), ALL) == ["sha1"]
    # another origin, or the same name at another URL, knows nothing of it
    assert await origins.worth_asking(_up("other"), ALL) == list(ALL)
    assert await origins.worth_asking(_up(url="https://mirror.example/"), ALL) == list(ALL)
    clock.now += ABSENT_TTL_S + 1
    assert await origins.worth_asking(_up(), ALL) == list(ALL)


async def test_a_published_algorithm_is_never_marked_absent(tmp_path: Path) -> None:
    origins = ChecksumOrigins(RefStore(tmp_path, "m"), clock=_Clock())
    await origins.learn(_up(), "sha512", [])
    await origins.learn(_up(), "sha1", ["sha512", "sha256"])
    assert await origins.worth_asking(_up(), ALL) == ["sha512", "sha1"]
    # an algorithm found after all is asked again at once
    await origins.learn(_up(), "sha256", ["sha512"])
    assert await origins.worth_asking(_up(), ALL) == list(ALL)


async def test_another_process_reads_what_one_learned(tmp_path: Path) -> None:
    await ChecksumOrigins(RefStore(tmp_path, "m"), clock=_Clock()).learn(
        _up(), "sha1", ["sha512"])
    other = ChecksumOrigins(RefStore(tmp_path, "m"), clock=_Clock())
    assert await other.worth_asking(_up(), ALL) == ["sha256", "sha1"]


async def test_published_lists_what_was_seen_only(tmp_path: Path) -> None:
    origins = ChecksumOrigins(RefStore(tmp_path, "m"), clock=_Clock())
    assert await origins.published(_up()) == set()
    await origins.learn(_up(), "sha1", ["sha512", "sha256"])
    assert await origins.published(_up()) == {"sha1"}
    await origins.learn(_up(), "sha512", [])
    assert await origins.published(_up()) == {"sha1", "sha512"}
    assert await origins.published(_up("other")) == set()
