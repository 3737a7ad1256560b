"""Several worker processes serving one port: the supervisor and its workers.

Owns ``server.workers`` > 1 once the address is held (``listening.bind``): the
supervisor forks the workers and waits until each has opened the application and
listens (bad storage is one line too, sent up a pipe by the first worker to meet
it) before it logs "listening on". Then it restarts a worker that dies (after a
pause if it died young), forwards SIGHUP to every worker (each reloads its
policy), and on SIGTERM or SIGINT stops them all, each finishing its requests in
flight. Workers die with it, even when it is killed.

What a worker runs is the caller's business (``cli``): a callable that serves the
listener's addresses and tells the supervisor through its ``Channel`` once it
accepts. What workers must agree on (single-flight, the decision log, metrics,
client limits) is each module's own.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import selectors
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from stockade.proxy.listening import Listener
from stockade.proxy.metrics import share_metrics, worker_gone
from stockade.proxy.serving import StartupError

logger = logging.getLogger(__name__)

_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)
_YOUNG_S = 5.0  # a worker that dies younger than this is restarted after a pause
_MAX_PAUSE_S = 10.0
_PR_SET_PDEATHSIG = 1  # prctl(2)
_KILL_GRACE_S = 5.0  # past the shutdown timeout, a worker still running is killed

# serves the listener's addresses; tells the supervisor through the channel
Work = Callable[[Listener, "Channel"], None]


def worker_count(configured: int | None, cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """``server.workers``: None is one per CPU core this process may use, which a
    container's CPU limit (cgroup v2 ``cpu.max``) bounds too: a pod limited to two
    cores on a 64-core node runs two workers, not 64."""
    if configured is not None:
        return configured
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    limit = _cpu_limit(cgroup / "cpu.max")
    return max(1, min(cores, limit) if limit is not None else cores)


def _cpu_limit(path: Path) -> int | None:
    """Whole cores a cgroup v2 ``cpu.max`` allows (rounded up), or None: no limit."""
    try:
        quota, _, period = path.read_text().strip().partition(" ")
        if quota == "max":
            return None
        return max(1, -(-int(quota) // int(period or "100000")))
    except (OSError, ValueError):
        return None


class Channel:
    """A worker's line to its supervisor: one short message per line."""

    def __init__(self, fd: int, slot: int = 0) -> None:
        self._fd = fd
        self._slot = slot

    def _send(self, kind: str, text: str = "") -> None:
        line = f"{kind} {text}".strip().replace("\n", " ") + "\n"
        with contextlib.suppress(OSError):  # the supervisor is gone: nothing to tell
            os.write(self._fd, line.encode()[:4000])

    def ready(self) -> None:
        """The worker accepts connections: what it made to get there is kept out of
        the garbage collector's passes from now on (``settle_gc``)."""
        settle_gc()
        self._send("ready")

    @property
    def slot(self) -> int:
        """This worker's number, 0 to workers - 1 (kept by the one replacing it)."""
        return self._slot

    def reload_others(self) -> None:
        """Ask the supervisor to send SIGHUP to every other worker (a reload asked of
        this one, which reloads itself)."""
        self._send("reload")

    def failed(self, sentence: str) -> None:
        """The worker could not start; ``sentence`` is the operator's one line."""
        self._send("error", sentence)


@dataclass(slots=True)
class _Worker:
    slot: int
    pid: int
    fd: int  # the read end of its channel
    started: float
    ready: bool = False
    buffer: bytes = b""


@dataclass(slots=True)
class _State:
    workers: dict[int, _Worker] = field(default_factory=dict)  # by pid
    restarts: dict[int, float] = field(default_factory=dict)  # slot -> when (monotonic)
    young_deaths: dict[int, int] = field(default_factory=dict)  # slot -> in a row
    stopping: bool = False
    error: str | None = None


class Supervisor:
    """Forks ``count`` workers over ``sockets`` and keeps them running."""

    def __init__(self, count: int, listener: Listener, work: Work, *,
                 shutdown_timeout_s: float, on_listening: Callable[[], None],
                 on_exit: Callable[[int], None] = lambda _slot: None) -> None:
        self._count = count
        self._listener = listener
        self._pid = os.getpid()
        self._work = work
        self._shutdown_timeout_s = shutdown_timeout_s
        self._on_listening = on_listening
        self._on_exit = on_exit  # called with a dead worker's slot
        self._state = _State()
        self._selector = selectors.DefaultSelector()
        self._metrics_dir = Path(tempfile.mkdtemp(prefix="stockade-metrics-"))
        self._wake_r, self._wake_w = os.pipe()
        self._listening = False  # every worker of the first start accepted

    def run(self) -> None:
        """Serve until SIGTERM or SIGINT.

        Raises:
            StartupError: a worker could not start (the first one's sentence).
        """
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
        old_wakeup = signal.set_wakeup_fd(self._wake_w)
        old = {sig: signal.signal(sig, _noop) for sig in _SIGNALS}
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        try:
            self._serve()
        finally:
            self._stop_all()
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in old.items():
                signal.signal(sig, handler)
            self._selector.close()
            for fd in (self._wake_r, self._wake_w):
                os.close(fd)
            self._listener.close()
            shutil.rmtree(self._metrics_dir, ignore_errors=True)
        if self._state.error is not None:
            raise StartupError(self._state.error)

    def _serve(self) -> None:
        state = self._state
        for slot in range(self._count):
            self._spawn(slot)
        while not state.stopping:
            if not self._listening and len(state.workers) == self._count and all(
                    w.ready for w in state.workers.values()):
                self._listening = True
                self._on_listening()
            self._step(self._timeout())
            self._restart_due()

    def _timeout(self) -> float | None:
        due = self._state.restarts.values()
        return max(0.0, min(due) - time.monotonic()) if due else None

    def _step(self, timeout: float | None) -> None:
        for key, _ in self._selector.select(timeout):
            if key.fd == self._wake_r:
                self._on_signals()
            else:
                self._on_message(key.fd)
        self._reap()

    def _on_signals(self) -> None:
        try:
            data = os.read(self._wake_r, 512)
        except BlockingIOError:
            return
        for number in data:
            if number in (signal.SIGTERM, signal.SIGINT):
                logger.info("stopping %d workers: finishing requests in flight (at most "
                            "%g s)", len(self._state.workers), self._shutdown_timeout_s)
                self._state.stopping = True
            elif number == signal.SIGHUP:
                logger.info("SIGHUP: every worker reloads its policy")
                self._signal_workers(signal.SIGHUP)

    def _on_message(self, fd: int) -> None:
        worker = next((w for w in self._state.workers.values() if w.fd == fd), None)
        if worker is None:  # not expected: a channel without its worker
            self._selector.unregister(fd)
            os.close(fd)
            return
        self._read(worker)

    def _read(self, worker: _Worker) -> None:
        """Act on what ``worker`` wrote; close its channel at its end."""
        while True:
            try:
                data = os.read(worker.fd, 4096)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._selector.unregister(worker.fd)
                os.close(worker.fd)
                worker.fd = -1
                return
            worker.buffer += data
            *lines, worker.buffer = worker.buffer.split(b"\n")
            for line in lines:
                self._act(worker, line.decode(errors="replace"))

    def _act(self, worker: _Worker, line: str) -> None:
        kind, _, text = line.partition(" ")
        if kind == "ready":
            worker.ready = True
        elif kind == "reload":
            logger.info("worker %d reloaded its policy: every other worker reloads",
                        worker.slot)
            self._signal_workers(signal.SIGHUP, but=worker.pid)
        elif kind == "error" and not self._listening:
            self._state.error = self._state.error or text
            self._state.stopping = True
        elif kind == "error":
            logger.error("worker %d could not start: %s", worker.slot, text)

    def _signal_workers(self, sig: int, but: int | None = None) -> None:
        for pid in list(self._state.workers):
            if pid != but:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)

    def _reap(self) -> None:
        state = self._state
        for pid in list(state.workers):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done == 0:
                continue
            worker = state.workers.pop(pid)
            self._close(worker)
            worker_gone(self._metrics_dir, pid)
            self._on_exit(worker.slot)
            if state.stopping:
                continue
            code = os.waitstatus_to_exitcode(status)
            if not self._listening:
                # It never served: restarting would meet the same wall again.
                state.error = state.error or (
                    f"a worker exited while starting (exit status {code})")
                state.stopping = True
                continue
            self._schedule_restart(worker, code)

    def _schedule_restart(self, worker: _Worker, code: int) -> None:
        state = self._state
        pause = 0.0
        if worker.ready and time.monotonic() - worker.started >= _YOUNG_S:
            state.young_deaths.pop(worker.slot, None)
        if not worker.ready or time.monotonic() - worker.started < _YOUNG_S:
            deaths = state.young_deaths.get(worker.slot, 0) + 1
            state.young_deaths[worker.slot] = deaths
            pause = min(_MAX_PAUSE_S, 0.5 * 2 ** (deaths - 1))
        logger.warning("worker %d (pid %d) exited (status %d); starting another in %g s",
                       worker.slot, worker.pid, code, pause)
        state.restarts[worker.slot] = time.monotonic() + pause

    def _restart_due(self) -> None:
        now = time.monotonic()
        for slot, when in list(self._state.restarts.items()):
            if when <= now and not self._state.stopping:
                del self._state.restarts[slot]
                self._spawn(slot, restarted=True)

    def _spawn(self, slot: int, *, restarted: bool = False) -> None:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker
            os.close(read_fd)
            self._become_worker(write_fd, slot)
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        worker = _Worker(slot, pid, read_fd, time.monotonic(), ready=False)
        self._state.workers[pid] = worker
        self._selector.register(read_fd, selectors.EVENT_READ)
        if restarted:
            # A restarted worker serves as soon as it accepts; nobody waits for it.
            logger.info("worker %d started again (pid %d)", slot, pid)

    def _become_worker(self, channel_fd: int, slot: int) -> None:
        """In the forked child: drop the supervisor's state and serve; never returns."""
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            for sig in _SIGNALS:
                signal.signal(sig, signal.SIG_DFL)
            # until its policy reloader handles it, a SIGHUP must not end the worker
            # (a new worker reads the policy as it starts anyway)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            for worker in self._state.workers.values():
                if worker.fd >= 0:
                    os.close(worker.fd)
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._selector.close()
            _die_with_parent(self._pid)
            share_metrics(self._metrics_dir)
            channel = Channel(channel_fd, slot)
            try:
                self._work(self._listener, channel)
                code = 0
            except StartupError as exc:
                channel.failed(exc.diagnostics())
                code = 2
        except KeyboardInterrupt:
            code = 130
        except BaseException:  # a worker's top: say why, the supervisor restarts it
            logger.exception("worker failed")
        finally:
            logging.shutdown()
            os._exit(code)

    def _close(self, worker: _Worker) -> None:
        if worker.fd >= 0:
            os.set_blocking(worker.fd, True)  # it exited: read what it said last, to EOF
            self._read(worker)

    def _stop_all(self) -> None:
        """SIGTERM to every worker; wait for them, killing those past the timeout."""
        state = self._state
        state.stopping = True
        state.restarts.clear()
        self._signal_workers(signal.SIGTERM)
        deadline = time.monotonic() + self._shutdown_timeout_s + _KILL_GRACE_S
        killed = False
        while state.workers:
            left = deadline - time.monotonic()
            if left <= 0 and not killed:
                logger.warning("%d workers still running after the shutdown timeout; "
                               "killed", len(state.workers))
                self._signal_workers(signal.SIGKILL)
                killed = True
            self._step(max(0.05, min(left, 0.5)))


# Collections of the oldest generation once 100 (not 10) of the younger ones ran.
GC_THRESHOLDS = (700, 10, 100)


def settle_gc() -> None:
    """Freeze what a worker holds once it serves (its application, the policy as it
    opened it): the collector's full passes never scan those objects again. Such a
    pass holds the event loop for as long as it scans every container object alive;
    with the objects of large packuments' indexes (three per version, tens of
    thousands per document) each took 140 ms and more, and came every few cold
    documents. With the oldest generation's threshold raised they come ten times
    less often (still only once it grew by a quarter since the last one)."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _die_with_parent(parent: int) -> None:
    """Have the kernel kill the worker when the supervisor dies (even by SIGKILL), so
    no orphaned worker keeps serving the port; Linux only, elsewhere a no-op. A
    server killed is killed whole, as a single process would be: a worker does not
    go on to finish (and store) what it was fetching."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the call took effect
        os.kill(os.getpid(), signal.SIGKILL)


def _noop(_signum: int, _frame: object) -> None:
    """Signals reach the supervisor's loop through the wake-up pipe."""
