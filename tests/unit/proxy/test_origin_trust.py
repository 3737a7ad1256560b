"""Which peers may move the origin with X-Forwarded-*: those in server.trusted_proxies,
by address; a peer whose address carries a zone never (a zone names a link, and the
setting's networks name none)."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from aiohttp.test_utils import make_mocked_request

from stockade.config.model import ServerSettings
from stockade.proxy.origin import origin

SETTINGS = ServerSettings(trusted_proxies=("127.0.0.1/32", "fe80::1/128"))


def _transport(remote: str) -> Any:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = (
        lambda key, default=None: (remote, 40000) if key == "peername" else default)
    return transport


@pytest.mark.parametrize(("remote", "moved"), [
    ("127.0.0.1", True),
    ("fe80::1", True),
    ("fe80::1%eth1", False),  # the same address on another link: another host
    ("10.0.0.5", False),
])
def test_only_a_listed_peer_moves_the_origin(remote: str, moved: bool) -> None:
    request = make_mocked_request(
        "GET", "/", headers={"Host": "stockade.internal:8080",
                             "X-Forwarded-Proto": "https",
                             "X-Forwarded-Host": "pkgs.example.com"},
        transport=_transport(remote))
    expected = "https://pkgs.example.com" if moved else "http://stockade.internal:8080"
    assert origin(request, SETTINGS) == expected
