"""Starting the processes a benchmark measures: static upstreams and stockade itself."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from testbed.net import free_port


@contextlib.contextmanager
def work_folder(prefix: str, *, keep: bool) -> Iterator[Path]:
    """A new temporary folder for one run, removed after it unless ``keep``."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield work
    finally:
        if keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


@dataclass
class Proc:
    """A server process on 127.0.0.1."""

    proc: subprocess.Popen[bytes]
    port: int

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_ready(self, path: str, log: Path) -> Proc:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"process exited early; see {log}:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(self.url(path), timeout=2):  # noqa: S310
                    return self
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        raise RuntimeError(f"process did not become ready; see {log}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _spawn(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def start_static(root: Path, log: Path, *, port: int | None = None,
                 checksum_headers: tuple[str, ...] | None = None) -> Proc:
    """The static PEP 503 server over ``root`` (on ``port``, else a free one); Maven
    files with ``checksum_headers`` (None: as Central sends them)."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "bench.static_index", "--root", str(root), "--port", str(port)]
    if checksum_headers is not None:
        cmd.append(f"--checksum-headers={','.join(checksum_headers)}")
    return Proc(_spawn(cmd, log), port).wait_ready("/_count", log)


def start_proxy(upstream: str, storage: Path, log: Path, *, ecosystem: str = "pypi") -> Proc:
    """``stockade serve`` with ``upstream`` for ``ecosystem``, with access logs off."""
    port = free_port()
    config = {
        "server": {"host": "127.0.0.1", "port": port, "access_log": False},
        "storage": {"path": str(storage)},
        "pypi": {"upstreams": []},
        "npm": {"upstreams": []},
        "maven": {"upstreams": []},
        "logging": {"level": "WARNING"},
    }
    config[ecosystem] = {"upstreams": [{"name": "local", "url": upstream}]}
    storage.mkdir(parents=True, exist_ok=True)
    path = storage.parent / f"{storage.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    script = Path(sys.executable).parent / "stockade"
    return Proc(_spawn([str(script), "serve", "--config", str(path)], log), port).wait_ready(
        "/readyz", log
    )


def rss_mib(pid: int) -> float:
    """Resident set size of a process, in MiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def tree_pids(pid: int) -> list[int]:
    """``pid`` and every process below it, parents before children, in pid order
    (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(
            int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop(0)
        found.append(current)
        todo.extend(sorted(children.get(current, [])))
    return found


def memory(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of one process in MiB, (0, 0) once it is gone. PSS (proportional)
    counts the pages processes share once in all, RSS once per process."""
    values = {}
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0.0, 0.0
    for line in text.splitlines()[1:]:
        key, _, rest = line.partition(":")
        values[key] = int(rest.split()[0]) / 1024
    return values.get("Rss", 0.0), values.get("Pss", 0.0)


def role(pid: int, top: int) -> str:
    """What a process of stockade's tree is: ``supervisor`` (the top one, when it
    has workers below it), ``worker`` (a process serving requests), ``render`` (a
    render pool process), ``tracker`` (multiprocessing's resource tracker), or
    ``other`` (Linux)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return "other"
    if b"multiprocessing" in cmdline:
        return "tracker" if b"resource_tracker" in cmdline else "render"
    if pid == top:
        # forked workers share the supervisor's command line
        return "supervisor" if any(role(c, -1) == "worker" for c in _children(pid)) \
            else "worker"
    return "worker" if b"stockade" in cmdline else "other"


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def roles_memory(top: int) -> dict[str, tuple[int, float]]:
    """(processes, PSS MiB) of the tree under ``top``, by ``role``."""
    out: dict[str, tuple[int, float]] = {}
    for pid in tree_pids(top):
        name = role(pid, top)
        count, pss = out.get(name, (0, 0.0))
        out[name] = (count + 1, pss + memory(pid)[1])
    return out


def tree_memory(*pids: int) -> tuple[float, float]:
    """(RSS, PSS) in MiB of the processes under ``pids``, summed."""
    rss = pss = 0.0
    for current in (p for top in pids for p in tree_pids(top)):
        one = memory(current)
        rss, pss = rss + one[0], pss + one[1]
    return rss, pss


class Peak:
    """The most RSS and PSS of the process trees under ``pids``, together, seen
    while the block runs (sampled every ``every_s``).

    With ``by_role``, also the PSS of each ``role`` of the first tree: at the
    sample where the tree's PSS peaked (``at_peak``), and each role's own most
    (``role_peaks``), as (processes, MiB).
    """

    def __init__(self, *pids: int, every_s: float = 0.5, by_role: bool = False) -> None:
        self.pids, self.every_s, self.by_role = pids, every_s, by_role
        self.rss = self.pss = 0.0
        self.at_peak: dict[str, tuple[int, float]] = {}
        self.role_peaks: dict[str, tuple[int, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            if self.by_role:
                self._sample_roles()
            else:
                rss, pss = tree_memory(*self.pids)
                self.rss, self.pss = max(self.rss, rss), max(self.pss, pss)
            if self._stop.wait(self.every_s):
                return

    def _sample_roles(self) -> None:
        rss, _ = tree_memory(*self.pids)
        roles = roles_memory(self.pids[0])
        others = tree_memory(*self.pids[1:])[1] if self.pids[1:] else 0.0
        pss = others + sum(mib for _, mib in roles.values())
        self.rss = max(self.rss, rss)
        if pss > self.pss:
            self.pss, self.at_peak = pss, roles
        for name, (count, mib) in roles.items():
            if mib > self.role_peaks.get(name, (0, 0.0))[1]:
                self.role_peaks[name] = (count, mib)

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
