"""A real S3 server process on loopback: moto in server mode.

moto keeps objects in memory and implements AWS's conditional writes
(``If-None-Match: *``, ``If-Match``) as S3 does, which the replica tests rely
on. Buckets are made per test, so one server serves a whole test session.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

from testbed.net import free_port

# moto checks no signature; the client still needs something to sign with.
ACCESS_KEY = "stockade-test"
SECRET_KEY = "stockade-test-secret"  # noqa: S105 (moto checks no credentials)
KEY_ENV = "STOCKADE_TEST_S3_KEY"
SECRET_ENV = "STOCKADE_TEST_S3_SECRET"  # noqa: S105 (a variable's name)
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
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
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
