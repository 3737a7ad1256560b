"""A packument's index sent back from a pool process in parts: read back a part at a
time (the event loop runs between parts), it is the index ``index`` makes."""

from __future__ import annotations

import asyncio

import orjson

from stockade.proxy.ecosystems import npm_documents as docs


def _packument(versions: int) -> bytes:
    return orjson.dumps({
        "name": "demo",
        "dist-tags": {"latest": f"1.0.{versions - 1}"},
        "time": {f"1.0.{n}": "2024-01-02T03:04:05.000Z" for n in range(versions)},
        "versions": {
            f"1.0.{n}": {
                "name": "demo", "version": f"1.0.{n}", "license": "MIT",
                "scripts": {"postinstall": "x"} if n % 3 == 0 else {},
                "dist": {"tarball": f"https://registry.example/demo/-/demo-1.0.{n}.tgz",
                         "integrity": f"sha512-{n}", "shasum": f"{n:040x}",
                         **({"attestations": {"url": "https://a.example/x"}}
                            if n % 5 == 0 else {})},
            } for n in range(versions)},
    })


def test_the_parts_joined_are_the_index() -> None:
    body = _packument(1000)
    whole = docs.index(body, "demo", upstream="up", internal=False)
    parts = docs.index_parts(body, "demo", upstream="up", internal=False, per=128)
    assert len(parts) == 8  # 1000 versions, 128 a part
    joined = asyncio.run(docs.join_index(parts))
    assert joined == whole
    assert list(joined.facts) == list(whole.facts)  # in the document's order
    assert list(joined.tarballs) == list(whole.tarballs)


def test_the_loop_runs_between_parts() -> None:
    body = _packument(300)
    parts = docs.index_parts(body, "demo", upstream="up", internal=False, per=100)
    ticks: list[int] = []

    async def both() -> docs.PackumentIndex:
        async def tick() -> None:
            for n in range(10):
                ticks.append(n)
                await asyncio.sleep(0)

        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0)  # the ticker has started
        started = len(ticks)
        joined = await docs.join_index(parts)
        assert len(ticks) - started >= len(parts) - 1  # it ran between every two parts
        await ticker
        return joined

    assert len(asyncio.run(both()).facts) == 300


def test_an_empty_packument_has_one_empty_part() -> None:
    body = orjson.dumps({"name": "demo", "versions": {}})
    parts = docs.index_parts(body, "demo", upstream="up", internal=False)
    assert len(parts) == 1
    assert asyncio.run(docs.join_index(parts)) == docs.PackumentIndex({}, {})
