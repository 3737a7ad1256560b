"""Keeping other sites from acting through an admin's browser.

Owns the two checks every form the page receives must pass: the request comes
from the page itself (``Sec-Fetch-Site``, ``Origin``), and it carries a token
the page issued to the same identity not long ago (an HMAC over the issue time
and the identity, so it needs no server-side session and is useless to anyone
else). Both are needed: a browser too old to send the fetch metadata is still
covered by the token, and a leaked token is still refused from another site.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable

from aiohttp import web

from stockade.proxy.identity import Identity

TOKEN_TTL_S = 8 * 3600.0  # a form left open over a working day still works


class CsrfError(Exception):
    """A form that must not be acted on; the message says why."""


def _mac(key: bytes, issued: int, who: Identity) -> str:
    subject = f"{issued}\0{who.name}\0{who.team or ''}\0{int(who.admin)}".encode()
    digest = hmac.new(key, subject, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


class CsrfTokens:
    """Issues and checks the page's anti-CSRF tokens under one key."""

    def __init__(self, key: bytes, *, clock: Callable[[], float] = time.time) -> None:
        self._key = key
        self._clock = clock

    def issue(self, who: Identity) -> str:
        """A token for forms shown to ``who``."""
        issued = int(self._clock())
        return f"{issued}.{_mac(self._key, issued, who)}"

    def check(self, token: str, who: Identity) -> None:
        """Accept ``token`` for ``who``.

        Raises:
            CsrfError: it was not issued to ``who`` by this key, or it expired.
        """
        issued_text, _, mac = token.partition(".")
        if not issued_text.isdigit() or not mac:
            raise CsrfError("the form carries no valid anti-CSRF token; reload the page")
        issued = int(issued_text)
        if not hmac.compare_digest(mac, _mac(self._key, issued, who)):
            raise CsrfError("the form's anti-CSRF token was not issued to you by this "
                            "server; reload the page")
        age = self._clock() - issued
        if age < -60 or age > TOKEN_TTL_S:
            raise CsrfError("the form's anti-CSRF token has expired; reload the page")


def check_same_origin(request: web.Request, expected_origin: str) -> None:
    """Refuse a request a browser sent on behalf of another site.

    Raises:
        CsrfError: ``Sec-Fetch-Site`` or ``Origin`` says it came from elsewhere.
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site != "same-origin":
        raise CsrfError(f"the form was sent from another site (Sec-Fetch-Site: {site})")
    sent = request.headers.get("Origin")
    if sent is not None and sent.rstrip("/") != expected_origin:
        raise CsrfError("the form was sent from another origin than this page's")
