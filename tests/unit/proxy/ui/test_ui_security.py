"""The page's anti-CSRF tokens, origin checks, prefixes and form fields."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request

from stockade.config.model import ServerSettings
from stockade.proxy.identity import Identity
from stockade.proxy.ui import forms
from stockade.proxy.ui.csrf import TOKEN_TTL_S, CsrfError, CsrfTokens, check_same_origin
from stockade.proxy.ui.prefix import base, browser_origin
from stockade.proxy.ui.views import _safe_url

ALICE = Identity("alice", "platform", admin=True)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_tokens_are_bound_to_identity_key_and_time() -> None:
    clock = Clock()
    tokens = CsrfTokens(b"k" * 32, clock=clock)
    token = tokens.issue(ALICE)
    tokens.check(token, ALICE)
    for other in (Identity("alice", "platform", admin=False), Identity("bob", "platform", True),
                  Identity("alice", "payments", True)):
        with pytest.raises(CsrfError, match="not issued to you"):
            tokens.check(token, other)
    with pytest.raises(CsrfError, match="not issued to you"):
        CsrfTokens(b"x" * 32, clock=clock).check(token, ALICE)
    for broken in ("", "abc", "123.", ".abc", "12x.abc"):
        with pytest.raises(CsrfError):
            tokens.check(broken, ALICE)
    clock.now += TOKEN_TTL_S + 1
    with pytest.raises(CsrfError, match="expired"):
        tokens.check(token, ALICE)


@pytest.mark.parametrize(("headers", "ok"), [
    ({}, True),
    ({"Sec-Fetch-Site": "same-origin", "Origin": "http://stockade:8080"}, True),
    ({"Sec-Fetch-Site": "same-site"}, False),
    ({"Sec-Fetch-Site": "cross-site"}, False),
    ({"Sec-Fetch-Site": "none"}, False),
    ({"Origin": "null"}, False),
    ({"Origin": "http://stockade:8081"}, False),
    ({"Origin": "https://stockade:8080"}, False),
])
def test_same_origin(headers: dict[str, str], ok: bool) -> None:
    request = make_mocked_request("POST", "/_stockade/ui/approve", headers=headers)
    if ok:
        check_same_origin(request, "http://stockade:8080")
    else:
        with pytest.raises(CsrfError):
            check_same_origin(request, "http://stockade:8080")


def _request(headers: dict[str, str], remote: str = "10.0.0.5") -> Any:
    request = make_mocked_request("GET", "/_stockade/ui/", headers={"Host": "s:8080",
                                                                    **headers})
    return request.clone(remote=remote)


def test_prefix_only_from_trusted_proxies() -> None:
    trusting = ServerSettings(trusted_proxies=("10.0.0.0/8",))
    assert base(_request({"X-Forwarded-Prefix": "/mirror/"}), trusting) == \
        "/mirror/_stockade/ui/"
    assert base(_request({"X-Forwarded-Prefix": "/a/b"}), trusting) == \
        "/a/b/_stockade/ui/"
    for hostile in ("//evil", "/a/../b", "evil", "/a b", "/a?b", "/%2e%2e"):
        assert base(_request({"X-Forwarded-Prefix": hostile}), trusting) == \
            "/_stockade/ui/", hostile
    assert base(_request({"X-Forwarded-Prefix": "/mirror"}, remote="192.0.2.1"),
                trusting) == "/_stockade/ui/"
    public = ServerSettings(public_url="https://tools.example.com/")
    assert browser_origin(_request({}), public) == \
        "https://tools.example.com"


def test_form_fields() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    assert forms.moment("24h", "since", now=now) == now - timedelta(hours=24)
    assert forms.moment("7d", "until", now=now, future=True) == now + timedelta(days=7)
    assert forms.moment("2026-01-31", "since", now=now) == datetime(2026, 1, 31, tzinfo=UTC)
    assert forms.moment("", "since", now=now) is None
    with pytest.raises(forms.FormError, match="since 'soon'"):
        forms.moment("soon", "since", now=now)
    with pytest.raises(forms.FormError, match="unknown ecosystem"):
        forms.ecosystem("cargo")
    assert forms.ecosystem("") == ""
    with pytest.raises(forms.FormError):
        forms.ecosystem("", required=True)
    with pytest.raises(forms.FormError, match="not a whole number"):
        forms.number("-1", "page")
    with pytest.raises(forms.FormError, match="longer than"):
        forms.text("x" * 1000, "name")


def test_upstream_urls_lose_credentials() -> None:
    assert _safe_url("https://u:p@npm.example.com:8443/r/?t=1#f") == \
        "https://npm.example.com:8443/r/"
    assert _safe_url("http://[::1]:9/simple/") == "http://[::1]:9/simple/"
