"""What an ecosystem module implements, and what the modules share when reading
upstream documents.

An ecosystem module owns its registry protocol and nothing else: parsing a
request into a reference, reading facts out of its documents, rewriting and
filtering metadata, naming the artifact and its digests. Routing, deciding and
fetching metadata are the admission path's (``stockade.proxy.admission``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import orjson
from aiohttp import web

from stockade.policy.model import Ecosystem, Facts
from stockade.proxy.errors import UpstreamError

if TYPE_CHECKING:
    from stockade.proxy.metadocs import CachedDoc
    from stockade.proxy.routing import Route
    from stockade.proxy.upstream import Upstream

T = TypeVar("T")


class Documents(Protocol):
    """What an ecosystem module asks of the admission path to read its metadata."""

    async def document(self, eco: Ecosystem, upstream: Upstream, url: str, *, accept: str,
                       ttl_s: float | None = None, body: bool = True) -> CachedDoc:
        """An upstream document through the metadata cache (without ``body``, a large
        one may come without it)."""

    async def parsed(self, doc: CachedDoc, kind: str, parse: Callable[[], Awaitable[T]],
                     weight: Callable[[T], int]) -> T:
        """What ``parse`` makes of ``doc``, made once per document version."""

    async def stored_body(self, doc: CachedDoc) -> Path | None:
        """The file of ``doc``'s stored body, for a worker process to read, or None."""

    async def offload(self, heavy: bool, fn: Callable[..., T], *args: Any,
                      **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` off the event loop."""

    def large(self, size: int) -> AbstractAsyncContextManager[None]:
        """Held while a document of ``size`` bytes is read and worked on: the
        server bounds how many large ones are in memory at once."""


class EcosystemModule(Protocol):
    """One package ecosystem's protocol, as the admission path and the app use it."""

    ECO: Ecosystem

    def setup(self, app: web.Application) -> None:
        """Register the ecosystem's routes on ``app``."""

    async def versions(
        self, documents: Documents, upstreams: Route[Upstream], name: str
    ) -> dict[str, Facts]:
        """Every version's facts as the upstream's metadata gives them (no first-seen
        times: the admission path adds those).

        Raises:
            ProxyError: the metadata cannot be had or read.
        """


def json_object(body: bytes, upstream: str, what: str) -> dict[str, Any]:
    """The JSON object an upstream sent as ``what``.

    Raises:
        UpstreamError: the body is not JSON, or not an object.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError(f"upstream {upstream} sent invalid JSON for {what}",
                            upstream=upstream) from exc
    if not isinstance(data, dict):
        raise UpstreamError(f"upstream {upstream} sent unexpected JSON for {what}",
                            upstream=upstream)
    return data

