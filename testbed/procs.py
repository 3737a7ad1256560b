"""Real ``stockade serve`` processes for tests, and processes as ``/proc`` shows them
(Linux), for tests that look at a server's workers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

_SRC = Path(__file__).resolve().parents[1]


def children(pid: int) -> set[int]:
    """The processes whose parent is ``pid``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def serve(config: Path, log: Path, *, cwd: Path | None = None,
          wait_s: float = 300.0) -> subprocess.Popen[bytes]:
    """A real ``stockade serve --config config`` of this checkout, its output into
    ``log``, once it says it is listening (an environment without ``STOCKADE*``
    variables). The caller stops it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKADE")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_SRC), env.get("PYTHONPATH")]))
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "stockade.proxy.cli", "serve", "--config", str(config)],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    try:
        deadline = time.monotonic() + wait_s
        while "listening on" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc
