"""Who builds the typosquat index files of the shipped lists, and when.

A server maps the index files (``policy.typosquat.store``); where they are missing (a
first start: a new container, a new volume, an upgrade) ``serve`` has them built here
when its policy first needs one, by child processes started anew (``indexchild``),
never forked from the server: the build's Python objects (hundreds of MiB for npm's
list) end with the child, where built in the supervisor they stayed in it and in
every worker forked from it. One child builds the name indexes, another the loose
ones, at once where two cores are free.
The server then maps the files as on any later start.

Servers of one host starting together share the folder: the first takes its lock
file and builds; the others wait for its files (``_WAIT_S`` at most, then build
anyway: files are replaced atomically, so two builds only cost time). Where the
folder cannot be written (read-only, or ``STOCKADE_INDEX_CACHE`` empty), or a child
fails, nothing is built here: the server builds what it lacks in its own process, as
it always did. ``stockade check`` and ``explain`` build in their own process too.

``stockade index build [--into DIR]`` writes the same files ahead (a container
image's ``STOCKADE_INDEX_PREBUILT`` folder), in its own process.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from stockade.policy.model import Ecosystem
from stockade.policy.rules.typosquat import popular
from stockade.policy.typosquat import store

logger = logging.getLogger(__name__)

KINDS = ("names", "loose")
_LOCK = ".build.lock"
_WAIT_S = 300.0  # a start waits this long for another's build, or for its own children
_POLL_S = 0.05


@dataclass(frozen=True, slots=True)
class Job:
    """One index file of the shipped lists: its kind, ecosystem, and file name."""

    kind: str
    ecosystem: Ecosystem
    names: tuple[str, ...]
    file: str


def jobs() -> list[Job]:
    """Every index file a server with the shipped lists maps, the largest first."""
    found = []
    for ecosystem in Ecosystem:
        names = popular(ecosystem)
        found += [Job("names", ecosystem, names, store.names_file(ecosystem, names)),
                  Job("loose", ecosystem, names, store.loose_file(ecosystem, names))]
    return sorted(found, key=lambda job: -len(job.names))


def missing() -> list[Job]:
    """The files found in neither the prebuilt nor the cache folder."""
    return [job for job in jobs() if store.found(job.file) is None]


def folder() -> Path | None:
    """The cache folder the files are kept in (``store.folder``)."""
    return store.folder()


def build(where: Path) -> list[Path]:
    """Build every file of the shipped lists into ``where``, in this process.

    Raises:
        OSError: a file could not be written.
    """
    umask = os.umask(0)
    os.umask(umask)
    written = []
    for job in jobs():
        path = store.write_file(where, job.kind, job.ecosystem, job.names)
        path.chmod(0o666 & ~umask)  # as a file written ahead for other users is: readable
        written.append(path)
    return written


def build_when_missing() -> None:
    """Have the missing files built by ``build_outside`` where the policy first needs
    one (a policy without the typosquat rule needs none)."""
    store.build_elsewhere(build_outside)


def build_outside() -> None:
    """Have the missing index files built in child processes, and wait for them;
    nothing where the cache folder cannot be written (the server builds what it
    lacks itself, as it always did)."""
    where = store.folder()
    if where is None or not missing():
        return
    try:
        where.mkdir(parents=True, exist_ok=True)
        lock = (where / _LOCK).open("ab")
    except OSError as exc:
        logger.info("typosquat index files cannot be kept in %s (%s): built in the "
                    "server's process", where, exc)
        return
    with lock:
        deadline = time.monotonic() + _WAIT_S
        if not _locked(lock, deadline):
            logger.warning("another start has built the typosquat index files in %s for "
                           "%.0f s: building them here too", where, _WAIT_S)
        wanted = missing()  # the other start's build, where it held the lock
        if wanted:
            _build_in_children(where, wanted, time.monotonic() + _WAIT_S)


def _locked(lock: IO[bytes], deadline: float) -> bool:
    """Hold ``lock``, waiting until ``deadline`` for another start to let it go."""
    while True:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_S)
        else:
            return True


def _build_in_children(where: Path, wanted: list[Job], deadline: float) -> None:
    """``wanted`` built by a child per kind of index (one for the name indexes, one
    for the loose ones: about as long each), ``_parallel()`` at once."""
    started = time.monotonic()
    pending = [[job for job in wanted if job.kind == kind] for kind in KINDS]
    pending, running = [jobs for jobs in pending if jobs], list[_Child]()
    parallel = _parallel()
    try:
        while pending or running:
            spawned = [_Child.spawn(where, pending.pop(0))
                       for _ in range(min(len(pending), parallel - len(running)))]
            running += spawned
            for child in spawned:  # each fed once all are started: their starts overlap
                child.feed()
            for child in [c for c in running if c.process.poll() is not None]:
                running.remove(child)
                child.finished()
            if running:
                if time.monotonic() >= deadline:
                    logger.warning("typosquat index files not built in %.0f s: the "
                                   "server builds what it lacks itself", _WAIT_S)
                    return
                time.sleep(_POLL_S)
    finally:
        for child in running:
            child.process.kill()
            child.process.wait()
            child.close()
    logger.info("typosquat index files built in %s by child processes in %.1f s",
                where, time.monotonic() - started)


@dataclass
class _Child:
    """A child building index files of one kind, its output in files (a pipe nobody
    reads while it runs could fill)."""

    jobs: list[Job]
    process: subprocess.Popen[bytes]
    out: IO[bytes]
    err: IO[bytes]

    @classmethod
    def spawn(cls, where: Path, jobs: list[Job]) -> _Child:
        """The child building ``jobs``' files (of one kind), started: ``feed`` gives
        it their names."""
        out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()  # noqa: SIM115 (closed by finished or close)
        process = subprocess.Popen(  # noqa: S603 (this interpreter, our own module)
            [sys.executable, "-m", "stockade.proxy.indexchild", str(where), jobs[0].kind,
             *(job.ecosystem.value for job in jobs)],
            stdin=subprocess.PIPE, stdout=out, stderr=err)
        return cls(jobs, process, out, err)

    def feed(self) -> None:
        """Write the names to the child's stdin (it reads them once it has started)."""
        assert self.process.stdin is not None
        lists = "\0".join("\n".join(job.names) for job in self.jobs)
        # where it failed first, its stderr says why
        with contextlib.suppress(BrokenPipeError), self.process.stdin:
            self.process.stdin.write(lists.encode("utf-8", "surrogatepass"))

    def finished(self) -> None:
        """Log what the ended child did."""
        self.out.seek(0)
        self.err.seek(0)
        written, why = self.out.read().decode().split(), self.err.read()
        self.close()
        for path in written:
            logger.info("typosquat index %s built by process %d", path, self.process.pid)
        if self.process.returncode != 0:
            logger.warning("the %s indexes were not all built by process %d (exit %s): %s",
                           self.jobs[0].kind, self.process.pid, self.process.returncode,
                           why.decode(errors="replace").strip()[-500:])

    def close(self) -> None:
        self.out.close()
        self.err.close()


def _parallel() -> int:
    """Children at once: two where two cores are this process's (each holds one
    index's build: npm's takes a few hundred MiB), else one."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
        else os.cpu_count() or 1
    return max(1, min(2, cores))
