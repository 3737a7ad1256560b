"""``stockade serve`` as an operator runs it: start-up errors are one line, exit 2;
slow and greedy clients are bounded. Real processes, raw sockets, 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.timeout(300)  # several real start-ups on a busy machine


def _command() -> list[str]:
    return [sys.executable, "-m", "stockade.proxy.cli"]


def _config(tmp_path: Path, storage: Path, port: int, **server: object) -> Path:
    path = tmp_path / "stockade.yaml"
    path.write_text(yaml.safe_dump({
        "server": {"host": "127.0.0.1", "port": port, **server},
        "storage": {"path": str(storage), "min_free_bytes": 0},
        "pypi": {"upstreams": []}, "npm": {"upstreams": []}, "maven": {"upstreams": []},
    }))
    return path


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("STOCKADE")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, env=_env(),  # noqa: S603
                          timeout=240, check=False)


def _one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "listening on" not in result.stderr  # never claimed before the bind
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("stockade: ")]
    for word in words:
        assert word in line


def test_a_port_in_use_is_one_line_naming_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run([*_command(), "serve", "--config",
                       str(_config(tmp_path, tmp_path / "data", port))])
    _one_line_error(result, f"cannot listen on 127.0.0.1:{port}", "in use")


def test_storage_that_cannot_be_made_is_one_line_naming_it(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    storage = tmp_path / "a-file" / "data"
    result = _run([*_command(), "serve", "--config",
                   str(_config(tmp_path, storage, _free_port()))])
    _one_line_error(result, "cannot use storage at", str(tmp_path / "a-file"))


class _Server:
    def __init__(self, tmp_path: Path, **server: object) -> None:
        self.port = _free_port()
        self.log = tmp_path / "serve.log"
        config = _config(tmp_path, tmp_path / "data", self.port, **server)
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(  # noqa: S603
                [*_command(), "serve", "--config", str(config)],
                stdout=log, stderr=subprocess.STDOUT, env=_env())
        _poll(lambda: "listening on" in self.log.read_text() or self.proc.poll() is not None,
              120)
        assert self.proc.poll() is None, self.log.read_text()

    def connect(self, source: str = "127.0.0.1") -> socket.socket:
        sock = socket.socket()
        sock.bind((source, 0))
        sock.settimeout(30)
        sock.connect(("127.0.0.1", self.port))
        return sock

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


def _poll(condition: Callable[[], bool], bound_s: float) -> None:
    deadline = time.monotonic() + bound_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


@pytest.fixture
def server(tmp_path: Path) -> Iterator[_Server]:
    running = _Server(tmp_path, header_timeout_s=1, max_connections_per_client=2)
    yield running
    if running.proc.poll() is None:
        running.proc.kill()
        running.proc.wait()


def test_serve_bounds_a_slowloris_and_a_greedy_client(server: _Server) -> None:
    slow = server.connect()
    started = time.monotonic()
    slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")  # and never the blank line
    assert _read_all(slow).startswith(b"HTTP/1.1 408")
    assert time.monotonic() - started < 20  # bound 1 s; generous on a busy machine
    slow.close()

    # Three at once from one address: one is refused. Which one is the kernel's
    # choice where worker processes accept them (each worker accepts in its turn);
    # the two let in say nothing and time out.
    greedy = [server.connect(), server.connect(), server.connect()]
    other = server.connect("127.0.0.2")  # another client is still served
    other.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert _read_all(other).startswith(b"HTTP/1.1 200")
    answers = sorted(_read_all(sock)[:12] for sock in greedy)
    assert answers == [b"HTTP/1.1 408", b"HTTP/1.1 408", b"HTTP/1.1 503"]
    for sock in (*greedy, other):
        sock.close()
    assert server.stop() == 0
    log = server.log.read_text()
    assert "Traceback" not in log
