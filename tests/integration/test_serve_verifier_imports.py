"""``stockade serve`` and the provenance verifiers' libraries: with a provenance rule in
the policy, every serving process has them loaded before it answers (the supervisor
imports them before forking its workers, a single process before it listens); without
one, no process has them loaded at all. Read from ``/proc/PID/maps``: cryptography's
native module is mapped into a process exactly when cryptography was imported."""

from __future__ import annotations

import signal
import urllib.request
from pathlib import Path

import pytest
import yaml

from testbed.net import free_port
from testbed.procs import children, serve

pytestmark = [pytest.mark.skipif(not Path("/proc/self/maps").exists(),
                                 reason="reads /proc/PID/maps"),
              pytest.mark.timeout(900)]  # real start-ups on a busy machine


def _maps_cryptography(pid: int) -> bool:
    return "/cryptography/" in Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("provenance", [True, False])
def test_serving_processes_load_the_verifiers_only_with_a_provenance_rule(
        tmp_path: Path, workers: int, provenance: bool) -> None:
    rules: dict[str, object] = {"typosquat": {"enabled": False}}
    if provenance:
        rules["provenance"] = {}
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump({"rules": rules}))
    port = free_port()
    config = tmp_path / "stockade.yaml"
    config.write_text(yaml.safe_dump({
        "server": {"host": "127.0.0.1", "port": port, "workers": workers},
        "storage": {"path": str(tmp_path / "data")},
        "policy": {"file": str(tmp_path / "policy.yaml")},
    }))
    proc = serve(config, tmp_path / "serve.log", cwd=tmp_path)
    try:
        url = f"http://127.0.0.1:{port}/healthz"
        with urllib.request.urlopen(url, timeout=30) as resp:
            assert resp.status == 200
        pids = {proc.pid, *children(proc.pid)}
        assert len(pids) == (1 if workers == 1 else workers + 1)
        assert {pid: _maps_cryptography(pid) for pid in pids} == \
            dict.fromkeys(pids, provenance)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
