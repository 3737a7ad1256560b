"""Running ``stockade serve`` as a real process for end-to-end tests."""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.net import free_port


def stockade_command() -> list[str]:
    """The installed console script, as a user would run it."""
    script = Path(sys.executable).parent / "stockade"
    if script.exists():
        return [str(script)]
    found = shutil.which("stockade")
    if found is None:
        pytest.skip("the stockade console script is not installed (pip install .)")
    return [found]


@dataclass
class ProxyProcess:
    """``stockade serve`` running with a config written by the test."""

    workdir: Path
    config: dict[str, Any]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    # with server.tls set: the CA bundle its readiness is checked with
    cafile: Path | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.config.get("server", {}).get("tls") else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "stockade.log"

    def start(self) -> ProxyProcess:
        cfg = {**self.config, "server": {**self.config.get("server", {}),
                                         "host": "127.0.0.1", "port": self.port}}
        path = self.workdir / "stockade.yaml"
        path.write_text(yaml.safe_dump(cfg))
        env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKADE")}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603
                [*stockade_command(), "serve", "--config", str(path)],
                cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, env=env,
            )
        deadline = time.monotonic() + 180  # start-up builds the name index: slow when loaded
        context = None if self.cafile is None else ssl.create_default_context(
            cafile=str(self.cafile))
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"stockade exited early:\n{self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2,  # noqa: S310
                                            context=context) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        raise RuntimeError(f"stockade did not become ready:\n{self.log_path.read_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture
def proxy_process(tmp_path: Path) -> Iterator[Any]:
    started: list[ProxyProcess] = []

    def start(config: dict[str, Any], cafile: Path | None = None) -> ProxyProcess:
        proc = ProxyProcess(tmp_path, config, cafile=cafile)
        started.append(proc)  # stopped at the end even when it never became ready
        return proc.start()

    yield start
    for proc in started:
        proc.stop()
