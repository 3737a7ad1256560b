"""JSON log lines: each carries a UTC timestamp; access lines are encoded once."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from stockade.proxy.cli import _JsonFormatter
from stockade.proxy.responses import JsonAccessLogger


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_every_json_line_has_an_iso_utc_time() -> None:
    record = logging.LogRecord("stockade.proxy.app", logging.INFO, __file__, 1,
                               "listening on %s", ("127.0.0.1:8080",), None)
    record.created = datetime(2025, 3, 4, 5, 6, 7, 891000, tzinfo=UTC).timestamp()
    line = json.loads(_JsonFormatter().format(record))
    assert line["time"] == "2025-03-04T05:06:07.891Z"
    assert line["message"] == "listening on 127.0.0.1:8080"
    assert datetime.fromisoformat(line["time"]).tzinfo is not None


def test_access_line_is_one_flat_object_encoded_once() -> None:
    logger = logging.getLogger("stockade.access.test")
    capture = _Capture()
    logger.addHandler(capture)
    logger.setLevel(logging.INFO)
    try:
        request = make_mocked_request("GET", "/pypi/simple/demo/?x=1",
                                      headers={"User-Agent": "pip/25"})
        JsonAccessLogger(logger, "").log(request, web.Response(status=200, body=b"abc"), 0.5)
    finally:
        logger.removeHandler(capture)
    (record,) = capture.records
    # the fields travel as a dict, not as JSON text parsed back and encoded again
    assert isinstance(record.__dict__["access"], dict)
    assert not record.getMessage().startswith("{")
    line = json.loads(_JsonFormatter().format(record))
    assert line["path"] == "/pypi/simple/demo/?x=1"
    assert line["status"] == 200
    assert line["user_agent"] == "pip/25"
    assert line["time"].endswith("Z")
    assert "message" not in line
