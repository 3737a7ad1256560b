"""Real S3 server processes on loopback: moto in server mode, rclone serve s3.

moto keeps objects in memory and implements AWS's conditional writes
(``If-None-Match: *``, ``If-Match``) as S3 does, which the replica tests rely
on. Buckets are made per test, so one server serves a whole test session.
rclone keeps objects as files, for end-to-end tests with several processes.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from testbed.net import free_port

# moto checks no signature; the client still needs something to sign with.
ACCESS_KEY = "stockade-test"
SECRET_KEY = "stockade-test-secret"  # noqa: S105 (moto checks no credentials)
KEY_ENV = "TEST_S3_ACCESS_KEY"
SECRET_ENV = "TEST_S3_SECRET_KEY"  # noqa: S105 (a variable's name)
ENVIRON = {KEY_ENV: ACCESS_KEY, SECRET_ENV: SECRET_KEY}


class MotoServer:
    """``moto_server`` on 127.0.0.1 at a free port; ``start``, then ``stop``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60.0) -> None:
        self._proc = subprocess.Popen(  # noqa: S603 (our own interpreter, fixed arguments)
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self._proc.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=2):  # noqa: S310
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"moto_server did not answer on {self.url} in {timeout_s}s")

    def stop(self) -> None:
        _stop(self._proc)
        self._proc = None

    def new_bucket(self) -> str:
        """Create an empty bucket with a fresh name; its name."""
        name = f"stockade-{uuid.uuid4().hex[:16]}"
        request = urllib.request.Request(f"{self.url}/{name}", method="PUT")  # noqa: S310
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310
            return name

    def settings(self, bucket: str, **extra: Any) -> dict[str, Any]:
        """The ``storage.s3`` block for ``bucket`` on this server."""
        return {"bucket": bucket, "endpoint_url": self.url, "access_key_id_env": KEY_ENV,
                "secret_access_key_env": SECRET_ENV, **extra}


class RcloneS3:
    """``rclone serve s3`` over a local folder: a real S3 server process whose
    objects are files, so they outlive the stockade processes using them.

    It ignores conditional writes (``If-None-Match``), so tests that need AWS's
    first-writer-wins semantics use ``MotoServer``.
    """

    def __init__(self, root: Path, rclone: str) -> None:
        self.root = root
        self.rclone = rclone
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60.0) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        log = (self.root.parent / "rclone.log").open("ab")
        self._proc = subprocess.Popen(  # noqa: S603 (fixed arguments)
            [self.rclone, "serve", "s3", "--addr", f"127.0.0.1:{self.port}",
             "--auth-key", f"{ACCESS_KEY},{SECRET_KEY}", "--config", "/dev/null",
             str(self.root)],
            stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"rclone exited with {self._proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"rclone serve s3 did not listen on {self.url} in {timeout_s}s")

    def stop(self) -> None:
        _stop(self._proc)
        self._proc = None

    def new_bucket(self) -> str:
        """A bucket (a folder) with a fresh name; its name."""
        name = f"stockade-{uuid.uuid4().hex[:16]}"
        (self.root / name).mkdir()
        return name

    def settings(self, bucket: str, **extra: Any) -> dict[str, Any]:
        """The ``storage.s3`` block for ``bucket`` on this server."""
        return {"bucket": bucket, "endpoint_url": self.url, "access_key_id_env": KEY_ENV,
                "secret_access_key_env": SECRET_ENV, **extra}


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    """Terminate a server process, killing it if it does not go within 10 s."""
    if proc is None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
