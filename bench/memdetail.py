"""What one serving process holds: ``stockade serve`` run with a report on SIGUSR1.

Run as a script (``python bench/memdetail.py REPORT serve --config ...``, so that the
stockade imported is the one on ``PYTHONPATH``, another checkout's too), it starts
``tracemalloc`` (one frame), then the ``stockade`` command; each SIGUSR1 writes to
REPORT (JSON) what the process holds:

- its memory from ``/proc/self/smaps``: RSS split into anonymous pages (the heap,
  Python's arenas) and file pages (code, mapped index files), the largest mappings;
- Python objects ``tracemalloc`` counts, in all, by file and by line (the largest);
- each in-memory cache found among the live objects: its entries and the bytes it
  counts (and the shared budget's, where the checkout has one).

``bench.workers --memory-detail`` starts one worker this way and prints the reports.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import tracemalloc
from pathlib import Path
from typing import Any


def _smaps() -> dict[str, Any]:
    """RSS in MiB: anonymous and file-backed, and the largest mappings by RSS."""
    anon = file = 0
    by_name: dict[str, int] = {}
    mappings: list[tuple[str, int, int]] = []  # anonymous ones: name, size, RSS (KiB)
    name, size = "", 0
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
            name = head[5] if len(head) > 5 else "[anon]"
            start, end = (int(x, 16) for x in head[0].split("-"))
            size = (end - start) // 1024
        elif line.startswith("Rss:"):
            kb = int(head[1])
            by_name[name] = by_name.get(name, 0) + kb
            if name in ("[anon]", "[heap]") and kb >= 1024:
                mappings.append((name, size, kb))
        elif line.startswith("Anonymous:"):
            anon += int(head[1])
    total = sum(by_name.values())
    file = total - anon
    top = sorted(by_name.items(), key=lambda kv: -kv[1])[:12]
    return {"rss_mib": total / 1024, "anonymous_mib": anon / 1024, "file_mib": file / 1024,
            "largest_mib": [(n, round(kb / 1024, 1)) for n, kb in top],
            # the heap, Python's arenas and each thread's malloc arena: size, RSS
            "anonymous_mappings_mib": [(n, round(sz / 1024, 1), round(kb / 1024, 1))
                                       for n, sz, kb in mappings]}


def _caches() -> dict[str, Any]:
    """Entries and counted bytes of each in-memory cache among the live objects."""
    found: dict[str, Any] = {}
    wanted = {"HotBlobs", "MetadataCache", "RenderedCache", "WarmMemo", "Admission",
              "MemoryBudget"}
    gc.unfreeze()  # what the process froze before serving is listed too
    objects = gc.get_objects()
    gc.freeze()
    for obj in objects:
        kind = type(obj).__name__
        if kind not in wanted:
            continue
        entry: dict[str, Any] = {}
        if kind == "HotBlobs":
            entry = {"entries": len(obj._held), "bytes": obj.used_bytes,
                     "loads": obj.loads}  # blobs read and hashed: the misses
        elif kind == "MetadataCache":
            memory = obj._memory  # a budgeted LRU (its currsize), or a count of its own
            entry = {"entries": len(memory),
                     "bytes": getattr(obj, "_memory_used", getattr(memory, "currsize", None)),
                     "large_records": len(obj._large), "missing": len(obj._missing)}
        elif kind == "RenderedCache":
            entry = {"entries": len(obj._entries), "bytes": obj._memory_used,
                     "held_in_memory": sum(1 for e in obj._entries.values()
                                           if e.memory_bytes)}
        elif kind == "WarmMemo":
            entries = obj._entries
            entry = {"entries": len(entries), "bytes": getattr(entries, "currsize", None)}
        elif kind == "Admission":
            parsed = obj._parsed
            entry = {"parsed": len(parsed), "parsed_weight": getattr(parsed, "currsize", None),
                     "decisions": len(obj._decisions), "recorded": len(obj._recorded)}
        elif kind == "MemoryBudget":
            entry = {"used": obj.used, "max_bytes": obj.max_bytes,
                     "by_cache": obj.usage()}
        found.setdefault(kind, []).append(entry)
    return found


def _report(path: Path) -> None:
    if not tracemalloc.is_tracing():
        tracemalloc.start(1)  # from now: an empty count, but the report has its form
    snapshot = tracemalloc.take_snapshot()
    stats = snapshot.statistics("lineno")
    report = {
        "memory": _smaps(),
        "tracemalloc_mib": sum(s.size for s in stats) / 2**20,
        "tracemalloc_top": [(str(s.traceback[0]), round(s.size / 2**20, 2), s.count)
                            for s in stats[:25]],
        "tracemalloc_files": [(str(s.traceback[0].filename), round(s.size / 2**20, 2), s.count)
                              for s in snapshot.statistics("filename")[:25]],
        "caches": _caches(),
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=1, default=str))
    os.replace(tmp, path)


def main() -> None:
    report = Path(sys.argv[1])
    sys.argv = ["stockade", *sys.argv[2:]]
    sys.path.remove(str(Path(__file__).resolve().parent))  # bench/ itself: not a package
    if os.environ.get("STOCKADE_BENCH_TRACEMALLOC", "1") != "0":
        tracemalloc.start(1)
    signal.signal(signal.SIGUSR1, lambda *_: _report(report))
    from stockade.proxy.cli import main as stockade

    sys.exit(stockade())


if __name__ == "__main__":
    main()
