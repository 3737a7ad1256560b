"""The last answer of a family stands in while the next version's is made, only then,
and only where it is still usable; the caller that fetched the new version waits."""

from __future__ import annotations

import asyncio

import pytest

from stockade.proxy.successions import Successions

_DEADLINE_S = 10.0


async def _made(value: str) -> str:
    return value


async def test_a_family_never_answered_waits_for_its_first_answer() -> None:
    answers: Successions[str] = Successions()
    assert await answers.answer("f", "v1", lambda: _made("one"), lambda _a: True) == (
        "one", False)


async def test_the_last_answer_stands_in_while_the_next_is_made() -> None:
    answers: Successions[str] = Successions()
    await answers.answer("f", "v1", lambda: _made("one"), lambda _a: True)
    release = asyncio.Event()
    started: list[int] = []

    async def slow() -> str:
        started.append(1)
        await release.wait()
        return "two"

    for _ in range(5):
        assert await answers.answer("f", "v2", slow, lambda _a: True) == ("one", True)
    waiting = asyncio.ensure_future(answers.answer("f", "v2", slow, lambda _a: True,
                                                   wait=True))
    await asyncio.sleep(0)
    assert not waiting.done()
    release.set()
    assert await asyncio.wait_for(waiting, _DEADLINE_S) == ("two", False)
    assert started == [1]  # made once for every caller
    assert await answers.answer("f", "v2", slow, lambda _a: True) == ("two", False)


async def test_an_unusable_last_answer_does_not_stand_in() -> None:
    answers: Successions[str] = Successions()
    await answers.answer("f", "v1", lambda: _made("one"), lambda _a: True)
    assert await answers.answer("f", "v2", lambda: _made("two"), lambda _a: False) == (
        "two", False)


async def test_a_failed_making_reaches_its_waiting_caller() -> None:
    answers: Successions[str] = Successions()
    await answers.answer("f", "v1", lambda: _made("one"), lambda _a: True)

    async def broken() -> str:
        raise ValueError("unreadable")

    with pytest.raises(ValueError, match="unreadable"):
        await answers.answer("f", "v2", broken, lambda _a: True, wait=True)
    await answers.close()
