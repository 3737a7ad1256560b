"""What a serving process has not imported by the time it answers its first request:
libraries the first request does not need are imported when first used, not at start.
Read from ``sys.modules`` of a real ``stockade serve`` (one process), asked from a
thread of that process once ``/healthz`` answered (pure-Python libraries map no file
that ``/proc/PID/maps`` would show)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from testbed.net import free_port

pytestmark = pytest.mark.timeout(900)  # a real start-up on a busy machine

_ROOT = Path(__file__).resolve().parents[2]

# serves in the main thread; a second thread waits for /healthz, notes what is
# imported, reads a version (which must import univers), notes again and stops it
_PROBE = """
import json, os, signal, sys, threading, time, urllib.request

from stockade.proxy.cli import main


def probe() -> None:
    deadline = time.monotonic() + 600
    while True:
        try:
            with urllib.request.urlopen(sys.argv[2], timeout=30) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            os._exit(3)
        time.sleep(0.05)
    seen = {"after first answer": "univers" in sys.modules}
    from stockade.policy.model import Ecosystem
    from stockade.policy.versions import parse_version
    seen["version read"] = parse_version(Ecosystem.MAVEN, "1.2.3") is not None
    seen["after a version is read"] = "univers" in sys.modules
    print(json.dumps(seen), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)


threading.Thread(target=probe, daemon=True).start()
sys.exit(main(["serve", "--config", sys.argv[1]]))
"""


def test_univers_is_imported_when_a_version_is_first_read(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(
        {"rules": {"typosquat": {"enabled": False}}}))
    port = free_port()
    config = tmp_path / "stockade.yaml"
    config.write_text(yaml.safe_dump({
        "server": {"host": "127.0.0.1", "port": port, "workers": 1},
        "storage": {"path": str(tmp_path / "data")},
        "policy": {"file": str(tmp_path / "policy.yaml")},
    }))
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKADE")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-c", _PROBE, str(config), f"http://127.0.0.1:{port}/healthz"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=800, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, done.stdout + done.stderr
    assert json.loads(lines[-1]) == {"after first answer": False, "version read": True,
                                     "after a version is read": True}
