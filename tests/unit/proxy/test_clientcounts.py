"""Per-client connection counts shared by forked worker processes."""

from __future__ import annotations

import multiprocessing

from stockade.proxy.clientcounts import SharedClientCounts


def _open_two(counts: SharedClientCounts) -> None:
    assert counts.admit("10.0.0.1", 3, worker=1)
    assert counts.admit("10.0.0.1", 3, worker=1)


def test_a_limit_spans_worker_processes_and_a_dead_workers_count_goes() -> None:
    counts = SharedClientCounts(workers=2, slots=64)
    child = multiprocessing.get_context("fork").Process(target=_open_two, args=(counts,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    assert counts.open("10.0.0.1") == 2  # counted in the child, seen here
    assert counts.admit("10.0.0.1", 3, worker=0)
    assert not counts.admit("10.0.0.1", 3, worker=0)  # 3 open across both workers
    assert counts.admit("10.0.0.2", 3, worker=0)  # another client is not affected
    counts.forget(1)  # worker 1 died: its two connections are gone
    assert counts.open("10.0.0.1") == 1
    counts.release("10.0.0.1", worker=0)
    assert counts.open("10.0.0.1") == 0


def test_slots_of_gone_clients_are_reused() -> None:
    counts = SharedClientCounts(workers=1, slots=8)
    for n in range(100):  # far more clients than slots, one at a time
        client = f"10.0.1.{n}"
        assert counts.admit(client, 1, worker=0)
        assert not counts.admit(client, 1, worker=0)
        counts.release(client, worker=0)
    live = [f"10.0.2.{n}" for n in range(8)]
    assert all(counts.admit(c, 1, worker=0) for c in live)
    assert counts.admit("10.0.3.1", 1, worker=0)  # full of live clients: let in uncounted
    assert [counts.open(c) for c in live] == [1] * 8
