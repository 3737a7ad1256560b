"""A real Prometheus server on 127.0.0.1, scraping what a test names, and its query API."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from testbed.net import free_port

T = TypeVar("T")


def binary() -> str | None:
    """The ``prometheus`` executable, if installed."""
    return shutil.which("prometheus")


@contextmanager
def prometheus(folder: Path, scrape_configs: str) -> Iterator[Prometheus]:
    """Run Prometheus with a one-second scrape interval and ``scrape_configs`` (the
    YAML list's items, indented by two spaces); stop it on leaving."""
    executable = binary()
    if executable is None:
        raise RuntimeError("prometheus is not installed")
    config = folder / "prometheus.yml"
    config.write_text("global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                      f"scrape_configs:\n{scrape_configs}")
    port = free_port()
    log_path = folder / "prometheus.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(  # noqa: S603
            [executable, f"--config.file={config}", f"--storage.tsdb.path={folder / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            yield Prometheus(f"http://127.0.0.1:{port}", log_path)
        finally:
            server.terminate()
            server.wait(timeout=20)


class Prometheus:
    """A running server's query API."""

    def __init__(self, base: str, log_path: Path) -> None:
        self.base = base
        self.log_path = log_path

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector of ``expr``."""
        url = f"{self.base}/api/v1/query?query={urllib.parse.quote(expr)}"
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310
            body = json.loads(resp.read())
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def poll(self, expr: str, read: Callable[[list[dict[str, Any]]], T],
             done: Callable[[T], bool], timeout_s: float = 240.0) -> T:
        """``read`` of ``expr``'s result, asked every half second until ``done`` holds
        or ``timeout_s`` passes (Prometheus may be still starting: errors are retried);
        the last value either way."""
        deadline = time.monotonic() + timeout_s
        value = read([])
        while time.monotonic() < deadline and not done(value):
            time.sleep(0.5)
            try:
                value = read(self.query(expr))
            except OSError:
                continue
        return value

    def log_tail(self) -> str:
        """The end of the server's log, for a failing assertion."""
        return self.log_path.read_text(errors="replace")[-2000:]
