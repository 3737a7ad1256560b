"""Upstream sessions verify with aiohttp's own context, made once when aiohttp is
imported: no upstream, worker or start loads the system's certificate store again."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any

import aiohttp.connector
import pytest

from stockade.config.model import UpstreamSettings
from stockade.proxy.metrics import Metrics
from stockade.proxy.upstream import Upstream


@pytest.fixture
def made() -> Iterator[list[ssl.SSLContext]]:
    """The contexts ``ssl.create_default_context`` makes while the test runs."""
    contexts: list[ssl.SSLContext] = []
    real = ssl.create_default_context

    def counting(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        context = real(*args, **kwargs)
        contexts.append(context)
        return context

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ssl, "create_default_context", counting)
        yield contexts


def _upstream(name: str, url: str, **settings: Any) -> Upstream:
    return Upstream(UpstreamSettings(name=name, url=url, **settings), metrics=Metrics(),
                    environ={})


async def test_every_upstream_session_verifies_with_the_context_made_at_import(
        made: list[ssl.SSLContext]) -> None:
    upstreams = [_upstream("pypi", "https://pypi.org/simple/"),
                 _upstream("npmjs", "https://registry.npmjs.org/"),
                 _upstream("central", "https://repo.maven.apache.org/maven2/")]
    for each in upstreams:
        await each.start()
    try:
        assert made == []  # no certificate store loaded again
        for each in upstreams:
            assert each._session is not None
            connector: Any = each._session.connector
            assert connector._ssl is True  # aiohttp's verifying default
        verified: ssl.SSLContext = aiohttp.connector._SSL_CONTEXT_VERIFIED
        assert verified.verify_mode is ssl.CERT_REQUIRED
        assert verified.check_hostname
    finally:
        for each in upstreams:
            await each.close()


async def test_an_upstream_without_verification_verifies_nothing(
        made: list[ssl.SSLContext]) -> None:
    unverified = _upstream("internal", "https://pypi.internal.example/simple/",
                           verify_tls=False)
    await unverified.start()
    try:
        assert made == []
        assert unverified._session is not None
        connector: Any = unverified._session.connector
        assert connector._ssl is False
    finally:
        await unverified.close()
