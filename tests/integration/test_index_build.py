"""The typosquat index files on a first start: built outside the serving processes.

Real ``stockade serve`` processes (two workers) over an index cache folder of the
test's own. A first start has each missing file built by a child process of its own
(the log names it) and then maps the files in the supervisor and in every worker:
a process that built an index holds it as objects and maps no file. A second start
builds nothing; two starts at once build each file once; a folder that cannot be
written still serves (the server builds in its own process, as it always did); and
the files ``stockade index build`` wrote ahead, in a read-only prebuilt folder, are
mapped by a serve that builds nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.net import free_port
from testbed.procs import children

pytestmark = pytest.mark.timeout(900)  # index builds on a busy two-core machine

_SRC = Path(__file__).resolve().parents[2]
_FILES = 6  # a name index and a loose index per ecosystem
_BUILT = "built by process"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKADE")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_SRC), env.get("PYTHONPATH")]))
    return {**env, **extra}


class Served:
    """``stockade serve`` (two workers, no upstreams) with the given environment."""

    def __init__(self, folder: Path, env: dict[str, str],
                 policy: dict[str, Any] | None = None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log = folder / "serve.log"
        config = folder / "stockade.yaml"
        if policy is not None:
            (folder / "policy.yaml").write_text(yaml.safe_dump(policy))
        config.write_text(yaml.safe_dump({
            "policy": {"file": None if policy is None else str(folder / "policy.yaml")},
            "server": {"host": "127.0.0.1", "port": self.port, "workers": 2},
            "storage": {"path": str(folder / "data")},
            "pypi": {"upstreams": []}, "maven": {"upstreams": []},
            # never reached: a typosquat is refused before its metadata is asked for
            "npm": {"upstreams": [{"name": "npmjs", "retries": 0,
                                   "url": f"http://127.0.0.1:{free_port()}/"}]}}))
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "stockade.proxy.cli", "serve", "--config",
                 str(config)], stdout=log, stderr=subprocess.STDOUT, env=env)

    def wait_listening(self, bound_s: float = 600) -> Served:
        deadline = time.monotonic() + bound_s
        while "listening on" not in self.log.read_text():
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.05)
        return self

    def messages(self) -> list[str]:
        return [json.loads(line)["message"] for line in self.log.read_text().splitlines()
                if line.startswith("{")]

    def builders(self) -> set[int]:
        """The processes the log says built an index file."""
        return {int(m.rsplit(" ", 1)[1]) for m in self.messages() if _BUILT in m}

    def serving(self) -> set[int]:
        """The supervisor and its workers, once every worker has started."""
        deadline = time.monotonic() + 120
        while len(workers := children(self.proc.pid)) < 2:
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.05)
        return {self.proc.pid, *workers}

    def refuses(self, name: str) -> str:
        """The reason phrase of the refusal of npm package ``name``."""
        url = f"http://127.0.0.1:{self.port}/npm/{name}"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=60)
        refused.value.close()
        assert refused.value.code == 403
        return str(refused.value.reason)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=120) == 0, self.log.read_text()[-3000:]


@pytest.fixture
def started() -> Iterator[list[Served]]:
    servers: list[Served] = []
    yield servers
    for served in servers:
        if served.proc.poll() is None:
            served.proc.kill()
            served.proc.wait()


def _mapped(pid: int) -> set[Path]:
    """The index files process ``pid`` maps."""
    return {Path(line.split(maxsplit=5)[5].strip())
            for line in Path(f"/proc/{pid}/maps").read_text().splitlines()
            if line.rstrip().endswith(".packed")}


def _files(folder: Path) -> set[Path]:
    return set(folder.glob("*.packed"))


def test_a_first_start_builds_in_children_and_a_second_maps_the_files(
        tmp_path: Path, started: list[Served]) -> None:
    cache = tmp_path / "index"
    env = _env(STOCKADE_INDEX_CACHE=str(cache))
    first = Served(tmp_path / "first", env)
    started.append(first)
    first.wait_listening()
    built = _files(cache)
    assert len(built) == _FILES
    serving = first.serving()
    assert len([m for m in first.messages() if _BUILT in m]) == _FILES
    assert first.builders()
    assert not first.builders() & serving
    for pid in serving:  # each maps every file: none of them built an index
        assert _mapped(pid) == built, pid
    assert "typosquat" in first.refuses("expresss")
    first.stop()

    second = Served(tmp_path / "second", env)
    started.append(second)
    second.wait_listening()
    assert not second.builders()
    assert _files(cache) == built
    assert all(_mapped(pid) == built for pid in second.serving())
    second.stop()


def test_two_starts_at_once_build_each_file_once(tmp_path: Path,
                                                 started: list[Served]) -> None:
    cache = tmp_path / "index"
    env = _env(STOCKADE_INDEX_CACHE=str(cache))
    both = [Served(tmp_path / name, env) for name in ("one", "two")]
    started.extend(both)
    for served in both:
        served.wait_listening()
    messages = [m for served in both for m in served.messages() if _BUILT in m]
    assert len(messages) == _FILES, messages
    for served in both:
        assert all(_mapped(pid) == _files(cache) for pid in served.serving())
        served.stop()


def test_a_policy_without_the_typosquat_rule_builds_nothing(
        tmp_path: Path, started: list[Served]) -> None:
    cache = tmp_path / "index"
    served = Served(tmp_path / "serve", _env(STOCKADE_INDEX_CACHE=str(cache)),
                    policy={"rules": {"typosquat": {"enabled": False}}})
    started.append(served)
    served.wait_listening()
    assert not served.builders()
    assert not cache.exists() or not _files(cache)
    served.stop()


def test_a_folder_that_cannot_be_written_still_serves(tmp_path: Path,
                                                      started: list[Served]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a folder under a file: never made, whoever runs the test
    served = Served(tmp_path / "serve", _env(STOCKADE_INDEX_CACHE=str(blocker / "index")))
    started.append(served)
    served.wait_listening()
    assert not served.builders()
    assert "typosquat" in served.refuses("expresss")
    served.stop()


def test_files_built_ahead_are_mapped_from_the_prebuilt_folder(
        tmp_path: Path, started: list[Served]) -> None:
    prebuilt, cache = tmp_path / "prebuilt", tmp_path / "index"
    made = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "stockade.proxy.cli", "index", "build", "--into",
         str(prebuilt)], capture_output=True, text=True, env=_env(), timeout=600,
        check=False)
    assert made.returncode == 0, made.stderr
    printed = {Path(line) for line in made.stdout.splitlines()}
    assert printed == _files(prebuilt)
    assert len(printed) == _FILES
    prebuilt.chmod(0o555)  # read-only: a serve maps the files, writes nothing there

    served = Served(tmp_path / "serve", _env(STOCKADE_INDEX_CACHE=str(cache),
                                             STOCKADE_INDEX_PREBUILT=str(prebuilt)))
    started.append(served)
    served.wait_listening()
    assert not served.builders()
    assert not cache.exists() or not _files(cache)
    assert all(_mapped(pid) == printed for pid in served.serving())
    assert "typosquat" in served.refuses("expresss")
    served.stop()
