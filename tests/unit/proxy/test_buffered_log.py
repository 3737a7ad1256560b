"""The buffered log handler: lines logged on an event loop are written together, in
order, and none is lost or written twice (warnings at once, a flush at exit, a fork)."""

from __future__ import annotations

import asyncio
import io
import logging
import os
from pathlib import Path

from stockade.proxy.accesslog import BufferedLineHandler


def _record(message: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("stockade.test", level, __file__, 1, message, (), None)


def _handler(stream: io.StringIO, **kwargs: float) -> BufferedLineHandler:
    handler = BufferedLineHandler(stream, **kwargs)  # type: ignore[arg-type]
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler


def test_lines_on_a_loop_wait_and_a_warning_writes_them_all_in_order() -> None:
    stream = io.StringIO()
    handler = _handler(stream, interval_s=3600)

    async def log() -> str:
        for n in range(3):
            handler.handle(_record(f"line {n}"))
        waiting = stream.getvalue()
        handler.handle(_record("careful", logging.WARNING))
        return waiting

    assert asyncio.run(log()) == ""
    assert stream.getvalue().splitlines() == ["line 0", "line 1", "line 2", "careful"]


def test_the_timer_writes_what_waits() -> None:
    stream = io.StringIO()
    handler = _handler(stream, interval_s=0.01)

    async def log() -> None:
        handler.handle(_record("one"))
        handler.handle(_record("two"))
        for _ in range(1000):  # bounded: the timer's turn comes
            if stream.getvalue():
                return
            await asyncio.sleep(0.01)

    asyncio.run(log())
    assert stream.getvalue().splitlines() == ["one", "two"]


def test_by_default_lines_of_one_turn_are_written_together_at_the_next() -> None:
    stream = io.StringIO()
    handler = _handler(stream)  # interval 0: the loop's next turn

    async def log() -> tuple[str, str]:
        handler.handle(_record("one"))
        handler.handle(_record("two"))
        during = stream.getvalue()
        await asyncio.sleep(0)  # the loop turns
        return during, stream.getvalue()

    during, after = asyncio.run(log())
    assert during == ""
    assert after.splitlines() == ["one", "two"]


def test_capacity_and_flush_write_them_and_a_line_off_a_loop_is_written_at_once() -> None:
    stream = io.StringIO()
    handler = _handler(stream, capacity=3, interval_s=3600)

    async def log() -> list[str]:
        seen = []
        for n in range(4):
            handler.handle(_record(f"line {n}"))
            seen.append(stream.getvalue())
        return seen

    seen = asyncio.run(log())
    assert seen[1] == ""
    assert seen[2].splitlines() == ["line 0", "line 1", "line 2"]
    assert seen[3] == seen[2]  # the fourth waits for the next flush
    handler.handle(_record("no loop here"))  # no loop runs: written with what waited
    assert stream.getvalue().splitlines() == ["line 0", "line 1", "line 2", "line 3",
                                              "no loop here"]


def test_logging_shutdown_writes_what_waits() -> None:
    stream = io.StringIO()
    handler = _handler(stream, interval_s=3600)

    async def log() -> None:
        handler.handle(_record("last words"))

    asyncio.run(log())
    assert stream.getvalue() == ""
    logging.shutdown([lambda: handler])  # as at exit, and in a worker before it ends
    assert stream.getvalue() == "last words\n"


def test_a_timer_of_an_ended_loop_does_not_hold_later_lines() -> None:
    stream = io.StringIO()
    handler = _handler(stream, interval_s=0.01)

    async def first() -> None:
        handler.handle(_record("in the first loop"))  # its timer never runs

    async def second() -> None:
        handler.handle(_record("in the second loop"))
        for _ in range(1000):
            if "second" in stream.getvalue():
                return
            await asyncio.sleep(0.01)

    asyncio.run(first())
    asyncio.run(second())
    assert stream.getvalue().splitlines() == ["in the first loop", "in the second loop"]


def test_a_forked_child_does_not_write_its_parents_lines_again() -> None:
    read_fd, write_fd = os.pipe()
    stream = os.fdopen(write_fd, "w")
    handler = BufferedLineHandler(stream, interval_s=3600)
    handler.setFormatter(logging.Formatter("%(process)d %(message)s"))

    async def log() -> None:
        handler.handle(_record("before the fork"))
        pid = os.fork()
        if pid == 0:  # the child: its own line, then what logging does at exit
            handler.handle(_record("the child's"))
            handler.flush()
            os._exit(0)
        _, status = os.waitpid(pid, 0)  # noqa: ASYNC222 - a child that exits at once
        assert status == 0
        handler.handle(_record("the parent's"))
        handler.flush()

    asyncio.run(log())
    stream.close()
    with os.fdopen(read_fd) as written:
        lines = [line.split(" ", 1)[1] for line in written.read().splitlines()]
    assert lines == ["before the fork", "the child's", "the parent's"]


def test_a_closed_stream_never_fails_the_code_that_logs(tmp_path: Path) -> None:
    """A line logged once the stream is closed (a test runner's captured output, a
    closed pipe) is lost, as the standard handler loses it, and raises nothing where
    it was logged: a warning writes at once, and so does a line outside a loop."""
    stream = (tmp_path / "log").open("w")  # a file's flush, unlike StringIO's, raises
    handler = BufferedLineHandler(stream)
    stream.close()
    handler.handle(_record("careful", logging.WARNING))
    handler.handle(_record("outside a loop"))
    handler.flush()
