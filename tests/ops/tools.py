"""What the operations tests share: where things are, finding tools, waiting on HTTP.

Tools these tests need are installed by .ci/setup-ops.sh; where one is missing
the test skips and says which and how to get it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from testbed.net import free_port

__all__ = ["free_port"]

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "stockade"
RULES = CHART / "rules" / "stockade.rules.yaml"
RULE_TESTS = CHART / "rules" / "stockade.rules.test.yaml"
DASHBOARD = CHART / "dashboards" / "stockade.json"
DOCKERFILE = REPO / "Dockerfile"

SETUP = ".ci/setup-ops.sh installs it"


def tool(name: str) -> str:
    """The path of an executable, from this environment's bin first; else skip."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed ({SETUP})")
    # a version manager's shim can stand on the PATH for a tool it no longer has
    probe = subprocess.run([found, "--version"], capture_output=True, check=False)  # noqa: S603
    if probe.returncode != 0:
        pytest.skip(f"{name} on the PATH ({found}) does not run ({SETUP})")
    return found




def http_get(url: str, timeout_s: float = 10) -> tuple[int, bytes]:
    """Status and body; an HTTP error status is returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_until_ready(url: str, proc: subprocess.Popen[bytes], log: Path,
                     timeout_s: float = 60) -> None:
    """Poll ``url`` until it answers 200; fail early if ``proc`` exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args!r} exited with {proc.returncode}:\n"
                        f"{log.read_text(errors='replace')[-3000:]}")
        try:
            if http_get(url, timeout_s=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    pytest.fail(f"{url} did not answer 200 within {timeout_s} s:\n"
                f"{log.read_text(errors='replace')[-3000:]}")


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 20) -> int:
    """SIGTERM, then SIGKILL if it does not exit in time; the exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def metric_names(expr: str) -> set[str]:
    """Every metric a PromQL expression selects (read by promql-parser; else skip)."""
    promql = pytest.importorskip("promql_parser",
                                 reason=f"promql-parser is not installed ({SETUP})")
    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql.VectorSelector) and node.name:
            names.add(node.name)

    promql.walk(promql.parse(expr), visit)
    return names
