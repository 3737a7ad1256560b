"""Who asked, in the access log; admin actions refuse callers who are not admins."""

from __future__ import annotations

import json
import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from stockade.proxy.accesslog import JsonAccessLogger
from stockade.proxy.auth import require_admin
from stockade.proxy.cli import _JsonFormatter
from stockade.proxy.identity import Identity, set_identity


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _logged(request: web.BaseRequest) -> dict[str, object]:
    logger = logging.getLogger("stockade.access.identity-test")
    capture = _Capture()
    logger.addHandler(capture)
    logger.setLevel(logging.INFO)
    try:
        JsonAccessLogger(logger, "").log(request, web.Response(status=200), 0.1)
    finally:
        logger.removeHandler(capture)
    (record,) = capture.records
    line: dict[str, object] = json.loads(_JsonFormatter().format(record))
    return line


def test_the_access_line_names_the_identity_and_team_never_the_token() -> None:
    token = "stk_1234abcd_" + "S" * 43
    request = make_mocked_request("GET", "/npm/x", headers={"Authorization": f"Bearer {token}"})
    set_identity(request, Identity("pay-ci", "payments"))
    line = _logged(request)
    assert (line["identity"], line["team"]) == ("pay-ci", "payments")
    assert token not in json.dumps(line)
    anonymous = _logged(make_mocked_request("GET", "/npm/x"))
    assert (anonymous["identity"], anonymous["team"]) == (None, None)


def test_require_admin() -> None:
    request = make_mocked_request("POST", "/_stockade/ui/approve")
    with pytest.raises(web.HTTPUnauthorized) as missing:
        require_admin(request)
    assert missing.value.headers["WWW-Authenticate"].startswith("Basic")
    set_identity(request, Identity("dev", "tools"))
    with pytest.raises(web.HTTPForbidden):
        require_admin(request)
    set_identity(request, Identity("ops", None, admin=True))
    assert require_admin(request).name == "ops"
