"""Turning verdicts and errors into HTTP answers, in one place.

Owns the refusal format of the contract (403, reason phrase starting with
``Blocked by stockade:``, npm's JSON ``error`` field, a plain-text body for the
others), the error middleware, request ids, per-route metrics and the JSON
access log's request ids (the access log itself: ``accesslog``). Handlers raise or
return verdicts; only this module writes errors.
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware
from yarl import URL

from stockade.policy.model import Verdict
from stockade.proxy.errors import ProxyError, RefusedError
from stockade.proxy.metrics import Metrics
from stockade.proxy.prepared import PreparedResponse
from stockade.storage.errors import (
    BlobNotFoundError,
    ReadOnlyStorageError,
    StorageError,
    StorageFullError,
)

logger = logging.getLogger(__name__)

# A released artifact never changes its bytes under one URL: clients may keep it.
IMMUTABLE = {"Cache-Control": "public, max-age=31536000, immutable"}
REQUEST_ID = web.RequestKey("request_id", str)


def request_id_of(request: web.BaseRequest) -> str:
    """The id the middleware gave ``request`` ("" before it did)."""
    found: str = request._state.get(REQUEST_ID, "")  # (no MutableMapping.get: 2 calls)
    return found


_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# A host name or IPv4 address (letters, digits, ``.-_~``) or a bracketed IPv6
# literal, then an optional port: what absolute URLs in metadata can be built from.
_HOST = re.compile(r"(?:[A-Za-z0-9._~-]+|\[([0-9A-Fa-f:.]+)\])(?::([0-9]{1,5}))?")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _RequestIds:
    """Request ids unique across processes without a system call each: a random
    per-process prefix (renewed in a forked child) and a counter. ``uuid4`` cost 5% of
    a warm 22 KB request."""

    def __init__(self) -> None:
        self.renew()
        os.register_at_fork(after_in_child=self.renew)

    def renew(self) -> None:
        self._prefix = os.urandom(6).hex()
        self._count = itertools.count()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._count):010x}"


_new_request_id = _RequestIds()


def reason_phrase(text: str) -> str:
    """A single-line ASCII reason phrase (the status line cannot carry more)."""
    flat = " ".join(text.split())
    return flat.encode("ascii", "backslashreplace").decode("ascii")[:400]


def route_labels(request: web.Request) -> tuple[str, str]:
    """(ecosystem, kind) from the route name ``ecosystem:kind``."""
    return _labels(request.match_info.route.name)


@functools.lru_cache(maxsize=256)  # route names are the route table's, and None
def _labels(name: str | None) -> tuple[str, str]:
    eco, _, kind = (name or "other:other").partition(":")
    return eco, kind or "other"


def _body(request: web.Request, status: int, sentence: str) -> web.Response:
    eco, _ = route_labels(request)
    if eco == "npm" or eco == "admin":
        body = json.dumps({"error": sentence}) + "\n"
        ctype = "application/json"
    else:
        body, ctype = sentence + "\n", "text/plain"
    return web.Response(
        status=status, reason=reason_phrase(sentence), text=body, content_type=ctype,
        headers={"Cache-Control": "no-store"},
    )


def refusal(request: web.Request, verdict: Verdict) -> web.Response:
    """The contract's 403 for a verdict that blocks."""
    response = _body(request, 403, verdict.refusal_phrase())
    response.headers["X-Stockade-Rule"] = reason_phrase(verdict.rule)
    return response


def error_response(request: web.Request, status: int, sentence: str) -> web.Response:
    """An error answer in the form the route's clients read."""
    return _body(request, status, sentence)


@functools.lru_cache(maxsize=1024)  # pure; a server sees few distinct Host values
def host_problem(host: str) -> str | None:
    """Why a Host header value cannot name this server in a URL, or None when it can.

    Handlers build absolute URLs from the request's origin; a Host that yarl
    cannot parse (``a:b``, a port past 65535, a broken IPv6 literal) would fail
    deep inside a handler, and one with spaces would end up in served metadata.
    """
    match = _HOST.fullmatch(host)
    if match is None or (match.group(2) is not None and int(match.group(2)) > 65535):
        return f"the Host header {host!r} is not a host name with an optional port"
    if match.group(1) is not None:
        try:
            ipaddress.IPv6Address(match.group(1))
        except ValueError:
            return f"the Host header {host!r} is not a valid IPv6 address"
    try:
        # As aiohttp builds request.url; str() is where yarl parses the port.
        str(URL.build(scheme="http", authority=host).origin())
    except ValueError as exc:
        return f"the Host header {host!r} cannot be used in a URL: {exc}"
    return None


Access = Callable[[web.Request], web.StreamResponse | None]
Stage = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


Counter = Callable[[web.Request, int, float | None], None]
RouteCounter = Callable[[str | None, int, float | None], None]


def request_counter(metrics: Metrics) -> Counter:
    """What counts a request's answer in ``metrics`` (by route and status, and its
    duration since ``started``, a ``perf_counter`` time, where given)."""
    count_route = route_counter(metrics)

    def count(request: web.Request, status: int, started: float | None) -> None:
        count_route(request.match_info.route.name, status, started)

    return count


def route_counter(metrics: Metrics) -> RouteCounter:
    """``request_counter``'s count, by the name of the request's route (the
    connection's fast path knows it without a request)."""
    # labels() takes a lock and checks its arguments each call: the children are
    # kept per (route name, status), a handful per route; counted through the tally.
    children: dict[tuple[str | None, int], tuple[Any, Any]] = {}
    tally = metrics.tally

    def count(name: str | None, status: int, started: float | None) -> None:
        pair = children.get((name, status))
        if pair is None:
            eco, kind = _labels(name)
            pair = children[name, status] = (metrics.requests.labels(eco, kind, str(status)),
                                             metrics.request_duration.labels(eco, kind))
        tally.inc(pair[0])
        if started is not None:
            tally.observe(pair[1], time.perf_counter() - started)

    return count


def request_id_for(request: web.BaseRequest) -> str:
    """The id of ``request``: the client's ``X-Request-Id`` where it is a safe one, else
    a new one."""
    return request_id_from(request.headers)


def request_id_from(headers: Mapping[str, str]) -> str:
    """``request_id_for`` a request with ``headers``."""
    incoming = headers.get("X-Request-Id")
    return (incoming if incoming is not None and _SAFE_ID.match(incoming)
            else _new_request_id())


def make_middleware(metrics: Metrics, *, access: Access | None = None,
                    stage: Stage | None = None) -> Middleware:
    """Request id, error rendering and request metrics for every route; inside them,
    ``access`` (an answer refusing the request, or None to go on: ``auth``) and
    ``stage`` (called with the handler in its place: the warm memo). One middleware,
    not three: each middleware level cost a warm request a coroutine and aiohttp's
    wrapper, and they read the same route and caller."""
    count = request_counter(metrics)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = request_id_for(request)
        request[REQUEST_ID] = request_id
        started = time.perf_counter()
        response: web.StreamResponse
        try:
            host = request.headers.get("Host")
            # Without a Host (HTTP/1.0) aiohttp falls back to the local host name.
            bad_host = host_problem(host) if host is not None else None
            refused = (error_response(request, 400, bad_host) if bad_host is not None
                       else access(request) if access is not None else None)
            if refused is not None:
                response = refused
            elif stage is not None:
                response = await stage(request, handler)
            else:
                response = await handler(request)
        except web.HTTPException as exc:
            count(request, exc.status, None)
            exc.headers["X-Request-Id"] = request_id
            raise
        except RefusedError as exc:
            response = refusal(request, exc.verdict)
        except ProxyError as exc:
            response = error_response(request, exc.status, exc.diagnostics())
        except StorageFullError as exc:
            response = error_response(request, 507, exc.diagnostics())
        except BlobNotFoundError as exc:
            response = error_response(request, 404, exc.diagnostics())
        except ReadOnlyStorageError as exc:
            response = error_response(request, 503, exc.diagnostics())
        except StorageError as exc:
            logger.error("storage failure on %s: %s", request.path, exc)
            response = error_response(request, 500, exc.diagnostics())
        count(request, response.status, started)
        if type(response) is PreparedResponse:
            response.request_id = request_id  # written with its head
        elif not response.prepared:
            response.headers["X-Request-Id"] = request_id
        return response

    return middleware
