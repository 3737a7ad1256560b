"""Upstream sessions share one TLS context per process: the system's certificate store
is loaded once, not once per upstream."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any

import pytest

from stockade.config.model import UpstreamSettings
from stockade.proxy import upstream as upstream_module
from stockade.proxy.metrics import Metrics
from stockade.proxy.upstream import Upstream, client_ssl_context


@pytest.fixture
def made() -> Iterator[list[ssl.SSLContext]]:
    """The contexts ``ssl.create_default_context`` makes while the test runs."""
    contexts: list[ssl.SSLContext] = []
    real = ssl.create_default_context

    def counting(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        context = real(*args, **kwargs)
        contexts.append(context)
        return context

    client_ssl_context.cache_clear()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(upstream_module.ssl, "create_default_context", counting)
        yield contexts
    client_ssl_context.cache_clear()


def _upstream(name: str, url: str, **settings: Any) -> Upstream:
    return Upstream(UpstreamSettings(name=name, url=url, **settings), metrics=Metrics(),
                    environ={})


async def test_every_upstream_session_uses_one_context(made: list[ssl.SSLContext]) -> None:
    upstreams = [_upstream("pypi", "https://pypi.org/simple/"),
                 _upstream("npmjs", "https://registry.npmjs.org/"),
                 _upstream("central", "https://repo.maven.apache.org/maven2/")]
    for each in upstreams:
        await each.start()
    try:
        assert len(made) == 1
        (context,) = made
        assert context.verify_mode is ssl.CERT_REQUIRED
        assert context.check_hostname
        for each in upstreams:
            assert each._session is not None
            assert each._session.connector._ssl is context  # type: ignore[union-attr]
    finally:
        for each in upstreams:
            await each.close()


async def test_an_upstream_without_verification_makes_none(
        made: list[ssl.SSLContext]) -> None:
    unverified = _upstream("internal", "https://pypi.internal.example/simple/",
                           verify_tls=False)
    await unverified.start()
    try:
        assert made == []
        assert unverified._session is not None
        assert unverified._session.connector._ssl is False  # type: ignore[union-attr]
    finally:
        await unverified.close()
