"""Who may ask what: credentials in, an identity out, or a 401.

Owns the access check (run by ``responses``' middleware): reading a token the way
each client sends it (HTTP Basic from pip, uv, poetry, Maven and Gradle, where the password is the
token and the user name is ignored, or the user name is the token when the
password is empty; ``Authorization: Bearer`` from npm, pnpm, yarn and
Prometheus), deciding which route group a request belongs to and whether that
group takes anonymous requests, and setting the caller's ``Identity``. Also the
tokens file watcher: the server reloads the file when it changes, keeping the
tokens in force when a new file is invalid.

A wrong, revoked or malformed credential is always a 401, even where anonymous
requests are allowed: a client that believes it sent a token must learn that it
did not count. The 401 carries ``WWW-Authenticate`` (Bearer on npm routes,
Basic elsewhere) and says why in its reason phrase, which clients print. A
valid token without the route group's role is a 403 where the group is private
(where it takes anonymous requests any valid token is enough, and names the
caller). Without a tokens file (``auth.tokens`` unset) credentials are ignored.
No secret is logged.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import hdrs, web

from stockade.config.model import AuthSettings
from stockade.proxy.identity import Identity, identity_of, set_identity
from stockade.proxy.metrics import Metrics
from stockade.proxy.responses import error_response
from stockade.proxy.tokens import Role, TokenEntry, TokenFileError, Tokens, load_tokens

logger = logging.getLogger(__name__)

REALM = "stockade"


class Group(enum.StrEnum):
    """The route groups access is configured by (``auth.anonymous``)."""

    PYPI = "pypi"
    NPM = "npm"
    MAVEN = "maven"
    EXPLAIN = "explain"
    METRICS = "metrics"
    UI = "ui"
    ADMIN = "admin"


# The roles that may use each group; admin may use every one.
_ROLES: dict[Group, frozenset[Role]] = {
    Group.PYPI: frozenset({Role.CLIENT, Role.ADMIN}),
    Group.NPM: frozenset({Role.CLIENT, Role.ADMIN}),
    Group.MAVEN: frozenset({Role.CLIENT, Role.ADMIN}),
    Group.EXPLAIN: frozenset({Role.ADMIN}),
    Group.METRICS: frozenset({Role.METRICS, Role.ADMIN}),
    Group.UI: frozenset(Role),
    Group.ADMIN: frozenset({Role.ADMIN}),
}
ROLES = web.RequestKey("roles", frozenset)  # the roles of the caller's token


def group_of(request: web.Request) -> Group | None:
    """The route group of ``request``; None for routes open to all (health checks,
    and paths no route answers)."""
    if request.path.startswith("/_stockade/ui"):
        return Group.UI
    route = request.match_info.route.name
    if route is None:
        return Group.ADMIN if request.path.startswith("/_stockade/") else None
    try:
        return _GROUPS[route]
    except KeyError:  # (route names are the route table's: a bounded set)
        group = _GROUPS[route] = _group_of_route(route)
        return group


_GROUPS: dict[str, Group | None] = {}  # by route name, once worked out


def _group_of_route(route: str) -> Group | None:
    """The group of a named route outside ``/_stockade/ui``."""
    eco = route.partition(":")[0]
    if route == "admin:explain":
        return Group.EXPLAIN
    if route == "ops:metrics":
        return Group.METRICS
    if route.startswith("ops:"):
        return None
    if eco in (Group.PYPI, Group.NPM, Group.MAVEN):
        return Group(eco)
    return Group.ADMIN  # anything else under /_stockade/ (reload, purge, approvals)


def presented_token(request: web.BaseRequest) -> str | None:
    """The token a request carries, or None when it carries no credential.

    An ``Authorization`` header that cannot be read yields ``""`` (a credential
    that is present and not valid).
    """
    header = request.headers.get(hdrs.AUTHORIZATION)
    if header is None:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except ValueError:  # not base64 (binascii.Error), not ASCII, not UTF-8
            return ""
        user, sep, password = decoded.partition(":")
        if not sep:
            return ""
        return password or user
    return ""


class TokenWatcher:
    """The tokens in force, read from ``auth.tokens`` and reloaded when it changes."""

    def __init__(self, path: Path | None, *, check_s: float = 2.0) -> None:
        self._path = path
        self._check_s = check_s
        self._stamp: tuple[int, int, int] | None = None
        self.tokens = Tokens()
        self._task: asyncio.Task[None] | None = None

    def _current_stamp(self) -> tuple[int, int, int] | None:
        if self._path is None:
            return None
        try:
            st = os.stat(self._path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def load(self) -> None:
        """Read the file now.

        Raises:
            TokenFileError: the file is invalid (the tokens in force stay).
        """
        if self._path is None:
            return
        stamp = self._current_stamp()
        tokens = load_tokens(self._path)
        self.tokens, self._stamp = tokens, stamp
        logger.info("tokens file %s: %d tokens in force", self._path, len(tokens.entries))

    async def poll(self) -> None:
        """Reload whenever the file's stamp changes; a bad file is logged once."""
        while True:
            await asyncio.sleep(self._check_s)
            stamp = await asyncio.to_thread(self._current_stamp)
            if stamp == self._stamp:
                continue
            try:
                await asyncio.to_thread(self.load)
            except TokenFileError as exc:
                self._stamp = stamp
                logger.error("tokens file reload rejected, the tokens in force stay: %s",
                             exc.diagnostics())

    async def lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        """``cleanup_ctx`` entry: load the file (a bad one stops the start), then watch it."""
        await asyncio.to_thread(self.load)
        if self._path is not None:
            self._task = asyncio.create_task(self.poll(), name="tokens-watcher")
        try:
            yield
        finally:
            if self._task is not None:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task


TOKENS = web.AppKey("tokens", TokenWatcher)


def identity_of_entry(entry: TokenEntry) -> Identity:
    """The identity a token stands for."""
    return Identity(entry.name, entry.team, Role.ADMIN in entry.roles)


def _unauthorized(request: web.Request, group: Group, sentence: str) -> web.Response:
    response = error_response(request, 401, sentence)
    scheme = "Bearer" if group is Group.NPM or group is Group.METRICS else "Basic"
    response.headers[hdrs.WWW_AUTHENTICATE] = f'{scheme} realm="{REALM}"'
    return response


class AccessCheck:
    """The access check ``responses.make_middleware`` runs before each handler
    (``__call__``: the 401 or 403 a request gets, or None when it may go on, its
    identity then set), and the same decision for the connection's fast path
    (``admits``), which counts nothing and leaves a refusal to the former."""

    def __init__(self, settings: AuthSettings, watcher: TokenWatcher,
                 metrics: Metrics) -> None:
        self._settings = settings
        self._watcher = watcher
        self._metrics = metrics
        # whether each group takes anonymous requests (settings are frozen: read once)
        self._anonymous = {group: bool(getattr(settings.anonymous, group.value))
                           for group in Group}

    def _decide(self, request: web.Request) -> tuple[Group | None, str | None,
                                                       TokenEntry | None]:
        """(group, why it is refused or None, the token's entry where one is valid)."""
        group = group_of(request)
        if group is None:
            return None, None, None
        # Without a tokens file there is nothing to check a credential against: it is
        # ignored, so clients configured with credentials for something else still work.
        token = presented_token(request) if self._settings.tokens is not None else None
        if token is None:
            return group, None if self._anonymous[group] else "missing", None
        entry = self._watcher.tokens.check(token)
        if entry is None:
            return group, "invalid", None
        # a valid token never gets less than no token: the role matters where the
        # group takes no anonymous requests
        if not self._anonymous[group] and not entry.roles & _ROLES[group]:
            return group, "role", entry
        return group, None, entry

    def _let_in(self, request: web.Request, entry: TokenEntry | None) -> None:
        if entry is not None:
            set_identity(request, identity_of_entry(entry))
            request[ROLES] = entry.roles

    def lets_in_anonymous(self, route: str | None) -> bool:
        """Whether a request with no credential (no ``Authorization``) for the named
        route, one outside ``/_stockade/``, is let in: what ``admits`` decides for it,
        without the request (the connection's fast path asks once per request)."""
        if route is None:
            return True
        try:
            group = _GROUPS[route]
        except KeyError:
            group = _GROUPS[route] = _group_of_route(route)
        return group is None or self._anonymous[group]

    def admits(self, request: web.Request) -> bool:
        """Whether ``__call__`` lets ``request`` go on (its identity then set as there);
        nothing is counted."""
        _, why, entry = self._decide(request)
        if why is not None:
            return False
        self._let_in(request, entry)
        return True

    def __call__(self, request: web.Request) -> web.Response | None:
        group, why, entry = self._decide(request)
        if why is None:
            self._let_in(request, entry)
            return None
        assert group is not None
        self._metrics.auth_refusals.labels(group.value, why).inc()
        if why == "missing":
            return _unauthorized(request, group, f"stockade: a token is required for "
                                 f"{group.value} (see the README, Access)")
        if why == "invalid":
            return _unauthorized(request, group,
                                 "stockade: the token is not valid (unknown, revoked or "
                                 "malformed)")
        assert entry is not None
        return error_response(request, 403, f"stockade: token {entry.name!r} may not "
                              f"use {group.value} (roles: {', '.join(sorted(entry.roles))})")


ACCESS = web.AppKey("access", AccessCheck)


def require_admin(request: web.Request) -> Identity:
    """The caller, who must hold an admin token (for admin actions in handlers).

    Raises:
        web.HTTPUnauthorized: no token came with the request.
        web.HTTPForbidden: the token is not an admin's.
    """
    who = identity_of(request)
    if who is None:
        raise web.HTTPUnauthorized(
            reason="stockade: an admin token is required",
            headers={hdrs.WWW_AUTHENTICATE: f'Basic realm="{REALM}"'})
    if not who.admin:
        raise web.HTTPForbidden(reason=f"stockade: {who.name} is not an admin")
    return who
