"""A real npm registry (Verdaccio) on 127.0.0.1 for end-to-end tests, and npm helpers.

Verdaccio and pnpm are installed by ``.ci/setup-npm.sh`` under ``.ci/.tools/npm``;
tests skip, saying so, where they are absent. Verdaccio runs with no uplinks,
so nothing it serves comes from outside: the packages are packed and published
into it by the test with the real ``npm publish``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from testbed.net import free_port

TOOLS = Path(__file__).resolve().parents[1] / ".ci" / ".tools" / "npm" / "node_modules" / ".bin"


def tool(name: str) -> str:
    """The path of an npm-side tool, or a skip saying how to install it."""
    path = TOOLS / name
    if path.exists():
        return str(path)
    if name == "npm" and shutil.which("npm"):
        return str(shutil.which("npm"))
    pytest.skip(f"{name} is not installed here: run .ci/setup-npm.sh")
    raise AssertionError  # unreachable: skip raises


def npm_env(home: Path) -> dict[str, str]:
    """An environment in which npm and pnpm read no configuration but the test's."""
    env = {k: v for k, v in os.environ.items()
           if not k.lower().startswith(("npm_", "pnpm_", "yarn_"))}
    env["HOME"] = str(home)
    env["XDG_CONFIG_HOME"] = str(home / ".config")
    env["XDG_CACHE_HOME"] = str(home / ".cache")
    env["XDG_DATA_HOME"] = str(home / ".local" / "share")
    env["npm_config_update_notifier"] = "false"
    home.mkdir(parents=True, exist_ok=True)
    return env


def run(cmd: list[str], cwd: Path, env: dict[str, str], *, check: bool = True,
        timeout: float = 180) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(  # noqa: S603
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


@dataclass
class Verdaccio:
    """A Verdaccio server with no uplinks, its log parsed for the requests it served."""

    root: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def log_path(self) -> Path:
        return self.root / "verdaccio.log"

    def start(self) -> Verdaccio:
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "config.yaml"
        config.write_text(json.dumps({
            "storage": str(self.root / "storage"),
            "auth": {"htpasswd": {"file": str(self.root / "htpasswd"), "max_users": 1000}},
            "uplinks": {},
            "packages": {"**": {"access": "$all", "publish": "$all", "unpublish": "$all"}},
            "server": {"keepAliveTimeout": 60},
            "log": {"type": "stdout", "format": "json", "level": "http"},
        }))
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603
                [tool("verdaccio"), "--config", str(config), "--listen",
                 f"127.0.0.1:{self.port}"],
                cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
                env=npm_env(self.root / "home"),
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"verdaccio exited:\n{self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(self.url + "-/ping", timeout=2):  # noqa: S310
                    return self
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        raise RuntimeError(f"verdaccio did not start:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def served(self) -> list[str]:
        """The request lines Verdaccio logged (``GET /path``)."""
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            req = record.get("request") or {}
            if isinstance(req, dict) and req.get("url"):
                out.append(f"{req.get('method', '')} {req['url']}")
        return out

    def tarball_gets(self) -> list[str]:
        return [r for r in self.served() if r.startswith("GET ") and r.endswith(".tgz")]

    def publish(self, workdir: Path, manifest: dict[str, Any], files: dict[str, str]) -> None:
        """Pack and publish one package with the real ``npm publish``."""
        pkg = workdir / "src" / manifest["name"].replace("/", "__") / manifest["version"]
        pkg.mkdir(parents=True)
        (pkg / "package.json").write_text(json.dumps(manifest, indent=2))
        for name, text in files.items():
            (pkg / name).write_text(text)
        home = workdir / "publisher"
        env = npm_env(home)
        host = self.url.removeprefix("http:")
        (home / ".npmrc").write_text(f"registry={self.url}\n{host}:_authToken=e2e-token\n")
        run([tool("npm"), "publish", "--registry", self.url, "--userconfig",
             str(home / ".npmrc"), "--cache", str(home / "cache")],
            pkg, env)
