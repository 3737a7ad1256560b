"""Start to the first answered request: ``stockade serve`` from exec to its first 200s.

    python -m bench.start_serve [--rounds 5] [--base-tree DIR] [--workers N] [--cold-index]

Default settings otherwise (``server.workers`` unset: one per core).

Starts the static upstream over ``bench.serving_tree``'s tree, then for each checkout
(this one, and with ``--base-tree`` another, ``git worktree add DIR REV``) and each
policy (the default one; and the same with ``rules.typosquat.enabled: false``, so that
the name indexes' share of the start is its own line and the two can be added up):

- one untimed run first: it writes the typosquat index files (into a temporary
  ``STOCKADE_INDEX_CACHE`` per checkout) and the compiled modules (a temporary
  ``PYTHONPYCACHEPREFIX``: modules are read compiled, as from an installed package),
  and fills the cache with a simple page;
- then ``--rounds`` runs, the checkouts alternating within each round: seconds from
  the exec of ``python -m stockade.proxy.cli serve`` to the first 200 of ``/healthz``
  (asked every 5 ms), and to the first 200 of the cached simple page asked right after;
  and the CPU time (user and system) the server's processes (the supervisor and its
  workers) had used when ``/healthz`` first answered, read from ``/proc`` (Linux).

With ``--cold-index`` every timed start is a first start: its index cache folder is new
and empty (the compiled modules stay warm), so it builds the typosquat indexes; and the
process tree's PSS is read a second after the cached page answered (the supervisor, its
workers, anything the build left running).

Prints the median of each, and with ``--base-tree`` the ratio this/base. Wall time on a
shared machine swings with the other processes' load: compare within one run only, and
prefer the CPU time, which the load moves far less.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from bench.procs import Proc, start_static, tree_memory, work_folder
from bench.serving_tree import build
from testbed.net import free_port

POLICIES: dict[str, dict[str, object] | None] = {
    "default policy": None,
    "typosquat off": {"rules": {"typosquat": {"enabled": False}}},
}


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, ConnectionError):
        return None


def _config(folder: Path, upstream: str, workers: int | None,
            policy: dict[str, object] | None, port: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config: dict[str, object] = {
        "server": {"host": "127.0.0.1", "port": port,
                   **({} if workers is None else {"workers": workers})},
        "storage": {"path": str(folder / "data")},
        "pypi": {"upstreams": [{"name": "static", "url": f"{upstream}simple/"}]},
        "npm": {"upstreams": [{"name": "static", "url": f"{upstream}npm/"}]},
        "maven": {"upstreams": [{"name": "static", "url": f"{upstream}maven2/"}]},
    }
    if policy is not None:
        (folder / "policy.yaml").write_text(yaml.safe_dump(policy))
        config["policy"] = {"file": str(folder / "policy.yaml")}
    path = folder / "stockade.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


_TICK_S = 1 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01


def tree_cpu_s(pid: int) -> float | None:
    """CPU seconds (user and system) used so far by process ``pid`` and every process
    below it, those that ended and were waited for included (a first start's index
    builders), from ``/proc`` (None where it cannot be read: not Linux)."""
    total, todo = 0.0, [pid]
    try:
        while todo:
            current = todo.pop()
            # fields after the command's closing parenthesis: utime and stime are 14,
            # 15; cutime and cstime (its children waited for) 16, 17
            fields = Path(f"/proc/{current}/stat").read_text().rpartition(")")[2].split()
            total += sum(int(f) for f in fields[11:15]) * _TICK_S
            for task in Path(f"/proc/{current}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
    except (OSError, ValueError, IndexError):
        return None
    return total


Start = tuple[float, float, float | None, float | None]


def serve_once(tree: Path, config: Path, port: int, cache: Path, page: str,
               log: Path, wait_s: float = 120, *, pyc: Path | None = None,
               pss: bool = False) -> Start:
    """One start of the checkout ``tree``: seconds from exec to the first 200 of
    ``/healthz``, and to the first 200 of ``page`` asked right after it (waited for
    up to ``wait_s``); the CPU seconds the server's processes had used when
    ``/healthz`` first answered (None where ``/proc`` cannot tell); with ``pss``, the
    tree's PSS in MiB a second after the page answered (else None)."""
    pyc = pyc or cache.with_name(cache.name + "-pyc")
    env = {**os.environ, "PYTHONPATH": str(tree), "STOCKADE_INDEX_CACHE": str(cache),
           "PYTHONPYCACHEPREFIX": str(pyc)}
    env.pop("STOCKADE_CONFIG", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "stockade.proxy.cli", "serve", "--config", str(config)],
        cwd=tree, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    served = Proc(proc, port)
    try:
        deadline = started + wait_s
        while _status(served.url("/healthz")) != 200:
            if proc.poll() is not None or time.perf_counter() > deadline:
                raise RuntimeError(f"stockade did not answer /healthz:\n{log.read_text()}")
            time.sleep(0.005)
        healthz = time.perf_counter() - started
        cpu = tree_cpu_s(proc.pid)
        status = _status(served.url(page))
        if status != 200:
            raise RuntimeError(f"{page} answered {status}:\n{log.read_text()}")
        warm = time.perf_counter() - started
        held = None
        if pss:
            time.sleep(1.0)
            held = tree_memory(proc.pid)[1]
        return healthz, warm, cpu, held
    finally:
        served.stop()


def run(args: argparse.Namespace, work: Path) -> None:
    root = work / "upstream"
    upstream_port = free_port()
    cases = {c.label: c for c in build(root, f"http://127.0.0.1:{upstream_port}/",
                                       huge=False)}
    page = cases["simple page"].stockade_path
    static = start_static(root, work / "static.log", port=upstream_port)
    trees = {"this": Path(__file__).resolve().parents[1]}
    if args.base_tree is not None:
        trees = {"base": args.base_tree.resolve(), **trees}
    try:
        for policy_label, policy in POLICIES.items():
            setups: dict[str, tuple[Path, Path, int, Path, Path]] = {}
            for label, tree in trees.items():
                port = free_port()
                folder = work / f"{label}-{len(setups)}-{policy_label.replace(' ', '-')}"
                config = _config(folder, static.url("/"), args.workers, policy, port)
                cache = work / f"index-{label}"
                setups[label] = (tree, config, port, cache, folder / "stockade.log")
                # untimed: fills (builds the name indexes: minutes on a loaded machine)
                serve_once(*setups[label][:4], page, setups[label][4], wait_s=900)
            got: dict[str, list[Start]] = {label: [] for label in trees}
            for round_ in range(args.rounds):
                for label in trees:
                    tree, config, port, cache, log = setups[label]
                    if args.cold_index:  # a new, empty folder: a first start
                        fresh = cache.with_name(f"{cache.name}-cold-{round_}")
                        got[label].append(serve_once(
                            tree, config, port, fresh, page, log, wait_s=900,
                            pyc=cache.with_name(cache.name + "-pyc"), pss=True))
                    else:
                        got[label].append(serve_once(tree, config, port, cache, page, log))
            medians = {label: (statistics.median(r[0] for r in runs),
                               statistics.median(r[1] for r in runs),
                               _median_cpu([r[2] for r in runs]),
                               _median_cpu([r[3] for r in runs]))
                       for label, runs in got.items()}
            kind = "first start (empty index folder)" if args.cold_index else "start"
            for label, (healthz, warm, cpu, pss) in medians.items():
                used = "" if cpu is None else f"; CPU of its processes by then {cpu:.2f} s"
                held = "" if pss is None else f"; tree PSS after {pss:.0f} MiB"
                print(f"serve {kind}, {policy_label}, workers={args.workers or 'default'}, "
                      f"{label}: first 200 of /healthz {healthz:.2f} s, of a cached simple "
                      f"page {warm:.2f} s after exec{used}{held} (median of {args.rounds})",
                      flush=True)
            if "base" in medians:
                (bh, bp, bc, bm), (th, tp, tc, tm) = medians["base"], medians["this"]
                cpu_ratio = "" if bc is None or tc is None else f", CPU {tc / bc:.2f}x"
                pss_ratio = "" if bm is None or tm is None else f", tree PSS {tm / bm:.2f}x"
                print(f"serve {kind}, {policy_label}, this/base: /healthz {th / bh:.2f}x, "
                      f"simple page {tp / bp:.2f}x{cpu_ratio}{pss_ratio}", flush=True)
    finally:
        static.stop()


def _median_cpu(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if len(known) == len(values) and known else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--base-tree", type=Path, help="a checkout to compare with")
    parser.add_argument("--workers", type=int,
                        help="server.workers (default: unset, the server's own default)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder and logs")
    parser.add_argument("--cold-index", action="store_true",
                        help="every timed start with a new, empty index cache folder "
                        "(a first start), and the tree's PSS after it")
    args = parser.parse_args()
    with work_folder("stockade-start-serve-", keep=args.keep) as work:
        run(args, work)


if __name__ == "__main__":
    main()
