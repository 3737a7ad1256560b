"""JSON log lines: each carries a UTC timestamp; access lines are encoded once."""

from __future__ import annotations

import io
import json
import logging
import os
from datetime import UTC, datetime

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from stockade.proxy.accesslog import BufferedLineHandler, JsonAccessLogger, utc_time
from stockade.proxy.cli import _JsonFormatter
from stockade.proxy.responses import REQUEST_ID


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


def _server_logging(stream: io.StringIO) -> tuple[logging.Logger, list[logging.Handler]]:
    """The server's own set-up (``cli._setup_logging``) over ``stream``; the root
    logger's handlers it replaced, to put back."""
    handler = BufferedLineHandler(stream)
    handler.setFormatter(_JsonFormatter())
    root = logging.getLogger()
    kept = root.handlers[:]
    root.handlers[:] = [handler]
    logger = logging.getLogger("stockade.access")
    logger.setLevel(logging.INFO)
    return logger, kept


def _access_line(logger: logging.Logger, request_id: str) -> None:
    request = make_mocked_request("GET", "/pypi/files/demo/demo-1.0.whl",
                                  headers={"User-Agent": "pip/25 \u00e9",
                                           "X-Request-Id": request_id})
    request[REQUEST_ID] = request_id
    JsonAccessLogger(logger, "").log(request, web.Response(status=200, body=b"abc"), 0.25)


def test_access_line_under_the_servers_set_up_is_made_without_a_record(
        monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    logger, kept = _server_logging(stream)
    try:
        made = []
        monkeypatch.setattr(JsonAccessLogger, "_record",
                            lambda self, *args: made.append(args))  # never called
        _access_line(logger, "direct")
        logging.getLogger().handlers[0].flush()
        assert made == []
        monkeypatch.undo()
        # a filter on the way: the record goes through logging, the same line comes out
        logger.addFilter(lambda record: True)
        _access_line(logger, "through-logging")
        logging.getLogger().handlers[0].flush()
    finally:
        logger.filters.clear()
        logging.getLogger().handlers[:] = kept
    direct, through = (json.loads(line) for line in stream.getvalue().splitlines())
    assert stream.getvalue().isascii()  # non-ASCII escaped, as json.dumps does
    assert direct.pop("request_id") == "direct"
    assert through.pop("request_id") == "through-logging"
    assert direct.pop("time")[:16] == through.pop("time")[:16]
    assert direct == through
    assert list(direct)[:3] == ["level", "logger", "pid"]
    assert direct["pid"] == os.getpid()
    assert direct["user_agent"] == "pip/25 \u00e9"
    assert direct["logger"] == "stockade.access"


@pytest.mark.parametrize("created", [
    datetime(2025, 3, 4, 5, 6, 7, 891000, tzinfo=UTC).timestamp(),
    datetime(2025, 3, 4, 5, 6, 7, 999999, tzinfo=UTC).timestamp(),
    datetime(2025, 12, 31, 23, 59, 59, 1000, tzinfo=UTC).timestamp(),
    0.0,
    1_700_000_000.0004,
])
def test_utc_time_is_isoformat_in_milliseconds(created: float) -> None:
    stamp = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    assert utc_time(created) == stamp.removesuffix("+00:00") + "Z"
    assert utc_time(created) == stamp.removesuffix("+00:00") + "Z"  # from the kept second
